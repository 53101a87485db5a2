"""W3C traceparent parsing and the spans automd makes."""

from __future__ import annotations

import re

import pytest

from automd.api.jobs import TRACEPARENT_PATTERN
from automd.trace import new_trace, parse_traceparent

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN = "00f067aa0ba902b7"


def test_a_valid_traceparent_is_parsed() -> None:
    trace = parse_traceparent(f"00-{TRACE}-{SPAN}-01")
    assert trace is not None
    assert (trace.trace_id, trace.span_id, trace.flags) == (TRACE, SPAN, "01")
    assert trace.traceparent == f"00-{TRACE}-{SPAN}-01"


def test_a_future_version_may_carry_more_fields() -> None:
    trace = parse_traceparent(f"01-{TRACE}-{SPAN}-01-something-new")
    assert trace is not None
    assert trace.trace_id == TRACE


@pytest.mark.parametrize(
    "value",
    [
        None,
        "",
        f"00-{TRACE}-{SPAN}-01-extra",  # version 00 has exactly four fields
        f"ff-{TRACE}-{SPAN}-01",  # version ff is invalid
        f"00-{'0' * 32}-{SPAN}-01",  # all-zero trace id
        f"00-{TRACE}-{'0' * 16}-01",  # all-zero parent id
        f"00-{TRACE.upper()}-{SPAN}-01",  # uppercase hex
        f"00-{TRACE[:-1]}-{SPAN}-01",
        f"00_{TRACE}_{SPAN}_01",
    ],
)
def test_invalid_traceparents_are_ignored(value: str | None) -> None:
    assert parse_traceparent(value) is None


def test_children_keep_the_trace_and_get_new_spans() -> None:
    parent = parse_traceparent(f"00-{TRACE}-{SPAN}-00")
    assert parent is not None
    first, second = parent.child(), parent.child()
    assert first.trace_id == second.trace_id == TRACE
    assert len({SPAN, first.span_id, second.span_id}) == 3
    assert first.flags == "00"


def test_new_traces_are_valid_and_distinct() -> None:
    traces = [new_trace() for _ in range(50)]
    assert len({t.trace_id for t in traces}) == 50
    for trace in traces:
        assert re.fullmatch(TRACEPARENT_PATTERN, trace.traceparent)
        assert parse_traceparent(trace.traceparent) == trace
