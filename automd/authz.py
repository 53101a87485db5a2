"""Who may call what: root, then polkit (or group defaults when it is unreachable).

Every decision starts from the kernel's credentials for the connection (SO_PEERCRED), never
from anything the caller says. Anything unclear is denied.
"""

from __future__ import annotations

import grp
import logging
import os
import pwd
import time
from collections import Counter, OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import NoReturn

from automd.api.methods import Permission
from automd.config import AccessSettings
from automd.definitions.model import Definition
from automd.errors import AutomdError, PermissionDenied
from automd.peer import PeerCredentials

log = logging.getLogger(__name__)

ACTION_PREFIX = "org.automd."
# A decision is reused for this long for the same process, action and details: job.get polls
# must not each wait for polkit (~1 ms), yet a changed rule takes effect within seconds.
CACHE_SECONDS = 5.0
_CACHE_SIZE = 4096
_NO_CREDENTIALS = "caller credentials unavailable"

#: (action id, pid, uid, details) -> is the caller authorized? Raises on polkit trouble.
PolkitCheck = Callable[[str, int, int, Mapping[str, str]], Awaitable[bool]]


class PolkitUnreachable(Exception):
    """polkit could not answer; the group-based fallback decides instead."""


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str


def groups_of(uid: int, gid: int) -> set[str]:
    """Names of the user's groups (primary and supplementary), from the user database."""
    try:
        user = pwd.getpwuid(uid)
        gids = set(os.getgrouplist(user.pw_name, gid))
    except (KeyError, OSError):
        gids = {gid}
    names = set()
    for group_id in gids:
        try:
            names.add(grp.getgrgid(group_id).gr_name)
        except KeyError:
            continue
    return names


def user_name(uid: int) -> str | None:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return None


class Authorizer:
    def __init__(
        self,
        polkit: PolkitCheck | None,
        settings: AccessSettings,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._polkit = polkit
        self.settings = settings
        self._clock = clock
        self._cache: OrderedDict[tuple[object, ...], tuple[float, Decision]] = OrderedDict()
        self._polkit_down = False
        #: Denied calls by permission, since start (automd_authorization_denials_total).
        self.denials: Counter[str] = Counter()

    async def require(
        self,
        peer: PeerCredentials | None,
        permission: Permission,
        *,
        definition: Definition | None = None,
        details: Mapping[str, str] | None = None,
    ) -> None:
        decision = await self.decide(peer, permission, definition=definition, details=details)
        if not decision.allowed:
            self._deny(permission, decision.reason)

    def authenticate(self, peer: PeerCredentials | None, permission: Permission) -> None:
        """Deny a caller the kernel gave no credentials for, as decide() does; for a method
        whose `permission` is asked later, per definition."""
        if peer is None:
            self._deny(permission, _NO_CREDENTIALS)

    def _deny(self, permission: Permission, reason: str) -> NoReturn:
        self.denials[permission.value] += 1
        raise PermissionDenied(data={"action": ACTION_PREFIX + permission.value, "reason": reason})

    async def allowed(self, peer: PeerCredentials | None, permission: Permission) -> bool:
        return (await self.decide(peer, permission)).allowed

    async def decide(
        self,
        peer: PeerCredentials | None,
        permission: Permission,
        *,
        definition: Definition | None = None,
        details: Mapping[str, str] | None = None,
    ) -> Decision:
        if peer is None:
            return Decision(False, _NO_CREDENTIALS)
        if peer.uid == 0:
            return Decision(True, "root")
        if definition is not None and not self._definition_allows(definition, peer):
            return Decision(False, f"not in {definition.name}'s allowed users or groups")
        details = dict(details or {})
        key = (permission, peer.pid, peer.uid, tuple(sorted(details.items())))
        cached = self._cache.get(key)
        now = self._clock()
        if cached is not None and now - cached[0] < CACHE_SECONDS:
            return cached[1]
        decision = await self._ask(peer, permission, details)
        self._cache[key] = (now, decision)
        if len(self._cache) > _CACHE_SIZE:
            self._cache.popitem(last=False)
        return decision

    def _definition_allows(self, definition: Definition, peer: PeerCredentials) -> bool:
        access = definition.access
        if not access.allowed_users and not access.allowed_groups:
            return True
        if user_name(peer.uid) in access.allowed_users:
            return True
        return bool(groups_of(peer.uid, peer.gid) & set(access.allowed_groups))

    async def _ask(
        self, peer: PeerCredentials, permission: Permission, details: Mapping[str, str]
    ) -> Decision:
        action = ACTION_PREFIX + permission.value
        if self._polkit is not None:
            try:
                allowed = await self._polkit(action, peer.pid, peer.uid, details)
            except (PolkitUnreachable, AutomdError) as exc:
                if not self._polkit_down:
                    log.warning("polkit unreachable (%s): using group-based decisions", exc)
                self._polkit_down = True
            else:
                if self._polkit_down:
                    log.info("polkit reachable again")
                self._polkit_down = False
                return Decision(allowed, "polkit" if allowed else f"polkit denied {action}")
        return self._fallback(peer, permission)

    def _fallback(self, peer: PeerCredentials, permission: Permission) -> Decision:
        groups = groups_of(peer.uid, peer.gid)
        if self.settings.admin_group in groups:
            return Decision(True, f"member of {self.settings.admin_group}")
        if permission is not Permission.ADMIN and self.settings.group in groups:
            return Decision(True, f"member of {self.settings.group}")
        needed = (
            self.settings.admin_group if permission is Permission.ADMIN else self.settings.group
        )
        return Decision(False, f"needs group {needed} (polkit unreachable)")


def polkit_details(
    definition: str, params: Mapping[str, object], secret: frozenset[str] = frozenset()
) -> dict[str, str]:
    """What a polkit rule can look up for org.automd.run: the definition and each parameter."""
    details = {"definition": definition}
    for name, value in params.items():
        if name in secret:
            continue  # secrets never leave automd, not even to polkit
        if isinstance(value, bool):
            details[f"param.{name}"] = "true" if value else "false"
        else:
            details[f"param.{name}"] = str(value)
    return details
