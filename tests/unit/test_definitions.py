"""Definitions: typed parameters, argv rendering that no value can reshape, loader errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from automd.definitions.loader import load_definitions, load_file
from automd.definitions.model import Definition, Limits
from automd.definitions.render import (
    InvalidJobParameter,
    params_json_schema,
    render_argv,
    render_environment,
    validate_params,
)
from automd.jobs.plan import make_plan, plan_json

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "etc/automd/jobs.d"

INJECTIONS = [
    "; rm -rf /",
    "$(id)",
    "${HOME}",
    "$HOME",
    "$$",
    "`id`",
    "a b c",
    "'quoted' \"double\"",
    "%n %% %h",
    "*",
    "x && reboot",
    "| cat /etc/shadow",
    "\\",
]


def definition(**fields: Any) -> Definition:
    base: dict[str, Any] = {"name": "t", "executable": "/usr/bin/echo"}
    return Definition.model_validate(base | fields)


ECHO = definition(
    argv=["--", "{text}", "--out={dest}", {"if": "loud", "args": ["--loud"]}],
    parameters={
        "text": {"type": "string", "max_length": 100},
        "dest": {"type": "path", "allowed_prefixes": ["/var/backups"], "default": "/var/backups/x"},
        "loud": {"type": "boolean", "default": False},
    },
)


@pytest.mark.parametrize("payload", INJECTIONS)
def test_injection_payloads_stay_one_verbatim_argument(payload: str) -> None:
    argv = render_argv(ECHO, validate_params(ECHO, {"text": payload}))
    assert argv == ("/usr/bin/echo", "--", payload, "--out=/var/backups/x")


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        ("line1\nline2", "control characters"),
        ("nul\x00byte", "NUL"),
        ("-rf", "must not start with '-'"),
        ("--help", "must not start with '-'"),
        ("\x1b[31mred", "control characters"),
        ("\ud800", "valid Unicode"),
    ],
)
def test_dangerous_strings_are_rejected_with_a_reason(payload: str, reason: str) -> None:
    with pytest.raises(InvalidJobParameter) as info:
        validate_params(ECHO, {"text": payload})
    assert info.value.field == "params.text"
    assert reason in info.value.reason


def test_leading_dash_and_control_characters_can_be_allowed_explicitly() -> None:
    d = definition(
        argv=["{v}"],
        parameters={
            "v": {"type": "string", "allow_leading_dash": True, "allow_control_characters": True}
        },
    )
    assert render_argv(d, validate_params(d, {"v": "-x\nmulti"})) == ("/usr/bin/echo", "-x\nmulti")
    with pytest.raises(InvalidJobParameter, match="NUL"):
        validate_params(d, {"v": "a\x00"})


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/var/backups/a.tar", "/var/backups/a.tar"),
        ("/var/backups/./sub//a.tar", "/var/backups/sub/a.tar"),
        ("/var/backups/sub/../a.tar", "/var/backups/a.tar"),
        ("/var/backups", "/var/backups"),
        ("//var/backups/a", "/var/backups/a"),
    ],
)
def test_paths_are_normalised(path: str, expected: str) -> None:
    assert validate_params(ECHO, {"text": "t", "dest": path})["dest"] == expected


@pytest.mark.parametrize(
    "path",
    [
        "/var/backups/../../etc/shadow",
        "/var/backups/..",
        "/var/backupsX/a",
        "/etc/passwd",
        "var/backups/a",
        "../var/backups/a",
        "-/var/backups/a",
        "/var/backups/a\nb",
    ],
)
def test_paths_cannot_escape_their_prefixes(path: str) -> None:
    with pytest.raises(InvalidJobParameter) as info:
        validate_params(ECHO, {"text": "t", "dest": path})
    assert info.value.field == "params.dest"


@pytest.mark.parametrize(
    ("params", "field", "reason"),
    [
        ({}, "params.text", "required"),
        ({"text": "a", "extra": 1}, "params.extra", "unknown parameter"),
        ({"text": 5}, "params.text", "must be a string"),
        ({"text": "a" * 101}, "params.text", "0 to 100 characters"),
        ({"text": "a", "loud": "yes"}, "params.loud", "true or false"),
        ({"text": "a", "dest": 7}, "params.dest", "absolute path"),
    ],
)
def test_invalid_values_name_the_parameter(params: dict[str, Any], field: str, reason: str) -> None:
    with pytest.raises(InvalidJobParameter) as info:
        validate_params(ECHO, params)
    assert (info.value.field, reason in info.value.reason) == (field, True)


def test_integers_are_range_checked_and_bools_are_not_integers() -> None:
    d = definition(argv=["{n}"], parameters={"n": {"type": "integer", "minimum": 1, "maximum": 9}})
    assert render_argv(d, validate_params(d, {"n": 9})) == ("/usr/bin/echo", "9")
    for bad in (0, 10, True, 1.5, "3"):
        with pytest.raises(InvalidJobParameter):
            validate_params(d, {"n": bad})


def test_negative_integers_need_a_negative_minimum() -> None:
    d = definition(argv=["{n}"], parameters={"n": {"type": "integer"}})
    with pytest.raises(InvalidJobParameter, match="between 0 and"):
        validate_params(d, {"n": -1})


def test_enum_and_pattern() -> None:
    d = definition(
        argv=["{env}", "{tag}"],
        parameters={
            "env": {"type": "string", "enum": ["staging", "prod"]},
            "tag": {"type": "string", "pattern": "v[0-9]+"},
        },
    )
    assert validate_params(d, {"env": "prod", "tag": "v12"}) == {"env": "prod", "tag": "v12"}
    with pytest.raises(InvalidJobParameter, match="one of"):
        validate_params(d, {"env": "dev", "tag": "v1"})
    # The pattern must match the whole value, not a prefix.
    with pytest.raises(InvalidJobParameter, match="pattern"):
        validate_params(d, {"env": "prod", "tag": "v1; rm -rf /"})


def test_conditional_args_appear_only_when_set() -> None:
    values = validate_params(ECHO, {"text": "x", "loud": True})
    assert render_argv(ECHO, values)[-1] == "--loud"
    assert "--loud" not in render_argv(ECHO, validate_params(ECHO, {"text": "x"}))


def test_optional_parameter_without_default() -> None:
    d = definition(
        argv=[{"if": "tag", "args": ["--tag", "{tag}"]}],
        parameters={"tag": {"type": "string", "required": False}},
    )
    assert render_argv(d, validate_params(d, {})) == ("/usr/bin/echo",)
    assert render_argv(d, validate_params(d, {"tag": "a b"})) == ("/usr/bin/echo", "--tag", "a b")


def test_literal_braces_and_environment_rendering() -> None:
    d = definition(
        argv=["{{literal}}", "{x}"],
        parameters={"x": {"type": "string"}},
        environment={"TARGET": "{x}", "LC_ALL": "C"},
    )
    values = validate_params(d, {"x": "$(id)"})
    assert render_argv(d, values) == ("/usr/bin/echo", "{literal}", "$(id)")
    assert render_environment(d, values) == {"TARGET": "$(id)", "LC_ALL": "C"}


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"executable": "echo"}, "absolute path"),
        ({"executable": "/bin/{x}"}, "absolute path"),
        ({"argv": ["{nope}"]}, "unknown parameter 'nope'"),
        ({"argv": ["{x!r}"], "parameters": {"x": {"type": "string"}}}, "placeholders are"),
        ({"argv": ["{"]}, "Single '{'"),
        ({"argv": [{"if": "nope", "args": ["a"]}]}, "unknown parameter 'nope'"),
        ({"parameters": {"Bad": {"type": "string"}}}, "parameter name"),
        ({"parameters": {"x": {"type": "float"}}}, "does not match any of the expected tags"),
        ({"parameters": {"x": {"type": "string", "pattern": "("}}}, "invalid regular expression"),
        ({"parameters": {"x": {"type": "path", "allowed_prefixes": ["rel"]}}}, "absolute"),
        ({"parameters": {"x": {"type": "path", "allowed_prefixes": ["/a/../b"]}}}, "normalised"),
        ({"parameters": {"x": {"type": "string", "default": "-x"}}}, "default '-x' is not valid"),
        ({"parameters": {"x": {"type": "integer", "default": -1}}}, "between 0 and"),
        ({"parameters": {"x": {"type": "boolean", "default": "yes"}}}, "valid boolean"),
        ({"parameters": {"x": {"type": "integer", "default": "5"}}}, "valid integer"),
        ({"parameters": {"x": {"type": "string", "default": 5}}}, "valid string"),
        ({"environment": {"AUTOMD_JOB_ID": "x"}}, "reserved"),
        ({"environment": {"1BAD": "x"}}, "not a valid environment variable name"),
        ({"limits": {"memory_max": "lots"}}, "expected a size"),
        ({"retry": {"on_results": ["success"]}}, "Input should be"),
        ({"bogus": 1}, "Extra inputs"),
        ({"sandbox": {"overrides": {"User": "root"}}}, "not a sandbox property"),
        ({"sandbox": {"overrides": {"MemoryDenyWriteExecute": "no"}}}, "must be true or false"),
        (
            {"argv": ["{t}"], "parameters": {"t": {"type": "string", "required": False}}},
            "only appear inside a conditional",
        ),
    ],
)
def test_bad_definitions_are_rejected(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        definition(**fields)


def test_sizes_and_percentages() -> None:
    d = definition(limits={"memory_max": "512M", "cpu_quota": "50%"})
    assert d.limits.memory_max == 512 * 1024 * 1024
    assert d.limits.cpu_quota == 50.0


def test_json_schema_of_parameters() -> None:
    schema = params_json_schema(ECHO)
    assert schema["required"] == ["text"]
    assert schema["additionalProperties"] is False
    assert schema["properties"]["loud"] == {"type": "boolean", "default": False}
    assert schema["properties"]["dest"]["default"] == "/var/backups/x"
    # Where a path may point, for forms and automctl defs (an annotation: not a check).
    assert schema["properties"]["dest"]["x-allowed-prefixes"] == ["/var/backups"]


def test_shipped_examples_all_load() -> None:
    result = load_definitions(EXAMPLES)
    assert result.errors == ()
    assert sorted(result.definitions) == ["backup", "fail", "hello", "long"]
    backup = result.definitions["backup"]
    argv = render_argv(backup, validate_params(backup, {"source": "/srv/www", "verbose": True}))
    assert argv == (
        "/usr/bin/tar", "--create", "--gzip", "--file=/var/lib/automd-backups/backup.tar.gz",
        "--directory=/srv/www", "--verbose", ".",
    )  # fmt: skip


def test_a_bad_file_is_reported_and_the_good_ones_load(tmp_path: Path) -> None:
    (tmp_path / "good.toml").write_text('executable = "/bin/true"\n')
    (tmp_path / "typo.toml").write_text('executable = "/bin/true"\n[limits]\nmemroy_max = "1G"\n')
    (tmp_path / "broken.toml").write_text("executable = \n")
    (tmp_path / "Bad Name.toml").write_text('executable = "/bin/true"\n')
    (tmp_path / "named.toml").write_text('name = "x"\nexecutable = "/bin/true"\n')
    (tmp_path / "notes.txt").write_text("ignored")
    result = load_definitions(tmp_path)
    assert list(result.definitions) == ["good"]
    errors = {Path(e.file).name: (e.key, e.reason) for e in result.errors}
    assert errors["typo.toml"] == ("limits.memroy_max", "unknown key; did you mean 'memory_max'?")
    assert errors["broken.toml"][0] is None
    assert errors["broken.toml"][1].startswith("invalid TOML: ")
    assert "not a valid job name" in errors["Bad Name.toml"][1]
    assert errors["named.toml"][0] == "name"


def test_error_key_points_into_parameters(tmp_path: Path) -> None:
    path = tmp_path / "j.toml"
    path.write_text('executable = "/bin/true"\n[parameters.n]\ntype = "integer"\nminimum = "x"\n')
    loaded = load_file(path)
    assert not isinstance(loaded, Definition)
    (error,) = loaded
    assert error.key == "parameters.n.minimum"
    assert str(error) == f"{path}: parameters.n.minimum: " + error.reason


def test_missing_directory_has_no_definitions(tmp_path: Path) -> None:
    assert load_definitions(tmp_path / "nope") == load_definitions(tmp_path / "nope")
    assert load_definitions(tmp_path / "nope").definitions == {}


def test_sandbox_overrides_reach_the_plan() -> None:
    d = definition(
        sandbox={"overrides": {"MemoryDenyWriteExecute": False, "ProtectProc": "default"}}
    )
    plan = make_plan(d, {})
    assert plan.sandbox["MemoryDenyWriteExecute"] is False
    assert plan.sandbox["ProtectProc"] == "default"
    assert plan.sandbox["NoNewPrivileges"] is True  # the rest stays hardened


def test_a_definition_makes_its_plans_fixed_part_once_and_a_copy_anew() -> None:
    d = definition(argv=["{text}"], parameters={"text": {"type": "string"}})
    one, two = (make_plan(d, {"text": text}) for text in ("a", "b"))
    assert (one.argv, two.argv) == (("/usr/bin/echo", "a"), ("/usr/bin/echo", "b"))
    assert one.sandbox is two.sandbox  # made once, for every job of the definition
    changed = d.model_copy(update={"executable": "/usr/bin/printf", "limits": Limits(tasks_max=5)})
    plan = make_plan(changed, {"text": "a"})
    assert (plan.argv, plan.tasks_max) == (("/usr/bin/printf", "a"), 5)
    secret = definition(parameters={"token": {"type": "string", "secret": True}})
    assert secret.model_copy(update={"parameters": {}}).secret_names == frozenset()
    assert secret.secret_names == {"token"}


@pytest.mark.parametrize(
    "text", ["plain", "ünïcødé ✓", 'a "quote" and a \\', "tab\tand\nnewline", "\u2028\x7f\x1b"]
)
def test_a_stored_plan_is_the_plans_own_json(text: str) -> None:
    """job.submit stores plan_json(), which serialises only the command per job: it must be
    make_plan()'s JSON byte for byte, with every kind of field set."""
    d = definition(
        description="all of it",
        argv=["{text}", {"if": "flag", "args": ["--flag={text}"]}],
        environment={"GREETING": "hello {text}"},
        parameters={
            "text": {"type": "string", "allow_control_characters": True},
            "flag": {"type": "boolean", "default": True},
        },
        working_directory="/srv",
        user="backup",
        limits={"memory_max": "64M", "cpu_quota": "50%", "tasks_max": 8,
                "log_rate_limit_burst": 5},
        retry={"max_attempts": 3, "on_exit_codes": [1, 2]},
        concurrency=2,
        sandbox={"profile": "strict", "read_write_paths": ["/srv/out"],
                 "overrides": {"MemoryDenyWriteExecute": False}},
        directories={"state": ["s"], "cache": ["c"], "logs": ["l"]},
    )  # fmt: skip
    values = validate_params(d, {"text": text})
    for limit in (None, (30.0, 10_000)):
        made = make_plan(d, values, log_rate_limit=limit).model_dump_json()
        assert plan_json(d, values, log_rate_limit=limit) == made
    assert plan_json(definition(), {}) == make_plan(definition(), {}).model_dump_json()


