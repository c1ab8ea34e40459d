//! Webhook delivery over real HTTP (issue 7): every delivery is verified by a
//! receiver built on the Python `standardwebhooks` library; retries, restarts,
//! isolation between merchants, and secret rotation.

mod common;

use std::time::{Duration, Instant};

use common::{
    Json, Merchant, Service, eventually,
    receiver::{Receiver, free_port},
    secs,
};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// Three retries, a second apart.
const RETRY_AT_ONCE: &[(&str, &str)] = &[("PELAGO_WEBHOOK_RETRY_SCHEDULE", "1,1,1")];

/// Creates an active cardholder; returns the id of its `cardholder.activated` event.
async fn activated_event(m: &Merchant<'_>, last_name: &str) -> String {
    let (status, holder) = m.cardholder(last_name).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(holder["status"], "active");
    let events = m.get("/v1/events?type=cardholder.activated&limit=100").await;
    events["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["data"]["object"]["id"] == holder["id"])
        .map(|e| e.str("id").to_owned())
        .expect("the activation event is listed")
}

async fn deliveries(m: &Merchant<'_>, event: &str) -> Vec<Value> {
    let (status, v) = m.call(Method::GET, &format!("/v1/events/{event}/deliveries"), None).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["has_more"], false);
    v["data"].as_array().unwrap().clone()
}

