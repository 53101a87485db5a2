"""The Idempotency-Key header on the real daemon: job.submit's key when its params carry none.

No systemd on the host: submitted jobs wait in the queue, which is all these tests need.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from automd.api.codes import ErrorCode
from tests.daemon.harness import Connection, DaemonProcess

ECHO = """
executable = "/bin/echo"
argv = ["{text}"]

[parameters.text]
type = "string"
default = "x"
"""
PARAMS, INVALID = ErrorCode.INVALID_PARAMS, ErrorCode.INVALID_REQUEST


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProcess]:
    process = DaemonProcess.with_definitions(tmp_path_factory.mktemp("i"), {"echo": ECHO})
    try:
        process.start()
        yield process
    finally:
        process.close()


@pytest.fixture
async def conn(daemon: DaemonProcess) -> AsyncIterator[Connection]:
    connection = await Connection.open(daemon.socket_path)
    yield connection
    await connection.close()


def submit(id: Any = 1, key: Any = None, text: str = "x") -> dict[str, Any]:
    params: dict[str, Any] = {"definition": "echo", "params": {"text": text}}
    if key is not None:
        params["idempotency_key"] = key
    return {"jsonrpc": "2.0", "method": "job.submit", "params": params, "id": id}


async def post(conn: Connection, payload: Any, *headers: str) -> Any:
    extra = "".join(f"{header}\r\n" for header in headers)
    reply = await conn.post(json.dumps(payload).encode(), extra=extra)
    assert reply.status == 200, reply.body[:300]
    return reply.json()


async def job_count(conn: Connection) -> int:
    listed = await conn.call("job.list", {"limit": 500})
    return len(listed["result"]["jobs"])


async def test_the_header_alone_is_the_key_and_a_replay_returns_the_same_job(
    conn: Connection,
) -> None:
    first = (await post(conn, submit(), "Idempotency-Key: header-only"))["result"]
    assert (first["replayed"], first["job"]["idempotency_key"]) == (False, "header-only")
    # The draft's form (a quoted Structured Field String) names the same key.
    again = (await post(conn, submit(), 'Idempotency-Key: "header-only"'))["result"]
    assert (again["replayed"], again["job"]["id"]) == (True, first["job"]["id"])
    # ...and so does the key in params: one key, however it was sent.
    in_params = (await post(conn, submit(key="header-only")))["result"]
    assert (in_params["replayed"], in_params["job"]["id"]) == (True, first["job"]["id"])


async def test_params_only_still_works(conn: Connection) -> None:
    first = (await post(conn, submit(key="params-only")))["result"]
    again = (await post(conn, submit(key="params-only")))["result"]
    assert first["job"]["idempotency_key"] == "params-only"
    assert (again["replayed"], again["job"]["id"]) == (True, first["job"]["id"])


async def test_header_and_params_naming_the_same_key_are_one_key(conn: Connection) -> None:
    reply = await post(conn, submit(key="both-equal"), "Idempotency-Key: both-equal")
    assert reply["result"]["job"]["idempotency_key"] == "both-equal"


async def test_header_and_params_that_differ_are_invalid_params(conn: Connection) -> None:
    before = await job_count(conn)
    reply = await post(conn, submit(id=7, key="in-params"), "Idempotency-Key: in-header")
    assert reply["id"] == 7
    assert reply["error"]["code"] == PARAMS
    assert reply["error"]["data"]["field"] == "idempotency_key"
    assert "differs from the Idempotency-Key header" in reply["error"]["data"]["reason"]
    assert await job_count(conn) == before


async def test_a_null_key_in_params_takes_the_header(conn: Connection) -> None:
    request = submit()
    request["params"]["idempotency_key"] = None
    reply = await post(conn, request, "Idempotency-Key: null-in-params")
    assert reply["result"]["job"]["idempotency_key"] == "null-in-params"


async def test_the_same_key_for_other_params_is_a_conflict(conn: Connection) -> None:
    # The draft's "key reused for a different request" (its 422) is automd's 1004.
    first = (await post(conn, submit(text="a"), "Idempotency-Key: reused"))["result"]
    reply = await post(conn, submit(text="b"), "Idempotency-Key: reused")
    assert reply["error"]["code"] == ErrorCode.IDEMPOTENCY_CONFLICT
    assert reply["error"]["data"]["job"] == first["job"]["id"]


async def test_a_batch_with_the_header_is_refused_whole(conn: Connection) -> None:
    before = await job_count(conn)
    batch = [submit(id=1, text="one"), submit(id=2, text="two")]
    reply = await post(conn, batch, "Idempotency-Key: batch")
    assert reply["id"] is None
    assert reply["error"]["code"] == INVALID
    assert "cannot be sent with a batch" in reply["error"]["data"]
    assert await job_count(conn) == before  # none of it ran


@pytest.mark.parametrize(
    "header",
    [
        "Idempotency-Key: has space",
        "Idempotency-Key: " + "k" * 129,
        'Idempotency-Key: "unterminated',
        'Idempotency-Key: ""',
        "Idempotency-Key: caf\xe9",  # not ASCII (sent as UTF-8)
        "Idempotency-Key: one\r\nIdempotency-Key: two",  # two keys: which one?
    ],
    ids=["space", "too long", "unterminated", "empty", "not ASCII", "sent twice"],
)
async def test_an_invalid_header_value_is_invalid_params(conn: Connection, header: str) -> None:
    before = await job_count(conn)
    reply = await post(conn, submit(id="x"), header)
    assert reply["id"] == "x"
    assert reply["error"]["code"] == PARAMS, reply
    assert reply["error"]["data"]["field"] == "idempotency_key"
    assert reply["error"]["data"]["reason"].startswith("Idempotency-Key header: ")
    assert await job_count(conn) == before


async def test_the_header_on_another_method_is_invalid_params(conn: Connection) -> None:
    reply = await post(conn, {"jsonrpc": "2.0", "method": "job.list", "id": 3},
                       "Idempotency-Key: not-for-reads")  # fmt: skip
    assert reply["error"]["code"] == PARAMS
    assert reply["error"]["data"]["field"] is None
    assert "job.list takes no idempotency key" in reply["error"]["data"]["reason"]


async def test_the_audit_entry_names_the_key_from_the_header(conn: Connection) -> None:
    job = (await post(conn, submit(), "Idempotency-Key: audited"))["result"]["job"]
    entries = (await conn.call("audit.list", {"method": "job.submit"}))["result"]["entries"]
    entry = next(e for e in entries if e["job_id"] == job["id"])
    assert entry["idempotency_key"] == "audited"


async def automctl(daemon: DaemonProcess, *args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "automd.ctl.main", "--socket", str(daemon.socket_path), *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    async with asyncio.timeout(30):
        out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_automctl_run_with_an_idempotency_key_replays_the_same_job(
    daemon: DaemonProcess,
) -> None:
    run = ("run", "echo", "text=ctl", "--idempotency-key", "ctl-nightly")
    code, first, err = await automctl(daemon, *run, "-q")
    assert code == 0, err
    code, again, err = await automctl(daemon, *run, "-q")
    assert code == 0, err
    assert again == first  # the job id, once per key
    code, human, _ = await automctl(daemon, *run)
    assert human == f"Job {first.strip()} queued (an earlier job with this idempotency key)\n"
    code, out, _ = await automctl(daemon, *run, "--json")
    submitted = json.loads(out)
    assert (submitted["replayed"], submitted["job"]["id"]) == (True, first.strip())
    assert submitted["job"]["idempotency_key"] == "ctl-nightly"
    # Other params under the same key: the daemon's conflict, exit status 65 (REFUSED).
    code, _, err = await automctl(daemon, "run", "echo", "text=other", "--idempotency-key",
                                  "ctl-nightly")  # fmt: skip
    assert code == 65
    assert f'idempotency key "ctl-nightly" was used for job {first.strip()}' in err
