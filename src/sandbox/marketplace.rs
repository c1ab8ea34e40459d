//! The simulated gateway's marketplace side (MARKETPLACE.md §11): recipient
//! onboardings decided by the last word of the recipient's `name`, compliance
//! reviews, cancellations, supplements, and the control endpoints behind the
//! decide and compliance test helpers. Idempotent per request id; the store
//! keeps the recipient's name and the decision, never its numbers.

use http::{Method, StatusCode};
use pelago_storage::{StoreError, Tree, WriteBatch};
use serde::{Deserialize, Serialize};

use super::{Request, Response, State, error, internal, json, records::GatewayAccountRec};
use crate::keys::Sandbox;
use crate::upstream::marketplace_wire::{
    AgreementAnswer, ComplianceBody, DecideBody, MarketplaceFault, MarketplaceFaultBehavior,
    MarketplaceOperation, OnboardingAnswer, SignAgreementBody, SubmitOnboardingBody, SupplementBody,
};

/// The armed marketplace faults: at most one per operation.
#[derive(Default)]
pub(super) struct Faults {
    armed: Vec<MarketplaceFault>,
}

impl Faults {
    /// Takes one use of the fault on `operation`, if armed.
    fn take(&mut self, operation: MarketplaceOperation) -> Option<MarketplaceFault> {
        let i = self.armed.iter().position(|f| f.operation == operation)?;
        let fault = self.armed[i];
        if fault.count <= 1 {
            self.armed.remove(i);
        } else {
            self.armed[i].count -= 1;
        }
        Some(fault)
    }
}

/// What a fault does before the call is applied: `Err` answers at once, nothing applied.
pub(super) fn before_apply(
    state: &State,
    operation: MarketplaceOperation,
) -> Result<Option<MarketplaceFault>, Response> {
    let fault = state.marketplace_faults.lock().take(operation);
    match fault.map(|f| f.behavior) {
        Some(MarketplaceFaultBehavior::Decline) => {
            Err(error(StatusCode::UNPROCESSABLE_ENTITY, "declined", "declined by an injected fault"))
        }
        Some(MarketplaceFaultBehavior::Error) => {
            Err(error(StatusCode::INTERNAL_SERVER_ERROR, "internal", "injected error, nothing applied"))
        }
        _ => Ok(fault),
    }
}

/// What a fault does after the call was applied (durably): answer late.
pub(super) async fn after_apply(state: &State, fault: Option<MarketplaceFault>) {
    let wait_ms = match fault {
        Some(f) if f.behavior == MarketplaceFaultBehavior::Timeout => state.upstream_timeout_ms + 1000,
        Some(f) if f.behavior == MarketplaceFaultBehavior::Delay => f.delay_ms,
        _ => return,
    };
    tokio::time::sleep(std::time::Duration::from_millis(wait_ms.min(120_000))).await;
}

/// How the recipient's name steers the simulation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
enum Review {
    /// Compliance approved with the decision.
    Approve,
    /// Compliance pending until the compliance helper.
    Wait,
    /// Every review fails at once.
    Fail,
}

/// Key `gwo/{id}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct SandboxOnboarding {
    id: String,
    merchant_id: String,
    status: String,
    provider_recipient_id: Option<String>,
    compliance: Option<String>,
    reason: Option<String>,
    review: Review,
}

pelago_storage::record!(SandboxOnboarding, Onboardings, 1);

impl SandboxOnboarding {
    fn answer(&self) -> OnboardingAnswer {
        OnboardingAnswer {
            id: self.id.clone(),
            status: self.status.clone(),
            provider_recipient_id: self.provider_recipient_id.clone(),
            compliance: self.compliance.clone(),
            reason: self.reason.clone(),
        }
    }

    fn succeed(&mut self) {
        self.status = "SUCCEEDED".into();
        self.provider_recipient_id = Some(format!("gwr_{}", ulid::Ulid::new()));
        self.compliance = Some(
            match self.review {
                Review::Approve => "approved",
                Review::Wait => "pending",
                Review::Fail => "failed",
            }
            .into(),
        );
        if self.review == Review::Fail {
            self.reason = Some("the documents could not be verified".into());
        }
    }
}

fn key(id: &str) -> String {
    Sandbox::Onboarding { onboarding: id.to_string() }.text()
}

fn request_key(merchant_id: &str, request_id: &str) -> String {
    Sandbox::OnboardingRequest { merchant: merchant_id.to_string(), request: request_id.to_string() }.text()
}

