//! The waiting room's draw: how a secret seed and the ticket ids that joined before a sale's
//! start give every ticket its position, the same in the gateway (which draws) and in
//! `flashgate-batch verify-draw` (which anyone can run to check it).
//!
//! The procedure, simple enough to redo by hand with `sha256sum`:
//! 1. When the queue is created, a 32-byte `seed` is drawn from the OS's random source and kept
//!    secret; `commitment = hex(SHA-256(seed))` is published at once
//!    (`GET /v1/sales/{id}/queue`). Publishing it before anyone joins binds flashgate to that
//!    seed: it cannot pick another after seeing who joined.
//! 2. At the sale's start, each ticket `t` that joined before it gets the sort key
//!    `SHA-256(seed || ":" || t)` (the seed's 32 raw bytes, the byte `:`, the ticket id's
//!    UTF-8 bytes). Tickets sorted by that key, ascending (ties, which SHA-256 makes
//!    practically impossible, by ticket id), take positions 1, 2, 3, ...
//! 3. The seed (hex) and the ticket ids in position order are then published
//!    (`GET /v1/sales/{id}/queue/draw`): hash the seed and compare with the commitment, recompute
//!    every key, sort, and compare with the published order.
//!
//! Ticket ids are random and chosen by flashgate at join time, and the seed is fixed before
//! any ticket exists, so no joiner can aim for a good key and the join order plays no part.

use sha2::{Digest, Sha256};

/// Length of a seed, in bytes.
pub const SEED_BYTES: usize = 32;

/// `hex(SHA-256(seed))`: what is published before the draw.
pub fn commitment(seed: &[u8]) -> String {
    hex::encode(Sha256::digest(seed))
}

/// A ticket's sort key: `SHA-256(seed || ":" || ticket_id)`.
pub fn sort_key(seed: &[u8], ticket_id: &str) -> [u8; 32] {
    let mut hash = Sha256::new();
    hash.update(seed);
    hash.update(b":");
    hash.update(ticket_id.as_bytes());
    hash.finalize().into()
}

/// The tickets in position order (the first is position 1).
pub fn order<S: AsRef<str>>(seed: &[u8], tickets: &[S]) -> Vec<String> {
    let mut keyed: Vec<([u8; 32], &str)> = tickets
        .iter()
        .map(|ticket| (sort_key(seed, ticket.as_ref()), ticket.as_ref()))
        .collect();
    keyed.sort_unstable();
    keyed
        .into_iter()
        .map(|(_, ticket)| ticket.to_owned())
        .collect()
}

/// A seed written in hex, read back.
pub fn parse_seed(seed_hex: &str) -> Result<[u8; SEED_BYTES], DrawMismatch> {
    let bytes = hex::decode(seed_hex.trim()).map_err(|_| DrawMismatch::BadSeed)?;
    bytes.try_into().map_err(|_| DrawMismatch::BadSeed)
}

/// Why a published draw does not check out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DrawMismatch {
    /// The seed is not 32 bytes of hex.
    BadSeed,
    /// `SHA-256(seed)` is not the commitment published before the draw.
    Commitment {
        /// hex(SHA-256(seed)) of the revealed seed.
        computed: String,
    },
    /// The published order is not the one the seed gives: the first position that differs.
    Position {
        /// Position (1-based).
        position: usize,
        /// The ticket the seed puts there.
        expected: String,
        /// The ticket published there.
        published: String,
    },
    /// A ticket id appears twice.
    Duplicate(String),
}

impl std::fmt::Display for DrawMismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::BadSeed => f.write_str("the seed is not 32 bytes written in hex"),
            Self::Commitment { computed } => write!(
                f,
                "SHA-256 of the revealed seed is {computed}, not the commitment published before \
                 the draw"
            ),
            Self::Position {
                position,
                expected,
                published,
            } => write!(
                f,
                "position {position}: the seed gives ticket {expected}, the draw published \
                 {published}"
            ),
            Self::Duplicate(ticket) => write!(f, "ticket {ticket} is listed twice"),
        }
    }
}

impl std::error::Error for DrawMismatch {}

/// Checks a published draw: the seed matches the commitment and gives exactly the published
/// order of `tickets` (position order).
pub fn verify<S: AsRef<str>>(
    seed_hex: &str,
    commitment_hex: &str,
    tickets: &[S],
) -> Result<(), DrawMismatch> {
    let seed = parse_seed(seed_hex)?;
    let computed = commitment(&seed);
    if !computed.eq_ignore_ascii_case(commitment_hex.trim()) {
        return Err(DrawMismatch::Commitment { computed });
    }
    let mut seen = std::collections::HashSet::with_capacity(tickets.len());
    for ticket in tickets {
        if !seen.insert(ticket.as_ref()) {
            return Err(DrawMismatch::Duplicate(ticket.as_ref().to_owned()));
        }
    }
    let expected = order(&seed, tickets);
    for (i, (want, got)) in expected.iter().zip(tickets).enumerate() {
        if want != got.as_ref() {
            return Err(DrawMismatch::Position {
                position: i + 1,
                expected: want.clone(),
                published: got.as_ref().to_owned(),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEED: [u8; 32] = [7; 32];

    #[test]
    fn the_commitment_is_the_hex_sha256_of_the_seed() {
        // `printf '' | sha256sum`
        assert_eq!(
            commitment(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(commitment(&SEED).len(), 64);
    }

    #[test]
    fn the_sort_key_hashes_seed_colon_ticket() {
        // `printf 'abc:t1' | sha256sum` with a 3-byte "seed" shows the layout.
        assert_eq!(
            hex::encode(sort_key(b"abc", "t1")),
            hex::encode(Sha256::digest(b"abc:t1"))
        );
    }

    #[test]
    fn the_order_depends_on_the_seed_and_not_on_the_join_order() {
        let tickets: Vec<String> = (0..50).map(|i| format!("ticket-{i:02}")).collect();
        let mut reversed = tickets.clone();
        reversed.reverse();
        let drawn = order(&SEED, &tickets);
        assert_eq!(drawn, order(&SEED, &reversed), "join order plays no part");
        assert_ne!(drawn, tickets, "the draw shuffles");
        assert_ne!(
            drawn,
            order(&[8; 32], &tickets),
            "another seed, another order"
        );
        let mut sorted = drawn.clone();
        sorted.sort();
        assert_eq!(sorted, tickets, "every ticket once");
    }

    #[test]
    fn a_published_draw_checks_out_and_any_change_is_caught() {
        let tickets: Vec<String> = (0..20).map(|i| format!("t{i}")).collect();
        let drawn = order(&SEED, &tickets);
        let seed_hex = hex::encode(SEED);
        let commit = commitment(&SEED);
        assert_eq!(verify(&seed_hex, &commit, &drawn), Ok(()));

        let mut swapped = drawn.clone();
        swapped.swap(3, 4);
        assert!(matches!(
            verify(&seed_hex, &commit, &swapped),
            Err(DrawMismatch::Position { position: 4, .. })
        ));
        assert!(matches!(
            verify(&hex::encode([8; 32]), &commit, &drawn),
            Err(DrawMismatch::Commitment { .. })
        ));
        assert_eq!(
            verify("zz", &commit, &drawn),
            Err(DrawMismatch::BadSeed),
            "not hex"
        );
        let mut twice = drawn.clone();
        twice.push(drawn[0].clone());
        assert!(matches!(
            verify(&seed_hex, &commit, &twice),
            Err(DrawMismatch::Duplicate(_))
        ));
    }
}
