"""automd.systemd.polkit without a bus: /proc parsing, details capping, subjects, error mapping."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from automd.errors import PolkitUnavailable, SystemdRejected, SystemdUnavailable
from automd.systemd.polkit import (
    MAX_DETAIL_VALUE_BYTES,
    MAX_DETAILS,
    TRUNCATED_KEY,
    TRUNCATED_MARKER,
    PolkitAuthority,
    Subject,
    SubjectGone,
    cap_details,
    decide_error,
    decide_reply,
    parse_start_time,
    read_start_time,
    subject_struct,
)

# A real stat line's shape (52 fields); starttime (field 22) is 987654.
TAIL = "S 1 100 100 0 -1 4194560 300 0 0 0 1 2 0 0 20 0 1 0 987654 10000 200 " + " ".join(
    ["0"] * 30
)


@pytest.mark.parametrize(
    "comm",
    ["sleep", "a b c", "evil) S 1 2 3", "((x))", ") 0 0 0", "tab\tand\nnewline", ""],
)
def test_start_time_is_field_22_counted_after_the_last_paren(comm: str) -> None:
    assert parse_start_time(f"4242 ({comm}) {TAIL}\n") == 987654


@pytest.mark.parametrize("line", ["", "4242 sleep S 1", "4242 (sleep) S 1 2 3", "garbage)"])
def test_malformed_stat_lines_are_refused(line: str) -> None:
    with pytest.raises(ValueError, match="malformed"):
        parse_start_time(line)


def test_own_start_time_matches_the_kernels(tmp_path: Path) -> None:
    stat = Path("/proc/self/stat").read_text()
    expected = int(stat[stat.rindex(")") + 2 :].split()[19])
    assert read_start_time(os.getpid()) == expected


def test_read_start_time_under_another_proc_root(tmp_path: Path) -> None:
    (tmp_path / "77").mkdir()
    (tmp_path / "77" / "stat").write_text(f"77 (x) y) {TAIL}")
    assert read_start_time(77, proc_root=str(tmp_path)) == 987654


@pytest.mark.parametrize("pid", [0, -1])
def test_nonsense_pids_are_gone(pid: int) -> None:
    with pytest.raises(SubjectGone):
        read_start_time(pid)


def test_a_missing_process_is_gone(tmp_path: Path) -> None:
    with pytest.raises(SubjectGone):
        read_start_time(12345, proc_root=str(tmp_path))


def test_subject_struct_has_polkits_types_and_the_peercred_uid() -> None:
    kind, fields = subject_struct(Subject(pid=4242, uid=1000), 987654)
    assert kind == "unix-process"
    assert {k: (v.signature, v.value) for k, v in fields.items()} == {
        "pid": ("u", 4242),
        "start-time": ("t", 987654),
        "uid": ("i", 1000),
    }


def test_subject_struct_marshals_as_checkauthorizations_arguments() -> None:
    from dbus_fast import Message  # noqa: PLC0415 - only this test needs the wire format

    message = Message(
        destination="org.freedesktop.PolicyKit1",
        path="/org/freedesktop/PolicyKit1/Authority",
        interface="org.freedesktop.PolicyKit1.Authority",
        member="CheckAuthorization",
        signature="(sa{sv})sa{ss}us",
        body=[subject_struct(Subject(1, 0), 2), "org.automd.run", cap_details({"a": "b"}), 0, ""],
    )
    assert message._marshall(negotiate_unix_fd=False)


def test_small_details_pass_unchanged() -> None:
    details = {"definition": "deploy-app", "param.env": "staging", "param.note": "a b ( ) é"}
    assert cap_details(details) == details


def test_long_values_are_cut_with_a_marker() -> None:
    capped = cap_details({"param.x": "y" * 5000, "param.ok": "z"})
    value = capped["param.x"]
    assert value.endswith(TRUNCATED_MARKER)
    assert len(value.encode()) <= MAX_DETAIL_VALUE_BYTES
    assert value.startswith("y" * 900)
    assert capped["param.ok"] == "z"
    assert capped[TRUNCATED_KEY] == "true"


def test_cutting_never_splits_a_multibyte_character() -> None:
    value = cap_details({"k": "é" * 2000})["k"]
    assert len(value.encode()) <= MAX_DETAIL_VALUE_BYTES
    assert set(value.removesuffix(TRUNCATED_MARKER)) == {"é"}


def test_a_value_of_exactly_the_limit_is_kept_whole() -> None:
    value = "v" * MAX_DETAIL_VALUE_BYTES
    assert cap_details({"k": value}) == {"k": value}


def test_entries_past_the_limit_are_dropped_in_order() -> None:
    details = {f"param.p{i:03}": str(i) for i in range(1000)}
    capped = cap_details(details)
    assert len(capped) == MAX_DETAILS + 1
    assert list(capped)[:MAX_DETAILS] == list(details)[:MAX_DETAILS]
    assert capped[TRUNCATED_KEY] == "true"


@pytest.mark.parametrize(
    "key", ["", "bad\nkey", "bell\a", "ünïcode", "polkit.message", "polkit.icon_name", "k" * 129]
)
def test_unprintable_overlong_or_reserved_keys_are_dropped(key: str) -> None:
    assert cap_details({key: "v", "definition": "d"}) == {"definition": "d", TRUNCATED_KEY: "true"}


@pytest.mark.parametrize(("raw", "sent"), [("a\x00b", "a\ufffdb"), ("a\udcffb", "a?b")])
def test_values_are_made_valid_dbus_strings(raw: str, sent: str) -> None:
    assert cap_details({"k": raw}) == {"k": sent, TRUNCATED_KEY: "true"}


def test_the_marker_key_cannot_be_passed_in() -> None:
    assert cap_details({TRUNCATED_KEY: "false"}) == {TRUNCATED_KEY: "true"}


@pytest.mark.parametrize("authorized", [True, False])
def test_reply_gives_is_authorized(authorized: bool) -> None:
    assert decide_reply([[authorized, False, {}]]) is authorized


def test_a_challenge_is_no_authorization() -> None:
    assert decide_reply([[False, True, {}]]) is False


@pytest.mark.parametrize("body", [[], [None], [[True]], [["x", "y"]]])
def test_a_malformed_reply_is_no_decision(body: list[Any]) -> None:
    with pytest.raises(PolkitUnavailable):
        decide_reply(body)


@pytest.mark.parametrize(
    ("name", "detail"),
    [
        ("org.freedesktop.PolicyKit1.Error.Failed", "process with PID 4242 has been replaced"),
        (
            "org.gtk.GDBus.UnmappedGError.Quark._g_2dfile_2derror_2dquark.Code4",
            'Failed to open file "/proc/4242/status": No such file or directory',
        ),
    ],
)
def test_a_gone_or_replaced_subject_is_denied(name: str, detail: str) -> None:
    assert decide_error(name, detail) is False


@pytest.mark.parametrize(
    ("name", "detail"),
    [
        ("org.freedesktop.DBus.Error.ServiceUnknown", "The name is not activatable"),
        ("org.freedesktop.systemd1.UnitMasked", "Unit polkit.service is masked."),
        ("org.freedesktop.DBus.Error.NoReply", "Did not receive a reply"),
        ("org.freedesktop.PolicyKit1.Error.Failed", "Action org.automd.nope is not registered"),
        ("org.freedesktop.PolicyKit1.Error.NotAuthorized", "Only trusted callers ..."),
        ("org.freedesktop.DBus.Error.InvalidArgs", "Type of message, ..."),
    ],
)
def test_other_errors_are_no_decision(name: str, detail: str) -> None:
    with pytest.raises(PolkitUnavailable) as caught:
        decide_error(name, detail)
    assert name in caught.value.data["reason"]


class FakeBus:
    """Stands in for SystemdBus.call: records the call, answers or raises as told."""

    def __init__(self, answer: list[Any] | BaseException) -> None:
        self.answer = answer
        self.calls: list[dict[str, Any]] = []

    async def call(self, **kwargs: Any) -> list[Any]:
        self.calls.append(kwargs)
        if isinstance(self.answer, BaseException):
            raise self.answer
        return self.answer


def authority(bus: FakeBus, **kwargs: Any) -> PolkitAuthority:
    return PolkitAuthority(bus, **kwargs)  # type: ignore[arg-type]


async def test_check_sends_the_subject_details_and_no_interaction() -> None:
    bus = FakeBus([[True, False, {}]])
    me = Subject(pid=os.getpid(), uid=1234)
    assert await authority(bus).check("org.automd.run", me, {"definition": "d"})
    (call,) = bus.calls
    assert call["destination"] == "org.freedesktop.PolicyKit1"
    assert call["member"] == "CheckAuthorization"
    subject, action, details, flags, cancellation = call["body"]
    assert subject[1]["uid"].value == 1234
    assert subject[1]["start-time"].value == read_start_time(os.getpid())
    assert (action, details, flags, cancellation) == ("org.automd.run", {"definition": "d"}, 0, "")


async def test_check_denies_an_exited_process_without_asking(tmp_path: Path) -> None:
    bus = FakeBus([[True, False, {}]])
    gone = Subject(pid=4242, uid=0)
    assert await authority(bus, proc_root=str(tmp_path)).check("org.automd.read", gone, {}) is False
    assert bus.calls == []


async def test_check_maps_a_replaced_process_to_deny() -> None:
    error = SystemdRejected("org.freedesktop.PolicyKit1.Error.Failed", "pid 1 has been replaced")
    me = Subject(pid=os.getpid(), uid=0)
    assert await authority(FakeBus(error)).check("org.automd.read", me, {}) is False


@pytest.mark.parametrize(
    "error",
    [
        SystemdUnavailable(data={"reason": "system bus: connection refused"}),
        SystemdRejected("org.freedesktop.DBus.Error.ServiceUnknown", "not activatable"),
        TimeoutError(),
    ],
)
async def test_check_raises_unavailable_when_polkit_gives_no_answer(
    error: BaseException,
) -> None:
    me = Subject(pid=os.getpid(), uid=0)
    with pytest.raises(PolkitUnavailable):
        await authority(FakeBus(error)).check("org.automd.read", me, {})


async def test_available_pings_polkit() -> None:
    assert await authority(FakeBus([])).available()
    down = FakeBus(SystemdRejected("org.freedesktop.DBus.Error.ServiceUnknown"))
    assert not await authority(down).available()
