"""Hostile input against the real daemon: every case gets a clear error, the daemon keeps serving.

One daemon serves the whole table of malformed requests (a module fixture: starting one per
case would cost a second each). After every case a fresh connection must still be answered, and
the barrage as a whole must leave the daemon's resident memory bounded. The connection flood and
the slow clients at scale each get a daemon of their own, configured for the test.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from automd import __version__
from automd.api.codes import ErrorCode
from tests.daemon.harness import (
    Connection,
    DaemonProcess,
    HttpReply,
    call,
    descriptors_for,
    post_bytes,
    read_reply,
)

# A definition taking one parameter of each kind, so job.submit validation is exercised too.
PRINTF_DEFINITION = """
executable = "/usr/bin/printf"
argv = ["%s\\n", "{text}", "--", "{n}"]

[parameters.text]
type = "string"
default = "x"

[parameters.n]
type = "integer"
default = 0
maximum = 1000
"""

READ_TIMEOUT = 1.0
REPLY_TIMEOUT = 15.0
KIB = 1024
MIB = 1024 * KIB

# One barrage (every case below, ~12 MiB sent) may grow RSS by at most this much once warmed
# up. Each request is capped at 1 MiB of body; the worst transient cost is a 1 MiB body as
# bytes + str + the parsed value + the encoded reply (a 900 KiB string is echoed in -32601's
# data), about 5 MiB, freed after the reply. Repeating the barrage must therefore reuse memory
# already taken in the warm-up round: 16 MiB of growth over five more rounds leaves room for
# allocator fragmentation but not for anything kept per request (5 x ~70 requests).
BARRAGE_GROWTH_BOUND_KIB = 16 * 1024
# The daemon idles at ~47 MiB (CPython, pydantic-core, sqlite); nothing in a hostile
# request may take it anywhere near a size that matters on a host.
ABSOLUTE_RSS_BOUND_KIB = 150 * 1024


def rss_kib(daemon: DaemonProcess) -> int:
    """VmRSS of the daemon process, in KiB."""
    assert daemon.proc is not None
    for line in Path(f"/proc/{daemon.proc.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS in /proc/PID/status")


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProcess]:
    daemon = DaemonProcess.with_definitions(
        tmp_path_factory.mktemp("h"),
        {"printf": PRINTF_DEFINITION},
        f"[server]\nread_timeout_seconds = {READ_TIMEOUT}\n",
    )
    try:
        daemon.start()
        yield daemon
    finally:
        daemon.close()


def rpc(method: str, params: Any = None, id: Any = 1) -> bytes:
    request: dict[str, Any] = {"jsonrpc": "2.0", "method": method, "id": id}
    if params is not None:
        request["params"] = params
    return json.dumps(request).encode()


def submit(**params: Any) -> bytes:
    return rpc("job.submit", {"definition": "printf", "params": params})


def chunked(body: bytes) -> bytes:
    head = (
        b"POST /rpc HTTP/1.1\r\nHost: automd\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n"
    )
    return head + body


def request_line(line: bytes) -> bytes:
    body = b'{"jsonrpc":"2.0","method":"system.version","id":1}'
    head = b"\r\nHost: automd\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
    return line + head % len(body) + body


@dataclass(frozen=True)
class Case:
    """Raw bytes sent on a fresh connection and what must come back."""

    name: str
    data: bytes
    status: int
    code: int | None = None  # the JSON-RPC error code; None: no error expected or not JSON
    check: Callable[[Any], bool] | None = None  # extra check of the decoded JSON body
    # The daemon answers before the client has finished sending: closing a Unix socket with
    # unread data resets the peer, which may then lose the reply. Being cut off is the point.
    may_reset: bool = False


def _json(body: bytes, **kwargs: Any) -> bytes:
    return post_bytes(body, **kwargs)


def _error_data_has(text: str) -> Callable[[Any], bool]:
    return lambda reply: text in json.dumps(reply["error"].get("data"))


def _field(name: str) -> Callable[[Any], bool]:
    return lambda reply: reply["error"]["data"]["field"] == name


def _result_with_id(expected: Any) -> Callable[[Any], bool]:
    return lambda reply: "result" in reply and reply["id"] == expected


BIG_STRING = "a" * (900 * KIB)
PARSE, INVALID, NOT_FOUND, PARAMS = (
    ErrorCode.PARSE_ERROR,
    ErrorCode.INVALID_REQUEST,
    ErrorCode.METHOD_NOT_FOUND,
    ErrorCode.INVALID_PARAMS,
)
VERSION = rpc("system.version")

CASES = [
    # Nesting: json.loads stops at the interpreter's recursion limit; that is -32700, not 500.
    Case("array nested 100k deep", _json(b"[" * 100_000), 200, PARSE,
         _error_data_has("nested too deeply")),
    Case("array nested 100k deep, closed", _json(b"[" * 100_000 + b"]" * 100_000), 200, PARSE),
    Case("object nested 50k deep", _json(b'{"a":' * 50_000 + b"1" + b"}" * 50_000), 200, PARSE),
    Case("params nested 900 deep", _json(
        b'{"jsonrpc":"2.0","method":"job.submit","id":1,"params":{"definition":"printf",'
        b'"params":{"text":' + b"[" * 900 + b"]" * 900 + b"}}}"), 200, PARAMS),
    # Batches: the size check comes before any element is looked at.
    Case("batch of 100k elements", _json(b"[" + b",".join([b"{}"] * 100_000) + b"]"), 200,
         ErrorCode.BATCH_TOO_LARGE,
         lambda r: r["error"]["data"] == {"max_batch_size": 100, "received": 100_000}),
    # Huge strings, under the 1 MiB body cap.
    Case("900 KiB string parameter", _json(submit(text=BIG_STRING)), 200, PARAMS,
         lambda r: r["error"]["data"]["field"] == "params.text"
         and "characters long" in r["error"]["data"]["reason"]),
    Case("900 KiB method name", _json(rpc(BIG_STRING)), 200, NOT_FOUND),
    Case("900 KiB job id", _json(rpc("job.get", {"id": BIG_STRING})), 200, PARAMS,
         _field("id")),
    Case("900 KiB request id is echoed", _json(rpc("system.version", id=BIG_STRING)), 200,
         None, _result_with_id(BIG_STRING)),
    # Not UTF-8.
    Case("invalid UTF-8 in a string", _json(b'{"jsonrpc":"2.0","method":"system.\xff","id":1}'),
         200, PARSE, _error_data_has("not valid UTF-8")),
    Case("UTF-8-encoded surrogate", _json(b'{"jsonrpc":"2.0","method":"\xed\xa0\x80","id":1}'),
         200, PARSE),
    Case("truncated UTF-8 sequence", _json(b'{"jsonrpc":"2.0","method":"\xe2\x82","id":1}'),
         200, PARSE),
    Case("lone surrogate escapes", _json(b'{"jsonrpc":"2.0","method":"\\ud800","id":"\\udc00"}'),
         200, NOT_FOUND, lambda r: r["id"] == "\udc00"),
    Case("lone surrogate in a job parameter", _json(submit(text="\ud800")), 200, PARAMS,
         _field("params.text")),
    # NUL: escaped inside strings it is data (and refused where it matters), raw it is not JSON.
    Case("escaped NUL in method", _json(rpc("system.version\0")), 200, NOT_FOUND),
    Case("escaped NUL in a job parameter", _json(submit(text="a\0b")), 200, PARAMS,
         lambda r: r["error"]["data"]["field"] == "params.text"
         and "NUL" in r["error"]["data"]["reason"]),
    Case("escaped NUL in a definition name",
         _json(rpc("job.submit", {"definition": "printf\0", "params": {}})), 200, PARAMS,
         _field("definition")),
    Case("escaped NUL in an idempotency key",
         _json(rpc("job.submit", {"definition": "printf", "idempotency_key": "k\0"})), 200,
         PARAMS, _field("idempotency_key")),
    Case("raw NUL inside a string",
         _json(b'{"jsonrpc":"2.0","method":"system.version\x00","id":1}'), 200, PARSE),
    Case("raw NUL between tokens",
         _json(b'{"jsonrpc":"2.0",\x00"method":"system.version","id":1}'), 200, PARSE),
    Case("a body of NULs", _json(b"\x00" * 4096), 200, PARSE),
    # Numbers out of range.
    Case("id 1e400 (infinite)", _json(b'{"jsonrpc":"2.0","method":"system.version","id":1e400}'),
         200, INVALID, lambda r: r["id"] is None),
    Case("id -1e400", _json(b'{"jsonrpc":"2.0","method":"system.version","id":-1e400}'),
         200, INVALID),
    Case("id 2**64 is echoed exactly", _json(rpc("system.version", id=2**64)), 200, None,
         _result_with_id(2**64)),
    Case("id 10**4000 is echoed exactly", _json(rpc("system.version", id=10**4000)), 200, None,
         _result_with_id(10**4000)),
    # CPython refuses to parse integers of more than 4300 digits (int_max_str_digits).
    Case("id of 5000 digits",
         _json(b'{"jsonrpc":"2.0","method":"system.version","id":1' + b"0" * 5000 + b"}"), 200,
         PARSE, _error_data_has("4300 digits")),
    Case("limit 1e400", _json(b'{"jsonrpc":"2.0","method":"job.list","params":{"limit":1e400},'
                              b'"id":1}'), 200, PARAMS, _field("limit")),
    Case("limit -1e400", _json(b'{"jsonrpc":"2.0","method":"job.list","params":{"limit":-1e400},'
                               b'"id":1}'), 200, PARAMS, _field("limit")),
    Case("limit 2**64", _json(rpc("job.list", {"limit": 2**64})), 200, PARAMS, _field("limit")),
    Case("job parameter 2**64", _json(submit(n=2**64)), 200, PARAMS, _field("params.n")),
    Case("job parameter 10**4000", _json(submit(n=10**4000)), 200, PARAMS, _field("params.n")),
    Case("job parameter -2**64", _json(submit(n=-(2**64))), 200, PARAMS, _field("params.n")),
    Case("job parameter 1e400",
         _json(b'{"jsonrpc":"2.0","method":"job.submit","id":1,"params":{"definition":"printf",'
               b'"params":{"n":1e400}}}'), 200, PARAMS, _field("params.n")),
    Case("audit uid 2**64", _json(rpc("audit.list", {"uid": 2**64})), 200, PARAMS, _field("uid")),
    Case("audit cursor 2**63", _json(rpc("audit.list", {"cursor": 2**63})), 200, PARAMS,
         _field("cursor")),
    Case("audit cursor 10**4000", _json(rpc("audit.list", {"cursor": 10**4000})), 200, PARAMS,
         _field("cursor")),
    Case("audit cursor 2**63-1", _json(rpc("audit.list", {"cursor": 2**63 - 1})), 200, None,
         lambda r: "entries" in r["result"]),
    Case("since year 1, date only", _json(rpc("job.list", {"since": "0001-01-01"})), 200, None,
         lambda r: "result" in r),
    Case("since year 99999", _json(rpc("job.list", {"since": "99999-01-01T00:00:00Z"})), 200,
         PARAMS, _field("since")),
    Case("since 1e300 seconds", _json(rpc("audit.list", {"since": 1e300})), 200, PARAMS,
         _field("since")),
    # Shapes JSON allows but a strict reader might not expect.
    Case("duplicate keys: the last one wins",
         _json(b'{"jsonrpc":"2.0","method":"nope","method":"system.version","id":1,"id":2}'),
         200, None, _result_with_id(2)),
    Case("UTF-8 BOM", _json(b"\xef\xbb\xbf" + VERSION), 200, PARSE),
    Case("trailing garbage", _json(VERSION + b" xyz"), 200, PARSE),
    Case("two objects back to back", _json(VERSION + VERSION), 200, PARSE),
    Case("NaN", _json(b'{"jsonrpc":"2.0","method":"system.version","id":NaN}'), 200, PARSE),
    Case("Infinity", _json(b'{"jsonrpc":"2.0","method":"job.list","params":{"limit":Infinity},'
                           b'"id":1}'), 200, PARSE),
    Case("empty body", _json(b""), 200, PARSE),
    # HTTP versions: 1.0 is served (and closed after), anything llhttp does not know is 400.
    Case("HTTP/1.0", request_line(b"POST /rpc HTTP/1.0"), 200, None, _result_with_id(1)),
    Case("HTTP/1.2", request_line(b"POST /rpc HTTP/1.2"), 400),
    Case("HTTP/3.0", request_line(b"POST /rpc HTTP/3.0"), 400),
    Case("not HTTP/", request_line(b"POST /rpc HTTX/1.1"), 400),
    Case("HTTP/2 preface", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 400),
    Case("LF-only line ends", b"POST /rpc HTTP/1.1\nHost: x\nContent-Type: application/json\n"
                              b"Content-Length: 50\n\n" + VERSION, 400),
    # aiohttp's header limits: 8190 bytes per line, 128 headers.
    Case("9 KiB header", _json(VERSION, extra="X-Big: " + "a" * 9 * KIB + "\r\n"), 400),
    Case("1 MiB header", _json(VERSION, extra="X-Big: " + "a" * MIB + "\r\n"), 400,
         may_reset=True),
    Case("200 headers", _json(VERSION, extra="".join(f"X-{i}: a\r\n" for i in range(200))), 400),
    Case("100 KiB URL", request_line(b"POST /" + b"a" * 100 * KIB + b" HTTP/1.1"), 400),
    Case("100 KiB method", request_line(b"A" * 100 * KIB + b" /rpc HTTP/1.1"), 400),
    Case("NUL in a header", _json(VERSION, extra="X-A: a\0b\r\n"), 400),
    Case("NUL in the path", request_line(b"POST /rpc\x00 HTTP/1.1"), 400),
    # Framing.
    Case("chunk size not hex", chunked(b"zz\r\nabc\r\n0\r\n\r\n"), 400),
    Case("negative chunk size", chunked(b"-5\r\nabc\r\n0\r\n\r\n"), 400),
    Case("chunk size overflow", chunked(b"f" * 20 + b"\r\nabc\r\n0\r\n\r\n"), 400),
    Case("chunk longer than its size", chunked(b"2\r\nabcdef\r\n0\r\n\r\n"), 400),
    Case("Content-Length and chunked", _json(b"0\r\n\r\n", extra="Transfer-Encoding: chunked\r\n"),
         400),
    Case("two Content-Lengths", _json(VERSION, extra="Content-Length: 7\r\n"), 400),
    Case("negative Content-Length", request_line(b"POST /rpc HTTP/1.1").replace(
        b"Content-Length: 50", b"Content-Length: -5"), 400),
    Case("Content-Length overflow", request_line(b"POST /rpc HTTP/1.1").replace(
        b"Content-Length: 50", b"Content-Length: " + b"9" * 30), 400),
    Case("Transfer-Encoding gzip", request_line(b"POST /rpc HTTP/1.1").replace(
        b"Content-Length: 50", b"Transfer-Encoding: gzip"), 400),
    Case("Content-Encoding gzip", _json(VERSION, extra="Content-Encoding: gzip\r\n"), 400,
         INVALID, _error_data_has("Content-Encoding")),
    Case("Content-Encoding br", _json(VERSION, extra="Content-Encoding: br\r\n"), 400, INVALID),
    # Transport limits that also hold under hostile framing.
    Case("oversized by Content-Length", _json(b" " * (MIB + 1)), 413, ErrorCode.REQUEST_TOO_LARGE,
         may_reset=True),
    Case("oversized chunked",
         chunked(b"".join(b"10000\r\n" + b" " * 0x10000 + b"\r\n" for _ in range(17))),
         413, ErrorCode.REQUEST_TOO_LARGE, may_reset=True),
]  # fmt: skip


async def exchange(socket_path: Path, data: bytes) -> tuple[HttpReply | None, float]:
    """Send raw bytes on a fresh connection: the reply (None: reset) and how long it took."""
    conn = await Connection.open(socket_path)
    started = time.monotonic()
    try:
        async with asyncio.timeout(REPLY_TIMEOUT):
            with contextlib.suppress(ConnectionResetError, BrokenPipeError):
                await conn.send(data)  # the daemon may hang up before reading it all
            try:
                reply: HttpReply | None = await read_reply(conn.reader)
            except (ConnectionResetError, BrokenPipeError):
                reply = None
    finally:
        await conn.close()
    return reply, time.monotonic() - started


async def exchange_ok(socket_path: Path, data: bytes) -> tuple[HttpReply, float]:
    reply, seconds = await exchange(socket_path, data)
    assert reply is not None, "connection reset"
    return reply, seconds


def check_reply(case: Case, reply: HttpReply | None) -> None:
    if reply is None:
        assert case.may_reset, f"{case.name}: connection reset without a reply"
        return
    assert reply.status == case.status, (case.name, reply.status, reply.body[:300])
    if case.code is None and case.check is None:
        return
    body = reply.json()
    assert body["jsonrpc"] == "2.0", body
    if case.code is not None:
        assert body["error"]["code"] == case.code, (case.name, body)
    else:
        assert "error" not in body, (case.name, str(body)[:300])
    if case.check is not None:
        assert case.check(body), (case.name, str(body)[:300])


async def assert_serving(socket_path: Path) -> None:
    async with asyncio.timeout(REPLY_TIMEOUT):
        reply = await call(socket_path, "system.version")
    assert reply["result"]["version"] == __version__


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
async def test_hostile_request_gets_a_clear_error(hostile: DaemonProcess, case: Case) -> None:
    reply, seconds = await exchange(hostile.socket_path, case.data)
    check_reply(case, reply)
    assert seconds < 2.0, f"{case.name}: answered after {seconds:.2f} s"
    if case.code == PARSE and reply is not None:
        # Nothing can be correlated with a request that was never read as JSON.
        assert reply.json()["id"] is None
    await assert_serving(hostile.socket_path)


async def test_replies_are_ascii_json_even_for_lone_surrogates(hostile: DaemonProcess) -> None:
    reply, _ = await exchange_ok(
        hostile.socket_path, _json(b'{"jsonrpc":"2.0","method":"\\udfff","id":"\\ud800x"}')
    )
    reply.body.decode("ascii")  # never invalid UTF-8 on the wire
    assert reply.json()["error"]["data"] == {"method": "\udfff"}


async def test_method_of_array_or_object_is_invalid_request_not_http_500(
    hostile: DaemonProcess,
) -> None:
    """Regression (issue 13): a "method" that was an array or an object reached the metrics
    observer before it was type-checked (`method in METHODS`: TypeError, unhashable type), and
    the request got HTTP 500 / -32603 and its connection was closed.

    Checked: this test fails on the code before the fix (the fix's automd/ changes stashed).
    """
    conn = await Connection.open(hostile.socket_path)
    for method in ([], {}, ["system.version"], {"name": "system.version"}):
        body = json.dumps({"jsonrpc": "2.0", "method": method, "id": 1}).encode()
        reply = await conn.post(body)
        assert reply.status == 200, (method, reply.status, reply.body[:200])
        assert reply.json() == {
            "jsonrpc": "2.0",
            "error": {"code": INVALID, "message": "Invalid Request",
                      "data": '"method" must be a string'},
            "id": 1,
        }  # fmt: skip
        assert "connection" not in reply.headers  # kept alive: the next request is served
    assert (await conn.call("system.version"))["result"]["version"] == __version__


async def test_batch_with_a_method_of_array_keeps_the_job_id_of_its_submit(
    hostile: DaemonProcess,
) -> None:
    """Regression (issue 13): in a batch, an element whose "method" was an array failed the
    whole batch with HTTP 500, while a valid job.submit beside it created a job whose id the
    caller never received. Now that element alone is -32600.

    Checked: this test fails on the code before the fix (the fix's automd/ changes stashed).
    """
    conn = await Connection.open(hostile.socket_path)
    bad = {"jsonrpc": "2.0", "method": [], "id": "bad"}
    good = {"jsonrpc": "2.0", "method": "job.submit", "id": "good",
            "params": {"definition": "printf", "params": {"text": "batch"}}}  # fmt: skip
    reply = await conn.post(json.dumps([bad, good]).encode())
    assert reply.status == 200, reply.body[:200]
    by_id = {item["id"]: item for item in reply.json()}
    assert set(by_id) == {"bad", "good"}
    assert by_id["bad"]["error"]["code"] == INVALID
    job_id = by_id["good"]["result"]["job"]["id"]
    found = await conn.call("job.get", {"id": job_id})
    assert found["result"]["job"]["params"]["text"] == "batch"
    await assert_serving(hostile.socket_path)


EVERY_JSON_TYPE = [None, False, 0, -1.5, 2**64, "", "system.version", [], ["x"], {}, {"a": [1]}]


def _expected(member: str, value: Any) -> int | None:
    """The error code of system.version with `member` set to `value` (None: a result)."""
    if member == "method":
        return None if value == "system.version" else NOT_FOUND if value == "" else INVALID
    if member == "id":
        return None if value is None or type(value) in (str, int) else INVALID
    if isinstance(value, dict | list):  # params: by name; [] is no params
        return PARAMS if value else None
    return INVALID


@pytest.mark.parametrize("member", ["method", "id", "params"])
async def test_members_of_every_json_type_alone_and_beside_a_submit(
    hostile: DaemonProcess, member: str
) -> None:
    conn = await Connection.open(hostile.socket_path)
    for value in EVERY_JSON_TYPE:
        request = {"jsonrpc": "2.0", "method": "system.version", "id": "x", member: value}
        expected = _expected(member, value)
        reply_id = None if member == "id" and expected == INVALID else request["id"]
        submit = {"jsonrpc": "2.0", "method": "job.submit", "id": "submit",
                  "params": {"definition": "printf", "params": {"text": "beside"}}}  # fmt: skip
        alone = await conn.post(json.dumps(request).encode())
        batch = await conn.post(json.dumps([request, submit]).encode())
        assert (alone.status, batch.status) == (200, 200), (member, value)
        replies = [alone.json(), *(r for r in batch.json() if r["id"] != "submit")]
        for reply in replies:
            assert reply["id"] == reply_id, (member, value, reply)
            assert reply.get("error", {}).get("code") == expected, (member, value, reply)
        (submitted,) = [r for r in batch.json() if r["id"] == "submit"]
        job = await conn.call("job.get", {"id": submitted["result"]["job"]["id"]})
        assert job["result"]["job"]["params"] == {"text": "beside", "n": 0}
    await assert_serving(hostile.socket_path)


async def test_chunk_declared_huge_then_stalled_gets_408(hostile: DaemonProcess) -> None:
    # A 1 GiB chunk announced, three bytes sent: the body deadline applies, not the size.
    reply, seconds = await exchange_ok(hostile.socket_path, chunked(b"40000000\r\nabc"))
    assert reply.status == 408
    assert reply.json()["error"]["code"] == ErrorCode.REQUEST_TIMEOUT
    assert READ_TIMEOUT <= seconds < READ_TIMEOUT + 3
    await assert_serving(hostile.socket_path)


async def test_thousand_pipelined_requests_on_one_connection(hostile: DaemonProcess) -> None:
    conn = await Connection.open(hostile.socket_path)
    count = 1000
    await conn.send(b"".join(post_bytes(rpc("system.version", id=i)) for i in range(count)))
    async with asyncio.timeout(30):
        ids = [(await read_reply(conn.reader)).json()["id"] for _ in range(count)]
    assert ids == list(range(count))  # in order, none lost


async def test_pipelined_mix_of_good_and_bad_requests_keeps_order(hostile: DaemonProcess) -> None:
    conn = await Connection.open(hostile.socket_path)
    mix = [
        post_bytes(rpc("system.version", id="a")),
        post_bytes(b'{"jsonrpc": "2.0", "method": '),  # parse error
        post_bytes(b'{"jsonrpc":"2.0","method":"system.version"}'),  # notification: 204
        post_bytes(b"[" + rpc("nope", id="b") + b"," + rpc("system.version", id="c") + b"]"),
        post_bytes(b"[" * 5000),
        post_bytes(rpc("system.version", id="d")),
    ]
    await conn.send(b"".join(mix))
    async with asyncio.timeout(REPLY_TIMEOUT):
        replies = [await read_reply(conn.reader) for _ in mix]
    assert [r.status for r in replies] == [200, 200, 204, 200, 200, 200]
    assert replies[0].json()["id"] == "a"
    assert replies[1].json()["error"]["code"] == PARSE
    assert {r["id"] for r in replies[3].json()} == {"b", "c"}
    assert replies[4].json()["error"]["code"] == PARSE
    assert replies[5].json()["id"] == "d"


async def test_audit_list_cursor_beyond_sqlite_integer_range_is_invalid_params(
    hostile: DaemonProcess,
) -> None:
    # Regression: a cursor >= 2**63 reached SQLite and came back as -32603 (OverflowError).
    for cursor in (2**63, 2**64, 10**4000):
        reply = await call(hostile.socket_path, "audit.list", {"cursor": cursor})
        assert reply["error"]["code"] == PARAMS, reply
        assert reply["error"]["data"]["field"] == "cursor"


async def test_naive_since_of_year_one_is_not_an_internal_error(hostile: DaemonProcess) -> None:
    # Regression: a date-only or offset-less time was read as local time, and .timestamp() of
    # 0001-01-01 raised (year 0) -> -32603. Times without an offset are UTC now.
    for method, param in (("job.list", "since"), ("job.list", "until"), ("audit.list", "since")):
        for value in ("0001-01-01", "0001-01-01T00:00:00", "9999-12-31T23:59:59"):
            reply = await call(hostile.socket_path, method, {param: value})
            assert "result" in reply, (method, param, value, reply)


async def test_audit_list_survives_lone_surrogates_in_a_failed_submit(
    hostile: DaemonProcess,
) -> None:
    # Regression: a failed job.submit is audited with the caller's raw params; a lone surrogate
    # in them (valid JSON, not encodable as UTF-8) made pydantic's serialiser raise outside the
    # dispatcher's error handling: HTTP 500 without a JSON-RPC body, on every later audit.list.
    body = (
        b'{"jsonrpc":"2.0","method":"job.submit","id":1,"params":{"definition":"printf",'
        b'"params":{"\\ud800":"\\udfff"}}}'
    )
    reply, _ = await exchange_ok(hostile.socket_path, _json(body))
    assert reply.json()["error"]["data"]["field"] == "params.\ud800"
    listed = await call(hostile.socket_path, "audit.list", {"method": "job.submit", "limit": 1})
    entry = listed["result"]["entries"][0]
    assert entry["params"] == {"\\ud800": "\\udfff"}  # shown escaped, as text
    assert entry["detail"].startswith("-32602")


SET_COMM_AND_SUBMIT = """
import ctypes, json, os, socket, sys
ctypes.CDLL(None).prctl(15, ctypes.c_char_p(bytes.fromhex(sys.argv[2])), 0, 0, 0)  # PR_SET_NAME
body = json.dumps({"jsonrpc": "2.0", "method": "job.submit", "id": 1,
                   "params": {"definition": "no-such-job"}}).encode()
sock = socket.socket(socket.AF_UNIX)
sock.connect(sys.argv[1])
sock.settimeout(10)
sock.sendall(b"POST /rpc HTTP/1.1\\r\\nHost: x\\r\\nContent-Type: application/json\\r\\n"
             b"Content-Length: %d\\r\\n\\r\\n" % len(body) + body)
reply = b""
while chunk := sock.recv(65536):
    reply += chunk
    if reply.endswith(b"}"):
        break
print(os.getpid(), reply.partition(b"\\r\\n\\r\\n")[2].decode())
"""


async def test_caller_named_in_invalid_utf8_is_still_audited(hostile: DaemonProcess) -> None:
    # Regression: the audit read /proc/PID/comm as strict UTF-8; a caller that named itself
    # b"\xff..." (prctl PR_SET_NAME, no privilege needed) got -32603 and went unaudited.
    assert await audited_process_name(hostile, b"\xff\xfeab") == "\ufffd\ufffdab"


async def audited_process_name(daemon: DaemonProcess, comm: bytes) -> str:
    """The `process` of the audit entry of a caller that named itself `comm`."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", SET_COMM_AND_SUBMIT, str(daemon.socket_path), comm.hex(),
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    async with asyncio.timeout(20):
        out, _ = await proc.communicate()
    pid, body = out.decode().split(" ", 1)
    assert json.loads(body)["error"]["code"] == ErrorCode.UNKNOWN_DEFINITION
    entries = (await call(daemon.socket_path, "audit.list", {"method": "job.submit"}))["result"]
    entry = next(e for e in entries["entries"] if e["pid"] == int(pid))
    process: str = entry["process"]
    return process


async def test_caller_named_with_control_characters_is_audited_escaped(
    hostile: DaemonProcess,
) -> None:
    # A caller names itself (prctl PR_SET_NAME, no privilege): a newline would forge a line of
    # the audit trail on stderr, and an ESC makes journalctl show the entry as "[blob data]".
    name = await audited_process_name(hostile, b"a\nb\x1b[8mc")
    assert name == "a\\nb\\x1b[8mc"
    assert "audit: uid 0 (a\\nb\\x1b[8mc, pid" in hostile.output()


async def test_compressed_body_is_refused_without_inflating_it(hostile: DaemonProcess) -> None:
    # Regression: aiohttp inflated Content-Encoding bodies on the event loop; a 1 MiB deflate
    # bomb (1 GB of zeros) took ~2 s before its 413, stalling every other client meanwhile.
    bomb = zlib.compress(b"\0" * 200_000_000, 9)
    request = _json(bomb, extra="Content-Encoding: deflate\r\n")
    latencies: list[float] = []

    async def ping_until(done: asyncio.Event) -> None:
        while not done.is_set():
            started = time.monotonic()
            await assert_serving(hostile.socket_path)
            latencies.append(time.monotonic() - started)

    done = asyncio.Event()
    pinger = asyncio.create_task(ping_until(done))
    try:
        for _ in range(5):
            reply, seconds = await exchange_ok(hostile.socket_path, request)
            assert reply.status == 400
            assert reply.json()["error"]["code"] == INVALID
            assert seconds < 0.5
    finally:
        done.set()
        await pinger
    assert latencies
    assert max(latencies) < 0.5, f"other clients stalled {max(latencies):.2f} s"


async def test_barrage_keeps_memory_bounded(hostile: DaemonProcess) -> None:
    async def barrage() -> None:
        for case in CASES:
            try:
                reply, _ = await exchange(hostile.socket_path, case.data)
            except TimeoutError:
                raise AssertionError(f"{case.name}: no reply within {REPLY_TIMEOUT} s") from None
            check_reply(case, reply)

    await barrage()  # warm-up: caches, allocator arenas, the first 900 KiB replies
    before = rss_kib(hostile)
    for _ in range(5):
        await barrage()
    after = rss_kib(hostile)
    print(f"hostile barrage: RSS {before} KiB -> {after} KiB after 5 rounds of {len(CASES)}")
    assert after - before < BARRAGE_GROWTH_BOUND_KIB, (before, after)
    assert after < ABSOLUTE_RSS_BOUND_KIB, after
    await assert_serving(hostile.socket_path)


# -- many connections ------------------------------------------------------------------------


FLOOD = 2000
FLOOD_CAP = 256


@pytest.fixture
def enough_file_descriptors() -> Iterator[None]:
    """FLOOD client sockets in this process."""
    with descriptors_for(FLOOD):
        yield


async def open_many(path: Path, count: int) -> list[Connection | BaseException]:
    async def open_one() -> Connection:
        async with asyncio.timeout(10):
            return await Connection.open(path)

    return await asyncio.gather(*(open_one() for _ in range(count)), return_exceptions=True)


async def hung_up(conn: Connection) -> bool:
    """True once the daemon has closed the connection (EOF or reset); bounded by the caller."""
    try:
        return await conn.reader.read() == b""
    except (ConnectionResetError, BrokenPipeError):
        return True


async def ask(conn: Connection, id: int) -> str:
    """'ok', 'busy' (503/-32000) or 'refused' (hung up: reset before its 503 could be read).

    Never hangs: every wait is bounded.
    """
    with contextlib.suppress(ConnectionResetError, BrokenPipeError):
        await conn.send(post_bytes(rpc("system.version", id=id)))
    try:
        async with asyncio.timeout(10):
            reply = await read_reply(conn.reader)
    except (asyncio.IncompleteReadError, ConnectionResetError, BrokenPipeError):
        return "refused"
    return classify(reply, id)


def classify(reply: HttpReply, id: int) -> str:
    if reply.status == 503:
        assert reply.json()["error"]["code"] == ErrorCode.SERVER_BUSY
        assert reply.headers["connection"] == "close"
        return "busy"
    assert reply.status == 200, reply.body
    assert reply.json()["id"] == id
    return "ok"


async def unsolicited(conn: Connection) -> str:
    """What the daemon said on a connection before any request: 'busy', or 'held' (nothing)."""
    try:
        async with asyncio.timeout(1.0):
            reply = await read_reply(conn.reader)
    except TimeoutError:
        return "held"
    return classify(reply, -1)


LoggedDaemonFactory = Callable[[str], DaemonProcess]


@pytest.fixture
def logged_daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LoggedDaemonFactory]:
    started: list[DaemonProcess] = []

    def make(config_text: str) -> DaemonProcess:
        daemon = DaemonProcess(tmp_path_factory.mktemp("f"), config_text)
        started.append(daemon)
        daemon.start()
        return daemon

    yield make
    for daemon in started:
        daemon.close()


@pytest.fixture
def flood_daemon(
    logged_daemon: LoggedDaemonFactory, enough_file_descriptors: None
) -> DaemonProcess:
    return logged_daemon(f"[server]\nmax_connections = {FLOOD_CAP}\n")


async def test_connection_burst_cannot_exceed_max_connections(flood_daemon: DaemonProcess) -> None:
    # Regression: connections were counted only once aiohttp's connection_made ran, a loop
    # iteration after asyncio accepted them; 2000 simultaneous connects left 1723 open
    # against a cap of 256.
    path = flood_daemon.socket_path
    async with asyncio.timeout(30):
        opened = await open_many(path, FLOOD)
        conns = [c for c in opened if isinstance(c, Connection)]
        assert len(conns) == FLOOD, [e for e in opened if not isinstance(e, Connection)][:3]
        said = await asyncio.gather(*(unsolicited(c) for c in conns))
        assert (said.count("held"), said.count("busy")) == (FLOOD_CAP, FLOOD - FLOOD_CAP)
        held = [c for c, what in zip(conns, said, strict=True) if what == "held"]
        refused = [c for c, what in zip(conns, said, strict=True) if what == "busy"]
        assert all(await asyncio.gather(*(hung_up(c) for c in refused)))
        # The held ones are served...
        assert set(await asyncio.gather(*(ask(c, i) for i, c in enumerate(held)))) == {"ok"}
        # ...a newcomer is told the daemon is busy while they stay...
        assert await unsolicited(await Connection.open(path)) == "busy"
        await asyncio.gather(*(c.close() for c in conns))
        # ...and is served once they are gone (the daemon notices the hang-ups shortly).
        for _ in range(100):
            if await ask(await Connection.open(path), -2) == "ok":
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError("not served after the held connections closed")


async def test_refused_connections_do_not_flood_the_log(flood_daemon: DaemonProcess) -> None:
    # Regression: one warning per refused connection; a flood wrote thousands of lines a
    # second, enough for journald's rate limit to drop automd's own lines (audit included).
    async with asyncio.timeout(30):
        opened = await open_many(flood_daemon.socket_path, FLOOD)
        await asyncio.gather(*(unsolicited(c) for c in opened if isinstance(c, Connection)))
    refusals = flood_daemon.output().count("refusing connections")
    assert 1 <= refusals <= 3, refusals


async def test_connection_flood_is_refused_cleanly_and_others_are_served(
    flood_daemon: DaemonProcess,
) -> None:
    path = flood_daemon.socket_path
    before = rss_kib(flood_daemon)
    served_during = 0
    flooding = True

    async def flood_client(i: int) -> str:
        try:
            async with asyncio.timeout(10):
                conn = await Connection.open(path)
        except (OSError, TimeoutError):
            return "refused"
        try:
            return await ask(conn, i)
        finally:
            await conn.close()

    async def bystander() -> None:
        nonlocal served_during
        while flooding:  # retries on 503, as a client should
            conn = await Connection.open(path)
            try:
                if await ask(conn, -1) == "ok":
                    served_during += 1
            finally:
                await conn.close()
            await asyncio.sleep(0.01)

    started = time.monotonic()
    async with asyncio.timeout(60):
        watcher = asyncio.create_task(bystander())
        outcomes: list[str] = []
        for _ in range(3):  # three waves of FLOOD simultaneous clients
            outcomes += await asyncio.gather(*(flood_client(i) for i in range(FLOOD)))
        flooding = False
        await watcher
    seconds = time.monotonic() - started
    after = rss_kib(flood_daemon)
    counts = {outcome: outcomes.count(outcome) for outcome in ("ok", "busy", "refused")}
    print(f"flood: 3 x {FLOOD} clients in {seconds:.1f} s: {counts}; bystander served "
          f"{served_during} times; RSS {before} -> {after} KiB")  # fmt: skip
    assert sum(counts.values()) == 3 * FLOOD  # each one answered or cut off; none hung
    assert counts["ok"] > 0
    assert served_during > 0
    # 256 connections' buffers and parser state, at a few tens of KiB each, plus the
    # allocator's high-water mark: a cap of 32 MiB growth says the flood left nothing behind.
    assert after - before < 32 * 1024, (before, after)
    await assert_serving(path)


async def test_two_hundred_slow_clients_are_all_cut_off(logged_daemon: LoggedDaemonFactory) -> None:
    daemon = logged_daemon("[server]\nidle_timeout_seconds = 1.0\nread_timeout_seconds = 1.0\n")
    path = daemon.socket_path
    started = time.monotonic()
    slow_headers = [await Connection.open(path) for _ in range(150)]
    for conn in slow_headers:  # headers that never complete
        await conn.send(b"POST /rpc HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n")
    slow_bodies = [await Connection.open(path) for _ in range(50)]
    for conn in slow_bodies:  # a body that never completes
        await conn.send(post_bytes(b"x" * 100)[:-90])

    # Everyone else is served meanwhile.
    for _ in range(5):
        await assert_serving(path)

    async with asyncio.timeout(15):
        cut = await asyncio.gather(*(hung_up(c) for c in slow_headers))
        replies = await asyncio.gather(*(read_reply(c.reader) for c in slow_bodies))
    seconds = time.monotonic() - started
    assert all(cut)
    assert {r.status for r in replies} == {408}
    assert all(r.json()["error"]["code"] == ErrorCode.REQUEST_TIMEOUT for r in replies)
    assert seconds < 10, seconds
    await assert_serving(path)


async def test_trickling_headers_are_cut_off_by_the_idle_timeout(
    logged_daemon: LoggedDaemonFactory,
) -> None:
    # A slowloris sends a header byte now and then: arriving bytes must not keep it alive.
    daemon = logged_daemon("[server]\nidle_timeout_seconds = 1.0\n")
    conn = await Connection.open(daemon.socket_path)
    started = time.monotonic()
    header = b"POST /rpc HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 1000
    async with asyncio.timeout(15):
        for byte in header:
            try:
                await conn.send(bytes([byte]))
            except (ConnectionResetError, BrokenPipeError):
                break
            if conn.reader.at_eof() or conn.reader.exception() is not None:
                break
            await asyncio.sleep(0.2)
        assert await hung_up(conn)
    assert time.monotonic() - started < 5
    await assert_serving(daemon.socket_path)
