/* automd's JSON-RPC over /run/automd.sock, through the bridge of the logged-in user.
 *
 * cockpit.http() opens the Unix socket from this session's cockpit-bridge, which runs as the
 * user who logged in, so automd reads that user's uid from SO_PEERCRED: polkit and the audit
 * trail see the person, never root. Never pass `superuser` here: the bridge would connect as
 * root and automd would see root instead of the caller.
 */
"use strict";

window.automd = window.automd || {};

(function (automd) {
    const SOCKET = "/run/automd.sock";
    let nextId = 1;

    /** A JSON-RPC error from automd, or a transport failure (code null). */
    class RpcError extends Error {
        constructor(code, message, data, method) {
            super(message);
            this.code = code;
            this.data = data === undefined ? null : data;
            this.method = method;
        }
    }

    function connection() {
        // One channel per request: the bridge closes it with the reply.
        return cockpit.http(SOCKET);
    }

    function transportError(ex, method) {
        // cockpit's problem codes: "not-found" (no socket), "access-denied" (not in group
        // automd), "disconnected"; an HTTP status for a reply that is not JSON-RPC.
        const problem = ex && (ex.problem || ex.status) ? ex.problem || String(ex.status) : "";
        return new RpcError(null, cockpit.message(ex), { problem: problem }, method);
    }

    function parseReply(body, method) {
        let reply;
        try {
            reply = JSON.parse(body);
        } catch (ex) {
            throw new RpcError(null, "automd sent a reply that is not JSON", null, method);
        }
        if (reply.error) {
            throw new RpcError(reply.error.code, reply.error.message, reply.error.data, method);
        }
        return reply.result;
    }

    /** Call `method` with `params`; resolves with the result, rejects with an RpcError. */
    function call(method, params, headers) {
        const request = { jsonrpc: "2.0", method: method, params: params || {}, id: nextId++ };
        return new Promise((resolve, reject) => {
            connection()
                    .post("/rpc", request, headers || {})
                    .then(body => {
                        try {
                            resolve(parseReply(body, method));
                        } catch (ex) {
                            reject(ex);
                        }
                    })
                    .catch((ex, body) => {
                        // A transport-level refusal (413, 503...) still carries a JSON-RPC error.
                        try {
                            resolve(parseReply(body, method));
                        } catch (parsed) {
                            reject(parsed.code !== null ? parsed : transportError(ex, method));
                        }
                    });
        });
    }

    /** job.logs with follow: calls onEntries(params) for every notification as it arrives.
     *  Returns {done: Promise of the final result, close()}. The reply is NDJSON, one
     *  JSON-RPC message per line (docs/api.md, Following logs). */
    function followLogs(params, onEntries) {
        const request = {
            jsonrpc: "2.0",
            method: "job.logs",
            params: Object.assign({}, params, { follow: true }),
            id: nextId++,
        };
        let final = null;
        const req = connection().request({
            method: "POST",
            path: "/rpc",
            body: JSON.stringify(request),
            headers: { "Content-Type": "application/json" },
        });
        req.stream(data => {
            // Only whole lines are used; returning how much was consumed keeps the rest.
            const end = data.lastIndexOf("\n");
            if (end < 0) {
                return 0;
            }
            for (const line of data.substring(0, end).split("\n")) {
                if (!line) {
                    continue;
                }
                const message = JSON.parse(line);
                if (message.method === "job.logs.entries") {
                    onEntries(message.params);
                } else {
                    final = message;
                }
            }
            return end + 1;
        });
        const done = new Promise((resolve, reject) => {
            req.then(() => {
                if (final && final.error) {
                    reject(new RpcError(final.error.code, final.error.message, final.error.data,
                                        "job.logs"));
                } else {
                    resolve(final ? final.result : null);
                }
            }).catch((ex, body) => {
                try {
                    resolve(parseReply(body, "job.logs"));
                } catch (parsed) {
                    reject(parsed.code !== null ? parsed : transportError(ex, "job.logs"));
                }
            });
        });
        return { done: done, close: () => req.close() };
    }

    const PERMISSIONS = {
        "org.automd.read": "see jobs",
        "org.automd.run": "run this job",
        "org.automd.cancel": "cancel jobs",
        "org.automd.admin": "administer automd (everyone's jobs, the audit trail)",
    };

    const DONE = { cancel: "cancelled", retry: "retried" };

    /** One clear sentence for an error, for the person looking at the page. */
    function describe(error) {
        const data = error.data || {};
        switch (error.code) {
        case null:
        case undefined:
            if (data.problem === "not-found") {
                return "automd is not reachable: /run/automd.sock does not exist " +
                       "(is automd installed and automd.socket started?).";
            }
            if (data.problem === "access-denied") {
                return "automd is not reachable: you may not open /run/automd.sock " +
                       "(only root and members of group automd may).";
            }
            return "automd is not reachable: " + error.message;
        case 1007:
            return "Not authorized: you may not " + (PERMISSIONS[data.action] || data.action) +
                   " (polkit denied " + data.action + ").";
        case 1005:
            return "automd's queue is full (" + data.max_unfinished_jobs + " unfinished jobs): " +
                   "try again once some have finished.";
        case 1008:
            return "automd could not record the request (" + data.reason + "): nothing was done.";
        case 1001:
            return "There is no job definition named " + data.definition + ".";
        case 1009:
            return "There is no schedule " + data.definition + ":" + data.schedule + ".";
        case 1002:
            return "There is no job " + data.id + " (or it is not yours).";
        case 1003:
            return "The job is " + data.state + ": it cannot be " +
                   (DONE[data.operation] || data.operation) + ".";
        case 1004:
            return "This idempotency key was already used for another request (job " +
                   data.job + ").";
        case 1006:
            return "systemd refused or could not be reached: " + data.reason;
        case -32000:
            return "automd is busy (too many connections or log followers): try again shortly.";
        case -32602:
            return "Invalid input: " + (data.field ? data.field + " " : "") + (data.reason || "");
        default:
            return "automd answered " + error.code + ": " + error.message;
        }
    }

    automd.rpc = { call: call, followLogs: followLogs, describe: describe, RpcError: RpcError };
})(window.automd);
