"""JSON-RPC error codes and protocol constants; stdlib only so automctl can import it cheaply."""

from enum import IntEnum

#: Version of the JSON-RPC API (methods, params, results, error codes). See docs/api.md for
#: the compatibility policy: additions bump the minor version, removals or changes the major.
API_VERSION = "0.7.0"

#: Where the daemon listens when socket-activated by the shipped automd.socket.
DEFAULT_SOCKET = "/run/automd.sock"

#: HTTP path of the JSON-RPC endpoint.
RPC_PATH = "/rpc"

#: HTTP header that may carry job.submit's idempotency key (IETF httpapi draft "The
#: Idempotency-Key HTTP Header Field"; docs/api.md).
IDEMPOTENCY_KEY_HEADER = "Idempotency-Key"

#: Content type of a streamed reply: one JSON-RPC message per line (docs/api.md).
STREAM_CONTENT_TYPE = "application/x-ndjson"


class ErrorCode(IntEnum):
    """Every error code automd puts on the wire. Values are stable once published."""

    # JSON-RPC 2.0 standard codes.
    PARSE_ERROR = -32700
    INVALID_REQUEST = -32600
    METHOD_NOT_FOUND = -32601
    INVALID_PARAMS = -32602
    INTERNAL_ERROR = -32603

    # Transport-level errors (JSON-RPC's implementation-defined server-error range).
    SERVER_BUSY = -32000
    REQUEST_TOO_LARGE = -32001
    REQUEST_TIMEOUT = -32002
    UNSUPPORTED_MEDIA_TYPE = -32003
    BATCH_TOO_LARGE = -32004
    HTTP_METHOD_NOT_ALLOWED = -32005

    # Application errors.
    UNKNOWN_DEFINITION = 1001
    JOB_NOT_FOUND = 1002
    INVALID_JOB_STATE = 1003
    IDEMPOTENCY_CONFLICT = 1004
    QUEUE_FULL = 1005
    SYSTEMD_UNAVAILABLE = 1006
    PERMISSION_DENIED = 1007
    STORE_UNAVAILABLE = 1008
    UNKNOWN_SCHEDULE = 1009
    UNKNOWN_REVISION = 1010
