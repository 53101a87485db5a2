"""The dispatcher's guard: every method is authorized before it runs, and every mutating call
is in the audit trail (audit.list and its journal entry) whatever its outcome.

The real dispatcher, handlers, use cases, store and audit log; polkit and systemd are
stand-ins (the real ones: tests/integration/test_audit.py).
"""

from __future__ import annotations

import itertools
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

import pytest

from automd import log as automd_log
from automd.api.codes import ErrorCode
from automd.api.jobs import JobState
from automd.api.methods import METHODS
from automd.api.openrpc import build_document
from automd.api.system import ReloadResult
from automd.audit import DETAIL_MAX, AuditLog, AuditNote
from automd.authz import Authorizer
from automd.config import AccessSettings, JobsSettings
from automd.definitions.registry import DefinitionRegistry
from automd.errors import SystemdUnavailable
from automd.joblog import JobLogs
from automd.jobs.definition_requests import DefinitionRequests
from automd.jobs.output import JobOutput
from automd.jobs.queries import JobQueries
from automd.jobs.requests import JobRequests
from automd.jobs.revisions import Revisions
from automd.jobs.schedule_requests import ScheduleRequests
from automd.jobs.schedules import ScheduleService
from automd.jobs.service import Caller, JobService
from automd.peer import PeerCredentials
from automd.rpc.context import CallContext
from automd.rpc.guard import Guard
from automd.rpc.handlers import Handlers, Services
from automd.rpc.protocol import Dispatcher, StreamReply, decode_body, encode
from automd.store import jobs as rows
from automd.store.db import Store
from automd.system import SystemInfo
from automd.systemd.bus import SystemdBus
from automd.systemd.manager import Manager
from automd.systemd.timers import Timers
from automd.trace import TraceContext

ROOT, ALICE, CAROL, DEPLOY, STRANGER = 0, 51001, 51002, 51003, 54321
# Like the shipped rules and the per-job example of docs/polkit.md: alice may read, run and
# cancel; carol also administers; deploy may read, cancel, and run only "echo" with
# text=staging; the stranger may do nothing.
GRANTS = {ALICE: {"read", "run", "cancel"}, CAROL: {"read", "run", "cancel", "admin"},
          DEPLOY: {"read", "cancel"}}  # fmt: skip
DEFINITIONS = {
    "echo": 'executable = "/bin/echo"\nargv = ["{text}"]\n'
    '[parameters.text]\ntype = "string"\ndefault = "hi"\nmax_length = 10\n'
    '[[schedule]]\nname = "n"\ncalendar = "daily"\n',
    "deploy": 'executable = "/bin/true"\nargv = ["{token}"]\n'
    '[parameters.token]\ntype = "string"\nsecret = true\n',
}


async def rules(action: str, pid: int, uid: int, details: Mapping[str, str]) -> bool:
    permission = action.removeprefix("org.automd.")
    if uid == DEPLOY and permission == "run":
        return details.get("definition") == "echo" and details.get("param.text") == "staging"
    return permission in GRANTS.get(uid, set())


class StandInSystemd:
    """Only what cancel needs: stopping a running job's unit, which can fail."""

    def __init__(self) -> None:
        self.unavailable = False

    async def stop_unit(self, name: str) -> None:
        if self.unavailable:
            raise SystemdUnavailable(data={"reason": "stand-in: no bus"})


_pids = itertools.count(1000)


def peer(uid: int) -> PeerCredentials:
    """A new caller process of `uid`: its pid finds its audit entry (and misses the
    authorizer's cache, so each call is decided afresh)."""
    return PeerCredentials(pid=next(_pids), uid=uid, gid=uid, process="test")


