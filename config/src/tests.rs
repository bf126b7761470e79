//! Unit tests of the layering and of the error messages. Values are passed in; the process
//! environment is never touched.

use std::path::PathBuf;

use crate::{ConfigError, JwtAlgorithm, LogFormat, Settings, Sources};

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// Writes `text` to a file of its own in the temp folder and returns its path.
fn toml_file(name: &str, text: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!(
        "flashgate-config-test-{}-{name}.toml",
        std::process::id()
    ));
    std::fs::write(&path, text).expect("write temp config");
    path
}

fn load_err(sources: &Sources) -> String {
    Settings::load(sources)
        .expect_err("configuration should be rejected")
        .to_string()
}

#[test]
fn defaults_point_at_the_local_stack() {
    let settings = Settings::load(&Sources::default()).expect("defaults are valid");
    assert_eq!(
        settings.redis.sentinels,
        ["127.0.0.1:26390", "127.0.0.1:26391", "127.0.0.1:26392"]
    );
    assert_eq!(settings.redis.master_name, "flashgate");
    assert_eq!(settings.kafka.brokers, "127.0.0.1:19092");
    assert_eq!(
        settings.mysql.url.expose(),
        "mysql://flashgate:flashgate@127.0.0.1:3307/flashgate"
    );
    assert_eq!(settings.gateway.listen.to_string(), "127.0.0.1:8080");
    assert_eq!(settings.gateway.body_limit_bytes, 16 * 1024);
    assert!(
        settings.gateway.jwt.secret.is_none(),
        "no signing key is built in"
    );
}

#[test]
fn file_overrides_defaults_and_env_overrides_file() {
    let file = toml_file(
        "layers",
        r#"
        [gateway]
        body_limit_bytes = 1024
        [kafka]
        brokers = "from-file:9092"
        client_id = "file-client"
        "#,
    );
    let sources = Sources {
        file: Some(file),
        env: env(&[("FLASHGATE__KAFKA__BROKERS", "from-env:9092")]),
    };
    let settings = Settings::load(&sources).expect("valid layers");
    assert_eq!(
        settings.gateway.body_limit_bytes, 1024,
        "file beats default"
    );
    assert_eq!(settings.kafka.brokers, "from-env:9092", "env beats file");
    assert_eq!(
        settings.kafka.client_id, "file-client",
        "file value kept where env is silent"
    );
    assert_eq!(
        settings.redis.pool_size, 8,
        "default kept where both are silent"
    );
}

#[test]
fn env_values_take_the_type_of_their_setting() {
    let sources = Sources {
        file: None,
        env: env(&[
            ("FLASHGATE__REDIS__POOL_SIZE", "4"),
            ("FLASHGATE__REDIS__SENTINELS", "h1:1, h2:2"),
            ("FLASHGATE__KAFKA__CLIENT_ID", "42"),
            ("FLASHGATE__PERSISTER__MIGRATE_ON_START", "false"),
            ("FLASHGATE__GATEWAY__LISTEN", "0.0.0.0:9000"),
            ("FLASHGATE__GATEWAY__JWT__ALGORITHM", "RS256"),
            (
                "FLASHGATE__GATEWAY__JWT__SECRET",
                "12345678901234567890123456789012",
            ),
            ("FLASHGATE__LOG__FORMAT", "json"),
            ("UNRELATED", "ignored"),
            ("FLASHGATE_CONFIG", ""),
        ]),
    };
    let settings = Settings::load(&sources).expect("valid env");
    assert_eq!(settings.redis.pool_size, 4);
    assert_eq!(settings.redis.sentinels, ["h1:1", "h2:2"]);
    assert_eq!(settings.kafka.client_id, "42");
    assert!(!settings.persister.migrate_on_start);
    assert_eq!(settings.gateway.listen.port(), 9000);
    assert_eq!(settings.gateway.jwt.algorithm, JwtAlgorithm::RS256);
    assert_eq!(
        settings.gateway.jwt.secret.as_ref().map(|s| s.expose()),
        Some("12345678901234567890123456789012")
    );
    assert_eq!(settings.log.format, LogFormat::Json);
}

#[test]
fn a_bad_env_value_names_the_key_and_the_variable() {
    let message = load_err(&Sources {
        file: None,
        env: env(&[("FLASHGATE__GATEWAY__BODY_LIMIT_BYTES", "lots")]),
    });
    assert!(
        message.contains("`gateway.body_limit_bytes` (from FLASHGATE__GATEWAY__BODY_LIMIT_BYTES)"),
        "{message}"
    );
}

