"""automd.http.request without a socket: what the parser hands its sink, and when it stops.

The limits' replies on the wire are tests/unit/test_connection.py's; these pin the contract
between the parser and the connection.
"""

from __future__ import annotations

import httptools
import pytest

from automd.http.reply import Reply
from automd.http.request import MAX_HEADERS, MAX_LINE_BYTES, BadRequest, Request, RequestParser


class Sink:
    """Reads every body, or refuses /refused from its head; stops the parser at /stop."""

    def __init__(self) -> None:
        self.max_body_bytes = 10
        self.parser = RequestParser(self)
        self.heads: list[bytes] = []
        self.requests: list[Request] = []
        self.too_large = 0

    def head_received(self, request: Request) -> bool:
        self.heads.append(request.path)
        if request.path == b"/stop":
            self.parser.stop()
            return False
        if request.path == b"/refused":
            request.refusal = Reply(404)
            return False
        if request.path == b"/raise":
            raise RuntimeError("the site failed")
        return True

    def body_too_large(self) -> None:
        self.too_large += 1
        self.parser.stop()

    def request_received(self, request: Request) -> None:
        self.requests.append(request)


def post(path: bytes, body: bytes, extra: bytes = b"") -> bytes:
    return b"POST %s HTTP/1.1\r\nContent-Length: %d\r\n%s\r\n%s" % (path, len(body), extra, body)


def test_pipelined_requests_come_whole_and_in_order_with_their_heads_first() -> None:
    sink = Sink()
    data = post(b"/a?x=1", b"one", b"X-A: 1\r\nx-a: 2\r\n") + post(b"/b", b"two")
    for at in range(0, len(data), 7):  # in pieces, as a socket may deliver them
        sink.parser.feed(data[at : at + 7])
    assert sink.heads == [b"/a", b"/b"]
    assert [(r.method, r.path, r.body) for r in sink.requests] == [
        ("POST", b"/a", b"one"),
        ("POST", b"/b", b"two"),
    ]
    assert sink.requests[0].headers[b"x-a"] == b"1, 2"
    assert not sink.parser.reading_body


def test_a_body_refused_from_its_head_is_skipped_and_the_next_request_read() -> None:
    sink = Sink()
    sink.parser.feed(post(b"/refused", b"skipped") + post(b"/next", b"read"))
    assert [(r.path, r.body, r.refusal) for r in sink.requests] == [
        (b"/refused", b"", Reply(404)),
        (b"/next", b"read", None),
    ]


@pytest.mark.parametrize(
    "first", [post(b"/stop", b"hi"), post(b"/big", b"x" * 11)], ids=["at a head", "body too large"]
)
def test_a_parser_stopped_by_its_sink_parses_nothing_after(first: bytes) -> None:
    sink = Sink()
    sink.parser.feed(first + post(b"/after", b""))
    assert sink.requests == []
    assert b"/after" not in sink.heads
    assert not sink.parser.reading_body


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"GET /%s HTTP/1.1\r\n\r\n" % (b"a" * MAX_LINE_BYTES), "request target longer"),
        (b"GET / HTTP/1.1\r\nX: %s\r\n\r\n" % (b"a" * MAX_LINE_BYTES), "header longer"),
        (
            b"GET / HTTP/1.1\r\n"
            + b"".join(b"X-%d: a\r\n" % i for i in range(MAX_HEADERS + 1))
            + b"\r\n",
            "more than 128",
        ),
        (b"GET / HTTP/1.1\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n", "upgrades"),
        (b"GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", "bad request"),
    ],
    ids=["target", "header", "headers", "upgrade", "two lengths"],
)
def test_what_cannot_be_read_as_a_request_is_a_bad_request(data: bytes, reason: str) -> None:
    sink = Sink()
    with pytest.raises(BadRequest, match=reason):
        sink.parser.feed(data)
    assert sink.requests == []


def test_what_the_sink_raises_comes_out_wrapped_by_httptools() -> None:
    sink = Sink()
    with pytest.raises(httptools.HttpParserCallbackError) as raised:
        sink.parser.feed(post(b"/raise", b""))
    assert isinstance(raised.value.__context__, RuntimeError)
