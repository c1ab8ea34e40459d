//! The README's walk-through runs as written (issue 13): the shell block after
//! the `walkthrough` marker is run by bash, in order, from the repository root
//! against the sandbox, with the example bodies of `examples/`. Only two things
//! are substituted: `cargo run --release -q --` is this build's binary, and the
//! service's address and data dir come from the environment variables the
//! block already reads.

mod common;

use std::process::Command;

use common::Service;
use serde_json::Value;

const MARKER: &str = "<!-- walkthrough";

/// The first ```sh block after the marker.
fn walkthrough(readme: &str) -> String {
    let after = &readme[readme.find(MARKER).expect("README has the walkthrough marker")..];
    let start = after.find("```sh\n").expect("a sh block after the marker") + "```sh\n".len();
    let len = after[start..].find("\n```").expect("the block ends");
    after[start..start + len + 1].to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_walkthrough_runs_as_written() {
    let root = env!("CARGO_MANIFEST_DIR");
    let script = walkthrough(&std::fs::read_to_string(format!("{root}/README.md")).unwrap());
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // As a newcomer's: the admin token is generated into the data dir.
    let svc = Service::start(&data, &[("PELAGO_ADMIN_TOKEN", common::UNSET)]);
    let shim = r#"set -euo pipefail
cargo() {
  if [ "$1 $2 $3 $4" = "run --release -q --" ]; then shift 4; "$PELAGO_BIN" "$@"
  else echo "the walkthrough ran an unexpected cargo command: cargo $*" >&2; return 2; fi
}
"#;
    let (base, data_dir) = (svc.base.clone(), data.clone());
    let out = tokio::task::spawn_blocking(move || {
        Command::new("bash")
            .arg("-c")
            .arg(format!("{shim}{script}"))
            .current_dir(root)
            .env("PELAGO_BIN", env!("CARGO_BIN_EXE_pelago-card"))
            .env("PELAGO_BASE_URL", base)
            .env("PELAGO_DATA_DIR", data_dir)
            .env_remove("PELAGO_KEY_ID")
            .env_remove("PELAGO_API_SECRET")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "the walkthrough failed:\n{stdout}\n{stderr}");

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
    let types: Vec<&str> =
        events["data"].as_array().unwrap().iter().map(|e| e["type"].as_str().unwrap()).collect();
    for expected in ["card.opened", "order.paid", "topup.succeeded", "transaction.created"] {
        assert!(types.contains(&expected), "no {expected} in {types:?}");
    }
    common::ledger_balanced(&svc).await;
}
