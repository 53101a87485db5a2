"""The open-file budget: what the caps need, raising the soft limit, lowering the caps."""

from __future__ import annotations

import errno
import logging
import resource

import pytest

from automd import fdbudget
from automd.config import ServerSettings
from automd.fdbudget import MARGIN, METRICS_CONNECTIONS, POOL_READERS, Caps, check, fit, needed

DEFAULTS = ServerSettings()


def test_what_the_default_caps_need() -> None:
    caps = Caps.configured(DEFAULTS)
    assert caps == Caps(connections=1024, per_user=256, followers=64)
    # Measured in the test container: 17 descriptors open at start, 1 per journal reader.
    fixed = MARGIN + METRICS_CONNECTIONS
    assert needed(caps, base=17, reader=1) == 17 + fixed + POOL_READERS + 1024 + 64
    # A host with 100 journal files: followers dominate.
    assert needed(caps, base=20, reader=100) == 20 + fixed + 400 + 1024 + 6400


def test_the_per_user_cap_is_never_above_the_global_one() -> None:
    settings = ServerSettings(max_connections=10, max_connections_per_user=256)
    assert Caps.configured(settings).per_user == 10


def test_caps_that_fit_are_kept() -> None:
    caps = Caps(connections=1024, per_user=256, followers=64)
    assert fit(caps, needed(caps, base=17, reader=2), base=17, reader=2) == caps


@pytest.mark.parametrize("limit", [100, 256, 512, 1000, 1100])
@pytest.mark.parametrize("reader", [1, 3, 50])
def test_caps_that_do_not_fit_are_scaled_down_together(limit: int, reader: int) -> None:
    caps = Caps(connections=1024, per_user=256, followers=64)
    lowered = fit(caps, limit, base=17, reader=reader)
    if needed(caps, base=17, reader=reader) <= limit:
        assert lowered == caps
        return
    assert 1 <= lowered.per_user <= lowered.connections < caps.connections
    assert 1 <= lowered.followers <= caps.followers
    if lowered.connections > 1 and lowered.followers > 1:
        assert needed(lowered, base=17, reader=reader) <= limit
    # One factor for all: a user's share of the connections stays what it was, about.
    assert lowered.per_user <= lowered.connections // 4 + 1


class _Limits:
    """RLIMIT_NOFILE as the module sees it."""

    def __init__(self, soft: int, hard: int, *, refuse: bool = False) -> None:
        self.soft, self.hard, self.refuse = soft, hard, refuse

    def getrlimit(self, which: int) -> tuple[int, int]:
        assert which == resource.RLIMIT_NOFILE
        return self.soft, self.hard

    def setrlimit(self, which: int, limits: tuple[int, int]) -> None:
        if self.refuse:
            raise PermissionError(errno.EPERM, "Operation not permitted")
        self.soft, self.hard = limits


@pytest.fixture
def limits(monkeypatch: pytest.MonkeyPatch) -> _Limits:
    fake = _Limits(1024, 524288)  # systemd's DefaultLimitNOFILE=
    monkeypatch.setattr(resource, "getrlimit", fake.getrlimit)
    monkeypatch.setattr(resource, "setrlimit", fake.setrlimit)
    return fake


def test_the_soft_limit_is_raised_to_what_the_caps_need(
    limits: _Limits, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="automd.fdbudget"):
        budget = check(DEFAULTS, base=17, reader=1)
    assert (limits.soft, limits.hard) == (budget.needed, 524288)
    assert not budget.lowered
    assert budget.health().ok
    assert caplog.records[-1].levelno == logging.INFO


def test_a_soft_limit_already_high_enough_is_left_alone(limits: _Limits) -> None:
    limits.soft = 16384
    assert check(DEFAULTS, base=17, reader=1).soft == 16384
    assert limits.soft == 16384


def test_a_hard_limit_too_low_lowers_the_caps_and_says_so(
    limits: _Limits, caplog: pytest.LogCaptureFixture
) -> None:
    limits.soft = limits.hard = 512
    budget = check(DEFAULTS, base=17, reader=1)
    assert budget.lowered
    assert budget.effective.connections < 512 - MARGIN
    assert needed(budget.effective, base=17, reader=1) <= 512
    health = budget.health()
    assert not health.ok
    want = needed(budget.configured, base=17, reader=1)
    assert health.detail.startswith(f"open-file limit 512 (hard 512) is below the {want} that ")
    assert f"serving at most {budget.effective.connections} connections" in health.detail
    assert "raise LimitNOFILE= in automd.service" in health.detail
    assert caplog.records[-1].levelno == logging.WARNING
    assert caplog.records[-1].message == health.detail


def test_a_limit_that_cannot_be_raised_lowers_the_caps_and_says_why(limits: _Limits) -> None:
    limits.refuse = True
    budget = check(DEFAULTS, base=17, reader=1)
    assert budget.lowered
    assert "cannot raise the soft limit: [Errno 1] Operation not permitted" in budget.describe()


def test_the_real_soft_limit_is_raised() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    settings = ServerSettings(max_connections=64, max_log_followers=1)
    want = needed(Caps.configured(settings), base=fdbudget.open_descriptors(), reader=1)
    if hard != resource.RLIM_INFINITY and hard < want:
        pytest.skip(f"hard limit {hard} below {want}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (want - 10, hard))
    try:
        budget = check(settings, base=fdbudget.open_descriptors(), reader=1)
        assert resource.getrlimit(resource.RLIMIT_NOFILE)[0] == budget.needed
        assert not budget.lowered
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
