"""Requests as llhttp (httptools) parses them, within the limits llhttp does not have.

llhttp frames the requests (and so its request-smuggling defences are automd's); this module
bounds what it may buffer of a request target, a header, a whole head and a body, and hands each
request to the connection: its head as soon as it is complete, then the request with its body.
"""

from __future__ import annotations

from typing import Protocol

import httptools

from automd.http.reply import Reply

#: Longest request target, and longest header (name and value): aiohttp's limits, kept.
MAX_LINE_BYTES = 8190
MAX_HEADERS = 128
#: What llhttp may buffer of one request head before it is refused: it holds a header
#: internally until the header completes, so the per-header limit alone bounds nothing.
MAX_HEAD_BYTES = 64 * 1024


class Request:
    """One request, as much as automd reads of it: header names are lowercased, and the lines
    of a field sent more than once are joined with ", "."""

    __slots__ = ("body", "headers", "keep_alive", "method", "path", "refusal")

    def __init__(self, method: str, path: bytes, headers: dict[bytes, bytes], keep_alive: bool):
        self.method = method
        self.path = path
        self.headers = headers
        self.body = b""
        self.keep_alive = keep_alive
        #: The site's answer from the head alone (the body, if any, was skipped).
        self.refusal: Reply | None = None


class BadRequest(Exception):
    """What arrived cannot be read as a request, or is over a limit: a 400 with this text, and
    the connection closes (its framing is lost)."""


class RequestSink(Protocol):
    """What the parser hands requests to: the connection."""

    @property
    def max_body_bytes(self) -> int: ...

    def head_received(self, request: Request) -> bool:
        """A request's head is complete: whether to read its body (else it is skipped)."""

    def body_too_large(self) -> None:
        """The body went over max_body_bytes: answer, and `stop` the parser."""

    def request_received(self, request: Request) -> None:
        """A request is complete, with its body unless it was skipped."""


class _Stop(Exception):
    """Raised in a parser callback to stop parsing: the sink stopped the parser."""


class RequestParser:
    """A connection's requests, one after the other, as llhttp's callbacks deliver them."""

    def __init__(self, sink: RequestSink) -> None:
        self._sink = sink
        self._parser = httptools.HttpRequestParser(self)
        self._stopped = False
        self._in_head = False
        self._in_body = False
        self._head_bytes = 0  # read while a head was incomplete (llhttp buffers a header)
        self._head_size = 0  # the parsed part of the head
        self._url: list[bytes] = []
        self._url_size = 0
        self._headers: dict[bytes, bytes] = {}
        self._body: list[bytes] = []
        self._body_size = 0
        self._request: Request | None = None

    @property
    def reading_body(self) -> bool:
        """A request's head is complete and its body is being read."""
        return self._in_body

    def feed(self, data: bytes) -> None:
        """Parse what arrived. Raises BadRequest; what a sink method raised comes out as
        httptools.HttpParserCallbackError, whose __context__ it is."""
        if self._in_head:
            # Counted only for data that arrives while a head is incomplete: at most one read
            # (256 KiB) more than the limit is ever buffered.
            self._head_bytes += len(data)
            if self._head_bytes > MAX_HEAD_BYTES:
                raise BadRequest(f"request head larger than {MAX_HEAD_BYTES} bytes")
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            raise BadRequest("protocol upgrades are not supported") from None
        except httptools.HttpParserCallbackError as exc:
            # httptools wraps what a callback raised.
            cause = exc.__context__
            if isinstance(cause, BadRequest):
                raise cause from None
            if not isinstance(cause, _Stop):
                raise
        except httptools.HttpParserError as exc:
            raise BadRequest(f"bad request: {exc}") from None

    def stop(self) -> None:
        """Parse no more: the request being read is dropped, and llhttp is stopped if a
        callback is under way. What arrives from now on must not be fed."""
        self._stopped = True
        self._in_body = False
        self._request = None

    # --- httptools callbacks ---------------------------------------------------------------

    def on_message_begin(self) -> None:
        self._in_head = True
        self._head_bytes = 0
        self._head_size = 0
        self._url = []
        self._url_size = 0
        self._headers = {}
        self._body = []
        self._body_size = 0

    def on_url(self, url: bytes) -> None:
        self._url_size += len(url)
        if self._url_size > MAX_LINE_BYTES:
            raise BadRequest(f"request target longer than {MAX_LINE_BYTES} bytes")
        self._url.append(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        if len(self._headers) >= MAX_HEADERS:
            raise BadRequest(f"more than {MAX_HEADERS} headers")
        size = len(name) + len(value)
        if size > MAX_LINE_BYTES:
            raise BadRequest(f"header longer than {MAX_LINE_BYTES} bytes")
        self._head_size += size
        if self._head_size > MAX_HEAD_BYTES:
            raise BadRequest(f"request head larger than {MAX_HEAD_BYTES} bytes")
        name = name.lower()
        earlier = self._headers.get(name)
        # A field sent twice is one list (RFC 9110, 5.3), not the last line: two
        # Idempotency-Keys or Content-Types must not silently become the second one.
        self._headers[name] = value if earlier is None else earlier + b", " + value

    def on_headers_complete(self) -> None:
        self._in_head = False
        parser = self._parser
        if parser.should_upgrade():  # e.g. WebSocket or h2c: this is HTTP/1.1 only
            raise BadRequest("protocol upgrades are not supported")
        target = b"".join(self._url)
        request = Request(
            parser.get_method().decode("ascii"),
            target.partition(b"?")[0],
            self._headers,
            # HTTP/1.0 is answered and closed; keep-alive there needs headers of its own.
            parser.should_keep_alive() and parser.get_http_version() == "1.1",
        )
        self._request = request
        read_body = self._sink.head_received(request)
        if self._stopped:
            raise _Stop
        self._in_body = read_body

    def on_body(self, body: bytes) -> None:
        if not self._in_body:  # refused from its head: skipped
            return
        self._body_size += len(body)
        if self._body_size > self._sink.max_body_bytes:
            self._sink.body_too_large()
            raise _Stop
        self._body.append(body)

    def on_message_complete(self) -> None:
        request, self._request = self._request, None
        self._in_body = False
        if request is None:
            return
        if request.refusal is None:
            body = self._body
            request.body = body[0] if len(body) == 1 else b"".join(body)
        self._sink.request_received(request)
