//! Webhook delivery over real HTTP (issue 7): every delivery is verified by a
//! receiver built on the Python `standardwebhooks` library; retries, restarts,
//! isolation between merchants, and secret rotation.

mod common;

use std::{
    collections::HashMap,
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::Once,
    time::{Duration, Instant},
};

use common::{Key, Service};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// The receiver: verifies each request with every given secret (all must
/// pass), answers 500 to the first `fail_first` requests of each webhook-id,
/// optionally hangs, and appends one JSON line per request to the log.
const RECEIVER: &str = r#"
import json, sys, threading, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from standardwebhooks.webhooks import Webhook

port, log_path, fail_first, hang_secs = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
secrets = sys.argv[5:]
seen = {}
lock = threading.Lock()

class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        headers = {k.lower(): v for k, v in self.headers.items()}
        verified = []
        for secret in secrets:
            try:
                Webhook(secret).verify(body, headers)
                verified.append(True)
            except Exception:
                verified.append(False)
        webhook_id = headers.get("webhook-id", "")
        with lock:
            seen[webhook_id] = seen.get(webhook_id, 0) + 1
            count = seen[webhook_id]
        if hang_secs > 0:
            time.sleep(hang_secs)
        status = 200 if verified and all(verified) else 400
        if count <= fail_first:
            status = 500
        try:
            event = json.loads(body)
        except Exception:
            event = {}
        line = {"id": webhook_id, "status": status, "verified": verified,
                "signatures": len(headers.get("webhook-signature", "").split()),
                "content_type": headers.get("content-type"),
                "type": event.get("type"), "body_id": event.get("id")}
        with lock:
            with open(log_path, "a") as f:
                f.write(json.dumps(line) + "\n")
        self.send_response(status)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass

server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
server.daemon_threads = True
print(server.server_address[1], flush=True)
server.serve_forever()
"#;

fn ensure_standardwebhooks() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let present = |py: &str| {
            Command::new("python3").args(["-c", py]).status().map(|s| s.success()).unwrap_or(false)
        };
        if present("import standardwebhooks") {
            return;
        }
        let pip = |extra: &[&str]| {
            Command::new("python3")
                .args(["-m", "pip", "install", "--quiet", "standardwebhooks"])
                .args(extra)
                .status()
                .map(|s| s.success())
                .unwrap_or(false)
        };
        assert!(
            pip(&[]) || pip(&["--break-system-packages"]),
            "python3 -m pip install standardwebhooks failed"
        );
        assert!(present("import standardwebhooks"), "standardwebhooks is not importable after install");
    });
}

struct Receiver {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Receiver {
    /// Starts on `port` (0: any free one).
    fn start(
        dir: &Path,
        name: &str,
        port: u16,
        fail_first: u32,
        hang_secs: u32,
        secrets: &[&str],
    ) -> Receiver {
        ensure_standardwebhooks();
        let script = dir.join("receiver.py");
        if !script.exists() {
            std::fs::write(&script, RECEIVER).unwrap();
        }
        let log = dir.join(format!("{name}.jsonl"));
        let mut child = Command::new("python3")
            .arg(&script)
            .args([
                port.to_string(),
                log.display().to_string(),
                fail_first.to_string(),
                hang_secs.to_string(),
            ])
            .args(secrets)
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the python receiver");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let port = line.trim().parse().unwrap_or_else(|_| panic!("the receiver did not start: {line:?}"));
        Receiver { child, port, log }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/hook", self.port)
    }

