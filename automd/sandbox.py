"""The sandbox every job runs in unless its definition says otherwise.

A leaf module: definitions/ validates overrides against it and systemd/ turns it into unit
properties, and neither has to import the other for it.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

#: Hardened defaults a plain /bin/sh script still runs under; every entry is one systemd 252
#: accepts as a transient property and reads back (tests/integration/test_systemd_units.py).
#: Jobs that need more (a writable path, a JIT) get it from their definition, not from here.
DEFAULT_SANDBOX: Mapping[str, bool | str] = MappingProxyType(
    {
        "NoNewPrivileges": True,
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": True,
        "PrivateDevices": True,
        "PrivateIPC": True,
        "ProtectKernelTunables": True,
        "ProtectKernelModules": True,
        "ProtectKernelLogs": True,
        "ProtectControlGroups": True,
        "ProtectClock": True,
        "ProtectHostname": True,
        "ProtectProc": "invisible",
        "RestrictSUIDSGID": True,
        "RestrictRealtime": True,
        "LockPersonality": True,
        "MemoryDenyWriteExecute": True,
        "RemoveIPC": True,
        "KeyringMode": "private",
    }
)
