//! The name of a stored answer to an idempotency key, the same for every kind of action.

/// `<base>:idem:<user>:<key>` with `%` and `:` of the user written `%25` and `%3A`.
///
/// Both the user id and the client's key may contain `:`, so joining them as they are lets
/// two users share a stored answer (`a` + `b:c` and `a:b` + `c`). Escaped, the user part
/// holds no `:` and ends at the first one: every (user, key) pair has its own name. A user id
/// without `%` or `:` (nearly all) keeps the name it had before the escaping.
pub(super) fn idempotency_key(base: &str, user: &str, key: &str) -> String {
    let mut name = String::with_capacity(base.len() + user.len() + key.len() + 8);
    name.push_str(base);
    name.push_str(":idem:");
    for c in user.chars() {
        match c {
            '%' => name.push_str("%25"),
            ':' => name.push_str("%3A"),
            c => name.push(c),
        }
    }
    name.push(':');
    name.push_str(key);
    name
}

#[cfg(test)]
mod tests {
    use crate::keys::{PointsKeys, PolicyKeys, SaleKeys};

    #[test]
    fn idempotency_keys_of_different_users_never_share_a_name() {
        let sale = SaleKeys::new("fg", 1);
        let policy = PolicyKeys::new("fg", 1);
        let points = PointsKeys::new("fg", 1);
        let names = |user: &str, key: &str| {
            [
                sale.idempotency(user, key),
                policy.idempotency(user, key),
                points.idempotency(user, key),
            ]
        };
        let pairs = [
            ("a", "b:c"),
            ("a:b", "c"),
            ("a%3Ab", "c"),
            ("a%", "3Ab:c"),
            ("a", "b"),
        ];
        for (i, (user_a, key_a)) in pairs.iter().enumerate() {
            for (user_b, key_b) in &pairs[i + 1..] {
                for (a, b) in names(user_a, key_a).iter().zip(names(user_b, key_b).iter()) {
                    assert_ne!(a, b, "{user_a}+{key_a} vs {user_b}+{key_b}");
                }
            }
        }
        // Plain user ids keep the names stored answers had before the escaping.
        assert_eq!(sale.idempotency("alice", "k:1"), "fg:{s:1}:idem:alice:k:1");
        assert_eq!(sale.idempotency("a:b", "c"), "fg:{s:1}:idem:a%3Ab:c");
    }
}
