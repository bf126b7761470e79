//! The waiting room's draw on the real stack: 1,000 shoppers join before the start in a known
//! order; the positions are the ones the revealed seed gives, the seed matches the commitment
//! published before, the join order gives no advantage, and the admitted buy without overselling.

use std::collections::HashMap;

use flashgate_events::draw;
use http::StatusCode;
use serde_json::json;

use crate::queue_support::{
    buy, in_seconds, join, poll, public, queue_app, queued_sale, wait_for_draw,
};

const SHOPPERS: usize = 1_000;
/// Passes outstanding at most: exactly the first 400 positions are admitted (nobody buys
/// before the check, and passes last two minutes).
const ADMITTED: usize = 400;
/// Units on sale: fewer than the admitted, so some passes meet a sold-out sale.
const STOCK: u32 = 300;

#[tokio::test]
async fn a_thousand_shoppers_get_the_positions_the_revealed_seed_gives_and_join_order_wins_nothing()
{
    let app = queue_app(120, 120).await;
    let starts_at = in_seconds(12);
    let sale_id = queued_sale(
        &app,
        starts_at,
        STOCK,
        json!({ "max_active": ADMITTED, "admit_per_second": 100_000 }),
    )
    .await;
    let commitment = public(&app, sale_id, "").await.json["commitment"]
        .as_str()
        .expect("the commitment is published before anyone joins")
        .to_owned();
    assert_eq!(
        public(&app, sale_id, "/draw").await.code(),
        "queue_not_drawn"
    );

    // Arrange: 1,000 shoppers join one after the other (their join order is known).
    let users: Vec<String> = (0..SHOPPERS).map(|i| format!("shopper-{i:04}")).collect();
    let mut tickets: Vec<String> = Vec::with_capacity(SHOPPERS);
    for user in &users {
        let reply = join(&app, sale_id, user).await;
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.json);
        assert_eq!(reply.json["status"], "waiting");
        assert!(
            reply.json["position"].is_null(),
            "no position before the draw"
        );
        tickets.push(reply.json["ticket_id"].as_str().expect("ticket").to_owned());
    }
    assert!(
        chrono::Utc::now() < starts_at,
        "the joins took past the start: the test needs a later start"
    );

    // Act: the draw at the start.
    let published = wait_for_draw(&app, sale_id, starts_at).await;

    // Assert: the seed matches the commitment and gives the published order of exactly the
    // tickets that joined.
    let seed = published["seed"].as_str().expect("seed");
    assert_eq!(published["commitment"], commitment.as_str());
    let order: Vec<String> = serde_json::from_value(published["tickets"].clone()).expect("tickets");
    draw::verify(seed, &commitment, &order).expect("the published draw checks out");
    let mut sorted_published = order.clone();
    sorted_published.sort();
    let mut sorted_joined = tickets.clone();
    sorted_joined.sort();
    assert_eq!(
        sorted_published, sorted_joined,
        "every ticket that joined took part, once"
    );
    let recomputed = draw::order(&draw::parse_seed(seed).expect("seed"), &tickets);
    let position_of: HashMap<&str, usize> = recomputed
        .iter()
        .enumerate()
        .map(|(i, t)| (t.as_str(), i + 1))
        .collect();

    // Every shopper's own view shows the recomputed position; the first 400 are admitted.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let mut passes: Vec<(usize, String)> = Vec::new();
    let mut admitted_early_joiners = 0;
    for (joined_as, (user, ticket)) in users.iter().zip(&tickets).enumerate() {
        let view = poll(&app, sale_id, user, ticket).await.json;
        let position = position_of[ticket.as_str()];
        assert_eq!(view["position"], position, "{user}: {view}");
        let admitted = view["status"] == "admitted";
        assert_eq!(
            admitted,
            position <= ADMITTED,
            "{user} at {position}: {view}"
        );
        if admitted {
            passes.push((joined_as, view["pass"].as_str().expect("a pass").to_owned()));
            if joined_as < SHOPPERS / 2 {
                admitted_early_joiners += 1;
            }
        }
    }
    assert_eq!(passes.len(), ADMITTED);

    // The first 500 joiners win no more (nor less) often than the last 500: of 400 admitted
    // drawn without regard to join order, the early joiners' count is hypergeometric (mean
    // 200, sd sqrt(400 * 1/2 * 1/2 * 600/999) = 7.75). Two-sided at the 1 % level: within
    // 2.576 sd of the mean. Positions in join order would give 400.
    let mean = ADMITTED as f64 / 2.0;
    let sd = (ADMITTED as f64 * 0.25 * (SHOPPERS - ADMITTED) as f64 / (SHOPPERS - 1) as f64).sqrt();
    let z = (f64::from(admitted_early_joiners) - mean) / sd;
    assert!(
        z.abs() < 2.576,
        "{admitted_early_joiners} of {ADMITTED} admitted joined in the first half (z = {z:.2})"
    );

    // The manager's view counts it live.
    let view = app.get_sale(sale_id).await.json;
    let live = &view["queue"]["live"];
    assert_eq!(live["joined"], SHOPPERS, "{view}");
    assert_eq!(live["admitted"], ADMITTED, "{view}");
    assert_eq!(live["waiting"], SHOPPERS - ADMITTED, "{view}");
    assert_eq!(view["queue"]["commitment"], commitment.as_str());

    // No oversell: every admitted shopper buys with its pass; the stock goes exactly.
    let mut bought = 0;
    for (joined_as, pass) in &passes {
        let reply = buy(&app, sale_id, &users[*joined_as], Some(pass)).await;
        match reply.status {
            StatusCode::ACCEPTED => bought += 1,
            StatusCode::CONFLICT => assert_eq!(reply.code(), "sold_out", "{}", reply.json),
            other => panic!("a purchase with a pass answered {other}: {}", reply.json),
        }
    }
    assert_eq!(bought, STOCK);
    assert_eq!(app.get_sale(sale_id).await.json["remaining"], 0);
    app.stop().await;
}
