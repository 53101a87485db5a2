"""Run inside the container: open N connections, make one call on each, report, and hold the
ones that were served until RELEASE (a FIFO) is written to and closed.

Usage: python3 hold_client.py SOCKET N RELEASE_FIFO. Prints one JSON line: how many calls
were answered "ok" (a JSON-RPC result), "busy" (HTTP 503 with error -32000), or otherwise
(with the first bytes seen). Standard library only: it runs under /usr/bin/python3 as any user.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import select
import socket
import sys
from collections import Counter

BOUND = 30.0  # seconds: a bound on a reply that should come at once, never a measure


def request(request_id: int) -> bytes:
    body = json.dumps({"jsonrpc": "2.0", "method": "system.version", "id": request_id}).encode()
    head = (
        f"POST /rpc HTTP/1.1\r\nHost: automd\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


def reply(sock: socket.socket) -> bytes:
    """One whole reply, or what came before the connection ended."""
    data = b""
    while True:
        head, found, body = data.partition(b"\r\n\r\n")
        if found:
            length = re.search(rb"(?im)^content-length: *(\d+)", head)
            if length and len(body) >= int(length[1]):
                return data
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            return data
        if not chunk:
            return data
        data += chunk


def classify(data: bytes) -> str:
    if data.startswith(b"HTTP/1.1 503 ") and b'"code":-32000' in data:
        return "busy"
    if data.startswith(b"HTTP/1.1 200 ") and b'"result"' in data:
        return "ok"
    return f"other: {data[:60]!r}"


def call(sock: socket.socket, request_id: int) -> str:
    # A refused connection may already be closed: the send fails, and the 503 the kernel
    # holds for us is still read first.
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        sock.sendall(request(request_id))
    try:
        return classify(reply(sock))
    except TimeoutError:
        return "no answer"


def wait_for_release(path: str) -> None:
    """Until a writer has opened RELEASE and closed it again."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    try:
        while True:
            poller.poll()  # data, or the hang-up of a writer that came and went
            try:
                data = os.read(fd, 64)
            except BlockingIOError:
                continue  # another holder read the writer's line first: wait for its hang-up
            if not data:
                return
    finally:
        os.close(fd)


def main() -> None:
    path, count, release = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    socks = []
    for _ in range(count):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(BOUND)
        sock.connect(path)  # returns at once: the kernel queues it until automd accepts
        socks.append(sock)
    said = Counter(call(sock, i) for i, sock in enumerate(socks))
    print(json.dumps(dict(said)), flush=True)
    wait_for_release(release)
    for sock in socks:
        sock.close()


if __name__ == "__main__":
    main()
