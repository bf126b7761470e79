//! What a run does: the scenario, the loop (open or closed), its rate, size and limits.

use std::time::Duration;

use clap::Args;
use flashgate_gateway::token::parse_ttl;
use serde::Serialize;

use crate::choices::well_formed_token;
pub use crate::choices::{Mix, Mode, PayWith, Scenario, Shares, payment_ends};

/// The payment window of the lifecycle scenario's sale when none is given: the shortest a
/// sale may have, so abandoned orders expire soon after the traffic.
pub const LIFECYCLE_PAYMENT_WINDOW: Duration = Duration::from_secs(30);

/// The payment windows a sale may have (the gateway's rule).
pub const PAYMENT_WINDOWS: std::ops::RangeInclusive<Duration> =
    Duration::from_secs(30)..=Duration::from_secs(86_400);

/// Everything a run can be told, with the command line's defaults.
#[derive(Debug, Clone, Args, Serialize)]
pub struct RunOptions {
    /// Scenario to run.
    #[arg(long, value_enum, default_value = "purchase-rush")]
    pub scenario: Scenario,
    /// Open loop (constant arrival rate) or closed loop (maximum throughput).
    #[arg(long, value_enum, default_value = "open")]
    pub mode: Mode,
    /// Gateway base URL. Default: `http://` + the configured `gateway.listen`.
    #[arg(long)]
    pub target: Option<String>,
    /// A second gateway over the same Redis and MySQL, to compare with the target in the same
    /// run: the measured requests alternate between the two (open loop: arrival k to the
    /// target when k is even, to the twin when odd; closed loop: each takes the next one when
    /// free), each over half the connections, and the report gives each one's share.
    #[arg(long)]
    pub twin: Option<String>,
    /// Arrival rate of the open loop, in requests per second.
    #[arg(long, default_value_t = 1_000)]
    pub rate: u32,
    /// Connections to the gateway (also the most requests in flight).
    #[arg(long, default_value_t = 64)]
    pub connections: u32,
    /// Longest time traffic is sent (it stops earlier when every shopper of a rush was
    /// served), such as 15s or 1m.
    #[arg(long, default_value = "15s", value_parser = parse_ttl)]
    #[serde(serialize_with = "seconds")]
    pub duration: Duration,
    /// Answers in this first part of the run are counted but left out of the latency
    /// histogram and the throughput.
    #[arg(long, default_value = "0s", value_parser = parse_ttl)]
    #[serde(serialize_with = "seconds")]
    pub warmup: Duration,
    /// Distinct virtual shoppers.
    #[arg(long, default_value_t = 5_000)]
    pub shoppers: u32,
    /// Units of the sale.
    #[arg(long, default_value_t = 1_000)]
    pub stock: u32,
    /// Most units (and coupons) per shopper.
    #[arg(long, default_value_t = 1)]
    pub per_user_limit: u32,
    /// Coupons of the policy (coupon-rush, mixed). Default: the stock.
    #[arg(long)]
    pub coupons: Option<u32>,
    /// The sale (or claim window) opens this long after it is created; traffic starts then.
    #[arg(long, default_value = "1s", value_parser = parse_ttl)]
    #[serde(serialize_with = "seconds")]
    pub open_in: Duration,
    /// Weights `purchase:claim:status` of the mixed scenario.
    #[arg(long, default_value = "6:2:2", value_parser = Mix::parse)]
    pub mix: Mix,
    /// Weights `pay:cancel:abandon` of the lifecycle scenario: how its admitted orders end.
    #[arg(long, default_value = "40:30:30", value_parser = Shares::parse)]
    pub lifecycle_shares: Shares,
    /// How the lifecycle scenario pays the orders of its pay share: a manager's mark-paid, or
    /// the owner's `POST /v1/orders/{id}/payment` right after the purchase's 202, charged by
    /// the saga through the provider (a saga and a provider must be running).
    #[arg(long, value_enum, default_value = "mark-paid")]
    pub pay_with: PayWith,
    /// The payment token of `--pay-with provider` (the virtual provider's test tokens:
    /// tok_ok, tok_flaky and tok_slow end paid; tok_declined and any other are declined).
    #[arg(long, default_value = "tok_ok")]
    pub payment_token: String,
    /// Longest wait after the traffic, with `--pay-with provider`, until every order paid
    /// through the provider is final in MySQL (paid, or cancelled/expired); the report names
    /// the ones that were not.
    #[arg(long, default_value = "120s", value_parser = parse_ttl)]
    #[serde(serialize_with = "seconds")]
    pub payment_timeout: Duration,
    /// The sale's payment window (30s to 1d): an order not paid in it expires. Default: 30s
    /// in the lifecycle scenario, the gateway's default (10 minutes) in the others.
    #[arg(long, value_parser = parse_ttl)]
    #[serde(serialize_with = "optional_seconds")]
    pub payment_window: Option<Duration>,
    /// How long the sale stays open once it opened (its `ends_at`); a sale that ended is
    /// removed from Redis once its orders are all final and stored, after the gateway's
    /// `sale_cleanup_grace_ms`.
    #[arg(long, default_value = "1h", value_parser = parse_ttl)]
    #[serde(serialize_with = "seconds")]
    pub sale_length: Duration,
    /// Threads of the load generator; 1 (the default) leaves the other cores to the gateway
    /// and the servers it shares the machine with.
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Time allowed for one request, in milliseconds; a request past it counts as an error.
    #[arg(long, default_value_t = 10_000)]
    pub request_timeout_ms: u64,
    /// Longest wait for the pipeline (relay, broker, persister) to write everything to MySQL
    /// (lifecycle: and, when expiries run late, for the last open order past its pay_by + 5 s).
    #[arg(long, default_value = "60s", value_parser = parse_ttl)]
    #[serde(serialize_with = "seconds")]
    pub drain_timeout: Duration,
    /// Where the JSON report goes.
    #[arg(long, default_value = "loadtest-report.json")]
    pub json: std::path::PathBuf,
    /// No progress line, even on a terminal.
    #[arg(long)]
    pub quiet: bool,
    /// The queued-rush scenario's options.
    #[command(flatten)]
    pub queue: crate::queued::options::QueueOptions,
}

