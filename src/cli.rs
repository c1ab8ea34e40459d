//! `pelago-card request`: sends one request signed per SECURITY.md, so a
//! newcomer can call `/v1` from a shell:
//!
//! ```sh
//! export PELAGO_KEY_ID=key_... PELAGO_API_SECRET=sk_...
//! pelago-card request GET /v1/events
//! pelago-card request POST /v1/cardholders @examples/cardholder.json | jq -r .id
//! pelago-card request POST /v1/cards '{"cardholder_id":"chd_..."}' --idempotency-key k1
//! ```

use std::time::Duration;

use crate::security::signing::{self, SignedRequest};

pub struct RequestArgs {
    pub base_url: String,
    pub key_id: String,
    pub secret: String,
    pub method: String,
    pub path_and_query: String,
    pub body: Option<String>,
    pub idempotency_key: Option<String>,
}

/// The signing headers for a request (also used by tests and tools).
pub fn signing_headers(
    key_id: &str,
    secret: &str,
    method: &str,
    path_and_query: &str,
    idempotency_key: &str,
    body: &[u8],
) -> Vec<(&'static str, String)> {
    let (path, query) = path_and_query.split_once('?').unwrap_or((path_and_query, ""));
    let timestamp = pelago_storage::Timestamp::now_real().unix_seconds().to_string();
    let nonce = crate::security::random_token::<18>();
    let signature = signing::sign(
        secret,
        key_id,
        &timestamp,
        &nonce,
        &SignedRequest { method, path, query, idempotency_key, body },
    );
    vec![
        (signing::HEADER_KEY_ID, key_id.to_owned()),
        (signing::HEADER_TIMESTAMP, timestamp),
        (signing::HEADER_NONCE, nonce),
        (signing::HEADER_SIGNATURE, signature),
    ]
}

/// Sends the request; prints the status line (stderr) and the body (stdout).
/// Exit code 0 for 2xx.
pub fn request(args: RequestArgs) -> anyhow::Result<bool> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let body = match args.body.as_deref() {
        Some(b) if b.starts_with('@') => std::fs::read(&b[1..])?,
        Some(b) => b.as_bytes().to_vec(),
        None => Vec::new(),
    };
    let method = args.method.to_ascii_uppercase();
    if !args.path_and_query.starts_with('/') {
        anyhow::bail!("the path must start with / (got `{}`)", args.path_and_query);
    }
    let idem = args.idempotency_key.clone().unwrap_or_default();
    let headers = signing_headers(&args.key_id, &args.secret, &method, &args.path_and_query, &idem, &body);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async {
        let client = reqwest::Client::builder().timeout(Duration::from_secs(30)).build()?;
        let url = format!("{}{}", args.base_url.trim_end_matches('/'), args.path_and_query);
        let mut req = client.request(reqwest::Method::from_bytes(method.as_bytes())?, url);
        for (name, value) in headers {
            req = req.header(name, value);
        }
        if let Some(k) = &args.idempotency_key {
            req = req.header("idempotency-key", k);
        }
        if !body.is_empty() {
            req = req.header("content-type", "application/json").body(body);
        }
        let response = req.send().await?;
        let status = response.status();
        let body = response.bytes().await?;
        // The status line on stderr, the body on stdout: `... | jq .id` works.
        eprintln!("{} {}", status.as_u16(), status.canonical_reason().unwrap_or(""));
        let Ok(text) = std::str::from_utf8(&body) else {
            // Not text (an xlsx file): the bytes as they came, `> file.xlsx` works.
            let mut out = std::io::stdout();
            std::io::Write::write_all(&mut out, &body)?;
            std::io::Write::flush(&mut out)?;
            return Ok(status.is_success());
        };
        let pretty = serde_json::from_str::<serde_json::Value>(text)
            .ok()
            .and_then(|v| serde_json::to_string_pretty(&v).ok())
            .unwrap_or_else(|| text.to_owned());
        println!("{pretty}");
        Ok(status.is_success())
    })
}

/// `pelago-card billing run --period YYYY-MM`: triggers the run on the server
/// and draws its progress until it completes.
pub fn billing_run(base_url: &str, admin_token: &str, period: &str) -> anyhow::Result<bool> {
    use std::io::Write;
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async {
        let client = reqwest::Client::builder().timeout(Duration::from_secs(30)).build()?;
        let base = base_url.trim_end_matches('/');
        let started = client
            .post(format!("{base}/admin/v1/billing/runs"))
            .bearer_auth(admin_token)
            .json(&serde_json::json!({"period": period}))
            .send()
            .await?;
        if !started.status().is_success() {
            println!("{} {}", started.status().as_u16(), started.text().await?);
            return Ok(false);
        }
        loop {
            let run: serde_json::Value = client
                .get(format!("{base}/admin/v1/billing/runs/{period}"))
                .bearer_auth(admin_token)
                .send()
                .await?
                .json()
                .await?;
            let done = run["status"] == "completed";
            let seen = run["cards_total"].as_u64().unwrap_or(0);
            let expected = run["cards_expected"].as_u64().unwrap_or(0).max(seen).max(1);
            let width = 30usize;
            let filled = if done { width } else { (seen as usize * width / expected as usize).min(width) };
            print!(
                "\r[{}{}] {} cards  charged {}  unpaid {}  skipped {}  {}",
                "#".repeat(filled),
                ".".repeat(width - filled),
                seen,
                run["charged"],
                run["unpaid"],
                run["skipped"],
                run["status"].as_str().unwrap_or("")
            );
            std::io::stdout().flush()?;
            if done {
                println!();
                return Ok(true);
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    })
}
