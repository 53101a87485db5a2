"""Store records -> the API's result models."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

from automd.api.definitions import (
    DefinitionErrorView,
    DefinitionEventView,
    DefinitionSummary,
    DefinitionView,
    RevisionStatus,
    RevisionSummary,
    RevisionView,
)
from automd.api.jobs import AttemptView, JobEventView, JobState, JobView
from automd.definitions.loader import DefinitionError
from automd.definitions.model import Definition
from automd.definitions.registry import Served
from automd.definitions.render import params_json_schema
from automd.jobs.plan import unit_name
from automd.store.jobs import AttemptRecord, EventRecord, JobRecord
from automd.store.revisions import DefinitionEvent, RevisionRecord


def _time(value: float) -> datetime:
    return datetime.fromtimestamp(value, UTC)


def _maybe_time(value: float | None) -> datetime | None:
    return None if value is None else _time(value)


def job_view(job: JobRecord) -> JobView:
    return JobView(
        id=job.id,
        definition=job.definition,
        state=JobState(job.state),
        params=job.params,
        created_at=_time(job.created_at),
        updated_at=_time(job.updated_at),
        finished_at=_maybe_time(job.finished_at),
        attempts=job.attempts,
        max_attempts=job.max_attempts,
        next_attempt_at=_maybe_time(job.next_attempt_at),
        cancel_requested=job.cancel_requested,
        caller_uid=job.caller_uid,
        result=job.result,
        exit_code=job.exit_code,
        signal=job.signal,
        outcome=job.outcome,
        unit=unit_name(job.definition, job.id, job.attempts) if job.attempts else None,
        idempotency_key=job.idempotency_key,
        traceparent=job.traceparent,
        schedule=job.schedule,
        trigger_at=_maybe_time(job.trigger_at),
        revision=job.revision,
    )


def attempt_view(attempt: AttemptRecord) -> AttemptView:
    return AttemptView(
        number=attempt.number,
        unit=attempt.unit,
        invocation_id=attempt.invocation_id,
        state=attempt.state,
        result=attempt.result,
        exit_code=attempt.exit_code,
        signal=attempt.signal,
        outcome_source=attempt.outcome_source,
        started_at=_time(attempt.started_at),
        finished_at=_maybe_time(attempt.finished_at),
        retry_reason=attempt.retry_reason,
        revision=attempt.revision,
    )


def event_view(event: EventRecord) -> JobEventView:
    return JobEventView(
        at=_time(event.at), attempt=event.attempt, state=event.state, detail=event.detail
    )


def definition_error_view(error: DefinitionError) -> DefinitionErrorView:
    return DefinitionErrorView(file=error.file, key=error.key, reason=error.reason)


def definition_summary(served: Served) -> DefinitionSummary:
    definition = served.active
    return DefinitionSummary(
        name=definition.name,
        description=definition.description,
        parameters=list(definition.parameters),
        revision=definition.revision,
        diverged=served.diverged,
    )


def _role(served: Served, number: int) -> Literal["active", "canary", "inactive"]:
    if number == served.active.revision:
        return "active"
    if served.canary is not None and number == served.canary.revision:
        return "canary"
    return "inactive"


def revision_view(record: RevisionRecord, served: Served) -> RevisionView:
    return RevisionView(
        number=record.revision, hash=record.hash, created_at=_time(record.created_at),
        source=record.source, role=_role(served, record.revision),
    )  # fmt: skip


def revision_summary(record: RevisionRecord, served: Served, jobs: int) -> RevisionSummary:
    return RevisionSummary(**revision_view(record, served).model_dump(), jobs=jobs)


def revision_status(served: Served, results: tuple[int, int]) -> RevisionStatus:
    """What serves the definition; `results`: the canary's (succeeded, failed) jobs."""
    rollout = served.rollout if served.canary is not None else None
    return RevisionStatus(
        active=served.active.revision or 0,
        file=served.file,
        canary=None if served.canary is None else served.canary.revision,
        diverged=served.diverged,
        canary_percent=None if rollout is None else rollout.canary_percent,
        canary_succeeded=results[0],
        canary_failed=results[1],
        promote_after_successes=None if rollout is None else rollout.promote_after_successes,
        max_failure_rate=None if rollout is None else rollout.max_failure_rate,
        min_finished=None if rollout is None else rollout.min_finished,
    )


def definition_event_view(event: DefinitionEvent) -> DefinitionEventView:
    return DefinitionEventView(
        at=_time(event.at), revision=event.revision, event=event.event, actor=event.actor,
        detail=event.detail,
    )  # fmt: skip


def definition_view(
    definition: Definition,
    revision: RevisionView | None = None,
    status: RevisionStatus | None = None,
) -> DefinitionView:
    dumped = definition.model_dump(mode="json", by_alias=True)
    return DefinitionView(
        name=definition.name,
        description=definition.description,
        executable=definition.executable,
        argv=dumped["argv"],
        params_schema=params_json_schema(definition),
        environment=definition.environment,
        working_directory=definition.working_directory,
        user=definition.user,
        limits=dumped["limits"],
        retry=dumped["retry"],
        concurrency=definition.concurrency,
        sandbox=dumped["sandbox"],
        access=dumped["access"],
        model=definition.normalised(),
        revision=revision,
        status=status,
    )