/// `/gateway/onboardings/...`, authenticated as `account`.
pub(super) async fn handle(call: super::gateway::AccountCall<'_>) -> Response {
    let super::gateway::AccountCall { state, account, req, segments } = call;
    let result = match (&req.method, segments) {
        (&Method::POST, ["onboardings"]) => submit(state, account, req).await,
        (&Method::POST, ["agreements"]) => sign_agreement(state, account, req).await,
        (&Method::GET, ["agreements", "by-request", request_id]) => {
            let rkey = Sandbox::AgreementRequest {
                merchant: account.merchant_id.to_string(),
                request: request_id.to_string(),
            }
            .text();
            let missing = ("not_found", "no agreement was signed with this request id");
            return super::stored_answer(state, Tree::Index, rkey, missing);
        }
        (&Method::GET, ["onboardings", "by-request", request_id]) => by_request(state, account, request_id),
        (&Method::GET, ["onboardings", id]) => {
            state.store.get::<SandboxOnboarding>(key(id)).map(|found| match found {
                Some(o) if o.merchant_id == account.merchant_id => json(StatusCode::OK, &o.answer()),
                _ => error(StatusCode::NOT_FOUND, "not_found", "no such onboarding"),
            })
        }
        (&Method::POST, ["onboardings", id, "cancel"]) => {
            change(state, Some(account), id, req.idempotency_key(), |o| {
                if matches!(o.status.as_str(), "DECLINED" | "BLOCKED" | "CANCELED" | "SUCCEEDED") {
                    return Err(format!("the onboarding is {}", o.status));
                }
                o.status = "CANCELED".into();
                Ok(())
            })
            .await
        }
        (&Method::POST, ["onboardings", id, "supplements"]) => {
            if let Err(response) = req.json::<SupplementBody>() {
                return response;
            }
            change(state, Some(account), id, req.idempotency_key(), |o| {
                if o.compliance.as_deref() != Some("failed") {
                    return Err("the compliance review has not failed".into());
                }
                o.compliance = Some(if o.review == Review::Fail { "failed" } else { "pending" }.into());
                Ok(())
            })
            .await
        }
        _ => return error(StatusCode::NOT_FOUND, "not_found", "no such route"),
    };
    result.unwrap_or_else(internal)
}

/// `/gateway/control/onboardings/{id}/decide|compliance` (the test helpers).
pub(super) async fn control(state: &State, req: &Request, segments: &[&str]) -> Response {
    let result = match (&req.method, segments) {
        (&Method::POST, ["control", "marketplace", "faults"]) => return arm_fault(state, req),
        (&Method::DELETE, ["control", "marketplace", "faults"]) => {
            state.marketplace_faults.lock().armed.clear();
            return json(StatusCode::OK, &serde_json::json!({"faults": []}));
        }
        (&Method::POST, ["control", "onboardings", id, "decide"]) => {
            helper_decide(state, id, or_reply!(req.json())).await
        }
        (&Method::POST, ["control", "onboardings", id, "compliance"]) => {
            helper_review(state, id, or_reply!(req.json())).await
        }
        _ => return error(StatusCode::NOT_FOUND, "not_found", "no such route"),
    };
    let response = result.unwrap_or_else(internal);
    if response.status() == StatusCode::OK
        && let ["control", "onboardings", id, _] = segments
    {
        notify(state, id).await;
    }
    response
}

/// Arms (count > 0) or clears one marketplace fault, replacing the one armed
/// for its operation.
fn arm_fault(state: &State, req: &Request) -> Response {
    let fault: MarketplaceFault = or_reply!(req.json());
    let callbacks = fault.operation == MarketplaceOperation::Callbacks;
    if callbacks != (fault.behavior == MarketplaceFaultBehavior::Duplicate) {
        let reason = "duplicate applies to callbacks, and only duplicate does";
        return error(StatusCode::UNPROCESSABLE_ENTITY, "invalid_request", reason);
    }
    let mut faults = state.marketplace_faults.lock();
    faults.armed.retain(|f| f.operation != fault.operation);
    if fault.count > 0 {
        faults.armed.push(fault);
    }
    json(StatusCode::OK, &fault)
}

/// The test helper's decision on a PENDING onboarding.
async fn helper_decide(state: &State, id: &str, body: DecideBody) -> Result<Response, StoreError> {
    change(state, None, id, None, |o| {
        if o.status != "PENDING" {
            return Err(format!("the onboarding is {}, not PENDING", o.status));
        }
        match body.status.as_str() {
            "SUCCEEDED" => o.succeed(),
            "DECLINED" | "REJECTED" | "BLOCKED" | "ERROR" => {
                o.status = body.status.clone();
                o.reason = Some(body.reason.clone().unwrap_or_else(|| "decided by the test helper".into()));
            }
            other => return Err(format!("status {other} is not a decision")),
        }
        Ok(())
    })
    .await
}

