"""automd-schedule-generator: a systemd generator (systemd.generator(7)) that turns the
schedules of the job definitions into timers, at boot and at every daemon-reload.

It loads the definitions with automd's own loader, so a schedule automd would reject gets no
timer, and writes each schedule's .timer and oneshot .service (automd/schedule_units.py) into
the normal output directory, with a timers.target.wants/ link for each enabled one. Like any
generator it runs early: no D-Bus, nothing from /var; /etc and /usr are there. It never
fails the boot: a problem is logged (to the kernel log, where systemd sends a generator's
stderr) and the schedules it concerns get no units.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from automd.config import load_config
from automd.definitions.loader import load_definitions
from automd.errors import ConfigError
from automd.schedule_units import WANTS_DIR, ScheduleUnits, automctl_path, render_units


def write_units(units: ScheduleUnits, directory: Path) -> None:
    """The unit files into `directory` (a generator's output directory, empty at each run)."""
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in units.files.items():
        (directory / name).write_text(text, encoding="utf-8")
    if units.enabled:
        wants = directory / WANTS_DIR
        wants.mkdir(exist_ok=True)
        for timer in sorted(units.enabled):
            link = wants / timer
            if not link.is_symlink():
                os.symlink(f"../{timer}", link)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args:
        print(f"usage: {Path(sys.argv[0]).name} NORMAL_DIR [EARLY_DIR LATE_DIR]", file=sys.stderr)
        return 2
    try:
        config = load_config(None)
    except ConfigError as exc:
        print(f"automd-schedule-generator: bad configuration, no timers: {exc}", file=sys.stderr)
        return 0
    # The loader logs each problem; with no logging set up, Python writes them to stderr.
    loaded = load_definitions(config.jobs.definitions_directory)
    write_units(render_units(loaded.definitions, automctl_path()), Path(args[0]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
