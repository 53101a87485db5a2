"""A lazily (re)connecting system-bus connection with bounded in-flight calls to systemd."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from dbus_fast import BusType, Message, MessageType
from dbus_fast.aio import MessageBus
from dbus_fast.errors import DBusError

from automd.errors import SystemdUnavailable

log = logging.getLogger(__name__)

SYSTEMD = "org.freedesktop.systemd1"
SYSTEMD_PATH = "/org/freedesktop/systemd1"
MANAGER_IFACE = "org.freedesktop.systemd1.Manager"
PROPERTIES_IFACE = "org.freedesktop.DBus.Properties"

# dbus-daemon refuses more than 128 pending replies per connection, and dbus-fast 5.2 tears
# the connection down when its send buffer fills (systemd-facts.md §1, §8): stay well below.
MAX_IN_FLIGHT_CALLS = 64


class SystemdBus:
    """The daemon's one connection to the system bus; reconnects on the next call after a loss."""

    def __init__(self, *, call_timeout: float = 5.0, bus_address: str | None = None) -> None:
        self._call_timeout = call_timeout
        self._bus_address = bus_address
        self._bus: MessageBus | None = None
        self._connect_lock = asyncio.Lock()
        self._slots = asyncio.Semaphore(MAX_IN_FLIGHT_CALLS)
        self.reconnects = 0

    async def _connection(self) -> MessageBus:
        bus = self._bus
        if bus is not None and bus.connected:
            return bus
        async with self._connect_lock:
            if self._bus is not None and self._bus.connected:
                return self._bus
            if self._bus is not None:
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
            return self._bus

    async def call(
        self, *, interface: str, member: str, signature: str = "", body: list[Any] | None = None
    ) -> list[Any]:
        """Call a systemd Manager-object method; D-Bus errors become SystemdUnavailable."""
        message = Message(
            destination=SYSTEMD,
            path=SYSTEMD_PATH,
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
        if reply is None or reply.message_type == MessageType.ERROR:
            name = reply.error_name if reply is not None else "no reply"
            detail = reply.body[0] if reply is not None and reply.body else ""
            raise SystemdUnavailable(data={"reason": f"{member}: {name}: {detail}"})
        return list(reply.body)

    async def manager_property(self, name: str) -> Any:
        (variant,) = await self.call(
            interface=PROPERTIES_IFACE, member="Get", signature="ss", body=[MANAGER_IFACE, name]
        )
        return variant.value

    async def systemd_version(self) -> str:
        return str(await self.manager_property("Version"))

    async def close(self) -> None:
        if self._bus is not None:
            self._bus.disconnect()
            self._bus = None
