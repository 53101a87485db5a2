/* A run form generated from a definition's params_schema (definition.get), and its checks.
 *
 * The checks here are the JSON Schema keywords automd publishes (type, enum, pattern,
 * minimum/maximum, minLength/maxLength, required), so most mistakes show while typing. automd
 * stays the authority: what only it can check (a path under x-allowed-prefixes once
 * normalised) comes back as -32602 and is shown on the same field (showServerErrors).
 */
"use strict";

window.automd = window.automd || {};

(function (automd) {
    const el = automd.ui.el;

    /** The fields for `schema`, built into `container`, and their checks. */
    class RunForm {
        constructor(container, schema) {
            const properties = schema.properties || {};
            const required = new Set(schema.required || []);
            this.fields = {};
            container.replaceChildren();
            for (const name of Object.keys(properties)) {
                const field = buildField(container, name, properties[name], required.has(name));
                const event = field.schema.type === "boolean" ? "change" : "input";
                field.input.addEventListener(event, () => this.check(name));
                this.fields[name] = field;
            }
        }

        /** A field's value as typed: {value}, {empty: true} or {error} (not a number). */
        fieldValue(name) {
            const field = this.fields[name];
            const prop = field.schema;
            if (prop.type === "boolean") {
                return { value: field.input.checked };
            }
            const text = field.input.value;
            if (text === "") {
                return { empty: true };
            }
            if (prop.type === "integer") {
                return /^-?\d+$/.test(text.trim()) ? { value: Number(text.trim()) }
                                                   : { error: "must be a whole number" };
            }
            return { value: text };
        }

        check(name) {
            const field = this.fields[name];
            const got = this.fieldValue(name);
            let message = got.error || null;
            if (!message && got.empty) {
                message = field.required ? "is required" : null;
            } else if (!message) {
                message = violation(field.schema, got.value);
            }
            setError(field, message);
            return message === null;
        }

        /** Check every field; the params to submit, or null when one is invalid. An empty
         *  optional field is left out, so automd applies its default. */
        values() {
            let ok = true;
            const params = {};
            for (const name of Object.keys(this.fields)) {
                ok = this.check(name) && ok;
                const got = this.fieldValue(name);
                if (!got.empty && got.error === undefined) {
                    params[name] = got.value;
                }
            }
            return ok ? params : null;
        }

        /** automd's -32602: `params.<name>` errors onto their fields; the rest (not about a
         *  parameter) is returned for the form's own message. */
        showServerErrors(data) {
            const errors = (data && data.errors) || (data ? [data] : []);
            const unplaced = [];
            for (const error of errors) {
                const field = error.field || "";
                const name = field.replace(/^params\./, "");
                if (field.startsWith("params.") && this.fields[name]) {
                    setError(this.fields[name], error.reason);
                } else {
                    unplaced.push((field ? field + ": " : "") + error.reason);
                }
            }
            return unplaced;
        }
    }

    function buildField(container, name, prop, required) {
        const id = "param-" + name;
        const input = inputFor(id, prop);
        input.name = name;
        const hint = hintFor(prop);
        const helper = el("div", { class: "field-helper", id: id + "-helper" }, hint);
        const error = el("div", { class: "field-error", id: id + "-error", role: "alert" });
        input.setAttribute("aria-describedby", helper.id + " " + error.id);
        const label = el("label", { class: "field-label", for: id }, name,
                         required ? el("span", { class: "required", "aria-hidden": "true" }, " *")
                                  : null);
        const group = el("div", { class: "field", "data-field": name }, label, input,
                         prop.description ? el("div", { class: "field-description" },
                                               prop.description) : null,
                         helper, error);
        container.appendChild(group);
        return { input: input, error: error, group: group, schema: prop, required: required };
    }

    function inputFor(id, prop) {
        if (prop.enum) {
            const select = el("select", { id: id, class: "form-control" });
            for (const option of prop.enum) {
                select.appendChild(el("option", { value: option }, String(option)));
            }
            if (prop.default !== undefined) {
                select.value = prop.default;
            }
            return select;
        }
        if (prop.type === "boolean") {
            const box = el("input", { id: id, type: "checkbox", class: "form-check" });
            box.checked = prop.default === true;
            return box;
        }
        const input = el("input", {
            id: id,
            class: "form-control",
            type: prop.type === "integer" ? "number" : "text",
            autocomplete: "off",
            spellcheck: "false",
        });
        // Native constraint attributes only help the keyboard (spinners, mobile keypads); the
        // messages are ours, from the same schema.
        if (prop.type === "integer") {
            input.min = prop.minimum;
            input.max = prop.maximum;
            input.step = 1;
        }
        if (prop.default !== undefined) {
            input.value = String(prop.default);
        }
        return input;
    }

    function hintFor(prop) {
        const parts = [];
        if (prop.type === "integer") {
            parts.push("a whole number from " + prop.minimum + " to " + prop.maximum);
        } else if (prop["x-allowed-prefixes"]) {
            parts.push("an absolute path under " + prop["x-allowed-prefixes"].join(" or "));
        } else if (prop.type === "string" && !prop.enum) {
            parts.push("up to " + prop.maxLength + " characters");
        }
        if (prop.default !== undefined && prop.type !== "boolean") {
            parts.push("default " + prop.default);
        }
        return parts.join("; ");
    }

    /** What is wrong with `value` under `prop`, or null. */
    function violation(prop, value) {
        if (prop.enum && !prop.enum.includes(value)) {
            return "must be one of " + prop.enum.join(", ");
        }
        if (prop.type === "integer") {
            if (value < prop.minimum || value > prop.maximum) {
                return "must be from " + prop.minimum + " to " + prop.maximum;
            }
            return null;
        }
        if (prop.type === "string") {
            if (prop.minLength !== undefined && value.length < prop.minLength) {
                return "must be at least " + prop.minLength + " characters";
            }
            if (prop.maxLength !== undefined && value.length > prop.maxLength) {
                return "must be at most " + prop.maxLength + " characters";
            }
            if (prop.pattern && !new RegExp(prop.pattern, "u").test(value)) {
                return prop["x-allowed-prefixes"] ? "must be an absolute path"
                                                  : "does not match the pattern " + prop.pattern;
            }
        }
        return null;
    }

    function setError(field, message) {
        field.error.textContent = message ? field.input.name + " " + message : "";
        field.group.classList.toggle("has-error", Boolean(message));
        field.input.setAttribute("aria-invalid", message ? "true" : "false");
    }

    automd.RunForm = RunForm;
})(window.automd);
