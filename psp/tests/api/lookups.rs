//! Finding charges: by id, by the idempotency key they were made under (how a saga resolves
//! an unknown outcome), by reference, and all of them in pages.

use http::StatusCode;

use crate::helpers::{charge_body, spawn_psp};

#[tokio::test]
async fn a_charge_is_found_by_id_and_by_its_key_and_unknown_ones_are_404_no_such_charge() {
    let psp = spawn_psp().await;
    let made = psp
        .charge(Some("ord-1:1"), &charge_body("tok_ok", "ord-1", 700))
        .await;

    let by_id = psp.get(&format!("/charges/{}", made.id())).await;
    let by_key = psp.get("/charges?idempotency_key=ord-1:1").await;
    let encoded_key = psp.get("/charges?idempotency_key=ord-1%3A1").await;
    let unknown_id = psp.get("/charges/ch_nope").await;
    let unknown_key = psp.get("/charges?idempotency_key=ord-1:2").await;

    assert_eq!(by_id.status, StatusCode::OK);
    assert_eq!(by_id.json, made.json);
    assert_eq!(by_key.status, StatusCode::OK);
    assert_eq!(by_key.id(), made.id());
    assert_eq!(encoded_key.id(), made.id());
    for reply in [unknown_id, unknown_key] {
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "{}", reply.text);
        assert_eq!(reply.code(), "no_such_charge");
    }
}

#[tokio::test]
async fn charges_are_listed_oldest_first_by_reference_or_all_in_pages() {
    let psp = spawn_psp().await;
    let mut ids = Vec::new();
    for i in 0..5 {
        let reference = if i % 2 == 0 { "even" } else { "odd" };
        let token = if i == 4 { "tok_declined" } else { "tok_ok" };
        let made = psp
            .charge(Some(&format!("k{i}")), &charge_body(token, reference, 10))
            .await;
        ids.push(made.id());
    }
    let ids_of = |reply: &crate::helpers::Reply| -> Vec<String> {
        reply.json["charges"]
            .as_array()
            .expect("a list")
            .iter()
            .map(|c| c["id"].as_str().expect("id").to_owned())
            .collect()
    };

    let all = psp.get("/charges").await;
    let even = psp.get("/charges?reference=even").await;
    let first_page = psp.get("/charges?limit=2").await;
    let second_page = psp
        .get(&format!("/charges?limit=2&starting_after={}", ids[1]))
        .await;
    let nobody = psp.get("/charges?reference=nobody").await;

    assert_eq!(ids_of(&all), ids);
    assert_eq!(all.json["has_more"], false);
    assert_eq!(
        ids_of(&even),
        [ids[0].clone(), ids[2].clone(), ids[4].clone()]
    );
    assert_eq!(even.json["charges"][2]["status"], "declined");
    assert_eq!(ids_of(&first_page), ids[0..2]);
    assert_eq!(first_page.json["has_more"], true);
    assert_eq!(ids_of(&second_page), ids[2..4]);
    assert_eq!(ids_of(&nobody), Vec::<String>::new());
}

#[tokio::test]
async fn a_bad_list_query_is_400_naming_the_parameter() {
    let psp = spawn_psp().await;

    let cases = [
        ("/charges?limit=0", "limit"),
        ("/charges?limit=many", "limit"),
        ("/charges?starting_after=ch_nope", "starting_after"),
        ("/charges?colour=red", "colour"),
        ("/charges?idempotency_key=k&reference=r", "idempotency_key"),
        ("/charges?reference=a&reference=b", "reference"),
        ("/charges?reference=%zz", "encoded"),
    ];

    for (path, names) in cases {
        let reply = psp.get(path).await;
        assert_eq!(
            reply.status,
            StatusCode::BAD_REQUEST,
            "{path}: {}",
            reply.text
        );
        assert_eq!(reply.code(), "invalid_request");
        assert!(reply.text.contains(names), "{path}: {}", reply.text);
    }
}