async fn queue_depth(svc: &Service) -> f64 {
    svc.metric_listed("pelago_webhook_queue_depth").await.expect("the queue depth gauge")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_endpoint_gets_the_event_on_the_third_attempt_with_the_same_id() {
    let (dir, data) = common::temp_data();
    let svc = Service::start(&data, RETRY_AT_ONCE);
    let m = svc.merchant("Retry Shop").await;
    let secret = &m.webhook_secret;
    let receiver = Receiver::start(dir.path(), "retry", 0, 2, 0, &[secret]);
    m.set_webhook_url(&receiver.url()).await;

    let event = activated_event(&m, "Lovelace").await;
    receiver.wait_delivered(&[&event], secs(20)).await;
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

    let attempts = eventually("three attempts recorded", secs(10), async || {
        let a = deliveries(&m, &event).await;
        (a.len() == 3).then_some(a)
    })
    .await;
    assert_eq!(attempts[0]["attempt"], 3, "newest first");
    assert_eq!(attempts[0]["status_code"], 200);
    assert_eq!(attempts[0]["error"], Value::Null);
    assert_eq!(attempts[1]["status_code"], 500);
    assert_eq!(attempts[2]["attempt"], 1);
    assert!(attempts[2].str("error").contains("500"));
    assert!(attempts.iter().all(|a| a.str("at").ends_with('Z')));

    // Deliberate redelivery: a new attempt, same webhook-id.
    let r =
        svc.signed(&m.key, Method::POST, &format!("/v1/events/{event}/redeliver"), b"").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    eventually("the redelivery", secs(10), async || {
        (receiver.delivered().get(&event) == Some(&2)).then_some(())
    })
    .await;
    eventually("four attempts recorded", secs(10), async || {
        (deliveries(&m, &event).await.len() == 4).then_some(())
    })
    .await;

    // Another merchant's event is not found, for both routes.
    let other = svc.merchant("Other Shop").await;
    // That merchant has no webhook_url: its event gets one "not delivered" mark and leaves the queue.
    let unsent = activated_event(&other, "Unsent").await;
    let marked = eventually("the event marked as not delivered", secs(10), async || {
        let a = deliveries(&other, &unsent).await;
        (!a.is_empty()).then_some(a)
    })
    .await;
    assert_eq!(marked.len(), 1);
    assert_eq!(marked[0]["status_code"], Value::Null);
    assert!(marked[0].str("error").contains("no webhook_url"));
    eventually("the queue drained", secs(10), async || (queue_depth(&svc).await == 0.0).then_some(())).await;
    let (status, _) = other.call(Method::GET, &format!("/v1/events/{event}/deliveries"), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(other.act(&format!("/v1/events/{event}/redeliver")).await.0, StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_down_across_a_restart_gets_every_event_exactly_once() {
    let (dir, data) = common::temp_data();
    let env =
        [("PELAGO_WEBHOOK_RETRY_SCHEDULE", "1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1")];
    let svc = Service::start(&data, &env);
    let m = svc.merchant("Restart Shop").await;
    let (merchant, key, secret) = (m.id.clone(), m.key.clone(), m.webhook_secret.clone());
    let port = free_port(); // nobody listens there yet
    m.set_webhook_url(&format!("http://127.0.0.1:{port}/hook")).await;
    let mut events = Vec::new();
    for name in ["Down", "Lower", "Lowest"] {
        events.push(activated_event(&m, name).await);
    }
    for event in &events {
        let attempts = eventually("a failed attempt", secs(10), async || {
            let a = deliveries(&m, event).await;
            (!a.is_empty()).then_some(a)
        })
        .await;
        assert_eq!(attempts.last().unwrap()["error"], "could not connect");
        assert_eq!(attempts.last().unwrap()["status_code"], Value::Null);
    }
    drop(m);
    assert!(svc.terminate().success());

    let receiver = Receiver::start(dir.path(), "restart", port, 0, 0, &[&secret]);
    let svc = Service::start(&data, &env);
    let m = Merchant::of(&svc, &merchant, key.clone());
    receiver.wait_delivered(&events, secs(20)).await;
    events.push(activated_event(&m, "Later").await);
    eventually("the queue drained", secs(20), async || {
        let delivered = receiver.delivered();
        (events.iter().all(|e| delivered.contains_key(e)) && queue_depth(&svc).await == 0.0).then_some(())
    })
    .await;

    // A graceful restart with nothing pending sends nothing again.
    drop(m);
    assert!(svc.terminate().success());
    let svc = Service::start(&data, &env);
    let m = Merchant::of(&svc, &merchant, key);
    events.push(activated_event(&m, "Latest").await);
    eventually("the last event", secs(20), async || {
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
    let (dir, data) = common::temp_data();
    let svc = Service::start(&data, RETRY_AT_ONCE);
    let slow_shop = svc.merchant("Slow Shop").await;
    let fast_shop = svc.merchant("Fast Shop").await;
    let slow = Receiver::start(dir.path(), "slow", 0, 0, 30, &[&slow_shop.webhook_secret]);
    let fast = Receiver::start(dir.path(), "fast", 0, 0, 0, &[&fast_shop.webhook_secret]);
    slow_shop.set_webhook_url(&slow.url()).await;
    fast_shop.set_webhook_url(&fast.url()).await;

    // More events than the slow merchant has delivery slots.
    let mut slow_events = Vec::new();
    for i in 0..6 {
        slow_events.push(activated_event(&slow_shop, &format!("Slow{i}")).await);
    }
    let started = Instant::now();
    let fast_event = activated_event(&fast_shop, "Fast").await;
    fast.wait_delivered(&[&fast_event], secs(5)).await;
    let took = started.elapsed();
    assert!(took < Duration::from_secs(3), "the other merchant's event took {took:?}");
    assert!(slow.received().is_empty(), "the slow endpoint has not answered yet");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_secret_rotation_deliveries_verify_with_either_secret() {
    let (dir, data) = common::temp_data();
    let svc = Service::start(&data, RETRY_AT_ONCE);
    let m = svc.merchant("Rotating Shop").await;
    let old_secret = &m.webhook_secret;
    let (status, rotated) =
        svc.admin_json(Method::POST, &format!("/admin/v1/merchants/{}/webhook-secret", m.id), None).await;
    assert_eq!(status, StatusCode::CREATED);
    let new_secret = rotated.str("webhook_secret").to_owned();
    assert_ne!(&new_secret, old_secret);

    let receiver = Receiver::start(dir.path(), "rotation", 0, 0, 0, &[old_secret, &new_secret]);
    m.set_webhook_url(&receiver.url()).await;
    let event = activated_event(&m, "Rotated").await;
    receiver.wait_delivered(&[&event], secs(10)).await;
    let request = receiver.received().into_iter().find(|r| r["id"] == event.as_str()).unwrap();
    assert_eq!(request["signatures"], 2, "old and new secret both sign for 24 h");
    assert_eq!(request["verified"], json!([true, true]), "verifies with the old and with the new secret");
}
