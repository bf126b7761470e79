//! Redis through Sentinel with fred: discovery of the primary, plain commands, EVALSHA.

use fred::prelude::*;
use fred::types::InfoKind;

use flashgate_testkit::{stack_settings as settings, unique};

#[tokio::test]
async fn sentinel_leads_to_the_primary_which_runs_commands_and_scripts() {
    // Arrange
    let settings = settings();
    let pool = settings
        .redis
        .connect_pool()
        .await
        .expect("connect through Sentinel (is scripts/stack.sh up?)");
    let key = format!(
        "{}:{{test:{}}}:smoke",
        settings.redis.key_prefix,
        unique("r")
    );

    // Act: a write, a read, and a script run by its SHA.
    let info: String = pool
        .info(Some(InfoKind::Replication))
        .await
        .expect("INFO replication");
    let _: () = pool
        .set(&key, "41", Some(Expiration::EX(60)), None, false)
        .await
        .expect("SET");
    let read: String = pool.get(&key).await.expect("GET");
    let sha: String = pool
        .next()
        .script_load("return redis.call('INCRBY', KEYS[1], ARGV[1])")
        .await
        .expect("SCRIPT LOAD");
    let after: i64 = pool
        .evalsha(&sha, vec![key.clone()], vec![1])
        .await
        .expect("EVALSHA");

    // Assert
    assert!(
        info.contains("role:master"),
        "Sentinel must hand us the primary, got: {info}"
    );
    assert_eq!(read, "41");
    assert_eq!(after, 42);

    let _: i64 = pool.del(&key).await.expect("DEL");
    pool.quit().await.expect("QUIT");
}
