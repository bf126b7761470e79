//! Shared set-up: a fresh, migrated database, a Redis key prefix and a checkpoint folder of
//! this test alone, seeded points data, and drift injected on purpose.

use std::path::PathBuf;

use flashgate_batch::reconcile::summary::Summary;
use flashgate_batch::reconcile::{self, Options};
use flashgate_batch::seed::{self, SeedOptions};
use flashgate_config::Settings;
use flashgate_events::keys::PointsKeys;
use flashgate_testkit::{fresh_database, stack_settings, unique};
use fred::prelude::{ClientLike, HashesInterface, KeysInterface, Pool};
use sqlx::MySqlPool;

/// One test's stores.
pub struct Stores {
    /// Settings pointing at them.
    pub settings: Settings,
    /// The test's database.
    pub db: MySqlPool,
    /// Redis (shared; the test's keys carry its own prefix).
    pub redis: Pool,
}

impl Stores {
    /// A fresh database with the schema, a unique key prefix and checkpoint folder, filled by
    /// `seed-points` with `users` users and `transactions` ledger rows, every cache filled.
    pub async fn seeded(users: u64, transactions: u64) -> Self {
        let mut settings = stack_settings();
        let db = fresh_database(&mut settings).await;
        flashgate_persister::db::migrate(&db)
            .await
            .expect("migrate");
        settings.redis.key_prefix = unique("fgtestbatch");
        settings.batch.checkpoint_dir = checkpoint_dir();
        let redis = settings.redis.connect_pool().await.expect("redis");
        let options = SeedOptions {
            users,
            transactions,
            seed: 11,
            workers: Some(2),
            rows_per_insert: 1_000,
            redis_share: 1.0,
        };
        seed::run(&settings, &options).await.expect("seed");
        Self {
            settings,
            db,
            redis,
        }
    }

    /// Runs a reconciliation in this process.
    pub async fn reconcile(&self, fix: bool) -> Summary {
        let options = Options {
            fix,
            page_size: 100,
            workers: 2,
            ..Options::from_settings(&self.settings)
        };
        reconcile::run(&self.settings, &options)
            .await
            .expect("reconcile")
    }

    /// Users with at least `min` points, in id order.
    pub async fn users_with_at_least(&self, min: i64, count: usize) -> Vec<(String, i64)> {
        sqlx::query_as(
            "SELECT user_id, balance FROM point_balances WHERE balance >= ? ORDER BY user_id LIMIT ?",
        )
        .bind(min)
        .bind(count as i64)
        .fetch_all(&self.db)
        .await
        .expect("users")
    }

    /// Runs SQL against the test's database.
    pub async fn sql(&self, sql: &str, user: &str) {
        sqlx::query(sqlx::AssertSqlSafe(sql.to_owned()))
            .bind(user)
            .execute(&self.db)
            .await
            .expect("sql");
    }

    /// The cache key of `user`.
    pub fn cache_key(&self, user: &str) -> String {
        PointsKeys::for_user(&self.settings.redis.key_prefix, user).balance(user)
    }

    /// Adds `by` to a field of `user`'s cache.
    pub async fn bump_cache(&self, user: &str, field: &str, by: i64) {
        let _: i64 = self
            .redis
            .hincrby(self.cache_key(user), field, by)
            .await
            .expect("hincrby");
    }

    /// `user`'s cache as `(balance, version, pending)`, if there is one.
    pub async fn cache(&self, user: &str) -> Option<(i64, u64, i64)> {
        let fields: Vec<Option<i64>> = self
            .redis
            .hmget(self.cache_key(user), vec!["balance", "version", "pending"])
            .await
            .expect("hmget");
        match fields.as_slice() {
            [Some(balance), Some(version), pending] => {
                Some((*balance, *version as u64, pending.unwrap_or(0)))
            }
            _ => None,
        }
    }

    /// Deletes `user`'s cache.
    pub async fn drop_cache(&self, user: &str) {
        let _: i64 = self.redis.del(self.cache_key(user)).await.expect("del");
    }

    /// Users whose balance row differs from their ledger (or who have no row), counted in SQL.
    pub async fn balances_off_the_ledger(&self) -> i64 {
        sqlx::query_scalar(
            "SELECT COUNT(*) FROM (SELECT l.user_id, SUM(l.delta) AS s FROM point_ledger l \
             GROUP BY l.user_id) t LEFT JOIN point_balances b ON b.user_id = t.user_id \
             WHERE b.balance IS NULL OR b.balance <> t.s",
        )
        .fetch_one(&self.db)
        .await
        .expect("count")
    }

    /// Drops the database and the test's Redis keys.
    pub async fn clean_up(self) {
        let pattern = format!("{}:*", self.settings.redis.key_prefix);
        let client = self.redis.next();
        let mut cursor = "0".to_owned();
        loop {
            let (next, keys): (String, Vec<String>) = client
                .custom(
                    fred::cmd!("SCAN"),
                    vec![
                        cursor.clone(),
                        "MATCH".into(),
                        pattern.clone(),
                        "COUNT".into(),
                        "1000".into(),
                    ],
                )
                .await
                .expect("scan");
            if !keys.is_empty() {
                let _: i64 = client.del(keys).await.expect("del");
            }
            if next == "0" {
                break;
            }
            cursor = next;
        }
        let _ = std::fs::remove_dir_all(&self.settings.batch.checkpoint_dir);
        flashgate_testkit::drop_database(self.db).await;
    }
}

/// A checkpoint folder of this test alone.
pub fn checkpoint_dir() -> PathBuf {
    std::env::temp_dir().join(unique("fgtest-batch-"))
}
