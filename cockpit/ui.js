/* Small DOM and formatting helpers shared by the views: elements, times, states, users. */
"use strict";

window.automd = window.automd || {};

(function (automd) {
    /** An element with attributes and children (strings become text nodes, nulls are skipped).
     *  Text is always set as text, never as HTML: job output and parameters are untrusted. */
    function el(tag, attrs, ...children) {
        const node = document.createElement(tag);
        for (const [name, value] of Object.entries(attrs || {})) {
            if (value !== null && value !== undefined && value !== false) {
                node.setAttribute(name, value === true ? "" : value);
            }
        }
        for (const child of children) {
            if (child === null || child === undefined) {
                continue;
            }
            node.appendChild(typeof child === "string" ? document.createTextNode(child) : child);
        }
        return node;
    }

    const FINAL_STATES = ["succeeded", "failed", "timed_out", "cancelled", "unknown"];
    const STATES = ["queued", "starting", "running", "waiting_retry", ...FINAL_STATES];

    function isFinal(state) {
        return FINAL_STATES.includes(state);
    }

    function stateLabel(state) {
        return el("span", { class: "state state-" + state, "data-state": state },
                  state.replace("_", " "));
    }

    function time(iso) {
        if (!iso) {
            return "";
        }
        const date = new Date(iso);
        return date.toLocaleString(undefined, {
            year: "numeric", month: "2-digit", day: "2-digit",
            hour: "2-digit", minute: "2-digit", second: "2-digit",
        });
    }

    /** "1.2 s", "3 min 4 s", "2 h 5 min" */
    function duration(fromIso, toIso) {
        if (!fromIso) {
            return "";
        }
        const ms = (toIso ? new Date(toIso) : new Date()) - new Date(fromIso);
        const s = Math.max(0, ms / 1000);
        if (s < 60) {
            return s.toFixed(1) + " s";
        }
        if (s < 3600) {
            return Math.floor(s / 60) + " min " + Math.floor(s % 60) + " s";
        }
        return Math.floor(s / 3600) + " h " + Math.floor((s % 3600) / 60) + " min";
    }

    /** How a job ended, in a few words: exit status, signal or automd's outcome. */
    function exitStatus(job) {
        if (job.exit_code !== null && job.exit_code !== undefined) {
            return "exit " + job.exit_code;
        }
        if (job.signal) {
            return "signal " + job.signal;
        }
        return "";
    }

    // uid -> user name, read once from /etc/passwd with the user's own rights.
    let users = null;
    function loadUsers() {
        if (users === null) {
            users = cockpit.file("/etc/passwd").read()
                    .then(text => {
                        const map = {};
                        for (const line of (text || "").split("\n")) {
                            const fields = line.split(":");
                            if (fields.length > 2) {
                                map[fields[2]] = fields[0];
                            }
                        }
                        return map;
                    })
                    .catch(() => ({}));
        }
        return users;
    }

    function userName(map, uid) {
        if (uid === null || uid === undefined) {
            return "";
        }
        return map[String(uid)] ? map[String(uid)] + " (" + uid + ")" : String(uid);
    }

    /** Show `message` in the page's alert area (kind: "danger", "info", "success"). */
    function alert(message, kind) {
        const area = document.getElementById("alerts");
        area.replaceChildren();
        if (message) {
            const classes = "alert alert-" + (kind || "danger");
            area.appendChild(el("div", { class: classes, role: "alert" }, message));
        }
    }

    /** A view's own alert(): heard only while its section is shown. An answer that arrives
     *  after the user moved on (a job list loaded late, say) must neither clear nor replace
     *  what the view now shown says. */
    function alerter(section) {
        return (message, kind) => {
            if (!section.hidden) {
                alert(message, kind);
            }
        };
    }

    automd.ui = {
        el: el,
        STATES: STATES,
        isFinal: isFinal,
        stateLabel: stateLabel,
        time: time,
        duration: duration,
        exitStatus: exitStatus,
        loadUsers: loadUsers,
        userName: userName,
        alert: alert,
        alerter: alerter,
    };
})(window.automd);
