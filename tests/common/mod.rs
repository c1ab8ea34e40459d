//! Runs the real `pelago-card` binary on loopback for black-box tests.
#![allow(dead_code)]

pub mod client;
pub mod clock;
pub mod far_dates;
pub mod marketplace;
pub mod readme;
pub mod receiver;
pub mod rng;
pub mod seed;
pub mod simulators;

#[allow(unused_imports)]
pub use client::{Json, Merchant, eventually, order_updated, secs, when, with};

use std::{
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

/// A 1 s upstream timeout: unknown outcomes come quickly.
pub const FAST_UPSTREAMS: (&str, &str) = ("PELAGO_UPSTREAM_TIMEOUT_MS", "1000");
pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789";
pub const POLYFLOW_TOKEN: &str = "test-polyflow-token-0123456789";

pub struct Service {
    pub child: Child,
    pub base: String,
    pub sandbox: Option<String>,
    pub data_dir: PathBuf,
    pub http: reqwest::Client,
    /// The temporary directory holding `data_dir`, removed after the process ([`Service::temp`]).
    temp: Option<tempfile::TempDir>,
}

impl Service {
    /// Starts `serve --sandbox` on free ports over `data_dir`, with extra env
    /// (the value [`UNSET`] removes that variable).
    pub fn start(data_dir: &Path, env: &[(&str, &str)]) -> Service {
        Self::start_in(Mode::Sandbox, data_dir, env)
    }

    /// Starts `serve` (with `--sandbox` in sandbox mode) on free ports over `data_dir`.
    pub fn start_in(mode: Mode, data_dir: &Path, env: &[(&str, &str)]) -> Service {
        let mut child = command(mode, data_dir, env)
            .stdout(Stdio::piped())
            .stderr(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(data_dir.with_extension("log"))
                    .expect("log file"),
            )
            .spawn()
            .expect("start pelago-card");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut lines = BufReader::new(stdout).lines();
        let mut sandbox = None;
        let base = loop {
            let line = lines.next().expect("pelago-card exited before listening").expect("read stdout");
            if let Some(url) = line.strip_prefix("pelago-card sandbox upstreams on ") {
                sandbox = Some(url.to_owned());
            }
            if let Some(url) = line.strip_prefix("pelago-card listening on ") {
                break url.to_owned();
            }
        };
        // Keep draining stdout so the child never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        let _ = rustls::crypto::ring::default_provider().install_default();
        Service {
            child,
            base,
            sandbox,
            data_dir: data_dir.to_owned(),
            http: reqwest::Client::new(),
            temp: None,
        }
    }

    /// Starts `serve --sandbox` over `data_dir` with a 1 s upstream timeout
    /// ([`FAST_UPSTREAMS`]) and `failpoint` armed: the crash tests' start.
    pub fn armed(data_dir: &Path, failpoint: &str) -> Service {
        Self::start(data_dir, &[FAST_UPSTREAMS, ("PELAGO_FAILPOINTS", failpoint)])
    }

    /// Starts `serve --sandbox` over a fresh temporary data dir that lives as long as the service.
    pub fn temp(env: &[(&str, &str)]) -> Service {
        let temp = tempfile::tempdir().expect("a temporary directory");
        let mut svc = Self::start(&temp.path().join("data"), env);
        svc.temp = Some(temp);
        svc
    }

    /// Runs a start that must be refused: its exit code and stderr, within 60 s.
    pub fn refused_start(mode: Mode, data_dir: &Path, env: &[(&str, &str)]) -> (Option<i32>, String) {
        let mut child = command(mode, data_dir, env)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start pelago-card");
        if exited(&mut child, Duration::from_secs(60)).is_none() {
            let _ = child.kill();
            let _ = child.wait();
            panic!("pelago-card started instead of refusing");
        }
        let out = child.wait_with_output().expect("stderr");
        (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// An admin request: with `ADMIN_TOKEN`, or the token file the service generated.
    pub fn admin(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let generated = std::fs::read_to_string(self.data_dir.join("admin-token")).ok();
        self.http
            .request(method, self.url(path))
            .bearer_auth(generated.as_deref().map_or(ADMIN_TOKEN, str::trim))
    }

    /// SIGTERM, then waits (bounded) for the exit status.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        self.stop()
    }

    /// Stops the service (SIGTERM, a clean exit): what it left at rest.
    pub fn at_rest(mut self) -> AtRest {
        let status = self.stop();
        assert!(status.success(), "{status:?}");
        let log = std::fs::read(self.data_dir.with_extension("log")).expect("the service's log");
        AtRest { files: all_bytes_under(&self.data_dir), log }
    }

    fn stop(&mut self) -> std::process::ExitStatus {
        let pid = self.child.id() as i32;
        let _ = Command::new("kill").args(["-TERM", &pid.to_string()]).status();
        exited(&mut self.child, Duration::from_secs(20)).expect("pelago-card did not exit after SIGTERM")
    }

    /// Everything the service logged so far (stderr).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.data_dir.with_extension("log")).unwrap_or_default()
    }

    /// A request signed per SECURITY.md with `key`.
    pub fn signed(
        &self,
        key: &Key,
        method: reqwest::Method,
        path_and_query: &str,
        body: &[u8],
    ) -> reqwest::RequestBuilder {
        self.signed_with_key(key, method, path_and_query, body, "")
    }

    /// A signed request carrying an Idempotency-Key (signed with it).
    pub fn signed_with_key(
        &self,
        key: &Key,
        method: reqwest::Method,
        path_and_query: &str,
        body: &[u8],
        idempotency_key: &str,
    ) -> reqwest::RequestBuilder {
        let (path, query) = path_and_query.split_once('?').unwrap_or((path_and_query, ""));
        let ts = pelago_storage::Timestamp::now_real().unix_seconds().to_string();
        let nonce = format!("n-{}", pelago_storage::ids::new_ulid());
        let sig = pelago_card::security::signing::sign(
            &key.secret,
            &key.key_id,
            &ts,
            &nonce,
            &pelago_card::security::signing::SignedRequest {
                method: method.as_str(),
                path,
                query,
                idempotency_key,
                body,
            },
        );
        let request = self
            .http
            .request(method, self.url(path_and_query))
            .header("x-pelago-key-id", &key.key_id)
            .header("x-pelago-timestamp", ts)
            .header("x-pelago-nonce", nonce)
            .header("x-pelago-signature", sig)
            .body(body.to_vec());
        if idempotency_key.is_empty() { request } else { request.header("idempotency-key", idempotency_key) }
    }

    /// Waits (bounded) for the process to exit by itself, e.g. at a failpoint.
    pub fn wait_exit(mut self, within: Duration) -> std::process::ExitStatus {
        exited(&mut self.child, within)
            .unwrap_or_else(|| panic!("pelago-card did not exit within {within:?}"))
    }

    /// Waits (bounded by `within`) for the process to die at an armed failpoint.
    pub fn dies(self, within: Duration, what: &str) {
        let status = self.wait_exit(within);
        assert!(!status.success(), "{what}: {status:?}");
    }

    /// A signed JSON POST (carrying `idempotency_key` unless empty) that must
    /// meet an armed failpoint: no answer, then the process dies (bounded).
    pub async fn aborts(self, key: &Key, path: &str, body: &serde_json::Value, idempotency_key: &str) {
        let bytes = serde_json::to_vec(body).unwrap();
        let answer = self
            .signed_with_key(key, reqwest::Method::POST, path, &bytes, idempotency_key)
            .header("content-type", "application/json")
            .send()
            .await;
        assert!(answer.is_err(), "{path}: answered before the failpoint: {answer:?}");
        self.dies(Duration::from_secs(30), "aborted at the failpoint");
    }

    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        drop(self.temp.take());
    }
}

