//! `flashgate-notifier`: which events go to which channels (webhooks, email, Slack-compatible
//! incoming webhooks), how each endpoint is reached, and how failed deliveries are retried,
//! paused by a circuit breaker and finally dead-lettered.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::de;
use crate::error::Invalid;
use crate::secret::Secret;

/// The notifier's settings (`[notifier]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NotifierSettings {
    /// Address of `/healthz`, `/readyz` and `/metrics`. Default `127.0.0.1:8084`.
    pub listen: SocketAddr,
    /// Consumer group of the notifier (its own offsets, apart from the persister's). Default
    /// `flashgate-notifier`.
    #[serde(deserialize_with = "de::string")]
    pub consumer_group: String,
    /// Topics consumed. Empty (the default) means `kafka.order_events_topic` (orders paid,
    /// cancelled, expired; payments failed), `kafka.compensations_topic` (orders, coupons and
    /// points rejected) and `kafka.coupons_topic` (coupons issued).
    #[serde(deserialize_with = "de::list")]
    pub topics: Vec<String>,
    /// Folder of the email templates, one `<event type>.txt` each (first line `Subject: ...`),
    /// with `default.txt` for types without their own. Default `notifier/templates`.
    pub templates_dir: PathBuf,
    /// Event type → the channels it is delivered to: `webhook:<name>`, `slack:<name>`, `email`
    /// (to the address of the event's `user_id` in `user_contacts`). A type not listed is
    /// consumed and not delivered. Default: nothing is delivered.
    pub routes: BTreeMap<String, Vec<String>>,
    /// Signed webhooks by name.
    pub webhooks: BTreeMap<String, WebhookSettings>,
    /// Slack-compatible incoming webhooks by name (for operators).
    pub slack: BTreeMap<String, SlackSettings>,
    /// The SMTP server of the email channel.
    pub email: EmailSettings,
    /// Deliveries one endpoint holds in memory at once (sending or waiting for a retry). Past
    /// it, new deliveries wait in MySQL (`pending`) and are picked up by the sweep: a slow
    /// endpoint never makes the consumer wait or the process grow. Default 1000.
    pub queue_per_endpoint: usize,
    /// Requests in flight to one endpoint at once. Default 8.
    pub concurrency_per_endpoint: usize,
    /// Attempts of one delivery before it is dead-lettered (an attempt refused by an open
    /// breaker counts). Default 8.
    pub max_attempts: u32,
    /// Delay before the first retry, in milliseconds; it doubles per attempt, capped, with
    /// full jitter. Default 1000.
    pub retry_base_ms: u64,
    /// Longest delay between attempts, in milliseconds. Default 300000 (5 min).
    pub retry_cap_ms: u64,
    /// Failures in a row that open an endpoint's breaker. Default 5.
    pub breaker_failures: u32,
    /// How long an open breaker refuses attempts before letting one probe through, in
    /// milliseconds. Default 30000.
    pub breaker_open_ms: u64,
    /// How often deliveries waiting in MySQL (resumed after a restart, or beyond an endpoint's
    /// queue) are looked for, in milliseconds. Default 1000.
    pub sweep_interval_ms: u64,
}

impl Default for NotifierSettings {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8084)),
            consumer_group: "flashgate-notifier".to_owned(),
            topics: Vec::new(),
            templates_dir: PathBuf::from("notifier/templates"),
            routes: BTreeMap::new(),
            webhooks: BTreeMap::new(),
            slack: BTreeMap::new(),
            email: EmailSettings::default(),
            queue_per_endpoint: 1_000,
            concurrency_per_endpoint: 8,
            max_attempts: 8,
            retry_base_ms: 1_000,
            retry_cap_ms: 300_000,
            breaker_failures: 5,
            breaker_open_ms: 30_000,
            sweep_interval_ms: 1_000,
        }
    }
}

/// One signed webhook.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookSettings {
    /// Where the event's envelope is POSTed (`http://` or `https://`).
    #[serde(deserialize_with = "de::string")]
    pub url: String,
    /// Key of the `Flashgate-Signature` HMAC, shared with the receiver.
    pub secret: Secret,
    /// Deadline of one POST (connect, send, answer), in milliseconds. Default 5000.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
}