/// The test helper's compliance review of a pending one.
async fn helper_review(state: &State, id: &str, body: ComplianceBody) -> Result<Response, StoreError> {
    change(state, None, id, None, |o| {
        if o.compliance.as_deref() != Some("pending") {
            return Err("the compliance review is not pending".into());
        }
        match body.result.as_str() {
            "approved" => o.reason = None,
            "failed" => o.reason = Some(body.reason.clone().unwrap_or_else(|| "review failed".into())),
            other => return Err(format!("result {other} is not approved or failed")),
        }
        o.compliance = Some(body.result.clone());
        Ok(())
    })
    .await
}

/// Sends the signed callback about onboarding `id` to its account, before the
/// control endpoint answers (so a helper returns once Pelago processed it).
async fn notify(state: &State, id: &str) {
    let Ok(Some(o)) = state.store.get::<SandboxOnboarding>(key(id)) else { return };
    let Ok(Some(account)) =
        state.store.get::<GatewayAccountRec>(Sandbox::Account { merchant: o.merchant_id.to_string() }.text())
    else {
        return;
    };
    let event_id = super::new_id("evt");
    let body = crate::upstream::marketplace_wire::OnboardingCallback {
        event_id: event_id.clone(),
        merchant_id: o.merchant_id.clone(),
        onboarding_id: o.id.clone(),
    };
    let callback = super::notify::Callback {
        url: format!("{}/marketplace", account.callback_url),
        signature_header: crate::upstream::callbacks::GATEWAY_SIGNATURE_HEADER,
        key: state.open(&account.api_key, &GatewayAccountRec::api_key_context(&account.merchant_id)),
        body: serde_json::to_string(&body).expect("wire types always serialise"),
        event_id,
    };
    let duplicated = state.marketplace_faults.lock().take(MarketplaceOperation::Callbacks).is_some();
    if !state.notifier.deliver(&callback, if duplicated { 3 } else { 1 }).await {
        tracing::warn!(event_id = %callback.event_id, "onboarding callback undelivered");
    }
}

/// The last word of the name decides (§11).
fn decide(name: &str, o: &mut SandboxOnboarding) {
    let last = name.split_whitespace().last().unwrap_or("");
    let refuse = |o: &mut SandboxOnboarding, status: &str| {
        o.status = status.into();
        o.reason = Some(format!("the gateway's decision: {}", status.to_lowercase()));
    };
    match last {
        "Pending" => o.status = "PENDING".into(),
        "Decline" => refuse(o, "DECLINED"),
        "Reject" => refuse(o, "REJECTED"),
        "Block" => refuse(o, "BLOCKED"),
        "Error" => refuse(o, "ERROR"),
        "CompliancePending" => {
            o.review = Review::Wait;
            o.succeed();
        }
        "ComplianceFail" => {
            o.review = Review::Fail;
            o.succeed();
        }
        _ => o.succeed(),
    }
}

async fn submit(state: &State, account: &GatewayAccountRec, req: &Request) -> Result<Response, StoreError> {
    let Some(request_id) = req.idempotency_key() else {
        return Ok(error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "the Idempotency-Key header is required",
        ));
    };
    let body: SubmitOnboardingBody = or_reply!(req.json(), Ok);
    let (ticket, fault) = {
        let _guard = state.write_lock.lock().await;
        let rkey = request_key(&account.merchant_id, request_id);
        if let Some(id) = state.store.get_raw(Tree::Index, &rkey)? {
            // A repeat answers what was decided: no fault, which could lie about it.
            let id = String::from_utf8_lossy(&id).into_owned();
            return Ok(match state.store.get::<SandboxOnboarding>(key(&id))? {
                Some(o) => json(StatusCode::OK, &o.answer()),
                None => error(StatusCode::INTERNAL_SERVER_ERROR, "internal", "lost onboarding"),
            });
        }
        let fault = or_reply!(before_apply(state, MarketplaceOperation::Onboarding), Ok);
        let mut o = SandboxOnboarding {
            id: super::new_id("gwo"),
            merchant_id: account.merchant_id.clone(),
            status: "PENDING".into(),
            provider_recipient_id: None,
            compliance: None,
            reason: None,
            review: Review::Approve,
        };
        decide(&body.name, &mut o);
        let mut batch = WriteBatch::new();
        batch.put(key(&o.id), &o)?;
        batch.put_raw(Tree::Index, rkey, o.id.as_bytes());
        ((state.store.commit(batch)?, o), fault)
    };
    state.store.wait_durable(ticket.0).await?;
    after_apply(state, fault).await;
    Ok(json(StatusCode::CREATED, &ticket.1.answer()))
}

