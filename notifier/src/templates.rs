//! The email templates: one file per event type in `notifier.templates_dir`
//! (`order.paid.txt`, ...), `default.txt` for the others. A template's first line is
//! `Subject: ...`; the rest is the plain-text body. `{{name}}` is replaced by the event's
//! `data.name`, or else the envelope's `name` (`type`, `event_id`, `occurred_at`,
//! `trace_id`); an unknown name is left as it is, so a typo shows in the mail.

use std::collections::HashMap;
use std::path::Path;

use anyhow::Context;
use serde_json::Value;

/// The template for types without their own file.
const DEFAULT: &str = "default";

/// One template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    /// The subject line, with placeholders.
    pub subject: String,
    /// The body, with placeholders.
    pub body: String,
}

impl Template {
    /// A template's text: `Subject: ...`, then the body.
    pub fn parse(text: &str) -> Result<Self, String> {
        let (first, body) = text.split_once('\n').unwrap_or((text, ""));
        let subject = first
            .strip_prefix("Subject:")
            .ok_or("the first line must be `Subject: ...`")?;
        Ok(Self {
            subject: subject.trim().to_owned(),
            body: body.trim_start_matches(['\r', '\n']).to_owned(),
        })
    }
}

/// Every template, by event type.
#[derive(Debug, Clone, Default)]
pub struct Templates {
    by_kind: HashMap<String, Template>,
}

impl Templates {
    /// Reads every `*.txt` of `dir`; `default.txt` must be there.
    pub fn load(dir: &Path) -> anyhow::Result<Self> {
        let mut by_kind = HashMap::new();
        let entries =
            std::fs::read_dir(dir).with_context(|| format!("reading templates in {dir:?}"))?;
        for entry in entries {
            let path = entry?.path();
            let Some(kind) = path
                .file_name()
                .and_then(|name| name.to_str())
                .and_then(|name| name.strip_suffix(".txt"))
            else {
                continue;
            };
            let text = std::fs::read_to_string(&path).with_context(|| format!("{path:?}"))?;
            let template = Template::parse(&text)
                .map_err(|why| anyhow::anyhow!("template {path:?}: {why}"))?;
            by_kind.insert(kind.to_owned(), template);
        }
        if !by_kind.contains_key(DEFAULT) {
            anyhow::bail!("{dir:?} has no {DEFAULT}.txt (the template of the other types)");
        }
        Ok(Self { by_kind })
    }

    /// The subject and body of the email for `envelope`.
    pub fn render(&self, envelope: &Value) -> (String, String) {
        let kind = envelope["type"].as_str().unwrap_or_default();
        let template = self
            .by_kind
            .get(kind)
            .or_else(|| self.by_kind.get(DEFAULT))
            .cloned()
            .unwrap_or(Template {
                subject: "{{type}}".to_owned(),
                body: "{{event_id}}".to_owned(),
            });
        (
            fill(&template.subject, envelope),
            fill(&template.body, envelope),
        )
    }
}

/// `text` with every `{{name}}` replaced (see the module's doc).
fn fill(text: &str, envelope: &Value) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else {
            out.push_str(&rest[start..]);
            return out;
        };
        let name = after[..end].trim();
        let value = envelope["data"]
            .get(name)
            .or_else(|| envelope.get(name))
            .filter(|value| !value.is_object());
        match value {
            Some(Value::String(text)) => out.push_str(text),
            Some(Value::Null) => {}
            Some(other) => out.push_str(&other.to_string()),
            None => out.push_str(&rest[start..start + 2 + end + 2]),
        }
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_take_the_data_then_the_envelope_and_unknown_ones_stay() {
        let envelope = serde_json::json!({
            "type": "order.paid", "event_id": "order.paid:1-a",
            "data": {"order_id": "1-a", "amount": 1200, "note": null}
        });
        let template = Template::parse(
            "Subject: Order {{order_id}} paid\n\nPaid {{ amount }} ({{type}}){{note}} {{nope}} {{",
        )
        .unwrap();
        let templates = Templates {
            by_kind: HashMap::from([("default".to_owned(), template)]),
        };
        let (subject, body) = templates.render(&envelope);
        assert_eq!(subject, "Order 1-a paid");
        assert_eq!(body, "Paid 1200 (order.paid) {{nope}} {{");
        assert!(Template::parse("Hello\nbody").is_err());
    }

    #[test]
    fn the_shipped_templates_load_and_cover_the_shoppers_events() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("templates");
        let templates = Templates::load(&dir).unwrap();
        for kind in [
            "order.paid",
            "order.cancelled",
            "order.expired",
            "order.rejected",
            "payment.failed",
            "coupon.issued",
            "coupon.rejected",
            "points.rejected",
        ] {
            assert!(templates.by_kind.contains_key(kind), "{kind}");
        }
    }
}
