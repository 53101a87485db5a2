"""automd's own logging: structured journald entries under systemd, plain stderr elsewhere."""

from __future__ import annotations

import logging
import os
import sys

from systemd.journal import JournalHandler

from automd.config import LogLevel
from automd.trace import CURRENT_REQUEST

_LEVELS = {
    LogLevel.DEBUG: logging.DEBUG,
    LogLevel.INFO: logging.INFO,
    LogLevel.WARNING: logging.WARNING,
    LogLevel.ERROR: logging.ERROR,
}


def _stderr_is_journal() -> bool:
    # systemd sets JOURNAL_STREAM=<dev>:<inode> when stderr is connected to journald.
    stream = os.environ.get("JOURNAL_STREAM", "")
    try:
        device, inode = (int(part) for part in stream.split(":"))
        info = os.fstat(sys.stderr.fileno())
    except (ValueError, OSError):
        return False
    return (info.st_dev, info.st_ino) == (device, inode)


def setup_logging(level: LogLevel) -> None:
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    handler: logging.Handler
    if _stderr_is_journal():
        # Uppercase `extra=` keys (AUTOMD_JOB_ID, ...) become journal fields.
        handler = JournalHandler(SYSLOG_IDENTIFIER="automd")
        handler.setFormatter(logging.Formatter("%(message)s"))
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("automd[%(process)d] %(levelname)s %(message)s"))
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
    # aiohttp logs every client disconnect mid-request as an error; that is the client's news.
    logging.getLogger("aiohttp").setLevel(max(_LEVELS[level], logging.WARNING))
