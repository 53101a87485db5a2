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

    /** Build the form's fields for `schema` into `container`; returns a RunForm. */
    function RunForm(container, schema) {
        const properties = schema.properties || {};
        const required = new Set(schema.required || []);
        const fields = {};

        container.replaceChildren();
        for (const name of Object.keys(properties)) {
            fields[name] = buildField(container, name, properties[name], required.has(name));
        }

        function fieldValue(name) {
            const field = fields[name];
            const prop = field.schema;
            if (prop.type === "boolean") {
                return { value: field.input.checked };
            }
            const text = field.input.value;
            if (text === "") {
                return { empty: true };
            }
            if (prop.type === "integer") {
                if (!/^-?\d+$/.test(text.trim())) {
                    return { error: "must be a whole number" };
                }
                return { value: Number(text.trim()) };
            }
            return { value: text };
        }

        function check(name) {
            const field = fields[name];
            const got = fieldValue(name);
            let message = got.error || null;
            if (!message && got.empty) {
                message = field.required ? "is required" : null;
            } else if (!message) {
                message = violation(field.schema, got.value);
            }
            setError(field, message);
            return message === null;
        }

        /** Check every field; the params to submit, or null when one is invalid. */
        function values() {
            let ok = true;
            const params = {};
            for (const name of Object.keys(fields)) {
                ok = check(name) && ok;
                const got = fieldValue(name);
                if (!got.empty && got.error === undefined) {
                    params[name] = got.value;
                }
            }
            return ok ? params : null;
        }

        /** automd's -32602: `params.<name>` fields onto their inputs; what is left over
         *  (not a parameter) is returned for the form's own message. */
        function showServerErrors(data) {
            const errors = (data && data.errors) || (data ? [data] : []);
            const unplaced = [];
            for (const error of errors) {
                const name = (error.field || "").replace(/^params\./, "");
                if (error.field && error.field.startsWith("params.") && fields[name]) {
                    setError(fields[name], error.reason);
                } else {
                    unplaced.push((error.field ? error.field + ": " : "") + error.reason);
                }
            }
            return unplaced;
        }

        for (const name of Object.keys(fields)) {
            const event = fields[name].schema.type === "boolean" ? "change" : "input";
            fields[name].input.addEventListener(event, () => check(name));
        }
        return { values: values, showServerErrors: showServerErrors, fields: fields };
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
