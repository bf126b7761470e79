//! `flashgate-notifier`: tells shoppers and operators about orders, payments and coupons.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use flashgate_config::cli::{ConfigArgs, Program, Runtime};
use flashgate_notifier::startup;

const PROGRAM: Program = Program {
    name: "flashgate-notifier",
};

/// Delivers the lifecycle and coupon events to webhooks, email and Slack-compatible webhooks,
/// once per event, channel and target.
#[derive(Debug, Parser)]
#[command(name = "flashgate-notifier", version)]
struct Cli {
    #[command(flatten)]
    config: ConfigArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Consume the events and deliver them until SIGTERM or Ctrl-C.
    Run,
    /// Print the effective configuration (secrets redacted), then exit.
    Config,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let settings = PROGRAM.settings(&cli.config);
    let outcome = match cli.command {
        Command::Config => return PROGRAM.print_config(&settings),
        Command::Run => PROGRAM.run(settings, Runtime::Threads(2), async |settings| {
            startup::run_until(settings, flashgate_config::shutdown_signal()).await?;
            tracing::info!("notifier stopped cleanly");
            anyhow::Ok(())
        }),
    };
    PROGRAM.report(
        outcome.map(|()| ExitCode::SUCCESS),
        "notifier stopped with an error",
    )
}
