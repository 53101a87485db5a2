/* The audit view (admins): audit.list, newest first, filtered by outcome, paged by cursor. */
"use strict";

window.automd = window.automd || {};

(function (automd) {
    const ui = automd.ui;
    const el = ui.el;
    const PAGE_SIZE = 50;

    function AuditView(root) {
        const body = root.querySelector("#audit-body");
        const outcome = root.querySelector("#audit-outcome");
        const more = root.querySelector("#audit-more");
        let nextCursor = null;

        outcome.addEventListener("change", () => load(null));
        more.addEventListener("click", () => load(nextCursor));

        function load(cursor) {
            const params = { limit: PAGE_SIZE };
            if (outcome.value) {
                params.outcome = outcome.value;
            }
            if (cursor !== null) {
                params.cursor = cursor;
            }
            Promise.all([automd.rpc.call("audit.list", params), ui.loadUsers()])
                    .then(([result, users]) => {
                        if (cursor === null) {
                            body.replaceChildren();
                        }
                        for (const entry of result.entries) {
                            body.appendChild(row(entry, users));
                        }
                        nextCursor = result.next_cursor;
                        more.disabled = nextCursor === null;
                        root.setAttribute("data-loaded", "true");
                        ui.alert(null);
                    })
                    .catch(error => {
                        body.replaceChildren();
                        ui.alert(automd.rpc.describe(error));
                    });
        }

        function row(entry, users) {
            return el("tr", { "data-method": entry.method, "data-uid": String(entry.uid),
                              "data-job": entry.job_id || "" },
                      el("td", { "data-label": "At" }, ui.time(entry.at)),
                      el("td", { "data-label": "Caller" }, ui.userName(users, entry.uid)),
                      el("td", { "data-label": "Process" },
                         (entry.process || "") + (entry.pid ? " [" + entry.pid + "]" : "")),
                      el("td", { "data-label": "Method" }, entry.method),
                      el("td", { "data-label": "Job" },
                         [entry.definition, entry.job_id].filter(Boolean).join(" ")),
                      el("td", { "data-label": "Outcome" },
                         el("span", { class: "outcome outcome-" + entry.outcome },
                            entry.outcome)),
                      el("td", { "data-label": "Detail" }, entry.detail || ""));
        }

        return {
            show() {
                load(null);
            },
            hide() {},
        };
    }

    automd.AuditView = AuditView;
})(window.automd);
