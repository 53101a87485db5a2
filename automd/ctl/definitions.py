"""`automctl defs NAME`: a definition's parameters and sandbox, read from definition.get.

Everything shown comes from the definition's JSON Schema (automd/definitions/render.py builds
it) and its `sandbox` object, so nothing here restates the daemon's rules.
"""

from __future__ import annotations

import json
from typing import Any

#: A path parameter's schema: a string whose pattern is "^/" (a string parameter's pattern is
#: always anchored as ^(?:...)$, so the two cannot be confused). The allowed prefixes are not
#: in the schema: automd checks them, and its error names them.
_PATH_PATTERN = "^/"


def parameter_type(spec: dict[str, Any]) -> str:
    if spec.get("type") == "string" and spec.get("pattern") == _PATH_PATTERN:
        return "path"
    return str(spec.get("type", "?"))


def _value(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def constraints(spec: dict[str, Any]) -> str:
    """The schema's checks in words: `one of a|b`, `0..10`, `1..64 chars`, `matches ^x$`."""
    found = []
    if "enum" in spec:
        found.append("one of " + "|".join(_value(v) for v in spec["enum"]))
    if "minimum" in spec or "maximum" in spec:
        found.append(f"{spec.get('minimum', '')}..{spec.get('maximum', '')}")
    if parameter_type(spec) == "path":
        under = spec.get("x-allowed-prefixes")  # automd 0.6.0 on; older ones do not say
        found.append("under " + " or ".join(under) if under else "absolute path")
    elif "pattern" in spec:
        found.append(f"matches {spec['pattern']}")
    if "minLength" in spec or "maxLength" in spec:
        found.append(f"{spec.get('minLength', 0)}..{spec.get('maxLength', '')} chars")
    return ", ".join(found) or "-"


def parameter_rows(schema: dict[str, Any]) -> list[list[str]]:
    """One row per parameter: name, type, required or optional, default, constraints, text."""
    required = set(schema.get("required", []))
    rows = [["PARAMETER", "TYPE", "REQUIRED", "DEFAULT", "CONSTRAINTS", "DESCRIPTION"]]
    for name, spec in schema.get("properties", {}).items():
        default = _value(spec["default"]) if "default" in spec else "-"
        needed = "required" if name in required else "optional"
        row = [name, parameter_type(spec), needed, default, constraints(spec)]
        rows.append([*row, spec.get("description", "")])
    return rows


def sandbox_line(sandbox: dict[str, Any] | None) -> str | None:
    """`profile default; private network; writes /srv/x; ProtectHome=tmpfs` (what is set)."""
    if not sandbox:
        return None
    parts = [f"profile {sandbox.get('profile', '?')}"]
    if sandbox.get("private_network"):
        parts.append("private network")
    if sandbox.get("read_write_paths"):
        parts.append("writes " + " ".join(sandbox["read_write_paths"]))
    changed = {k: v for k, v in sandbox.items() if k not in _SHOWN and v not in (None, {}, [])}
    changed.update(sandbox.get("overrides") or {})
    parts += [f"{key}={_value(value)}" for key, value in sorted(changed.items())]
    return "; ".join(parts)


_SHOWN = {"profile", "private_network", "read_write_paths", "overrides"}
