//! API fuzzing (issue 9): schemathesis against the live `/openapi.json`, every
//! request signed (tests/fuzz/test_api.py), bounded by `PELAGO_FUZZ_EXAMPLES`
//! per operation: no 5xx, every response matches the document, unknown
//! methods get 405 with `Allow`. Installs schemathesis with pip if missing.

mod common;

use std::process::Command;

use common::{ADMIN_TOKEN, POLYFLOW_TOKEN, Service};

fn ensure_schemathesis() {
    let present = Command::new("python3")
        .args(["-c", "import schemathesis, pytest, requests"])
        .status()
        .is_ok_and(|s| s.success());
    if !present {
        let out = Command::new("python3")
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "schemathesis==4.32.5",
                "pytest",
                "requests",
            ])
            .output()
            .expect("run pip");
        assert!(
            out.status.success(),
            "pip install schemathesis failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_no_5xx_and_no_undocumented_response() {
    tokio::task::spawn_blocking(ensure_schemathesis).await.unwrap();
    let svc = Service::temp(&[
        ("PELAGO_RATE_LIMIT", "100000,100000"),
        ("PELAGO_IP_RATE_LIMIT", "100000,100000"),
        ("PELAGO_LOG", "warn"),
    ]);
    let m = svc.merchant("Fuzzed").await;
    let base = svc.base.clone();
    let out = tokio::task::spawn_blocking(move || {
        Command::new("python3")
            .args(["-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/fuzz/test_api.py"])
            .env("PELAGO_URL", base)
            .env("PELAGO_ADMIN_TOKEN", ADMIN_TOKEN)
            .env("PELAGO_POLYFLOW_TOKEN", POLYFLOW_TOKEN)
            .env("PELAGO_KEY_ID", &m.key.key_id)
            .env("PELAGO_API_SECRET", &m.key.secret)
            .output()
            .expect("run pytest")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "schemathesis failed:\n{}\n{}",
        stdout,
        String::from_utf8_lossy(&out.stderr)
    );
}
