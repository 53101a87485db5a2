"""Authorization decisions for a caller's process, asked of polkit over the shared system bus."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from dbus_fast import Variant

from automd.errors import PolkitUnavailable, SystemdRejected, SystemdUnavailable
from automd.systemd.bus import SystemdBus

log = logging.getLogger(__name__)

POLKIT = "org.freedesktop.PolicyKit1"
AUTHORITY_PATH = "/org/freedesktop/PolicyKit1/Authority"
AUTHORITY_IFACE = "org.freedesktop.PolicyKit1.Authority"
PEER_IFACE = "org.freedesktop.DBus.Peer"

# The actions of polkit/org.automd.policy.
ACTION_READ = "org.automd.read"
ACTION_RUN = "org.automd.run"
ACTION_CANCEL = "org.automd.cancel"
ACTION_ADMIN = "org.automd.admin"

# A job's parameters become details, and a caller chooses them: bound what one request can
# make us marshal and make polkit's JavaScript rules engine copy.
MAX_DETAILS = 32
MAX_DETAIL_VALUE_BYTES = 1024
TRUNCATED_MARKER = "…[truncated]"
# Set (to "true") when any detail was cut, dropped or rewritten, so a rule can refuse then.
TRUNCATED_KEY = "automd.truncated"
MAX_DETAIL_KEY_LENGTH = 128

# Errors with which polkit says the subject process is gone or is no longer the one that
# connected (systemd-facts.md §6). The process can no longer be asked about: deny.
_SUBJECT_GONE_ERRORS = (
    # "Failed to open file "/proc/N/status"": a GFileError (NOENT) polkit did not map.
    "org.gtk.GDBus.UnmappedGError.Quark._g_2dfile_2derror_2dquark.",
)
_SUBJECT_REPLACED_ERROR = "org.freedesktop.PolicyKit1.Error.Failed"
_SUBJECT_REPLACED_TEXT = "has been replaced"

_NO_FLAGS = 0  # not AllowUserInteraction: automd's callers have no authentication agent


@dataclass(frozen=True)
class Subject:
    """The calling process, as the kernel reported it at connect time (SO_PEERCRED)."""

    pid: int
    uid: int


class SubjectGone(Exception):
    """The subject's /proc entry is missing or unreadable: the process has exited."""


class PolkitAuthority:
    """Asks polkit whether a subject may perform an automd action.

    `proc_root` is where the subject's process table is mounted: "/proc" in the daemon, a
    container's /proc when its polkit is asked from outside (tests).
    """

    def __init__(self, bus: SystemdBus, *, timeout: float = 5.0, proc_root: str = "/proc") -> None:
        self._bus = bus
        self._timeout = timeout
        self._proc_root = proc_root

    async def check(self, action_id: str, subject: Subject, details: Mapping[str, str]) -> bool:
        """True when polkit authorizes `subject` for `action_id`; False when it does not.

        A subject whose process has exited or been replaced is denied. Raises
        PolkitUnavailable when polkit gives no answer (not on the bus, timeout, other errors).
        """
        try:
            # Read right away: the later the read, the likelier the pid has been recycled.
            start_time = read_start_time(subject.pid, proc_root=self._proc_root)
        except SubjectGone:
            log.info("polkit check %s: pid %d has exited; denied", action_id, subject.pid)
            return False
        body = [
            subject_struct(subject, start_time),
            action_id,
            cap_details(details),
            _NO_FLAGS,
            "",  # no cancellation id: nothing ever cancels the check but our own timeout
        ]
        try:
            async with asyncio.timeout(self._timeout):
                reply = await self._bus.call(
                    destination=POLKIT,
                    path=AUTHORITY_PATH,
                    interface=AUTHORITY_IFACE,
                    member="CheckAuthorization",
                    signature="(sa{sv})sa{ss}us",
                    body=body,
                )
        except SystemdRejected as exc:
            return decide_error(exc.dbus_error, exc.detail)
        except SystemdUnavailable as exc:
            raise PolkitUnavailable(data={"reason": _reason(exc)}) from exc
        except TimeoutError as exc:
            reason = f"CheckAuthorization: no answer in {self._timeout:g} s"
            raise PolkitUnavailable(data={"reason": reason}) from exc
        return decide_reply(reply)

    async def available(self) -> bool:
        """True when polkit answers on the bus (being activated by the bus if need be)."""
        try:
            async with asyncio.timeout(self._timeout):
                await self._bus.call(
                    destination=POLKIT, path=AUTHORITY_PATH, interface=PEER_IFACE, member="Ping"
                )
        except (SystemdUnavailable, SystemdRejected, TimeoutError) as exc:
            log.debug("polkit is not available: %s", exc)
            return False
        return True


