//! The readable page of the OpenAPI document (`GET /docs`): plain HTML and CSS rendered from
//! the document itself, so the page cannot disagree with it and needs nothing from a network.

use std::fmt::Write as _;

use serde_json::{Map, Value};

const METHODS: [&str; 5] = ["get", "post", "put", "patch", "delete"];

const STYLE: &str = "body{font:15px/1.5 system-ui,sans-serif;max-width:70em;margin:auto;\
padding:1em 2em;color:#222}code{background:#f3f3f3;padding:0 .2em}table{border-collapse:\
collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:.2em .5em;text-align:left;\
vertical-align:top}section.op{border-top:1px solid #ddd;margin-top:1.5em}.m{font-weight:bold;\
text-transform:uppercase;padding:.1em .4em;color:#fff;background:#456}.get{background:#2a7}\
.post{background:#27a}.patch{background:#a72}.delete{background:#a33}nav li{list-style:none}";

/// The whole page.
pub fn render(doc: &Value) -> String {
    let info = &doc["info"];
    let title = text(&info["title"]);
    let mut out = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{t}</title>\
         <style>{STYLE}</style></head><body><h1>{t} <small>API {v}</small></h1>\
         <p>The OpenAPI 3.1 document: <a href=\"/openapi.json\"><code>/openapi.json</code></a>.</p>",
        t = escape(title),
        v = escape(text(&info["version"])),
    );
    out.push_str(&markdown(text(&info["description"])));
    let operations = operations(doc);
    out.push_str("<h2>Routes</h2><nav><ul>");
    for (method, path, op) in &operations {
        let _ = write!(
            out,
            "<li><a href=\"#{id}\"><span class=\"m {method}\">{method}</span> <code>{p}</code></a> {s}</li>",
            id = escape(text(&op["operationId"])),
            p = escape(path),
            s = escape(text(&op["summary"])),
        );
    }
    out.push_str("</ul></nav>");
    for (method, path, op) in &operations {
        operation(&mut out, doc, method, path, op);
    }
    out.push_str("<h2>Schemas</h2>");
    for (name, schema) in object(&doc["components"]["schemas"]) {
        let _ = write!(
            out,
            "<section id=\"schema-{n}\"><h3>{n}</h3>",
            n = escape(name)
        );
        schema_block(&mut out, doc, schema);
        out.push_str("</section>");
    }
    out.push_str("</body></html>\n");
    out
}

/// Every operation, in the document's order.
fn operations(doc: &Value) -> Vec<(&'static str, &str, &Value)> {
    let mut all = Vec::new();
    for (path, item) in object(&doc["paths"]) {
        for method in METHODS {
            if let Some(op) = item.get(method) {
                all.push((method, path.as_str(), op));
            }
        }
    }
    all
}

fn operation(out: &mut String, doc: &Value, method: &str, path: &str, op: &Value) {
    let roles: Vec<&str> = op["x-roles"]
        .as_array()
        .map_or_else(Vec::new, |r| r.iter().filter_map(Value::as_str).collect());
    let who = if roles.is_empty() {
        "anyone, no token".to_owned()
    } else {
        format!("a bearer token with the role {}", roles.join(" or "))
    };
    let _ = write!(
        out,
        "<section class=\"op\" id=\"{id}\"><h3><span class=\"m {method}\">{method}</span> \
         <code>{p}</code> {s}</h3><p>Who: {who}.</p>",
        id = escape(text(&op["operationId"])),
        p = escape(path),
        s = escape(text(&op["summary"])),
    );
    out.push_str(&markdown(text(&op["description"])));
    if let Some(params) = op["parameters"].as_array() {
        out.push_str("<table><tr><th>parameter</th><th>in</th><th>schema</th><th></th></tr>");
        for param in params {
            let param = resolve(doc, param);
            let _ = write!(
                out,
                "<tr><td><code>{}</code>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                escape(text(&param["name"])),
                if param["required"] == true {
                    " (required)"
                } else {
                    ""
                },
                escape(text(&param["in"])),
                type_of(&param["schema"]),
                inline(text(&param["description"])),
            );
        }
        out.push_str("</table>");
    }
    if let Some(body) = op["requestBody"]["content"]["application/json"].get("schema") {
        let _ = write!(out, "<p>Body (JSON): {}</p>", type_of(body));
    }
    out.push_str("<table><tr><th>status</th><th>answer</th><th>body</th></tr>");
    for (status, response) in object(&op["responses"]) {
        let response = resolve(doc, response);
        let body = object(&response["content"])
            .into_iter()
            .map(|(media, content)| format!("{} ({})", type_of(&content["schema"]), escape(media)))
            .collect::<Vec<_>>()
            .join(", ");
        let headers: Vec<String> = object(&response["headers"])
            .into_iter()
            .map(|(name, _)| format!("<code>{}</code>", escape(name)))
            .collect();
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{body}<br>headers: {}</td></tr>",
            escape(status),
            inline(text(&response["description"])),
            headers.join(", "),
        );
    }
    out.push_str("</table></section>");
}

