"""The models of the definition.* methods: the allowlist of job definitions as callers see it."""

from __future__ import annotations

from typing import Annotated, Any

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


class DefinitionListResult(Result):
    definitions: list[DefinitionSummary]
    errors: list[DefinitionErrorView] = Field(description="files that were not loaded, and why")


class DefinitionGetParams(Params):
    name: DefinitionName

    def audit_names(self) -> AuditNames:
        return AuditNames(definition=self.name)


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
