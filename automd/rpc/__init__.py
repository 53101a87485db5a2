"""Transport only: the HTTP/JSON-RPC endpoint, peer credentials, dispatch, thin handlers."""
