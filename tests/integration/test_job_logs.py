"""job.logs and automctl logs against real journald: pages, tails, following, restarts."""

from __future__ import annotations

import asyncio
import base64
import json
import subprocess
import time
from typing import Any

from tests.daemon.harness import Connection
from tests.integration.conftest import CHECKOUT, TEST_USER
from tests.integration.container import Container
from tests.integration.test_jobs import Api

AUTOMCTL = str(CHECKOUT / ".venv" / "bin" / "automctl")
NOT_UTF8 = b"bytes \xff\xfe end"


async def finished_job(api: Api, definition: str, **params: Any) -> str:
    """Submit, wait until the job and its output are complete; the job id."""
    job = await api.submit(definition, **params)
    await api.wait(job["id"], "succeeded")
    deadline = time.monotonic() + 30
    while not (await api.call("job.logs", id=job["id"], limit=1))["finished"]:
        assert time.monotonic() < deadline, "job.logs never said finished"
        await asyncio.sleep(0.2)
    return str(job["id"])


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


def _lines_as_they_come(proc: subprocess.Popen[bytes]) -> list[tuple[float, bytes]]:
    assert proc.stdout is not None
    return [(time.monotonic(), line) for line in iter(proc.stdout.readline, b"")]


def test_logs_follow_shows_lines_as_they_come_and_exits_when_the_job_ends(
    container: Container,
) -> None:
    _code, out = _automctl(container, "run", "chatty", "lines=5", "interval=1", "-q")
    job_id = out.strip()
    started = time.monotonic()
    with container.popen([AUTOMCTL, "logs", "-f", job_id], user=TEST_USER) as proc:
        lines = _lines_as_they_come(proc)
        assert proc.wait(timeout=30) == 0, proc.stderr.read() if proc.stderr else ""
    exited = time.monotonic()
    assert [line for _, line in lines] == [
        *(f"line {n}\n".encode() for n in range(1, 6)),
        b"to stderr\n",
        NOT_UTF8 + b"\n",
    ]
    # Lines arrived one by one over the job's ~5 s, not all at its end.
    assert lines[4][0] - lines[0][0] >= 3.0
    assert lines[0][0] - started < 3.0
    job = json.loads(_automctl(container, "status", job_id, "--json")[1])["job"]
    assert job["state"] == "succeeded"
    # automctl ended soon after the job did (its output settles for about a second).
    assert exited - lines[-1][0] < 4.0


def test_follow_resumes_across_an_automd_restart(container: Container) -> None:
    _code, out = _automctl(container, "run", "chatty", "lines=8", "interval=1", "-q")
    job_id = out.strip()
    with container.popen([AUTOMCTL, "logs", "-f", job_id], user=TEST_USER) as proc:
        assert proc.stdout is not None
        first = [proc.stdout.readline(), proc.stdout.readline()]
        container.run(["systemctl", "restart", "automd.service"])
        rest = [line for _, line in _lines_as_they_come(proc)]
        assert proc.wait(timeout=30) == 0
    assert first + rest == [
        *(f"line {n}\n".encode() for n in range(1, 9)),
        b"to stderr\n",
        NOT_UTF8 + b"\n",
    ]


def test_run_follow_streams_then_passes_the_exit_status(container: Container) -> None:
    code, out = _automctl(container, "run", "chatty", "lines=2", "--follow", "-q", check=False)
    assert code == 0
    lines = out.encode("utf-8", "surrogateescape").splitlines()
    assert lines[1:] == [b"line 1", b"line 2", b"to stderr", NOT_UTF8]
    code, _out = _automctl(container, "run", "fail", "code=4", "--follow", check=False)
    assert code == 4


async def test_logs_of_another_users_job_read_as_not_found(container: Container) -> None:
    api = Api(container)
    job = await api.submit("hello")  # root's job
    proc = container.run([AUTOMCTL, "logs", job["id"]], user=TEST_USER, check=False)
    assert proc.returncode == 3
    assert b"No such job (1002)" in proc.stderr


async def test_many_followers_do_not_block_the_daemon(container: Container) -> None:
    api = Api(container)
    job = await api.submit("chatty", lines=4, interval="1")
    followers = [asyncio.create_task(_follow_raw(api, job["id"])) for _ in range(40)]
    await asyncio.sleep(1.5)
    started = time.monotonic()
    for _ in range(20):
        await api.call("job.get", id=job["id"])
    per_call = (time.monotonic() - started) / 20
    results = await asyncio.wait_for(asyncio.gather(*followers), 60)
    assert per_call < 0.25, f"job.get took {per_call * 1000:.0f} ms with 40 followers"
    for messages, final in results:
        assert messages[:4] == ["line 1", "line 2", "line 3", "line 4"]
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
