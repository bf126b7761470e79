//! `flashgate-loadtest`: run a scenario against the gateway and check the invariants;
//! summarize benchmark reports; show the configuration.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use flashgate_config::cli::{ConfigArgs, Program, Runtime};
use flashgate_loadtest::options::RunOptions;
use flashgate_loadtest::summary::{Facts, summarize};

const PROGRAM: Program = Program {
    name: "flashgate-loadtest",
};

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
    /// Run a scenario, wait for the pipeline to drain, check the invariants and report
    /// (markdown on stdout, JSON to --json). Exit 1 when an invariant broke, 2 when the run
    /// could not be carried out.
    Run(Box<RunOptions>),
    /// Summarize benchmark reports against the Redis ceiling; exit 1 when a target was missed.
    Summary {
        /// Redis-alone throughput (ops/s) measured in the same benchmark (repeatable).
        #[arg(long = "ceiling", required = true)]
        ceilings: Vec<f64>,
        /// JSON reports of runs.
        #[arg(required = true)]
        reports: Vec<PathBuf>,
    },
    /// Print the effective configuration (secrets redacted), then exit.
    Config,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let settings = PROGRAM.settings(&cli.config);
    match cli.command {
        Command::Config => PROGRAM.print_config(&settings),
        Command::Summary { ceilings, reports } => summary(&ceilings, &reports),
        Command::Run(options) => {
            let runtime = Runtime::Threads(options.threads);
            PROGRAM.run(settings, runtime, async |settings| {
                run(&settings, *options).await
            })
        }
    }
}

/// Summarizes `reports`: exit 1 when a target was missed.
fn summary(ceilings: &[f64], reports: &[PathBuf]) -> ExitCode {
    let facts: Vec<Facts> = match reports.iter().map(|p| Facts::read(p)).collect() {
        Ok(facts) => facts,
        Err(err) => return fail(&err),
    };
    let (markdown, met) = summarize(ceilings, &facts);
    println!("{markdown}");
    if met {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// Runs a scenario and reports it: exit 1 when an invariant broke, 2 when the run could not
/// be carried out or its JSON report not written.
async fn run(settings: &flashgate_config::Settings, options: RunOptions) -> ExitCode {
    let json = options.json.clone();
    let report = match flashgate_loadtest::run::run(settings, options).await {
        Ok(report) => report,
        Err(err) => return fail(&err),
    };
    println!("{}", report.markdown());
    let written = serde_json::to_vec_pretty(&report)
        .map_err(anyhow::Error::from)
        .and_then(|bytes| Ok(std::fs::write(&json, bytes)?));
    if let Err(err) = written {
        eprintln!("{}: writing {}: {err:#}", PROGRAM.name, json.display());
        return ExitCode::from(2);
    }
    if report.passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn fail(err: &anyhow::Error) -> ExitCode {
    eprintln!("{}: {err:#}", PROGRAM.name);
    ExitCode::from(2)
}
