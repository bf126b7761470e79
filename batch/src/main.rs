//! `flashgate-batch`: the command line.

use clap::{Parser, Subcommand};
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
}

fn main() {
    let cli = Cli::parse();
    let settings = cli.config.load_or_exit("flashgate-batch");
    match cli.command {
        Command::Config => println!("{settings:#?}"),
    }
}
