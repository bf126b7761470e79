//! `flashgate-saga`: the payment saga.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use flashgate_config::cli::{ConfigArgs, Program, Runtime};
use flashgate_saga::startup;

const PROGRAM: Program = Program {
    name: "flashgate-saga",
};

/// Charges the payment provider for the orders shoppers pay, once, and ends each order paid,
/// cancelled, expired or refunded.
#[derive(Debug, Parser)]
#[command(name = "flashgate-saga", version)]
struct Cli {
    #[command(flatten)]
    config: ConfigArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Consume the payments topic and work the payments until SIGTERM or Ctrl-C.
    Run,
    /// Print the effective configuration (secrets redacted), then exit.
    Config,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let settings = PROGRAM.settings(&cli.config);
    let outcome = match cli.command {
        Command::Config => return PROGRAM.print_config(&settings),
        Command::Run => PROGRAM.run(settings, Runtime::PerCore, async |settings| {
            startup::run_until(settings, flashgate_config::shutdown_signal()).await?;
            tracing::info!("saga stopped cleanly");
            anyhow::Ok(())
        }),
    };
    PROGRAM.report(
        outcome.map(|()| ExitCode::SUCCESS),
        "saga stopped with an error",
    )
}
