"""The one exception tree: every automd error, each carrying its JSON-RPC code."""

from __future__ import annotations

from typing import Any

from automd.api.codes import ErrorCode


class AutomdError(Exception):
    """Base of every error automd reports to a caller; `code` and `data` go on the wire."""

    code: ErrorCode = ErrorCode.INTERNAL_ERROR
    message: str = "Internal error"

    def __init__(self, message: str | None = None, data: Any = None) -> None:
        self.message = message or type(self).message
        self.data = data
        super().__init__(self.message)

    def to_wire(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": int(self.code), "message": self.message}
        if self.data is not None:
            error["data"] = self.data
        return error


class ParseError(AutomdError):
    code = ErrorCode.PARSE_ERROR
    message = "Parse error"


class InvalidRequest(AutomdError):
    code = ErrorCode.INVALID_REQUEST
    message = "Invalid Request"


class MethodNotFound(AutomdError):
    code = ErrorCode.METHOD_NOT_FOUND
    message = "Method not found"


class InvalidParams(AutomdError):
    code = ErrorCode.INVALID_PARAMS
    message = "Invalid params"


class InternalError(AutomdError):
    code = ErrorCode.INTERNAL_ERROR
    message = "Internal error"


class ServerBusy(AutomdError):
    code = ErrorCode.SERVER_BUSY
    message = "Server busy: too many connections"


class RequestTooLarge(AutomdError):
    code = ErrorCode.REQUEST_TOO_LARGE
    message = "Request body too large"


class RequestTimeout(AutomdError):
    code = ErrorCode.REQUEST_TIMEOUT
    message = "Request body not received in time"


class UnsupportedMediaType(AutomdError):
    code = ErrorCode.UNSUPPORTED_MEDIA_TYPE
    message = "Content-Type must be application/json"


class BatchTooLarge(AutomdError):
    code = ErrorCode.BATCH_TOO_LARGE
    message = "Batch too large"


class HttpMethodNotAllowed(AutomdError):
    code = ErrorCode.HTTP_METHOD_NOT_ALLOWED
    message = "Use POST for JSON-RPC requests"


class ConfigError(Exception):
    """A configuration file is unusable: names the file, the key and the reason."""

    def __init__(self, file: str, key: str | None, reason: str) -> None:
        self.file = file
        self.key = key
        self.reason = reason
        where = f"{file}: {key}" if key else file
        super().__init__(f"{where}: {reason}")


class StoreError(AutomdError):
    """The state store failed (an sqlite3 error translated at the store boundary).

    The sqlite3 detail goes to the journal through the exception chain, never on the wire.
    """

    message = "State store error"


class StoreUnavailable(StoreError):
    """The state store cannot write now: its disk is full or failing (`data["reason"]`).

    Nothing was recorded, so nothing was acknowledged; the call may be repeated once space
    is freed (system.health's store check says why; docs/api.md).
    """

    code = ErrorCode.STORE_UNAVAILABLE
    message = "The state store cannot write: the call was not recorded"


class SystemdUnavailable(AutomdError):
    """systemd's D-Bus API could not be reached or answered with an error."""

    code = ErrorCode.SYSTEMD_UNAVAILABLE
    message = "systemd is not reachable"


class UnknownDefinition(AutomdError):
    code = ErrorCode.UNKNOWN_DEFINITION
    message = "No such job definition"


class UnknownSchedule(AutomdError):
    code = ErrorCode.UNKNOWN_SCHEDULE
    message = "No such schedule"


class UnknownRevision(AutomdError):
    code = ErrorCode.UNKNOWN_REVISION
    message = "No such revision of this definition"


class JobNotFound(AutomdError):
    code = ErrorCode.JOB_NOT_FOUND
    message = "No such job"


class InvalidJobState(AutomdError):
    code = ErrorCode.INVALID_JOB_STATE
    message = "The job's state does not allow this"


class IdempotencyConflict(AutomdError):
    code = ErrorCode.IDEMPOTENCY_CONFLICT
    message = "Idempotency key already used for a different request"


class PermissionDenied(AutomdError):
    code = ErrorCode.PERMISSION_DENIED
    message = "Permission denied"


class QueueFull(AutomdError):
    code = ErrorCode.QUEUE_FULL
    message = "Too many unfinished jobs"


class SystemdRejected(AutomdError):
    """The service answered a D-Bus call with an error that is about the call itself (e.g.
    NoSuchUnit, InvalidArgs, AccessDenied): not an outage, so never retried as one. The
    errors that mean the service is unreachable become SystemdUnavailable instead
    (systemd/bus.py's table)."""

    code = ErrorCode.INTERNAL_ERROR  # provisional: a code of its own is for the API owner
    message = "systemd rejected the request"

    def __init__(self, dbus_error: str, detail: str = "", *, member: str = "") -> None:
        self.dbus_error = dbus_error
        self.detail = detail
        super().__init__(
            data={"reason": f"{member}: {dbus_error}: {detail}", "dbus_error": dbus_error}
        )


class UnitStartRejected(SystemdRejected):
    """StartTransientUnit was refused (InvalidArgs, UnitExists, ...): nothing was started."""

    code = ErrorCode.INTERNAL_ERROR  # provisional, as above
    message = "systemd refused to start the unit"


class PolkitUnavailable(AutomdError):
    """polkit could not give a decision (not on the bus, timed out, or failed): not a denial.

    Callers fall back to automd's group-based defaults and log why (`data["reason"]`).
    """

    code = ErrorCode.INTERNAL_ERROR
    message = "polkit is not reachable"
