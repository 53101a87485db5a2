"""The definitions automd serves: per name, the active revision and any canary; reloading
swaps them atomically, errors kept for display.

Which revision is active is decided durably by automd/jobs/revisions.py and installed here;
without it (`reload()`), each file's definition serves as loaded, unnumbered.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from automd.definitions.loader import DefinitionError, LoadResult, load_definitions
from automd.definitions.model import Definition
from automd.definitions.revision import Rollout, takes_canary

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Served:
    """One definition as automd serves it: what new jobs run."""

    active: Definition
    #: The revision the file on disk holds (None: not numbered).
    file: int | None = None
    #: A new revision running `rollout.canary_percent` percent of new jobs.
    canary: Definition | None = None
    rollout: Rollout | None = None
    canary_since: float | None = None

    @property
    def diverged(self) -> bool:
        """Another revision is active than the one the file holds (a rollback)."""
        return self.file is not None and self.active.revision != self.file


def materialise(name: str, model_json: str, number: int, file: Definition) -> Definition:
    """Revision `number` of `name` from its stored model, with the file's schedules (timers
    follow the file). ValueError (pydantic's) if this automd cannot load it any more."""
    model = json.loads(model_json)
    return Definition.model_validate(
        {**model, "name": name, "schedules": file.schedules, "revision": number}
    )


class DefinitionRegistry:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._loaded = LoadResult({}, ())
        self._served: dict[str, Served] = {}
        self._spread: Counter[str] = Counter()  # new jobs per definition, for the canary share

    def reload(self) -> LoadResult:
        """Re-read the directory and serve each file as loaded (no revisions recorded)."""
        loaded = load_definitions(self.directory)
        self.install(loaded, {name: Served(d) for name, d in loaded.definitions.items()})
        return loaded

    def install(self, loaded: LoadResult, served: dict[str, Served]) -> None:
        """Serve `served` from now on. Jobs already submitted keep the plan frozen at submit."""
        self._loaded = loaded
        self._served = served
        log.info(
            "loaded %d job definitions from %s (%d files with errors)",
            len(served),
            self.directory,
            loaded.failed_files,
        )

    def replace(self, name: str, served: Served) -> None:
        """One definition's serving changed (a canary promoted or rolled back, a rollback)."""
        self._served = {**self._served, name: served}

    def get(self, name: str) -> Definition | None:
        """The active revision of `name`."""
        served = self._served.get(name)
        return None if served is None else served.active

    def served(self, name: str) -> Served | None:
        return self._served.get(name)

    @property
    def every(self) -> list[Served]:
        """Each loaded definition as it is served, by name."""
        return [self._served[name] for name in sorted(self._served)]

    def choose(self, name: str) -> Definition | None:
        """The revision a new job of `name` runs: the canary for its share, else the active."""
        served = self._served.get(name)
        if served is None or served.canary is None or served.rollout is None:
            return None if served is None else served.active
        count = self._spread[name]
        self._spread[name] = count + 1
        if takes_canary(served.rollout.canary_percent, count):
            return served.canary
        return served.active

    def revision_rows(self) -> list[tuple[str, int, int | None, bool]]:
        """(name, active revision, canary revision or None, diverged) of each numbered one."""
        return [
            (s.active.name, s.active.revision, None if s.canary is None else s.canary.revision,
             s.diverged)
            for s in self.every
            if s.active.revision is not None
        ]  # fmt: skip

    @property
    def file_definitions(self) -> dict[str, Definition]:
        """Each definition as its file holds it now."""
        return self._loaded.definitions

    @property
    def definitions(self) -> dict[str, Definition]:
        """The active revision of each loaded definition."""
        return {name: served.active for name, served in self._served.items()}

    @property
    def errors(self) -> tuple[DefinitionError, ...]:
        return self._loaded.errors
