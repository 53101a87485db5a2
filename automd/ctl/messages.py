"""automd's errors in the reader's words: one line saying what happened and what to do next.

The daemon answers with a code and structured `data` (docs/api.md, Error codes); this is the
one place that turns them into sentences, so every verb words the same error the same way.
"""

from __future__ import annotations

from typing import Any

from automd.api.codes import ErrorCode
from automd.ctl.client import ClientError, RemoteError

# A request field that failed validation -> the option the user typed it as.
_OPTIONS = {
    "limit": "-n/--limit",
    "tail": "-n/--lines",
    "attempt": "--attempt",
    "since": "--since",
    "uid": "--uid",
    "method": "--method",
    "outcome": "--outcome",
    "state": "--state",
    "idempotency_key": "--idempotency-key",
    "revision": "--current",  # job.retry's; definition.get's numbers are checked before
}


def describe(error: ClientError) -> str:
    """One line for stderr, without the "automctl: " prefix."""
    if not isinstance(error, RemoteError):
        return str(error)  # the client's transport errors are worded already
    data = error.data if isinstance(error.data, dict) else {}
    sentence = _SENTENCES.get(error.code)
    return sentence(error, data) if sentence else f"automd: {error}"


def _definition(error: RemoteError, data: dict[str, Any]) -> str:
    name = data.get("definition", error.params.get("name", ""))
    return f'no definition "{name}"; automctl defs lists them'


def _revision(error: RemoteError, data: dict[str, Any]) -> str:
    name = data.get("definition", error.params.get("name", ""))
    listed = f"automctl defs history {name} lists its revisions"
    if data.get("reason"):  # e.g. no earlier revision to roll back to
        return f"{name}: {data['reason']}; {listed}"
    revision = data.get("revision", error.params.get("revision", "?"))
    return f"{name} has no revision {revision}; {listed}"


def _job(error: RemoteError, data: dict[str, Any]) -> str:
    return f"no job {data.get('id', '')} (or it is not yours); automctl list shows your jobs"


def _state(error: RemoteError, data: dict[str, Any]) -> str:
    job, state = data.get("id", ""), data.get("state", "?")
    if data.get("operation") == "retry":
        return f"job {job} is {state}: only a finished job can be retried; automctl wait {job}"
    return f"job {job} is {state}, which does not allow {data.get('operation', 'this')}"


def _idempotency(error: RemoteError, data: dict[str, Any]) -> str:
    return (
        f'idempotency key "{data.get("idempotency_key", "")}" was used for job '
        f"{data.get('job', '?')} with other parameters; pick another key"
    )


def _queue_full(error: RemoteError, data: dict[str, Any]) -> str:
    limit = data.get("max_unfinished_jobs", "its limit of")
    return f"automd already has {limit} unfinished jobs; try again once some have finished"


def _systemd(error: RemoteError, data: dict[str, Any]) -> str:
    reason = f" ({data['reason']})" if data.get("reason") else ""
    return f"automd cannot reach systemd{reason}; automctl health shows more"


def _store(error: RemoteError, data: dict[str, Any]) -> str:
    reason = f" ({data['reason']})" if data.get("reason") else ""
    return (
        f"automd cannot write its state{reason}: nothing was recorded; try again once "
        "there is space (automctl health says why)"
    )


def _denied(error: RemoteError, data: dict[str, Any]) -> str:
    reason = f": {data['reason']}" if data.get("reason") else ""
    action = data.get("action", "this")
    return f"permission denied{reason}; an administrator can grant {action} (docs/polkit.md)"


def _invalid(error: RemoteError, data: dict[str, Any]) -> str:
    field, reason = data.get("field") or "", data.get("reason") or error.message
    value = error.params.get(field)
    if field == "id":
        return (
            f"{value!r} is not a job id (26 lowercase letters and digits); "
            "automctl list shows your jobs"
        )
    if field in ("name", "definition"):
        return f"{value!r} is not a definition name; automctl defs lists them"
    definition = error.params.get("definition", "")
    if field.startswith("params."):
        name = field.removeprefix("params.")
        if reason == "unknown parameter":
            return f'{definition} has no parameter "{name}"; automctl defs {definition} lists them'
        return f"{name}: {reason}; automctl defs {definition} describes its parameters"
    return f"{_OPTIONS.get(field, field or 'request')}: {reason}"


def _busy(error: RemoteError, data: dict[str, Any]) -> str:
    if "max_log_followers" in data:
        return f"automd already streams to {data['max_log_followers']} followers; try later"
    return "automd is busy (too many connections); try again shortly"


def _too_large(error: RemoteError, data: dict[str, Any]) -> str:
    limit = data.get("max_body_bytes", "its limit")
    return f"the request is larger than automd accepts ({limit} bytes); shorten the values"


def _internal(error: RemoteError, data: dict[str, Any]) -> str:
    return "automd failed unexpectedly; its journal says why (journalctl -u automd, as root)"


def _unknown_method(error: RemoteError, data: dict[str, Any]) -> str:
    return f"automd does not know {error.method}: it is older than automctl (automctl version)"


_SENTENCES = {
    int(ErrorCode.UNKNOWN_DEFINITION): _definition,
    int(ErrorCode.UNKNOWN_REVISION): _revision,
    int(ErrorCode.JOB_NOT_FOUND): _job,
    int(ErrorCode.INVALID_JOB_STATE): _state,
    int(ErrorCode.IDEMPOTENCY_CONFLICT): _idempotency,
    int(ErrorCode.QUEUE_FULL): _queue_full,
    int(ErrorCode.SYSTEMD_UNAVAILABLE): _systemd,
    int(ErrorCode.STORE_UNAVAILABLE): _store,
    int(ErrorCode.PERMISSION_DENIED): _denied,
    int(ErrorCode.INVALID_PARAMS): _invalid,
    int(ErrorCode.SERVER_BUSY): _busy,
    int(ErrorCode.REQUEST_TOO_LARGE): _too_large,
    int(ErrorCode.INTERNAL_ERROR): _internal,
    int(ErrorCode.METHOD_NOT_FOUND): _unknown_method,
}
