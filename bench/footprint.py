"""automd's footprint: cold start to the first reply, and idle RSS, of `automd --listen`.

    .venv/bin/python -m bench.footprint [--runs 15] [--python PATH] [--source DIR]

Each run starts a fresh daemon (new state directory, the example definitions), times from
spawn to the first reply (to `system.version`) on its socket, waits until it has answered a few
calls, and reads VmRSS from /proc. Prints the medians. `--source DIR` (repeatable) runs
that checkout's automd (e.g. a `git worktree` of an older commit) with this venv; runs
alternate between the sources, to compare before/after in one run.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

CHECKOUT = Path(__file__).resolve().parent.parent
BODY = b'{"jsonrpc":"2.0","method":"system.version","id":1}'
REQUEST = (
    b"POST /rpc HTTP/1.1\r\nHost: automd\r\nContent-Type: application/json\r\n"
    b"Content-Length: %d\r\n\r\n%s" % (len(BODY), BODY)
)


def call(path: Path, request: bytes = REQUEST) -> dict[str, Any] | None:
    """One call on a fresh connection: the JSON-RPC reply, None while nothing answers."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(5)
            sock.connect(str(path))
            sock.sendall(request)
            reply = sock.recv(65536)
    except OSError:
        return None
    body = reply.partition(b"\r\n\r\n")[2]
    if not body:
        return None
    answer: dict[str, Any] = json.loads(body)
    return answer


def vm_rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def cold_start(
    command: list[str],
    sock: Path,
    *,
    cwd: Path,
    env: dict[str, str] | None = None,
    request: bytes = REQUEST,
    timeout: float = 30.0,
) -> tuple[float, float]:
    """(seconds from spawn to the first reply on SOCK, idle RSS in MiB) of one fresh COMMAND.

    Any JSON-RPC reply ends the clock (an error too: what matters is that the server answers).
    After 20 more calls, VmRSS is read; then the process is stopped (SIGTERM) and waited for.
    """
    started = time.monotonic()
    proc = subprocess.Popen(command, env=env, cwd=cwd, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        # Polls the socket: the first reply is the event being timed.
        while call(sock, request) is None:
            if proc.poll() is not None:
                raise RuntimeError(f"{command[0]} exited with {proc.returncode}")
            if time.monotonic() - started > timeout:
                raise RuntimeError(f"{command[0]}: no reply on {sock} after {timeout:g}s")
            time.sleep(0.002)
        cold = time.monotonic() - started
        for _ in range(20):
            call(sock, request)
        rss = vm_rss_kib(proc.pid) / 1024
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    return cold, rss


def one_run(python: str, source: Path) -> tuple[float, float]:
    """(seconds from spawn to the first reply, idle RSS in MiB)."""
    with tempfile.TemporaryDirectory(prefix="automd-footprint-") as tmp:
        work = Path(tmp)
        config = work / "automd.toml"
        config.write_text(
            f'[jobs]\ndefinitions_directory = "{source / "etc/automd/jobs.d"}"\n'
            "[access]\npolkit = false\n"
        )
        sock = work / "automd.sock"
        env = {**os.environ, "PYTHONPATH": str(source)}
        env.pop("NOTIFY_SOCKET", None)
        entry = "import sys; from automd.daemon import main; sys.exit(main())"
        command = [python, "-c", entry, "--listen", str(sock), "--config", str(config),
                   "--state-dir", str(work / "state")]  # fmt: skip
        # cwd: `python -c` puts the working directory first on sys.path.
        return cold_start(command, sock, cwd=work, env=env)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--python", default=sys.executable)
    parser.add_argument(
        "--source", type=Path, action="append", help="a checkout to run (repeatable, alternated)"
    )
    args = parser.parse_args()
    sources = [path.resolve() for path in args.source or [CHECKOUT]]
    results: dict[Path, list[tuple[float, float]]] = {source: [] for source in sources}
    for _ in range(args.runs):  # alternating, so that a busier minute hurts each the same
        for source in sources:
            results[source].append(one_run(args.python, source))
    for source, runs in results.items():
        colds = [cold * 1000 for cold, _ in runs]
        rss = statistics.median(r for _, r in runs)
        print(f"{source}: cold start to first reply median {statistics.median(colds):.0f} ms "
              f"(min {min(colds):.0f}, max {max(colds):.0f}); idle RSS median {rss:.1f} MiB "
              f"over {args.runs} runs")  # fmt: skip


if __name__ == "__main__":
    main()
