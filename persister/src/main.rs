//! `flashgate-persister`: Kafka → MySQL.

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use anyhow::Context;
use clap::{Parser, Subcommand};
use flashgate_config::Settings;
use flashgate_config::cli::ConfigArgs;
use flashgate_persister::consumer::Persister;
use flashgate_persister::metrics::Metrics;
use flashgate_persister::{db, http};
use tokio::sync::watch;

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
        Command::Migrate => migrate(&settings).await,
        _ => run(settings).await,
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

async fn migrate(settings: &Settings) -> anyhow::Result<()> {
    let pool = settings
        .mysql
        .connect()
        .await
        .context("connecting to MySQL")?;
    db::migrate(&pool).await?;
    tracing::info!(
        migrations = db::MIGRATOR.iter().count(),
        "database schema is up to date"
    );
    pool.close().await;
    Ok(())
}

async fn run(settings: Settings) -> anyhow::Result<()> {
    let pool = settings
        .mysql
        .connect()
        .await
        .context("connecting to MySQL")?;
    if settings.persister.migrate_on_start {
        db::migrate(&pool).await?;
    }
    let metrics = Arc::new(Metrics::default());
    let ready = Arc::new(AtomicBool::new(true));
    let listener = tokio::net::TcpListener::bind(settings.persister.listen)
        .await
        .with_context(|| format!("binding {}", settings.persister.listen))?;
    let ops = tokio::spawn(http::serve(listener, metrics.clone(), ready.clone()));
    let persister = Persister::new(settings, pool.clone(), metrics).await?;
    let (stop, stopped) = watch::channel(false);
    let consuming = tokio::spawn(persister.run(stopped));
    tracing::info!("persister running");
    flashgate_config::shutdown_signal().await;
    ready.store(false, std::sync::atomic::Ordering::SeqCst);
    let _ = stop.send(true);
    consuming.await.context("consumer task")??;
    ops.abort();
    pool.close().await;
    tracing::info!("persister stopped cleanly");
    Ok(())
}
