//! Onboardings and compliance over real HTTP against the sandbox gateway
//! (MARKETPLACE.md §4, §11): every row of both tables is reached through the
//! magic names and the decide / compliance helpers, every other action on
//! each status answers 409 `invalid_state` (table-driven), transfers move the
//! owner, and each change emits `recipient.onboarding.updated`.

mod common;

use common::{
    Json, Merchant, Service, eventually,
    marketplace::{new_recipient, upload},
    secs,
};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use warp::Filter;

struct Market<'a>(Merchant<'a>);

impl<'a> std::ops::Deref for Market<'a> {
    type Target = Merchant<'a>;

    fn deref(&self) -> &Merchant<'a> {
        &self.0
    }
}

impl Market<'_> {
    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        self.0.call(method, path, body.as_ref()).await
    }

    /// A recipient whose name ends with `last_word` (the sandbox's magic).
    async fn recipient(&self, last_word: &str) -> String {
        new_recipient(self.svc, &self.key, &format!("Seller {last_word}"), "ACC123456").await
    }

    async fn onboard(&self, recipient: &str, kind: &str) -> (StatusCode, Value) {
        self.call(
            Method::POST,
            &format!("/v1/recipients/{recipient}/onboardings"),
            Some(json!({"type": kind})),
        )
        .await
    }

    /// `POST .../{oid}/{action}` (or a test helper), the status and body.
    async fn act(&self, o: &Value, action: &str, body: Value) -> (StatusCode, Value) {
        let (rec, oid) = (o.str("recipient_id"), o.str("id"));
        let path = match action {
            "decide" | "compliance" => {
                format!("/v1/test_helpers/recipients/{rec}/onboardings/{oid}/{action}")
            }
            _ => format!("/v1/recipients/{rec}/onboardings/{oid}/{action}"),
        };
        self.call(Method::POST, &path, Some(body)).await
    }

    async fn ok(&self, o: &Value, action: &str, body: Value) -> Value {
        let (status, after) = self.act(o, action, body).await;
        assert_eq!(status, StatusCode::OK, "{action}: {after}");
        after
    }

    /// The onboarding `o` as it is now, under its recipient (whatever the status).
    async fn now(&self, o: &Value) -> (StatusCode, Value) {
        self.call(
            Method::GET,
            &format!("/v1/recipients/{}/onboardings/{}", o.str("recipient_id"), o.str("id")),
            None,
        )
        .await
    }

    /// A new ONE_STEP onboarding of a new recipient named `... {last_word}`.
    async fn one_step(&self, last_word: &str) -> Value {
        let rec = self.recipient(last_word).await;
        let (status, o) = self.onboard(&rec, "ONE_STEP_ONBOARDING").await;
        assert_eq!(status, StatusCode::CREATED, "{o}");
        o
    }
}

