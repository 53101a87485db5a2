"""automd's Cockpit page in a real browser: Cockpit (cockpit-ws, PAM, cockpit-bridge) in the
test container serves cockpit/ to a headless Chromium on the host; alice (group automd) and
carol (automd-admin) log in with passwords and use it against the real automd and polkit.
Screenshots of each view go to browser.ARTIFACTS (test-artifacts/cockpit/ by default).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from selenium.webdriver.support.ui import Select

from tests.integration.browser import DESKTOP, MOBILE, Browser
from tests.integration.cockpit import CockpitWs, end_sessions, install_page, set_password
from tests.integration.conftest import ADMIN_USER, CHECKOUT, TEST_USER, Gate
from tests.integration.container import Container
from tests.integration.schedule_kit import Schedules, schedule_table, timer
from tests.integration.test_access import PYTHON, call, uid_of

# Logging in, then a job's whole life, on a loaded 2-core machine.
pytestmark = pytest.mark.timeout(300)


@dataclass(frozen=True)
class Cockpit:
    url: str
    passwords: dict[str, str]


@pytest.fixture(scope="module")
def cockpit(container: Container) -> Iterator[Cockpit]:
    install_page(container)
    passwords = {user: set_password(container, user) for user in (TEST_USER, ADMIN_USER)}
    with CockpitWs(container) as ws:
        yield Cockpit(ws.url, passwords)
    end_sessions(container, list(passwords))


OpenBrowser = Callable[..., Browser]
CONFIG = "/etc/automd/automd.toml"
CLIENT_ENV = {"PYTHONPATH": str(CHECKOUT)}


@pytest.fixture
def open_browser(cockpit: Cockpit, tmp_path: Path) -> Iterator[OpenBrowser]:
    """Opens a Chromium logged in as a user; each is closed afterwards, and none may have
    logged a console error since its login."""
    browsers: list[Browser] = []

    def open_as(user: str, size: tuple[int, int] = DESKTOP) -> Browser:
        browser = Browser(cockpit.url, tmp_path / f"profile-{len(browsers)}", size)
        browsers.append(browser)
        browser.login(user, cockpit.passwords[user])
        return browser

    yield open_as
    errors = []
    for browser in browsers:
        try:
            errors += browser.console_errors()
        finally:
            browser.quit()
    assert errors == [], f"console errors: {errors}"


def jobs_of(c: Container, user: str, definition: str) -> list[dict[str, Any]]:
    """`user`'s jobs of `definition`, newest first, as automd lists them to that user."""
    jobs: list[dict[str, Any]] = call(c, user, "job.list", definition=definition, limit=500)[
        "result"
    ]["jobs"]
    return jobs


def submit(c: Container, user: str, definition: str, **params: Any) -> str:
    job_id: str = call(c, user, "job.submit", definition=definition, params=params)["result"][
        "job"
    ]["id"]
    return job_id


def row(job_id: str) -> str:
    return f"#jobs-body tr[data-job='{job_id}']"


def test_alice_sees_only_her_jobs_in_a_live_table(
    container: Container, open_browser: OpenBrowser
) -> None:
    carols = submit(container, ADMIN_USER, "hello", name="carol")
    alices = submit(container, TEST_USER, "hello", name="alice")
    browser = open_browser(TEST_USER)
    # Served by Debian's socket-activated cockpit-ws, reached through its Unix socket.
    ws = container.show("cockpit-wsinstance-http.service", "ActiveState", "TriggeredBy")
    assert ws == {"ActiveState": "active", "TriggeredBy": "cockpit-wsinstance-http.socket"}
    assert browser.menu_entries() == ["Jobs (automd)"]
    browser.find(row(alices))
    alice = f"{TEST_USER} ({uid_of(container, TEST_USER)})"
    assert alice in browser.text(row(alices))
    # Every row is alice's, and carol's job is not among them.
    callers = browser.driver.execute_script(
        "return [...document.querySelectorAll('#jobs-body td[data-label=Caller]')]"
        ".map(td => td.textContent)"
    )
    assert callers
    assert set(callers) == {alice}
    assert not browser.driver.find_elements("css selector", row(carols))
    # A job submitted elsewhere shows up without a reload, and its state follows.
    later = submit(container, TEST_USER, "hello", name="later")
    browser.wait_text(row(later), "succeeded")
    browser.screenshot("jobs")