@dataclass
class Stack:
    rpc: Dispatcher
    store: Store
    service: JobService
    systemd: StandInSystemd
    journal: list[dict[str, str]]
    #: The state directory's disk refuses writes (SQLITE_FULL) while set.
    full: bool = False

    async def call(self, who: PeerCredentials | None, method: str, params: Any = None) -> Any:
        request = {"jsonrpc": "2.0", "method": method, "id": 1}
        if params is not None:
            request["params"] = params
        answer = await self.rpc.handle(encode(request), CallContext(peer=who, streaming=True))
        assert not isinstance(answer, StreamReply)
        return decode_body(answer or b"")

    async def trail(self, who: PeerCredentials) -> list[dict[str, Any]]:
        """audit.list's entries (read by root) of the caller process `who`."""
        reply = await self.call(peer(ROOT), "audit.list", {"uid": who.uid, "limit": 1000})
        return [e for e in reply["result"]["entries"] if e["pid"] == who.pid]

    def journaled(self, who: PeerCredentials) -> list[dict[str, str]]:
        return [f for f in self.journal if f["AUTOMD_CALLER_PID"] == str(who.pid)]

    async def job(self, uid: int, state: JobState = JobState.QUEUED, **params: Any) -> str:
        """A job of `uid`'s, put in `state` directly in the store."""
        job, _ = await self.service.submit("echo", params, None, Caller(uid=uid, pid=1))
        if state is not JobState.QUEUED:
            await self.store.write(lambda conn: rows.update_job(conn, job.id, state=state,
                                                                attempts=1))  # fmt: skip
        return job.id


async def reload(peer: PeerCredentials) -> ReloadResult:
    return ReloadResult(definitions=2, errors=[])


@pytest.fixture
async def stack(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Stack]:
    (tmp_path / "jobs.d").mkdir()
    for name, text in DEFINITIONS.items():
        (tmp_path / "jobs.d" / f"{name}.toml").write_text(text)
    registry = DefinitionRegistry(tmp_path / "jobs.d")
    store = await Store.open(tmp_path / "state")
    revisions = Revisions(store, registry)
    await revisions.reload("start")
    systemd = StandInSystemd()
    jobs = JobService(store, registry, systemd, JobsSettings())  # type: ignore[arg-type]
    authz = Authorizer(rules, AccessSettings())
    audit = AuditLog(store, retention_days=1)
    services = Services(
        system=SystemInfo(store, Manager(SystemdBus())), jobs=JobRequests(jobs, registry, authz),
        queries=JobQueries(store), definitions=DefinitionRequests(registry, revisions),
        reload=reload, audit=audit,
        output=JobOutput(jobs, JobLogs()),
        schedules=ScheduleRequests(
            ScheduleService(store, registry, jobs, systemd),  # type: ignore[arg-type]
            registry, authz, Timers(Manager(SystemdBus())), store,
        ),
    )  # fmt: skip
    rpc = Dispatcher(METHODS, Handlers(services).table(), guard=Guard(authz, audit),
                     max_batch_size=10)  # fmt: skip
    # What would reach the journal: audit entries are records (automd/log.py), sent whatever
    # the log level.
    journal: list[dict[str, str]] = []
    monkeypatch.setattr(
        automd_log._Records, "sink", lambda level, message, fields: journal.append(dict(fields))
    )
    stack = Stack(rpc, store, jobs, systemd, journal)
    run = store.writer.run

    async def run_unless_full(fn: Any, *, fail_fast: bool = False) -> Any:
        if stack.full and fail_fast:  # as the writer answers a caller on a full disk
            error = sqlite3.OperationalError("database or disk is full")
            error.sqlite_errorcode = 13  # SQLITE_FULL
            raise error
        return await run(fn, fail_fast=fail_fast)

    monkeypatch.setattr(store.writer, "run", run_unless_full)
    try:
        yield stack
    finally:
        await store.close()


# --- every method is authorized ------------------------------------------------------------

# Valid params for every method, so that only authorization can stop the call.
PARAMS: dict[str, dict[str, Any]] = {
    "job.submit": {"definition": "echo", "params": {}},
    "job.get": {"id": "0" * 26},
    "job.logs": {"id": "0" * 26},
    "job.cancel": {"id": "0" * 26},
    "job.retry": {"id": "0" * 26},
    "definition.get": {"name": "echo"},
    "definition.history": {"name": "echo"},
    "definition.rollback": {"name": "echo", "revision": 1},
    "schedule.get": {"definition": "echo", "schedule": "n"},
    "schedule.run_now": {"definition": "echo", "schedule": "n"},
    "schedule.fire": {"definition": "echo", "schedule": "n", "trigger_usec": 1},
}


