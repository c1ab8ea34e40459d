//! Start-up and shutdown of `pelago-card serve`.
//!
//! One process runs everything: an actix `System` on a multi-thread tokio
//! runtime (`System::with_tokio_rt`). Actors live on the System's arbiters;
//! warp, the sweepers and the scheduler run as tokio tasks on the same
//! runtime, and reach actors through `Addr::send` (which is `Send`). A plain
//! `#[tokio::main]` cannot start actix actors (no `LocalSet`), hence this shape.
//!
//! Shutdown (SIGTERM or Ctrl-C): `/readyz` turns 503, the listener stops
//! accepting, in-flight requests finish, actors are dropped, the store is
//! flushed, exit 0.

mod data_mode;

use std::{
    sync::{Arc, atomic::Ordering},
    time::Duration,
};

use anyhow::Context as _;
use pelago_actors::{
    ports::{SecretString, SharedClock},
    runtime::RegistryConfig,
    system::{Actors, SystemConfig},
};
use pelago_storage::{Store, StoreConfig, Timestamp};

use crate::{
    app::Core,
    clock::ServiceClock,
    config::Config,
    http,
    http::state::App,
    metrics::Metrics,
    security::{secrets, tokens},
    upstreams::Upstreams,
};

/// Runs the service until a shutdown signal. Call inside an actix System.
pub async fn run(config: Config) -> anyhow::Result<()> {
    let started = start(config).await?;
    let Started { app, listener, sandbox, stop_sandbox } = started;
    let addr = listener.local_addr()?;
    let signal = shutdown_signal();
    if let Some(root) = &app.upstreams.sandbox {
        println!("pelago-card sandbox upstreams on {}", root.root_url());
    }
    // Requests signed before this process are refused (http::merchant_auth):
    // serve from the next whole second on, so that every request a client
    // signs once it can reach us is accepted.
    let first_ms = app.signed_from_secs * 1000 - Timestamp::now_real().unix_ms();
    if first_ms > 0 {
        tokio::time::sleep(Duration::from_millis(first_ms as u64)).await;
    }
    // One machine-readable line on stdout for scripts and tests.
    println!("pelago-card listening on http://{addr}");
    tracing::info!(%addr, "listening");
    let shutdown = {
        let app = Arc::clone(&app);
        async move {
            signal.await;
            tracing::info!("shutdown requested: draining");
            app.draining.store(true, Ordering::Release);
        }
    };
    let limits = http::listener::Limits {
        header_read_timeout: Duration::from_millis(app.config.header_read_timeout_ms),
        max_connections: app.config.max_connections,
    };
    http::listener::serve(Arc::clone(&app), listener, limits, shutdown).await;
    app.webhooks.shutdown().await;
    let _ = stop_sandbox.send(true);
    if let Some(handle) = sandbox {
        let _ = handle.await;
    }
    if let Some(scheduler) = app.scheduler.get() {
        let _ = scheduler.send(crate::jobs::scheduler::Stop).await;
    }
    app.actors.stop_all();
    app.store.flush_blocking().context("final store flush")?;
    tracing::info!("drained; store flushed; bye");
    Ok(())
}

/// A started service, not yet serving.
pub struct Started {
    pub app: Arc<App>,
    pub listener: tokio::net::TcpListener,
    pub sandbox: Option<tokio::task::JoinHandle<()>>,
    pub stop_sandbox: tokio::sync::watch::Sender<bool>,
}

/// Opens the store, keys and tokens, starts the actors and (with sandbox on)
/// the simulators, binds the listener, wires the upstreams.
pub async fn start(config: Config) -> anyhow::Result<Started> {
    // reqwest is built without a default TLS provider; ring is ours.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let store = open_store(&config).await?;
    let master_key = match &config.master_key {
        Some(k) => secrets::decode_master_key(k).map_err(anyhow::Error::msg)?,
        None => secrets::load_or_create_key_file(&config.data_dir, "master.key")?,
    };
    let admin_token = load_token(config.admin_token.as_deref(), &config.data_dir, "admin-token")?;
    let polyflow_token = load_token(config.polyflow_token.as_deref(), &config.data_dir, "polyflow-token")?;
    let service_clock = Arc::new(ServiceClock::load(&store, config.sandbox).await?);
    let clock: SharedClock = service_clock.clone();
    let (stop_sandbox, stop_rx) = tokio::sync::watch::channel(false);
    let metrics = Metrics::default();
    let (upstreams, sandbox) = start_upstreams(&config, stop_rx, Arc::clone(&metrics.upstream)).await?;
    let actors = start_actors(&config, &store, &clock, &upstreams);
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let public_base_url = config
        .public_base_url
        .clone()
        .unwrap_or_else(|| format!("http://{}", listener.local_addr().expect("bound")));
    let config_rate = (config.rate_limit_per_sec, config.rate_limit_burst);
    let config_ip_rate = (config.ip_rate_limit_per_sec, config.ip_rate_limit_burst);
    let webhooks = crate::http::webhooks::Dispatcher::new(
        &config.webhook_retry_schedule_secs,
        crate::security::egress::EgressPolicy::for_mode(config.sandbox),
    )?;
    let receipts = crate::receipts::ReceiptKey::load(config.receipt_key.as_deref(), &config.data_dir)
        .map_err(anyhow::Error::msg)?;
    let core = Arc::new(Core {
        config,
        store,
        actors,
        clock,
        service_clock,
        upstreams,
        public_base_url,
        sealer: secrets::Sealer::new(&master_key),
        metrics,
        jobs_running: Default::default(),
        receipts,
    });
    let app = Arc::new(App {
        core,
        admin_token,
        polyflow_token,
        router: http::router::Router::new(http::routes()),
        webhooks,
        scheduler: Default::default(),
        idempotency: Default::default(),
        rate_limiter: http::ratelimit::RateLimiter::new(config_rate.0, config_rate.1),
        ip_rate_limiter: http::ratelimit::RateLimiter::new(config_ip_rate.0, config_ip_rate.1),
        ready: false.into(),
        draining: false.into(),
        signed_from_secs: Timestamp::now_real().unix_seconds() + 1,
    });
    start_background(&app).await?;
    Ok(Started { app, listener, sandbox, stop_sandbox })
}

