//! What the HTTP benches share: signed requests (SECURITY.md merchant signing)
//! and the server's memory as `/proc` reports it.

use pelago_card::security::signing::{SignedRequest, sign};

/// A merchant's API key, as the benches sign with it.
#[derive(Clone)]
pub struct Key {
    pub key_id: String,
    pub secret: String,
}

impl Key {
    /// A request signed with this key: timestamp now, a fresh nonce.
    pub fn signed(
        &self,
        http: &reqwest::Client,
        base: &str,
        method: reqwest::Method,
        path: &str,
        body: Vec<u8>,
    ) -> reqwest::RequestBuilder {
        let ts = chrono::Utc::now().timestamp().to_string();
        let nonce = format!("n{}", pelago_storage::ids::new_ulid());
        let sig = sign(
            &self.secret,
            &self.key_id,
            &ts,
            &nonce,
            &SignedRequest { method: method.as_str(), path, query: "", idempotency_key: "", body: &body },
        );
        http.request(method, format!("{base}{path}"))
            .header("x-pelago-key-id", &self.key_id)
            .header("x-pelago-timestamp", ts)
            .header("x-pelago-nonce", nonce)
            .header("x-pelago-signature", sig)
            .header("content-type", "application/json")
            .body(body)
    }
}

/// A cardholder the sandbox channel approves at once.
pub fn cardholder_body() -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "card_name": "PELAGO_VIRTUAL_USD", "first_name": "Ada", "last_name": "Lovelace", "email": "ada@example.com",
        "phone": "+6591234567", "date_of_birth": "1990-12-10", "nationality": "SG",
        "id_document": {"type": "passport", "number": "E1234567"},
        "address": {"line1": "1 Main St", "city": "Singapore", "postal_code": "018989", "country": "SG"}}))
    .unwrap()
}

/// A marketplace recipient (an individual with a bank account) the sandbox
/// onboards at once.
pub fn recipient_body(name: &str) -> serde_json::Value {
    serde_json::json!({
        "type": "individual", "name": name, "email": "s@example.com", "phone": "+6591234567", "country": "SG",
        "individual": {"first_name": "Sam", "last_name": "Seller", "date_of_birth": "1990-01-01",
                       "id_document": {"type": "passport", "number": "P1234567"}},
        "bank_account": {"holder_name": "Sam", "account_number": "ACC123456", "bank_code": "DBS", "kind": "personal"},
    })
}

/// Sends `request` and returns its JSON body.
pub async fn json_of(request: reqwest::RequestBuilder) -> serde_json::Value {
    request.send().await.unwrap().json().await.unwrap()
}

/// An admin GET's JSON body (`Null` if it is not JSON).
pub async fn admin_get(http: &reqwest::Client, base: &str, token: &str, path: &str) -> serde_json::Value {
    let response = http.get(format!("{base}{path}")).bearer_auth(token).send().await.unwrap();
    response.json().await.unwrap_or(serde_json::Value::Null)
}

/// A `/proc/{pid}/status` memory field (`VmRSS:`, `VmHWM:`) in MiB; 0 if unreadable.
pub fn status_mib(pid: u32, field: &str) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with(field)).map(str::to_owned))
        .and_then(|l| l.split_whitespace().nth(1).and_then(|kb| kb.parse::<f64>().ok()))
        .map_or(0.0, |kb| kb / 1024.0)
}
