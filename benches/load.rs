//! The HTTP load driver: runs against the real `pelago-card` binary on
//! loopback (started here, with the sandbox, in a temp dir) and measures
//! requests/s and latency percentiles of:
//!   1. signed `GET /v1/cards/{id}` over 1,000 cards,
//!   2. signed master-account top-ups over 1,000 cards (sandbox channel round trip),
//!   3. cardholder creation (sandbox channel round trip),
//!
//! It also reports the server's peak resident memory (VmHWM).
//!
//! `cargo bench --bench load` (release; 10 s per scenario, 64 connections);
//! `cargo bench --bench load -- --bench topups` runs one scenario (`reads`,
//! `topups`, `cardholders`).
//! Under `cargo test` it runs a 1-second smoke of each scenario.

use std::{
    io::{BufRead, BufReader},
    process::{Child, Command, Stdio},
    sync::Arc,
    time::{Duration, Instant},
};

#[allow(dead_code)] // shared with benches/billing.rs; not every helper is used here
mod common;

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
        .env("PELAGO_IP_RATE_LIMIT", "1000000,1000000")
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

#[derive(Clone)]
struct Client {
    http: reqwest::Client,
    base: String,
    key: common::Key,
}

impl Client {
    fn signed(&self, method: reqwest::Method, path: &str, body: Vec<u8>) -> reqwest::RequestBuilder {
        self.key.signed(&self.http, &self.base, method, path, body)
    }
}

/// A lean HTTP/1.1 keep-alive connection, like wrk's: one request at a time,
/// the response read by `Content-Length`. The driver shares the 2 cores with
/// the server, so it must cost as little as possible per request (reqwest's
/// pooled client cost about a third of the machine at 15 k req/s).
struct Conn {
    stream: tokio::net::TcpStream,
    host: String,
    buf: Vec<u8>,
    out: Vec<u8>,
}

impl Conn {
    async fn open(base: &str) -> Conn {
        let host = base.trim_start_matches("http://").trim_end_matches('/').to_owned();
        let stream = tokio::net::TcpStream::connect(&host).await.expect("connect to the server");
        stream.set_nodelay(true).unwrap();
        Conn { stream, host, buf: Vec::with_capacity(8192), out: Vec::with_capacity(1024) }
    }

    /// Sends one signed request; returns the status (0 on a broken connection).
    async fn signed(&mut self, client: &Client, method: &str, path: &str, body: &[u8]) -> u16 {
        use std::io::Write;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let ts = (chrono::Utc::now().timestamp()).to_string();
        let nonce = format!("n{}", pelago_storage::ids::new_ulid());
        let sig = sign(
            &client.key.secret,
            &client.key.key_id,
            &ts,
            &nonce,
            &SignedRequest { method, path, query: "", idempotency_key: "", body },
        );
        self.out.clear();
        let _ = write!(
            self.out,
            "{method} {path} HTTP/1.1\r\nhost: {}\r\nx-pelago-key-id: {}\r\nx-pelago-timestamp: {ts}\r\n\
             x-pelago-nonce: {nonce}\r\nx-pelago-signature: {sig}\r\ncontent-type: application/json\r\n\
             content-length: {}\r\n\r\n",
            self.host,
            client.key.key_id,
            body.len()
        );
        self.out.extend_from_slice(body);
        if self.stream.write_all(&self.out).await.is_err() {
            return 0;
        }
        self.buf.clear();
        let mut chunk = [0u8; 8192];
        loop {
            if let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = std::str::from_utf8(&self.buf[..end]).unwrap_or("");
                let status = head.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
                let length = head
                    .lines()
                    .find_map(|l| {
                        let (name, value) = l.split_once(':')?;
                        name.eq_ignore_ascii_case("content-length")
                            .then(|| value.trim().parse::<usize>().ok())?
                    })
                    .unwrap_or(0);
                while self.buf.len() < end + 4 + length {
                    match self.stream.read(&mut chunk).await {
                        Ok(0) | Err(_) => return 0,
                        Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                    }
                }
                return status;
            }
            match self.stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return 0,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }
}