fn state(o: &Value) -> (&str, &str) {
    (o.str("status"), o.str("compliance.status"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_row_of_both_tables_is_reached_and_every_other_action_is_refused() {
    let svc = Service::temp(&[]);
    let m = svc.merchant("Onboarding Market").await;
    // A plain receiver that keeps every webhook body it gets.
    let received = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let sink = std::sync::Arc::clone(&received);
    let hook = warp::post().and(warp::body::bytes()).map(move |body: bytes::Bytes| {
        sink.lock().unwrap().push(String::from_utf8_lossy(&body).into_owned());
        warp::reply()
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook_url = format!("http://{}/hooks", listener.local_addr().unwrap());
    tokio::spawn(warp::serve(hook).incoming(listener).run());
    m.set_webhook_url(&hook_url).await;
    let other = svc.merchant("Other Market").await;
    let m = Market(m);
    let (status, file) = upload(&svc, &m.key, "application/pdf", b"%PDF-1.7 proof", "").await;
    assert_eq!(status, StatusCode::CREATED, "{file}");
    let doc = json!([{"file_id": file["id"], "type": "identity_document"}]);

    // — create PREVIOUSLY_ONBOARDED → SUCCEEDED, compliance approved, no gateway call.
    let prev = m.recipient("Previous").await;
    let path = format!("/v1/recipients/{prev}/onboardings");
    let (status, e) = m.call(Method::POST, &path, Some(json!({"type": "PREVIOUSLY_ONBOARDED"}))).await;
    assert_eq!((status, e.param()), (StatusCode::BAD_REQUEST, Some("provider_recipient_id")));
    let body = json!({"type": "PREVIOUSLY_ONBOARDED", "provider_recipient_id": "gwr_previous_1"});
    let (status, previous) = m.call(Method::POST, &path, Some(body.clone())).await;
    assert_eq!(status, StatusCode::CREATED, "{previous}");
    assert_eq!(state(&previous), ("SUCCEEDED", "approved"));
    let (status, e) = m.call(Method::POST, &path, Some(json!({"type": "TWO_STEP_ONBOARDING"}))).await;
    assert_eq!((status, e.code()), (StatusCode::CONFLICT, "invalid_state"), "an open one exists");
    let twin = m.recipient("Twin").await;
    let (status, e) = m.call(Method::POST, &format!("/v1/recipients/{twin}/onboardings"), Some(body)).await;
    assert_eq!((status, e.param()), (StatusCode::CONFLICT, Some("provider_recipient_id")), "{e}");
    let (status, e) = m
        .call(
            Method::POST,
            &format!("/v1/recipients/{twin}/onboardings"),
            Some(json!({"type": "ONE_STEP_ONBOARDING", "provider_recipient_id": "gwr_x1"})),
        )
        .await;
    assert_eq!((status, e.param()), (StatusCode::BAD_REQUEST, Some("provider_recipient_id")));
    let (status, rec) = m.call(Method::GET, &format!("/v1/recipients/{prev}"), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(rec["onboarding"]["status"], "SUCCEEDED");
    assert_eq!(rec["capabilities"]["withdraw"], true, "SUCCEEDED and compliance approved");
    let (status, e) =
        m.call(Method::PATCH, &format!("/v1/recipients/{prev}"), Some(json!({"name": "Renamed"}))).await;
    assert_eq!(status, StatusCode::CONFLICT, "no PATCH while SUCCEEDED: {e}");

    // — ONE_STEP: submitted in the request; the name decides.
    let approved = m.one_step("Approved").await;
    assert_eq!(state(&approved), ("SUCCEEDED", "approved"));
    assert!(approved.str("provider_recipient_id").starts_with("gwr_"));
    let history: Vec<_> = approved["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| (h.str("type"), h["to"].as_str().unwrap_or("")))
        .collect();
    assert_eq!(
        history,
        [
            ("status_changed", "CREATED"),
            ("status_changed", "PENDING"),
            ("status_changed", "SUCCEEDED"),
            ("compliance_changed", "pending"),
            ("compliance_changed", "approved")
        ]
    );
    for (word, status) in
        [("Decline", "DECLINED"), ("Reject", "REJECTED"), ("Block", "BLOCKED"), ("Error", "ERROR")]
    {
        let o = m.one_step(word).await;
        assert_eq!(o["status"], status, "{o}");
        assert!(o["failure_reason"].is_string());
    }
    // PENDING until the decide helper; each decision.
    for decision in ["SUCCEEDED", "DECLINED", "REJECTED", "BLOCKED", "ERROR"] {
        let o = m.one_step("Pending").await;
        assert_eq!(state(&o), ("PENDING", "not_started"));
        let after = m.ok(&o, "decide", json!({"status": decision, "reason": "by test"})).await;
        assert_eq!(after["status"], decision, "{after}");
    }
    // A duplicated callback (sent three times) has one effect.
    svc.gateway_fault(json!({"operation": "callbacks", "behavior": "duplicate", "count": 1})).await;
    let o = m.one_step("Pending").await;
    let decided = m.ok(&o, "decide", json!({"status": "SUCCEEDED"})).await;
    let entries =
        |o: &Value, to: &str| o["history"].as_array().unwrap().iter().filter(|h| h["to"] == to).count();
    assert_eq!(
        (entries(&decided, "SUCCEEDED"), entries(&decided, "approved")),
        (1, 1),
        "one effect: {decided}"
    );
    let (_, now) = m.now(&o).await;
    assert_eq!(now["version"], decided["version"], "the copies changed nothing after the helper answered");
    let events = m.get("/v1/events?type=recipient.onboarding.updated&limit=100").await;
    let about: Vec<_> =
        events["data"].as_array().unwrap().iter().filter(|e| e["data"]["object"]["id"] == o["id"]).collect();
    assert_eq!(about.len(), 3, "created, submitted, decided; nothing for the copies");
    // A terminal onboarding: the recipient may onboard anew.
    let declined = m.one_step("Decline").await;
    let (status, again) = m.onboard(declined.str("recipient_id"), "TWO_STEP_ONBOARDING").await;
    assert_eq!((status, again.str("status")), (StatusCode::CREATED, "CREATED"));

    // — REJECTED/ERROR continue (after fixing the data) → PENDING; and cancel.
    let rejected = m.one_step("Reject").await;
    let rec_path = format!("/v1/recipients/{}", rejected.str("recipient_id"));
    let (status, _) = m.call(Method::PATCH, &rec_path, Some(json!({"name": "Seller Pending"}))).await;
    assert_eq!(status, StatusCode::OK, "PATCH is allowed while REJECTED");
    let resubmitted = m.ok(&rejected, "continue", json!({})).await;
    assert_eq!(state(&resubmitted), ("PENDING", "not_started"));
    let errored = m.one_step("Error").await;
    let canceled = m.ok(&errored, "cancel", json!({})).await;
    assert_eq!(canceled["status"], "CANCELED");
    let rejected_again = m.one_step("Reject").await;
    assert_eq!(m.ok(&rejected_again, "cancel", json!({})).await["status"], "CANCELED");
    assert_eq!(m.ok(&resubmitted, "cancel", json!({})).await["status"], "CANCELED", "PENDING cancel");

    // — TWO_STEP: CREATED; continue needs ≥ 1 document; cancel without the gateway.
    let rec = m.recipient("Pending").await;
    let (_, two) = m.onboard(&rec, "TWO_STEP_ONBOARDING").await;
    assert_eq!(state(&two), ("CREATED", "not_started"));
    let (status, e) = m.act(&two, "continue", json!({})).await;
    assert_eq!((status, e.param()), (StatusCode::BAD_REQUEST, Some("documents")));
    let bad_doc = json!([{"file_id": "file_01JNOPE0000000000000000000", "type": "other"}]);
    let (status, e) = m.act(&two, "continue", json!({"documents": bad_doc})).await;
    assert_eq!((status, e.param()), (StatusCode::BAD_REQUEST, Some("documents[0].file_id")));
    let pending = m.ok(&two, "continue", json!({"documents": doc})).await;
    assert_eq!(state(&pending), ("PENDING", "not_started"));
    assert_eq!(pending.count("documents"), 1);
    let rec = m.recipient("Approved").await;
    let (_, two_cancel) = m.onboard(&rec, "TWO_STEP_ONBOARDING").await;
    assert_eq!(m.ok(&two_cancel, "cancel", json!({})).await["status"], "CANCELED");

    // — Compliance: pending → approved; pending → failed → supplement → pending.
    let waiting = m.one_step("CompliancePending").await;
    assert_eq!(state(&waiting), ("SUCCEEDED", "pending"));
    assert_eq!(
        state(&m.ok(&waiting, "compliance", json!({"result": "approved"})).await),
        ("SUCCEEDED", "approved")
    );
    let failing = m.one_step("CompliancePending").await;
    let failed = m.ok(&failing, "compliance", json!({"result": "failed", "reason": "blurry"})).await;
    assert_eq!(
        (state(&failed), failed["compliance"]["reason"].as_str()),
        (("SUCCEEDED", "failed"), Some("blurry"))
    );
    let again = m.ok(&failed, "supplements", json!({"documents": doc, "note": "sharper"})).await;
    assert_eq!(
        (state(&again), again["compliance"]["supplements_used"].as_u64()),
        (("SUCCEEDED", "pending"), Some(1))
    );
    // ComplianceFail: every review fails; the 6th failure (after the 5th supplement) freezes and blocks.
    let doomed = m.one_step("ComplianceFail").await;
    assert_eq!(state(&doomed), ("SUCCEEDED", "failed"));
    let mut last = doomed.clone();
    for used in 1..=5u64 {
        last = m.ok(&last, "supplements", json!({"documents": doc})).await;
        assert_eq!(last["compliance"]["supplements_used"], used);
        let expected = if used < 5 { ("SUCCEEDED", "failed") } else { ("BLOCKED", "frozen") };
        assert_eq!(state(&last), expected, "{last}");
    }
    let (status, _) = m.act(&last, "supplements", json!({"documents": doc})).await;
    assert_eq!(status, StatusCode::CONFLICT, "no 6th supplement");

    // — Transfer and reverse-transfer (SUCCEEDED only; the owner changes).
    let owner = approved.str("recipient_id").to_owned();
    let target = m.recipient("Target").await;
    let (status, e) = m.act(&approved, "transfer", json!({"recipient_id": owner})).await;
    assert_eq!((status, e.param()), (StatusCode::BAD_REQUEST, Some("recipient_id")));
    let busy = previous.str("recipient_id");
    let (status, e) = m.act(&approved, "transfer", json!({"recipient_id": busy})).await;
    assert_eq!((status, e.param()), (StatusCode::CONFLICT, Some("recipient_id")), "{e}");
    let moved = m.ok(&approved, "transfer", json!({"recipient_id": target})).await;
    assert_eq!(moved["recipient_id"], target.as_str());
    let last_entry = moved["history"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(
        (last_entry["type"].as_str(), last_entry["from_recipient_id"].as_str()),
        (Some("transferred"), Some(owner.as_str()))
    );
    assert_eq!(m.now(&approved).await.0, StatusCode::NOT_FOUND, "only under the current owner");
    let back = m.ok(&moved, "reverse-transfer", json!({})).await;
    assert_eq!(
        (back["recipient_id"].as_str(), back["history"].as_array().unwrap().last().unwrap()["type"].as_str()),
        (Some(owner.as_str()), Some("transfer_reversed"))
    );
    let (status, _) = m.act(&back, "reverse-transfer", json!({})).await;
    assert_eq!(status, StatusCode::CONFLICT, "the latest transfer entry is a reversal");

    // — Table-driven: on each status, every action that is not a row → 409 invalid_state.
    let rec = m.recipient("Approved").await;
    let (_, created) = m.onboard(&rec, "TWO_STEP_ONBOARDING").await;
    let pending_one = m.one_step("Pending").await;
    let declined = m.one_step("Decline").await;
    let blocked = m.one_step("Block").await;
    let errored = m.one_step("Error").await;
    let rejected = m.one_step("Reject").await;
    let succeeded = m.one_step("Approved").await;
    let canceled = m.ok(&m.one_step("Error").await, "cancel", json!({})).await;
    let free = m.recipient("Free").await;
    let actions: [(&str, Value); 7] = [
        ("continue", json!({"documents": doc})),
        ("cancel", json!({})),
        ("supplements", json!({"documents": doc})),
        ("transfer", json!({"recipient_id": free})),
        ("reverse-transfer", json!({})),
        ("decide", json!({"status": "SUCCEEDED"})),
        ("compliance", json!({"result": "approved"})),
    ];
    // The rows of §4 for these samples (compliance approved on SUCCEEDED).
    let allowed = |status: &str, action: &str| {
        matches!(
            (status, action),
            ("CREATED", "continue" | "cancel")
                | ("PENDING", "cancel" | "decide")
                | ("REJECTED" | "ERROR", "continue" | "cancel")
                | ("SUCCEEDED", "transfer")
        )
    };
    for sample in [&created, &pending_one, &succeeded, &declined, &rejected, &blocked, &errored, &canceled] {
        let status_name = sample.str("status");
        for (action, body) in &actions {
            if allowed(status_name, action) {
                continue;
            }
            let (status, e) = m.act(sample, action, body.clone()).await;
            assert_eq!(status, StatusCode::CONFLICT, "{action} on {status_name}: {e}");
            assert_eq!(e["error"]["code"], "invalid_state");
            let (_, now) = m.now(sample).await;
            assert_eq!(
                now["version"], sample["version"],
                "nothing changed by a refused {action} on {status_name}"
            );
        }
    }

    // — Privacy and events.
    let other = Market(other);
    let (status, _) = other.call(Method::GET, &format!("/v1/recipients/{owner}/onboardings"), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let listed = m.get(&format!("/v1/recipients/{owner}/onboardings")).await;
    assert_eq!(listed["data"][0]["id"], approved["id"]);
    let events = m.get("/v1/events?type=recipient.onboarding.updated&limit=100").await;
    let events = events["data"].as_array().unwrap();
    assert!(events.len() >= 50, "one event per change: {}", events.len());
    let about_back: Vec<_> = events.iter().filter(|e| e["data"]["object"]["id"] == approved["id"]).collect();
    assert_eq!(
        about_back[0]["data"]["object"]["version"], back["version"],
        "newest first, the latest version"
    );
    assert!(!serde_json::to_string(events).unwrap().contains("ACC123456"));

    // Decisions by the helpers reached Pelago as signed callbacks, acted on through a query;
    // a forged one is refused.
    let applied = svc
        .log()
        .lines()
        .filter(|l| l.contains("gateway onboarding callback") && l.contains("applied"))
        .count();
    assert!(applied >= 5, "the decide/compliance helpers' callbacks were applied: {applied}");
    let forged = json!({"event_id": "evt_x", "merchant_id": "gw_nobody", "onboarding_id": "gwo_x"});
    let r = svc
        .http
        .post(svc.url("/callbacks/gateway/marketplace"))
        .header("X-Gateway-Signature", "t=1,v1=00")
        .json(&forged)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    // Correctly signed by a real gateway account, naming an onboarding that was not created
    // under it: 401 too, counted as an unbound callback (SECURITY.md).
    svc.merchant_with(
        json!({"name": "Mallory", "funding_mode": "gateway", "allowed_card_names": ["PELAGO_VIRTUAL_USD"],
                             "gateway": {"merchant_id": "gw_mallory", "api_key": "gw-mallory-key-1"}}),
    )
    .await;
    let body = json!({"event_id": "evt_m", "merchant_id": "gw_mallory", "onboarding_id": "gwo_not_hers"});
    let r = svc
        .callback("/callbacks/gateway/marketplace", "X-Gateway-Signature", "gw-mallory-key-1", &body)
        .await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(svc.metric_listed("pelago_callbacks_unbound_total{source=\"gateway\"}").await, Some(1.0));

    // Webhooks carry the onboarding events, and never the numbers.
    eventually("every onboarding webhook", secs(60), async || {
        let bodies = received.lock().unwrap().clone();
        let onboarding_hooks = bodies.iter().filter(|b| b.contains("recipient.onboarding.updated")).count();
        assert!(bodies.iter().all(|b| !b.contains("ACC123456") && !b.contains("P1234567")));
        if onboarding_hooks >= events.len() { Ok(()) } else { Err(onboarding_hooks) }
    })
    .await;

    // The numbers sent to the gateway in every submission are in clear nowhere:
    // not in Pelago's store, the simulator's, or the log.
    let sandbox = svc.data_dir.join("sandbox");
    let rest = svc.at_rest();
    assert!(rest.files.iter().any(|(p, _)| p.starts_with(&sandbox)), "the simulator's store is scanned");
    rest.assert_nowhere(&["ACC123456", "P1234567"]);
}
