"""Job records as they are made: a new job's (its plan frozen, its secrets masked), and a
finished job's plan made anew under another revision of its definition (job.retry)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from automd.definitions.model import Definition
from automd.definitions.params import ParamValue
from automd.definitions.render import InvalidJobParameter, validate_params
from automd.errors import InvalidParams
from automd.jobs.ids import new_job_id
from automd.jobs.plan import SECRET_PLACEHOLDER, plan_json, redact
from automd.jobs.states import JobState
from automd.store.jobs import JobRecord


@dataclass(frozen=True)
class Caller:
    uid: int
    pid: int


def new_job_record(
    definition: Definition,
    values: Mapping[str, ParamValue],
    caller: Caller,
    idempotency_key: str | None,
    now: float,
    *,
    traceparent: str | None = None,
    log_rate_limit: tuple[float, int] | None = None,
) -> JobRecord:
    """A just-submitted job: queued, with its plan frozen and secret values masked."""
    return JobRecord(
        id=new_job_id(),
        definition=definition.name,
        params=redact(definition, values),
        plan=plan_json(definition, values, log_rate_limit=log_rate_limit),
        state=JobState.QUEUED,
        caller_uid=caller.uid,
        caller_pid=caller.pid,
        idempotency_key=idempotency_key,
        created_at=now,
        updated_at=now,
        attempts=0,
        max_attempts=definition.retry.max_attempts,  # the plan's retry policy
        next_attempt_at=None,
        cancel_requested=False,
        result=None,
        exit_code=None,
        signal=None,
        finished_at=None,
        traceparent=traceparent,
        revision=definition.revision,
    )


def replanned(
    job: JobRecord, definition: Definition, log_rate_limit: tuple[float, int]
) -> dict[str, Any]:
    """The job's plan and revision under `definition` (a revision of its own definition),
    from the params it recorded: the changes for its row."""
    if any(value == SECRET_PLACEHOLDER for value in job.params.values()):
        reason = "the job's secret values are not kept: submit it again instead"
        raise InvalidParams(data={"field": "revision", "reason": reason})
    try:
        values = validate_params(definition, job.params)
    except InvalidJobParameter as exc:
        reason = f"the current revision refuses the job's {exc.field}: {exc.reason}"
        raise InvalidParams(data={"field": "revision", "reason": reason}) from None
    plan = plan_json(definition, values, log_rate_limit=log_rate_limit)
    return {"plan": plan, "revision": definition.revision}


def request_fingerprint(definition: str, values: Mapping[str, ParamValue]) -> str:
    """What an idempotency key is bound to: the definition and the validated values."""
    return hashlib.sha256(json.dumps([definition, values], sort_keys=True).encode()).hexdigest()
