//! The front door against abuse (issue 18 M4, M5, M6, L3), over real sockets:
//! slow clients are cut off while others are served, the connection cap,
//! per-address rate limits for traffic not authenticated as a merchant,
//! retention of callback receipts and delivery attempts, webhook egress
//! refused to internal addresses, and `/details` marked `no-store`.

mod common;

use std::time::{Duration, Instant};

use common::{Json, Key, Merchant, Service, eventually, secs, when};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

fn addr(svc: &Service) -> String {
    svc.base.strip_prefix("http://").unwrap().to_owned()
}

/// Reads until the server closes the connection; panics after `bound`.
/// Returns what was read and how long the close took from `since`.
async fn read_until_closed(conn: &mut TcpStream, since: Instant, bound: Duration) -> (String, Duration) {
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout_at((since + bound).into(), conn.read(&mut buf)).await {
            Err(_) => panic!("still open after {bound:?}; read so far: {}", String::from_utf8_lossy(&seen)),
            Ok(Ok(0)) | Ok(Err(_)) => return (String::from_utf8_lossy(&seen).into_owned(), since.elapsed()),
            Ok(Ok(n)) => seen.extend_from_slice(&buf[..n]),
        }
    }
}

async fn deposit_event(m: &Merchant<'_>) -> String {
    let (status, events) = m.call(Method::GET, "/v1/events?type=deposit.succeeded", None).await;
    assert_eq!(status, StatusCode::OK, "{events}");
    events["data"][0]["id"].as_str().expect("a deposit event").to_owned()
}

/// M4: half a request head, a stalled partial body to the unauthenticated
/// callback route, and a connection that sends nothing are each closed
/// within their timeout, while another client is served meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_are_cut_off_while_others_are_served() {
    let svc =
        Service::temp(&[("PELAGO_HEADER_READ_TIMEOUT_MS", "600"), ("PELAGO_BODY_READ_TIMEOUT_MS", "600")]);
    let started = Instant::now();
    let mut half_head = TcpStream::connect(addr(&svc)).await.unwrap();
    half_head.write_all(b"POST /callbacks/gateway HTTP/1.1\r\nHost: pelago\r\nContent-Le").await.unwrap();
    let mut partial_body = TcpStream::connect(addr(&svc)).await.unwrap();
    partial_body
        .write_all(
            b"POST /callbacks/gateway HTTP/1.1\r\nHost: pelago\r\ncontent-type: application/json\r\n\
              content-length: 200\r\n\r\n{\"event_id\":\"evt_",
        )
        .await
        .unwrap();
    let mut silent = TcpStream::connect(addr(&svc)).await.unwrap();

    // Served while the three are held open.
    let healthy = svc.http.get(svc.url("/healthz")).send().await.unwrap();
    assert_eq!(healthy.status(), StatusCode::OK);
    assert!(started.elapsed() < Duration::from_millis(600), "served before any timeout fired");

    // Documented timeout 600 ms; allow scheduling slack, far below the 76 s of the report.
    let bound = Duration::from_secs(4);
    let (_, took) = read_until_closed(&mut half_head, started, bound).await;
    assert!(took >= Duration::from_millis(500), "not cut before its timeout: {took:?}");
    let (answer, _) = read_until_closed(&mut partial_body, started, bound).await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("did not arrive within 600 ms"), "{answer}");
    let (nothing, _) = read_until_closed(&mut silent, started, bound).await;
    assert!(!nothing.contains("200"), "{nothing}");

    // A kept-alive connection idle after a request is closed too.
    let mut keep_alive = TcpStream::connect(addr(&svc)).await.unwrap();
    keep_alive.write_all(b"GET /healthz HTTP/1.1\r\nHost: pelago\r\n\r\n").await.unwrap();
    let idle_from = Instant::now();
    let (answer, took) = read_until_closed(&mut keep_alive, idle_from, bound).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(took >= Duration::from_millis(500), "idle keep-alive closed after its timeout: {took:?}");
}

/// M4: at the connection cap, a new client waits until a held connection is
/// cut, then is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_cap_wait_for_a_free_slot() {
    let svc = Service::temp(&[("PELAGO_HEADER_READ_TIMEOUT_MS", "800"), ("PELAGO_MAX_CONNECTIONS", "2")]);
    let held_from = Instant::now();
    let _a = TcpStream::connect(addr(&svc)).await.unwrap();
    let _b = TcpStream::connect(addr(&svc)).await.unwrap();
    let fresh = reqwest::Client::new();
    let r = tokio::time::timeout(Duration::from_secs(10), fresh.get(svc.url("/healthz")).send())
        .await
        .expect("served once a slot is free")
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(
        held_from.elapsed() >= Duration::from_millis(700),
        "the third connection was served only after a held one was cut: {:?}",
        held_from.elapsed()
    );
}

