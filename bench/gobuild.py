"""bench/'s Go programs: built offline into bench/.build, and the Go reference's inputs.

Both build in GOPATH mode (GO111MODULE=off) with Debian 12's Go 1.19: bench/loadgen from the
standard library alone, bench/goref against the Debian packages of fasthttp and go-sqlite3
under /usr/share/gocode (bench/apt-packages.txt, installed by `make bench`).
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
from pathlib import Path
from typing import Any

from automd.definitions.loader import load_definitions
from automd.definitions.params import StringParam
from automd.jobs.plan import make_plan
from automd.store.db import migrate

BENCH = Path(__file__).resolve().parent
BUILD = BENCH / ".build"
DEBIAN_GOPATH = "/usr/share/gocode"


def build(package: str) -> Path:
    """bench/PACKAGE built into bench/.build/PACKAGE, unless that is newer than its sources."""
    source = BENCH / package
    binary = BUILD / package
    newest = max(path.stat().st_mtime for path in source.glob("*.go"))
    if binary.exists() and binary.stat().st_mtime >= newest:
        return binary
    BUILD.mkdir(exist_ok=True)
    print(f"building bench/{package} ...", flush=True)
    env = {
        **os.environ,
        "GO111MODULE": "off",
        "GOPATH": DEBIAN_GOPATH,
        "GOCACHE": str(BUILD / "gocache"),
        "GOFLAGS": "",
    }
    subprocess.run(
        ["go", "build", "-o", str(binary), f"./{package}"], cwd=BENCH, env=env, check=True
    )
    return binary


def goref_definitions(definitions_dir: Path) -> dict[str, Any]:
    """automd's definitions as bench/goref reads them: string parameters and plan templates.

    The plan is automd's own (`make_plan`) with each parameter's value standing as `{NAME}`,
    which goref replaces in argv.
    """
    out: dict[str, Any] = {}
    for name, definition in load_definitions(definitions_dir).definitions.items():
        parameters = {}
        for param, spec in definition.parameters.items():
            if not isinstance(spec, StringParam) or _has_extras(spec):
                raise RuntimeError(
                    f"{name}.{param}: bench/goref takes plain string parameters only"
                )
            parameters[param] = {
                "type": "string",
                "required": spec.required,
                "min_length": spec.min_length,
                "max_length": spec.max_length,
            }
        placeholders = {param: f"{{{param}}}" for param in definition.parameters}
        plan = make_plan(definition, placeholders).model_dump(mode="json")
        out[name] = {"parameters": parameters, "plan": plan}
    return out


def _has_extras(spec: StringParam) -> bool:
    """Checks goref does not make: a pattern, a list of values, a default, relaxed text rules."""
    extras = (spec.pattern, spec.enum, spec.default)
    return extras != (None, None, None) or spec.allow_leading_dash or spec.allow_control_characters


def create_database(path: Path) -> None:
    """An empty database in automd's schema, made by automd's own migrations (WAL)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode = WAL")
        migrate(conn)
    finally:
        conn.close()


def goref_argv(binary: Path, sock: Path, db: Path, definitions_dir: Path) -> list[str]:
    """The command starting goref on SOCK over DB (created first) with automd's definitions."""
    create_database(db)
    definitions = db.parent / "goref-definitions.json"
    definitions.write_text(json.dumps(goref_definitions(definitions_dir)))
    return [str(binary), "-unix", str(sock), "-db", str(db), "-definitions", str(definitions)]
