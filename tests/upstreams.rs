//! Upstreams over real HTTP with the sandbox (issue 4): bootstrap, routing,
//! cardholder outcomes, fault injection and the resolver, signed callbacks.

mod common;

use common::{Json, Service, secs};
use pelago_card::upstream::callbacks::sign;
use pelago_storage::Timestamp;
use reqwest::{Method, StatusCode};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sandbox_issuer_is_registered_at_first_start() {
    let (_dir, data) = common::temp_data();
    let svc = Service::start(&data, &[]);
    let channel = svc.first_channel().await;
    let bins = svc.admin_get("/admin/v1/bins").await;
    let each = |field| bins.strs("data", field);
    assert_eq!(
        (each("bin"), each("card_name"), each("currency")),
        (vec!["424242", "535353"], vec!["PELAGO_VIRTUAL_USD", "PELAGO_VIRTUAL_EUR"], vec!["USD", "EUR"])
    );
    let balance = svc.admin_get(&format!("/admin/v1/channels/{channel}/balance")).await;
    assert!(
        balance["balances"].as_array().unwrap().contains(&json!({"value": 100_000_000, "currency": "USD"})),
        "{balance}"
    );
    let got = svc.admin_get(&format!("/admin/v1/channels/{channel}")).await;
    assert!(got.get("api_key").is_none() && got.get("webhook_secret").is_none(), "secrets never returned");
    // A restart registers nothing twice and keeps working.
    assert!(svc.terminate().success());
    let svc = Service::start(&data, &[]);
    let channels = svc.admin_get("/admin/v1/channels").await;
    assert_eq!(channels.count("data"), 1);
    let m = svc.merchant("After restart").await;
    let (status, c) = m.cardholder("Lovelace").await;
    assert_eq!((status, c.str("status")), (StatusCode::CREATED, "active"), "{c}");
    // Duplicate BIN: 409.
    let (dup_status, _) = svc.admin_post("/admin/v1/bins", json!({"bin": "424242", "channel_id": channel, "card_name": "X", "currency": "USD", "status": "active"})).await;
    assert_eq!(dup_status, StatusCode::CONFLICT);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cardholders_follow_the_sandbox_rules_and_routing() {
    let svc = Service::temp(&[]);
    let m = svc.merchant("Holders").await;

    let (status, active) = m.cardholder("Lovelace").await;
    assert_eq!(status, StatusCode::CREATED, "{active}");
    assert_eq!(active["status"], "active");
    assert_eq!(active["bin"], "424242");
    assert_eq!(active["id_document"]["number"], "****4567");
    assert_eq!(active.count("status_history"), 2);

    let (status, rejected) = m.cardholder("Reject").await;
    assert_eq!((status, rejected.str("status")), (StatusCode::CREATED, "rejected"));

    let (status, pending) = m.cardholder("Pending").await;
    assert_eq!((status, pending.str("status")), (StatusCode::CREATED, "pending"));
    let id = pending.str("id");
    let (status, approved) = m.post(&format!("/v1/test_helpers/cardholders/{id}/approve"), json!({})).await;
    assert_eq!((status, approved.str("status")), (StatusCode::OK, "active"), "{approved}");

    assert_eq!(m.events("cardholder.activated").await, 2);
    assert_eq!(m.events("cardholder.rejected").await, 1);

    // Not allowed: 403; bad fields name themselves; another merchant's: 404.
    let mut eur = common::cardholder_body("Lovelace");
    eur["card_name"] = json!("PELAGO_VIRTUAL_EUR");
    let (status, _) = m.post("/v1/cardholders", eur).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // Ten years old on the day the test runs; a short phone; no such country.
    let young = (chrono::Utc::now().date_naive() - chrono::Days::new(3_653)).to_string();
    for (param, value) in [("date_of_birth", young.as_str()), ("phone", "12345"), ("address.country", "XX")] {
        let mut body = common::cardholder_body("Invalid");
        *body.pointer_mut(&format!("/{}", param.replace('.', "/"))).unwrap() = json!(value);
        let (status, err) = m.post("/v1/cardholders", body).await;
        assert_eq!((status, err.param()), (StatusCode::BAD_REQUEST, Some(param)), "{err}");
    }
    let other = svc.merchant("Other").await;
    let r = svc.signed(&other.key, Method::GET, &format!("/v1/cardholders/{id}"), b"").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let by_ref = m.get("/v1/cardholders?reference=user-Reject").await;
    assert_eq!(by_ref.count("data"), 1);

    // Routing: a second channel with a better priority wins; inactive BIN and
    // disabled channel are skipped; nothing active is 409.
    let second = json!({"name": "Second", "kind": "sandbox", "base_url": "http://127.0.0.1:1/channel",
                        "api_key": "second-channel-key", "webhook_secret": "second-channel-secret"});
    let second = svc.admin_created("/admin/v1/channels", second).await.str("id").to_owned();
    for (bin, status, priority) in [("111111", "inactive", -10), ("222222", "active", -5)] {
        svc.admin_created(
            "/admin/v1/bins",
            json!({"bin": bin, "channel_id": second, "card_name": "PELAGO_VIRTUAL_USD",
                          "currency": "USD", "status": status, "priority": priority}),
        )
        .await;
    }
    let (_, c) = m.cardholder("Routed").await;
    assert_eq!(c["bin"], "222222", "the active BIN with the lowest priority");
    assert_eq!(c["status"], "active");
    svc.admin_patch(&format!("/admin/v1/channels/{second}"), json!({"status": "disabled"})).await;
    let (_, c) = m.cardholder("Routed").await;
    assert_eq!(c["bin"], "424242", "a disabled channel is skipped");
    svc.admin_patch("/admin/v1/bins/424242", json!({"status": "inactive"})).await;
    let (status, err) = m.cardholder("Routed").await;
    assert_eq!((status, err.code()), (StatusCode::CONFLICT, "invalid_state"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_leave_outcomes_to_the_resolver_which_applies_them_once() {
    let svc = Service::temp(&[("PELAGO_UPSTREAM_TIMEOUT_MS", "400")]);
    let m = svc.merchant("Faulty").await;
    let channel = svc.first_channel().await;

    // decline: a definite refusal is data: 201 rejected with a reason.
    svc.channel_fault(&channel, "create_cardholder", "decline").await;
    let (status, c) = m.cardholder("Declined").await;
    assert_eq!((status, c.str("status")), (StatusCode::CREATED, "rejected"), "{c}");
    assert!(c["failure_reason"].is_string());

    // timeout: applied at the channel, answered too late: 202 pending, then active by itself.
    svc.channel_fault(&channel, "create_cardholder", "timeout").await;
    let (status, c) = m.cardholder("Slow").await;
    assert_eq!((status, c.str("status")), (StatusCode::ACCEPTED, "pending"), "{c}");
    let id = c.str("id").to_owned();
    m.poll(&format!("/v1/cardholders/{id}"), secs(30), |v| v["status"] == "active").await;

    // error: a 500 that did not apply: Pelago asks, retries with the same request id, succeeds once.
    svc.channel_fault(&channel, "create_cardholder", "error").await;
    let (status, c) = m.cardholder("Flaky").await;
    assert_eq!(status, StatusCode::ACCEPTED, "{c}");
    let id2 = c.str("id").to_owned();
    m.poll(&format!("/v1/cardholders/{id2}"), secs(30), |v| v["status"] == "active").await;

    let events = m.get("/v1/events?type=cardholder.activated").await;
    let ids: Vec<&str> = events["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["data"]["object"]["id"].as_str())
        .collect();
    assert_eq!(ids.iter().filter(|i| **i == id).count(), 1, "activated once");
    assert_eq!(ids.iter().filter(|i| **i == id2).count(), 1, "activated once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callbacks_are_signed_deduplicated_and_ordered() {
    let dir = tempfile::tempdir().unwrap();
    // A long upstream timeout keeps the resolver (which waits timeout + 1 s)
    // off the cardholder left pending on our own channel below.
    let svc = Service::start(&dir.path().join("data"), &[("PELAGO_UPSTREAM_TIMEOUT_MS", "120000")]);
    let m = svc.merchant("Callbacks").await;
    let channel = svc.first_channel().await;

    // Duplicate deliveries (the sandbox sends the approve callback 3 times): one effect.
    let (_, pending) = m.cardholder("Pending").await;
    let id = pending.str("id").to_owned();
    svc.channel_fault(&channel, "callbacks", "duplicate").await;
    let (status, _) = m.post(&format!("/v1/test_helpers/cardholders/{id}/approve"), json!({})).await;
    assert_eq!(status, StatusCode::OK);
    let got = m.poll(&format!("/v1/cardholders/{id}"), secs(30), |v| v["status"] == "active").await;
    assert_eq!(got.count("status_history"), 2, "pending → active, once");
    let version = got["version"].clone();
    assert_eq!(m.events("cardholder.activated").await, 1, "one effect for three deliveries");

    // Our own channel whose webhook secret we know, to forge and sign callbacks
    // (kind sandbox: an http channel cannot exist in sandbox mode).
    let own = json!({"name": "Own", "kind": "sandbox", "base_url": "http://127.0.0.1:9/own",
                     "api_key": "own-channel-key-1", "webhook_secret": "own-channel-secret-1"});
    let own = svc.admin_created("/admin/v1/channels", own).await.str("id").to_owned();
    let body = json!({"event_id": "evt-own-1", "type": "cardholder.updated", "data": {
        "cardholder_id": id, "channel_cardholder_id": "x", "status": "rejected", "reason": "late"}});
    let bytes = serde_json::to_vec(&body).unwrap();
    let post = |sig: String| {
        svc.http
            .post(svc.url(&format!("/callbacks/channels/{own}")))
            .header("x-channel-signature", sig)
            .body(bytes.clone())
            .send()
    };
    let now = Timestamp::now_real().unix_seconds();
    assert_eq!(post(sign(b"wrong-secret", now, &bytes)).await.unwrap().status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        post(sign(b"own-channel-secret-1", now - 301, &bytes)).await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    let unsigned = async |channel: &str| {
        let url = svc.url(&format!("/callbacks/channels/{channel}"));
        svc.http.post(url).body(bytes.clone()).send().await.unwrap().status()
    };
    assert_eq!(unsigned(&own).await, StatusCode::UNAUTHORIZED);
    // Correctly signed, but about a cardholder of another channel: 401, no effect (SECURITY.md).
    let r = post(sign(b"own-channel-secret-1", now, &bytes)).await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    // An out-of-order "rejected" after "active" from the right channel: no effect.
    assert_eq!(
        unsigned(&channel).await,
        StatusCode::UNAUTHORIZED,
        "unsigned by the sandbox channel's secret"
    );
    let got = m.get(&format!("/v1/cardholders/{id}")).await;
    assert_eq!((got["status"].as_str(), &got["version"]), (Some("active"), &version), "nothing changed");
    // A cardholder on our own channel (its creation fails with a 500, so it is
    // 202 pending and the channel holds no such cardholder), then signed
    // notices: "active", a repeat, a late "rejected". Each is confirmed by
    // asking the channel, which does not know "own-1": refused, no effect.
    let bin = json!({"bin": "999999", "channel_id": own, "card_name": "OWN_CARD", "currency": "USD", "status": "active"});
    svc.admin_created("/admin/v1/bins", bin).await;
    svc.admin_patch(
        &format!("/admin/v1/merchants/{}", m.id),
        json!({"allowed_card_names": ["PELAGO_VIRTUAL_USD", "OWN_CARD"]}),
    )
    .await;
    svc.channel_fault(&own, "create_cardholder", "error").await;
    let mut mine = common::cardholder_body("Mine");
    mine["card_name"] = json!("OWN_CARD");
    let (status, mine) = m.post("/v1/cardholders", mine).await;
    assert_eq!((status, mine.str("status")), (StatusCode::ACCEPTED, "pending"), "{mine}");
    let mine_id = mine.str("id").to_owned();
    for (event_id, status) in [("n1", "active"), ("n1", "active"), ("n0", "rejected")] {
        let notice = json!({"event_id": event_id, "type": "cardholder.updated", "data": {
            "cardholder_id": mine_id, "channel_cardholder_id": "own-1", "status": status, "reason": null}});
        let answer = svc.channel_callback(&own, "own-channel-secret-1", &notice).await;
        assert_eq!(answer, StatusCode::BAD_REQUEST, "{event_id} {status}");
    }
    let got = m.get(&format!("/v1/cardholders/{mine_id}")).await;
    assert_eq!((got["status"].as_str(), got["version"].as_i64()), (Some("pending"), Some(1)), "no effect");

    // Unknown channel: 401.
    let unknown = svc.channel_callback("chl_01JDEMO0000000000000000000", "own-channel-secret-1", &body).await;
    assert_eq!(unknown, StatusCode::UNAUTHORIZED);
}
