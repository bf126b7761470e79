//! `flashgate-batch`: the command line.

use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use flashgate_batch::reconcile::{self, Options};
use flashgate_batch::seed::{self, SeedOptions};
use flashgate_config::Settings;
use flashgate_config::cli::ConfigArgs;

/// Operator jobs: reconciliation, expiry and data seeding.
#[derive(Debug, Parser)]
#[command(name = "flashgate-batch", version)]
struct Cli {
    #[command(flatten)]
    config: ConfigArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print the effective configuration (secrets redacted), then exit.
    Config,
    /// Recompute every balance from the points ledger; compare with the balance table and the
    /// Redis cache. Prints a JSON summary. Exit 0: clean; 2: drift found (even if fixed); 1: failed.
    ReconcilePoints {
        /// Repair what differs (conditionally, under row locks; safe to repeat).
        #[arg(long)]
        fix: bool,
        /// Start from the first user even if an interrupted run left a checkpoint.
        #[arg(long)]
        restart: bool,
        /// Pause of each worker after each range, in milliseconds (spares a busy database).
        #[arg(long, default_value_t = 0)]
        pause_ms: u64,
        /// Parallel workers (default: batch.workers, 0 = one per core).
        #[arg(long)]
        workers: Option<usize>,
        /// Balance rows per range (default: batch.page_size).
        #[arg(long)]
        page_size: Option<usize>,
    },
    /// Fill empty points tables with realistic data, fast (bulk multi-row inserts in parallel).
    SeedPoints(SeedOptions),
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let settings = cli.config.load_or_exit("flashgate-batch");
    if let Command::Config = cli.command {
        println!("{settings:#?}");
        return ExitCode::SUCCESS;
    }
    flashgate_config::telemetry::init(&settings.log);
    match run(cli.command, &settings).await {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            tracing::error!(error = format!("{err:#}"), "batch job failed");
            ExitCode::FAILURE
        }
    }
}

/// Runs one job; prints its JSON summary on stdout and returns the exit code.
async fn run(command: Command, settings: &Settings) -> anyhow::Result<u8> {
    match command {
        Command::Config => Ok(0),
        Command::ReconcilePoints {
            fix,
            restart,
            pause_ms,
            workers,
            page_size,
        } => {
            let defaults = Options::from_settings(settings);
            let options = Options {
                fix,
                restart,
                pause: Duration::from_millis(pause_ms),
                workers: workers.unwrap_or(defaults.workers),
                page_size: page_size.unwrap_or(defaults.page_size),
            };
            let summary = reconcile::run(settings, &options).await?;
            println!("{}", serde_json::to_string_pretty(&summary)?);
            Ok(summary.exit_code)
        }
        Command::SeedPoints(options) => {
            let summary = seed::run(settings, &options).await?;
            println!("{}", serde_json::to_string_pretty(&summary)?);
            Ok(0)
        }
    }
}
