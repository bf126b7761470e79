//! `flashgate-persister`: Kafka → MySQL.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use flashgate_config::cli::{ConfigArgs, Program, Runtime};
use flashgate_persister::dlq::command::{self as dlq, DlqCommand};
use flashgate_persister::startup;

const PROGRAM: Program = Program {
    name: "flashgate-persister",
};

/// Writes admitted orders, coupons and points from Kafka to MySQL, idempotently.
#[derive(Debug, Parser)]
#[command(name = "flashgate-persister", version)]
struct Cli {
    #[command(flatten)]
    config: ConfigArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Consume the orders, coupons and points topics and write to MySQL until SIGTERM or Ctrl-C.
    Run,
    /// Apply pending database migrations, then exit.
    Migrate,
    /// Print the effective configuration (secrets redacted), then exit.
    Config,
    /// Look at and replay the dead letters (`kafka.dead_letter_topic`).
    Dlq {
        #[command(subcommand)]
        command: DlqCommand,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let settings = PROGRAM.settings(&cli.config);
    let outcome = match cli.command {
        Command::Config => return PROGRAM.print_config(&settings),
        Command::Migrate => PROGRAM.run(settings, Runtime::PerCore, async |settings| {
            startup::migrate(&settings).await
        }),
        Command::Dlq { command } => {
            return PROGRAM.report(
                PROGRAM.run(settings, Runtime::Threads(1), async |settings| {
                    dlq::run(&settings, command).await
                }),
                "dlq command failed",
            );
        }
        Command::Run => PROGRAM.run(settings, Runtime::PerCore, async |settings| {
            startup::run_until(settings, flashgate_config::shutdown_signal()).await?;
            tracing::info!("persister stopped cleanly");
            Ok(())
        }),
    };
    PROGRAM.report(
        outcome.map(|()| ExitCode::SUCCESS),
        "persister stopped with an error",
    )
}
