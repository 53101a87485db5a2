"""The journal fields of automd's own lines about a job."""

from __future__ import annotations

from automd.store.jobs import JobRecord
from automd.trace import parse_traceparent


def job_log_fields(job: JobRecord) -> dict[str, str]:
    """`journalctl AUTOMD_JOB_ID=...` (or AUTOMD_TRACE_ID=...) finds automd's lines about a
    job beside the job's own output."""
    fields = {"AUTOMD_JOB_ID": job.id, "AUTOMD_DEFINITION": job.definition}
    if job.schedule is not None:
        fields["AUTOMD_SCHEDULE"] = job.schedule
    trace = parse_traceparent(job.traceparent)
    if trace is not None:
        fields["AUTOMD_TRACE_ID"] = trace.trace_id
    return fields
