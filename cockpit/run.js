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

    function RunView(root) {
        const picker = root.querySelector("#run-definition");
        const description = root.querySelector("#run-description");
        const fieldsBox = root.querySelector("#run-fields");
        const form = root.querySelector("#run-form");
        const submit = root.querySelector("#run-submit");
        const message = root.querySelector("#run-message");
        let runForm = null;
        let definition = null;
        let key = null;
        let inFlight = null;

        picker.addEventListener("change", () => cockpit.location.go(["run", picker.value]));
        form.addEventListener("submit", event => {
            event.preventDefault();
            send();
        });

        function load(name) {
            automd.rpc.call("definition.list").then(result => {
                picker.replaceChildren(el("option", { value: "" }, "Choose a job definition"));
                for (const d of result.definitions) {
                    picker.appendChild(el("option", { value: d.name }, d.name + " — " +
                                          d.description));
                }
                picker.value = name || "";
            }).catch(error => ui.alert(automd.rpc.describe(error)));
            form.hidden = !name;
            if (!name) {
                return;
            }
            automd.rpc.call("definition.get", { name: name }).then(result => {
                definition = result.name;
                description.textContent = result.description;
                runForm = automd.RunForm(fieldsBox, result.params_schema);
                key = newKey();
                message.textContent = "";
                form.setAttribute("data-ready", "true");
            }).catch(error => ui.alert(automd.rpc.describe(error)));
        }

        function send() {
            message.textContent = "";
            const params = runForm.values();
            if (params === null) {
                message.textContent = "Correct the fields marked above.";
                return;
            }
            if (inFlight) {
                return; // the same submission is on its way; its reply will navigate
            }
            submit.disabled = true;
            inFlight = automd.rpc.call("job.submit",
                                       { definition: definition, params: params },
                                       { "Idempotency-Key": key })
                    .then(result => {
                        key = newKey(); // this submission is done; the next one is new
                        cockpit.location.go(["job", result.job.id]);
                    })
                    .catch(error => {
                        if (error.code === -32602) {
                            const rest = runForm.showServerErrors(error.data);
                            message.textContent = rest.length ? "automd refused: " +
                                rest.join("; ") : "automd refused the fields marked above.";
                        } else {
                            message.textContent = automd.rpc.describe(error);
                        }
                    })
                    .finally(() => {
                        inFlight = null;
                        submit.disabled = false;
                    });
        }

        return {
            show(name) {
                form.removeAttribute("data-ready");
                load(name);
            },
            hide() {},
        };
    }

    automd.RunView = RunView;
})(window.automd);
