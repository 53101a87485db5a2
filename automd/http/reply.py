"""What a site answers, and its bytes on the wire: status line, Date, lengths, chunks.

When a reply is written, and whether the connection stays open after it, is the connection's
business (connection.py); this module only frames a reply it has decided to send.
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from email.utils import formatdate
from http import HTTPStatus


@dataclass(slots=True)
class Reply:
    """A whole reply. `close`: the connection cannot be reused (e.g. a body left unread)."""

    status: int
    body: bytes = b""
    content_type: str | None = None
    headers: tuple[tuple[str, str], ...] = ()
    close: bool = False


@dataclass(slots=True)
class StreamedReply:
    """A 200 whose body is sent as it is produced (chunked), each part once the client has
    taken the previous ones; `parts` is closed when the client goes away."""

    content_type: str
    parts: AsyncGenerator[bytes, None]
    headers: tuple[tuple[str, str], ...] = field(default=())


def plain_reply(status: int, text: str, *, close: bool = False) -> Reply:
    return Reply(status, text.encode(), "text/plain; charset=utf-8", close=close)


#: What ends a chunked body: the empty chunk, and no trailers.
LAST_CHUNK = b"0\r\n\r\n"


def reply_bytes(reply: Reply, *, keep_alive: bool, head_only: bool) -> bytes:
    """The whole reply; `head_only`: without its body, as the answer to a HEAD request."""
    # A 204 has no body, and must not say it has one of length 0 (RFC 9110, 8.6).
    headers = [] if reply.status == 204 else [b"Content-Length: %d" % len(reply.body)]
    if reply.content_type is not None:
        headers.append(b"Content-Type: " + reply.content_type.encode("latin-1"))
    if reply.headers:
        headers += _extra(reply.headers)
    head = _head(reply.status, headers, keep_alive)
    return head if head_only else head + reply.body


def stream_head_bytes(reply: StreamedReply, *, keep_alive: bool) -> bytes:
    """The head of a streamed reply; its parts follow as `chunk_bytes`, then LAST_CHUNK."""
    headers = [b"Content-Type: " + reply.content_type.encode("latin-1"),
               b"Transfer-Encoding: chunked", *_extra(reply.headers)]  # fmt: skip
    return _head(200, headers, keep_alive)


def chunk_bytes(part: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(part), part)


class _Clock:
    """The Date header, formatted once a second."""

    second = -1
    value = b""

    @classmethod
    def date(cls) -> bytes:
        now = int(time.time())
        if now != cls.second:
            cls.value = formatdate(now, usegmt=True).encode("ascii")
            cls.second = now
        return cls.value


_REASONS = {status.value: status.phrase.encode("ascii") for status in HTTPStatus}


def _head(status: int, headers: list[bytes], keep_alive: bool) -> bytes:
    lines = [b"HTTP/1.1 %d %s" % (status, _REASONS.get(status, b"Unknown")),
             b"Date: " + _Clock.date(), *headers]  # fmt: skip
    if not keep_alive:
        lines.append(b"Connection: close")
    return b"\r\n".join(lines) + b"\r\n\r\n"


def _extra(headers: tuple[tuple[str, str], ...]) -> list[bytes]:
    return [f"{name}: {value}".encode("latin-1") for name, value in headers]