@pytest.mark.parametrize("method", sorted(METHODS))
async def test_every_method_denies_a_caller_without_permission(stack: Stack, method: str) -> None:
    stranger = peer(STRANGER)
    params = PARAMS.get(method, {})
    if method == "job.retry":  # the job is looked up first (others' jobs read as not found)
        params = {"id": await stack.job(STRANGER, JobState.FAILED)}
    reply = await stack.call(stranger, method, params)
    assert reply["error"]["code"] == ErrorCode.PERMISSION_DENIED, reply
    assert reply["error"]["data"]["action"] == f"org.automd.{METHODS[method].permission}"
    entries = await stack.trail(stranger)
    assert [(e["method"], e["outcome"], e["uid"]) for e in entries] == [
        (method, "denied", STRANGER)
    ]
    assert [f["AUTOMD_OUTCOME"] for f in stack.journaled(stranger)] == ["denied"]


async def test_a_caller_without_credentials_is_denied_and_recorded(stack: Stack) -> None:
    for method in ("job.submit", "job.get"):
        reply = await stack.call(None, method, PARAMS[method])
        assert reply["error"]["code"] == ErrorCode.PERMISSION_DENIED
    reply = await stack.call(peer(ROOT), "audit.list", {"outcome": "denied"})
    assert [(e["method"], e["uid"], e["detail"]) for e in reply["result"]["entries"]] == [
        ("job.get", -1, "caller credentials unavailable"),
        ("job.submit", -1, "caller credentials unavailable"),
    ]


async def test_without_the_run_permission_no_definition_is_revealed(stack: Stack) -> None:
    """job.submit asks the per-definition permission before saying "unknown definition", by
    name alone for one that is not loaded: a caller who may not run it cannot tell."""
    replies = [
        await stack.call(peer(who), "job.submit", {"definition": name})
        for who in (STRANGER, DEPLOY)
        for name in ("echo", "no-such-thing")
    ]
    assert {r["error"]["code"] for r in replies} == {ErrorCode.PERMISSION_DENIED}
    assert replies[0]["error"] == replies[1]["error"]
    assert replies[2]["error"] == replies[3]["error"]
    # A caller who may run anything learns that it does not exist.
    unknown = await stack.call(peer(ALICE), "job.submit", {"definition": "no-such-thing"})
    assert unknown["error"]["code"] == ErrorCode.UNKNOWN_DEFINITION


async def test_a_per_job_rule_decides_submit_and_retry_alike(stack: Stack) -> None:
    deploy = peer(DEPLOY)
    allowed = await stack.call(deploy, "job.submit",
                               {"definition": "echo", "params": {"text": "staging"}})  # fmt: skip
    job_id = allowed["result"]["job"]["id"]
    denied = await stack.call(peer(DEPLOY), "job.submit",
                              {"definition": "echo", "params": {"text": "prod"}})  # fmt: skip
    assert denied["error"]["code"] == ErrorCode.PERMISSION_DENIED
    # Retried with the params it was submitted with: the rule allows it again.
    assert (await stack.call(peer(DEPLOY), "job.cancel", {"id": job_id}))["result"]
    assert (await stack.call(peer(DEPLOY), "job.retry", {"id": job_id}))["result"]
    prod = await stack.job(DEPLOY, JobState.FAILED, text="prod")
    refused = await stack.call(peer(DEPLOY), "job.retry", {"id": prod})
    assert refused["error"]["code"] == ErrorCode.PERMISSION_DENIED


# --- every mutating call is audited, whatever its outcome -------------------------------

DOCUMENT = build_document()
_CODES = {name: error["code"] for name, error in DOCUMENT["components"]["errors"].items()}


def _errors(method: dict[str, Any]) -> set[int]:
    return {_CODES[ref["$ref"].rsplit("/", 1)[-1]] for ref in method["errors"]}


