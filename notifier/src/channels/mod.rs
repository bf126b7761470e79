//! The three ways out: signed webhooks ([`webhook`]), Slack-compatible incoming webhooks
//! ([`slack`], over the same HTTP client) and email over SMTP ([`email`]).

pub mod email;
pub mod http;
pub mod slack;
pub mod webhook;
