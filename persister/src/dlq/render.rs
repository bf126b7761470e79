//! How the answers of `flashgate-persister dlq` are printed: `list`'s table, `show`'s letter,
//! `replay`'s report (pure functions, tested here).

use std::collections::HashMap;
use std::fmt::Write as _;

use chrono::{DateTime, SecondsFormat, Utc};

use super::letter::{Letter, LetterId};
use super::replay::{Outcome, Record};

/// Characters of a letter's body `dlq list` shows.
const SHORT_BODY: usize = 60;

fn time(at: Option<DateTime<Utc>>) -> String {
    at.map_or_else(
        || "-".to_owned(),
        |at| at.to_rfc3339_opts(SecondsFormat::Secs, true),
    )
}

/// How a letter's replays are shown in `list`: `-` for never, else the last one.
fn replay_summary(record: Option<&Record>) -> String {
    match record {
        None => "-".to_owned(),
        Some(Record {
            replay_no,
            sent: Some((_, _, at)),
            ..
        }) => format!("#{replay_no} {}", time(Some(*at))),
        Some(Record { replay_no, .. }) => format!("#{replay_no} unfinished"),
    }
}

/// `dlq list`'s table: one letter per line, columns aligned, the body last.
pub fn render_list(letters: &[Letter], replays: &HashMap<LetterId, Record>) -> String {
    if letters.is_empty() {
        return "no dead letters match\n".to_owned();
    }
    let header = [
        "ID",
        "DEAD-LETTERED",
        "REASON",
        "SOURCE",
        "KEY",
        "REPLAYED",
        "BODY",
    ]
    .map(str::to_owned);
    let mut rows = vec![header];
    for letter in letters {
        rows.push([
            letter.id.to_string(),
            time(letter.at),
            letter.reason_code.clone(),
            format!(
                "{}/{}@{}",
                letter.source_topic, letter.source_partition, letter.source_offset
            ),
            letter.key_text(),
            replay_summary(replays.get(&letter.id)),
            letter.short_body(SHORT_BODY),
        ]);
    }
    let mut widths = [0; 6];
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in &rows {
        for (cell, width) in row.iter().zip(widths) {
            let _ = write!(out, "{cell:width$}  ");
        }
        let _ = writeln!(out, "{}", row[6]);
    }
    let _ = writeln!(out, "{} letters", letters.len());
    out
}

/// `dlq show`: every field of the letter, its body (pretty when JSON), its replays.
pub fn render_letter(letter: &Letter, history: &[Record]) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "id:             {}", letter.id);
    let _ = writeln!(out, "dead-lettered:  {}", time(letter.at));
    let _ = writeln!(
        out,
        "reason:         {} ({})",
        letter.reason_code, letter.reason
    );
    let _ = writeln!(
        out,
        "source:         {} partition {} offset {}",
        letter.source_topic, letter.source_partition, letter.source_offset
    );
    let _ = writeln!(out, "key:            {}", letter.key_text());
    if let Some(trace_id) = &letter.trace_id {
        let _ = writeln!(out, "trace id:       {trace_id}");
    }
    if let Some(replay_of) = &letter.replay_of {
        let _ = writeln!(out, "replay of:      {replay_of}");
    }
    if history.is_empty() {
        let _ = writeln!(out, "replays:        none");
    }
    for record in history {
        let _ = match record.sent {
            Some((partition, offset, at)) => writeln!(
                out,
                "replay #{}:      sent {} to partition {partition} offset {offset}",
                record.replay_no,
                time(Some(at))
            ),
            None => writeln!(
                out,
                "replay #{}:      claimed {}, never acknowledged",
                record.replay_no,
                time(Some(record.claimed_at))
            ),
        };
    }
    let body = serde_json::from_slice::<serde_json::Value>(&letter.payload)
        .ok()
        .and_then(|json| serde_json::to_string_pretty(&json).ok())
        .unwrap_or_else(|| String::from_utf8_lossy(&letter.payload).into_owned());
    let _ = writeln!(out, "body:\n{body}");
    out
}

