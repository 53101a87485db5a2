"""Daemon settings: the automd.toml schema, its documented defaults, and loading it."""

from __future__ import annotations

import os
import tomllib
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from automd.errors import ConfigError

DEFAULT_CONFIG_PATH = Path("/etc/automd/automd.toml")


class _Section(BaseModel):
    # Frozen so a loaded config can be shared freely; unknown keys are errors, not ignored.
    model_config = ConfigDict(frozen=True, extra="forbid")


PositiveSeconds = Annotated[float, Field(gt=0, le=86400)]

#: Marks a setting that a reload leaves as it is: a new value takes effect at the next start.
RESTART_ONLY: dict[str, Any] = {"restart_only": True}


class ServerSettings(_Section):
    """The HTTP/JSON-RPC endpoint on the Unix socket."""

    max_body_bytes: Annotated[int, Field(ge=1024, le=64 * 1024 * 1024)] = Field(
        1024 * 1024, description="Largest accepted request body, in bytes."
    )
    max_batch_size: Annotated[int, Field(ge=1, le=10_000)] = Field(
        100, description="Most calls accepted in one JSON-RPC batch."
    )
    max_connections: Annotated[int, Field(ge=1, le=100_000)] = Field(
        1024, description="Most client connections open at once; more are refused with HTTP 503."
    )
    max_connections_per_user: Annotated[int, Field(ge=1, le=100_000)] = Field(
        256,
        description="Most client connections one uid (root included) may hold open at once; "
        "more are refused with HTTP 503.",
    )
    max_log_followers: Annotated[int, Field(ge=1, le=10_000)] = Field(
        64,
        description="Most job.logs streams followed at once; each holds the journal files open.",
    )
    read_timeout_seconds: PositiveSeconds = Field(
        10.0, description="Time allowed to receive a request body once its headers arrived."
    )
    idle_timeout_seconds: PositiveSeconds = Field(
        60.0,
        json_schema_extra=RESTART_ONLY,
        description=(
            "An idle keep-alive connection, or one whose request headers are still incomplete, "
            "is closed after this long."
        ),
    )
    shutdown_timeout_seconds: PositiveSeconds = Field(
        10.0, description="On SIGTERM, how long in-flight requests may take to finish."
    )


class StateSettings(_Section):
    """Where automd keeps its SQLite state."""

    directory: Path = Field(
        Path("/var/lib/automd"),
        json_schema_extra=RESTART_ONLY,
        description="State directory (systemd's StateDirectory=automd); overridden by --state-dir.",
    )


class JobsSettings(_Section):
    """Job definitions and the queue."""

    definitions_directory: Path = Field(
        Path("/etc/automd/jobs.d"),
        description="Directory of job definitions (*.toml), re-read on reload.",
    )
    max_running: Annotated[int, Field(ge=1, le=10_000)] = Field(
        16, description="Most jobs starting or running at once, over all definitions."
    )
    max_starting: Annotated[int, Field(ge=0, le=128)] = Field(
        0,
        json_schema_extra=RESTART_ONLY,
        description="Most units being started at once whose sandbox protects the kernel "
        "(the `strict` profile, and every job that runs as root); 0: twice the CPUs automd may "
        "run on, at least 2. Other units are limited by max_running alone.",
    )
    max_unfinished: Annotated[int, Field(ge=1, le=10_000_000)] = Field(
        100_000,
        description="Most jobs queued, running or waiting to retry; job.submit beyond it "
        "fails with queue full (1005).",
    )
    idempotency_window_seconds: PositiveSeconds = Field(
        86400.0, description="How long an idempotency key is remembered."
    )
    log_rate_limit_interval_seconds: Annotated[float, Field(ge=0, le=86400)] = Field(
        30.0,
        description="journald's rate limit of each job unit's log lines: the interval "
        "(LogRateLimitIntervalSec=; 0 turns the limit off). A definition's [limits] may override.",
    )
    log_rate_limit_burst: Annotated[int, Field(ge=0, le=1_000_000_000)] = Field(
        10_000,
        description="Lines a job unit may log per interval before journald drops the rest "
        "(LogRateLimitBurst=; 0 turns the limit off). A definition's [limits] may override.",
    )
    self_check_seconds: PositiveSeconds = Field(
        10.0,
        description="How often the jobs holding run slots are compared with the units automd "
        "follows, and drift repaired (automd_job_repairs_total).",
    )


#: Most start jobs pending at once, of any kind: well under the ~512 pending jobs after which
#: systemd drops a client off the bus (systemd-facts.md §2).
MAX_STARTS = 128


def starts_in_flight(settings: JobsSettings) -> int:
    """How many units whose sandbox protects the kernel may be starting at once:
    jobs.max_starting, or twice the CPUs.

    Such a unit's forked child mounts over /proc/sys, /sys and more before the job runs; more
    of those set-ups at once than CPUs only slow each other down. Other units start faster
    the more systemd is given at once (docs/systemd.md, "Starts in flight")."""
    if settings.max_starting:
        return settings.max_starting
    return min(MAX_STARTS, max(2, 2 * len(os.sched_getaffinity(0))))


