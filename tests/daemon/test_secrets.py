"""A secret parameter's value never reaches automd's log, even at debug level, nor any reply."""

from __future__ import annotations

import secrets

from tests.daemon.harness import DaemonFactory, call

DEFINITIONS = {
    "deploy": (
        'executable = "/bin/true"\nargv = ["--token", "{token}", "{target}"]\n'
        '[parameters.token]\ntype = "string"\nsecret = true\n'
        '[parameters.target]\ntype = "string"\n'
    )
}


async def test_secret_values_are_never_logged_or_returned(daemon_factory: DaemonFactory) -> None:
    daemon = daemon_factory('[log]\nlevel = "debug"\n', DEFINITIONS)
    daemon.start()
    token = "tok-" + secrets.token_hex(12)
    path = daemon.socket_path

    def submit(params: dict[str, str], key: str | None = "d1") -> dict[str, object]:
        request: dict[str, object] = {"definition": "deploy", "params": params}
        if key is not None:
            request["idempotency_key"] = key
        return request

    submitted = await call(path, "job.submit", submit({"token": token, "target": "prod"}))
    job = submitted["result"]["job"]
    assert job["params"] == {"token": "***", "target": "prod"}
    # A conflicting replay and a bad value: error paths log and audit too.
    await call(path, "job.submit", submit({"token": token, "target": "staging"}))
    await call(path, "job.submit", submit({"token": token}, key=None))
    replies = [
        await call(path, "job.get", {"id": job["id"]}),
        await call(path, "job.list", {}),
        await call(path, "audit.list", {}),
    ]
    audit = replies[-1]["result"]["entries"]
    assert {e["params"]["token"] for e in audit if e["params"]} == {"***"}
    for reply in replies:
        assert token not in str(reply)
    output = daemon.output()
    assert "job.submit" in output  # the debug log ran
    assert token not in output
