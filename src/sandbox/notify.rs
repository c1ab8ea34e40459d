//! Delivers signed callbacks to Pelago: bounded retries with a short backoff on
//! any non-2xx answer or transport error. Callers await delivery when the
//! protocol says the callback precedes the answer; otherwise they spawn it
//! under [`Notifier::background_permit`], which bounds how many run at once.

use std::{sync::Arc, time::Duration};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::upstream::callbacks::sign;

/// Attempts per copy of a callback (the first try included).
const MAX_ATTEMPTS: u32 = 4;
const FIRST_BACKOFF_MS: u64 = 50;
/// Background deliveries in flight at once; more wait for a permit.
const MAX_BACKGROUND: usize = 256;

#[derive(Clone)]
pub struct Notifier {
    http: reqwest::Client,
    background: Arc<Semaphore>,
}

/// One callback to send: where, how it is signed, and the body.
pub struct Callback {
    pub url: String,
    pub signature_header: &'static str,
    pub key: String,
    pub body: String,
    /// Log field: what the callback is about (never card data).
    pub event_id: String,
}

impl Notifier {
    pub fn new(attempt_timeout: Duration) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder().timeout(attempt_timeout).build()?;
        Ok(Self { http, background: Arc::new(Semaphore::new(MAX_BACKGROUND)) })
    }

    pub async fn background_permit(&self) -> OwnedSemaphorePermit {
        Arc::clone(&self.background).acquire_owned().await.expect("the semaphore is never closed")
    }

    /// Sends `copies` identical deliveries one after the other (each retried on
    /// its own). Returns whether the first copy was accepted.
    pub async fn deliver(&self, callback: &Callback, copies: u32) -> bool {
        let mut first_ok = false;
        for copy in 0..copies.max(1) {
            let ok = self.deliver_once(callback).await;
            if copy == 0 {
                first_ok = ok;
            }
        }
        first_ok
    }

    async fn deliver_once(&self, callback: &Callback) -> bool {
        let mut backoff_ms = FIRST_BACKOFF_MS;
        for attempt in 1..=MAX_ATTEMPTS {
            let now_secs = chrono::Utc::now().timestamp();
            let signature = sign(callback.key.as_bytes(), now_secs, callback.body.as_bytes());
            let result = self
                .http
                .post(&callback.url)
                .header(callback.signature_header, signature)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(callback.body.clone())
                .send()
                .await;
            match result {
                Ok(response) if response.status().is_success() => return true,
                Ok(response) => tracing::warn!(
                    event_id = %callback.event_id,
                    attempt,
                    status = response.status().as_u16(),
                    "sandbox callback refused"
                ),
                Err(e) => tracing::warn!(
                    event_id = %callback.event_id,
                    attempt,
                    timeout = e.is_timeout(),
                    "sandbox callback not delivered"
                ),
            }
            if attempt < MAX_ATTEMPTS {
                tokio::time::sleep(Duration::from_millis(backoff_ms)).await;
                backoff_ms *= 4;
            }
        }
        false
    }
}
