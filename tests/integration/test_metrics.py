"""/metrics against the real daemon: job outcome counts, a restart, the TCP listener."""

from __future__ import annotations

from tests.daemon.test_metrics import promtool_problems, samples
from tests.integration.conftest import SOCKET_PATH
from tests.integration.container import Container
from tests.integration.test_jobs import Api

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(c: Container) -> str:
    url = "http://automd/metrics"
    return c.run(["curl", "-sS", "--fail", "--unix-socket", SOCKET_PATH, url]).stdout.decode()


def value(found: Samples, name: str, **labels: str) -> float:
    return found.get((name, frozenset(labels.items())), 0.0)


def finished(found: Samples, definition: str, state: str) -> float:
    return value(found, "automd_jobs_finished_total", definition=definition, state=state)


async def test_job_outcomes_are_counted_and_survive_a_restart(container: Container) -> None:
    api = Api(container)
    before = samples(scrape(container))
    ok = await api.submit("hello")
    failing = await api.submit("fail", code=3)  # two attempts: one retry, then failed
    cancelled = await api.submit("long", steps=60)
    await api.wait(cancelled["id"], "running")
    await api.call("job.cancel", id=cancelled["id"])
    for job, state in ((ok, "succeeded"), (failing, "failed"), (cancelled, "cancelled")):
        await api.wait(job["id"], state)

    text = scrape(container)
    assert promtool_problems(text) == ""
    after = samples(text)
    assert finished(after, "hello", "succeeded") - finished(before, "hello", "succeeded") == 1
    assert finished(after, "fail", "failed") - finished(before, "fail", "failed") == 1
    assert finished(after, "long", "cancelled") - finished(before, "long", "cancelled") == 1
    retries = "automd_job_retries_total"
    assert value(after, retries, definition="fail") - value(before, retries, definition="fail") == 1
    runs = "automd_job_runtime_seconds_count"
    assert value(after, runs, definition="hello") - value(before, runs, definition="hello") == 1
    assert value(after, "automd_rpc_requests_total", method="job.submit", code="ok") >= 3

    # Outcome counters come from the store: a restart does not reset them.
    container.restart_units("automd.service")
    await api.call("system.version")
    restarted = samples(scrape(container))
    for definition, state in (("hello", "succeeded"), ("fail", "failed"), ("long", "cancelled")):
        assert finished(restarted, definition, state) == finished(after, definition, state)
    assert value(restarted, retries, definition="fail") == value(after, retries, definition="fail")
    # Request counts live in memory and start again (docs/metrics.md says which do).
    assert value(restarted, "automd_rpc_requests_total", method="job.submit", code="ok") == 0


async def test_the_optional_tcp_listener_serves_only_metrics(container: Container) -> None:
    # systemd refuses to start a socket whose service already runs: stop automd first (its
    # jobs keep running), as docs/metrics.md says.
    container.stop_units("automd.service")
    container.start_units("automd-metrics.socket")
    try:
        await Api(container).call("system.version")  # activates automd with both sockets
        over_tcp = container.run(["curl", "-sS", "--fail", "http://127.0.0.1:9749/metrics"])
        assert b"automd_build_info{" in over_tcp.stdout
        rpc = container.run(
            ["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "-d", "{}",
             "-H", "Content-Type: application/json", "http://127.0.0.1:9749/rpc"],
        )  # fmt: skip
        assert rpc.stdout == b"404"
        status = container.run(["systemctl", "show", "automd.service", "-p", "StatusText"])
        assert b"metrics on 127.0.0.1:9749" in status.stdout
    finally:
        container.stop_units("automd.service", "automd-metrics.socket")
        await Api(container).call("system.version")