#: Errors any call can meet (transport, envelope): of those, a call that reached its method
#: can meet only these two.
_COMMON = set.intersection(*(_errors(m) for m in DOCUMENT["methods"]))
_REACHED = {ErrorCode.PERMISSION_DENIED, ErrorCode.INVALID_PARAMS}
#: (method, outcome) for every mutating method of the published document: success, and each
#: error it declares that a call can meet once its method is known.
OUTCOMES = sorted(
    (
        (method["name"], code)
        for method in DOCUMENT["methods"]
        if method["x-mutating"]
        for code in ({None} | _REACHED | (_errors(method) - _COMMON))
        if code != ErrorCode.INTERNAL_ERROR
    ),
    key=lambda outcome: (outcome[0], outcome[1] or 0),
)


@dataclass(frozen=True)
class Case:
    """How to get this outcome: `setup` makes what the call needs and returns its params."""

    who: int
    setup: Callable[[Stack], Awaitable[dict[str, Any]]]
    #: The job the entry must name, as returned by setup under "id" (job.submit's: its own).
    names_job: bool = True


def params(value: dict[str, Any]) -> Callable[[Stack], Awaitable[dict[str, Any]]]:
    async def setup(stack: Stack) -> dict[str, Any]:
        return value

    return setup


def on_job(uid: int, state: JobState, **job_params: Any) -> Callable[[Stack], Awaitable[Any]]:
    async def setup(stack: Stack) -> dict[str, Any]:
        return {"id": await stack.job(uid, state, **job_params)}

    return setup


async def _conflicting_key(stack: Stack) -> dict[str, Any]:
    first = {"definition": "echo", "params": {"text": "a"}, "idempotency_key": "k1"}
    assert "result" in await stack.call(peer(ALICE), "job.submit", first)
    return {**first, "params": {"text": "b"}}


async def _queue_full(stack: Stack) -> dict[str, Any]:
    await stack.job(ALICE, JobState.RUNNING)  # the one unfinished job allowed
    stack.service.settings = JobsSettings(max_unfinished=1)
    return {"definition": "echo"}


def _disk_full(
    make: Callable[[Stack], Awaitable[dict[str, Any]]],
) -> Callable[[Stack], Awaitable[dict[str, Any]]]:
    """`make`'s params, with the disk full from then on."""

    async def setup(stack: Stack) -> dict[str, Any]:
        call_params = await make(stack)
        stack.full = True
        return call_params

    return setup


def _schedule_queue_full(fire: dict[str, Any]) -> Callable[[Stack], Awaitable[dict[str, Any]]]:
    async def setup(stack: Stack) -> dict[str, Any]:
        await _queue_full(stack)
        return fire

    return setup


_FIRE = {"definition": "echo", "schedule": "n", "trigger_usec": 1_700_000_000_000_000}
_RUN_NOW = {"definition": "echo", "schedule": "n"}
_ROLLBACK = {"name": "echo", "revision": 1}


async def _systemd_away(stack: Stack) -> dict[str, Any]:
    stack.systemd.unavailable = True
    return {"id": await stack.job(ALICE, JobState.RUNNING)}


