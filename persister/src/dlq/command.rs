//! `flashgate-persister dlq list | show | replay`: the operator's commands over the
//! dead-letter topic, and how their answers are printed (pure functions, tested below).
//!
//! Exit codes: 0 when everything asked for was done (a letter replayed before and skipped
//! counts as done), 1 when a letter was not found or a replay failed or has an unknown
//! outcome (each is printed), 2 for bad arguments (clap), 64 for a bad configuration.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::process::ExitCode;

use anyhow::Context;
use chrono::{DateTime, Duration, NaiveDate, SecondsFormat, Utc};
use clap::ArgGroup;
use flashgate_config::{KafkaSettings, Settings};

use super::letter::{Letter, LetterId};
use super::read::{Filter, Reader};
use super::replay::{Outcome, Record, Replayer};

/// Characters of a letter's body `dlq list` shows.
const SHORT_BODY: usize = 60;

/// The dead-letter commands.
#[derive(Debug, clap::Subcommand)]
pub enum DlqCommand {
    /// List the dead letters: id, when, reason, source (topic/partition@offset), key, replays
    /// and the start of the body.
    List(Selection),
    /// Show one letter in full: its headers, key, body and replays.
    Show {
        /// The letter's id, `<partition>:<offset>` in the dead-letter topic (as `list` shows).
        id: LetterId,
    },
    /// Send letters back to their source topic (after fixing their cause, e.g. creating the
    /// missing sale), each recorded so it is not replayed twice by accident; prints what
    /// became of each.
    #[command(group(ArgGroup::new("which").required(true).args(["ids", "reason"])))]
    Replay {
        /// Ids of the letters to replay (`<partition>:<offset>`).
        #[arg(value_name = "ID")]
        ids: Vec<LetterId>,
        /// Replay every letter of this reason instead (see `list`).
        #[arg(long, value_name = "REASON", conflicts_with = "ids")]
        reason: Option<String>,
        /// With --reason: only the letters dead-lettered since T.
        #[arg(long, value_name = "T", requires = "reason", value_parser = parse_since)]
        since: Option<DateTime<Utc>>,
        /// Send letters that were replayed before too (harmless: the persister stores each
        /// event once).
        #[arg(long)]
        again: bool,
    },
}

/// Which letters `list` shows.
#[derive(Debug, Clone, clap::Args)]
pub struct Selection {
    /// Only letters of this reason: unknown_sale, unknown_coupon_policy, orphan_order_end,
    /// orphan_coupon_change, refused_by_database, undecodable, unsupported, invalid (or
    /// another service's code).
    #[arg(long, value_name = "REASON")]
    pub reason: Option<String>,
    /// Only letters dead-lettered since T: an RFC 3339 time (2026-11-30T12:00:00Z), a day
    /// (2026-11-30, UTC) or a time back from now (90s, 15m, 2h, 3d).
    #[arg(long, value_name = "T", value_parser = parse_since)]
    pub since: Option<DateTime<Utc>>,
}