def test_alice_runs_hello_from_the_form_and_watches_its_output(
    container: Container, open_browser: OpenBrowser
) -> None:
    browser = open_browser(TEST_USER)
    browser.go("run", "hello")
    browser.find("#run-form[data-ready]")
    name = browser.find("#param-name")
    name.clear()
    name.send_keys("from Cockpit")
    browser.find("#run-submit").click()
    browser.wait_text("#job-output", "Hello, from Cockpit!")
    browser.wait_text("#job-facts [data-fact=State] dd", "succeeded")
    browser.find("#view-job[data-output=complete]")
    job = jobs_of(container, TEST_USER, "hello")[0]
    assert job["params"] == {"name": "from Cockpit"}
    assert browser.text("#job-title").endswith(job["id"])
    assert browser.text("#job-facts [data-fact=Revision] dd") == str(job["revision"])


def test_output_arrives_live_while_the_job_runs(
    container: Container, open_browser: OpenBrowser, new_gate: Callable[[], Gate]
) -> None:
    gate = new_gate()
    job_id = submit(container, TEST_USER, "gated", gate=gate.name, lines=3)
    browser = open_browser(TEST_USER)
    browser.go("job", job_id)
    browser.wait_text("#job-output", "line 1")
    # The job waits for the gate: line 2 can only come through the open stream.
    assert "line 2" not in browser.text("#job-output")
    gate.open(1)
    browser.wait_text("#job-output", "line 2")
    assert browser.text("#job-facts [data-fact=State] dd") == "running"
    browser.screenshot("job-live")
    gate.open_all()
    browser.wait_text("#job-facts [data-fact=State] dd", "succeeded")
    browser.wait_text("#job-output", "line 3")
    browser.find("#view-job[data-output=complete]")


def test_a_bad_parameter_is_shown_before_and_after_submit(
    container: Container, open_browser: OpenBrowser
) -> None:
    before = len(jobs_of(container, TEST_USER, "hello"))
    backups_before = len(jobs_of(container, TEST_USER, "backup"))  # other tests may run some
    browser = open_browser(TEST_USER)
    browser.go("run", "hello")
    browser.find("#run-form[data-ready]")
    name = browser.find("#param-name")
    name.clear()
    name.send_keys("no/slashes")
    # Before submit: the schema's pattern, checked while typing.
    browser.wait_text("#param-name-error", "does not match the pattern")
    browser.find("#run-submit").click()
    browser.wait_text("#run-message", "Correct the fields marked above")
    assert len(jobs_of(container, TEST_USER, "hello")) == before
    # After submit: what only automd checks (a path under its allowed prefixes) comes back as
    # -32602 and lands on the field it names.
    browser.go("run", "backup")
    browser.find("#param-source").send_keys("/etc/shadow")
    browser.find("#run-submit").click()
    browser.wait_text("#param-source-error", "must lie under /srv")
    assert browser.find("[data-field=source]").get_attribute("class") == "field has-error"
    browser.screenshot("run-errors")
    assert len(jobs_of(container, TEST_USER, "backup")) == backups_before


def test_a_double_click_runs_the_job_once(container: Container, open_browser: OpenBrowser) -> None:
    browser = open_browser(TEST_USER)
    browser.go("run", "hello")
    browser.find("#run-form[data-ready]")
    name = browser.find("#param-name")
    name.clear()
    name.send_keys("once")
    # Two submits of the one form, as fast as the page takes them: same idempotency key.
    browser.driver.execute_script(
        "const f = document.getElementById('run-form');f.requestSubmit(); f.requestSubmit();"
    )
    browser.wait_text("#job-output", "Hello, once!")
    runs = [j for j in jobs_of(container, TEST_USER, "hello") if j["params"] == {"name": "once"}]
    assert len(runs) == 1
    assert runs[0]["idempotency_key"].startswith("cockpit-")


