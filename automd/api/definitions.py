"""The models of the definition.* methods: the allowlist of job definitions as callers see it."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import Field, JsonValue

from automd.api.model import AuditNames, Params, Result

DefinitionName = Annotated[
    str, Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$", description="a job definition's name")
]


class DefinitionErrorView(Result):
    file: str
    key: str | None
    reason: str


class DefinitionSummary(Result):
    name: str
    description: str
    parameters: list[str]
    revision: int | None = Field(None, description="the active revision")
    diverged: bool = Field(False, description="the file holds another revision (a rollback)")


class DefinitionListResult(Result):
    definitions: list[DefinitionSummary]
    errors: list[DefinitionErrorView] = Field(description="files that were not loaded, and why")


Revision = Annotated[int, Field(ge=1, le=2**31, description="a definition's revision number")]


class DefinitionGetParams(Params):
    name: DefinitionName
    revision: Revision | None = Field(None, description="default: the active revision")

    def audit_names(self) -> AuditNames:
        return AuditNames(definition=self.name)


class RevisionView(Result):
    number: int
    hash: str = Field(description="sha256 of the normalised model, hex")
    created_at: datetime = Field(description="when automd first loaded it")
    source: str = Field(description="what loaded it first: start, or a reload and by whom")
    role: Literal["active", "canary", "inactive"]


class RevisionStatus(Result):
    active: int = Field(description="the revision new jobs run")
    file: int | None = Field(description="the revision the file on disk holds")
    canary: int | None = Field(description="a new revision running a share of new jobs")
    diverged: bool = Field(description="active is not the file's revision (a rollback)")
    canary_percent: float | None
    canary_succeeded: int
    canary_failed: int
    promote_after_successes: int | None
    max_failure_rate: float | None
    min_finished: int | None = Field(None, description="canary jobs finished before judging")


class DefinitionView(Result):
    name: str
    description: str
    executable: str
    argv: list[JsonValue] = Field(description="the template after the executable")
    params_schema: dict[str, Any] = Field(description="JSON Schema of job.submit's params")
    environment: dict[str, str]
    working_directory: str | None
    user: str | None = Field(description="null: a DynamicUser")
    limits: dict[str, JsonValue]
    retry: dict[str, JsonValue]
    concurrency: int | None
    sandbox: dict[str, JsonValue]
    access: dict[str, list[str]] = Field(description="allowed_users, allowed_groups")
    model: dict[str, JsonValue] = Field(
        description="the normalised model the revision's hash covers (docs/definitions.md)"
    )
    revision: RevisionView | None = Field(description="null: automd keeps no revisions")
    status: RevisionStatus | None


class DefinitionParams(Params):
    name: DefinitionName

    def audit_names(self) -> AuditNames:
        return AuditNames(definition=self.name)


class RevisionSummary(RevisionView):
    jobs: int = Field(description="jobs recorded under this revision")


class DefinitionEventView(Result):
    at: datetime
    revision: int
    event: str = Field(
        description="loaded, activated, canary-started, promoted, canary-failed, "
        "canary-stopped or rollback"
    )
    actor: str | None = Field(description="what did it: start, a reload, automd, or uid N")
    detail: str | None


class DefinitionHistoryResult(Result):
    definition: str
    status: RevisionStatus
    revisions: list[RevisionSummary] = Field(description="newest first")
    events: list[DefinitionEventView] = Field(description="newest first, at most 100")


class DefinitionRollbackParams(Params):
    name: DefinitionName
    revision: Revision | None = Field(
        None, description="default: the revision that was active before the current one"
    )

    def audit_names(self) -> AuditNames:
        return AuditNames(definition=self.name)


class DefinitionRollbackResult(Result):
    definition: str
    active: int
    previous: int = Field(description="the revision that was active before")
    file: int | None
    diverged: bool
