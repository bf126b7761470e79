//! `flashgate-loadtest`: run a scenario against the gateway and check the invariants;
//! summarize benchmark reports; measure the payments' recovery after a provider outage; show
//! the configuration.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use flashgate_config::cli::{ConfigArgs, Program, Runtime};
use flashgate_gateway::token::parse_ttl;
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
    /// How a sale's payments recovered after a provider outage: the time from the provider's
    /// return until no payment was older than --older-than, from the saga's `payments` rows
    /// (markdown on stdout, JSON to --json). Exit 1 when a payment past it is still open.
    Recovery {
        /// The sale whose payments to judge (a lifecycle run's, paid through the provider).
        #[arg(long)]
        sale: u64,
        /// When the provider answered again, in ms since the epoch (`date +%s%3N`).
        #[arg(long)]
        provider_back_at: i64,
        /// The age no payment may pass once recovered, such as 1s or 500ms.
        #[arg(long, default_value = "1s", value_parser = parse_ttl)]
        older_than: Duration,
        /// Where the JSON goes, if anywhere.
        #[arg(long)]
        json: Option<PathBuf>,
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
        Command::Recovery {
            sale,
            provider_back_at,
            older_than,
            json,
        } => PROGRAM.run(settings, Runtime::Threads(1), async |settings| {
            let limit_ms = i64::try_from(older_than.as_millis()).unwrap_or(i64::MAX);
            recovery(&settings, sale, provider_back_at, limit_ms, json).await
        }),
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

/// Judges the recovery of `sale`'s payments: exit 1 when a payment older than the limit is
/// still open, 2 when it could not be read or its JSON not written.
async fn recovery(
    settings: &flashgate_config::Settings,
    sale: u64,
    back_at_ms: i64,
    limit_ms: i64,
    json: Option<PathBuf>,
) -> ExitCode {
    use flashgate_loadtest::recovery::{read_spans, recovery};
    let spans = async {
        let db = settings.mysql.connect().await?;
        read_spans(&db, sale).await
    };
    let recovered = match spans.await {
        Ok(spans) => recovery(&spans, back_at_ms, limit_ms),
        Err(err) => return fail(&err),
    };
    println!("{}", recovered.markdown(sale));
    if let Some(path) = json {
        let written = serde_json::to_vec_pretty(&recovered)
            .map_err(anyhow::Error::from)
            .and_then(|bytes| Ok(std::fs::write(&path, bytes)?));
        if let Err(err) = written {
            eprintln!("{}: writing {}: {err:#}", PROGRAM.name, path.display());
            return ExitCode::from(2);
        }
    }
    if recovered.recovered_after_ms.is_some() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn fail(err: &anyhow::Error) -> ExitCode {
    eprintln!("{}: {err:#}", PROGRAM.name);
    ExitCode::from(2)
}
