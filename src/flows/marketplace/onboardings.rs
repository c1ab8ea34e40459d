//! Onboardings (MARKETPLACE.md §4, §9, §11): the saga around the recipient
//! actor. A gateway call is begun (request id and `pending_action` durable in
//! the actor's commit), made, and finished with the answer; an unknown outcome
//! leaves `pending_action` for [`resolve_pending`], which asks the gateway by
//! request id and never guesses.

use std::sync::Arc;

use pelago_actors::{
    Reject,
    keys::{Index, Marker, ONBPENDING},
    merchant::MerchantRecord,
    ports::{GatewayAccount, Outcome, SecretString},
    recipient::{
        NewOnboarding, Onboarding, OnboardingType, RecipientRecord,
        gateway::{GatewayOnboarding, OnboardingCall, OnboardingSubmission},
        onboarding::{ActionType, Document},
        onboardings::{
            Action, BeginAction, CreateOnboarding, FinishAction, GatewayCall, ReportOnboarding,
            TransferOnboarding,
        },
    },
};
use pelago_storage::{MerchantId, OnboardingId, RecipientId, Tree};

use super::recipients::{load_owned as load_recipient, seal_context};
use crate::{app::Core, flows::Error};

/// The answer: the onboarding and whether the gateway's outcome is still unknown (202).
pub struct Answer {
    pub onboarding: Onboarding,
    pub unknown: bool,
}

async fn account(app: &Core, merchant_id: &MerchantId) -> Result<GatewayAccount, Error> {
    let merchant = app
        .store
        .get::<MerchantRecord>(merchant_id.as_bytes())?
        .ok_or_else(|| Error::unavailable("the merchant could not be read"))?;
    crate::flows::bootstrap::funding_account(app, &merchant)
        .await
        .map_err(|e| Error::from(Reject::Upstream { message: e.to_string() }))
}

pub(super) fn open_number(
    app: &Core,
    recipient: &RecipientId,
    field: &str,
    sealed: &[u8],
) -> Result<SecretString, Error> {
    app.sealer
        .open_string(sealed, &seal_context(recipient, field))
        .map(SecretString::new)
        .map_err(|_| Error::unavailable("a sealed number could not be opened"))
}

/// The submission of `onboarding`: the recipient's data as it is now, its
/// numbers opened only for this call, the documents with a continue's.
fn submission(
    app: &Core,
    recipient: &RecipientRecord,
    onboarding: &Onboarding,
    account: GatewayAccount,
    request_id: &str,
) -> Result<OnboardingSubmission, Error> {
    let data = &recipient.data;
    let (id_field, id_sealed) = match (&data.individual, &data.business) {
        (Some(i), _) => ("individual.id_document.number", &i.id_document.number.sealed.0),
        (None, Some(b)) => {
            ("business.representative.id_document.number", &b.representative.id_document.number.sealed.0)
        }
        (None, None) => return Err(Error::unavailable("the recipient has no identity document")),
    };
    let mut documents: Vec<_> = onboarding.documents.iter().map(|d| d.file_id.clone()).collect();
    if let Some(p) = &onboarding.pending_action {
        documents.extend(p.documents.iter().map(|d| d.file_id.clone()));
    }
    let account_number = &data.bank_account.account_number.sealed.0;
    Ok(OnboardingSubmission {
        account,
        request_id: request_id.to_owned(),
        onboarding_id: onboarding.id.clone(),
        onboarding_type: onboarding.kind.as_str(),
        name: data.name.clone(),
        recipient_type: recipient.kind.as_str(),
        country: data.country.clone(),
        bank_code: data.bank_account.bank_code.clone(),
        id_document_number: open_number(app, &recipient.id, id_field, id_sealed)?,
        account_number: open_number(app, &recipient.id, "bank_account.account_number", account_number)?,
        documents,
    })
}