def test_alice_cancels_a_long_job_and_retries_it(
    container: Container, open_browser: OpenBrowser
) -> None:
    job_id = submit(container, TEST_USER, "long", steps=600, interval=1)
    browser = open_browser(TEST_USER)
    browser.go("job", job_id)
    browser.wait_text("#job-output", "step 1 of 600")
    browser.find("#job-cancel").click()
    browser.wait_text("#job-facts [data-fact=State] dd", "cancelled")
    browser.find("#view-job[data-output=complete]")
    assert "cancelled" in browser.text("#job-facts [data-fact=Outcome] dd")
    browser.find("#job-retry").click()
    browser.wait_text("#job-output", "step 1 of 600")
    browser.wait_text("#job-facts [data-fact=Attempts] dd", "2 of")
    browser.find("#job-cancel").click()
    browser.wait_text("#job-facts [data-fact=State] dd", "cancelled")
    job = call(container, TEST_USER, "job.get", id=job_id)["result"]["job"]
    assert (job["state"], job["attempts"]) == ("cancelled", 2)


def test_alice_is_told_the_audit_trail_is_not_hers(open_browser: OpenBrowser) -> None:
    browser = open_browser(TEST_USER)
    assert not browser.driver.find_element("id", "tab-audit").is_displayed()
    browser.go("audit")
    browser.wait_text("#alerts", "Not authorized: you may not administer automd")


# Holds every job.list answer the page receives until releaseJobList() is called; once each held
# answer has been handled to the end, window.jobListDelivered counts it.
_HOLD_JOB_LIST = """
const call = automd.rpc.call;
const held = [];
window.jobListHeld = () => held.length;
window.jobListDelivered = 0;
window.releaseJobList = () => held.splice(0).forEach(release => release());
automd.rpc.call = (method, params) => {
    const answer = call(method, params);
    if (method !== "job.list") {
        return answer;
    }
    return new Promise((resolve, reject) => held.push(() => {
        answer.then(resolve, reject).finally(() => setTimeout(() => window.jobListDelivered++));
    }));
};
"""


def test_a_late_answer_for_a_view_left_behind_does_not_clear_the_alert(
    open_browser: OpenBrowser,
) -> None:
    """The jobs view's list arrives after alice has moved on to the audit trail: the denial
    the audit view shows stays (it was cleared by the late list once)."""
    browser = open_browser(TEST_USER)
    browser.find("#view-jobs[data-loaded]")
    browser.driver.execute_script(_HOLD_JOB_LIST)
    # The jobs view polls its list: one question is now held.
    browser.wait("a job.list held", lambda: browser.driver.execute_script("return jobListHeld()"))
    browser.go("audit")
    browser.wait_text("#alerts", "Not authorized: you may not administer automd")
    browser.driver.execute_script("releaseJobList()")
    browser.wait(
        "the held job.list handled",
        lambda: browser.driver.execute_script("return window.jobListDelivered"),
    )
    assert "Not authorized: you may not administer automd" in browser.text("#alerts")


def test_carol_sees_everyones_jobs_and_alices_runs_in_the_audit_trail(
    container: Container, open_browser: OpenBrowser
) -> None:
    alice = open_browser(TEST_USER)
    alice.go("run", "hello")
    alice.find("#run-form[data-ready]")
    alice.find("#run-submit").click()
    alice.wait_text("#job-facts [data-fact=State] dd", "succeeded")
    job_id = alice.text("#job-title").split()[-1]
    carols = submit(container, ADMIN_USER, "hello", name="carol")
    alice_uid = uid_of(container, TEST_USER)

    carol = open_browser(ADMIN_USER)
    carol.wait_text(row(job_id), f"{TEST_USER} ({alice_uid})")
    carol.wait_text(row(carols), f"{ADMIN_USER} ({uid_of(container, ADMIN_USER)})")
    carol.find("#tab-audit").click()
    entry = carol.find(f"#audit-body tr[data-method='job.submit'][data-job='{job_id}']")
    assert entry.get_attribute("data-uid") == str(alice_uid)
    # Recorded as alice through her own session's bridge, never as root.
    assert f"{TEST_USER} ({alice_uid})" in entry.text
    assert "cockpit-bridge" in entry.text
    carol.screenshot("audit")


