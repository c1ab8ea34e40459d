//! Runs the real `pelago-card` binary on loopback for black-box tests.
#![allow(dead_code)]

use std::{
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789";
pub const POLYFLOW_TOKEN: &str = "test-polyflow-token-0123456789";

pub struct Service {
    pub child: Child,
    pub base: String,
    pub sandbox: Option<String>,
    pub data_dir: PathBuf,
    pub http: reqwest::Client,
}

impl Service {
    /// Starts `serve --sandbox` on free ports over `data_dir`, with extra env.
    pub fn start(data_dir: &Path, env: &[(&str, &str)]) -> Service {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_pelago-card"));
        cmd.args(["serve", "--sandbox", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .env("PELAGO_SANDBOX_LISTEN", "127.0.0.1:0")
            .env("PELAGO_ADMIN_TOKEN", ADMIN_TOKEN)
            .env("PELAGO_POLYFLOW_TOKEN", POLYFLOW_TOKEN)
            .env("PELAGO_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("start pelago-card");
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
        Service { child, base, sandbox, data_dir: data_dir.to_owned(), http: reqwest::Client::new() }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn admin(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http.request(method, self.url(path)).bearer_auth(ADMIN_TOKEN)
    }

    /// SIGTERM, then waits (bounded) for the exit status.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        let pid = self.child.id() as i32;
        let _ = Command::new("kill").args(["-TERM", &pid.to_string()]).status();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            assert!(Instant::now() < deadline, "pelago-card did not exit after SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
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
    }
}