/// Runs `command` against the stack of `settings`; how it ended, as an exit code.
pub async fn run(settings: &Settings, command: DlqCommand) -> anyhow::Result<ExitCode> {
    let db = settings
        .mysql
        .connect()
        .await
        .context("connecting to MySQL")?;
    let producer = settings
        .kafka
        .producer_config()
        .create()
        .context("creating the Kafka producer")?;
    let replayer = Replayer::new(db, producer, settings.kafka.dead_letter_topic.clone());
    let kafka = settings.kafka.clone();
    let code = match command {
        DlqCommand::List(selection) => {
            let filter = Filter {
                reason: selection.reason,
                since: selection.since,
            };
            let letters = read(&kafka, move |reader| reader.letters(&filter)).await?;
            let replays = replayer.last_replays().await.context(MIGRATE_HINT)?;
            print!("{}", render_list(&letters, &replays));
            ExitCode::SUCCESS
        }
        DlqCommand::Show { id } => match read(&kafka, move |reader| reader.letter(id)).await? {
            Some(letter) => {
                let history = replayer.history(id).await.context(MIGRATE_HINT)?;
                print!("{}", render_letter(&letter, &history));
                ExitCode::SUCCESS
            }
            None => {
                println!("{id}: no such letter in {}", kafka.dead_letter_topic);
                ExitCode::FAILURE
            }
        },
        DlqCommand::Replay {
            ids,
            reason,
            since,
            again,
        } => {
            let (letters, missing) = if ids.is_empty() {
                let filter = Filter { reason, since };
                let letters = read(&kafka, move |reader| reader.letters(&filter)).await?;
                (letters, Vec::new())
            } else {
                read(&kafka, move |reader| {
                    let mut found = Vec::new();
                    let mut missing = Vec::new();
                    for id in ids {
                        match reader.letter(id)? {
                            Some(letter) => found.push(letter),
                            None => missing.push(id),
                        }
                    }
                    Ok((found, missing))
                })
                .await?
            };
            let outcomes = replayer
                .replay(&letters, again)
                .await
                .context(MIGRATE_HINT)?;
            print!("{}", render_replays(&letters, &outcomes, &missing));
            let done = missing.is_empty() && outcomes.iter().all(Outcome::is_done);
            if done {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
    };
    Ok(code)
}

/// Context of a failure to read or write `dlq_replays`.
const MIGRATE_HINT: &str =
    "reading or recording replays in MySQL (is the schema migrated? `flashgate-persister migrate`)";

/// Runs `read` with a reader of the dead-letter topic, on a thread that may block.
async fn read<T, F>(kafka: &KafkaSettings, read: F) -> anyhow::Result<T>
where
    T: Send + 'static,
    F: FnOnce(&Reader) -> anyhow::Result<T> + Send + 'static,
{
    let kafka = kafka.clone();
    tokio::task::spawn_blocking(move || read(&Reader::new(&kafka)?))
        .await
        .context("the dead-letter reader stopped")?
}

/// `--since`: an RFC 3339 time, a day (midnight UTC), or a time back from now.
pub fn parse_since(text: &str) -> Result<DateTime<Utc>, String> {
    since_at(text, Utc::now())
}

/// [`parse_since`] at `now`.
pub fn since_at(text: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, String> {
    if let Ok(at) = DateTime::parse_from_rfc3339(text) {
        return Ok(at.with_timezone(&Utc));
    }
    if let Ok(day) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        return Ok(day.and_hms_opt(0, 0, 0).expect("midnight").and_utc());
    }
    let bad = || {
        format!(
            "`{text}` is not a time: give 2026-11-30T12:00:00Z, 2026-11-30, or 90s, 15m, 2h, 3d"
        )
    };
    let split = text.len().checked_sub(1).ok_or_else(bad)?;
    let (number, unit) = text.split_at_checked(split).ok_or_else(bad)?;
    let number: i64 = number.parse().map_err(|_| bad())?;
    let back = match unit {
        "s" => Duration::try_seconds(number),
        "m" => Duration::try_minutes(number),
        "h" => Duration::try_hours(number),
        "d" => Duration::try_days(number),
        _ => None,
    }
    .filter(|_| number >= 0)
    .ok_or_else(bad)?;
    now.checked_sub_signed(back).ok_or_else(bad)
}

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
    fn since_takes_a_time_a_day_or_a_time_back_from_now() {
        let now = at("2026-11-30T14:00:00Z");
        let cases = [
            ("2026-11-30T12:30:00Z", "2026-11-30T12:30:00Z"),
            ("2026-11-30T13:30:00+01:00", "2026-11-30T12:30:00Z"),
            ("2026-11-29", "2026-11-29T00:00:00Z"),
            ("90s", "2026-11-30T13:58:30Z"),
            ("15m", "2026-11-30T13:45:00Z"),
            ("2h", "2026-11-30T12:00:00Z"),
            ("3d", "2026-11-27T14:00:00Z"),
        ];
        for (text, expected) in cases {
            assert_eq!(since_at(text, now), Ok(at(expected)), "{text}");
        }
        for bad in ["", "h", "2x", "-2h", "yesterday", "2026-13-01", "1.5h"] {
            assert!(since_at(bad, now).is_err(), "{bad}");
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
