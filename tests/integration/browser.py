"""A headless Chromium on the host (Debian's chromium and chromedriver, driven by selenium)
logged in to Cockpit, looking at automd's page: waits on what the page shows, screenshots,
and the console's errors."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar, cast

from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException, TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import WebDriverWait

from tests.integration.cockpit import chromium_paths
from tests.integration.conftest import CHECKOUT, WAIT_SECONDS

T = TypeVar("T")

#: Where the screenshots go: $AUTOMD_TEST_ARTIFACTS/cockpit, else test-artifacts/cockpit in
#: the checkout (ignored by git), where they stay after the run for a reviewer to look at.
ARTIFACTS = Path(os.environ.get("AUTOMD_TEST_ARTIFACTS", CHECKOUT / "test-artifacts")) / "cockpit"
DESKTOP = (1280, 800)
MOBILE = (390, 844)  # a phone's CSS viewport
# The machine has no network: without these Chromium keeps trying to reach Google's services
# (refused connections in a loop); a fresh profile each time keeps runs independent.
_FLAGS = (
    "--headless=new",
    "--no-sandbox",  # as root, and inside no user namespace of its own
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-dev-shm-usage",
)
# The shell's name for the page's frame: "cockpit1:" + host + "/" + package path.
PAGE_FRAME = "cockpit1:localhost/automd"
_LOGIN_PROBE = "/cockpit/login - Failed to load resource: the server responded with a status of 401"


class Browser:
    """One Chromium with a fresh profile, looking at Cockpit at `base_url`."""

    def __init__(self, base_url: str, profile: Path, size: tuple[int, int] = DESKTOP) -> None:
        browser, driver = chromium_paths()
        options = webdriver.ChromeOptions()
        options.binary_location = browser
        for flag in (*_FLAGS, f"--user-data-dir={profile}"):
            options.add_argument(flag)
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        # An explicit driver: selenium then never looks for (or downloads) one itself.
        self.driver = webdriver.Chrome(options=options, service=Service(executable_path=driver))
        self.driver.set_page_load_timeout(WAIT_SECONDS)
        self.base_url = base_url
        self.resize(size)
        self._errors: list[dict[str, Any]] = []

    def resize(self, size: tuple[int, int]) -> None:
        # The viewport, not the window: a window's size includes its decorations.
        width, height = size
        self.driver.execute_cdp_cmd(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": width < 700},
        )

    def quit(self) -> None:
        self.driver.quit()

    # -- waiting ------------------------------------------------------------------------------

    def wait(
        self, what: str, probe: Callable[[], T | None], seen: Callable[[], str] | None = None
    ) -> T:
        """probe() until it returns something true; that. Stale elements (the page re-rendered
        them meanwhile) count as not yet. On a timeout, `seen()` says what the page showed
        instead."""

        def attempt(_driver: Any) -> T | None:
            try:
                return probe()
            except StaleElementReferenceException:
                return None

        try:
            result = WebDriverWait(self.driver, WAIT_SECONDS, poll_frequency=0.1).until(attempt)
        except TimeoutException:
            instead = f"; the page showed instead: {seen()!r}" if seen is not None else ""
            raise TimeoutException(f"not within {WAIT_SECONDS:g} s: {what}{instead}") from None
        return cast(T, result)

    def find(self, css: str) -> WebElement:
        return self.wait(f"an element {css!r}", lambda: self._visible(css))

    def _visible(self, css: str) -> WebElement | None:
        for element in self.driver.find_elements(By.CSS_SELECTOR, css):
            if element.is_displayed():
                return element
        return None

    def wait_text(self, css: str, text: str) -> WebElement:
        """The visible element `css` once its text contains `text`."""

        last_seen = ["(no visible element)"]

        def probe() -> WebElement | None:
            element = self._visible(css)
            if element is None:
                return None
            last_seen[0] = element.text
            return element if text in last_seen[0] else None

        return self.wait(f"{text!r} in {css!r}", probe, seen=lambda: last_seen[0])

    def text(self, css: str) -> str:
        return self.find(css).text

    # -- Cockpit ------------------------------------------------------------------------------

    def login(self, user: str, password: str) -> None:
        """Log in on Cockpit's own login page (PAM in the container), land on automd's page in
        the shell, and switch into the page's frame."""
        self.driver.get(f"{self.base_url}/automd")
        self.find("#login-user-input").send_keys(user)
        self.find("#login-password-input").send_keys(password)
        # Unauthenticated, the login page asks /cockpit/login whether a session exists, and
        # Chromium logs the answer, 401, as a failed load: the only entry let through, and only
        # from before the login. Everything logged from here on is kept (console_errors).
        self._errors += [e for e in self._severe() if _LOGIN_PROBE not in e["message"]]
        self.find("#login-button").click()
        # Logged in once the shell shows the page in its frame (at a phone's width the
        # shell's menu is folded away, so the frame is what both widths show).
        self.wait("the shell with the page's frame", lambda: self.driver.find_elements(
            By.CSS_SELECTOR, f"iframe[name='{PAGE_FRAME}']"))  # fmt: skip
        self.enter_page()

    def enter_page(self) -> None:
        self.driver.switch_to.default_content()
        frame = self.wait(
            "the page's frame",
            lambda: self.driver.find_elements(By.CSS_SELECTOR, f"iframe[name='{PAGE_FRAME}']"),
        )
        self.driver.switch_to.frame(frame[0])
        self.wait("the page started", lambda: self.driver.execute_script(
            "return !document.body.hasAttribute('hidden')"))  # fmt: skip

    def menu_entries(self) -> list[str]:
        """The labels of the shell's menu entries that lead to automd's page."""
        self.driver.switch_to.default_content()
        entries = [
            a.get_attribute("textContent") or ""
            for a in self.driver.find_elements(By.CSS_SELECTOR, "#host-apps a[href='/automd']")
        ]
        self.enter_page()
        return [entry.strip() for entry in entries]

    def go(self, *path: str) -> None:
        """Move the page to a location (its hash), as its own links do."""
        self.driver.execute_script("cockpit.location.go(arguments[0])", list(path))

    def screenshot(self, name: str) -> Path:
        """The whole window, the shell around the page included, as ARTIFACTS/<name>.png."""
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / f"{name}.png"
        self.driver.switch_to.default_content()
        self.driver.save_screenshot(str(path))
        self.enter_page()
        return path

    def console_errors(self) -> list[dict[str, Any]]:
        """Console entries of level SEVERE (errors, failed loads, CSP refusals) since the login
        page loaded, but for its 401 probe."""
        self._errors += self._severe()
        return self._errors

    def _severe(self) -> list[dict[str, Any]]:
        """SEVERE console entries since the last call (chromedriver's "browser" log drains)."""
        entries: list[dict[str, Any]] = self.driver.get_log("browser")  # type: ignore[no-untyped-call]
        return [entry for entry in entries if entry["level"] == "SEVERE"]

    def overflows_horizontally(self) -> bool:
        """Whether the page is wider than its frame (a narrow window would scroll sideways)."""
        return bool(self.driver.execute_script(
            "return document.documentElement.scrollWidth > document.documentElement.clientWidth"
        ))  # fmt: skip
