"""Every method is authorized: a caller without permission is denied, and it is audited."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from automd.api.codes import ErrorCode
from automd.api.methods import METHODS, ReloadResult
from automd.audit import AuditLog
from automd.authz import AccessSettings, Authorizer
from automd.definitions.registry import DefinitionRegistry
from automd.joblog import JobLogs
from automd.jobs.output import JobOutput
from automd.jobs.queries import JobQueries
from automd.jobs.service import JobService, JobSettings
from automd.peer import PeerCredentials
from automd.rpc.context import CallContext
from automd.rpc.handlers import Handlers, Services
from automd.rpc.protocol import Dispatcher, StreamReply, decode_body, encode
from automd.store import audit as audit_rows
from automd.store.db import Store
from automd.system import SystemInfo
from automd.systemd.bus import SystemdBus

# Valid params for every method, so that only authorization can stop the call.
PARAMS: dict[str, dict[str, Any]] = {
    "job.submit": {"definition": "echo", "params": {}},
    "job.get": {"id": "0" * 26},
    "job.logs": {"id": "0" * 26},
    "job.cancel": {"id": "0" * 26},
    "job.retry": {"id": "0" * 26},
    "definition.get": {"name": "echo"},
}
STRANGER = PeerCredentials(pid=4242, uid=54321, gid=54321)  # no user, no groups


async def deny_all(action: str, pid: int, uid: int, details: object) -> bool:
    return False


@pytest.fixture
async def dispatcher(tmp_path: Path) -> AsyncIterator[tuple[Dispatcher, Store]]:
    (tmp_path / "jobs.d").mkdir()
    (tmp_path / "jobs.d" / "echo.toml").write_text('executable = "/bin/echo"\n')
    registry = DefinitionRegistry(tmp_path / "jobs.d")
    registry.reload()
    store = await Store.open(tmp_path / "state")
    bus = SystemdBus()
    jobs = JobService(store, registry, None, JobSettings())  # type: ignore[arg-type]
    services = Services(
        system=SystemInfo(store, bus), jobs=jobs, queries=JobQueries(store), registry=registry,
        reload=lambda: ReloadResult(definitions=0, errors=[]),
        authz=Authorizer(deny_all, AccessSettings()), audit=AuditLog(store, retention_days=1),
        output=JobOutput(jobs, JobLogs()),
    )  # fmt: skip
    yield Dispatcher(METHODS, Handlers(services).table(), max_batch_size=10), store
    await store.close()


@pytest.mark.parametrize("method", sorted(METHODS))
async def test_every_method_denies_a_caller_without_permission(
    dispatcher: tuple[Dispatcher, Store], method: str
) -> None:
    rpc, store = dispatcher
    request = {"jsonrpc": "2.0", "method": method, "params": PARAMS.get(method, {}), "id": 1}
    answer = await rpc.handle(encode(request), CallContext(peer=STRANGER, streaming=True))
    assert not isinstance(answer, StreamReply)
    reply = decode_body(answer or b"")
    assert reply["error"]["code"] == ErrorCode.PERMISSION_DENIED, reply
    assert reply["error"]["data"]["action"] == f"org.automd.{METHODS[method].permission}"
    entries = await audit_rows.page(store, since=None, uid=STRANGER.uid, method=method,
                                    outcome="denied", before_id=None, limit=10)  # fmt: skip
    assert len(entries) == 1
    assert (entries[0].pid, entries[0].uid) == (STRANGER.pid, STRANGER.uid)
