"""Handlers stay a few lines over the use cases (conventions 1); authorization and the audit
trail around them are tests/unit/test_guard.py's."""

from __future__ import annotations

import ast
from pathlib import Path

import automd.rpc.handlers

SOURCE = Path(automd.rpc.handlers.__file__)


def test_handlers_import_neither_sqlite3_nor_the_store() -> None:
    tree = ast.parse(SOURCE.read_text())
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import)
                for alias in node.names}  # fmt: skip
    imported |= {node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert not {name for name in imported if name == "sqlite3" or name.startswith("automd.store")}


def test_no_handler_authorizes_or_audits_itself() -> None:
    # The dispatcher does both for every method (rpc/guard.py), so no handler can forget.
    text = SOURCE.read_text()
    for word in ("authz", "Authorizer", "Permission", "PermissionDenied", ".settle(", "record("):
        assert word not in text
