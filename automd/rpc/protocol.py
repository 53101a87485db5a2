"""JSON-RPC 2.0 semantics, free of any transport: parse, validate, dispatch, shape replies.

Hand-written over pydantic instead of jsonrpcserver; docs/architecture.md says why.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from pydantic import BaseModel, ValidationError

from automd.api.methods import MethodSpec
from automd.api.model import Params
from automd.errors import (
    AutomdError,
    BatchTooLarge,
    InternalError,
    InvalidParams,
    InvalidRequest,
    MethodNotFound,
    ParseError,
)
from automd.rpc import idempotency
from automd.rpc.context import CallContext
from automd.trace import CURRENT_REQUEST, RequestLogContext

log = logging.getLogger(__name__)

Reply = dict[str, Any]
_RESULT_HEAD = b'{"jsonrpc":"2.0","result":'


@dataclass(frozen=True)
class ResultStream:
    """A result sent in parts: one `notification` per part, then the final result.

    A handler may return one only when `CallContext.streaming` is set.
    """

    notification: str
    parts: AsyncGenerator[BaseModel, None]
    #: The final result, asked for once `parts` is exhausted.
    result: Callable[[], BaseModel]


Handler = Callable[[Any, CallContext], Awaitable[BaseModel | ResultStream]]
#: Told of every request: the name of the method it called (None when it named none of the
#: dispatcher's methods: never anything else the caller sent), its error code (None:
#: success) and its duration.
Observer = Callable[[str | None, int | None, float], None]


class Guard(Protocol):
    """What runs around every handler (rpc/guard.py): authorization and the audit trail."""

    async def admit(self, spec: MethodSpec, ctx: CallContext, raw_params: Any) -> CallContext:
        """Before the params are validated: authenticate and check the method's permission
        (raising a recorded denial). The context returned carries `audit` for a call that
        settle() must record."""
        ...

    async def settle(
        self, ctx: CallContext, params: Params | None, error: AutomdError | None
    ) -> None:
        """After a call admitted with `ctx.audit`: record its outcome (params None: they did
        not validate)."""
        ...


@dataclass(frozen=True)
class StreamReply:
    """A streamed reply: newline-delimited JSON-RPC messages, the response last."""

    request_id: Any
    stream: ResultStream

    async def lines(self) -> AsyncGenerator[bytes, None]:
        head = b'{"jsonrpc":"2.0","method":' + encode(self.stream.notification) + b',"params":'
        tail = b',"id":' + encode(self.request_id) + b"}\n"
        try:
            async with contextlib.aclosing(self.stream.parts) as parts:
                async for part in parts:
                    yield head + _to_json(part) + b"}\n"
            yield _RESULT_HEAD + _to_json(self.stream.result()) + tail
        except AutomdError as exc:
            yield encode(error_reply(self.request_id, exc)) + b"\n"
        except Exception:
            log.exception("internal error while streaming %s", self.stream.notification)
            yield encode(error_reply(self.request_id, InternalError())) + b"\n"


def _to_json(model: BaseModel) -> bytes:
    return model.__pydantic_serializer__.to_json(model)


_ENVELOPE_MEMBERS = frozenset({"jsonrpc", "method", "params", "id"})


def _reject_constant(name: str) -> Any:
    # json.loads accepts NaN/Infinity by default; they are not JSON.
    raise ValueError(f"{name} is not valid JSON")


# json.loads given any option makes a new decoder on every call: one, made once.
_DECODER = json.JSONDecoder(parse_constant=_reject_constant)


def decode_body(body: bytes) -> Any:
    """Parse a request body as strict UTF-8 JSON, raising ParseError with a useful reason."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ParseError(data=f"request body is not valid UTF-8 (byte {exc.start})") from None
    try:
        if text.startswith("\ufeff"):  # refused as json.loads refuses it, in its words
            raise json.JSONDecodeError("Unexpected UTF-8 BOM (decode using utf-8-sig)", text, 0)
        return _DECODER.decode(text)
    except json.JSONDecodeError as exc:
        raise ParseError(data=f"{exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except ValueError as exc:
        raise ParseError(data=str(exc)) from None
    except RecursionError:
        raise ParseError(data="JSON nested too deeply") from None


# json.dumps makes a new encoder on every call given any option: one, made once (every reply
# encodes its id with it).
_ENCODER = json.JSONEncoder(separators=(",", ":"))


def encode(payload: Any) -> bytes:
    # ensure_ascii keeps the output valid UTF-8 even for strings holding lone surrogates.
    return _ENCODER.encode(payload).encode("ascii")


def error_reply(request_id: Any, error: AutomdError) -> Reply:
    return {"jsonrpc": "2.0", "error": error.to_wire(), "id": request_id}


def _is_valid_id(value: Any) -> bool:
    return (
        value is None
        or isinstance(value, str)
        or (isinstance(value, int) and not isinstance(value, bool))
    )


def describe_validation_error(exc: ValidationError) -> dict[str, Any]:
    """-32602 `data`: the first offending field and reason, plus every error found."""
    errors = []
    for err in exc.errors(include_url=False, include_input=False):
        field = ".".join(str(part) for part in err["loc"]) or None
        reason = "unknown parameter" if err["type"] == "extra_forbidden" else err["msg"]
        errors.append({"field": field, "reason": reason})
    return {"field": errors[0]["field"], "reason": errors[0]["reason"], "errors": errors}


class Dispatcher:
    """Routes requests to handlers; every outcome becomes a JSON-RPC reply, never a raise."""

    def __init__(
        self,
        methods: Mapping[str, MethodSpec],
        handlers: Mapping[str, Handler],
        *,
        guard: Guard,
        max_batch_size: int,
        observe: Observer | None = None,
    ) -> None:
        missing = sorted(methods.keys() - handlers.keys())
        unknown = sorted(handlers.keys() - methods.keys())
        if missing or unknown:
            raise ValueError(f"handlers out of step with API: missing {missing}, unknown {unknown}")
        self._methods = methods
        self._handlers = handlers
        self._guard = guard
        self.max_batch_size = max_batch_size
        self._observe = observe

    async def handle(self, body: bytes, ctx: CallContext) -> bytes | StreamReply | None:
        """Answer one HTTP body; None when nothing is to be sent back (only notifications)."""
        try:
            payload = decode_body(body)
        except ParseError as exc:
            return encode(error_reply(None, exc))
        if isinstance(payload, list):
            if not payload:
                return encode(error_reply(None, InvalidRequest(data="empty batch")))
            if len(payload) > self.max_batch_size:
                too_large = BatchTooLarge(
                    data={"max_batch_size": self.max_batch_size, "received": len(payload)}
                )
                return encode(error_reply(None, too_large))
            if ctx.idempotency_key is not None:  # one key cannot name several submits
                return encode(error_reply(None, InvalidRequest(data=idempotency.BATCH_REFUSED)))
            in_batch = dataclasses.replace(ctx, streaming=False)
            replies = await asyncio.gather(*(self.handle_one(item, in_batch) for item in payload))
            answered = [reply for reply in replies if isinstance(reply, bytes)]
            return b"[" + b",".join(answered) + b"]" if answered else None
        return await self.handle_one(payload, ctx)

    async def handle_one(self, request: Any, ctx: CallContext) -> bytes | StreamReply | None:
        """One request object -> its encoded reply (or a stream), or None for a notification.

        A stream is possible only when `ctx.streaming` is set and the request has an id.
        Each member is type-checked before anything uses it, and only checked values flow on:
        the reply's id once it is valid, the method's spec once it names one. The observer and
        the log are told that spec's name or nothing (a caller's `"method": []` once reached
        the metrics as it was, and took its request, or its whole batch, down with a 500).
        """
        started = time.perf_counter()
        reply_id: str | int | None = None  # null until the request's id is known to be valid
        is_notification = False
        method: str | None = None
        code: int | None = None
        try:
            if not isinstance(request, dict):
                raise InvalidRequest(data="request must be a JSON object")
            request_id = request.get("id")
            if not _is_valid_id(request_id):
                raise InvalidRequest(data='"id" must be a string, an integer or null')
            reply_id, is_notification = request_id, "id" not in request
            spec, params = self._validate_envelope(request)
            method = spec.name
            if ctx.idempotency_key is not None:  # the header, applied in its one place
                params = idempotency.with_header(spec, params, ctx.idempotency_key)
            if is_notification and ctx.streaming:
                ctx = dataclasses.replace(ctx, streaming=False)
            result = await self._call(spec, params, ctx)
        except AutomdError as exc:
            code = int(exc.code)
            if is_notification and not isinstance(exc, InvalidRequest):
                log.debug("notification of %s failed: %s", method or "no method", exc.message)
                return None
            return encode(error_reply(reply_id, exc))
        finally:
            self._tell_observer(method, code, started)
        if isinstance(result, ResultStream):
            return StreamReply(reply_id, result)
        # The result is serialised by pydantic (Rust) straight to bytes; only the id is ours.
        return (
            None if is_notification else _RESULT_HEAD + result + b',"id":' + encode(reply_id) + b"}"
        )

    def _tell_observer(self, method: str | None, code: int | None, started: float) -> None:
        if self._observe is None:
            return
        try:
            self._observe(method, code, time.perf_counter() - started)
        except Exception:
            # The call has happened: a broken metric must not cost the caller its reply (in a
            # batch, every reply, a submitted job's id among them).
            log.exception("observing a request of %s failed", method or "no method")

    def _validate_envelope(self, request: dict[str, Any]) -> tuple[MethodSpec, dict[str, Any]]:
        if request.get("jsonrpc") != "2.0":
            raise InvalidRequest(data='"jsonrpc" must be exactly "2.0"')
        extra = sorted(request.keys() - _ENVELOPE_MEMBERS)
        if extra:
            raise InvalidRequest(data=f"unknown request member {extra[0]!r}")
        method = request.get("method")
        if not isinstance(method, str):
            raise InvalidRequest(data='"method" must be a string')
        params = request.get("params", {})
        if not isinstance(params, dict | list):
            raise InvalidRequest(data='"params" must be an object or an array')
        spec = self._methods.get(method)
        if spec is None:
            raise MethodNotFound(data={"method": method})
        if isinstance(params, list):
            if params:
                raise InvalidParams(
                    data={"field": None, "reason": "params must be an object (by name)"}
                )
            params = {}
        return spec, params

    async def _call(
        self, spec: MethodSpec, raw_params: Any, ctx: CallContext
    ) -> bytes | ResultStream:
        """Authenticate, check the method's permission, validate the params, run the handler
        (docs/security.md); a mutating call is recorded in the audit trail whatever happens."""
        # Every call runs under a trace (the caller's, else a new one); its log lines say so.
        uid = None if ctx.peer is None else ctx.peer.uid
        token = CURRENT_REQUEST.set(RequestLogContext(ctx.trace, spec.name, uid))
        try:
            ctx = await self._guard.admit(spec, ctx, raw_params)
            if ctx.audit is None:  # nothing to record (the hot path: reads)
                params = self._validate(spec, raw_params)
                return self._reply(spec, await self._handlers[spec.name](params, ctx), ctx)
            return await self._recorded(spec, raw_params, ctx)
        except AutomdError:
            raise
        except Exception as exc:
            # The one place unknown exceptions become -32603: traceback to the journal only.
            log.exception("internal error in %s", spec.name)
            raise InternalError() from exc
        finally:
            CURRENT_REQUEST.reset(token)

    async def _recorded(
        self, spec: MethodSpec, raw_params: Any, ctx: CallContext
    ) -> bytes | ResultStream:
        """A call the guard records, whatever its outcome."""
        params = None
        try:
            params = self._validate(spec, raw_params)
            result = self._reply(spec, await self._handlers[spec.name](params, ctx), ctx)
        except Exception as exc:
            error = exc if isinstance(exc, AutomdError) else InternalError()
            await self._guard.settle(ctx, params, error)
            raise
        await self._guard.settle(ctx, params, None)
        return result

    @staticmethod
    def _validate(spec: MethodSpec, raw_params: Any) -> Params:
        try:
            return spec.params.model_validate(raw_params)
        except ValidationError as exc:
            raise InvalidParams(data=describe_validation_error(exc)) from None

    @staticmethod
    def _reply(
        spec: MethodSpec, result: BaseModel | ResultStream, ctx: CallContext
    ) -> bytes | ResultStream:
        """The handler's result as JSON bytes (or the stream it may return)."""
        if isinstance(result, ResultStream) and ctx.streaming:
            return result
        if not isinstance(result, spec.result):
            log.error("%s returned %s, not %s", spec.name, type(result), spec.result)
            raise InternalError()
        try:
            return _to_json(result)
        except Exception as exc:
            # E.g. a stored string no UTF-8 can encode: -32603 like any failure, not HTTP 500.
            log.exception("internal error serialising the result of %s", spec.name)
            raise InternalError() from exc
