"""The OpenRPC (https://spec.open-rpc.org) document of the JSON-RPC API, built from METHODS.

The pydantic models METHODS names stay the single source: this only arranges their JSON Schemas.
`python -m automd.api.openrpc` prints the document; `--update-lock` refreshes the snapshot that
tests/unit/test_openrpc.py compares it with (run it after bumping API_VERSION).
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic.json_schema import JsonSchemaMode, models_json_schema

from automd.api.codes import API_VERSION, DEFAULT_SOCKET, RPC_PATH, ErrorCode
from automd.api.methods import METHODS, MethodSpec

#: The spec version this document follows: that of the meta-schema the tests vendor.
OPENRPC_VERSION = "1.2.6"

_SCHEMA_REF = "#/components/schemas/{model}"
_ERROR_REF = "#/components/errors/{name}"

_E = ErrorCode

# Any call can meet these: the envelope and params checks, an internal failure, the HTTP
# transport (docs/api.md, Transport) and authorization (every method has a permission).
_COMMON_ERRORS = (
    *(_E.INVALID_REQUEST, _E.METHOD_NOT_FOUND, _E.INVALID_PARAMS, _E.INTERNAL_ERROR),
    *(_E.SERVER_BUSY, _E.REQUEST_TOO_LARGE, _E.REQUEST_TIMEOUT, _E.UNSUPPORTED_MEDIA_TYPE),
    *(_E.BATCH_TOO_LARGE, _E.HTTP_METHOD_NOT_ALLOWED, _E.PERMISSION_DENIED),
)

# Raised before any method is known (the body is not JSON): listed in components only.
_DOCUMENT_ERRORS = (_E.PARSE_ERROR,)

# The application errors each method adds (docs/api.md, "Errors:" of each method). A method
# not listed has none; a new ErrorCode must be placed here or above (a test checks).
_METHOD_ERRORS: dict[str, tuple[ErrorCode, ...]] = {
    # A mutating call is recorded before it is answered: a full disk refuses it (1008).
    "job.submit": (
        *(_E.UNKNOWN_DEFINITION, _E.IDEMPOTENCY_CONFLICT, _E.QUEUE_FULL, _E.STORE_UNAVAILABLE),
    ),
    "job.get": (_E.JOB_NOT_FOUND,),
    "job.logs": (_E.JOB_NOT_FOUND,),
    # Stopping a running job's unit is a D-Bus call.
    "job.cancel": (
        *(_E.JOB_NOT_FOUND, _E.INVALID_JOB_STATE, _E.SYSTEMD_UNAVAILABLE, _E.STORE_UNAVAILABLE),
    ),
    "job.retry": (_E.JOB_NOT_FOUND, _E.INVALID_JOB_STATE, _E.STORE_UNAVAILABLE),
    "system.reload": (_E.STORE_UNAVAILABLE,),
    "definition.get": (_E.UNKNOWN_DEFINITION, _E.UNKNOWN_REVISION),
    "definition.history": (_E.UNKNOWN_DEFINITION,),
    "definition.rollback": (_E.UNKNOWN_DEFINITION, _E.UNKNOWN_REVISION, _E.STORE_UNAVAILABLE),
    "schedule.get": (_E.UNKNOWN_DEFINITION, _E.UNKNOWN_SCHEDULE),
    "schedule.run_now": (
        *(_E.UNKNOWN_DEFINITION, _E.UNKNOWN_SCHEDULE, _E.QUEUE_FULL, _E.STORE_UNAVAILABLE),
    ),
    "schedule.fire": (
        *(_E.UNKNOWN_DEFINITION, _E.UNKNOWN_SCHEDULE, _E.QUEUE_FULL, _E.STORE_UNAVAILABLE),
    ),
}

# The default message each code carries on the wire (automd/errors.py, which this package may
# not import; a test keeps the two in step).
_MESSAGES: dict[ErrorCode, str] = {
    _E.PARSE_ERROR: "Parse error",
    _E.INVALID_REQUEST: "Invalid Request",
    _E.METHOD_NOT_FOUND: "Method not found",
    _E.INVALID_PARAMS: "Invalid params",
    _E.INTERNAL_ERROR: "Internal error",
    _E.SERVER_BUSY: "Server busy: too many connections",
    _E.REQUEST_TOO_LARGE: "Request body too large",
    _E.REQUEST_TIMEOUT: "Request body not received in time",
    _E.UNSUPPORTED_MEDIA_TYPE: "Content-Type must be application/json",
    _E.BATCH_TOO_LARGE: "Batch too large",
    _E.HTTP_METHOD_NOT_ALLOWED: "Use POST for JSON-RPC requests",
    _E.UNKNOWN_DEFINITION: "No such job definition",
    _E.JOB_NOT_FOUND: "No such job",
    _E.INVALID_JOB_STATE: "The job's state does not allow this",
    _E.IDEMPOTENCY_CONFLICT: "Idempotency key already used for a different request",
    _E.QUEUE_FULL: "Too many unfinished jobs",
    _E.SYSTEMD_UNAVAILABLE: "systemd is not reachable",
    _E.PERMISSION_DENIED: "Permission denied",
    _E.STORE_UNAVAILABLE: "The state store cannot write: the call was not recorded",
    _E.UNKNOWN_SCHEDULE: "No such schedule",
    _E.UNKNOWN_REVISION: "No such revision of this definition",
}

#: The snapshot the schema-version guard compares with (a source checkout's, not installed).
LOCK_PATH = Path(__file__).resolve().parents[2] / "tests" / "unit" / "api_schema.lock.json"


def build_document(methods: Mapping[str, MethodSpec] = METHODS) -> dict[str, Any]:
    specs = [methods[name] for name in sorted(methods)]
    # One generation for all models, so shared definitions ($defs) are emitted once and a model
    # whose input and output schemas differ gets two names instead of a silent clash.
    # Params are what callers send (validation); results are what automd sends (serialization).
    wanted: list[tuple[type[Any], JsonSchemaMode]] = []
    for spec in specs:
        wanted += [(spec.params, "validation"), (spec.result, "serialization")]
    refs, top = models_json_schema(wanted, ref_template=_SCHEMA_REF)
    schemas: dict[str, Any] = top.get("$defs", {})

    used: set[ErrorCode] = set(_DOCUMENT_ERRORS)
    out_methods = []
    for spec in specs:
        # Every model is a $ref into $defs: the params model's own schema lists its fields.
        params: dict[str, Any] = schemas[refs[(spec.params, "validation")]["$ref"].split("/")[-1]]
        required = set(params.get("required", ()))
        errors = sorted({*_COMMON_ERRORS, *_METHOD_ERRORS.get(spec.name, ())})
        used.update(errors)
        out_methods.append(
            {
                "name": spec.name,
                "summary": spec.summary,
                "paramStructure": "by-name",  # docs/api.md: parameters are by name
                "params": [
                    _descriptor(field, schema, field in required)
                    for field, schema in params.get("properties", {}).items()
                ],
                "result": {
                    "name": spec.result.__name__,
                    "schema": refs[(spec.result, "serialization")],
                },
                "errors": [{"$ref": _ERROR_REF.format(name=code.name)} for code in errors],
                # What the caller needs (polkit action org.automd.<permission>), and whether
                # the call is audited: part of the contract, so part of the document.
                "x-permission": spec.permission.value,
                "x-mutating": spec.mutating,
            }
        )
    return {
        "openrpc": OPENRPC_VERSION,
        "info": {
            "title": "automd",
            "version": API_VERSION,
            "description": (
                f"automd's JSON-RPC 2.0 API: HTTP/1.1 POST {RPC_PATH} with Content-Type "
                f"application/json on the Unix socket {DEFAULT_SOCKET}. Parameters are by "
                "name. docs/api.md has the envelope rules, each error's data and the "
                "compatibility policy."
            ),
        },
        "methods": out_methods,
        "components": {
            "schemas": dict(sorted(schemas.items())),
            "errors": {
                code.name: {"code": int(code), "message": _MESSAGES[code]} for code in sorted(used)
            },
        },
    }


def _descriptor(name: str, schema: dict[str, Any], required: bool) -> dict[str, Any]:
    descriptor = {"name": name, "required": required, "schema": schema}
    if "description" in schema:
        descriptor["description"] = schema["description"]
    return descriptor


def schema_fingerprint(document: Mapping[str, Any]) -> str:
    """sha256 of the document's canonical JSON, info.version left out: what the lock pins."""
    info = {k: v for k, v in document["info"].items() if k != "version"}
    canonical = json.dumps(
        {**document, "info": info}, sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def lock_contents(document: Mapping[str, Any]) -> dict[str, str]:
    return {"api_version": document["info"]["version"], "sha256": schema_fingerprint(document)}


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    document = build_document()
    if not args:
        print(json.dumps(document, indent=2))
        return 0
    if args == ["--update-lock"]:
        lock = lock_contents(document)
        LOCK_PATH.write_text(json.dumps(lock, indent=2) + "\n")
        print(f"wrote {LOCK_PATH}: {lock}")
        return 0
    print("usage: python -m automd.api.openrpc [--update-lock]", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
