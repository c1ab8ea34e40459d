//! The sandbox upstreams driven over real HTTP on loopback through Pelago's own
//! adapters, with a small receiver that verifies and records the callbacks.

mod common;

use std::{net::SocketAddr, path::Path, sync::Arc};

use bytes::Bytes;
use common::{done, eventually, secs, simulators::Sandbox};
use parking_lot::Mutex;
use pelago_actors::cardholder::Identity;
use pelago_actors::ports::{
    Address, CardAction, CardChannel, CardOpened, ChannelCardholderStatus, ChannelEvent, ChannelOperation,
    ChannelTxnStatus, CreateCardholder, CreateOrder, FundCard, GatewayAccount, GatewayEvent,
    GatewayOrderStatus, OpenCard, Outcome, PaymentGateway, Payout, PayoutStatus, SecretString,
};
use pelago_card::{
    sandbox::luhn_valid,
    upstream::{
        SandboxControl, UpstreamClient, UpstreamConfig,
        callbacks::{self, CHANNEL_SIGNATURE_HEADER, GATEWAY_SIGNATURE_HEADER},
        sandbox::{FaultBehavior, FaultOperation, FaultSpec, TestTxnStatus},
    },
};
use pelago_storage::{Currency, Money};
use warp::Filter;

const TIMEOUT_MS: u64 = 300;
const CHANNEL_ID: &str = "ch_sandbox";
const CHANNEL_KEY: &str = "sk_channel_test";
const WEBHOOK_SECRET: &str = "whsec_channel_test";
const MERCHANT_ID: &str = "gm_merchant_1";
const MERCHANT_KEY: &str = "gk_merchant_test";

/// A callback the receiver accepted (its signature verified).
#[derive(Clone, Debug)]
struct Received {
    kind: &'static str,
    event_id: String,
    body: Bytes,
}

#[derive(Clone, Default)]
struct Receiver {
    accepted: Arc<Mutex<Vec<Received>>>,
    rejected: Arc<Mutex<usize>>,
}

impl Receiver {
    fn accepted(&self) -> Vec<Received> {
        self.accepted.lock().clone()
    }

    fn with_event_id(&self, event_id: &str) -> usize {
        self.accepted.lock().iter().filter(|r| r.event_id == event_id).count()
    }
}

/// Pelago's side of the callbacks, reduced to: verify the signature, record.
async fn start_receiver() -> (SocketAddr, Receiver) {
    let receiver = Receiver::default();
    let r = receiver.clone();
    let channel = warp::path!("callbacks" / "channels" / String)
        .and(warp::header::optional::<String>(CHANNEL_SIGNATURE_HEADER))
        .and(warp::body::bytes())
        .map(move |_channel: String, signature: Option<String>, body: Bytes| {
            let now = chrono::Utc::now().timestamp();
            let ok = signature
                .is_some_and(|s| callbacks::verify(&s, WEBHOOK_SECRET.as_bytes(), &body, now).is_ok());
            record(
                &r,
                ok,
                "channel",
                || callbacks::parse_channel_callback(&body).ok().map(|c| c.event_id),
                &body,
            )
        });
    let r = receiver.clone();
    let gateway = warp::path!("callbacks" / "gateway")
        .and(warp::header::optional::<String>(GATEWAY_SIGNATURE_HEADER))
        .and(warp::body::bytes())
        .map(move |signature: Option<String>, body: Bytes| {
            let parsed = callbacks::parse_gateway_callback(&body).ok();
            // Pick the key by the account the body names, as Pelago does.
            let key_known = parsed.as_ref().is_some_and(|c| c.account_merchant_id == MERCHANT_ID);
            let now = chrono::Utc::now().timestamp();
            let ok = key_known
                && signature
                    .is_some_and(|s| callbacks::verify(&s, MERCHANT_KEY.as_bytes(), &body, now).is_ok());
            record(&r, ok, "gateway", || parsed.map(|c| c.event_id), &body)
        });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(warp::serve(channel.or(gateway)).incoming(listener).run());
    (addr, receiver)
}

