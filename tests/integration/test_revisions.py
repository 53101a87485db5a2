"""Definition revisions against the container's real systemd (issue 22): edits and reloads make
revisions, jobs run and show their own, a canary is rolled back or promoted by its jobs'
outcomes, and a rollback by command is audited."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.daemon.test_metrics import samples
from tests.integration.conftest import JOBS_DIR, wait_for_async
from tests.integration.container import Container
from tests.integration.schedule_kit import AUTOMCTL
from tests.integration.test_jobs import Api
from tests.integration.test_metrics import scrape, value


def exits(code: int, memory: str = "64M", extra: str = "") -> str:
    """A definition whose jobs print which code they exit with, then exit with it."""
    return (
        f'{extra}description = "exits {code}"\n'
        'executable = "/bin/sh"\n'
        f'argv = ["-c", "echo exiting {code}; exit {code}"]\n'
        f'[limits]\nmemory_max = "{memory}"\n'
    )


ROLLOUT = "\n[rollout]\ncanary_percent = 50\nmin_finished = 2\n"


class Definitions:
    """Definition files written for one test, each reloaded into automd; removed after."""

    def __init__(self, container: Container) -> None:
        self.c = container
        self.api = Api(container)
        self.written: set[str] = set()

    async def write(self, name: str, text: str) -> dict[str, Any]:
        self.c.write_file(f"{JOBS_DIR}/{name}.toml", text)
        self.written.add(name)
        reloaded: dict[str, Any] = await self.api.call("system.reload")
        assert reloaded["errors"] == [], reloaded
        return await self.status(name)

    async def status(self, name: str) -> dict[str, Any]:
        shown = await self.api.call("definition.get", name=name)
        status: dict[str, Any] = shown["status"]
        return status

    async def run(self, name: str, *states: str) -> dict[str, Any]:
        job = await self.api.submit(name)
        return await self.api.wait(job["id"], *(states or ("succeeded", "failed")))


@pytest.fixture
async def definitions(container: Container) -> AsyncIterator[Definitions]:
    made = Definitions(container)
    yield made
    for name in made.written:
        container.run(["rm", "-f", f"{JOBS_DIR}/{name}.toml"])
    await made.api.call("system.reload")


async def test_each_edit_is_a_revision_and_each_job_shows_its_own(
    definitions: Definitions,
) -> None:
    api = definitions.api
    status = await definitions.write("rev-edit", exits(0))
    first = await definitions.run("rev-edit")
    # A comment, another key order and a default spelled out: the same revision.
    same = "# reviewed\n" + exits(0).replace('[limits]\nmemory_max = "64M"\n',
                                             "[limits]\nruntime_max_seconds = 3600\n"
                                             'memory_max = "64M"\n')  # fmt: skip
    assert await definitions.write("rev-edit", same) == status
    assert status["active"] == status["file"]
    edited = await definitions.write("rev-edit", exits(0, memory="128M").replace(
        "echo exiting", "echo now exiting"))  # fmt: skip
    assert edited["active"] == status["active"] + 1
    second = await definitions.run("rev-edit")
    assert (first["revision"], second["revision"]) == (status["active"], edited["active"])
    for job in (first, second):  # each attempt ran its job's revision
        detail = await api.call("job.get", id=job["id"])
        assert [a["revision"] for a in detail["attempts"]] == [job["revision"]]
    old, new = [
        (await api.call("definition.get", name="rev-edit", revision=n))["model"]
        for n in (first["revision"], second["revision"])
    ]
    assert changed_paths(old, new) == {"argv", "limits.memory_max"}
    # automctl's diff shows exactly those fields, from the revision before the active one.
    diff = definitions.c.run([AUTOMCTL, "defs", "diff", "rev-edit"]).stdout.decode()
    assert diff.splitlines() == [
        f"rev-edit: revision {first['revision']} (inactive) -> {second['revision']} (active)",
        '  argv[1]: "echo exiting 0; exit 0" -> "echo now exiting 0; exit 0"',
        "  limits.memory_max: 67108864 -> 134217728",
    ]
    history = await api.call("definition.history", name="rev-edit")
    assert [r["number"] for r in history["revisions"]] == [edited["active"], status["active"]]
    assert [r["jobs"] for r in history["revisions"]] == [1, 1]
    # A retry runs the job's own revision, unless asked for the current one.
    await api.call("job.retry", id=first["id"])
    again = await api.wait(first["id"], "succeeded")
    await api.call("job.retry", id=first["id"], revision="current")
    current = await api.wait(first["id"], "succeeded")
    detail = await api.call("job.get", id=first["id"])
    assert (again["revision"], current["revision"]) == (status["active"], edited["active"])
    assert [a["revision"] for a in detail["attempts"]] == [
        status["active"],
        status["active"],
        edited["active"],
    ]
    logs = await api.call("job.logs", id=first["id"])
    assert [e["message"] for e in logs["entries"]][-1] == "now exiting 0"


def changed_paths(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> set[str]:
    found = set()
    for key in old.keys() | new.keys():
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            found |= changed_paths(a, b, f"{prefix}{key}.")
        elif a != b:
            found.add(prefix + key)
    return found


async def test_a_job_queued_under_one_revision_runs_it_after_the_next_loads(
    definitions: Definitions, new_gate: Any
) -> None:
    api, gate = definitions.api, new_gate()
    gated = (
        'concurrency = 1\nexecutable = "/bin/sh"\n'
        'argv = ["-c", "echo revision one; until [ -e /run/automd-test-gates/$1.1 ]; '
        'do sleep 0.05; done", "gated", "{gate}"]\n'
        '[parameters.gate]\ntype = "string"\npattern = "^[0-9a-f]{16}$"\n'
        '[sandbox]\nread_write_paths = ["/var/tmp"]\n'
    )
    before = await definitions.write("rev-queued", gated)
    holding = await api.submit("rev-queued", gate=gate.name)
    await api.wait(holding["id"], "running")
    queued = await api.submit("rev-queued", gate=gate.name)  # waits: concurrency = 1
    after = await definitions.write("rev-queued", gated.replace("revision one", "revision two"))
    assert after["active"] == before["active"] + 1
    gate.open()
    done = await api.wait(queued["id"], "succeeded")
    assert done["revision"] == before["active"]
    detail = await api.call("job.get", id=queued["id"])
    assert detail["attempts"][0]["revision"] == before["active"]
    logs = await api.call("job.logs", id=queued["id"])
    assert [e["message"] for e in logs["entries"]] == ["revision one"]


async def test_a_canary_that_fails_is_rolled_back_audited_and_counted(
    container: Container, definitions: Definitions
) -> None:
    api = definitions.api
    good = await definitions.write("rev-canary-bad", exits(0))
    canary = await definitions.write("rev-canary-bad", exits(3) + ROLLOUT)
    assert (canary["active"], canary["canary"]) == (good["active"], good["active"] + 1)
    jobs = [await definitions.run("rev-canary-bad") for _ in range(4)]  # every 2nd: canary
    assert [(j["revision"], j["state"]) for j in jobs] == [
        (good["active"], "succeeded"), (canary["canary"], "failed"),
    ] * 2  # fmt: skip
    status = await wait_for_async(
        "the canary rolled back", lambda: definitions.status("rev-canary-bad"),
        lambda s: s["canary"] is None,
    )  # fmt: skip
    assert (status["active"], status["file"], status["diverged"]) == (
        good["active"], canary["canary"], True,
    )  # fmt: skip
    assert (await definitions.run("rev-canary-bad"))["revision"] == good["active"]
    trail = await api.call("audit.list", limit=50)
    entries = [e for e in trail["entries"] if e["definition"] == "rev-canary-bad"
               and e["method"] == "definition.rollback"]  # fmt: skip
    assert [(e["process"], e["outcome"]) for e in entries] == [("automd", "ok")]
    assert "2 failed" in entries[0]["detail"]
    found = samples(scrape(container))
    rolled = value(found, "automd_definition_rollbacks_total", definition="rev-canary-bad",
                   reason="canary")  # fmt: skip
    assert rolled == 1
    assert value(found, "automd_definition_diverged", definition="rev-canary-bad") == 1
    history = await api.call("definition.history", name="rev-canary-bad")
    assert history["events"][0]["event"] == "canary-failed"


async def test_a_canary_that_succeeds_is_promoted_after_its_count(
    definitions: Definitions,
) -> None:
    first = await definitions.write("rev-canary-good", exits(0))
    rollout = ROLLOUT + "promote_after_successes = 2\n"
    canary = await definitions.write("rev-canary-good", exits(0, memory="96M") + rollout)
    jobs = [await definitions.run("rev-canary-good") for _ in range(4)]
    assert [j["revision"] for j in jobs] == [first["active"], canary["canary"]] * 2
    status = await wait_for_async(
        "the canary promoted", lambda: definitions.status("rev-canary-good"),
        lambda s: s["canary"] is None,
    )  # fmt: skip
    assert (status["active"], status["diverged"]) == (canary["canary"], False)
    assert (await definitions.run("rev-canary-good"))["revision"] == canary["canary"]


async def test_rollback_by_command_is_audited_and_reads_diverged_until_the_file_changes(
    definitions: Definitions,
) -> None:
    api = definitions.api
    first = await definitions.write("rev-rollback", exits(0))
    second = await definitions.write("rev-rollback", exits(0, memory="96M"))
    done = await api.call("definition.rollback", name="rev-rollback")
    assert done == {
        "definition": "rev-rollback", "active": first["active"], "previous": second["active"],
        "file": second["active"], "diverged": True,
    }  # fmt: skip
    assert (await definitions.run("rev-rollback"))["revision"] == first["active"]
    listed = await api.call("definition.list")
    shown = [d for d in listed["definitions"] if d["name"] == "rev-rollback"]
    assert [(d["revision"], d["diverged"]) for d in shown] == [(first["active"], True)]
    trail = await api.call("audit.list", limit=50)
    entries = [e for e in trail["entries"] if e["definition"] == "rev-rollback"
               and e["method"] == "definition.rollback"]  # fmt: skip
    assert [(e["outcome"], e["uid"]) for e in entries] == [("ok", 0)]
    unknown = await api.error("definition.rollback", name="rev-rollback", revision=99)
    assert unknown["code"] == 1010
    third = await definitions.write("rev-rollback", exits(0, memory="128M"))
    assert (third["active"], third["diverged"]) == (second["active"] + 1, False)
