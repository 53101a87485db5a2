"""Definition revisions: the one owner of which revision serves each definition.

A reload records each loaded definition's revision (definitions/revision.py says what one
is) and decides what serves new jobs: a new revision becomes active, or the canary when its
file has a [rollout] table. As a canary's jobs finish, it is promoted or rolled back; an
admin may roll back by command. Every decision is committed (with its event, and the audit
entry of an automatic rollback) before the registry serves it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, replace

from automd.definitions.loader import LoadResult, load_definitions
from automd.definitions.model import Definition
from automd.definitions.registry import DefinitionRegistry, Served, materialise
from automd.definitions.revision import Rollout, canary_verdict, canonical_json, content_hash
from automd.errors import AutomdError, UnknownDefinition, UnknownRevision
from automd.jobs.ids import encode_ulid
from automd.jobs.tasks import TaskSet
from automd.store import revisions as rows
from automd.store.audit import AuditRecord
from automd.store.audit import insert as insert_audit
from automd.store.db import Store
from automd.store.jobs import JobRecord
from automd.store.revisions import DefinitionEvent, HeadRecord, RevisionRecord

log = logging.getLogger(__name__)


#: A definition's revisions and events (newest first), and its jobs per revision number.
History = tuple[list[RevisionRecord], list[DefinitionEvent], dict[int, int]]


@dataclass(frozen=True)
class Rollback:
    definition: str
    active: int
    previous: int
    file: int


class Revisions:
    def __init__(
        self, store: Store, registry: DefinitionRegistry, *, clock: Callable[[], float] = time.time
    ) -> None:
        self._store = store
        self._registry = registry
        self._clock = clock
        self._lock = asyncio.Lock()  # one decision at a time: each reads the head it changes
        self._tasks = TaskSet()
        #: Since start: rollbacks by (definition, reason: canary or command), promotions.
        self.rollbacks: Counter[tuple[str, str]] = Counter()
        self.promotions: Counter[str] = Counter()

    async def reload(self, source: str) -> LoadResult:
        """Read the definitions directory, record what it holds, serve it."""
        async with self._lock:
            loaded = load_definitions(self._registry.directory)
            now = self._clock()
            heads: dict[str, tuple[HeadRecord, RevisionRecord | None] | None]
            try:
                heads = await self._store.write(
                    lambda conn: {
                        name: _record_load(conn, definition, now, source)
                        for name, definition in loaded.definitions.items()
                    },
                    fail_fast=True,  # a full disk must not hold a start or a reload
                )
            except AutomdError as exc:
                # What the store already holds still decides (a rollback stands); a file
                # whose content it has not recorded serves as loaded, unnumbered.
                log.error("definition revisions not recorded (%s): files changed since serve "
                          "unnumbered until a reload records them", exc.message)  # fmt: skip
                heads = await self._store.read(
                    lambda conn: {
                        name: _recorded(conn, definition)
                        for name, definition in loaded.definitions.items()
                    }
                )
            served = {}
            for name, recorded in heads.items():
                definition = loaded.definitions[name]
                served[name] = (
                    Served(definition) if recorded is None else _serve(definition, *recorded)
                )
            self._registry.install(loaded, served)
            return loaded

    # --- canaries --------------------------------------------------------------------------

    def job_finished(self, job: JobRecord) -> asyncio.Task[None] | None:
        """A job reached a final state: if it ran a canary, judge the canary (the task)."""
        served = self._registry.served(job.definition)
        canary = None if served is None else served.canary
        if canary is not None and job.revision == canary.revision:
            return self._tasks.spawn(self._judge(job.definition))
        return None

    async def _judge(self, name: str) -> None:
        async with self._lock:
            served = self._registry.served(name)
            if served is None or served.canary is None or served.rollout is None:
                return
            canary, rollout, since = served.canary, served.rollout, served.canary_since or 0.0
            now = self._clock()
            verdict = await self._store.write(
                lambda conn: _judge_canary(conn, name, canary, rollout, since=since, now=now)
            )
            if verdict is None:
                return
            if verdict.event == "promoted":
                self.promotions[name] += 1
                log.info("definition %s: canary revision %s promoted (%s)", name,
                         canary.revision, verdict.detail)  # fmt: skip
                self._registry.replace(
                    name, replace(served, active=canary, canary=None, rollout=None)
                )
            else:
                self.rollbacks[(name, "canary")] += 1
                log.warning("definition %s: canary revision %s rolled back: %s", name,
                            canary.revision, verdict.detail)  # fmt: skip
                self._registry.replace(name, replace(served, canary=None, rollout=None))

    async def stop(self) -> None:
        await self._tasks.cancel_all()

    # --- rollback and reads ------------------------------------------------------------------

    async def rollback(self, name: str, number: int | None, actor: str) -> Rollback:
        """Make revision `number` (default: the one active before) active again."""
        async with self._lock:
            served = self._served(name)
            file = self._registry.file_definitions[name]
            current, file_number = served.active.revision, served.file
            assert current is not None
            assert file_number is not None
            record = await self._store.read(
                lambda conn: _rollback_target(conn, name, current, number)
            )
            # Loadable before anything is committed: a rollback that cannot serve is refused.
            if record.revision == file_number:
                active = _numbered(file, file_number)
            else:
                active = _load(name, record, file)
            target, now = record.revision, self._clock()
            await self._store.write(
                lambda conn: _rollback(conn, name, current, target, now=now, actor=actor),
                fail_fast=True,
            )
            self.rollbacks[(name, "command")] += 1
            log.warning("definition %s: revision %d active again (was %d), by %s", name, target,
                        current, actor)  # fmt: skip
            # A canary ends with the rollback.
            self._registry.replace(name, Served(active, file=file_number))
            return Rollback(name, target, current, file_number)

    async def revision(self, name: str, number: int | None) -> tuple[Definition, RevisionRecord]:
        """Revision `number` of a loaded definition (default: the active one)."""
        served = self._served(name)
        wanted = served.active.revision if number is None else number
        record = None
        if wanted is not None:
            record = await self._store.read(lambda conn: rows.load_revision(conn, name, wanted))
        if record is None:
            raise UnknownRevision(data={"definition": name, "revision": number})
        for known in (served.active, served.canary):
            if known is not None and known.revision == wanted:
                return known, record
        return _load(name, record, self._registry.file_definitions[name]), record

    async def history(self, name: str) -> History:
        """Every revision of a loaded definition, its last events, and its jobs per revision."""
        self._served(name)

        def read(conn: sqlite3.Connection) -> History:
            return (rows.revisions_of(conn, name), rows.events_of(conn, name),
                    rows.jobs_per_revision(conn, name))  # fmt: skip

        return await self._store.read(read)

    async def canary_results(self, name: str) -> tuple[int, int]:
        served = self._served(name)
        if served.canary is None or served.canary.revision is None:
            return 0, 0
        since, number = _first_id(served.canary_since or 0.0), served.canary.revision
        return await self._store.read(lambda conn: rows.canary_results(conn, name, number, since))

    def _served(self, name: str) -> Served:
        served = self._registry.served(name)
        if served is None or served.file is None:
            raise UnknownDefinition(data={"definition": name})
        return served


def _first_id(at: float) -> str:
    """The smallest job id created at or after `at` (ids start with their millisecond)."""
    return encode_ulid(int(at * 1000), 0)


def _load(name: str, record: RevisionRecord, file: Definition) -> Definition:
    try:
        return materialise(name, record.model, record.revision, file)
    except ValueError as exc:
        reason = f"this automd cannot load revision {record.revision} any more: {exc}"
        raise UnknownRevision(
            data={"definition": name, "revision": record.revision, "reason": reason}
        ) from None


def _numbered(file: Definition, number: int) -> Definition:
    """The file's definition as revision `number` (what it serves as, recorded)."""
    return file.model_copy(update={"revision": number})


