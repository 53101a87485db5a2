"""What every automctl verb gets: the client, output streams, and the exit statuses."""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

from automd.ctl.client import RpcClient
from automd.ctl.render import Output


class Exit(IntEnum):
    """automctl's exit statuses (docs/automctl.md lists them).

    `run --wait` instead passes the job's own exit status through, like systemd-run --wait.
    """

    OK = 0
    FAILURE = 1  # the daemon reported an error, or health is degraded
    USAGE = 2  # invalid arguments
    NOT_FOUND = 3
    PERMISSION_DENIED = 4
    UNREACHABLE = 5  # no daemon at the socket, or it did not answer
    JOB_FAILED = 6  # a waited-for job failed without an exit status of its own


class UsageError(Exception):
    """The command line is wrong in a way argparse cannot see (e.g. a key=value word)."""


@dataclass(frozen=True)
class Context:
    client: RpcClient
    out: Output
    err: Output
    json: bool
