//! Configuration errors: each names the key (and the variable or file it came from).

use std::fmt;
use std::path::PathBuf;

/// One invalid value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    /// Dotted key, such as `gateway.body_limit_bytes`.
    pub key: String,
    /// What is wrong with it.
    pub message: String,
    /// The environment variable the value came from, if it came from one.
    pub origin: Option<String>,
}

impl Invalid {
    pub(crate) fn new(key: &str, message: impl Into<String>) -> Self {
        Self {
            key: key.to_owned(),
            message: message.into(),
            origin: None,
        }
    }

    pub(crate) fn check_positive(problems: &mut Vec<Self>, key: &str, value: u64) {
        if value == 0 {
            problems.push(Self::new(key, "must be greater than 0"));
        }
    }
}

/// Why the settings could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The configuration file could not be read.
    #[error("cannot read configuration file {path}: {source}")]
    Read {
        /// The file asked for (`--config` or `FLASHGATE_CONFIG`).
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The configuration file is not valid TOML.
    #[error("configuration file {path} is not valid TOML: {message}")]
    Syntax {
        /// The file asked for (`--config` or `FLASHGATE_CONFIG`).
        path: PathBuf,
        /// The parser's message, with line and column.
        message: String,
    },
    /// An environment variable names no setting or cannot be placed.
    #[error("environment variable {var}: {message}")]
    Env {
        /// The `FLASHGATE__...` variable, named so the operator finds it.
        var: String,
        /// What is wrong.
        message: String,
    },
    /// One or more values are wrong.
    #[error("{}", Problems(.0))]
    Invalid(Vec<Invalid>),
}

struct Problems<'a>(&'a [Invalid]);

impl fmt::Display for Problems<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, problem) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "`{}`", problem.key)?;
            if let Some(var) = &problem.origin {
                write!(f, " (from {var})")?;
            }
            write!(f, ": {}", problem.message)?;
        }
        Ok(())
    }
}
