//! The data `seed-points` generates: how many transactions each user gets (skewed: most users
//! few, some many) and each user's ledger (earns, uses never beyond the balance, refunds of
//! earlier uses), as SQL value tuples. Deterministic for a given seed. Pure logic, no I/O.

use std::fmt::Write;

/// Seconds of history the ledger spans (one year, ending now).
const HISTORY_SECS: u64 = 365 * 24 * 3600;

/// A small, fast, seedable generator (SplitMix64); statistical quality is plenty for test data.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator for stream `stream` of seed `seed` (e.g. one per user).
    pub fn new(seed: u64, stream: u64) -> Self {
        let mut rng = Self(seed ^ stream.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        rng.next_u64();
        rng
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// Uniform in `(0, 1]`.
    fn unit(&mut self) -> f64 {
        ((self.next_u64() >> 11) + 1) as f64 / (1u64 << 53) as f64
    }
}

/// The user id of user number `n` (zero-padded, so ids sort like their numbers).
pub fn user_id(n: u64) -> String {
    format!("user-{n:09}")
}

/// Transactions per user: at least one each, heavy-tailed (Pareto, alpha 2.5), adding up to
/// exactly `transactions`. Needs `transactions >= users`.
pub fn transaction_counts(users: u64, transactions: u64, seed: u64) -> Vec<u32> {
    assert!(transactions >= users, "every user needs a transaction");
    let users_len = usize::try_from(users).expect("users fit in memory");
    let extra_mean = (transactions - users) as f64 / users.max(1) as f64;
    // Pareto(xm, 2.5) has mean xm * 5/3; shifted by -xm it has mean xm * 2/3.
    let xm = extra_mean * 1.5;
    let mut rng = Rng::new(seed, u64::MAX);
    let mut counts: Vec<u32> = (0..users_len)
        .map(|_| {
            let extra = xm * (rng.unit().powf(-1.0 / 2.5) - 1.0);
            1 + extra.min(100_000.0) as u32
        })
        .collect();
    let mut total: u64 = counts.iter().map(|&c| u64::from(c)).sum();
    while total != transactions && users_len > 0 {
        let i = rng.below(users) as usize;
        if total < transactions {
            counts[i] += 1;
            total += 1;
        } else if counts[i] > 1 {
            counts[i] -= 1;
            total -= 1;
        }
    }
    counts
}

/// One user's generated ledger, summed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Generated {
    /// The balance the ledger sums to.
    pub balance: i64,
    /// Ledger rows written.
    pub rows: u64,
}

/// Appends `count` ledger rows of user `n` to `sql` as `(entry_id, txid, user_id, delta,
/// reason, reference, created_at)` tuples, with entry ids from `first_entry`. The first row
/// is an earn; then earns (about 2/3), uses of 10 to 100 % of the balance (never below zero),
/// and refunds of earlier uses, each use refunded at most once. `now` is a Unix time.
pub fn user_ledger(
    sql: &mut String,
    n: u64,
    count: u32,
    first_entry: u64,
    seed: u64,
    now: u64,
) -> Generated {
    let mut rng = Rng::new(seed, n);
    let user = user_id(n);
    let mut balance: i64 = 0;
    let mut open_uses: Vec<(u64, i64)> = Vec::new();
    let step = (HISTORY_SECS / u64::from(count.max(1))).max(1);
    let mut time = now - HISTORY_SECS + rng.below(step);
    for k in 0..u64::from(count) {
        let entry = first_entry + k;
        let roll = rng.below(100);
        if !sql.ends_with("VALUES ") {
            sql.push(',');
        }
        let (delta, reason, txid, reference) = if k > 0 && roll < 25 && balance > 0 {
            let share = 10 + rng.below(91) as i64;
            let amount = (balance * share / 100).max(1);
            open_uses.push((entry, amount));
            (
                -amount,
                "use",
                format!("use:{entry:011}"),
                format!("o{entry:011}"),
            )
        } else if k > 0 && roll < 33 && !open_uses.is_empty() {
            let (used, amount) = open_uses.swap_remove(rng.below(open_uses.len() as u64) as usize);
            (
                amount,
                "refund",
                format!("refund:{used:011}"),
                format!("use:{used:011}"),
            )
        } else {
            // 1 % of an order amount, most orders small.
            let cents = 500 + rng.below(1_000) * rng.below(1_000) / 2;
            let points = (cents / 100).max(1) as i64;
            (
                points,
                "earn",
                format!("earn:o{entry:011}"),
                format!("o{entry:011}"),
            )
        };
        balance += delta;
        let _ = write!(
            sql,
            "({entry},'{txid}','{user}',{delta},'{reason}','{reference}','{}')",
            datetime(time)
        );
        time = (time + 1 + rng.below(step)).min(now);
    }
    Generated {
        balance,
        rows: u64::from(count),
    }
}

/// `YYYY-MM-DD hh:mm:ss` (UTC) of a Unix time; days to civil date after Howard Hinnant.
pub fn datetime(unix: u64) -> String {
    let days = (unix / 86_400) as i64;
    let secs = unix % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_add_up_exactly_and_are_skewed() {
        let counts = transaction_counts(10_000, 60_000, 7);
        assert_eq!(counts.iter().map(|&c| u64::from(c)).sum::<u64>(), 60_000);
        assert!(counts.iter().all(|&c| c >= 1));
        let max = *counts.iter().max().expect("some");
        let ones = counts.iter().filter(|&&c| c == 1).count();
        assert!(max > 30, "a long tail: max {max}");
        assert!(ones > 1_000, "many light users: {ones}");
    }

    #[test]
    fn a_generated_ledger_never_goes_below_zero_and_sums_to_its_balance() {
        for n in 0..200 {
            let mut sql = String::from("VALUES ");
            let generated = user_ledger(&mut sql, n, 40, 1 + n * 40, 3, 1_750_000_000);
            let mut running = 0i64;
            for tuple in sql["VALUES ".len()..].split("),(") {
                let delta: i64 = tuple
                    .split(',')
                    .nth(3)
                    .expect("delta")
                    .parse()
                    .expect("int");
                running += delta;
                assert!(running >= 0, "user {n} went below zero");
            }
            assert_eq!(running, generated.balance);
        }
    }

    #[test]
    fn unix_times_format_as_utc_datetimes() {
        assert_eq!(datetime(0), "1970-01-01 00:00:00");
        assert_eq!(datetime(1_709_210_096), "2024-02-29 12:34:56");
    }
}