/// Makes the call a begun action needs, and finishes it with the answer.
async fn call(
    app: &Arc<Core>,
    recipient: &RecipientRecord,
    onboarding: Onboarding,
    call: Option<GatewayCall>,
) -> Result<Answer, Error> {
    let Some(call) = call else { return Ok(Answer { onboarding, unknown: false }) };
    let account = account(app, &recipient.merchant_id).await?;
    let gateway = &app.upstreams.marketplace;
    let outcome = match &call {
        GatewayCall::Submit { request_id } => {
            gateway.submit_onboarding(submission(app, recipient, &onboarding, account, request_id)?).await
        }
        GatewayCall::Cancel { request_id, gateway_onboarding_id } => {
            let (gateway_onboarding_id, request_id) = (gateway_onboarding_id.clone(), request_id.clone());
            gateway.cancel_onboarding(OnboardingCall { account, gateway_onboarding_id, request_id }).await
        }
        GatewayCall::Supplement { request_id, gateway_onboarding_id, documents } => {
            let (gateway_onboarding_id, request_id) = (gateway_onboarding_id.clone(), request_id.clone());
            let files = documents.iter().map(|d| d.file_id.clone()).collect();
            gateway
                .submit_supplement(OnboardingCall { account, gateway_onboarding_id, request_id }, files)
                .await
        }
    };
    let unknown = matches!(outcome, Outcome::Unknown { .. });
    if let Outcome::Unknown { detail } = &outcome {
        tracing::warn!(onboarding_id = %onboarding.id, request_id = call.request_id(), %detail, "onboarding outcome unknown; the resolver will ask");
    }
    let finished = app
        .actors
        .ask_recipient(
            &onboarding.recipient_id,
            FinishAction {
                onboarding_id: onboarding.id.clone(),
                request_id: call.request_id().to_owned(),
                outcome,
            },
        )
        .await??;
    if let Some(refused) = finished.refused {
        return Err(Error::from(Reject::Upstream { message: refused }));
    }
    Ok(Answer { onboarding: finished.onboarding, unknown })
}

/// Checks that each document is one of the merchant's files.
pub fn check_documents(app: &Core, merchant_id: &MerchantId, documents: &[Document]) -> Result<(), Error> {
    for (i, d) in documents.iter().enumerate() {
        let ours = app
            .store
            .get::<pelago_actors::file::FileRecord>(d.file_id.as_bytes())?
            .is_some_and(|f| &f.merchant_id == merchant_id);
        if !ours {
            return Err(
                Reject::invalid(format!("documents[{i}].file_id"), "no such file of this merchant").into()
            );
        }
    }
    Ok(())
}

pub async fn create(
    app: &Arc<Core>,
    merchant_id: &MerchantId,
    raw_recipient: &str,
    kind: OnboardingType,
    provider_recipient_id: Option<String>,
    documents: Vec<Document>,
    binding: Option<String>,
) -> Result<Answer, Error> {
    let recipient = load_recipient(app, merchant_id, raw_recipient).await?;
    check_documents(app, merchant_id, &documents)?;
    let id = super::bound_id(app, binding.as_ref(), OnboardingId::generate()).await?;
    let new = NewOnboarding {
        id,
        merchant_id: merchant_id.clone(),
        recipient_id: recipient.id.clone(),
        kind,
        provider_recipient_id,
        documents,
    };
    let begun = app.actors.ask_recipient(&recipient.id, CreateOnboarding(new)).await??;
    call(app, &recipient, begun.onboarding, begun.call).await
}

/// An onboarding as a request names it: the merchant asking, the recipient
/// and the onboarding ids as given (`/v1/recipients/{id}/onboardings/{oid}`).
pub struct OnboardingAt<'a> {
    pub merchant_id: &'a MerchantId,
    pub recipient: &'a str,
    pub onboarding: &'a str,
}

/// The merchant's recipient and its onboarding (404 unless the recipient is
/// its current owner).
pub async fn load_owned(
    app: &Arc<Core>,
    at: &OnboardingAt<'_>,
) -> Result<(RecipientRecord, Onboarding), Error> {
    let recipient = load_recipient(app, at.merchant_id, at.recipient).await?;
    let onboarding =
        crate::flows::load_owned::<OnboardingId, _>(app, "onboarding", at.onboarding, |o: &Onboarding| {
            o.recipient_id == recipient.id && &o.merchant_id == at.merchant_id
        })?;
    Ok((recipient, onboarding))
}

/// `continue`, `cancel`, `supplements`.
pub async fn act(app: &Arc<Core>, at: &OnboardingAt<'_>, action: Action) -> Result<Answer, Error> {
    let (recipient, onboarding) = load_owned(app, at).await?;
    if let Action::Continue { documents } | Action::Supplement { documents, .. } = &action {
        check_documents(app, at.merchant_id, documents)?;
    }
    let begun = app
        .actors
        .ask_recipient(&recipient.id, BeginAction { onboarding_id: onboarding.id, action })
        .await??;
    // A resubmission sends the data as it is now (fixed by PATCH).
    let recipient = load_recipient(app, at.merchant_id, at.recipient).await?;
    call(app, &recipient, begun.onboarding, begun.call).await
}

