//! What every Kafka consumer of flashgate does alike (the persister, the saga's intake, the
//! notifier's): take the next batch — the first message that arrives and those that follow it
//! within a short wait — and commit, after the batch is stored, the offset after the last
//! message of each partition.

use std::collections::HashMap;
use std::time::Duration;

use rdkafka::consumer::{CommitMode, Consumer, ConsumerContext, StreamConsumer};
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::watch;
use tokio::time::Instant;

/// How long a consumer waits after an error of its own before receiving again.
const AFTER_ERROR: Duration = Duration::from_millis(200);

/// What [`next_batch`] found.
#[derive(Debug)]
pub enum Next {
    /// Messages, at least one.
    Batch(Vec<OwnedMessage>),
    /// None arrived before the tick was due.
    Tick,
    /// Shutdown was asked for.
    Stop,
}

/// The next batch: the first message that arrives and those that follow it within `wait`, up
/// to `size`; [`Next::Tick`] when none came before `tick` (never, when `None`);
/// [`Next::Stop`] once `shutdown` changes.
pub async fn next_batch<C: ConsumerContext + 'static>(
    consumer: &StreamConsumer<C>,
    shutdown: &mut watch::Receiver<bool>,
    tick: Option<Instant>,
    size: usize,
    wait: Duration,
) -> Next {
    let tick_due = async {
        match tick {
            Some(at) => tokio::time::sleep_until(at).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(tick_due);
    let first = loop {
        let received = tokio::select! {
            received = consumer.recv() => received,
            _ = shutdown.changed() => return Next::Stop,
            () = &mut tick_due => return Next::Tick,
        };
        match received {
            Ok(message) => break message.detach(),
            Err(err) => {
                tracing::warn!(error = %err, "consumer error");
                tokio::time::sleep(AFTER_ERROR).await;
            }
        }
    };
    let mut batch = Vec::with_capacity(size.min(1024));
    batch.push(first);
    let deadline = Instant::now() + wait;
    while batch.len() < size {
        match tokio::time::timeout_at(deadline, consumer.recv()).await {
            Ok(Ok(message)) => batch.push(message.detach()),
            Ok(Err(err)) => tracing::warn!(error = %err, "consumer error"),
            Err(_) => break,
        }
    }
    Next::Batch(batch)
}

/// The offset after the last message of each partition in `batch`: what to commit once the
/// batch is stored.
pub fn next_offsets(batch: &[OwnedMessage]) -> HashMap<(String, i32), i64> {
    let mut next: HashMap<(String, i32), i64> = HashMap::new();
    for message in batch {
        let entry = next
            .entry((message.topic().to_owned(), message.partition()))
            .or_insert(0);
        *entry = (*entry).max(message.offset() + 1);
    }
    next
}

/// Commits `next` (the next offset of each partition) in `mode`. A failure is logged and
/// otherwise let be: after a rebalance the new owner reads those messages again, and every
/// consumer here stores idempotently.
pub fn commit<C: ConsumerContext + 'static>(
    consumer: &StreamConsumer<C>,
    next: &HashMap<(String, i32), i64>,
    mode: CommitMode,
) {
    let mut list = TopicPartitionList::new();
    for ((topic, partition), offset) in next {
        let _ = list.add_partition_offset(topic, *partition, Offset::Offset(*offset));
    }
    if let Err(err) = consumer.commit(&list, mode) {
        tracing::warn!(error = %err, "offset commit failed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::Timestamp;

    fn message(topic: &str, partition: i32, offset: i64) -> OwnedMessage {
        OwnedMessage::new(
            None,
            None,
            topic.to_owned(),
            Timestamp::NotAvailable,
            partition,
            offset,
            None,
        )
    }

    #[test]
    fn the_offset_to_commit_is_the_one_after_the_last_message_of_each_partition() {
        let batch = [
            message("a", 0, 7),
            message("a", 1, 3),
            message("a", 0, 9),
            message("b", 0, 1),
            message("a", 0, 8),
        ];
        let next = next_offsets(&batch);
        assert_eq!(next.len(), 3);
        assert_eq!(next[&("a".to_owned(), 0)], 10);
        assert_eq!(next[&("a".to_owned(), 1)], 4);
        assert_eq!(next[&("b".to_owned(), 0)], 2);
    }
}