/// Waits (polling, bounded by `within`) for `child` to exit: its status, or
/// `None` while it still runs.
pub fn exited(child: &mut Child, within: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return Some(status);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Sandbox,
    Live,
}

/// `pelago-card serve` on free ports over `data_dir`, test tokens, extra env.
fn command(mode: Mode, data_dir: &Path, env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_pelago-card"));
    cmd.arg("serve");
    if mode == Mode::Sandbox {
        cmd.arg("--sandbox");
    }
    cmd.args(["--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir)
        .env("PELAGO_SANDBOX_LISTEN", "127.0.0.1:0")
        .env("PELAGO_ADMIN_TOKEN", ADMIN_TOKEN)
        .env("PELAGO_POLYFLOW_TOKEN", POLYFLOW_TOKEN)
        .env("PELAGO_LOG", "debug");
    for (k, v) in env {
        if *v == UNSET {
            cmd.env_remove(k);
        } else {
            cmd.env(k, v);
        }
    }
    cmd
}

/// As a value in a start's env: the variable is removed (e.g. a token, so
/// the one in the data dir's file is used).
pub const UNSET: &str = "\0unset";

#[derive(Clone, Debug)]
pub struct Key {
    pub key_id: String,
    pub secret: String,
}

/// What a stopped service left: every file of its data dir, and its log.
pub struct AtRest {
    pub files: Vec<(PathBuf, Vec<u8>)>,
    pub log: Vec<u8>,
}

impl AtRest {
    /// Asserts that no `secret` is in clear in any file nor in the log.
    pub fn assert_nowhere<S: AsRef<[u8]>>(&self, secrets: &[S]) {
        let holds = |bytes: &[u8], s: &[u8]| bytes.windows(s.len()).any(|w| w == s);
        for secret in secrets.iter().map(AsRef::as_ref) {
            for (path, bytes) in &self.files {
                assert!(!holds(bytes, secret), "a secret is in clear in {}", path.display());
            }
            assert!(!holds(&self.log, secret), "a secret is in clear in the log");
        }
    }

    pub fn log_text(&self) -> String {
        String::from_utf8_lossy(&self.log).into_owned()
    }
}

/// A fresh temporary directory (removed when the guard drops) and the path
/// of a data dir inside it, for tests that restart the service over it.
pub fn temp_data() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let data = dir.path().join("data");
    (dir, data)
}

/// What an upstream adapter answered when the test expects it done.
pub fn done<T>(outcome: pelago_actors::ports::Outcome<T>) -> T {
    use pelago_actors::ports::Outcome;
    match outcome {
        Outcome::Done(t) => t,
        Outcome::Declined { reason } => panic!("declined: {reason}"),
        Outcome::Unknown { detail } => panic!("unknown: {detail}"),
    }
}

/// Every directory and file under `dir`, recursively (none if it cannot be read).
pub fn paths_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for p in std::fs::read_dir(&d).into_iter().flatten().flatten().map(|entry| entry.path()) {
            if p.is_dir() {
                stack.push(p.clone());
            }
            out.push(p);
        }
    }
    out
}