/// `transfer` (`to` set) and `reverse-transfer`.
pub async fn transfer(app: &Arc<Core>, at: &OnboardingAt<'_>, to: Option<&str>) -> Result<Onboarding, Error> {
    let (recipient, onboarding) = load_owned(app, at).await?;
    let to = to
        .map(|raw| {
            RecipientId::parse(raw).map_err(|_| {
                Error::from(Reject::invalid(
                    "recipient_id",
                    "recipient_id must be a recipient of the merchant",
                ))
            })
        })
        .transpose()?;
    Ok(app
        .actors
        .ask_recipient(&recipient.id, TransferOnboarding { onboarding_id: onboarding.id, to })
        .await??)
}

/// Applies what the gateway reported about the onboarding (test helpers, resolver).
pub async fn report(
    app: &Arc<Core>,
    onboarding: &Onboarding,
    answer: GatewayOnboarding,
) -> Result<Onboarding, Error> {
    Ok(app
        .actors
        .ask_recipient(
            &onboarding.recipient_id,
            ReportOnboarding { onboarding_id: onboarding.id.clone(), answer },
        )
        .await??)
}

/// The resolver's pass: every onboarding with a `pending_action` whose
/// outcome is unknown is asked about by request id (a submission), or its
/// call is repeated with the same request id (idempotent at the gateway).
pub async fn resolve_pending(app: &Arc<Core>) -> Result<usize, Error> {
    // A call whose first attempt may still be in flight is left to it.
    let grace_ms = crate::flows::grace_ms(app);
    let now = app.clock.now();
    let mut resolved = 0;
    // Due at once: the grace runs from the record's own time, below.
    for marker in crate::flows::marker_keys(app, ONBPENDING)? {
        let Marker::OnboardingPending { onboarding: id } = marker else { continue };
        let Some(onboarding) = app.store.get::<Onboarding>(id.as_bytes())? else { continue };
        let Some(pending) = onboarding.pending_action.clone() else { continue };
        if now.unix_ms() - pending.since.unix_ms() < grace_ms {
            continue;
        }
        let Some(recipient) = app.store.get::<RecipientRecord>(onboarding.recipient_id.as_bytes())? else {
            continue;
        };
        let call_again = match pending.kind {
            ActionType::Submit => GatewayCall::Submit { request_id: pending.request_id.clone() },
            ActionType::Cancel => GatewayCall::Cancel {
                request_id: pending.request_id.clone(),
                gateway_onboarding_id: onboarding.gateway_onboarding_id.clone().unwrap_or_default(),
            },
            ActionType::Supplement => GatewayCall::Supplement {
                request_id: pending.request_id.clone(),
                gateway_onboarding_id: onboarding.gateway_onboarding_id.clone().unwrap_or_default(),
                documents: pending.documents.clone(),
            },
        };
        // The same request id: the gateway applies it once and answers what it decided.
        match call(app, &recipient, onboarding, Some(call_again)).await {
            Ok(answer) if !answer.unknown => resolved += 1,
            Ok(_) => {}
            Err(Error::Upstream(_)) => resolved += 1,
            Err(e) => tracing::warn!(error = %e, "resolving an onboarding failed; retrying later"),
        }
    }
    Ok(resolved)
}

/// A signed gateway callback about gateway onboarding `gateway_onboarding_id`
/// of `merchant`'s account: the onboarding is queried and what the query says
/// is applied (the body is not trusted). Returns what happened.
pub async fn on_gateway_callback(
    app: &Arc<Core>,
    merchant: Option<&MerchantId>,
    gateway_onboarding_id: &str,
) -> Result<&'static str, Error> {
    // Bound (SECURITY.md): an onboarding created under the signing account, else 401, logged and counted.
    let unbound = || {
        let sender = merchant.map_or_else(|| "platform".to_owned(), ToString::to_string);
        crate::flows::callback_rules::unbound(
            app,
            crate::metrics::CallbackSource::Gateway,
            &sender,
            "-",
            gateway_onboarding_id,
        )
    };
    let gateway_key =
        Index::GatewayOnboarding { gateway_onboarding: gateway_onboarding_id.to_owned() }.encode();
    let Some(id) = app.store.get_raw(Tree::Index, gateway_key)? else { return Err(unbound()) };
    let Some(onboarding) = app.store.get::<Onboarding>(&id)? else { return Err(unbound()) };
    if merchant != Some(&onboarding.merchant_id) {
        return Err(unbound());
    }
    let account = account(app, &onboarding.merchant_id).await?;
    match app.upstreams.marketplace.get_onboarding(account, gateway_onboarding_id.to_owned()).await {
        Outcome::Done(answer) => {
            let before = onboarding.version;
            let after = report(app, &onboarding, answer).await?;
            Ok(if after.version == before { "unchanged" } else { "applied" })
        }
        // Not confirmed now: the resolver or the next callback will tell.
        _ => Err(Error::unavailable("the gateway could not confirm the onboarding; retry")),
    }
}
