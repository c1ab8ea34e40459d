//! A Standard Webhooks receiver written with the Python `standardwebhooks`
//! library (installed with pip if missing), for black-box webhook tests.
#![allow(dead_code)]

use std::{
    collections::HashMap,
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::Once,
};

use serde_json::Value;

use super::Json;

/// The receiver: verifies each request with every given secret (all must
/// pass), answers 500 to the first `fail_first` requests of each webhook-id,
/// optionally hangs, and appends one JSON line per request to the log.
pub const RECEIVER: &str = r#"
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

pub fn ensure_standardwebhooks() {
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

pub struct Receiver {
    child: Child,
    pub port: u16,
    log: PathBuf,
}

impl Receiver {
    /// Starts on `port` (0: any free one).
    pub fn start(
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

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/hook", self.port)
    }

    /// Every request received so far.
    pub fn received(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// Requests answered 2xx, counted by webhook-id.
    pub fn delivered(&self) -> HashMap<String, usize> {
        let mut counts = HashMap::new();
        for r in self.received().iter().filter(|r| r["status"] == 200) {
            *counts.entry(r.str("id").to_owned()).or_default() += 1;
        }
        counts
    }

    /// Waits (polling, bounded by `within`) until every one of `events` was delivered (answered 2xx).
    pub async fn wait_delivered<S: AsRef<str>>(&self, events: &[S], within: std::time::Duration) {
        super::eventually("every event delivered", within, async || {
            let delivered = self.delivered();
            let missing: Vec<&str> =
                events.iter().map(AsRef::as_ref).filter(|e| !delivered.contains_key(*e)).collect();
            if missing.is_empty() { Ok(()) } else { Err(missing) }
        })
        .await
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}
