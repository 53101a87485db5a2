"""automd.systemd.units against a fake systemd on a private bus: the signal-order races.

Each test scripts the order in which systemd's replies and signals reach automd (see
tests/fakesystemd.py) and checks that Systemd reports the unit's start and end exactly once,
with the right outcome, and then lets go of the unit. No root, no systemd: a dbus-daemon of
the test's own. Tests wait on state, never on time; WAIT_SECONDS only guards against a hang.
"""

from __future__ import annotations

import asyncio
import itertools
import signal
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from dbus_fast import Message, MessageType, Variant
from dbus_fast.aio import MessageBus

from automd.errors import SystemdUnavailable, UnitStartRejected
from automd.systemd import units
from automd.systemd.bus import SystemdBus
from automd.systemd.manager import Manager
from automd.systemd.units import Systemd, UnitOutcome, UnitSpec
from tests.fakesystemd import FakeSystemd, FakeUnit, PrivateBus, call_bus_daemon
from tests.unit_events import Recorder

WAIT_SECONDS = 10.0

_names = itertools.count()


@dataclass
class Automd:
    """One automd's view of systemd: its bus connection, Systemd, and what it reported."""

    bus: SystemdBus
    systemd: Systemd
    recorder: Recorder


@asynccontextmanager
async def automd(address: str) -> AsyncIterator[Automd]:
    """The one place a Systemd is made (next to its Recorder), as the daemon makes it.

    One start slot: a unit whose start job is never seen to end blocks the next start.
    """
    bus = SystemdBus(bus_address=address, call_timeout=WAIT_SECONDS)
    recorder = Recorder(WAIT_SECONDS)
    systemd = Systemd(Manager(bus), max_outstanding_starts=1)
    try:
        async with recorder.reading(systemd.events):
            yield Automd(bus, systemd, recorder)
    finally:
        await systemd.close()
        await bus.close()


@pytest.fixture
def private_bus(tmp_path: Path) -> Iterator[PrivateBus]:
    bus = PrivateBus(tmp_path)
    bus.start()
    try:
        yield bus
    finally:
        bus.stop()


class Pid1Journal:
    """Stands in for PID 1's journal, where Systemd looks for the end of a unit gone from the
    bus (journal.read_outcome): writing PID 1's entries takes journald and root, so reading
    real ones is left to tests/integration (test_outcome_from_journal_after_gc)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.outcomes: dict[str, UnitOutcome] = {}
        self.asked: list[tuple[str, str | None]] = []
        self.reading = asyncio.Event()  # set once Systemd reads it
        self.readable = threading.Event()  # a read (in its thread) waits until this is set
        self.readable.set()
        self._loop = loop

    def read_outcome(
        self, unit: str, invocation_id: str | None, *, path: str | None, wait_seconds: float = 0
    ) -> UnitOutcome | None:
        self.asked.append((unit, invocation_id))
        self._loop.call_soon_threadsafe(self.reading.set)
        self.readable.wait(WAIT_SECONDS)
        outcome = self.outcomes.get(unit)
        if outcome is None or invocation_id not in (None, outcome.invocation_id):
            return None
        return outcome


@pytest.fixture(autouse=True)
async def pid1_journal(monkeypatch: pytest.MonkeyPatch) -> Pid1Journal:
    journal = Pid1Journal(asyncio.get_running_loop())
    monkeypatch.setattr(units, "read_outcome", journal.read_outcome)
    return journal


@pytest.fixture
async def fake(private_bus: PrivateBus) -> AsyncIterator[FakeSystemd]:
    systemd = FakeSystemd(private_bus.address)
    await systemd.connect()
    try:
        yield systemd
    finally:
        await systemd.close()


@pytest.fixture
async def client(private_bus: PrivateBus, fake: FakeSystemd) -> AsyncIterator[Automd]:
    async with automd(private_bus.address) as client:
        yield client


def job_spec(label: str, **overrides: object) -> UnitSpec:
    name = f"automd-race-{label}-{next(_names)}.service"
    values: dict[str, object] = {
        "name": name,
        "description": f"race {label}",
        "argv": ("/bin/true",),
        "environment": {},
        "log_extra_fields": {"AUTOMD_JOB_ID": label.upper()},
    }
    values.update(overrides)
    return UnitSpec.model_validate(values)


async def settle(client: Automd, fake: FakeSystemd) -> None:
    """Run one more unit from start to end, then let automd's lookups finish.

    Everything the fake sent before reaches automd before this unit's signals, so a duplicate
    report would have been made by then; its start proves the (single) start slot was given
    back by every earlier unit.
    """
    fake.before_start_reply = None
    spec = job_spec("settle")
    async with asyncio.timeout(WAIT_SECONDS):
        await client.systemd.start_unit(spec)
    await fake.run(spec.name)
    await fake.end_start_job(spec.name)
    await fake.exit(spec.name, status=0)
    await fake.remove(spec.name)
    await client.recorder.outcome(spec.name)
    await lookups_done(client.systemd)


async def lookups_done(systemd: Systemd) -> None:
    """Wait for Systemd's background reads of unit state (it has no public "idle")."""
    async with asyncio.timeout(WAIT_SECONDS):
        while pending := set(systemd._tasks):
            await asyncio.wait(pending)


