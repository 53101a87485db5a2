"""JSON-RPC 2.0 semantics of the Dispatcher, without any transport."""

from __future__ import annotations

import json
import logging
import typing
from collections.abc import AsyncGenerator
from typing import Any

import pytest
from pydantic import BaseModel, Field, ValidationError

from automd.api.codes import ErrorCode
from automd.api.methods import METHODS as METHODS_OF_API
from automd.api.methods import MethodSpec, Permission
from automd.api.model import NoParams, Params, Result
from automd.errors import AutomdError, ParseError
from automd.metrics import Metrics
from automd.peer import PeerCredentials
from automd.rpc.context import CallContext
from automd.rpc.protocol import Dispatcher, Handler, ResultStream, StreamReply, decode_body, encode


class EchoParams(Params):
    text: str = Field(max_length=10)
    times: int = Field(1, ge=1, le=3)


class EchoResult(Result):
    text: str


class NotFoundError(AutomdError):
    code = ErrorCode.SERVER_BUSY
    message = "thing not found"


calls: list[str] = []

METHODS = {
    "t.echo": MethodSpec("t.echo", EchoParams, EchoResult, "echo", Permission.READ),
    "t.boom": MethodSpec(
        "t.boom", NoParams, EchoResult, "raises an unexpected exception", Permission.READ
    ),
    "t.fail": MethodSpec("t.fail", NoParams, EchoResult, "raises an AutomdError", Permission.READ),
    "t.whoami": MethodSpec("t.whoami", NoParams, EchoResult, "peer uid", Permission.READ),
    "t.count": MethodSpec("t.count", EchoParams, EchoResult, "streams", Permission.READ),
}


async def echo(params: EchoParams, ctx: CallContext) -> BaseModel:
    calls.append(params.text)
    return EchoResult(text=params.text * params.times)


async def boom(params: NoParams, ctx: CallContext) -> BaseModel:
    raise RuntimeError("secret detail /etc/shadow")


async def fail(params: NoParams, ctx: CallContext) -> BaseModel:
    raise NotFoundError(data={"id": "x"})


async def whoami(params: NoParams, ctx: CallContext) -> BaseModel:
    assert ctx.peer is not None
    return EchoResult(text=str(ctx.peer.uid))


async def count(params: EchoParams, ctx: CallContext) -> BaseModel | ResultStream:
    """Streams `times` parts when it may; text "fail" fails after the first part."""
    if not ctx.streaming:
        return EchoResult(text="not streamed")

    async def parts() -> AsyncGenerator[BaseModel, None]:
        try:
            for n in range(params.times):
                if n == 1 and params.text == "fail":
                    raise NotFoundError(data={"after": n})
                yield EchoResult(text=f"{params.text} {n}")
        finally:
            calls.append("closed")

    return ResultStream("t.count.part", parts(), lambda: EchoResult(text="done"))


HANDLERS: dict[str, Handler] = {
    "t.echo": echo, "t.boom": boom, "t.fail": fail, "t.whoami": whoami, "t.count": count,
}  # fmt: skip
CTX = CallContext(peer=PeerCredentials(pid=42, uid=1000, gid=1000))


class OpenDoor:
    """Admits every call and records nothing: these tests are about JSON-RPC, not access
    (tests/unit/test_guard.py is)."""

    async def admit(self, spec: MethodSpec, ctx: CallContext, raw_params: Any) -> CallContext:
        return ctx

    async def settle(
        self, ctx: CallContext, params: Params | None, error: AutomdError | None
    ) -> None:
        raise AssertionError("no call here is recorded")


OPEN = OpenDoor()


@pytest.fixture
def dispatcher() -> Dispatcher:
    calls.clear()
    return Dispatcher(METHODS, HANDLERS, guard=OPEN, max_batch_size=5)


async def rpc(dispatcher: Dispatcher, payload: Any) -> Any:
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    reply = await dispatcher.handle(body, CTX)
    assert not isinstance(reply, StreamReply)
    return None if reply is None else json.loads(reply)


def req(method: str, params: Any = None, id: Any = 1) -> dict[str, Any]:
    request: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
    if params is not None:
        request["params"] = params
    if id is not ...:
        request["id"] = id
    return request


async def test_call_returns_result_with_same_id(dispatcher: Dispatcher) -> None:
    assert await rpc(dispatcher, req("t.echo", {"text": "ab", "times": 2}, id="x-1")) == {
        "jsonrpc": "2.0",
        "result": {"text": "abab"},
        "id": "x-1",
    }


