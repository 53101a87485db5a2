/* The job view: one job's details and attempts, its output streamed live (job.logs with
 * follow), and cancel and retry. */
"use strict";

window.automd = window.automd || {};

(function (automd) {
    const ui = automd.ui;
    const el = ui.el;
    const REFRESH_MS = 1500;

    function JobView(root) {
        const title = root.querySelector("#job-title");
        const facts = root.querySelector("#job-facts");
        const attempts = root.querySelector("#job-attempts");
        const output = root.querySelector("#job-output");
        const outputState = root.querySelector("#job-output-state");
        const cancel = root.querySelector("#job-cancel");
        const retry = root.querySelector("#job-retry");
        let jobId = null;
        let timer = null;
        let follow = null;
        let job = null;

        cancel.addEventListener("click", () => act("job.cancel", "Cancel requested."));
        retry.addEventListener("click", () => act("job.retry", "Retry queued.", true));

        function act(method, done, restartOutput) {
            cancel.disabled = true;
            retry.disabled = true;
            automd.rpc.call(method, { id: jobId })
                    .then(result => {
                        ui.alert(done, "info");
                        render(result.job, null);
                        if (restartOutput) {
                            startOutput();
                        }
                        refresh();
                    })
                    .catch(error => {
                        ui.alert(automd.rpc.describe(error));
                        refresh();
                    });
        }

        function refresh() {
            const id = jobId;
            Promise.all([automd.rpc.call("job.get", { id: id }), ui.loadUsers()])
                    .then(([result, users]) => {
                        if (id === jobId) {
                            render(result.job, users, result.attempts);
                        }
                    })
                    .catch(error => ui.alert(automd.rpc.describe(error)));
        }

        function render(view, users, attemptList) {
            job = view;
            title.textContent = view.definition + " " + view.id;
            root.setAttribute("data-state", view.state);
            cancel.hidden = ui.isFinal(view.state);
            cancel.disabled = view.cancel_requested;
            retry.hidden = !ui.isFinal(view.state);
            retry.disabled = false;
            if (users) {
                renderFacts(view, users);
            }
            if (attemptList) {
                renderAttempts(attemptList);
            }
            if (ui.isFinal(view.state) && timer !== null) {
                window.clearInterval(timer);
                timer = null;
            } else if (!ui.isFinal(view.state) && timer === null) {
                timer = window.setInterval(refresh, REFRESH_MS);
            }
        }

        function renderFacts(view, users) {
            const traceId = view.traceparent ? view.traceparent.split("-")[1] : "";
            const rows = [
                ["State", ui.stateLabel(view.state)],
                ["Outcome", view.outcome || (view.cancel_requested ? "cancel requested" : "")],
                ["Result", view.result || ""],
                ["Exit status", ui.exitStatus(view)],
                ["Parameters", JSON.stringify(view.params)],
                ["Caller", ui.userName(users, view.caller_uid)],
                ["Created", ui.time(view.created_at)],
                ["Finished", ui.time(view.finished_at)],
                ["Duration", ui.duration(view.created_at, view.finished_at)],
                ["Attempts", view.attempts + " of " + view.max_attempts],
                ["Unit", view.unit || ""],
                ["Trace id", traceId],
            ];
            facts.replaceChildren();
            for (const [name, value] of rows) {
                facts.appendChild(el("div", { class: "fact", "data-fact": name },
                                     el("dt", {}, name),
                                     el("dd", {}, value)));
            }
        }

        function renderAttempts(list) {
            attempts.replaceChildren();
            for (const a of list) {
                attempts.appendChild(el("tr", {},
                                        el("td", { "data-label": "Attempt" }, String(a.number)),
                                        el("td", { "data-label": "Unit" }, a.unit || ""),
                                        el("td", { "data-label": "State" }, a.state),
                                        el("td", { "data-label": "Result" }, a.result || ""),
                                        el("td", { "data-label": "Exit status" },
                                           ui.exitStatus(a)),
                                        el("td", { "data-label": "Started" },
                                           ui.time(a.started_at)),
                                        el("td", { "data-label": "Finished" },
                                           ui.time(a.finished_at))));
            }
        }

        function startOutput() {
            stopOutput();
            output.replaceChildren();
            outputState.textContent = "following…";
            root.setAttribute("data-output", "following");
            const stream = automd.rpc.followLogs({ id: jobId }, part => {
                for (const entry of part.entries) {
                    output.appendChild(el("div", { class: "line" }, entry.message));
                }
                output.scrollTop = output.scrollHeight;
            });
            follow = stream;
            stream.done.then(result => {
                if (follow !== stream) {
                    return;
                }
                follow = null;
                const finished = result && result.finished;
                outputState.textContent = finished ? "complete" : "stream ended";
                root.setAttribute("data-output", finished ? "complete" : "ended");
            }).catch(error => {
                if (follow === stream) {
                    outputState.textContent = automd.rpc.describe(error);
                    root.setAttribute("data-output", "error");
                }
            });
        }

        function stopOutput() {
            if (follow) {
                const stream = follow;
                follow = null;
                stream.close();
            }
        }

        return {
            show(id) {
                jobId = id;
                job = null;
                title.textContent = id;
                facts.replaceChildren();
                attempts.replaceChildren();
                root.removeAttribute("data-state");
                refresh();
                startOutput();
            },
            hide() {
                stopOutput();
                window.clearInterval(timer);
                timer = null;
                jobId = null;
            },
            current: () => job,
        };
    }

    automd.JobView = JobView;
})(window.automd);