Summary = tuple[str, int | None, int | None, str]  # result, exit code, signal, source


async def reported_once(
    client: Automd,
    fake: FakeSystemd,
    unit: str,
    *,
    expect: Summary | None = None,
    started: bool = True,
) -> UnitOutcome:
    """The unit's one outcome, once it is reported; checks it is as expected, that there is
    exactly one start (or none) and one end, that the start named the same invocation, and
    that Systemd let go of the unit."""
    outcome = await client.recorder.outcome(unit)
    if expect is not None:
        assert summary(outcome) == expect
    await settle(client, fake)
    assert len(client.recorder.finished[unit]) == 1, client.recorder.finished[unit]
    if started:
        assert client.recorder.started[unit] == [outcome.invocation_id]
    else:
        assert unit not in client.recorder.started
    assert not client.systemd.following(unit)
    return outcome


def summary(outcome: UnitOutcome) -> Summary:
    return (outcome.result, outcome.exit_code, outcome.signal, outcome.source)


# -- starting: the reply and the signals in every order --------------------------------------


async def test_signals_before_the_start_reply_are_not_lost(
    client: Automd, fake: FakeSystemd
) -> None:
    """automd subscribes before it starts: a unit that runs, ends and is garbage-collected
    before StartTransientUnit's reply still reports from its signals."""
    spec = job_spec("early")

    async def whole_life(unit: FakeUnit) -> None:
        await fake.run(unit.name)
        await fake.end_start_job(unit.name)
        await fake.exit(unit.name, status=0)
        await fake.remove(unit.name)

    fake.before_start_reply = whole_life
    await client.systemd.start_unit(spec)
    outcome = await reported_once(client, fake, spec.name, expect=("success", 0, None, "dbus"))
    assert outcome.invocation_id == fake.invocations[spec.name]
    members = [member for member, _ in fake.calls]
    assert members.index("Subscribe") < members.index("StartTransientUnit")


# A unit's life as systemd signals it: a normal run, and a fast failing exit whose end
# arrives before the start job's removal (then "failed"; systemd-facts.md §2, "exit 3").
LIVES: dict[str, tuple[list[str], Summary]] = {
    "runs-then-exits-0": (["run", "job-done", "exit-0", "remove"], ("success", 0, None, "dbus")),
    "exits-3-before-job-end": (["exit-3", "job-failed"], ("exit-code", 3, None, "dbus")),
    "runs-exits-3-then-job": (["run", "exit-3", "job-done"], ("exit-code", 3, None, "dbus")),
}


def step(fake: FakeSystemd, name: str, what: str) -> Awaitable[None]:
    steps: dict[str, Callable[[], Awaitable[None]]] = {
        "run": lambda: fake.run(name),
        "job-done": lambda: fake.end_start_job(name, "done"),
        "job-failed": lambda: fake.end_start_job(name, "failed"),
        "exit-0": lambda: fake.exit(name, status=0),
        "exit-3": lambda: fake.exit(name, status=3),
        "remove": lambda: fake.remove(name),
    }
    return steps[what]()


