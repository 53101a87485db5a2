"""UnitSpec validation, the exact StartTransientUnit property list, and unit object paths."""

from __future__ import annotations

import pytest
from dbus_fast import Message, Variant

from automd.sandbox import PROFILES, check_property, dbus_value
from automd.systemd.spec import UnitSpec, unit_object_path, unit_properties

PAYLOAD = "$HOME ${X} $$ `id` ; rm -rf / %n"


def spec(**overrides: object) -> UnitSpec:
    values: dict[str, object] = {
        "name": "automd-backup-01HXYZ.service",
        "description": "automd job backup",
        "argv": ("/usr/bin/printf", "%s\n", PAYLOAD),
        "environment": {"AUTOMD_JOB_ID": "01HXYZ", "FOO": "bar baz"},
        "log_extra_fields": {"AUTOMD_JOB_ID": "01HXYZ"},
    }
    values.update(overrides)
    return UnitSpec.model_validate(values)


def as_dict(props: list[tuple[str, Variant]]) -> dict[str, tuple[str, object]]:
    names = [name for name, _ in props]
    assert len(names) == len(set(names)), "a property is set twice"
    return {name: (variant.signature, variant.value) for name, variant in props}


def test_core_properties_have_exact_types_and_values() -> None:
    props = as_dict(unit_properties(spec()))
    assert props["Description"] == ("s", "automd job backup")
    assert props["Type"] == ("s", "exec")
    assert props["ExecStartEx"] == (
        "a(sasas)",
        [["/usr/bin/printf", ["/usr/bin/printf", "%s\n", PAYLOAD], ["no-env-expand"]]],
    )
    assert "ExecStart" not in props
    assert props["Environment"] == ("as", ["AUTOMD_JOB_ID=01HXYZ", "FOO=bar baz"])
    assert props["LogExtraFields"] == ("aay", [b"AUTOMD_JOB_ID=01HXYZ"])
    assert props["SyslogIdentifier"] == ("s", "automd-backup-01HXYZ")
    assert props["Slice"] == ("s", "automd-jobs.slice")
    assert props["DynamicUser"] == ("b", True)
    assert "User" not in props
    # Left at the default so failed units stay inspectable until ResetFailedUnit.
    assert "CollectMode" not in props
    for absent in ("WorkingDirectory", "MemoryMax", "CPUQuotaPerSecUSec", "TasksMax"):
        assert absent not in props


def test_limits_user_and_working_directory() -> None:
    props = as_dict(
        unit_properties(
            spec(
                user="nobody",
                working_directory="/srv",
                memory_max=268435456,
                cpu_quota_per_sec_usec=500000,
                tasks_max=64,
                runtime_max_usec=60_000_000,
            )
        )
    )
    assert props["User"] == ("s", "nobody")
    assert "DynamicUser" not in props
    assert props["WorkingDirectory"] == ("s", "/srv")
    assert props["MemoryMax"] == ("t", 268435456)
    assert props["CPUQuotaPerSecUSec"] == ("t", 500000)
    assert props["TasksMax"] == ("t", 64)
    assert props["RuntimeMaxUSec"] == ("t", 60_000_000)


def test_log_rate_limits_are_t_and_u_and_absent_when_unset() -> None:
    props = as_dict(
        unit_properties(spec(log_rate_limit_interval_usec=30_000_000, log_rate_limit_burst=0))
    )
    assert props["LogRateLimitIntervalUSec"] == ("t", 30_000_000)
    assert props["LogRateLimitBurst"] == ("u", 0)  # 0: no limit, as systemd reads it
    unset = as_dict(unit_properties(spec()))
    assert "LogRateLimitIntervalUSec" not in unset
    assert "LogRateLimitBurst" not in unset


def test_sandbox_properties_take_their_dbus_types() -> None:
    props = as_dict(unit_properties(spec(sandbox=dict(PROFILES["strict"]))))
    assert props["ProtectSystem"] == ("s", "strict")
    assert props["NoNewPrivileges"] == ("b", True)
    assert props["UMask"] == ("u", 0o077)
    assert props["CapabilityBoundingSet"] == ("t", 0)
    assert props["SystemCallArchitectures"] == ("as", ["native"])
    assert props["RestrictNamespaces"] == ("t", 0)
    assert props["RestrictAddressFamilies"] == ("(bas)", [True, ["AF_UNIX", "AF_INET", "AF_INET6"]])
    assert props["SystemCallFilter"] == ("(bas)", [True, ["@system-service"]])
    for name, value in PROFILES["strict"].items():
        if isinstance(value, bool) and name != "RestrictNamespaces":
            assert props[name] == ("b", value), name


