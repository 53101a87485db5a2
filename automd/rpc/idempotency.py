"""The Idempotency-Key HTTP header: read as job.submit's idempotency_key, checked by its rules.

IETF httpapi draft "The Idempotency-Key HTTP Header Field"; docs/api.md says how its
semantics map onto automd's (a replay, a conflict).
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import TypeAdapter, ValidationError

from automd.api.codes import IDEMPOTENCY_KEY_HEADER
from automd.api.jobs import IdempotencyKey
from automd.api.methods import MethodSpec
from automd.errors import InvalidParams

PARAM = "idempotency_key"
#: -32600 `data` of a batch sent with the header.
BATCH_REFUSED = (
    f"the {IDEMPOTENCY_KEY_HEADER} header names one job.submit and cannot be sent with a "
    f"batch: give each job.submit of the batch its own params.{PARAM}"
)

_KEY = TypeAdapter(IdempotencyKey)
# An RFC 9651 Item that is a String: printable ASCII in double quotes, \" and \\ the only
# escapes, then any parameters (;name or ;name=value), which are ignored as the RFC advises.
_SF_STRING = re.compile(
    r'"((?:[\x20\x21\x23-\x5b\x5d-\x7e]|\\["\\])*)"'
    r"(?:;[ ]*[a-z*][a-z0-9_.*-]*(?:=[\x21\x23-\x3a\x3c-\x7e]+|=\"[^\"]*\")?)*"
)
_SF_ESCAPE = re.compile(r'\\(["\\])')


def _invalid(field: str | None, reason: str) -> InvalidParams:
    """-32602 shaped like a validation error of the params (rpc.protocol)."""
    error = {"field": field, "reason": reason}
    return InvalidParams(data={**error, "errors": [error]})


def key_of_header(value: str) -> str:
    """The key an Idempotency-Key header carries, held to params.idempotency_key's rules.

    The draft makes the value a Structured Field String (`"..."`, RFC 9651); the bare key
    many clients send is taken as it is. Raises InvalidParams naming `idempotency_key` when
    it is no key.
    """
    value = value.strip(" \t")
    if value.startswith('"'):
        quoted = _SF_STRING.fullmatch(value)
        if quoted is None:
            raise _invalid(PARAM, f"{IDEMPOTENCY_KEY_HEADER} header: not a valid quoted string")
        value = _SF_ESCAPE.sub(r"\1", quoted.group(1))
    try:
        return _KEY.validate_python(value)
    except ValidationError as exc:
        reason = exc.errors(include_url=False, include_input=False)[0]["msg"]
        raise _invalid(PARAM, f"{IDEMPOTENCY_KEY_HEADER} header: {reason}") from None


def with_header(spec: MethodSpec, params: dict[str, Any], header: str | None) -> dict[str, Any]:
    """A call's params with the Idempotency-Key header as their idempotency_key.

    The one place the header is applied: to a method whose params take an idempotency key
    (job.submit) when they carry none (or null); when both do, they must agree. Any other
    method is refused the header, rather than let a caller believe the call was idempotent.
    """
    if header is None:
        return params
    if PARAM not in spec.params.model_fields:
        reason = f"{spec.name} takes no idempotency key: drop the {IDEMPOTENCY_KEY_HEADER} header"
        raise _invalid(None, reason)
    key = key_of_header(header)
    given = params.get(PARAM)
    if given is None:
        return {**params, PARAM: key}
    if given != key:
        raise _invalid(PARAM, f"differs from the {IDEMPOTENCY_KEY_HEADER} header")
    return params
