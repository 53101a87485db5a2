"""What automctl reports instead of a traceback: the errors of reaching and asking automd."""

from __future__ import annotations

import json
from typing import Any


class ClientError(Exception):
    """Base of everything automctl reports instead of a traceback."""


class DaemonUnreachable(ClientError):
    pass


class NoAnswer(DaemonUnreachable):
    """Connected, but no answer within --timeout: automd may be busy, so worth a retry."""


class DaemonFailed(DaemonUnreachable):
    """The connection was closed before any answer: automd accepted it (or systemd held it for
    automd) but exited, typically because it cannot start (a bad automd.toml)."""


class HostUnreachable(DaemonUnreachable):
    """automctl -H: ssh could not reach the host or log in (ssh's own failure, status 255),
    or could not be run at all; automd there was never asked."""


#: Where an administrator reads why automd is not answering (its unit's state and journal).
WHY_NOT_ANSWERING = "systemctl status automd and journalctl -u automd say why"


class ConnectPermissionDenied(ClientError):
    pass


class ProtocolError(ClientError):
    """The daemon answered, but not with a JSON-RPC reply we understand."""


class RemoteError(ClientError):
    """The daemon answered with a JSON-RPC error object."""

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        self.code = code
        self.message = message
        self.data = data
        #: The call that failed (set by RpcClient): messages.py words the error with it.
        self.method = ""
        self.params: dict[str, Any] = {}
        super().__init__(f"{message} ({code})" + (f": {_describe(data)}" if data else ""))

    def to_json(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.data is not None:
            error["data"] = self.data
        return error


def _describe(data: Any) -> str:
    if isinstance(data, dict) and "field" in data and "reason" in data:
        return f"{data['field']}: {data['reason']}" if data["field"] else str(data["reason"])
    return data if isinstance(data, str) else json.dumps(data)
