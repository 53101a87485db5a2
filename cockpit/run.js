/* The run view: pick a definition, fill its generated form, submit once.
 *
 * Each form submission has its own idempotency key, made when the form is shown and kept
 * until a submit succeeds: a double click, or a second click after a lost reply, sends the
 * same key, so automd answers with the job already queued (replayed) instead of a second one.
 */
"use strict";

window.automd = window.automd || {};

(function (automd) {
    const ui = automd.ui;
    const el = ui.el;

    function newKey() {
        // getRandomValues works on plain http too (randomUUID needs a secure context).
        const bytes = new Uint8Array(16);
        window.crypto.getRandomValues(bytes);
        return "cockpit-" + Array.from(bytes, b => b.toString(16).padStart(2, "0")).join("");
    }

    class RunView {
        constructor(root) {
            this.alert = ui.alerter(root);
            this.picker = root.querySelector("#run-definition");
            this.description = root.querySelector("#run-description");
            this.fields = root.querySelector("#run-fields");
            this.form = root.querySelector("#run-form");
            this.submit = root.querySelector("#run-submit");
            this.message = root.querySelector("#run-message");
            this.runForm = null;
            this.definition = null;
            this.key = null;
            this.inFlight = false;

            this.picker.addEventListener("change",
                                         () => cockpit.location.go(["run", this.picker.value]));
            this.form.addEventListener("submit", event => {
                event.preventDefault();
                this.send();
            });
        }

        show(name) {
            this.form.removeAttribute("data-ready");
            this.form.hidden = !name;
            this.loadDefinitions(name);
            if (name) {
                this.loadForm(name);
            }
        }

        hide() {}

        loadDefinitions(name) {
            automd.rpc.call("definition.list").then(result => {
                this.picker.replaceChildren(
                    el("option", { value: "" }, "Choose a job definition"),
                    ...result.definitions.map(d => el("option", { value: d.name },
                                                      d.name + " — " + d.description)));
                this.picker.value = name || "";
            }).catch(error => this.alert(automd.rpc.describe(error)));
        }

        loadForm(name) {
            automd.rpc.call("definition.get", { name: name }).then(result => {
                this.definition = result.name;
                this.description.textContent = result.description;
                this.runForm = new automd.RunForm(this.fields, result.params_schema);
                this.key = newKey();
                this.message.textContent = "";
                this.form.setAttribute("data-ready", "true");
            }).catch(error => this.alert(automd.rpc.describe(error)));
        }

        send() {
            this.message.textContent = "";
            const params = this.runForm.values();
            if (params === null) {
                this.message.textContent = "Correct the fields marked above.";
                return;
            }
            if (this.inFlight) {
                return; // this submission is on its way; its reply moves to the job
            }
            this.inFlight = true;
            this.submit.disabled = true;
            const request = { definition: this.definition, params: params };
            automd.rpc.call("job.submit", request, { "Idempotency-Key": this.key })
                    .then(result => {
                        this.key = newKey(); // this submission is done; the next one is new
                        cockpit.location.go(["job", result.job.id]);
                    })
                    .catch(error => this.refused(error))
                    .finally(() => {
                        this.inFlight = false;
                        this.submit.disabled = false;
                    });
        }

        refused(error) {
            if (error.code !== -32602) {
                this.message.textContent = automd.rpc.describe(error);
                return;
            }
            const rest = this.runForm.showServerErrors(error.data);
            this.message.textContent = rest.length ? "automd refused: " + rest.join("; ")
                                                   : "automd refused the fields marked above.";
        }
    }

    automd.RunView = RunView;
})(window.automd);
