"""automctl's exit statuses, in one place (docs/automctl.md's table; a test keeps them equal).

The job's own status passes through `run --wait` and `wait --success`, as with systemd-run
--wait, so automctl's own failures use sysexits.h's range (64-78): a job exiting 3 is not
"not found". Statuses 1 and 255 keep systemd-run's meanings.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Any

from automd.api.codes import ErrorCode
from automd.ctl.client import (
    ClientError,
    ConnectPermissionDenied,
    DaemonUnreachable,
    HostUnreachable,
    NoAnswer,
    RemoteError,
)


class Exit(IntEnum):
    OK = 0
    FAILURE = 1  # a waited-for job failed without a status of its own; health is degraded
    USAGE = 64  # EX_USAGE: invalid arguments or job parameters
    REFUSED = 65  # EX_DATAERR: the job's state or an earlier request does not allow it
    NOT_FOUND = 66  # EX_NOINPUT: no such job, definition or revision
    NOHOST = 68  # EX_NOHOST: -H: ssh could not reach the host or log in
    UNAVAILABLE = 69  # EX_UNAVAILABLE: automd (or systemd behind it) cannot be reached
    SOFTWARE = 70  # EX_SOFTWARE: automd (or automctl) failed unexpectedly
    TEMPFAIL = 75  # EX_TEMPFAIL: busy, queue full or no answer in time; try again later
    PROTOCOL = 76  # EX_PROTOCOL: an answer automctl does not understand
    NOPERM = 77  # EX_NOPERM: the socket or automd refused the caller
    INTERRUPTED = 130  # Ctrl-C, as a shell reports SIGINT (128 + 2)
    KILLED = 255  # the job was ended by a signal, as systemd-run --wait reports it


#: What each status means: docs/automctl.md's table and the man page show exactly these.
MEANINGS: dict[Exit, str] = {
    Exit.OK: "success (for `run --wait`: the job succeeded)",
    Exit.FAILURE: (
        "a waited-for job failed without an exit status of its own (as systemd-run); "
        "`health`: degraded"
    ),
    Exit.USAGE: (
        "invalid arguments (sysexits EX_USAGE): an option's value, a `key=value` word, or job"
        " parameters automd refused (-32602), or a request too large (-32001)"
    ),
    Exit.REFUSED: (
        "the job's state or an earlier request does not allow it (EX_DATAERR): `retry` of an "
        "unfinished job (1003), an idempotency key used with other parameters (1004)"
    ),
    Exit.NOT_FOUND: (
        "no such job, definition or revision (EX_NOINPUT; 1001, 1002, 1010); `defs diff`: no "
        "earlier revision to compare with"
    ),
    Exit.NOHOST: (
        "`-H`: ssh could not reach the host or log in (EX_NOHOST): ssh itself failed (status "
        "255: name not resolved, connection refused or timed out, host key not verified, "
        "authentication refused) or could not be run; automd there was not asked"
    ),
    Exit.UNAVAILABLE: (
        "automd cannot be reached: no socket, connection refused, or the connection closed "
        "without an answer because automd failed to start (EX_UNAVAILABLE); or automd cannot "
        "reach systemd (1006); with `-H`, also: no automd-stdio-bridge on the host"
    ),
    Exit.SOFTWARE: (
        "automd failed unexpectedly (EX_SOFTWARE; -32603): its journal says why; or automctl "
        "did (a bug, or an answer of a shape it does not know), said in one line"
    ),
    Exit.TEMPFAIL: (
        "try again later (EX_TEMPFAIL): no answer within `--timeout` (automd busy, or restarting "
        "after failed starts), automd busy (-32000, -32002), too many unfinished jobs (1005), "
        "or its state store cannot write (1008: a full disk)"
    ),
    Exit.PROTOCOL: (
        "an answer automctl does not understand, or a protocol error between the two "
        "(EX_PROTOCOL): e.g. -32601 from an automd older than automctl, or an error code "
        "automctl does not know"
    ),
    Exit.NOPERM: (
        "permission denied (EX_NOPERM): the socket refused the connection (not root and not "
        "in group `automd`; with `-H`, the ssh user on that host), or automd denied the call "
        "(1007)"
    ),
    Exit.INTERRUPTED: (
        "Ctrl-C (128 + SIGINT); a job being waited for runs on, and automctl says how to cancel it"
    ),
    Exit.KILLED: "`run --wait`, `wait --success`: a signal ended the job",
}


_BY_CODE = {
    ErrorCode.INVALID_PARAMS: Exit.USAGE,
    ErrorCode.UNKNOWN_DEFINITION: Exit.NOT_FOUND,
    ErrorCode.JOB_NOT_FOUND: Exit.NOT_FOUND,
    ErrorCode.UNKNOWN_REVISION: Exit.NOT_FOUND,
    ErrorCode.INVALID_JOB_STATE: Exit.REFUSED,
    ErrorCode.IDEMPOTENCY_CONFLICT: Exit.REFUSED,
    ErrorCode.QUEUE_FULL: Exit.TEMPFAIL,
    ErrorCode.SERVER_BUSY: Exit.TEMPFAIL,
    ErrorCode.REQUEST_TIMEOUT: Exit.TEMPFAIL,
    ErrorCode.SYSTEMD_UNAVAILABLE: Exit.UNAVAILABLE,
    ErrorCode.STORE_UNAVAILABLE: Exit.TEMPFAIL,
    ErrorCode.PERMISSION_DENIED: Exit.NOPERM,
    ErrorCode.REQUEST_TOO_LARGE: Exit.USAGE,
    ErrorCode.INTERNAL_ERROR: Exit.SOFTWARE,
}


def exit_for(error: ClientError) -> Exit:
    """The status of a failure of automctl's own (never a job's)."""
    if isinstance(error, HostUnreachable):
        return Exit.NOHOST
    if isinstance(error, NoAnswer):
        return Exit.TEMPFAIL
    if isinstance(error, DaemonUnreachable):
        return Exit.UNAVAILABLE
    if isinstance(error, ConnectPermissionDenied):
        return Exit.NOPERM
    if isinstance(error, RemoteError):
        return {int(code): status for code, status in _BY_CODE.items()}.get(
            error.code, Exit.PROTOCOL
        )
    return Exit.PROTOCOL


def job_exit_status(job: dict[str, Any]) -> int:
    """A finished job's status for the shell, as systemd-run --wait computes it."""
    if job["state"] == "succeeded":
        return int(Exit.OK)
    if job["signal"] is not None:
        return int(Exit.KILLED)
    if job["exit_code"]:
        return int(job["exit_code"])
    return int(Exit.FAILURE)