/// M5: admin, callbacks and failed authentication share a per-address
/// bucket (429 with Retry-After once it is empty); authenticated merchant
/// requests are not charged to it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unauthenticated_traffic_is_limited_per_address() {
    let svc = Service::temp(&[("PELAGO_IP_RATE_LIMIT", "1,8")]);
    let m = svc.merchant("Limited").await;
    for _ in 0..20 {
        let (status, _) = m.call(Method::GET, "/v1/balance", None).await;
        assert_eq!(status, StatusCode::OK, "merchant requests are limited per merchant, not per address");
    }
    let forged = Key { key_id: m.key.key_id.clone(), secret: "sk_wrong_secret_0000000000".into() };
    let mut statuses = Vec::new();
    for _ in 0..12 {
        let r = svc.signed(&forged, Method::GET, "/v1/balance", b"").send().await.unwrap();
        let status = r.status();
        statuses.push(status.as_u16());
        if status == StatusCode::TOO_MANY_REQUESTS {
            assert!(r.headers().contains_key("retry-after"));
            let body: Value = r.json().await.unwrap();
            assert_eq!(body["error"]["code"], "rate_limited");
            break;
        }
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    assert_eq!(statuses.last(), Some(&429), "401s are limited: {statuses:?}");
    for path in ["/callbacks/gateway", "/admin/v1/merchants"] {
        let r = svc.http.post(svc.url(path)).body("{}").send().await.unwrap();
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS, "{path}");
    }
    // The bucket refills (1 token/s): the operator gets in again.
    eventually("the per-address bucket refilled", secs(10), async || {
        let (status, _) = svc.admin_json(Method::GET, "/admin/v1/merchants", None).await;
        assert!([StatusCode::OK, StatusCode::TOO_MANY_REQUESTS].contains(&status), "{status}");
        status == StatusCode::OK
    })
    .await;
}

/// M5: a filtered list pages to the end with `next_starting_after`, and
/// every event of the type is seen once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filtered_pages_continue_to_the_end() {
    let svc = Service::temp(&[]);
    let m = svc.funded_merchant("Frontdoor", Value::Null, 10_000).await;
    for _ in 0..2 {
        let (status, _) = m.deposit_of(500, "USD").await;
        assert_eq!(status, StatusCode::OK);
    }
    let mut seen = Vec::new();
    let mut path = "/v1/balance/transactions?type=deposit&limit=1".to_owned();
    for _ in 0..10 {
        let (status, page) = m.call(Method::GET, &path, None).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        seen.extend(page["data"].as_array().unwrap().iter().map(|t| t.str("id").to_owned()));
        if page["has_more"] == false {
            assert_eq!(page["next_starting_after"], Value::Null);
            break;
        }
        let next = page["next_starting_after"].as_str().expect("has_more comes with a cursor");
        path = format!("/v1/balance/transactions?type=deposit&limit=1&starting_after={next}");
    }
    assert_eq!(seen.len(), 3, "{seen:?}");
    seen.dedup();
    assert_eq!(seen.len(), 3, "no transaction twice");
}

/// M5: callback receipts and delivery attempts past the retention window
/// are swept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callbacks_and_delivery_attempts_are_swept_after_retention() {
    let svc = Service::temp(&[("PELAGO_RETENTION_SECS", "1")]);
    // A deposit: a gateway callback is recorded, and its event (no webhook_url)
    // gets one recorded "not delivered" attempt.
    let m = svc.funded_merchant("Frontdoor", Value::Null, 10_000).await;
    let event = deposit_event(&m).await;
    let deliveries = format!("/v1/events/{event}/deliveries");
    eventually("swept", secs(20), async || {
        let (status, list) = m.call(Method::GET, &deliveries, None).await;
        assert_eq!(status, StatusCode::OK);
        let callbacks = svc.metric("pelago_callbacks_swept_total").await;
        let attempts = svc.metric("pelago_deliveries_swept_total").await;
        when(list["data"] == json!([]) && callbacks >= 1 && attempts >= 1, json!([list, callbacks, attempts]))
    })
    .await;
}

/// M6: a webhook endpoint on a link-local (metadata) address is refused at
/// delivery, even though sandbox mode accepted the URL when it was set: the
/// attempt is recorded as failed and nothing is sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivery_to_a_refused_address_records_a_failed_attempt() {
    let svc = Service::temp(&[]);
    let m = svc.merchant("Rebound").await;
    m.set_webhook_url("http://169.254.169.254/latest/meta-data/").await;
    let (status, _) = m.deposit_of(100, "USD").await;
    assert_eq!(status, StatusCode::OK);
    let event = deposit_event(&m).await;
    let list =
        m.poll(&format!("/v1/events/{event}/deliveries"), secs(20), |l| l["data"][0].is_object()).await;
    let attempt = list["data"].as_array().and_then(|a| a.last()).cloned().unwrap();
    assert_eq!(attempt["status_code"], Value::Null, "{attempt}");
    assert!(attempt.str("error").contains("refused address"), "{attempt}");
}

/// L3: card details are served `no-store` (their body is wiped after it is
/// written; that part is not observable from outside).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn card_details_are_no_store() {
    let svc = Service::temp(&[]);
    let m = svc.funded_merchant("Frontdoor", Value::Null, 10_000).await;
    let card = m.card().await;
    let path = format!("/v1/cards/{}/details", card.str("id"));
    let r = svc.signed(&m.key, Method::GET, &path, b"").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["cache-control"], "no-store");
    let details: Value = r.json().await.unwrap();
    let pan = details.str("pan");
    assert!(pan.starts_with("424242") && pan.len() >= 16, "a whole PAN");
    assert_eq!(details["card_id"], card["id"]);
    assert!(!svc.log().contains(pan), "the PAN never reaches the log");
}
