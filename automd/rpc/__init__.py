"""JSON-RPC, knowing nothing of HTTP framing (automd.http carries it): dispatch, guard, handlers."""
