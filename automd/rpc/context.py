"""The per-request context handed to every handler."""

from __future__ import annotations

from dataclasses import dataclass

from automd.audit import AuditNote
from automd.peer import PeerCredentials
from automd.trace import TraceContext


@dataclass(frozen=True, slots=True)
class CallContext:
    peer: PeerCredentials | None
    #: The reply may be streamed (a single request with an id); never in a batch.
    streaming: bool = False
    #: The caller's trace (traceparent header); automd.trace.current_trace() is the one in
    #: effect (a new one when the caller sent none).
    trace: TraceContext | None = None
    #: The audit entry of a mutating call, set by the dispatcher (rpc/guard.py), which
    #: records it whatever the outcome; the use case fills in what it learns.
    audit: AuditNote | None = None
    #: The Idempotency-Key header as sent (latin-1), or None. Checked and applied in one place,
    #: where the dispatcher resolves a call's params (job.submit's idempotency_key).
    idempotency_key: str | None = None

    def with_audit(self, note: AuditNote) -> CallContext:
        """This context with `note` as its audit entry. Spelled out rather than
        dataclasses.replace, which costs a microsecond of introspection on every mutating call
        (tests/unit/test_guard.py checks that every field is carried over)."""
        return CallContext(self.peer, self.streaming, self.trace, note, self.idempotency_key)
