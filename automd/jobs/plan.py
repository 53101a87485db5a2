"""What a job will run, frozen at submit: later definition reloads never change queued jobs."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic_core import to_json

from automd.definitions.model import Definition, RetryPolicy
from automd.definitions.params import ParamValue
from automd.definitions.render import render_argv, render_environment
from automd.sandbox import sandbox_for
from automd.systemd.spec import UnitSpec, UnitTemplate, check_command
from automd.trace import TraceContext

JOBS_SLICE = "automd-jobs.slice"
SECRET_PLACEHOLDER = "***"  # noqa: S105 (a mask, not a password)


class RunPlan(UnitTemplate):
    """What a job will run, frozen at submit: its unit template, plus what automd needs to
    run it (description, retry policy, the definition's concurrency)."""

    description: str
    retry: RetryPolicy
    concurrency: int | None


def make_plan(
    definition: Definition,
    values: Mapping[str, ParamValue],
    *,
    log_rate_limit: tuple[float, int] | None = None,
) -> RunPlan:
    """`log_rate_limit`: (interval seconds, burst) where the definition sets none.

    Only the command is made per job: the rest of the plan is fixed per definition (and
    per log rate limit, a setting a reload may change), made and validated once and kept by
    the definition (`Definition.derived`), so a reloaded definition gets new fixed parts.
    """
    argv, environment = _command(definition, values)
    template = _fixed(definition, log_rate_limit).template
    return template.model_copy(update={"argv": argv, "environment": environment})


def plan_json(
    definition: Definition,
    values: Mapping[str, ParamValue],
    *,
    log_rate_limit: tuple[float, int] | None = None,
) -> str:
    """`make_plan(...).model_dump_json()`, as a job stores it, without making the plan: only
    the command is serialised per job, the rest of the JSON once per fixed plan (the hot
    path of job.submit)."""
    argv, environment = _command(definition, values)
    head = b'{"argv":' + to_json(argv) + b',"environment":' + to_json(environment)
    return (head + _fixed(definition, log_rate_limit).json_tail).decode()


def _command(
    definition: Definition, values: Mapping[str, ParamValue]
) -> tuple[tuple[str, ...], dict[str, str]]:
    argv = render_argv(definition, values)
    environment = render_environment(definition, values)
    check_command(argv, environment)  # the template's own check, for each new command
    return argv, environment


@dataclass(frozen=True)
class _FixedPlan:
    """What every plan of a definition shares: the plan with the executable alone as its
    command, and its JSON after the command (RunPlan's first two fields)."""

    template: RunPlan
    json_tail: bytes


#: How a plan's JSON starts when its command is empty; what follows is the fixed part.
_EMPTY_COMMAND = b'{"argv":[],"environment":{}'


def _fixed(definition: Definition, log_rate_limit: tuple[float, int] | None) -> _FixedPlan:
    fixed = definition.derived(_fixed_plans)
    found = fixed.get(log_rate_limit)
    if found is None:
        template = _fixed_plan(definition, log_rate_limit)
        text = template.model_copy(update={"argv": (), "environment": {}}).model_dump_json()
        if not text.startswith(_EMPTY_COMMAND.decode()):
            raise RuntimeError("RunPlan's JSON must start with argv and environment")
        tail = text[len(_EMPTY_COMMAND) :].encode()
        found = fixed[log_rate_limit] = _FixedPlan(template, tail)
    return found


def _fixed_plans(definition: Definition) -> dict[tuple[float, int] | None, _FixedPlan]:
    """A definition's fixed plans, by the log rate limit they were made with (filled as
    submits ask for them)."""
    return {}


def _fixed_plan(definition: Definition, log_rate_limit: tuple[float, int] | None) -> RunPlan:
    """The plan of every job of `definition`, with the executable alone as its command."""
    limits = definition.limits
    interval, burst = log_rate_limit or (None, None)
    if limits.log_rate_limit_interval_seconds is not None:
        interval = limits.log_rate_limit_interval_seconds
    if limits.log_rate_limit_burst is not None:
        burst = limits.log_rate_limit_burst
    box = definition.sandbox
    runs_as_root = definition.user in ("root", "0")
    sandbox = {**sandbox_for(box.profile, runs_as_root=runs_as_root), **box.changes()}
    return RunPlan(
        description=definition.description or f"automd job {definition.name}",
        argv=(definition.executable,),
        environment={},
        working_directory=definition.working_directory,
        user=definition.user,
        memory_max=limits.memory_max,
        # CPUQuota=50% is 500ms of CPU time per second of wall time.
        cpu_quota_per_sec_usec=(
            None if limits.cpu_quota is None else round(limits.cpu_quota * 10_000)
        ),
        tasks_max=limits.tasks_max,
        runtime_max_usec=(
            None
            if limits.runtime_max_seconds is None
            else round(limits.runtime_max_seconds * 1_000_000)
        ),
        log_rate_limit_interval_usec=None if interval is None else round(interval * 1_000_000),
        log_rate_limit_burst=burst,
        sandbox=sandbox,
        read_write_paths=box.read_write_paths,
        state_directories=definition.directories.state,
        cache_directories=definition.directories.cache,
        logs_directories=definition.directories.logs,
        retry=definition.retry,
        concurrency=definition.concurrency,
    )


def redact(definition: Definition, values: Mapping[str, ParamValue]) -> dict[str, Any]:
    """The values as shown in job records and logs: secret parameters masked."""
    return {
        name: SECRET_PLACEHOLDER if definition.parameters[name].secret else value
        for name, value in values.items()
    }


def unit_name(definition: str, job_id: str, attempt: int) -> str:
    """automd-<definition>-<job id>-<attempt>.service: unique per attempt, so a restarted
    automd can never start the same attempt twice (systemd refuses a loaded name)."""
    return f"automd-{definition}-{job_id}-{attempt}.service"


def parse_unit_name(unit: str) -> tuple[str, int] | None:
    """(job id, attempt) of one of our unit names, else None."""
    if not (unit.startswith("automd-") and unit.endswith(".service")):
        return None
    parts = unit.removesuffix(".service").rsplit("-", 2)
    if len(parts) != 3 or len(parts[1]) != 26 or not parts[2].isdigit():
        return None
    return parts[1], int(parts[2])


def unit_spec(
    plan: RunPlan, *, definition: str, job_id: str, attempt: int, trace: TraceContext | None = None
) -> UnitSpec:
    """The unit of one attempt; `trace` (a span of the job's trace) becomes its TRACEPARENT,
    and the trace id a journal field of everything it logs."""
    tracing = {} if trace is None else {"TRACEPARENT": trace.traceparent}
    traced = {} if trace is None else {"AUTOMD_TRACE_ID": trace.trace_id}
    template = plan.model_dump(include=set(UnitTemplate.model_fields))
    return UnitSpec(
        **template
        | {
            "environment": {
                **plan.environment,
                "AUTOMD_JOB_ID": job_id,
                "AUTOMD_DEFINITION": definition,
                "AUTOMD_ATTEMPT": str(attempt),
                **tracing,
            }
        },
        name=unit_name(definition, job_id, attempt),
        description=f"{plan.description} (automd job {job_id}, attempt {attempt})",
        log_extra_fields={
            "AUTOMD_JOB_ID": job_id,
            "AUTOMD_DEFINITION": definition,
            "AUTOMD_ATTEMPT": str(attempt),
            **traced,
        },
        slice=JOBS_SLICE,
    )
