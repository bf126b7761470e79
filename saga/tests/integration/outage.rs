//! The provider goes away for 20 s in the middle of 200 payments and comes back: every order
//! ends paid, or expired where its deadline ran out during the outage; the provider holds
//! exactly one successful charge per paid order and a refund for every charge whose order did
//! not end paid. Payments the outage put off are tried as soon as the provider answers again,
//! not after their backoff.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use flashgate_gateway::keys::SaleKeys;
use fred::prelude::{ClientLike, HashesInterface, SortedSetsInterface};

use crate::helpers::{Stack, eventually, psp_settings, stack_with, unique};

/// Orders paid before the outage, and during it.
const BEFORE: usize = 100;
const DURING: usize = 100;
/// Of those paid during the outage, how many have their deadline run out before it ends.
const RUN_OUT: usize = 40;

/// Redis's clock, in milliseconds.
async fn redis_now_ms(stack: &Stack) -> i64 {
    let (secs, micros): (i64, i64) = stack
        .redis
        .next()
        .custom(fred::cmd!("TIME"), Vec::<String>::new())
        .await
        .expect("TIME");
    secs * 1000 + micros / 1000
}

/// Moves a paying order's deadline (its pay_by, and its hold: pay_by + grace) to `in_ms` from
/// Redis's now, as if its window and grace were about to run out.
async fn run_out_soon(stack: &Stack, sale_id: u64, order_id: &str, in_ms: i64) {
    let keys = SaleKeys::new(&stack.settings.redis.key_prefix, sale_id);
    let now = redis_now_ms(stack).await;
    let record: String = stack
        .redis
        .hget(&keys.orders, order_id)
        .await
        .expect("record");
    let mut lines: Vec<String> = record.split('\n').map(str::to_owned).collect();
    assert_eq!(lines[4], "paying", "{order_id} is paying");
    lines[3] = now.to_string();
    let _: () = stack
        .redis
        .hset(&keys.orders, (order_id, lines.join("\n")))
        .await
        .expect("record");
    let _: () = stack
        .redis
        .zadd(
            &keys.holds,
            None,
            None,
            false,
            false,
            ((now + in_ms) as f64, order_id),
        )
        .await
        .expect("hold");
}

