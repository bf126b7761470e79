//! Kafka settings, and how they become librdkafka client configurations.

use rdkafka::ClientConfig;
use serde::Deserialize;

use crate::de;
use crate::error::Invalid;

/// Brokers, topic names, and producer and consumer options.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KafkaSettings {
    /// Bootstrap brokers, `host:port[,host:port]`. Default `127.0.0.1:19092` (the local stack).
    #[serde(deserialize_with = "de::string")]
    pub brokers: String,
    /// Client id reported to the brokers. Default `flashgate`.
    #[serde(deserialize_with = "de::string")]
    pub client_id: String,
    /// Topic of admitted orders. Default `flashgate.orders`.
    #[serde(deserialize_with = "de::string")]
    pub orders_topic: String,
    /// Topic of coupon events. Default `flashgate.coupons`.
    #[serde(deserialize_with = "de::string")]
    pub coupons_topic: String,
    /// Topic of point events. Default `flashgate.points`.
    #[serde(deserialize_with = "de::string")]
    pub points_topic: String,
    /// Topic of compensation events (rejected, cancelled, expired orders). Default
    /// `flashgate.compensations`.
    #[serde(deserialize_with = "de::string")]
    pub compensations_topic: String,
    /// Topic of order lifecycle events (`order.cancelled`, `order.expired`, `order.paid`),
    /// published by the persister once MySQL holds them, keyed by order id, for downstream
    /// consumers. Default `flashgate.order-events`.
    #[serde(deserialize_with = "de::string")]
    pub order_events_topic: String,
    /// Topic of payment requests and refund requests (`payment.requested`,
    /// `payment.refund_requested`), relayed from the sales' outboxes keyed by order id and
    /// consumed by `flashgate-saga`. Default `flashgate.payments`.
    #[serde(deserialize_with = "de::string")]
    pub payments_topic: String,
    /// Where messages that can never succeed go, with the reason. Default `flashgate.dead-letter`.
    #[serde(deserialize_with = "de::string")]
    pub dead_letter_topic: String,
    /// Consumer group of the persister. Default `flashgate-persister`.
    #[serde(deserialize_with = "de::string")]
    pub consumer_group: String,
    /// How long the producer may try to deliver one message before reporting failure, in
    /// milliseconds (librdkafka `message.timeout.ms`); 0 means it keeps trying until the broker
    /// takes it. Default 0: a message given up on makes an idempotent producer bump its epoch,
    /// which tansu 0.6 does not support (its storage panics), and the outbox keeps every order
    /// anyway. Bounded by `producer_queue_messages`.
    pub message_timeout_ms: u64,
    /// Timeout of one broker request, in milliseconds (`socket.timeout.ms`). Default 10000.
    pub request_timeout_ms: u64,
    /// How long the producer waits to fill a batch, in milliseconds (`linger.ms`). Default 5.
    pub linger_ms: u64,
    /// Consumer session timeout, in milliseconds (`session.timeout.ms`). Default 30000.
    pub session_timeout_ms: u64,
    /// Bound of the producer's in-memory queue, in messages
    /// (`queue.buffering.max.messages`). Default 100000.
    pub producer_queue_messages: u64,
    /// Longest time the broker may hold a consumer's fetch waiting for data, in milliseconds
    /// (`fetch.wait.max.ms`). Default 100: librdkafka's 500 adds that much to the
    /// admitted → persisted lag on a broker that waits out the full time (tansu does), and
    /// every empty fetch costs tansu a few SQL queries: at 20 an idle persister kept a quarter
    /// of a core busy in the broker, at 100 about 7 %.
    pub fetch_wait_max_ms: u64,
}

impl Default for KafkaSettings {
    fn default() -> Self {
        Self {
            brokers: "127.0.0.1:19092".to_owned(),
            client_id: "flashgate".to_owned(),
            orders_topic: "flashgate.orders".to_owned(),
            coupons_topic: "flashgate.coupons".to_owned(),
            points_topic: "flashgate.points".to_owned(),
            compensations_topic: "flashgate.compensations".to_owned(),
            order_events_topic: "flashgate.order-events".to_owned(),
            payments_topic: "flashgate.payments".to_owned(),
            dead_letter_topic: "flashgate.dead-letter".to_owned(),
            consumer_group: "flashgate-persister".to_owned(),
            message_timeout_ms: 0,
            request_timeout_ms: 10_000,
            linger_ms: 5,
            session_timeout_ms: 30_000,
            producer_queue_messages: 100_000,
            fetch_wait_max_ms: 100,
        }
    }
}

