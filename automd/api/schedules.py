"""The models of the schedule.* methods: schedules, their timers and their firings."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import Field, StrictInt

from automd.api.definitions import DefinitionName
from automd.api.jobs import JobState, JobView
from automd.api.model import AuditNames, Params, Result

ScheduleName = Annotated[
    str, Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$", description="a schedule's name")
]


class ScheduleParams(Params):
    definition: DefinitionName
    schedule: ScheduleName

    def audit_names(self) -> AuditNames:
        return AuditNames(definition=self.definition)


class ScheduleFireParams(ScheduleParams):
    # StrictInt: a trigger time is microseconds since the epoch, never "5" or 5.0.
    trigger_usec: StrictInt | None = Field(
        None,
        ge=0,
        le=2**63 - 1,
        description="the timer's TRIGGER_TIMER_REALTIME_USEC: with the definition and schedule "
        "it is the firing's identity, so a second delivery creates no second job; null: now",
    )


class ScheduleFireResult(Result):
    outcome: Literal["created", "skipped"] = Field(
        description="created a job, or skipped it (overlap = skip, the previous job unfinished)"
    )
    replayed: bool = Field(description="an earlier delivery of the same firing did this")
    job: JobView | None = Field(description="the job the firing created; null when skipped")
    detail: str


class ScheduleView(Result):
    definition: str
    name: str
    calendar: str
    params: dict[str, object] = Field(description='the job\'s parameters; secrets as "***"')
    overlap: Literal["skip", "queue", "replace"]
    persistent: bool
    randomized_delay: str | None
    enabled: bool
    timer: str = Field(description="the systemd timer unit")
    timer_state: str | None = Field(description="the timer's ActiveState; null: not loaded")
    next_elapse: datetime | None = Field(description="when systemd fires it next")
    last_trigger: datetime | None = Field(description="when systemd last fired it")
    last_job: str | None = Field(description="the newest job the schedule created")
    last_state: JobState | None
    last_trigger_at: datetime | None = Field(description="the trigger time of that job")


class ScheduleListResult(Result):
    schedules: list[ScheduleView]


class ScheduleGetResult(Result):
    schedule: ScheduleView