RetentionDays = Annotated[float, Field(ge=1, le=36500)]


class RetentionSettings(_Section):
    """How long finished jobs are kept: journald keeps their output, automd their record."""

    succeeded_days: RetentionDays = Field(
        30.0, description="Succeeded jobs are deleted this long after they finished."
    )
    failed_days: RetentionDays = Field(
        90.0,
        description="Failed, timed-out and unknown jobs are deleted this long after they "
        "finished: kept longer, for the post-mortem.",
    )
    cancelled_days: RetentionDays = Field(
        30.0, description="Cancelled jobs are deleted this long after they finished."
    )
    max_finished_jobs: Annotated[int, Field(ge=1000, le=100_000_000)] = Field(
        1_000_000,
        description="Most finished jobs kept; beyond it the oldest are deleted first, but "
        "never within jobs.idempotency_window_seconds of finishing.",
    )


class AccessSettings(_Section):
    """Who may call what, when polkit cannot say, and how long the audit trail is kept."""

    polkit: bool = Field(
        True,
        json_schema_extra=RESTART_ONLY,
        description="Ask polkit (actions org.automd.*). Off, or when polkit is unreachable, "
        "the group rules below decide.",
    )
    group: str = Field(
        "automd", description="Without polkit: members may read, run and cancel (own jobs)."
    )
    admin_group: str = Field(
        "automd-admin", description="Without polkit: members may also administer."
    )
    audit_retention_days: Annotated[float, Field(gt=0, le=36500)] = Field(
        90.0, description="Audit entries older than this are deleted."
    )


class LogLevel(StrEnum):
    DEBUG = "debug"
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"


class LogSettings(_Section):
    """automd's own log output (journald under systemd, stderr otherwise)."""

    level: LogLevel = Field(LogLevel.INFO, description="Lowest level logged.")


class Config(_Section):
    """The whole of automd.toml."""

    server: ServerSettings = ServerSettings()
    jobs: JobsSettings = JobsSettings()
    retention: RetentionSettings = RetentionSettings()
    access: AccessSettings = AccessSettings()
    state: StateSettings = StateSettings()
    log: LogSettings = LogSettings()


def restart_only(section: type[BaseModel], name: str) -> bool:
    extra = section.model_fields[name].json_schema_extra
    return isinstance(extra, dict) and bool(extra.get("restart_only"))


def reloaded(running: Config, loaded: Config) -> tuple[Config, list[str]]:
    """What a reload applies: `loaded`, with every restart-only setting kept as it runs; and
    the keys of the restart-only settings that changed (they wait for the next start)."""
    sections: dict[str, BaseModel] = {}
    waiting: list[str] = []
    for section_name in Config.model_fields:
        old, new = getattr(running, section_name), getattr(loaded, section_name)
        kept = {
            name: getattr(old, name)
            for name in type(new).model_fields
            if restart_only(type(new), name) and getattr(old, name) != getattr(new, name)
        }
        waiting += [f"{section_name}.{name}" for name in kept]
        sections[section_name] = new.model_copy(update=kept)
    return loaded.model_copy(update=sections), waiting


def load_config(path: Path | None) -> Config:
    """Load `path`, or the default path; a missing *default* file means every default applies.

    A file named explicitly (``--config``) must exist. Any problem raises ConfigError naming
    the file, the key and the reason.
    """
    explicit = path is not None
    path = path or DEFAULT_CONFIG_PATH
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        if explicit:
            raise ConfigError(str(path), None, "file not found") from None
        return Config()
    except OSError as exc:
        raise ConfigError(str(path), None, exc.strerror or str(exc)) from exc
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError(str(path), None, f"not UTF-8 text: {exc.reason}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(str(path), None, f"invalid TOML: {exc}") from exc
    return parse_config(data, source=str(path))


def parse_config(data: dict[str, Any], *, source: str) -> Config:
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        key = ".".join(str(part) for part in first["loc"]) or None
        reason = first["msg"]
        if first["type"] == "extra_forbidden":
            reason = "unknown setting"
        more = exc.error_count() - 1
        if more:
            reason += f" (and {more} more error{'s' if more > 1 else ''})"
        raise ConfigError(source, key, reason) from exc


def iter_settings(model: type[BaseModel] = Config, prefix: str = "") -> list[tuple[str, Any, str]]:
    """Every setting as (dotted key, default, description): the source docs are checked against."""
    rows: list[tuple[str, Any, str]] = []
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            rows.extend(iter_settings(annotation, f"{prefix}{name}."))
        else:
            rows.append((f"{prefix}{name}", field.default, field.description or ""))
    return rows
