//! Email over SMTP (lettre): plain text from the templates, STARTTLS or TLS and AUTH as
//! configured (`[notifier.email]`), one deadline per message.

use anyhow::Context;
use flashgate_config::{EmailSettings, SmtpTls};
use lettre::message::Mailbox;
use lettre::message::header::ContentType;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

/// The SMTP server and the sender.
#[derive(Clone)]
pub struct Mailer {
    /// Pooled connections to the server.
    transport: AsyncSmtpTransport<Tokio1Executor>,
    /// `From:`.
    from: Mailbox,
}

impl Mailer {
    /// A mailer for `settings` (nothing is connected until the first message).
    pub fn new(settings: &EmailSettings) -> anyhow::Result<Self> {
        let host = settings.host.clone();
        let parameters = || TlsParameters::new(host.clone()).context("TLS parameters");
        let tls = match settings.tls {
            SmtpTls::None => Tls::None,
            SmtpTls::Opportunistic => Tls::Opportunistic(parameters()?),
            SmtpTls::Starttls => Tls::Required(parameters()?),
            SmtpTls::Tls => Tls::Wrapper(parameters()?),
        };
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&settings.host)
            .port(settings.port)
            .tls(tls)
            .timeout(Some(std::time::Duration::from_millis(settings.timeout_ms)));
        if !settings.username.is_empty() {
            let password = settings
                .password
                .as_ref()
                .map(|secret| secret.expose().to_owned())
                .unwrap_or_default();
            builder = builder.credentials(Credentials::new(settings.username.clone(), password));
        }
        let from: Mailbox = settings
            .from
            .parse()
            .with_context(|| format!("notifier.email.from {:?}", settings.from))?;
        Ok(Self {
            transport: builder.build(),
            from,
        })
    }

    /// Sends `subject` and `body` to `to`; `Err` says why not.
    pub async fn send(&self, to: &str, subject: &str, body: String) -> Result<(), String> {
        let to: Mailbox = to
            .parse()
            .map_err(|err| format!("bad address {to:?}: {err}"))?;
        let message = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(subject)
            .header(ContentType::TEXT_PLAIN)
            .body(body)
            .map_err(|err| format!("message not built: {err}"))?;
        self.transport
            .send(message)
            .await
            .map(|_| ())
            .map_err(|err| format!("smtp: {err}"))
    }
}
