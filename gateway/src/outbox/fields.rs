//! Reading an outbox entry's fields by name, and writing an event as JSON: what every entry
//! codec shares.

use std::collections::HashMap;

use chrono::{DateTime, Utc};

/// An event as the JSON of its Kafka record.
pub(super) fn json<T: serde::Serialize>(value: &T) -> Result<Vec<u8>, String> {
    serde_json::to_vec(value).map_err(|err| err.to_string())
}

/// Reads entry fields by name.
pub(super) struct Fields<'a>(pub(super) &'a HashMap<String, String>);

impl Fields<'_> {
    pub(super) fn text(&self, name: &str) -> Result<String, String> {
        self.0
            .get(name)
            .cloned()
            .ok_or_else(|| format!("field `{name}` missing"))
    }

    pub(super) fn number(&self, name: &str) -> Result<u64, String> {
        self.text(name)?
            .parse::<u64>()
            .map_err(|_| format!("field `{name}` is not a number"))
    }

    pub(super) fn time(&self, name: &str) -> Result<DateTime<Utc>, String> {
        i64::try_from(self.number(name)?)
            .ok()
            .and_then(DateTime::from_timestamp_millis)
            .ok_or_else(|| format!("field `{name}` is not a time"))
    }
}

#[cfg(test)]
pub(super) mod tests {
    use std::collections::HashMap;

    /// An entry's fields from `(name, value)` pairs, as the codecs' tests write them.
    pub(in crate::outbox) fn fields(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }
}