def parse_start_time(stat: str) -> int:
    """Field 22 (starttime, clock ticks since boot) of a /proc/PID/stat line.

    The command name (field 2) may contain spaces and parentheses, so fields are counted from
    the last ")".
    """
    _, paren, rest = stat.rpartition(")")
    fields = rest.split()
    # rest starts with field 3 (state): field 22 is its 20th.
    if not paren or len(fields) < 20:
        raise ValueError(f"malformed /proc stat line: {stat[:80]!r}")
    return int(fields[19])


def read_start_time(pid: int, *, proc_root: str = "/proc") -> int:
    """The start time of process `pid`; raises SubjectGone once it has exited."""
    if pid <= 0:
        raise SubjectGone(f"no such pid {pid}")
    try:
        with open(f"{proc_root}/{pid}/stat", encoding="utf-8", errors="replace") as f:
            stat = f.read()
    except OSError as exc:  # ENOENT after exit, ESRCH while the process is being reaped
        raise SubjectGone(f"pid {pid}: {exc}") from exc
    return parse_start_time(stat)


def subject_struct(subject: Subject, start_time: int) -> list[Any]:
    """polkit's (sa{sv}) unix-process subject.

    The uid is always the kernel's SO_PEERCRED one: polkit takes the uid a root caller
    supplies at its word (systemd-facts.md §6), so it must never come from the client.
    """
    return [
        "unix-process",
        {
            "pid": Variant("u", subject.pid),
            "start-time": Variant("t", start_time),
            "uid": Variant("i", subject.uid),
        },
    ]


def cap_details(details: Mapping[str, str]) -> dict[str, str]:
    """`details` made safe to send: valid D-Bus strings, bounded in count and size.

    Keys that are empty, non-printable, over-long, TRUNCATED_KEY itself, or in polkit's
    reserved "polkit." namespace (polkit.message and friends change what polkit shows) are
    dropped; values are cut to
    MAX_DETAIL_VALUE_BYTES with TRUNCATED_MARKER; past MAX_DETAILS entries the rest is dropped.
    Whenever anything was changed, TRUNCATED_KEY is set to "true".
    """
    capped: dict[str, str] = {}
    changed = False
    for key, value in details.items():
        if len(capped) == MAX_DETAILS:
            changed = True
            break
        if not _valid_key(key):
            changed = True
            continue
        safe = _dbus_string(value)
        if len(safe.encode()) > MAX_DETAIL_VALUE_BYTES:
            safe = _truncate(safe)
        changed = changed or safe != value
        capped[key] = safe
    if changed:
        capped[TRUNCATED_KEY] = "true"
    return capped


def decide_reply(body: list[Any]) -> bool:
    """is_authorized out of CheckAuthorization's ((bba{ss})) reply."""
    try:
        is_authorized, _is_challenge, _details = body[0]
    except (IndexError, TypeError, ValueError) as exc:
        raise PolkitUnavailable(
            data={"reason": f"CheckAuthorization: unexpected reply {body!r:.200}"}
        ) from exc
    return bool(is_authorized)


def decide_error(error_name: str, detail: str) -> bool:
    """An error reply from CheckAuthorization: False when it means the subject is gone.

    Anything else (polkit not activatable, an unregistered action, internal failures) is no
    decision at all, so it raises PolkitUnavailable rather than pass for a denial.
    """
    subject_gone = error_name.startswith(_SUBJECT_GONE_ERRORS) or (
        error_name == _SUBJECT_REPLACED_ERROR and _SUBJECT_REPLACED_TEXT in detail
    )
    if subject_gone:
        log.info("polkit: subject process gone or replaced (%s); denied", detail)
        return False
    raise PolkitUnavailable(data={"reason": f"CheckAuthorization: {error_name}: {detail}"})


def _reason(exc: SystemdUnavailable) -> str:
    data = exc.data if isinstance(exc.data, dict) else {}
    return str(data.get("reason", exc.message))


def _valid_key(key: str) -> bool:
    return (
        0 < len(key) <= MAX_DETAIL_KEY_LENGTH
        and key.isascii()
        and key.isprintable()
        and not key.startswith("polkit.")
        and key != TRUNCATED_KEY
    )


def _dbus_string(value: str) -> str:
    # D-Bus strings are UTF-8 without NUL; a lone surrogate or a NUL would make the message
    # unmarshallable, and dbus-daemon drops a connection that sends an invalid one.
    text = str(value).encode("utf-8", "replace").decode("utf-8")
    return text.replace("\x00", "\ufffd")


def _truncate(value: str) -> str:
    budget = MAX_DETAIL_VALUE_BYTES - len(TRUNCATED_MARKER.encode())
    # errors="ignore" drops a multi-byte character cut in half at the budget's edge.
    head = value.encode()[:budget].decode("utf-8", "ignore")
    return head + TRUNCATED_MARKER
