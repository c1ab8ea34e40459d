//! The HTTP load driver: runs against the real `pelago-card` binary on
//! loopback (started here, with the sandbox, in a temp dir) and measures
//! requests/s and latency percentiles of:
//!   1. signed `GET /v1/cards/{id}` over 1,000 cards,
//!   2. signed master-account top-ups over 1,000 cards (sandbox channel round trip),
//!   3. cardholder creation (sandbox channel round trip),
//!   4. one batch split (MARKETPLACE.md §7) of 100 paid and settled payments
//!      of 5 lines each: the time from the request to the batch completed,
//!
//! It also reports the server's peak resident memory (VmHWM).
//!
//! `cargo bench --bench load` (release; 10 s per scenario, 64 connections);
//! `cargo bench --bench load -- --bench topups` runs one scenario (`reads`,
//! `topups`, `cardholders`, `split`).
//! Under `cargo test` it runs a 1-second smoke of each scenario (a batch of 10).

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

/// A signed POST of `body` (none for `Null`) that must answer `want`: its JSON answer.
async fn post(client: &Client, path: &str, body: Value, want: u16) -> Value {
    let body = if body.is_null() { Vec::new() } else { serde_json::to_vec(&body).unwrap() };
    let response = client.signed(reqwest::Method::POST, path, body).send().await.unwrap();
    let status = response.status().as_u16();
    let answer: Value = response.json().await.unwrap_or(Value::Null);
    assert_eq!(status, want, "{path}: {answer}");
    answer
}

/// Polls the admin or signed GET `path` until `done` holds, 60 s at most.
async fn until(client: &Client, path: &str, admin: bool, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let v = if admin {
            common::admin_get(&client.http, &client.base, ADMIN, path).await
        } else {
            common::json_of(client.signed(reqwest::Method::GET, path, Vec::new())).await
        };
        if done(&v) {
            return v;
        }
        assert!(Instant::now() < deadline, "{path} did not get there: {v}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The batch split (MARKETPLACE.md §7): 4 onboarded sellers with split and
/// commission agreements; `payments` payments of 5 lines (each seller's
/// PURCHASE and the marketplace's COMMISSION) paid by the sandbox buyer and
/// settled by the next date's T+1 run; then one batch of them all, timed from
/// the request to the batch completed (every item executed, the ledger balanced).
async fn split_scenario(client: &Client, payments: usize) {
    let usd = |v: i64| json!({"value": v, "currency": "USD"});
    let mut lines = Vec::new();
    for s in 0..4 {
        let id =
            post(client, "/v1/recipients", common::recipient_body(&format!("Seller {s}")), 201).await["id"]
                .as_str()
                .unwrap()
                .to_owned();
        let agreements = format!("/v1/recipients/{id}/agreements");
        post(
            client,
            &format!("/v1/recipients/{id}/onboardings"),
            json!({"type": "ONE_STEP_ONBOARDING"}),
            201,
        )
        .await;
        post(client, &agreements, json!({"type": "split"}), 201).await;
        post(client, &agreements, json!({"type": "commission", "max_commission_bps": 1_000}), 201).await;
        lines.push(json!({"recipient_id": id, "type": "PURCHASE", "amount": usd(1_000)}));
    }
    lines.push(json!({"type": "COMMISSION", "amount": usd(100)}));
    let body = json!({"amount": usd(4_100), "merchant_reference": "bench", "capture": true, "split_marketplace": lines});
    let setup = Instant::now();
    let mut items = Vec::with_capacity(payments);
    for _ in 0..payments {
        let id = post(client, "/v1/payments", body.clone(), 201).await["id"].as_str().unwrap().to_owned();
        let paid = post(client, &format!("/v1/test_helpers/payments/{id}/pay"), Value::Null, 200).await;
        assert_eq!(paid["status"], "SUCCEEDED", "{paid}");
        items.push(json!({"payment_id": id}));
    }
    // T+1: the run of the service clock's next date settles what was captured today.
    let clock = common::admin_get(&client.http, &client.base, ADMIN, "/admin/v1/test_helpers/clock").await;
    let now = chrono::DateTime::parse_from_rfc3339(clock["now"].as_str().unwrap()).unwrap();
    let date = (now + chrono::Duration::days(1)).format("%Y-%m-%d").to_string();
    let run = client
        .http
        .post(format!("{}/admin/v1/settlement/runs", client.base))
        .bearer_auth(ADMIN)
        .json(&json!({"date": date}))
        .send()
        .await
        .unwrap();
    assert_eq!(run.status().as_u16(), 202);
    until(client, &format!("/admin/v1/settlement/runs/{date}"), true, |r| r["status"] == "completed").await;
    let setup = setup.elapsed();

    let started = Instant::now();
    let batch = client.signed(
        reqwest::Method::POST,
        "/v1/split-batches",
        serde_json::to_vec(&json!({"items": items, "reference": "bench"})).unwrap(),
    );
    let response = batch.send().await.unwrap();
    let status = response.status().as_u16();
    let mut batch: Value = response.json().await.unwrap();
    assert!(matches!(status, 201 | 202), "{batch}");
    let answered = started.elapsed();
    if batch["status"] != "completed" {
        let path = format!("/v1/split-batches/{}", batch["id"].as_str().unwrap());
        batch = until(client, &path, false, |b| b["status"] == "completed").await;
    }
    let elapsed = started.elapsed();
    let executed = batch["items"].as_array().unwrap().iter().filter(|i| i["status"] == "executed").count();
    assert_eq!(executed, payments, "every item executed: {batch}");
    let check = common::admin_get(&client.http, &client.base, ADMIN, "/admin/v1/ledger/check").await;
    assert_eq!(check["balanced"], true, "{check}");
    println!(
        "{:<40} {payments} payments × 5 lines: answered {status} in {:.0} ms, completed in {:.0} ms \
         ({:.0} payments/s, {:.0} lines/s); setup (create + pay + T+1) {:.1} s",
        "batch split (POST /v1/split-batches)",
        answered.as_secs_f64() * 1e3,
        elapsed.as_secs_f64() * 1e3,
        payments as f64 / elapsed.as_secs_f64(),
        5.0 * payments as f64 / elapsed.as_secs_f64(),
        setup.as_secs_f64()
    );
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
    // `-- --bench reads` (or `topups`, `cardholders`, `split`) runs one scenario.
    let only = ["reads", "topups", "cardholders", "split"].into_iter().find(|s| args.iter().any(|a| a == s));
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
        if runs("split") {
            split_scenario(&client, if full { 100 } else { 10 }).await;
        }
        println!("server peak resident memory: {:.1} MiB", common::status_mib(server.child.id(), "VmHWM:"));
    });
}
