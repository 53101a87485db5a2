"""A job definition: the fixed executable and argv template, parameters, limits and policy."""

from __future__ import annotations

import re
import string
from collections.abc import Callable, Mapping
from functools import cached_property
from typing import Annotated, Any, Literal, Self, TypeVar, cast

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from automd.definitions.names import NAME_PATTERN
from automd.definitions.params import ParamSpec
from automd.definitions.revision import NOT_IN_REVISION, Rollout
from automd.definitions.schedule import Schedule
from automd.sandbox import DEFAULT_PROFILE, Profile, SandboxValue, check_property

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_SIZE = re.compile(r"(\d+)\s*([KMGT]?)(i?B?)?", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}
_RESERVED_ENV = ("AUTOMD_", "TRACEPARENT")
T = TypeVar("T")


def _parse_size(value: Any) -> Any:
    """'512M', '2G', '1048576' or an integer -> bytes (binary units, like systemd)."""
    if isinstance(value, str):
        match = _SIZE.fullmatch(value.strip())
        if not match:
            raise ValueError("expected a size such as 512M, 2G or a number of bytes")
        return int(match.group(1)) * _SIZE_UNITS[match.group(2).upper()]
    return value


def _parse_percent(value: Any) -> Any:
    if isinstance(value, str) and value.strip().endswith("%"):
        return value.strip()[:-1]
    return value


Bytes = Annotated[int, BeforeValidator(_parse_size), Field(ge=1024 * 1024)]
Percent = Annotated[float, BeforeValidator(_parse_percent), Field(gt=0, le=100 * 1024)]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Limits(_Frozen):
    """Resource limits of each run (systemd MemoryMax=, CPUQuota=, TasksMax=, RuntimeMaxSec=,
    LogRateLimitIntervalSec=, LogRateLimitBurst=)."""

    memory_max: Bytes | None = Field(None, description="e.g. 512M; unset: no limit of its own")
    cpu_quota: Percent | None = Field(None, description="percent of one CPU, e.g. 50%; 200% = 2")
    tasks_max: int | None = Field(None, ge=1, le=1_000_000)
    runtime_max_seconds: float | None = Field(3600.0, gt=0, le=30 * 86400)
    # journald's per-unit rate limit (LogRateLimitIntervalSec=, LogRateLimitBurst=; 0 turns
    # it off); unset: automd.toml's jobs.log_rate_limit_*.
    log_rate_limit_interval_seconds: float | None = Field(None, ge=0, le=86400)
    log_rate_limit_burst: int | None = Field(None, ge=0, le=1_000_000_000)


RetryableResult = Literal["exit-code", "signal", "core-dump", "timeout", "oom-kill", "resources"]


class RetryPolicy(_Frozen):
    """When a failed run is tried again, and how long automd waits before each new attempt."""

    max_attempts: int = Field(1, ge=1, le=100, description="1 means no retries")
    initial_delay_seconds: float = Field(5.0, ge=0, le=86400)
    max_delay_seconds: float = Field(300.0, ge=0, le=7 * 86400)
    multiplier: float = Field(2.0, ge=1, le=10)
    jitter: float = Field(0.2, ge=0, le=1, description="± fraction of each delay, at random")
    on_results: tuple[RetryableResult, ...] = ("exit-code", "signal", "core-dump", "timeout")
    on_exit_codes: tuple[int, ...] | None = Field(
        None, description="if set, an exit-code failure is retried only for these codes"
    )


class Access(_Frozen):
    """Who may run the job besides root (enforced with polkit; see docs/definitions.md)."""

    allowed_users: tuple[str, ...] = ()
    allowed_groups: tuple[str, ...] = ()


