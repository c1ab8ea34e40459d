//! The README's marketplace walk-through runs as written: the shell block
//! after the `marketplace walkthrough` marker (`common::readme`, as
//! `tests/readme.rs` does for the first block).

mod common;

use common::Service;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_marketplace_walkthrough_runs_as_written() {
    let script = common::readme::block_after("<!-- marketplace walkthrough");
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let svc = Service::start(&data, &[("PELAGO_ADMIN_TOKEN", common::UNSET)]);
    let out = common::readme::run(&svc, &data, script).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        stdout.trim_end().lines().last(),
        Some(r#"{"receive_splits":true,"withdraw":true}"#),
        "{stdout}"
    );
}
