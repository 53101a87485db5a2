"""What `import automd.daemon` leaves out. Each of these was measured to cost every start
RSS and CPU (bench/README.md, "Footprint"); an import added somewhere would bring it back
without a word, so the daemon's import is checked in a fresh interpreter.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

CHECKOUT = Path(__file__).resolve().parents[2]

#: module -> where it is imported instead, when it is needed.
DEFERRED = {
    "prometheus_client": "automd/metrics/page.py, at the first scrape",
}


@pytest.fixture(scope="module")
def daemon_modules() -> set[str]:
    code = "import sys, automd.daemon; print('\\n'.join(sys.modules))"
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=CHECKOUT, capture_output=True, text=True, check=True
    ).stdout
    return set(out.split())


@pytest.mark.parametrize("module", sorted(DEFERRED))
def test_the_daemon_does_not_import_at_start(module: str, daemon_modules: set[str]) -> None:
    assert module not in daemon_modules, f"{module} belongs in {DEFERRED[module]}"
