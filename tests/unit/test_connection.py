"""automd.http.connection on a real Unix socket, with a small site: framing, order, limits,
deadlines.

The daemon tests (tests/daemon/test_server.py, test_hostile.py) cover the same layer through
automd's own site; these pin what only shows with a site that can be made slow or streaming.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from automd.http.connection import HttpConnection
from automd.http.reply import Reply, StreamedReply
from automd.http.request import Request
from tests.daemon.harness import HttpReply, read_reply


class Site:
    """Answers POST /echo with the body, /stream with `stream`; refuses /refused from its head."""

    def __init__(self) -> None:
        self.draining = False
        self.max_body_bytes = 4096
        self.read_timeout = 60.0
        self.idle_timeout = 60.0
        self.connections: list[HttpConnection] = []
        self.gate: asyncio.Event | None = None  # when set, replies wait for it
        self.stream: Callable[[], AsyncGenerator[bytes, None]] | None = None
        self.seen: list[bytes] = []
        self.requests: list[Request] = []

    def connection_made(self, connection: HttpConnection) -> None:
        self.connections.append(connection)

    def connection_lost(self, connection: HttpConnection) -> None:
        pass

    def refuse(self, request: Request) -> Reply | None:
        if request.path == b"/refused":
            return Reply(404, b"no\n", "text/plain")
        return None

    async def respond(self, request: Request, connection: HttpConnection) -> Reply | StreamedReply:
        self.seen.append(request.body)
        self.requests.append(request)
        if self.gate is not None:
            await self.gate.wait()
        if request.path == b"/stream":
            assert self.stream is not None
            return StreamedReply("application/x-ndjson", self.stream())
        if request.path == b"/empty":
            return Reply(204)
        return Reply(200, request.body, "application/octet-stream")

    def too_large(self) -> Reply:
        return Reply(413, b"too large\n", "text/plain", close=True)

    def timed_out(self) -> Reply:
        return Reply(408, b"too slow\n", "text/plain", close=True)


class Client:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def reply(self) -> HttpReply:
        async with asyncio.timeout(5):
            return await read_reply(self.reader)

    async def hung_up(self) -> bool:
        async with asyncio.timeout(5):
            try:
                return await self.reader.read() == b""
            except ConnectionResetError:
                return True


Connect = Callable[[], Awaitable[Client]]
Served = tuple[Site, Connect]


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[tuple[Site, Connect]]:
    site = Site()
    path = tmp_path / "wire.sock"
    loop = asyncio.get_running_loop()
    server = await loop.create_unix_server(lambda: HttpConnection(site), str(path))
    writers: list[asyncio.StreamWriter] = []

    async def connect() -> Client:
        reader, writer = await asyncio.open_unix_connection(str(path))
        writers.append(writer)
        return Client(reader, writer)

    yield site, connect
    for writer in writers:
        writer.close()
    for connection in site.connections:
        assert connection.transport is not None
        connection.transport.abort()
    server.close()
    await server.wait_closed()


def post(path: str, body: bytes, extra: bytes = b"") -> bytes:
    head = b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n%s\r\n"
    return head % (path.encode(), len(body), extra) + body


async def test_pipelined_replies_keep_request_order_even_when_the_first_is_slow(
    served: Served,
) -> None:
    site, connect = served
    client = await connect()
    site.gate = asyncio.Event()
    await client.send(post("/echo", b"one") + post("/echo", b"two") + post("/echo", b"three"))
    await asyncio.sleep(0.1)
    assert site.seen == [b"one"]  # one at a time: the second waits for the first's reply
    site.gate.set()
    assert [(await client.reply()).body for _ in range(3)] == [b"one", b"two", b"three"]


async def test_a_client_that_pipelines_without_reading_is_no_longer_read(
    served: Served,
) -> None:
    site, connect = served
    client = await connect()
    site.gate = asyncio.Event()
    count = 100  # each batch fits in one read: parsed whole, then reading pauses
    first = b"".join(post("/echo", b"%d" % i) for i in range(count))
    second = b"".join(post("/echo", b"%d" % i) for i in range(count, 2 * count))
    await client.send(first)
    await asyncio.sleep(0.1)
    (connection,) = site.connections
    assert connection.transport is not None
    assert not connection.transport.is_reading()
    await client.send(second)
    await asyncio.sleep(0.1)
    assert len(connection._queue) == count - 1  # the second batch waits in the socket
    site.gate.set()
    bodies = [(await client.reply()).body for _ in range(2 * count)]
    assert bodies == [b"%d" % i for i in range(2 * count)]


async def test_a_field_sent_twice_is_one_list_not_the_last_line(served: Served) -> None:
    site, connect = served
    client = await connect()
    extra = b"Idempotency-Key: a\r\nX-Once: 1\r\nidempotency-key: b\r\n"
    await client.send(post("/echo", b"x", extra))
    assert (await client.reply()).status == 200
    (request,) = site.requests
    assert request.headers[b"idempotency-key"] == b"a, b"
    assert request.headers[b"x-once"] == b"1"


async def test_a_refusal_from_the_head_skips_the_body_and_keeps_the_connection(
    served: Served,
) -> None:
    _site, connect = served
    client = await connect()
    await client.send(post("/refused", b"x" * 10_000) + post("/echo", b"after"))
    assert (await client.reply()).status == 404
    assert (await client.reply()).body == b"after"


async def test_an_oversized_body_is_answered_and_the_rest_drained_not_reset(served: Served) -> None:
    site, connect = served
    client = await connect()
    # The whole body is sent before the reply is read; without the lingering close the
    # unread remainder made the kernel reset the connection and the client lose the 413.
    await client.send(post("/echo", b"x" * (site.max_body_bytes * 1024)))  # 4 MiB
    reply = await client.reply()
    assert (reply.status, reply.headers["connection"]) == (413, "close")
    assert await client.hung_up()


async def test_expect_100_continue_is_answered_before_the_body(served: Served) -> None:
    _site, connect = served
    client = await connect()
    await client.send(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n"
                      b"Expect: 100-continue\r\n\r\n")  # fmt: skip
    async with asyncio.timeout(5):
        assert await client.reader.readuntil(b"\r\n\r\n") == b"HTTP/1.1 100 Continue\r\n\r\n"
    await client.send(b"hi")
    assert (await client.reply()).body == b"hi"


async def test_head_gets_the_length_but_no_body(served: Served) -> None:
    _site, connect = served
    client = await connect()
    await client.send(b"HEAD /echo HTTP/1.1\r\nHost: x\r\n\r\n" + post("/echo", b"next"))
    async with asyncio.timeout(5):
        head = await client.reader.readuntil(b"\r\n\r\n")
    assert b"Content-Length: 0\r\n" in head
    assert (await client.reply()).body == b"next"  # nothing was sent between the two


async def test_204_has_no_content_length(served: Served) -> None:
    _site, connect = served
    client = await connect()
    await client.send(post("/empty", b""))
    reply = await client.reply()
    assert reply.status == 204
    assert "content-length" not in reply.headers
    assert "date" in reply.headers


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GET /echo HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
        # Each header is within the per-header limit; together they are not.
        b"GET /echo HTTP/1.1\r\n"
        + b"".join(b"X-%d: %s\r\n" % (i, b"a" * 1000) for i in range(100)),
    ],
    ids=["upgrade", "head over 64 KiB"],
)
async def test_requests_the_wire_will_not_take_get_400_and_a_close(
    served: Served, request_bytes: bytes
) -> None:
    _site, connect = served
    client = await connect()
    await client.send(request_bytes)
    reply = await client.reply()
    assert (reply.status, reply.headers["connection"]) == (400, "close")
    assert await client.hung_up()


@pytest.mark.parametrize(
    ("head", "closes"),
    [
        (b"POST /echo HTTP/1.0\r\nContent-Length: 2\r\n\r\nhi", True),
        (b"POST /echo HTTP/1.1\r\nConnection: close\r\nContent-Length: 2\r\n\r\nhi", True),
        (b"POST /echo HTTP/1.1\r\nContent-Length: 2\r\n\r\nhi", False),
    ],
)
async def test_keep_alive_follows_the_request(served: Served, head: bytes, closes: bool) -> None:
    _site, connect = served
    client = await connect()
    await client.send(head)
    reply = await client.reply()
    assert (reply.headers.get("connection") == "close") == closes
    if closes:
        assert await client.hung_up()


async def test_draining_replies_close_the_connection(served: Served) -> None:
    site, connect = served
    client = await connect()
    site.draining = True
    await client.send(post("/echo", b"x"))
    assert (await client.reply()).headers["connection"] == "close"
    assert await client.hung_up()


async def test_deadlines_cut_off_an_idle_connection_and_time_out_a_body(served: Served) -> None:
    site, connect = served
    idle = await connect()
    slow = await connect()
    await slow.send(b"POST /echo HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc")
    await asyncio.sleep(0.1)
    for connection in site.connections:
        connection.check_deadline(time.monotonic() + 30)  # not due yet: nothing happens
    assert all(not c.transport.is_closing() for c in site.connections)  # type: ignore[union-attr]
    for connection in site.connections:
        connection.check_deadline(time.monotonic() + 61)
    assert await idle.hung_up()
    assert (await slow.reply()).status == 408


def _chunks(data: bytes) -> list[bytes]:
    parts: list[bytes] = []
    while True:
        size_line, _, data = data.partition(b"\r\n")
        size = int(size_line, 16)
        if size == 0:
            return parts
        parts.append(data[:size])
        data = data[size + 2 :]


async def test_a_streamed_reply_is_chunked_then_the_connection_is_reused(served: Served) -> None:
    site, connect = served

    async def parts() -> AsyncGenerator[bytes, None]:
        for i in range(3):
            yield b'{"n":%d}\n' % i

    site.stream = parts
    client = await connect()
    await client.send(post("/stream", b"") + post("/echo", b"after"))
    async with asyncio.timeout(5):
        head = await client.reader.readuntil(b"\r\n\r\n")
        body = await client.reader.readuntil(b"0\r\n\r\n")
    assert b"Transfer-Encoding: chunked" in head
    assert _chunks(body) == [b'{"n":0}\n', b'{"n":1}\n', b'{"n":2}\n']
    assert (await client.reply()).body == b"after"


async def test_a_stream_waits_for_a_slow_reader_and_stops_when_it_leaves(served: Served) -> None:
    site, connect = served
    produced = 0
    closed = asyncio.Event()

    async def endless() -> AsyncGenerator[bytes, None]:
        nonlocal produced
        try:
            while True:
                produced += 1
                yield b"x" * 65536
        finally:
            closed.set()

    site.stream = endless
    client = await connect()
    await client.send(post("/stream", b""))
    await asyncio.sleep(0.3)
    # Nothing is read: production stops once the socket and the write buffer are full
    # (a few MiB), instead of buffering without bound.
    assert produced < 200, produced
    client.writer.transport.abort()
    async with asyncio.timeout(5):
        await closed.wait()


async def test_a_follower_waiting_for_output_is_stopped_when_its_client_leaves(
    served: Served,
) -> None:
    site, connect = served
    closed = asyncio.Event()

    async def quiet() -> AsyncGenerator[bytes, None]:
        try:
            yield b"first\n"
            await asyncio.Event().wait()  # no more output, ever
            yield b"never\n"
        finally:
            closed.set()

    site.stream = quiet
    client = await connect()
    await client.send(post("/stream", b""))
    async with asyncio.timeout(5):
        await client.reader.readuntil(b"first\n\r\n")
    client.writer.close()
    async with asyncio.timeout(5):
        await closed.wait()
    with contextlib.suppress(Exception):
        await client.writer.wait_closed()
