//! The crash and fault campaign (issue 9; Jepsen's bank test, adapted).
//!
//! A seeded driver issues a random mix of signed top-ups, freezes, unfreezes,
//! deposits, withdrawals (some to `FAIL` addresses) and spends, and of a
//! marketplace merchant's split payments (most paid by the buyer at once,
//! some with `capture` false and captured later), settlement runs (T+1),
//! batch splits, refunds (a seller's and the marketplace's portions, before
//! or after the split) and the sellers' withdrawals (one seller's bank
//! account fails every payout) — with channel faults (`error`, `timeout`,
//! `delay`), duplicated callbacks and gateway capture/split/refund/payout
//! timeouts and refund declines switched on and off — and SIGKILLs and restarts the service several times. Every
//! request's outcome is recorded as ok / failed / unknown; after the last
//! restart every unknown one is retried with its Idempotency-Key. Then:
//! every acknowledged top-up and withdrawal is present exactly once and no
//! failed one is; the ledger is balanced and no available balance is
//! negative; the available balance equals deposits − succeeded top-ups −
//! succeeded withdrawals; every card's mirrored balance equals the channel's;
//! every event reached a Standard Webhooks receiver; every acknowledged
//! payment and split batch is there exactly once, no payment is split twice
//! (one executed item, its `split` entry once in the ledger), each captured
//! payment is collected once, every acknowledged refund and withdrawal is
//! there exactly once (its entry once in the ledger, a failed one mirrored
//! once), and the sellers' and the marketplace's balances are what the
//! payments, splits, refunds and withdrawals say.
//!
//! Short (CI): the defaults. Long: `PELAGO_CAMPAIGN_OPS=50000 PELAGO_CAMPAIGN_KILLS=20
//! PELAGO_CAMPAIGN_SEED=42 cargo test --release --test campaign -- --nocapture`.

mod common;

use std::{
    collections::{HashMap, HashSet},
    time::Duration,
};

use common::{
    Json, Key, Merchant, Service, clock, eventually, ledger_balanced, list_all,
    marketplace::{recipient_balance, seller, seller_paid_to, usd},
    receiver::Receiver,
    rng::{Rng, env_num},
    secs, send,
};
use reqwest::Method;
use serde_json::{Value, json};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Seen {
    Ok,
    Failed,
    Unknown,
}

/// Who signs a request: the bank (the master-account merchant), the
/// marketplace merchant, or the operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum By {
    Bank,
    Market,
    Admin,
}

/// A request the driver made, kept to retry it if its outcome was unknown.
struct Op {
    kind: &'static str,
    method: Method,
    path: String,
    body: Vec<u8>,
    idem: String,
    by: By,
    seen: Seen,
    answer: Value,
}

/// One of the last few acknowledged payments (the newest are the likeliest to be
/// waiting for a capture or a split).
fn pick<'a>(rng: &mut Rng, payments: &'a [String]) -> Option<&'a str> {
    let recent = payments.len().min(8) as u64;
    (recent > 0).then(|| payments[payments.len() - 1 - rng.below(recent) as usize].as_str())
}

/// A split payment: each (seller, amount) a PURCHASE line, plus the
/// marketplace's COMMISSION of 5% + 1 (under the 1,000 bps cap).
fn payment_body(lines: &[(&str, i64)], capture: bool) -> Value {
    let sales: i64 = lines.iter().map(|(_, v)| v).sum();
    let commission = sales / 20 + 1;
    let mut split: Vec<Value> = lines
        .iter()
        .map(|(seller, v)| json!({"recipient_id": seller, "type": "PURCHASE", "amount": usd(*v)}))
        .collect();
    split.push(json!({"type": "COMMISSION", "amount": usd(commission)}));
    json!({"amount": usd(sales + commission), "merchant_reference": "campaign-order", "capture": capture,
           "split_marketplace": split})
}