/// One Slack-compatible incoming webhook.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlackSettings {
    /// The incoming webhook's URL (a secret: whoever has it can post).
    pub url: Secret,
    /// Deadline of one POST, in milliseconds. Default 5000.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
}

fn default_timeout_ms() -> u64 {
    5_000
}

/// How the SMTP connection is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SmtpTls {
    /// Plain text (a relay on loopback, the tests).
    None,
    /// STARTTLS when the server offers it, plain text otherwise.
    Opportunistic,
    /// STARTTLS, refusing a server that does not offer it (port 587).
    Starttls,
    /// TLS from the first byte (port 465).
    Tls,
}

/// The email channel's SMTP server and sender.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EmailSettings {
    /// SMTP host. Default `127.0.0.1`.
    #[serde(deserialize_with = "de::string")]
    pub host: String,
    /// SMTP port. Default 25.
    pub port: u16,
    /// `none`, `opportunistic`, `starttls` or `tls`. Default `starttls`.
    pub tls: SmtpTls,
    /// User name for SMTP AUTH; empty (the default) sends without authenticating.
    #[serde(deserialize_with = "de::string")]
    pub username: String,
    /// Password for SMTP AUTH.
    pub password: Option<Secret>,
    /// The sender, `Name <address>` or `address`. Default `flashgate <noreply@localhost>`.
    #[serde(deserialize_with = "de::string")]
    pub from: String,
    /// Deadline of one message (connect, greet, send), in milliseconds. Default 10000.
    pub timeout_ms: u64,
}

impl Default for EmailSettings {
    fn default() -> Self {
        Self {
            host: "127.0.0.1".to_owned(),
            port: 25,
            tls: SmtpTls::Starttls,
            username: String::new(),
            password: None,
            from: "flashgate <noreply@localhost>".to_owned(),
            timeout_ms: 10_000,
        }
    }
}

/// Where one route sends an event.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Channel {
    /// The webhook of this name.
    Webhook(String),
    /// The Slack-compatible webhook of this name.
    Slack(String),
    /// An email to the event's user.
    Email,
}

impl Channel {
    /// `webhook:<name>`, `slack:<name>` or `email`.
    pub fn parse(text: &str) -> Result<Self, String> {
        match text.split_once(':') {
            None if text == "email" => Ok(Self::Email),
            Some(("webhook", name)) if !name.is_empty() => Ok(Self::Webhook(name.to_owned())),
            Some(("slack", name)) if !name.is_empty() => Ok(Self::Slack(name.to_owned())),
            _ => Err(format!(
                "`{text}` is not `webhook:<name>`, `slack:<name>` or `email`"
            )),
        }
    }
}

impl NotifierSettings {
    /// The channels of every routed event type (checked at load: they parse and exist).
    pub fn channels(&self) -> BTreeMap<String, Vec<Channel>> {
        self.routes
            .iter()
            .map(|(kind, channels)| {
                let parsed = channels.iter().filter_map(|c| Channel::parse(c).ok());
                (kind.clone(), parsed.collect())
            })
            .collect()
    }

    /// The sweep's period.
    pub fn sweep_interval(&self) -> Duration {
        Duration::from_millis(self.sweep_interval_ms)
    }

