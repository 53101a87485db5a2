"""A fake systemd Manager on a private dbus-daemon, moved step by step by a test.

It is a model of units plus explicit steps, not a systemd. StartTransientUnit loads a unit when
the call arrives (systemd handles calls in order) and replies; the test then says what happens
to the unit (`run`, `end_start_job`, `exit`, `fail`, `remove`), each step sending the signals
systemd 252 sends (systemd-facts.md §1, §2) and returning once the bus daemon routed them.
StopUnit, KillUnit and ResetFailedUnit play their usual consequences by themselves, after their
reply. Like systemd, it sends unit and job signals only while some client is subscribed, and
forgets subscribers that leave the bus, or all of them when it leaves (`drop_off`,
`reregister`: back under a new unique name).

Scripting the order of events:
- `before_start_reply`: steps run once a start's unit is loaded, before the reply is sent;
- `leave_next_start_unanswered`: the reply never comes (systemd drops off the bus first);
- `refuse_next_start`, or a bad ProtectSystem=/ProtectHome=/KillMode=: the start fails;
- `next_invocation_id`: b"" for a unit systemd never gave one (start-limit-hit);
- `after_reply[member]`: a step right after the reply to that call;
- `PrivateBus.stop`/`start`: the bus daemon restarts; `freeze`/`thaw`: it hangs.
"""

from __future__ import annotations

import asyncio
import fnmatch
import secrets
import signal
import subprocess
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

from dbus_fast import Message, MessageType, NameFlag, PropertyAccess, RequestNameReply
from dbus_fast.aio import MessageBus
from dbus_fast.annotations import (
    DBusInt32,
    DBusObjectPath,
    DBusSignature,
    DBusStr,
)
from dbus_fast.errors import DBusError
from dbus_fast.service import ServiceInterface, dbus_method, dbus_property, dbus_signal

from automd.systemd.spec import unit_object_path

SYSTEMD = "org.freedesktop.systemd1"
SYSTEMD_PATH = "/org/freedesktop/systemd1"
MANAGER_IFACE = "org.freedesktop.systemd1.Manager"
NO_SUCH_UNIT = "org.freedesktop.systemd1.NoSuchUnit"
INVALID_ARGS = "org.freedesktop.DBus.Error.InvalidArgs"
DBUS = "org.freedesktop.DBus"
DBUS_PATH = "/org/freedesktop/DBus"

# ExecMainCode: a siginfo code (systemd-facts.md §2).
CLD_EXITED = 1
CLD_KILLED = 2
# Deaths by these signals are a clean end ("success") for a service (systemd-facts.md §2).
CLEAN_SIGNALS = frozenset({signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGPIPE})
# String-valued properties systemd checks (a bad value is InvalidArgs, systemd-facts.md §1).
_CHECKED_VALUES = {
    "ProtectSystem": {"no", "yes", "full", "strict"},
    "ProtectHome": {"no", "yes", "read-only", "tmpfs"},
    "KillMode": {"control-group", "mixed", "process", "none"},
}

_BUS_CONFIG = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-BUS Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:path={socket}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
"""


class PrivateBus:
    """A dbus-daemon of the test's own, on a socket in `directory`; can be restarted."""

    def __init__(self, directory: Path) -> None:
        self.socket = directory / "bus"
        self._config = directory / "bus.conf"
        self._config.write_text(_BUS_CONFIG.format(socket=self.socket))
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"unix:path={self.socket}"

    def start(self) -> None:
        self.socket.unlink(missing_ok=True)
        process = subprocess.Popen(
            [
                "/usr/bin/dbus-daemon",
                f"--config-file={self._config}",
                "--nofork",
                "--print-address",
            ],
            stdout=subprocess.PIPE,
        )
        assert process.stdout is not None
        # It prints its address once it listens (a blocking read of one short line).
        printed = process.stdout.readline()
        process.stdout.close()
        self._process = process
        assert printed.startswith(b"unix:"), printed

    def freeze(self) -> None:
        """SIGSTOP the daemon: connections to it are accepted by the kernel and then hang."""
        assert self._process is not None
        self._process.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        assert self._process is not None
        self._process.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        if self._process is not None:
            self.thaw()
            self._process.terminate()
            self._process.wait(timeout=10)
            self._process = None