async fn call(svc: &Service, (bank, market): (&Key, &Key), op: &Op) -> (Seen, Value) {
    let request = match op.by {
        By::Admin => {
            svc.admin(op.method.clone(), &op.path).header("idempotency-key", &op.idem).body(op.body.clone())
        }
        By::Bank => svc.signed_with_key(bank, op.method.clone(), &op.path, &op.body, &op.idem),
        By::Market => svc.signed_with_key(market, op.method.clone(), &op.path, &op.body, &op.idem),
    };
    match request.header("content-type", "application/json").timeout(Duration::from_secs(15)).send().await {
        Ok(r) => {
            let status = r.status();
            let v: Value = r.json().await.unwrap_or(Value::Null);
            let seen = if status.is_success() {
                Seen::Ok
            } else if status.is_server_error() {
                Seen::Unknown
            } else {
                Seen::Failed
            };
            (seen, v)
        }
        Err(_) => (Seen::Unknown, Value::Null),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bank_survives_faults_and_kills() {
    let seed = env_num("PELAGO_CAMPAIGN_SEED", 7);
    let ops_total = env_num("PELAGO_CAMPAIGN_OPS", 400);
    let kills = env_num("PELAGO_CAMPAIGN_KILLS", 3);
    let mut rng = Rng::new(seed);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let env = [
        ("PELAGO_UPSTREAM_TIMEOUT_MS", "600"),
        ("PELAGO_RATE_LIMIT", "100000,100000"),
        ("PELAGO_IP_RATE_LIMIT", "100000,100000"),
        ("PELAGO_WEBHOOK_RETRY_SCHEDULE", "1,1,1,1,1,1,1,1"),
        ("PELAGO_LOG", "warn"),
    ];
    let mut svc = Service::start(&data, &env);

    // Setup: a funded master-account merchant with fees, a whitelist, a webhook receiver, 5 cards.
    let Merchant { id: merchant, key, webhook_secret: whsec, .. } = svc.merchant("Bank").await;
    let receiver = Receiver::start(dir.path(), "bank", 0, 0, 0, &[&whsec]);
    let setup = |path: String, body: Value| (path, body);
    for (path, body) in
        [setup(format!("/admin/v1/merchants/{merchant}"), json!({"webhook_url": receiver.url()}))]
    {
        svc.admin_patch(&path, body.clone()).await;
    }
    svc.admin_put(
        &format!("/admin/v1/merchants/{merchant}/fees"),
        json!({"currency": "USD", "topup_fee": {"fixed": 10, "rate_bps": 100}}),
    )
    .await;
    svc.admin_put(&format!("/admin/v1/merchants/{merchant}/withdrawal-addresses"), json!({"addresses": [{"address": "TOK1", "network": "TRON"}, {"address": "FAILX", "network": "TRON"}]})).await;
    let channel = svc.first_channel().await;
    let holder: Value = svc.signed(&key, Method::POST, "/v1/cardholders", &serde_json::to_vec(&json!({
        "card_name": "PELAGO_VIRTUAL_USD", "first_name": "Ada", "last_name": "Lovelace", "email": "ada@example.com",
        "phone": "+6591234567", "date_of_birth": "1990-12-10", "nationality": "SG",
        "id_document": {"type": "passport", "number": "E1234567"},
        "address": {"line1": "1 Main St", "city": "Singapore", "postal_code": "018989", "country": "SG"}})).unwrap())
        .header("content-type", "application/json").send().await.unwrap().json().await.unwrap();
    let mut cards = Vec::new();
    for _ in 0..5 {
        let card: Value = svc
            .signed(
                &key,
                Method::POST,
                "/v1/cards",
                &serde_json::to_vec(&json!({"cardholder_id": holder["id"]})).unwrap(),
            )
            .header("content-type", "application/json")
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        cards.push(card.str("id").to_owned());
    }

    // The marketplace: another merchant, three onboarded sellers with split and commission
    // agreements (the sandbox's payouts to Cy's `FAIL…` account fail).
    let Merchant { key: market_key, .. } = svc.merchant("Market").await;
    let mut sellers = Vec::new();
    for name in ["Seller Ann", "Seller Bo"] {
        sellers.push(seller(&svc, &market_key, name, true, Some(1_000)).await.0);
    }
    sellers.push(seller_paid_to(&svc, &market_key, "Seller Cy", "FAIL00042", true, Some(1_000)).await.0);
    // The sellers' withdrawals need the window (07:00–20:00 at +08:00): 00:30Z today is 08:30
    // local, and the campaign runs for minutes. Settlement dates follow from it.
    clock::set(&svc, clock::day_after(clock::now(&svc).await, 0, 0, 30, 0)).await;
    let today = clock::now(&svc).await;
    let (mut settlements, mut payments) = (0i64, Vec::<String>::new());
    // Each acknowledged payment's number of lines.
    let mut payment_lines: HashMap<String, usize> = HashMap::new();

    let kill_every = (ops_total / (kills + 1)).max(1);
    let mut ops: Vec<Op> = Vec::new();
    for n in 0..ops_total {
        if n > 0 && n % kill_every == 0 && (n / kill_every) <= kills {
            svc.kill();
            svc = Service::start(&data, &env);
        }
        let card = cards[rng.below(cards.len() as u64) as usize].clone();
        let value = 1 + rng.below(3_000) as i64;
        let (kind, method, path, body, by) = match rng.below(16) {
            0..=3 => (
                "topup",
                Method::POST,
                format!("/v1/cards/{card}/topups"),
                json!({"amount": {"value": value, "currency": "USD"}}),
                By::Bank,
            ),
            4 => ("freeze", Method::POST, format!("/v1/cards/{card}/freeze"), json!({}), By::Bank),
            5 => ("unfreeze", Method::POST, format!("/v1/cards/{card}/unfreeze"), json!({}), By::Bank),
            6 => (
                "deposit",
                Method::POST,
                "/v1/test_helpers/deposits".into(),
                json!({"amount": {"value": value * 3, "currency": "USD"}, "network": "TRON"}),
                By::Bank,
            ),
            7 => {
                let address = if rng.below(3) == 0 { "FAILX" } else { "TOK1" };
                (
                    "withdrawal",
                    Method::POST,
                    format!("/admin/v1/merchants/{merchant}/withdrawals"),
                    json!({"amount": {"value": value, "currency": "USD"}, "address": address}),
                    By::Admin,
                )
            }
            8 => (
                "spend",
                Method::POST,
                format!("/v1/test_helpers/cards/{card}/transactions"),
                json!({"amount": {"value": value / 10 + 1, "currency": "USD"}, "merchant_name": "Shop", "mcc": "5411", "status": "posted"}),
                By::Bank,
            ),
            9 => {
                // Toggle a fault: error, timeout or delay on top-ups or freezes; duplicated
                // callbacks; the gateway's capture, split, refund or payout timing out (202, the
                // resolver's), or refusing a refund (failed, mirrored).
                let (operation, behavior) = match rng.below(10) {
                    0 => ("topup", "error"),
                    1 => ("topup", "timeout"),
                    2 => ("freeze", "delay"),
                    3 => ("callbacks", "duplicate"),
                    4 => ("topup", "delay"),
                    5 => ("capture", "timeout"),
                    6 => ("refund", "timeout"),
                    7 => ("refund", "decline"),
                    8 => ("payout", "timeout"),
                    _ => ("split", "timeout"),
                };
                let faults = match operation {
                    "capture" | "split" | "refund" | "payout" => {
                        "/admin/v1/test_helpers/gateway/faults".to_owned()
                    }
                    _ => format!("/admin/v1/test_helpers/channels/{channel}/faults"),
                };
                let _ = svc.admin(Method::POST, &faults)
                    .json(&json!({"operation": operation, "behavior": behavior, "count": 1 + rng.below(3), "delay_ms": 50}))
                    .send().await;
                continue;
            }
            10 => {
                let lines: Vec<(&str, i64)> = (0..1 + rng.below(2))
                    .map(|_| (sellers[rng.below(3) as usize].as_str(), 100 + rng.below(5_000) as i64))
                    .collect();
                (
                    "payment",
                    Method::POST,
                    "/v1/payments".into(),
                    payment_body(&lines, !rng.one_in(3)),
                    By::Market,
                )
            }
            11 => {
                let Some(id) = pick(&mut rng, &payments) else { continue };
                ("capture", Method::POST, format!("/v1/payments/{id}/capture"), json!({}), By::Market)
            }
            12 => {
                // T+1 for the next date: every payment captured before it is settled, once.
                settlements += 1;
                let date = clock::date(clock::day_after(today, settlements, 0, 0, 0));
                ("settle", Method::POST, "/admin/v1/settlement/runs".into(), json!({"date": date}), By::Admin)
            }
            14 => {
                // A seller's portion (line 0) and the marketplace's (its COMMISSION, the last
                // line), the buyer refunded both: before the split the portions add up to the
                // amount, after it the marketplace adds nothing (D = 0).
                let Some(id) = pick(&mut rng, &payments) else { continue };
                let (seller_part, own_part) = (1 + rng.below(20) as i64, 1 + rng.below(2) as i64);
                let last = payment_lines[id] - 1;
                let splits =
                    json!([{"line": 0, "amount": usd(seller_part)}, {"line": last, "amount": usd(own_part)}]);
                let body = json!({"amount": usd(seller_part + own_part), "splits": splits});
                ("refund", Method::POST, format!("/v1/payments/{id}/refunds"), body, By::Market)
            }
            15 => {
                let seller = &sellers[rng.below(3) as usize];
                let amount = 20 + rng.below(300) as i64;
                let body = json!({"amount": usd(amount), "commission": usd(amount / 20)});
                (
                    "seller_withdrawal",
                    Method::POST,
                    format!("/v1/recipients/{seller}/withdrawals"),
                    body,
                    By::Market,
                )
            }
            _ => {
                let mut items: Vec<Value> = Vec::new();
                for _ in 0..1 + rng.below(3) / 2 {
                    let Some(id) = pick(&mut rng, &payments) else { break };
                    if !items.contains(&json!({"payment_id": id})) {
                        items.push(json!({"payment_id": id}));
                    }
                }
                if items.is_empty() {
                    continue;
                }
                ("split", Method::POST, "/v1/split-batches".into(), json!({"items": items}), By::Market)
            }
        };
        let mut op = Op {
            kind,
            method,
            path,
            body: serde_json::to_vec(&body).unwrap(),
            idem: format!("op-{seed}-{n}"),
            by,
            seen: Seen::Unknown,
            answer: Value::Null,
        };
        let (seen, answer) = call(&svc, (&key, &market_key), &op).await;
        op.seen = seen;
        op.answer = answer;
        // Most acknowledged payments are paid by their buyer at once (some are left pending).
        let created = (op.kind == "payment" && op.seen == Seen::Ok).then(|| op.answer.str("id").to_owned());
        if let Some(id) = &created {
            payment_lines.insert(id.clone(), op.answer.count("split_marketplace"));
        }
        ops.push(op);
        if let Some(id) = created {
            if !rng.one_in(5) {
                let mut pay = Op {
                    kind: "pay",
                    method: Method::POST,
                    path: format!("/v1/test_helpers/payments/{id}/pay"),
                    body: Vec::new(),
                    idem: format!("op-{seed}-{n}-pay"),
                    by: By::Market,
                    seen: Seen::Unknown,
                    answer: Value::Null,
                };
                (pay.seen, pay.answer) = call(&svc, (&key, &market_key), &pay).await;
                ops.push(pay);
            }
            payments.push(id);
        }
    }
    // A last crash, then every unknown outcome is retried with its Idempotency-Key.
    svc.kill();
    let svc = Service::start(&data, &env);
    let _ =
        svc.admin(Method::DELETE, &format!("/admin/v1/test_helpers/channels/{channel}/faults")).send().await;
    svc.clear_gateway_faults().await;
    for op in ops.iter_mut().filter(|o| o.seen == Seen::Unknown) {
        let (seen, answer) = call(&svc, (&key, &market_key), op).await;
        assert_ne!(seen, Seen::Unknown, "{} {} still unknown after the retry: {answer}", op.kind, op.path);
        op.seen = seen;
        op.answer = answer;
    }
    let counts: HashMap<(&str, bool), usize> = ops.iter().fold(HashMap::new(), |mut m, o| {
        *m.entry((o.kind, o.seen == Seen::Ok)).or_default() += 1;
        m
    });
    eprintln!(
        "campaign seed {seed}: {} ops, {kills} kills, outcomes (kind, ok) -> count: {counts:?}",
        ops.len()
    );

    // Everything in flight finishes by itself (resolver, callbacks).
    let get = |path: String| {
        let svc = &svc;
        let key = &key;
        async move {
            svc.signed(key, Method::GET, &path, b"").send().await.unwrap().json::<Value>().await.unwrap()
        }
    };
    let mut topups: Vec<Value> = Vec::new();
    eventually("no top-up left processing", secs(120), async || {
        topups.clear();
        for card in &cards {
            let mut after: Option<String> = None;
            loop {
                let path = match &after {
                    Some(a) => format!("/v1/cards/{card}/topups?limit=100&starting_after={a}"),
                    None => format!("/v1/cards/{card}/topups?limit=100"),
                };
                let page = get(path).await;
                let data = page["data"].as_array().unwrap().clone();
                after = data.last().map(|t| t.str("id").to_owned());
                topups.extend(data);
                if page["has_more"] != true {
                    break;
                }
            }
        }
        topups.iter().all(|t| t["status"] != "processing")
    })
    .await;

    // Acknowledged top-ups are there exactly once, as answered; failed requests left nothing.
    let by_id: HashMap<&str, &Value> = topups.iter().map(|t| (t.str("id"), t)).collect();
    assert_eq!(by_id.len(), topups.len(), "a top-up listed twice");
    for op in ops.iter().filter(|o| o.kind == "topup" && o.seen == Seen::Ok) {
        let id = op.answer.str("id");
        let stored = by_id.get(id).unwrap_or_else(|| panic!("acknowledged top-up {id} is missing"));
        if op.answer["status"] == "succeeded" {
            assert_eq!(stored["status"], "succeeded", "an acknowledged success changed: {stored}");
        }
    }
    let acked: usize = ops.iter().filter(|o| o.kind == "topup" && o.seen == Seen::Ok).count();
    assert_eq!(topups.len(), acked, "top-ups that no acknowledged request created exist");

    // Money: ledger balanced, never negative, available = deposits - top-ups - withdrawals.
    ledger_balanced(&svc).await;
    let mut withdrawals: Vec<Value> = Vec::new();
    eventually("no withdrawal left processing", secs(60), async || {
        withdrawals.clear();
        let mut after: Option<String> = None;
        loop {
            let path = match &after {
                Some(a) => format!("/admin/v1/merchants/{merchant}/withdrawals?limit=100&starting_after={a}"),
                None => format!("/admin/v1/merchants/{merchant}/withdrawals?limit=100"),
            };
            let page: Value = svc.admin_json(Method::GET, &path, None).await.1;
            let data = page["data"].as_array().unwrap().clone();
            after = data.last().map(|w| w.str("id").to_owned());
            withdrawals.extend(data);
            if page["has_more"] != true {
                break;
            }
        }
        withdrawals.iter().all(|w| w["status"] != "processing")
    })
    .await;
    // Every acknowledged withdrawal is there, once.
    let wids: std::collections::HashSet<&str> = withdrawals.iter().map(|w| w.str("id")).collect();
    assert_eq!(wids.len(), withdrawals.len());
    let acked_withdrawals = ops.iter().filter(|o| o.kind == "withdrawal" && o.seen == Seen::Ok).count();
    assert_eq!(
        withdrawals.len(),
        acked_withdrawals,
        "withdrawals that no acknowledged request created exist"
    );
    // Deposits as the gateway reported them (the test helper reports a new deposit on
    // every call, a retried one too): the service's own deposit lines.
    let mut deposits = 0i64;
    let mut after: Option<String> = None;
    loop {
        let path = match &after {
            Some(a) => format!("/v1/balance/transactions?type=deposit&limit=100&starting_after={a}"),
            None => "/v1/balance/transactions?type=deposit&limit=100".into(),
        };
        let page = get(path).await;
        let data = page["data"].as_array().unwrap();
        deposits += data.iter().map(|t| t.i64("amount.value")).sum::<i64>();
        after = data.last().map(|t| t.str("id").to_owned());
        if page["has_more"] != true {
            break;
        }
    }
    let spent_on_topups: i64 =
        topups.iter().filter(|t| t["status"] == "succeeded").map(|t| t.i64("total.value")).sum();
    let withdrawn: i64 =
        withdrawals.iter().filter(|w| w["status"] == "succeeded").map(|w| w.i64("amount.value")).sum();
    let balance = get("/v1/balance".into()).await;
    let available = balance.i64("balances.0.available");
    assert_eq!(available, deposits - spent_on_topups - withdrawn, "the bank lost or made money");

    // Every card's mirror equals the channel (after a pull, as a merchant would:
    // a spend whose callback a kill cut off is found by the pull).
    for card in &cards {
        get(format!("/v1/cards/{card}/transactions")).await;
        let mirror = get(format!("/v1/cards/{card}")).await.i64("balance.value");
        let details = get(format!("/v1/cards/{card}/details")).await;
        let channel_balance = details.i64("balance.value");
        if mirror != channel_balance {
            let txns = get(format!("/v1/cards/{card}/transactions?limit=100")).await;
            for t in txns["data"].as_array().unwrap() {
                eprintln!(
                    "txn {} {} {} {}",
                    t["channel_transaction_id"], t["type"], t["status"], t["amount"]["value"]
                );
            }
            for t in topups.iter().filter(|t| t["card_id"] == card.as_str()) {
                eprintln!(
                    "topup {} {} {} {} {}",
                    t["id"], t["status"], t["amount"]["value"], t["failure_reason"], t["status_history"]
                );
            }
        }
        assert_eq!(mirror, channel_balance, "card {card}: mirror != channel");
    }

    // The marketplace: every acknowledged payment and split there once, no payment split twice.
    check_marketplace(&svc, &market_key, &sellers, &ops).await;

    // Every event reached the receiver, verified.
    let mut ids: Vec<String> = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let path = match &after {
            Some(a) => format!("/v1/events?limit=100&starting_after={a}"),
            None => "/v1/events?limit=100".into(),
        };
        let page = get(path).await;
        let data = page["data"].as_array().unwrap();
        ids.extend(data.iter().map(|e| e.str("id").to_owned()));
        after = data.last().map(|e| e.str("id").to_owned());
        if page["has_more"] != true {
            break;
        }
    }
    eventually("every event delivered", secs(120), async || {
        let delivered = receiver.delivered();
        ids.iter().all(|id| delivered.contains_key(id))
    })
    .await;
    for r in receiver.received() {
        assert!(r["verified"].as_array().unwrap().iter().all(|v| v == true), "an unverified delivery: {r}");
    }
    eprintln!(
        "campaign seed {seed}: {} top-ups, {} withdrawals, {} events delivered; ledger balanced",
        topups.len(),
        withdrawals.len(),
        ids.len()
    );
}

/// After the campaign, the marketplace merchant's books: every acknowledged
/// payment, split batch, refund and seller withdrawal is there exactly once
/// and nothing else is; no payment is split twice (one executed item at most,
/// its `split` entry once in the ledger), each captured one is collected once,
/// each refund booked once (a failed one mirrored once), each paid withdrawal's
/// commission booked once; the sellers' and the marketplace's balances are
/// what the payments, their splits, refunds and withdrawals say.
async fn check_marketplace(svc: &Service, key: &Key, sellers: &[String], ops: &[Op]) {
    let (mut payments, mut batches, mut refunds, mut withdrawals) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    eventually(
        "no payment action, split batch, refund or withdrawal left processing",
        secs(120),
        async || {
            payments = list_all(svc, key, "/v1/payments").await;
            batches = list_all(svc, key, "/v1/split-batches").await;
            refunds.clear();
            for p in &payments {
                refunds.extend(list_all(svc, key, &format!("/v1/payments/{}/refunds", p.str("id"))).await);
            }
            withdrawals.clear();
            for seller in sellers {
                withdrawals.extend(list_all(svc, key, &format!("/v1/recipients/{seller}/withdrawals")).await);
            }
            payments.iter().all(|p| p["pending_action"].is_null() && p["split"]["status"] != "processing")
                && batches.iter().all(|b| b["status"] == "completed")
                && refunds.iter().chain(&withdrawals).all(|x| x["status"] != "processing")
        },
    )
    .await;
    let acked = |kind: &'static str| ops.iter().filter(move |o| o.kind == kind && o.seen == Seen::Ok);
    let lists = [
        ("payment", &payments),
        ("split", &batches),
        ("refund", &refunds),
        ("seller_withdrawal", &withdrawals),
    ];
    for (kind, listed) in lists {
        let ids: HashSet<&str> = listed.iter().map(|x| x.str("id")).collect();
        assert_eq!(ids.len(), listed.len(), "a {kind} listed twice");
        for op in acked(kind) {
            let id = op.answer.str("id");
            assert!(ids.contains(id), "acknowledged {kind} {id} is missing");
        }
        assert_eq!(listed.len(), acked(kind).count(), "{kind}s that no acknowledged request created exist");
    }
    let mut executed: HashMap<&str, usize> = HashMap::new();
    for item in batches.iter().flat_map(|b| b["items"].as_array().unwrap()) {
        if item["status"] == "executed" {
            *executed.entry(item.str("payment_id")).or_default() += 1;
        }
    }
    // The merchant's legs in the ledger, per (entry kind, payment): the collection's
    // pending +c, the split's pending −c and available +c (every payment has a
    // commission line; the split's legs exist when some of it is left to move).
    let mut legs: HashMap<(String, String), usize> = HashMap::new();
    for t in list_all(svc, key, "/v1/balance/transactions").await {
        *legs.entry((t.str("type").to_owned(), t.str("source_id").to_owned())).or_default() += 1;
    }
    let legs_of = |kind: &str, id: &str| legs.get(&(kind.to_owned(), id.to_owned())).copied().unwrap_or(0);
    // Each refund's entry once (every refund takes a portion of the marketplace's COMMISSION
    // line: one merchant leg), a failed one mirrored once; each paid withdrawal's commission once.
    for r in &refunds {
        let (id, failed) = (r.str("id"), r["status"] == "failed");
        assert_eq!(legs_of("marketplace_refund", id), 1, "refund {id} booked once: {r}");
        assert_eq!(legs_of("marketplace_refund_reversal", id), usize::from(failed), "refund {id}: {r}");
    }
    for w in &withdrawals {
        let paid = w["status"] == "succeeded";
        assert_eq!(
            legs_of("recipient_withdrawal_paid", w.str("id")),
            usize::from(paid),
            "withdrawal once: {w}"
        );
    }
    // Per party ("" for the marketplace itself): (in transit, available).
    let mut books: HashMap<&str, (i64, i64)> = HashMap::new();
    for w in withdrawals.iter().filter(|w| w["status"] == "succeeded") {
        books.entry(w.str("recipient_id")).or_default().1 -= w.i64("amount.value");
        books.entry("").or_default().1 += w.i64("commission.value");
    }
    for p in &payments {
        let id = p.str("id");
        let split = p["split"]["status"] == "executed";
        let collected = matches!(p.str("status"), "SUCCEEDED" | "PARTIALLY_REFUNDED" | "REFUNDED");
        // The payment's succeeded refunds, and those before its split.
        let succeeded: Vec<&Value> =
            refunds.iter().filter(|r| r["payment_id"] == id && r["status"] == "succeeded").collect();
        let to_buyer: i64 = succeeded.iter().map(|r| r.i64("amount.value")).sum();
        assert_eq!(p["refunded_amount"]["value"].as_i64().unwrap_or(0), to_buyer, "refunded once: {p}");
        // Instants compared as instants: an RFC 3339 string drops ".000", so
        // "…:02Z" sorts after "…:02.500Z" as text (the long campaign, seed 42,
        // counted a refund 500 ms after its split as before it).
        let instant = |raw: &str| pelago_storage::Timestamp::parse_rfc3339(raw).expect("an RFC 3339 instant");
        let split_at =
            p["split"]["executed_at"].as_str().map_or(pelago_storage::Timestamp(i64::MAX), instant);
        let before_split = |line: usize| -> i64 {
            let before = succeeded.iter().filter(|r| instant(r.str("created_at")) < split_at);
            let portions = before.flat_map(|r| r["splits"].as_array().unwrap());
            portions.filter(|s| s["line"] == line).map(|s| s.i64("amount.value")).sum()
        };
        assert_eq!(
            executed.get(id).copied().unwrap_or(0),
            usize::from(split),
            "payment {id} split once: {p}"
        );
        // The split moves the commission left at that moment; a commission refunded
        // whole before the split moves nothing, so the entry has no merchant legs.
        let lines_now = p["split_marketplace"].as_array().unwrap();
        let commission_moved: i64 = (0..lines_now.len())
            .filter(|&j| lines_now[j]["recipient_id"].is_null())
            .map(|j| lines_now[j].i64("amount.value") - before_split(j))
            .sum();
        let split_legs = 2 * usize::from(split && commission_moved != 0);
        assert_eq!(legs_of("split", id), split_legs, "the split entry of {id} once: {p}");
        assert_eq!(legs_of("marketplace_collection", id), usize::from(collected), "{id} collected once: {p}");
        assert!(!split || (collected && p["settled"] == true), "split before T+1: {p}");
        let lines = p["split_marketplace"].as_array().unwrap();
        for (j, line) in lines.iter().enumerate().filter(|_| collected) {
            let party = books.entry(line["recipient_id"].as_str().unwrap_or("")).or_default();
            let rest = line.i64("amount.value") - line["refunded"]["value"].as_i64().unwrap_or(0);
            if split {
                let moved = line["split_amount"]["value"].as_i64().unwrap_or(0);
                assert_eq!(moved, line.i64("amount.value") - before_split(j), "line {j}: {p}");
                party.1 += rest;
            } else {
                party.0 += rest;
            }
        }
    }
    for seller in sellers {
        let b = recipient_balance(svc, key, seller).await;
        let got = (b["in_transit"].as_i64().unwrap_or(0), b["available"].as_i64().unwrap_or(0));
        assert_eq!(got, books.get(seller.as_str()).copied().unwrap_or_default(), "seller {seller}: {b}");
    }
    let (_, b) = send(svc, key, Method::GET, "/v1/balance", None).await;
    let got = (
        b["balances"][0]["pending"].as_i64().unwrap_or(0),
        b["balances"][0]["available"].as_i64().unwrap_or(0),
    );
    assert_eq!(got, books.get("").copied().unwrap_or_default(), "the marketplace's balance: {b}");
    ledger_balanced(svc).await;
    let ok = |xs: &[Value]| xs.iter().filter(|x| x["status"] == "succeeded").count();
    eprintln!(
        "campaign marketplace: {} payments ({} collected), {} batches, {} payments split once, \
         {} refunds ({} succeeded), {} seller withdrawals ({} paid)",
        payments.len(),
        payments.iter().filter(|p| p["captured_at"].is_string()).count(),
        batches.len(),
        executed.len(),
        refunds.len(),
        ok(&refunds),
        withdrawals.len(),
        ok(&withdrawals)
    );
}
