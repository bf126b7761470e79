//! The message `lua/revoke_token.lua` publishes to every gateway: `t <forget_at> <jti>` for one
//! token, `u <revoked_at> <user id>` for every token of a user (unix seconds; the id is the
//! rest of the line, so it may hold spaces).

/// One revocation as announced on the channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// The token `jti` is refused until `forget_at`.
    Token {
        /// The revoked token's `jti`.
        jti: String,
        /// Its `exp` plus the leeway.
        forget_at: u64,
    },
    /// Every token of `user_id` issued at or before `revoked_at` is refused.
    User {
        /// The user whose tokens are revoked.
        user_id: String,
        /// When, by Redis's clock.
        revoked_at: u64,
    },
}

impl Notice {
    /// Reads a message; `None` for anything else (ignored, never fatal).
    pub fn parse(text: &str) -> Option<Self> {
        let mut parts = text.splitn(3, ' ');
        let kind = parts.next()?;
        let time: u64 = parts.next()?.parse().ok()?;
        let id = parts.next().filter(|id| !id.is_empty())?.to_owned();
        match kind {
            "t" => Some(Self::Token {
                jti: id,
                forget_at: time,
            }),
            "u" => Some(Self::User {
                user_id: id,
                revoked_at: time,
            }),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_kinds_parse_and_ids_keep_their_spaces() {
        assert_eq!(
            Notice::parse("t 1700000000 4f2a"),
            Some(Notice::Token {
                jti: "4f2a".into(),
                forget_at: 1_700_000_000
            })
        );
        assert_eq!(
            Notice::parse("u 17 ann lee"),
            Some(Notice::User {
                user_id: "ann lee".into(),
                revoked_at: 17
            })
        );
    }

    #[test]
    fn anything_else_is_ignored() {
        for text in ["", "t", "t 12", "t 12 ", "x 12 a", "t -1 a", "t 1.5 a"] {
            assert_eq!(Notice::parse(text), None, "{text:?}");
        }
    }
}
