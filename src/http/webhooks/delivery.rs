//! One delivery attempt: read the merchant's endpoint and secrets *now*, POST
//! the event, then record the outcome and the outbox row's next state in one
//! durable commit.

use pelago_actors::{
    merchant::MerchantRecord,
    outbox::{EventRecord, event_key},
};
use pelago_storage::{StoreError, Timestamp, Tree, WriteBatch};

use super::{DeliveryAttempt, Job, attempt_key, last_attempt, signature};
use crate::{
    http::state::App,
    security::egress::{EgressRefused, refusal_in},
};

/// What one attempt came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A 2xx within the timeout.
    Delivered { status_code: u16 },
    /// Anything else; retried per the schedule.
    Failed { status_code: Option<u16>, error: String },
    /// The merchant has no `webhook_url`: recorded once, not retried.
    NoEndpoint,
    /// The event or merchant is gone: nothing to send, ever.
    Gone { error: &'static str },
}

/// Makes the attempt and records it. Store failures are logged: the outbox
/// row then stays as it was and the event is sent again (at least once).
pub async fn run(app: &App, job: &Job) {
    let outcome = attempt(app, job).await;
    if let Err(error) = record(app, job, &outcome).await {
        tracing::error!(%error, event_id = %job.entry.event_id, "recording a webhook attempt failed; it will be retried");
    }
}

async fn attempt(app: &App, job: &Job) -> Outcome {
    match signed_request(app, job) {
        Ok(request) => send(app, request).await,
        Err(outcome) => outcome,
    }
}

/// The POST of one attempt, signed with the secrets valid now.
struct Signed {
    url: String,
    event_id: String,
    timestamp: i64,
    signature: String,
    body: Vec<u8>,
}

/// Reads the event and the merchant's endpoint and secrets *now* (a changed
/// `webhook_url` applies to pending deliveries) and signs the body; what
/// stops the attempt before sending is its outcome.
fn signed_request(app: &App, job: &Job) -> Result<Signed, Outcome> {
    let (event, merchant) = load(app, job)?;
    let Some(url) = merchant.webhook_url.clone() else { return Err(Outcome::NoEndpoint) };
    refuse_literal_ip(app, &url)?;
    let failed = |error: &str| Outcome::Failed { status_code: None, error: error.into() };
    let context = crate::keys::Context::WebhookSecret { merchant: merchant.id.clone() }.text();
    let secrets = merchant
        .signing_secrets(app.clock.now())
        .map(|sealed| app.sealer.open_string(&sealed.0, &context))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| failed("the webhook secret could not be opened"))?;
    let body =
        serde_json::to_vec(&crate::http::orders::event_json(app, &event)).expect("wire JSON serializes");
    let timestamp = Timestamp::now_real().unix_seconds();
    let signature =
        signature::header(secrets.iter().map(String::as_str), event.id.as_str(), timestamp, &body)
            .ok()
            .filter(|s| !s.is_empty())
            .ok_or_else(|| failed("no usable webhook secret"))?;
    Ok(Signed { url, event_id: event.id.as_str().to_owned(), timestamp, signature, body })
}

fn load(app: &App, job: &Job) -> Result<(EventRecord, MerchantRecord), Outcome> {
    let entry = &job.entry;
    let loaded = (|| -> Result<_, StoreError> {
        let event = app.store.get::<EventRecord>(event_key(&entry.merchant_id, &entry.event_id))?;
        let merchant = app.store.get::<MerchantRecord>(entry.merchant_id.as_bytes())?;
        Ok((event, merchant))
    })();
    match loaded {
        Ok((Some(event), Some(merchant))) => Ok((event, merchant)),
        Ok((None, _)) => Err(Outcome::Gone { error: "the event no longer exists" }),
        Ok((_, None)) => Err(Outcome::Gone { error: "the merchant no longer exists" }),
        Err(error) => {
            tracing::warn!(%error, "webhook attempt: store read failed");
            Err(Outcome::Failed { status_code: None, error: "internal error before sending".into() })
        }
    }
}

/// A literal IP skips the resolver: the same egress policy applies to it here.
fn refuse_literal_ip(app: &App, url: &str) -> Result<(), Outcome> {
    if let Ok(parsed) = url::Url::parse(url)
        && let Some(ip) = match parsed.host() {
            Some(url::Host::Ipv4(v4)) => Some(std::net::IpAddr::V4(v4)),
            Some(url::Host::Ipv6(v6)) => Some(std::net::IpAddr::V6(v6)),
            _ => None,
        }
        && app.webhooks.egress.refuses(ip)
    {
        return Err(Outcome::Failed { status_code: None, error: EgressRefused::Refused.to_string() });
    }
    Ok(())
}

async fn send(app: &App, request: Signed) -> Outcome {
    let sent = app
        .webhooks
        .client
        .post(&request.url)
        .header("content-type", "application/json")
        .header("webhook-id", request.event_id)
        .header("webhook-timestamp", request.timestamp.to_string())
        .header("webhook-signature", request.signature)
        .body(request.body)
        .send()
        .await;
    match sent {
        Ok(response) if response.status().is_success() => {
            Outcome::Delivered { status_code: response.status().as_u16() }
        }
        Ok(response) => {
            let status = response.status();
            let error = if status.is_redirection() {
                format!("HTTP {} (redirects are not followed)", status.as_u16())
            } else {
                format!("HTTP {}", status.as_u16())
            };
            Outcome::Failed { status_code: Some(status.as_u16()), error }
        }
        Err(e) => Outcome::Failed { status_code: None, error: describe(&e) },
    }
}

