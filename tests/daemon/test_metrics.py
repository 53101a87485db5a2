"""GET /metrics on the API socket of a real daemon process; promtool must accept it."""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess

from prometheus_client.parser import text_string_to_metric_families

from automd import __version__
from automd.api.codes import API_VERSION
from automd.fdbudget import METRICS_CONNECTIONS
from tests.daemon.harness import (
    Connection,
    DaemonFactory,
    DaemonProcess,
    HttpReply,
    call,
    read_reply,
)

DEFINITIONS = {"echo": 'executable = "/bin/echo"\n'}


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


async def scrape(conn: Connection, method: str = "GET") -> tuple[int, dict[str, str], str]:
    await conn.send(f"{method} /metrics HTTP/1.1\r\nHost: automd\r\n\r\n".encode())
    reply = await read_reply(conn.reader)
    return reply.status, reply.headers, reply.body.decode()


async def test_metrics_count_requests_by_method_and_outcome(daemon_factory: DaemonFactory) -> None:
    daemon = daemon_factory(definitions=DEFINITIONS)
    daemon.start()
    path = daemon.socket_path
    await call(path, "system.version")
    await call(path, "system.version")
    assert (await call(path, "job.get", {"id": "0" * 26}))["error"]["code"] == 1002
    assert (await call(path, "no.such.method"))["error"]["code"] == -32601
    await call(path, "job.submit", {"definition": "echo", "idempotency_key": "k"})
    await call(path, "job.submit", {"definition": "echo", "idempotency_key": "k"})

    conn = await Connection.open(path)
    status, headers, text = await scrape(conn)
    assert status == 200
    assert headers["content-type"].startswith("text/plain; version=")
    found = samples(text)

    def value(name: str, **labels: str) -> float | None:
        return found.get((name, frozenset(labels.items())))

    assert value("automd_rpc_requests_total", method="system.version", code="ok") == 2
    assert value("automd_rpc_requests_total", method="job.get", code="1002") == 1
    # A method name that is not part of the API never becomes a label value.
    assert value("automd_rpc_requests_total", method="(other)", code="-32601") == 1
    assert value("automd_rpc_request_duration_seconds_count", method="system.version") == 2
    assert value("automd_job_idempotent_replays_total") == 1
    assert value("automd_build_info", version=__version__, api_version=API_VERSION) == 1
    # No systemd on this host: the job waits in the queue.
    assert value("automd_jobs", definition="echo", state="queued") == 1
    assert value("automd_http_connections") == 1
    assert value("process_resident_memory_bytes")

    status, headers, _ = await scrape(conn, "POST")
    assert (status, headers["allow"]) == (405, "GET, HEAD")


async def test_promtool_accepts_the_metrics(daemon_factory: DaemonFactory) -> None:
    daemon = daemon_factory(definitions=DEFINITIONS)
    daemon.start()
    await call(daemon.socket_path, "job.submit", {"definition": "echo"})
    await call(daemon.socket_path, "job.get", {"id": "0" * 26})
    _status, _headers, text = await scrape(await Connection.open(daemon.socket_path))
    assert promtool_problems(text) == ""


async def ask_tcp(port: int, head: str) -> HttpReply:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(head.encode())
        return await read_reply(reader)
    finally:
        writer.close()
        await writer.wait_closed()


async def with_metrics_listener(daemon_factory: DaemonFactory) -> tuple[DaemonProcess, int]:
    """A daemon socket-activated with the API socket and a TCP metrics listener; its port."""
    daemon = daemon_factory()
    api = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    api.bind(str(daemon.socket_path))
    api.listen()
    tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    tcp.bind(("127.0.0.1", 0))
    tcp.listen()
    port = tcp.getsockname()[1]
    with api, tcp:
        daemon.start_activated({"automd.socket": api, "metrics": tcp})
    await call(daemon.socket_path, "system.version")  # the API socket is the other fd
    return daemon, port


async def test_the_tcp_listener_serves_only_get_metrics(daemon_factory: DaemonFactory) -> None:
    daemon, port = await with_metrics_listener(daemon_factory)

    reply = await ask_tcp(port, "GET /metrics HTTP/1.1\r\nHost: automd\r\n\r\n")
    assert reply.status == 200
    assert reply.headers["content-type"].startswith("text/plain; version=")
    assert "automd_build_info" in reply.body.decode()

    for path in ("/rpc", "/", "/metrics/x"):
        reply = await ask_tcp(
            port, f"POST {path} HTTP/1.1\r\nHost: automd\r\nContent-Length: 0\r\n\r\n"
        )
        assert reply.status == 404, path
    # The same refusal as the API socket's for a method other than GET or HEAD.
    api_conn = await Connection.open(daemon.socket_path)
    api_status, api_headers, api_text = await scrape(api_conn, "POST")
    for method in ("POST", "PUT", "DELETE"):
        reply = await ask_tcp(
            port, f"{method} /metrics HTTP/1.1\r\nHost: automd\r\nContent-Length: 0\r\n\r\n"
        )
        assert (reply.status, reply.headers["allow"]) == (api_status, api_headers["allow"])
        assert reply.body.decode() == api_text
    assert daemon.stop() == 0


def promtool_problems(text: str) -> str:
    """What `promtool check metrics` says about the text; empty when it is clean."""
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: apt-get install prometheus (packaging/apt-packages.txt)"
    checked = subprocess.run(
        [promtool, "check", "metrics"], input=text.encode(), capture_output=True, check=False
    )
    problems = checked.stdout.decode() + checked.stderr.decode()
    return problems if checked.returncode != 0 or problems.strip() else ""


async def test_the_tcp_listener_serves_a_bounded_number_of_connections(
    daemon_factory: DaemonFactory,
) -> None:
    """Its connections are counted in the open-file budget (fdbudget.METRICS_CONNECTIONS):
    one more is refused with 503 at once, and the API socket is not affected.
    Checked: fails on the code before (the 17th connection was served)."""
    daemon, port = await with_metrics_listener(daemon_factory)
    held = [await asyncio.open_connection("127.0.0.1", port) for _ in range(METRICS_CONNECTIONS)]
    # Each held connection is served: a scrape on the last one proves all were accepted.
    reader, writer = held[-1]
    writer.write(b"GET /metrics HTTP/1.1\r\nHost: automd\r\n\r\n")
    assert (await reader.readline()).startswith(b"HTTP/1.1 200")
    reply = await ask_tcp(port, "GET /metrics HTTP/1.1\r\nHost: automd\r\n\r\n")
    assert reply.status == 503
    assert (await call(daemon.socket_path, "system.version"))["result"]
    for _, w in held:
        w.close()
    assert daemon.stop() == 0
