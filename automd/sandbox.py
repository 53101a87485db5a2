"""The sandboxes jobs run in: named profiles, written as in a unit file, and their D-Bus forms.

A leaf module: definitions/ validates a definition's choices against it and systemd/ turns
them into unit properties, and neither has to import the other for it. Values are what an
admin would write in a unit file (`UMask = "0077"`, `RestrictAddressFamilies = "AF_UNIX
AF_INET"`), so a plan stored as JSON keeps plain booleans and strings; `dbus_value()` is the
one place they become the typed values StartTransientUnit takes.

Why these profiles, and what each costs per launch, is measured in docs/systemd.md
("Sandbox profiles"); bench/sandbox_profiles.py reproduces the table.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, Literal

SandboxValue = bool | str
Profile = Literal["strict", "default", "minimal"]

# Without a mount namespace of their own: cheap per launch (seccomp, no-new-privileges,
# capability and namespace restrictions are set on the process, not mounted).
_PROCESS_ONLY: dict[str, SandboxValue] = {
    "NoNewPrivileges": True,
    "CapabilityBoundingSet": "",
    "SystemCallArchitectures": "native",
    "RestrictNamespaces": True,
    "RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6",
    "RestrictSUIDSGID": True,
    "RestrictRealtime": True,
    "LockPersonality": True,
    "MemoryDenyWriteExecute": True,
    "RemoveIPC": True,
    "KeyringMode": "private",
    "UMask": "0077",
    # The system calls ordinary services use (a process outside it is killed with SIGSYS):
    # measured within the noise of launch cost, and 3.5 -> 2.2 on the exposure score.
    "SystemCallFilter": "@system-service",
}

# A private view of the file system: read-only /usr, /etc, /boot; no home directories; a
# private /tmp and /dev; its own IPC namespace and hostname; other users' processes hidden.
_FILE_SYSTEM: dict[str, SandboxValue] = {
    "ProtectSystem": "strict",
    "ProtectHome": "tmpfs",
    "PrivateTmp": True,
    "PrivateDevices": True,
    "PrivateIPC": True,
    "ProtectClock": True,
    "ProtectHostname": True,
    "ProtectProc": "invisible",
}

#: What protects the kernel from a job: each is one more read-only mount (~10-25 ms per
#: launch). A process with no capabilities (the other profiles' empty bounding set, a
#: non-root user) cannot write what they protect, so only root jobs and `strict` need them.
KERNEL_PROTECTION: Mapping[str, SandboxValue] = MappingProxyType(
    {
        "ProtectKernelTunables": True,
        "ProtectKernelModules": True,
        "ProtectKernelLogs": True,
        "ProtectControlGroups": True,
    }
)

PROFILES: Mapping[Profile, Mapping[str, SandboxValue]] = MappingProxyType(
    {
        # Everything, whatever it costs: the default plus the kernel protections.
        "strict": MappingProxyType({**_PROCESS_ONLY, **_FILE_SYSTEM, **KERNEL_PROTECTION}),
        "default": MappingProxyType({**_PROCESS_ONLY, **_FILE_SYSTEM}),
        # No mount namespace at all, for a fixed `user` (a DynamicUser implies one anyway).
        "minimal": MappingProxyType(dict(_PROCESS_ONLY)),
    }
)


def protects_the_kernel(sandbox: Mapping[str, SandboxValue]) -> bool:
    """Whether the sandbox mounts over the kernel's interfaces (KERNEL_PROTECTION: `strict`,
    and every root job): the slowest set-ups, which slow each other down when several run at
    once (docs/systemd.md, "Starts in flight")."""
    return any(sandbox.get(name, False) is True for name in KERNEL_PROTECTION)  # booleans


DEFAULT_PROFILE: Profile = "default"
DEFAULT_SANDBOX: Mapping[str, SandboxValue] = PROFILES[DEFAULT_PROFILE]

#: Every property a definition may set in its sandbox, with the kind of value it takes.
KNOWN_PROPERTIES: Mapping[str, type] = MappingProxyType(
    {
        name: type(value)
        for profile in PROFILES.values()
        for name, value in {**profile, **KERNEL_PROTECTION}.items()
    }
)


def sandbox_for(profile: Profile, *, runs_as_root: bool) -> dict[str, SandboxValue]:
    """The profile's properties, adjusted for a job that runs as root.

    A root job keeps root's capabilities (a definition that says `user = "root"` asks for
    them; it narrows them with `CapabilityBoundingSet` in its overrides), and so it gets the
    kernel protections back in every profile: with capabilities, only those stop it.
    """
    chosen = dict(PROFILES[profile])
    if runs_as_root:
        chosen.pop("CapabilityBoundingSet", None)
        chosen.update(KERNEL_PROTECTION)
    return chosen


# -- D-Bus forms -------------------------------------------------------------------------

# Linux capability numbers (capability.h), for CapabilityBoundingSet's bit mask.
_CAPABILITIES = (
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
    "SETPCAP",
    "LINUX_IMMUTABLE",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_ADMIN",
    "NET_RAW",
    "IPC_LOCK",
    "IPC_OWNER",
    "SYS_MODULE",
    "SYS_RAWIO",
    "SYS_CHROOT",
    "SYS_PTRACE",
    "SYS_PACCT",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_NICE",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "MKNOD",
    "LEASE",
    "AUDIT_WRITE",
    "AUDIT_CONTROL",
    "SETFCAP",
    "MAC_OVERRIDE",
    "MAC_ADMIN",
    "SYSLOG",
    "WAKE_ALARM",
    "BLOCK_SUSPEND",
    "AUDIT_READ",
    "PERFMON",
    "BPF",
    "CHECKPOINT_RESTORE",
)
_ALL_CAPABILITIES = (1 << len(_CAPABILITIES)) - 1

# The namespaces RestrictNamespaces= names, by their CLONE_NEW* flag (sched.h).
_NAMESPACES = {
    "cgroup": 0x02000000,
    "ipc": 0x08000000,
    "net": 0x40000000,
    "mnt": 0x00020000,
    "pid": 0x20000000,
    "user": 0x10000000,
    "uts": 0x04000000,
}
_ALL_NAMESPACES = sum(_NAMESPACES.values())

_ADDRESS_FAMILY = re.compile(r"AF_[A-Z0-9_]+")
_SYSCALL = re.compile(r"@?[a-z0-9_-]+")


def _words(value: str) -> tuple[bool, list[str]]:
    """("~a b") -> (False, [a, b]): systemd's allow list, or with ~ a deny list."""
    deny = value.startswith("~")
    return not deny, value.removeprefix("~").split()


