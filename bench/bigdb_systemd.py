"""Start-up and reconciliation on a million finished jobs, against a real systemd (root).

    .venv/bin/python -m bench.bigdb_systemd [--jobs 1000000] [--starts 7] [--cache DIR]

bench/bigdb.py's companion: the same cached stores (the 1M-job store and the 100-job
"empty" one, built by bench/bigdb.py if missing), copied into the test container
(tests/integration: systemd 252 as PID 1, automd installed as the integration tests install
it, socket-activated). The two stores sit side by side under /var/lib/automd (the
container's tmpfs), and /etc/automd/automd.toml's [state] directory picks one before each
start; the starts alternate empty, big, empty, big, ... so both see the same machine. Each
start: `systemctl stop automd.service` (the socket stays), then a system.version call on
/run/automd.sock, which socket-activates automd. Timed on CLOCK_MONOTONIC, which the host,
the container's systemd and its journald share:
- spawn: the unit's ExecMainStartTimestampMonotonic (systemd forked automd);
- first reply: the call's answer, as the host receives it;
- ready: ActiveEnterTimestampMonotonic (READY=1 reached systemd);
- reconciled: the __MONOTONIC_TIMESTAMP of automd's "reconciled:" journal entry (the first
  reconciliation against systemd's units and journal) of that invocation.
The first start of each copy (which also applies the store's pending migrations) is reported
apart and left out of the medians. Writes bench/results/bigdb-systemd.json. A benchmark.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import time
from pathlib import Path
from typing import Any

from automd.store.db import DB_FILENAME
from bench.bigdb import EMPTY_JOBS, cached_store
from bench.footprint import REQUEST
from tests.integration.conftest import CHECKOUT, install_automd
from tests.integration.container import Container

STATE = "/var/lib/automd"
CONFIG = "/etc/automd/automd.toml"
RECONCILED = "reconciled:"


def call(path: Path, timeout: float = 120.0) -> tuple[float, dict[str, Any]]:
    """system.version on a fresh connection: (CLOCK_MONOTONIC of the answer, the answer)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(str(path))
        sock.sendall(REQUEST)
        reply = sock.recv(65536)
    answered = time.monotonic()
    return answered, json.loads(reply.partition(b"\r\n\r\n")[2])


def reconciled_at(c: Container, invocation: str, deadline: float) -> tuple[float, str]:
    """(CLOCK_MONOTONIC seconds, message) of the invocation's "reconciled:" journal entry."""
    while True:
        for entry in c.journal(f"_SYSTEMD_INVOCATION_ID={invocation}"):
            message = entry.get("MESSAGE")
            if isinstance(message, str) and RECONCILED in message:
                return int(entry["__MONOTONIC_TIMESTAMP"]) / 1e6, message
        if time.monotonic() > deadline:
            raise RuntimeError(f"no {RECONCILED!r} line from invocation {invocation}")
        time.sleep(0.2)


def one_start(c: Container, label: str) -> dict[str, Any]:
    """Stop automd, point its config at `label`'s store, start it by a call; the times."""
    c.run(["systemctl", "stop", "automd.service"])
    c.write_file(CONFIG, f'[state]\ndirectory = "{STATE}/{label}"\n')
    called = time.monotonic()
    answered, answer = call(c.root / "run/automd.sock")
    assert "result" in answer, answer
    unit = c.show("automd.service", "InvocationID", "ExecMainStartTimestampMonotonic",
                  "ActiveEnterTimestampMonotonic")  # fmt: skip
    spawn = int(unit["ExecMainStartTimestampMonotonic"]) / 1e6
    ready = int(unit["ActiveEnterTimestampMonotonic"]) / 1e6
    reconciled, line = reconciled_at(c, unit["InvocationID"], answered + 120)
    return {"call_to_reply_s": answered - called, "spawn_to_ready_s": ready - spawn,
            "spawn_to_reply_s": answered - spawn, "spawn_to_reconciled_s": reconciled - spawn,
            "line": line}  # fmt: skip


def run(stores: dict[str, Path], starts: int) -> dict[str, Any]:
    results: dict[str, Any] = {label: {"starts": []} for label in stores}
    with Container(CHECKOUT, log_path=Path("/tmp/automd-bigdb-nspawn.log")) as c:
        install_automd(c)
        for label, source in stores.items():
            target = c.root / STATE.lstrip("/") / label
            target.mkdir(parents=True, exist_ok=True)
            started = time.monotonic()
            shutil.copyfile(source / DB_FILENAME, target / DB_FILENAME)
            results[label]["copy_s"] = time.monotonic() - started
            results[label]["db_mb"] = (target / DB_FILENAME).stat().st_size / 1e6
            results[label]["first_start"] = one_start(c, label)
            print(f"{label}: first start {results[label]['first_start']}", flush=True)
        for _ in range(starts):
            for label in stores:
                results[label]["starts"].append(one_start(c, label))
    for figures in results.values():
        keys = [k for k in figures["starts"][0] if k.endswith("_s")]
        figures["median"] = {k: statistics.median(s[k] for s in figures["starts"]) for k in keys}
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1_000_000)
    parser.add_argument("--cache", type=Path, default=Path("/var/cache/automd-tests/bigdb"))
    parser.add_argument("--starts", type=int, default=7, help="measured starts per store")
    args = parser.parse_args()
    stores = {"empty": cached_store(args.cache, EMPTY_JOBS, False)[0],
              "big": cached_store(args.cache, args.jobs, False)[0]}  # fmt: skip
    load_before = os.getloadavg()[0]
    results = run(stores, args.starts)
    results.update(jobs=args.jobs, load1_before=load_before, load1_after=os.getloadavg()[0])
    print(f"{'median of ' + str(args.starts) + ' starts (ms)':28} {'empty':>8} {'1M':>8} ratio")
    for key in results["empty"]["median"]:
        e, b = results["empty"]["median"][key], results["big"]["median"][key]
        print(f"{key:28} {e * 1e3:8.0f} {b * 1e3:8.0f} {b / e:5.2f}x")
    print(f"1M reconcile line: {results['big']['starts'][-1]['line']}")
    print(f"load average: {load_before:.1f} before, {results['load1_after']:.1f} after")
    out = CHECKOUT / "bench/results"
    out.mkdir(exist_ok=True)
    (out / "bigdb-systemd.json").write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