@dataclass
class FakeUnit:
    """One loaded unit: what the Unit and Service interfaces report about it."""

    name: str
    properties: dict[str, Any]  # as StartTransientUnit received them
    invocation_id: bytes = field(default_factory=lambda: secrets.token_bytes(16))
    load_state: str = "loaded"
    active_state: str = "inactive"
    sub_state: str = "dead"
    job: tuple[int, str] = (0, "/")
    result: str = "success"
    exec_main_code: int = 0
    exec_main_status: int = 0
    main_pid: int = 0

    @property
    def path(self) -> str:
        return unit_object_path(self.name)


Properties = Annotated[list[list[Any]], DBusSignature("a(sv)")]
AuxUnits = Annotated[list[list[Any]], DBusSignature("a(sa(sv))")]
Strings = Annotated[list[str], DBusSignature("as")]
UnitRows = Annotated[list[list[Any]], DBusSignature("a(ssssssouso)")]
Bytes = Annotated[bytes, DBusSignature("ay")]
JobRef = Annotated[list[Any], DBusSignature("(uo)")]
NoValue = Annotated[None, DBusSignature("")]


class _Manager(ServiceInterface):
    """org.freedesktop.systemd1.Manager: what automd calls, delegated to the FakeSystemd."""

    def __init__(self, fake: FakeSystemd) -> None:
        super().__init__(MANAGER_IFACE)
        self._fake = fake

    @dbus_method()
    async def StartTransientUnit(
        self, name: DBusStr, mode: DBusStr, properties: Properties, aux: AuxUnits
    ) -> DBusObjectPath:
        # The unit was loaded when the call arrived (FakeSystemd._observe); this is the reply.
        return await self._fake.answer_start(name)

    @dbus_method()
    def StopUnit(self, name: DBusStr, mode: DBusStr) -> DBusObjectPath:
        return self._fake.stop_unit(name)

    @dbus_method()
    def KillUnit(self, name: DBusStr, whom: DBusStr, signal: DBusInt32) -> NoValue:
        self._fake.kill_unit(name, signal)

    @dbus_method()
    def ResetFailedUnit(self, name: DBusStr) -> NoValue:
        self._fake.reset_failed_unit(name)

    @dbus_method()
    def GetUnit(self, name: DBusStr) -> DBusObjectPath:
        return self._fake.unit(name).path

    @dbus_method()
    def ListUnitsByPatterns(self, states: Strings, patterns: Strings) -> UnitRows:
        return self._fake.list_units(states, patterns)

    @dbus_method()
    def Subscribe(self) -> NoValue:
        pass  # who subscribed is seen by FakeSystemd._observe (a method has no sender here)

    @dbus_property(access=PropertyAccess.READ)
    def Version(self) -> DBusStr:
        return "252-fake"

    @dbus_signal()
    def JobRemoved(
        self, job_id: int, job: str, unit: str, result: str
    ) -> Annotated[list[Any], DBusSignature("uoss")]:
        return [job_id, job, unit, result]

    @dbus_signal()
    def UnitRemoved(self, unit: str, path: str) -> Annotated[list[Any], DBusSignature("so")]:
        return [unit, path]


class _UnitObject(ServiceInterface):
    """One interface of a unit's object, reading its properties from the FakeUnit."""

    interface: str

    def __init__(self, unit: FakeUnit) -> None:
        super().__init__(self.interface)
        self.unit = unit


def _read_only(name: str, signature: str, value: Callable[[FakeUnit], Any]) -> property:
    """A read-only D-Bus property of a unit object: `name`, D-Bus `signature`, and its value."""

    def getter(interface: _UnitObject) -> Any:
        return value(interface.unit)

    # dbus-fast reads the signature from the annotation, and calls the getter by its name.
    getter.__annotations__ = {"return": signature}
    getter.__name__ = name
    return dbus_property(access=PropertyAccess.READ, name=name)(getter)


# What a unit object reports, by interface (org.freedesktop.systemd1.*): the properties
# automd reads, with systemd's D-Bus signatures (systemd-facts.md §1, §2).
_UNIT_PROPERTIES: list[tuple[str, str, str, Callable[[FakeUnit], Any]]] = [
    ("Unit", "LoadState", "s", lambda unit: unit.load_state),
    ("Unit", "ActiveState", "s", lambda unit: unit.active_state),
    ("Unit", "SubState", "s", lambda unit: unit.sub_state),
    ("Unit", "InvocationID", "ay", lambda unit: unit.invocation_id),
    ("Unit", "Job", "(uo)", lambda unit: list(unit.job)),
    ("Service", "Result", "s", lambda unit: unit.result),
    ("Service", "ExecMainCode", "i", lambda unit: unit.exec_main_code),
    ("Service", "ExecMainStatus", "i", lambda unit: unit.exec_main_status),
    ("Service", "ExecMainPID", "u", lambda unit: unit.main_pid),
]


