//! Sending dead letters back to their source topic, each replay recorded in MySQL
//! (`dlq_replays`) so the same letter is not replayed twice by accident.
//!
//! Per letter: claim the replay's number in MySQL (the primary key lets one claim win; the
//! first replay is number 1, so a second plain replay of the letter finds it and is refused),
//! send key and payload to the source topic and partition with the `dlq_replay` header, and
//! record where the broker stored it. A send the broker refuses releases its claim; one whose
//! outcome is unknown (no acknowledgement in time) keeps it, unfinished: a later replay is
//! refused until an operator says `--again`. Sending twice is harmless anyway: the persister
//! stores each order, coupon and point change once.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, NaiveDateTime, Utc};
use flashgate_events::{REPLAY_HEADER, TRACE_HEADER};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use sqlx::MySqlPool;

use super::letter::{Letter, LetterId};

/// Longest wait for the broker to acknowledge a replay before its outcome counts as unknown.
const ACK_TIMEOUT: Duration = Duration::from_secs(30);

/// How many times a forced replay (`--again`) tries for the next number when another claims
/// it at the same moment.
const CLAIM_ATTEMPTS: u32 = 3;

/// One recorded replay of a letter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// 1 for the letter's first replay, then 2, ...
    pub replay_no: u32,
    /// When it was claimed.
    pub claimed_at: DateTime<Utc>,
    /// Where the broker stored it, and when; `None` while unacknowledged.
    pub sent: Option<(i32, i64, DateTime<Utc>)>,
}

/// What became of one letter asked to be replayed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Sent to its source topic and acknowledged: replay number, partition and offset there.
    Replayed {
        /// Which replay of the letter this was.
        replay_no: u32,
        /// Where the broker stored it.
        partition: i32,
        /// Its offset there.
        offset: i64,
    },
    /// Not sent: it was replayed before (the last replay is given); `--again` sends it anyway.
    AlreadyReplayed(Record),
    /// Not sent: the letter does not say which topic it came from.
    NoSource,
    /// The broker refused it; nothing is recorded, it may be replayed again.
    Failed(String),
    /// No acknowledgement in time: it may or may not be in the source topic. Its claim stays,
    /// unfinished (a plain replay is refused; `--again` sends it, harmlessly if it did land).
    Unknown,
}

impl Outcome {
    /// Whether the letter is now (or already was) back in its source topic.
    pub fn is_done(&self) -> bool {
        matches!(self, Self::Replayed { .. } | Self::AlreadyReplayed(_))
    }
}

/// Replays letters of one dead-letter topic.
pub struct Replayer {
    /// Where replays are recorded.
    db: MySqlPool,
    /// Idempotent, `acks=all` (`kafka.producer_config`).
    producer: FutureProducer,
    /// The dead-letter topic, part of each letter's identity in `dlq_replays`.
    letter_topic: String,
}

impl Replayer {
    /// Replays letters of `letter_topic`, sending with `producer`, recording in `db`.
    pub fn new(db: MySqlPool, producer: FutureProducer, letter_topic: String) -> Self {
        Self {
            db,
            producer,
            letter_topic,
        }
    }