    /// Every request received so far.
    fn received(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// Requests answered 2xx, counted by webhook-id.
    fn delivered(&self) -> HashMap<String, usize> {
        let mut counts = HashMap::new();
        for r in self.received().iter().filter(|r| r["status"] == 200) {
            *counts.entry(r["id"].as_str().unwrap().to_owned()).or_default() += 1;
        }
        counts
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn cardholder(last_name: &str) -> Value {
    json!({
        "card_name": "PELAGO_VIRTUAL_USD", "reference": format!("user-{last_name}"),
        "first_name": "Ada", "last_name": last_name, "email": "ada@example.com",
        "phone": "+6591234567", "date_of_birth": "1990-12-10", "nationality": "SG",
        "id_document": {"type": "passport", "number": "E1234567"},
        "address": {"line1": "1 Main St", "line2": null, "city": "Singapore", "state": null,
                    "postal_code": "018989", "country": "SG"},
    })
}

async fn set_webhook_url(svc: &Service, merchant: &str, url: &str) {
    let r = svc
        .admin(Method::PATCH, &format!("/admin/v1/merchants/{merchant}"))
        .json(&json!({"webhook_url": url}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "{}", r.text().await.unwrap());
}

/// Creates an active cardholder; returns the id of its `cardholder.activated` event.
async fn activated_event(svc: &Service, key: &Key, last_name: &str) -> String {
    let body = serde_json::to_vec(&cardholder(last_name)).unwrap();
    let r = svc.signed(key, Method::POST, "/v1/cardholders", &body).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let holder: Value = r.json().await.unwrap();
    assert_eq!(holder["status"], "active");
    let events: Value = get(svc, key, "/v1/events?type=cardholder.activated&limit=100").await.1;
    events["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["data"]["object"]["id"] == holder["id"])
        .map(|e| e["id"].as_str().unwrap().to_owned())
        .expect("the activation event is listed")
}

async fn get(svc: &Service, key: &Key, path: &str) -> (StatusCode, Value) {
    let r = svc.signed(key, Method::GET, path, b"").send().await.unwrap();
    (r.status(), r.json().await.unwrap_or(Value::Null))
}

async fn deliveries(svc: &Service, key: &Key, event: &str) -> Vec<Value> {
    let (status, v) = get(svc, key, &format!("/v1/events/{event}/deliveries")).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["has_more"], false);
    v["data"].as_array().unwrap().clone()
}

/// Polls `check` every 50 ms until it returns `Some`, at most `secs`.
async fn until<T, F: std::future::Future<Output = Option<T>>>(
    secs: u64,
    what: &str,
    mut check: impl FnMut() -> F,
) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn queue_depth(svc: &Service) -> f64 {
    let metrics = svc.http.get(svc.url("/metrics")).send().await.unwrap().text().await.unwrap();
    metrics
        .lines()
        .find_map(|l| l.strip_prefix("pelago_webhook_queue_depth "))
        .expect("the queue depth gauge")
        .trim()
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_endpoint_gets_the_event_on_the_third_attempt_with_the_same_id() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("svc");
    let svc = Service::start(&data, &[("PELAGO_WEBHOOK_RETRY_SCHEDULE", "1,1,1")]);
    let (merchant, key, secret) = svc.merchant("Retry Shop").await;
    let receiver = Receiver::start(dir.path(), "retry", 0, 2, 0, &[&secret]);
    set_webhook_url(&svc, &merchant, &receiver.url()).await;

    let event = activated_event(&svc, &key, "Lovelace").await;
    until(20, "the event delivered", || async { receiver.delivered().contains_key(&event).then_some(()) })
        .await;
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

    let attempts = until(10, "three attempts recorded", || async {
        let a = deliveries(&svc, &key, &event).await;
        (a.len() == 3).then_some(a)
    })
    .await;
    assert_eq!(attempts[0]["attempt"], 3, "newest first");
    assert_eq!(attempts[0]["status_code"], 200);
    assert_eq!(attempts[0]["error"], Value::Null);
    assert_eq!(attempts[1]["status_code"], 500);
    assert_eq!(attempts[2]["attempt"], 1);
    assert!(attempts[2]["error"].as_str().unwrap().contains("500"));
    assert!(attempts.iter().all(|a| a["at"].as_str().unwrap().ends_with('Z')));

    // Deliberate redelivery: a new attempt, same webhook-id.
    let r =
        svc.signed(&key, Method::POST, &format!("/v1/events/{event}/redeliver"), b"").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    until(10, "the redelivery", || async { (receiver.delivered().get(&event) == Some(&2)).then_some(()) })
        .await;
    until(10, "four attempts recorded", || async {
        (deliveries(&svc, &key, &event).await.len() == 4).then_some(())
    })
    .await;

    // Another merchant's event is not found, for both routes.
    let (_, other_key, _) = svc.merchant("Other Shop").await;
    // That merchant has no webhook_url: its event gets one "not delivered" mark and leaves the queue.
    let unsent = activated_event(&svc, &other_key, "Unsent").await;
    let marked = until(10, "the event marked as not delivered", || async {
        let a = deliveries(&svc, &other_key, &unsent).await;
        (!a.is_empty()).then_some(a)
    })
    .await;
    assert_eq!(marked.len(), 1);
    assert_eq!(marked[0]["status_code"], Value::Null);
    assert!(marked[0]["error"].as_str().unwrap().contains("no webhook_url"));
    until(10, "the queue drained", || async { (queue_depth(&svc).await == 0.0).then_some(()) }).await;
    let (status, _) = get(&svc, &other_key, &format!("/v1/events/{event}/deliveries")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let r = svc
        .signed(&other_key, Method::POST, &format!("/v1/events/{event}/redeliver"), b"")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_down_across_a_restart_gets_every_event_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("svc");
    let env =
        [("PELAGO_WEBHOOK_RETRY_SCHEDULE", "1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1")];
    let svc = Service::start(&data, &env);
    let (merchant, key, secret) = svc.merchant("Restart Shop").await;
    let port = free_port(); // nobody listens there yet
    set_webhook_url(&svc, &merchant, &format!("http://127.0.0.1:{port}/hook")).await;
    let mut events = Vec::new();
    for name in ["Down", "Lower", "Lowest"] {
        events.push(activated_event(&svc, &key, name).await);
    }
    for event in &events {
        let attempts = until(10, "a failed attempt", || async {
            let a = deliveries(&svc, &key, event).await;
            (!a.is_empty()).then_some(a)
        })
        .await;
        assert_eq!(attempts.last().unwrap()["error"], "could not connect");
        assert_eq!(attempts.last().unwrap()["status_code"], Value::Null);
    }
    assert!(svc.terminate().success());

    let receiver = Receiver::start(dir.path(), "restart", port, 0, 0, &[&secret]);
    let svc = Service::start(&data, &env);
    until(20, "every event after the restart", || async {
        let delivered = receiver.delivered();
        events.iter().all(|e| delivered.contains_key(e)).then_some(())
    })
    .await;
    events.push(activated_event(&svc, &key, "Later").await);
    until(20, "the queue drained", || async {
        let delivered = receiver.delivered();
        (events.iter().all(|e| delivered.contains_key(e)) && queue_depth(&svc).await == 0.0).then_some(())
    })
    .await;

    // A graceful restart with nothing pending sends nothing again.
    assert!(svc.terminate().success());
    let svc = Service::start(&data, &env);
    events.push(activated_event(&svc, &key, "Latest").await);
    until(20, "the last event", || async {
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
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("svc");
    let svc = Service::start(&data, &[("PELAGO_WEBHOOK_RETRY_SCHEDULE", "1,1,1")]);
    let (slow_merchant, slow_key, slow_secret) = svc.merchant("Slow Shop").await;
    let (fast_merchant, fast_key, fast_secret) = svc.merchant("Fast Shop").await;
    let slow = Receiver::start(dir.path(), "slow", 0, 0, 30, &[&slow_secret]);
    let fast = Receiver::start(dir.path(), "fast", 0, 0, 0, &[&fast_secret]);
    set_webhook_url(&svc, &slow_merchant, &slow.url()).await;
    set_webhook_url(&svc, &fast_merchant, &fast.url()).await;

    // More events than the slow merchant has delivery slots.
    let mut slow_events = Vec::new();
    for i in 0..6 {
        slow_events.push(activated_event(&svc, &slow_key, &format!("Slow{i}")).await);
    }
    let started = Instant::now();
    let fast_event = activated_event(&svc, &fast_key, "Fast").await;
    until(5, "the fast merchant's event", || async {
        fast.delivered().contains_key(&fast_event).then_some(())
    })
    .await;
    let took = started.elapsed();
    assert!(took < Duration::from_secs(3), "the other merchant's event took {took:?}");
    assert!(slow.received().is_empty(), "the slow endpoint has not answered yet");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_secret_rotation_deliveries_verify_with_either_secret() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("svc");
    let svc = Service::start(&data, &[("PELAGO_WEBHOOK_RETRY_SCHEDULE", "1,1,1")]);
    let (merchant, key, old_secret) = svc.merchant("Rotating Shop").await;
    let r = svc
        .admin(Method::POST, &format!("/admin/v1/merchants/{merchant}/webhook-secret"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let rotated: Value = r.json().await.unwrap();
    let new_secret = rotated["webhook_secret"].as_str().unwrap().to_owned();
    assert_ne!(new_secret, old_secret);

    let receiver = Receiver::start(dir.path(), "rotation", 0, 0, 0, &[&old_secret, &new_secret]);
    set_webhook_url(&svc, &merchant, &receiver.url()).await;
    let event = activated_event(&svc, &key, "Rotated").await;
    until(10, "the event delivered", || async { receiver.delivered().contains_key(&event).then_some(()) })
        .await;
    let request = receiver.received().into_iter().find(|r| r["id"] == event.as_str()).unwrap();
    assert_eq!(request["signatures"], 2, "old and new secret both sign for 24 h");
    assert_eq!(request["verified"], json!([true, true]), "verifies with the old and with the new secret");
}
