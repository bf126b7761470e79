//! A measurement run by hand, once (ignored by default): the persister's throughput and CPU
//! per message on a topic without poison and on one where every tenth message is poison (an
//! admission for a sale MySQL does not hold). Figures in docs/BENCHMARKS.md. Run it alone:
//! `cargo nextest run -p flashgate-persister --run-ignored only -E 'test(/dlq_throughput/)'`
//! (`--no-capture` to see the figures).

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use flashgate_events::OrderAdmitted;
use rdkafka::producer::{FutureProducer, FutureRecord};

use crate::persisting::{Running, prepare, wait_for};

/// Messages per run.
const MESSAGES: u32 = 5_000;

/// CPU seconds (user + system) this process has used so far, from `/proc/self/stat`.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("/proc/self/stat");
    // Fields after the command name (which is in parentheses and may hold spaces).
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .expect("stat")
        .1
        .split_whitespace()
        .collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name; in ticks
    // of 1/100 s on Linux.
    let ticks: f64 =
        fields[11].parse::<f64>().expect("utime") + fields[12].parse::<f64>().expect("stime");
    ticks / 100.0
}

/// Produces `MESSAGES` admissions to the orders topic, every `poison_every`th one (0: none)
/// of a sale that does not exist; returns how many are poison.
async fn produce(running: &Running, sale_id: u64, poison_every: u32) -> u64 {
    let producer: FutureProducer = running
        .settings
        .kafka
        .producer_config()
        .create()
        .expect("producer");
    let mut deliveries = Vec::new();
    let mut poison = 0;
    for n in 0..MESSAGES {
        let bad = poison_every > 0 && n % poison_every == 0;
        poison += u64::from(bad);
        let sale = if bad { sale_id + 1_000_000 } else { sale_id };
        let order = OrderAdmitted {
            order_id: format!("{sale}-{n:08}"),
            sale_id: sale,
            user_id: format!("u{n}"),
            quantity: 1,
            unit_price: 500,
            amount: 500,
            admitted_at: chrono::Utc::now(),
            pay_by: None,
        };
        let payload = serde_json::to_vec(&order.clone().into_envelope("t".into())).expect("json");
        let record = FutureRecord::to(&running.settings.kafka.orders_topic)
            .key(&order.order_id)
            .payload(&payload);
        deliveries.push(
            producer
                .send_result(record)
                .map_err(|(e, _)| e)
                .expect("queued"),
        );
    }
    for delivery in deliveries {
        delivery.await.expect("delivery").expect("acknowledged");
    }
    poison
}

/// Produces first, then starts the persister and times it until every message is persisted
/// or dead-lettered: (messages per second, CPU milliseconds per message).
async fn measure(poison_every: u32) -> (f64, f64) {
    let mut running = prepare().await;
    running.settings.points.earn_basis_points = 0;
    let sale_id = running.sale(MESSAGES).await;
    let poison = produce(&running, sale_id, poison_every).await;
    let good = u64::from(MESSAGES) - poison;
    let (cpu, started) = (cpu_seconds(), Instant::now());
    running.resume().await;
    assert_eq!(wait_for(&running.metrics.persisted, good).await, good);
    assert_eq!(
        wait_for(&running.metrics.dead_lettered, poison).await,
        poison
    );
    let (seconds, cpu) = (started.elapsed().as_secs_f64(), cpu_seconds() - cpu);
    let batches = running.metrics.batches.load(Ordering::Relaxed);
    running.stop().await;
    let rate = f64::from(MESSAGES) / seconds;
    let cpu_ms = cpu * 1000.0 / f64::from(MESSAGES);
    println!(
        "poison every {poison_every}: {MESSAGES} messages ({poison} poison) in {seconds:.2} s = \
         {rate:.0} msgs/s, {cpu_ms:.3} ms CPU per message, {batches} batches"
    );
    (rate, cpu_ms)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, run by hand (docs/BENCHMARKS.md)"]
async fn dlq_throughput_a_topic_with_ten_percent_poison_against_one_without() {
    // The first run of a process has been the slowest whatever it carried: a warm-up.
    measure(0).await;
    let clean = measure(0).await;
    let poisoned = measure(10).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    // Once more in the other order.
    let poisoned_again = measure(10).await;
    let clean_again = measure(0).await;
    println!("clean {clean:?} {clean_again:?}; 10 % poison {poisoned:?} {poisoned_again:?}");
}
