//! `flashgate-loadtest`: run a scenario against the gateway and check the invariants;
//! summarize benchmark reports; show the configuration.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use flashgate_config::cli::ConfigArgs;
use flashgate_loadtest::options::RunOptions;
use flashgate_loadtest::summary::{Facts, summarize};

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
    let settings = cli.config.load_or_exit("flashgate-loadtest");
    match cli.command {
        Command::Config => println!("{settings:#?}"),
        Command::Summary { ceilings, reports } => {
            let facts: Vec<Facts> = match reports.iter().map(|p| Facts::read(p)).collect() {
                Ok(facts) => facts,
                Err(err) => return fail(&err),
            };
            let (markdown, met) = summarize(&ceilings, &facts);
            println!("{markdown}");
            if !met {
                return ExitCode::from(1);
            }
        }
        Command::Run(options) => {
            flashgate_config::telemetry::init(&settings.log);
            let runtime = match options.threads {
                1 => tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build(),
                n => tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(n)
                    .enable_all()
                    .build(),
            }
            .expect("tokio runtime");
            let json = options.json.clone();
            let report = match runtime.block_on(flashgate_loadtest::run::run(&settings, *options)) {
                Ok(report) => report,
                Err(err) => return fail(&err),
            };
            println!("{}", report.markdown());
            let written = serde_json::to_vec_pretty(&report)
                .map_err(anyhow::Error::from)
                .and_then(|bytes| Ok(std::fs::write(&json, bytes)?));
            if let Err(err) = written {
                eprintln!("flashgate-loadtest: writing {}: {err:#}", json.display());
                return ExitCode::from(2);
            }
            if !report.passed() {
                return ExitCode::from(1);
            }
        }
    }
    ExitCode::SUCCESS
}

fn fail(err: &anyhow::Error) -> ExitCode {
    eprintln!("flashgate-loadtest: {err:#}");
    ExitCode::from(2)
}