/// A schema's fields as a table, or its type when it has none.
fn schema_block(out: &mut String, doc: &Value, schema: &Value) {
    let mut parts = vec![schema];
    if let Some(all) = schema["allOf"].as_array() {
        parts.extend(all.iter().map(|part| resolve(doc, part)));
    }
    out.push_str(&markdown(text(&schema["description"])));
    let mut rows = String::new();
    for part in parts {
        let required: Vec<&str> = part["required"]
            .as_array()
            .map_or_else(Vec::new, |r| r.iter().filter_map(Value::as_str).collect());
        for (name, field) in object(&part["properties"]) {
            let _ = write!(
                rows,
                "<tr><td><code>{}</code>{}</td><td>{}</td><td>{}</td></tr>",
                escape(name),
                if required.contains(&name.as_str()) {
                    " (required)"
                } else {
                    ""
                },
                type_of(field),
                inline(text(&field["description"])),
            );
        }
    }
    if rows.is_empty() {
        let _ = write!(out, "<p>{}</p>", type_of(schema));
    } else {
        let _ = write!(
            out,
            "<table><tr><th>field</th><th>type</th><th></th></tr>{rows}</table>"
        );
        if schema["additionalProperties"] == false {
            out.push_str("<p>No other field is accepted.</p>");
        }
    }
}

/// A short description of a schema's type and limits, with links to named schemas.
fn type_of(schema: &Value) -> String {
    if let Some(target) = schema["$ref"].as_str() {
        let name = target.rsplit('/').next().unwrap_or(target);
        return format!("<a href=\"#schema-{n}\">{n}</a>", n = escape(name));
    }
    if let Some(value) = schema.get("const") {
        return format!("<code>{}</code>", escape(&value.to_string()));
    }
    if let Some(values) = schema["enum"].as_array() {
        let values: Vec<String> = values
            .iter()
            .map(|v| format!("<code>{}</code>", escape(v.as_str().unwrap_or_default())))
            .collect();
        return format!("one of {}", values.join(", "));
    }
    for (key, joiner) in [("anyOf", " or "), ("oneOf", " or "), ("allOf", " and ")] {
        if let Some(parts) = schema[key].as_array() {
            // An error body narrowed to some codes: name the codes.
            let codes = parts
                .iter()
                .find_map(|p| p["properties"]["error"]["properties"]["code"]["enum"].as_array());
            if let (Some(codes), Some(first)) = (codes, parts.first()) {
                let codes: Vec<String> = codes
                    .iter()
                    .map(|c| format!("<code>{}</code>", escape(c.as_str().unwrap_or_default())))
                    .collect();
                return format!("{}: {}", type_of(first), codes.join(", "));
            }
            return parts.iter().map(type_of).collect::<Vec<_>>().join(joiner);
        }
    }
    let mut out = match &schema["type"] {
        Value::String(t) if t == "array" => format!("array of {}", type_of(&schema["items"])),
        Value::String(t) => escape(t),
        Value::Array(types) => escape(
            &types
                .iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(" or "),
        ),
        _ => "any".to_owned(),
    };
    for (key, label) in [
        ("format", ""),
        ("minimum", "≥ "),
        ("maximum", "≤ "),
        ("minLength", "length ≥ "),
        ("maxLength", "length ≤ "),
        ("pattern", "matching "),
        ("default", "default "),
    ] {
        if let Some(value) = schema.get(key) {
            let value = value
                .as_str()
                .map_or_else(|| value.to_string(), str::to_owned);
            let _ = write!(out, ", {label}<code>{}</code>", escape(&value));
        }
    }
    out
}

