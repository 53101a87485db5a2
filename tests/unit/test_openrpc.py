"""The published OpenRPC document (automd/api/openrpc.py) against its meta-schema, METHODS and
the error codes, and the guard that makes a schema change come with an API_VERSION bump."""

# openrpc_meta_schema.json is the released OpenRPC 1.2.6 meta-schema (openrpc enum 1.0.0-rc0 to
# 1.2.6): the string constant MetaSchemaJSON in meta_schema.go of github.com/open-rpc/meta-schema
# at commit 235fca582906cd6bfb6d89c3aa364d7ab49f0342 (the Go package's copy of the built
# schema.json), only re-indented. Not on PyPI; taken from a stored copy of that repository.

from __future__ import annotations

import copy
import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import referencing.jsonschema
from jsonschema import Draft7Validator, Draft202012Validator  # type: ignore[import-untyped]
from pydantic import JsonValue, ValidationError
from referencing import Registry

from automd import errors
from automd.api import openrpc
from automd.api.codes import API_VERSION, ErrorCode
from automd.api.methods import METHODS, MethodSpec, Permission
from automd.api.model import NoParams, Result
from automd.api.openrpc import build_document, lock_contents, schema_fingerprint

HERE = Path(__file__).parent
LOCK = HERE / "api_schema.lock.json"
REFRESH = "run `.venv/bin/python -m automd.api.openrpc --update-lock` and commit " + str(
    LOCK.relative_to(HERE.parents[1])
)

# The meta-schema $refs draft-07 by its https URL; jsonschema bundles that schema (under http).
# Registering it keeps the test offline: an unknown $ref fails instead of being fetched.
_DRAFT7 = referencing.jsonschema.DRAFT7.create_resource(Draft7Validator.META_SCHEMA)
_REGISTRY: Registry[Any] = Registry().with_resource(
    "https://json-schema.org/draft-07/schema", _DRAFT7
)


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    return build_document()


@pytest.fixture(scope="module")
def meta() -> Any:
    schema = json.loads((HERE / "openrpc_meta_schema.json").read_text())
    Draft7Validator.check_schema(schema)
    return Draft7Validator(schema, registry=_REGISTRY)


def _problems(validator: Any, instance: Any) -> list[str]:
    found = sorted(validator.iter_errors(instance), key=lambda e: list(e.absolute_path))
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message[:200]}" for e in found]


