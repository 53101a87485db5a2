"""automd-stdio-bridge: automd's socket on stdin and stdout, for `automctl -H` over ssh.

`automctl -H host` runs `ssh host automd-stdio-bridge` and speaks HTTP/JSON-RPC over ssh's
pipes; this end joins them to /run/automd.sock and does nothing more: no parsing, no
authentication of its own. It runs as the ssh user, so automd reads that user's credentials
from the connection (SO_PEERCRED), and polkit and the audit trail name them. Standard library
only and nothing imported it does not need, so a call over ssh pays little for it.

Exit statuses (automctl reads them, automd/ctl/transport.py): 0 when automd closed the
connection; 69 (EX_UNAVAILABLE) when the socket cannot be reached; 77 (EX_NOPERM) when it
refuses the user; 64 for arguments it does not take.
"""

from __future__ import annotations

import os
import socket
import sys
import threading
from typing import TYPE_CHECKING

from automd import __version__
from automd.api.codes import DEFAULT_SOCKET

if TYPE_CHECKING:
    import argparse

PROG = "automd-stdio-bridge"
#: As automctl's: another socket (a test daemon); ssh passes it only where AcceptEnv allows.
SOCKET_ENV = "AUTOMD_SOCKET"
EX_USAGE = 64
EX_UNAVAILABLE = 69
EX_NOPERM = 77
_CHUNK = 65536


def build_parser() -> argparse.ArgumentParser:
    """The command line, for --help and the man page (argparse is loaded only for those)."""
    import argparse  # noqa: PLC0415 (the bridge's own start-up does not need it)

    parser = argparse.ArgumentParser(
        prog=PROG,
        description="connect standard input and output to automd's socket, for automctl -H",
        epilog=(
            f"`automctl -H HOST` runs it over ssh. It connects to ${SOCKET_ENV}, by default "
            f"{DEFAULT_SOCKET}, as the user it runs as, and copies bytes both ways until automd "
            "closes the connection. As the forced command of a restricted ssh key, in "
            f'authorized_keys: command="{PROG}",restrict ssh-ed25519 AAAA... (docs/fleet.md).'
        ),
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    return parser


def _pump_in(sock: socket.socket) -> None:
    """stdin -> socket; at the end of stdin, end the request stream (automd then finishes
    answering and closes)."""
    try:
        while data := os.read(0, _CHUNK):
            sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
    except OSError:
        # automd closed the connection: the other direction sees it and ends the bridge.
        pass


def _pump_out(sock: socket.socket) -> None:
    """socket -> stdout, until automd closes the connection or stdout's reader is gone."""
    try:
        while data := sock.recv(_CHUNK):
            view = memoryview(data)
            while view:
                view = view[os.write(1, view) :]
    except OSError:
        pass


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args:
        build_parser().parse_args(args)  # --help and --version exit, and any other word
        return EX_USAGE  # pragma: no cover (argparse exits for anything given)
    path = os.environ.get(SOCKET_ENV) or DEFAULT_SOCKET
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(path)
    except PermissionError:
        print(
            f"{PROG}: {path}: permission denied (the user is neither root nor in group automd)",
            file=sys.stderr,
        )
        return EX_NOPERM
    except OSError as exc:
        print(f"{PROG}: {path}: {exc.strerror} (is automd.socket running?)", file=sys.stderr)
        return EX_UNAVAILABLE
    # Each direction on its own: a reply being written never waits for a request being read.
    threading.Thread(target=_pump_in, args=(sock,), daemon=True).start()
    _pump_out(sock)
    return 0


if __name__ == "__main__":
    sys.exit(main())
