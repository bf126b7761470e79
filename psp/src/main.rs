//! `flashgate-psp`: the virtual payment provider.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use flashgate_config::cli::{ConfigArgs, Program, Runtime};
use flashgate_psp::startup;

const PROGRAM: Program = Program {
    name: "flashgate-psp",
};

/// A virtual payment provider for the demo, the tests and the benchmarks: idempotent charges
/// decided by test tokens (tok_ok, tok_declined, tok_slow, tok_flaky), refunds, kept in
/// memory only.
#[derive(Debug, Parser)]
#[command(name = "flashgate-psp", version)]
struct Cli {
    #[command(flatten)]
    config: ConfigArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the provider's API on psp.listen until SIGTERM or Ctrl-C. Its charges live in
    /// memory only and are lost when it stops.
    Serve,
    /// Print the effective configuration (secrets redacted), then exit.
    Config,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let settings = PROGRAM.settings(&cli.config);
    let outcome: anyhow::Result<()> = match cli.command {
        Command::Config => return PROGRAM.print_config(&settings),
        Command::Serve => PROGRAM.run(settings, Runtime::PerCore, async |settings| {
            startup::run_until(settings.psp, flashgate_config::shutdown_signal()).await?;
            tracing::info!("provider stopped cleanly");
            Ok(())
        }),
    };
    PROGRAM.report(
        outcome.map(|()| ExitCode::SUCCESS),
        "provider stopped with an error",
    )
}
