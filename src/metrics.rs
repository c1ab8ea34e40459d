//! Prometheus text metrics, hand-rolled on atomics: request counts and latency
//! histograms by route and status, plus gauges read at scrape time (live
//! actors, mailbox depth, store flush latency, webhook queue depth).
//! The label space is bounded: routes are the table's patterns, never raw paths.

use std::{
    collections::HashMap,
    fmt::Write,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
};

use parking_lot::RwLock;

pub const LATENCY_BUCKETS_SECS: [f64; 12] =
    [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0];

#[derive(Default)]
pub struct Histogram {
    buckets: [AtomicU64; LATENCY_BUCKETS_SECS.len()],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl Histogram {
    pub fn observe(&self, secs: f64) {
        for (i, bound) in LATENCY_BUCKETS_SECS.iter().enumerate() {
            if secs <= *bound {
                self.buckets[i].fetch_add(1, Ordering::Relaxed);
            }
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_micros.fetch_add((secs * 1e6) as u64, Ordering::Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        for (i, bound) in LATENCY_BUCKETS_SECS.iter().enumerate() {
            let n = self.buckets[i].load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{bound}\"}} {n}");
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {count}");
        let sum = self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum{{{labels}}} {sum}");
        let _ = writeln!(out, "{name}_count{{{labels}}} {count}");
    }
}

/// Who sent a callback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallbackSource {
    Gateway,
    Channel,
}

/// Upstream call latency and failures by channel (a channel id, or `gateway`).
#[derive(Default)]
pub struct UpstreamCalls {
    latency: RwLock<HashMap<String, Histogram>>,
    errors: RwLock<HashMap<String, AtomicU64>>,
}

impl UpstreamCalls {
    /// One call to `channel`; `failed`: it failed or its outcome is unknown.
    pub fn observe(&self, channel: &str, secs: f64, failed: bool) {
        if let Some(h) = self.latency.read().get(channel) {
            h.observe(secs);
        } else {
            self.latency.write().entry(channel.to_owned()).or_default().observe(secs);
        }
        if failed {
            self.errors.write().entry(channel.to_owned()).or_default().fetch_add(1, Ordering::Relaxed);
        }
    }

    fn render(&self, out: &mut String) {
        out.push_str("# HELP pelago_upstream_call_duration_seconds Upstream call latency by channel.\n");
        out.push_str("# TYPE pelago_upstream_call_duration_seconds histogram\n");
        for (channel, h) in self.latency.read().iter() {
            h.render(out, "pelago_upstream_call_duration_seconds", &format!("channel=\"{channel}\""));
        }
        out.push_str(
            "# HELP pelago_upstream_errors_total Upstream calls that failed or had an unknown outcome.\n",
        );
        out.push_str("# TYPE pelago_upstream_errors_total counter\n");
        for (channel, n) in self.errors.read().iter() {
            let _ = writeln!(
                out,
                "pelago_upstream_errors_total{{channel=\"{channel}\"}} {}",
                n.load(Ordering::Relaxed)
            );
        }
    }
}

#[derive(Default)]
pub struct Metrics {
    requests: RwLock<HashMap<(&'static str, &'static str, u16), AtomicU64>>,
    latency: RwLock<HashMap<&'static str, Histogram>>,
    /// Upstream calls by channel, shared with the upstream client that times them.
    pub upstream: Arc<UpstreamCalls>,
    /// Callbacks refused because they named an object of another account or channel.
    unbound_gateway_callbacks: AtomicU64,
    unbound_channel_callbacks: AtomicU64,
}

impl Metrics {
    pub fn observe_request(&self, method: &'static str, route: &'static str, status: u16, secs: f64) {
        let key = (method, route, status);
        if let Some(c) = self.requests.read().get(&key) {
            c.fetch_add(1, Ordering::Relaxed);
        } else {
            self.requests.write().entry(key).or_default().fetch_add(1, Ordering::Relaxed);
        }
        if let Some(h) = self.latency.read().get(route) {
            h.observe(secs);
            return;
        }
        self.latency.write().entry(route).or_default().observe(secs);
    }

    /// A signed callback that named an object its sender is not bound to (SECURITY.md).
    pub fn count_unbound_callback(&self, source: CallbackSource) {
        match source {
            CallbackSource::Gateway => &self.unbound_gateway_callbacks,
            CallbackSource::Channel => &self.unbound_channel_callbacks,
        }
        .fetch_add(1, Ordering::Relaxed);
    }

    /// Renders everything; `gauges` are (name, help, value) read by the caller.
    pub fn render(&self, gauges: &[(&str, &str, f64)]) -> String {
        let mut out = String::with_capacity(8 * 1024);
        out.push_str("# HELP pelago_http_requests_total HTTP requests by method, route and status.\n");
        out.push_str("# TYPE pelago_http_requests_total counter\n");
        let mut rows: Vec<_> =
            self.requests.read().iter().map(|(k, v)| (*k, v.load(Ordering::Relaxed))).collect();
        rows.sort();
        for ((method, route, status), n) in rows {
            let _ = writeln!(
                out,
                "pelago_http_requests_total{{method=\"{method}\",route=\"{route}\",status=\"{status}\"}} {n}"
            );
        }
        out.push_str("# HELP pelago_http_request_duration_seconds Request latency by route.\n");
        out.push_str("# TYPE pelago_http_request_duration_seconds histogram\n");
        let latency = self.latency.read();
        let mut routes: Vec<_> = latency.keys().copied().collect();
        routes.sort();
        for route in routes {
            latency[route].render(
                &mut out,
                "pelago_http_request_duration_seconds",
                &format!("route=\"{route}\""),
            );
        }
        self.upstream.render(&mut out);
        out.push_str(
            "# HELP pelago_callbacks_unbound_total Signed callbacks refused for naming an object of another sender.\n",
        );
        out.push_str("# TYPE pelago_callbacks_unbound_total counter\n");
        for (source, n) in
            [("gateway", &self.unbound_gateway_callbacks), ("channel", &self.unbound_channel_callbacks)]
        {
            let _ = writeln!(
                out,
                "pelago_callbacks_unbound_total{{source=\"{source}\"}} {}",
                n.load(Ordering::Relaxed)
            );
        }
        for (name, help, value) in gauges {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}");
        }
        out
    }
}