async def test_peer_credentials_reach_handler(dispatcher: Dispatcher) -> None:
    assert (await rpc(dispatcher, req("t.whoami")))["result"] == {"text": "1000"}


@pytest.mark.parametrize("request_id", [0, -7, "abc", None, 2**53])
async def test_valid_ids_are_echoed(dispatcher: Dispatcher, request_id: Any) -> None:
    reply = await rpc(dispatcher, req("t.echo", {"text": "a"}, id=request_id))
    assert reply["id"] == request_id
    assert reply["result"] == {"text": "a"}


@pytest.mark.parametrize("bad_id", [1.5, True, [1], {"a": 1}])
async def test_invalid_id_is_invalid_request_with_null_id(
    dispatcher: Dispatcher, bad_id: Any
) -> None:
    reply = await rpc(dispatcher, req("t.echo", {"text": "a"}, id=bad_id))
    assert reply["error"]["code"] == -32600
    assert reply["id"] is None
    assert calls == []


async def test_notification_runs_and_gets_no_reply(dispatcher: Dispatcher) -> None:
    assert await rpc(dispatcher, req("t.echo", {"text": "n"}, id=...)) is None
    assert calls == ["n"]


async def test_failing_or_unknown_notifications_get_no_reply(dispatcher: Dispatcher) -> None:
    assert await rpc(dispatcher, req("t.fail", id=...)) is None
    assert await rpc(dispatcher, req("nope", id=...)) is None
    assert await rpc(dispatcher, req("t.echo", {"bad": 1}, id=...)) is None


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"{", "Expecting property name"),
        (b'{"jsonrpc": "2.0", "method": "t.echo", "id": 1', "Expecting"),
        (b"", "Expecting value"),
        (b"\xff\xfe{}", "not valid UTF-8"),
        (b'{"jsonrpc":"2.0","method":"t.echo","params":{"text":NaN},"id":1}', "NaN"),
        (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
    ],
)
async def test_parse_error(dispatcher: Dispatcher, body: bytes, reason: str) -> None:
    reply = await rpc(dispatcher, body)
    assert reply["error"]["code"] == -32700
    assert reason in reply["error"]["data"]
    assert reply["id"] is None


@pytest.mark.parametrize(
    ("request_", "data"),
    [
        ({"method": "t.echo", "id": 1}, '"jsonrpc" must be exactly "2.0"'),
        ({"jsonrpc": "1.0", "method": "t.echo", "id": 1}, '"jsonrpc" must be exactly "2.0"'),
        ({"jsonrpc": "2.0", "id": 1}, '"method" must be a string'),
        ({"jsonrpc": "2.0", "method": 5, "id": 1}, '"method" must be a string'),
        ({"jsonrpc": "2.0", "method": "t.echo", "params": "x", "id": 1}, '"params" must be'),
        ({"jsonrpc": "2.0", "method": "t.echo", "params": 3, "id": 1}, '"params" must be'),
        ({"jsonrpc": "2.0", "method": "t.echo", "id": 1, "extra": 1}, "unknown request member"),
    ],
)
async def test_invalid_request_echoes_valid_id(
    dispatcher: Dispatcher, request_: dict[str, Any], data: str
) -> None:
    reply = await rpc(dispatcher, request_)
    assert reply["error"]["code"] == -32600
    assert data in reply["error"]["data"]
    assert reply["id"] == 1


@pytest.mark.parametrize("payload", [1, "x", None, True])
async def test_non_object_request_is_invalid(dispatcher: Dispatcher, payload: Any) -> None:
    reply = await rpc(dispatcher, payload)
    assert reply == {
        "jsonrpc": "2.0",
        "error": {
            "code": -32600,
            "message": "Invalid Request",
            "data": "request must be a JSON object",
        },
        "id": None,
    }


async def test_unknown_method(dispatcher: Dispatcher) -> None:
    reply = await rpc(dispatcher, req("job.nope", id=9))
    assert reply["error"] == {
        "code": -32601,
        "message": "Method not found",
        "data": {"method": "job.nope"},
    }
    assert reply["id"] == 9


