#!/usr/bin/python
# -*- coding: utf-8 -*-
# MIT License (see automd's repository)
"""automd.automd.job: submit an allowlisted automd job on the target, wait, report it."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: job
short_description: Run an allowlisted automd job on the target host
version_added: "0.1.0"
description:
  - Submits a job of an automd job definition (an allowlisted command with typed parameters)
    to automd on the target host, over its Unix socket, as the user the module runs as; automd's
    polkit rules decide, and its audit trail names that user.
  - Optionally waits for the job to finish, with a timeout, and returns its outcome and the
    tail of its output. The task fails when the job fails.
  - Idempotent with an idempotency key. The key is given explicitly (C(idempotency_key)) or
    derived from a run id the playbook supplies (C(run_id)), never from the parameters; a
    re-run with the same key returns the earlier job and reports C(changed=false).
  - Needs only the Python standard library on the target.
options:
  definition:
    description: Name of the job definition (see C(automctl defs) on the host).
    type: str
    required: true
  params:
    description:
      - The job's parameters, checked by automd against the definition.
      - A string given for an integer or boolean parameter (as templating yields) is converted
        by the definition's schema first.
    type: dict
    default: {}
  idempotency_key:
    description:
      - Submit at most once per key (per user, on each host, within automd's idempotency
        window). Printable ASCII without spaces, at most 128 characters.
      - Mutually exclusive with C(run_id).
    type: str
  run_id:
    description:
      - Derive the idempotency key as C(ansible:RUN_ID:DEFINITION). Give one per playbook run,
        for example a variable passed with C(-e run_id=...); re-running the playbook with the
        same run id creates no new jobs. Two tasks running the same definition in one run need
        different run ids or explicit keys.
      - Without C(run_id) or C(idempotency_key) every run submits a new job.
    type: str
  wait:
    description: Wait for the job to finish; fail the task when it did not succeed.
    type: bool
    default: true
  timeout:
    description: With C(wait), seconds to wait before failing the task.
    type: int
    default: 600
  cancel_on_timeout:
    description: With C(wait), cancel the job when C(timeout) passes (else it runs on).
    type: bool
    default: false
  log_lines:
    description: How many of the job's last output lines to return (0 for none).
    type: int
    default: 20
  socket:
    description: automd's socket on the target.
    type: path
    default: /run/automd.sock
notes:
  - Check mode reads the definition from the host, validates C(params) against its JSON Schema
    and submits nothing. It reports C(changed=true) (a job would be submitted), since whether a
    key has been used before is known only to C(job.submit).
  - With C(--diff), a job that is created is shown as the change (its definition, parameters
    and key).
seealso:
  - module: automd.automd.job_info
author:
  - automd developers
"""

EXAMPLES = r"""
- name: Back up /srv/www on every host, two hosts at a time, stopping at the first failure
  hosts: web
  serial: 2
  max_fail_percentage: 0
  tasks:
    - name: Run the backup job
      automd.automd.job:
        definition: backup
        params:
          source: /srv/www
        run_id: "{{ run_id }}"
        timeout: 1800
      register: backup

    - name: Show where it ran and how it ended
      ansible.builtin.debug:
        msg: "{{ backup.unit }}: {{ backup.state }} ({{ backup.log | last | default('') }})"

- name: Start a job without waiting for it
  automd.automd.job:
    definition: long
    params: {steps: 30}
    idempotency_key: "deploy-2026-12-06"
    wait: false
"""