impl KafkaSettings {
    fn base_config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &self.brokers)
            .set("client.id", &self.client_id)
            .set("socket.timeout.ms", self.request_timeout_ms.to_string())
            .set("reconnect.backoff.ms", "100")
            .set("reconnect.backoff.max.ms", "5000");
        config
    }

    /// A plain client for admin requests (topic creation in tests and tools).
    pub fn admin_config(&self) -> ClientConfig {
        self.base_config()
    }

    /// An idempotent producer: `acks=all`, no duplicates or reordering on retry, a bounded
    /// queue, and a delivery timeout.
    pub fn producer_config(&self) -> ClientConfig {
        let mut config = self.base_config();
        config
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("message.timeout.ms", self.message_timeout_ms.to_string())
            .set("linger.ms", self.linger_ms.to_string())
            .set(
                "queue.buffering.max.messages",
                self.producer_queue_messages.to_string(),
            );
        config
    }

    /// A consumer in `group` that commits offsets only when told to, and starts from the
    /// earliest offset when the group has none (nothing admitted is skipped).
    pub fn consumer_config(&self, group: &str) -> ClientConfig {
        let mut config = self.base_config();
        config
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("session.timeout.ms", self.session_timeout_ms.to_string())
            .set("enable.partition.eof", "false")
            .set("fetch.wait.max.ms", self.fetch_wait_max_ms.to_string());
        config
    }

    pub(crate) fn validate(&self, problems: &mut Vec<Invalid>) {
        if self.brokers.trim().is_empty() {
            problems.push(Invalid::new("kafka.brokers", "must not be empty"));
        }
        for (key, topic) in [
            ("kafka.orders_topic", &self.orders_topic),
            ("kafka.coupons_topic", &self.coupons_topic),
            ("kafka.points_topic", &self.points_topic),
            ("kafka.compensations_topic", &self.compensations_topic),
            ("kafka.order_events_topic", &self.order_events_topic),
            ("kafka.payments_topic", &self.payments_topic),
            ("kafka.dead_letter_topic", &self.dead_letter_topic),
        ] {
            if let Err(message) = check_topic_name(topic) {
                problems.push(Invalid::new(key, message));
            }
        }
        if self.consumer_group.is_empty() {
            problems.push(Invalid::new("kafka.consumer_group", "must not be empty"));
        }
        for (key, value) in [
            ("kafka.request_timeout_ms", self.request_timeout_ms),
            ("kafka.session_timeout_ms", self.session_timeout_ms),
            (
                "kafka.producer_queue_messages",
                self.producer_queue_messages,
            ),
        ] {
            Invalid::check_positive(problems, key, value);
        }
    }
}

/// Kafka topic names: 1 to 249 characters of `[a-zA-Z0-9._-]`.
fn check_topic_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 249 {
        return Err("a topic name has 1 to 249 characters".to_owned());
    }
    match name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        Some(c) => Err(format!("`{c}` is not allowed in a topic name")),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn producer_is_idempotent_with_acks_all() {
        let config = KafkaSettings::default().producer_config();
        assert_eq!(config.get("enable.idempotence"), Some("true"));
        assert_eq!(config.get("acks"), Some("all"));
    }

    #[test]
    fn consumer_never_commits_on_its_own() {
        let config = KafkaSettings::default().consumer_config("g");
        assert_eq!(config.get("enable.auto.commit"), Some("false"));
        assert_eq!(config.get("group.id"), Some("g"));
    }

    #[test]
    fn topic_names_follow_kafka_rules() {
        assert!(check_topic_name("flashgate.orders").is_ok());
        assert!(check_topic_name("").is_err());
        assert!(check_topic_name("with space").is_err());
    }
}
