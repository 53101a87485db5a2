"""A definition's revisions: the normalised model a revision is, its hash, and the canary rules.

A revision is what a job runs and who may run it, as validated: every default filled in,
keys sorted. So a comment, a key moved, or a default spelled out is not a change; the
[[schedule]] tables (timers follow the file on disk) and the [rollout] table (how a revision
is rolled out, not what it is) are not part of it. The numbers, and which revision serves
new jobs, are kept by automd/jobs/revisions.py in the store.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

#: Definition fields that are not part of a revision (see the module's docstring).
NOT_IN_REVISION = frozenset({"name", "schedules", "rollout", "revision"})

# Stable text for hashing: sorted keys, no whitespace, one encoder made once.
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)


class Rollout(BaseModel):
    """[rollout]: a new revision first runs a share of new jobs, and is promoted after enough
    successes or rolled back when too many of its jobs fail (docs/definitions.md)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    canary_percent: float = Field(ge=1, le=99, description="share of new jobs, in percent")
    promote_after_successes: int = Field(20, ge=1, le=1_000_000)
    max_failure_rate: float = Field(
        0.2, ge=0, le=1, description="roll back when more than this share of its jobs failed"
    )
    min_finished: int = Field(
        5, ge=1, le=1_000_000, description="finished canary jobs before the rate is judged"
    )


Verdict = Literal["promote", "roll-back"]


def canary_verdict(rollout: Rollout, succeeded: int, failed: int) -> Verdict | None:
    """What the canary's finished jobs so far call for (cancelled ones count neither way).
    Failure is judged first: a canary that failed too often is never promoted."""
    finished = succeeded + failed
    if finished >= rollout.min_finished and failed / finished > rollout.max_failure_rate:
        return "roll-back"
    if succeeded >= rollout.promote_after_successes:
        return "promote"
    return None


def takes_canary(percent: float, count: int) -> bool:
    """Whether new job number `count` (0, 1, 2, ...) runs the canary: spread evenly and
    deterministically, e.g. every 2nd job at 50%, every 10th at 10%."""
    return int((count + 1) * percent / 100) > int(count * percent / 100)


def content_hash(model: dict[str, Any]) -> str:
    """sha256 (hex) of the normalised model's canonical JSON."""
    return hashlib.sha256(_CANONICAL.encode(model).encode()).hexdigest()


def canonical_json(model: dict[str, Any]) -> str:
    return _CANONICAL.encode(model)
