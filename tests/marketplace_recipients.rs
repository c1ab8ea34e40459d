//! Recipients over real HTTP (MARKETPLACE.md §3): each validation answers its
//! status, code and `param` and creates nothing; another merchant's recipient
//! is a 404; PATCH follows the same rules; the identity and bank numbers are
//! masked in every answer and in clear nowhere (data dir, log, debug API).

mod common;

use common::{Json, Service, with};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const PASSPORT: &str = "PASSX7781234";
const ACCOUNT: &str = "ACCT99887766554433";
const REP_ID: &str = "REPR-5566-7788";

fn individual() -> Value {
    json!({
        "reference": "seller-1", "type": "individual", "name": "Ada Shop", "email": "ada@example.com",
        "phone": "+6591234567", "country": "SG",
        "individual": {"first_name": "Ada", "last_name": "Lovelace", "date_of_birth": "1990-12-10",
                       "id_document": {"type": "passport", "number": PASSPORT}},
        "bank_account": {"holder_name": "Ada Lovelace", "account_number": ACCOUNT, "bank_code": "DBSSSGSG",
                         "kind": "personal"},
    })
}

fn business() -> Value {
    json!({
        "type": "business", "name": "Acme Goods", "email": "ops@acme.example", "phone": "+14155550100",
        "country": "US",
        "business": {"legal_name": "Acme Goods LLC", "kind": "enterprise", "registration_number": "REG-1234",
                     "representative": {"name": "Wile E", "id_document": {"type": "national_id", "number": REP_ID}}},
        "bank_account": {"holder_name": "Acme Goods LLC", "account_number": "CORP000111222", "bank_code": "CHASUS33",
                         "kind": "corporate"},
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recipients_are_validated_masked_private_and_patched_by_the_same_rules() {
    let svc = Service::temp(&[]);
    let m = svc.merchant("Market One").await;
    let other = svc.merchant("Market Two").await;

    // Every refusal answers 400 invalid_request on its param, and creates nothing.
    let ind = individual();
    let biz = business();
    let cases: Vec<(Value, &str)> = vec![
        (with(&ind, "/type", Value::Null), "type"),
        (with(&ind, "/type", json!("person")), "type"),
        (with(&ind, "/reference", json!("a|b")), "reference"),
        (with(&ind, "/reference", json!("x".repeat(256))), "reference"),
        (with(&ind, "/name", json!("")), "name"),
        (with(&ind, "/name", json!("n".repeat(129))), "name"),
        (with(&ind, "/name", json!("bad\u{7}name")), "name"),
        (with(&ind, "/email", json!("not-an-email")), "email"),
        (with(&ind, "/email", json!(format!("{}@example.com", "e".repeat(250)))), "email"),
        (with(&ind, "/phone", json!("6591234567")), "phone"),
        (with(&ind, "/country", json!("XX")), "country"),
        (with(&ind, "/individual", Value::Null), "individual"),
        (with(&ind, "/business", biz["business"].clone()), "business"),
        (with(&ind, "/individual/first_name", json!("")), "individual.first_name"),
        (with(&ind, "/individual/last_name", json!("l".repeat(65))), "individual.last_name"),
        (with(&ind, "/individual/date_of_birth", json!("2020-01-01")), "individual.date_of_birth"),
        (with(&ind, "/individual/date_of_birth", json!("1990-13-01")), "individual.date_of_birth"),
        (with(&ind, "/individual/id_document/type", json!("driver_license")), "individual.id_document.type"),
        (with(&ind, "/individual/id_document/number", json!("AB1")), "individual.id_document.number"),
        (with(&ind, "/individual/id_document/number", json!("AB_12345")), "individual.id_document.number"),
        (with(&ind, "/bank_account/holder_name", json!("")), "bank_account.holder_name"),
        (with(&ind, "/bank_account/account_number", json!("acct12345678")), "bank_account.account_number"),
        (with(&ind, "/bank_account/account_number", json!("AB123")), "bank_account.account_number"),
        (with(&ind, "/bank_account/account_number", json!(99887766554433u64)), "bank_account.account_number"),
        (with(&ind, "/bank_account/bank_code", json!("B".repeat(17))), "bank_account.bank_code"),
        (with(&ind, "/bank_account/kind", json!("savings")), "bank_account.kind"),
        (with(&ind, "/bank_account/kind", json!("corporate")), "bank_account.kind"),
        (with(&ind, "/bank_account", Value::Null), "bank_account"),
        (with(&ind, "/nickname", json!("x")), "nickname"),
        (with(&biz, "/individual", ind["individual"].clone()), "individual"),
        (with(&biz, "/business/legal_name", json!("")), "business.legal_name"),
        (with(&biz, "/business/kind", json!("charity")), "business.kind"),
        (with(&biz, "/business/registration_number", json!("R!12")), "business.registration_number"),
        (with(&biz, "/business/representative/name", json!("")), "business.representative.name"),
        (
            with(&biz, "/business/representative/id_document/number", json!("x")),
            "business.representative.id_document.number",
        ),
        (with(&biz, "/bank_account/kind", json!("personal")), "bank_account.kind"),
    ];
    for (body, param) in &cases {
        let (status, e) = m.post("/v1/recipients", body.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{param}: {e}");
        assert_eq!(e["error"]["code"], "invalid_request", "{param}: {e}");
        assert_eq!(e["error"]["param"], *param, "{e}");
        let text = e.to_string();
        for secret in [PASSPORT, ACCOUNT, REP_ID, "99887766554433"] {
            assert!(!text.contains(secret), "an error shows a number: {text}");
        }
    }
    let listed = m.get("/v1/recipients").await;
    assert_eq!(listed["data"], json!([]), "nothing created by a refused request");

    // Created: the numbers masked, no onboarding, no capabilities.
    let (status, ada) = m.post_once("/v1/recipients", &ind, "rec-1").await;
    assert_eq!(status, StatusCode::CREATED);
    let id = ada.str("id").to_owned();
    assert!(id.starts_with("rec_"), "{ada}");
    assert_eq!(ada["individual"]["id_document"]["number"], "****1234");
    assert_eq!(ada["bank_account"]["account_number"], "****4433");
    assert_eq!(ada["onboarding"], Value::Null);
    assert_eq!(ada["capabilities"], json!({"receive_splits": false, "withdraw": false}));
    assert_eq!((ada["version"].as_u64(), ada["type"].as_str()), (Some(1), Some("individual")));
    let (_, again) = m.post_once("/v1/recipients", &ind, "rec-1").await;
    assert_eq!(again["id"], ada["id"], "the same Idempotency-Key: the same recipient");
    let (status, acme) = m.post("/v1/recipients", biz.clone()).await;
    assert_eq!(status, StatusCode::CREATED, "{acme}");
    assert_eq!(acme["business"]["representative"]["id_document"]["number"], "****7788");
    let sole = with(
        &with(&biz, "/business/kind", json!("sole_proprietor")),
        "/bank_account/kind",
        json!("personal"),
    );
    assert_eq!(
        m.post("/v1/recipients", sole.clone()).await.0,
        StatusCode::CREATED,
        "a sole proprietor may use a personal account"
    );

    // Reads: the owner's; another merchant's is a 404 everywhere.
    let path = format!("/v1/recipients/{id}");
    let (status, got) = m.call(Method::GET, &path, None).await;
    assert_eq!((status, &got), (StatusCode::OK, &ada));
    let filtered = m.get("/v1/recipients?reference=seller-1").await;
    assert_eq!(filtered.count("data"), 1, "{filtered}");
    let all = m.get("/v1/recipients").await;
    assert_eq!(all.count("data"), 3);
    let (status, e) = m.call(Method::GET, "/v1/recipients?country=SG", None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{e}");
    let (status, balance) = m.call(Method::GET, &format!("{path}/balance"), None).await;
    assert_eq!((status, balance), (StatusCode::OK, json!({"recipient_id": id, "balances": []})));
    for (method, p) in
        [(Method::GET, path.clone()), (Method::PATCH, path.clone()), (Method::GET, format!("{path}/balance"))]
    {
        let (status, _) = other.call(method, &p, Some(&json!({"name": "Taken"}))).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "another merchant's recipient: {p}");
    }
    let other_list = other.get("/v1/recipients").await;
    assert_eq!(other_list["data"], json!([]));

    // PATCH: any field but type, same rules; a refusal changes nothing.
    let (status, e) = m.call(Method::PATCH, &path, Some(&json!({"type": "business"}))).await;
    assert_eq!((status, e.param()), (StatusCode::BAD_REQUEST, Some("type")));
    let bad_bank = json!({"bank_account": {"holder_name": "Ada", "account_number": "NEW000111", "bank_code": "DBS", "kind": "corporate"}});
    let (status, e) = m.call(Method::PATCH, &path, Some(&bad_bank)).await;
    assert_eq!((status, e.param()), (StatusCode::BAD_REQUEST, Some("bank_account.kind")));
    let (status, e) = m.call(Method::PATCH, &path, Some(&json!({"business": biz["business"]}))).await;
    assert_eq!((status, e.param()), (StatusCode::BAD_REQUEST, Some("business")));
    let patch = json!({"name": "Ada's Shop", "reference": "seller-9",
        "bank_account": {"holder_name": "Ada", "account_number": "NEW000222", "bank_code": "DBS", "kind": "personal"}});
    let (status, patched) = m.call(Method::PATCH, &path, Some(&patch)).await;
    assert_eq!(status, StatusCode::OK, "{patched}");
    assert_eq!((patched["name"].as_str(), patched["version"].as_u64()), (Some("Ada's Shop"), Some(2)));
    assert_eq!(patched["bank_account"]["account_number"], "****0222");
    assert_eq!(patched["individual"], ada["individual"], "untouched fields keep their value");
    let moved = m.get("/v1/recipients?reference=seller-1").await;
    assert_eq!(moved["data"], json!([]), "the reference index moved with the patch");
    let moved = m.get("/v1/recipients?reference=seller-9").await;
    assert_eq!(moved["data"][0]["id"], ada["id"]);

    // The numbers in clear: nowhere in the debug API, the data dir or the log.
    let mut debug = svc.admin_get("/debug/v1/actors").await.to_string();
    for rec in [&id, acme.str("id")] {
        let view = svc.admin_get(&format!("/debug/v1/actors/recipients/{rec}")).await.to_string();
        assert!(view.contains("****"), "{view}");
        debug.push_str(&view);
    }
    let mut rest = svc.at_rest();
    rest.files.push(("debug API".into(), debug.into_bytes()));
    rest.assert_nowhere(&[PASSPORT, ACCOUNT, REP_ID, "NEW000222", "CORP000111222"]);
}
