"""Load jobs.d/*.toml into definitions, collecting (file, key, reason) for every bad file."""

from __future__ import annotations

import logging
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from automd.definitions.model import Definition
from automd.definitions.names import NAME_PATTERN
from automd.definitions.problems import problems
from automd.definitions.render import InvalidJobParameter, validate_params
from automd.definitions.schedule import Schedule

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


#: The model's fields a file may not set: automd fills them in.
_NOT_FROM_FILE = (
    ("name", "the job's name is its file name; remove 'name'"),
    ("revision", "automd numbers the revisions of a definition itself; remove 'revision'"),
    # The model's field, filled from [[schedule]] below only.
    ("schedules", "unknown key; did you mean 'schedule'?"),
)


def load_file(path: Path) -> Definition | list[DefinitionError]:
    """The file's definition (without the schedules that are bad), or every problem found in
    it (each with its key)."""
    loaded = load_with_schedules(path)
    return loaded[0] if isinstance(loaded, tuple) else loaded


def load_with_schedules(
    path: Path,
) -> tuple[Definition, list[DefinitionError]] | list[DefinitionError]:
    """The file's definition with the problems of the schedules it dropped, or every problem
    found in it (each with its key) when the definition itself is bad."""
    name = path.stem
    if not re.fullmatch(NAME_PATTERN, name):
        reason = f"file name {name!r} is not a valid job name ({NAME_PATTERN})"
        return [DefinitionError(str(path), None, reason)]
    try:
        data = _read_toml(path)
    except ValueError as exc:
        return [DefinitionError(str(path), None, str(exc))]
    refused = [DefinitionError(str(path), key, why) for key, why in _NOT_FROM_FILE if key in data]
    if refused:
        return refused
    raw_schedules = data.pop("schedule", [])
    try:
        definition = Definition.model_validate({**data, "name": name})
    except ValidationError as exc:
        return [DefinitionError(str(path), key, why) for key, why in problems(exc, Definition)]
    schedules, bad = load_schedules(definition, raw_schedules)
    errors = [DefinitionError(str(path), key, why) for key, why in bad]
    return definition.model_copy(update={"schedules": schedules}), errors


def load_schedules(
    definition: Definition, raw: Any
) -> tuple[tuple[Schedule, ...], list[tuple[str, str]]]:
    """The [[schedule]] tables that are valid, and (key, reason) for each one that is not.

    Each is checked alone, its params against the definition's parameters as a job.submit's
    would be, so one bad schedule leaves the definition and its other schedules working.
    """
    if not isinstance(raw, list):
        return (), [("schedule", "an array of tables: [[schedule]]")]
    good: list[Schedule] = []
    bad: list[tuple[str, str]] = []
    for index, table in enumerate(raw):
        label = f"schedule.{table.get('name', index) if isinstance(table, dict) else index}"
        if not isinstance(table, dict):
            bad.append((label, "a table: [[schedule]] with name, calendar, ..."))
            continue
        try:
            schedule = Schedule.model_validate(table)
            validate_params(definition, schedule.params)
        except ValidationError as exc:
            bad.extend((f"{label}.{key}" if key else label, why)
                       for key, why in problems(exc, Schedule))  # fmt: skip
            continue
        except InvalidJobParameter as exc:
            bad.append((f"{label}.{exc.field}", exc.reason))
            continue
        if any(known.name == schedule.name for known in good):
            bad.append((f"{label}.name", f"a second schedule named {schedule.name!r}"))
            continue
        good.append(schedule)
    return tuple(good), bad


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
        loaded = load_with_schedules(path)
        what = "job definition not loaded"
        if isinstance(loaded, tuple):
            definition, loaded = loaded
            definitions[definition.name] = definition
            what = "schedule not loaded"
        for error in loaded:
            log.error("%s: %s", what, error)
        errors.extend(loaded)
    return LoadResult(definitions, tuple(errors))
