//! Reading the dead-letter topic: every letter from the start of each partition to its end as
//! it is now, or the one letter at an id. The reader joins no consumer group and commits
//! nothing: reading letters never moves anyone's offsets.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::{DateTime, Utc};
use flashgate_config::KafkaSettings;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};

use super::letter::{Letter, LetterId};

/// Longest a read of the topic may take before it is given up as an error.
const READ_TIMEOUT: Duration = Duration::from_secs(60);

/// Timeout of one metadata or watermark request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Which letters an operator asks for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// Only those of this reason code.
    pub reason: Option<String>,
    /// Only those dead-lettered at or after this time.
    pub since: Option<DateTime<Utc>>,
}

impl Filter {
    /// Whether `letter` is one asked for (a letter without a time is never "since" anything).
    pub fn matches(&self, letter: &Letter) -> bool {
        self.reason
            .as_ref()
            .is_none_or(|reason| *reason == letter.reason_code)
            && self
                .since
                .is_none_or(|since| letter.at.is_some_and(|at| at >= since))
    }
}

/// A client of the dead-letter topic (blocking: call it from `spawn_blocking`).
pub struct Reader {
    consumer: BaseConsumer,
    topic: String,
}

impl Reader {
    /// A reader of `kafka.dead_letter_topic`.
    pub fn new(kafka: &KafkaSettings) -> anyhow::Result<Self> {
        // A group id is required by the client, but never joined: partitions are assigned.
        let consumer: BaseConsumer = kafka
            .consumer_config("flashgate-dlq-reader")
            .create()
            .context("creating the dead-letter reader")?;
        Ok(Self {
            consumer,
            topic: kafka.dead_letter_topic.clone(),
        })
    }

    /// The dead-letter topic's name.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Every letter `filter` asks for, by partition then offset.
    pub fn letters(&self, filter: &Filter) -> anyhow::Result<Vec<Letter>> {
        let mut assignment = TopicPartitionList::new();
        // The offset each partition must reach: its end now.
        let mut ends: HashMap<i32, i64> = HashMap::new();
        for partition in self.partitions()? {
            let (low, high) = self
                .consumer
                .fetch_watermarks(&self.topic, partition, REQUEST_TIMEOUT)
                .with_context(|| format!("reading the end of {}/{partition}", self.topic))?;
            if high > low {
                assignment.add_partition_offset(&self.topic, partition, Offset::Offset(low))?;
                ends.insert(partition, high);
            }
        }
        let mut letters = Vec::new();
        if ends.is_empty() {
            return Ok(letters);
        }
        self.consumer.assign(&assignment)?;
        let deadline = Instant::now() + READ_TIMEOUT;
        while !ends.is_empty() {
            anyhow::ensure!(
                Instant::now() < deadline,
                "reading {} timed out ({} partitions unfinished)",
                self.topic,
                ends.len()
            );
            let Some(received) = self.consumer.poll(Duration::from_millis(200)) else {
                continue;
            };
            let message = received.with_context(|| format!("reading {}", self.topic))?;
            let letter = Letter::from_message(&message);
            if ends
                .get(&letter.id.partition)
                .is_some_and(|&end| letter.id.offset + 1 >= end)
            {
                ends.remove(&letter.id.partition);
            }
            if filter.matches(&letter) {
                letters.push(letter);
            }
        }
        self.consumer.unassign()?;
        letters.sort_by_key(|letter| letter.id);
        Ok(letters)
    }

    /// The letter at `id`, if there is one.
    pub fn letter(&self, id: LetterId) -> anyhow::Result<Option<Letter>> {
        if !self.partitions()?.contains(&id.partition) {
            return Ok(None);
        }
        let (low, high) = self
            .consumer
            .fetch_watermarks(&self.topic, id.partition, REQUEST_TIMEOUT)
            .with_context(|| format!("reading the end of {}/{}", self.topic, id.partition))?;
        if id.offset < low || id.offset >= high {
            return Ok(None);
        }
        let mut assignment = TopicPartitionList::new();
        assignment.add_partition_offset(&self.topic, id.partition, Offset::Offset(id.offset))?;
        self.consumer.assign(&assignment)?;
        let deadline = Instant::now() + READ_TIMEOUT;
        let found = loop {
            anyhow::ensure!(
                Instant::now() < deadline,
                "reading {} timed out",
                self.topic
            );
            let Some(received) = self.consumer.poll(Duration::from_millis(200)) else {
                continue;
            };
            let letter =
                Letter::from_message(&received.with_context(|| format!("reading {}", self.topic))?);
            // A compacted or transactional topic may skip offsets: the next one is not it.
            if letter.id.offset >= id.offset || letter.id.offset + 1 >= high {
                break (letter.id == id).then_some(letter);
            }
        };
        self.consumer.unassign()?;
        Ok(found)
    }

    /// The partitions of the topic (none when it does not exist yet).
    fn partitions(&self) -> anyhow::Result<Vec<i32>> {
        let metadata = self
            .consumer
            .fetch_metadata(Some(&self.topic), REQUEST_TIMEOUT)
            .with_context(|| format!("reading the metadata of {}", self.topic))?;
        Ok(metadata
            .topics()
            .iter()
            .filter(|topic| topic.name() == self.topic && topic.error().is_none())
            .flat_map(|topic| topic.partitions().iter().map(|p| p.id()))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn letter(reason: &str, at: Option<&str>) -> Letter {
        Letter {
            id: LetterId {
                partition: 0,
                offset: 1,
            },
            at: at.map(|at| at.parse().expect("time")),
            reason_code: reason.to_owned(),
            reason: String::new(),
            source_topic: String::new(),
            source_partition: 0,
            source_offset: 0,
            key: Vec::new(),
            payload: Vec::new(),
            trace_id: None,
            replay_of: None,
        }
    }

    #[test]
    fn a_filter_keeps_letters_of_its_reason_dead_lettered_since_its_time() {
        let since = Some("2026-11-30T12:00:00Z".parse().expect("time"));
        let filter = Filter {
            reason: Some("unknown_sale".to_owned()),
            since,
        };
        assert!(filter.matches(&letter("unknown_sale", Some("2026-11-30T12:00:00Z"))));
        assert!(filter.matches(&letter("unknown_sale", Some("2026-11-30T13:00:00Z"))));
        assert!(!filter.matches(&letter("unknown_sale", Some("2026-11-30T11:59:59Z"))));
        assert!(!filter.matches(&letter("undecodable", Some("2026-11-30T13:00:00Z"))));
        assert!(!filter.matches(&letter("unknown_sale", None)));
        assert!(Filter::default().matches(&letter("undecodable", None)));
    }
}