#[test]
fn an_unknown_key_is_rejected_with_its_name() {
    let file = toml_file("unknown", "[gateway]\nlistn = \"127.0.0.1:1\"\n");
    let message = load_err(&Sources {
        file: Some(file),
        env: Vec::new(),
    });
    assert!(message.contains("listn"), "{message}");

    let message = load_err(&Sources {
        file: None,
        env: env(&[("FLASHGATE__NOPE__KEY", "1")]),
    });
    assert!(message.contains("nope"), "{message}");
}

#[test]
fn every_out_of_range_value_is_reported_at_once() {
    let message = load_err(&Sources {
        file: None,
        env: env(&[
            ("FLASHGATE__GATEWAY__BODY_LIMIT_BYTES", "10"),
            ("FLASHGATE__REDIS__POOL_SIZE", "0"),
            ("FLASHGATE__REDIS__SENTINELS", "no-port"),
            ("FLASHGATE__KAFKA__ORDERS_TOPIC", "bad topic"),
            ("FLASHGATE__MYSQL__URL", "postgres://x"),
            ("FLASHGATE__GATEWAY__JWT__SECRET", "short"),
        ]),
    });
    for key in [
        "gateway.body_limit_bytes",
        "redis.pool_size",
        "redis.sentinels",
        "kafka.orders_topic",
        "mysql.url",
        "gateway.jwt.secret",
    ] {
        assert!(
            message.contains(&format!("`{key}`")),
            "{key} missing in: {message}"
        );
    }
}

#[test]
fn invalid_toml_and_missing_files_name_the_file() {
    let file = toml_file("syntax", "[gateway\nlisten = 1\n");
    let message = load_err(&Sources {
        file: Some(file.clone()),
        env: Vec::new(),
    });
    assert!(message.contains(&file.display().to_string()), "{message}");
    assert!(message.contains("not valid TOML"), "{message}");

    let missing = PathBuf::from("/nonexistent/flashgate.toml");
    let err = Settings::load(&Sources {
        file: Some(missing),
        env: Vec::new(),
    })
    .expect_err("missing file");
    assert!(matches!(err, ConfigError::Read { .. }), "{err}");
}

#[test]
fn an_env_variable_cannot_descend_into_a_value() {
    let message = load_err(&Sources {
        file: None,
        env: env(&[("FLASHGATE__REDIS__POOL_SIZE__MORE", "1")]),
    });
    assert!(
        message.contains("FLASHGATE__REDIS__POOL_SIZE__MORE"),
        "{message}"
    );
}

#[test]
fn secrets_never_appear_in_debug_output() {
    let sources = Sources {
        file: None,
        env: env(&[
            ("FLASHGATE__MYSQL__URL", "mysql://u:topsecretpw@db:3306/x"),
            (
                "FLASHGATE__GATEWAY__JWT__SECRET",
                "signing-key-signing-key-signing-key",
            ),
            ("FLASHGATE__REDIS__PASSWORD", "redispass"),
        ]),
    };
    let settings = Settings::load(&sources).expect("valid");
    let printed = format!("{settings:?}");
    for secret in ["topsecretpw", "signing-key", "redispass"] {
        assert!(!printed.contains(secret), "{secret} leaked: {printed}");
    }
    assert!(printed.contains("[redacted]"));
}

#[test]
fn the_example_file_is_valid_and_matches_the_defaults() {
    let example = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("flashgate.example.toml");
    let settings = Settings::load(&Sources {
        file: Some(example),
        env: Vec::new(),
    })
    .expect("the example configuration loads");
    let defaults = Settings::load(&Sources::default()).expect("defaults");
    assert_eq!(format!("{settings:?}"), format!("{defaults:?}"));
}

#[test]
fn points_earned_are_the_basis_points_of_the_amount_rounded_down() {
    let mut points = crate::PointsSettings::default();
    assert_eq!(points.earned(1_999), 19);
    assert_eq!(points.earned(99), 0);
    points.earn_basis_points = 10_000;
    assert_eq!(points.earned(u64::MAX), u64::MAX);
    points.earn_basis_points = 0;
    assert_eq!(points.earned(1_000_000), 0);
}

#[test]
fn an_earn_rate_over_one_hundred_percent_is_refused_by_name() {
    let err = Settings::load(&Sources {
        file: None,
        env: vec![(
            "FLASHGATE__POINTS__EARN_BASIS_POINTS".to_owned(),
            "10001".to_owned(),
        )],
    })
    .expect_err("refused");
    assert!(
        err.to_string().contains("points.earn_basis_points"),
        "{err}"
    );
}

#[test]
fn a_point_cache_that_would_never_be_kept_is_refused_by_name() {
    let message = load_err(&Sources {
        file: None,
        env: env(&[("FLASHGATE__POINTS__CACHE_TTL_SECS", "0")]),
    });
    assert!(message.contains("`points.cache_ttl_secs`"), "{message}");
    assert_eq!(crate::PointsSettings::default().cache_ttl_secs, 86_400);
}