def test_each_command_is_checked_as_a_whole_template_is() -> None:
    d = definition(argv=["{text}"], parameters={"text": {"type": "string"}})
    # A NUL cannot pass validate_params; make_plan refuses it all the same.
    with pytest.raises(ValueError, match="NUL"):
        make_plan(d, {"text": "a\x00b"})


def test_log_rate_limits_come_from_the_definition_else_from_the_daemon() -> None:
    defaults = (30.0, 10_000)
    plan = make_plan(definition(), {}, log_rate_limit=defaults)
    assert (plan.log_rate_limit_interval_usec, plan.log_rate_limit_burst) == (30_000_000, 10_000)
    chatty = definition(limits={"log_rate_limit_burst": 100})
    plan = make_plan(chatty, {}, log_rate_limit=defaults)
    assert (plan.log_rate_limit_interval_usec, plan.log_rate_limit_burst) == (30_000_000, 100)
    # A plan made without them (stored by an older automd) leaves journald's own.
    assert make_plan(definition(), {}).log_rate_limit_burst is None


@pytest.mark.parametrize("name", ["/var/lib/x", "..", "a/../b", "a//b", "", "a b", ".hidden"])
def test_a_managed_directory_is_a_plain_relative_name(tmp_path: Path, name: str) -> None:
    (tmp_path / "d.toml").write_text(
        f'executable = "/bin/true"\n[directories]\nstate = [{json.dumps(name)}]\n'
    )
    result = load_definitions(tmp_path)
    assert "d" not in result.definitions
    (error,) = result.errors
    assert "relative directory name" in str(error)


