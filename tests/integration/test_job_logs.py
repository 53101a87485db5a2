"""job.logs and automctl logs against real journald: pages, tails, following, restarts."""

from __future__ import annotations

import asyncio
import base64
import json
import re
import statistics
import subprocess
import time
from collections.abc import Callable
from typing import Any

from automd.joblog import FINISH_GRACE_SECONDS, RECHECK_SECONDS
from tests.daemon.harness import Connection
from tests.integration.conftest import CHECKOUT, TEST_USER, WAIT_SECONDS, Gate, wait_for_async
from tests.integration.container import Container
from tests.integration.test_jobs import GATED_TAIL, NOT_UTF8, Api

AUTOMCTL = str(CHECKOUT / ".venv" / "bin" / "automctl")


async def finished_job(api: Api, definition: str, **params: Any) -> str:
    """Submit, wait until the job and its output are complete; the job id."""
    job = await api.submit(definition, **params)
    await api.wait(job["id"], "succeeded")
    api.container.sync_journal()  # the ended job's output is all in the journal
    await wait_for_async(
        "job.logs saying the output is finished",
        lambda: api.call("job.logs", id=job["id"], limit=1),
        lambda page: bool(page["finished"]),
    )
    return str(job["id"])


def gated_output(lines: int) -> list[bytes]:
    """What a gated job with `lines` steps prints, as automctl shows it."""
    return [*(f"line {n}\n".encode() for n in range(1, lines + 1)),
            b"to stderr\n", NOT_UTF8 + b"\n"]  # fmt: skip


def read_in_step(
    proc: subprocess.Popen[bytes],
    gate: Gate,
    lines: int,
    before_opening: Callable[[int], None] = lambda step: None,
) -> list[bytes]:
    """A gated job's output as `proc` shows it, opening each step's gate only once the step's
    lines have been shown: every line arrives while the next one does not exist yet."""
    assert proc.stdout is not None
    shown: list[bytes] = []
    for step in range(1, lines + 1):
        shown += [proc.stdout.readline() for _ in range(1 if step < lines else 3)]
        before_opening(step)
        gate.open(step)
    return shown


async def test_pages_by_cursor_oldest_first_binary_safe(container: Container) -> None:
    api = Api(container)
    job_id = await finished_job(api, "chatty", lines=120)
    entries, cursor, pages = [], None, []
    while True:
        page = await api.call("job.logs", id=job_id, limit=50, cursor=cursor)
        entries += page["entries"]
        pages.append((len(page["entries"]), page["more"]))
        cursor = page["cursor"]
        if not page["more"]:
            break
    assert pages == [(50, True), (50, True), (22, False)]
    messages = [e["message"] for e in entries]
    assert messages == [f"line {n}" for n in range(1, 121)] + [
        "to stderr",
        "bytes \ufffd\ufffd end",
    ]
    assert [e["message_base64"] for e in entries[:-1]] == [None] * 121
    assert base64.b64decode(entries[-1]["message_base64"]) == NOT_UTF8
    assert {(e["attempt"], e["priority"], e["stream"]) for e in entries} == {(1, 6, "stdout")}
    assert len({e["cursor"] for e in entries}) == 122
    # Asking again from the last cursor: nothing new, and the same cursor to keep polling.
    again = await api.call("job.logs", id=job_id, cursor=cursor)
    assert (again["entries"], again["cursor"], again["finished"]) == ([], cursor, True)


async def test_tail_attempt_and_errors(container: Container) -> None:
    api = Api(container)
    job_id = await finished_job(api, "chatty", lines=5)
    tail = await api.call("job.logs", id=job_id, tail=2)
    assert [e["message"] for e in tail["entries"]] == ["to stderr", "bytes \ufffd\ufffd end"]
    rest = await api.call("job.logs", id=job_id, cursor=tail["cursor"])
    assert rest["entries"] == []
    assert (await api.call("job.logs", id=job_id, attempt=2))["entries"] == []
    assert len((await api.call("job.logs", id=job_id, attempt=1))["entries"]) == 7
    error = await api.error("job.logs", id=job_id, cursor="not-a-cursor")
    assert (error["code"], error["data"]["field"]) == (-32602, "cursor")
    error = await api.error("job.logs", id="0" * 26)
    assert error["code"] == 1002
    # A batch has no single reply to stream.
    conn = await Connection.open(api.socket)
    batch = [{"jsonrpc": "2.0", "method": "job.logs", "params": {"id": job_id, "follow": True},
              "id": 1}]  # fmt: skip
    reply = (await conn.post(json.dumps(batch).encode())).json()
    await conn.close()
    assert (reply[0]["error"]["code"], reply[0]["error"]["data"]["field"]) == (-32602, "follow")


