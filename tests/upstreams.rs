//! Upstreams over real HTTP with the sandbox (issue 4): bootstrap, routing,
//! cardholder outcomes, fault injection and the resolver, signed callbacks.

mod common;

use std::time::{Duration, Instant};

use common::{Key, Service};
use pelago_card::upstream::callbacks::sign;
use pelago_storage::Timestamp;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

fn cardholder(last_name: &str, card_name: &str) -> Value {
    json!({
        "card_name": card_name, "reference": format!("user-{last_name}"),
        "first_name": "Ada", "last_name": last_name, "email": "ada@example.com",
        "phone": "+6591234567", "date_of_birth": "1990-12-10", "nationality": "SG",
        "id_document": {"type": "passport", "number": "E1234567"},
        "address": {"line1": "1 Main St", "line2": null, "city": "Singapore", "state": null,
                    "postal_code": "018989", "country": "SG"},
    })
}

async fn post_json(svc: &Service, key: &Key, path: &str, body: &Value) -> (StatusCode, Value) {
    let bytes = serde_json::to_vec(body).unwrap();
    let r = svc
        .signed(key, Method::POST, path, &bytes)
        .header("content-type", "application/json")
        .send()
        .await
        .unwrap();
    (r.status(), r.json().await.unwrap_or(Value::Null))
}

async fn get_json(svc: &Service, key: &Key, path: &str) -> Value {
    svc.signed(key, Method::GET, path, b"").send().await.unwrap().json().await.unwrap()
}

async fn sandbox_channel(svc: &Service) -> String {
    let channels: Value =
        svc.admin(Method::GET, "/admin/v1/channels").send().await.unwrap().json().await.unwrap();
    let c = channels["data"].as_array().unwrap().iter().find(|c| c["name"] == "Sandbox Issuer").unwrap();
    c["id"].as_str().unwrap().to_owned()
}

