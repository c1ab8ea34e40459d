//! Issue 4: the gateway's checkout page opens in headless Chromium and its Pay
//! button pays the order. The sandbox and a callback receiver run here on
//! loopback; `tests/browser/pay.mjs` (playwright-core driving Debian's
//! Chromium) does what a customer would. `tests/browser/ensure-deps.sh`
//! installs Chromium and playwright-core when they are missing: a failure to
//! install fails this test, it is never skipped.

mod common;

use std::{
    io::Read,
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::Arc,
    time::{Duration, Instant},
};

use bytes::Bytes;
use common::{done, eventually, secs, simulators::Sandbox};
use parking_lot::Mutex;
use pelago_actors::ports::{
    CreateOrder, GatewayAccount, GatewayEvent, GatewayOrderStatus, PaymentGateway, SecretString,
};
use pelago_card::upstream::{
    UpstreamClient, UpstreamConfig,
    callbacks::{self, GATEWAY_SIGNATURE_HEADER},
};
use pelago_storage::{Currency, Money};
use warp::Filter;

const TIMEOUT_MS: u64 = 2_000;
const MERCHANT_ID: &str = "gm_browser";
const MERCHANT_KEY: &str = "gk_browser_test";
/// Installing Chromium from scratch is the slow case.
const DEPS_LIMIT: Duration = Duration::from_secs(1_500);
/// pay.mjs bounds itself at 90 s; this is the backstop.
const BROWSER_LIMIT: Duration = Duration::from_secs(120);

/// One callback as it arrived, with whether its signature verified.
#[derive(Clone, Debug)]
struct Arrived {
    signature_ok: bool,
    body: Bytes,
}

/// Stands in for Pelago's callback endpoint: verifies the signature, records.
async fn start_receiver() -> (SocketAddr, Arc<Mutex<Vec<Arrived>>>) {
    let arrived = Arc::new(Mutex::new(Vec::new()));
    let log = arrived.clone();
    let route = warp::path!("callbacks" / "gateway")
        .and(warp::post())
        .and(warp::header::optional::<String>(GATEWAY_SIGNATURE_HEADER))
        .and(warp::body::bytes())
        .map(move |signature: Option<String>, body: Bytes| {
            let now = chrono::Utc::now().timestamp();
            let signature_ok =
                signature.is_some_and(|s| callbacks::verify(&s, MERCHANT_KEY.as_bytes(), &body, now).is_ok());
            log.lock().push(Arrived { signature_ok, body });
            if signature_ok { warp::http::StatusCode::OK } else { warp::http::StatusCode::UNAUTHORIZED }
        });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(warp::serve(route).incoming(listener).run());
    (addr, arrived)
}

/// What a bounded child process did.
struct Ran {
    success: bool,
    status: String,
    stdout: String,
    stderr: String,
}

impl Ran {
    fn describe(&self) -> String {
        format!("{}\n--- stdout ---\n{}\n--- stderr ---\n{}", self.status, self.stdout, self.stderr)
    }
}

/// Runs `cmd` to completion, killing it if it outlives `limit`. Blocking.
fn run_bounded(mut cmd: Command, limit: Duration) -> Ran {
    let shown = format!("{cmd:?}");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {shown}: {e}"));
    let drain = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = pipe.read_to_string(&mut text);
            text
        })
    };
    let stdout = drain(Box::new(child.stdout.take().unwrap()));
    let stderr = drain(Box::new(child.stderr.take().unwrap()));
    let status = common::exited(&mut child, limit);
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    Ran {
        success: status.is_some_and(|s| s.success()),
        status: match status {
            Some(status) => format!("{shown}: {status}"),
            None => format!("{shown}: killed after {limit:?}"),
        },
        stdout: stdout.join().unwrap(),
        stderr: stderr.join().unwrap(),
    }
}

async fn run_blocking(cmd: Command, limit: Duration) -> Ran {
    tokio::task::spawn_blocking(move || run_bounded(cmd, limit)).await.unwrap()
}

fn browser_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests").join("browser")
}

