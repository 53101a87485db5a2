"""HTTP/1.1 serving: the connection (framing, limits, deadlines), the sites on it (the API
socket and the metrics listener), the accept loop and admission. JSON-RPC is rpc/'s."""
