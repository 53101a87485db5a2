"""Servers that do nothing but answer: the ceiling of an HTTP stack on this host.

`python -m bench.ceiling_servers aiohttp|asyncio SOCK` answers every POST on the Unix socket
SOCK with the same small JSON-RPC result, after reading the whole body:

- `aiohttp`: aiohttp's low-level web.Server, which automd's API socket runs on;
- `asyncio`: a bare asyncio.Protocol that frames HTTP/1.1 by Content-Length (no chunked
  bodies, no limits, no error handling: a measuring stick, not a server to copy).

No handler can make a server on the same stack faster than these, so bench.run prints automd's
job.get beside them: how much of the time per request is automd's own work, and what a server
on the stack can reach at all on this host.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys

from aiohttp import web

REPLY = b'{"jsonrpc":"2.0","result":{"job":{"id":"0","state":"queued"}},"id":1}'
_HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(
    REPLY
)


async def _aiohttp_handler(request: web.BaseRequest) -> web.Response:
    await request.read()
    return web.Response(body=REPLY, content_type="application/json")


class _BareHttp(asyncio.Protocol):
    def __init__(self) -> None:
        self._buffer = b""
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport

    def data_received(self, data: bytes) -> None:
        assert self._transport is not None
        self._buffer += data
        while (end := self._buffer.find(b"\r\n\r\n")) >= 0:
            length = 0
            for line in self._buffer[:end].split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            if len(self._buffer) < end + 4 + length:
                return  # the rest of the body is still on its way
            self._buffer = self._buffer[end + 4 + length :]
            self._transport.write(_HEAD + REPLY)


async def serve(kind: str, path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    loop = asyncio.get_running_loop()
    if kind == "aiohttp":
        server = await loop.create_unix_server(web.Server(_aiohttp_handler, access_log=None), path)
    elif kind == "asyncio":
        server = await loop.create_unix_server(_BareHttp, path)
    else:
        raise SystemExit(f"unknown server kind {kind!r}: aiohttp or asyncio")
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit("usage: python -m bench.ceiling_servers aiohttp|asyncio SOCKET")
    asyncio.run(serve(sys.argv[1], sys.argv[2]))