def test_managed_directories_reach_the_plan(tmp_path: Path) -> None:
    (tmp_path / "d.toml").write_text(
        'executable = "/bin/true"\n[directories]\nstate = ["d"]\ncache = ["d/c"]\nlogs = ["d"]\n'
    )
    definition = load_definitions(tmp_path).definitions["d"]
    plan = make_plan(definition, validate_params(definition, {}))
    assert (plan.state_directories, plan.cache_directories, plan.logs_directories) == (
        ("d",),
        ("d/c",),
        ("d",),
    )


def test_every_problem_of_a_file_is_reported_in_its_own_terms(tmp_path: Path) -> None:
    """Issue 16.9: a misspelt key was "executable: Field required (and 1 more error)", and a
    bad parameter type read "Input tag 'int' found using 'type' does not match...".
    Checked: fails on the code before (one error per file, pydantic's wording)."""
    (tmp_path / "x.toml").write_text(
        'exectuable = "/bin/true"\nargv = [1]\n'
        '[parameters.n]\ntype = "int"\n'
        '[parameters.m]\ntype = "integer"\nmaximun = 3\n'
        "[limits]\nmemroy_max = 1\n"
    )
    result = load_definitions(tmp_path)
    assert result.definitions == {}
    assert result.failed_files == 1
    found = {e.key: e.reason for e in result.errors}
    assert found == {
        "executable": "required, and missing",
        "argv.0": 'an argument is a string, or { if = "param", args = [...] }',
        "parameters.n": (
            "type 'int' is not a parameter type (one of: string, integer, boolean, path)"
        ),
        "parameters.m.maximun": "unknown key; did you mean 'maximum'?",
        "limits.memroy_max": "unknown key; did you mean 'memory_max'?",
        "exectuable": "unknown key; did you mean 'executable'?",
    }