def test_logs_follow_shows_lines_as_they_come_and_exits_when_the_job_ends(
    container: Container, new_gate: Callable[[], Gate]
) -> None:
    gate = new_gate()
    _code, out = _automctl(container, "run", "gated", f"gate={gate.name}", "lines=3", "-q")
    job_id = out.strip()
    with container.popen([AUTOMCTL, "logs", "-f", job_id], user=TEST_USER) as proc:
        assert read_in_step(proc, gate, 3) == gated_output(3)
        # The job ends with its last gate; automctl then ends too, having shown nothing more.
        assert proc.wait(timeout=WAIT_SECONDS) == 0, proc.stderr.read() if proc.stderr else ""
        assert proc.stdout is not None
        assert proc.stdout.read() == b""
    job = json.loads(_automctl(container, "status", job_id, "--json")[1])["job"]
    assert job["state"] == "succeeded"


def test_follow_resumes_across_an_automd_restart(
    container: Container, new_gate: Callable[[], Gate]
) -> None:
    gate = new_gate()
    _code, out = _automctl(container, "run", "gated", f"gate={gate.name}", "lines=3", "-q")
    job_id = out.strip()

    def restart_after_the_first_line(step: int) -> None:
        if step == 1:  # the lines of steps 2 and 3 are written after the restart
            container.restart_units("automd.service")

    with container.popen([AUTOMCTL, "logs", "-f", job_id], user=TEST_USER) as proc:
        # Each line once: resumed at the cursor, nothing shown twice or skipped.
        assert read_in_step(proc, gate, 3, restart_after_the_first_line) == gated_output(3)
        assert proc.wait(timeout=WAIT_SECONDS) == 0


def test_run_follow_streams_then_passes_the_exit_status(
    container: Container, new_gate: Callable[[], Gate]
) -> None:
    gate = new_gate()
    argv = [AUTOMCTL, "run", "gated", f"gate={gate.name}", "lines=2", "--follow", "-q"]
    with container.popen(argv, user=TEST_USER) as proc:
        assert proc.stdout is not None
        assert re.fullmatch(rb"\w{26}\n", proc.stdout.readline())  # -q: the job id first
        assert read_in_step(proc, gate, 2) == gated_output(2)
        assert proc.wait(timeout=WAIT_SECONDS) == 0
    code, _out = _automctl(container, "run", "fail", "code=4", "--follow", check=False)
    assert code == 4


async def test_the_last_lines_are_there_however_far_journald_lags(
    container: Container, new_gate: Callable[[], Gate]
) -> None:
    """Regression: a follow ended, and a page said "finished", FINISH_GRACE_SECONDS after the
    job did, so when journald lagged longer than that they missed the job's last lines. Both
    now wait for journald's answer to Synchronize (automd/journald.py)."""
    api = Api(container)
    gate = new_gate()
    job_id = (await api.submit("gated", gate=gate.name, lines=2))["id"]
    follow = asyncio.create_task(_follow_raw(api, job_id))
    await wait_for_async(
        "the first line in the journal",
        lambda: api.call("job.logs", id=job_id),
        lambda page: [e["message"] for e in page["entries"]] == ["line 1"],
    )
    container.run(["systemctl", "kill", "--kill-whom=main", "--signal=SIGSTOP", "systemd-journald"])
    try:
        gate.open_all()  # the job writes its last lines into its stream, and ends
        await api.wait(job_id, "succeeded")
        # The fault injected: journald holds the lines for three times the old grace.
        await asyncio.sleep(3 * FINISH_GRACE_SECONDS)
        assert not follow.done(), f"the follow ended while journald lagged: {follow.result()}"
        page = asyncio.create_task(api.call("job.logs", id=job_id))
        await asyncio.sleep(FINISH_GRACE_SECONDS)
        assert not page.done(), f"a page said the output was complete: {page.result()}"
    finally:
        container.run(
            ["systemctl", "kill", "--kill-whom=main", "--signal=SIGCONT", "systemd-journald"]
        )
    messages, final = await asyncio.wait_for(follow, WAIT_SECONDS)
    assert messages == ["line 1", "line 2", *GATED_TAIL]
    assert final["result"]["finished"] is True
    whole = await asyncio.wait_for(page, WAIT_SECONDS)
    assert ([e["message"] for e in whole["entries"]], whole["finished"]) == (messages, True)