async fn fault(svc: &Service, channel: &str, operation: &str, behavior: &str) {
    let r = svc
        .admin(Method::POST, &format!("/admin/v1/test_helpers/channels/{channel}/faults"))
        .json(&json!({"operation": operation, "behavior": behavior, "count": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "{}", r.text().await.unwrap());
}

/// Polls until `done` holds, at most 30 s.
async fn eventually(svc: &Service, key: &Key, path: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let v = get_json(svc, key, path).await;
        if done(&v) {
            return v;
        }
        assert!(Instant::now() < deadline, "never reached the expected state: {v}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sandbox_issuer_is_registered_at_first_start() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let svc = Service::start(&data, &[]);
    let channel = sandbox_channel(&svc).await;
    let bins: Value = svc.admin(Method::GET, "/admin/v1/bins").send().await.unwrap().json().await.unwrap();
    let bins: Vec<(String, String, String)> = bins["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            (
                b["bin"].as_str().unwrap().into(),
                b["card_name"].as_str().unwrap().into(),
                b["currency"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(
        bins,
        vec![
            ("424242".into(), "PELAGO_VIRTUAL_USD".into(), "USD".into()),
            ("535353".into(), "PELAGO_VIRTUAL_EUR".into(), "EUR".into())
        ]
    );
    let balance: Value = svc
        .admin(Method::GET, &format!("/admin/v1/channels/{channel}/balance"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        balance["balances"].as_array().unwrap().contains(&json!({"value": 100_000_000, "currency": "USD"})),
        "{balance}"
    );
    let got: Value = svc
        .admin(Method::GET, &format!("/admin/v1/channels/{channel}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(got.get("api_key").is_none() && got.get("webhook_secret").is_none(), "secrets never returned");
    // A restart registers nothing twice and keeps working.
    assert!(svc.terminate().success());
    let svc = Service::start(&data, &[]);
    let channels: Value =
        svc.admin(Method::GET, "/admin/v1/channels").send().await.unwrap().json().await.unwrap();
    assert_eq!(channels["data"].as_array().unwrap().len(), 1);
    let (_, key, _) = svc.merchant("After restart").await;
    let (status, c) =
        post_json(&svc, &key, "/v1/cardholders", &cardholder("Lovelace", "PELAGO_VIRTUAL_USD")).await;
    assert_eq!((status, c["status"].as_str()), (StatusCode::CREATED, Some("active")), "{c}");
    // Duplicate BIN: 409.
    let dup = svc
        .admin(Method::POST, "/admin/v1/bins")
        .json(&json!({"bin": "424242", "channel_id": channel, "card_name": "X", "currency": "USD", "status": "active"}))
        .send()
        .await
        .unwrap();
    assert_eq!(dup.status(), StatusCode::CONFLICT);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cardholders_follow_the_sandbox_rules_and_routing() {
    let dir = tempfile::tempdir().unwrap();
    let svc = Service::start(&dir.path().join("data"), &[]);
    let (merchant, key, _) = svc.merchant("Holders").await;

    let (status, active) =
        post_json(&svc, &key, "/v1/cardholders", &cardholder("Lovelace", "PELAGO_VIRTUAL_USD")).await;
    assert_eq!(status, StatusCode::CREATED, "{active}");
    assert_eq!(active["status"], "active");
    assert_eq!(active["bin"], "424242");
    assert_eq!(active["id_document"]["number"], "****4567");
    assert_eq!(active["status_history"].as_array().unwrap().len(), 2);

    let (status, rejected) =
        post_json(&svc, &key, "/v1/cardholders", &cardholder("Reject", "PELAGO_VIRTUAL_USD")).await;
    assert_eq!((status, rejected["status"].as_str()), (StatusCode::CREATED, Some("rejected")));

    let (status, pending) =
        post_json(&svc, &key, "/v1/cardholders", &cardholder("Pending", "PELAGO_VIRTUAL_USD")).await;
    assert_eq!((status, pending["status"].as_str()), (StatusCode::CREATED, Some("pending")));
    let id = pending["id"].as_str().unwrap();
    let (status, approved) =
        post_json(&svc, &key, &format!("/v1/test_helpers/cardholders/{id}/approve"), &json!({})).await;
    assert_eq!((status, approved["status"].as_str()), (StatusCode::OK, Some("active")), "{approved}");

    let events = get_json(&svc, &key, "/v1/events?type=cardholder.activated").await;
    assert_eq!(events["data"].as_array().unwrap().len(), 2, "{events}");
    let events = get_json(&svc, &key, "/v1/events?type=cardholder.rejected").await;
    assert_eq!(events["data"].as_array().unwrap().len(), 1);

    // Not allowed: 403; bad fields name themselves; another merchant's: 404.
    let (status, _) =
        post_json(&svc, &key, "/v1/cardholders", &cardholder("Lovelace", "PELAGO_VIRTUAL_EUR")).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let mut young = cardholder("Young", "PELAGO_VIRTUAL_USD");
    // Ten years old on the day the test runs.
    young["date_of_birth"] = json!((chrono::Utc::now().date_naive() - chrono::Days::new(3_653)).to_string());
    let (status, err) = post_json(&svc, &key, "/v1/cardholders", &young).await;
    assert_eq!((status, err["error"]["param"].as_str()), (StatusCode::BAD_REQUEST, Some("date_of_birth")));
    let mut bad_phone = cardholder("Phone", "PELAGO_VIRTUAL_USD");
    bad_phone["phone"] = json!("12345");
    let (_, err) = post_json(&svc, &key, "/v1/cardholders", &bad_phone).await;
    assert_eq!(err["error"]["param"], "phone");
    let mut bad_country = cardholder("Country", "PELAGO_VIRTUAL_USD");
    bad_country["address"]["country"] = json!("XX");
    let (_, err) = post_json(&svc, &key, "/v1/cardholders", &bad_country).await;
    assert_eq!(err["error"]["param"], "address.country");
    let (_, other_key, _) = svc.merchant("Other").await;
    let r = svc.signed(&other_key, Method::GET, &format!("/v1/cardholders/{id}"), b"").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let by_ref = get_json(&svc, &key, "/v1/cardholders?reference=user-Reject").await;
    assert_eq!(by_ref["data"].as_array().unwrap().len(), 1);

    // Routing: a second channel with a better priority wins; inactive BIN and
    // disabled channel are skipped; nothing active is 409.
    let r = svc
        .admin(Method::POST, "/admin/v1/channels")
        .json(&json!({"name": "Second", "kind": "sandbox", "base_url": "http://127.0.0.1:1/channel",
                      "api_key": "second-channel-key", "webhook_secret": "second-channel-secret"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let second = r.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
    for (bin, status, priority) in [("111111", "inactive", -10), ("222222", "active", -5)] {
        let r = svc
            .admin(Method::POST, "/admin/v1/bins")
            .json(&json!({"bin": bin, "channel_id": second, "card_name": "PELAGO_VIRTUAL_USD", "currency": "USD",
                          "status": status, "priority": priority}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::CREATED);
    }
    let (_, c) = post_json(&svc, &key, "/v1/cardholders", &cardholder("Routed", "PELAGO_VIRTUAL_USD")).await;
    assert_eq!(c["bin"], "222222", "the active BIN with the lowest priority");
    assert_eq!(c["status"], "active");
    svc.admin(Method::PATCH, &format!("/admin/v1/channels/{second}"))
        .json(&json!({"status": "disabled"}))
        .send()
        .await
        .unwrap();
    let (_, c) = post_json(&svc, &key, "/v1/cardholders", &cardholder("Routed", "PELAGO_VIRTUAL_USD")).await;
    assert_eq!(c["bin"], "424242", "a disabled channel is skipped");
    svc.admin(Method::PATCH, "/admin/v1/bins/424242")
        .json(&json!({"status": "inactive"}))
        .send()
        .await
        .unwrap();
    let (status, err) =
        post_json(&svc, &key, "/v1/cardholders", &cardholder("Routed", "PELAGO_VIRTUAL_USD")).await;
    assert_eq!((status, err["error"]["code"].as_str()), (StatusCode::CONFLICT, Some("invalid_state")));
    let _ = merchant;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_leave_outcomes_to_the_resolver_which_applies_them_once() {
    let dir = tempfile::tempdir().unwrap();
    let svc = Service::start(&dir.path().join("data"), &[("PELAGO_UPSTREAM_TIMEOUT_MS", "400")]);
    let (_, key, _) = svc.merchant("Faulty").await;
    let channel = sandbox_channel(&svc).await;

    // decline: a definite refusal is data: 201 rejected with a reason.
    fault(&svc, &channel, "create_cardholder", "decline").await;
    let (status, c) =
        post_json(&svc, &key, "/v1/cardholders", &cardholder("Declined", "PELAGO_VIRTUAL_USD")).await;
    assert_eq!((status, c["status"].as_str()), (StatusCode::CREATED, Some("rejected")), "{c}");
    assert!(c["failure_reason"].is_string());

    // timeout: applied at the channel, answered too late: 202 pending, then active by itself.
    fault(&svc, &channel, "create_cardholder", "timeout").await;
    let (status, c) =
        post_json(&svc, &key, "/v1/cardholders", &cardholder("Slow", "PELAGO_VIRTUAL_USD")).await;
    assert_eq!((status, c["status"].as_str()), (StatusCode::ACCEPTED, Some("pending")), "{c}");
    let id = c["id"].as_str().unwrap().to_owned();
    eventually(&svc, &key, &format!("/v1/cardholders/{id}"), |v| v["status"] == "active").await;

    // error: a 500 that did not apply: Pelago asks, retries with the same request id, succeeds once.
    fault(&svc, &channel, "create_cardholder", "error").await;
    let (status, c) =
        post_json(&svc, &key, "/v1/cardholders", &cardholder("Flaky", "PELAGO_VIRTUAL_USD")).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{c}");
    let id2 = c["id"].as_str().unwrap().to_owned();
    eventually(&svc, &key, &format!("/v1/cardholders/{id2}"), |v| v["status"] == "active").await;

    let events = get_json(&svc, &key, "/v1/events?type=cardholder.activated").await;
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
    let (_, key, _) = svc.merchant("Callbacks").await;
    let channel = sandbox_channel(&svc).await;

    // Duplicate deliveries (the sandbox sends the approve callback 3 times): one effect.
    let (_, pending) =
        post_json(&svc, &key, "/v1/cardholders", &cardholder("Pending", "PELAGO_VIRTUAL_USD")).await;
    let id = pending["id"].as_str().unwrap().to_owned();
    fault(&svc, &channel, "callbacks", "duplicate").await;
    let (status, _) =
        post_json(&svc, &key, &format!("/v1/test_helpers/cardholders/{id}/approve"), &json!({})).await;
    assert_eq!(status, StatusCode::OK);
    let got = eventually(&svc, &key, &format!("/v1/cardholders/{id}"), |v| v["status"] == "active").await;
    assert_eq!(got["status_history"].as_array().unwrap().len(), 2, "pending → active, once");
    let version = got["version"].clone();
    let events = get_json(&svc, &key, "/v1/events?type=cardholder.activated").await;
    assert_eq!(events["data"].as_array().unwrap().len(), 1, "one effect for three deliveries");

    // Our own channel whose webhook secret we know, to forge and sign callbacks
    // (kind sandbox: an http channel cannot exist in sandbox mode).
    let r = svc
        .admin(Method::POST, "/admin/v1/channels")
        .json(&json!({"name": "Own", "kind": "sandbox", "base_url": "http://127.0.0.1:9/own",
                      "api_key": "own-channel-key-1", "webhook_secret": "own-channel-secret-1"}))
        .send()
        .await
        .unwrap();
    let own = r.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
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
    let unsigned = svc
        .http
        .post(svc.url(&format!("/callbacks/channels/{own}")))
        .body(bytes.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(unsigned.status(), StatusCode::UNAUTHORIZED);
    // Correctly signed, but about a cardholder of another channel: 401, no effect (SECURITY.md).
    let r = post(sign(b"own-channel-secret-1", now, &bytes)).await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    // An out-of-order "rejected" after "active" from the right channel: no effect.
    let late = svc
        .http
        .post(svc.url(&format!("/callbacks/channels/{channel}")))
        .body(bytes.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(late.status(), StatusCode::UNAUTHORIZED, "unsigned by the sandbox channel's secret");
    let got = get_json(&svc, &key, &format!("/v1/cardholders/{id}")).await;
    assert_eq!((got["status"].as_str(), &got["version"]), (Some("active"), &version), "nothing changed");
    // A cardholder on our own channel (its creation fails with a 500, so it is
    // 202 pending and the channel holds no such cardholder), then signed
    // notices: "active", a repeat, a late "rejected". Each is confirmed by
    // asking the channel, which does not know "own-1": refused, no effect.
    let r = svc
        .admin(Method::POST, "/admin/v1/bins")
        .json(&json!({"bin": "999999", "channel_id": own, "card_name": "OWN_CARD", "currency": "USD", "status": "active"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let merchants: Value =
        svc.admin(Method::GET, "/admin/v1/merchants").send().await.unwrap().json().await.unwrap();
    let mid = merchants["data"][0]["id"].as_str().unwrap().to_owned();
    svc.admin(Method::PATCH, &format!("/admin/v1/merchants/{mid}"))
        .json(&json!({"allowed_card_names": ["PELAGO_VIRTUAL_USD", "OWN_CARD"]}))
        .send()
        .await
        .unwrap();
    fault(&svc, &own, "create_cardholder", "error").await;
    let (status, mine) = post_json(&svc, &key, "/v1/cardholders", &cardholder("Mine", "OWN_CARD")).await;
    assert_eq!((status, mine["status"].as_str()), (StatusCode::ACCEPTED, Some("pending")), "{mine}");
    let mine_id = mine["id"].as_str().unwrap().to_owned();
    let notice = |event_id: &str, status: &str| {
        serde_json::to_vec(&json!({"event_id": event_id, "type": "cardholder.updated", "data": {
            "cardholder_id": mine_id, "channel_cardholder_id": "own-1", "status": status, "reason": null}}))
        .unwrap()
    };
    for (event_id, status) in [("n1", "active"), ("n1", "active"), ("n0", "rejected")] {
        let b = notice(event_id, status);
        let r = svc
            .http
            .post(svc.url(&format!("/callbacks/channels/{own}")))
            .header(
                "x-channel-signature",
                sign(b"own-channel-secret-1", Timestamp::now_real().unix_seconds(), &b),
            )
            .body(b)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{event_id} {status}");
    }
    let got = get_json(&svc, &key, &format!("/v1/cardholders/{mine_id}")).await;
    assert_eq!((got["status"].as_str(), got["version"].as_i64()), (Some("pending"), Some(1)), "no effect");

    // Unknown channel: 401.
    let r = svc
        .http
        .post(svc.url("/callbacks/channels/chl_01JDEMO0000000000000000000"))
        .header("x-channel-signature", sign(b"own-channel-secret-1", now, &bytes))
        .body(bytes.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
}
