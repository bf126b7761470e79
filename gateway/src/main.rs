//! `flashgate-gateway`: serve (default), mint a development token, or show the configuration.

use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use flashgate_config::cli::{ConfigArgs, Program, Runtime};
use flashgate_gateway::auth::Role;
use flashgate_gateway::startup::Application;
use flashgate_gateway::token::{Minter, parse_ttl};

const PROGRAM: Program = Program {
    name: "flashgate-gateway",
};

/// The HTTP front door of flash sales: admits purchases atomically in Redis and relays them to Kafka.
#[derive(Debug, Parser)]
#[command(name = "flashgate-gateway", version)]
struct Cli {
    #[command(flatten)]
    config: ConfigArgs,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve HTTP until SIGTERM or Ctrl-C (the default).
    Serve,
    /// Print a token signed with the configured key (development, demo, load test).
    Token {
        /// User id (`sub` claim).
        #[arg(long)]
        sub: String,
        /// Role to grant: shopper, manager or ops (repeatable).
        #[arg(long = "role", required = true, value_parser = parse_role)]
        roles: Vec<Role>,
        /// Lifetime, such as 90s, 15m, 1h or 2d.
        #[arg(long, default_value = "1h", value_parser = parse_ttl)]
        ttl: Duration,
    },
    /// Print the effective configuration (secrets redacted), then exit.
    Config,
}

fn parse_role(text: &str) -> Result<Role, String> {
    Role::parse(text).ok_or_else(|| format!("`{text}` is not shopper, manager or ops"))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let settings = PROGRAM.settings(&cli.config);
    match cli.command.unwrap_or(Command::Serve) {
        Command::Config => PROGRAM.print_config(&settings),
        Command::Token { sub, roles, ttl } => {
            match Minter::from_settings(&settings.gateway.jwt)
                .and_then(|m| m.mint(&sub, &roles, ttl))
            {
                Ok(token) => {
                    println!("{token}");
                    ExitCode::SUCCESS
                }
                Err(err) => {
                    eprintln!("flashgate-gateway: {err:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Serve => {
            let outcome = PROGRAM.run(settings, Runtime::PerCore, async |settings| {
                let application = Application::build(settings).await?;
                application
                    .run_until(flashgate_config::shutdown_signal())
                    .await?;
                tracing::info!("gateway stopped cleanly");
                anyhow::Ok(ExitCode::SUCCESS)
            });
            PROGRAM.report(outcome, "gateway stopped with an error")
        }
    }
}