async def test_alice_runs_a_schedule_now_and_opens_its_job(
    container: Container, open_browser: OpenBrowser, schedules: Schedules
) -> None:
    true, far = 'executable = "/bin/true"\n', "2099-01-01 00:00:00"  # fires during no test
    await schedules.install("cockpit-sched", true + schedule_table("yearly", far),
                            timer("cockpit-sched", "yearly"))  # fmt: skip
    carols = true + '[access]\nallowed_users = ["carol"]\n'
    await schedules.install("cockpit-carol", carols + schedule_table("off", far, enabled=False))
    browser = open_browser(TEST_USER)
    browser.find("#tab-schedules").click()
    mine, not_mine = (f"#schedules-body tr[data-schedule='{s}']"
                      for s in ("cockpit-sched:yearly", "cockpit-carol:off"))  # fmt: skip
    assert "2099" in browser.text(f"{mine} td[data-label=Next]")
    assert browser.text(f"{not_mine} td[data-label=Enabled]") == "no"
    browser.find(f"{mine} .run-now").click()
    link = browser.find(f"{mine} .run-outcome a.job-link")
    job_id = link.text
    job = call(container, TEST_USER, "job.get", id=job_id)["result"]["job"]
    assert (job["schedule"], job["caller_uid"]) == ("yearly", uid_of(container, TEST_USER))
    link.click()
    browser.wait_text("#job-facts [data-fact=State] dd", "succeeded")
    assert browser.text("#job-title") == f"cockpit-sched {job_id}"
    browser.find("#tab-schedules").click()
    browser.find(f"{mine} td[data-label='Last job'] [data-state=succeeded]")
    assert browser.text(f"{mine} td[data-label='Last job'] a.job-link") == job_id
    # automd's refusal (the definition admits only carol) is said in the row, and runs nothing.
    browser.find(f"{not_mine} .run-now").click()
    browser.wait_text(f"{not_mine} .run-error", "Not authorized: you may not run this job")
    assert not call(container, TEST_USER, "job.list", definition="cockpit-carol")["result"]["jobs"]
    browser.screenshot("schedules")
    phone = open_browser(TEST_USER, MOBILE)
    phone.go("schedules")
    phone.driver.execute_script("arguments[0].scrollIntoView()", phone.find(mine))
    assert not phone.overflows_horizontally()
    phone.screenshot("schedules-mobile")


def test_the_page_fits_a_phone(container: Container, open_browser: OpenBrowser) -> None:
    job_id = submit(container, TEST_USER, "hello", name="phone")
    browser = open_browser(TEST_USER, MOBILE)
    browser.find(row(job_id))
    assert not browser.overflows_horizontally()
    browser.screenshot("jobs-mobile")
    browser.go("job", job_id)
    browser.wait_text("#job-output", "Hello, phone!")
    assert not browser.overflows_horizontally()
    browser.screenshot("job-mobile")
    browser.go("run", "backup")
    browser.find("#param-source")
    assert not browser.overflows_horizontally()
    browser.screenshot("run-mobile")


def test_the_page_is_listed_by_cockpit_for_members(container: Container, cockpit: Cockpit) -> None:
    """The bridge of a logged-in user lists the package (what the shell's menu is built from)."""
    listed = container.run(["cockpit-bridge", "--packages"], user=TEST_USER).stdout.decode()
    line = next(line for line in listed.splitlines() if line.startswith("automd "))
    assert "Jobs (automd)" in line
    assert line.split()[-1] == "/usr/share/cockpit/automd"