/// A transport error in words, without the URL (which may carry a token).
fn describe(e: &reqwest::Error) -> String {
    if let Some(refused) = refusal_in(e) {
        refused.to_string()
    } else if e.is_timeout() {
        format!("no answer within {} s", super::ATTEMPT_TIMEOUT.as_secs())
    } else if e.is_connect() {
        "could not connect".into()
    } else if e.is_builder() {
        "webhook_url is not usable".into()
    } else {
        "the request failed before an answer".into()
    }
}

/// Events of merchants without a `webhook_url`: records each one's "not
/// delivered" attempt and removes its outbox row, [`SETTLE_CHUNK`] events a
/// commit and one flush for all. A chunk that meets a changed row (a
/// redelivery raced it) is recorded one event at a time instead.
pub async fn settle_without_endpoint(app: &App, jobs: &[Job]) {
    let mut ticket = None;
    for chunk in jobs.chunks(SETTLE_CHUNK) {
        let committed = (|| -> Result<_, StoreError> {
            let now = Timestamp::now_real();
            let mut batch = WriteBatch::new();
            for job in chunk {
                let number = last_attempt(&app.store, &job.entry.event_id)? + 1;
                let row = DeliveryAttempt {
                    attempt: number,
                    status_code: None,
                    error: Some(NO_ENDPOINT.into()),
                    at: now,
                };
                let key = job.entry.event_id.as_str();
                batch.put(attempt_key(&job.entry.event_id, number), &row)?;
                batch.expect_raw(Tree::Outbox, key, Some(job.entry_bytes.clone()));
                batch.delete(Tree::Outbox, key);
            }
            app.store.commit(batch)
        })();
        match committed {
            Ok(t) => ticket = Some(t),
            Err(StoreError::Conflict { .. }) => {
                for job in chunk {
                    if let Err(error) = record(app, job, &Outcome::NoEndpoint).await {
                        tracing::error!(%error, event_id = %job.entry.event_id, "recording a webhook attempt failed; it will be retried");
                    }
                }
            }
            Err(error) => {
                tracing::error!(%error, "recording undeliverable webhooks failed; they will be retried");
                return;
            }
        }
    }
    if let Some(ticket) = ticket {
        match app.store.wait_durable(ticket).await {
            Ok(()) => tracing::debug!(
                events = jobs.len(),
                "webhooks not deliverable: the merchant has no webhook_url"
            ),
            Err(error) => {
                tracing::error!(%error, "recording undeliverable webhooks failed; they will be retried")
            }
        }
    }
}

/// Events per commit in [`settle_without_endpoint`] (sled transactions slow
/// down sharply with size).
const SETTLE_CHUNK: usize = 64;
const NO_ENDPOINT: &str = "not delivered: the merchant has no webhook_url";

async fn record(app: &App, job: &Job, outcome: &Outcome) -> Result<(), StoreError> {
    let entry = &job.entry;
    let now = Timestamp::now_real();
    let number = last_attempt(&app.store, &entry.event_id)? + 1;
    let (status_code, error) = match outcome {
        Outcome::Delivered { status_code } => (Some(*status_code), None),
        Outcome::Failed { status_code, error } => (*status_code, Some(error.clone())),
        Outcome::NoEndpoint => (None, Some(NO_ENDPOINT.to_owned())),
        Outcome::Gone { error } => (None, Some((*error).to_owned())),
    };
    let row = DeliveryAttempt { attempt: number, status_code, error, at: now };
    let next = match outcome {
        Outcome::Failed { .. } if number < super::MAX_ATTEMPTS_PER_EVENT => {
            app.webhooks.after_failure(entry, now)
        }
        _ => None,
    };
    match outcome {
        Outcome::Delivered { .. } => {
            tracing::info!(event_id = %entry.event_id, merchant_id = %entry.merchant_id, attempt = number, "webhook delivered")
        }
        Outcome::Failed { error, .. } if next.is_none() => tracing::warn!(
            event_id = %entry.event_id, merchant_id = %entry.merchant_id, attempt = number, %error,
            "webhook delivery failed for good"
        ),
        Outcome::Failed { error, .. } => tracing::info!(
            event_id = %entry.event_id, merchant_id = %entry.merchant_id, attempt = number, %error,
            "webhook attempt failed; retry scheduled"
        ),
        Outcome::NoEndpoint | Outcome::Gone { .. } => {
            tracing::info!(event_id = %entry.event_id, merchant_id = %entry.merchant_id, "webhook not deliverable")
        }
    }
    let key = entry.event_id.as_str();
    let mut batch = WriteBatch::new();
    batch.put(attempt_key(&entry.event_id, number), &row)?;
    batch.expect_raw(Tree::Outbox, key, Some(job.entry_bytes.clone()));
    match &next {
        Some(rescheduled) => {
            batch.put(key, rescheduled)?;
        }
        None => {
            batch.delete(Tree::Outbox, key);
        }
    }
    match app.store.commit_durable(batch).await {
        Err(StoreError::Conflict { .. }) => {
            // A redelivery replaced the row while this attempt ran: keep it,
            // record only the attempt.
            let mut batch = WriteBatch::new();
            batch.put(attempt_key(&entry.event_id, number), &row)?;
            app.store.commit_durable(batch).await
        }
        other => other,
    }
}