/// `dlq replay`'s report: a line per letter asked for, then a count.
pub fn render_replays(letters: &[Letter], outcomes: &[Outcome], missing: &[LetterId]) -> String {
    let mut out = String::new();
    if letters.is_empty() && missing.is_empty() {
        return "no dead letters match\n".to_owned();
    }
    let mut replayed = 0;
    for (letter, outcome) in letters.iter().zip(outcomes) {
        let source = &letter.source_topic;
        let id = letter.id;
        let _ = match outcome {
            Outcome::Replayed {
                replay_no,
                partition,
                offset,
            } => {
                replayed += 1;
                writeln!(
                    out,
                    "{id}: replayed to {source} partition {partition} offset {offset} (replay #{replay_no})"
                )
            }
            Outcome::AlreadyReplayed(Record {
                replay_no,
                sent: Some((partition, offset, at)),
                ..
            }) => writeln!(
                out,
                "{id}: skipped, replayed before (#{replay_no} at {}, to {source} partition \
                 {partition} offset {offset}); --again to send it once more",
                time(Some(*at))
            ),
            Outcome::AlreadyReplayed(Record {
                replay_no,
                claimed_at,
                ..
            }) => writeln!(
                out,
                "{id}: skipped, replay #{replay_no} was started at {} and never acknowledged \
                 (it may have been sent); --again to send it",
                time(Some(*claimed_at))
            ),
            Outcome::NoSource => {
                writeln!(out, "{id}: not replayed, the letter names no source topic")
            }
            Outcome::Failed(err) => {
                writeln!(out, "{id}: not replayed, the broker refused it: {err}")
            }
            Outcome::Unknown => writeln!(
                out,
                "{id}: unknown, no acknowledgement in time (it may have been sent); \
                 --again to send it"
            ),
        };
    }
    for id in missing {
        let _ = writeln!(out, "{id}: no such letter");
    }
    let asked = letters.len() + missing.len();
    let _ = writeln!(out, "{replayed} of {asked} letters replayed");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        text.parse().expect("time")
    }

    fn letter(offset: i64) -> Letter {
        Letter {
            id: LetterId {
                partition: 0,
                offset,
            },
            at: Some(at("2026-11-30T14:00:00Z")),
            reason_code: "unknown_sale".to_owned(),
            reason: "sale 7 does not exist".to_owned(),
            source_topic: "flashgate.orders".to_owned(),
            source_partition: 1,
            source_offset: 40 + offset,
            key: b"7-a".to_vec(),
            payload: br#"{"type":"order.admitted","data":{"sale_id":7}}"#.to_vec(),
            trace_id: Some("t-1".to_owned()),
            replay_of: None,
        }
    }

    #[test]
    fn the_list_shows_each_letter_on_one_aligned_line_with_its_last_replay() {
        let letters = [letter(3), letter(12)];
        let replays = HashMap::from([(
            letters[1].id,
            Record {
                replay_no: 2,
                claimed_at: at("2026-11-30T15:00:00Z"),
                sent: Some((1, 90, at("2026-11-30T15:00:01Z"))),
            },
        )]);
        let text = render_list(&letters, &replays);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4, "{text}");
        assert!(lines[0].starts_with("ID    DEAD-LETTERED"), "{text}");
        assert!(
            lines[1].starts_with(
                "0:3   2026-11-30T14:00:00Z  unknown_sale  flashgate.orders/1@43  7-a  -    "
            ),
            "{text}"
        );
        assert!(
            lines[2].contains("  #2 2026-11-30T15:00:01Z  {\"type\""),
            "{text}"
        );
        assert_eq!(lines[3], "2 letters");
        assert_eq!(render_list(&[], &replays), "no dead letters match\n");
    }

    #[test]
    fn show_prints_the_headers_the_replays_and_the_body_pretty() {
        let history = [
            Record {
                replay_no: 1,
                claimed_at: at("2026-11-30T15:00:00Z"),
                sent: Some((1, 90, at("2026-11-30T15:00:01Z"))),
            },
            Record {
                replay_no: 2,
                claimed_at: at("2026-11-30T16:00:00Z"),
                sent: None,
            },
        ];
        let text = render_letter(&letter(3), &history);
        assert!(text.contains("reason:         unknown_sale (sale 7 does not exist)\n"));
        assert!(text.contains("source:         flashgate.orders partition 1 offset 43\n"));
        assert!(text.contains("trace id:       t-1\n"));
        assert!(
            text.contains("replay #1:      sent 2026-11-30T15:00:01Z to partition 1 offset 90\n")
        );
        assert!(
            text.contains("replay #2:      claimed 2026-11-30T16:00:00Z, never acknowledged\n")
        );
        assert!(
            text.contains("body:\n{\n  \"data\": {\n    \"sale_id\": 7\n  },"),
            "{text}"
        );
        assert!(render_letter(&letter(3), &[]).contains("replays:        none\n"));
    }

    #[test]
    fn a_replay_report_says_what_became_of_each_letter_asked_for() {
        let letters = [letter(3), letter(4), letter(5)];
        let outcomes = [
            Outcome::Replayed {
                replay_no: 1,
                partition: 1,
                offset: 99,
            },
            Outcome::AlreadyReplayed(Record {
                replay_no: 1,
                claimed_at: at("2026-11-30T15:00:00Z"),
                sent: Some((1, 98, at("2026-11-30T15:00:01Z"))),
            }),
            Outcome::Failed("Broker: Unknown topic or partition".to_owned()),
        ];
        let missing = [LetterId {
            partition: 0,
            offset: 77,
        }];
        let text = render_replays(&letters, &outcomes, &missing);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines,
            [
                "0:3: replayed to flashgate.orders partition 1 offset 99 (replay #1)",
                "0:4: skipped, replayed before (#1 at 2026-11-30T15:00:01Z, to flashgate.orders \
                 partition 1 offset 98); --again to send it once more",
                "0:5: not replayed, the broker refused it: Broker: Unknown topic or partition",
                "0:77: no such letter",
                "1 of 4 letters replayed",
            ]
        );
    }
}
