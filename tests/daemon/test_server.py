"""The daemon as a process: transport hygiene, slow clients, load, drain, reload, errors."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from automd import __version__
from automd.api.codes import API_VERSION, ErrorCode
from automd.config import ServerSettings
from tests.daemon.harness import Connection, DaemonFactory, DaemonProcess, call, read_reply

VERSION = b'{"jsonrpc":"2.0","method":"system.version","id":1}'


async def test_ready_notification_and_status(daemon: DaemonProcess) -> None:
    ready = daemon.wait_for_notification("READY=1")
    assert f"STATUS=Serving API {API_VERSION} on {daemon.socket_path}" in ready


async def test_version_and_health_on_a_host_without_systemd(daemon: DaemonProcess) -> None:
    version = await call(daemon.socket_path, "system.version")
    assert version["result"] == {
        "version": __version__,
        "api_version": API_VERSION,
        "systemd_version": None,
    }
    health = (await call(daemon.socket_path, "system.health"))["result"]
    assert health["status"] == "degraded"
    assert health["checks"]["store"]["ok"] is True
    assert health["checks"]["dbus"] == {"ok": False, "detail": "systemd D-Bus API not reachable"}
    assert health["checks"]["queue"]["ok"] is True
    assert health["checks"]["open_files"]["ok"] is True  # the host's limit fits the defaults
    assert set(health["checks"]) == {"store", "dbus", "journal", "queue", "open_files"}
    assert 0 < health["uptime_seconds"] < 60


async def test_keep_alive_serves_many_requests_on_one_connection(daemon: DaemonProcess) -> None:
    conn = await Connection.open(daemon.socket_path)
    for i in range(20):
        assert (await conn.call("system.version", id=i))["id"] == i
    await conn.close()


async def test_oversized_body_by_content_length(daemon_factory: DaemonFactory) -> None:
    daemon = daemon_factory("[server]\nmax_body_bytes = 2048\n")
    daemon.start()
    conn = await Connection.open(daemon.socket_path)
    reply = await conn.post(b"[" + b" " * 4000 + b"]")
    assert reply.status == 413
    assert reply.json()["error"]["code"] == ErrorCode.REQUEST_TOO_LARGE
    assert reply.json()["error"]["data"] == {"max_body_bytes": 2048}
    assert reply.headers["connection"] == "close"
    assert (await call(daemon.socket_path, "system.version"))["result"]["version"] == __version__


async def test_oversized_chunked_body(daemon_factory: DaemonFactory) -> None:
    daemon = daemon_factory("[server]\nmax_body_bytes = 2048\n")
    daemon.start()
    conn = await Connection.open(daemon.socket_path)
    head = (
        b"POST /rpc HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n"
    )
    chunk = b" " * 1000
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(5))
    await conn.send(head + chunks + b"0\r\n\r\n")
    reply = await read_reply(conn.reader)
    assert reply.status == 413
    assert reply.json()["error"]["code"] == ErrorCode.REQUEST_TOO_LARGE
    assert (await call(daemon.socket_path, "system.version"))["result"]["version"] == __version__


async def test_default_body_cap_is_one_mebibyte(daemon: DaemonProcess) -> None:
    conn = await Connection.open(daemon.socket_path)
    padding = b" " * (1024 * 1024 - len(VERSION))
    assert (await conn.post(VERSION + padding)).status == 200
    assert (await conn.post(VERSION + padding + b" ")).status == 413


async def test_malformed_json_gets_parse_error_and_connection_stays_usable(
    daemon: DaemonProcess,
) -> None:
    conn = await Connection.open(daemon.socket_path)
    reply = await conn.post(b'{"jsonrpc": "2.0", "method": ')
    assert reply.status == 200
    assert reply.json()["error"]["code"] == -32700
    assert reply.json()["id"] is None
    assert (await conn.call("system.version"))["result"]["version"] == __version__


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", ""])
async def test_wrong_content_type(daemon: DaemonProcess, content_type: str) -> None:
    conn = await Connection.open(daemon.socket_path)
    reply = await conn.post(VERSION, content_type=content_type)
    assert reply.status == 415
    assert reply.json()["error"]["code"] == ErrorCode.UNSUPPORTED_MEDIA_TYPE


async def test_content_type_parameters_are_accepted(daemon: DaemonProcess) -> None:
    conn = await Connection.open(daemon.socket_path)
    reply = await conn.post(VERSION, content_type="application/json; charset=utf-8")
    assert reply.status == 200


async def test_get_is_405_and_other_paths_404(daemon: DaemonProcess) -> None:
    conn = await Connection.open(daemon.socket_path)
    reply = await conn.post(b"", method="GET")
    assert reply.status == 405
    assert reply.headers["allow"] == "POST"
    assert reply.json()["error"]["code"] == ErrorCode.HTTP_METHOD_NOT_ALLOWED
    await conn.send(b"POST /nope HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
    assert (await read_reply(conn.reader)).status == 404


async def test_notification_is_204(daemon: DaemonProcess) -> None:
    conn = await Connection.open(daemon.socket_path)
    reply = await conn.post(b'{"jsonrpc":"2.0","method":"system.version"}')
    assert reply.status == 204
    assert reply.body == b""


async def test_garbage_instead_of_http_is_rejected_and_daemon_lives(daemon: DaemonProcess) -> None:
    conn = await Connection.open(daemon.socket_path)
    await conn.send(b"\x00\x01\x02 not http at all\r\n\r\n")
    reply = await read_reply(conn.reader)
    assert reply.status == 400
    assert (await call(daemon.socket_path, "system.version"))["result"]["version"] == __version__


async def test_slow_client_with_incomplete_headers_is_cut_off(
    daemon_factory: DaemonFactory,
) -> None:
    daemon = daemon_factory("[server]\nidle_timeout_seconds = 1.0\n")
    daemon.start()
    slow = await Connection.open(daemon.socket_path)
    await slow.send(b"POST /rpc HTTP/1.1\r\nHost: x\r\n")  # ...and never the rest
    # Others are served meanwhile.
    assert (await call(daemon.socket_path, "system.version"))["result"]["version"] == __version__
    started = time.monotonic()
    async with asyncio.timeout(10):
        assert await slow.closed_by_peer()
    assert time.monotonic() - started < 8


async def test_silent_connection_is_closed_after_idle_timeout(
    daemon_factory: DaemonFactory,
) -> None:
    daemon = daemon_factory("[server]\nidle_timeout_seconds = 1.0\n")
    daemon.start()
    silent = await Connection.open(daemon.socket_path)
    async with asyncio.timeout(10):
        assert await silent.closed_by_peer()


async def test_slow_body_gets_408(daemon_factory: DaemonFactory) -> None:
    daemon = daemon_factory("[server]\nread_timeout_seconds = 0.5\n")
    daemon.start()
    conn = await Connection.open(daemon.socket_path)
    head = b"POST /rpc HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    await conn.send(head + b"Content-Length: 100\r\n\r\n" + b'{"jsonrpc"')
    reply = await read_reply(conn.reader)
    assert reply.status == 408
    assert reply.json()["error"]["code"] == ErrorCode.REQUEST_TIMEOUT
    assert (await call(daemon.socket_path, "system.version"))["result"]["version"] == __version__


async def test_200_concurrent_connections_are_all_served(daemon: DaemonProcess) -> None:
    conns = await asyncio.gather(*(Connection.open(daemon.socket_path) for _ in range(200)))
    replies = await asyncio.gather(*(c.call("system.health", id=i) for i, c in enumerate(conns)))
    assert sorted(r["id"] for r in replies) == list(range(200))
    assert all(r["result"]["checks"]["store"]["ok"] for r in replies)
    await asyncio.gather(*(c.close() for c in conns))
    assert (await call(daemon.socket_path, "system.version"))["result"]["version"] == __version__


async def test_connections_over_the_cap_get_503(daemon_factory: DaemonFactory) -> None:
    daemon = daemon_factory("[server]\nmax_connections = 5\n")
    daemon.start()
    held = [await Connection.open(daemon.socket_path) for _ in range(5)]
    for conn in held:  # make sure the daemon has accepted all five
        await conn.call("system.version")
    extra = await Connection.open(daemon.socket_path)
    reply = await read_reply(extra.reader)
    assert reply.status == 503
    assert reply.json()["error"]["code"] == ErrorCode.SERVER_BUSY
    for conn in held:
        await conn.close()
    assert (await served_once_others_hung_up(daemon.socket_path))["version"] == __version__


async def served_once_others_hung_up(path: Path) -> Any:
    """system.version's result, asked until the daemon serves it rather than a 503: it counts
    a connection until it has seen the hang-up, a loop turn or more after the client closed."""
    async with asyncio.timeout(30):
        while True:
            conn = await Connection.open(path)
            try:
                reply = await conn.post(VERSION)
            except (ConnectionResetError, BrokenPipeError, asyncio.IncompleteReadError):
                reply = None  # a 503 may come with a hang-up before our request is read
            finally:
                await conn.close()
            if reply is not None and reply.status == 200:
                return reply.json()["result"]
            await asyncio.sleep(0.05)


async def test_sigterm_lets_an_in_flight_request_finish_then_exits_0(
    daemon: DaemonProcess,
) -> None:
    conn = await Connection.open(daemon.socket_path)
    head = b"POST /rpc HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    await conn.send(head + f"Content-Length: {len(VERSION)}\r\n\r\n".encode() + VERSION[:10])
    await read_before(daemon, conn)
    daemon.signal(signal.SIGTERM)
    await asyncio.to_thread(daemon.wait_for_notification, "STOPPING=1")
    await conn.send(VERSION[10:])
    reply = await read_reply(conn.reader)
    assert reply.status == 200
    assert reply.json()["result"]["version"] == __version__
    assert await asyncio.to_thread(daemon.stop) == 0
    assert not daemon.socket_path.exists()  # --listen sockets are ours to remove


async def test_sigterm_drain_is_bounded(daemon_factory: DaemonFactory) -> None:
    daemon = daemon_factory("[server]\nshutdown_timeout_seconds = 1.0\n")
    daemon.start()
    conn = await Connection.open(daemon.socket_path)
    head = b"POST /rpc HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    await conn.send(head + b"Content-Length: 100\r\n\r\n{")  # never finished
    await read_before(daemon, conn)
    started = time.monotonic()
    daemon.signal(signal.SIGTERM)
    assert await asyncio.to_thread(daemon.stop) == 0
    # Bounded by the configured second, not by the default (which would fail this).
    assert time.monotonic() - started < ServerSettings().shutdown_timeout_seconds


async def read_before(daemon: DaemonProcess, conn: Connection) -> None:
    """Return once the daemon has read what was sent on `conn`: a whole request on a second
    connection, opened after it, is answered only after the daemon's loop went past the
    first connection's accept and the data already waiting on it."""
    assert (await call(daemon.socket_path, "system.version"))["result"]["version"] == __version__


