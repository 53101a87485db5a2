/* The page's router: which view the location (cockpit.location, the URL's hash) shows, and
 * the tabs between them.
 *
 *   /            jobs            /job/<id>   one job            /run[/<definition>]   run form
 *   /schedules   the schedules and their timers          /audit      the audit trail (admins)
 */
"use strict";

window.automd = window.automd || {};

(function (automd) {
    const ADMIN_GROUP = "automd-admin";

    function start() {
        const views = {
            jobs: new automd.JobsView(document.getElementById("view-jobs")),
            job: new automd.JobView(document.getElementById("view-job")),
            run: new automd.RunView(document.getElementById("view-run")),
            schedules: new automd.SchedulesView(document.getElementById("view-schedules")),
            audit: new automd.AuditView(document.getElementById("view-audit")),
        };
        let current = null;

        function route() {
            const path = cockpit.location.path;
            const name = path[0] === "job" && path[1] ? "job"
                : ["run", "schedules", "audit"].includes(path[0]) ? path[0] : "jobs";
            if (current) {
                views[current].hide();
            }
            automd.ui.alert(null);
            for (const section of document.querySelectorAll("[data-view]")) {
                section.hidden = section.getAttribute("data-view") !== name;
            }
            for (const tab of document.querySelectorAll("[data-tab]")) {
                const active = tab.getAttribute("data-tab") === (name === "job" ? "jobs" : name);
                tab.classList.toggle("active", active);
                tab.setAttribute("aria-current", active ? "page" : "false");
            }
            current = name;
            views[name].show(path[1]);
        }

        for (const tab of document.querySelectorAll("[data-tab]")) {
            tab.addEventListener("click", event => {
                event.preventDefault();
                const target = tab.getAttribute("data-tab");
                cockpit.location.go(target === "jobs" ? [] : [target]);
            });
        }

        // The audit tab is offered to members of automd-admin (the shipped polkit rules' admins)
        // and root; anyone may still open #/audit, and a denial is shown as such. Asking
        // audit.list up front instead would put a denial into the audit trail on every visit.
        cockpit.user().then(user => {
            const admin = user.id === 0 || (user.groups || []).includes(ADMIN_GROUP);
            document.getElementById("tab-audit").hidden = !admin;
            document.getElementById("whoami").textContent = user.name;
        });

        cockpit.addEventListener("locationchanged", route);
        route();
        document.body.removeAttribute("hidden");
    }

    document.addEventListener("DOMContentLoaded", start);
})(window.automd);