def _serve(file: Definition, head: HeadRecord, active: RevisionRecord | None) -> Served:
    numbered = _numbered(file, head.file)
    if active is None:
        current = numbered
    else:
        try:
            current = materialise(file.name, active.model, active.revision, file)
        except ValueError as exc:  # stored by an older automd; the file's revision serves
            log.error("definition %s: revision %d not loadable, serving the file's: %s",
                      file.name, active.revision, exc)  # fmt: skip
            current = numbered
    if head.canary is None or head.rollout is None:
        return Served(current, file=head.file)
    rollout = Rollout.model_validate_json(head.rollout)
    return Served(current, head.file, numbered, rollout, head.canary_since)


def _record_load(
    conn: sqlite3.Connection, definition: Definition, now: float, source: str
) -> tuple[HeadRecord, RevisionRecord | None]:
    """In the writer's transaction: the file's revision (recorded if new), and the head it
    leads to; with the active revision's record when the file does not hold it."""
    name, model = definition.name, definition.normalised()
    digest = content_hash(model)
    number = rows.find_by_hash(conn, name, digest)
    if number is None:
        number = rows.insert_revision(
            conn, name, digest, canonical_json(model), at=now, source=source
        )
        rows.insert_event(conn, DefinitionEvent(name, number, now, "loaded", source, None))
    head = rows.load_head(conn, name)
    if head is None:
        head = HeadRecord(name, active=number, file=number)
        rows.insert_event(
            conn, DefinitionEvent(name, number, now, "activated", source, "first load")
        )
    elif head.file != number:
        if head.canary is not None:
            detail = f"the file now holds revision {number}"
            rows.insert_event(
                conn, DefinitionEvent(name, head.canary, now, "canary-stopped", source, detail)
            )
        head = HeadRecord(name, active=head.active, file=number)
        if number == head.active:
            pass  # the file caught up with a rollback: no longer diverged
        elif definition.rollout is not None:
            rollout = definition.rollout.model_dump_json()
            head = replace(head, canary=number, canary_since=now, rollout=rollout)
            detail = f"{definition.rollout.canary_percent:g}% of new jobs"
            rows.insert_event(
                conn, DefinitionEvent(name, number, now, "canary-started", source, detail)
            )
        else:
            head = replace(head, active=number)
            rows.insert_event(
                conn, DefinitionEvent(name, number, now, "activated", source, "the file changed")
            )
    rows.put_head(conn, head)
    return _with_active(conn, head)