_E = ErrorCode
CASES: dict[tuple[str, int | None], Case] = {
    ("job.submit", None): Case(ALICE, params({"definition": "echo"}), names_job=False),
    ("job.submit", _E.PERMISSION_DENIED): Case(DEPLOY, params({"definition": "deploy"})),
    ("job.submit", _E.INVALID_PARAMS): Case(ALICE, params({"definition": "echo", "x": 1})),
    ("job.submit", _E.UNKNOWN_DEFINITION): Case(ALICE, params({"definition": "gone"})),
    ("job.submit", _E.IDEMPOTENCY_CONFLICT): Case(ALICE, _conflicting_key),
    ("job.submit", _E.QUEUE_FULL): Case(ALICE, _queue_full),
    ("job.submit", _E.STORE_UNAVAILABLE): Case(ALICE, _disk_full(params({"definition": "echo"}))),
    ("job.cancel", None): Case(ALICE, on_job(ALICE, JobState.QUEUED)),
    ("job.cancel", _E.PERMISSION_DENIED): Case(STRANGER, on_job(STRANGER, JobState.QUEUED)),
    ("job.cancel", _E.INVALID_PARAMS): Case(ALICE, params({"id": "not-a-job-id"})),
    ("job.cancel", _E.JOB_NOT_FOUND): Case(ALICE, on_job(CAROL, JobState.QUEUED)),
    ("job.cancel", _E.INVALID_JOB_STATE): Case(ALICE, on_job(ALICE, JobState.SUCCEEDED)),
    ("job.cancel", _E.SYSTEMD_UNAVAILABLE): Case(ALICE, _systemd_away),
    ("job.cancel", _E.STORE_UNAVAILABLE): Case(ALICE, _disk_full(on_job(ALICE, JobState.QUEUED))),
    ("job.retry", None): Case(ALICE, on_job(ALICE, JobState.FAILED)),
    ("job.retry", _E.PERMISSION_DENIED): Case(DEPLOY, on_job(DEPLOY, JobState.FAILED)),
    ("job.retry", _E.INVALID_PARAMS): Case(ALICE, params({"id": "0" * 26, "now": True})),
    ("job.retry", _E.JOB_NOT_FOUND): Case(ALICE, on_job(CAROL, JobState.FAILED)),
    ("job.retry", _E.INVALID_JOB_STATE): Case(ALICE, on_job(ALICE, JobState.RUNNING)),
    ("job.retry", _E.STORE_UNAVAILABLE): Case(ALICE, _disk_full(on_job(ALICE, JobState.FAILED))),
    ("schedule.fire", None): Case(CAROL, params(_FIRE)),
    ("schedule.fire", _E.PERMISSION_DENIED): Case(ALICE, params(_FIRE)),
    ("schedule.fire", _E.INVALID_PARAMS): Case(CAROL, params({**_FIRE, "trigger_usec": "1"})),
    ("schedule.fire", _E.UNKNOWN_DEFINITION): Case(CAROL, params({**_FIRE, "definition": "x"})),
    ("schedule.fire", _E.UNKNOWN_SCHEDULE): Case(CAROL, params({**_FIRE, "schedule": "x"})),
    ("schedule.fire", _E.QUEUE_FULL): Case(CAROL, _schedule_queue_full(_FIRE)),
    ("schedule.fire", _E.STORE_UNAVAILABLE): Case(CAROL, _disk_full(params(_FIRE))),
    ("schedule.run_now", None): Case(ALICE, params(_RUN_NOW)),
    ("schedule.run_now", _E.PERMISSION_DENIED): Case(DEPLOY, params(_RUN_NOW)),
    ("schedule.run_now", _E.INVALID_PARAMS): Case(ALICE, params({**_RUN_NOW, "now": True})),
    ("schedule.run_now", _E.UNKNOWN_DEFINITION): Case(
        ALICE, params({**_RUN_NOW, "definition": "x"})
    ),
    ("schedule.run_now", _E.UNKNOWN_SCHEDULE): Case(ALICE, params({**_RUN_NOW, "schedule": "x"})),
    ("schedule.run_now", _E.QUEUE_FULL): Case(ALICE, _schedule_queue_full(_RUN_NOW)),
    ("schedule.run_now", _E.STORE_UNAVAILABLE): Case(ALICE, _disk_full(params(_RUN_NOW))),
    ("definition.rollback", None): Case(CAROL, params(_ROLLBACK)),
    ("definition.rollback", _E.PERMISSION_DENIED): Case(ALICE, params(_ROLLBACK)),
    ("definition.rollback", _E.INVALID_PARAMS): Case(CAROL, params({**_ROLLBACK, "revision": 0})),
    ("definition.rollback", _E.UNKNOWN_DEFINITION): Case(CAROL, params({"name": "gone"})),
    # Revision 1 is the only one: there is no earlier one to go back to.
    ("definition.rollback", _E.UNKNOWN_REVISION): Case(CAROL, params({"name": "echo"})),
    ("definition.rollback", _E.STORE_UNAVAILABLE): Case(CAROL, _disk_full(params(_ROLLBACK))),
    ("system.reload", None): Case(CAROL, params({})),
    ("system.reload", _E.PERMISSION_DENIED): Case(ALICE, params({})),
    ("system.reload", _E.INVALID_PARAMS): Case(CAROL, params({"force": True})),
    ("system.reload", _E.STORE_UNAVAILABLE): Case(CAROL, _disk_full(params({}))),
}


