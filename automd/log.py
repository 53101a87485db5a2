"""automd's own logging: structured journald entries under systemd, plain stderr elsewhere.

Two kinds of output leave here:
- diagnostics, through `logging`, filtered by `log.level`;
- records (the audit trail's journal entries), through `record()`: sent whatever `log.level`
  says, since they are a record of who did what rather than a diagnostic, and without the
  logging machinery's per-line work (every job.submit makes one).
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections.abc import Callable, Mapping
from typing import Any, TextIO

from systemd import journal

from automd.config import LogLevel
from automd.trace import CURRENT_REQUEST

_LEVELS = {
    LogLevel.DEBUG: logging.DEBUG,
    LogLevel.INFO: logging.INFO,
    LogLevel.WARNING: logging.WARNING,
    LogLevel.ERROR: logging.ERROR,
}
IDENTIFIER = "automd"
_FIELD_CHARACTERS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")

Sender = Callable[..., Any]
RecordSink = Callable[[int, str, Mapping[str, str]], None]


class _Records:
    #: Where record() sends (logging level, message, journal fields); set by setup_logging().
    sink: RecordSink | None = None


def _stderr_is_journal() -> bool:
    # systemd sets JOURNAL_STREAM=<dev>:<inode> when stderr is connected to journald.
    stream = os.environ.get("JOURNAL_STREAM", "")
    try:
        device, inode = (int(part) for part in stream.split(":"))
        info = os.fstat(sys.stderr.fileno())
    except (ValueError, OSError):
        return False
    return (info.st_dev, info.st_ino) == (device, inode)


def is_field_name(name: str) -> bool:
    """A name journald keeps: uppercase letters, digits and `_`, not starting with `_` (those
    are trusted fields journald sets itself) or a digit, at most 64 characters."""
    return (
        0 < len(name) <= 64
        and not name[0].isdigit()
        and name[0] != "_"
        and _FIELD_CHARACTERS.issuperset(name)
    )


def priority(levelno: int) -> int:
    """syslog priority of a logging level."""
    if levelno <= logging.DEBUG:
        return 7  # LOG_DEBUG
    if levelno <= logging.INFO:
        return 6  # LOG_INFO
    if levelno <= logging.WARNING:
        return 4  # LOG_WARNING
    if levelno <= logging.ERROR:
        return 3  # LOG_ERR
    return 2  # LOG_CRIT


class JournalHandler(logging.Handler):
    """logging -> journald: MESSAGE, PRIORITY, SYSLOG_IDENTIFIER, LOGGER, CODE_*, THREAD_NAME
    and the record's own journal fields (the uppercase `extra=` names).

    systemd-python's handler also sends every other attribute of the record (msg, args,
    created, ...) as a field; journald drops those names as invalid, after automd paid for
    turning each into a string on every line.
    """

    def __init__(self, send: Sender = journal.sendv) -> None:
        super().__init__()
        self._send = send
        self._names: dict[str, bool] = {}  # attribute name -> is a journal field (memo)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            lines = [
                "MESSAGE=" + self.format(record),
                f"PRIORITY={priority(record.levelno)}",
                "SYSLOG_IDENTIFIER=" + IDENTIFIER,
                "LOGGER=" + record.name,
                f"CODE_FILE={record.pathname}",
                f"CODE_LINE={record.lineno}",
                f"CODE_FUNC={record.funcName}",
                f"THREAD_NAME={record.threadName}",
            ]
            for name, value in record.__dict__.items():
                known = self._names.get(name)
                if known is None:
                    known = self._names[name] = is_field_name(name)
                if known:
                    lines.append(f"{name}={value}")
            _send_lines(self._send, lines)
        except Exception:
            self.handleError(record)


def _send_lines(send: Sender, lines: list[str]) -> None:
    try:
        send(*lines)
    except UnicodeEncodeError:
        # Text from a caller may hold lone surrogates (JSON allows "\ud800"): the API's own
        # fields are validated ASCII, but a line may quote a request. UTF-8 cannot encode
        # them, and sendv refuses the whole entry; they are sent escaped instead.
        send(*(line.encode("utf-8", "backslashreplace") for line in lines))


def _journal_sink(send: Sender) -> RecordSink:
    def sink(level: int, message: str, fields: Mapping[str, str]) -> None:
        lines = [
            "MESSAGE=" + message,
            f"PRIORITY={priority(level)}",
            "SYSLOG_IDENTIFIER=" + IDENTIFIER,
        ]
        lines.extend(f"{name}={value}" for name, value in fields.items())
        _send_lines(send, lines)

    return sink


def _stream_sink(stream: TextIO, lock: threading.RLock | None) -> RecordSink:
    prefix = f"{IDENTIFIER}[{os.getpid()}] "

    def sink(level: int, message: str, fields: Mapping[str, str]) -> None:
        line = f"{prefix}{logging.getLevelName(level)} {message}\n"
        if lock is None:
            stream.write(line)
            stream.flush()
            return
        with lock:  # the handler's: lines from logging and from here never interleave
            stream.write(line)
            stream.flush()

    return sink


def record(level: int, message: str, fields: Mapping[str, str]) -> None:
    """A record for the journal (an audit entry), with the current request's fields; sent
    whatever `log.level` says. Before setup_logging() (tests, library use) it goes through
    `logging` like any line."""
    request = CURRENT_REQUEST.get()
    if request is not None:
        fields = {**request.journal_fields(), **fields}  # explicit fields win
    if _Records.sink is None:
        logging.getLogger("automd.audit").log(level, message, extra=dict(fields))
        return
    try:
        _Records.sink(level, message, fields)
    except Exception:
        # The call it records has happened: failing it now would misreport it to the caller.
        logging.getLogger("automd.audit").exception("audit entry not sent: %s", message)


def setup_logging(level: LogLevel, *, send: Sender = journal.sendv) -> None:
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    handler: logging.Handler
    if _stderr_is_journal():
        handler = JournalHandler(send)
        handler.setFormatter(logging.Formatter("%(message)s"))
        _Records.sink = _journal_sink(send)
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(
            logging.Formatter(IDENTIFIER + "[%(process)d] %(levelname)s %(message)s")
        )
        _Records.sink = _stream_sink(sys.stderr, handler.lock)
    handler.addFilter(_request_fields)
    root.addHandler(handler)
    set_level(level)


def _request_fields(record: logging.LogRecord) -> bool:
    """Lines logged while a request is handled carry its trace id, method and caller uid
    (journal fields; explicit `extra=` values win, e.g. a job's own trace id)."""
    request = CURRENT_REQUEST.get()
    if request is not None:
        for name, value in request.journal_fields().items():
            if not hasattr(record, name):
                setattr(record, name, value)
    return True


def set_level(level: LogLevel) -> None:
    logging.getLogger().setLevel(_LEVELS[level])
