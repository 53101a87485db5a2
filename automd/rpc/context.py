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