@pytest.mark.parametrize(("method", "code"), OUTCOMES)
async def test_every_mutating_call_is_audited_whatever_its_outcome(
    stack: Stack, method: str, code: int | None
) -> None:
    case = CASES.get((method, code))
    assert case is not None, f"no case for {method} answering {code}: add one to CASES"
    call_params = await case.setup(stack)
    who = peer(case.who)
    reply = await stack.call(who, method, call_params)
    assert (reply.get("error") or {}).get("code") == code, reply
    stack.full = False
    entries = await stack.trail(who)
    outcome = "ok" if code is None else "denied" if code == _E.PERMISSION_DENIED else "error"
    if code == _E.STORE_UNAVAILABLE:  # the full disk refused the entry: the journal keeps it
        assert entries == []
        # A reload writes nothing but its entry: it was applied, only the entry was refused.
        happened = "ok" if method == "system.reload" else outcome
        journaled = stack.journaled(who)
        assert [(f["AUTOMD_METHOD"], f["AUTOMD_OUTCOME"]) for f in journaled] == [
            (method, happened)
        ]
        return
    assert [(e["method"], e["outcome"], e["uid"]) for e in entries] == [(method, outcome, who.uid)]
    entry = entries[0]
    if outcome == "error":
        assert entry["detail"].startswith(f"{code} ")
    if code != _E.INVALID_PARAMS:  # the entry names the job (and definition) it was about
        created = ("job.submit", "schedule.fire", "schedule.run_now")
        submitted = method in created and code is None
        job_id = reply["result"]["job"]["id"] if submitted else call_params.get("id")
        assert entry["job_id"] == job_id
        if method == "job.submit":
            assert entry["definition"] == call_params["definition"]
    journaled = stack.journaled(who)
    assert [(f["AUTOMD_METHOD"], f["AUTOMD_OUTCOME"]) for f in journaled] == [(method, outcome)]
    assert journaled[0].get("AUTOMD_JOB_ID") == (entry["job_id"] or None)


def test_every_case_is_an_outcome_of_the_document() -> None:
    # A case for an outcome the API no longer has is stale.
    assert set(CASES) <= set(OUTCOMES)


async def test_retry_of_another_users_job_is_audited(stack: Stack) -> None:
    """Issue 13 §4: as alice, job.retry of carol's job answered 1002 (right) but left no audit
    entry, while job.cancel of the same id was audited. Checked: fails on the build before the
    dispatcher recorded every mutating call (audit.list held nothing for alice's retry)."""
    carols = await stack.job(CAROL, JobState.SUCCEEDED)
    alice = peer(ALICE)
    reply = await stack.call(alice, "job.retry", {"id": carols})
    assert reply["error"]["code"] == ErrorCode.JOB_NOT_FOUND
    entries = await stack.trail(alice)
    assert [(e["method"], e["outcome"], e["job_id"]) for e in entries] == [
        ("job.retry", "error", carols)
    ]
    assert [f["AUTOMD_JOB_ID"] for f in stack.journaled(alice)] == [carols]


# --- what an entry records -------------------------------------------------------------------


async def test_invalid_params_are_recorded_by_field_and_reason_not_value(stack: Stack) -> None:
    alice = peer(ALICE)
    huge_key = "k" * 100_000
    reply = await stack.call(alice, "job.submit", {"definition": "echo", huge_key: "secret"})
    assert reply["error"]["code"] == ErrorCode.INVALID_PARAMS
    (entry,) = await stack.trail(alice)
    assert (entry["definition"], entry["params"], entry["job_id"]) == (None, None, None)
    assert entry["detail"].startswith("-32602 Invalid params: kkkk")
    assert entry["detail"].endswith("…[truncated]")
    assert len(entry["detail"]) == DETAIL_MAX


