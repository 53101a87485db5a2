"""Human output for automctl: colour only on a terminal, plain when piped."""

from __future__ import annotations

import json
import os
import sys
from typing import Any, TextIO

_COLOURS = {"green": "32", "yellow": "33", "red": "31", "bold": "1"}


class Output:
    def __init__(self, stream: TextIO = sys.stdout, *, colour: bool | None = None) -> None:
        self.stream = stream
        if colour is None:
            colour = stream.isatty() and "NO_COLOR" not in os.environ
        self.colour = colour

    def paint(self, text: str, colour: str) -> str:
        return f"\x1b[{_COLOURS[colour]}m{text}\x1b[0m" if self.colour else text

    # Each line is flushed as it is written: under a pipe stdout is block-buffered, and a CI
    # log would otherwise show "Job ID queued" only after the job's end (issue 16).
    def line(self, text: str = "") -> None:
        print(text, file=self.stream, flush=True)

    def json(self, value: Any, *, compact: bool = False) -> None:
        """Pretty by default; `compact`: one line (NDJSON, where other lines are objects too)."""
        text = (
            json.dumps(value, sort_keys=True)
            if compact
            else json.dumps(value, indent=2, sort_keys=True)
        )
        print(text, file=self.stream, flush=True)

    def table(self, rows: list[list[str]], *, indent: str = "") -> None:
        """Left-aligned columns; the last column is not padded. Cells may hold colour codes."""
        if not rows:
            return
        widths = [max(_visible_len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
        for row in rows:
            cells = [
                cell + " " * (widths[i] - _visible_len(cell)) for i, cell in enumerate(row[:-1])
            ]
            self.line(indent + "  ".join([*cells, row[-1]]).rstrip())


def _visible_len(text: str) -> int:
    length, in_escape = 0, False
    for char in text:
        if char == "\x1b":
            in_escape = True
        elif in_escape:
            in_escape = char != "m"
        else:
            length += 1
    return length


def format_duration(seconds: float) -> str:
    """systemd-style short durations: 45s, 3min 2s, 2h 5min, 3d 4h."""
    total = int(seconds)
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [(days, "d"), (hours, "h"), (minutes, "min"), (secs, "s")]
    shown = [f"{value}{unit}" for value, unit in parts if value]
    return " ".join(shown[:2]) if shown else f"{seconds:.1f}s"
