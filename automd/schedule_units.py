"""The systemd units of the loaded schedules, as text: one .timer and one oneshot .service per
schedule, and which timers timers.target wants (the enabled ones).

One function renders them for both readers: the generator (automd/generator.py), which writes
them at boot and at every daemon-reload, and the daemon, which compares them with what the
generator last wrote to know whether a definitions reload needs a daemon-reload.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from automd.definitions.model import Definition
from automd.definitions.schedule import UNIT_PREFIX, Schedule, unit_base

#: The generator's normal output directory for the system manager (systemd.generator(7)).
GENERATOR_DIR = Path("/run/systemd/generator")
WANTS_DIR = "timers.target.wants"
#: Where systemd looks for system generators; the .deb installs ours in the /usr one.
GENERATOR_DIRS = (
    Path("/etc/systemd/system-generators"),
    Path("/run/systemd/system-generators"),
    Path("/usr/local/lib/systemd/system-generators"),
    Path("/usr/lib/systemd/system-generators"),
)
GENERATOR_NAME = "automd-schedule-generator"
# systemd's timer accuracy defaults to a minute; a firing every few seconds needs less, and
# 100 ms costs nothing measurable for the few timers a host has.
ACCURACY = "100ms"
# The firing client needs the socket and nothing else; it runs as root (the socket admits
# root, and schedule.fire is an admin method) in the tightest sandbox that still reaches it.
_SANDBOX = """\
CapabilityBoundingSet=
NoNewPrivileges=yes
ProtectSystem=strict
ProtectHome=read-only
PrivateTmp=yes
PrivateDevices=yes
PrivateNetwork=yes
IPAddressDeny=any
PrivateIPC=yes
ProtectProc=invisible
ProcSubset=pid
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectControlGroups=yes
ProtectClock=yes
ProtectHostname=yes
RestrictNamespaces=yes
RestrictRealtime=yes
RestrictSUIDSGID=yes
LockPersonality=yes
MemoryDenyWriteExecute=yes
RestrictAddressFamilies=AF_UNIX
SystemCallArchitectures=native
SystemCallFilter=@system-service
SystemCallFilter=~@privileged @resources
SystemCallErrorNumber=EPERM
UMask=0077
"""


@dataclass(frozen=True)
class ScheduleUnits:
    """Unit file name -> its text; the timers timers.target wants."""

    files: dict[str, str]
    enabled: frozenset[str]

    @property
    def timers(self) -> frozenset[str]:
        return frozenset(name for name in self.files if name.endswith(".timer"))


def automctl_path() -> str:
    """The automctl beside this interpreter: the package's venv, or a checkout's."""
    return str(Path(sys.executable).parent / "automctl")


def render_units(definitions: Mapping[str, Definition], automctl: str) -> ScheduleUnits:
    files: dict[str, str] = {}
    enabled: set[str] = set()
    for definition in definitions.values():
        for schedule in definition.schedules:
            base = unit_base(definition.name, schedule.name)
            files[f"{base}.timer"] = timer_text(definition.name, schedule)
            files[f"{base}.service"] = service_text(definition.name, schedule.name, automctl)
            if schedule.enabled:
                enabled.add(f"{base}.timer")
    return ScheduleUnits(files, frozenset(enabled))


def timer_text(definition: str, schedule: Schedule) -> str:
    lines = [
        f"# Written by {GENERATOR_NAME} from definition {definition!r}; edit the definition.",
        "[Unit]",
        f"Description=automd schedule {schedule.name} of {definition}",
        "Documentation=man:automd(8)",
        "",
        "[Timer]",
        f"OnCalendar={schedule.calendar}",
        f"Persistent={'yes' if schedule.persistent else 'no'}",
        f"AccuracySec={ACCURACY}",
    ]
    if schedule.randomized_delay is not None:
        # Fixed: the same delay at every firing, so firings stay one interval apart.
        lines += [f"RandomizedDelaySec={schedule.randomized_delay}", "FixedRandomDelay=yes"]
    return "\n".join(lines) + "\n"


def service_text(definition: str, schedule: str, automctl: str) -> str:
    # The parameters are not here: automd takes them from its own loaded schedule, so the unit
    # file can name the firing only. systemd passes TRIGGER_TIMER_REALTIME_USEC to it.
    return (
        f"# Written by {GENERATOR_NAME} from definition {definition!r}; edit the definition.\n"
        "[Unit]\n"
        f"Description=automd firing of schedule {schedule} of {definition}\n"
        "Documentation=man:automd(8)\n"
        "Wants=automd.socket\n"
        "After=automd.socket\n"
        "\n"
        "[Service]\n"
        "Type=oneshot\n"
        f"ExecStart={automctl} __fire {definition} {schedule}\n"
        "TimeoutStartSec=120\n"
        f"{_SANDBOX}"
    )


def written_units(directory: Path = GENERATOR_DIR) -> ScheduleUnits:
    """What the generator last wrote: our files in its directory, and its wants links."""
    files: dict[str, str] = {}
    for path in sorted(directory.glob(f"{UNIT_PREFIX}*")):
        try:
            files[path.name] = path.read_text(encoding="utf-8")
        except OSError:
            continue
    wants = directory / WANTS_DIR
    enabled = frozenset(p.name for p in wants.glob(f"{UNIT_PREFIX}*.timer"))
    return ScheduleUnits(files, enabled)


def generator_installed() -> bool:
    return any((directory / GENERATOR_NAME).exists() for directory in GENERATOR_DIRS)
