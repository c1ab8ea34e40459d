//! Merchants and the secure front door over real HTTP (issue 3): onboarding,
//! request signing per SECURITY.md, replay protection, idempotency, secrets at
//! rest, limits.

mod common;

use common::{Json, Key, Merchant, Service};
use pelago_card::security::signing::{SignedRequest, sign};
use pelago_storage::Timestamp;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// A hand-built signed GET with every part explicit, for tampering.
struct Parts {
    key_id: String,
    secret: String,
    ts: i64,
    nonce: String,
    method: &'static str,
    path: String,
    query: String,
    idem: String,
    body: Vec<u8>,
}

impl Parts {
    fn new(key: &Key) -> Parts {
        Parts {
            key_id: key.key_id.clone(),
            secret: key.secret.clone(),
            ts: Timestamp::now_real().unix_seconds(),
            nonce: format!("n-{}", pelago_storage::ids::new_ulid()),
            method: "GET",
            path: "/v1/events".into(),
            query: "limit=5".into(),
            idem: String::new(),
            body: Vec::new(),
        }
    }

    fn signature(&self) -> String {
        sign(
            &self.secret,
            &self.key_id,
            &self.ts.to_string(),
            &self.nonce,
            &SignedRequest {
                method: self.method,
                path: &self.path,
                query: &self.query,
                idempotency_key: &self.idem,
                body: &self.body,
            },
        )
    }

    /// Sends `self` with `signature` (which may belong to other parts).
    async fn send(&self, svc: &Service, signature: &str) -> reqwest::Response {
        let url = if self.query.is_empty() {
            svc.url(&self.path)
        } else {
            svc.url(&format!("{}?{}", self.path, self.query))
        };
        let mut r = svc
            .http
            .request(Method::from_bytes(self.method.as_bytes()).unwrap(), url)
            .header("x-pelago-key-id", &self.key_id)
            .header("x-pelago-timestamp", self.ts.to_string())
            .header("x-pelago-nonce", &self.nonce)
            .header("x-pelago-signature", signature)
            .body(self.body.clone());
        if !self.idem.is_empty() {
            r = r.header("idempotency-key", &self.idem);
        }
        r.send().await.unwrap()
    }
}