@pytest.mark.parametrize(
    ("params", "field", "reason"),
    [
        ({"text": "a", "bogus": 1}, "bogus", "unknown parameter"),
        ({}, "text", "Field required"),
        ({"text": 5}, "text", "valid string"),
        ({"text": "a" * 11}, "text", "at most 10 characters"),
        ({"text": "a", "times": 4}, "times", "less than or equal to 3"),
        ({"text": "a", "times": "x"}, "times", "valid integer"),
        (["a"], None, "params must be an object"),
    ],
)
async def test_invalid_params_names_the_field(
    dispatcher: Dispatcher, params: Any, field: str | None, reason: str
) -> None:
    reply = await rpc(dispatcher, req("t.echo", params, id=3))
    error = reply["error"]
    assert error["code"] == -32602
    assert error["data"]["field"] == field
    assert reason in error["data"]["reason"]
    assert reply["id"] == 3
    assert calls == []


async def test_empty_params_array_means_no_params(dispatcher: Dispatcher) -> None:
    reply = await rpc(dispatcher, req("t.whoami", []))
    assert reply["result"] == {"text": "1000"}


async def test_unexpected_exception_is_internal_error_without_detail(
    dispatcher: Dispatcher, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR):
        reply = await rpc(dispatcher, req("t.boom", id=4))
    assert reply == {
        "jsonrpc": "2.0",
        "error": {"code": -32603, "message": "Internal error"},
        "id": 4,
    }
    assert "secret" not in json.dumps(reply)
    # ...but the traceback is logged for the operator.
    assert any(record.exc_info for record in caplog.records)
    assert "secret detail" in caplog.text


# Every JSON type a member can have; a method, id or params of each must be checked first.
EVERY_JSON_TYPE = [None, True, 0, -1.5, 2**64, "", "t.echo", [], ["t.echo"], {}, {"a": [1]}]


@pytest.mark.parametrize("method", EVERY_JSON_TYPE, ids=repr)
async def test_the_observer_sees_only_a_method_name_or_none(method: Any) -> None:
    seen: list[tuple[Any, int | None]] = []
    dispatcher = Dispatcher(METHODS, HANDLERS, guard=OPEN, max_batch_size=5,
                            observe=lambda m, code, _: seen.append((m, code)))  # fmt: skip
    reply = await rpc(dispatcher, {"jsonrpc": "2.0", "method": method, "params": {"text": "a"},
                                   "id": 1})  # fmt: skip
    if method == "t.echo":
        assert reply["result"] == {"text": "a"}
        assert seen == [("t.echo", None)]
    else:
        expected = -32601 if isinstance(method, str) else -32600
        assert reply["error"]["code"] == expected
        assert reply["id"] == 1
        assert seen == [(None, expected)]


@pytest.mark.parametrize("value", EVERY_JSON_TYPE, ids=repr)
async def test_ids_and_params_of_every_json_type_are_answered(value: Any) -> None:
    seen: list[tuple[Any, int | None]] = []
    dispatcher = Dispatcher(METHODS, HANDLERS, guard=OPEN, max_batch_size=5,
                            observe=lambda m, code, _: seen.append((m, code)))  # fmt: skip
    by_id = await rpc(dispatcher, req("t.echo", {"text": "a"}, id=value))
    with_params = await rpc(dispatcher, req("t.echo", value, id=2) | {"params": value})
    valid_id = value is None or isinstance(value, str) or type(value) is int
    assert by_id["id"] == (value if valid_id else None)
    assert ("result" in by_id) == valid_id
    structured = isinstance(value, dict | list)
    assert with_params["id"] == 2
    assert with_params["error"]["code"] == (-32602 if structured else -32600)
    assert all(method in (None, "t.echo") for method, _ in seen)


async def test_batch_with_method_of_array_is_answered_per_element_with_real_metrics() -> None:
    # Regression (issue 13): the metrics hashed the raw method, and [] failed the whole batch.
    calls.clear()
    dispatcher = Dispatcher(
        METHODS, HANDLERS, guard=OPEN, max_batch_size=5, observe=Metrics().rpc.observe
    )
    bad = {"jsonrpc": "2.0", "method": [], "id": "bad"}
    replies = await rpc(dispatcher, [bad, req("t.echo", {"text": "a"}, id="good")])
    by_id = {r["id"]: r for r in replies}
    assert by_id["bad"]["error"]["code"] == -32600
    assert by_id["good"]["result"] == {"text": "a"}
    assert calls == ["a"]


