"""The SIGUSR2 memory report: a baseline first, then the sites that grew since."""

from __future__ import annotations

import logging
import tracemalloc

import pytest

from automd.memreport import MemoryReport


def test_without_tracing_it_says_how_to_trace(caplog: pytest.LogCaptureFixture) -> None:
    assert not tracemalloc.is_tracing()
    with caplog.at_level(logging.INFO, logger="automd.memreport"):
        MemoryReport().log()
    assert "PYTHONTRACEMALLOC=25" in caplog.text


def test_reports_the_growth_since_the_first_report(caplog: pytest.LogCaptureFixture) -> None:
    report = MemoryReport()
    tracemalloc.start(5)
    try:
        with caplog.at_level(logging.INFO, logger="automd.memreport"):
            report.log()
            grown = [bytes(1024) for _ in range(2000)]  # about 2 MiB from this line
            report.log()
    finally:
        tracemalloc.stop()
    baseline, growth = (r.getMessage() for r in caplog.records)
    assert "baseline taken" in baseline
    assert "growth since the baseline" in growth
    first_site = growth.splitlines()[1]
    assert "test_memreport.py" in first_site, growth
    assert first_site.startswith("+"), growth
    assert len(grown) == 2000
