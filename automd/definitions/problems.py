"""A definition's validation errors in the definition's own terms: every one, by key.

pydantic reports in its own vocabulary ("Extra inputs are not permitted", "Input tag 'int'
found using 'type'...") and with locations that name union branches. An admin editing a TOML
file wants the key, what is wrong with it, and the likely fix (a misspelt key's near miss).
"""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails


def problems(exc: ValidationError, model: type[BaseModel]) -> list[tuple[str | None, str]]:
    """(key, reason) for each error, in file order as pydantic found them, one per key."""
    found: dict[str | None, str] = {}
    for error in exc.errors(include_url=False):
        path = _location(error["loc"])
        key = ".".join(str(part) for part in path) or None
        if key not in found:  # union branches report the same key once per branch
            found[key] = _reason(error, path, model)
    return list(found.items())


def _location(loc: tuple[int | str, ...]) -> list[int | str]:
    """The location without pydantic's union-branch tags ("str", "ConditionalArgs",
    "integer", "function-before[...]")."""
    kept: list[int | str] = []
    for part in loc:
        if isinstance(part, str) and (part in _BRANCH_TAGS or "[" in part):
            continue
        kept.append(part)
    return kept


_BRANCH_TAGS = {"str", "ConditionalArgs", "string", "integer", "boolean", "path"}


def _reason(error: ErrorDetails, path: list[int | str], model: type[BaseModel]) -> str:
    kind = error["type"]
    ctx = error.get("ctx") or {}
    if kind == "extra_forbidden":
        known = _keys_at(model, path[:-1])
        near = difflib.get_close_matches(str(path[-1]), known, n=1, cutoff=0.6)
        hint = f"; did you mean {near[0]!r}?" if near else ""
        return f"unknown key{hint}"
    if kind == "missing":
        return "required, and missing"
    if kind == "union_tag_invalid":
        expected = str(ctx.get("expected_tags", "")).replace("'", "")
        return f"type {ctx.get('tag')!r} is not a parameter type (one of: {expected})"
    if kind == "union_tag_not_found":
        return "needs a 'type' (string, integer, boolean or path)"
    if path and path[0] == "argv" and len(path) == 2 and kind in ("string_type", "model_type"):
        return 'an argument is a string, or { if = "param", args = [...] }'
    return str(error["msg"]).removeprefix("Value error, ")


def _keys_at(model: type[BaseModel], path: Iterable[int | str]) -> list[str]:
    """The keys a table at `path` may hold (all branches' keys, for a union)."""
    current: list[Any] = [model]
    for part in path:
        following: list[Any] = []
        for kind in _models_in(current):
            field = kind.model_fields.get(str(part)) if isinstance(part, str) else None
            if field is not None:
                following.append(field.annotation)
        for kind in current:
            if typing.get_origin(kind) is dict:  # a table of named entries: parameters.NAME
                following.append(typing.get_args(kind)[1])
        current = following
    return sorted(
        {
            field.alias or name
            for kind in _models_in(current)
            for name, field in kind.model_fields.items()
        }
    )


def _models_in(annotations: list[Any]) -> list[type[BaseModel]]:
    """The pydantic models among annotations, looking through unions, Optional and Annotated."""
    found: list[type[BaseModel]] = []
    pending = list(annotations)
    while pending:
        kind = pending.pop()
        origin = typing.get_origin(kind)
        if origin is typing.Annotated:
            pending.append(typing.get_args(kind)[0])
        elif origin in (typing.Union, types.UnionType):
            pending.extend(typing.get_args(kind))
        elif isinstance(kind, type) and issubclass(kind, BaseModel):
            found.append(kind)
    return found
