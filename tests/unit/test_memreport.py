"""The SIGUSR2 memory report: a baseline first, then the sites that grew since."""

from __future__ import annotations

import asyncio
import logging
import tracemalloc

import pytest

from automd.memreport import MemoryReport


async def test_without_tracing_it_says_how_to_trace(caplog: pytest.LogCaptureFixture) -> None:
    assert not tracemalloc.is_tracing()
    with caplog.at_level(logging.INFO, logger="automd.memreport"):
        assert MemoryReport().request() is None
    assert "PYTHONTRACEMALLOC=25" in caplog.text


async def test_reports_the_growth_since_the_first_report(
    caplog: pytest.LogCaptureFixture,
) -> None:
    report = MemoryReport()
    tracemalloc.start(5)
    try:
        with caplog.at_level(logging.INFO, logger="automd.memreport"):
            await _made(report.request())
            grown = [bytes(1024) for _ in range(2000)]  # about 2 MiB from this line
            making = report.request()
            assert report.request() is None  # one at a time
            await _made(making)
    finally:
        tracemalloc.stop()
    baseline, busy, growth = (r.getMessage() for r in caplog.records)
    assert "being made already" in busy
    assert "baseline taken" in baseline
    assert "growth since the baseline" in growth
    first_site = growth.splitlines()[1]
    assert "test_memreport.py" in first_site, growth
    assert first_site.startswith("+"), growth
    assert len(grown) == 2000


async def _made(making: asyncio.Task[None] | None) -> None:
    assert making is not None
    await making