def _by_name(document: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    return {m["name"]: m for m in document["methods"]}


# --- (a) valid OpenRPC, valid JSON Schemas ----------------------------------------------------


def test_document_validates_against_the_openrpc_meta_schema(
    document: dict[str, Any], meta: Any
) -> None:
    assert document["openrpc"] in meta.schema["properties"]["openrpc"]["enum"]
    assert _problems(meta, document) == []


def test_the_meta_schema_rejects_what_it_should(document: dict[str, Any], meta: Any) -> None:
    # Proof the validation above has teeth: broken documents are caught, down to a param's
    # schema (which goes through the draft-07 $ref).
    bad = copy.deepcopy(document)
    del bad["methods"][0]["result"]
    bad["methods"][1]["paramStructure"] = "by-keyword"
    bad["components"]["errors"]["JOB_NOT_FOUND"]["code"] = "1002"
    with_params = next(m for m in bad["methods"] if m["params"])
    with_params["params"][0]["schema"] = {"type": 5}
    assert len(_problems(meta, bad)) == 4


def test_every_schema_is_a_valid_json_schema(document: dict[str, Any]) -> None:
    for method in document["methods"]:
        for param in method["params"]:
            Draft202012Validator.check_schema(param["schema"])
        Draft202012Validator.check_schema(method["result"]["schema"])
    for schema in document["components"]["schemas"].values():
        Draft202012Validator.check_schema(schema)


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        if isinstance(node.get("$ref"), str):
            yield node["$ref"]
        for value in node.values():
            yield from _refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _refs(value)


def test_every_ref_points_into_the_document(document: dict[str, Any]) -> None:
    refs = set(_refs(document))
    assert refs, "the document should share definitions through $ref"
    for ref in refs:
        assert ref.startswith("#/components/"), ref
        _, section, name = ref.removeprefix("#/").split("/")
        assert name in document["components"][section], f"{ref} is not defined"


# --- (b) the contract: every method and parameter ---------------------------------------------


def test_methods_are_sorted_and_complete(document: dict[str, Any]) -> None:
    assert [m["name"] for m in document["methods"]] == sorted(METHODS)


@pytest.mark.parametrize("name", sorted(METHODS))
def test_method_has_every_param_and_its_result(name: str, document: dict[str, Any]) -> None:
    spec, method = METHODS[name], _by_name(document)[name]
    fields = spec.params.model_fields
    assert method["summary"] == spec.summary
    assert method["paramStructure"] == "by-name"
    assert [p["name"] for p in method["params"]] == list(fields)
    assert {p["name"]: p["required"] for p in method["params"]} == {
        field: info.is_required() for field, info in fields.items()
    }
    assert method["x-permission"] == spec.permission.value
    assert method["x-mutating"] == spec.mutating
    ref = method["result"]["schema"]["$ref"]
    assert document["components"]["schemas"][ref.split("/")[-1]]["title"] == spec.result.__name__


def _params_schema(document: Mapping[str, Any], name: str) -> dict[str, Any]:
    """One object schema from a method's params descriptors, as a client would assemble it."""
    params = _by_name(document)[name]["params"]
    return {
        "type": "object",
        "properties": {p["name"]: p["schema"] for p in params},
        "required": [p["name"] for p in params if p["required"]],
        # Where the descriptors' "#/components/schemas/..." $refs resolve.
        "components": document["components"],
    }


@pytest.mark.parametrize(
    ("name", "params", "valid"),
    [
        ("job.list", {}, True),
        ("job.list", {"limit": 500, "state": ["queued", "running"]}, True),
        ("job.list", {"limit": 501}, False),
        ("job.list", {"limit": "5"}, False),
        ("job.list", {"state": ["paused"]}, False),
        ("job.submit", {"definition": "backup-db", "params": {"a": [1, None, {"b": 2.5}]}}, True),
        ("job.submit", {"definition": "Backup"}, False),
        ("job.submit", {"params": {}}, False),
        ("job.submit", {"definition": "x", "idempotency_key": "has space"}, False),
        ("job.get", {"id": "01jd3k5x2q8v7n4m6p9r0s1t2u"}, True),
        ("job.get", {"id": "01JD3K5X2Q8V7N4M6P9R0S1T2U"}, False),
        ("job.get", {}, False),
        ("audit.list", {"uid": 0, "outcome": "denied", "cursor": 2**63 - 1}, True),
        ("audit.list", {"outcome": "maybe"}, False),
        ("audit.list", {"cursor": 2**63}, False),
        ("definition.get", {"name": "a" * 65}, False),
    ],
)
def test_published_params_accept_what_automd_accepts(
    name: str, params: dict[str, Any], valid: bool, document: dict[str, Any]
) -> None:
    try:
        METHODS[name].params.model_validate(params)
        pydantic_ok = True
    except ValidationError:
        pydantic_ok = False
    schema_ok = Draft202012Validator(_params_schema(document, name)).is_valid(params)
    assert (pydantic_ok, schema_ok) == (valid, valid)


# --- errors -----------------------------------------------------------------------------------


def test_every_error_code_is_published(document: dict[str, Any]) -> None:
    published = {e["code"] for e in document["components"]["errors"].values()}
    missing = [code.name for code in ErrorCode if code not in published]
    assert not missing, (
        f"{missing} appear in no method's errors: list them in _METHOD_ERRORS (or "
        "_COMMON_ERRORS) in automd/api/openrpc.py"
    )


def test_error_components_match_the_codes_and_the_wire_messages(document: dict[str, Any]) -> None:
    def subclasses(cls: type[errors.AutomdError]) -> Iterator[type[errors.AutomdError]]:
        for sub in cls.__subclasses__():
            yield sub
            yield from subclasses(sub)

    classes: list[type[errors.AutomdError]] = [errors.AutomdError, *subclasses(errors.AutomdError)]
    wire = {(int(c.code), c.message) for c in classes}
    for key, error in document["components"]["errors"].items():
        assert ErrorCode[key] == error["code"]
        assert (error["code"], error["message"]) in wire, f"{key}: no error class says that"


def test_every_method_lists_the_common_errors(document: dict[str, Any]) -> None:
    assert set(openrpc._METHOD_ERRORS) <= set(METHODS), "errors mapped for an unknown method"
    common = {f"#/components/errors/{code.name}" for code in openrpc._COMMON_ERRORS}
    assert "#/components/errors/PERMISSION_DENIED" in common
    for method in document["methods"]:
        listed = [e["$ref"] for e in method["errors"]]
        assert len(listed) == len(set(listed))
        assert common <= set(listed), method["name"]
    assert {"#/components/errors/JOB_NOT_FOUND"} <= {
        e["$ref"] for e in _by_name(document)["job.get"]["errors"]
    }


# --- (d) deterministic, plain JSON ------------------------------------------------------------


def test_document_is_deterministic_json(document: dict[str, Any]) -> None:
    text = json.dumps(document, allow_nan=False)
    assert json.loads(text) == document
    # Independent of METHODS' order and of earlier builds.
    assert json.dumps(build_document(dict(reversed(METHODS.items())))) == text
    assert json.dumps(build_document()) == text


class _Discovered(Result):
    """Stands in for rpc.discover's result model (the other methods' models are unaffected)."""

    document: dict[str, JsonValue]


def test_any_methods_entry_gets_a_valid_document(meta: Any) -> None:
    extra = MethodSpec("rpc.discover", NoParams, _Discovered, "This document.", Permission.READ)
    document = build_document({**METHODS, "rpc.discover": extra})
    assert _problems(meta, document) == []
    method = _by_name(document)["rpc.discover"]
    assert method["params"] == []
    assert method["result"]["schema"] == {"$ref": "#/components/schemas/_Discovered"}
    assert len(method["errors"]) == len(openrpc._COMMON_ERRORS)


# --- (c) a schema change needs an API_VERSION bump --------------------------------------------


def lock_problem(lock: Mapping[str, str], api_version: str, sha256: str) -> str | None:
    if lock["api_version"] != api_version:
        return (
            f"API_VERSION is {api_version} but {LOCK.name} is for {lock['api_version']}: "
            f"refresh the lock: {REFRESH}"
        )
    if lock["sha256"] != sha256:
        return (
            "the published API schema changed: bump API_VERSION in automd/api/codes.py "
            "(docs/api.md, compatibility policy: additions bump MINOR, removals and changes "
            f"MAJOR; update the version docs/api.md states too), then {REFRESH}"
        )
    return None


def test_schema_changes_come_with_an_api_version_bump(document: dict[str, Any]) -> None:
    problem = lock_problem(json.loads(LOCK.read_text()), API_VERSION, schema_fingerprint(document))
    assert problem is None, problem


@pytest.mark.parametrize(
    ("api_version", "sha256", "expected"),
    [
        ("0.1.0", "aa", None),
        ("0.1.0", "bb", "bump API_VERSION"),
        ("0.2.0", "bb", "refresh the lock"),
        ("0.2.0", "aa", "refresh the lock"),
    ],
)
def test_lock_problem(api_version: str, sha256: str, expected: str | None) -> None:
    problem = lock_problem({"api_version": "0.1.0", "sha256": "aa"}, api_version, sha256)
    assert problem is None if expected is None else expected in (problem or "")


def test_fingerprint_ignores_only_the_version(document: dict[str, Any]) -> None:
    bumped = copy.deepcopy(document)
    bumped["info"]["version"] = "99.0.0"
    assert schema_fingerprint(bumped) == schema_fingerprint(document)
    bumped["methods"][0]["summary"] += "!"
    assert schema_fingerprint(bumped) != schema_fingerprint(document)


def test_update_lock_writes_the_file_this_test_reads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert openrpc.LOCK_PATH == LOCK
    monkeypatch.setattr(openrpc, "LOCK_PATH", tmp_path / "lock.json")
    assert openrpc.main(["--update-lock"]) == 0
    assert json.loads((tmp_path / "lock.json").read_text()) == lock_contents(build_document())
    assert openrpc.main(["--bogus"]) == 2
    capsys.readouterr()
    assert openrpc.main([]) == 0
    assert json.loads(capsys.readouterr().out) == build_document()
