#!/usr/bin/python
# -*- coding: utf-8 -*-
# MIT License (see automd's repository)
"""automd.automd.job_info: read automd's jobs, definitions and schedules on the target."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: job_info
short_description: Read automd's jobs, job definitions and schedules on the target host
version_added: "0.1.0"
description:
  - Reads from automd on the target host over its Unix socket, as the user the module runs as
    (automd shows a user their own jobs; administrators see everyone's).
  - With C(id), one job with its attempts and events; else a page of jobs, newest first,
    filtered by C(state) and C(definition). With C(definitions), the job definitions; with
    C(schedules), the schedules, where this automd has them.
  - Changes nothing; runs the same in check mode.
options:
  id:
    description: One job's id.
    type: str
  state:
    description: Only jobs in these states.
    type: list
    elements: str
    choices: [queued, starting, running, waiting_retry, succeeded, failed, timed_out, cancelled, unknown]
  definition:
    description: Only jobs of this definition; with C(definitions), only this definition.
    type: str
  limit:
    description: At most this many jobs (1 to 500).
    type: int
    default: 50
  definitions:
    description: Return the job definitions (with their parameters' JSON Schema).
    type: bool
    default: false
  schedules:
    description: Return the schedules (fails on an automd without schedules).
    type: bool
    default: false
  log_lines:
    description: With C(id), also the last lines of the job's output.
    type: int
    default: 0
  socket:
    description: automd's socket on the target.
    type: path
    default: /run/automd.sock
seealso:
  - module: automd.automd.job
author:
  - automd developers
"""

EXAMPLES = r"""
- name: Failed backups on this host
  automd.automd.job_info:
    definition: backup
    state: [failed, timed_out]
  register: failed_backups

- name: One job, with its output's last 50 lines
  automd.automd.job_info:
    id: "{{ backup.job_id }}"
    log_lines: 50

- name: Which jobs does this host allow?
  automd.automd.job_info:
    definitions: true
  register: allowed
"""

RETURN = r"""
job:
  description: With C(id), the job as C(job.get) returns it, plus its attempts and events.
  returned: when id is given
  type: dict
log:
  description: With C(id) and C(log_lines), the last lines of its output.
  returned: when id is given
  type: list
  elements: str
jobs:
  description: Jobs, newest first, as C(job.list) returns them.
  returned: when id is not given
  type: list
  elements: dict
definitions:
  description: Job definitions as C(definition.list) (or C(definition.get)) returns them.
  returned: when definitions is true
  type: list
  elements: dict
schedules:
  description: Schedules as C(schedule.list) returns them.
  returned: when schedules is true
  type: list
  elements: dict
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.automd.automd.plugins.module_utils.automd_rpc import (
    METHOD_NOT_FOUND,
    AutomdClient,
    AutomdError,
)

STATES = ["queued", "starting", "running", "waiting_retry", "succeeded", "failed", "timed_out",
          "cancelled", "unknown"]


def read(module, client):
    args = module.params
    result = {"changed": False}
    if args["id"]:
        got = client.call("job.get", {"id": args["id"]})
        result["job"] = dict(got["job"], attempts_detail=got["attempts"], events=got["events"])
        result["log"] = client.log_tail(args["id"], args["log_lines"])
    else:
        query = {"limit": args["limit"]}
        if args["state"]:
            query["state"] = args["state"]
        if args["definition"] and not args["definitions"]:
            query["definition"] = args["definition"]
        result["jobs"] = client.call("job.list", query)["jobs"]
    if args["definitions"]:
        if args["definition"]:
            result["definitions"] = [client.call("definition.get", {"name": args["definition"]})]
        else:
            result["definitions"] = client.call("definition.list")["definitions"]
    if args["schedules"]:
        try:
            result["schedules"] = client.call("schedule.list")["schedules"]
        except AutomdError as error:
            if error.code == METHOD_NOT_FOUND:
                module.fail_json(msg="this automd has no schedules (schedule.list unknown)")
            raise
    return result


def main():
    module = AnsibleModule(
        argument_spec=dict(
            id=dict(type="str"),
            state=dict(type="list", elements="str", choices=STATES),
            definition=dict(type="str"),
            limit=dict(type="int", default=50),
            definitions=dict(type="bool", default=False),
            schedules=dict(type="bool", default=False),
            log_lines=dict(type="int", default=0),
            socket=dict(type="path", default="/run/automd.sock"),
        ),
        supports_check_mode=True,
    )
    client = AutomdClient(module.params["socket"])
    try:
        module.exit_json(**read(module, client))
    except AutomdError as error:
        module.fail_json(msg=str(error), **error.details())
    finally:
        client.close()


if __name__ == "__main__":
    main()
