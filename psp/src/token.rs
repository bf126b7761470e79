//! The test tokens, in the spirit of stripe-mock's: the payment token a shopper hands over
//! decides what the provider does with the charge.

use serde::Serialize;

/// How many requests for one reference `tok_flaky` answers 503 before it succeeds.
pub const FLAKY_FAILURES: u8 = 2;

/// A payment token, as far as the provider tells them apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Token {
    /// `tok_ok`: the charge succeeds.
    Ok,
    /// `tok_declined`: the card is declined (`card_declined`).
    Declined,
    /// `tok_slow`: the charge succeeds at once, but the answer takes `psp.slow_ms`.
    Slow,
    /// `tok_flaky`: 503 for the first [`FLAKY_FAILURES`] requests per reference (nothing
    /// charged), then it succeeds.
    Flaky,
    /// Any other token: declined as `invalid_token`.
    Invalid,
}

impl Token {
    /// The token a shopper's string stands for.
    pub fn parse(token: &str) -> Self {
        match token {
            "tok_ok" => Self::Ok,
            "tok_declined" => Self::Declined,
            "tok_slow" => Self::Slow,
            "tok_flaky" => Self::Flaky,
            _ => Self::Invalid,
        }
    }

    /// What a new charge with this token comes to, `flaky_failures` being how many requests
    /// for its reference were already answered 503 because of `tok_flaky`.
    pub fn verdict(self, flaky_failures: u8) -> Verdict {
        match self {
            Self::Ok => Verdict::Succeed { slow: false },
            Self::Slow => Verdict::Succeed { slow: true },
            Self::Flaky if flaky_failures < FLAKY_FAILURES => Verdict::Unavailable,
            Self::Flaky => Verdict::Succeed { slow: false },
            Self::Declined => Verdict::Decline(FailureCode::CardDeclined),
            Self::Invalid => Verdict::Decline(FailureCode::InvalidToken),
        }
    }
}

/// What the provider does with a new charge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Recorded as succeeded; with `slow`, answered only after `psp.slow_ms`.
    Succeed {
        /// Whether the answer is held back.
        slow: bool,
    },
    /// Recorded as declined, for this reason.
    Decline(FailureCode),
    /// Answered 503, nothing recorded.
    Unavailable,
}

/// Why a charge was declined, as the provider's answer names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureCode {
    /// The issuer said no (`tok_declined`).
    CardDeclined,
    /// The token is none the provider knows.
    InvalidToken,
}

impl FailureCode {
    /// The code as it appears in answers and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::CardDeclined => "card_declined",
            Self::InvalidToken => "invalid_token",
        }
    }

    /// A sentence for the answer's `error.message`.
    pub fn message(self) -> &'static str {
        match self {
            Self::CardDeclined => "the card was declined",
            Self::InvalidToken => {
                "the payment token is not one this provider knows (tok_ok, tok_declined, \
                 tok_slow, tok_flaky)"
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_test_token_decides_its_outcome() {
        assert_eq!(
            Token::parse("tok_ok").verdict(0),
            Verdict::Succeed { slow: false }
        );
        assert_eq!(
            Token::parse("tok_slow").verdict(0),
            Verdict::Succeed { slow: true }
        );
        assert_eq!(
            Token::parse("tok_declined").verdict(0),
            Verdict::Decline(FailureCode::CardDeclined)
        );
        for other in ["tok_unknown", "", "TOK_OK", "tok_ok "] {
            assert_eq!(
                Token::parse(other).verdict(0),
                Verdict::Decline(FailureCode::InvalidToken),
                "{other:?}"
            );
        }
    }

    #[test]
    fn a_flaky_token_is_unavailable_twice_then_succeeds() {
        let flaky = Token::parse("tok_flaky");
        assert_eq!(flaky.verdict(0), Verdict::Unavailable);
        assert_eq!(flaky.verdict(1), Verdict::Unavailable);
        assert_eq!(flaky.verdict(2), Verdict::Succeed { slow: false });
        assert_eq!(flaky.verdict(3), Verdict::Succeed { slow: false });
    }

    #[test]
    fn failure_codes_serialize_as_their_names() {
        for code in [FailureCode::CardDeclined, FailureCode::InvalidToken] {
            assert_eq!(
                serde_json::to_value(code).expect("serializes"),
                code.as_str()
            );
        }
    }
}
