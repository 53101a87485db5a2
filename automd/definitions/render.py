"""Caller parameters -> validated values -> argv and environment, one element at a time.

No shell, no word splitting: each template element renders to exactly one argv element, so a
value can never add, remove or split arguments. systemd's own $VAR expansion is switched off
where the unit is built (ExecStartEx with no-env-expand).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from automd.definitions.model import ConditionalArgs, Definition
from automd.definitions.params import ParamError, ParamValue


class InvalidJobParameter(ValueError):
    def __init__(self, field: str, reason: str) -> None:
        self.field = field
        self.reason = reason
        super().__init__(f"{field}: {reason}")


def validate_params(definition: Definition, raw: Mapping[str, Any]) -> dict[str, ParamValue]:
    """Check every given value and fill defaults; unknown or missing names are errors."""
    unknown = sorted(set(raw) - set(definition.parameters))
    if unknown:
        raise InvalidJobParameter(f"params.{unknown[0]}", "unknown parameter")
    values: dict[str, ParamValue] = {}
    for name, spec in definition.parameters.items():
        if name in raw:
            try:
                values[name] = spec.validate_value(raw[name])
            except ParamError as exc:
                raise InvalidJobParameter(f"params.{name}", exc.reason) from None
        elif spec.default is not None:
            values[name] = spec.default
        elif spec.required:
            raise InvalidJobParameter(f"params.{name}", "required")
    return values


def _text(value: ParamValue) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _fill(template: str, values: Mapping[str, ParamValue]) -> str:
    # str.format_map on a parsed-at-load template: only {name} fields exist (model checks).
    return template.format_map({name: _text(value) for name, value in values.items()})


def _condition_holds(entry: ConditionalArgs, values: Mapping[str, ParamValue]) -> bool:
    value = values.get(entry.if_)
    return value is not None and value is not False


def render_argv(definition: Definition, values: Mapping[str, ParamValue]) -> tuple[str, ...]:
    """The full argv, executable first; each template element yields exactly one element."""
    argv = [definition.executable]
    for entry in definition.argv:
        if isinstance(entry, ConditionalArgs):
            if _condition_holds(entry, values):
                argv.extend(_fill(arg, values) for arg in entry.args)
        else:
            argv.append(_fill(entry, values))
    return tuple(argv)


def render_environment(definition: Definition, values: Mapping[str, ParamValue]) -> dict[str, str]:
    return {key: _fill(template, values) for key, template in definition.environment.items()}


def params_json_schema(definition: Definition) -> dict[str, Any]:
    """JSON Schema (draft 2020-12) of the `params` object job.submit takes for this definition."""
    properties: dict[str, Any] = {}
    required: list[str] = []
    for name, spec in definition.parameters.items():
        schema = spec.json_schema()
        if spec.description:
            schema["description"] = spec.description
        if spec.default is not None:
            schema["default"] = spec.default
        properties[name] = schema
        if spec.required and spec.default is None:
            required.append(name)
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": False,
    }
