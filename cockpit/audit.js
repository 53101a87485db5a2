/* The audit view (admins): audit.list, newest first, filtered by outcome, paged by cursor. */
"use strict";

window.automd = window.automd || {};

(function (automd) {
    const ui = automd.ui;
    const el = ui.el;
    const PAGE_SIZE = 50;

    class AuditView {
        constructor(root) {
            this.root = root;
            this.alert = ui.alerter(root);
            this.body = root.querySelector("#audit-body");
            this.outcome = root.querySelector("#audit-outcome");
            this.more = root.querySelector("#audit-more");
            this.nextCursor = null;
            this.outcome.addEventListener("change", () => this.load(null));
            this.more.addEventListener("click", () => this.load(this.nextCursor));
        }

        show() {
            this.load(null);
        }

        hide() {}

        /** The first page (cursor null), or the page after `cursor` appended to the table. */
        load(cursor) {
            const params = { limit: PAGE_SIZE };
            if (this.outcome.value) {
                params.outcome = this.outcome.value;
            }
            if (cursor !== null) {
                params.cursor = cursor;
            }
            Promise.all([automd.rpc.call("audit.list", params), ui.loadUsers()])
                    .then(([result, users]) => {
                        const rows = result.entries.map(entry => this.row(entry, users));
                        if (cursor === null) {
                            this.body.replaceChildren(...rows);
                        } else {
                            this.body.append(...rows);
                        }
                        this.nextCursor = result.next_cursor;
                        this.more.disabled = this.nextCursor === null;
                        this.root.setAttribute("data-loaded", "true");
                        this.alert(null);
                    })
                    .catch(error => {
                        this.body.replaceChildren();
                        this.alert(automd.rpc.describe(error));
                    });
        }

        row(entry, users) {
            const cell = (label, content) => el("td", { "data-label": label }, content);
            return el("tr", { "data-method": entry.method, "data-uid": String(entry.uid),
                              "data-job": entry.job_id || "" },
                      cell("At", ui.time(entry.at)),
                      cell("Caller", ui.userName(users, entry.uid)),
                      cell("Process",
                           (entry.process || "") + (entry.pid ? " [" + entry.pid + "]" : "")),
                      cell("Method", entry.method),
                      cell("Job", [entry.definition, entry.job_id].filter(Boolean).join(" ")),
                      cell("Outcome", el("span", { class: "outcome outcome-" + entry.outcome },
                                         entry.outcome)),
                      cell("Detail", entry.detail || ""));
        }
    }

    automd.AuditView = AuditView;
})(window.automd);