class Sandbox(_Frozen):
    """The job's sandbox: a named profile (automd/sandbox.py), then these changes to it.
    An option left unset keeps the profile's value."""

    profile: Profile = Field(
        DEFAULT_PROFILE, description="strict, default or minimal (docs/systemd.md)"
    )
    private_network: bool = False
    read_write_paths: tuple[str, ...] = Field(
        (), description="absolute paths the job may write despite ProtectSystem=strict"
    )
    protect_system: Literal["strict", "full", "yes", "no"] | None = None
    protect_home: Literal["yes", "read-only", "tmpfs", "no"] | None = None
    private_tmp: bool | None = None
    private_devices: bool | None = None
    no_new_privileges: bool | None = None
    overrides: dict[str, bool | str] = Field(
        {},
        description="any other sandbox property, by its systemd name and in unit-file syntax, "
        "e.g. MemoryDenyWriteExecute = false for JIT runtimes, RestrictAddressFamilies = "
        '"AF_UNIX AF_NETLINK" for ip(8)',
    )

    @field_validator("overrides")
    @classmethod
    def _known_sandbox_properties(cls, overrides: dict[str, bool | str]) -> dict[str, bool | str]:
        for name, value in overrides.items():
            check_property(name, value)
        return overrides

    def changes(self) -> dict[str, SandboxValue]:
        """The properties this definition sets on top of its profile."""
        named = {
            "NoNewPrivileges": self.no_new_privileges,
            "ProtectSystem": self.protect_system,
            "ProtectHome": self.protect_home,
            "PrivateTmp": self.private_tmp,
            "PrivateDevices": self.private_devices,
        }
        chosen: dict[str, SandboxValue] = {k: v for k, v in named.items() if v is not None}
        return {**chosen, "PrivateNetwork": self.private_network, **self.overrides}

    @field_validator("read_write_paths")
    @classmethod
    def _absolute(cls, paths: tuple[str, ...]) -> tuple[str, ...]:
        for path in paths:
            if not path.startswith("/"):
                raise ValueError(f"{path!r} must be an absolute path")
        return paths


# A directory name under /var/lib, /var/cache or /var/log, as StateDirectory= takes it:
# relative, no "." or ".." component, no empty component.
_MANAGED_DIRECTORY = re.compile(
    r"[A-Za-z0-9_@+-][A-Za-z0-9._@+-]*(/[A-Za-z0-9_@+-][A-Za-z0-9._@+-]*)*"
)


class Directories(_Frozen):
    """Directories systemd creates for the job and hands to its user (a DynamicUser too),
    writable under ProtectSystem=strict and kept between runs: StateDirectory=,
    CacheDirectory=, LogsDirectory=. Names are relative: state = ["backups"] is
    /var/lib/backups."""

    state: tuple[str, ...] = Field((), description="under /var/lib (StateDirectory=)")
    cache: tuple[str, ...] = Field((), description="under /var/cache (CacheDirectory=)")
    logs: tuple[str, ...] = Field((), description="under /var/log (LogsDirectory=)")

    @field_validator("state", "cache", "logs")
    @classmethod
    def _relative_names(cls, names: tuple[str, ...]) -> tuple[str, ...]:
        for name in names:
            if not _MANAGED_DIRECTORY.fullmatch(name) or ".." in name.split("/"):
                raise ValueError(
                    f'{name!r}: a relative directory name, e.g. "backups" (no leading /, no ..)'
                )
        return names


class ConditionalArgs(_Frozen):
    """argv entries that appear only when a parameter is set (and, for booleans, true)."""

    if_: str = Field(alias="if")
    args: tuple[str, ...] = Field(min_length=1)


ArgvEntry = str | ConditionalArgs


def placeholders(template: str) -> list[str]:
    """Names in `{name}` placeholders of one template string ({{ and }} are literal braces)."""
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise ValueError(f"{template!r}: {exc}") from None
    names = []
    for _literal, field, spec, conversion in parsed:
        if field is None:
            continue
        if not re.fullmatch(r"[a-z_][a-z0-9_]*", field) or spec or conversion:
            raise ValueError(f"{template!r}: placeholders are {{name}} with a parameter name")
        names.append(field)
    return names