RETURN = r"""
job_id:
  description: The job's id (26 characters).
  returned: success or failure, once submitted
  type: str
  sample: 01m951w8krpnc51bqcdz0vte25
unit:
  description: The transient systemd unit of its last attempt.
  returned: once submitted
  type: str
  sample: automd-backup-01m951w8krpnc51bqcdz0vte25-1.service
state:
  description: The job's state (queued, running, succeeded, failed, timed_out, cancelled, ...).
  returned: once submitted
  type: str
  sample: succeeded
exit_code:
  description: Exit status of its last attempt's main process, if it exited.
  returned: once submitted
  type: int
  sample: 0
attempts:
  description: Attempts started so far.
  returned: once submitted
  type: int
  sample: 1
idempotent_replay:
  description: True when the idempotency key returned an earlier job (nothing was submitted).
  returned: once submitted
  type: bool
  sample: false
log:
  description: The last C(log_lines) lines of its output.
  returned: once submitted
  type: list
  elements: str
  sample: ["Hello, world!"]
job:
  description: The whole job as automd's C(job.get) returns it.
  returned: once submitted
  type: dict
idempotency_key:
  description: The key used, given or derived (null without one).
  returned: always
  type: str
  sample: "ansible:20261206T0800:backup"
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.automd.automd.plugins.module_utils.automd_rpc import (
    AutomdClient,
    AutomdError,
    schema_problems,
)

_TRUE = ("true", "yes", "1")
_BOOLEAN_WORDS = _TRUE + ("false", "no", "0")


def typed_params(params, schema):
    """Strings for integer and boolean parameters converted by the schema (templating gives
    strings); anything else as given, for automd to judge."""
    typed = {}
    properties = schema.get("properties", {})
    for name, value in params.items():
        kind = properties.get(name, {}).get("type")
        if isinstance(value, str) and kind == "integer" and value.strip().lstrip("-").isdigit():
            value = int(value)
        elif isinstance(value, str) and kind == "boolean" and value.lower() in _BOOLEAN_WORDS:
            value = value.lower() in _TRUE
        typed[name] = value
    return typed


def idempotency_key(args):
    if args["idempotency_key"]:
        return args["idempotency_key"]
    if args["run_id"]:
        return "ansible:%s:%s" % (args["run_id"], args["definition"])
    return None


def outcome(client, got, replayed, log_lines):
    job = got["job"]
    return {
        "job_id": job["id"],
        "unit": job["unit"],
        "state": job["state"],
        "exit_code": job["exit_code"],
        "attempts": job["attempts"],
        "idempotent_replay": replayed,
        "log": client.log_tail(job["id"], log_lines),
        "job": job,
    }


def run(module, client):
    args = module.params
    key = idempotency_key(args)
    definition = client.call("definition.get", {"name": args["definition"]})
    params = typed_params(args["params"], definition["params_schema"])
    problems = schema_problems(definition["params_schema"], params)
    if problems:
        module.fail_json(msg="invalid params: " + "; ".join(problems), idempotency_key=key)
    wanted = {"definition": args["definition"], "params": params, "idempotency_key": key}
    diff = {"before": {}, "after": wanted}
    if module.check_mode:
        module.exit_json(changed=True, idempotency_key=key, diff=diff, params=params)
    request = {"definition": args["definition"], "params": params}
    if key is not None:
        request["idempotency_key"] = key
    submitted = client.call("job.submit", request)
    replayed = bool(submitted["replayed"])
    job_id = submitted["job"]["id"]
    changed = not replayed
    if args["wait"]:
        got = client.wait(job_id, args["timeout"])
    else:
        got = client.call("job.get", {"id": job_id})
    result = outcome(client, got, replayed, args["log_lines"])
    result.update(changed=changed, idempotency_key=key, diff=diff if changed else {})
    state = result["state"]
    if args["wait"] and state not in ("succeeded", "failed", "timed_out", "cancelled", "unknown"):
        if args["cancel_on_timeout"]:
            client.call("job.cancel", {"id": job_id})
        verb = "cancelled" if args["cancel_on_timeout"] else "left running"
        module.fail_json(msg="job %s still %s after %s s; %s" % (job_id, state, args["timeout"], verb), **result)
    if args["wait"] and state != "succeeded":
        module.fail_json(msg="job %s %s (exit code %s)" % (job_id, state, result["exit_code"]), **result)
    module.exit_json(**result)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            definition=dict(type="str", required=True),
            params=dict(type="dict", default={}),
            idempotency_key=dict(type="str", no_log=False),
            run_id=dict(type="str"),
            wait=dict(type="bool", default=True),
            timeout=dict(type="int", default=600),
            cancel_on_timeout=dict(type="bool", default=False),
            log_lines=dict(type="int", default=20),
            socket=dict(type="path", default="/run/automd.sock"),
        ),
        mutually_exclusive=[("idempotency_key", "run_id")],
        supports_check_mode=True,
    )
    client = AutomdClient(module.params["socket"])
    try:
        run(module, client)
    except AutomdError as error:
        module.fail_json(msg=str(error), **error.details())
    finally:
        client.close()


if __name__ == "__main__":
    main()
