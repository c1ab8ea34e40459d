//! Configuration: defaults, then the TOML file, then `PELAGO_*` environment
//! variables (env wins over the file), then command-line flags. A bad value
//! stops the start with one line naming the setting (SANDBOX.md §Running).

use std::{net::SocketAddr, path::PathBuf};

use serde::Deserialize;

pub mod marketplace;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{setting}: {problem}")]
pub struct ConfigError {
    pub setting: String,
    pub problem: String,
}

fn bad(setting: &str, problem: impl Into<String>) -> ConfigError {
    ConfigError { setting: setting.into(), problem: problem.into() }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// Every setting of SANDBOX.md. Secrets are kept out of `Debug`.
#[derive(Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub public_base_url: Option<String>,
    /// The payment gateway's base URL (not in sandbox mode, where the simulator is used).
    pub gateway_url: Option<String>,
    pub admin_token: Option<String>,
    pub polyflow_token: Option<String>,
    pub master_key: Option<String>,
    pub receipt_key: Option<String>,
    pub sandbox: bool,
    pub sandbox_listen: SocketAddr,
    pub upstream_timeout_ms: u64,
    pub webhook_retry_schedule_secs: Vec<u64>,
    pub billing_cron: String,
    pub settlement_cron: String,
    /// MARKETPLACE.md §1: the offset of the withdrawal window and reconciliation days.
    pub marketplace_utc_offset: chrono::FixedOffset,
    pub withdrawal_window: marketplace::WithdrawalWindow,
    /// UTC; each instant builds the reconciliation files of the local day before it.
    pub reconciliation_cron: String,
    pub max_live_actors: usize,
    pub actor_idle_secs: u64,
    pub rate_limit_per_sec: u32,
    pub rate_limit_burst: u32,
    /// Per client IP, for everything not authenticated as a merchant (admin,
    /// Polyflow, callbacks, public routes, failed authentication).
    pub ip_rate_limit_per_sec: u32,
    pub ip_rate_limit_burst: u32,
    /// A connection waiting for a request head (new, or idle between
    /// keep-alive requests) is closed after this.
    pub header_read_timeout_ms: u64,
    /// A request body must have arrived in full this long after its head.
    pub body_read_timeout_ms: u64,
    /// Open client connections at most; more wait in the listen backlog.
    pub max_connections: usize,
    /// How long callback receipts and webhook delivery attempts are kept.
    pub retention_secs: u64,
    pub log: String,
    pub log_format: LogFormat,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("listen", &self.listen)
            .field("data_dir", &self.data_dir)
            .field("public_base_url", &self.public_base_url)
            .field("sandbox", &self.sandbox)
            .field("sandbox_listen", &self.sandbox_listen)
            .field("upstream_timeout_ms", &self.upstream_timeout_ms)
            .field("max_live_actors", &self.max_live_actors)
            .field("actor_idle_secs", &self.actor_idle_secs)
            .finish_non_exhaustive()
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: "127.0.0.1:8080".parse().expect("literal address"),
            data_dir: PathBuf::from("./data"),
            public_base_url: None,
            gateway_url: None,
            admin_token: None,
            polyflow_token: None,
            master_key: None,
            receipt_key: None,
            sandbox: false,
            sandbox_listen: "127.0.0.1:8090".parse().expect("literal address"),
            upstream_timeout_ms: 10_000,
            webhook_retry_schedule_secs: vec![5, 30, 120, 600, 3600, 14400, 43200, 86400],
            billing_cron: "0 0 0 1 * *".into(),
            settlement_cron: "0 0 1 * * *".into(),
            marketplace_utc_offset: chrono::FixedOffset::east_opt(8 * 3600).expect("literal offset"),
            withdrawal_window: marketplace::WithdrawalWindow::default(),
            reconciliation_cron: "0 0 2 * * *".into(),
            max_live_actors: 100_000,
            actor_idle_secs: 600,
            rate_limit_per_sec: 100,
            rate_limit_burst: 200,
            ip_rate_limit_per_sec: 200,
            ip_rate_limit_burst: 1000,
            header_read_timeout_ms: 10_000,
            body_read_timeout_ms: 30_000,
            max_connections: 1024,
            retention_secs: 30 * 86_400,
            log: "info".into(),
            log_format: LogFormat::Text,
        }
    }
}

