//! `flashgate-loadtest`: the command line.

use clap::{Parser, Subcommand};
use flashgate_config::cli::ConfigArgs;

/// Load generator and benchmark harness with invariant checks.
#[derive(Debug, Parser)]
#[command(name = "flashgate-loadtest", version)]
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
    let settings = cli.config.load_or_exit("flashgate-loadtest");
    match cli.command {
        Command::Config => println!("{settings:#?}"),
    }
}