def _capabilities(value: str) -> int:
    allow, names = _words(value)
    mask = 0
    for name in names:
        short = name.upper().removeprefix("CAP_")
        if short not in _CAPABILITIES:
            raise ValueError(f"unknown capability {name!r}")
        mask |= 1 << _CAPABILITIES.index(short)
    return mask if allow else _ALL_CAPABILITIES & ~mask


def _namespaces(value: bool | str) -> int:
    """The namespaces still allowed: RestrictNamespaces=yes allows none."""
    if isinstance(value, bool):
        return 0 if value else _ALL_NAMESPACES
    allow, names = _words(value)
    unknown = [name for name in names if name not in _NAMESPACES]
    if unknown:
        raise ValueError(f"unknown namespace types {unknown} (one of: {', '.join(_NAMESPACES)})")
    mask = sum(_NAMESPACES[name] for name in set(names))
    return mask if allow else _ALL_NAMESPACES & ~mask


def _listed(value: str, pattern: re.Pattern[str], what: str) -> list[Any]:
    allow, names = _words(value)
    bad = [name for name in names if not pattern.fullmatch(name)]
    if bad or not names:
        raise ValueError(f"expected {what} separated by spaces, optionally after ~: {value!r}")
    return [allow, names]


def _umask(value: str) -> int:
    if not re.fullmatch(r"0?[0-7]{3}", value):
        raise ValueError(f"an octal umask such as 0077: {value!r}")
    return int(value, 8)


# Property -> (D-Bus signature, conversion from the unit-file value).
_TYPED: dict[str, tuple[str, Any]] = {
    "UMask": ("u", _umask),
    "CapabilityBoundingSet": ("t", _capabilities),
    "SystemCallArchitectures": ("as", lambda value: value.split()),
    "RestrictNamespaces": ("t", _namespaces),
    "RestrictAddressFamilies": ("(bas)", lambda v: _listed(v, _ADDRESS_FAMILY, "AF_* names")),
    "SystemCallFilter": ("(bas)", lambda v: _listed(v, _SYSCALL, "system calls or @groups")),
}


def dbus_value(name: str, value: SandboxValue) -> tuple[str, Any]:
    """(signature, value) of one sandbox property for StartTransientUnit; ValueError if the
    value is not one systemd would accept for it."""
    if name in _TYPED:
        signature, convert = _TYPED[name]
        return signature, convert(value)
    return ("b", value) if isinstance(value, bool) else ("s", value)


def check_property(name: str, value: SandboxValue) -> None:
    """Raise ValueError unless a definition may set `name` to `value`."""
    if name not in KNOWN_PROPERTIES:
        known = ", ".join(sorted(KNOWN_PROPERTIES))
        raise ValueError(f"{name!r} is not a sandbox property (one of: {known})")
    kind = KNOWN_PROPERTIES[name]
    # RestrictNamespaces takes yes/no, or the namespace types still allowed.
    if name != "RestrictNamespaces" and type(value) is not kind:
        raise ValueError(f"{name} must be {'true or false' if kind is bool else 'a string'}")
    dbus_value(name, value)
