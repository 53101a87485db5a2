"""automd.rpc.idempotency: the Idempotency-Key header read and applied to a call's params."""

from __future__ import annotations

from typing import Any

import pytest

from automd.api.methods import METHODS
from automd.errors import InvalidParams
from automd.rpc.idempotency import key_of_header, with_header


@pytest.mark.parametrize(
    ("value", "key"),
    [
        ("ci-run-42", "ci-run-42"),  # bare, as most clients send it
        ('"ci-run-42"', "ci-run-42"),  # the draft's Structured Field String
        (' "ci-run-42" ', "ci-run-42"),
        (r'"a\"b\\c"', 'a"b\\c'),  # its two escapes
        ('"ci-run-42";v=1', "ci-run-42"),  # parameters are ignored
        ('"ci-run-42"; v="x y";w', "ci-run-42"),
        ("k" * 128, "k" * 128),
    ],
)
def test_keys_the_header_carries(value: str, key: str) -> None:
    assert key_of_header(value) == key


@pytest.mark.parametrize(
    "value",
    ["", '""', "a b", '"a b"', "k" * 129, '"open', '"a"b', r'"a\n"', '"a", "b"', "a, b",
     "caf\xe9", '"x";V=1', "tab\there"],
)  # fmt: skip
def test_values_that_are_no_key(value: str) -> None:
    with pytest.raises(InvalidParams) as raised:
        key_of_header(value)
    assert raised.value.data["field"] == "idempotency_key"
    assert raised.value.data["reason"].startswith("Idempotency-Key header: ")


SUBMIT = METHODS["job.submit"]


@pytest.mark.parametrize(
    ("params", "header", "expected"),
    [
        ({"definition": "d"}, None, {"definition": "d"}),
        ({"definition": "d"}, "k", {"definition": "d", "idempotency_key": "k"}),
        ({"definition": "d", "idempotency_key": None}, "k",
         {"definition": "d", "idempotency_key": "k"}),
        ({"definition": "d", "idempotency_key": "k"}, '"k"',
         {"definition": "d", "idempotency_key": "k"}),
    ],
)  # fmt: skip
def test_the_header_becomes_the_key_of_params_without_one(
    params: dict[str, Any], header: str | None, expected: dict[str, Any]
) -> None:
    assert with_header(SUBMIT, params, header) == expected


@pytest.mark.parametrize("given", ["other", 5, ["k"], {"k": 1}])
def test_a_different_key_in_params_is_refused(given: Any) -> None:
    with pytest.raises(InvalidParams) as raised:
        with_header(SUBMIT, {"definition": "d", "idempotency_key": given}, "k")
    assert raised.value.data["field"] == "idempotency_key"


@pytest.mark.parametrize("method", sorted(set(METHODS) - {"job.submit"}))
def test_every_other_method_refuses_the_header(method: str) -> None:
    assert with_header(METHODS[method], {}, None) == {}
    with pytest.raises(InvalidParams) as raised:
        with_header(METHODS[method], {}, "k")
    assert raised.value.data["field"] is None
    assert f"{method} takes no idempotency key" in raised.value.data["reason"]
