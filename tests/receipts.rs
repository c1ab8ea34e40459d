//! Receipts for points over real HTTP (issue 7): issued for a posted
//! transaction of the merchant's own card, verified offline with the published
//! key and online by Polyflow, tamper-evident, one per transaction, redeemed
//! once, and readable from their QR code.
//!
//! Cards are not over HTTP in this branch yet, so the test seeds a card and
//! its transactions into the store the way the card actor writes them, with
//! the service stopped.

mod common;

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use common::{Json, Merchant, Service, seed};
use ed25519_dalek::{Signature, VerifyingKey};
use pelago_actors::{
    card::{CardStatus, TransactionRecord},
    ports::{ChannelTxnStatus, ChannelTxnType},
};
use pelago_storage::{
    ChannelId, Currency, MerchantId, Money, Store, StoreConfig, Timestamp, TransactionId, Tree, WriteBatch,
};
use reqwest::StatusCode;
use serde_json::{Value, json};

/// Writes a card of `merchant` with one transaction per `statuses` entry, as
/// the card actor stores them; returns the transaction ids.
fn seed_card(store: &Store, merchant: &str, statuses: &[ChannelTxnStatus]) -> Vec<TransactionId> {
    let merchant = MerchantId::parse(merchant).unwrap();
    let at = Timestamp::parse_rfc3339("2026-11-20T10:00:00Z").unwrap();
    let mut card = seed::card(&merchant, &ChannelId::generate(), CardStatus::Active, at);
    let card_id = card.id.clone();
    card.last4 = Some("4242".into());
    let mut batch = WriteBatch::new();
    batch.put(card_id.as_bytes(), &card).unwrap();
    let mut ids = Vec::new();
    for (i, status) in statuses.iter().enumerate() {
        let id = TransactionId::generate();
        let at = Timestamp::parse_rfc3339("2026-11-21T12:30:00Z").unwrap();
        let txn = TransactionRecord {
            id: id.clone(),
            card_id: card_id.clone(),
            merchant_id: merchant.clone(),
            channel_transaction_id: format!("ch-txn-{id}-{i}"),
            kind: ChannelTxnType::Clearing,
            status: *status,
            amount: Money::new(1250, Currency::USD),
            merchant_name: "Cafe Nero".into(),
            mcc: "5812".into(),
            related_channel_transaction_id: None,
            occurred_at: at,
            created_at: at,
            updated_at: at,
            balance_effect_minor: 0,
            version: 1,
        };
        let key = format!("{card_id}/{id}");
        batch.put(&key, &txn).unwrap();
        batch.put_raw(
            Tree::Index,
            format!("chtxn/{}/{}", card.channel_id, txn.channel_transaction_id),
            key.as_bytes(),
        );
        batch.put_raw(Tree::Index, format!("txn/{id}"), card_id.as_bytes());
        ids.push(id);
    }
    let _ticket = store.commit(batch).unwrap();
    ids
}

