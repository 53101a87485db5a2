"""The currently loaded definitions; reloading swaps them atomically, errors kept for display."""

from __future__ import annotations

import logging
from pathlib import Path

from automd.definitions.loader import DefinitionError, LoadResult, load_definitions
from automd.definitions.model import Definition

log = logging.getLogger(__name__)


class DefinitionRegistry:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._loaded = LoadResult({}, ())

    def reload(self) -> LoadResult:
        """Re-read the directory. Jobs already submitted keep the plan frozen at submit."""
        self._loaded = load_definitions(self.directory)
        log.info(
            "loaded %d job definitions from %s (%d files with errors)",
            len(self._loaded.definitions),
            self.directory,
            self._loaded.failed_files,
        )
        return self._loaded

    def get(self, name: str) -> Definition | None:
        return self._loaded.definitions.get(name)

    @property
    def definitions(self) -> dict[str, Definition]:
        return self._loaded.definitions

    @property
    def errors(self) -> tuple[DefinitionError, ...]:
        return self._loaded.errors
