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

use std::{
    sync::{Arc, atomic::Ordering},
    time::Duration,
};

use anyhow::Context as _;
use pelago_actors::{
    ports::{SharedClock, SystemClock},
    runtime::RegistryConfig,
    system::{Actors, SystemConfig},
};
use pelago_storage::{Store, StoreConfig};

use crate::{
    app::App,
    config::Config,
    http,
    metrics::Metrics,
    security::{secrets, tokens},
};

/// Runs the service until a shutdown signal. Call inside an actix System.
pub async fn run(config: Config) -> anyhow::Result<()> {
    let (app, listener) = start(config).await?;
    let addr = listener.local_addr()?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let sandbox = if app.config.sandbox {
        let mut stop = stop_rx.clone();
        let (sandbox_addr, handle) = crate::sandbox::serve(
            crate::sandbox::SandboxConfig {
                listen: app.config.sandbox_listen,
                data_dir: app.config.data_dir.clone(),
                upstream_timeout_ms: app.config.upstream_timeout_ms,
            },
            async move {
                let _ = stop.wait_for(|s| *s).await;
            },
        )
        .await
        .context("starting the sandbox upstreams")?;
        println!("pelago-card sandbox upstreams on http://{sandbox_addr}");
        tracing::warn!(%sandbox_addr, "sandbox channel at /channel and gateway at /gateway");
        Some(handle)
    } else {
        None
    };
    // One machine-readable line on stdout for scripts and tests.
    println!("pelago-card listening on http://{addr}");
    tracing::info!(%addr, "listening");
    let shutdown = {
        let app = Arc::clone(&app);
        async move {
            wait_for_signal().await;
            tracing::info!("shutdown requested: draining");
            app.draining.store(true, Ordering::Release);
        }
    };
    warp::serve(http::filter(Arc::clone(&app))).incoming(listener).graceful(shutdown).run().await;
    let _ = stop_tx.send(true);
    if let Some(handle) = sandbox {
        let _ = handle.await;
    }
    app.actors.stop_all();
    app.store.flush_blocking().context("final store flush")?;
    tracing::info!("drained; store flushed; bye");
    Ok(())
}

/// Opens the store, keys and tokens, starts the actors, binds the listener.
pub async fn start(config: Config) -> anyhow::Result<(Arc<App>, tokio::net::TcpListener)> {
    // reqwest is built without a default TLS provider; ring is ours.
    let _ = rustls::crypto::ring::default_provider().install_default();
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("cannot create the data dir {}", config.data_dir.display()))?;
    if config.sandbox {
        tracing::warn!(
            "SANDBOX MODE: simulated upstreams and test helpers are ON; never use this with real money"
        );
    }
    let store = Store::open(&config.data_dir.join("db"), &StoreConfig::default()).with_context(|| {
        format!("cannot open the store in {} (is another process using it?)", config.data_dir.display())
    })?;
    let master_key = match &config.master_key {
        Some(k) => secrets::decode_master_key(k).map_err(anyhow::Error::msg)?,
        None => secrets::load_or_create_key_file(&config.data_dir, "master.key")?,
    };
    let admin_token = tokens::load_or_create(config.admin_token.as_deref(), &config.data_dir, "admin-token")?;
    let polyflow_token =
        tokens::load_or_create(config.polyflow_token.as_deref(), &config.data_dir, "polyflow-token")?;
    let clock: SharedClock = Arc::new(SystemClock);
    let registry = RegistryConfig {
        max_live_actors: config.max_live_actors,
        idle_ms: config.actor_idle_secs as i64 * 1000,
        ..RegistryConfig::default()
    };
    let arbiters = std::thread::available_parallelism().map_or(2, |n| n.get()).clamp(1, 8);
    let actors = Actors::start(store.clone(), Arc::clone(&clock), SystemConfig { registry, arbiters });
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let config_rate = (config.rate_limit_per_sec, config.rate_limit_burst);
    let app = Arc::new(App {
        config,
        store,
        actors,
        clock,
        admin_token,
        polyflow_token,
        sealer: secrets::Sealer::new(&master_key),
        metrics: Metrics::default(),
        router: http::router::Router::new(http::routes()),
        idempotency: Default::default(),
        rate_limiter: http::ratelimit::RateLimiter::new(config_rate.0, config_rate.1),
        ready: false.into(),
        draining: false.into(),
    });
    spawn_housekeeping(Arc::downgrade(&app));
    app.ready.store(true, Ordering::Release);
    Ok((app, listener))
}

/// Periodic chores with bounded work: expired nonces and idempotency records.
fn spawn_housekeeping(app: std::sync::Weak<App>) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(60));
        loop {
            tick.tick().await;
            let Some(app) = app.upgrade() else { return };
            let swept = tokio::task::spawn_blocking(move || {
                (crate::merchants::auth::sweep_nonces(&app), http::idempotency::sweep(&app))
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

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("install the SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