@pytest.mark.parametrize(
    ("name", "value", "dbus"),
    [
        ("CapabilityBoundingSet", "CAP_NET_BIND_SERVICE CAP_CHOWN", ("t", (1 << 10) | 1)),
        ("CapabilityBoundingSet", "~CAP_SYS_ADMIN", ("t", ((1 << 41) - 1) & ~(1 << 21))),
        ("RestrictNamespaces", False, ("t", 0x7E020000)),
        ("RestrictNamespaces", "net", ("t", 0x40000000)),
        ("RestrictAddressFamilies", "~AF_PACKET", ("(bas)", [False, ["AF_PACKET"]])),
        ("UMask", "022", ("u", 0o022)),
    ],
)
def test_unit_file_syntax_becomes_the_dbus_value(
    name: str, value: bool | str, dbus: object
) -> None:
    check_property(name, value)
    assert dbus_value(name, value) == dbus


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("UMask", "99"),
        ("CapabilityBoundingSet", "CAP_NOPE"),
        ("RestrictNamespaces", "time"),
        ("RestrictAddressFamilies", "unix"),
        ("SystemCallFilter", "read,write"),
        ("NoNewPrivileges", "yes"),
        ("Bogus", True),
    ],
)
def test_sandbox_values_systemd_would_refuse_are_refused_early(
    name: str, value: bool | str
) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 (each case has its own message)
        check_property(name, value)


def test_properties_marshal_into_a_start_transient_unit_call() -> None:
    # dbus-fast checks every variant against its signature when it serialises the body.
    message = Message(
        destination="org.freedesktop.systemd1",
        path="/org/freedesktop/systemd1",
        interface="org.freedesktop.systemd1.Manager",
        member="StartTransientUnit",
        signature="ssa(sv)a(sa(sv))",
        body=["automd-backup-01HXYZ.service", "fail", unit_properties(spec()), []],
    )
    assert len(message._marshall(negotiate_unix_fd=False)) > 0


def test_custom_sandbox_replaces_the_default() -> None:
    props = as_dict(unit_properties(spec(sandbox={"PrivateNetwork": True})))
    assert props["PrivateNetwork"] == ("b", True)
    assert "ProtectSystem" not in props


@pytest.mark.parametrize(
    "overrides",
    [
        {"name": "automd-x.socket"},
        {"name": "automd x.service"},
        {"name": "automd-x@.service"},
        {"name": "a" * 250 + ".service"},
        {"name": ".service"},
        {"argv": ()},
        {"argv": ("printf", "x")},
        {"argv": ("/bin/echo", "a\0b")},
        {"environment": {"BAD-NAME": "x"}},
        {"environment": {"1X": "x"}},
        {"log_extra_fields": {"lower": "x"}},
        {"log_extra_fields": {"_TRUSTED": "x"}},
        {"slice": "automd-jobs"},
        {"working_directory": "relative"},
        {"memory_max": 0},
        {"tasks_max": 2**64},
        {"sandbox": {"User": "root"}},
        {"sandbox": {"ExecStart": "x"}},
    ],
)
def test_invalid_specs_are_refused(overrides: dict[str, object]) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - the message names the field; any is fine
        spec(**overrides)


@pytest.mark.parametrize(
    ("name", "path"),
    [
        (
            "automd-probe-user.service",
            "/org/freedesktop/systemd1/unit/automd_2dprobe_2duser_2eservice",
        ),
        ("a_b:c.service", "/org/freedesktop/systemd1/unit/a_5fb_3ac_2eservice"),
        ("Az09.service", "/org/freedesktop/systemd1/unit/Az09_2eservice"),
        ("ü.service", "/org/freedesktop/systemd1/unit/_c3_bc_2eservice"),
    ],
)
def test_unit_object_path_escapes_every_non_alphanumeric_byte(name: str, path: str) -> None:
    assert unit_object_path(name) == path


def test_read_write_paths_become_an_array_property() -> None:
    spec = UnitSpec(
        name="automd-x-1.service", description="d", argv=("/bin/true",), environment={},
        log_extra_fields={}, read_write_paths=("/var/backups", "/srv/out"),
    )  # fmt: skip
    props = dict(unit_properties(spec))
    assert props["ReadWritePaths"].signature == "as"
    assert props["ReadWritePaths"].value == ["/var/backups", "/srv/out"]
    changed = spec.model_dump() | {"read_write_paths": ()}
    assert "ReadWritePaths" not in dict(unit_properties(UnitSpec.model_validate(changed)))
    with pytest.raises(ValueError, match="must be absolute"):
        UnitSpec.model_validate(spec.model_dump() | {"read_write_paths": ("relative",)})


def test_managed_directories_become_their_properties() -> None:
    spec = UnitSpec(
        name="automd-x-1.service", description="d", argv=("/bin/true",), environment={},
        log_extra_fields={}, state_directories=("backups",), logs_directories=("a/b",),
    )  # fmt: skip
    props = dict(unit_properties(spec))
    assert (props["StateDirectory"].signature, props["StateDirectory"].value) == (
        "as",
        ["backups"],
    )
    assert props["LogsDirectory"].value == ["a/b"]
    assert "CacheDirectory" not in props
    for bad in ("/var/lib/x", "../x", "a/../b", ""):
        with pytest.raises(ValueError, match="relative names"):
            UnitSpec.model_validate(spec.model_dump() | {"state_directories": (bad,)})
