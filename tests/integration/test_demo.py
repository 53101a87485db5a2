"""`make demo` keeps working: its steps run against the session's container."""

from __future__ import annotations

import shlex

from tests.integration.container import Container
from tests.integration.demo import run_demo


def test_demo_runs_a_job_end_to_end(container: Container) -> None:
    lines: list[str] = []
    job_id = run_demo(container, lines.append)
    text = "\n".join(lines)
    assert "Hello, automd demo!" in text  # the job's own output, from journalctl
    assert f"AUTOMD_JOB_ID={job_id}" in text
    assert "Finished with result: exit-code (failed)" in text
    assert "(exit status 3)" in text
    # Commands are shown as typed: the value with a space keeps its quotes.
    typed = next(line for line in lines if " run hello " in line)
    assert shlex.split(typed.split("$ ", 1)[1])[-3:] == ["hello", "name=automd demo", "--wait"]
