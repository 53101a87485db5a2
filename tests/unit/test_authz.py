"""Authorization: root, polkit, the group fallback, definition allow-lists, caching."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from automd import authz
from automd.api.methods import Permission
from automd.authz import Authorizer, PolkitUnreachable, polkit_details
from automd.config import AccessSettings
from automd.definitions.model import Definition
from automd.errors import PermissionDenied, SystemdUnavailable
from automd.peer import PeerCredentials

ALICE = PeerCredentials(pid=100, uid=1001, gid=1001)
ROOT = PeerCredentials(pid=1, uid=0, gid=0)


class FakePolkit:
    def __init__(self, answer: bool | Exception) -> None:
        self.answer = answer
        self.calls: list[tuple[str, int, int, dict[str, str]]] = []

    async def __call__(self, action: str, pid: int, uid: int, details: Mapping[str, str]) -> bool:
        self.calls.append((action, pid, uid, dict(details)))
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


@pytest.fixture
def groups(monkeypatch: pytest.MonkeyPatch) -> dict[int, set[str]]:
    """uid -> group names, standing in for the user database."""
    table: dict[int, set[str]] = {}
    monkeypatch.setattr(authz, "groups_of", lambda uid, gid: table.get(uid, set()))
    monkeypatch.setattr(authz, "user_name", {1001: "alice", 1002: "bob"}.get)
    return table


def definition(**access: Any) -> Definition:
    return Definition.model_validate({"name": "d", "executable": "/bin/true", "access": access})


async def test_root_is_always_allowed_without_asking_polkit() -> None:
    polkit = FakePolkit(False)
    decision = await Authorizer(polkit, AccessSettings()).decide(ROOT, Permission.ADMIN)
    assert decision.allowed
    assert polkit.calls == []


async def test_no_credentials_is_denied() -> None:
    with pytest.raises(PermissionDenied) as info:
        await Authorizer(FakePolkit(True), AccessSettings()).require(None, Permission.READ)
    assert info.value.data == {
        "action": "org.automd.read",
        "reason": "caller credentials unavailable",
    }


async def test_polkit_decides_with_the_kernels_pid_and_uid() -> None:
    polkit = FakePolkit(True)
    a = Authorizer(polkit, AccessSettings())
    details = {"definition": "d", "param.x": "1"}
    await a.require(ALICE, Permission.RUN, details=details)
    assert polkit.calls == [("org.automd.run", 100, 1001, details)]
    polkit.answer = False
    with pytest.raises(PermissionDenied) as info:
        await a.require(ALICE, Permission.ADMIN)
    assert info.value.data["reason"] == "polkit denied org.automd.admin"


async def test_decisions_are_cached_briefly_per_process_and_details() -> None:
    now = [0.0]
    polkit = FakePolkit(True)
    a = Authorizer(polkit, AccessSettings(), clock=lambda: now[0])
    for _ in range(3):
        await a.require(ALICE, Permission.READ)
    assert len(polkit.calls) == 1
    await a.require(ALICE, Permission.RUN, details={"definition": "x"})
    await a.require(ALICE, Permission.RUN, details={"definition": "y"})
    assert len(polkit.calls) == 3
    now[0] += authz.CACHE_SECONDS + 0.1
    await a.require(ALICE, Permission.READ)
    assert len(polkit.calls) == 4


@pytest.mark.parametrize("failure", [PolkitUnreachable("gone"), SystemdUnavailable()])
async def test_without_polkit_the_groups_decide(
    groups: dict[int, set[str]], failure: Exception, caplog: pytest.LogCaptureFixture
) -> None:
    a = Authorizer(FakePolkit(failure), AccessSettings(group="automd", admin_group="ops"))
    groups[1001] = {"automd"}
    assert await a.allowed(ALICE, Permission.RUN)
    assert not await a.allowed(ALICE, Permission.ADMIN)
    groups[1002] = set()
    bob = PeerCredentials(pid=101, uid=1002, gid=1002)
    assert not await a.allowed(bob, Permission.READ)
    carol = PeerCredentials(pid=102, uid=1003, gid=1003)
    groups[1003] = {"ops"}
    assert await a.allowed(carol, Permission.ADMIN)
    assert "polkit unreachable" in caplog.text


async def test_polkit_switched_off_uses_the_groups(groups: dict[int, set[str]]) -> None:
    groups[1001] = {"automd"}
    a = Authorizer(None, AccessSettings())
    assert await a.allowed(ALICE, Permission.CANCEL)
    assert not await a.allowed(ALICE, Permission.ADMIN)


async def test_definition_allow_lists_apply_on_top_of_polkit(groups: dict[int, set[str]]) -> None:
    polkit = FakePolkit(True)
    a = Authorizer(polkit, AccessSettings())
    only_bob = definition(allowed_users=["bob"])
    with pytest.raises(PermissionDenied, match="Permission denied") as info:
        await a.require(ALICE, Permission.RUN, definition=only_bob)
    assert "allowed users or groups" in info.value.data["reason"]
    assert polkit.calls == []  # denied before asking
    groups[1001] = {"deployers"}
    await a.require(ALICE, Permission.RUN, definition=definition(allowed_groups=["deployers"]))
    await a.require(ALICE, Permission.RUN, definition=definition(allowed_users=["alice"]))
    await a.require(ROOT, Permission.RUN, definition=only_bob)  # root is root


def test_polkit_details_carry_definition_and_params_but_no_secrets() -> None:
    details = polkit_details("deploy", {"env": "staging", "n": 3, "dry": True, "token": "s3cr3t"},
                             frozenset({"token"}))  # fmt: skip
    assert details == {"definition": "deploy", "param.env": "staging", "param.n": "3",
                       "param.dry": "true"}  # fmt: skip
