//! `flashgate-batch`: the command line.

use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use flashgate_batch::reconcile::{self, Options};
use flashgate_batch::seed::{self, SeedOptions};
use flashgate_config::Settings;
use flashgate_config::cli::{ConfigArgs, Program, Runtime};

const PROGRAM: Program = Program {
    name: "flashgate-batch",
};

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
    ReconcilePoints(ReconcileArgs),
    /// Fill empty points tables with realistic data, fast (bulk multi-row inserts in parallel).
    SeedPoints(SeedOptions),
}

#[derive(Debug, clap::Args)]
struct ReconcileArgs {
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
    /// A test's fault point: abort the process right after this many repairs.
    #[arg(long, hide = true)]
    abort_after_repairs: Option<u64>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let settings = PROGRAM.settings(&cli.config);
    let outcome = match cli.command {
        Command::Config => return PROGRAM.print_config(&settings),
        Command::ReconcilePoints(args) => PROGRAM.run(settings, Runtime::PerCore, async |s| {
            reconcile_points(&s, args).await
        }),
        Command::SeedPoints(options) => PROGRAM.run(settings, Runtime::PerCore, async |s| {
            seed_points(&s, &options).await
        }),
    };
    PROGRAM.report(outcome.map(ExitCode::from), "batch job failed")
}

/// Runs the reconciliation; prints its JSON summary on stdout and returns the exit code.
async fn reconcile_points(settings: &Settings, args: ReconcileArgs) -> anyhow::Result<u8> {
    let defaults = Options::from_settings(settings);
    let options = Options {
        fix: args.fix,
        restart: args.restart,
        pause: Duration::from_millis(args.pause_ms),
        workers: args.workers.unwrap_or(defaults.workers),
        page_size: args.page_size.unwrap_or(defaults.page_size),
        abort_after_repairs: args.abort_after_repairs,
    };
    let summary = reconcile::run(settings, &options).await?;
    println!("{}", serde_json::to_string_pretty(&summary)?);
    Ok(summary.exit_code)
}

/// Runs the seeding; prints its JSON summary on stdout.
async fn seed_points(settings: &Settings, options: &SeedOptions) -> anyhow::Result<u8> {
    let summary = seed::run(settings, options).await?;
    println!("{}", serde_json::to_string_pretty(&summary)?);
    Ok(0)
}
