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
from automd.definitions.problems import problems

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
    #: Every problem of every file not loaded; a file may have several.
    errors: tuple[DefinitionError, ...]

    @property
    def failed_files(self) -> int:
        return len({error.file for error in self.errors})


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


def load_file(path: Path) -> Definition | list[DefinitionError]:
    """The file's definition, or every problem found in it (each with its key)."""
    name = path.stem
    if not re.fullmatch(NAME_PATTERN, name):
        reason = f"file name {name!r} is not a valid job name ({NAME_PATTERN})"
        return [DefinitionError(str(path), None, reason)]
    try:
        data = _read_toml(path)
    except ValueError as exc:
        return [DefinitionError(str(path), None, str(exc))]
    if "name" in data:
        reason = "the job's name is its file name; remove 'name'"
        return [DefinitionError(str(path), "name", reason)]
    try:
        return Definition.model_validate({**data, "name": name})
    except ValidationError as exc:
        return [DefinitionError(str(path), key, why) for key, why in problems(exc, Definition)]


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
        if isinstance(loaded, Definition):
            definitions[loaded.name] = loaded
            continue
        for error in loaded:
            log.error("job definition not loaded: %s", error)
        errors.extend(loaded)
    return LoadResult(definitions, tuple(errors))