/// The data dir prepared, failpoints armed (sandbox only), the store opened
/// and its mode (sandbox or live) checked against this start's.
async fn open_store(config: &Config) -> anyhow::Result<Store> {
    crate::security::data_dir::prepare(&config.data_dir)?;
    arm_failpoints(config)?;
    let store = Store::open(&config.data_dir.join("db"), &StoreConfig::default()).with_context(|| {
        format!("cannot open the store in {} (is another process using it?)", config.data_dir.display())
    })?;
    data_mode::check_and_record(&store, &config.data_dir, config.sandbox).await?;
    Ok(store)
}

/// The upstream clients: to the simulators (started here, sandbox mode) or
/// to the configured gateway.
async fn start_upstreams(
    config: &Config,
    stop: tokio::sync::watch::Receiver<bool>,
    calls: Arc<crate::metrics::UpstreamCalls>,
) -> anyhow::Result<(Arc<Upstreams>, Option<tokio::task::JoinHandle<()>>)> {
    // The simulators' control endpoints answer only to this token (SANDBOX.md).
    let control_token = SecretString::new(crate::security::random_token::<32>());
    let (sandbox_root, sandbox) =
        if config.sandbox { start_sandbox(config, stop, control_token.clone()).await? } else { (None, None) };
    // In sandbox mode a gateway URL is refused by `Config::load`.
    let gateway_url = match (&sandbox_root, &config.gateway_url) {
        (Some(root), _) => format!("{root}/gateway"),
        (None, Some(url)) => url.clone(),
        (None, None) => "https://gateway.invalid".to_owned(),
    };
    let upstreams = Upstreams::new(
        config.upstream_timeout_ms,
        &gateway_url,
        sandbox_root.as_deref().map(|root| (root, control_token)),
        calls,
    )?;
    Ok((Arc::new(upstreams), sandbox))
}

fn start_actors(
    config: &Config,
    store: &Store,
    clock: &SharedClock,
    upstreams: &Arc<Upstreams>,
) -> Arc<Actors> {
    let registry = RegistryConfig {
        max_live_actors: config.max_live_actors,
        idle_ms: config.actor_idle_secs as i64 * 1000,
        ..RegistryConfig::default()
    };
    let arbiters = SystemConfig::default_arbiters();
    let channels: Arc<dyn pelago_actors::ports::ChannelDirectory> = upstreams.clone();
    Actors::start(store.clone(), Arc::clone(clock), SystemConfig { registry, arbiters, channels })
}

/// Start-up wiring, then the background work (housekeeping, retention, the
/// resolver, the scheduler, webhooks); ready after that.
async fn start_background(app: &Arc<App>) -> anyhow::Result<()> {
    crate::flows::bootstrap::run(app).await.map_err(|e| anyhow::anyhow!("start-up wiring failed: {e}"))?;
    spawn_housekeeping(Arc::downgrade(app));
    http::retention::spawn(Arc::downgrade(app), app.config.retention_secs);
    spawn_resolver(Arc::downgrade(app));
    let scheduler =
        crate::jobs::scheduler::Scheduler::start(&app.core).await.context("starting the scheduler")?;
    let _ = app.scheduler.set(scheduler);
    crate::http::webhooks::spawn(app);
    app.ready.store(true, Ordering::Release);
    Ok(())
}

/// Failpoints are armed in sandbox mode only; a live start with them set is refused.
fn arm_failpoints(config: &Config) -> anyhow::Result<()> {
    if config.sandbox {
        tracing::warn!(
            "SANDBOX MODE: simulated upstreams and test helpers are ON; never use this with real money"
        );
        crate::failpoint::arm_from_env();
    } else if std::env::var_os(crate::failpoint::ENV).is_some() {
        anyhow::bail!("{} is set: failpoints exist only in sandbox mode", crate::failpoint::ENV);
    }
    Ok(())
}