@pytest.fixture
def queue_of_one(container: Container) -> Iterator[None]:
    """automd accepting at most one unfinished job (jobs.max_unfinished, applied on reload)."""
    container.write_file(CONFIG, "[jobs]\nmax_unfinished = 1\n")
    container.run(["systemctl", "try-reload-or-restart", "automd.service"])
    yield
    container.run(["rm", "-f", CONFIG])
    container.run(["systemctl", "try-reload-or-restart", "automd.service"])


def test_a_full_queue_is_said_plainly(
    container: Container,
    open_browser: OpenBrowser,
    new_gate: Callable[[], Gate],
    queue_of_one: None,
) -> None:
    waiting = submit(container, TEST_USER, "gated", gate=new_gate().name)  # the one unfinished
    browser = open_browser(TEST_USER)
    browser.go("run", "hello")
    browser.find("#run-form[data-ready]")
    browser.find("#run-submit").click()
    browser.wait_text("#run-message", "automd's queue is full (1 unfinished jobs)")
    assert call(container, TEST_USER, "job.get", id=waiting)["result"]["job"]["state"] in (
        "queued", "starting", "running",
    )  # fmt: skip


def test_automd_unreachable_is_said_plainly(
    container: Container, open_browser: OpenBrowser
) -> None:
    browser = open_browser(TEST_USER)
    browser.find("#view-jobs[data-loaded]")
    container.stop_units("automd.socket", "automd.service")
    try:
        # The table keeps polling: the next refresh finds no socket (RemoveOnStop=yes).
        browser.wait_text("#alerts", "automd is not reachable: /run/automd.sock does not exist")
    finally:
        container.start_units("automd.socket")
    # And recovers by itself once automd is back.
    browser.wait("the alert gone", lambda: not browser.driver.find_element("id", "alerts").text)


SUBMIT_MANY = """
import json, sys
from automd.ctl.client import RpcClient
client = RpcClient("/run/automd.sock")
for i in range(int(sys.argv[1])):
    client.call("job.submit", {"definition": "hello", "params": {"name": f"page {i}"}})
"""


def shown_jobs(browser: Browser) -> list[str]:
    jobs: list[str] = browser.driver.execute_script(
        "return [...document.querySelectorAll('#jobs-body tr')].map(tr => tr.dataset.job)"
    )
    return jobs


def shown_states(browser: Browser) -> set[str]:
    states: list[str] = browser.driver.execute_script(
        "return [...document.querySelectorAll('#jobs-body tr')].map(tr => tr.dataset.state)"
    )
    return set(states)


def test_the_table_filters_by_state_and_definition_and_pages_by_cursor(
    container: Container, open_browser: OpenBrowser
) -> None:
    # More of alice's hello jobs than a page holds (25), and one failed job of another kind.
    container.run([PYTHON, "-c", SUBMIT_MANY, "30"], user=TEST_USER, env=CLIENT_ENV)
    failed = submit(container, TEST_USER, "fail", code=3)
    browser = open_browser(TEST_USER)
    browser.find("#view-jobs[data-loaded]")

    Select(browser.find("#filter-definition")).select_by_value("hello")
    newest = [job["id"] for job in jobs_of(container, TEST_USER, "hello")]
    first = browser.wait("the first page of hello jobs", lambda: shown_jobs(browser) == newest[:25])
    assert first
    browser.find("#jobs-next").click()
    browser.wait("the second page", lambda: shown_jobs(browser) == newest[25:50])
    browser.find("#jobs-prev").click()
    browser.wait("the first page again", lambda: shown_jobs(browser) == newest[:25])

    Select(browser.find("#filter-definition")).select_by_value("")
    Select(browser.find("#filter-state")).select_by_value("failed")
    browser.wait(
        "only failed jobs, the one failed after its two attempts among them",
        lambda: shown_states(browser) == {"failed"} and failed in shown_jobs(browser),
    )
    assert "exit 3" in browser.text(row(failed))