fn by_request(state: &State, account: &GatewayAccountRec, request_id: &str) -> Result<Response, StoreError> {
    let rkey = request_key(&account.merchant_id, request_id);
    let Some(id) = state.store.get_raw(Tree::Index, rkey)? else {
        return Ok(error(
            StatusCode::NOT_FOUND,
            "not_found",
            "no onboarding was submitted with this request id",
        ));
    };
    let id = String::from_utf8_lossy(&id).into_owned();
    Ok(match state.store.get::<SandboxOnboarding>(key(&id))? {
        Some(o) => json(StatusCode::OK, &o.answer()),
        None => error(StatusCode::NOT_FOUND, "not_found", "no such onboarding"),
    })
}

/// Applies `f` to onboarding `id` once per request id (a repeat answers the
/// current state); a refusal is 409, nothing applied.
async fn change(
    state: &State,
    account: Option<&GatewayAccountRec>,
    id: &str,
    request_id: Option<&str>,
    f: impl FnOnce(&mut SandboxOnboarding) -> Result<(), String>,
) -> Result<Response, StoreError> {
    let (ticket, o, fault) = {
        let _guard = state.write_lock.lock().await;
        let Some(mut o) = state.store.get::<SandboxOnboarding>(key(id))? else {
            return Ok(error(StatusCode::NOT_FOUND, "not_found", "no such onboarding"));
        };
        if account.is_some_and(|a| a.merchant_id != o.merchant_id) {
            return Ok(error(StatusCode::NOT_FOUND, "not_found", "no such onboarding"));
        }
        let seen = request_id.map(|r| request_key(&o.merchant_id, r));
        if let Some(seen) = &seen
            && state.store.contains(Tree::Index, seen)?
        {
            return Ok(json(StatusCode::OK, &o.answer())); // a repeat: no fault
        }
        // Faults apply to the gateway calls (an account), not to the control helpers.
        let fault = if account.is_some() {
            or_reply!(before_apply(state, MarketplaceOperation::Onboarding), Ok)
        } else {
            None
        };
        if let Err(reason) = f(&mut o) {
            return Ok(error(StatusCode::CONFLICT, "invalid_state", &reason));
        }
        let mut batch = WriteBatch::new();
        batch.put(key(id), &o)?;
        if let Some(seen) = seen {
            batch.put_raw(Tree::Index, seen, o.id.as_bytes());
        }
        (state.store.commit(batch)?, o, fault)
    };
    state.store.wait_durable(ticket).await?;
    after_apply(state, fault).await;
    Ok(json(StatusCode::OK, &o.answer()))
}

/// Agreements are signed at once (§11), once per request id.
async fn sign_agreement(
    state: &State,
    account: &GatewayAccountRec,
    req: &Request,
) -> Result<Response, StoreError> {
    let Some(request_id) = req.idempotency_key() else {
        return Ok(error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "the Idempotency-Key header is required",
        ));
    };
    let body: SignAgreementBody = or_reply!(req.json(), Ok);
    if !matches!(body.agreement_type.as_str(), "split" | "commission")
        || body.provider_recipient_id.is_empty()
    {
        return Ok(error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request",
            "unknown agreement type or recipient",
        ));
    }
    let rkey = Sandbox::AgreementRequest {
        merchant: account.merchant_id.to_string(),
        request: request_id.to_string(),
    }
    .text();
    let (ticket, answer, fault) = {
        let _guard = state.write_lock.lock().await;
        match state.store.get_raw(Tree::Index, &rkey)? {
            // A repeat answers what was decided: no fault, which could lie about it.
            Some(stored) => (state.store.ticket(), String::from_utf8_lossy(&stored).into_owned(), None),
            None => {
                let fault = or_reply!(before_apply(state, MarketplaceOperation::Agreement), Ok);
                let answer = AgreementAnswer { id: super::new_id("gwa"), status: "signed".into() };
                let answer = serde_json::to_string(&answer).expect("wire types always serialise");
                let mut batch = WriteBatch::new();
                batch.put_raw(Tree::Index, &rkey, answer.as_bytes());
                (state.store.commit(batch)?, answer, fault)
            }
        }
    };
    state.store.wait_durable(ticket).await?;
    after_apply(state, fault).await;
    Ok(super::raw_json(201, answer))
}