/// The TOML file: the same settings, lower-case without the `PELAGO_` prefix.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    listen: Option<String>,
    data_dir: Option<String>,
    public_base_url: Option<String>,
    gateway_url: Option<String>,
    admin_token: Option<String>,
    polyflow_token: Option<String>,
    master_key: Option<String>,
    receipt_key: Option<String>,
    sandbox: Option<bool>,
    sandbox_listen: Option<String>,
    upstream_timeout_ms: Option<u64>,
    webhook_retry_schedule: Option<String>,
    billing_cron: Option<String>,
    settlement_cron: Option<String>,
    marketplace_utc_offset: Option<String>,
    withdrawal_window: Option<String>,
    reconciliation_cron: Option<String>,
    max_live_actors: Option<u64>,
    actor_idle_secs: Option<u64>,
    rate_limit: Option<String>,
    ip_rate_limit: Option<String>,
    header_read_timeout_ms: Option<u64>,
    body_read_timeout_ms: Option<u64>,
    max_connections: Option<u64>,
    retention_secs: Option<u64>,
    log: Option<String>,
    log_format: Option<String>,
}

/// Flags of `pelago-card serve`; they win over everything else.
#[derive(Default, Debug, Clone)]
pub struct Flags {
    pub config: Option<PathBuf>,
    pub listen: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub sandbox: bool,
}

impl Config {
    /// Loads with the process environment.
    pub fn load(flags: &Flags) -> Result<Config, ConfigError> {
        Self::load_from(flags, |name| std::env::var(name).ok())
    }