/// The QR code's modules from the SVG (`viewBox` in modules, the path's
/// `M{x} {y}h{w}v{h}H{x}V{y}` rectangles), decoded back to text with `rqrr`.
fn decode_qr_svg(svg: &str) -> String {
    let view_box = svg.split("viewBox=\"").nth(1).unwrap().split('"').next().unwrap();
    let size: usize = view_box.split(' ').nth(2).unwrap().parse().unwrap();
    let mut dark = vec![false; size * size];
    let path = svg.split(" d=\"").nth(1).unwrap().split('"').next().unwrap();
    for rect in path.split('M').filter(|r| !r.is_empty()) {
        let numbers: Vec<usize> = rect
            .split(|c: char| c.is_ascii_alphabetic() || c == ' ')
            .filter(|s| !s.is_empty())
            .map(|s| s.parse().unwrap())
            .collect();
        let (x, y, w, h) = (numbers[0], numbers[1], numbers[2], numbers[3]);
        for yy in y..y + h {
            for xx in x..x + w {
                dark[yy * size + xx] = true;
            }
        }
    }
    const PX: usize = 4; // pixels per module for the detector
    let mut image = rqrr::PreparedImage::prepare_from_greyscale(size * PX, size * PX, |x, y| {
        if dark[(y / PX) * size + x / PX] { 0 } else { 255 }
    });
    let grids = image.detect_grids();
    assert_eq!(grids.len(), 1, "one QR code in the SVG");
    grids[0].decode().unwrap().1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receipts_are_signed_once_per_posted_transaction_and_redeemed_once() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("svc");
    let svc = Service::start(&data, &[]);
    let Merchant { id: merchant, key, .. } = svc.merchant("Points Cafe").await;
    let Merchant { id: other_merchant, key: other_key, .. } = svc.merchant("Other Cafe").await;
    assert!(svc.terminate().success());
    let (mine, theirs) = {
        let store = Store::open(&data.join("db"), &StoreConfig::default()).unwrap();
        let mine = seed_card(&store, &merchant, &[ChannelTxnStatus::Posted, ChannelTxnStatus::Pending]);
        let theirs = seed_card(&store, &other_merchant, &[ChannelTxnStatus::Posted]);
        store.flush_blocking().unwrap();
        (mine, theirs)
    };
    let svc = Service::start(&data, &[]);
    let (m, other) = (Merchant::of(&svc, &merchant, key), Merchant::of(&svc, &other_merchant, other_key));

    // The public key, without authentication.
    let published: Value =
        svc.http.get(svc.url("/v1/receipts/public-key")).send().await.unwrap().json().await.unwrap();
    assert_eq!(published["alg"], "Ed25519");
    let key_id = published.str("key_id").to_owned();
    let public_key: [u8; 32] =
        URL_SAFE_NO_PAD.decode(published.str("public_key")).unwrap().try_into().unwrap();
    let public_key = VerifyingKey::from_bytes(&public_key).unwrap();

    // Issue.
    let (status, issued) = m.post("/v1/receipts", json!({"transaction_id": mine[0]})).await;
    assert_eq!(status, StatusCode::CREATED, "{issued}");
    let receipt = issued.str("receipt").to_owned();
    let id = issued.str("id").to_owned();
    assert!(id.starts_with("rcp_"));
    assert_eq!(issued["transaction_id"], mine[0].as_str());
    assert!(issued.str("created_at").ends_with('Z'));

    // Offline verification with the published key.
    let offline = |receipt: &str| -> Option<Value> {
        let rest = receipt.strip_prefix("PR1.")?;
        let (payload, signature) = rest.split_once('.')?;
        let signature = Signature::from_slice(&URL_SAFE_NO_PAD.decode(signature).ok()?).ok()?;
        public_key.verify_strict(format!("PR1.{payload}").as_bytes(), &signature).ok()?;
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).ok()?).ok()
    };
    let payload = offline(&receipt).expect("verifies offline with the published key");
    assert_eq!(
        payload,
        json!({
            "receipt_id": id, "key_id": key_id, "merchant_id": merchant, "merchant_name": "Points Cafe",
            "card_last4": "4242", "transaction_id": mine[0], "amount": {"value": 1250, "currency": "USD"},
            "mcc": "5812", "transaction_time": "2026-11-21T12:30:00Z", "issued_at": payload["issued_at"],
        })
    );
    // The payload's fields in SECURITY.md's order.
    let raw_payload =
        String::from_utf8(URL_SAFE_NO_PAD.decode(receipt.split('.').nth(1).unwrap()).unwrap()).unwrap();
    let order = [
        "receipt_id",
        "key_id",
        "merchant_id",
        "merchant_name",
        "card_last4",
        "transaction_id",
        "amount",
        "mcc",
        "transaction_time",
        "issued_at",
    ];
    let positions: Vec<usize> =
        order.iter().map(|f| raw_payload.find(&format!("\"{f}\":")).unwrap()).collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "{raw_payload}");
    // Changing any byte breaks it (offline); online checks a few.
    for i in 0..receipt.len() {
        let mut bytes = receipt.clone().into_bytes();
        bytes[i] = if bytes[i] == b'x' { b'y' } else { b'x' };
        assert!(offline(&String::from_utf8(bytes).unwrap()).is_none(), "byte {i} changed, still valid");
    }

    // The QR code carries the same string.
    assert_eq!(decode_qr_svg(issued.str("qr_svg")), receipt);
    assert!(issued.str("qr_svg").len() < 32 * 1024, "runs keep the SVG small");

    // One receipt per transaction: a repeat answers 201 (API.md) with the same one.
    let (status, again) = m.post("/v1/receipts", json!({"transaction_id": mine[0]})).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!((&again["id"], &again["receipt"]), (&issued["id"], &issued["receipt"]));

    // Not posted → 409; another merchant's or unknown → 404.
    let (status, err) = m.post("/v1/receipts", json!({"transaction_id": mine[1]})).await;
    assert_eq!((status, err.code()), (StatusCode::CONFLICT, "invalid_state"));
    let (status, _) = m.post("/v1/receipts", json!({"transaction_id": theirs[0]})).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = m.post("/v1/receipts", json!({"transaction_id": TransactionId::generate()})).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Online verification.
    let r = svc
        .http
        .post(svc.url("/polyflow/v1/receipts/verify"))
        .json(&json!({"receipt": receipt}))
        .send()
        .await;
    assert_eq!(r.unwrap().status(), StatusCode::UNAUTHORIZED, "Polyflow's token is required");
    let (status, verified) =
        svc.polyflow("/polyflow/v1/receipts/verify", Some(json!({"receipt": receipt}))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(verified, json!({"valid": true, "receipt": payload, "redeemed": false}));
    let payload_end = receipt.rfind('.').unwrap();
    for i in [4, 10, payload_end - 1, payload_end + 1, receipt.len() - 2] {
        let mut bytes = receipt.clone().into_bytes();
        bytes[i] = if bytes[i] == b'x' { b'y' } else { b'x' };
        let altered = String::from_utf8(bytes).unwrap();
        let (status, v) =
            svc.polyflow("/polyflow/v1/receipts/verify", Some(json!({"receipt": altered}))).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(v["valid"], false, "byte {i}: {v}");
        assert!(v["reason"].is_string());
    }
    let (_, v) =
        svc.polyflow("/polyflow/v1/receipts/verify", Some(json!({"receipt": "not a receipt"}))).await;
    assert_eq!(v, json!({"valid": false, "reason": "malformed receipt"}));
    let forged = pelago_card::receipts::ReceiptKey::from_seed(&[3u8; 32]);
    let mut forged_payload: pelago_card::receipts::ReceiptPayload =
        serde_json::from_value(payload.clone()).unwrap();
    let (_, v) = svc
        .polyflow("/polyflow/v1/receipts/verify", Some(json!({"receipt": forged.sign(&forged_payload)})))
        .await;
    assert_eq!(v, json!({"valid": false, "reason": "bad signature"}), "our key id, another key");
    forged_payload.key_id = forged.key_id().to_owned();
    let (_, v) = svc
        .polyflow("/polyflow/v1/receipts/verify", Some(json!({"receipt": forged.sign(&forged_payload)})))
        .await;
    assert_eq!(v, json!({"valid": false, "reason": "unknown key id"}));

    // Redeem once.
    let (status, redeemed) =
        svc.polyflow(&format!("/polyflow/v1/receipts/{id}/redeem"), Some(json!({}))).await;
    assert_eq!(status, StatusCode::OK, "{redeemed}");
    assert_eq!(redeemed["id"], id.as_str());
    assert_eq!(redeemed["redeemed"], true);
    assert!(redeemed["redeemed_at"].is_string());
    let (status, err) = svc.polyflow(&format!("/polyflow/v1/receipts/{id}/redeem"), Some(json!({}))).await;
    assert_eq!((status, err.code()), (StatusCode::CONFLICT, "already_redeemed"));
    let (_, verified) = svc.polyflow("/polyflow/v1/receipts/verify", Some(json!({"receipt": receipt}))).await;
    assert_eq!(verified["redeemed"], true);
    let (status, _) = svc
        .polyflow(
            &format!("/polyflow/v1/receipts/{}/redeem", "rcp_01JDEMO0000000000000000000"),
            Some(json!({})),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Concurrent redeemers of another receipt: exactly one wins.
    let (status, theirs_receipt) = other.post("/v1/receipts", json!({"transaction_id": theirs[0]})).await;
    assert_eq!(status, StatusCode::CREATED);
    let path = format!("/polyflow/v1/receipts/{}/redeem", theirs_receipt.str("id"));
    let empty = json!({});
    let attempts = (0..8).map(|_| svc.polyflow(&path, Some(empty.clone())));
    let statuses: Vec<StatusCode> =
        futures::future::join_all(attempts).await.into_iter().map(|(s, _)| s).collect();
    assert_eq!(statuses.iter().filter(|s| **s == StatusCode::OK).count(), 1, "{statuses:?}");
    assert_eq!(statuses.iter().filter(|s| **s == StatusCode::CONFLICT).count(), 7, "{statuses:?}");

    // The receipt survives a restart, same key.
    assert!(svc.terminate().success());
    let svc = Service::start(&data, &[]);
    let (_, verified) = svc.polyflow("/polyflow/v1/receipts/verify", Some(json!({"receipt": receipt}))).await;
    assert_eq!(verified["valid"], true, "the generated receipt.key is kept");
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(data.join("receipt.key")).unwrap().permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
}