    /// Replays `letters` (each only if never replayed, unless `again`), all sent before any
    /// is waited for; the outcome of each, in their order.
    pub async fn replay(&self, letters: &[Letter], again: bool) -> anyhow::Result<Vec<Outcome>> {
        let mut outcomes: Vec<Option<Outcome>> = Vec::with_capacity(letters.len());
        let mut sending = Vec::new();
        for (index, letter) in letters.iter().enumerate() {
            if letter.source_topic.is_empty() {
                outcomes.push(Some(Outcome::NoSource));
                continue;
            }
            let replay_no = match self.claim(letter, again).await? {
                Ok(replay_no) => replay_no,
                Err(previous) => {
                    outcomes.push(Some(Outcome::AlreadyReplayed(previous)));
                    continue;
                }
            };
            let id = letter.id.to_string();
            let mut headers = OwnedHeaders::new().insert(Header {
                key: REPLAY_HEADER,
                value: Some(id.as_str()),
            });
            if let Some(trace_id) = &letter.trace_id {
                headers = headers.insert(Header {
                    key: TRACE_HEADER,
                    value: Some(trace_id.as_str()),
                });
            }
            let mut record = FutureRecord::to(&letter.source_topic)
                .key(&letter.key)
                .payload(&letter.payload)
                .headers(headers);
            if letter.source_partition >= 0 {
                record = record.partition(letter.source_partition);
            }
            match self.producer.send_result(record) {
                Ok(delivery) => sending.push((index, replay_no, delivery)),
                Err((err, _)) => {
                    self.release(letter.id, replay_no).await?;
                    outcomes.push(Some(Outcome::Failed(format!("not queued: {err}"))));
                    continue;
                }
            }
            outcomes.push(None);
        }
        for (index, replay_no, delivery) in sending {
            let letter = &letters[index];
            let outcome = match tokio::time::timeout(ACK_TIMEOUT, delivery).await {
                Ok(Ok(Ok(stored))) => {
                    self.complete(letter.id, replay_no, stored.partition, stored.offset)
                        .await?;
                    Outcome::Replayed {
                        replay_no,
                        partition: stored.partition,
                        offset: stored.offset,
                    }
                }
                Ok(Ok(Err((err, _)))) => {
                    self.release(letter.id, replay_no).await?;
                    Outcome::Failed(err.to_string())
                }
                Ok(Err(_)) | Err(_) => Outcome::Unknown,
            };
            outcomes[index] = Some(outcome);
        }
        Ok(outcomes
            .into_iter()
            .map(|outcome| outcome.unwrap_or(Outcome::Unknown))
            .collect())
    }

    /// Claims the next replay of `letter`: number 1 unless `again`; `Err` with the last
    /// replay when it was replayed before and not `again`.
    async fn claim(&self, letter: &Letter, again: bool) -> anyhow::Result<Result<u32, Record>> {
        let id = letter.id;
        for _ in 0..CLAIM_ATTEMPTS {
            let replay_no = if again {
                let last: Option<u32> = sqlx::query_scalar(
                    "SELECT MAX(replay_no) FROM dlq_replays \
                     WHERE letter_topic = ? AND letter_partition = ? AND letter_offset = ?",
                )
                .bind(&self.letter_topic)
                .bind(id.partition)
                .bind(id.offset)
                .fetch_one(&self.db)
                .await
                .context("reading the replays of a letter")?;
                last.unwrap_or(0) + 1
            } else {
                1
            };
            let inserted = sqlx::query(
                "INSERT INTO dlq_replays (letter_topic, letter_partition, letter_offset, \
                 replay_no, reason_code, source_topic, source_partition, source_offset, \
                 claimed_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, UTC_TIMESTAMP(3))",
            )
            .bind(&self.letter_topic)
            .bind(id.partition)
            .bind(id.offset)
            .bind(replay_no)
            .bind(&letter.reason_code)
            .bind(&letter.source_topic)
            .bind(letter.source_partition)
            .bind(letter.source_offset)
            .execute(&self.db)
            .await;
            match inserted {
                Ok(_) => return Ok(Ok(replay_no)),
                Err(err) if is_duplicate(&err) && !again => {
                    let last = self.history(id).await?.pop();
                    return Ok(Err(
                        last.context("a replay vanished while it was looked at")?
                    ));
                }
                // Another forced replay took this number at the same moment: the next one.
                Err(err) if is_duplicate(&err) => continue,
                Err(err) => return Err(err).context("recording a replay"),
            }
        }
        anyhow::bail!("letter {id} is being replayed by someone else right now")
    }

