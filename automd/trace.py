"""W3C Trace Context (https://www.w3.org/TR/trace-context/): one trace id ties a caller's run,
automd's handling of its request and the job's own output together (docs/api.md, Tracing).

Also the request's log context: the Dispatcher sets it for the duration of each call, and
automd's log lines and audit entries take the trace id, caller and method from it.
"""

from __future__ import annotations

import random
import re
from contextvars import ContextVar
from dataclasses import dataclass

# version-traceid-parentid-flags, lowercase hex; version ff is invalid. (job.submit's param is
# stricter: api.jobs.TRACEPARENT_PATTERN, version 00 only.)
_TRACEPARENT = re.compile(r"^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?$")
_SAMPLED = "01"
# Trace and span ids must be unique, not secret: a PRNG seeded from the OS is enough, and
# costs a fraction of a getrandom() call per id (which was ~6% of a submit's CPU).
_RANDOM = random.Random()  # noqa: S311


@dataclass(frozen=True)
class TraceContext:
    trace_id: str
    span_id: str
    flags: str

    @property
    def traceparent(self) -> str:
        return f"00-{self.trace_id}-{self.span_id}-{self.flags}"

    def child(self) -> TraceContext:
        """The context for work done on behalf of this one: same trace, a new span."""
        return TraceContext(self.trace_id, _new_span_id(), self.flags)


def parse_traceparent(value: str | None) -> TraceContext | None:
    """The context a traceparent carries, or None if it is absent or invalid (the spec says
    to start a new trace then, not to fail the request)."""
    if value is None:
        return None
    match = _TRACEPARENT.match(value.strip())
    if match is None:
        return None
    version, trace_id, span_id, flags, rest = match.groups()
    if version == "ff" or (version == "00" and rest is not None):
        return None
    if trace_id == "0" * 32 or span_id == "0" * 16:
        return None
    return TraceContext(trace_id, span_id, flags)


def new_trace() -> TraceContext:
    """A new trace, started by automd because the caller sent none."""
    trace_id = _RANDOM.getrandbits(128) or 1  # all zeros is invalid
    return TraceContext(f"{trace_id:032x}", _new_span_id(), _SAMPLED)


def _new_span_id() -> str:
    return f"{_RANDOM.getrandbits(64) or 1:016x}"


class RequestLogContext:
    """Who asked for what, under which trace: added to every log line of the request.

    Without a caller's trace, a new one is made when first needed (a log line, a submit), so
    the hot read paths, which log nothing, do not pay for random ids they never show.
    """

    __slots__ = ("_trace", "method", "uid")

    def __init__(self, trace: TraceContext | None, method: str, uid: int | None) -> None:
        self._trace = trace
        self.method = method
        self.uid = uid

    @property
    def trace(self) -> TraceContext:
        if self._trace is None:
            self._trace = new_trace()
        return self._trace

    def journal_fields(self) -> dict[str, str]:
        fields = {"AUTOMD_TRACE_ID": self.trace.trace_id, "AUTOMD_METHOD": self.method}
        if self.uid is not None:
            fields["AUTOMD_CALLER_UID"] = str(self.uid)
        return fields


#: The request being handled in this task, if any.
CURRENT_REQUEST: ContextVar[RequestLogContext | None] = ContextVar("automd_request", default=None)


def current_trace() -> TraceContext | None:
    """The trace of the request being handled (the caller's, else a new one); None outside."""
    request = CURRENT_REQUEST.get()
    return None if request is None else request.trace
