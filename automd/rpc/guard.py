"""What every method needs, enforced around its handler from its declaration in api/methods.py:
the caller's permission for the method, and an audit entry for every mutating call and every
denial, whatever the outcome. docs/security.md gives the order of the checks."""

from __future__ import annotations

import contextlib
import logging
from typing import Any

from pydantic import ValidationError

from automd.api.methods import MethodSpec
from automd.api.model import Params
from automd.audit import AuditLog, AuditNote
from automd.authz import Authorizer
from automd.errors import AutomdError, InternalError, InvalidParams, PermissionDenied
from automd.rpc.context import CallContext

log = logging.getLogger(__name__)


def _detail(error: AutomdError) -> str:
    """An error entry's detail: the code and message, and for -32602 the field and reason."""
    detail = f"{int(error.code)} {error.message}"
    if isinstance(error, InvalidParams) and isinstance(error.data, dict):
        detail += f": {error.data.get('field')}: {error.data.get('reason')}"
    return detail


class Guard:
    """The dispatcher's checks before a handler runs, and its audit entry after."""

    def __init__(self, authz: Authorizer, audit: AuditLog) -> None:
        self._authz = authz
        self._audit = audit

    async def admit(self, spec: MethodSpec, ctx: CallContext, raw_params: Any) -> CallContext:
        """Authenticate the caller and check the method's permission, before the params are
        looked at; a denial is recorded and raised (1007). A permission decided per
        definition (run) is left to the use case, which alone knows the definition.

        Returns the context for the handler: with an audit note when the method mutates.
        """
        try:
            if spec.permission.per_definition:
                self._authz.authenticate(ctx.peer, spec.permission)
            else:
                await self._authz.require(ctx.peer, spec.permission)
        except PermissionDenied as exc:
            note = self._audit.note(ctx.peer, spec.name)
            # Named from the params only if they are valid: nothing else the caller sent.
            with contextlib.suppress(ValidationError):
                note.name(spec.params.model_validate(raw_params).audit_names())
            await self._write(note, "denied", exc.data["reason"])
            raise
        if not spec.mutating:
            return ctx
        return ctx.with_audit(self._audit.note(ctx.peer, spec.name))

    async def settle(
        self, ctx: CallContext, params: Params | None, error: AutomdError | None
    ) -> None:
        """Record a mutating call's outcome. `params` is None when they did not validate:
        the entry then says which field was wrong and why, not what was sent."""
        note = ctx.audit
        assert note is not None  # admit() gave every mutating call its note
        if params is not None:
            note.name(params.audit_names())
        if error is None:
            await self._write(note, "ok")
        elif isinstance(error, PermissionDenied):
            await self._write(note, "denied", error.data["reason"])
        else:
            await self._write(note, "error", _detail(error))

    async def _write(self, note: AuditNote, outcome: str, detail: str | None = None) -> None:
        try:
            await self._audit.settle(note, outcome, detail)
        except AutomdError:
            raise
        except Exception as exc:
            # A call that cannot be audited fails, as any internal error: -32603.
            log.exception("audit entry of %s not written", note.method)
            raise InternalError() from exc