async def test_a_failing_observer_costs_no_reply() -> None:
    def observe(method: str | None, code: int | None, seconds: float) -> None:
        raise RuntimeError("metrics broke")

    calls.clear()
    dispatcher = Dispatcher(METHODS, HANDLERS, guard=OPEN, max_batch_size=5, observe=observe)
    replies = await rpc(dispatcher, [req("t.echo", {"text": "a"}, id=1), req("nope", id=2)])
    assert sorted(r["id"] for r in replies) == [1, 2]
    assert calls == ["a"]


async def test_automd_error_carries_its_code_and_data(dispatcher: Dispatcher) -> None:
    reply = await rpc(dispatcher, req("t.fail", id=5))
    assert reply["error"] == {"code": -32000, "message": "thing not found", "data": {"id": "x"}}


async def test_batch_mixing_everything_gets_one_reply_per_non_notification(
    dispatcher: Dispatcher,
) -> None:
    batch = [
        req("t.echo", {"text": "a"}, id=1),
        req("t.echo", {"text": "n"}, id=...),  # notification: runs, no reply
        {"foo": "bar"},  # invalid object
        7,  # not an object
        req("nope", id="m"),  # unknown method
        req("nope", id=...),  # unknown-method notification: no reply
    ]
    dispatcher.max_batch_size = 10
    replies = await rpc(dispatcher, batch)
    assert isinstance(replies, list)
    by_id = {json.dumps(r["id"]): r for r in replies if r["id"] is not None}
    assert by_id["1"]["result"] == {"text": "a"}
    assert by_id['"m"']["error"]["code"] == -32601
    invalid = [r for r in replies if r["id"] is None]
    assert [r["error"]["code"] for r in invalid] == [-32600, -32600]
    assert len(replies) == 4
    assert sorted(calls) == ["a", "n"]


async def test_batch_of_only_notifications_has_no_reply(dispatcher: Dispatcher) -> None:
    batch = [req("t.echo", {"text": "x"}, id=...), req("t.echo", {"text": "y"}, id=...)]
    assert await rpc(dispatcher, batch) is None
    assert sorted(calls) == ["x", "y"]


async def test_empty_batch_is_one_invalid_request(dispatcher: Dispatcher) -> None:
    reply = await rpc(dispatcher, [])
    assert reply["error"]["code"] == -32600
    assert reply["id"] is None


async def test_batch_over_the_cap_is_refused_whole(dispatcher: Dispatcher) -> None:
    reply = await rpc(dispatcher, [req("t.echo", {"text": "a"}, id=i) for i in range(6)])
    assert reply["error"]["code"] == ErrorCode.BATCH_TOO_LARGE
    assert reply["error"]["data"] == {"max_batch_size": 5, "received": 6}
    assert calls == []


async def test_batch_with_invalid_json_is_a_single_parse_error(dispatcher: Dispatcher) -> None:
    reply = await rpc(dispatcher, b'[{"jsonrpc":"2.0","method":"t.echo","id":1},')
    assert reply["error"]["code"] == -32700


def test_handlers_must_match_the_api() -> None:
    with pytest.raises(ValueError, match=r"missing \['t.whoami'\]"):
        Dispatcher(
            METHODS,
            {k: v for k, v in HANDLERS.items() if k != "t.whoami"},
            guard=OPEN,
            max_batch_size=1,
        )
    with pytest.raises(ValueError, match=r"unknown \['t.extra'\]"):
        Dispatcher(METHODS, {**HANDLERS, "t.extra": echo}, guard=OPEN, max_batch_size=1)


def _integer_fields() -> list[tuple[str, str]]:
    found = []
    for name, spec in sorted(METHODS_OF_API.items()):
        for field, info in spec.params.model_fields.items():
            # Annotated metadata (Strict, Field) is stripped here: StrictInt reads as int.
            annotation = info.annotation
            if annotation is int or int in typing.get_args(annotation):
                found.append((name, field))
    return found


@pytest.mark.parametrize(("method", "field"), _integer_fields())
@pytest.mark.parametrize("not_an_integer", ["5", 5.0, True])
def test_integer_params_of_the_api_take_only_integers(
    method: str, field: str, not_an_integer: object
) -> None:
    # The API promises -32602 for mistyped params; pydantic's lax mode would coerce these.
    with pytest.raises(ValidationError) as info:
        METHODS_OF_API[method].params.model_validate({field: not_an_integer})
    assert any(error["loc"] == (field,) for error in info.value.errors())


