"""What every automctl verb gets (the client, output streams), and the verbs' own exceptions."""

from __future__ import annotations

from dataclasses import dataclass

from automd.ctl.client import RpcClient
from automd.ctl.render import Output


class UsageError(Exception):
    """The command line is wrong (an option's value, a key=value word): one line, Exit.USAGE."""


class JobStillRunning(Exception):
    """Ctrl-C while waiting for a job: automctl stops waiting, the job does not stop."""

    def __init__(self, job_id: str) -> None:
        super().__init__(job_id)
        self.job_id = job_id


@dataclass(frozen=True)
class Context:
    client: RpcClient
    out: Output
    err: Output
    json: bool
    #: automd is on another host (-H): uids there are not this machine's users.
    remote: bool = False
