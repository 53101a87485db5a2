/* The jobs view: a live table of job.list, filtered by state and definition, paged by cursor. */
"use strict";

window.automd = window.automd || {};

(function (automd) {
    const ui = automd.ui;
    const el = ui.el;
    const REFRESH_MS = 2000;
    const PAGE_SIZE = 25;

    function JobsView(root) {
        const stateFilter = root.querySelector("#filter-state");
        const definitionFilter = root.querySelector("#filter-definition");
        const body = root.querySelector("#jobs-body");
        const empty = root.querySelector("#jobs-empty");
        const next = root.querySelector("#jobs-next");
        const prev = root.querySelector("#jobs-prev");
        let cursors = [null]; // cursor of each page seen; the last is the current page's
        let nextCursor = null;
        let timer = null;
        let loading = false;
        let latest = 0; // the request whose answer may be shown: a newer one supersedes it

        for (const state of ui.STATES) {
            stateFilter.appendChild(el("option", { value: state }, state.replace("_", " ")));
        }
        stateFilter.addEventListener("change", restart);
        definitionFilter.addEventListener("change", restart);
        next.addEventListener("click", () => {
            cursors.push(nextCursor);
            refresh(true);
        });
        prev.addEventListener("click", () => {
            cursors.pop();
            refresh(true);
        });

        function restart() {
            cursors = [null];
            refresh(true);
        }

        function params() {
            const p = { limit: PAGE_SIZE };
            if (stateFilter.value) {
                p.state = [stateFilter.value];
            }
            if (definitionFilter.value) {
                p.definition = definitionFilter.value;
            }
            const cursor = cursors[cursors.length - 1];
            if (cursor) {
                p.cursor = cursor;
            }
            return p;
        }

        /** Ask for the current page. The periodic refresh skips a turn while an answer is
         *  awaited; a change of filter or page (`now`) asks at once, and an answer to an
         *  older question is then dropped, so the table never shows a stale filter. */
        function refresh(now) {
            if (loading && !now) {
                return;
            }
            loading = true;
            const request = ++latest;
            Promise.all([automd.rpc.call("job.list", params()), ui.loadUsers()])
                    .then(([result, users]) => {
                        if (request !== latest) {
                            return;
                        }
                        render(result.jobs, users);
                        nextCursor = result.next_cursor;
                        next.disabled = !nextCursor;
                        prev.disabled = cursors.length < 2;
                        root.setAttribute("data-loaded", "true");
                        ui.alert(null);
                    })
                    .catch(error => {
                        if (request === latest) {
                            ui.alert(automd.rpc.describe(error));
                        }
                    })
                    .finally(() => {
                        if (request === latest) {
                            loading = false;
                        }
                    });
        }

        function render(jobs, users) {
            body.replaceChildren();
            for (const job of jobs) {
                const link = el("a", { href: "#/job/" + job.id, class: "job-link" },
                                job.id);
                link.addEventListener("click", event => {
                    event.preventDefault();
                    cockpit.location.go(["job", job.id]);
                });
                body.appendChild(el("tr", { "data-job": job.id, "data-state": job.state },
                                    cell("Job", link),
                                    cell("State", ui.stateLabel(job.state)),
                                    cell("Definition", job.definition),
                                    cell("Caller", ui.userName(users, job.caller_uid)),
                                    cell("Created", ui.time(job.created_at)),
                                    cell("Duration", ui.duration(job.created_at, job.finished_at)),
                                    cell("Exit status", ui.exitStatus(job))));
            }
            empty.hidden = jobs.length > 0;
        }

        function cell(label, content) {
            return el("td", { "data-label": label }, content);
        }

        function loadDefinitions() {
            automd.rpc.call("definition.list").then(result => {
                const chosen = definitionFilter.value;
                definitionFilter.replaceChildren(el("option", { value: "" }, "All definitions"));
                for (const definition of result.definitions) {
                    definitionFilter.appendChild(el("option", { value: definition.name },
                                                    definition.name));
                }
                definitionFilter.value = chosen;
            }).catch(error => ui.alert(automd.rpc.describe(error)));
        }

        return {
            show() {
                loadDefinitions();
                refresh();
                // automd has no push for the job list: a light poll while the view is shown.
                timer = window.setInterval(refresh, REFRESH_MS);
            },
            hide() {
                window.clearInterval(timer);
                timer = null;
            },
        };
    }

    automd.JobsView = JobsView;
})(window.automd);