async def test_sighup_reloads_config(daemon_factory: DaemonFactory) -> None:
    daemon = daemon_factory()
    daemon.start()
    big = b" " * 3000 + VERSION
    conn = await Connection.open(daemon.socket_path)
    assert (await conn.post(big)).status == 200
    daemon.config_path.write_text("[server]\nmax_body_bytes = 2048\n")
    daemon.notifications.clear()
    daemon.signal(signal.SIGHUP)
    await asyncio.to_thread(daemon.wait_for_notification, "RELOADING=1")
    ready = await asyncio.to_thread(daemon.wait_for_notification, "READY=1")
    assert "STATUS=Configuration reloaded" in ready
    conn = await Connection.open(daemon.socket_path)
    assert (await conn.post(big)).status == 413


async def test_bad_config_on_reload_keeps_running_config(
    daemon_factory: DaemonFactory,
) -> None:
    daemon = daemon_factory("[server]\nmax_body_bytes = 2048\n")
    daemon.start()
    daemon.config_path.write_text("[server]\nmax_body_bytes = 'lots'\n")
    daemon.notifications.clear()
    daemon.signal(signal.SIGHUP)
    ready = await asyncio.to_thread(daemon.wait_for_notification, "READY=1")
    assert "STATUS=Reload failed, running configuration kept" in ready
    assert "server.max_body_bytes" in ready
    conn = await Connection.open(daemon.socket_path)
    assert (await conn.post(b" " * 3000 + VERSION)).status == 413  # old setting still holds
    assert (await call(daemon.socket_path, "system.version"))["result"]["version"] == __version__


