"""Fixtures that run a real automd process on the host."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from tests.daemon.harness import Connection, DaemonFactory, DaemonProcess


@pytest.fixture(autouse=True)
async def close_connections() -> AsyncIterator[None]:
    yield
    for conn in list(Connection.open_connections):
        await conn.close()


@pytest.fixture
def daemon_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonFactory]:
    started: list[DaemonProcess] = []

    def make(config_text: str = "", definitions: dict[str, str] | None = None) -> DaemonProcess:
        # A short directory: AF_UNIX socket paths are limited to 108 bytes.
        workdir = tmp_path_factory.mktemp("d")
        if definitions is None:
            process = DaemonProcess(workdir, config_text)
        else:
            process = DaemonProcess.with_definitions(workdir, definitions, config_text)
        started.append(process)
        return process

    yield make
    for process in started:
        process.close()


@pytest.fixture
def daemon(daemon_factory: DaemonFactory) -> DaemonProcess:
    process = daemon_factory()
    process.start()
    return process
