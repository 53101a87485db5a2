"""automd's command line, and the sockets it serves: systemd's, or one it binds itself."""

from __future__ import annotations

import argparse
import socket
from dataclasses import dataclass
from pathlib import Path

from automd import __version__
from automd.config import DEFAULT_CONFIG_PATH
from automd.sd import ActivatedSockets, ListenError, activated_sockets, bind_socket


@dataclass(frozen=True)
class Options:
    config_path: Path | None
    listen: Path | None
    state_dir: Path | None


def build_parser() -> argparse.ArgumentParser:
    """automd's command line; also the source of its man page (automd/manpage.py)."""
    parser = argparse.ArgumentParser(
        prog="automd",
        description="automd daemon: runs allowlisted jobs as transient systemd units.",
    )
    parser.add_argument(
        "--config", type=Path, help=f"configuration file (default {DEFAULT_CONFIG_PATH})"
    )
    parser.add_argument(
        "--listen",
        type=Path,
        metavar="PATH",
        help="bind this Unix socket instead of taking one from systemd (development, tests)",
    )
    parser.add_argument("--state-dir", type=Path, help="override state.directory")
    parser.add_argument("--version", action="version", version=f"automd {__version__}")
    return parser


def parse_args(argv: list[str] | None) -> Options:
    args = build_parser().parse_args(argv)
    return Options(config_path=args.config, listen=args.listen, state_dir=args.state_dir)


def listening_sockets(options: Options) -> tuple[ActivatedSockets, str]:
    if options.listen is not None:
        return ActivatedSockets(api=bind_socket(options.listen)), str(options.listen)
    sockets = activated_sockets()
    if sockets.api is None:
        raise ListenError(
            "not socket-activated: start automd.socket, or pass --listen PATH to bind a socket"
        )
    where = f"{sockets.api.getsockname()} (socket-activated)"
    if sockets.metrics is not None:
        where += f", metrics on {_address(sockets.metrics)}"
    return sockets, where


def _address(sock: socket.socket) -> str:
    name = sock.getsockname()
    return f"{name[0]}:{name[1]}" if isinstance(name, tuple) else str(name)
