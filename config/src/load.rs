//! Layering: built-in defaults, then a TOML file, then `FLASHGATE__SECTION__KEY` variables.

use std::collections::HashMap;
use std::path::PathBuf;

use toml::{Table, Value};

use crate::Settings;
use crate::error::{ConfigError, Invalid};

/// Prefix of the environment variables that override settings; `__` separates the levels
/// (`FLASHGATE__GATEWAY__JWT__SECRET` is `gateway.jwt.secret`).
pub const ENV_PREFIX: &str = "FLASHGATE__";

/// Variable naming the configuration file when `--config` is not given.
pub const CONFIG_FILE_VAR: &str = "FLASHGATE_CONFIG";

/// Where settings come from. Tests build one by hand; binaries use [`Sources::from_process`].
#[derive(Debug, Default, Clone)]
pub struct Sources {
    /// A TOML file; its values override the defaults.
    pub file: Option<PathBuf>,
    /// `(name, value)` pairs; those starting with [`ENV_PREFIX`] override the file.
    pub env: Vec<(String, String)>,
}

impl Sources {
    /// The process's environment, and `file` or else the file named by `FLASHGATE_CONFIG`.
    pub fn from_process(file: Option<PathBuf>) -> Self {
        let env: Vec<(String, String)> = std::env::vars().collect();
        let file = file.or_else(|| {
            env.iter()
                .find(|(name, value)| name == CONFIG_FILE_VAR && !value.is_empty())
                .map(|(_, value)| PathBuf::from(value))
        });
        Self { file, env }
    }
}

impl Settings {
    /// Loads and validates the settings from `sources`.
    pub fn load(sources: &Sources) -> Result<Self, ConfigError> {
        let mut table = match &sources.file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.clone(),
                    source,
                })?;
                text.parse::<Table>().map_err(|err| ConfigError::Syntax {
                    path: path.clone(),
                    message: err.to_string().trim_end().to_owned(),
                })?
            }
            None => Table::new(),
        };
        let origins = apply_env(&mut table, &sources.env)?;
        let with_origin = |mut problem: Invalid| {
            // An exact match, or a variable that reached below this key.
            let nested = format!("{}.", problem.key);
            problem.origin = origins.get(&problem.key).cloned().or_else(|| {
                origins
                    .iter()
                    .find(|(key, _)| key.starts_with(&nested))
                    .map(|(_, var)| var.clone())
            });
            problem
        };

        let settings: Settings = serde_path_to_error::deserialize(table).map_err(|err| {
            let problem = Invalid::new(&err.path().to_string(), err.inner().message());
            ConfigError::Invalid(vec![with_origin(problem)])
        })?;
        let problems: Vec<Invalid> = settings.validate().into_iter().map(with_origin).collect();
        if problems.is_empty() {
            Ok(settings)
        } else {
            Err(ConfigError::Invalid(problems))
        }
    }
}

/// Writes every `FLASHGATE__...` variable into `table`; returns dotted key → variable name.
fn apply_env(
    table: &mut Table,
    env: &[(String, String)],
) -> Result<HashMap<String, String>, ConfigError> {
    let mut origins = HashMap::new();
    for (var, raw) in env {
        let Some(rest) = var.strip_prefix(ENV_PREFIX) else {
            continue;
        };
        let path: Vec<String> = rest.split("__").map(str::to_ascii_lowercase).collect();
        if path.iter().any(String::is_empty) {
            return Err(ConfigError::Env {
                var: var.clone(),
                message: "expected FLASHGATE__SECTION__KEY".to_owned(),
            });
        }
        let (leaf, parents) = path.split_last().expect("split yields at least one part");
        let mut node = &mut *table;
        for (depth, part) in parents.iter().enumerate() {
            let entry = node
                .entry(part.clone())
                .or_insert_with(|| Value::Table(Table::new()));
            node = match entry {
                Value::Table(inner) => inner,
                _ => {
                    return Err(ConfigError::Env {
                        var: var.clone(),
                        message: format!(
                            "`{}` is a value, not a section",
                            path[..=depth].join(".")
                        ),
                    });
                }
            };
        }
        node.insert(leaf.clone(), env_value(raw));
        origins.insert(path.join("."), var.clone());
    }
    Ok(origins)
}

/// Reads a variable's text as a TOML value (`8`, `true`, `["a", "b"]`) when it is one, and as
/// a plain string otherwise (`127.0.0.1:8080`, `HS256`).
fn env_value(raw: &str) -> Value {
    let parsed = format!("v = {}", raw.trim())
        .parse::<Table>()
        .ok()
        .and_then(|mut t| t.remove("v"));
    match parsed {
        Some(Value::Datetime(_)) | None => Value::String(raw.to_owned()),
        Some(value) => value,
    }
}