    /// Loads with `env` as the environment (tests pass a map).
    pub fn load_from(flags: &Flags, env: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let mut c = Config::default();
        let mut file = match &flags.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| bad("--config", format!("cannot read {}: {e}", path.display())))?;
                toml::from_str::<FileConfig>(&text)
                    .map_err(|e| bad("--config", format!("{}: {}", path.display(), e.message())))?
            }
            None => FileConfig::default(),
        };
        // One pass per setting: file value, overridden by the env value.
        let pick = |env_name: &str, file: Option<String>| env(env_name).or(file);
        c.addresses(&mut file, &pick)?;
        c.secrets(&mut file, &pick)?;
        match env("PELAGO_SANDBOX") {
            Some(v) => c.sandbox = parse_bool("PELAGO_SANDBOX", &v)?,
            None => c.sandbox = file.sandbox.unwrap_or(c.sandbox),
        }
        c.jobs(&mut file, &pick)?;
        c.marketplace(&mut file, &pick)?;
        c.limits(&mut file, &pick)?;
        c.logging(&mut file, &pick)?;
        c.flags(flags)?;
        Ok(c)
    }

    /// Addresses and URLs: listen, data dir, public base URL, gateway URL, sandbox listen.
    fn addresses(&mut self, f: &mut FileConfig, pick: &Pick<'_>) -> Result<(), ConfigError> {
        let c = self;
        if let Some(v) = pick("PELAGO_LISTEN", f.listen.take()) {
            c.listen = parse_addr("PELAGO_LISTEN", &v)?;
        }
        if let Some(v) = pick("PELAGO_DATA_DIR", f.data_dir.take()) {
            if v.trim().is_empty() {
                return Err(bad("PELAGO_DATA_DIR", "must not be empty"));
            }
            c.data_dir = PathBuf::from(v);
        }
        if let Some(v) = pick("PELAGO_PUBLIC_BASE_URL", f.public_base_url.take()) {
            let url =
                url::Url::parse(&v).map_err(|e| bad("PELAGO_PUBLIC_BASE_URL", format!("not a URL: {e}")))?;
            if !matches!(url.scheme(), "http" | "https") {
                return Err(bad("PELAGO_PUBLIC_BASE_URL", "must be an http or https URL"));
            }
            c.public_base_url = Some(v.trim_end_matches('/').to_owned());
        }
        if let Some(v) = pick("PELAGO_GATEWAY_URL", f.gateway_url.take()) {
            let url =
                url::Url::parse(&v).map_err(|e| bad("PELAGO_GATEWAY_URL", format!("not a URL: {e}")))?;
            if !matches!(url.scheme(), "http" | "https") {
                return Err(bad("PELAGO_GATEWAY_URL", "must be an http or https URL"));
            }
            c.gateway_url = Some(v.trim_end_matches('/').to_owned());
        }
        if let Some(v) = pick("PELAGO_SANDBOX_LISTEN", f.sandbox_listen.take()) {
            c.sandbox_listen = parse_addr("PELAGO_SANDBOX_LISTEN", &v)?;
        }
        Ok(())
    }

    /// Tokens and keys, checked (never logged).
    fn secrets(&mut self, f: &mut FileConfig, pick: &Pick<'_>) -> Result<(), ConfigError> {
        let c = self;
        c.admin_token = pick("PELAGO_ADMIN_TOKEN", f.admin_token.take());
        c.polyflow_token = pick("PELAGO_POLYFLOW_TOKEN", f.polyflow_token.take());
        for (name, token) in
            [("PELAGO_ADMIN_TOKEN", &c.admin_token), ("PELAGO_POLYFLOW_TOKEN", &c.polyflow_token)]
        {
            if let Some(t) = token
                && !crate::security::tokens::is_acceptable(t)
            {
                return Err(bad(name, "must be at least 16 printable characters"));
            }
        }
        c.master_key = pick("PELAGO_MASTER_KEY", f.master_key.take());
        if let Some(k) = &c.master_key {
            crate::security::secrets::decode_master_key(k).map_err(|e| bad("PELAGO_MASTER_KEY", e))?;
        }
        c.receipt_key = pick("PELAGO_RECEIPT_KEY", f.receipt_key.take());
        if let Some(k) = &c.receipt_key {
            crate::security::secrets::decode_key32(k).map_err(|e| bad("PELAGO_RECEIPT_KEY", e))?;
        }
        Ok(())
    }

    /// Upstream timeout, webhook retries, crons, actors.
    fn jobs(&mut self, f: &mut FileConfig, pick: &Pick<'_>) -> Result<(), ConfigError> {
        let c = self;
        if let Some(v) =
            pick("PELAGO_UPSTREAM_TIMEOUT_MS", f.upstream_timeout_ms.take().map(|n| n.to_string()))
        {
            c.upstream_timeout_ms = parse_num("PELAGO_UPSTREAM_TIMEOUT_MS", &v, 1, 300_000)?;
        }
        if let Some(v) = pick("PELAGO_WEBHOOK_RETRY_SCHEDULE", f.webhook_retry_schedule.take()) {
            c.webhook_retry_schedule_secs = parse_schedule(&v)?;
        }
        if let Some(v) = pick("PELAGO_BILLING_CRON", f.billing_cron.take()) {
            check_cron("PELAGO_BILLING_CRON", &v)?;
            c.billing_cron = v;
        }
        if let Some(v) = pick("PELAGO_SETTLEMENT_CRON", f.settlement_cron.take()) {
            check_cron("PELAGO_SETTLEMENT_CRON", &v)?;
            c.settlement_cron = v;
        }
        if let Some(v) = pick("PELAGO_MAX_LIVE_ACTORS", f.max_live_actors.take().map(|n| n.to_string())) {
            c.max_live_actors = parse_num("PELAGO_MAX_LIVE_ACTORS", &v, 16, 10_000_000)? as usize;
        }
        if let Some(v) = pick("PELAGO_ACTOR_IDLE_SECS", f.actor_idle_secs.take().map(|n| n.to_string())) {
            c.actor_idle_secs = parse_num("PELAGO_ACTOR_IDLE_SECS", &v, 1, 86_400 * 7)?;
        }
        Ok(())
    }

    /// The marketplace's offset, withdrawal window and reconciliation cron (MARKETPLACE.md §1).
    fn marketplace(&mut self, f: &mut FileConfig, pick: &Pick<'_>) -> Result<(), ConfigError> {
        let c = self;
        if let Some(v) = pick("PELAGO_MARKETPLACE_UTC_OFFSET", f.marketplace_utc_offset.take()) {
            c.marketplace_utc_offset =
                marketplace::parse_utc_offset(&v).map_err(|e| bad("PELAGO_MARKETPLACE_UTC_OFFSET", e))?;
        }
        if let Some(v) = pick("PELAGO_WITHDRAWAL_WINDOW", f.withdrawal_window.take()) {
            c.withdrawal_window =
                marketplace::WithdrawalWindow::parse(&v).map_err(|e| bad("PELAGO_WITHDRAWAL_WINDOW", e))?;
        }
        if let Some(v) = pick("PELAGO_RECONCILIATION_CRON", f.reconciliation_cron.take()) {
            check_cron("PELAGO_RECONCILIATION_CRON", &v)?;
            c.reconciliation_cron = v;
        }
        Ok(())
    }

    /// Rate limits, connection limits, timeouts, retention.
    fn limits(&mut self, f: &mut FileConfig, pick: &Pick<'_>) -> Result<(), ConfigError> {
        let c = self;
        if let Some(v) = pick("PELAGO_RATE_LIMIT", f.rate_limit.take()) {
            (c.rate_limit_per_sec, c.rate_limit_burst) = parse_rate("PELAGO_RATE_LIMIT", &v)?;
        }
        if let Some(v) = pick("PELAGO_IP_RATE_LIMIT", f.ip_rate_limit.take()) {
            (c.ip_rate_limit_per_sec, c.ip_rate_limit_burst) = parse_rate("PELAGO_IP_RATE_LIMIT", &v)?;
        }
        if let Some(v) =
            pick("PELAGO_HEADER_READ_TIMEOUT_MS", f.header_read_timeout_ms.take().map(|n| n.to_string()))
        {
            c.header_read_timeout_ms = parse_num("PELAGO_HEADER_READ_TIMEOUT_MS", &v, 100, 600_000)?;
        }
        if let Some(v) =
            pick("PELAGO_BODY_READ_TIMEOUT_MS", f.body_read_timeout_ms.take().map(|n| n.to_string()))
        {
            c.body_read_timeout_ms = parse_num("PELAGO_BODY_READ_TIMEOUT_MS", &v, 100, 600_000)?;
        }
        if let Some(v) = pick("PELAGO_MAX_CONNECTIONS", f.max_connections.take().map(|n| n.to_string())) {
            c.max_connections = parse_num("PELAGO_MAX_CONNECTIONS", &v, 1, 1_000_000)? as usize;
        }
        if let Some(v) = pick("PELAGO_RETENTION_SECS", f.retention_secs.take().map(|n| n.to_string())) {
            c.retention_secs = parse_num("PELAGO_RETENTION_SECS", &v, 1, 3650 * 86_400)?;
        }
        Ok(())
    }

    /// The log filter and format.
    fn logging(&mut self, f: &mut FileConfig, pick: &Pick<'_>) -> Result<(), ConfigError> {
        let c = self;
        if let Some(v) = pick("PELAGO_LOG", f.log.take()) {
            tracing_subscriber::EnvFilter::try_new(&v).map_err(|e| bad("PELAGO_LOG", e.to_string()))?;
            c.log = v;
        }
        if let Some(v) = pick("PELAGO_LOG_FORMAT", f.log_format.take()) {
            c.log_format = match v.as_str() {
                "json" => LogFormat::Json,
                "text" => LogFormat::Text,
                other => {
                    return Err(bad(
                        "PELAGO_LOG_FORMAT",
                        format!("expected `text` or `json`, got `{other}`"),
                    ));
                }
            };
        }

        Ok(())
    }

    /// Flags win over env and file; sandbox and live never mix.
    fn flags(&mut self, flags: &Flags) -> Result<(), ConfigError> {
        let c = self;
        if let Some(v) = &flags.listen {
            c.listen = parse_addr("--listen", v)?;
        }
        if let Some(d) = &flags.data_dir {
            c.data_dir = d.clone();
        }
        if flags.sandbox {
            c.sandbox = true;
        }
        // Sandbox and live data never mix (SANDBOX.md): the simulated gateway
        // replaces any configured one, so a configured one is a mistake.
        if c.sandbox && c.gateway_url.is_some() {
            return Err(bad(
                "PELAGO_GATEWAY_URL",
                "must be unset in sandbox mode (the sandbox gateway is used)",
            ));
        }
        Ok(())
    }

    /// The base URL upstreams call back.
    pub fn public_base_url(&self) -> String {
        self.public_base_url.clone().unwrap_or_else(|| format!("http://{}", self.listen))
    }
}

