"""The per-request context handed to every handler."""

from __future__ import annotations

from dataclasses import dataclass

from automd.peer import PeerCredentials


@dataclass(frozen=True, slots=True)
class CallContext:
    peer: PeerCredentials | None
    #: The reply may be streamed (a single request with an id); never in a batch.
    streaming: bool = False
