"""The definition.* methods as callers ask for them: the served definitions, one revision,
a definition's history, and a rollback by command (revisions.py decides and records)."""

from __future__ import annotations

from automd.api.definitions import (
    DefinitionHistoryResult,
    DefinitionListResult,
    DefinitionRollbackResult,
    DefinitionView,
)
from automd.definitions.registry import DefinitionRegistry, Served
from automd.errors import UnknownDefinition, UnknownRevision
from automd.jobs import views
from automd.jobs.revisions import Revisions
from automd.peer import PeerCredentials


class DefinitionRequests:
    def __init__(self, registry: DefinitionRegistry, revisions: Revisions) -> None:
        self._registry = registry
        self._revisions = revisions

    def list(self) -> DefinitionListResult:
        return DefinitionListResult(
            definitions=[views.definition_summary(s) for s in self._registry.every],
            errors=[views.definition_error_view(e) for e in self._registry.errors],
        )

    async def get(self, name: str, number: int | None) -> DefinitionView:
        served = self._served(name)
        if served.file is None:  # unnumbered (no store): only what serves
            if number is not None:
                raise UnknownRevision(data={"definition": name, "revision": number})
            return views.definition_view(served.active)
        definition, record = await self._revisions.revision(name, number)
        results = await self._revisions.canary_results(name)
        return views.definition_view(
            definition,
            views.revision_view(record, served),
            views.revision_status(served, results),
        )

    async def history(self, name: str) -> DefinitionHistoryResult:
        served = self._served(name)
        records, events, jobs = await self._revisions.history(name)
        results = await self._revisions.canary_results(name)
        return DefinitionHistoryResult(
            definition=name,
            status=views.revision_status(served, results),
            revisions=[views.revision_summary(r, served, jobs.get(r.revision, 0)) for r in records],
            events=[views.definition_event_view(e) for e in events],
        )

    async def rollback(
        self, peer: PeerCredentials, name: str, number: int | None
    ) -> DefinitionRollbackResult:
        done = await self._revisions.rollback(name, number, actor=f"uid {peer.uid}")
        return DefinitionRollbackResult(
            definition=name,
            active=done.active,
            previous=done.previous,
            file=done.file,
            diverged=done.active != done.file,
        )

    def _served(self, name: str) -> Served:
        served = self._registry.served(name)
        if served is None:
            raise UnknownDefinition(data={"definition": name})
        return served