class Definition(_Frozen):
    """One allowlisted job, as declared in jobs.d/<name>.toml (the file name is the job name)."""

    name: Annotated[str, Field(pattern=f"^{NAME_PATTERN}$")]
    description: str = ""
    executable: str = Field(description="absolute path of the program; never a shell")
    argv: tuple[ArgvEntry, ...] = Field((), description="arguments after the executable")
    parameters: dict[str, ParamSpec] = {}
    environment: dict[str, str] = {}
    working_directory: str | None = None
    user: str | None = Field(None, description="run as this user; unset: a DynamicUser")
    limits: Limits = Limits()
    retry: RetryPolicy = RetryPolicy()
    concurrency: int | None = Field(
        None, ge=1, le=10_000, description="most runs at once of this definition"
    )
    sandbox: Sandbox = Sandbox()
    directories: Directories = Directories()
    access: Access = Access()
    #: The file's [[schedule]] tables that loaded; each is checked on its own (loader.py), so
    #: a bad one is reported and dropped while the definition and its other schedules load.
    schedules: tuple[Schedule, ...] = ()
    #: The file's [rollout] table: how a new revision is rolled out (revision.py).
    rollout: Rollout | None = None
    #: The revision number automd recorded for this content (jobs/revisions.py); None until
    #: recorded. Set by automd, never by the file (the loader refuses the key).
    revision: int | None = None

    @field_validator("executable")
    @classmethod
    def _absolute_executable(cls, value: str) -> str:
        if not value.startswith("/") or "{" in value:
            raise ValueError("must be an absolute path without placeholders")
        return value

    @field_validator("working_directory")
    @classmethod
    def _absolute_workdir(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith("/"):
            raise ValueError("must be an absolute path")
        return value

    @field_validator("parameters")
    @classmethod
    def _parameter_names(cls, params: dict[str, Any]) -> dict[str, Any]:
        for name in params:
            if not re.fullmatch(r"[a-z_][a-z0-9_]{0,63}", name):
                raise ValueError(f"parameter name {name!r}: use lowercase letters, digits and _")
        return params

    @field_validator("environment")
    @classmethod
    def _environment_names(cls, env: dict[str, str]) -> dict[str, str]:
        for key in env:
            if not _ENV_NAME.fullmatch(key):
                raise ValueError(f"{key!r} is not a valid environment variable name")
            if key.startswith(_RESERVED_ENV):
                raise ValueError(f"{key!r} is reserved for automd")
        return env

    @model_validator(mode="after")
    def _placeholders_name_parameters(self) -> Definition:
        templates: list[str] = list(self.environment.values())
        for entry in self.argv:
            if isinstance(entry, ConditionalArgs):
                if entry.if_ not in self.parameters:
                    raise ValueError(f"argv: 'if' names unknown parameter {entry.if_!r}")
                templates.extend(entry.args)
            else:
                templates.append(entry)
        for template in templates:
            for name in placeholders(template):
                if name not in self.parameters:
                    raise ValueError(f"{template!r} refers to unknown parameter {name!r}")
                spec = self.parameters[name]
                if not spec.required and spec.default is None and not self._guarded(name):
                    raise ValueError(
                        f"optional parameter {name!r} without a default may only appear "
                        "inside a conditional argv entry ({ if = ..., args = [...] })"
                    )
        return self

    def normalised(self) -> dict[str, Any]:
        """What a revision is (revision.py): JSON of the validated model, defaults filled in."""
        return self.model_dump(mode="json", by_alias=True, exclude=set(NOT_IN_REVISION))

    @cached_property
    def secret_names(self) -> frozenset[str]:
        """The parameters whose values are secret: never recorded, logged or shown to polkit."""
        return frozenset(name for name, spec in self.parameters.items() if spec.secret)

    def derived(self, make: Callable[[Definition], T]) -> T:
        """`make(self)`, made on first use and kept by this definition for its lifetime.

        For values that depend on the definition alone and cost too much to remake on every
        submit (jobs/plan.py's fixed part of each plan). Definitions are frozen, and a reload
        loads new ones, so a derived value can never outlive what it was derived from.
        """
        memo = self._derived
        if make not in memo:
            memo[make] = make(self)
        return cast(T, memo[make])

    @cached_property
    def _derived(self) -> dict[Callable[[Definition], Any], Any]:
        return {}

    def model_copy(self, *, update: Mapping[str, Any] | None = None, deep: bool = False) -> Self:
        """A copy derives its values anew: `update` may change what they derive from."""
        copied = super().model_copy(update=update, deep=deep)
        for name in ("_derived", "secret_names"):
            copied.__dict__.pop(name, None)
        return copied

    def _guarded(self, name: str) -> bool:
        in_plain = any(isinstance(e, str) and name in placeholders(e) for e in self.argv) or any(
            name in placeholders(v) for v in self.environment.values()
        )
        return not in_plain
