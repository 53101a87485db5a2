/* The job view: one job's details and attempts, its output streamed live (job.logs with
 * follow), and cancel and retry. */
"use strict";

window.automd = window.automd || {};

(function (automd) {
    const ui = automd.ui;
    const el = ui.el;
    const REFRESH_MS = 1500;

    class JobView {
        constructor(root) {
            this.root = root;
            this.alert = ui.alerter(root);
            this.title = root.querySelector("#job-title");
            this.facts = root.querySelector("#job-facts");
            this.attempts = root.querySelector("#job-attempts");
            this.output = root.querySelector("#job-output");
            this.outputState = root.querySelector("#job-output-state");
            this.cancel = root.querySelector("#job-cancel");
            this.retry = root.querySelector("#job-retry");
            this.jobId = null;
            this.timer = null;
            this.follow = null;

            this.cancel.addEventListener("click",
                                         () => this.act("job.cancel", "Cancel requested."));
            this.retry.addEventListener("click",
                                        () => this.act("job.retry", "Retry queued.", true));
        }

        show(id) {
            this.jobId = id;
            this.title.textContent = id;
            this.facts.replaceChildren();
            this.attempts.replaceChildren();
            this.root.removeAttribute("data-state");
            this.refresh();
            this.startOutput();
        }

        hide() {
            this.stopOutput();
            window.clearInterval(this.timer);
            this.timer = null;
            this.jobId = null;
        }

        act(method, done, restartOutput) {
            this.cancel.disabled = true;
            this.retry.disabled = true;
            automd.rpc.call(method, { id: this.jobId })
                    .then(result => {
                        this.alert(done, "info");
                        this.render(result.job, null, null);
                        if (restartOutput) {
                            this.startOutput();
                        }
                        this.refresh();
                    })
                    .catch(error => {
                        this.alert(automd.rpc.describe(error));
                        this.refresh();
                    });
        }

        refresh() {
            const id = this.jobId;
            if (id === null) {
                return;
            }
            Promise.all([automd.rpc.call("job.get", { id: id }), ui.loadUsers()])
                    .then(([result, users]) => {
                        if (id === this.jobId) {
                            this.render(result.job, users, result.attempts);
                        }
                    })
                    .catch(error => this.alert(automd.rpc.describe(error)));
        }

        render(job, users, attempts) {
            const final = ui.isFinal(job.state);
            this.title.textContent = job.definition + " " + job.id;
            this.root.setAttribute("data-state", job.state);
            this.cancel.hidden = final;
            this.cancel.disabled = job.cancel_requested;
            this.retry.hidden = !final;
            this.retry.disabled = false;
            if (users) {
                this.renderFacts(job, users);
            }
            if (attempts) {
                this.attempts.replaceChildren(...attempts.map(a => this.attemptRow(a)));
            }
            // The facts follow the job until it has ended; its output has a stream of its own.
            if (final && this.timer !== null) {
                window.clearInterval(this.timer);
                this.timer = null;
            } else if (!final && this.timer === null) {
                this.timer = window.setInterval(() => this.refresh(), REFRESH_MS);
            }
        }

        renderFacts(job, users) {
            const traceId = job.traceparent ? job.traceparent.split("-")[1] : "";
            const rows = [
                ["State", ui.stateLabel(job.state)],
                ["Outcome", job.outcome || (job.cancel_requested ? "cancel requested" : "")],
                ["Result", job.result || ""],
                ["Exit status", ui.exitStatus(job)],
                ["Parameters", JSON.stringify(job.params)],
                ["Caller", ui.userName(users, job.caller_uid)],
                ["Created", ui.time(job.created_at)],
                ["Finished", ui.time(job.finished_at)],
                ["Duration", ui.duration(job.created_at, job.finished_at)],
                ["Attempts", job.attempts + " of " + job.max_attempts],
                ["Unit", job.unit || ""],
                // The definition's revision the job runs (automctl defs history NAME).
                ["Revision", job.revision == null ? "" : String(job.revision)],
                ["Trace id", traceId],
            ];
            this.facts.replaceChildren(...rows.map(([name, value]) => el(
                "div", { class: "fact", "data-fact": name }, el("dt", {}, name), el("dd", {}, value)
            )));
        }

        attemptRow(a) {
            const cell = (label, content) => el("td", { "data-label": label }, content);
            return el("tr", {},
                      cell("Attempt", String(a.number)),
                      cell("Unit", a.unit || ""),
                      cell("State", a.state),
                      cell("Result", a.result || ""),
                      cell("Exit status", ui.exitStatus(a)),
                      cell("Started", ui.time(a.started_at)),
                      cell("Finished", ui.time(a.finished_at)));
        }

        startOutput() {
            this.stopOutput();
            this.output.replaceChildren();
            this.setOutputState("following", "following…");
            const stream = automd.rpc.followLogs({ id: this.jobId }, part => {
                for (const entry of part.entries) {
                    this.output.appendChild(el("div", { class: "line" }, entry.message));
                }
                this.output.scrollTop = this.output.scrollHeight;
            });
            this.follow = stream;
            stream.done.then(result => {
                if (this.follow === stream) {
                    this.follow = null;
                    const finished = result && result.finished;
                    this.setOutputState(finished ? "complete" : "ended",
                                        finished ? "complete" : "stream ended");
                }
            }).catch(error => {
                if (this.follow === stream) {
                    this.follow = null;
                    this.setOutputState("error", automd.rpc.describe(error));
                }
            });
        }

        setOutputState(state, text) {
            this.outputState.textContent = text;
            this.root.setAttribute("data-output", state);
        }

        stopOutput() {
            if (this.follow) {
                const stream = this.follow;
                this.follow = null;
                stream.close();
            }
        }
    }

    automd.JobView = JobView;
})(window.automd);