/// Every file under `dir`, recursively.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    paths_under(dir).into_iter().filter(|p| !p.is_dir()).collect()
}

/// Every file under `dir`, as bytes, for secret scans.
pub fn all_bytes_under(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    files_under(dir).into_iter().filter_map(|p| std::fs::read(&p).ok().map(|bytes| (p, bytes))).collect()
}

/// A signed JSON request; the status and the body (`Null` if not JSON).
pub async fn send(
    svc: &Service,
    key: &Key,
    method: reqwest::Method,
    path: &str,
    body: Option<&serde_json::Value>,
) -> (reqwest::StatusCode, serde_json::Value) {
    let bytes = body.map(|b| serde_json::to_vec(b).unwrap()).unwrap_or_default();
    let r = svc
        .signed(key, method, path, &bytes)
        .header("content-type", "application/json")
        .send()
        .await
        .unwrap();
    (r.status(), r.json().await.unwrap_or(serde_json::Value::Null))
}

/// A signed JSON POST carrying `idempotency_key`: its status and body.
pub async fn send_once(
    svc: &Service,
    key: &Key,
    path: &str,
    body: &serde_json::Value,
    idempotency_key: &str,
) -> (reqwest::StatusCode, serde_json::Value) {
    let bytes = serde_json::to_vec(body).unwrap();
    let r = svc
        .signed_with_key(key, reqwest::Method::POST, path, &bytes, idempotency_key)
        .header("content-type", "application/json")
        .send()
        .await
        .unwrap();
    (r.status(), r.json().await.unwrap_or(serde_json::Value::Null))
}

