//! Sandbox and live data never mix (SANDBOX.md; issue 18 H1), token files are
//! held to the env var's rule (L1), and the data dir is private (L4): each
//! rule over the real binary.

mod common;

use std::{os::unix::fs::PermissionsExt, path::Path};

use common::{ADMIN_TOKEN, Json, Mode, Service, UNSET};
use pelago_actors::routing::{ChannelRecord, ChannelStatus};
use pelago_storage::{Store, StoreConfig, Tree, WriteBatch};
use reqwest::StatusCode;
use serde_json::json;

/// A refused start: exit code 2 and one line on stderr (logging off), which is returned.
fn refused(mode: Mode, dir: &Path, env: &[(&str, &str)]) -> String {
    let env: Vec<(&str, &str)> = env.iter().copied().chain([("PELAGO_LOG", "off")]).collect();
    let (code, stderr) = Service::refused_start(mode, dir, &env);
    assert_eq!(code, Some(2), "{stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "one line: {stderr}");
    stderr.trim_end().to_owned()
}

/// Rewrites the first channel record of a stopped service's store.
fn edit_first_channel(dir: &Path, edit: impl FnOnce(&mut ChannelRecord)) -> String {
    let store = Store::open(&dir.join("db"), &StoreConfig::default()).unwrap();
    let (key, mut channel) = store.iter::<ChannelRecord>().next().unwrap().unwrap();
    edit(&mut channel);
    let mut batch = WriteBatch::new();
    batch.put(&key, &channel).unwrap();
    let _ = store.commit(batch).unwrap();
    store.flush_blocking().unwrap();
    channel.id.to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_dir_starts_only_in_the_mode_it_was_created_in() {
    let root = tempfile::tempdir().unwrap();
    let live = root.path().join("live");
    let svc = Service::start_in(Mode::Live, &live, &[]);
    assert!(svc.sandbox.is_none(), "no simulators in live mode");
    assert!(svc.terminate().success());
    let line = refused(Mode::Sandbox, &live, &[]);
    assert!(line.contains("created in live mode") && line.contains("in sandbox mode"), "{line}");
    assert!(line.contains(&live.display().to_string()), "{line}");
    assert!(!live.join("sandbox").exists(), "the refused start started no simulator");
    // Still a live data dir: it starts live.
    Service::start_in(Mode::Live, &live, &[]).terminate();

    let sandbox = root.path().join("sandbox");
    assert!(Service::start(&sandbox, &[]).terminate().success());
    let line = refused(Mode::Live, &sandbox, &[]);
    assert!(line.contains("created in sandbox mode") && line.contains("in live mode"), "{line}");

    // A gateway URL in sandbox mode stops the start, even on a fresh data dir.
    let line = refused(
        Mode::Sandbox,
        &root.path().join("fresh"),
        &[("PELAGO_GATEWAY_URL", "https://gateway.example.com")],
    );
    assert!(line.contains("PELAGO_GATEWAY_URL") && line.contains("sandbox"), "{line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_http_channel_is_active_in_sandbox_mode() {
    let (_root, dir) = common::temp_data();
    let svc = Service::start(&dir, &[]);
    let real = json!({"name": "Real", "kind": "http", "base_url": "https://issuer.example.com",
                      "api_key": "real-issuer-key-1", "webhook_secret": "real-issuer-secret-1"});
    let (status, e) = svc.admin_post("/admin/v1/channels", real).await;
    assert_eq!((status, e.param()), (StatusCode::BAD_REQUEST, Some("kind")), "{e}");
    let channels = svc.admin_get("/admin/v1/channels").await;
    assert_eq!(channels.count("data"), 1, "only the Sandbox Issuer: {channels}");
    assert!(svc.terminate().success());

    // A disabled http channel in a sandbox data dir (as one made before these
    // rules could hold): the start goes on, but it cannot be activated.
    let id = edit_first_channel(&dir, |c| {
        c.kind = "http".into();
        c.status = ChannelStatus::Disabled;
    });
    let svc = Service::start(&dir, &[]);
    let (status, e) = svc.admin_patch(&format!("/admin/v1/channels/{id}"), json!({"status": "active"})).await;
    assert_eq!((status, e.code()), (StatusCode::CONFLICT, "invalid_state"), "{e}");
    let got = svc.admin_get(&format!("/admin/v1/channels/{id}")).await;
    assert_eq!(got["status"], "disabled", "nothing written");
    assert!(svc.terminate().success());

    // Active: the start stops, naming the channel.
    edit_first_channel(&dir, |c| c.status = ChannelStatus::Active);
    let line = refused(Mode::Sandbox, &dir, &[]);
    assert!(line.contains(&id) && line.contains("http"), "{line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_start_never_loads_a_clock_offset() {
    let (_root, dir) = common::temp_data();
    Service::start_in(Mode::Live, &dir, &[]).terminate();
    // An offset five years ahead in the store (as a sandbox clock helper left it).
    let store = Store::open(&dir.join("db"), &StoreConfig::default()).unwrap();
    let mut batch = WriteBatch::new();
    let five_years_ms: i64 = 5 * 365 * 86_400_000;
    batch.put_raw(Tree::Meta, "clock_offset_ms", five_years_ms.to_be_bytes().to_vec());
    let _ = store.commit(batch).unwrap();
    store.flush_blocking().unwrap();
    drop(store);

    let svc = Service::start_in(Mode::Live, &dir, &[]);
    let merchant = svc.admin_get(&format!("/admin/v1/merchants/{}", svc.merchant("Clock").await.id)).await;
    let created = merchant.str("created_at");
    let created = chrono::DateTime::parse_from_rfc3339(created).unwrap().timestamp();
    let now = chrono::Utc::now().timestamp();
    assert!((now - created).abs() < 120, "created_at follows real time, not the offset: {merchant}");
    // The clock helper is sandbox-only.
    let five_years_on = common::clock::rfc3339(chrono::Utc::now() + chrono::Duration::days(5 * 365));
    let (status, _) = svc.admin_post("/admin/v1/test_helpers/clock", json!({"now": five_years_on})).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

/// The gateway account of a master-account merchant in sandbox mode.
fn platform_sub_account(merchant_id: &str) -> String {
    format!("pelago_{merchant_id}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulator_control_endpoints_need_pelagos_credentials() {
    let svc = Service::temp(&[]);
    let sandbox = svc.sandbox.clone().expect("sandbox upstreams");
    let m = svc.merchant("Control").await;
    let merchant_id = m.id.clone();
    // The merchant's deposit address exists, so its gateway account is registered.
    let (status, _) = m.post("/v1/deposit-addresses", json!({"currency": "USD", "network": "TRON"})).await;
    assert_eq!(status, StatusCode::CREATED);
    let deposit = json!({"merchant_id": platform_sub_account(&merchant_id),
                         "amount": {"value": 50_000_000, "currency": "USD"}, "network": "TRON"});
    let http = reqwest::Client::new();
    let url = format!("{sandbox}/gateway/control/deposits");
    let anonymous = http.post(&url).json(&deposit).send().await.unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    // Neither the operator's token nor a guess opens it.
    for token in [ADMIN_TOKEN, "guessed-control-token-0123456789"] {
        let r = http.post(&url).bearer_auth(token).json(&deposit).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{token}");
    }
    // Re-pointing an account's callbacks or key is refused alike.
    let r = http
        .post(format!("{sandbox}/gateway/control/accounts"))
        .json(&json!({"merchant_id": platform_sub_account(&merchant_id), "api_key": "attacker-key-000000",
                      "callback_url": "http://127.0.0.1:9/cb"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = http
        .post(format!("{sandbox}/channel/control/cards/card_x/transactions"))
        .json(&json!({"amount": {"value": 1, "currency": "USD"}, "merchant_name": "m", "mcc": "5812",
                      "status": "posted"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(m.available().await, 0, "nothing credited");

    // Pelago's own adapter sends the credentials: the test helper works.
    let (status, body) = m.deposit_of(2_500, "USD").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(m.available().await, 2_500);
    common::ledger_balanced(&svc).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_token_file_stops_the_start() {
    let root = tempfile::tempdir().unwrap();
    for (n, file) in ["admin-token", "polyflow-token"].into_iter().enumerate() {
        let dir = root.path().join(format!("d{n}"));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(file), "x9!\n").unwrap();
        let env = [("PELAGO_ADMIN_TOKEN", UNSET), ("PELAGO_POLYFLOW_TOKEN", UNSET)];
        let line = refused(Mode::Sandbox, &dir, &env);
        assert!(line.contains(file) && line.contains("at least 16"), "{line}");
        assert!(!line.contains("x9!"), "the token is not shown: {line}");
    }
    // A generated token file is long enough and is used on the next start.
    let dir = root.path().join("generated");
    let env = [("PELAGO_ADMIN_TOKEN", UNSET)];
    let svc = Service::start_in(Mode::Sandbox, &dir, &env);
    let token = std::fs::read_to_string(dir.join("admin-token")).unwrap();
    assert!(token.trim().len() >= 16);
    let r = svc.http.get(svc.url("/admin/v1/channels")).bearer_auth(token.trim()).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
}

/// Mode bits of every directory and file under `dir` (itself included) that
/// others (group or world) may use.
fn open_to_others(dir: &Path) -> Vec<(String, u32)> {
    let mode = |p: &Path| std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o777;
    let mut found = vec![];
    if mode(dir) != 0o700 {
        found.push((dir.display().to_string(), mode(dir)));
    }
    let open = common::paths_under(dir).into_iter().filter(|p| mode(p) & 0o077 != 0);
    found.extend(open.map(|p| (p.display().to_string(), mode(&p))));
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_data_dir_is_private_to_its_owner() {
    let (root, dir) = common::temp_data();
    let svc = Service::start(&dir, &[]);
    // Cardholder PII in the store, and a flush, so sled has written its files.
    let m = svc.merchant("Private").await;
    let (status, _) = m.cardholder("Lovelace").await;
    assert_eq!(status, StatusCode::CREATED);
    assert!(dir.join("db").is_dir() && dir.join("sandbox").is_dir());
    assert_eq!(open_to_others(&dir), vec![], "0700 directories, 0600 files");
    assert!(svc.terminate().success());

    // A data dir from before the rule (0755, a 0644 file) is tightened at start.
    let old = root.path().join("old");
    std::fs::create_dir_all(&old).unwrap();
    std::fs::set_permissions(&old, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(old.join("notes.txt"), "kept").unwrap();
    std::fs::set_permissions(old.join("notes.txt"), std::fs::Permissions::from_mode(0o644)).unwrap();
    let svc = Service::start(&old, &[]);
    assert_eq!(open_to_others(&old), vec![]);
    assert_eq!(std::fs::read_to_string(old.join("notes.txt")).unwrap(), "kept");
    drop(svc);
}
