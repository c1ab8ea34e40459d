//! Unknown gateway outcomes of onboarding submissions (MARKETPLACE.md §9):
//! a timeout answers 202 with `pending_action` and resolves to the gateway's
//! decision; a 500 the same, by retrying the same request id; a refusal of a
//! creation is REJECTED, of a continue 502 with nothing changed; and a SIGKILL
//! while a submission is in flight ends, after restart, with exactly one
//! gateway onboarding and the right status.

mod common;

use common::{
    Json, Merchant, Service,
    marketplace::{new_recipient, upload},
    secs,
};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const ENV: &[(&str, &str)] = &[common::FAST_UPSTREAMS];

async fn fault(svc: &Service, behavior: &str, delay_ms: u64) {
    svc.gateway_fault(
        json!({"operation": "onboarding", "behavior": behavior, "count": 1, "delay_ms": delay_ms}),
    )
    .await;
}

/// Polls the recipient's onboardings until `done` holds for the newest (bounded).
async fn wait_for(m: &Merchant<'_>, rec: &str, done: impl Fn(&Value) -> bool) -> Value {
    let list = m
        .poll(&format!("/v1/recipients/{rec}/onboardings"), secs(40), |l| l["data"].get(0).is_some_and(&done))
        .await;
    list["data"][0].clone()
}

async fn one_step(m: &Merchant<'_>, rec: &str) -> (StatusCode, Value) {
    let body = json!({"type": "ONE_STEP_ONBOARDING"});
    m.call(Method::POST, &format!("/v1/recipients/{rec}/onboardings"), Some(&body)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_outcomes_answer_202_and_resolve_to_the_gateways_decision() {
    let svc = Service::temp(ENV);
    let m = svc.merchant("Unknowns").await;

    // Timeout: applied at the gateway, answered too late → 202, then its decision.
    let rec = new_recipient(&svc, &m.key, "Seller Approved", "ACC123456").await;
    fault(&svc, "timeout", 0).await;
    let (status, o) = one_step(&m, &rec).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{o}");
    assert_eq!(
        (o["status"].as_str(), o["pending_action"]["type"].as_str()),
        (Some("CREATED"), Some("submit"))
    );
    let done = wait_for(&m, &rec, |o| o["pending_action"].is_null()).await;
    assert_eq!(
        (done["status"].as_str(), done["compliance"]["status"].as_str()),
        (Some("SUCCEEDED"), Some("approved"))
    );

    // 500, nothing applied: 202, then the retried request id is decided (here: declined).
    let rec = new_recipient(&svc, &m.key, "Seller Decline", "ACC123456").await;
    fault(&svc, "error", 0).await;
    let (status, o) = one_step(&m, &rec).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{o}");
    let done = wait_for(&m, &rec, |o| o["pending_action"].is_null()).await;
    assert_eq!(done["status"], "DECLINED", "{done}");

    // A definite refusal of a creation: REJECTED (201).
    let rec = new_recipient(&svc, &m.key, "Seller Approved", "ACC123456").await;
    fault(&svc, "decline", 0).await;
    let (status, o) = one_step(&m, &rec).await;
    assert_eq!((status, o.str("status")), (StatusCode::CREATED, "REJECTED"), "{o}");

    // Of a continue: 502, nothing changed.
    let rec = new_recipient(&svc, &m.key, "Seller Approved", "ACC123456").await;
    let path = format!("/v1/recipients/{rec}/onboardings");
    let (_, two) = m.post(&path, json!({"type": "TWO_STEP_ONBOARDING"})).await;
    let (status, file) = upload(&svc, &m.key, "application/pdf", b"%PDF-1.7 x", "").await;
    assert_eq!(status, StatusCode::CREATED, "{file}");
    fault(&svc, "decline", 0).await;
    let cont = format!("{path}/{}/continue", two.str("id"));
    let docs = json!({"documents": [{"file_id": file["id"], "type": "other"}]});
    let (status, e) = m.call(Method::POST, &cont, Some(&docs)).await;
    assert_eq!((status, e.code()), (StatusCode::BAD_GATEWAY, "upstream_error"), "{e}");
    let same = m.get(&format!("{path}/{}", two.str("id"))).await;
    assert_eq!(
        (same["status"].as_str(), &same["version"], &same["pending_action"]),
        (Some("CREATED"), &two["version"], &Value::Null)
    );
    let (status, o) = m.call(Method::POST, &cont, Some(&docs)).await;
    assert_eq!((status, o.str("status")), (StatusCode::OK, "SUCCEEDED"), "a retry goes through: {o}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sigkill_during_a_submission_ends_with_one_gateway_onboarding() {
    let dir = tempfile::tempdir().unwrap();
    let svc = Service::start(dir.path(), ENV);
    let m = svc.merchant("Crashy").await;
    let (id, key) = (m.id.clone(), m.key.clone());
    let rec = new_recipient(&svc, &m.key, "Seller CompliancePending", "ACC123456").await;
    fault(&svc, "delay", 5_000).await;
    let body = serde_json::to_vec(&json!({"type": "ONE_STEP_ONBOARDING"})).unwrap();
    let in_flight = svc
        .signed(&m.key, Method::POST, &format!("/v1/recipients/{rec}/onboardings"), &body)
        .header("content-type", "application/json")
        .send();
    let in_flight = tokio::spawn(in_flight);
    // The submission is begun (request id durable) and its call is in flight.
    wait_for(&m, &rec, |o| o["pending_action"]["type"] == "submit").await;
    drop(m);
    svc.kill();
    assert!(in_flight.await.unwrap().is_err(), "the client lost its answer");

    let svc = Service::start(dir.path(), ENV);
    let m = Merchant::of(&svc, &id, key);
    let done = wait_for(&m, &rec, |o| o["pending_action"].is_null()).await;
    assert_eq!(
        (done["status"].as_str(), done["compliance"]["status"].as_str()),
        (Some("SUCCEEDED"), Some("pending"))
    );
    let submitted = done["history"].as_array().unwrap().iter().filter(|h| h["to"] == "PENDING").count();
    assert_eq!(submitted, 1, "submitted once: {done}");
    assert_eq!(svc.terminate().code(), Some(0));

    let sandbox = pelago_storage::Store::open(&dir.path().join("sandbox"), &Default::default()).unwrap();
    let at_gateway = sandbox.iter_raw(pelago_storage::Tree::Onboardings, b"gwo/").count();
    assert_eq!(at_gateway, 1, "exactly one gateway onboarding");
}