async def test_failed_submits_record_params_masked(stack: Stack) -> None:
    # A secret parameter of a known definition, and every value of an unknown one (which
    # would be secret is unknown), are masked; the job's definition-level reason is kept.
    calls = [
        (peer(ALICE), {"definition": "deploy", "params": {"token": "s3cr3t", "x": 1}}),
        (peer(ALICE), {"definition": "gone", "params": {"token": "s3cr3t"}}),
        (peer(ALICE), {"definition": "echo", "params": {"text": "x" * 11}}),
    ]
    entries = []
    for who, call_params in calls:
        reply = await stack.call(who, "job.submit", call_params)
        assert "error" in reply
        (entry,) = await stack.trail(who)
        entries.append((entry["params"], entry["detail"]))
    assert entries == [
        ({"token": "***", "x": 1}, "-32602 Invalid params: params.x: unknown parameter"),
        ({"token": "***"}, "1001 No such job definition"),
        ({"text": "x" * 11}, "-32602 Invalid params: params.text: must be 0 to 10 characters "
                             "long, not 11"),
    ]  # fmt: skip


async def test_a_submit_is_one_commit_with_its_audit_entry(stack: Stack) -> None:
    before = stack.store.writer.commits
    alice = peer(ALICE)
    reply = await stack.call(alice, "job.submit", {"definition": "echo", "idempotency_key": "a"})
    assert stack.store.writer.commits == before + 1
    (entry,) = await stack.trail(alice)
    job = reply["result"]["job"]
    assert (entry["outcome"], entry["job_id"], entry["idempotency_key"]) == ("ok", job["id"], "a")
    # A replay names the earlier job, also in one commit.
    replayer = peer(ALICE)
    before = stack.store.writer.commits
    again = await stack.call(replayer, "job.submit", {"definition": "echo", "idempotency_key": "a"})
    assert again["result"]["replayed"] is True
    assert stack.store.writer.commits == before + 1
    assert [e["job_id"] for e in await stack.trail(replayer)] == [job["id"]]


async def test_reads_are_not_recorded_unless_denied(stack: Stack) -> None:
    alice = peer(ALICE)
    job_id = await stack.job(ALICE)
    before = stack.store.writer.commits
    for method, call_params in [
        ("job.get", {"id": job_id}),
        ("job.list", {}),
        ("definition.get", {"name": "nope"}),
        ("job.get", {"id": "x"}),
    ]:
        await stack.call(alice, method, call_params)
    assert stack.store.writer.commits == before
    assert await stack.trail(alice) == []


async def test_an_unexpected_failure_is_recorded_as_an_internal_error(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(job_id: str, *, owner: int | None = None) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(stack.service, "cancel", broken)
    alice = peer(ALICE)
    job_id = await stack.job(ALICE)
    reply = await stack.call(alice, "job.cancel", {"id": job_id})
    assert reply["error"] == {"code": -32603, "message": "Internal error"}
    (entry,) = await stack.trail(alice)
    assert (entry["outcome"], entry["detail"], entry["job_id"]) == (
        "error", "-32603 Internal error", job_id,
    )  # fmt: skip


async def test_a_key_no_utf8_can_encode_is_recorded_escaped(stack: Stack) -> None:
    # Found by tests/daemon/test_fuzz.py: JSON may carry a lone surrogate, and the -32602
    # detail names the key; SQLite cannot store it as it is.
    alice = peer(ALICE)
    reply = await stack.call(alice, "job.submit", {"definition": "echo", "params": {"\ud800": 1}})
    assert reply["error"]["code"] == ErrorCode.INVALID_PARAMS
    (entry,) = await stack.trail(alice)
    assert entry["detail"] == "-32602 Invalid params: params.\\ud800: unknown parameter"


def test_a_context_given_its_audit_note_keeps_everything_else() -> None:
    """CallContext.with_audit spells its fields out (it runs on every mutating call): a field
    added to the context and not carried over would vanish from every mutating call."""
    peer = PeerCredentials(pid=7, uid=ALICE, gid=ALICE, process="ci")
    ctx = CallContext(
        peer=peer, streaming=True, trace=TraceContext("ab" * 16, "cd" * 8, "01"),
        audit=None, idempotency_key="key-1",
    )  # fmt: skip
    # Every field is set to something other than its default above, so none is missed.
    assert all(getattr(ctx, f.name) != f.default for f in fields(CallContext) if f.name != "audit")
    note = AuditNote(peer, "job.submit", 1.0)
    assert ctx.with_audit(note) == replace(ctx, audit=note)
