//! Runs a README walk-through as written: the first ```sh block after an
//! HTML comment marker, by bash, from the repository root, against a running
//! sandbox service. Only two things are substituted: `cargo run --release -q
//! --` is this build's binary, and the service's address and data dir come
//! from the environment variables the blocks already read.

use std::process::{Command, Output};

use super::Service;

/// The first ```sh block after `marker` in README.md.
pub fn block_after(marker: &str) -> String {
    let readme = std::fs::read_to_string(format!("{}/README.md", env!("CARGO_MANIFEST_DIR"))).unwrap();
    let after = &readme[readme.find(marker).unwrap_or_else(|| panic!("README has no {marker}"))..];
    let start = after.find("```sh\n").expect("a sh block after the marker") + "```sh\n".len();
    let len = after[start..].find("\n```").expect("the block ends");
    after[start..start + len + 1].to_owned()
}

/// Runs `script` against `svc` (started over `data_dir`); asserts it succeeded.
pub async fn run(svc: &Service, data_dir: &std::path::Path, script: String) -> Output {
    let shim = r#"set -euo pipefail
cargo() {
  if [ "$1 $2 $3 $4" = "run --release -q --" ]; then shift 4; "$PELAGO_BIN" "$@"
  else echo "the walkthrough ran an unexpected cargo command: cargo $*" >&2; return 2; fi
}
"#;
    let (base, data_dir) = (svc.base.clone(), data_dir.to_owned());
    let out = tokio::task::spawn_blocking(move || {
        Command::new("bash")
            .arg("-c")
            .arg(format!("{shim}{script}"))
            .current_dir(env!("CARGO_MANIFEST_DIR"))
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
    assert!(
        out.status.success(),
        "the walkthrough failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}