/// A setting's value: the environment's, else the file's.
type Pick<'a> = dyn Fn(&str, Option<String>) -> Option<String> + 'a;

fn parse_addr(setting: &str, v: &str) -> Result<SocketAddr, ConfigError> {
    v.parse().map_err(|_| bad(setting, format!("expected host:port like 127.0.0.1:8080, got `{v}`")))
}

fn parse_bool(setting: &str, v: &str) -> Result<bool, ConfigError> {
    match v {
        "1" | "true" | "on" | "yes" => Ok(true),
        "0" | "false" | "off" | "no" | "" => Ok(false),
        _ => Err(bad(setting, format!("expected 1 or 0, got `{v}`"))),
    }
}

fn parse_num(setting: &str, v: &str, min: u64, max: u64) -> Result<u64, ConfigError> {
    let n: u64 = v.parse().map_err(|_| bad(setting, format!("expected a whole number, got `{v}`")))?;
    if n < min || n > max {
        return Err(bad(setting, format!("must be between {min} and {max}, got {n}")));
    }
    Ok(n)
}

/// `<per_second>,<burst>`.
fn parse_rate(setting: &str, v: &str) -> Result<(u32, u32), ConfigError> {
    let (rate, burst) = v
        .split_once(',')
        .ok_or_else(|| bad(setting, format!("expected `<per_second>,<burst>`, got `{v}`")))?;
    Ok((
        parse_num(setting, rate.trim(), 1, 1_000_000)? as u32,
        parse_num(setting, burst.trim(), 1, 10_000_000)? as u32,
    ))
}

fn parse_schedule(v: &str) -> Result<Vec<u64>, ConfigError> {
    let setting = "PELAGO_WEBHOOK_RETRY_SCHEDULE";
    let steps =
        v.split(',').map(|s| parse_num(setting, s.trim(), 1, 7 * 86_400)).collect::<Result<Vec<_>, _>>()?;
    if steps.is_empty() || steps.len() > 32 {
        return Err(bad(setting, "expected 1 to 32 comma-separated seconds"));
    }
    Ok(steps)
}

fn check_cron(setting: &str, v: &str) -> Result<(), ConfigError> {
    parse_cron(v).map(|_| ()).map_err(|e| bad(setting, e))
}

#[cfg(test)]
mod tests;

/// Parses a cron expression (5 or 6 fields; seconds optional), UTC.
pub fn parse_cron(expr: &str) -> Result<croner::Cron, String> {
    expr.parse::<croner::Cron>().map_err(|e| format!("not a cron expression: {e}"))
}
