/* The jobs view: a live table of job.list, filtered by state and definition, paged by cursor. */
"use strict";

window.automd = window.automd || {};

(function (automd) {
    const ui = automd.ui;
    const el = ui.el;
    const REFRESH_MS = 2000;
    const PAGE_SIZE = 25;

    class JobsView {
        constructor(root) {
            this.root = root;
            this.alert = ui.alerter(root);
            this.stateFilter = root.querySelector("#filter-state");
            this.definitionFilter = root.querySelector("#filter-definition");
            this.body = root.querySelector("#jobs-body");
            this.empty = root.querySelector("#jobs-empty");
            this.next = root.querySelector("#jobs-next");
            this.prev = root.querySelector("#jobs-prev");
            this.cursors = [null]; // the cursor of each page seen; the last is the current one's
            this.nextCursor = null;
            this.timer = null;
            this.loading = false;
            this.latest = 0; // the request whose answer may be shown: a newer one supersedes it

            for (const state of ui.STATES) {
                this.stateFilter.appendChild(el("option", { value: state },
                                                state.replace("_", " ")));
            }
            this.stateFilter.addEventListener("change", () => this.restart());
            this.definitionFilter.addEventListener("change", () => this.restart());
            this.next.addEventListener("click", () => {
                this.cursors.push(this.nextCursor);
                this.refresh(true);
            });
            this.prev.addEventListener("click", () => {
                this.cursors.pop();
                this.refresh(true);
            });
        }

        show() {
            this.loadDefinitions();
            this.refresh(true);
            // automd has no push for the job list: a light poll while the view is shown.
            this.timer = window.setInterval(() => this.refresh(false), REFRESH_MS);
        }

        hide() {
            window.clearInterval(this.timer);
            this.timer = null;
        }

        restart() {
            this.cursors = [null];
            this.refresh(true);
        }

        params() {
            const p = { limit: PAGE_SIZE };
            if (this.stateFilter.value) {
                p.state = [this.stateFilter.value];
            }
            if (this.definitionFilter.value) {
                p.definition = this.definitionFilter.value;
            }
            const cursor = this.cursors[this.cursors.length - 1];
            if (cursor) {
                p.cursor = cursor;
            }
            return p;
        }

        /** Ask for the current page. The periodic refresh skips a turn while an answer is
         *  awaited; a change of filter or page (`now`) asks at once, and an answer to an
         *  older question is then dropped, so the table never shows a stale filter. */
        refresh(now) {
            if (this.loading && !now) {
                return;
            }
            this.loading = true;
            const request = ++this.latest;
            Promise.all([automd.rpc.call("job.list", this.params()), ui.loadUsers()])
                    .then(([result, users]) => {
                        if (request === this.latest) {
                            this.render(result, users);
                        }
                    })
                    .catch(error => {
                        if (request === this.latest) {
                            this.alert(automd.rpc.describe(error));
                        }
                    })
                    .finally(() => {
                        if (request === this.latest) {
                            this.loading = false;
                        }
                    });
        }

        render(result, users) {
            this.body.replaceChildren(...result.jobs.map(job => this.row(job, users)));
            this.empty.hidden = result.jobs.length > 0;
            this.nextCursor = result.next_cursor;
            this.next.disabled = !this.nextCursor;
            this.prev.disabled = this.cursors.length < 2;
            this.root.setAttribute("data-loaded", "true");
            this.alert(null);
        }

        row(job, users) {
            const link = el("a", { href: "#/job/" + job.id, class: "job-link" }, job.id);
            link.addEventListener("click", event => {
                event.preventDefault();
                cockpit.location.go(["job", job.id]);
            });
            const cell = (label, content) => el("td", { "data-label": label }, content);
            return el("tr", { "data-job": job.id, "data-state": job.state },
                      cell("Job", link),
                      cell("State", ui.stateLabel(job.state)),
                      cell("Definition", job.definition),
                      cell("Caller", ui.userName(users, job.caller_uid)),
                      cell("Created", ui.time(job.created_at)),
                      cell("Duration", ui.duration(job.created_at, job.finished_at)),
                      cell("Exit status", ui.exitStatus(job)));
        }

        loadDefinitions() {
            const filter = this.definitionFilter;
            automd.rpc.call("definition.list").then(result => {
                const chosen = filter.value;
                filter.replaceChildren(el("option", { value: "" }, "All definitions"),
                                       ...result.definitions.map(d => el("option",
                                                                         { value: d.name },
                                                                         d.name)));
                filter.value = chosen;
            }).catch(error => this.alert(automd.rpc.describe(error)));
        }
    }

    automd.JobsView = JobsView;
})(window.automd);
