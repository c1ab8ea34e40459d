//! The HTTP load driver: runs against the real `pelago-card` binary on
//! loopback (started here, with the sandbox, in a temp dir) and measures
//! requests/s and latency percentiles of:
//!   1. signed `GET /v1/cards/{id}` over 1,000 cards,
//!   2. signed master-account top-ups over 1,000 cards (sandbox channel round trip),
//!   3. cardholder creation (sandbox channel round trip),
//!
//! It also reports the server's peak resident memory (VmHWM).
//!
//! `cargo bench --bench load` (release; 10 s per scenario, 64 connections).
//! Under `cargo test` it runs a 1-second smoke of each scenario.

use std::{
    io::{BufRead, BufReader},
    process::{Child, Command, Stdio},
    sync::Arc,
    time::{Duration, Instant},
};

use pelago_card::security::signing::{SignedRequest, sign};
use serde_json::{Value, json};

const ADMIN: &str = "load-admin-token-0123456789";

struct Server {
    child: Child,
    base: String,
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_server() -> Server {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_pelago-card"))
        .args(["serve", "--sandbox", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path().join("data"))
        .env("PELAGO_SANDBOX_LISTEN", "127.0.0.1:0")
        .env("PELAGO_ADMIN_TOKEN", ADMIN)
        .env("PELAGO_RATE_LIMIT", "1000000,1000000")
        .env("PELAGO_LOG", "error")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start pelago-card");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let base = loop {
        let line = lines.next().expect("the server exited").unwrap();
        if let Some(url) = line.strip_prefix("pelago-card listening on ") {
            break url.to_owned();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    Server { child, base, _dir: dir }
}

fn peak_rss_mib(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmHWM:")).map(str::to_owned))
        .and_then(|l| l.split_whitespace().nth(1).and_then(|kb| kb.parse::<f64>().ok()))
        .map_or(0.0, |kb| kb / 1024.0)
}

#[derive(Clone)]
struct Client {
    http: reqwest::Client,
    base: String,
    key_id: String,
    secret: String,
}

impl Client {
    fn signed(&self, method: reqwest::Method, path: &str, body: Vec<u8>) -> reqwest::RequestBuilder {
        let ts = (chrono::Utc::now().timestamp()).to_string();
        let nonce = format!("n{}", pelago_storage::ids::new_ulid());
        let sig = sign(
            &self.secret,
            &self.key_id,
            &ts,
            &nonce,
            &SignedRequest { method: method.as_str(), path, query: "", idempotency_key: "", body: &body },
        );
        self.http
            .request(method, format!("{}{path}", self.base))
            .header("x-pelago-key-id", &self.key_id)
            .header("x-pelago-timestamp", ts)
            .header("x-pelago-nonce", nonce)
            .header("x-pelago-signature", sig)
            .header("content-type", "application/json")
            .body(body)
    }
}

fn cardholder_body() -> Vec<u8> {
    serde_json::to_vec(&json!({
        "card_name": "PELAGO_VIRTUAL_USD", "first_name": "Ada", "last_name": "Lovelace", "email": "ada@example.com",
        "phone": "+6591234567", "date_of_birth": "1990-12-10", "nationality": "SG",
        "id_document": {"type": "passport", "number": "E1234567"},
        "address": {"line1": "1 Main St", "city": "Singapore", "postal_code": "018989", "country": "SG"}}))
    .unwrap()
}

/// Runs `op(i)` from `connections` concurrent loops for `duration`; returns latencies.
async fn drive<F, Fut>(connections: usize, duration: Duration, op: F) -> (Vec<u32>, usize)
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let op = Arc::new(op);
    let deadline = Instant::now() + duration;
    let mut tasks = Vec::new();
    for c in 0..connections {
        let op = Arc::clone(&op);
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut errors = 0;
            let mut i = c;
            while Instant::now() < deadline {
                let t = Instant::now();
                if op(i).await {
                    lat.push(t.elapsed().as_micros() as u32);
                } else {
                    errors += 1;
                }
                i += connections;
            }
            (lat, errors)
        }));
    }
    let mut all = Vec::new();
    let mut errors = 0;
    for t in tasks {
        let (l, e) = t.await.unwrap();
        all.extend(l);
        errors += e;
    }
    all.sort_unstable();
    (all, errors)
}

