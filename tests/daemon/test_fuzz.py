"""Property-based fuzzing of the running daemon, and of the argv rendering behind job.submit.

The budget is fixed and hypothesis is seeded from each test function rather than at random
(derandomize); raise the budget with AUTOMD_FUZZ_EXAMPLES (docs/security.md). No job ever
starts on the host (there is no systemd), so the argv-shape invariant is checked where argv is
built, at the unit level.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from automd.api.codes import ErrorCode
from automd.api.methods import METHODS
from automd.definitions.model import ConditionalArgs, Definition
from automd.definitions.render import InvalidJobParameter, render_argv, validate_params
from automd.jobs.plan import make_plan, unit_spec
from automd.systemd.spec import unit_properties
from tests.daemon.harness import DaemonProcess

EXAMPLES = int(os.environ.get("AUTOMD_FUZZ_EXAMPLES", "300"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,  # seeded from the test function, not from a random seed per run
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# Every parameter kind, a conditional argv entry, and fixed elements around the placeholders.
FUZZ_DEFINITION = """
executable = "/usr/bin/printf"
argv = ["%s\\n", "{text}", "--", "{n}", "at={where}", { if = "flag", args = ["--flag", "{text}"] }]

[parameters.text]
type = "string"
max_length = 64

[parameters.n]
type = "integer"
minimum = -5
maximum = 1000
default = 1

[parameters.where]
type = "path"
allowed_prefixes = ["/srv", "/var/tmp"]
default = "/srv/data"

