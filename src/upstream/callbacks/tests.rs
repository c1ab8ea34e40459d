use pelago_actors::ports::{ChannelEvent, ChannelTxnStatus, GatewayEvent, GatewayOrderStatus};
use pelago_storage::Currency;

use super::*;

const KEY: &[u8] = b"whsec_test";
const BODY: &[u8] = br#"{"event_id":"evt_1"}"#;
const NOW: i64 = 1_790_000_000;

#[test]
fn sign_then_verify_round_trips() {
    let header = sign(KEY, NOW, BODY);
    assert!(header.starts_with(&format!("t={NOW},v1=")));
    assert_eq!(verify(&header, KEY, BODY, NOW), Ok(()));
    assert_eq!(verify(&header, KEY, BODY, NOW + SIGNATURE_TOLERANCE_SECS), Ok(()));
    assert_eq!(verify(&header, KEY, BODY, NOW - SIGNATURE_TOLERANCE_SECS), Ok(()));
}

#[test]
fn tampered_body_or_wrong_key_fails() {
    let header = sign(KEY, NOW, BODY);
    assert_eq!(verify(&header, KEY, br#"{"event_id":"evt_2"}"#, NOW), Err(CallbackAuthError::BadSignature));
    assert_eq!(verify(&header, b"other", BODY, NOW), Err(CallbackAuthError::BadSignature));
    // The timestamp is part of what is signed.
    let moved = header.replacen(&NOW.to_string(), &(NOW + 1).to_string(), 1);
    assert_eq!(verify(&moved, KEY, BODY, NOW), Err(CallbackAuthError::BadSignature));
}

#[test]
fn stale_and_future_timestamps_fail() {
    let old = sign(KEY, NOW - SIGNATURE_TOLERANCE_SECS - 1, BODY);
    assert_eq!(verify(&old, KEY, BODY, NOW), Err(CallbackAuthError::Stale));
    let future = sign(KEY, NOW + SIGNATURE_TOLERANCE_SECS + 1, BODY);
    assert_eq!(verify(&future, KEY, BODY, NOW), Err(CallbackAuthError::FromTheFuture));
}

#[test]
fn malformed_headers_fail() {
    let good = sign(KEY, NOW, BODY);
    let v1 = good.split_once(",v1=").unwrap().1.to_owned();
    for header in [
        String::new(),
        "garbage".to_owned(),
        format!("v1={v1}"),
        format!("t={NOW}"),
        format!("t=abc,v1={v1}"),
        format!("t=-5,v1={v1}"),
        format!("t={NOW},v1=zz"),
        format!("t={NOW},t={NOW},v1={v1}"),
        format!("t={NOW},v1={}", "a".repeat(600)),
    ] {
        assert_eq!(verify(&header, KEY, BODY, NOW), Err(CallbackAuthError::Malformed), "{header}");
    }
    // Extra schemes and several v1 entries are fine when one matches.
    assert_eq!(verify(&format!("t={NOW},v0=00,v1=00,v1={v1}"), KEY, BODY, NOW), Ok(()));
}

#[test]
fn parses_channel_transaction_callback() {
    let body = br#"{"event_id":"evt_9","type":"transaction","data":{"card_id":"card_1","transaction":{
        "id":"ctx_1","card_id":"cc_1","type":"authorization","status":"declined",
        "amount":{"value":500,"currency":"USD"},"merchant_name":"Cafe","mcc":"5812",
        "occurred_at":"2026-01-02T03:04:05Z","balance_after":{"value":100,"currency":"USD"}}}}"#;
    let cb = parse_channel_callback(body).unwrap();
    assert_eq!(cb.event_id, "evt_9");
    match cb.event {
        ChannelEvent::Transaction { card_id, transaction } => {
            assert_eq!(card_id, "card_1");
            assert_eq!(transaction.status, ChannelTxnStatus::Declined);
            assert_eq!(transaction.amount.value, 500);
            assert_eq!(transaction.amount.currency, Currency::USD);
        }
        other => panic!("unexpected event {other:?}"),
    }
    assert!(parse_channel_callback(br#"{"event_id":"e","type":"nope","data":{}}"#).is_err());
}

#[test]
fn parses_gateway_order_callback() {
    let body = br#"{"event_id":"evt_3","merchant_id":"gm_1","type":"order.updated","data":{
        "id":"go_1","order_id":"ord_1","status":"paid","amount":{"value":300,"currency":"USD"},
        "at":"2026-01-02T03:04:05Z"}}"#;
    let cb = parse_gateway_callback(body).unwrap();
    assert_eq!(cb.account_merchant_id, "gm_1");
    assert!(matches!(cb.event, GatewayEvent::OrderUpdated { status: GatewayOrderStatus::Paid, .. }));
}

#[test]
fn parses_a_recipient_payout_callback() {
    let body = br#"{"event_id":"evt_4","merchant_id":"gm_1","type":"recipient_payout.updated","data":{
        "id":"grp_1","request_id":"rwd_1","status":"failed","amount":{"value":475,"currency":"USD"}}}"#;
    let cb = parse_gateway_callback(body).unwrap();
    assert_eq!(cb.account_merchant_id, "gm_1");
    match cb.event {
        GatewayEvent::RecipientPayoutUpdated { request_id, amount } => {
            assert_eq!((request_id.as_str(), amount.value), ("rwd_1", 475));
        }
        other => panic!("unexpected event {other:?}"),
    }
}
