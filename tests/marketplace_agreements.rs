//! Agreements over real HTTP (MARKETPLACE.md §5, §9): validations with their
//! `param`, only on a SUCCEEDED current onboarding, signed at once by the
//! sandbox gateway, the newest signed one superseding, `receive_splits`
//! following a signed split agreement, unknown outcomes 202 → signed by the
//! resolver, refusals `failed`, and `recipient.agreement.updated` events.

mod common;

use common::{Json, Service, marketplace::fault, secs};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agreements_are_signed_superseded_and_resolved() {
    let svc = Service::temp(&[common::FAST_UPSTREAMS]);
    let m = svc.merchant("Agreements").await;
    let other = svc.merchant("Other").await;
    let rec = common::marketplace::new_recipient(&svc, &m.key, "Seller Approved", "ACC123456").await;
    let path = format!("/v1/recipients/{rec}/agreements");
    let post = |b: Value| {
        let (m, path) = (&m, path.clone());
        async move { m.post(&path, b).await }
    };

    let (status, e) = post(json!({"type": "split"})).await;
    assert_eq!((status, e.code()), (StatusCode::CONFLICT, "invalid_state"), "no onboarding yet");
    let onboard = json!({"type": "ONE_STEP_ONBOARDING"});
    let (status, _) =
        m.call(Method::POST, &format!("/v1/recipients/{rec}/onboardings"), Some(&onboard)).await;
    assert_eq!(status, StatusCode::CREATED);

    for (b, param) in [
        (json!({"type": "loan"}), "type"),
        (json!({"type": "split", "max_commission_bps": 10}), "max_commission_bps"),
        (json!({"type": "commission"}), "max_commission_bps"),
        (json!({"type": "commission", "max_commission_bps": 10_001}), "max_commission_bps"),
        (json!({"type": "commission", "max_commission_bps": -1}), "max_commission_bps"),
        (json!({"type": "commission", "max_commission_bps": "5"}), "max_commission_bps"),
    ] {
        let (status, e) = post(b.clone()).await;
        assert_eq!((status, e.param()), (StatusCode::BAD_REQUEST, Some(param)), "{b}: {e}");
    }
    let listed = m.get(&path).await;
    assert_eq!(listed["data"], json!([]), "nothing created by a refused request");
    let r = m.get(&format!("/v1/recipients/{rec}")).await;
    assert_eq!(r["capabilities"], json!({"receive_splits": false, "withdraw": true}));

    let (status, first) = post(json!({"type": "split"})).await;
    assert_eq!((status, first.str("status")), (StatusCode::CREATED, "signed"), "{first}");
    assert!(first["signed_at"].is_string() && first.str("id").starts_with("agr_"));
    let r = m.get(&format!("/v1/recipients/{rec}")).await;
    assert_eq!(r["capabilities"]["receive_splits"], true);
    let (_, second) = post(json!({"type": "split"})).await;
    let (status, commission) = post(json!({"type": "commission", "max_commission_bps": 500})).await;
    assert_eq!((status, commission["max_commission_bps"].as_u64()), (StatusCode::CREATED, Some(500)));
    let splits = m.get(&format!("{path}?type=split")).await;
    let statuses: Vec<_> =
        splits["data"].as_array().unwrap().iter().map(|a| (a["id"].clone(), a["status"].clone())).collect();
    assert_eq!(
        statuses,
        [(second["id"].clone(), json!("signed")), (first["id"].clone(), json!("superseded"))]
    );
    let page = m.get(&format!("{path}?type=split&limit=1")).await;
    assert_eq!(
        (page["data"][0]["id"].clone(), page["has_more"].clone()),
        (second["id"].clone(), json!(true))
    );
    let next = format!("{path}?type=split&limit=1&starting_after={}", second.str("id"));
    let page = m.get(&next).await;
    assert_eq!(
        (page["data"][0]["id"].clone(), page["has_more"].clone()),
        (first["id"].clone(), json!(false))
    );
    let (status, _) = m.call(Method::GET, &format!("{path}?type=loan"), None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = other.call(Method::GET, &path, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "another merchant's recipient");

    // Unknown outcome: 202 pending, then signed by the resolver; a refusal: failed.
    fault(&svc, "agreement", "timeout").await;
    let (status, pending) = post(json!({"type": "commission", "max_commission_bps": 300})).await;
    assert_eq!((status, pending.str("status")), (StatusCode::ACCEPTED, "pending"), "{pending}");
    let signed = |list: &Value| {
        list["data"].as_array().unwrap().iter().find(|a| a["id"] == pending["id"]).unwrap()["status"]
            == "signed"
    };
    let list = m.poll(&format!("{path}?type=commission"), secs(30), signed).await;
    assert_eq!(list["data"][1]["status"], "superseded", "the 500 bps one is superseded");
    fault(&svc, "agreement", "decline").await;
    let (status, failed) = post(json!({"type": "split"})).await;
    assert_eq!((status, failed.str("status")), (StatusCode::CREATED, "failed"), "{failed}");
    let r = m.get(&format!("/v1/recipients/{rec}")).await;
    assert_eq!(r["capabilities"]["receive_splits"], true, "the signed split agreement still holds");

    let events = m.get("/v1/events?type=recipient.agreement.updated&limit=100").await;
    // Each change one event: split 1 pending+signed (2), split 2 pending+signed+split 1 superseded (3),
    // commission 500 (2), commission 300 pending+signed+500 superseded (3), the failed split (2).
    assert_eq!(events.count("data"), 12, "{events}");
}
