"""automd.log: what reaches the journal (or stderr) for log lines and audit records."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from typing import Any

import pytest

from automd import log as automd_log
from automd.config import LogLevel
from automd.trace import CURRENT_REQUEST, RequestLogContext, TraceContext

TRACE = TraceContext(
    trace_id="4bf92f3577b34da6a3ce929d0e0e4736", span_id="00f067aa0ba902b7", flags="01"
)


class Journal:
    """Stands in for systemd.journal.sendv: keeps each entry as a dict of its fields."""

    def __init__(self) -> None:
        self.entries: list[dict[str, str]] = []

    def __call__(self, *lines: str | bytes) -> None:
        entry: dict[str, str] = {}
        for line in lines:
            # sendv encodes str as strict UTF-8 and takes bytes as they are.
            text = line.decode() if isinstance(line, bytes) else line.encode().decode()
            name, _, value = text.partition("=")
            assert name not in entry, f"field {name} sent twice"
            entry[name] = value
        self.entries.append(entry)


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)
    automd_log._Records.sink = None


@pytest.fixture
def journal(monkeypatch: pytest.MonkeyPatch, restore_logging: None) -> Journal:
    monkeypatch.setattr(automd_log, "_stderr_is_journal", lambda: True)
    sent = Journal()
    automd_log.setup_logging(LogLevel.INFO, send=sent)
    return sent


@pytest.fixture
def stderr(monkeypatch: pytest.MonkeyPatch, restore_logging: None) -> io.StringIO:
    stream = io.StringIO()
    monkeypatch.setattr(automd_log, "_stderr_is_journal", lambda: False)
    monkeypatch.setattr("sys.stderr", stream)
    automd_log.setup_logging(LogLevel.INFO)
    return stream


def test_a_log_line_sends_its_message_and_journal_fields_only(journal: Journal) -> None:
    logging.getLogger("automd.test").warning(
        "job %s failed", "j1", extra={"AUTOMD_JOB_ID": "j1", "lowercase": "x"}
    )
    (entry,) = journal.entries
    assert entry["MESSAGE"] == "job j1 failed"
    assert entry["PRIORITY"] == "4"
    assert entry["SYSLOG_IDENTIFIER"] == "automd"
    assert entry["LOGGER"] == "automd.test"
    assert entry["AUTOMD_JOB_ID"] == "j1"
    assert entry["CODE_FUNC"] == "test_a_log_line_sends_its_message_and_journal_fields_only"
    # The record's other attributes (msg, args, created, lowercase extras) are not fields.
    assert all(automd_log.is_field_name(name) for name in entry), sorted(entry)


def test_a_log_line_carries_the_request_fields(journal: Journal) -> None:
    token = CURRENT_REQUEST.set(RequestLogContext(TRACE, "job.submit", 1000))
    try:
        logging.getLogger("automd.test").info("inside a request")
    finally:
        CURRENT_REQUEST.reset(token)
    (entry,) = journal.entries
    assert entry["AUTOMD_TRACE_ID"] == TRACE.trace_id
    assert entry["AUTOMD_METHOD"] == "job.submit"
    assert entry["AUTOMD_CALLER_UID"] == "1000"


def test_an_exception_goes_into_the_message(journal: Journal) -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        logging.getLogger("automd.test").exception("it failed")
    (entry,) = journal.entries
    assert entry["PRIORITY"] == "3"
    assert entry["MESSAGE"].startswith("it failed\nTraceback")
    assert "ValueError: boom" in entry["MESSAGE"]


def test_a_record_is_sent_whatever_the_log_level(journal: Journal) -> None:
    automd_log.set_level(LogLevel.ERROR)
    logging.getLogger("automd.test").info("a diagnostic, filtered")
    token = CURRENT_REQUEST.set(RequestLogContext(TRACE, "job.cancel", 0))
    try:
        automd_log.record(
            logging.INFO, "audit: job.cancel ok", {"AUTOMD_AUDIT": "1", "AUTOMD_METHOD": "x"}
        )
    finally:
        CURRENT_REQUEST.reset(token)
    (entry,) = journal.entries
    assert entry["MESSAGE"] == "audit: job.cancel ok"
    assert entry["PRIORITY"] == "6"
    assert entry["SYSLOG_IDENTIFIER"] == "automd"
    assert entry["AUTOMD_AUDIT"] == "1"
    assert entry["AUTOMD_TRACE_ID"] == TRACE.trace_id
    assert entry["AUTOMD_METHOD"] == "x"  # the record's own field wins over the request's


def test_a_record_on_stderr_is_a_line_like_any_other(stderr: io.StringIO) -> None:
    automd_log.set_level(LogLevel.ERROR)
    automd_log.record(logging.WARNING, "audit: denied", {"AUTOMD_AUDIT": "1"})
    logging.getLogger("automd.test").error("a diagnostic")
    lines = stderr.getvalue().splitlines()
    assert len(lines) == 2
    prefix = lines[1].split(" ", 1)[0]  # automd[PID]
    assert lines == [f"{prefix} WARNING audit: denied", f"{prefix} ERROR a diagnostic"]


def test_a_record_before_setup_goes_through_logging(
    restore_logging: None, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="automd.audit"):
        automd_log.record(logging.INFO, "audit: early", {"AUTOMD_AUDIT": "1"})
    (logged,) = caplog.records
    assert logged.getMessage() == "audit: early"
    extra: Any = logged
    assert extra.AUTOMD_AUDIT == "1"


@pytest.mark.parametrize(
    ("name", "valid"),
    [
        ("AUTOMD_JOB_ID", True),
        ("MESSAGE", True),
        ("A1", True),
        ("_PID", False),  # trusted fields are journald's to set
        ("1ABC", False),
        ("automd", False),
        ("JOB-ID", False),
        ("", False),
        ("A" * 64, True),
        ("A" * 65, False),
    ],
)
def test_journal_field_names(name: str, valid: bool) -> None:
    assert automd_log.is_field_name(name) is valid


def test_caller_text_no_utf8_can_encode_is_sent_escaped(journal: Journal) -> None:
    # JSON lets a caller send a lone surrogate ("\ud800"); a line may quote what was sent.
    automd_log.record(logging.INFO, "audit: \ud800", {"AUTOMD_DEFINITION": "x\ud800y"})
    logging.getLogger("automd.test").warning("line \udfff")
    record_entry, line_entry = journal.entries
    assert record_entry["MESSAGE"] == "audit: \\ud800"
    assert record_entry["AUTOMD_DEFINITION"] == "x\\ud800y"
    assert line_entry["MESSAGE"] == "line \\udfff"


def test_a_record_that_cannot_be_sent_does_not_fail_its_call(
    monkeypatch: pytest.MonkeyPatch, restore_logging: None
) -> None:
    sent = Journal()

    def journal_refusing_records(*lines: str | bytes) -> None:
        if "AUTOMD_AUDIT=1" in lines:
            raise ConnectionRefusedError(111, "Connection refused")
        sent(*lines)

    monkeypatch.setattr(automd_log, "_stderr_is_journal", lambda: True)
    automd_log.setup_logging(LogLevel.INFO, send=journal_refusing_records)
    automd_log.record(logging.INFO, "audit: job.cancel ok", {"AUTOMD_AUDIT": "1"})  # no raise
    (entry,) = sent.entries
    assert entry["MESSAGE"].startswith("audit entry not sent: audit: job.cancel ok\nTraceback")
    assert entry["PRIORITY"] == "3"
