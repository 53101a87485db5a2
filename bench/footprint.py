"""automd's footprint: cold start to the first reply, and idle RSS, of `automd --listen`.

    .venv/bin/python -m bench.footprint [--runs 15] [--python PATH] [--source DIR]

Each run starts a fresh daemon (new state directory, the example definitions), times from
spawn to the first `system.version` reply on its socket, waits until it has answered a few
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

CHECKOUT = Path(__file__).resolve().parent.parent
BODY = b'{"jsonrpc":"2.0","method":"system.version","id":1}'
REQUEST = (
    b"POST /rpc HTTP/1.1\r\nHost: automd\r\nContent-Type: application/json\r\n"
    b"Content-Length: %d\r\n\r\n%s" % (len(BODY), BODY)
)


def call_version(path: Path) -> bool:
    """One system.version call; False while the socket is not there or not answering."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(5)
            sock.connect(str(path))
            sock.sendall(REQUEST)
            reply = sock.recv(65536)
    except OSError:
        return False
    body = reply.partition(b"\r\n\r\n")[2]
    if not body:
        return False
    answer = json.loads(body)
    if "result" not in answer:
        raise RuntimeError(f"system.version failed: {answer}")
    return True


def vm_rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


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
        started = time.monotonic()
        # cwd: `python -c` puts the working directory first on sys.path.
        proc = subprocess.Popen(command, env=env, cwd=work, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)  # fmt: skip
        try:
            # Polls the socket: the first reply is the event being timed.
            while not call_version(sock):
                if proc.poll() is not None:
                    raise RuntimeError(f"automd exited with {proc.returncode}")
                time.sleep(0.002)
            cold = time.monotonic() - started
            for _ in range(20):
                call_version(sock)
            rss = vm_rss_kib(proc.pid) / 1024
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    return cold, rss


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