def _unit_interface(interface: str) -> type[_UnitObject]:
    namespace: dict[str, Any] = {"interface": f"org.freedesktop.systemd1.{interface}"}
    for owner, name, signature, value in _UNIT_PROPERTIES:
        if owner == interface:
            namespace[name] = _read_only(name, signature, value)
    return type(f"_{interface}", (_UnitObject,), namespace)


_Unit = _unit_interface("Unit")
_Service = _unit_interface("Service")


StartHook = Callable[[FakeUnit], Awaitable[None]]


class FakeSystemd:
    """The fake Manager and its units, owning org.freedesktop.systemd1 on `address`."""

    def __init__(self, address: str) -> None:
        self._address = address
        self._bus: MessageBus | None = None
        self._manager: _Manager | None = None
        self._exported: dict[str, dict[str, _UnitObject]] = {}
        self._jobs = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self.units: dict[str, FakeUnit] = {}
        self._starting: dict[str, FakeUnit] = {}  # loaded, not yet answered
        # The hex InvocationID of every unit ever loaded, by name (kept after removal).
        self.invocations: dict[str, str | None] = {}
        # Unique names of the clients subscribed to this incarnation.
        self.subscribers: set[str] = set()
        self.subscribed = asyncio.Condition()
        # Every method call received: (member, body).
        self.calls: list[tuple[str, list[Any]]] = []
        # Run inside StartTransientUnit after the unit is loaded, before the reply is sent.
        self.before_start_reply: StartHook | None = None
        # The next StartTransientUnit loads its unit and runs the hook but is never answered
        # (for a systemd that drops off the bus first: don't drop off inside a method, whose
        # reply dbus-fast would then write to the closed connection's file descriptor).
        self.leave_next_start_unanswered = False
        # The next StartTransientUnit fails with this (error name, text).
        self.refuse_next_start: tuple[str, str] | None = None
        # The next unit loads with this InvocationID (b"": none, as when systemd refuses to
        # start it at all, e.g. start-limit-hit); a random one by default.
        self.next_invocation_id: bytes | None = None
        # A step run once right after the reply to a call of this (synchronous) method.
        self.after_reply: dict[str, Callable[[], Awaitable[None]]] = {}

    # -- on the bus --------------------------------------------------------------------------

    @property
    def unique_name(self) -> str | None:
        return self._bus.unique_name if self._bus is not None else None

    async def connect(self) -> None:
        """Join the bus with a new unique name, export everything, take the systemd name."""
        bus = await MessageBus(bus_address=self._address).connect()
        bus.add_message_handler(self._observe)
        await call_bus_daemon(
            bus, "AddMatch", f"type='signal',sender='{DBUS}',member='NameOwnerChanged'"
        )
        self._bus, self._manager, self._exported = bus, _Manager(self), {}
        bus.export(SYSTEMD_PATH, self._manager)
        for unit in self.units.values():
            self._export(unit)
        reply = await bus.request_name(SYSTEMD, NameFlag.DO_NOT_QUEUE)
        assert reply == RequestNameReply.PRIMARY_OWNER, reply

    async def drop_off(self) -> None:
        """Leave the bus (a crash or daemon-reexec): the name goes, with every subscription."""
        bus, self._bus = self._bus, None
        self.subscribers.clear()
        if bus is not None:
            bus.disconnect()
            await bus.wait_for_disconnect()  # type: ignore[no-untyped-call]

    async def reregister(self) -> None:
        """systemd re-registering on the bus: a new owner of org.freedesktop.systemd1."""
        await self.drop_off()
        await self.connect()

    async def flush(self) -> None:
        """Return once the bus daemon routed everything this fake sent before, so that
        anything sent later, by anyone, reaches a client after it."""
        if self._bus is not None:
            await call_bus_daemon(self._bus, "GetId")

    async def wait_subscribed(self, count: int = 1) -> None:
        async with self.subscribed:
            await self.subscribed.wait_for(lambda: len(self.subscribers) >= count)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.drop_off()

    # -- the test's steps (each sends what systemd sends) ------------------------------------

    async def run(self, name: str) -> None:
        """The start job has forked the main process: active/running."""
        unit = self.unit(name)
        unit.main_pid = 4242
        self._set_unit_state(unit, "active", "running")
        await self.flush()

    async def end_start_job(self, name: str, result: str = "done") -> None:
        """The start job is over ("done", or "failed" when the unit failed while starting)."""
        unit = self.unit(name)
        job_id, job = unit.job
        assert job_id != 0, f"{name} has no job"
        unit.job = (0, "/")
        self._emit(lambda manager: manager.JobRemoved(job_id, job, name, result))
        await self.flush()

    async def exit(
        self,
        name: str,
        *,
        status: int | None = None,
        signal: int | None = None,
        result: str | None = None,
    ) -> None:
        """The main process ended with exit `status` or by `signal`; systemd sends the
        Service change (final values) before the Unit change (systemd-facts.md §2)."""
        unit = self.unit(name)
        if signal is not None:
            clean = signal in CLEAN_SIGNALS
            unit.exec_main_code, unit.exec_main_status = CLD_KILLED, signal
            unit.result = result or ("success" if clean else "signal")
        else:
            unit.exec_main_code, unit.exec_main_status = CLD_EXITED, status or 0
            unit.result = result or ("success" if not status else "exit-code")
        unit.main_pid = 0
        self._emit_change(unit, "Service")
        if unit.result == "success":
            self._set_unit_state(unit, "inactive", "dead")
        else:
            self._set_unit_state(unit, "failed", "failed")
        await self.flush()

    async def fail(self, name: str, result: str | None = None) -> None:
        """The unit is failed (with `result`, e.g. a start refused as "start-limit-hit")."""
        unit = self.unit(name)
        if result is not None:
            unit.result = result
            self._emit_change(unit, "Service")
        self._set_unit_state(unit, "failed", "failed")
        await self.flush()

    async def remove(self, name: str) -> None:
        """Garbage collection (or ResetFailedUnit): the unit is unloaded and gone."""
        unit = self.units.pop(name)
        exported = self._exported.pop(name, None)
        if exported is not None and self._bus is not None:
            self._bus.unexport(unit.path)
        self._emit(lambda manager: manager.UnitRemoved(name, unit.path))
        await self.flush()

    def unit(self, name: str) -> FakeUnit:
        unit = self.units.get(name)
        if unit is None:
            raise DBusError(NO_SUCH_UNIT, f"Unit {name} not loaded.")
        return unit

    # -- the Manager's methods ---------------------------------------------------------------

    async def answer_start(self, name: str) -> str:
        unit = self._starting.pop(name)
        if self.before_start_reply is not None:
            await self.before_start_reply(unit)
        return unit.job[1]

    def _load(self, name: str, mode: str, properties: list[Any]) -> FakeUnit:
        """StartTransientUnit's work: check the request, load the unit, queue its start job."""
        refused, self.refuse_next_start = self.refuse_next_start, None
        if refused is not None:
            raise DBusError(*refused)
        if not name.endswith(".service") or mode != "fail":
            raise DBusError(INVALID_ARGS, "Invalid unit name or type.")
        if name in self.units:
            raise DBusError(
                "org.freedesktop.systemd1.UnitExists",
                f"Unit {name} was already loaded or has a fragment file.",
            )
        values = {key: variant.value for key, variant in properties}
        for key, allowed in _CHECKED_VALUES.items():
            if key in values and values[key] not in allowed:
                raise DBusError(INVALID_ARGS, f"Invalid {key} setting: {values[key]}")
        unit = FakeUnit(name, values)
        if self.next_invocation_id is not None:
            unit.invocation_id, self.next_invocation_id = self.next_invocation_id, None
        unit.job = self._new_job()
        self.units[name] = unit
        self.invocations[name] = unit.invocation_id.hex() or None
        self._export(unit)
        # The load-time change: "inactive", already with the InvocationID (watch.py).
        self._emit_change(unit, "Unit")
        return unit

    def stop_unit(self, name: str) -> str:
        unit = self.unit(name)
        stop_job = self._new_job()

        async def stop() -> None:
            self._set_unit_state(unit, "deactivating", "stop-sigterm")
            await self.exit(name, signal=signal.SIGTERM)
            self._emit(lambda manager: manager.JobRemoved(*stop_job, name, "done"))
            await self.remove(name)

        self._after_reply(stop())
        return stop_job[1]

    def kill_unit(self, name: str, signo: int) -> None:
        self.unit(name)
        self._after_reply(self.exit(name, signal=signo))

    def reset_failed_unit(self, name: str) -> None:
        if self.unit(name).active_state == "failed":
            self._after_reply(self.remove(name))

    def list_units(self, states: list[str], patterns: list[str]) -> list[list[Any]]:
        rows = []
        for unit in self.units.values():
            if patterns and not any(fnmatch.fnmatchcase(unit.name, p) for p in patterns):
                continue
            if states and not {unit.load_state, unit.active_state, unit.sub_state} & set(states):
                continue
            job_id, job = unit.job
            rows.append([
                unit.name, "fake unit", unit.load_state, unit.active_state, unit.sub_state,
                "", unit.path, job_id, "start" if job_id else "", job,
            ])  # fmt: skip
        return rows

    # -- plumbing ----------------------------------------------------------------------------

    def _observe(self, message: Message) -> bool:
        """Every message this fake receives: logs method calls, tracks subscribers. True for
        a call it took over from the exported interfaces (so that nothing replies)."""
        if message.message_type == MessageType.METHOD_CALL and message.member:
            self.calls.append((message.member, list(message.body)))
            step = self.after_reply.pop(message.member, None)
            if step is not None:
                self._after_reply(step())
            if message.member == "Subscribe" and message.sender:
                self.subscribers.add(message.sender)
                self._after_reply(self._notify_subscribed())
            if message.member == "StartTransientUnit":
                # Loaded now, in the order of the calls, as systemd would: dbus-fast runs an
                # async method later, after calls that arrived behind this one.
                unit = self._load(*message.body[:3])
                if not self.leave_next_start_unanswered:
                    self._starting[unit.name] = unit
                    return False  # _Manager.StartTransientUnit replies
                self.leave_next_start_unanswered = False
                if self.before_start_reply is not None:
                    self._after_reply(self.before_start_reply(unit))
                return True
        elif message.member == "NameOwnerChanged" and message.sender == DBUS:
            name, _old, new = message.body
            if not new:
                self.subscribers.discard(name)
        return False

    async def _notify_subscribed(self) -> None:
        async with self.subscribed:
            self.subscribed.notify_all()

    def _export(self, unit: FakeUnit) -> None:
        assert self._bus is not None
        interfaces = {"Unit": _Unit(unit), "Service": _Service(unit)}
        for interface in interfaces.values():
            self._bus.export(unit.path, interface)
        self._exported[unit.name] = interfaces

    def _new_job(self) -> tuple[int, str]:
        self._jobs += 1
        return self._jobs, f"{SYSTEMD_PATH}/job/{self._jobs}"

    def _set_unit_state(self, unit: FakeUnit, active: str, sub: str) -> None:
        unit.active_state, unit.sub_state = active, sub
        self._emit_change(unit, "Unit")

    def _emit_change(self, unit: FakeUnit, interface: str) -> None:
        # systemd sends every change-emitting property of the interface in one signal.
        changed = {
            name: value(unit) for owner, name, _, value in _UNIT_PROPERTIES if owner == interface
        }
        self._emit(lambda _: self._exported[unit.name][interface].emit_properties_changed(changed))

    def _emit(self, send: Callable[[_Manager], object]) -> None:
        # Signals sent while nobody is subscribed, or while off the bus, are lost for good.
        if self._bus is not None and self._manager is not None and self.subscribers:
            send(self._manager)

    def _after_reply(self, step: Awaitable[None]) -> None:
        # A synchronous method's reply is queued when it returns; this runs after that.
        async def later() -> None:
            await step

        task = asyncio.get_running_loop().create_task(later())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


async def call_bus_daemon(bus: MessageBus, member: str, *args: str) -> list[Any]:
    """A call to the bus daemon itself. Its reply comes after the daemon routed everything
    this connection sent before (it handles one connection's messages in order)."""
    reply = await bus.call(
        Message(
            destination=DBUS,
            path=DBUS_PATH,
            interface=DBUS,
            member=member,
            signature="s" * len(args),
            body=list(args),
        )
    )
    assert reply is not None
    assert reply.message_type == MessageType.METHOD_RETURN, reply
    return list(reply.body)