/// One request of a scenario: the request number → (method, path, body, expected status).
type Plan = Arc<dyn Fn(usize) -> (&'static str, String, Vec<u8>, u16) + Send + Sync>;

/// Runs `plan` from `connections` keep-alive connections for `duration`;
/// returns the sorted latencies (µs) of expected answers and the error count.
async fn drive(client: &Client, connections: usize, duration: Duration, plan: Plan) -> (Vec<u32>, usize) {
    let deadline = Instant::now() + duration;
    let mut tasks = Vec::new();
    for c in 0..connections {
        let (plan, client) = (Arc::clone(&plan), client.clone());
        tasks.push(tokio::spawn(async move {
            let mut conn = Conn::open(&client.base).await;
            let mut lat = Vec::new();
            let mut errors = 0;
            let mut i = c;
            while Instant::now() < deadline {
                let (method, path, body, expected) = plan(i);
                let t = Instant::now();
                let status = conn.signed(&client, method, &path, &body).await;
                if status == expected {
                    lat.push(t.elapsed().as_micros() as u32);
                } else {
                    errors += 1;
                    if status == 0 {
                        conn = Conn::open(&client.base).await;
                    }
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

/// From `/metrics`: (store flushes so far, mean flush seconds, webhook outbox depth).
async fn flush_stats(http: &reqwest::Client, base: &str) -> (f64, f64, f64) {
    let text = http.get(format!("{base}/metrics")).send().await.unwrap().text().await.unwrap();
    let gauge = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse::<f64>().ok()))
            .unwrap_or(0.0)
    };
    (
        gauge("pelago_store_flushes_total "),
        gauge("pelago_store_flush_seconds_mean "),
        gauge("pelago_webhook_queue_depth "),
    )
}

/// Prints the service store's flushes during the last scenario.
async fn report_flushes(client: &Client, secs: u64, before: &mut f64) {
    let (total, mean, outbox) = flush_stats(&client.http, &client.base).await;
    println!(
        "{:<40} {:>9.0} flushes/s (service store; mean flush {:.2} ms since start); webhook outbox {outbox}",
        "",
        (total - *before) / secs as f64,
        mean * 1e3
    );
    *before = total;
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
    let args: Vec<String> = std::env::args().collect();
    let full = args.iter().any(|a| a == "--bench");
    // `-- --bench reads` (or `topups`, `cardholders`) runs one scenario.
    let only = ["reads", "topups", "cardholders"].into_iter().find(|s| args.iter().any(|a| a == s));
    let runs = move |name: &str| only.is_none_or(|o| o == name);
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
            key: common::Key {
                key_id: created["api_key"]["key_id"].as_str().unwrap().into(),
                secret: created["api_key"]["secret"].as_str().unwrap().into(),
            },
        };
        let deposit = serde_json::to_vec(&json!({"amount": {"value": 9_000_000_000_000i64, "currency": "USD"}, "network": "TRON"})).unwrap();
        assert!(client.signed(reqwest::Method::POST, "/v1/test_helpers/deposits", deposit).send().await.unwrap().status().is_success());
        let holder: Value = client.signed(reqwest::Method::POST, "/v1/cardholders", common::cardholder_body()).send().await.unwrap().json().await.unwrap();
        let open = serde_json::to_vec(&json!({"cardholder_id": holder["id"]})).unwrap();
        let mut ids = Vec::with_capacity(cards);
        for _ in 0..cards {
            let card: Value = client.signed(reqwest::Method::POST, "/v1/cards", open.clone()).send().await.unwrap().json().await.unwrap();
            ids.push(card["id"].as_str().unwrap().to_owned());
        }
        let ids = Arc::new(ids);
        println!("pelago-card load driver: {connections} connections, {secs} s per scenario, {cards} cards, 2 cores shared with the server");

        let mut flushed = flush_stats(&client.http, &client.base).await.0;
        if runs("reads") {
            let i = Arc::clone(&ids);
            let plan: Plan = Arc::new(move |n| ("GET", format!("/v1/cards/{}", i[n % i.len()]), Vec::new(), 200));
            let (lat, err) = drive(&client, connections, Duration::from_secs(secs), plan).await;
            report("signed GET /v1/cards/{id}", &lat, err, secs as f64);
            report_flushes(&client, secs, &mut flushed).await;
        }

        if runs("topups") {
            let i = Arc::clone(&ids);
            let body = serde_json::to_vec(&json!({"amount": {"value": 100, "currency": "USD"}})).unwrap();
            let plan: Plan =
                Arc::new(move |n| ("POST", format!("/v1/cards/{}/topups", i[n % i.len()]), body.clone(), 201));
            let (lat, err) = drive(&client, connections, Duration::from_secs(secs), plan).await;
            report("signed master-account top-ups", &lat, err, secs as f64);
            report_flushes(&client, secs, &mut flushed).await;
        }

        if runs("cardholders") {
            let plan: Plan = Arc::new(|_| ("POST", "/v1/cardholders".to_owned(), common::cardholder_body(), 201));
            let (lat, err) = drive(&client, connections / 2, Duration::from_secs(secs), plan).await;
            report("signed POST /v1/cardholders", &lat, err, secs as f64);
            report_flushes(&client, secs, &mut flushed).await;
        }
        println!("server peak resident memory: {:.1} MiB", common::status_mib(server.child.id(), "VmHWM:"));
    });
}
