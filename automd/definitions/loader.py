"""Load jobs.d/*.toml into definitions, collecting (file, key, reason) for every bad file."""

from __future__ import annotations

import logging
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from automd.definitions.model import NAME_PATTERN, Definition

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DefinitionError:
    """Why one definition file was not loaded; the other files are unaffected."""

    file: str
    key: str | None
    reason: str

    def __str__(self) -> str:
        return (
            f"{self.file}: {self.key}: {self.reason}" if self.key else f"{self.file}: {self.reason}"
        )


@dataclass(frozen=True)
class LoadResult:
    definitions: dict[str, Definition]
    errors: tuple[DefinitionError, ...]


def _describe(exc: ValidationError) -> tuple[str | None, str]:
    first = exc.errors(include_url=False)[0]
    # Drop pydantic's union-branch tags ("string", "function-before[...]") from the location.
    loc = [
        str(part)
        for part in first["loc"]
        if not (isinstance(part, str) and ("[" in part or part in _UNION_TAGS))
    ]
    reason = "unknown key" if first["type"] == "extra_forbidden" else first["msg"]
    reason = reason.removeprefix("Value error, ")
    more = exc.error_count() - 1
    if more:
        reason += f" (and {more} more error{'s' if more > 1 else ''})"
    return (".".join(loc) or None), reason


_UNION_TAGS = {"str", "ConditionalArgs", "string", "integer", "boolean", "path"}


def _read_toml(path: Path) -> dict[str, Any]:
    """The file's TOML table; ValueError with the reason when it cannot be read or parsed."""
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ValueError(exc.strerror or str(exc)) from None
    except UnicodeDecodeError as exc:
        raise ValueError(f"not UTF-8 text: {exc.reason}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"invalid TOML: {exc}") from None


def load_file(path: Path) -> Definition | DefinitionError:
    name = path.stem
    if not re.fullmatch(NAME_PATTERN, name):
        reason = f"file name {name!r} is not a valid job name ({NAME_PATTERN})"
        return DefinitionError(str(path), None, reason)
    try:
        data = _read_toml(path)
    except ValueError as exc:
        return DefinitionError(str(path), None, str(exc))
    if "name" in data:
        return DefinitionError(str(path), "name", "the job's name is its file name; remove 'name'")
    try:
        return Definition.model_validate({**data, "name": name})
    except ValidationError as exc:
        key, reason = _describe(exc)
        return DefinitionError(str(path), key, reason)


def load_definitions(directory: Path) -> LoadResult:
    """Every *.toml in `directory`, sorted by name; a missing directory holds no definitions."""
    definitions: dict[str, Definition] = {}
    errors: list[DefinitionError] = []
    try:
        paths = sorted(directory.glob("*.toml"))
    except OSError as exc:
        errors.append(DefinitionError(str(directory), None, exc.strerror or str(exc)))
        paths = []
    for path in paths:
        loaded = load_file(path)
        if isinstance(loaded, DefinitionError):
            log.error("job definition not loaded: %s", loaded)
            errors.append(loaded)
        else:
            definitions[loaded.name] = loaded
    return LoadResult(definitions, tuple(errors))
