//! Marketplace set-ups shared by the tests: recipients onboarded through the
//! sandbox, and money booked for them through the merchant actor on a
//! stopped service's store (no HTTP route books marketplace entries before
//! payments land).

use std::path::Path;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use super::{Key, Service, send};

pub fn recipient_body(name: &str, account_number: &str) -> Value {
    json!({
        "type": "individual", "name": name, "email": "s@example.com", "phone": "+6591234567",
        "country": "SG",
        "individual": {"first_name": "Sam", "last_name": "Seller", "date_of_birth": "1990-01-01",
                       "id_document": {"type": "passport", "number": "P1234567"}},
        "bank_account": {"holder_name": "Sam", "account_number": account_number, "bank_code": "DBS", "kind": "personal"},
    })
}

/// A recipient onboarded in one step (the sandbox decides by the name's last word).
pub async fn recipient(svc: &Service, key: &Key, name: &str, account_number: &str) -> String {
    let (status, rec) =
        send(svc, key, Method::POST, "/v1/recipients", Some(&recipient_body(name, account_number))).await;
    assert_eq!(status, StatusCode::CREATED, "{rec}");
    let id = rec["id"].as_str().unwrap().to_owned();
    let onboard = json!({"type": "ONE_STEP_ONBOARDING"});
    let (status, o) =
        send(svc, key, Method::POST, &format!("/v1/recipients/{id}/onboardings"), Some(&onboard)).await;
    assert_eq!(status, StatusCode::CREATED, "{o}");
    id
}

/// The instant the entries of [`fund`] are booked at.
struct At(pelago_storage::Timestamp);

impl pelago_actors::ports::Clock for At {
    fn now(&self) -> pelago_storage::Timestamp {
        self.0
    }
}

/// Books, dated `at` (service time), a collection of one line per recipient
/// (USD minor units) and its split through the merchant actor on the stopped
/// service's store (`data`): each recipient has its amount available.
pub fn fund(data: &Path, merchant: &str, recipients: &[(&str, i64)], at: chrono::DateTime<chrono::Utc>) {
    use pelago_actors::{
        ledger::{EntryKind, marketplace},
        merchant::PostEntry,
        system::{Actors, SystemConfig},
    };
    use pelago_storage::{Currency, MerchantId, Money, RecipientId, Store, StoreConfig};
    let data = data.to_owned();
    let merchant = MerchantId::parse(merchant).unwrap();
    let lines: Vec<(marketplace::Party, Money)> = recipients
        .iter()
        .map(|(r, v)| {
            (marketplace::Party::Recipient(RecipientId::parse(r).unwrap()), Money::new(*v, Currency::USD))
        })
        .collect();
    std::thread::spawn(move || {
        actix::System::with_tokio_rt(|| {
            tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
        })
        .block_on(async move {
            let store = Store::open(&data.join("db"), &StoreConfig::default()).unwrap();
            let actors = Actors::start(
                store.clone(),
                std::sync::Arc::new(At(pelago_storage::Timestamp::from_unix_ms(at.timestamp_millis()))),
                SystemConfig::default(),
            );
            let payment = pelago_storage::PaymentId::generate().to_string();
            for (kind, postings, source) in [
                (EntryKind::MarketplaceCollection, marketplace::collection(&lines).unwrap(), payment.clone()),
                (EntryKind::Split, marketplace::split(&lines).unwrap(), format!("split/{payment}")),
            ] {
                let entry = PostEntry { source_id: source, kind, postings, event: None, index: vec![] };
                actors.ask_merchant(&merchant, entry).await.unwrap().unwrap();
            }
            store.flush_blocking().unwrap();
        });
    })
    .join()
    .unwrap();
}
