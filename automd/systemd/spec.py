"""What a job's transient unit is (UnitTemplate, UnitSpec) and its StartTransientUnit properties."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Self

from dbus_fast import Variant
from pydantic import BaseModel, ConfigDict, Field, model_validator

from automd.sandbox import DEFAULT_SANDBOX, dbus_value, protects_the_kernel

UNIT_PATH_PREFIX = "/org/freedesktop/systemd1/unit/"

# A strict subset of systemd's unit_name_is_valid(): a plain (non-template) service name.
_UNIT_NAME = re.compile(r"[A-Za-z0-9:_.\-]+\.service")
_UNIT_NAME_MAX = 255
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# journal_field_valid(): no leading '_' (trusted fields) or digit, at most 64 characters.
_JOURNAL_FIELD = re.compile(r"[A-Z][A-Z0-9_]{0,63}")


# Properties unit_properties() sets itself; a sandbox entry must not silently override them.
_CORE_PROPERTIES = frozenset(
    {
        "Description",
        "Type",
        "ExecStart",
        "ExecStartEx",
        "Environment",
        "LogExtraFields",
        "SyslogIdentifier",
        "Slice",
        "WorkingDirectory",
        "User",
        "DynamicUser",
        "MemoryMax",
        "CPUQuotaPerSecUSec",
        "TasksMax",
        "RuntimeMaxUSec",
        "LogRateLimitIntervalUSec",
        "LogRateLimitBurst",
        "CollectMode",
        "StateDirectory",
        "CacheDirectory",
        "LogsDirectory",
    }
)

_UINT64_MAX = 2**64 - 1


class UnitTemplate(BaseModel):
    """What a unit runs, as which user, under which limits and sandbox. A job's plan is one
    (jobs/plan.py's RunPlan, frozen at submit), and each attempt's UnitSpec is made of it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    argv: tuple[str, ...]
    environment: dict[str, str]
    working_directory: str | None = None
    user: str | None = None
    memory_max: int | None = None
    cpu_quota_per_sec_usec: int | None = None
    tasks_max: int | None = None
    runtime_max_usec: int | None = None
    # journald's rate limit of the unit's log lines (0 turns it off); None: journald's own.
    log_rate_limit_interval_usec: int | None = Field(None, ge=0, le=_UINT64_MAX)
    log_rate_limit_burst: int | None = Field(None, ge=0, le=2**32 - 1)
    sandbox: dict[str, bool | str] = Field(default_factory=lambda: dict(DEFAULT_SANDBOX))
    # Paths the job may write despite ProtectSystem=strict (ReadWritePaths=).
    read_write_paths: tuple[str, ...] = ()
    # Directories systemd creates and chowns to the job's user, by kind (definitions'
    # [directories]): relative names under /var/lib, /var/cache and /var/log.
    state_directories: tuple[str, ...] = ()
    cache_directories: tuple[str, ...] = ()
    logs_directories: tuple[str, ...] = ()

    @property
    def slow_to_set_up(self) -> bool:
        """Whether its sandbox protects the kernel: starts of such units are limited to
        jobs.max_starting at once (systemd/watch.py TrackedUnits)."""
        return protects_the_kernel(self.sandbox)

    @model_validator(mode="after")
    def _check(self) -> Self:
        check_command(self.argv, self.environment)
        if self.working_directory is not None and not self.working_directory.startswith("/"):
            raise ValueError(f"working_directory must be absolute: {self.working_directory!r}")
        for path in self.read_write_paths:
            if not path.startswith("/") or "\0" in path:
                raise ValueError(f"read_write_paths must be absolute: {path!r}")
        for name in self.state_directories + self.cache_directories + self.logs_directories:
            if name.startswith("/") or ".." in name.split("/") or "\0" in name or not name:
                raise ValueError(f"managed directories are relative names: {name!r}")
        for limit in ("memory_max", "cpu_quota_per_sec_usec", "tasks_max", "runtime_max_usec"):
            value = getattr(self, limit)
            if value is not None and not 0 < value <= _UINT64_MAX:
                raise ValueError(f"{limit} out of range: {value!r}")
        overridden = _CORE_PROPERTIES & set(self.sandbox)
        if overridden:
            raise ValueError(f"sandbox must not set {sorted(overridden)}")
        return self


def check_command(argv: tuple[str, ...], environment: Mapping[str, str]) -> None:
    """What a unit runs: an absolute executable, then arguments, and its environment; raises
    ValueError. Also for a template copied with a new command (jobs/plan.py), unvalidated."""
    if not argv or not argv[0].startswith("/"):
        raise ValueError(f"argv[0] must be an absolute executable path: {argv!r}")
    if any("\0" in arg for arg in argv):
        raise ValueError("argv must not contain NUL characters")
    for key, value in environment.items():
        if not _ENV_NAME.fullmatch(key) or "\0" in value:
            raise ValueError(f"invalid environment variable: {key!r}")


class UnitSpec(UnitTemplate):
    """One attempt run as a transient service: a template, named and labelled."""

    name: str
    description: str
    log_extra_fields: dict[str, str]
    slice: str = "automd-jobs.slice"

    @model_validator(mode="after")
    def _check_identity(self) -> Self:
        check_unit_name(self.name)
        for key in self.log_extra_fields:
            if not _JOURNAL_FIELD.fullmatch(key):
                raise ValueError(f"invalid journal field name (want [A-Z][A-Z0-9_]*): {key!r}")
        if not self.slice.endswith(".slice"):
            raise ValueError(f"not a slice: {self.slice!r}")
        return self


def check_unit_name(name: str) -> None:
    """Raise ValueError unless `name` is a plain service unit name systemd accepts."""
    if len(name) > _UNIT_NAME_MAX or not _UNIT_NAME.fullmatch(name) or name.startswith("."):
        raise ValueError(f"not a valid service unit name: {name!r}")


def unit_object_path(name: str) -> str:
    """systemd's object path for a unit: every byte outside [A-Za-z0-9] becomes _xx (hex)."""
    escaped = "".join(
        chr(byte) if chr(byte).isascii() and chr(byte).isalnum() else f"_{byte:02x}"
        for byte in name.encode()
    )
    return UNIT_PATH_PREFIX + escaped


def unit_properties(spec: UnitSpec) -> list[tuple[str, Variant]]:
    """The a(sv) property list for StartTransientUnit, with the types systemd 252 expects."""
    properties: list[tuple[str, Variant]] = [
        ("Description", Variant("s", spec.description)),
        # exec: the start job fails when the binary cannot be executed, instead of "started".
        ("Type", Variant("s", "exec")),
        # no-env-expand: argv is caller data and reaches the process byte for byte; plain
        # ExecStart would expand $VAR/${VAR} and turn $$ into $ (systemd-facts.md §1).
        ("ExecStartEx", Variant("a(sasas)", [[spec.argv[0], list(spec.argv), ["no-env-expand"]]])),
        ("Environment", Variant("as", [f"{k}={v}" for k, v in spec.environment.items()])),
        (
            "LogExtraFields",
            Variant("aay", [f"{k}={v}".encode() for k, v in spec.log_extra_fields.items()]),
        ),
        ("SyslogIdentifier", Variant("s", spec.name.removesuffix(".service"))),
        ("Slice", Variant("s", spec.slice)),
    ]
    if spec.working_directory is not None:
        properties.append(("WorkingDirectory", Variant("s", spec.working_directory)))
    if spec.user is None:
        properties.append(("DynamicUser", Variant("b", True)))
    else:
        properties.append(("User", Variant("s", spec.user)))
    limits = (
        ("MemoryMax", spec.memory_max),
        ("CPUQuotaPerSecUSec", spec.cpu_quota_per_sec_usec),
        ("TasksMax", spec.tasks_max),
        ("RuntimeMaxUSec", spec.runtime_max_usec),
    )
    properties += [(name, Variant("t", value)) for name, value in limits if value is not None]
    if spec.log_rate_limit_interval_usec is not None:
        properties.append(
            ("LogRateLimitIntervalUSec", Variant("t", spec.log_rate_limit_interval_usec))
        )
    if spec.log_rate_limit_burst is not None:
        properties.append(("LogRateLimitBurst", Variant("u", spec.log_rate_limit_burst)))
    if spec.read_write_paths:
        properties.append(("ReadWritePaths", Variant("as", list(spec.read_write_paths))))
    directories = (
        ("StateDirectory", spec.state_directories),
        ("CacheDirectory", spec.cache_directories),
        ("LogsDirectory", spec.logs_directories),
    )
    properties += [(name, Variant("as", list(dirs))) for name, dirs in directories if dirs]
    for name, value in spec.sandbox.items():
        properties.append((name, Variant(*dbus_value(name, value))))
    return properties
