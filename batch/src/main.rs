//! `flashgate-batch`: the command line.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use flashgate_batch::reconcile::{self, ReconcileArgs};
use flashgate_batch::seed::{self, SeedOptions};
use flashgate_batch::stock::{self, StockArgs};
use flashgate_batch::verify_draw::{self, VerifyDrawArgs};
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
    /// Compare every sale's Redis counters (stock, held, paid, total) with MySQL after the
    /// drain; with --fix set them from MySQL where they have not moved since the check. Prints
    /// a line per sale that is not clean, then totals (--json: a JSON summary). Exit 0: clean;
    /// 2: drift found (even if fixed) or a sale not drained; 1: failed.
    ReconcileStock(StockArgs),
    /// Fill empty points tables with realistic data, fast (bulk multi-row inserts in parallel).
    SeedPoints(SeedOptions),
    /// Check a waiting room's draw from its public data (MySQL, or --file with the JSON of
    /// `GET /v1/sales/{id}/queue/draw`): SHA-256(seed) is the commitment, and the seed gives the
    /// published order. Exit 0: it checks out; 2: it does not (the reason on stderr); 1: failed.
    VerifyDraw(VerifyDrawArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let settings = PROGRAM.settings(&cli.config);
    let outcome: anyhow::Result<u8> = match cli.command {
        Command::Config => return PROGRAM.print_config(&settings),
        Command::ReconcilePoints(args) => PROGRAM.run(settings, Runtime::PerCore, async |s| {
            let summary = reconcile::run(&s, &args.options(&s)).await?;
            print_json(&summary)?;
            Ok(summary.exit_code)
        }),
        Command::ReconcileStock(args) => PROGRAM.run(settings, Runtime::Threads(1), async |s| {
            let report = stock::run(&s, &args.options()).await?;
            if args.prometheus {
                print!("{}", report.exposition(chrono::Utc::now().timestamp()));
            } else if args.json {
                print_json(&report)?;
            } else {
                println!("{report}");
            }
            Ok(report.exit_code)
        }),
        Command::VerifyDraw(args) => PROGRAM.run(settings, Runtime::Threads(1), async |s| {
            verify_draw::run(&s, &args).await
        }),
        Command::SeedPoints(options) => PROGRAM.run(settings, Runtime::PerCore, async |s| {
            print_json(&seed::run(&s, &options).await?)?;
            Ok(0)
        }),
    };
    PROGRAM.report(outcome.map(ExitCode::from), "batch job failed")
}

/// Prints a job's JSON summary on stdout.
fn print_json(summary: &impl serde::Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(summary)?);
    Ok(())
}
