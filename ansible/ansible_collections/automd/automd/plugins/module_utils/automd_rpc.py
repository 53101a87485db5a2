# -*- coding: utf-8 -*-
# MIT License (see automd's repository)
"""automd's JSON-RPC over its Unix socket, for the collection's modules (standard library only).

The modules run on the target host; this speaks HTTP/1.1 to /run/automd.sock as the user the
module runs as, which is who automd authorizes and audits.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import http.client
import json
import re
import socket
import time

DEFAULT_SOCKET = "/run/automd.sock"
#: JSON-RPC codes the modules treat specially (docs/api.md).
METHOD_NOT_FOUND = -32601
#: What job.get's state is once a job can change no more.
FINISHED = ("succeeded", "failed", "timed_out", "cancelled", "unknown")


class AutomdError(Exception):
    """automd answered with an error, or could not be reached: message, code and data."""

    def __init__(self, message, code=None, data=None):
        super(AutomdError, self).__init__(message)
        self.code = code
        self.data = data

    def details(self):
        return {"code": self.code, "data": self.data}


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path, timeout):
        http.client.HTTPConnection.__init__(self, "automd", timeout=timeout)
        self._path = path

    def connect(self):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self._path)
        except Exception:
            sock.close()
            raise
        self.sock = sock


class AutomdClient:
    """One connection, kept for the module's calls (automd keeps it alive between them)."""

    def __init__(self, path=DEFAULT_SOCKET, timeout=30.0):
        self.path = path
        self.timeout = timeout
        self._ids = 0
        self._conn = None

    def call(self, method, params=None):
        self._ids += 1
        body = json.dumps(
            {"jsonrpc": "2.0", "method": method, "params": params or {}, "id": self._ids}
        ).encode()
        try:
            reply = self._exchange(body)
        except (OSError, http.client.HTTPException) as exc:
            self.close()
            raise AutomdError("cannot reach automd at %s: %s" % (self.path, exc))
        error = reply.get("error") if isinstance(reply, dict) else None
        if isinstance(error, dict):
            raise AutomdError(
                "%s: %s (%s)" % (method, error.get("message"), error.get("code")),
                code=error.get("code"),
                data=error.get("data"),
            )
        if not isinstance(reply, dict) or "result" not in reply:
            raise AutomdError("%s: an answer that is not a JSON-RPC result" % method)
        return reply["result"]

    def _exchange(self, body):
        if self._conn is None:
            self._conn = _UnixConnection(self.path, self.timeout)
        headers = {"Content-Type": "application/json"}
        try:
            self._conn.request("POST", "/rpc", body, headers)
            response = self._conn.getresponse()
        except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
            # automd closed the idle kept connection: one new connection, once.
            self.close()
            self._conn = _UnixConnection(self.path, self.timeout)
            self._conn.request("POST", "/rpc", body, headers)
            response = self._conn.getresponse()
        data = response.read()
        if response.will_close:
            self.close()
        try:
            return json.loads(data)
        except ValueError:
            raise AutomdError("automd answered HTTP %s without JSON" % response.status)

    def close(self):
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def wait(self, job_id, timeout):
        """job.get until the job is finished or `timeout` seconds passed; the last job.get."""
        deadline = time.monotonic() + timeout
        delay = 0.2
        while True:
            got = self.call("job.get", {"id": job_id})
            left = deadline - time.monotonic()
            if got["job"]["state"] in FINISHED or left <= 0:
                return got
            time.sleep(min(delay, left))
            delay = min(delay * 1.5, 2.0)

    def log_tail(self, job_id, lines):
        """The last `lines` lines the job wrote (all attempts), as text."""
        if lines <= 0:
            return []
        result = self.call("job.logs", {"id": job_id, "tail": lines})
        return [entry["message"] for entry in result["entries"]]


def schema_problems(schema, params):
    """What is wrong with `params` by a definition's JSON Schema (the keywords automd's
    definitions use: type, required, additionalProperties, enum, pattern, lengths, bounds)."""
    problems = []
    properties = schema.get("properties", {})
    for name in schema.get("required", []):
        if name not in params:
            problems.append("%s: required" % name)
    for name, value in params.items():
        spec = properties.get(name)
        if spec is None:
            if schema.get("additionalProperties") is False:
                problems.append("%s: not a parameter of this definition" % name)
            continue
        problems.extend("%s: %s" % (name, p) for p in _value_problems(spec, value))
    return problems


_TYPES = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "array": (list,),
    "object": (dict,),
}


def _value_problems(spec, value):
    kind = spec.get("type")
    types = _TYPES.get(kind) if isinstance(kind, str) else None
    if types is not None:
        is_bool = isinstance(value, bool)
        if not isinstance(value, types) or (is_bool and kind in ("integer", "number")):
            return ["must be of type %s" % kind]
    problems = []
    if "enum" in spec and value not in spec["enum"]:
        problems.append("must be one of %s" % ", ".join(map(str, spec["enum"])))
    if isinstance(value, str):
        if "pattern" in spec and not re.search(spec["pattern"], value):
            problems.append("must match %s" % spec["pattern"])
        if len(value) > spec.get("maxLength", len(value)):
            problems.append("at most %s characters" % spec["maxLength"])
        if len(value) < spec.get("minLength", 0):
            problems.append("at least %s characters" % spec["minLength"])
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if "minimum" in spec and value < spec["minimum"]:
            problems.append("at least %s" % spec["minimum"])
        if "maximum" in spec and value > spec["maximum"]:
            problems.append("at most %s" % spec["maximum"])
    return problems
