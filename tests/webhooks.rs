//! Webhook delivery over real HTTP (issue 7): every delivery is verified by a
//! receiver built on the Python `standardwebhooks` library; retries, restarts,
//! isolation between merchants, and secret rotation.

mod common;

use std::time::{Duration, Instant};

use common::{
    Key, Service,
    receiver::{Receiver, free_port},
};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

fn cardholder(last_name: &str) -> Value {
    json!({
        "card_name": "PELAGO_VIRTUAL_USD", "reference": format!("user-{last_name}"),
        "first_name": "Ada", "last_name": last_name, "email": "ada@example.com",
        "phone": "+6591234567", "date_of_birth": "1990-12-10", "nationality": "SG",
        "id_document": {"type": "passport", "number": "E1234567"},
        "address": {"line1": "1 Main St", "line2": null, "city": "Singapore", "state": null,
                    "postal_code": "018989", "country": "SG"},
    })
}

async fn set_webhook_url(svc: &Service, merchant: &str, url: &str) {
    let r = svc
        .admin(Method::PATCH, &format!("/admin/v1/merchants/{merchant}"))
        .json(&json!({"webhook_url": url}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "{}", r.text().await.unwrap());
}

/// Creates an active cardholder; returns the id of its `cardholder.activated` event.
async fn activated_event(svc: &Service, key: &Key, last_name: &str) -> String {
    let body = serde_json::to_vec(&cardholder(last_name)).unwrap();
    let r = svc.signed(key, Method::POST, "/v1/cardholders", &body).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let holder: Value = r.json().await.unwrap();
    assert_eq!(holder["status"], "active");
    let events: Value = get(svc, key, "/v1/events?type=cardholder.activated&limit=100").await.1;
    events["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["data"]["object"]["id"] == holder["id"])
        .map(|e| e["id"].as_str().unwrap().to_owned())
        .expect("the activation event is listed")
}

async fn get(svc: &Service, key: &Key, path: &str) -> (StatusCode, Value) {
    let r = svc.signed(key, Method::GET, path, b"").send().await.unwrap();
    (r.status(), r.json().await.unwrap_or(Value::Null))
}

async fn deliveries(svc: &Service, key: &Key, event: &str) -> Vec<Value> {
    let (status, v) = get(svc, key, &format!("/v1/events/{event}/deliveries")).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["has_more"], false);
    v["data"].as_array().unwrap().clone()
}

/// Polls `check` every 50 ms until it returns `Some`, at most `secs`.
async fn until<T, F: std::future::Future<Output = Option<T>>>(
    secs: u64,
    what: &str,
    mut check: impl FnMut() -> F,
) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn queue_depth(svc: &Service) -> f64 {
    let metrics = svc.http.get(svc.url("/metrics")).send().await.unwrap().text().await.unwrap();
    metrics
        .lines()
        .find_map(|l| l.strip_prefix("pelago_webhook_queue_depth "))
        .expect("the queue depth gauge")
        .trim()
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_endpoint_gets_the_event_on_the_third_attempt_with_the_same_id() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("svc");
    let svc = Service::start(&data, &[("PELAGO_WEBHOOK_RETRY_SCHEDULE", "1,1,1")]);
    let (merchant, key, secret) = svc.merchant("Retry Shop").await;
    let receiver = Receiver::start(dir.path(), "retry", 0, 2, 0, &[&secret]);
    set_webhook_url(&svc, &merchant, &receiver.url()).await;

    let event = activated_event(&svc, &key, "Lovelace").await;
    until(20, "the event delivered", || async { receiver.delivered().contains_key(&event).then_some(()) })
        .await;
    let requests: Vec<Value> =
        receiver.received().into_iter().filter(|r| r["id"] == event.as_str()).collect();
    assert_eq!(requests.len(), 3, "two 500s, then delivered: {requests:?}");
    for r in &requests {
        assert_eq!(r["verified"], json!([true]), "standardwebhooks verifies every attempt");
        assert_eq!(r["signatures"], 1);
        assert_eq!(r["body_id"], event.as_str(), "webhook-id is the event id");
        assert_eq!(r["type"], "cardholder.activated");
        assert_eq!(r["content_type"], "application/json");
    }
    assert_eq!(requests.iter().map(|r| r["status"].as_u64().unwrap()).collect::<Vec<_>>(), [500, 500, 200]);

    let attempts = until(10, "three attempts recorded", || async {
        let a = deliveries(&svc, &key, &event).await;
        (a.len() == 3).then_some(a)
    })
    .await;
    assert_eq!(attempts[0]["attempt"], 3, "newest first");
    assert_eq!(attempts[0]["status_code"], 200);
    assert_eq!(attempts[0]["error"], Value::Null);
    assert_eq!(attempts[1]["status_code"], 500);
    assert_eq!(attempts[2]["attempt"], 1);
    assert!(attempts[2]["error"].as_str().unwrap().contains("500"));
    assert!(attempts.iter().all(|a| a["at"].as_str().unwrap().ends_with('Z')));

    // Deliberate redelivery: a new attempt, same webhook-id.
    let r =
        svc.signed(&key, Method::POST, &format!("/v1/events/{event}/redeliver"), b"").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    until(10, "the redelivery", || async { (receiver.delivered().get(&event) == Some(&2)).then_some(()) })
        .await;
    until(10, "four attempts recorded", || async {
        (deliveries(&svc, &key, &event).await.len() == 4).then_some(())
    })
    .await;

    // Another merchant's event is not found, for both routes.
    let (_, other_key, _) = svc.merchant("Other Shop").await;
    // That merchant has no webhook_url: its event gets one "not delivered" mark and leaves the queue.
    let unsent = activated_event(&svc, &other_key, "Unsent").await;
    let marked = until(10, "the event marked as not delivered", || async {
        let a = deliveries(&svc, &other_key, &unsent).await;
        (!a.is_empty()).then_some(a)
    })
    .await;
    assert_eq!(marked.len(), 1);
    assert_eq!(marked[0]["status_code"], Value::Null);
    assert!(marked[0]["error"].as_str().unwrap().contains("no webhook_url"));
    until(10, "the queue drained", || async { (queue_depth(&svc).await == 0.0).then_some(()) }).await;
    let (status, _) = get(&svc, &other_key, &format!("/v1/events/{event}/deliveries")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let r = svc
        .signed(&other_key, Method::POST, &format!("/v1/events/{event}/redeliver"), b"")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_down_across_a_restart_gets_every_event_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("svc");
    let env =
        [("PELAGO_WEBHOOK_RETRY_SCHEDULE", "1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1")];
    let svc = Service::start(&data, &env);
    let (merchant, key, secret) = svc.merchant("Restart Shop").await;
    let port = free_port(); // nobody listens there yet
    set_webhook_url(&svc, &merchant, &format!("http://127.0.0.1:{port}/hook")).await;
    let mut events = Vec::new();
    for name in ["Down", "Lower", "Lowest"] {
        events.push(activated_event(&svc, &key, name).await);
    }
    for event in &events {
        let attempts = until(10, "a failed attempt", || async {
            let a = deliveries(&svc, &key, event).await;
            (!a.is_empty()).then_some(a)
        })
        .await;
        assert_eq!(attempts.last().unwrap()["error"], "could not connect");
        assert_eq!(attempts.last().unwrap()["status_code"], Value::Null);
    }
    assert!(svc.terminate().success());

    let receiver = Receiver::start(dir.path(), "restart", port, 0, 0, &[&secret]);
    let svc = Service::start(&data, &env);
    until(20, "every event after the restart", || async {
        let delivered = receiver.delivered();
        events.iter().all(|e| delivered.contains_key(e)).then_some(())
    })
    .await;
    events.push(activated_event(&svc, &key, "Later").await);
    until(20, "the queue drained", || async {
        let delivered = receiver.delivered();
        (events.iter().all(|e| delivered.contains_key(e)) && queue_depth(&svc).await == 0.0).then_some(())
    })
    .await;

    // A graceful restart with nothing pending sends nothing again.
    assert!(svc.terminate().success());
    let svc = Service::start(&data, &env);
    events.push(activated_event(&svc, &key, "Latest").await);
    until(20, "the last event", || async {
        (receiver.delivered().contains_key(events.last().unwrap()) && queue_depth(&svc).await == 0.0)
            .then_some(())
    })
    .await;
    let received = receiver.received();
    assert!(received.iter().all(|r| r["status"] == 200 && r["verified"] == json!([true])));
    let delivered = receiver.delivered();
    for e in &events {
        assert_eq!(delivered.get(e), Some(&1), "{e} delivered exactly once: {received:?}");
    }
    assert_eq!(received.len(), events.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_endpoint_does_not_delay_another_merchant() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("svc");
    let svc = Service::start(&data, &[("PELAGO_WEBHOOK_RETRY_SCHEDULE", "1,1,1")]);
    let (slow_merchant, slow_key, slow_secret) = svc.merchant("Slow Shop").await;
    let (fast_merchant, fast_key, fast_secret) = svc.merchant("Fast Shop").await;
    let slow = Receiver::start(dir.path(), "slow", 0, 0, 30, &[&slow_secret]);
    let fast = Receiver::start(dir.path(), "fast", 0, 0, 0, &[&fast_secret]);
    set_webhook_url(&svc, &slow_merchant, &slow.url()).await;
    set_webhook_url(&svc, &fast_merchant, &fast.url()).await;

    // More events than the slow merchant has delivery slots.
    let mut slow_events = Vec::new();
    for i in 0..6 {
        slow_events.push(activated_event(&svc, &slow_key, &format!("Slow{i}")).await);
    }
    let started = Instant::now();
    let fast_event = activated_event(&svc, &fast_key, "Fast").await;
    until(5, "the fast merchant's event", || async {
        fast.delivered().contains_key(&fast_event).then_some(())
    })
    .await;
    let took = started.elapsed();
    assert!(took < Duration::from_secs(3), "the other merchant's event took {took:?}");
    assert!(slow.received().is_empty(), "the slow endpoint has not answered yet");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_secret_rotation_deliveries_verify_with_either_secret() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("svc");
    let svc = Service::start(&data, &[("PELAGO_WEBHOOK_RETRY_SCHEDULE", "1,1,1")]);
    let (merchant, key, old_secret) = svc.merchant("Rotating Shop").await;
    let r = svc
        .admin(Method::POST, &format!("/admin/v1/merchants/{merchant}/webhook-secret"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let rotated: Value = r.json().await.unwrap();
    let new_secret = rotated["webhook_secret"].as_str().unwrap().to_owned();
    assert_ne!(new_secret, old_secret);

    let receiver = Receiver::start(dir.path(), "rotation", 0, 0, 0, &[&old_secret, &new_secret]);
    set_webhook_url(&svc, &merchant, &receiver.url()).await;
    let event = activated_event(&svc, &key, "Rotated").await;
    until(10, "the event delivered", || async { receiver.delivered().contains_key(&event).then_some(()) })
        .await;
    let request = receiver.received().into_iter().find(|r| r["id"] == event.as_str()).unwrap();
    assert_eq!(request["signatures"], 2, "old and new secret both sign for 24 h");
    assert_eq!(request["verified"], json!([true, true]), "verifies with the old and with the new secret");
}