@pytest.mark.parametrize(
    ("life", "replied_after"),
    [(life, n) for life, (steps, _) in LIVES.items() for n in range(len(steps) + 1)],
)
async def test_start_reply_anywhere_in_the_units_life(
    client: Automd, fake: FakeSystemd, life: str, replied_after: int
) -> None:
    """JobRemoved (and every other signal) before or after the reply: one start, one end."""
    steps, expected = LIVES[life]
    spec = job_spec("order")

    async def before_reply(unit: FakeUnit) -> None:
        for what in steps[:replied_after]:
            await step(fake, unit.name, what)

    fake.before_start_reply = before_reply
    await client.systemd.start_unit(spec)
    for what in steps[replied_after:]:
        await step(fake, spec.name, what)
    outcome = await reported_once(client, fake, spec.name, expect=expected)
    assert outcome.invocation_id == fake.invocations[spec.name]


@pytest.mark.parametrize("before_reply", [False, True])
async def test_start_job_fails_without_the_unit_running(
    client: Automd, fake: FakeSystemd, before_reply: bool
) -> None:
    """systemd refuses to run the unit (start-limit-hit: no process, no InvocationID): the end
    is reported, with no start; the unit stays loaded as failed."""
    spec = job_spec("refused")

    async def refuse(unit: FakeUnit) -> None:
        await fake.fail(unit.name, result="start-limit-hit")
        await fake.end_start_job(unit.name, "failed")

    fake.next_invocation_id = b""
    if before_reply:
        fake.before_start_reply = refuse
    await client.systemd.start_unit(spec)
    if not before_reply:
        await refuse(fake.units[spec.name])
    outcome = await reported_once(
        client, fake, spec.name, started=False, expect=("start-limit-hit", None, None, "dbus")
    )
    assert outcome.invocation_id is None


async def test_start_job_fails_with_an_invocation_but_no_process(
    client: Automd, fake: FakeSystemd
) -> None:
    """systemd began the start (the unit got an InvocationID) but no process ran (e.g. its
    cgroup could not be made: Result=resources, ExecMainCode 0): one end, and no start.
    Found by this fake; failed on the code before the fix (a start was reported)."""
    spec = job_spec("resources")
    await client.systemd.start_unit(spec)
    await fake.fail(spec.name, result="resources")
    await fake.end_start_job(spec.name, "failed")
    await reported_once(
        client, fake, spec.name, started=False, expect=("resources", None, None, "dbus")
    )


async def test_start_reply_lost_after_the_unit_started(client: Automd, fake: FakeSystemd) -> None:
    """systemd drops off the bus before it replies (as under a job backlog, systemd-facts.md
    §2): the call fails with NoReply, but the unit was seen to start, so it is followed."""
    spec = job_spec("noreply")

    async def start_then_drop_off(unit: FakeUnit) -> None:
        await fake.run(unit.name)
        await fake.end_start_job(unit.name)
        await fake.drop_off()

    fake.before_start_reply = start_then_drop_off
    fake.leave_next_start_unanswered = True
    await client.systemd.start_unit(spec)
    assert client.systemd.following(spec.name)
    await fake.connect()
    await fake.wait_subscribed()
    await fake.exit(spec.name, status=0)
    await reported_once(client, fake, spec.name, expect=("success", 0, None, "dbus"))


async def test_rejected_start_is_a_refusal_and_leaves_nothing_tracked(
    client: Automd, fake: FakeSystemd
) -> None:
    bad = job_spec("bad", sandbox={"ProtectSystem": "bogus"})
    with pytest.raises(UnitStartRejected) as excinfo:
        await client.systemd.start_unit(bad)
    assert not isinstance(excinfo.value, SystemdUnavailable)
    assert excinfo.value.dbus_error == "org.freedesktop.DBus.Error.InvalidArgs"
    assert not client.systemd.following(bad.name)
    assert bad.name not in fake.units

    fake.refuse_next_start = ("org.freedesktop.systemd1.UnitExists", "already loaded")
    with pytest.raises(UnitStartRejected) as excinfo:
        await client.systemd.start_unit(job_spec("exists"))
    assert excinfo.value.dbus_error == "org.freedesktop.systemd1.UnitExists"
    await settle(client, fake)  # the start slot was given back
    reported = {*client.recorder.started, *client.recorder.finished}
    assert all("settle" in name for name in reported), reported


