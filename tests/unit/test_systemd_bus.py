"""The bus boundary: how D-Bus error replies become automd errors."""

from __future__ import annotations

import pytest

from automd.errors import SystemdRejected, SystemdUnavailable
from automd.systemd.bus import dbus_error


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("org.freedesktop.DBus.Error.NoReply", SystemdUnavailable),
        ("org.freedesktop.DBus.Error.ServiceUnknown", SystemdUnavailable),
        ("org.freedesktop.DBus.Error.LimitsExceeded", SystemdUnavailable),
        ("org.freedesktop.systemd1.NoSuchUnit", SystemdRejected),
        ("org.freedesktop.DBus.Error.InvalidArgs", SystemdRejected),
        ("org.freedesktop.DBus.Error.AccessDenied", SystemdRejected),
    ],
)
def test_dbus_errors_are_outages_or_refusals_by_one_table(name: str, kind: type) -> None:
    """A refusal is not an outage: it must not be retried as one (issue 14: SystemdRejected
    was a subclass of SystemdUnavailable, and systemd dropping off the bus (NoReply) during a
    start was recorded as a refused start, though the unit may have started)."""
    error = dbus_error(name, "detail", member="StartTransientUnit")
    assert type(error) is kind
    assert not isinstance(SystemdRejected("x"), SystemdUnavailable)
