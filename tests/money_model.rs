//! The money model test (issue 6): seeded random sequences of deposits,
//! top-ups (some refused by the channel), withdrawals (some to `FAIL`
//! addresses), fee changes and settlements, against a simple in-memory model
//! of the merchant's balance. After every step the service's balance equals
//! the model's, `available` is never negative, and at the end the ledger
//! check is balanced and the card's mirror equals the channel.

mod common;

use common::{Json, Service, clock, ledger_balanced, rng::Rng, secs};
use reqwest::StatusCode;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn balances_follow_a_simple_model_over_random_sequences() {
    let svc =
        Service::temp(&[("PELAGO_RATE_LIMIT", "100000,100000"), ("PELAGO_IP_RATE_LIMIT", "100000,100000")]);
    let today = clock::now(&svc).await;
    let channel = svc.first_channel().await;
    for seed in [7u64, 1_234_567, 0xDEAD_BEEF] {
        let mut rng = Rng::new(seed);
        let m = svc.merchant(&format!("Model {seed}")).await;
        let merchant = m.id.clone();
        m.withdrawal_addresses(
            json!([{"address": "TOK1", "network": "TRON"}, {"address": "FAILX", "network": "TRON"}]),
        )
        .await;
        let card = m.card_id().await;

        // The model: available balance, the card's funded total, the current fee schedule.
        let (mut available, mut funded, mut fixed, mut bps) = (0i64, 0i64, 0i64, 0i64);
        for step in 0..40 {
            let value = 1 + rng.below(5_000) as i64;
            match rng.below(6) {
                0 => {
                    let (status, _) = m.deposit_of(value, "USD").await;
                    assert_eq!(status, StatusCode::OK);
                    available += value;
                }
                1 | 2 => {
                    let refused = rng.below(4) == 0;
                    if refused {
                        svc.channel_fault(&channel, "topup", "decline").await;
                    }
                    let fee = fixed + (value * bps + 5_000) / 10_000;
                    let (status, t) = m.topup(&card, value).await;
                    if available < value + fee {
                        assert_eq!(status, StatusCode::PAYMENT_REQUIRED, "seed {seed} step {step}: {t}");
                        if refused {
                            svc.clear_channel_faults(&channel).await;
                        }
                    } else if refused {
                        assert_eq!(t["status"], "failed", "seed {seed} step {step}");
                    } else {
                        assert_eq!(t["status"], "succeeded", "seed {seed} step {step}: {t}");
                        assert_eq!(t["fee"]["value"], fee, "half-up fee");
                        available -= value + fee;
                        funded += value;
                    }
                }
                3 => {
                    let fail = rng.below(3) == 0;
                    let address = if fail { "FAILX" } else { "TOK1" };
                    let (status, w) = m.withdraw(value, address).await;
                    if available < value {
                        assert_eq!(status, StatusCode::PAYMENT_REQUIRED, "seed {seed} step {step}");
                    } else {
                        assert_eq!(status, StatusCode::CREATED, "seed {seed} step {step}: {w}");
                        if !fail {
                            available -= value;
                        } else {
                            // Released by the answer or the callback: wait for it, bounded.
                            let id = w.str("id");
                            let path = format!("/admin/v1/merchants/{merchant}/withdrawals/{id}");
                            svc.admin_poll(&path, secs(20), |w| w["status"] == "failed").await;
                        }
                    }
                }
                4 => {
                    fixed = rng.below(300) as i64;
                    bps = rng.below(500) as i64;
                    m.fees(json!({"currency": "USD", "topup_fee": {"fixed": fixed, "rate_bps": bps}})).await;
                }
                _ => {
                    // Master-account money never waits in pending: a settlement moves nothing.
                    let date = clock::date(clock::day_after(today, rng.below(28) as i64, 0, 0, 0));
                    svc.admin_post("/admin/v1/settlement/runs", json!({"date": date})).await;
                }
            }
            let got = m.available().await;
            assert_eq!(got, available, "seed {seed} step {step}: the balance left the model");
            assert!(got >= 0);
        }
        let d = m.get(&format!("/v1/cards/{card}/details")).await;
        assert_eq!(d.i64("balance.value"), funded, "seed {seed}: the channel funded what succeeded");
        let c = m.get(&format!("/v1/cards/{card}")).await;
        assert_eq!(c.i64("balance.value"), funded, "seed {seed}: the mirror equals the channel");
    }
    ledger_balanced(&svc).await;
}
