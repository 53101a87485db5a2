# mypy: ignore-errors
# (ansible has no type information; this file runs inside ansible-playbook, not pytest)
# A stdout callback for tests/integration/test_ansible.py: every task result of every host as
# one JSON document at the end of the run (ansible-core 2.14 ships no JSON callback of its own;
# ansible.posix.json is in another collection).
from __future__ import annotations

import json

from ansible.plugins.callback import CallbackBase

DOCUMENTATION = """
name: results_json
type: stdout
short_description: each task result as JSON, for automd's tests
description: Prints one JSON object (results, stats) when the run ends.
"""


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "stdout"
    CALLBACK_NAME = "results_json"

    def __init__(self):
        super().__init__()
        self.results = []

    def _record(self, result, status):
        self.results.append(
            {
                "host": result._host.get_name(),
                "task": result._task.get_name(),
                "status": status,
                "result": result._result,
            }
        )

    def v2_runner_on_ok(self, result):
        self._record(result, "ok")

    def v2_runner_on_failed(self, result, ignore_errors=False):
        self._record(result, "failed")

    def v2_runner_on_skipped(self, result):
        self._record(result, "skipped")

    def v2_runner_on_unreachable(self, result):
        self._record(result, "unreachable")

    def v2_playbook_on_stats(self, stats):
        summary = {host: stats.summarize(host) for host in sorted(stats.processed)}
        self._display.display(json.dumps({"results": self.results, "stats": summary}, default=str))