# -- adopting the units of a previous automd --------------------------------------------------


async def start_running(client: Automd, fake: FakeSystemd, label: str) -> UnitSpec:
    spec = job_spec(label)
    await client.systemd.start_unit(spec)
    await fake.run(spec.name)
    await fake.end_start_job(spec.name)
    await client.recorder.wait_started(spec.name)
    return spec


async def test_adopt_a_running_unit_then_its_end_by_signal(
    private_bus: PrivateBus, fake: FakeSystemd
) -> None:
    async with automd(private_bus.address) as previous:
        spec = await start_running(previous, fake, "adopt-run")
        invocation_id = previous.recorder.started[spec.name][0]
    async with automd(private_bus.address) as current:
        assert spec.name in await current.systemd.adopt()
        assert await current.recorder.wait_started(spec.name) == invocation_id
        assert spec.name not in current.recorder.finished
        await current.systemd.kill_unit(spec.name, signal.SIGKILL)
        outcome = await reported_once(current, fake, spec.name, expect=("signal", None, 9, "dbus"))
        assert outcome.invocation_id == invocation_id
        await current.systemd.reset_failed(spec.name)
        assert spec.name not in fake.units


async def test_adopt_a_unit_that_already_failed(private_bus: PrivateBus, fake: FakeSystemd) -> None:
    async with automd(private_bus.address) as previous:
        spec = await start_running(previous, fake, "adopt-failed")
    await fake.exit(spec.name, status=5)  # while no automd listens
    async with automd(private_bus.address) as current:
        assert spec.name in await current.systemd.adopt()
        # Reported from its properties within adopt() itself.
        await current.recorder.settled()
        assert summary(current.recorder.finished[spec.name][0]) == ("exit-code", 5, None, "dbus")
        await current.systemd.adopt()  # still loaded (failed): not reported again
        outcome = await reported_once(current, fake, spec.name)
        assert outcome.invocation_id == fake.invocations[spec.name]


async def test_adopt_skips_a_unit_already_gone(
    private_bus: PrivateBus, fake: FakeSystemd, pid1_journal: Pid1Journal
) -> None:
    """A unit that ended and was collected before adopt() is not listed: its end is for the
    job service to read from PID 1's journal (outcome_from_journal)."""
    async with automd(private_bus.address) as previous:
        spec = await start_running(previous, fake, "adopt-gone")
        invocation_id = previous.recorder.started[spec.name][0]
    await fake.exit(spec.name, status=0)
    await fake.remove(spec.name)
    logged = UnitOutcome(spec.name, invocation_id, "success", 0, None, "journal")
    pid1_journal.outcomes[spec.name] = logged
    async with automd(private_bus.address) as current:
        assert spec.name not in await current.systemd.adopt()
        assert await current.systemd.outcome_from_journal(spec.name, invocation_id) == logged
        await settle(current, fake)
        assert spec.name not in current.recorder.started
        assert spec.name not in current.recorder.finished
        assert not current.systemd.following(spec.name)


@pytest.mark.parametrize("logged", [True, False])
async def test_adopt_a_unit_collected_between_the_listing_and_its_lookup(
    private_bus: PrivateBus, fake: FakeSystemd, pid1_journal: Pid1Journal, logged: bool
) -> None:
    """Listed, then gone before GetUnit: automd reads PID 1's journal for the unit's newest
    invocation and reports that end, start included; with nothing logged, never having seen
    the unit run, it lets go of it without a report."""
    async with automd(private_bus.address) as previous:
        spec = await start_running(previous, fake, "adopt-race")
        invocation_id = previous.recorder.started[spec.name][0]
    await fake.exit(spec.name, status=0)
    if logged:
        pid1_journal.outcomes[spec.name] = UnitOutcome(
            spec.name, invocation_id, "success", 0, None, "journal"
        )

    async def collect() -> None:
        await fake.remove(spec.name)

    fake.after_reply["ListUnitsByPatterns"] = collect
    async with automd(private_bus.address) as current:
        assert spec.name in await current.systemd.adopt()
        if logged:
            outcome = await reported_once(
                current, fake, spec.name, expect=("success", 0, None, "journal")
            )
            assert outcome.invocation_id == invocation_id
        else:
            await settle(current, fake)
            assert spec.name not in current.recorder.started
            assert spec.name not in current.recorder.finished
            assert not current.systemd.following(spec.name)
        # Asked once, or twice when UnitRemoved came while the first lookup ran.
        assert set(pid1_journal.asked) == {(spec.name, None)}