fn seconds<S: serde::Serializer>(value: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_f64(value.as_secs_f64())
}

fn optional_seconds<S: serde::Serializer>(
    value: &Option<Duration>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match value {
        Some(value) => seconds(value, serializer),
        None => serializer.serialize_none(),
    }
}

impl RunOptions {
    /// Defaults of the command line, for tools and tests that build options in code.
    pub fn new(scenario: Scenario) -> Self {
        use clap::Parser;
        #[derive(Parser)]
        struct Wrapper {
            #[command(flatten)]
            options: RunOptions,
        }
        let mut options = Wrapper::parse_from(["flashgate-loadtest"]).options;
        options.scenario = scenario;
        options
    }

    /// Coupons of the policy.
    pub fn coupons(&self) -> u32 {
        self.coupons.unwrap_or(self.stock)
    }

    /// The payment window to give the sale, `None` for the gateway's default.
    pub fn payment_window(&self) -> Option<Duration> {
        match self.scenario {
            Scenario::Lifecycle => Some(self.payment_window.unwrap_or(LIFECYCLE_PAYMENT_WINDOW)),
            _ => self.payment_window,
        }
    }

    /// Problems with the combination of values, one message each.
    pub fn validate(&self) -> Result<(), String> {
        if self.connections == 0 || self.shoppers == 0 || self.stock == 0 || self.threads == 0 {
            return Err(
                "--connections, --shoppers, --stock and --threads must be at least 1".into(),
            );
        }
        if self.mode == Mode::Open && self.rate == 0 {
            return Err("--rate must be at least 1 in open loop".into());
        }
        if self.per_user_limit == 0 {
            return Err("--per-user-limit must be at least 1".into());
        }
        if self.scenario == Scenario::SoldOut && self.shoppers <= self.stock {
            return Err(format!(
                "sold-out: the first --stock ({}) shoppers sell the sale out; --shoppers ({}) must be larger",
                self.stock, self.shoppers
            ));
        }
        if self.warmup >= self.duration {
            return Err("--warmup must be shorter than --duration".into());
        }
        if let Some(window) = self.payment_window
            && !PAYMENT_WINDOWS.contains(&window)
        {
            return Err(format!(
                "--payment-window must be between {}s and {}s",
                PAYMENT_WINDOWS.start().as_secs(),
                PAYMENT_WINDOWS.end().as_secs()
            ));
        }
        if self.sale_length.is_zero() {
            return Err("--sale-length must be at least 1s".into());
        }
        if self.pay_with == PayWith::Provider && self.scenario != Scenario::Lifecycle {
            return Err("--pay-with provider applies to the lifecycle scenario only".into());
        }
        if !well_formed_token(&self.payment_token) {
            return Err(
                "--payment-token: 1 to 128 letters, digits, '_' or '-' (the gateway's rule)".into(),
            );
        }
        if self.pay_with == PayWith::Provider && self.payment_timeout.is_zero() {
            return Err("--payment-timeout must be at least 1s".into());
        }
        if self.scenario == Scenario::QueuedRush {
            self.queue.validate()?;
        }
        if self.twin.is_some() && (self.scenario == Scenario::QueuedRush || self.connections < 2) {
            return Err(
                "--twin needs at least 2 --connections and a scenario other than queued-rush"
                    .into(),
            );
        }
        if self.scenario == Scenario::Lifecycle && self.per_user_limit != 1 {
            // Each shopper buys once; a cancel lets them buy again, which this plan never does.
            return Err("lifecycle: each shopper buys one unit; --per-user-limit must be 1".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lifecycle_scenario_defaults_to_a_30_second_window_and_others_to_the_gateways() {
        let lifecycle = RunOptions::new(Scenario::Lifecycle);
        assert_eq!(lifecycle.validate(), Ok(()));
        assert_eq!(lifecycle.payment_window(), Some(Duration::from_secs(30)));
        assert_eq!(
            lifecycle.lifecycle_shares,
            Shares::parse("40:30:30").unwrap()
        );
        assert_eq!(
            RunOptions::new(Scenario::PurchaseRush).payment_window(),
            None
        );

        let mut short = RunOptions::new(Scenario::Lifecycle);
        short.payment_window = Some(Duration::from_secs(29));
        assert!(short.validate().unwrap_err().contains("--payment-window"));
        let mut two = RunOptions::new(Scenario::Lifecycle);
        two.per_user_limit = 2;
        assert!(two.validate().unwrap_err().contains("--per-user-limit"));
    }

    #[test]
    fn paying_through_the_provider_is_parsed_checked_and_off_by_default() {
        let defaults = RunOptions::new(Scenario::Lifecycle);
        assert_eq!(defaults.pay_with, PayWith::MarkPaid);
        assert_eq!(defaults.payment_token, "tok_ok");
        assert_eq!(defaults.payment_timeout, Duration::from_secs(120));

        use clap::Parser;
        #[derive(Parser)]
        struct Wrapper {
            #[command(flatten)]
            options: RunOptions,
        }
        let parsed = Wrapper::try_parse_from([
            "flashgate-loadtest",
            "--scenario",
            "lifecycle",
            "--pay-with",
            "provider",
            "--payment-token",
            "tok_flaky",
            "--payment-timeout",
            "45s",
        ])
        .expect("parses")
        .options;
        assert_eq!(parsed.pay_with, PayWith::Provider);
        assert_eq!(parsed.payment_token, "tok_flaky");
        assert_eq!(parsed.payment_timeout, Duration::from_secs(45));
        assert_eq!(parsed.validate(), Ok(()));
        assert!(
            Wrapper::try_parse_from(["flashgate-loadtest", "--pay-with", "card"]).is_err(),
            "only mark-paid and provider"
        );

        let mut elsewhere = RunOptions::new(Scenario::PurchaseRush);
        elsewhere.pay_with = PayWith::Provider;
        assert!(elsewhere.validate().unwrap_err().contains("lifecycle"));
        for bad in ["", "tok ok", &"x".repeat(129), "tök"] {
            let mut options = RunOptions::new(Scenario::Lifecycle);
            options.payment_token = bad.to_owned();
            assert!(
                options.validate().unwrap_err().contains("--payment-token"),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn defaults_are_valid_and_sold_out_needs_more_shoppers_than_stock() {
        let options = RunOptions::new(Scenario::PurchaseRush);
        assert_eq!(options.validate(), Ok(()));
        let mut sold_out = RunOptions::new(Scenario::SoldOut);
        sold_out.shoppers = sold_out.stock;
        assert!(sold_out.validate().unwrap_err().contains("--shoppers"));
    }

    #[test]
    fn a_twin_needs_two_connections_and_a_scenario_other_than_the_queued_rush() {
        let mut options = RunOptions::new(Scenario::PurchaseRush);
        options.twin = Some("http://127.0.0.1:8096".into());
        assert_eq!(options.validate(), Ok(()));
        options.connections = 1;
        assert!(options.validate().unwrap_err().contains("--twin"));
        let mut queued = RunOptions::new(Scenario::QueuedRush);
        queued.twin = options.twin.clone();
        assert!(queued.validate().unwrap_err().contains("--twin"));
    }
}
