"""The differences between two JSON values (two revisions' models), one change per leaf path.

Pure: no I/O, no colour. Objects are compared key by key and lists index by index, so a list
that grew or shrank shows the indexes added or removed; a key or index present on one side
only is one change holding its whole value, and so is a value whose JSON type changed.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Literal

Kind = Literal["added", "removed", "changed"]
Path = tuple[str | int, ...]

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")


@dataclass(frozen=True)
class Change:
    path: Path
    kind: Kind
    old: Any = None  # None for "added" (and a JSON null for the others)
    new: Any = None  # None for "removed"

    def to_json(self) -> dict[str, Any]:
        return {"path": path_text(self.path), "change": self.kind, "old": self.old,
                "new": self.new}  # fmt: skip


def diff(old: Any, new: Any) -> list[Change]:
    """Every difference between `old` and `new`, ordered by path (list indexes by number)."""
    changes: list[Change] = []
    _walk((), old, new, changes)
    return sorted(changes, key=lambda change: _order(change.path))


def _walk(path: Path, old: Any, new: Any, changes: list[Change]) -> None:
    if isinstance(old, dict) and isinstance(new, dict):
        for key in old.keys() | new.keys():
            if key not in new:
                changes.append(Change((*path, key), "removed", old=old[key]))
            elif key not in old:
                changes.append(Change((*path, key), "added", new=new[key]))
            else:
                _walk((*path, key), old[key], new[key], changes)
    elif isinstance(old, list) and isinstance(new, list):
        for index in range(max(len(old), len(new))):
            if index >= len(new):
                changes.append(Change((*path, index), "removed", old=old[index]))
            elif index >= len(old):
                changes.append(Change((*path, index), "added", new=new[index]))
            else:
                _walk((*path, index), old[index], new[index], changes)
    elif not same(old, new):
        changes.append(Change(path, "changed", old=old, new=new))


def same(a: Any, b: Any) -> bool:
    """Equal as JSON values: `true` is not `1` (Python says it is), `1` is `1.0`."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, dict | list) or isinstance(b, dict | list):
        return type(a) is type(b) and not diff(a, b)
    return bool(a == b)


def _order(path: Path) -> tuple[tuple[int, int, str], ...]:
    # A key and an index never share a parent, so the first element only keeps the key total.
    return tuple((1, part, "") if isinstance(part, int) else (0, 0, part) for part in path)


def path_text(path: Path) -> str:
    """`limits.memory_max`, `argv[2]`, `argv[4].args[0]`, `environment["A.B"]`; `.` for the
    whole value."""
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        elif _NAME.fullmatch(part):
            text += f".{part}" if text else part
        else:
            text += f"[{json.dumps(part)}]"
    return text or "."


def value_text(value: Any) -> str:
    """A value as JSON on one line: `"--fast"`, `536870912`, `null`, `{"type": "integer"}`."""
    return json.dumps(value, sort_keys=True, ensure_ascii=False)
