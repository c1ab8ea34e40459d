//! The README's marketplace walk-through runs as written: the shell block
//! after the `marketplace walkthrough` marker (`common::readme`, as
//! `tests/readme.rs` does for the first block).

mod common;

use common::Service;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_marketplace_walkthrough_runs_as_written() {
    // Marketplace I, then Marketplace II in the same shell (it uses `$SELLER`).
    let script = common::readme::block_after("<!-- marketplace walkthrough")
        + &common::readme::block_after("<!-- marketplace II walkthrough");
    let (_dir, data) = common::temp_data();
    let svc = Service::start(&data, &[("PELAGO_ADMIN_TOKEN", common::UNSET)]);
    let out = common::readme::run(&svc, &data, script).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(lines.contains(&r#"{"receive_splits":true,"withdraw":true}"#), "{stdout}");
    for said in ["SUCCEEDED", "executed", "succeeded"] {
        assert!(lines.contains(&said), "{said}: {stdout}");
    }
    // Both days' txt files: the header, then the rows (the collection's on the
    // payment's day; the split's and the withdrawal's the next day).
    let header = lines.iter().filter(|l| l.starts_with("entry_id|posted_at|")).count();
    assert_eq!(header, 2, "{stdout}");
    for kind in
        ["|marketplace_collection|", "|split|", "|recipient_withdrawal|", "|recipient_withdrawal_paid|"]
    {
        assert!(lines.iter().any(|l| l.contains(kind)), "{kind}: {stdout}");
    }
}
