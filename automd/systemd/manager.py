"""systemd's Manager API as typed calls: one method per D-Bus method automd uses.

Signatures, modes and return shapes are written here once, so nothing above this module
builds a D-Bus body by hand or spells a mode as a bare string. Error replies are already
typed by the bus (`bus.dbus_error`); this module only turns "no such unit" into an answer
where the caller asked a question (is it loaded? stop it if it is).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any, NamedTuple

from dbus_fast import Message

from automd.errors import SystemdRejected
from automd.systemd.bus import (
    MANAGER_IFACE,
    PROPERTIES_IFACE,
    SERVICE_IFACE,
    UNIT_IFACE,
    SystemdBus,
)

NO_SUCH_UNIT = "org.freedesktop.systemd1.NoSuchUnit"


class JobMode(StrEnum):
    """How a new unit job treats jobs already queued for the unit (systemctl --job-mode)."""

    FAIL = "fail"  # refuse if it would replace a queued job
    REPLACE = "replace"  # replace a conflicting queued job


class KillWhom(StrEnum):
    """Which of a unit's processes KillUnit signals."""

    MAIN = "main"
    CONTROL = "control"
    ALL = "all"


class ListedUnit(NamedTuple):
    """One row of ListUnits*: the a(ssssssouso) struct, named."""

    name: str
    description: str
    load_state: str
    active_state: str
    sub_state: str
    following: str
    path: str
    job_id: int
    job_type: str
    job_path: str


@dataclass(frozen=True)
class UnitSnapshot:
    """A loaded unit's properties read back at one moment: its Unit and Service interfaces."""

    unit: dict[str, Any]
    service: dict[str, Any]


#: A transient unit's properties, as StartTransientUnit takes them: (name, Variant) pairs.
Properties = list[tuple[str, Any]]


class Manager:
    """org.freedesktop.systemd1.Manager (and unit properties), over the shared bus."""

    def __init__(self, bus: SystemdBus) -> None:
        self.bus = bus

    async def start_transient_unit(self, name: str, mode: JobMode, properties: Properties) -> str:
        """Create and start a transient unit; returns the object path of its start job."""
        (job,) = await self._call(
            "StartTransientUnit", "ssa(sv)a(sa(sv))", [name, mode.value, properties, []]
        )
        return str(job)

    async def start_unit(self, name: str, mode: JobMode) -> str:
        """StartUnit of a unit with a unit file (a timer); the object path of its job."""
        (job,) = await self._call("StartUnit", "ss", [name, mode.value])
        return str(job)

    async def reload(self) -> None:
        """Reload (systemctl daemon-reload): generators run again, unit files are re-read.
        systemd answers once the reload is done."""
        await self._call("Reload", "", [])

    async def read_properties(self, name: str, interface: str) -> dict[str, Any] | None:
        """One interface's properties of a loaded unit, or None when it is not loaded."""
        path = await self.get_unit(name)
        if path is None:
            return None
        try:
            return await self._get_all(path, interface)
        except SystemdRejected:
            return None  # unloaded between the calls

    async def stop_unit(self, name: str, mode: JobMode) -> bool:
        """StopUnit; False when systemd has no such unit loaded (nothing to stop)."""
        return await self._unless_no_such_unit("StopUnit", "ss", [name, mode.value])

    async def kill_unit(self, name: str, whom: KillWhom, signal: int) -> bool:
        """KillUnit; False when systemd has no such unit loaded."""
        return await self._unless_no_such_unit("KillUnit", "ssi", [name, whom.value, signal])

    async def reset_failed_unit(self, name: str) -> bool:
        """ResetFailedUnit; False when systemd has no such unit loaded."""
        return await self._unless_no_such_unit("ResetFailedUnit", "s", [name])

    async def list_units_by_patterns(
        self, states: list[str], patterns: list[str]
    ) -> list[ListedUnit]:
        (units,) = await self._call("ListUnitsByPatterns", "asas", [states, patterns])
        return [ListedUnit(*row) for row in units]

    async def get_unit(self, name: str) -> str | None:
        """The object path of a loaded unit, or None. Never loads the unit."""
        try:
            (path,) = await self._call("GetUnit", "s", [name])
        except SystemdRejected as exc:
            if exc.dbus_error == NO_SUCH_UNIT:
                return None
            raise
        return str(path)

    async def read_unit(self, name: str) -> UnitSnapshot | None:
        """A unit's Unit and Service properties, or None when it is not loaded.

        GetUnit first: a GetAll on the path of an unloaded unit would load a "not-found" stub.
        """
        path = await self.get_unit(name)
        if path is None:
            return None
        try:
            unit = await self._get_all(path, UNIT_IFACE)
            service = await self._get_all(path, SERVICE_IFACE)
        except SystemdRejected:
            return None  # unloaded between the calls
        return UnitSnapshot(unit, service)

    async def version(self) -> str:
        (variant,) = await self.bus.call(
            interface=PROPERTIES_IFACE,
            member="Get",
            signature="ss",
            body=[MANAGER_IFACE, "Version"],
        )
        return str(variant.value)

    async def _get_all(self, path: str, interface: str) -> dict[str, Any]:
        (props,) = await self.bus.call(
            interface=PROPERTIES_IFACE, member="GetAll", signature="s", body=[interface], path=path
        )
        return {key: variant.value for key, variant in props.items()}

    async def _call(self, member: str, signature: str, body: list[Any]) -> list[Any]:
        return await self.bus.call(
            interface=MANAGER_IFACE, member=member, signature=signature, body=body
        )

    async def _unless_no_such_unit(self, member: str, signature: str, body: list[Any]) -> bool:
        try:
            await self._call(member, signature, body)
        except SystemdRejected as exc:
            if exc.dbus_error == NO_SUCH_UNIT:
                return False
            raise
        return True


# -- signals ------------------------------------------------------------------------------


@dataclass(frozen=True)
class JobRemoved:
    """Manager.JobRemoved(uoss): a unit job ended with `result` (done, failed, canceled...)."""

    job_id: int
    job: str
    unit: str
    result: str


@dataclass(frozen=True)
class UnitRemoved:
    """Manager.UnitRemoved(so): systemd unloaded the unit."""

    unit: str
    path: str


@dataclass(frozen=True)
class PropertiesChanged:
    """Properties.PropertiesChanged on a unit object: the values that changed."""

    path: str
    interface: str
    changed: dict[str, Any]


ManagerSignal = JobRemoved | UnitRemoved | PropertiesChanged


def decode_signal(message: Message) -> ManagerSignal | None:
    """The typed form of a signal the bus subscribed to (bus._MATCH_RULES), else None."""
    if message.member == "JobRemoved":
        job_id, job, unit, result = message.body
        return JobRemoved(int(job_id), str(job), str(unit), str(result))
    if message.member == "UnitRemoved":
        unit, path = message.body
        return UnitRemoved(str(unit), str(path))
    if message.member == "PropertiesChanged":
        interface, changed, _invalidated = message.body
        values = {key: variant.value for key, variant in changed.items()}
        return PropertiesChanged(message.path or "", str(interface), values)
    return None