fn report(name: &str, lat: &[u32], errors: usize, secs: f64) {
    let pct = |p: f64| {
        if lat.is_empty() { 0.0 } else { lat[((lat.len() - 1) as f64 * p) as usize] as f64 / 1000.0 }
    };
    println!(
        "{name:<40} {:>9.0} req/s   p50 {:>7.2} ms   p99 {:>7.2} ms   p99.9 {:>7.2} ms   errors {errors}",
        lat.len() as f64 / secs,
        pct(0.50),
        pct(0.99),
        pct(0.999)
    );
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let (secs, connections, cards) = if full { (10u64, 64usize, 1_000usize) } else { (1, 8, 50) };
    let server = start_server();
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    runtime.block_on(async move {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder().pool_max_idle_per_host(256).build().unwrap();
        let created: Value = http
            .post(format!("{}/admin/v1/merchants", server.base))
            .bearer_auth(ADMIN)
            .json(&json!({"name": "Load", "funding_mode": "master_account", "allowed_card_names": ["PELAGO_VIRTUAL_USD"]}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let client = Client {
            http,
            base: server.base.clone(),
            key_id: created["api_key"]["key_id"].as_str().unwrap().into(),
            secret: created["api_key"]["secret"].as_str().unwrap().into(),
        };
        let deposit = serde_json::to_vec(&json!({"amount": {"value": 9_000_000_000_000i64, "currency": "USD"}, "network": "TRON"})).unwrap();
        assert!(client.signed(reqwest::Method::POST, "/v1/test_helpers/deposits", deposit).send().await.unwrap().status().is_success());
        let holder: Value = client.signed(reqwest::Method::POST, "/v1/cardholders", cardholder_body()).send().await.unwrap().json().await.unwrap();
        let open = serde_json::to_vec(&json!({"cardholder_id": holder["id"]})).unwrap();
        let mut ids = Vec::with_capacity(cards);
        for _ in 0..cards {
            let card: Value = client.signed(reqwest::Method::POST, "/v1/cards", open.clone()).send().await.unwrap().json().await.unwrap();
            ids.push(card["id"].as_str().unwrap().to_owned());
        }
        let ids = Arc::new(ids);
        println!("pelago-card load driver: {connections} connections, {secs} s per scenario, {cards} cards, 2 cores shared with the server");

        let (c, i) = (client.clone(), Arc::clone(&ids));
        let (lat, err) = drive(connections, Duration::from_secs(secs), move |n| {
            let (c, path) = (c.clone(), format!("/v1/cards/{}", i[n % i.len()]));
            async move { c.signed(reqwest::Method::GET, &path, Vec::new()).send().await.is_ok_and(|r| r.status() == 200) }
        })
        .await;
        report("signed GET /v1/cards/{id}", &lat, err, secs as f64);

        let (c, i) = (client.clone(), Arc::clone(&ids));
        let body = serde_json::to_vec(&json!({"amount": {"value": 100, "currency": "USD"}})).unwrap();
        let (lat, err) = drive(connections, Duration::from_secs(secs), move |n| {
            let (c, path, body) = (c.clone(), format!("/v1/cards/{}/topups", i[n % i.len()]), body.clone());
            async move { c.signed(reqwest::Method::POST, &path, body).send().await.is_ok_and(|r| r.status() == 201) }
        })
        .await;
        report("signed master-account top-ups", &lat, err, secs as f64);

        let c = client.clone();
        let (lat, err) = drive(connections / 2, Duration::from_secs(secs), move |_| {
            let c = c.clone();
            async move { c.signed(reqwest::Method::POST, "/v1/cardholders", cardholder_body()).send().await.is_ok_and(|r| r.status() == 201) }
        })
        .await;
        report("signed POST /v1/cardholders", &lat, err, secs as f64);
        println!("server peak resident memory: {:.1} MiB", peak_rss_mib(server.child.id()));
    });
}
