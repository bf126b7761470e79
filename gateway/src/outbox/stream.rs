//! Outbox entries as Redis streams give them: the replies of `XREADGROUP` and `XAUTOCLAIM`
//! read into (id, fields) pairs.

use std::collections::HashMap;

use fred::prelude::Value;

/// One outbox entry: its stream id and fields.
pub type Entry = (String, HashMap<String, String>);

/// Entries of an `XREADGROUP` reply on one stream: `[[key, [[id, [f, v, ...]], ...]]]`, or
/// nil when there is nothing.
pub fn parse_read(reply: Value) -> Vec<Entry> {
    let Value::Array(streams) = reply else {
        return Vec::new();
    };
    streams
        .into_iter()
        .filter_map(|stream| match stream {
            Value::Array(mut pair) if pair.len() == 2 => pair.pop(),
            _ => None,
        })
        .flat_map(parse_entries)
        .collect()
}

/// Entries of an `XAUTOCLAIM` reply: `[next, [[id, [field, value, ...]], ...], deleted?]`.
pub fn parse_claimed(reply: Value) -> Vec<Entry> {
    match reply {
        Value::Array(mut parts) if parts.len() >= 2 => parse_entries(parts.swap_remove(1)),
        _ => Vec::new(),
    }
}

/// `[[id, [field, value, ...]], ...]`; entries whose fields are nil (deleted) are skipped.
fn parse_entries(entries: Value) -> Vec<Entry> {
    let Value::Array(entries) = entries else {
        return Vec::new();
    };
    entries
        .into_iter()
        .filter_map(|entry| {
            let Value::Array(mut pair) = entry else {
                return None;
            };
            if pair.len() != 2 {
                return None;
            }
            let Value::Array(flat) = pair.pop()? else {
                return None;
            };
            let id = pair.pop()?.as_string()?;
            let map = flat
                .chunks(2)
                .filter_map(|kv| Some((kv.first()?.as_string()?, kv.get(1)?.as_string()?)))
                .collect();
            Some((id, map))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claimed_entries_are_parsed_from_the_raw_reply() {
        let reply = Value::Array(vec![
            Value::from("0-0"),
            Value::Array(vec![Value::Array(vec![
                Value::from("1-1"),
                Value::Array(vec![Value::from("order_id"), Value::from("o1")]),
            ])]),
            Value::Array(vec![]),
        ]);
        let entries = parse_claimed(reply);
        assert_eq!(entries.len(), 1);
        let read = Value::Array(vec![Value::Array(vec![
            Value::from("fg:{s:1}:outbox"),
            Value::Array(vec![Value::Array(vec![
                Value::from("2-0"),
                Value::Array(vec![Value::from("order_id"), Value::from("o2")]),
            ])]),
        ])]);
        assert_eq!(parse_read(read)[0].1["order_id"], "o2");
        assert!(parse_read(Value::Null).is_empty());
        assert_eq!(entries[0].0, "1-1");
        assert_eq!(entries[0].1["order_id"], "o1");
    }
}
