//! The README's marketplace walk-through runs as written: the shell block
//! after the `marketplace walkthrough` marker, by bash from the repository
//! root against the sandbox, with `cargo run --release -q --` as this build's
//! binary (as `tests/readme.rs` does for the first block).

mod common;

use std::process::Command;

use common::Service;

const MARKER: &str = "<!-- marketplace walkthrough";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_marketplace_walkthrough_runs_as_written() {
    let root = env!("CARGO_MANIFEST_DIR");
    let readme = std::fs::read_to_string(format!("{root}/README.md")).unwrap();
    let after = &readme[readme.find(MARKER).expect("README has the marketplace marker")..];
    let start = after.find("```sh\n").expect("a sh block after the marker") + "```sh\n".len();
    let script = &after[start..start + after[start..].find("\n```").expect("the block ends") + 1];
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let svc = Service::start(&data, &[("PELAGO_ADMIN_TOKEN", common::UNSET)]);
    let shim = r#"set -euo pipefail
cargo() {
  if [ "$1 $2 $3 $4" = "run --release -q --" ]; then shift 4; "$PELAGO_BIN" "$@"
  else echo "the walkthrough ran an unexpected cargo command: cargo $*" >&2; return 2; fi
}
"#;
    let (base, data_dir, script) = (svc.base.clone(), data.clone(), script.to_owned());
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
    assert_eq!(
        stdout.trim_end().lines().last(),
        Some(r#"{"receive_splits":true,"withdraw":true}"#),
        "{stdout}"
    );
}