/// Every item of a signed list (`GET path`, pages of 100 followed by
/// `starting_after` until `has_more` is false), oldest page first as listed.
pub async fn list_all(svc: &Service, key: &Key, path: &str) -> Vec<serde_json::Value> {
    let joiner = if path.contains('?') { '&' } else { '?' };
    let mut all = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page_path = match &after {
            Some(a) => format!("{path}{joiner}limit=100&starting_after={a}"),
            None => format!("{path}{joiner}limit=100"),
        };
        let (status, page) = send(svc, key, reqwest::Method::GET, &page_path, None).await;
        assert_eq!(status, reqwest::StatusCode::OK, "{page_path}: {page}");
        let data = page["data"].as_array().unwrap_or_else(|| panic!("{page_path}: {page}")).clone();
        after = data.last().and_then(|item| item["id"].as_str()).map(str::to_owned);
        all.extend(data);
        if page["has_more"] != true {
            return all;
        }
    }
}

/// A valid cardholder of `PELAGO_VIRTUAL_USD` (last name `Reject` / `Pending` steer the sandbox).
pub fn cardholder_body(last_name: &str) -> serde_json::Value {
    serde_json::json!({
        "card_name": "PELAGO_VIRTUAL_USD", "reference": format!("user-{last_name}"),
        "first_name": "Ada", "last_name": last_name, "email": "ada@example.com",
        "phone": "+6591234567", "date_of_birth": "1990-12-10", "nationality": "SG",
        "id_document": {"type": "passport", "number": "E1234567"},
        "address": {"line1": "1 Main St", "line2": null, "city": "Singapore", "state": null,
                    "postal_code": "018989", "country": "SG"},
    })
}

/// Polls the operator route `path` (a settlement or reconciliation run) until
/// the run it answers is `completed`, 30 s at most; returns it.
pub async fn completed_run(svc: &Service, path: &str) -> serde_json::Value {
    svc.admin_poll(path, secs(30), |run| run["status"] == "completed").await
}

/// The ledger check is balanced and no available balance is negative.
/// The merchant's available balance in its first currency (0 if none).
pub async fn available(svc: &Service, key: &Key) -> i64 {
    let (_, b) = send(svc, key, reqwest::Method::GET, "/v1/balance", None).await;
    b["balances"][0]["available"].as_i64().unwrap_or(0)
}

/// `GET /admin/v1/ledger/check`: asserts it is balanced with no negative
/// available balance, and returns the report for further checks.
pub async fn ledger_balanced(svc: &Service) -> serde_json::Value {
    let check: serde_json::Value =
        svc.admin(reqwest::Method::GET, "/admin/v1/ledger/check").send().await.unwrap().json().await.unwrap();
    assert_eq!(check["balanced"], true, "{check}");
    assert_eq!(check["negative_available"], serde_json::json!([]), "{check}");
    check
}

/// Runs the settlement of `date` (202) and waits until it is completed.
pub async fn settle(svc: &Service, date: &str) -> serde_json::Value {
    let (status, _) = svc.admin_post("/admin/v1/settlement/runs", serde_json::json!({"date": date})).await;
    assert_eq!(status, reqwest::StatusCode::ACCEPTED);
    settlement_completed(svc, date).await
}

/// Polls `GET /admin/v1/settlement/runs/{date}` until it is completed (bounded).
pub async fn settlement_completed(svc: &Service, date: &str) -> serde_json::Value {
    completed_run(svc, &format!("/admin/v1/settlement/runs/{date}")).await
}
