"""Runaway jobs in a VM whose kernel enforces cgroup v2 limits (`make vm-test`, root; issue 17).

The nspawn container of tests/integration shares the host's read-only cgroup v1 tree, so
MemoryMax=, CPUQuota= and TasksMax= are set there but never enforced. Here a throwaway Debian
12 VM (tests/vm/image.py, cached; qemu TCG) runs tests/vm/runner.py, which submits runaway jobs
(tests/vm/jobs.d) under a light API load and records what automd recorded, how fast the API
answered and automd's RSS; this test fails with every check that did not hold.

Not collected by `make test` (pyproject's testpaths leave tests/vm out): a run costs about
1 minute to build the image once and several minutes per run under TCG (docs/testing-vm.md).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest

from tests.vm.image import cached_image
from tests.vm.machine import CHECKOUT, boot_and_run

pytestmark = [pytest.mark.vm, pytest.mark.timeout(1800)]

#: Where the run's result.json is kept: $AUTOMD_TEST_ARTIFACTS/vm, else test-artifacts/vm.
ARTIFACTS = Path(os.environ.get("AUTOMD_TEST_ARTIFACTS", CHECKOUT / "test-artifacts")) / "vm"


def test_runaway_jobs_are_recorded_while_the_api_answers(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Never a skip: without root this test proves nothing, so it fails.
    assert os.geteuid() == 0, "make vm-test needs root (mmdebstrap, mkfs.ext4 -d of a root)"
    # Outside pytest's rotating temporary directories: a failed run's files stay to be read.
    share = Path(tempfile.mkdtemp(prefix="automd-vm-test-", dir="/var/tmp"))
    image = cached_image(share / "build.log")
    run = boot_and_run(image, share, ".venv/bin/python -m tests.vm.runner /ci/result.json")
    result_file = share / "result.json"
    with capsys.disabled():
        made = "cached" if image.build_seconds is None else f"built in {image.build_seconds:.0f} s"
        print(
            f"\nVM image {image.directory} ({made}); boot + run + poweroff {run.seconds:.0f} s;"
            f" run.sh exit status {run.status}; files in {share} (removed if it passed)"
        )
        if result_file.exists():
            result = json.loads(result_file.read_text())
            print(summary(result))
            # Kept for bench/runaway_plot.py, whatever the outcome.
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            shutil.copy(result_file, ARTIFACTS / "result.json")
            print(f"result: {ARTIFACTS / 'result.json'}")
    assert result_file.exists(), (
        f"the runner left no result (exit status {run.status}); its output:\n{run.output()}"
    )
    failed = [c for c in result["checks"] if not c["ok"]]
    assert not failed, "\n".join(
        [f"{c['name']}: {c['detail']}" for c in failed]
        + ["--- automd's journal ---", result.get("journal_tail", "")]
    )
    assert run.status == 0, run.output()
    shutil.rmtree(share)  # kept only when the run failed


def summary(result: dict[str, Any]) -> str:
    """The numbers worth reading in a passing run too: recorded results, latency, RSS."""
    lines = [f"timings: {json.dumps(result.get('timings'))}"]
    lines += [f"  {name}: {json.dumps(view)}" for name, view in result.get("jobs", {}).items()]
    lines.append(f"latency: {json.dumps(result.get('latency'))}")
    lines.append(f"automd RSS MiB: {json.dumps(result.get('rss_mib'))}")
    lines += [f"  {'ok  ' if c['ok'] else 'FAIL'} {c['name']}" for c in result["checks"]]
    return "\n".join(lines)