def _with_active(
    conn: sqlite3.Connection, head: HeadRecord
) -> tuple[HeadRecord, RevisionRecord | None]:
    """The head, with the active revision's record when the file does not hold it."""
    if head.active == head.file:
        return head, None
    return head, rows.load_revision(conn, head.definition, head.active)


def _recorded(
    conn: sqlite3.Connection, definition: Definition
) -> tuple[HeadRecord, RevisionRecord | None] | None:
    """Read only: the head as recorded, if the file still holds the revision it names."""
    name = definition.name
    number = rows.find_by_hash(conn, name, content_hash(definition.normalised()))
    head = rows.load_head(conn, name)
    if number is None or head is None or head.file != number:
        return None
    return _with_active(conn, head)


def _judge_canary(
    conn: sqlite3.Connection, name: str, canary: Definition, rollout: Rollout, *,
    since: float, now: float,
) -> DefinitionEvent | None:  # fmt: skip
    """In the writer's transaction: the canary's verdict applied, as its event (None: none)."""
    head = rows.load_head(conn, name)
    number = canary.revision
    if head is None or number is None or head.canary != number:
        return None
    succeeded, failed = rows.canary_results(conn, name, number, _first_id(since))
    verdict = canary_verdict(rollout, succeeded, failed)
    if verdict is None:
        return None
    counts = f"{succeeded} succeeded, {failed} failed"
    if verdict == "promote":
        event = DefinitionEvent(name, number, now, "promoted", "automd", counts)
        head = HeadRecord(name, active=number, file=head.file)
    else:
        limit = f"more than {rollout.max_failure_rate:g} of its finished jobs failed"
        detail = f"{counts}: {limit}; revision {head.active} stays active"
        event = DefinitionEvent(name, number, now, "canary-failed", "automd", detail)
        insert_audit(conn, _rollback_audit(name, now, f"canary revision {number}: {detail}"))
        head = HeadRecord(name, active=head.active, file=head.file)
    rows.insert_event(conn, event)
    rows.put_head(conn, head)
    return event


def _rollback_audit(name: str, now: float, detail: str) -> AuditRecord:
    """automd's own entry for a rollback it decided (the caller is automd itself)."""
    return AuditRecord(
        id=None, at=now, uid=os.getuid(), gid=os.getgid(), pid=os.getpid(), process="automd",
        method="definition.rollback", definition=name, params=None, idempotency_key=None,
        job_id=None, outcome="ok", detail=detail,
    )  # fmt: skip


def _rollback_target(
    conn: sqlite3.Connection, name: str, current: int, number: int | None
) -> RevisionRecord:
    target = number if number is not None else rows.previously_active(conn, name, current)
    if target is None:
        reason = "no earlier revision was ever active"
        raise UnknownRevision(data={"definition": name, "revision": None, "reason": reason})
    record = rows.load_revision(conn, name, target)
    if record is None:
        raise UnknownRevision(data={"definition": name, "revision": target})
    return record


def _rollback(
    conn: sqlite3.Connection, name: str, current: int, target: int, *, now: float, actor: str
) -> None:
    """In the writer's transaction: revision `target` is active (a canary ends)."""
    head = rows.load_head(conn, name)
    assert head is not None  # a served definition has its head
    if head.canary is not None:
        rows.insert_event(
            conn, DefinitionEvent(name, head.canary, now, "canary-stopped", actor, "rolled back")
        )
    rows.put_head(conn, HeadRecord(name, active=target, file=head.file))
    detail = f"was revision {current}"
    rows.insert_event(conn, DefinitionEvent(name, target, now, "rollback", actor, detail))
