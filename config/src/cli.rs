//! The command-line scaffold every flashgate binary repeats, in one place: `--config PATH`,
//! load the settings or exit 64, `config` prints them, install logging, build a tokio runtime,
//! run the command on it, and report how it ended.

use std::fmt::Display;
use std::future::Future;
use std::path::PathBuf;
use std::process::ExitCode;

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

/// The tokio runtime a command runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Runtime {
    /// One worker thread per core (what `#[tokio::main]` builds).
    PerCore,
    /// This many worker threads; 1 runs everything on the calling thread.
    Threads(usize),
}

impl Runtime {
    fn build(self) -> std::io::Result<tokio::runtime::Runtime> {
        match self {
            Self::PerCore => tokio::runtime::Runtime::new(),
            Self::Threads(1) => tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build(),
            Self::Threads(n) => tokio::runtime::Builder::new_multi_thread()
                .worker_threads(n)
                .enable_all()
                .build(),
        }
    }
}

/// One flashgate binary, by name: the steps of its `main` that every binary shares.
#[derive(Debug, Clone, Copy)]
pub struct Program {
    /// The binary's name, which starts its messages (`flashgate-persister`).
    pub name: &'static str,
}

impl Program {
    /// The settings of `args`; exits with [`EXIT_CONFIG`] when they are bad.
    pub fn settings(&self, args: &ConfigArgs) -> Settings {
        args.load_or_exit(self.name)
    }

    /// The `config` command: prints the effective configuration (secrets redacted).
    pub fn print_config(&self, settings: &Settings) -> ExitCode {
        println!("{settings:#?}");
        ExitCode::SUCCESS
    }

    /// Installs logging (`settings.log`), then runs `command` on a new `runtime` to its end.
    pub fn run<F, T>(
        &self,
        settings: Settings,
        runtime: Runtime,
        command: impl FnOnce(Settings) -> F,
    ) -> T
    where
        F: Future<Output = T>,
    {
        crate::telemetry::init(&settings.log);
        let runtime = runtime.build().expect("tokio runtime");
        runtime.block_on(command(settings))
    }

    /// How a command ended, as the process's exit code: its own code, or on an error (logged
    /// once, with its cause chain, as `failed`) 1.
    pub fn report<E: Display>(&self, outcome: Result<ExitCode, E>, failed: &str) -> ExitCode {
        outcome.unwrap_or_else(|err| {
            tracing::error!(error = format!("{err:#}"), "{failed}");
            ExitCode::FAILURE
        })
    }
}
