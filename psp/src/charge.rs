//! What the provider keeps and answers: charges and refunds, and the requests that make them,
//! checked before anything is decided.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::token::FailureCode;

/// Currency of a charge that names none.
pub const DEFAULT_CURRENCY: &str = "usd";

/// Longest `reference`, `payment_token`, refund `reason` and idempotency key accepted, in
/// bytes (Stripe's limit for keys).
pub const MAX_TEXT: usize = 255;

/// A request's input the provider refuses (400 `invalid_request`), saying what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid(pub String);

/// The body of `POST /charges`, as sent.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChargeBody {
    /// Integer minor units, at least 1.
    pub amount: u64,
    /// Three ASCII letters; [`DEFAULT_CURRENCY`] when absent.
    #[serde(default)]
    pub currency: Option<String>,
    /// The test token that decides the outcome (`tok_ok`, ...).
    pub payment_token: String,
    /// The merchant's reference of what is paid for (flashgate: the order id).
    pub reference: String,
}

/// A charge asked for, checked and normalised: what an idempotency key is bound to (the same
/// key with another request is refused with 422).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChargeRequest {
    /// Integer minor units.
    pub amount: u64,
    /// Lower-case ISO 4217 code.
    pub currency: String,
    /// The test token.
    pub payment_token: String,
    /// What is paid for.
    pub reference: String,
}

impl TryFrom<ChargeBody> for ChargeRequest {
    type Error = Invalid;

    fn try_from(body: ChargeBody) -> Result<Self, Invalid> {
        if body.amount == 0 {
            return Err(Invalid("amount: must be at least 1".into()));
        }
        let currency = body
            .currency
            .unwrap_or_else(|| DEFAULT_CURRENCY.to_owned())
            .to_ascii_lowercase();
        if currency.len() != 3 || !currency.bytes().all(|b| b.is_ascii_lowercase()) {
            return Err(Invalid(
                "currency: must be three letters (an ISO 4217 code)".into(),
            ));
        }
        check_text("payment_token", &body.payment_token)?;
        check_text("reference", &body.reference)?;
        Ok(Self {
            amount: body.amount,
            currency,
            payment_token: body.payment_token,
            reference: body.reference,
        })
    }
}

/// Checks that `value` is 1 to [`MAX_TEXT`] bytes of visible ASCII (it is echoed in answers,
/// used as a key and matched in queries).
pub fn check_text(field: &str, value: &str) -> Result<(), Invalid> {
    if value.is_empty() || value.len() > MAX_TEXT {
        return Err(Invalid(format!(
            "{field}: must be 1 to {MAX_TEXT} characters"
        )));
    }
    if !value.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(Invalid(format!(
            "{field}: must be visible ASCII characters without spaces"
        )));
    }
    Ok(())
}

/// Whether a charge went through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ChargeStatus {
    /// The money was taken (201).
    Succeeded,
    /// It was not (402), for the charge's `failure_code`.
    Declined,
}

/// One charge in the provider's book, as answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Charge {
    /// `ch_` and 32 hex digits.
    pub id: String,
    /// Whether the money was taken.
    pub status: ChargeStatus,
    /// Integer minor units.
    pub amount: u64,
    /// Lower-case ISO 4217 code.
    pub currency: String,
    /// The test token it was made with.
    pub payment_token: String,
    /// What it pays for.
    pub reference: String,
    /// The key it was made under.
    pub idempotency_key: String,
    /// When it was recorded.
    pub created_at: DateTime<Utc>,
    /// Why it was declined; absent when it succeeded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure_code: Option<FailureCode>,
    /// Whether it was refunded (at most once, in full).
    pub refunded: bool,
    /// Its refund's id, once refunded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refund: Option<String>,
}

impl Charge {
    /// Whether this charge is what `request` asks for (the test of a reused key).
    pub fn matches(&self, request: &ChargeRequest) -> bool {
        self.amount == request.amount
            && self.currency == request.currency
            && self.payment_token == request.payment_token
            && self.reference == request.reference
    }

    /// Whether the money was taken.
    pub fn succeeded(&self) -> bool {
        self.status == ChargeStatus::Succeeded
    }
}

/// The optional body of `POST /charges/{id}/refund`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RefundBody {
    /// Must be the charge's whole amount when given: refunds are full.
    #[serde(default)]
    pub amount: Option<u64>,
    /// Why the merchant gives the money back, kept with the refund.
    #[serde(default)]
    pub reason: Option<String>,
}

impl RefundBody {
    /// Checks the reason's length and characters (the amount is checked against the charge).
    pub fn check(&self) -> Result<(), Invalid> {
        match &self.reason {
            Some(reason) => check_text("reason", reason),
            None => Ok(()),
        }
    }
}

/// The refund of a charge: every charge is refunded at most once, in full.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Refund {
    /// `re_` and 32 hex digits.
    pub id: String,
    /// The refunded charge's id.
    pub charge: String,
    /// Its whole amount.
    pub amount: u64,
    /// Its currency.
    pub currency: String,
    /// Always `succeeded`: the virtual provider refunds at once.
    pub status: &'static str,
    /// The reason given with the first refund request, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The key of the request that made it, if it had one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    /// When it was made.
    pub created_at: DateTime<Utc>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(amount: u64, currency: Option<&str>, token: &str, reference: &str) -> ChargeBody {
        ChargeBody {
            amount,
            currency: currency.map(str::to_owned),
            payment_token: token.to_owned(),
            reference: reference.to_owned(),
        }
    }

    #[test]
    fn a_charge_request_is_normalised_with_the_default_currency() {
        let request = ChargeRequest::try_from(body(1200, None, "tok_ok", "ord-1")).expect("ok");
        assert_eq!(request.currency, "usd");
        let request =
            ChargeRequest::try_from(body(1200, Some("EUR"), "tok_ok", "ord-1")).expect("ok");
        assert_eq!(request.currency, "eur");
    }

    #[test]
    fn a_zero_amount_a_bad_currency_and_empty_or_long_texts_are_refused_naming_the_field() {
        let refused = |b: ChargeBody| ChargeRequest::try_from(b).expect_err("refused").0;
        assert!(refused(body(0, None, "tok_ok", "r")).starts_with("amount:"));
        assert!(refused(body(1, Some("euro"), "tok_ok", "r")).starts_with("currency:"));
        assert!(refused(body(1, Some("e1r"), "tok_ok", "r")).starts_with("currency:"));
        assert!(refused(body(1, None, "", "r")).starts_with("payment_token:"));
        assert!(refused(body(1, None, "tok_ok", "a b")).starts_with("reference:"));
        assert!(refused(body(1, None, "tok_ok", &"r".repeat(256))).starts_with("reference:"));
        assert!(ChargeRequest::try_from(body(1, None, "tok_ok", &"r".repeat(255))).is_ok());
    }
}