[parameters.flag]
type = "boolean"
required = false
"""
PARAM_NAMES = ("text", "n", "where", "flag")

ALLOWED_STATUSES = {200, 204, 400, 404, 405, 408, 413, 415, 503}
VALID_CODES = {int(code) for code in ErrorCode} - {ErrorCode.INTERNAL_ERROR}


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProcess]:
    daemon = DaemonProcess.with_definitions(
        tmp_path_factory.mktemp("z"),
        {"fuzz": FUZZ_DEFINITION},
        "[server]\nread_timeout_seconds = 2.0\n",
    )
    try:
        daemon.start()
        yield daemon
    finally:
        daemon.close()


# -- a blocking client: hypothesis drives plain functions ------------------------------------


def exchange(path: Path, body: bytes, content_type: str = "application/json") -> tuple[int, bytes]:
    """One request on its own connection (Connection: close); the status and body."""
    head = (
        f"POST /rpc HTTP/1.1\r\nHost: automd\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode()
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(15)
        sock.connect(str(path))
        sock.sendall(head + body)
        data = b""
        while chunk := sock.recv(1 << 16):
            data += chunk
    head_bytes, _, reply = data.partition(b"\r\n\r\n")
    status = int(head_bytes.split(b" ", 2)[1])
    return status, reply


# -- strategies --------------------------------------------------------------------------------

NASTY_TEXT = ["", "\x00", "\ud800", "a\udfffb", "-rf", "--", "/srv/../etc/passwd", "//srv/x",
              "$(id)", "`id`", "${HOME}", "%n%s", "a b", "\n", "\t", "\u202e", "é", "{text}",
              "x" * 65, "x" * 5000]  # fmt: skip
texts = st.one_of(st.text(max_size=30), st.sampled_from(NASTY_TEXT))
numbers = st.one_of(
    st.integers(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([0, -1, 1000, 1001, -5, -6, 2**53, 2**63, 2**64, -(2**63), 10**100]),
    st.floats(allow_nan=False, allow_infinity=False),
)
scalars = st.one_of(st.none(), st.booleans(), numbers, texts)
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(texts, inner, max_size=4)),
    max_leaves=12,
)
param_values = st.one_of(
    scalars,
    st.sampled_from(["/srv/data/a", "/srv", "/var/tmp/x", "/srv/./a/../b", "/etc", "relative"]),
    json_values,
)
job_params = st.dictionaries(st.one_of(st.sampled_from(PARAM_NAMES), texts), param_values,
                             max_size=5)  # fmt: skip
known_param_names = sorted({name for spec in METHODS.values() for name in spec.params.model_fields})
method_params = st.one_of(
    st.fixed_dictionaries(
        {"definition": st.one_of(st.just("fuzz"), texts), "params": job_params},
        optional={"idempotency_key": st.one_of(texts, st.just("k-1"))},
    ),
    st.dictionaries(st.one_of(st.sampled_from(known_param_names), texts), json_values, max_size=4),
    st.lists(json_values, max_size=2),
    json_values,
)
methods = st.one_of(st.sampled_from(sorted(METHODS)), texts)
# A member of every other JSON type than the one it must have: each is checked before use.
non_strings = st.one_of(
    st.none(),
    st.booleans(),
    numbers,
    st.lists(json_values, max_size=4),
    st.dictionaries(texts, json_values, max_size=4),
)
invalid_ids = st.one_of(
    st.booleans(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.lists(json_values, max_size=3),
    st.dictionaries(texts, json_values, max_size=3),
)
unstructured_params = st.one_of(st.none(), st.booleans(), numbers, texts)
ids = st.one_of(st.none(), st.integers(), texts, st.floats(), invalid_ids)


@st.composite
def requests(draw: st.DrawFn) -> dict[str, Any]:
    request: dict[str, Any] = {
        "jsonrpc": draw(st.one_of(st.just("2.0"), st.just("2.0"), scalars)),
        "method": draw(st.one_of(methods, methods, non_strings)),
    }
    if draw(st.booleans()):
        request["params"] = draw(method_params)
    if draw(st.integers(0, 3)):  # mostly with an id
        request["id"] = draw(ids)
    if not draw(st.integers(0, 9)):
        request[draw(texts)] = draw(json_values)
    # A member drawn above may have been dropped again by a colliding junk key; that is fine.
    return request


RAW = object()  # the body is not JSON produced by us


@st.composite
def bodies(draw: st.DrawFn) -> tuple[bytes, Any]:
    """(body, the value it encodes or RAW)."""
    kind = draw(st.sampled_from(["request", "request", "request", "batch", "json", "raw", "cut"]))
    if kind == "request":
        payload: Any = draw(requests())
    elif kind == "batch":
        payload = draw(st.lists(st.one_of(requests(), json_values), max_size=6))
    elif kind == "json":
        payload = draw(json_values)
    elif kind == "raw":
        return draw(st.binary(max_size=200)), RAW
    else:  # a valid request, truncated or with one byte changed
        data = bytearray(json.dumps(draw(requests())).encode())
        index = draw(st.integers(0, len(data) - 1))
        if draw(st.booleans()):
            return bytes(data[:index]), RAW
        data[index] = draw(st.integers(0, 255))
        return bytes(data), RAW
    try:
        return json.dumps(payload, allow_nan=False).encode(), payload
    except ValueError:  # a NaN or infinite float id: Python writes NaN/Infinity, not JSON
        return json.dumps(payload).encode(), RAW


content_types = st.one_of(
    st.just("application/json"),
    st.sampled_from(
        [
            "application/json; charset=utf-8",
            "text/plain",
            "application/json-rpc",
            "",
            "application/JSON",
            "multipart/form-data; boundary=x",
        ]
    ),
)


# -- invariants --------------------------------------------------------------------------------


def _valid_id(value: Any) -> bool:
    return value is None or isinstance(value, str) or type(value) is int


def check_response_object(reply: Any) -> None:
    assert isinstance(reply, dict), reply
    assert reply.get("jsonrpc") == "2.0", reply
    assert ("result" in reply) != ("error" in reply), reply
    assert set(reply) <= {"jsonrpc", "result", "error", "id"}, reply
    assert _valid_id(reply["id"]), reply
    if "error" in reply:
        error = reply["error"]
        assert isinstance(error["message"], str), reply
        assert error["code"] in VALID_CODES, reply  # never -32603: nothing may break inside


def check_single(request: Any, reply: Any) -> None:
    check_response_object(reply)
    if isinstance(request, dict) and "id" in request:
        expected = request["id"] if _valid_id(request["id"]) else None
        assert reply["id"] == expected, (request, reply)
        if not _valid_id(request["id"]):
            assert reply["error"]["code"] == ErrorCode.INVALID_REQUEST
    elif isinstance(request, dict):  # a notification is answered only when it is not one
        assert reply["error"]["code"] == ErrorCode.INVALID_REQUEST, (request, reply)
        assert reply["id"] is None
    else:
        assert reply["id"] is None


def check_exchange(payload: Any, content_type: str, status: int, body: bytes) -> None:
    assert status in ALLOWED_STATUSES, (status, body[:200])
    if status == 204:
        assert body == b""
        return
    if status in (400, 404) and not body.startswith(b"{"):
        return  # the HTTP parser's plain-text 400, or 404: no JSON-RPC applies
    reply = json.loads(body)  # any JSON-RPC body must be valid JSON...
    body.decode("ascii")  # ...and plain ASCII on the wire
    if status != 200:
        check_response_object(reply)
        assert reply["id"] is None
        assert "error" in reply
        return
    if not content_type.split(";", maxsplit=1)[0].strip().lower() == "application/json":
        raise AssertionError(f"{content_type!r} was accepted")
    if payload is RAW:
        if isinstance(reply, list):
            for item in reply:
                check_response_object(item)
        else:
            check_response_object(reply)
    elif isinstance(payload, list) and payload:
        assert isinstance(reply, list), reply
        assert 0 < len(reply) <= len(payload), reply
        sent_ids = [r["id"] for r in payload if isinstance(r, dict) and "id" in r]
        for item in reply:
            check_response_object(item)
            assert item["id"] is None or item["id"] in sent_ids, (item, sent_ids)
    elif isinstance(payload, list):
        assert reply["error"]["code"] == ErrorCode.INVALID_REQUEST  # empty batch
    else:
        check_single(payload, reply)


@FUZZ
@given(body=bodies(), content_type=content_types)
def test_fuzzed_requests_get_well_formed_replies(
    fuzzed: DaemonProcess, body: tuple[bytes, Any], content_type: str
) -> None:
    data, payload = body
    status, reply = exchange(fuzzed.socket_path, data, content_type)
    check_exchange(payload, content_type, status, reply)
    assert fuzzed.proc is not None
    assert fuzzed.proc.poll() is None, "the daemon died"


@FUZZ
@given(params=job_params, key=st.one_of(st.none(), st.sampled_from(["a", "b"])))
def test_fuzzed_job_submits_are_validated_or_queued(
    fuzzed: DaemonProcess, params: dict[str, Any], key: str | None
) -> None:
    request: dict[str, Any] = {"definition": "fuzz", "params": params}
    if key is not None:
        request["idempotency_key"] = key
    status, body = exchange(
        fuzzed.socket_path,
        json.dumps({"jsonrpc": "2.0", "method": "job.submit", "params": request, "id": 7}).encode(),
    )
    assert status == 200
    reply = json.loads(body)
    check_single({"id": 7}, reply)
    if "error" in reply:
        error = reply["error"]
        assert error["code"] in (ErrorCode.INVALID_PARAMS, ErrorCode.IDEMPOTENCY_CONFLICT), error
        if error["code"] == ErrorCode.INVALID_PARAMS:
            assert error["data"]["field"].startswith("params"), error
    else:
        job = reply["result"]["job"]
        assert job["definition"] == "fuzz"
        assert job["state"] == "queued"  # no systemd on the host: it waits
        assert set(job["params"]) <= set(PARAM_NAMES)


VALID_ID = "the-valid-submit"


@st.composite
def mistyped_requests(draw: st.DrawFn) -> tuple[dict[str, Any], Any]:
    """A request with one member of a wrong JSON type (method, id or params), and the id its
    reply must carry (null when the id itself is the wrong member)."""
    request: dict[str, Any] = {
        "jsonrpc": "2.0",
        "method": draw(st.sampled_from(sorted(METHODS))),
        "id": draw(st.one_of(st.none(), st.integers(), texts.filter(lambda t: t != VALID_ID))),
    }
    member = draw(st.sampled_from(["method", "id", "params"]))
    if member == "method":
        request["method"] = draw(non_strings)
    elif member == "id":
        request["id"] = draw(invalid_ids)
    else:
        request["params"] = draw(unstructured_params)
    return request, None if member == "id" else request["id"]


def post_json(fuzzed: DaemonProcess, payload: Any) -> Any:
    status, body = exchange(fuzzed.socket_path, json.dumps(payload, allow_nan=False).encode())
    assert status == 200, (status, body[:300])
    return json.loads(body)


def check_invalid_request(reply: Any, reply_id: Any) -> None:
    assert reply["id"] == reply_id, reply
    assert reply["error"]["code"] == ErrorCode.INVALID_REQUEST, reply
    assert reply["error"]["message"] == "Invalid Request", reply


@FUZZ
@given(mistyped=mistyped_requests(), submit_first=st.booleans())
def test_a_mistyped_member_fails_its_own_element_only(
    fuzzed: DaemonProcess, mistyped: tuple[dict[str, Any], Any], submit_first: bool
) -> None:
    request, reply_id = mistyped
    check_invalid_request(post_json(fuzzed, request), reply_id)
    submit = {"jsonrpc": "2.0", "method": "job.submit", "id": VALID_ID,
              "params": {"definition": "fuzz", "params": {"text": "beside"}}}  # fmt: skip
    replies = post_json(fuzzed, [submit, request] if submit_first else [request, submit])
    assert isinstance(replies, list), replies
    assert len(replies) == 2, replies
    (valid,) = [reply for reply in replies if reply["id"] == VALID_ID]
    (failed,) = [reply for reply in replies if reply is not valid]
    check_invalid_request(failed, reply_id)
    job_id = valid["result"]["job"]["id"]  # the caller learns the id of the job it made
    found = post_json(fuzzed, {"jsonrpc": "2.0", "method": "job.get", "params": {"id": job_id},
                               "id": 1})  # fmt: skip
    assert found["result"]["job"]["params"]["text"] == "beside"
    assert fuzzed.proc is not None
    assert fuzzed.proc.poll() is None, "the daemon died"


def test_state_is_intact_after_fuzzing(fuzzed: DaemonProcess) -> None:
    """Runs after the fuzz tests above (file order): the daemon and its store are fine."""
    assert fuzzed.proc is not None
    assert fuzzed.proc.poll() is None
    status, body = exchange(
        fuzzed.socket_path, b'{"jsonrpc":"2.0","method":"system.health","id":1}'
    )
    assert status == 200
    health = json.loads(body)["result"]
    assert health["checks"]["store"]["ok"] is True
    status, body = exchange(
        fuzzed.socket_path,
        b'{"jsonrpc":"2.0","method":"job.list","params":{"limit":500},"id":2}',
    )
    jobs = json.loads(body)["result"]["jobs"]
    assert all(job["definition"] == "fuzz" and job["state"] == "queued" for job in jobs)
    status, body = exchange(
        fuzzed.socket_path,
        b'{"jsonrpc":"2.0","method":"audit.list","params":{"limit":1000},"id":3}',
    )
    assert status == 200
    assert "result" in json.loads(body)
    database = fuzzed.workdir / "state" / "automd.db"
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    assert "Traceback" not in fuzzed.output()


# -- the argv shape, where argv is built ---------------------------------------------------------

DEFINITION = Definition.model_validate({"name": "fuzz", **tomllib.loads(FUZZ_DEFINITION)})


@FUZZ
@given(raw=job_params)
def test_accepted_params_never_change_the_argv_shape(raw: dict[str, Any]) -> None:
    try:
        values = validate_params(DEFINITION, raw)
    except InvalidJobParameter as exc:
        rejected: InvalidJobParameter | None = exc
    else:
        rejected = None
    if rejected is not None:  # the error names the offending parameter
        field, reason = rejected.field, rejected.reason
        assert field.startswith("params."), field
        assert field.removeprefix("params.") in {*PARAM_NAMES, *raw}, field
        assert reason
        return
    argv = render_argv(DEFINITION, values)
    flag = values.get("flag") is True
    plain = [entry for entry in DEFINITION.argv if isinstance(entry, str)]
    conditional = [entry for entry in DEFINITION.argv if isinstance(entry, ConditionalArgs)]
    assert len(argv) == 1 + len(plain) + (len(conditional[0].args) if flag else 0)
    # Fixed elements unchanged; each placeholder element is exactly its value's text.
    assert argv[:6] == (
        "/usr/bin/printf", "%s\n", str(values["text"]), "--", str(values["n"]),
        f"at={values['where']}",
    )  # fmt: skip
    if flag:
        assert argv[6:] == ("--flag", values["text"])
    assert str(values["where"]).startswith(("/srv", "/var/tmp"))
    # ...and the transient unit executes exactly that argv, byte for byte.
    spec = unit_spec(make_plan(DEFINITION, values), definition="fuzz",
                     job_id="0" * 26, attempt=1)  # fmt: skip
    assert spec.argv == argv
    exec_start = dict(unit_properties(spec))["ExecStartEx"].value
    assert exec_start == [[argv[0], list(argv), ["no-env-expand"]]]