    /// Records where the broker stored replay `replay_no` of letter `id`.
    async fn complete(
        &self,
        id: LetterId,
        replay_no: u32,
        partition: i32,
        offset: i64,
    ) -> anyhow::Result<()> {
        sqlx::query(
            "UPDATE dlq_replays SET sent_partition = ?, sent_offset = ?, sent_at = UTC_TIMESTAMP(3) \
             WHERE letter_topic = ? AND letter_partition = ? AND letter_offset = ? AND replay_no = ?",
        )
        .bind(partition)
        .bind(offset)
        .bind(&self.letter_topic)
        .bind(id.partition)
        .bind(id.offset)
        .bind(replay_no)
        .execute(&self.db)
        .await
        .context("recording a replay as sent")?;
        Ok(())
    }

    /// Deletes the claim of a replay the broker refused: the letter may be replayed again.
    async fn release(&self, id: LetterId, replay_no: u32) -> anyhow::Result<()> {
        sqlx::query(
            "DELETE FROM dlq_replays WHERE letter_topic = ? AND letter_partition = ? \
             AND letter_offset = ? AND replay_no = ? AND sent_at IS NULL",
        )
        .bind(&self.letter_topic)
        .bind(id.partition)
        .bind(id.offset)
        .bind(replay_no)
        .execute(&self.db)
        .await
        .context("releasing a replay that failed")?;
        Ok(())
    }

    /// Every recorded replay of letter `id`, the first first.
    pub async fn history(&self, id: LetterId) -> anyhow::Result<Vec<Record>> {
        type Row = (
            u32,
            NaiveDateTime,
            Option<i32>,
            Option<i64>,
            Option<NaiveDateTime>,
        );
        let rows: Vec<Row> = sqlx::query_as(
            "SELECT replay_no, claimed_at, sent_partition, sent_offset, sent_at FROM dlq_replays \
             WHERE letter_topic = ? AND letter_partition = ? AND letter_offset = ? \
             ORDER BY replay_no",
        )
        .bind(&self.letter_topic)
        .bind(id.partition)
        .bind(id.offset)
        .fetch_all(&self.db)
        .await
        .context("reading the replays of a letter")?;
        Ok(rows.into_iter().map(record).collect())
    }

    /// The last replay of each letter of the topic ever replayed (or claimed).
    pub async fn last_replays(&self) -> anyhow::Result<HashMap<LetterId, Record>> {
        type Row = (
            i32,
            i64,
            u32,
            NaiveDateTime,
            Option<i32>,
            Option<i64>,
            Option<NaiveDateTime>,
        );
        let rows: Vec<Row> = sqlx::query_as(
            "SELECT letter_partition, letter_offset, replay_no, claimed_at, sent_partition, \
             sent_offset, sent_at FROM dlq_replays WHERE letter_topic = ? \
             ORDER BY letter_partition, letter_offset, replay_no",
        )
        .bind(&self.letter_topic)
        .fetch_all(&self.db)
        .await
        .context("reading the replays")?;
        Ok(rows
            .into_iter()
            .map(|(partition, offset, n, claimed, sp, so, sa)| {
                (
                    LetterId { partition, offset },
                    record((n, claimed, sp, so, sa)),
                )
            })
            .collect())
    }
}

fn record(
    (replay_no, claimed_at, partition, offset, sent_at): (
        u32,
        NaiveDateTime,
        Option<i32>,
        Option<i64>,
        Option<NaiveDateTime>,
    ),
) -> Record {
    Record {
        replay_no,
        claimed_at: claimed_at.and_utc(),
        sent: match (partition, offset, sent_at) {
            (Some(partition), Some(offset), Some(at)) => Some((partition, offset, at.and_utc())),
            _ => None,
        },
    }
}

/// Whether `err` is a duplicate key: the replay's number is taken.
fn is_duplicate(err: &sqlx::Error) -> bool {
    err.as_database_error()
        .is_some_and(|db| db.kind() == sqlx::error::ErrorKind::UniqueViolation)
}
