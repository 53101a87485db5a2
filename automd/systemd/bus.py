"""A lazily (re)connecting system-bus connection with bounded in-flight calls to systemd."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from dbus_fast import BusType, Message, MessageType
from dbus_fast.aio import MessageBus
from dbus_fast.errors import DBusError

from automd.errors import SystemdRejected, SystemdUnavailable

log = logging.getLogger(__name__)

SYSTEMD = "org.freedesktop.systemd1"
SYSTEMD_PATH = "/org/freedesktop/systemd1"
MANAGER_IFACE = "org.freedesktop.systemd1.Manager"
PROPERTIES_IFACE = "org.freedesktop.DBus.Properties"
UNIT_IFACE = "org.freedesktop.systemd1.Unit"
SERVICE_IFACE = "org.freedesktop.systemd1.Service"
DBUS = "org.freedesktop.DBus"
DBUS_PATH = "/org/freedesktop/DBus"

# dbus-daemon refuses more than 128 pending replies per connection, and dbus-fast 5.2 tears
# the connection down when its send buffer fills (systemd-facts.md §1, §8): stay well below.
MAX_IN_FLIGHT_CALLS = 64

# The signals completion tracking needs (systemd-facts.md §2). NameOwnerChanged tells us when
# systemd re-registers on the bus (e.g. after dropping off under a job backlog, or a
# daemon-reexec), which loses its list of subscribers and every signal sent in between.
_MATCH_RULES = (
    f"type='signal',sender='{SYSTEMD}',interface='{MANAGER_IFACE}',member='JobRemoved'",
    f"type='signal',sender='{SYSTEMD}',interface='{MANAGER_IFACE}',member='UnitRemoved'",
    f"type='signal',sender='{SYSTEMD}',interface='{PROPERTIES_IFACE}',"
    "member='PropertiesChanged',path_namespace='/org/freedesktop/systemd1/unit'",
    f"type='signal',sender='{DBUS}',interface='{DBUS}',member='NameOwnerChanged',arg0='{SYSTEMD}'",
)

_RECONNECT_FIRST_DELAY = 0.1
_RECONNECT_MAX_DELAY = 5.0

SignalHandler = Callable[[Message], None]
ResyncHandler = Callable[[], None]


# Error replies that mean the service is not there to answer (not an answer about the call):
# the bus daemon's, for a peer that is gone, not activatable, too slow or over its limits.
_UNAVAILABLE_ERRORS = frozenset({
    "org.freedesktop.DBus.Error.NoReply",
    "org.freedesktop.DBus.Error.Timeout",
    "org.freedesktop.DBus.Error.TimedOut",
    "org.freedesktop.DBus.Error.ServiceUnknown",
    "org.freedesktop.DBus.Error.NameHasNoOwner",
    "org.freedesktop.DBus.Error.Disconnected",
    "org.freedesktop.DBus.Error.NoServer",
    "org.freedesktop.DBus.Error.LimitsExceeded",
})  # fmt: skip


def dbus_error(name: str, detail: str, *, member: str) -> SystemdUnavailable | SystemdRejected:
    """The one place a D-Bus error reply becomes an automd error: an outage, or a refusal."""
    if name in _UNAVAILABLE_ERRORS:
        return SystemdUnavailable(
            data={"reason": f"{member}: {name}: {detail}", "dbus_error": name}
        )
    return SystemdRejected(name, detail, member=member)


class SystemdBus:
    """The daemon's one connection to the system bus; reconnects on the next call after a loss.

    Once `subscribe()` was called it also keeps systemd's signals flowing: it adds the match
    rules and calls Manager.Subscribe on every new connection and whenever systemd gets a new
    bus owner, reconnects by itself after a loss, and then calls every resync handler, because
    signals sent in between are lost for good.
    """

    def __init__(self, *, call_timeout: float = 5.0, bus_address: str | None = None) -> None:
        self._call_timeout = call_timeout
        self._bus_address = bus_address
        self._bus: MessageBus | None = None
        self._connect_lock = asyncio.Lock()
        self._slots = asyncio.Semaphore(MAX_IN_FLIGHT_CALLS)
        self.reconnects = 0
        self._ever_connected = False
        self._want_signals = False
        self._closed = False
        self._systemd_owner: str | None = None
        self._signal_handlers: list[SignalHandler] = []
        self._resync_handlers: list[ResyncHandler] = []
        self._tasks: set[asyncio.Task[None]] = set()

    async def _connection(self) -> MessageBus:
        bus = self._bus
        if bus is not None and bus.connected:
            return bus
        async with self._connect_lock:
            if self._bus is not None and self._bus.connected:
                return self._bus
            if self._closed:
                raise SystemdUnavailable(data={"reason": "system bus connection closed"})
            reconnecting = self._ever_connected
            if reconnecting:
                self.reconnects += 1
                log.warning("system bus connection lost; reconnecting")
            try:
                connecting = MessageBus(bus_type=BusType.SYSTEM, bus_address=self._bus_address)
                self._bus = await asyncio.wait_for(connecting.connect(), self._call_timeout)
            except (OSError, TimeoutError, DBusError, EOFError) as exc:
                self._bus = None
                raise SystemdUnavailable(
                    data={"reason": f"system bus: {exc or type(exc).__name__}"}
                ) from exc
            self._ever_connected = True
            if self._want_signals:
                try:
                    await self._set_up_signals(self._bus)
                except (SystemdUnavailable, SystemdRejected):
                    # A connection without its match rules would silently miss signals.
                    self._bus.disconnect()
                    self._bus = None
                    raise
                if reconnecting:
                    self._resync()
            return self._bus

    async def call(
        self,
        *,
        interface: str,
        member: str,
        signature: str = "",
        body: list[Any] | None = None,
        path: str = SYSTEMD_PATH,
        destination: str = SYSTEMD,
    ) -> list[Any]:
        """Call a method on a systemd object (the Manager unless `path` says otherwise).

        Other services (polkit) pass their own `destination` and `path`, so that their calls
        share this connection and its in-flight bound. Raises SystemdUnavailable when the
        service cannot be reached, and SystemdRejected, naming the D-Bus error, when it
        answered the call with an error (dbus_error()).
        """
        message = Message(
            destination=destination,
            path=path,
            interface=interface,
            member=member,
            signature=signature,
            body=body or [],
        )
        async with self._slots:
            bus = await self._connection()
            try:
                reply = await asyncio.wait_for(bus.call(message), self._call_timeout)
            except (OSError, TimeoutError, EOFError) as exc:
                raise SystemdUnavailable(
                    data={"reason": f"{member}: {exc or 'timed out'}"}
                ) from exc
        if reply is None:
            raise SystemdUnavailable(data={"reason": f"{member}: no reply"})
        if reply.message_type == MessageType.ERROR:
            detail = str(reply.body[0]) if reply.body else ""
            raise dbus_error(reply.error_name or "unknown", detail, member=member)
        return list(reply.body)

    # -- signals -----------------------------------------------------------------------------

    def add_signal_listener(self, on_signal: SignalHandler, on_resync: ResyncHandler) -> None:
        """Receive systemd's unit/job signals, and a call after any gap in them."""
        self._signal_handlers.append(on_signal)
        self._resync_handlers.append(on_resync)

    def remove_signal_listener(self, on_signal: SignalHandler, on_resync: ResyncHandler) -> None:
        with contextlib.suppress(ValueError):
            self._signal_handlers.remove(on_signal)
        with contextlib.suppress(ValueError):
            self._resync_handlers.remove(on_resync)

    async def subscribe(self) -> None:
        """Make sure systemd's signals reach the listeners from now on, over any reconnect."""
        if self._want_signals and self._bus is not None and self._bus.connected:
            return
        self._want_signals = True
        bus = self._bus
        if bus is not None and bus.connected:
            async with self._connect_lock:
                await self._set_up_signals(bus)
        else:
            await self._connection()

    async def _set_up_signals(self, bus: MessageBus) -> None:
        bus.add_message_handler(self._on_message)
        for rule in _MATCH_RULES:
            await self._raw_call(bus, _bus_daemon_call("AddMatch", rule), required=True)
        owner = await self._raw_call(bus, _bus_daemon_call("GetNameOwner", SYSTEMD))
        self._systemd_owner = str(owner[0]) if owner else None
        if self._systemd_owner is not None:
            await self._subscribe_systemd(bus)
        self._spawn(self._reconnect_after_loss(bus))

    async def _subscribe_systemd(self, bus: MessageBus) -> None:
        # systemd refuses a second Subscribe from the same client with AlreadySubscribed, which
        # is what we want anyway; any other failure is left to the next NameOwnerChanged.
        subscribe = Message(
            destination=SYSTEMD, path=SYSTEMD_PATH, interface=MANAGER_IFACE, member="Subscribe"
        )
        await self._raw_call(bus, subscribe)

    async def _raw_call(
        self, bus: MessageBus, message: Message, *, required: bool = False
    ) -> list[Any] | None:
        """A set-up call outside the call slots (it runs under the connect lock)."""
        try:
            reply = await asyncio.wait_for(bus.call(message), self._call_timeout)
        except (OSError, TimeoutError, EOFError) as exc:
            reason = f"{message.member}: {exc or 'timed out'}"
            raise SystemdUnavailable(data={"reason": reason}) from exc
        if reply is not None and reply.message_type != MessageType.ERROR:
            return list(reply.body)
        name = reply.error_name if reply is not None else "no reply"
        if required:
            raise SystemdUnavailable(data={"reason": f"{message.member}: {name}"})
        log.debug("%s on the system bus failed: %s", message.member, name)
        return None

    def _on_message(self, message: Message) -> None:
        if message.message_type != MessageType.SIGNAL:
            return
        if message.member == "NameOwnerChanged" and message.sender == DBUS:
            name, _old, new = message.body
            if name == SYSTEMD:
                self._systemd_owner = new or None
                if new:
                    log.warning("systemd re-registered on the bus as %s; resubscribing", new)
                    self._spawn(self._resubscribe())
            return
        # Only signals systemd itself sent: anyone may send a unicast signal to us.
        if self._systemd_owner is None or message.sender != self._systemd_owner:
            return
        for handler in list(self._signal_handlers):
            try:
                handler(message)
            except Exception:
                log.exception("systemd signal handler failed on %s", message.member)

    async def _resubscribe(self) -> None:
        bus = self._bus
        if bus is None or not bus.connected:
            return  # the reconnect will subscribe and resync
        try:
            await self._subscribe_systemd(bus)
        except (SystemdUnavailable, SystemdRejected) as exc:
            log.warning("re-subscribing to systemd failed (%s); waiting for the reconnect", exc)
            return
        self._resync()

    def _resync(self) -> None:
        for handler in list(self._resync_handlers):
            try:
                handler()
            except Exception:
                log.exception("systemd resync handler failed")

    async def _reconnect_after_loss(self, bus: MessageBus) -> None:
        with contextlib.suppress(Exception):
            await bus.wait_for_disconnect()  # type: ignore[no-untyped-call]
        delay = _RECONNECT_FIRST_DELAY
        while not self._closed:
            current = self._bus
            if current is not None and current is not bus and current.connected:
                return  # a call reconnected first (and resynced)
            try:
                await self._connection()
                return
            except (SystemdUnavailable, SystemdRejected) as exc:
                # A backoff between attempts to reach the bus, not a poll of any state.
                log.warning("system bus unreachable (%s); retrying in %.1f s", exc.data, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, _RECONNECT_MAX_DELAY)

    def _spawn(self, coro: Any) -> None:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        self._closed = True
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._bus is not None:
            self._bus.disconnect()
            self._bus = None


def _bus_daemon_call(member: str, argument: str) -> Message:
    return Message(
        destination=DBUS,
        path=DBUS_PATH,
        interface=DBUS,
        member=member,
        signature="s",
        body=[argument],
    )