fn record(
    receiver: &Receiver,
    signature_ok: bool,
    kind: &'static str,
    event_id: impl FnOnce() -> Option<String>,
    body: &Bytes,
) -> warp::http::StatusCode {
    match (signature_ok, event_id()) {
        (true, Some(event_id)) => {
            receiver.accepted.lock().push(Received { kind, event_id, body: body.clone() });
            warp::http::StatusCode::OK
        }
        _ => {
            *receiver.rejected.lock() += 1;
            warp::http::StatusCode::UNAUTHORIZED
        }
    }
}

struct Fixture {
    control: SandboxControl,
    channel: Arc<dyn CardChannel>,
    gateway: Arc<dyn PaymentGateway>,
}

/// The callback receiver, the simulators over `dir` and the adapters over `client` connected to them.
async fn up(dir: &Path, client: &UpstreamClient) -> (Receiver, Sandbox, Fixture) {
    let (receiver, receiver_log) = start_receiver().await;
    let sandbox = Sandbox::start(dir, TIMEOUT_MS).await;
    let control = sandbox.with_gateway_account(client, (MERCHANT_ID, MERCHANT_KEY), receiver).await;
    control
        .register_channel(
            CHANNEL_ID,
            &SecretString::new(CHANNEL_KEY.into()),
            &SecretString::new(WEBHOOK_SECRET.into()),
            &format!("http://{receiver}/callbacks/channels/{CHANNEL_ID}"),
        )
        .await
        .unwrap();
    let (channel, gateway) = adapters(client, &control);
    (receiver_log, sandbox, Fixture { control, channel, gateway })
}

/// Pelago's channel and gateway adapters over `client`, pointed at the simulators `control` drives.
fn adapters(
    client: &UpstreamClient,
    control: &SandboxControl,
) -> (Arc<dyn CardChannel>, Arc<dyn PaymentGateway>) {
    let key = SecretString::new(CHANNEL_KEY.into());
    let channel = client.channel_adapter("sandbox", &control.channel_base_url(), key).unwrap();
    (channel, client.gateway(&control.gateway_base_url()))
}

impl Fixture {
    /// Makes the channel's next `operation` behave as `behavior`.
    async fn fault(&self, operation: FaultOperation, behavior: FaultBehavior) {
        let fault = FaultSpec { operation, behavior, count: 1, delay_ms: 0 };
        self.control.set_fault(CHANNEL_ID, fault).await.unwrap();
    }
}

fn client() -> UpstreamClient {
    UpstreamClient::new(UpstreamConfig { timeout_ms: TIMEOUT_MS }).unwrap()
}

fn usd(minor: i64) -> Money {
    Money::new(minor, Currency::USD)
}

/// The merchant's gateway account, as Pelago holds it.
fn account() -> GatewayAccount {
    GatewayAccount { merchant_id: MERCHANT_ID.into(), api_key: SecretString::new(MERCHANT_KEY.into()) }
}

/// An order `ord_{tag}` of `amount` on [`account`], request id `req_o{tag}`.
fn new_order(tag: &str, amount: i64, description: &str) -> CreateOrder {
    CreateOrder {
        request_id: format!("req_o{tag}"),
        account: account(),
        order_id: format!("ord_{tag}"),
        amount: usd(amount),
        description: description.into(),
    }
}

fn holder(request_id: &str, last_name: &str) -> CreateCardholder {
    CreateCardholder {
        request_id: request_id.into(),
        cardholder_id: format!("chd_{request_id}"),
        bin: "424242".into(),
        identity: Identity {
            first_name: "Ada".into(),
            last_name: last_name.into(),
            email: "ada@example.com".into(),
            phone: "+15555550100".into(),
            date_of_birth: "1990-01-01".into(),
            nationality: "US".into(),
            id_document_type: "passport".into(),
        },
        id_document_number: "X1234567".into(),
        address: Address {
            line1: "1 Main St".into(),
            line2: None,
            city: "Springfield".into(),
            state: None,
            postal_code: "12345".into(),
            country: "US".into(),
        },
    }
}