async fn code(r: reqwest::Response) -> (StatusCode, String) {
    let status = r.status();
    let v: Value = r.json().await.unwrap_or(Value::Null);
    (status, v["error"]["code"].as_str().unwrap_or_default().to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn onboarding_and_administration() {
    let svc = Service::temp(&[]);
    let (status, created) = svc.admin_post("/admin/v1/merchants", json!({
            "name": "Acme Wallet", "funding_mode": "gateway",
            "webhook_url": "https://hooks.example.com/pelago",
            "allowed_card_names": ["PELAGO_VIRTUAL_USD"],
            "gateway": {"merchant_id": "gw_mch_1", "api_key": "gwkey-secret-value-123"},
            "fees": [{"currency": "USD", "application_fee": {"fixed": 500}, "topup_fee": {"fixed": 100, "rate_bps": 150}}],
        }))
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let id = created.str("merchant.id").to_owned();
    assert!(id.starts_with("mch_"));
    assert!(created.str("api_key.secret").starts_with("sk_"));
    assert!(created.str("webhook_secret").starts_with("whsec_"));
    assert_eq!(created["merchant"]["fees"][0]["topup_fee"], json!({"fixed": 100, "rate_bps": 150}));
    assert_eq!(created["merchant"]["fees"][0]["monthly_fee"], json!({"fixed": 0}));

    // Never again: GET shows no secret.
    let path = format!("/admin/v1/merchants/{id}");
    let got = svc.admin_get(&path).await;
    let text = got.to_string();
    assert!(!text.contains("sk_") && !text.contains("whsec_") && !text.contains("gwkey-secret"));
    assert_eq!(got["gateway"]["merchant_id"], "gw_mch_1");

    // gateway.merchant_id is unique; gateway mode needs a gateway; validation names the field.
    let copy = json!({"name": "Copy", "funding_mode": "gateway", "allowed_card_names": [],
                      "gateway": {"merchant_id": "gw_mch_1", "api_key": "k"}});
    let (status, _) = svc.admin_post("/admin/v1/merchants", copy).await;
    assert_eq!(status, StatusCode::CONFLICT);
    let no_gateway = json!({"name": "NoGw", "funding_mode": "gateway", "allowed_card_names": []});
    let (status, _) = svc.admin_post("/admin/v1/merchants", no_gateway).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    for (body, param) in [
        (
            json!({"name": "X", "funding_mode": "master_account", "allowed_card_names": ["lower"]}),
            "allowed_card_names.0",
        ),
        (json!({"name": "X", "funding_mode": "master_account"}), "allowed_card_names"),
    ] {
        let (status, bad) = svc.admin_post("/admin/v1/merchants", body).await;
        assert_eq!((status, bad.param()), (StatusCode::BAD_REQUEST, Some(param)), "{bad}");
    }

    // Patch, fees, whitelist (a 4th address is 400 with param).
    let both = json!({"allowed_card_names": ["PELAGO_VIRTUAL_USD", "PELAGO_VIRTUAL_EUR"]});
    let patched = svc.admin_ok(Method::PATCH, &path, both).await;
    assert_eq!(patched["allowed_card_names"], json!(["PELAGO_VIRTUAL_EUR", "PELAGO_VIRTUAL_USD"]));
    let monthly = json!({"currency": "USD", "monthly_fee": {"fixed": 200}});
    let fees = svc.admin_ok(Method::PUT, &format!("{path}/fees"), monthly).await;
    assert_eq!(fees.count("fees"), 1, "one schedule per currency, replaced");
    assert_eq!(fees["fees"][0]["application_fee"]["fixed"], 0);
    let addr = |a: &str| json!({"address": a, "network": "TRON", "label": "channel A"});
    let whitelist = format!("{path}/withdrawal-addresses");
    let three = json!({"addresses": [addr("TA1"), addr("TA2"), addr("TA3")]});
    svc.admin_ok(Method::PUT, &whitelist, three).await;
    let four = json!({"addresses": [addr("TA1"), addr("TA2"), addr("TA3"), addr("TA4")]});
    let (status, four) = svc.admin_put(&whitelist, four).await;
    assert_eq!(
        (status, four.code(), four.param()),
        (StatusCode::BAD_REQUEST, "invalid_request", Some("addresses"))
    );

    // Webhook secret rotation shows the new one once.
    let rotated = svc.admin_json(Method::POST, &format!("{path}/webhook-secret"), None).await.1;
    let new_whsec = rotated.str("webhook_secret").to_owned();
    assert!(new_whsec.starts_with("whsec_"));

    // List, newest first.
    let other = svc.merchant("Second").await.id;
    let list = svc.admin_get("/admin/v1/merchants?limit=1").await;
    assert_eq!(list["data"][0]["id"], other);
    assert_eq!(list["has_more"], true);

    // The debug view redacts secrets.
    let debug = svc.admin_get(&format!("/debug/v1/actors/merchants/{id}")).await;
    assert_eq!(debug["state"]["gateway"]["api_key"], "[redacted]");

    // Secrets at rest: nowhere in the data dir, nor the log.
    let secrets = [
        created.str("api_key.secret").to_owned(),
        created.str("webhook_secret").to_owned(),
        "gwkey-secret-value-123".to_owned(),
        new_whsec,
    ];
    let rest = svc.at_rest();
    assert!(rest.log_text().contains("merchant created"), "the log was captured");
    rest.assert_nowhere(&secrets);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_signing_per_security_md() {
    let (_dir, data) = common::temp_data();
    let svc = Service::start(&data, &[]);
    let signer = svc.merchant("Signer").await;
    let (merchant_id, key) = (&signer.id, signer.key.clone());
    let other_key = svc.merchant("Other").await.key;

    // A correctly signed request: 2xx.
    let good = Parts::new(&key);
    let r = good.send(&svc, &good.signature()).await;
    assert_eq!(r.status(), StatusCode::OK);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body, json!({"data": [], "has_more": false}));
    // The same nonce again: replay.
    assert_eq!(
        code(good.send(&svc, &good.signature()).await).await,
        (StatusCode::UNAUTHORIZED, "authentication_failed".into())
    );

    // Each tampering: 401 (each with a fresh nonce so only the tampered part differs).
    let fresh = || Parts::new(&key);
    type Tamper<'a> = Box<dyn Fn(&mut Parts) + 'a>;
    let cases: Vec<(&str, Tamper)> = vec![
        ("body tampered", Box::new(|p| p.body = b"{}".to_vec())),
        ("path changed", Box::new(|p| p.path = "/v1/events/evt_01JDEMO0000000000000000000".into())),
        ("query changed", Box::new(|p| p.query = "limit=6".into())),
        ("method changed", Box::new(|p| p.method = "DELETE")),
        ("idempotency key changed", Box::new(|p| p.idem = "other-key".into())),
        ("key id swapped", Box::new(|p| p.key_id = other_key.key_id.clone())),
        ("timestamp 301 s old", Box::new(|p| p.ts -= 301)),
        ("timestamp 301 s ahead", Box::new(|p| p.ts += 301)),
    ];
    for (name, tamper) in cases {
        let signed = fresh();
        let signature = signed.signature();
        let mut sent = Parts { nonce: signed.nonce.clone(), ..fresh() };
        sent.ts = signed.ts;
        tamper(&mut sent);
        // For the time cases the signature covers the bad timestamp: still refused by the window.
        let signature = if name.starts_with("timestamp") { sent.signature() } else { signature };
        let (status, c) = code(sent.send(&svc, &signature).await).await;
        assert_eq!((status, c.as_str()), (StatusCode::UNAUTHORIZED, "authentication_failed"), "{name}");
    }
    // A missing header.
    let p = fresh();
    let r = svc
        .http
        .get(svc.url("/v1/events"))
        .header("x-pelago-key-id", &p.key_id)
        .header("x-pelago-timestamp", p.ts.to_string())
        .header("x-pelago-signature", p.signature())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let msg: Value = r.json().await.unwrap();
    assert!(msg.str("error.message").contains("x-pelago-nonce"));

    // A revoked key: 401 at once; a second key keeps working until revoked.
    let second: Value =
        svc.admin_json(Method::POST, &format!("/admin/v1/merchants/{merchant_id}/api-keys"), None).await.1;
    let second = Key { key_id: second.str("key_id").to_owned(), secret: second.str("secret").to_owned() };
    let events =
        async |key: &Key| code(svc.signed(key, Method::GET, "/v1/events", b"").send().await.unwrap()).await;
    assert_eq!(events(&second).await.0, StatusCode::OK);
    assert_eq!(events(&key).await.0, StatusCode::OK);
    let (revoked_status, _) = svc
        .admin_json(
            Method::DELETE,
            &format!("/admin/v1/merchants/{merchant_id}/api-keys/{}", key.key_id),
            None,
        )
        .await;
    assert_eq!(revoked_status, StatusCode::NO_CONTENT);
    assert_eq!(events(&key).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(events(&second).await.0, StatusCode::OK);

    // Suspended merchant: 403.
    svc.admin_patch(&format!("/admin/v1/merchants/{merchant_id}"), json!({"status": "suspended"})).await;
    assert_eq!(events(&second).await, (StatusCode::FORBIDDEN, "forbidden".into()));
    svc.admin_patch(&format!("/admin/v1/merchants/{merchant_id}"), json!({"status": "active"})).await;

    // A nonce is remembered across a restart.
    let remembered = Parts::new(&second);
    assert_eq!(remembered.send(&svc, &remembered.signature()).await.status(), StatusCode::OK);
    assert!(svc.terminate().success());
    let svc = Service::start(&data, &[]);
    assert_eq!(remembered.send(&svc, &remembered.signature()).await.status(), StatusCode::UNAUTHORIZED);
    let again = Parts::new(&second);
    assert_eq!(again.send(&svc, &again.signature()).await.status(), StatusCode::OK);

    // ... and across a crash: a signed read, SIGKILL, the same request again.
    let read = Parts::new(&second);
    assert_eq!(read.send(&svc, &read.signature()).await.status(), StatusCode::OK);
    svc.kill();
    let svc = Service::start(&data, &[]);
    assert_eq!(read.send(&svc, &read.signature()).await.status(), StatusCode::UNAUTHORIZED);
    let fresh = Parts::new(&second);
    assert_eq!(fresh.send(&svc, &fresh.signature()).await.status(), StatusCode::OK);
    assert!(svc.terminate().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotency_keys_on_admin_creation() {
    let svc = Service::temp(&[]);
    let body = json!({"name": "Idem", "funding_mode": "master_account", "allowed_card_names": []});
    let send = |key: &str, body: &Value| {
        svc.admin(Method::POST, "/admin/v1/merchants").header("idempotency-key", key).json(body).send()
    };
    let first = send("create-1", &body).await.unwrap();
    assert_eq!(first.status(), StatusCode::CREATED);
    assert!(first.headers().get("idempotent-replayed").is_none());
    let first: Value = first.json().await.unwrap();
    let again = send("create-1", &body).await.unwrap();
    assert_eq!(again.status(), StatusCode::CREATED);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    let again: Value = again.json().await.unwrap();
    assert_eq!(again, first, "the stored answer, secrets included");
    let list = svc.admin_get("/admin/v1/merchants").await;
    assert_eq!(list.count("data"), 1, "one merchant");

    let other = json!({"name": "Idem 2", "funding_mode": "master_account", "allowed_card_names": []});
    let (status, c) = code(send("create-1", &other).await.unwrap()).await;
    assert_eq!((status, c.as_str()), (StatusCode::UNPROCESSABLE_ENTITY, "idempotency_key_mismatch"));

    // Two at once with one key: one creates, the other is 409 or the replay.
    let body2 = json!({"name": "Race", "funding_mode": "master_account", "allowed_card_names": []});
    let (a, b) = tokio::join!(send("race-1", &body2), send("race-1", &body2));
    let mut statuses = [a.unwrap().status().as_u16(), b.unwrap().status().as_u16()];
    statuses.sort();
    assert!(statuses == [201, 409] || statuses == [201, 201], "{statuses:?}");
    let list = svc.admin_get("/admin/v1/merchants").await;
    assert_eq!(list.count("data"), 2, "the race created one merchant");

    // A key over 255 characters is 400, naming the header.
    let long = "k".repeat(256);
    let r: Value = send(&long, &body).await.unwrap().json().await.unwrap();
    assert_eq!(r["error"]["param"], "Idempotency-Key");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_merchant_rate_limit() {
    let svc = Service::temp(&[("PELAGO_RATE_LIMIT", "1,3")]);
    let key = svc.merchant("Busy").await.key;
    let calm = svc.merchant("Calm").await.key;
    let mut limited = None;
    for _ in 0..6 {
        let r = svc.signed(&key, Method::GET, "/v1/events", b"").send().await.unwrap();
        if r.status() == StatusCode::TOO_MANY_REQUESTS {
            limited = Some(r);
            break;
        }
    }
    let r = limited.expect("the burst of 3 runs out");
    let retry_after: u64 = r.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!(retry_after >= 1);
    assert_eq!(code(r).await.1, "rate_limited");
    assert_eq!(
        svc.signed(&calm, Method::GET, "/v1/events", b"").send().await.unwrap().status(),
        StatusCode::OK
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_lists_every_route_with_its_credentials() {
    let svc = Service::temp(&[]);
    let doc = svc.documents(&[], &[]).await;
    assert_eq!(doc["openapi"], "3.1.0");
    for route in pelago_card::http::routes() {
        let op = &doc["paths"][route.pattern][route.method.as_str().to_ascii_lowercase()];
        assert!(op.is_object(), "{} {} is missing from /openapi.json", route.method, route.pattern);
        for status in std::iter::once(&route.success).chain(route.also) {
            assert!(
                op["responses"][status.to_string()].is_object(),
                "{} {} {status}",
                route.method,
                route.pattern
            );
        }
    }
    // Routes whose upstream outcome may be unknown also answer 202 (API.md §1).
    for (path, method) in [
        ("/v1/cards", "post"),
        ("/v1/cards/{id}/topups", "post"),
        ("/v1/cards/{id}/freeze", "post"),
        ("/v1/cardholders", "post"),
    ] {
        assert!(doc["paths"][path][method]["responses"]["202"].is_object(), "{method} {path} lists no 202");
    }
    let events = &doc["paths"]["/v1/events"]["get"];
    let headers: Vec<&str> =
        events["parameters"].as_array().unwrap().iter().filter_map(|p| p["name"].as_str()).collect();
    for h in ["X-Pelago-Key-Id", "X-Pelago-Timestamp", "X-Pelago-Nonce", "X-Pelago-Signature"] {
        assert!(headers.contains(&h), "{h}");
    }
    let create = &doc["paths"]["/admin/v1/merchants"]["post"];
    assert_eq!(
        create["requestBody"]["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/CreateMerchant"
    );
    assert!(doc["components"]["schemas"]["CreateMerchant"]["properties"]["funding_mode"].is_object());
    assert!(doc["components"]["schemas"]["Error"].is_object());
    assert!(doc["components"]["securitySchemes"]["pelagoSignature"].is_object());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_request_subcommand_signs_and_sends() {
    let svc = Service::temp(&[]);
    let key = svc.merchant("Shell").await.key;
    let base = svc.base.clone();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_pelago-card"))
            .args(["request", "GET", "/v1/events?limit=3"])
            .env("PELAGO_BASE_URL", base)
            .env("PELAGO_KEY_ID", &key.key_id)
            .env("PELAGO_API_SECRET", &key.secret)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout} {}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).starts_with("200 OK"), "the status line goes to stderr");
    let body: Value = serde_json::from_str(&stdout).expect("stdout is the JSON body alone");
    assert_eq!(body["has_more"], false, "{body}");
}

async fn bound_post(svc: &Service, path: &str, key: &str) -> Value {
    let r = svc.admin(Method::POST, path).header("idempotency-key", key).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    r.json().await.unwrap()
}

/// The answer of a secret-revealing effect is bound in the same commit as the
/// effect: even with the stored idempotent response gone (as after a crash
/// between the two), a retry gets the same answer and no second effect.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secret_revealing_effects_are_bound_to_their_idempotency_key() {
    let (_dir, data) = common::temp_data();
    let svc = Service::start(&data, &[]);
    let id = svc.merchant("Bound").await.id;
    let key1 = bound_post(&svc, &format!("/admin/v1/merchants/{id}/api-keys"), "issue-1").await;
    let whsec1 = bound_post(&svc, &format!("/admin/v1/merchants/{id}/webhook-secret"), "rotate-1").await;
    assert!(svc.terminate().success());

    // Drop the stored responses, as a crash right after the effect would have.
    {
        let store =
            pelago_storage::Store::open(&data.join("db"), &pelago_storage::StoreConfig::default()).unwrap();
        let keys = store.scan_keys(pelago_storage::Tree::Idempotency, b"", None, false, 100).unwrap();
        assert!(!keys.is_empty());
        let mut batch = pelago_storage::WriteBatch::new();
        for k in keys {
            batch.delete(pelago_storage::Tree::Idempotency, k);
        }
        let _ = store.commit(batch).unwrap();
        store.flush_blocking().unwrap();
    }
    let svc = Service::start(&data, &[]);
    let key2 = bound_post(&svc, &format!("/admin/v1/merchants/{id}/api-keys"), "issue-1").await;
    let whsec2 = bound_post(&svc, &format!("/admin/v1/merchants/{id}/webhook-secret"), "rotate-1").await;
    assert_eq!(key1, key2, "the same key, not a second one");
    assert_eq!(whsec1, whsec2, "the same rotation, not a second one");
    let debug = svc.admin_get(&format!("/debug/v1/actors/merchants/{id}")).await;
    assert_eq!(debug.count("state.webhook_secrets"), 2, "rotated once");
}

/// Creating a merchant in sandbox mode can fail after the merchant was saved
/// (its gateway account's registration with the simulator): the 502 is not
/// stored, and a retry with the same Idempotency-Key completes that merchant,
/// never a second one (issue 14).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_completes_a_merchant_whose_registration_failed_after_the_save() {
    let svc = Service::temp(&[("PELAGO_FAILPOINTS", "merchant.sandbox_registration=error")]);
    let body = json!({"name": "Retried", "funding_mode": "gateway", "allowed_card_names": ["PELAGO_VIRTUAL_USD"],
        "gateway": {"merchant_id": "gw_retried", "api_key": "gw-retried-key-1"},
        "fees": [{"currency": "USD", "application_fee": {"fixed": 300}}]});
    let create = || {
        svc.admin(Method::POST, "/admin/v1/merchants").header("idempotency-key", "create-retried").json(&body)
    };
    let failed = create().send().await.unwrap();
    assert_eq!(failed.status(), StatusCode::BAD_GATEWAY);
    let created = create().send().await.unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);
    let created: Value = created.json().await.unwrap();
    let listed = svc.admin_get("/admin/v1/merchants").await;
    let named: Vec<&Value> =
        listed["data"].as_array().unwrap().iter().filter(|m| m["name"] == "Retried").collect();
    assert_eq!(named.len(), 1, "one merchant: {listed}");
    assert_eq!(named[0]["id"], created["merchant"]["id"]);
    // Its gateway account works: the application-fee order is created and paid at the sandbox gateway.
    let key =
        Key { key_id: created.str("api_key.key_id").into(), secret: created.str("api_key.secret").into() };
    let m = Merchant::of(&svc, created.str("merchant.id"), key);
    let card = m.card().await;
    assert_eq!(card["status"], "pending_payment", "{card}");
    let order = card.str("application_fee_order.id");
    let (status, _) = m.act(&format!("/v1/test_helpers/orders/{order}/pay")).await;
    assert_eq!(status, StatusCode::OK);
}
