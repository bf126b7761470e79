//! `flashgate-persister dlq list | show | replay`: the operator's commands over the
//! dead-letter topic (their answers are printed by [`super::render`]).
//!
//! Exit codes: 0 when everything asked for was done (a letter replayed before and skipped
//! counts as done), 1 when a letter was not found or a replay failed or has an unknown
//! outcome (each is printed), 2 for bad arguments (clap), 64 for a bad configuration.

use std::process::ExitCode;

use anyhow::Context;
use chrono::{DateTime, Duration, NaiveDate, Utc};
use clap::ArgGroup;
use flashgate_config::{KafkaSettings, Settings};

use super::letter::LetterId;
use super::read::{Filter, Reader};
use super::render::{render_letter, render_list, render_replays};
use super::replay::{Outcome, Replayer};

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

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        text.parse().expect("time")
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
}
