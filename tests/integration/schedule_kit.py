"""What the schedule tests share: writing definitions with [[schedule]] tables into the
container's jobs.d, waiting for their timers, and reading their jobs and firings."""

from __future__ import annotations

from datetime import datetime
from functools import partial
from typing import Any

from tests.daemon.harness import Connection
from tests.integration.conftest import CHECKOUT, HERE, JOBS_DIR, wait_for
from tests.integration.container import Container
from tests.integration.test_jobs import Api

EVERY_5S = "*:*:0/5"
AUTOMCTL = str(CHECKOUT / ".venv" / "bin" / "automctl")
GATED = (HERE / "jobs.d" / "gated.toml").read_text()


def timer(definition: str, schedule: str) -> str:
    return f"automd-schedule-{definition}:{schedule}.timer"


def schedule_table(name: str, calendar: str = EVERY_5S, **keys: Any) -> str:
    lines = ["", "[[schedule]]", f'name = "{name}"', f'calendar = "{calendar}"']
    for key, value in keys.items():
        shown = (
            ("true" if value else "false") if isinstance(value, bool)
            else f"{{ {', '.join(f'{k} = {v!r}' for k, v in value.items())} }}"
            if isinstance(value, dict) else f'"{value}"'
        )  # fmt: skip
        lines.append(f"{key} = {shown}".replace("'", '"'))
    return "\n".join(lines) + "\n"


def timer_state(c: Container, unit: str) -> str:
    shown = c.show(unit, "LoadState", "ActiveState")
    return f"{shown['LoadState']}/{shown['ActiveState']}"


class Schedules:
    """Definitions with schedules written into the container's jobs.d for one test, and removed
    (their timers stopped by automd's reload) after it."""

    def __init__(self, c: Container, api: Api) -> None:
        self.c = c
        self.api = api
        self.written: list[str] = []

    async def install(self, name: str, text: str, *timers: str) -> None:
        self.c.write_file(f"{JOBS_DIR}/{name}.toml", text)
        self.written.append(name)
        await self.api.call("system.reload")
        for unit in timers:
            wait_for(f"{unit} active", partial(timer_state, self.c, unit), "loaded/active".__eq__)

    async def remove(self, name: str, *timers: str) -> None:
        self.c.run(["rm", "-f", f"{JOBS_DIR}/{name}.toml"])
        self.written.remove(name)
        await self.api.call("system.reload")
        for unit in timers:
            wait_for(f"{unit} gone", partial(timer_state, self.c, unit),
                     lambda s: not s.endswith("/active"))  # fmt: skip

    async def jobs(self, definition: str, schedule: str | None = None) -> list[dict[str, Any]]:
        params: dict[str, Any] = {"definition": definition, "limit": 500}
        if schedule is not None:
            params["schedule"] = schedule
        listed = await self.api.call("job.list", **params)
        return list(reversed(listed["jobs"]))  # oldest first

    async def firings(self, definition: str) -> list[dict[str, Any]]:
        """schedule.fire's audit entries for the definition, oldest first."""
        # audit.list's "method" param cannot pass through Api.call(method, **params).
        conn = await Connection.open(self.api.socket)
        try:
            reply = await conn.call("audit.list", {"method": "schedule.fire", "limit": 1000})
        finally:
            await conn.close()
        listed = reply["result"]
        return [e for e in reversed(listed["entries"]) if e["definition"] == definition]


def at(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()
