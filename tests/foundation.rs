//! The foundation over real HTTP against the real binary: health, the error
//! contract of API.md §1, configuration errors, supervision through the crash
//! helper, the live-actor cap, and graceful shutdown.

mod common;

use std::process::Command;

use common::{ADMIN_TOKEN, Json, Service, seed};
use pelago_actors::card::CardStatus;
use pelago_storage::{CardId, ChannelId, MerchantId, Store, StoreConfig};
use reqwest::{Method, StatusCode};
use serde_json::Value;

/// `n` processing cards of a balance of 1234, straight into the store of `data_dir`.
fn seed_cards(data_dir: &std::path::Path, n: usize) -> Vec<CardId> {
    let (merchant, channel) = (MerchantId::generate(), ChannelId::generate());
    seed::cards(data_dir, (&merchant, &channel), n, CardStatus::Processing, |c| c.balance_minor = 1234)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_sandbox_answers_health_readiness_and_metrics() {
    let svc = Service::temp(&[]);
    assert!(svc.sandbox.is_some(), "--sandbox starts the sandbox upstreams");
    let health = svc.http.get(svc.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    assert!(health.headers().contains_key("x-request-id"));
    assert_eq!(health.json::<Value>().await.unwrap(), serde_json::json!({"status": "ok"}));
    let ready = svc.http.get(svc.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), StatusCode::OK);
    let echoed = svc.http.get(svc.url("/healthz")).header("x-request-id", "trace-me-1").send().await.unwrap();
    assert_eq!(echoed.headers()["x-request-id"], "trace-me-1");
    let metrics = svc.http.get(svc.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("pelago_http_requests_total{method=\"GET\",route=\"/healthz\",status=\"200\"}"));
    assert!(metrics.contains("pelago_http_request_duration_seconds_bucket{route=\"/healthz\""));
    assert!(metrics.contains("pelago_live_card_actors"));
    assert!(metrics.contains("pelago_store_flushes_total"));
    assert!(metrics.contains("pelago_store_flushes_delayed_total"));
    assert!(metrics.contains("pelago_webhook_queue_depth"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_error_contract_of_api_md_section_1() {
    let svc = Service::temp(&[]);
    let error_of = |v: &Value| v["error"]["code"].as_str().unwrap_or_default().to_owned();

    // Credentials before routing: 401 whatever the path or method.
    for (method, path) in
        [(Method::GET, "/admin/v1/nowhere"), (Method::DELETE, "/debug/v1/actors"), (Method::GET, "/v1/cards")]
    {
        let r = svc.http.request(method, svc.url(path)).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{path}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(error_of(&body), "authentication_failed");
        assert!(body["error"]["request_id"].is_string());
    }
    let wrong_token =
        svc.http.get(svc.url("/debug/v1/actors")).bearer_auth("nope-nope-nope-nope").send().await.unwrap();
    assert_eq!(wrong_token.status(), StatusCode::UNAUTHORIZED);

    // Authenticated: unknown path 404, wrong method 405 with Allow.
    let (status, body) = svc.admin_json(Method::GET, "/admin/v1/nowhere", None).await;
    assert_eq!((status, body.code()), (StatusCode::NOT_FOUND, "not_found"));
    let r = svc.admin(Method::DELETE, "/debug/v1/actors").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(r.headers()["allow"], "GET, HEAD");
    let r = svc.http.get(svc.url("/definitely/not/here")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let r = svc.http.post(svc.url("/healthz")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);

    // 70 KiB body: 413, with or without a Content-Length.
    let big = vec![b'x'; 70 * 1024];
    let r = svc.admin(Method::POST, "/debug/v1/actors").body(big.clone()).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(error_of(&r.json().await.unwrap()), "payload_too_large");
    // Chunked, no Content-Length: the bound holds while reading.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = svc.base.trim_start_matches("http://").to_owned();
    let mut tcp = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let head = format!(
        "POST /debug/v1/actors HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {ADMIN_TOKEN}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    );
    tcp.write_all(head.as_bytes()).await.unwrap();
    for chunk in big.chunks(8 * 1024) {
        let framed = [format!("{:x}\r\n", chunk.len()).as_bytes(), chunk, b"\r\n"].concat();
        if tcp.write_all(&framed).await.is_err() {
            break; // the server may answer and close before the end
        }
    }
    let _ = tcp.write_all(b"0\r\n\r\n").await;
    let mut answer = Vec::new();
    let _ = tcp.read_to_end(&mut answer).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 413"), "{}", answer.lines().next().unwrap_or_default());
}

#[test]
fn a_bad_setting_stops_the_start_with_one_line_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_pelago-card"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .env("PELAGO_RATE_LIMIT", "lots")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("PELAGO_RATE_LIMIT"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_crash_helper_restarts_the_card_actor_from_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let card = seed_cards(dir.path(), 1).remove(0);
    let svc = Service::start(dir.path(), &[]);
    let path = format!("/debug/v1/actors/cards/{card}");

    let before = svc.admin_get(&path).await;
    assert_eq!(before["restarts"], 0);
    assert_eq!(before["state"]["balance_minor"], 1234);

    let (armed_status, _) = svc.admin_json(Method::POST, &format!("{path}/crash"), None).await;
    assert_eq!(armed_status, StatusCode::ACCEPTED);
    let (status, crashed) = svc.admin_json(Method::GET, &path, None).await;
    assert_eq!((status, crashed.code()), (StatusCode::SERVICE_UNAVAILABLE, "unavailable"), "{crashed}");

    let after = svc.admin_get(&path).await;
    assert_eq!(after["restarts"], 1);
    assert_eq!(after["live"], true);
    assert_eq!(after["state"]["balance_minor"], 1234, "state intact");
    assert_eq!(svc.admin_get("/debug/v1/actors").await["restarts_total"], 1);

    let unknown = format!("/debug/v1/actors/cards/{}", CardId::generate());
    assert_eq!(svc.admin_json(Method::GET, &unknown, None).await.0, StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn touching_100k_cards_stays_under_the_live_cap_and_passivated_cards_come_back() {
    let dir = tempfile::tempdir().unwrap();
    let ids = seed_cards(dir.path(), 100_000);
    let cap = 1_000;
    // 100k operator requests from one address: above the per-address limit.
    let svc = Service::start(
        dir.path(),
        &[("PELAGO_MAX_LIVE_ACTORS", "1000"), ("PELAGO_IP_RATE_LIMIT", "100000,100000")],
    );
    let svc = &svc;
    let mut max_seen = 0;
    for chunk in ids.chunks(5_000) {
        let calls = chunk.iter().map(|id| async move {
            let (status, _) =
                svc.admin_json(Method::GET, &format!("/debug/v1/actors/cards/{id}"), None).await;
            assert_eq!(status, StatusCode::OK);
        });
        futures::stream::iter(calls).buffer_unordered(32).collect::<Vec<_>>().await;
        let summary: Value = svc.admin_json(Method::GET, "/debug/v1/actors", None).await.1;
        let live =
            summary["cards"]["live"].as_u64().unwrap() + summary["merchants"]["live"].as_u64().unwrap();
        max_seen = max_seen.max(live);
        assert!(live <= cap, "{live} live actors over the cap of {cap}");
    }
    let summary: Value = svc.admin_json(Method::GET, "/debug/v1/actors", None).await.1;
    assert!(summary["passivated_total"].as_u64().unwrap() >= 99_000);
    // The first card was passivated long ago; it comes back with its state.
    let back: Value =
        svc.admin_json(Method::GET, &format!("/debug/v1/actors/cards/{}", ids[0]), None).await.1;
    assert_eq!(back["was_live"], false);
    assert_eq!(back["state"]["balance_minor"], 1234);
    assert!(max_seen > 0);
}

use futures::StreamExt;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_and_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    let svc = Service::start(dir.path(), &[]);
    assert_eq!(svc.http.get(svc.url("/readyz")).send().await.unwrap().status(), StatusCode::OK);
    let status = svc.terminate();
    assert!(status.success(), "exit status {status:?}");
    // The store was released and flushed: it opens again at once.
    Store::open(&dir.path().join("db"), &StoreConfig::default()).expect("store reopens after a clean exit");
    let _ = ADMIN_TOKEN;
}