/// The simulators on their own listener, until `stop` turns true: their root URL and task.
async fn start_sandbox(
    config: &Config,
    mut stop: tokio::sync::watch::Receiver<bool>,
    control_token: SecretString,
) -> anyhow::Result<(Option<String>, Option<tokio::task::JoinHandle<()>>)> {
    let sandbox_config = crate::sandbox::SandboxConfig {
        listen: config.sandbox_listen,
        data_dir: config.data_dir.clone(),
        upstream_timeout_ms: config.upstream_timeout_ms,
        control_token,
    };
    let (addr, handle) = crate::sandbox::serve(sandbox_config, async move {
        let _ = stop.wait_for(|s| *s).await;
    })
    .await
    .context("starting the sandbox upstreams")?;
    tracing::warn!(sandbox_addr = %addr, "sandbox channel at /channel and gateway at /gateway");
    Ok((Some(format!("http://{addr}")), Some(handle)))
}

/// A start refused by a rule about the data dir or its files (not a fault):
/// `main` prints its one line and exits 2, like a bad setting.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct StartRefused(pub String);

fn load_token(
    configured: Option<&str>,
    dir: &std::path::Path,
    file: &str,
) -> anyhow::Result<tokens::BearerToken> {
    tokens::load_or_create(configured, dir, file).map_err(|e| match e {
        tokens::TokenFileError::Unacceptable { .. } => StartRefused(e.to_string()).into(),
        tokens::TokenFileError::Io { .. } => anyhow::Error::new(e),
    })
}

/// Periodic chores with bounded work: expired nonces and idempotency records.
fn spawn_housekeeping(app: std::sync::Weak<App>) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(60));
        loop {
            tick.tick().await;
            let Some(app) = app.upgrade() else { return };
            let swept = tokio::task::spawn_blocking(move || {
                (crate::http::merchant_auth::sweep_nonces(&app), http::idempotency::sweep(&app))
            })
            .await;
            if let Ok((nonces, idempotency)) = swept
                && nonces + idempotency > 0
            {
                tracing::debug!(nonces, idempotency, "swept expired records");
            }
        }
    });
}

/// Resolves upstream operations whose outcome is unknown (timeouts, 5xx):
/// asks by request id, retries with the same id, never guesses. The pending
/// list lives in the store, so it survives restarts. Idle, it looks every
/// 250 ms; while passes leave as much pending as they found (an upstream
/// still down, a refund refused again), the wait doubles up to 30 s, so
/// nothing is retried in a tight loop.
fn spawn_resolver(app: std::sync::Weak<App>) {
    tokio::spawn(async move {
        let mut wait = Duration::from_millis(250);
        loop {
            tokio::time::sleep(wait).await;
            let Some(app) = app.upgrade() else { return };
            let before = pending_resolutions(&app);
            if before == 0 {
                wait = Duration::from_millis(250);
                continue;
            }
            let passes = [
                ("withdrawal", crate::flows::withdrawals::resolve_pending(&app.core).await),
                ("order", crate::flows::orders::resolve_pending(&app.core).await),
                ("deposit", crate::flows::money::resolve_pending(&app).await),
                ("top-up", crate::flows::topups::resolve_pending(&app.core).await),
                ("card", crate::flows::cards::resolve_pending(&app.core).await),
                ("cardholder", crate::flows::cardholders::resolve_pending(&app).await),
                ("channel transaction", crate::flows::channel_confirm::resolve_pending(&app).await),
                ("agreement", crate::flows::marketplace::agreements::resolve_pending(&app.core).await),
                ("onboarding", crate::flows::marketplace::onboardings::resolve_pending(&app.core).await),
                ("payment", crate::flows::marketplace::payments::resolve_pending(&app.core).await),
                ("split batch", crate::flows::marketplace::splits::resolve_pending(&app.core).await),
                ("refund", crate::flows::marketplace::refunds::resolve_pending(&app.core).await),
                (
                    "recipient withdrawal",
                    crate::flows::marketplace::withdrawals::resolve_pending(&app.core).await,
                ),
            ];
            for (flow, pass) in &passes {
                match pass {
                    Ok(n) if *n > 0 => tracing::info!(flow, resolved = n, "resolved pending operations"),
                    Ok(_) => {}
                    Err(e) => tracing::warn!(flow, error = %e, "resolver pass failed"),
                }
            }
            wait = if pending_resolutions(&app) < before {
                Duration::from_millis(250)
            } else {
                (wait * 2).min(Duration::from_secs(30))
            };
        }
    });
}

/// What the resolver has to look at: markers of unknown outcomes and money
/// owed (`Tree::Operations`), and withdrawal holds whose record may not
/// have landed.
fn pending_resolutions(app: &App) -> usize {
    app.store.len(pelago_storage::Tree::Operations)
        + app.store.iter_raw(pelago_storage::Tree::Index, crate::keys::WDRHOLD.as_bytes()).count()
}

/// Installs the SIGTERM handler now (before the service announces itself, so a
/// SIGTERM sent as soon as it is listening drains it instead of killing it) and
/// returns the future that resolves on SIGTERM or Ctrl-C.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("install the SIGTERM handler");
    async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
        #[cfg(not(unix))]
        let _ = ctrl_c.await;
    }
}
