"""The automd.automd collection without hosts: its docs render, ansible-test's offline sanity
tests pass, and the module_utils' parameter check (tests/integration/test_ansible.py runs the
modules against real hosts)."""

from __future__ import annotations

import importlib.util
import os
import subprocess
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ANSIBLE = Path(__file__).resolve().parents[2] / "ansible"
COLLECTION = ANSIBLE / "ansible_collections" / "automd" / "automd"

#: ansible-test 2.14's sanity tests that run from the local environment. The others (ansible-doc,
#: import, pep8, pylint, runtime-metadata, validate-modules, yamllint) each build a venv whose pip
#: ansible-test downloads from ci-files.testing.ansible.com, which this network cannot reach
#: (docs/fleet.md); ansible-doc itself is run below.
OFFLINE_SANITY = (
    "action-plugin-docs", "changelog", "compile", "empty-init", "future-import-boilerplate",
    "ignores", "line-endings", "metaclass-boilerplate", "no-assert", "no-basestring",
    "no-dict-iteritems", "no-dict-iterkeys", "no-dict-itervalues", "no-get-exception",
    "no-illegal-filenames", "no-main-display", "no-smart-quotes", "no-unicode-literals",
    "pslint", "replace-urlopen", "shebang", "shellcheck", "symlinks", "use-argspec-type-path",
    "use-compat-six",
)  # fmt: skip


def _environ() -> dict[str, str]:
    keep = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG")}
    return {**keep, "ANSIBLE_COLLECTIONS_PATH": str(ANSIBLE), "ANSIBLE_NOCOLOR": "1"}


@pytest.mark.parametrize("module", ["automd.automd.job", "automd.automd.job_info"])
def test_ansible_doc_renders_the_modules(module: str) -> None:
    shown = subprocess.run(
        ["ansible-doc", module], capture_output=True, text=True, env=_environ(), timeout=120,
        check=False,
    )  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    assert "EXAMPLES:" in shown.stdout
    assert "RETURN VALUES:" in shown.stdout


def test_ansible_test_sanity_offline() -> None:
    tests = [arg for name in OFFLINE_SANITY for arg in ("--test", name)]
    done = subprocess.run(
        ["ansible-test", "sanity", "--local", "--python", "3.11", *tests],
        cwd=COLLECTION, capture_output=True, text=True, env=_environ(), timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("Running sanity test") == len(OFFLINE_SANITY)


def _module_utils() -> ModuleType:
    path = COLLECTION / "plugins" / "module_utils" / "automd_rpc.py"
    spec = importlib.util.spec_from_file_location("automd_rpc", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["source"],
    "properties": {
        "source": {"type": "string", "pattern": "^/srv", "maxLength": 10},
        "code": {"type": "integer", "minimum": 0, "maximum": 255},
        "verbose": {"type": "boolean"},
        "mode": {"type": "string", "enum": ["fast", "full"]},
    },
}


@pytest.mark.parametrize(
    ("params", "problems"),
    [
        ({"source": "/srv/www"}, []),
        ({}, ["source: required"]),
        ({"source": "/etc"}, ["source: must match ^/srv"]),
        ({"source": "/srv/a-long-name"}, ["source: at most 10 characters"]),
        ({"source": "/srv", "code": 256}, ["code: at most 255"]),
        ({"source": "/srv", "code": True}, ["code: must be of type integer"]),
        ({"source": "/srv", "code": "3"}, ["code: must be of type integer"]),
        ({"source": "/srv", "verbose": "yes"}, ["verbose: must be of type boolean"]),
        ({"source": "/srv", "mode": "slow"}, ["mode: must be one of fast, full"]),
        ({"source": "/srv", "other": 1}, ["other: not a parameter of this definition"]),
    ],
)
def test_check_mode_finds_what_automd_would_refuse(
    params: dict[str, Any], problems: list[str]
) -> None:
    assert _module_utils().schema_problems(SCHEMA, params) == problems


#: What ansible-test's validate-modules would check first (it cannot run here): each module's
#: DOCUMENTATION options and its argument_spec agree, and its YAML parses. Run by Debian's
#: python3, which has ansible-core; the venv does not.
_DOCS_MATCH_SPEC = """
import importlib, sys, yaml
sys.path.insert(0, sys.argv[1])
captured = {}
class Capture:
    def __init__(self, **kwargs):
        captured.update(kwargs)
        raise SystemExit
problems = []
for name in ("job", "job_info"):
    module = importlib.import_module("ansible_collections.automd.automd.plugins.modules." + name)
    module.AnsibleModule = Capture
    captured.clear()
    try:
        module.main()
    except SystemExit:
        pass
    spec, options = captured["argument_spec"], yaml.safe_load(module.DOCUMENTATION)["options"]
    yaml.safe_load(module.EXAMPLES)
    yaml.safe_load(module.RETURN)
    for option in sorted(set(spec) | set(options)):
        documented, accepted = options.get(option, {}), spec.get(option, {})
        for key in ("type", "default", "required", "choices", "elements"):
            if documented.get(key) != accepted.get(key) and key != "required" or (
                key == "required" and bool(documented.get(key)) != bool(accepted.get(key))
            ):
                problems.append((name, option, key, documented.get(key), accepted.get(key)))
print(problems)
"""


def test_module_docs_match_their_argument_specs() -> None:
    done = subprocess.run(
        ["/usr/bin/python3", "-c", _DOCS_MATCH_SPEC, str(ANSIBLE)], capture_output=True,
        text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