def test_a_definition_picks_a_profile_and_changes_single_options() -> None:
    plan = make_plan(definition(sandbox={"profile": "minimal", "protect_system": "full"}), {})
    assert plan.sandbox["ProtectSystem"] == "full"  # on top of a profile without it
    assert "PrivateTmp" not in plan.sandbox
    assert plan.sandbox["CapabilityBoundingSet"] == ""
    default = make_plan(definition(), {})
    assert default.sandbox["ProtectHome"] == "tmpfs"  # unset options keep the profile's value
    assert "ProtectKernelTunables" not in default.sandbox


def test_a_root_job_keeps_its_capabilities_and_gets_the_kernel_protections() -> None:
    plan = make_plan(definition(user="root"), {})
    assert "CapabilityBoundingSet" not in plan.sandbox
    assert plan.sandbox["ProtectKernelTunables"] is True
    assert plan.sandbox["ProtectControlGroups"] is True


def test_sandbox_overrides_are_checked_in_unit_file_syntax() -> None:
    d = definition(sandbox={"overrides": {"RestrictAddressFamilies": "AF_UNIX AF_NETLINK"}})
    assert make_plan(d, {}).sandbox["RestrictAddressFamilies"] == "AF_UNIX AF_NETLINK"
    with pytest.raises(ValueError, match="AF_"):
        definition(sandbox={"overrides": {"RestrictAddressFamilies": "netlink"}})
