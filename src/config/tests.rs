use std::collections::HashMap;

use super::*;

fn load(env: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let map: HashMap<String, String> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    Config::load_from(&Flags::default(), |k| map.get(k).cloned())
}

#[test]
fn defaults_match_sandbox_md() {
    let c = load(&[]).unwrap();
    assert_eq!(c.listen.to_string(), "127.0.0.1:8080");
    assert_eq!(c.data_dir, PathBuf::from("./data"));
    assert_eq!(c.sandbox_listen.to_string(), "127.0.0.1:8090");
    assert_eq!(c.upstream_timeout_ms, 10_000);
    assert_eq!(c.webhook_retry_schedule_secs, vec![5, 30, 120, 600, 3600, 14400, 43200, 86400]);
    assert_eq!((c.rate_limit_per_sec, c.rate_limit_burst), (100, 200));
    assert_eq!(c.max_live_actors, 100_000);
    assert_eq!(c.actor_idle_secs, 600);
    assert_eq!((c.ip_rate_limit_per_sec, c.ip_rate_limit_burst), (200, 1000));
    assert_eq!((c.header_read_timeout_ms, c.body_read_timeout_ms), (10_000, 30_000));
    assert_eq!(c.max_connections, 1024);
    assert_eq!(c.retention_secs, 30 * 86_400);
    assert_eq!(c.marketplace_utc_offset.local_minus_utc(), 8 * 3600);
    assert_eq!(c.withdrawal_window.describe(), "07:00-20:00");
    assert_eq!(c.reconciliation_cron, "0 0 2 * * *");
    assert!(!c.sandbox);
    assert_eq!(c.public_base_url(), "http://127.0.0.1:8080");
}

#[test]
fn each_bad_value_names_its_setting() {
    for (name, value) in [
        ("PELAGO_LISTEN", "nope"),
        ("PELAGO_SANDBOX", "maybe"),
        ("PELAGO_UPSTREAM_TIMEOUT_MS", "-5"),
        ("PELAGO_WEBHOOK_RETRY_SCHEDULE", "5,x"),
        ("PELAGO_BILLING_CRON", "every day"),
        ("PELAGO_MAX_LIVE_ACTORS", "0"),
        ("PELAGO_RATE_LIMIT", "100"),
        ("PELAGO_IP_RATE_LIMIT", "1,"),
        ("PELAGO_HEADER_READ_TIMEOUT_MS", "5"),
        ("PELAGO_BODY_READ_TIMEOUT_MS", "soon"),
        ("PELAGO_MAX_CONNECTIONS", "0"),
        ("PELAGO_RETENTION_SECS", "0"),
        ("PELAGO_MASTER_KEY", "c2hvcnQ="),
        ("PELAGO_ADMIN_TOKEN", "short"),
        ("PELAGO_LOG_FORMAT", "xml"),
        ("PELAGO_PUBLIC_BASE_URL", "ftp://x"),
        ("PELAGO_MARKETPLACE_UTC_OFFSET", "UTC+8"),
        ("PELAGO_WITHDRAWAL_WINDOW", "07:00-25:00"),
        ("PELAGO_RECONCILIATION_CRON", "daily"),
    ] {
        let err = load(&[(name, value)]).unwrap_err();
        assert_eq!(err.setting, name, "{value}");
        assert!(!err.to_string().contains('\n'), "one line");
    }
}

#[test]
fn env_wins_over_the_file_and_flags_win_over_env() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pelago.toml");
    std::fs::write(&path, "listen = \"127.0.0.1:7000\"\nrate_limit = \"5,10\"\nsandbox = true\n").unwrap();
    let flags = Flags { config: Some(path.clone()), ..Flags::default() };
    let c =
        Config::load_from(&flags, |k| (k == "PELAGO_LISTEN").then(|| "127.0.0.1:7001".to_owned())).unwrap();
    assert_eq!(c.listen.to_string(), "127.0.0.1:7001");
    assert_eq!((c.rate_limit_per_sec, c.rate_limit_burst), (5, 10));
    assert!(c.sandbox);
    let flags = Flags { config: Some(path), listen: Some("127.0.0.1:7002".into()), ..Flags::default() };
    let c =
        Config::load_from(&flags, |k| (k == "PELAGO_LISTEN").then(|| "127.0.0.1:7001".to_owned())).unwrap();
    assert_eq!(c.listen.to_string(), "127.0.0.1:7002");
}

#[test]
fn unknown_file_keys_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pelago.toml");
    std::fs::write(&path, "lsiten = \"127.0.0.1:7000\"\n").unwrap();
    let err = Config::load_from(&Flags { config: Some(path), ..Flags::default() }, |_| None).unwrap_err();
    assert_eq!(err.setting, "--config");
}

#[test]
fn a_gateway_url_is_refused_in_sandbox_mode() {
    let url = ("PELAGO_GATEWAY_URL", "https://gateway.example.com");
    let err = load(&[url, ("PELAGO_SANDBOX", "1")]).unwrap_err();
    assert_eq!(err.setting, "PELAGO_GATEWAY_URL");
    let flags = Flags { sandbox: true, ..Flags::default() };
    let err = Config::load_from(&flags, |k| (k == url.0).then(|| url.1.to_owned())).unwrap_err();
    assert_eq!(err.setting, "PELAGO_GATEWAY_URL", "the --sandbox flag counts too");
    assert_eq!(load(&[url]).unwrap().gateway_url.as_deref(), Some(url.1), "live mode keeps it");
}