/// The one `order.updated` callback body's fields this test cares about.
fn paid_callback_for(arrived: &Arrived, gateway_order: &str) -> Option<String> {
    let raw: serde_json::Value = serde_json::from_slice(&arrived.body).ok()?;
    let parsed = callbacks::parse_gateway_callback(&arrived.body).ok()?;
    let is_paid = raw["type"] == "order.updated"
        && matches!(&parsed.event, GatewayEvent::OrderUpdated {
            gateway_order_id, order_id, status: GatewayOrderStatus::Paid, amount, ..
        } if gateway_order_id == gateway_order && order_id == "ord_browser_1"
            && *amount == Money::new(300, Currency::USD));
    is_paid.then_some(parsed.event_id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkout_page_pays_the_order_in_headless_chromium() {
    // Chromium and playwright-core, installed if missing.
    let started = Instant::now();
    let deps = run_blocking(Command::new(browser_dir().join("ensure-deps.sh")), DEPS_LIMIT).await;
    assert!(deps.success, "tests/browser/ensure-deps.sh failed:\n{}", deps.describe());
    eprintln!("browser deps ready in {:?}", started.elapsed());

    let dir = tempfile::tempdir().unwrap();
    let (receiver_addr, arrived) = start_receiver().await;
    let sandbox = Sandbox::start(dir.path(), TIMEOUT_MS).await;
    let sandbox_addr = sandbox.addr;

    let client = UpstreamClient::new(UpstreamConfig { timeout_ms: TIMEOUT_MS }).unwrap();
    let control = sandbox.with_gateway_account(&client, (MERCHANT_ID, MERCHANT_KEY), receiver_addr).await;
    let gateway: Arc<dyn PaymentGateway> = client.gateway(&control.gateway_base_url());
    let account =
        GatewayAccount { merchant_id: MERCHANT_ID.into(), api_key: SecretString::new(MERCHANT_KEY.into()) };
    let order = done(
        gateway
            .create_order(CreateOrder {
                request_id: "req_browser_1".into(),
                account: account.clone(),
                order_id: "ord_browser_1".into(),
                amount: Money::new(300, Currency::USD),
                description: "Browser checkout".into(),
            })
            .await,
    );
    assert_eq!(order.status, GatewayOrderStatus::Pending);
    assert_eq!(
        order.checkout_url,
        format!("http://{sandbox_addr}/gateway/checkout/{}", order.gateway_order_id)
    );
    assert!(arrived.lock().is_empty(), "no callback before the customer pays");

    // The customer: headless Chromium on the checkout page, clicking Pay.
    let screenshot = std::env::var_os("PELAGO_CHECKOUT_SCREENSHOT")
        .map_or_else(|| dir.path().join("checkout-paid.png"), PathBuf::from);
    let mut node = Command::new("node");
    node.arg(browser_dir().join("pay.mjs")).arg(&order.checkout_url).arg(&screenshot).arg("3.00 USD");
    let browser = run_blocking(node, BROWSER_LIMIT).await;
    assert!(browser.success, "pay.mjs failed:\n{}", browser.describe());
    let line = browser.stdout.lines().last().unwrap_or_default();
    let report: serde_json::Value = serde_json::from_str(line)
        .unwrap_or_else(|e| panic!("pay.mjs printed no JSON ({e}):\n{}", browser.describe()));
    assert_eq!(report["ok"], true, "{line}");
    assert_eq!(report["amount"], "3.00 USD", "{line}");
    assert_eq!(report["result_heading"], "Payment successful", "{line}");
    for shot in [screenshot.clone(), screenshot.with_extension("checkout.png")] {
        assert!(std::fs::metadata(&shot).is_ok_and(|m| m.len() > 0), "no screenshot at {shot:?}");
    }
    eprintln!("pay.mjs: {line}");

    // The gateway says Paid.
    let queried = done(gateway.query_order(account, order.gateway_order_id.clone()).await);
    assert_eq!(queried.status, GatewayOrderStatus::Paid);
    assert!(queried.paid_at.is_some());
    assert_eq!(queried.amount, Money::new(300, Currency::USD));

    // Exactly one signed order.updated paid callback for this order, and nothing unsigned.
    eventually("a paid callback", secs(10), async || {
        let seen = arrived.lock().clone();
        if seen.iter().any(|a| paid_callback_for(a, &order.gateway_order_id).is_some()) {
            Ok(())
        } else {
            Err(seen)
        }
    })
    .await;
    let arrived = arrived.lock().clone();
    assert!(arrived.iter().all(|a| a.signature_ok), "a callback failed its signature check: {arrived:?}");
    let paid: Vec<_> = arrived.iter().filter_map(|a| paid_callback_for(a, &order.gateway_order_id)).collect();
    assert_eq!(paid.len(), 1, "expected exactly one paid callback: {arrived:?}");
    assert_eq!(arrived.len(), 1, "expected no other callbacks: {arrived:?}");

    sandbox.stop().await;
}
