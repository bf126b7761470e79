//! The command-line piece every binary shares: `--config PATH`, and exit code 64 on bad config.

use std::path::PathBuf;

use crate::{Settings, Sources};

/// Exit code for a configuration error (`EX_CONFIG` from BSD's sysexits.h).
pub const EXIT_CONFIG: i32 = 64;

/// Global options of every flashgate binary.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ConfigArgs {
    /// TOML configuration file. Default: the file named by FLASHGATE_CONFIG, else the
    /// built-in defaults (which point at the local stack). FLASHGATE__SECTION__KEY
    /// environment variables override both.
    #[arg(long = "config", short = 'c', value_name = "PATH", global = true)]
    pub config: Option<PathBuf>,
}

impl ConfigArgs {
    /// Loads the settings from the file and the process environment; on any error prints it
    /// (naming the key) and exits with [`EXIT_CONFIG`].
    pub fn load_or_exit(&self, program: &str) -> Settings {
        match Settings::load(&Sources::from_process(self.config.clone())) {
            Ok(settings) => settings,
            Err(err) => {
                eprintln!("{program}: configuration error: {err}");
                std::process::exit(EXIT_CONFIG);
            }
        }
    }
}
