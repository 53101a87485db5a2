"""One W3C trace id ties the caller's request, automd's lines, the job record and its output."""

from __future__ import annotations

import json
import re
import secrets
from typing import Any

from tests.integration.conftest import SOCKET_PATH, TEST_USER, wait_for
from tests.integration.container import Container
from tests.integration.test_jobs import Api


def submit(c: Container, params: dict[str, Any], traceparent: str | None) -> dict[str, Any]:
    """job.submit as TEST_USER with curl, optionally with a traceparent header."""
    body = json.dumps({"jsonrpc": "2.0", "method": "job.submit", "params": params, "id": 1})
    header = [] if traceparent is None else ["-H", f"traceparent: {traceparent}"]
    out = c.run(
        ["curl", "-sS", "--unix-socket", SOCKET_PATH, "-H", "Content-Type: application/json",
         *header, "-d", body, "http://automd/rpc"],
        user=TEST_USER,
    ).stdout  # fmt: skip
    reply: dict[str, Any] = json.loads(out)
    return reply


def journal_by_trace(c: Container, trace_id: str, want: int) -> list[dict[str, Any]]:
    # automd logs a job's end just after recording it: a client may see the state first.
    return wait_for(f"{want} journal entries of trace {trace_id}",
                    lambda: c.journal(f"AUTOMD_TRACE_ID={trace_id}"),
                    lambda entries: len(entries) >= want)  # fmt: skip


async def test_one_trace_id_in_the_record_the_jobs_output_and_automds_lines(
    container: Container,
) -> None:
    trace_id, parent = secrets.token_hex(16), secrets.token_hex(8)
    header = f"00-{trace_id}-{parent}-01"
    job = submit(container, {"definition": "traced"}, header)["result"]["job"]
    assert job["traceparent"] == header
    api = Api(container)
    await api.wait(job["id"], "succeeded")

    printed, done = api.output(job["id"])
    assert done == "done"
    match = re.fullmatch(rf"traceparent=00-{trace_id}-([0-9a-f]{{16}})-01", printed)
    assert match, printed
    assert match.group(1) != parent  # the attempt is a child span of the submit

    # output, audit entry of the submit, attempt started, job succeeded
    entries = journal_by_trace(container, trace_id, 5)
    output = [e["MESSAGE"] for e in entries if e.get("_TRANSPORT") == "stdout"]
    assert output == [printed, "done"]
    own = [e for e in entries if e.get("SYSLOG_IDENTIFIER") == "automd"]
    alice = container.run(["id", "-u", TEST_USER]).stdout.decode().strip()
    audit = next(e for e in own if e.get("AUTOMD_AUDIT") == "1")
    assert (audit["AUTOMD_METHOD"], audit["AUTOMD_CALLER_UID"]) == ("job.submit", alice)
    assert audit["AUTOMD_JOB_ID"] == job["id"]
    messages = [e["MESSAGE"] for e in own if e.get("AUTOMD_JOB_ID") == job["id"]]
    assert any(m.startswith(f"job {job['id']}: attempt 1 started as ") for m in messages)
    assert f"job {job['id']} succeeded (success)" in messages


async def test_the_param_wins_a_bad_one_is_refused_a_bad_header_is_replaced(
    container: Container,
) -> None:
    wanted = f"00-{secrets.token_hex(16)}-{secrets.token_hex(8)}-00"
    other = f"00-{secrets.token_hex(16)}-{secrets.token_hex(8)}-01"
    reply = submit(container, {"definition": "traced", "traceparent": wanted}, other)
    assert reply["result"]["job"]["traceparent"] == wanted

    reply = submit(container, {"definition": "traced", "traceparent": "00-xyz"}, None)
    assert (reply["error"]["code"], reply["error"]["data"]["field"]) == (-32602, "traceparent")

    reply = submit(container, {"definition": "traced"}, "not-a-traceparent")
    fresh = reply["result"]["job"]["traceparent"]
    assert re.fullmatch(r"00-[0-9a-f]{32}-[0-9a-f]{16}-01", fresh), fresh
    await Api(container).wait(reply["result"]["job"]["id"], "succeeded")