/// Pays every order of `orders` with `tok_ok`, 16 at a time.
async fn pay_all(stack: &Arc<Stack>, orders: &[(String, String)]) {
    let mut tasks = tokio::task::JoinSet::new();
    for chunk in orders.chunks(orders.len().div_ceil(16)) {
        let (stack, chunk) = (stack.clone(), chunk.to_vec());
        tasks.spawn(async move {
            for (order, user) in chunk {
                stack.pay(&order, &user, "tok_ok").await;
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.expect("payer");
    }
}

async fn count(stack: &Stack, status: &str) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM payments WHERE status = ? AND next_at IS NULL")
        .bind(status)
        .fetch_one(&stack.db)
        .await
        .expect("count")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_down_for_twenty_seconds_mid_payments_charges_each_paid_order_once_and_refunds_the_rest()
 {
    let stack = stack_with(psp_settings(), |_| {}).await;
    let saga = stack.start_saga().await;
    let total = BEFORE + DURING;
    let sale = stack.sale(u32::try_from(total).expect("stock")).await;
    let mut orders = Vec::with_capacity(total);
    for _ in 0..total {
        let user = unique("o");
        orders.push((stack.buy(sale, &user).await, user));
    }
    let (before, during) = orders.split_at(BEFORE);

    let shared = Arc::new(stack);
    pay_all(&shared, before).await;
    assert!(
        eventually(|| async { count(&shared, "completed").await == BEFORE as i64 }).await,
        "the first {BEFORE} payments completed before the outage"
    );
    let mut stack = Arc::into_inner(shared).expect("no payer holds the stack");

    // The provider goes away; the other payments are asked for while it is gone.
    stack.psp.stop().await;
    let outage = std::time::Instant::now();
    let shared = Arc::new(stack);
    pay_all(&shared, during).await;
    let stack = &shared;
    let mut ran_out = HashSet::new();
    for (order, _) in during.iter().take(RUN_OUT) {
        run_out_soon(stack, sale, order, 3_000).await;
        ran_out.insert(order.clone());
    }
    // Those expire during the outage (the sweeper), the rest wait for the provider.
    assert!(
        eventually(|| async {
            let mut expired = 0;
            for order in &ran_out {
                if stack.record(sale, order).await.0 == "expired" {
                    expired += 1;
                }
            }
            expired == RUN_OUT
        })
        .await,
        "the orders whose deadline ran out expired during the outage"
    );
    let down_for = Duration::from_secs(20).saturating_sub(outage.elapsed());
    tokio::time::sleep(down_for).await;
    let mut stack = Arc::into_inner(shared).expect("no payer holds the stack");
    stack.psp.start().await;

    let paid = total - RUN_OUT;
    assert!(
        eventually(|| async {
            count(&stack, "completed").await == paid as i64
                && count(&stack, "refunded").await == RUN_OUT as i64
        })
        .await,
        "completed {}, refunded {}",
        count(&stack, "completed").await,
        count(&stack, "refunded").await
    );
    for (order, user) in &orders {
        let (state, _) = stack.record(sale, order).await;
        let shown = stack.order(order, user).await;
        if ran_out.contains(order) {
            assert_eq!(state, "expired", "{order}");
            // A charge made for it once the provider was back was refunded, once.
            assert_eq!(
                stack.psp.succeeded(order),
                stack.psp.refunds(order),
                "{order}: every charge of an order that did not end paid is refunded"
            );
            assert!(
                stack.psp.refunds(order) <= 1,
                "{order} refunded once at most"
            );
            assert_eq!(shown.json["status"], "expired", "{}", shown.json);
        } else {
            assert_eq!(state, "paid", "{order}");
            assert_eq!(stack.psp.succeeded(order), 1, "{order}: one charge");
            assert_eq!(stack.psp.refunds(order), 0, "{order}: no refund");
            assert_eq!(
                shown.json["payment"]["status"], "completed",
                "{}",
                shown.json
            );
        }
    }
    // The units of the expired orders are back for sale; nothing else moved.
    assert_eq!(stack.stock(sale).await, RUN_OUT as i64);
    saga.stop().await;
}

/// Payments the provider's outage put off, each with a backoff far longer than the test.
const PUT_OFF: usize = 10;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payments_put_off_by_an_outage_are_paid_as_soon_as_the_provider_answers_again_not_after_their_backoff()
 {
    // Backoffs of up to 20 s at the first retry and a minute later: without the recovery the
    // put-off payments would come back one by one over tens of seconds.
    let mut stack = stack_with(psp_settings(), |s| {
        s.saga.retry_base_ms = 20_000;
        s.saga.retry_cap_ms = 60_000;
    })
    .await;
    let saga = stack.start_saga().await;
    let sale = stack.sale(u32::try_from(PUT_OFF + 1).expect("stock")).await;
    let mut orders = Vec::with_capacity(PUT_OFF + 1);
    for _ in 0..=PUT_OFF {
        let user = unique("o");
        orders.push((stack.buy(sale, &user).await, user));
    }
    let (put_off, fresh) = orders.split_at(PUT_OFF);

    // The provider is down while the first ten are asked for: each call fails, each payment
    // is put off.
    stack.psp.stop().await;
    for (order, user) in put_off {
        stack.pay(order, user, "tok_ok").await;
    }
    let waiting = || async {
        sqlx::query_scalar::<_, i64>(
            "SELECT COUNT(*) FROM payments WHERE retries > 0 AND next_at > NOW(3) \
             AND lease_owner IS NULL",
        )
        .fetch_one(&stack.db)
        .await
        .expect("count")
    };
    assert!(
        eventually(|| async { waiting().await == PUT_OFF as i64 }).await,
        "every payment asked for during the outage was put off: {}",
        waiting().await
    );

    // The provider is back; the next payment's answer tells the saga so.
    stack.psp.start().await;
    let back = std::time::Instant::now();
    let (order, user) = &fresh[0];
    stack.pay(order, user, "tok_ok").await;
    assert!(
        eventually(|| async { count(&stack, "completed").await == (PUT_OFF + 1) as i64 }).await,
        "completed {} of {}",
        count(&stack, "completed").await,
        PUT_OFF + 1
    );
    let took = back.elapsed();
    assert!(
        took < Duration::from_secs(5),
        "every payment was paid {took:?} after the provider came back (their backoffs: up to 20 s)"
    );
    for (order, _) in &orders {
        assert_eq!(stack.psp.succeeded(order), 1, "{order}: one charge");
    }
    use std::sync::atomic::Ordering;
    assert!(saga.metrics.provider_recoveries.load(Ordering::Relaxed) >= 1);
    // Each put-off payment unheld at that moment (all of them, unless one's own retry was
    // being tried just then).
    let pulled = saga.metrics.retries_pulled_forward.load(Ordering::Relaxed);
    assert!((1..=PUT_OFF as u64).contains(&pulled), "{pulled}");
    saga.stop().await;
}