/// Follows a `#/components/...` reference within `doc`.
fn resolve<'a>(doc: &'a Value, value: &'a Value) -> &'a Value {
    value["$ref"]
        .as_str()
        .and_then(|target| doc.pointer(target.trim_start_matches('#')))
        .unwrap_or(value)
}

fn object(value: &Value) -> Vec<(&String, &Value)> {
    value
        .as_object()
        .map_or_else(Vec::new, |m: &Map<String, Value>| m.iter().collect())
}

fn text(value: &Value) -> &str {
    value.as_str().unwrap_or_default()
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// One line of the document's Markdown: `code` spans, the rest escaped.
fn inline(text: &str) -> String {
    let mut out = String::new();
    for (i, part) in escape(text).split('`').enumerate() {
        if i % 2 == 1 {
            let _ = write!(out, "<code>{part}</code>");
        } else {
            out.push_str(part);
        }
    }
    out
}

/// The little Markdown the document's descriptions use: `##` headings, `-` lists, `|` tables
/// and paragraphs.
fn markdown(text: &str) -> String {
    let mut out = String::new();
    for block in text.split("\n\n").filter(|b| !b.trim().is_empty()) {
        let lines: Vec<&str> = block.lines().collect();
        if let Some(heading) = lines[0].strip_prefix("## ") {
            let _ = write!(out, "<h2>{}</h2>", inline(heading.trim()));
            let rest = lines[1..].join("\n");
            out.push_str(&markdown(&rest));
        } else if lines.iter().all(|l| l.starts_with("- ")) {
            out.push_str("<ul>");
            for line in lines {
                let _ = write!(out, "<li>{}</li>", inline(&line[2..]));
            }
            out.push_str("</ul>");
        } else if lines.iter().all(|l| l.starts_with('|')) {
            out.push_str("<table>");
            for (i, line) in lines.iter().enumerate().filter(|(i, _)| *i != 1) {
                let cell = if i == 0 { "th" } else { "td" };
                out.push_str("<tr>");
                for value in line.trim_matches('|').split('|') {
                    let _ = write!(out, "<{cell}>{}</{cell}>", inline(value.trim()));
                }
                out.push_str("</tr>");
            }
            out.push_str("</table>");
        } else {
            let _ = write!(out, "<p>{}</p>", inline(block));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_shows_every_operation_and_schema_of_the_document() {
        let doc: Value = serde_json::from_str(super::super::openapi::DOCUMENT).unwrap();
        let page = render(&doc);
        for (method, path, op) in operations(&doc) {
            let id = text(&op["operationId"]);
            assert!(page.contains(&format!("id=\"{id}\"")), "{method} {path}");
            assert!(
                page.contains(&format!("<code>{}</code>", escape(path))),
                "{path}"
            );
        }
        for (name, _) in object(&doc["components"]["schemas"]) {
            assert!(page.contains(&format!("id=\"schema-{name}\"")), "{name}");
        }
        assert!(page.contains("<code>queue_pass_required</code>"));
        assert!(!page.contains("<script"), "no script, nothing fetched");
    }

    #[test]
    fn markdown_is_escaped_and_its_code_tables_and_lists_rendered() {
        let html = markdown(
            "## Errors\na <b> & `x<y`\n\n- one\n- `two`\n\n| a | b |\n|---|---|\n| 1 | `2` |",
        );
        assert_eq!(
            html,
            "<h2>Errors</h2><p>a &lt;b&gt; &amp; <code>x&lt;y</code></p><ul><li>one</li>\
             <li><code>two</code></li></ul><table><tr><th>a</th><th>b</th></tr><tr><td>1</td>\
             <td><code>2</code></td></tr></table>"
        );
    }
}