def test_bad_config_at_start_exits_78_naming_file_key_reason(tmp_path: Path) -> None:
    config = tmp_path / "automd.toml"
    config.write_text("[server]\nmax_connections = 'many'\n")
    result = subprocess.run(
        [sys.executable, "-m", "automd.daemon", "--config", str(config), "--listen", "x"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 78
    assert result.stderr.strip().splitlines() == [
        f"automd: bad configuration: {config}: server.max_connections: "
        "Input should be a valid integer, unable to parse string as an integer"
    ]


def test_without_socket_activation_or_listen_exits_64(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "automd.daemon", "--config", "/dev/null"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 64
    assert "not socket-activated" in result.stderr


def test_listen_refuses_a_socket_in_use(daemon: DaemonProcess) -> None:
    result = subprocess.run(
        [*daemon.command()[:3], "--listen", str(daemon.socket_path), "--config", "/dev/null"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 64
    assert "in use by another process" in result.stderr


async def test_socket_activation_with_listen_fds(daemon_factory: DaemonFactory) -> None:
    daemon = daemon_factory()
    command = [
        "systemd-socket-activate", "--listen", str(daemon.socket_path),
        "--setenv=NOTIFY_SOCKET",
        *daemon.command()[:3], "--config", str(daemon.config_path),
        "--state-dir", str(daemon.workdir / "state"),
    ]  # fmt: skip
    # systemd-socket-activate listens first and starts automd on the first connection.
    proc = await asyncio.to_thread(daemon.spawn, command)
    daemon.proc = proc
    try:
        for _ in range(100):
            if daemon.socket_path.exists():
                break
            await asyncio.sleep(0.05)
        reply = await call(daemon.socket_path, "system.version")
        assert reply["result"]["version"] == __version__
        ready = await asyncio.to_thread(daemon.wait_for_notification, "READY=1")
        assert "(socket-activated)" in ready
    finally:
        proc.terminate()


def test_json_rpc_reply_is_compact_json(daemon: DaemonProcess) -> None:
    reply = asyncio.run(call(daemon.socket_path, "system.version"))
    assert json.loads(json.dumps(reply)) == reply


async def test_status_line_counts_jobs(daemon_factory: DaemonFactory) -> None:
    daemon = daemon_factory(definitions={"t": 'executable = "/bin/true"\n'})
    daemon.start()
    assert "; jobs: 0 running, 0 queued or waiting" in daemon.wait_for_notification("READY=1")
    for _ in range(3):  # no systemd on this host: they stay queued
        reply = await call(daemon.socket_path, "job.submit", {"definition": "t"})
        assert reply["result"]["job"]["state"] == "queued"

    three = "; jobs: 0 running, 3 queued or waiting"
    status = await asyncio.to_thread(daemon.wait_for_message, lambda m: three in m, 10.0)
    assert status.startswith("STATUS=Serving API")
