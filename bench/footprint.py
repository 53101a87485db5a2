"""automd's footprint: cold start to the first reply, and idle RSS, of `automd --listen`.

    .venv/bin/python -m bench.footprint [--runs 15] [--imports 0] [--callgrind] [--python PATH]
                                        [--source DIR]...

Each run starts a fresh daemon (new state directory, the example definitions), times from
spawn to the first reply (to `system.version`) on its socket, and reads the CPU time the
process had used by then (/proc/PID/stat, in 10 ms ticks: far less moved by the machine's
load than the wall clock); it waits until
it has answered a few calls, and reads VmRSS from /proc. Prints the medians and the load
average. `--source DIR` (repeatable) runs that checkout's automd (e.g. `git archive` of an
older commit unpacked in /tmp) with this venv; runs alternate between the sources, to
compare before/after in one run. `--imports N` also measures `import automd.daemon` alone,
N times per source: the CPU time at its end, VmRSS, and `-X importtime`'s total.
`--callgrind` counts the instructions of one start per source under valgrind: from spawn
through the first reply, 20 more calls and the shutdown (load-independent; needs valgrind;
about a minute each).

Sources are byte-compiled first (compileall, into their __pycache__), as the Debian package
ships them (debian/rules): with PYTHONDONTWRITEBYTECODE=1, which this host's environment and
the package build set, a checkout would otherwise compile all of automd at every start.
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
import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

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


class Start(NamedTuple):
    seconds: float  # from spawn to the first reply
    rss_mib: float  # VmRSS after 20 more calls
    cpu_seconds: float  # user + system CPU of the process at the first reply


def compile_sources(*directories: Path, python: str = sys.executable) -> None:
    """Byte-code for DIRECTORIES' modules, as the Debian package ships it (see above)."""
    argv = [python, "-m", "compileall", "-q", *(str(d) for d in directories)]
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)


def cpu_seconds(pid: int) -> float:
    """utime + stime of PID (fields 14 and 15 of /proc/PID/stat, after the command name)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def load_average() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


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
) -> Start:
    """Seconds from spawn to the first reply on SOCK, idle RSS and CPU of one fresh COMMAND.

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
        cpu = cpu_seconds(proc.pid)
        for _ in range(20):
            call(sock, request)
        rss = vm_rss_kib(proc.pid) / 1024
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    return Start(cold, rss, cpu)


def entry_point(source: Path) -> str:
    """Python code that runs what SOURCE's `automd` command runs (its [project.scripts])."""
    scripts = tomllib.loads((source / "pyproject.toml").read_text())["project"]["scripts"]
    module, _, function = scripts["automd"].partition(":")
    return f"import sys; from {module} import {function}; sys.exit({function}())"


def one_run(python: str, source: Path, wrapper: Sequence[str] = ()) -> Start:
    """One fresh daemon of SOURCE: its cold start, idle RSS and CPU at the first reply.
    WRAPPER: a command that runs it (valgrind, for --callgrind)."""
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
        entry = entry_point(source)
        command = [*wrapper, python, "-c", entry, "--listen", str(sock), "--config",
                   str(config), "--state-dir", str(work / "state")]  # fmt: skip
        # cwd: `python -c` puts the working directory first on sys.path.
        return cold_start(command, sock, cwd=work, env=env, timeout=300 if wrapper else 30)


def instructions(python: str, source: Path) -> int:
    """Instructions (valgrind's callgrind) of one daemon from spawn through its first reply,
    20 more calls and its shutdown: a figure that the machine's load does not change."""
    with tempfile.TemporaryDirectory(prefix="automd-callgrind-") as tmp:
        log = Path(tmp) / "valgrind.log"
        wrapper = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null",
                   f"--log-file={log}"]  # fmt: skip
        one_run(python, source, wrapper)
        collected = [line for line in log.read_text().splitlines() if "Collected :" in line]
        return int(collected[-1].rpartition(":")[2])


IMPORT_PROBE = (
    "import time, os, automd.daemon\n"
    "rss = next(l for l in open('/proc/self/status') if l.startswith('VmRSS:')).split()[1]\n"
    "print(time.process_time(), rss)\n"
    "os._exit(0)  # the import is measured, not the interpreter's teardown"
)


def import_cost(python: str, source: Path) -> tuple[float, float, float]:
    """`import automd.daemon` alone: (CPU seconds at its end, VmRSS MiB, importtime total s)."""
    env = {**os.environ, "PYTHONPATH": str(source)}
    probe = subprocess.run([python, "-c", IMPORT_PROBE], env=env, cwd=source,
                           capture_output=True, text=True, check=True)  # fmt: skip
    cpu, rss = probe.stdout.split()
    argv = [python, "-X", "importtime", "-c", "import automd.daemon"]
    timed = subprocess.run(argv, env=env, cwd=source, capture_output=True, text=True, check=True)
    # The last line is automd.daemon's own: "import time: self | cumulative | name" in us.
    total_us = int(timed.stderr.strip().splitlines()[-1].split("|")[1])
    return float(cpu), int(rss) / 1024, total_us / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--imports", type=int, default=0, help="import-only runs per source")
    parser.add_argument("--callgrind", action="store_true", help="also count instructions")
    parser.add_argument("--python", default=sys.executable)
    parser.add_argument(
        "--source", type=Path, action="append", help="a checkout to run (repeatable, alternated)"
    )
    args = parser.parse_args()
    sources = [path.resolve() for path in args.source or [CHECKOUT]]
    compile_sources(*(source / "automd" for source in sources), python=args.python)
    print(f"load average before: {load_average()}")
    imports: dict[Path, list[tuple[float, float, float]]] = {source: [] for source in sources}
    for _ in range(args.imports):
        for source in sources:
            imports[source].append(import_cost(args.python, source))
    results: dict[Path, list[Start]] = {source: [] for source in sources}
    for _ in range(args.runs):  # alternating, so that a busier minute hurts each the same
        for source in sources:
            results[source].append(one_run(args.python, source))
    for source, runs in results.items() if args.runs else ():
        colds = [run.seconds * 1000 for run in runs]
        cpu = statistics.median(run.cpu_seconds for run in runs) * 1000
        rss = statistics.median(run.rss_mib for run in runs)
        print(f"{source}: cold start to first reply median {statistics.median(colds):.0f} ms "
              f"(min {min(colds):.0f}, max {max(colds):.0f}), CPU by then {cpu:.0f} ms; "
              f"idle RSS median {rss:.1f} MiB over {args.runs} runs")  # fmt: skip
    for source, costs in imports.items() if args.imports else ():
        cpus, rsss, totals = zip(*costs, strict=True)
        print(f"{source}: import automd.daemon: CPU median {statistics.median(cpus) * 1000:.0f} "
              f"ms, VmRSS {statistics.median(rsss):.1f} MiB, -X importtime total "
              f"{statistics.median(totals) * 1000:.0f} ms (medians of {args.imports})")  # fmt: skip
    for source in sources if args.callgrind else ():
        count = instructions(args.python, source)
        print(f"{source}: {count:,} instructions from spawn to exit (callgrind, one start)")
    print(f"load average after: {load_average()}")


if __name__ == "__main__":
    main()
