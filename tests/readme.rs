//! The README's walk-through runs as written (issue 13): the shell block after
//! the `walkthrough` marker is run by bash, in order, from the repository root
//! against the sandbox, with the example bodies of `examples/`
//! (`common::readme` says what is substituted).

mod common;

use common::{Json, Service};
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_walkthrough_runs_as_written() {
    let script = common::readme::block_after("<!-- walkthrough");
    let (_dir, data) = common::temp_data();
    // As a newcomer's: the admin token is generated into the data dir.
    let svc = Service::start(&data, &[("PELAGO_ADMIN_TOKEN", common::UNSET)]);
    let out = common::readme::run(&svc, &data, script).await;
    let stdout = String::from_utf8_lossy(&out.stdout);

    // What it printed: the checkout page, the card, then its events.
    let mut lines = stdout.lines();
    let checkout = lines.next().unwrap();
    assert!(checkout.starts_with("http://") && checkout.contains("/gateway/checkout/"), "{stdout}");
    let rest: String = lines.collect::<Vec<_>>().join("\n");
    let mut docs = serde_json::Deserializer::from_str(&rest).into_iter::<Value>();
    let card = docs.next().unwrap().unwrap();
    assert_eq!(
        (card["status"].as_str(), card["balance"]["value"].as_i64()),
        (Some("active"), Some(7_500)),
        "{card}"
    );
    let events = docs.next().unwrap().unwrap();
    let types: Vec<&str> = events.strs("data", "type");
    for expected in ["card.opened", "order.paid", "topup.succeeded", "transaction.created"] {
        assert!(types.contains(&expected), "no {expected} in {types:?}");
    }
    common::ledger_balanced(&svc).await;
}
