"""automctl's pure parts: key=value typing and exit statuses."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from automd.ctl.context import Exit, UsageError
from automd.ctl.main import build_parser
from automd.ctl.verbs import EXIT_KILLED, exit_status, parse_assignments, relative_time

SCHEMA = {
    "properties": {"n": {"type": "integer"}, "b": {"type": "boolean"}, "s": {"type": "string"}}
}


def test_assignments_are_typed_by_the_schema() -> None:
    params = parse_assignments(["n=3", "b=yes", "s=a=b c", "other=$(id)"], SCHEMA)
    assert params == {"n": 3, "b": True, "s": "a=b c", "other": "$(id)"}


@pytest.mark.parametrize(
    ("word", "message"),
    [
        ("n=x", "not an integer"),
        ("b=maybe", "true or false"),
        ("novalue", "expected key=value"),
        ("=v", "key=value"),
    ],
)
def test_bad_assignments(word: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        parse_assignments([word], SCHEMA)


def job(state: str, exit_code: int | None = None, signal: int | None = None) -> dict[str, Any]:
    return {"state": state, "exit_code": exit_code, "signal": signal}


@pytest.mark.parametrize(
    ("finished", "status"),
    [
        (job("succeeded", 0), 0),
        (job("succeeded", None), 0),
        (job("failed", 3), 3),
        (job("failed", None, 9), EXIT_KILLED),
        (job("timed_out", None, 15), EXIT_KILLED),
        (job("cancelled", None, 15), EXIT_KILLED),
        (job("failed", None, None), int(Exit.JOB_FAILED)),
        (job("unknown"), int(Exit.JOB_FAILED)),
    ],
)
def test_exit_status_passes_the_jobs_through(finished: dict[str, Any], status: int) -> None:
    assert exit_status(finished) == status


def test_global_options_before_or_after_the_verb() -> None:
    parser = build_parser()
    assert parser.parse_args(["--json", "status", "x"]).json is True
    assert parser.parse_args(["status", "x", "--json"]).json is True
    assert parser.parse_args(["show", "x"]).id == "x"


def test_relative_time() -> None:
    now = datetime(2026, 11, 22, 12, 0, 0, tzinfo=UTC)
    assert relative_time("2026-11-22T11:57:00Z", now) == "3min ago"
    assert relative_time("2026-11-22T12:00:30Z", now) == "30s from now"
    assert relative_time(None, now) == "-"
