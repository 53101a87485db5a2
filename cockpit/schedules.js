/* The schedules view: schedule.list as `systemctl list-timers` shows timers (next and last
 * elapse, time left, the last job), with a "Run now" per schedule (schedule.run_now). */
"use strict";

window.automd = window.automd || {};

(function (automd) {
    const ui = automd.ui;
    const el = ui.el;
    // The "Left" column counts down and a timer's next elapse moves once it fired: a light
    // poll while the view is shown, as the jobs view does.
    const REFRESH_MS = 5000;

    function key(schedule) {
        return schedule.definition + ":" + schedule.name;
    }

    /** How long until `iso`, in the largest units that say it: "3 min 4 s", "5 d 2 h". */
    function left(iso) {
        const days = (new Date(iso) - new Date()) / 86400000;
        if (days < 1) {
            return ui.duration(new Date().toISOString(), iso);
        }
        return days >= 365 ? Math.floor(days / 365.25) + " years"
            : Math.floor(days) + " d " + Math.floor((days % 1) * 24) + " h";
    }

    function jobLink(id) {
        const link = el("a", { href: "#/job/" + id, class: "job-link" }, id);
        link.addEventListener("click", event => {
            event.preventDefault();
            cockpit.location.go(["job", id]);
        });
        return link;
    }

    class SchedulesView {
        constructor(root) {
            this.root = root;
            this.alert = ui.alerter(root);
            this.body = root.querySelector("#schedules-body");
            this.empty = root.querySelector("#schedules-empty");
            this.timer = null;
            // What the last "Run now" of each schedule did, kept across refreshes of the table.
            this.outcomes = new Map();
        }

        show() {
            this.refresh();
            this.timer = window.setInterval(() => this.refresh(), REFRESH_MS);
        }

        hide() {
            window.clearInterval(this.timer);
            this.timer = null;
        }

        refresh() {
            automd.rpc.call("schedule.list")
                    .then(result => this.render(result.schedules))
                    .catch(error => this.alert(automd.rpc.describe(error)));
        }

        render(schedules) {
            this.body.replaceChildren(...schedules.map(s => this.row(s)));
            this.empty.hidden = schedules.length > 0;
            this.root.setAttribute("data-loaded", "true");
        }

        row(s) {
            const cell = (label, content) => el("td", { "data-label": label }, content);
            const last = s.last_job
                ? el("span", { class: "last-job" }, jobLink(s.last_job), " ",
                     s.last_state ? ui.stateLabel(s.last_state) : null)
                : "";
            return el("tr", { "data-schedule": key(s) },
                      cell("Schedule", key(s)),
                      cell("Calendar", el("code", {}, s.calendar)),
                      cell("Next", ui.time(s.next_elapse)),
                      cell("Left", s.next_elapse ? left(s.next_elapse) : ""),
                      cell("Last", ui.time(s.last_trigger)),
                      cell("Last job", last),
                      cell("Enabled", s.enabled ? "yes" : "no"),
                      cell("Overlap", s.overlap),
                      cell("Run", this.runCell(s)));
        }

        runCell(s) {
            const button = el("button", { type: "button", class: "btn btn-secondary run-now" },
                              "Run now");
            button.addEventListener("click", () => this.runNow(s, button));
            return el("span", { class: "run-cell" }, button, this.outcome(key(s)));
        }

        /** What the last "Run now" of the schedule did: a link to its job, or why not. */
        outcome(name) {
            const done = this.outcomes.get(name);
            if (!done) {
                return null;
            }
            if (done.error) {
                return el("span", { class: "run-outcome run-error", role: "alert" }, done.error);
            }
            if (!done.job) {
                return el("span", { class: "run-outcome" }, done.detail);
            }
            return el("span", { class: "run-outcome" }, "started ", jobLink(done.job));
        }

        runNow(s, button) {
            button.disabled = true;
            const params = { definition: s.definition, schedule: s.name };
            automd.rpc.call("schedule.run_now", params)
                    .then(result => this.outcomes.set(key(s), {
                        job: result.outcome === "created" && result.job ? result.job.id : null,
                        detail: result.outcome + (result.detail ? ": " + result.detail : ""),
                    }))
                    .catch(error => this.outcomes.set(key(s),
                                                      { error: automd.rpc.describe(error) }))
                    .finally(() => this.refresh());
        }
    }

    automd.SchedulesView = SchedulesView;
})(window.automd);