async def test_logs_of_another_users_job_read_as_not_found(container: Container) -> None:
    api = Api(container)
    job = await api.submit("hello")  # root's job
    proc = container.run([AUTOMCTL, "logs", job["id"]], user=TEST_USER, check=False)
    assert proc.returncode == 66  # NOT_FOUND
    assert f"no job {job['id']} (or it is not yours)".encode() in proc.stderr


def _following(health: dict[str, Any]) -> int:
    """How many job.logs followers system.health's journal check counts."""
    match = re.search(r"; (\d+) following$", health["checks"]["journal"]["detail"])
    assert match, health
    return int(match.group(1))


async def _job_get_seconds(api: Api, job_id: str) -> list[float]:
    seconds = []
    for _ in range(20):
        started = time.monotonic()
        await api.call("job.get", id=job_id)
        seconds.append(time.monotonic() - started)
    return seconds


async def test_many_followers_do_not_block_the_daemon(
    container: Container, new_gate: Callable[[], Gate]
) -> None:
    api = Api(container)
    gate = new_gate()
    job = await api.submit("gated", gate=gate.name)
    await api.wait(job["id"], "running")
    alone = await _job_get_seconds(api, job["id"])
    followers = [asyncio.create_task(_follow_raw(api, job["id"])) for _ in range(40)]
    # All forty follow, and the job stays silent until the gate opens: they all wait.
    await wait_for_async("40 followers", lambda: api.call("system.health"),
                         lambda health: _following(health) >= 40)  # fmt: skip
    followed = await _job_get_seconds(api, job["id"])
    gate.open()
    results = await asyncio.wait_for(asyncio.gather(*followers), WAIT_SECONDS)
    # A follower that waited for the journal on the event loop would hold every call for its
    # wait (up to RECHECK_SECONDS while the job is silent): seconds, where a busy machine
    # costs milliseconds. The median, so that one scheduling hiccup does not decide.
    median, median_alone = statistics.median(followed), statistics.median(alone)
    assert median < RECHECK_SECONDS / 2, (
        f"job.get took {median * 1000:.0f} ms with 40 followers, {median_alone * 1000:.0f} "
        "ms without (medians of 20)"
    )
    for messages, final in results:
        assert messages == ["line 1", *GATED_TAIL]
        assert final["result"]["finished"] is True


async def _follow_raw(api: Api, job_id: str) -> tuple[list[str], dict[str, Any]]:
    """One streamed job.logs over a raw connection: the messages, and the final response."""
    reader, writer = await asyncio.open_unix_connection(str(api.socket))
    body = json.dumps({"jsonrpc": "2.0", "method": "job.logs", "id": 1,
                       "params": {"id": job_id, "follow": True}}).encode()  # fmt: skip
    writer.write(b"POST /rpc HTTP/1.1\r\nHost: automd\r\nContent-Type: application/json\r\n"
                 b"Content-Length: %d\r\n\r\n%s" % (len(body), body))  # fmt: skip
    head = await reader.readuntil(b"\r\n\r\n")
    assert b"Transfer-Encoding: chunked" in head, head
    assert b"Content-Type: application/x-ndjson" in head, head
    messages: list[str] = []
    buffer = b""
    while True:
        size = int((await reader.readline()).strip(), 16)
        if size == 0:
            break
        buffer += (await reader.readexactly(size + 2))[:-2]
        *complete, buffer = buffer.split(b"\n")
        for line in complete:
            message = json.loads(line)
            if "id" in message:
                writer.close()
                return messages, message
            messages += [e["message"] for e in message["params"]["entries"]]
    raise AssertionError("stream ended without a response")


def _automctl(c: Container, *args: str, check: bool = True) -> tuple[int, str]:
    proc = c.run([AUTOMCTL, *args], user=TEST_USER, check=check, timeout=120)
    return proc.returncode, proc.stdout.decode("utf-8", "surrogateescape")
