//! `flashgate-persister`: Kafka → MySQL.

use clap::{Parser, Subcommand};
use flashgate_config::cli::ConfigArgs;

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
    /// Apply pending database migrations, then exit.
    Migrate,
    /// Print the effective configuration (secrets redacted), then exit.
    Config,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let settings = cli.config.load_or_exit("flashgate-persister");
    flashgate_config::telemetry::init(&settings.log);
    match cli.command {
        Command::Migrate => {
            let pool = settings.mysql.connect().await?;
            flashgate_persister::db::migrate(&pool).await?;
            let applied = flashgate_persister::db::MIGRATOR.iter().count();
            tracing::info!(applied, "database schema is up to date");
            pool.close().await;
        }
        Command::Config => println!("{settings:#?}"),
    }
    Ok(())
}
