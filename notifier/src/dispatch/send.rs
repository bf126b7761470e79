//! How a delivery reaches its endpoint: a signed webhook POST, a Slack-compatible message, or
//! an email rendered from the templates; and the delivery's event, decoded once for the
//! channels that read it.

use std::time::Duration;

use bytes::Bytes;
use chrono::Utc;
use flashgate_config::{NotifierSettings, Secret};
use serde_json::Value;

use crate::channels::email::Mailer;
use crate::channels::http::HttpClient;
use crate::channels::{slack, webhook};
use crate::store::Delivery;
use crate::templates::Templates;

/// How one endpoint is reached.
pub(super) enum Way {
    /// A signed webhook.
    Webhook {
        url: String,
        secret: Secret,
        timeout: Duration,
    },
    /// A Slack-compatible incoming webhook.
    Slack { url: Secret, timeout: Duration },
    /// The SMTP server.
    Email,
}

/// What the ways need to send: one HTTP client for webhooks and Slack, and the SMTP mailer and
/// templates when a route uses email.
pub(super) struct Sender {
    http: HttpClient,
    mailer: Option<Mailer>,
    templates: Templates,
}

impl Sender {
    /// The clients for `settings`; the mailer and templates only when `uses_email` (so a
    /// notifier without email routes needs neither an SMTP server nor templates).
    pub(super) fn new(settings: &NotifierSettings, uses_email: bool) -> anyhow::Result<Self> {
        let (mailer, templates) = if uses_email {
            (
                Some(Mailer::new(&settings.email)?),
                Templates::load(&settings.templates_dir)?,
            )
        } else {
            (None, Templates::default())
        };
        Ok(Self {
            http: HttpClient::new(),
            mailer,
            templates,
        })
    }

    /// Sends `delivery` the endpoint's `way`.
    pub(super) async fn send(
        &self,
        way: &Way,
        delivery: &Delivery,
        envelope: &mut Envelope,
    ) -> Result<(), String> {
        match way {
            Way::Webhook {
                url,
                secret,
                timeout,
            } => {
                let now = Utc::now().timestamp();
                let body = &delivery.payload;
                let headers = [
                    (
                        webhook::SIGNATURE_HEADER,
                        webhook::signature_header(secret.expose().as_bytes(), now, body),
                    ),
                    (webhook::EVENT_ID_HEADER, delivery.event_id.clone()),
                    (webhook::EVENT_TYPE_HEADER, delivery.event_type.clone()),
                ];
                let body = Bytes::copy_from_slice(body);
                self.http.post_json(url, &headers, body, *timeout).await
            }
            Way::Slack { url, timeout } => {
                let envelope = envelope.get(delivery)?;
                let body =
                    serde_json::to_vec(&slack::message(envelope)).map_err(|err| err.to_string())?;
                self.http
                    .post_json(url.expose(), &[], Bytes::from(body), *timeout)
                    .await
            }
            Way::Email => {
                let mailer = self.mailer.as_ref().ok_or("no SMTP server configured")?;
                let (subject, body) = self.templates.render(envelope.get(delivery)?);
                mailer.send(&delivery.target, &subject, body).await
            }
        }
    }
}

/// A delivery's event as JSON, decoded at its first Slack or email attempt and kept for its
/// retries (the payload does not change between them; webhooks send it as it is and never
/// decode it).
#[derive(Default)]
pub(super) struct Envelope(Option<Result<Value, String>>);

impl Envelope {
    /// The event of `delivery`, or why it cannot be decoded (that attempt fails, as every
    /// later one will).
    fn get(&mut self, delivery: &Delivery) -> Result<&Value, String> {
        self.0
            .get_or_insert_with(|| {
                serde_json::from_slice(&delivery.payload)
                    .map_err(|err| format!("undecodable event: {err}"))
            })
            .as_ref()
            .map_err(Clone::clone)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delivery(payload: &[u8]) -> Delivery {
        Delivery {
            id: 1,
            event_id: "order.paid:1-a".into(),
            event_type: "order.paid".into(),
            channel: "slack".into(),
            target: "ops".into(),
            attempts: 0,
            source_topic: "orders".into(),
            source_partition: 0,
            source_offset: 0,
            key: None,
            payload: payload.to_vec(),
        }
    }

    #[test]
    fn the_event_is_decoded_at_the_first_attempt_and_kept_for_the_retries() {
        let mut envelope = Envelope::default();
        let first = delivery(br#"{"type": "order.paid"}"#);
        assert_eq!(envelope.get(&first).unwrap()["type"], "order.paid");
        // Were it decoded again, this payload would fail.
        let again = delivery(b"not json");
        assert_eq!(envelope.get(&again).unwrap()["type"], "order.paid");
    }

    #[test]
    fn an_undecodable_event_fails_every_attempt_with_the_same_reason() {
        let mut envelope = Envelope::default();
        let broken = delivery(b"{\"type\":");
        let first = envelope.get(&broken).unwrap_err();
        assert!(first.starts_with("undecodable event: "), "{first}");
        assert_eq!(envelope.get(&broken).unwrap_err(), first);
    }
}
