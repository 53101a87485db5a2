"""The import rules of docs/architecture.md, checked on the source: imports point one way.

`daemon -> http -> rpc -> jobs -> store | systemd | definitions`; `ctl -> api`. A change
that makes a lower layer reach back up (jobs calling into rpc, systemd knowing jobs) fails
here rather than in review.
"""

from __future__ import annotations

import ast
import graphlib
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "automd"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    """Every module a file imports, at any depth (lazy imports inside functions count)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


GRAPH = {module_name(p): imports_of(p) for p in sorted(PACKAGE.rglob("*.py"))}


def area(module: str) -> str:
    """automd.jobs.service -> jobs; automd.daemon -> daemon; dbus_fast.aio -> ext:dbus_fast
    (so that the standard library's http is not automd's)."""
    parts = module.split(".")
    if parts[0] != "automd":
        return f"ext:{parts[0]}"
    return parts[1] if len(parts) > 1 else "automd"


def importers_of(target: str) -> set[str]:
    """The areas (other than target's own) whose modules import `target` (an area name)."""
    return {
        area(module)
        for module, imported in GRAPH.items()
        if area(module) != target and any(area(name) == target for name in imported)
    }


@pytest.mark.parametrize(
    ("target", "allowed"),
    [
        ("http", {"daemon"}),
        ("rpc", {"daemon", "http"}),
        # manpage.py renders both command lines' parsers into man pages at package build time;
        # launch.py is the automd command (it imports the daemon with the collector paused).
        ("ctl", {"manpage"}),
        ("daemon", {"manpage", "launch"}),
        ("ext:dbus_fast", {"systemd"}),
        ("ext:aiosqlite", {"store"}),
        ("ext:prometheus_client", {"metrics"}),
    ],
)
def test_only_the_layer_above_imports(target: str, allowed: set[str]) -> None:
    assert importers_of(target) <= allowed


@pytest.mark.parametrize(
    ("lower", "forbidden"),
    [
        # The wire contract and automctl stand alone (automctl's start-up budget).
        ("api", {"rpc", "http", "jobs", "store", "systemd", "definitions", "daemon", "ctl"}),
        ("ctl", {"rpc", "http", "jobs", "store", "systemd", "definitions", "daemon", "config"}),
        # No climb back up from the job domain or the parts under it.
        ("jobs", {"rpc", "http", "daemon", "ctl"}),
        ("systemd", {"jobs", "rpc", "http", "daemon", "definitions", "store", "ctl"}),
        ("store", {"jobs", "rpc", "http", "daemon", "systemd", "definitions", "ctl"}),
        ("definitions", {"jobs", "rpc", "http", "daemon", "systemd", "store", "ctl"}),
    ],
)
def test_lower_layers_do_not_reach_up(lower: str, forbidden: set[str]) -> None:
    reached = {
        area(name)
        for module, imported in GRAPH.items()
        if area(module) == lower
        for name in imported
    }
    assert not reached & forbidden, f"{lower} imports {sorted(reached & forbidden)}"


def test_the_stdio_bridge_imports_only_the_standard_library_and_api_codes() -> None:
    """automd-stdio-bridge runs for every `automctl -H` call: nothing heavy (issue 20)."""
    ours = {name for name in GRAPH["automd.bridge"] if name.startswith("automd")}
    assert ours <= {"automd", "automd.__version__", "automd.api.codes",
                    "automd.api.codes.DEFAULT_SOCKET"}  # fmt: skip
    assert not {area(name) for name in GRAPH["automd.bridge"]} & {
        "ext:pydantic", "ext:dbus_fast", "ext:aiosqlite", "ext:httptools", "ext:systemd"
    }  # fmt: skip


def test_rpc_handlers_know_no_storage() -> None:
    """Handlers call use cases; rows and SQL stay below them (issue 14 §2)."""
    imported = GRAPH["automd.rpc.handlers"]
    assert not {name for name in imported if area(name) in ("ext:sqlite3", "store")}


def test_the_packages_form_no_cycle() -> None:
    """Between areas of automd, imports are a DAG (module-level cycles inside one area are
    the area's own business)."""
    edges: dict[str, set[str]] = {}
    for module, imported in GRAPH.items():
        edges.setdefault(area(module), set()).update(
            area(name)
            for name in imported
            if name.startswith("automd.") and area(name) != area(module)
        )
    graphlib.TopologicalSorter(edges).prepare()  # raises CycleError