    pub(crate) fn validate(&self, problems: &mut Vec<Invalid>) {
        if self.consumer_group.is_empty() {
            problems.push(Invalid::new("notifier.consumer_group", "must not be empty"));
        }
        for (kind, channels) in &self.routes {
            let key = format!("notifier.routes.{kind}");
            for channel in channels {
                let known = match Channel::parse(channel) {
                    Err(message) => {
                        problems.push(Invalid::new(&key, message));
                        continue;
                    }
                    Ok(Channel::Email) => true,
                    Ok(Channel::Webhook(name)) => self.webhooks.contains_key(&name),
                    Ok(Channel::Slack(name)) => self.slack.contains_key(&name),
                };
                if !known {
                    problems.push(Invalid::new(
                        &key,
                        format!(
                            "`{channel}` names no endpoint in notifier.webhooks or notifier.slack"
                        ),
                    ));
                }
            }
        }
        for (name, hook) in &self.webhooks {
            let key = format!("notifier.webhooks.{name}");
            check_url(problems, &format!("{key}.url"), &hook.url);
            if hook.secret.expose().len() < 16 {
                problems.push(Invalid::new(
                    &format!("{key}.secret"),
                    "must have at least 16 characters",
                ));
            }
            Invalid::check_positive(problems, &format!("{key}.timeout_ms"), hook.timeout_ms);
        }
        for (name, slack) in &self.slack {
            let key = format!("notifier.slack.{name}");
            check_url(problems, &format!("{key}.url"), slack.url.expose());
            Invalid::check_positive(problems, &format!("{key}.timeout_ms"), slack.timeout_ms);
        }
        let email = &self.email;
        if email.from.trim().is_empty() || !email.from.contains('@') {
            problems.push(Invalid::new("notifier.email.from", "must be an address"));
        }
        if !email.username.is_empty() && email.password.is_none() {
            problems.push(Invalid::new(
                "notifier.email.password",
                "must be set when notifier.email.username is",
            ));
        }
        if !(1..=100_000).contains(&self.queue_per_endpoint) {
            problems.push(Invalid::new(
                "notifier.queue_per_endpoint",
                "must be between 1 and 100000",
            ));
        }
        if !(1..=1_000).contains(&self.concurrency_per_endpoint) {
            problems.push(Invalid::new(
                "notifier.concurrency_per_endpoint",
                "must be between 1 and 1000",
            ));
        }
        if !(1..=100).contains(&self.max_attempts) {
            problems.push(Invalid::new(
                "notifier.max_attempts",
                "must be between 1 and 100",
            ));
        }
        for (key, value) in [
            ("notifier.email.timeout_ms", email.timeout_ms),
            ("notifier.retry_base_ms", self.retry_base_ms),
            ("notifier.breaker_open_ms", self.breaker_open_ms),
            ("notifier.sweep_interval_ms", self.sweep_interval_ms),
            (
                "notifier.breaker_failures",
                u64::from(self.breaker_failures),
            ),
        ] {
            Invalid::check_positive(problems, key, value);
        }
        if self.retry_cap_ms < self.retry_base_ms {
            problems.push(Invalid::new(
                "notifier.retry_cap_ms",
                "must be at least notifier.retry_base_ms",
            ));
        }
    }
}

fn check_url(problems: &mut Vec<Invalid>, key: &str, url: &str) {
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        problems.push(Invalid::new(key, "must be an http:// or https:// URL"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hook(secret: &str) -> WebhookSettings {
        WebhookSettings {
            url: "http://127.0.0.1:9/hook".to_owned(),
            secret: Secret::new(secret),
            timeout_ms: 1_000,
        }
    }

    #[test]
    fn routes_name_existing_endpoints_and_secrets_are_long_enough() {
        let mut settings = NotifierSettings::default();
        settings
            .webhooks
            .insert("shop".into(), hook("0123456789abcdef"));
        settings.routes.insert(
            "order.paid".into(),
            vec!["webhook:shop".into(), "email".into()],
        );
        let mut problems = Vec::new();
        settings.validate(&mut problems);
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(
            settings.channels()["order.paid"],
            vec![Channel::Webhook("shop".into()), Channel::Email]
        );

        settings.routes.insert(
            "order.expired".into(),
            vec!["webhook:nope".into(), "sms".into()],
        );
        settings.webhooks.insert("short".into(), hook("short"));
        let mut problems = Vec::new();
        settings.validate(&mut problems);
        let keys: Vec<&str> = problems.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "notifier.routes.order.expired",
                "notifier.routes.order.expired",
                "notifier.webhooks.short.secret"
            ],
            "{problems:?}"
        );
    }
}
