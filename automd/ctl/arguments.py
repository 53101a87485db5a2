"""Checking automctl's command line: option types with limits, and one-line usage errors.

Every value is checked here, before anything is sent, so a hostile value ends in one line and
Exit.USAGE instead of a traceback or a confusing answer from the daemon.
"""

from __future__ import annotations

import argparse
import math
import pwd
import re
from collections.abc import Callable
from typing import NoReturn

from automd.ctl.context import UsageError
from automd.ctl.times import parse_time

#: Longest --timeout: beyond a day it is a typo (and past ~1e9 s the socket refuses it).
MAX_TIMEOUT = 86400.0
_JOB_ID = re.compile(r"[0-9a-z]{26}")


def shown(value: str) -> str:
    """A value quoted for a message, cut short: an argument may be megabytes long."""
    return repr(value if len(value) <= 40 else value[:40] + "...")


class Parser(argparse.ArgumentParser):
    """argparse, except that a mistake is one line pointing at --help, not the usage block."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see {self.prog} --help)")


def seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{shown(text)} is not a number of seconds") from None
    if not (math.isfinite(value) and 0 < value <= MAX_TIMEOUT):
        raise argparse.ArgumentTypeError(
            f"{shown(text)}: give seconds between 0 and {MAX_TIMEOUT:g}"
        )
    return value


def count(maximum: int) -> Callable[[str], int]:
    """A whole number from 1 to `maximum` (the API's own bound, so it never refuses it)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{shown(text)} is not a whole number") from None
        if not 1 <= value <= maximum:
            raise argparse.ArgumentTypeError(f"{shown(text)}: give a number from 1 to {maximum}")
        return value

    parse.__name__ = "count"  # argparse names the type in its errors
    return parse


class NamedUid(int):
    """A uid that was given as a user name and resolved on this machine: with -H, refused
    (main.py), since the other host's user of that name may have another uid."""

    name: str


def uid(text: str) -> int:
    """A uid, or a user name resolved here (automd's audit trail records uids)."""
    try:
        value = int(text)
    except ValueError:
        try:
            resolved = NamedUid(pwd.getpwnam(text).pw_uid)
            resolved.name = text
            return resolved
        except (KeyError, ValueError):  # ValueError: a NUL byte in the name
            raise argparse.ArgumentTypeError(
                f"{shown(text)} is neither a user id nor a known user name"
            ) from None
    if not 0 <= value < 2**32:
        raise argparse.ArgumentTypeError(f"{shown(text)} is not a user id (0 to 4294967295)")
    return value


def nonempty(value: str) -> str:
    """A non-empty string: an empty one would silently mean "not given"."""
    if not value:
        raise argparse.ArgumentTypeError("must not be empty")
    return value


def job_id(value: str) -> str:
    if not _JOB_ID.fullmatch(value):
        raise argparse.ArgumentTypeError(
            f"{shown(value)} is not a job id (26 lowercase letters and digits); "
            "automctl list shows your jobs"
        )
    return value


def time(value: str) -> str:
    try:
        return parse_time(value)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def check_utf8(argv: list[str]) -> None:
    """Arguments reach the daemon as JSON strings, which cannot hold bytes that are not UTF-8."""
    for arg in argv:
        try:
            arg.encode()
        except UnicodeEncodeError:
            raw = arg.encode(errors="surrogateescape")[:40]
            raise UsageError(f"argument {raw!r} is not valid UTF-8") from None
