"""What `import automd.daemon` leaves for later. Each deferral was measured to cost every
start RSS and CPU (bench/README.md, "Footprint"); an import or a model use added somewhere
would bring the cost back without a word, so the daemon's import is checked in a fresh
interpreter.
"""

from __future__ import annotations

import gc
import json
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest

from automd import daemon, launch

CHECKOUT = Path(__file__).resolve().parents[2]

#: module -> where it is imported instead, when it is needed.
DEFERRED = {
    "prometheus_client": "automd/metrics/page.py, at the first scrape",
    "tracemalloc": "automd/memreport.py, at the first SIGUSR2",
}

PROBE = """
import json, sys
import automd.daemon
from automd.api.model import Params, Result

def subclasses(cls):
    for sub in cls.__subclasses__():
        yield sub
        yield from subclasses(sub)

api = [model for base in (Params, Result) for model in subclasses(base)]
print(json.dumps({
    "modules": sorted(sys.modules),
    "api_models": len(api),
    "api_models_built": [model.__qualname__ for model in api if model.__pydantic_complete__],
}))
"""


@pytest.fixture(scope="module")
def daemon_import() -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=CHECKOUT, capture_output=True, text=True, check=True
    ).stdout
    found: dict[str, Any] = json.loads(out)
    return found


@pytest.mark.parametrize("module", sorted(DEFERRED))
def test_the_daemon_does_not_import_at_start(module: str, daemon_import: dict[str, Any]) -> None:
    assert module not in daemon_import["modules"], f"{module} belongs in {DEFERRED[module]}"


def test_no_api_model_is_built_at_import(daemon_import: dict[str, Any]) -> None:
    """api/model.py's defer_build: each method's models are built at its first call."""
    assert daemon_import["api_models"] > 20  # the probe found them
    assert daemon_import["api_models_built"] == []


def test_the_automd_command_imports_the_daemon_with_the_collector_paused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """automd/launch.py: no collections during the import; they are back on when it runs."""
    scripts = tomllib.loads((CHECKOUT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["automd"] == "automd.launch:main"
    seen: list[bool] = []

    def run() -> int:
        seen.append(gc.isenabled())
        return 0

    monkeypatch.setattr(daemon, "main", run)
    try:
        assert launch.main() == 0
    finally:
        gc.unfreeze()  # what launch froze is this test process's, not a daemon's
    assert seen == [True]
    assert gc.isenabled()
