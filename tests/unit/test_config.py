"""Config loading: defaults, errors naming file/key/reason, and documentation of every setting."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from automd.config import (
    Config,
    JobsSettings,
    LogLevel,
    iter_settings,
    load_config,
    reloaded,
    restart_only,
    starts_in_flight,
)
from automd.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "automd.toml"
    path.write_text(text)
    return path


def test_missing_default_file_means_all_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("automd.config.DEFAULT_CONFIG_PATH", Path("/nonexistent/automd.toml"))
    config = load_config(None)
    assert config == Config()
    assert config.server.max_body_bytes == 1024 * 1024
    assert config.state.directory == Path("/var/lib/automd")


def test_explicit_missing_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="file not found") as info:
        load_config(tmp_path / "nope.toml")
    assert info.value.file == str(tmp_path / "nope.toml")


def test_values_are_read(tmp_path: Path) -> None:
    config = load_config(
        write(tmp_path, '[server]\nmax_body_bytes = 2048\n[log]\nlevel = "debug"\n')
    )
    assert config.server.max_body_bytes == 2048
    assert config.log.level is LogLevel.DEBUG
    assert config.server.max_batch_size == 100


@pytest.mark.parametrize(
    ("text", "key", "reason"),
    [
        ("[server]\nmax_body_bytes = 'big'\n", "server.max_body_bytes", "valid integer"),
        ("[server]\nmax_body_bytes = 10\n", "server.max_body_bytes", "greater than or equal"),
        ("[server]\nbogus = 1\n", "server.bogus", "unknown setting"),
        ("[nosuch]\n", "nosuch", "unknown setting"),
        ('[log]\nlevel = "loud"\n', "log.level", "'debug', 'info', 'warning' or 'error'"),
        ("[server]\nread_timeout_seconds = -1\n", "server.read_timeout_seconds", "greater than"),
        ("server = 3\n", "server", "valid dictionary"),
    ],
)
def test_bad_value_names_file_key_and_reason(
    tmp_path: Path, text: str, key: str, reason: str
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.file == str(path)
    assert info.value.key == key
    assert reason in info.value.reason
    assert str(info.value).startswith(f"{path}: {key}: ")


def test_several_errors_are_counted(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"and 1 more error\)"):
        load_config(write(tmp_path, "[server]\nbogus = 1\nmax_batch_size = 0\n"))


def test_invalid_toml_names_the_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"invalid TOML: .*line 2") as info:
        load_config(write(tmp_path, "[server]\nmax_body_bytes = = 3\n"))
    assert info.value.key is None


def test_non_utf8_file(tmp_path: Path) -> None:
    path = tmp_path / "automd.toml"
    path.write_bytes(b"[server]\n# \xff\n")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_config(path)


def test_config_is_frozen() -> None:
    with pytest.raises(ValueError, match="frozen"):
        Config().server.max_body_bytes = 5  # type: ignore[misc]


def test_shipped_example_is_valid_and_all_defaults() -> None:
    assert load_config(ROOT / "etc/automd/automd.toml") == Config()


def test_example_with_every_setting_uncommented_is_valid_and_default(tmp_path: Path) -> None:
    text = (ROOT / "etc/automd/automd.toml").read_text()
    uncommented = re.sub(r"^#(\w+ = )", r"\1", text, flags=re.MULTILINE)
    assert load_config(write(tmp_path, uncommented)) == Config()


@pytest.mark.parametrize(("key", "default"), [(k, d) for k, d, _ in iter_settings()])
def test_every_setting_is_documented(key: str, default: object) -> None:
    docs = (ROOT / "docs/config.md").read_text()
    row = re.search(rf"^\| `{re.escape(key)}` \| `([^`]*)` \| (yes|restart) \| .+ \|$", docs, re.M)
    assert row, f"{key} is missing from docs/config.md"
    documented = row.group(1)
    if isinstance(default, bool):
        expected = "true" if default else "false"  # as written in TOML
    elif isinstance(default, (str, Path)):
        expected = f'"{default}"'
    else:
        expected = str(default)
    assert documented == expected, f"{key}: docs say {documented}, code says {expected}"
    section_name, name = key.split(".")
    declared = restart_only(type(getattr(Config(), section_name)), name)
    assert (row.group(2) == "restart") == declared, f"{key}: docs and code disagree on reload"
    section, name = key.split(".")
    example = (ROOT / "etc/automd/automd.toml").read_text()
    assert re.search(rf"^\[{section}\]$(?:.|\n)*?^#{name} = ", example, re.M), (
        f"{key} is missing from etc/automd/automd.toml"
    )


def test_every_setting_has_a_description() -> None:
    for key, _default, description in iter_settings():
        assert description, f"{key} has no description"


def test_a_reload_applies_exactly_the_settings_declared_reloadable(tmp_path: Path) -> None:
    running = Config()
    loaded = load_config(
        write(
            tmp_path,
            '[jobs]\nmax_running = 3\n[state]\ndirectory = "/elsewhere"\n'
            "[access]\npolkit = false\n[server]\nidle_timeout_seconds = 5\n",
        )
    )
    applied, waiting = reloaded(running, loaded)
    assert applied.jobs.max_running == 3
    assert applied.state.directory == running.state.directory
    assert applied.access.polkit is True
    assert applied.server.idle_timeout_seconds == running.server.idle_timeout_seconds
    assert sorted(waiting) == ["access.polkit", "server.idle_timeout_seconds", "state.directory"]
    assert reloaded(applied, applied) == (applied, [])


def test_starts_in_flight_follow_the_cpus_unless_set() -> None:
    cpus = len(os.sched_getaffinity(0))
    assert starts_in_flight(JobsSettings()) == min(128, max(2, 2 * cpus))
    assert starts_in_flight(JobsSettings(max_starting=3)) == 3
