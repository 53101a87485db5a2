"""Months of operation against the real systemd: per-job journald rate limits."""

from __future__ import annotations

from tests.integration.conftest import wait_for_async
from tests.integration.container import Container
from tests.integration.test_jobs import Api

# journald's "Suppressed N messages from UNIT" entry (SD_MESSAGE_JOURNAL_DROPPED).
JOURNAL_DROPPED = "a596d6fe7bfa4994828e72309e95d61e"


async def test_a_flooding_job_is_rate_limited_by_journald(container: Container) -> None:
    api = Api(container)
    job = await api.submit("flood", lines=20000)
    await api.wait(job["id"], "succeeded")
    unit = f"automd-flood-{job['id']}-1.service"  # gone once finished: its journal tells
    kept = api.output(job["id"])
    # The burst (10, scaled by journald up to 6x with free disk space) per 1 s interval: a
    # fraction of the 20000 lines, and the line after the interval comes through.
    assert 10 <= len(kept) < 20000 // 10, len(kept)
    assert kept[-1] == "after the flood"
    # journald says what it dropped, as itself: the job's unit only in OBJECT_ fields.
    (dropped,) = container.journal(f"MESSAGE_ID={JOURNAL_DROPPED}", f"OBJECT_SYSTEMD_UNIT={unit}")
    assert dropped["_SYSTEMD_UNIT"] == "systemd-journald.service"
    assert int(dropped["N_DROPPED"]) + len(kept) == 20000 + 1
    assert "AUTOMD_JOB_ID" not in dropped
    # So job.logs, which reads the job's own entries, shows the lines kept and not the notice.
    page = await wait_for_async(
        "job.logs of the whole output",
        lambda: api.call("job.logs", id=job["id"], limit=5000),
        lambda page: bool(page["finished"]),
    )
    assert [e["message"] for e in page["entries"]] == kept