async fn usd_master(channel: &Arc<dyn CardChannel>) -> i64 {
    done(channel.master_balance().await).into_iter().find(|m| m.currency == Currency::USD).unwrap().value
}

async fn card_balance(channel: &Arc<dyn CardChannel>, card: &str) -> i64 {
    done(channel.card_details(card.to_owned()).await).balance.value
}

/// Opens the card `card_{tag}` of `cardholder` on the BIN 424242 (request id `req_c_{tag}`).
async fn open_card(f: &Fixture, tag: &str, cardholder: &str) -> CardOpened {
    let open = OpenCard {
        request_id: format!("req_c_{tag}"),
        card_id: format!("card_{tag}"),
        channel_cardholder_id: cardholder.to_owned(),
        bin: "424242".into(),
        currency: Currency::USD,
    };
    done(f.channel.open_card(open).await)
}

async fn open_funded_card(f: &Fixture, tag: &str, amount_minor: i64) -> String {
    let holder = done(f.channel.create_cardholder(holder(&format!("req_h_{tag}"), "Lovelace")).await);
    let card = open_card(f, tag, &holder.channel_cardholder_id).await;
    if amount_minor > 0 {
        let req = FundCard {
            request_id: format!("req_f_{tag}"),
            channel_card_id: card.channel_card_id.clone(),
            amount: usd(amount_minor),
        };
        done(f.channel.fund_card(req).await);
    }
    card.channel_card_id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cardholders_cards_and_funding() {
    let dir = tempfile::tempdir().unwrap();
    let (receiver, sandbox, f) = up(dir.path(), &client()).await;

    // Cardholders: Reject and Pending, then the approve helper calls back.
    let rejected = done(f.channel.create_cardholder(holder("req_h1", "Reject")).await);
    assert_eq!(rejected.status, ChannelCardholderStatus::Rejected);
    assert!(rejected.reason.is_some());
    let pending = done(f.channel.create_cardholder(holder("req_h2", "Pending")).await);
    assert_eq!(pending.status, ChannelCardholderStatus::Pending);
    let approved = f.control.approve_cardholder(&pending.channel_cardholder_id).await.unwrap();
    assert_eq!(approved.status, ChannelCardholderStatus::Active);
    let updates: Vec<_> = receiver
        .accepted()
        .into_iter()
        .filter_map(|r| callbacks::parse_channel_callback(&r.body).ok())
        .filter(|c| matches!(&c.event, ChannelEvent::CardholderUpdated { channel_cardholder_id, status, .. }
            if *channel_cardholder_id == pending.channel_cardholder_id && *status == ChannelCardholderStatus::Active))
        .collect();
    assert_eq!(updates.len(), 1, "the approval was called back before the helper answered");
    // The query that confirms a cardholder callback: the channel's state now, with Pelago's id.
    let asked = done(f.channel.cardholder(pending.channel_cardholder_id.clone()).await);
    assert_eq!(
        (asked.status, asked.channel_cardholder_id.as_str()),
        (ChannelCardholderStatus::Active, pending.channel_cardholder_id.as_str())
    );
    assert!(asked.cardholder_id.starts_with("chd_"), "{asked:?}");
    assert!(matches!(f.channel.cardholder("cch_never".into()).await, Outcome::Declined { .. }));

    // Open a card: last4 only; details give a Luhn-valid PAN on the BIN.
    let opened = open_card(&f, "1", &approved.channel_cardholder_id).await;
    assert_eq!(opened.last4.len(), 4);
    assert_eq!(opened.balance, usd(0));
    let details = done(f.channel.card_details(opened.channel_card_id.clone()).await);
    let pan = details.pan.expose();
    assert_eq!(pan.len(), 16);
    assert!(pan.bytes().all(|b| b.is_ascii_digit()));
    assert!(pan.starts_with("424242"));
    assert!(luhn_valid(pan), "PAN fails the Luhn check");
    assert!(pan.ends_with(&opened.last4));
    assert_eq!(details.cvv.expose().len(), 3);
    assert!((1..=12).contains(&details.expiry_month));
    assert_eq!(format!("{:?}", details.pan), "[redacted]");
    let card = opened.channel_card_id.clone();

    // Funding moves master → card; the same request id twice applies once.
    let master_before = usd_master(&f.channel).await;
    assert_eq!(master_before, 100_000_000);
    let fund = FundCard { request_id: "req_f1".into(), channel_card_id: card.clone(), amount: usd(5_000) };
    assert_eq!(done(f.channel.fund_card(fund.clone()).await).balance, usd(5_000));
    assert_eq!(done(f.channel.fund_card(fund.clone()).await).balance, usd(5_000));
    assert_eq!(card_balance(&f.channel, &card).await, 5_000);
    assert_eq!(usd_master(&f.channel).await, master_before - 5_000);
    assert!(matches!(
        done(f.channel.operation("req_f1".into()).await),
        ChannelOperation::CardFunded(funded) if funded.balance == usd(5_000)
    ));

    // decline fault: definite refusal, nothing applied.
    f.fault(FaultOperation::Topup, FaultBehavior::Decline).await;
    let declined = f.channel.fund_card(FundCard { request_id: "req_f2".into(), ..fund.clone() }).await;
    assert!(matches!(declined, Outcome::Declined { .. }), "{declined:?}");
    assert_eq!(card_balance(&f.channel, &card).await, 5_000);
    assert!(matches!(done(f.channel.operation("req_f2".into()).await), ChannelOperation::Declined { .. }));

    // error fault: unknown; the channel never applied it; the retry applies once.
    f.fault(FaultOperation::Topup, FaultBehavior::Error).await;
    let retry = FundCard { request_id: "req_f3".into(), ..fund.clone() };
    assert!(matches!(f.channel.fund_card(retry.clone()).await, Outcome::Unknown { .. }));
    assert_eq!(done(f.channel.operation("req_f3".into()).await), ChannelOperation::NotFound);
    assert_eq!(card_balance(&f.channel, &card).await, 5_000);
    assert_eq!(done(f.channel.fund_card(retry.clone()).await).balance, usd(10_000));
    assert_eq!(done(f.channel.fund_card(retry).await).balance, usd(10_000));
    assert_eq!(card_balance(&f.channel, &card).await, 10_000);

    // timeout fault: applied, answered too late; asking shows it applied once.
    f.fault(FaultOperation::Topup, FaultBehavior::Timeout).await;
    let late = FundCard { request_id: "req_f4".into(), ..fund.clone() };
    assert!(matches!(f.channel.fund_card(late.clone()).await, Outcome::Unknown { .. }));
    assert!(matches!(
        done(f.channel.operation("req_f4".into()).await),
        ChannelOperation::CardFunded(funded) if funded.balance == usd(15_000)
    ));
    assert_eq!(done(f.channel.fund_card(late).await).balance, usd(15_000));
    assert_eq!(card_balance(&f.channel, &card).await, 15_000);
    assert_eq!(usd_master(&f.channel).await, master_before - 15_000);

    // Freeze, unfreeze, delete returns the rest to master.
    let action = |id: &str| CardAction { request_id: id.into(), channel_card_id: card.clone() };
    done(f.channel.freeze(action("req_z1")).await);
    assert_eq!(done(f.channel.card_details(card.clone()).await).status, "frozen");
    done(f.channel.unfreeze(action("req_u1")).await);
    let deleted = done(f.channel.delete_card(action("req_d1")).await);
    assert_eq!(deleted.remaining_balance, usd(15_000));
    assert_eq!(usd_master(&f.channel).await, master_before);
    assert!(matches!(
        f.channel.fund_card(FundCard { request_id: "req_f5".into(), ..fund }).await,
        Outcome::Declined { .. }
    ));
    assert_eq!(*receiver.rejected.lock(), 0);
    sandbox.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactions_and_duplicate_callbacks() {
    let dir = tempfile::tempdir().unwrap();
    let (receiver, sandbox, f) = up(dir.path(), &client()).await;
    let card = open_funded_card(&f, "t", 1_000).await;

    let spent = f
        .control
        .create_card_transaction(&card, usd(400), "Cafe", "5812", TestTxnStatus::Posted)
        .await
        .unwrap();
    assert_eq!(spent.status, ChannelTxnStatus::Posted);
    assert_eq!(spent.balance_after, usd(600));
    let over = f
        .control
        .create_card_transaction(&card, usd(601), "Shop", "5311", TestTxnStatus::Posted)
        .await
        .unwrap();
    assert_eq!(over.status, ChannelTxnStatus::Declined);
    assert_eq!(over.balance_after, usd(600));
    assert_eq!(card_balance(&f.channel, &card).await, 600);
    // Each callback arrived before the helper answered.
    for txn in [&spent, &over] {
        let seen = receiver.accepted().into_iter().any(|r| {
            matches!(callbacks::parse_channel_callback(&r.body).map(|c| c.event),
                Ok(ChannelEvent::Transaction { card_id, transaction })
                    if card_id == "card_t" && transaction.channel_transaction_id == txn.channel_transaction_id)
        });
        assert!(seen, "transaction callback missing");
    }
    // Pull, with the cursor.
    let all = done(f.channel.list_transactions(card.clone(), None).await);
    assert_eq!(
        all.iter().map(|t| t.channel_transaction_id.clone()).collect::<Vec<_>>(),
        vec![spent.channel_transaction_id.clone(), over.channel_transaction_id.clone()]
    );
    let after =
        done(f.channel.list_transactions(card.clone(), Some(spent.channel_transaction_id.clone())).await);
    assert_eq!(after.len(), 1);
    assert_eq!(after[0].status, ChannelTxnStatus::Declined);
    // The query that confirms a transaction callback: one transaction by the channel's ids.
    assert_eq!(done(f.channel.transaction(card.clone(), spent.channel_transaction_id.clone()).await), spent);
    assert!(matches!(
        f.channel.transaction(card.clone(), "ctx_never".into()).await,
        Outcome::Declined { .. }
    ));
    f.fault(FaultOperation::Transactions, FaultBehavior::Error).await;
    let unknown = f.channel.transaction(card.clone(), spent.channel_transaction_id.clone()).await;
    assert!(matches!(unknown, Outcome::Unknown { .. }), "a 500 is no answer");

    // callbacks + duplicate: three copies, one event id.
    f.fault(FaultOperation::Callbacks, FaultBehavior::Duplicate).await;
    let before = receiver.accepted().len();
    f.control.create_card_transaction(&card, usd(100), "Cafe", "5812", TestTxnStatus::Pending).await.unwrap();
    let new: Vec<Received> = receiver.accepted()[before..].to_vec();
    assert_eq!(new.len(), 3, "three deliveries of one callback");
    assert!(new.iter().all(|r| r.kind == "channel" && r.event_id == new[0].event_id));
    assert_eq!(receiver.with_event_id(&new[0].event_id), 3);
    // The fault was for one callback only.
    let before = receiver.accepted().len();
    f.control.create_card_transaction(&card, usd(100), "Cafe", "5812", TestTxnStatus::Posted).await.unwrap();
    assert_eq!(receiver.accepted().len(), before + 1);
    assert_eq!(*receiver.rejected.lock(), 0);
    sandbox.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_orders_checkout_and_payouts() {
    let dir = tempfile::tempdir().unwrap();
    let client = client();
    let (receiver, sandbox, f) = up(dir.path(), &client).await;
    let account = account();
    let create = new_order("1", 300, "Coffee <3");
    let order = done(f.gateway.create_order(create.clone()).await);
    assert_eq!(order.status, GatewayOrderStatus::Pending);
    assert_eq!(
        order.checkout_url,
        format!("http://{}/gateway/checkout/{}", sandbox.addr, order.gateway_order_id)
    );
    assert_eq!(done(f.gateway.create_order(create).await).gateway_order_id, order.gateway_order_id);

    // The checkout page is real HTML with the amount and both buttons.
    let http = reqwest::Client::new();
    let page = http.get(&order.checkout_url).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("3.00 USD"), "{page}");
    assert!(page.contains(&format!("action=\"{}/pay\"", order.checkout_url)));
    assert!(page.contains(&format!("action=\"{}/fail\"", order.checkout_url)));
    assert!(page.contains("Coffee &lt;3"));

    // Pay: the signed callback is recorded before the answer returns.
    let paid = f.control.pay_order(&order.gateway_order_id).await.unwrap();
    assert_eq!(paid.status, GatewayOrderStatus::Paid);
    assert!(paid.paid_at.is_some());
    let order_events: Vec<_> = receiver
        .accepted()
        .into_iter()
        .filter_map(|r| callbacks::parse_gateway_callback(&r.body).ok())
        .filter(|c| matches!(&c.event, GatewayEvent::OrderUpdated { gateway_order_id, status: GatewayOrderStatus::Paid, order_id, .. }
            if *gateway_order_id == order.gateway_order_id && order_id == "ord_1"))
        .collect();
    assert_eq!(order_events.len(), 1);
    let queried = done(f.gateway.query_order(account.clone(), order.gateway_order_id.clone()).await);
    assert_eq!(queried.status, GatewayOrderStatus::Paid);

    // Resend delivers the same event again.
    let resent = f.control.resend_order_callback(&order.gateway_order_id).await.unwrap();
    assert_eq!(resent, order_events[0].event_id);
    assert_eq!(receiver.with_event_id(&resent), 2);

    // A form post gets the HTML result page.
    let second = done(f.gateway.create_order(new_order("2", 150, "Tea")).await);
    let result = http
        .post(format!("{}/fail", second.checkout_url))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("action=fail")
        .send()
        .await
        .unwrap();
    assert!(result.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
    assert!(result.text().await.unwrap().contains("Payment failed"));
    assert!(f.control.pay_order(&second.gateway_order_id).await.is_err(), "a failed order cannot be paid");

    // Refund of the paid order, reported by callback.
    let refund = pelago_actors::ports::Refund {
        request_id: "req_r1".into(),
        account: account.clone(),
        gateway_order_id: order.gateway_order_id.clone(),
        amount: usd(300),
    };
    let refunded = done(f.gateway.refund(refund).await);
    eventually("the refund callback", secs(5), async || {
        receiver.accepted().iter().any(|r| {
            matches!(callbacks::parse_gateway_callback(&r.body).map(|c| c.event),
                Ok(GatewayEvent::RefundCompleted { refund_id, .. }) if refund_id == refunded.refund_id)
        })
    })
    .await;

    // Deposit addresses are deterministic; deposits are called back.
    let address = done(f.gateway.deposit_address(account.clone(), Currency::USD, "TRON".into()).await);
    let again = done(f.gateway.deposit_address(account.clone(), Currency::USD, "TRON".into()).await);
    assert_eq!(address, again);
    assert!(address.address.starts_with('T'));
    let deposit = f.control.report_deposit(MERCHANT_ID, usd(2_500), "TRON").await.unwrap();
    assert_eq!(deposit.address, address.address);
    assert!(receiver.accepted().iter().any(|r| {
        matches!(callbacks::parse_gateway_callback(&r.body).map(|c| c.event),
            Ok(GatewayEvent::DepositCredited { gateway_deposit_id, amount, .. })
                if gateway_deposit_id == deposit.id && amount == usd(2_500))
    }));
    // Pelago confirms a deposit callback by asking for it under the same account.
    let queried = done(f.gateway.query_deposit(account.clone(), deposit.id.clone()).await);
    assert_eq!((&queried.address, queried.amount), (&deposit.address, usd(2_500)));
    assert!(matches!(
        f.gateway.query_deposit(account.clone(), "gdp_none".into()).await,
        Outcome::Declined { .. }
    ));

    // Payouts: FAIL... addresses fail, others succeed; both reported by callback.
    let payout = |id: &str, address: &str| Payout {
        request_id: id.into(),
        account: account.clone(),
        amount: usd(1_000),
        address: address.into(),
        network: "TRON".into(),
    };
    let ok = done(f.gateway.payout(payout("req_p1", "TXYZ123")).await);
    assert_eq!(ok.status, PayoutStatus::Succeeded);
    let failed = done(f.gateway.payout(payout("req_p2", "FAIL0001")).await);
    assert_eq!(failed.status, PayoutStatus::Failed);
    assert!(failed.reason.is_some());
    assert_eq!(done(f.gateway.payout(payout("req_p2", "FAIL0001")).await).payout_id, failed.payout_id);
    eventually("the failed payout's callback", secs(5), async || {
        receiver.accepted().iter().any(|r| {
            matches!(callbacks::parse_gateway_callback(&r.body).map(|c| c.event),
                Ok(GatewayEvent::PayoutUpdated { payout_id, status: PayoutStatus::Failed, request_id, .. })
                    if payout_id == failed.payout_id && request_id == "req_p2")
        })
    })
    .await;
    let queried = done(f.gateway.query_payout(account.clone(), failed.payout_id.clone()).await);
    assert_eq!(
        (queried.request_id.as_str(), queried.status, queried.amount),
        ("req_p2", PayoutStatus::Failed, usd(1_000))
    );

    // Wrong credentials are a definite refusal.
    let intruder =
        GatewayAccount { merchant_id: MERCHANT_ID.into(), api_key: SecretString::new("wrong".into()) };
    assert!(matches!(
        f.gateway.query_order(intruder.clone(), order.gateway_order_id).await,
        Outcome::Declined { .. }
    ));
    assert!(matches!(f.gateway.query_payout(intruder.clone(), ok.payout_id).await, Outcome::Declined { .. }));
    assert!(matches!(f.gateway.query_deposit(intruder, deposit.id).await, Outcome::Declined { .. }));
    assert_eq!(*receiver.rejected.lock(), 0);
    sandbox.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_keeps_balances_orders_and_registrations() {
    let dir = tempfile::tempdir().unwrap();
    let client = client();
    let (_receiver, sandbox, f) = up(dir.path(), &client).await;
    let card = open_funded_card(&f, "r", 7_700).await;
    let pan_before = done(f.channel.card_details(card.clone()).await).pan.expose().to_owned();
    let order = done(f.gateway.create_order(new_order("1", 300, "Coffee")).await);
    sandbox.stop().await;

    let sandbox = Sandbox::start(dir.path(), TIMEOUT_MS).await;
    let control = sandbox.control(&client);
    // No re-registration: the channel key and gateway account survived.
    let (channel, gateway) = adapters(&client, &control);
    let details = done(channel.card_details(card.clone()).await);
    assert_eq!(details.balance, usd(7_700));
    assert!(details.pan.expose() == pan_before, "the PAN is derived the same way after a restart");
    assert_eq!(usd_master(&channel).await, 100_000_000 - 7_700);
    assert!(matches!(done(channel.operation("req_f_r".into()).await), ChannelOperation::CardFunded(_)));
    let again = done(gateway.query_order(account(), order.gateway_order_id.clone()).await);
    assert_eq!(again.status, GatewayOrderStatus::Pending);
    assert!(again.checkout_url.starts_with(&format!("http://{}/", sandbox.addr)));
    // The store holds no PAN in clear.
    sandbox.stop().await;
    let files = common::all_bytes_under(dir.path());
    assert!(!files.is_empty(), "the sandbox wrote nothing to scan");
    common::AtRest { files, log: Vec::new() }.assert_nowhere(&[&pan_before]);
}
