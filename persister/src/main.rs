//! `flashgate-persister`: Kafka → MySQL.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use flashgate_config::cli::ConfigArgs;
use flashgate_persister::startup;

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
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let settings = cli.config.load_or_exit("flashgate-persister");
    if let Command::Config = cli.command {
        println!("{settings:#?}");
        return ExitCode::SUCCESS;
    }
    flashgate_config::telemetry::init(&settings.log);
    let outcome = match cli.command {
        Command::Migrate => startup::migrate(&settings).await,
        _ => startup::run_until(settings, flashgate_config::shutdown_signal())
            .await
            .map(|()| tracing::info!("persister stopped cleanly")),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!(
                error = format!("{err:#}"),
                "persister stopped with an error"
            );
            ExitCode::FAILURE
        }
    }
}