# -- gaps in the signals ----------------------------------------------------------------------


async def test_stop_is_success_by_sigterm(client: Automd, fake: FakeSystemd) -> None:
    spec = await start_running(client, fake, "stop")
    await client.systemd.stop_unit(spec.name)
    # systemd calls a SIGTERM end a success (systemd-facts.md §2).
    await reported_once(client, fake, spec.name, expect=("success", None, 15, "dbus"))
    assert spec.name not in fake.units


@pytest.mark.parametrize("ends_while_away", [False, True])
async def test_systemd_reregistering_while_a_unit_runs(
    client: Automd, fake: FakeSystemd, ends_while_away: bool
) -> None:
    """systemd drops off the bus and comes back under a new unique name (daemon-reexec): automd
    subscribes again and reads the unit back; an end during the gap is found by the resync."""
    spec = await start_running(client, fake, "reexec")
    old_owner = fake.unique_name
    await fake.drop_off()
    if ends_while_away:
        await fake.exit(spec.name, status=7)  # nobody hears it
    await fake.connect()
    assert fake.unique_name != old_owner
    await fake.wait_subscribed()
    if not ends_while_away:
        await fake.exit(spec.name, status=7)
    await reported_once(client, fake, spec.name, expect=("exit-code", 7, None, "dbus"))


async def test_bus_restart_while_a_unit_runs(
    client: Automd, fake: FakeSystemd, private_bus: PrivateBus
) -> None:
    """The bus daemon goes away and comes back (every connection drops): the unit ends in the
    gap; automd reconnects by itself, subscribes again and reads the end back."""
    spec = await start_running(client, fake, "bus-restart")
    private_bus.stop()
    await fake.drop_off()
    await fake.exit(spec.name, signal=signal.SIGKILL)
    private_bus.start()
    await fake.connect()
    await fake.wait_subscribed()
    await reported_once(client, fake, spec.name, expect=("signal", None, 9, "dbus"))
    assert client.bus.reconnects >= 1


async def test_automds_connection_dropped_while_a_unit_runs(
    client: Automd, fake: FakeSystemd
) -> None:
    """automd's own connection breaks (dbus-fast tears it down when its send buffer fills,
    systemd-facts.md §1) and the unit ends before automd is back: the resync finds the end.
    (Should automd be back first, the signals report it: one end either way.)"""
    spec = await start_running(client, fake, "reconnect")
    connection = client.bus._bus  # the integration tests drop it the same way
    assert connection is not None
    connection.disconnect()
    await fake.exit(spec.name, status=4)
    await reported_once(client, fake, spec.name, expect=("exit-code", 4, None, "dbus"))
    assert client.bus.reconnects == 1


async def test_unit_collected_during_a_gap_ends_from_the_journal(
    client: Automd, fake: FakeSystemd, pid1_journal: Pid1Journal
) -> None:
    """The unit ends cleanly and is collected while systemd is off the bus: on the resync it is
    gone, so its end comes from PID 1's journal entries for that invocation."""
    spec = await start_running(client, fake, "gap-gc")
    invocation_id = client.recorder.started[spec.name][0]
    await fake.drop_off()
    await fake.exit(spec.name, status=0)
    await fake.remove(spec.name)
    logged = UnitOutcome(spec.name, invocation_id, "success", 0, None, "journal")
    pid1_journal.outcomes[spec.name] = logged
    await fake.connect()
    outcome = await reported_once(client, fake, spec.name)
    assert outcome == logged
    assert pid1_journal.asked == [(spec.name, invocation_id)]