# --- streamed replies ------------------------------------------------------------------------

STREAMING = CallContext(peer=CTX.peer, streaming=True)


async def streamed(dispatcher: Dispatcher, payload: Any) -> list[Any]:
    reply = await dispatcher.handle(json.dumps(payload).encode(), STREAMING)
    assert isinstance(reply, StreamReply)
    return [json.loads(line) async for line in reply.lines()]


async def test_a_stream_is_notifications_then_the_response(dispatcher: Dispatcher) -> None:
    messages = await streamed(dispatcher, req("t.count", {"text": "x", "times": 3}, id="r"))
    assert messages == [
        {"jsonrpc": "2.0", "method": "t.count.part", "params": {"text": "x 0"}},
        {"jsonrpc": "2.0", "method": "t.count.part", "params": {"text": "x 1"}},
        {"jsonrpc": "2.0", "method": "t.count.part", "params": {"text": "x 2"}},
        {"jsonrpc": "2.0", "result": {"text": "done"}, "id": "r"},
    ]
    assert calls == ["closed"]


async def test_an_error_mid_stream_ends_it_with_an_error_response(dispatcher: Dispatcher) -> None:
    messages = await streamed(dispatcher, req("t.count", {"text": "fail", "times": 3}))
    assert messages[0]["params"] == {"text": "fail 0"}
    assert messages[1] == {
        "jsonrpc": "2.0",
        "error": {"code": -32000, "message": "thing not found", "data": {"after": 1}},
        "id": 1,
    }
    assert len(messages) == 2


async def test_a_client_leaving_mid_stream_closes_the_source(dispatcher: Dispatcher) -> None:
    reply = await dispatcher.handle(
        json.dumps(req("t.count", {"text": "x", "times": 3})).encode(), STREAMING
    )
    assert isinstance(reply, StreamReply)
    lines = reply.lines()
    await anext(lines)
    await lines.aclose()
    assert calls == ["closed"]


async def test_no_stream_in_a_batch_or_a_notification(dispatcher: Dispatcher) -> None:
    batch = [req("t.count", {"text": "x"}, id=1), req("t.echo", {"text": "y"}, id=2)]
    reply = await dispatcher.handle(json.dumps(batch).encode(), STREAMING)
    assert isinstance(reply, bytes)
    assert json.loads(reply)[0]["result"] == {"text": "not streamed"}
    notification = req("t.count", {"text": "x"})
    del notification["id"]
    assert await dispatcher.handle(json.dumps(notification).encode(), STREAMING) is None


async def test_a_stream_where_none_is_allowed_is_an_internal_error(
    dispatcher: Dispatcher, caplog: pytest.LogCaptureFixture
) -> None:
    always = Dispatcher(
        METHODS,
        {**HANDLERS, "t.count": lambda p, c: count(p, STREAMING)},
        guard=OPEN,
        max_batch_size=5,
    )
    with caplog.at_level(logging.ERROR):
        reply = await always.handle(json.dumps(req("t.count", {"text": "x"})).encode(), CTX)
    assert isinstance(reply, bytes)
    assert json.loads(reply)["error"]["code"] == ErrorCode.INTERNAL_ERROR


@pytest.mark.parametrize("payload", [7, "id-ü", "\ud800", None, {"b": [1.5, True], "a": "x"}])
def test_encode_is_compact_ascii_json(payload: Any) -> None:
    """encode() keeps one encoder rather than json.dumps' new one per call: same bytes."""
    assert encode(payload) == json.dumps(payload, separators=(",", ":")).encode("ascii")


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"\xef\xbb\xbf{}", "Unexpected UTF-8 BOM (decode using utf-8-sig) at line 1 column 1"),
        (b'{"a": NaN}', "NaN is not valid JSON"),
        (b'{"a": 1,}', "Expecting property name enclosed in double quotes at line 1 column 9"),
        (b"[1] [2]", "Extra data at line 1 column 5"),
    ],
)
def test_a_body_is_refused_as_json_loads_refuses_it(body: bytes, reason: str) -> None:
    """decode_body keeps one decoder rather than json.loads' new one per call: same verdicts."""
    with pytest.raises(ParseError) as info:
        decode_body(body)
    assert info.value.data == reason
    assert decode_body(b' {"a": [1, 2.5, "\\u00fc"]} ') == {"a": [1, 2.5, "ü"]}