async def yield_until(ready: Callable[[], bool]) -> None:
    """Let the other tasks run until `ready()`: for states that nothing announces."""
    async with asyncio.timeout(WAIT_SECONDS):
        while not ready():  # noqa: ASYNC110 -- no time passes: each turn runs the others
            await asyncio.sleep(0)


async def test_resync_racing_a_start_waiting_for_the_reconnect(
    client: Automd, fake: FakeSystemd, private_bus: PrivateBus, pid1_journal: Pid1Journal
) -> None:
    """A start that waited for its start slot finds automd reconnecting: the unit it starts
    must still be followed to its end. Found by this fake; failed on the code before the fix
    (the resync's lookup overtook the start, found no unit, and forgot it)."""
    holder = job_spec("holder")
    await client.systemd.start_unit(holder)  # its start job never ends: it holds the slot
    spec = job_spec("waiting")
    start = asyncio.create_task(client.systemd.start_unit(spec))
    # The holder goes away; Systemd looks for its end in the journal, where the read waits.
    pid1_journal.readable.clear()
    await fake.remove(holder.name)
    await pid1_journal.reading.wait()
    # automd's connection drops, and its reconnect hangs (lock held) on a frozen bus daemon.
    private_bus.freeze()
    connection = client.bus._bus
    assert connection is not None
    connection.disconnect()
    await yield_until(lambda: client.bus.reconnects == 1)
    # The journal has nothing: the holder never ran; its slot goes to the waiting start,
    # which tracks its unit and then waits for the connection.
    pid1_journal.readable.set()
    await yield_until(lambda: client.systemd.following(spec.name))
    private_bus.thaw()
    async with asyncio.timeout(WAIT_SECONDS):
        await start
    await lookups_done(client.systemd)
    assert client.systemd.following(spec.name)
    await fake.run(spec.name)
    await fake.end_start_job(spec.name)
    await fake.exit(spec.name, status=0)
    await reported_once(client, fake, spec.name, expect=("success", 0, None, "dbus"))


async def test_signals_from_others_than_systemd_are_ignored(
    client: Automd, fake: FakeSystemd, private_bus: PrivateBus
) -> None:
    """Anyone may send automd a unicast signal: only systemd's name owner is believed."""
    spec = await start_running(client, fake, "impostor")
    (automd_name,) = fake.subscribers
    unit = fake.units[spec.name]
    impostor = await MessageBus(bus_address=private_bus.address).connect()
    try:
        for message in impostor_signals(automd_name, unit):
            await impostor.send(message)
        # Routed before anything the fake sends next (the daemon keeps a sender's order).
        await call_bus_daemon(impostor, "GetId")
    finally:
        impostor.disconnect()
    await fake.exit(spec.name, status=0)
    await reported_once(client, fake, spec.name, expect=("success", 0, None, "dbus"))


def impostor_signals(destination: str, unit: FakeUnit) -> list[Message]:
    """A unit killed by SIGKILL and collected, as told by someone who is not systemd."""

    def to_automd(
        path: str, interface: str, member: str, signature: str, body: list[object]
    ) -> Message:
        return Message(
            destination, path, interface, member, MessageType.SIGNAL, signature=signature, body=body
        )

    properties = "org.freedesktop.DBus.Properties"
    manager = ("/org/freedesktop/systemd1", "org.freedesktop.systemd1.Manager")
    killed = {"Result": Variant("s", "signal"), "ExecMainCode": Variant("i", 2),
              "ExecMainStatus": Variant("i", 9)}  # fmt: skip
    failed = {
        "ActiveState": Variant("s", "failed"),
        "InvocationID": Variant("ay", unit.invocation_id),
    }
    return [
        to_automd(unit.path, properties, "PropertiesChanged", "sa{sv}as",
                  ["org.freedesktop.systemd1.Service", killed, []]),
        to_automd(unit.path, properties, "PropertiesChanged", "sa{sv}as",
                  ["org.freedesktop.systemd1.Unit", failed, []]),
        to_automd(*manager, "JobRemoved", "uoss", [99, f"{manager[0]}/job/99", unit.name, "done"]),
        to_automd(*manager, "UnitRemoved", "so", [unit.name, unit.path]),
    ]  # fmt: skip
