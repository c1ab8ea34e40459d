//! Recipients (MARKETPLACE.md §3): create, list (`?reference=`), get, PATCH,
//! balance. Each field is validated here with its `param`; the identity and
//! bank numbers are shown only as `****` + last 4, and never echoed in an
//! error (a wrong-typed value is named by its path, not shown).

use std::sync::Arc;

use chrono::NaiveDate;
use http::Method;
use pelago_actors::{
    keys,
    ledger::marketplace::RecipientBalances,
    recipient::{
        RecipientRecord, RecipientType,
        state::{IdDocument, SealedNumber},
    },
};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{
    cardholders::{date_of_birth, email, is_country, phone},
    errors::ApiError,
    pagination,
    router::{ApiReply, Ctx, HandlerResult, Route},
};
use crate::{
    flows::marketplace::recipients::{
        self, BankAccountInput, BusinessInput, ClearNumber, IdDocumentInput, IndividualInput, RecipientInput,
    },
    http::state::App,
};

pub fn routes() -> Vec<Route> {
    vec![
        Route::new(Method::POST, "/v1/recipients", create).answers(201).accepts::<RecipientIn>(),
        Route::new(Method::GET, "/v1/recipients", list),
        Route::new(Method::GET, "/v1/recipients/{id}", get),
        Route::new(Method::PATCH, "/v1/recipients/{id}", update).accepts::<RecipientIn>(),
        Route::new(Method::GET, "/v1/recipients/{id}/balance", balance),
    ]
}

/// A recipient (POST: `type`, `name`, `email`, `phone`, `country`,
/// `bank_account` and the type's sub-object are required; PATCH: any field
/// but `type`, a sub-object replaced whole).
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct RecipientIn {
    reference: Option<String>,
    /// `individual` or `business`.
    #[serde(rename = "type")]
    kind: Option<String>,
    name: Option<String>,
    email: Option<String>,
    phone: Option<String>,
    country: Option<String>,
    individual: Option<IndividualIn>,
    business: Option<BusinessIn>,
    bank_account: Option<BankAccountIn>,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct IdDocumentIn {
    /// `national_id` or `passport`.
    #[serde(rename = "type")]
    kind: Option<String>,
    number: Option<String>,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct IndividualIn {
    first_name: Option<String>,
    last_name: Option<String>,
    date_of_birth: Option<String>,
    id_document: Option<IdDocumentIn>,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct RepresentativeIn {
    name: Option<String>,
    id_document: Option<IdDocumentIn>,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct BusinessIn {
    legal_name: Option<String>,
    /// `enterprise`, `sole_proprietor` or `institution`.
    kind: Option<String>,
    registration_number: Option<String>,
    representative: Option<RepresentativeIn>,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct BankAccountIn {
    holder_name: Option<String>,
    account_number: Option<String>,
    bank_code: Option<String>,
    /// `personal` or `corporate`.
    kind: Option<String>,
}

/// Parses the body naming the bad field, never showing a value (a number
/// sent as a JSON number would otherwise be echoed by serde's message).
fn parse(ctx: &Ctx) -> Result<RecipientIn, ApiError> {
    ctx.json::<RecipientIn>().map_err(|e| match e.invalid_field().map(str::to_owned) {
        Some(param) => {
            let message = format!("{param} is missing, unknown or of the wrong type");
            ApiError::invalid(param, message)
        }
        None => e,
    })
}

fn present<T>(value: Option<T>, param: &str) -> Result<T, ApiError> {
    value.ok_or_else(|| ApiError::invalid(param, format!("{param} is required")))
}

/// 1..`max` characters, no control characters (and no `|` where `no_bar`).
pub(super) fn text(value: Option<String>, param: &str, max: usize, no_bar: bool) -> Result<String, ApiError> {
    let v = present(value, param)?;
    let bad = v.is_empty()
        || v.chars().count() > max
        || v.chars().any(char::is_control)
        || (no_bar && v.contains('|'))
        || v.trim().is_empty();
    if bad {
        return Err(ApiError::invalid(param, format!("{param} must be 1 to {max} printable characters")));
    }
    Ok(v)
}

/// `min..=max` of the allowed ASCII characters (`what` describes them).
fn code(
    value: Option<String>,
    param: &str,
    min: usize,
    max: usize,
    allowed: fn(u8) -> bool,
    what: &str,
) -> Result<String, ApiError> {
    let v = present(value, param)?;
    if !(min..=max).contains(&v.len()) || !v.bytes().all(allowed) {
        return Err(ApiError::invalid(param, format!("{param} must be {min} to {max} of {what}")));
    }
    Ok(v)
}

fn one_of(value: Option<String>, param: &str, allowed: &[&str]) -> Result<String, ApiError> {
    let v = present(value, param)?;
    if !allowed.contains(&v.as_str()) {
        return Err(ApiError::invalid(param, format!("{param} must be one of {}", allowed.join(", "))));
    }
    Ok(v)
}

fn alnum_dash(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-'
}

fn upper_digit(b: u8) -> bool {
    b.is_ascii_uppercase() || b.is_ascii_digit()
}

fn id_document(value: Option<IdDocumentIn>, param: &str) -> Result<IdDocumentInput, ApiError> {
    let d = present(value, param)?;
    Ok(IdDocumentInput {
        kind: one_of(d.kind, &format!("{param}.type"), &["national_id", "passport"])?,
        number: ClearNumber(code(
            d.number,
            &format!("{param}.number"),
            4,
            32,
            alnum_dash,
            "letters, digits and -",
        )?),
    })
}

fn individual(i: IndividualIn, today: NaiveDate) -> Result<IndividualInput, ApiError> {
    let first_name = text(i.first_name, "individual.first_name", 64, false)?;
    let last_name = text(i.last_name, "individual.last_name", 64, false)?;
    let param = "individual.date_of_birth";
    let date_of_birth = date_of_birth(present(i.date_of_birth, param)?, today).map_err(|_| {
        ApiError::invalid(param, "individual.date_of_birth must be a date YYYY-MM-DD of someone at least 18")
    })?;
    Ok(IndividualInput {
        first_name,
        last_name,
        date_of_birth,
        id_document: id_document(i.id_document, "individual.id_document")?,
    })
}

fn business(b: BusinessIn) -> Result<BusinessInput, ApiError> {
    let legal_name = text(b.legal_name, "business.legal_name", 128, false)?;
    let kind = one_of(b.kind, "business.kind", &["enterprise", "sole_proprietor", "institution"])?;
    let registration_number = code(
        b.registration_number,
        "business.registration_number",
        4,
        32,
        alnum_dash,
        "letters, digits and -",
    )?;
    let r = present(b.representative, "business.representative")?;
    Ok(BusinessInput {
        legal_name,
        kind,
        registration_number,
        representative_name: text(r.name, "business.representative.name", 128, false)?,
        representative_id_document: id_document(r.id_document, "business.representative.id_document")?,
    })
}

fn bank_account(b: BankAccountIn) -> Result<BankAccountInput, ApiError> {
    Ok(BankAccountInput {
        holder_name: text(b.holder_name, "bank_account.holder_name", 128, false)?,
        account_number: ClearNumber(code(
            b.account_number,
            "bank_account.account_number",
            6,
            34,
            upper_digit,
            "A-Z and 0-9",
        )?),
        bank_code: code(b.bank_code, "bank_account.bank_code", 1, 16, upper_digit, "A-Z and 0-9")?,
        kind: one_of(b.kind, "bank_account.kind", &["personal", "corporate"])?,
    })
}

/// Each present field checked in the order of §3; `creating` requires the
/// fields a new recipient must have.
fn validate(req: RecipientIn, today: NaiveDate, creating: bool) -> Result<RecipientInput, ApiError> {
    let mut out = RecipientInput::default();
    if req.reference.is_some() {
        out.reference = Some(text(req.reference, "reference", 255, true)?);
    }
    let need = |present: bool, param: &str| {
        if creating && !present {
            Err(ApiError::invalid(param, format!("{param} is required")))
        } else {
            Ok(())
        }
    };
    need(req.name.is_some(), "name")?;
    if req.name.is_some() {
        out.name = Some(text(req.name, "name", 128, false)?);
    }
    need(req.email.is_some(), "email")?;
    if let Some(raw) = req.email {
        out.email = Some(email(raw)?);
    }
    need(req.phone.is_some(), "phone")?;
    if let Some(raw) = req.phone {
        out.phone = Some(phone(raw)?);
    }
    need(req.country.is_some(), "country")?;
    if let Some(country) = req.country {
        if !is_country(&country) {
            return Err(ApiError::invalid("country", "country must be an ISO 3166-1 alpha-2 code"));
        }
        out.country = Some(country);
    }
    if let Some(i) = req.individual {
        out.individual = Some(individual(i, today)?);
    }
    if let Some(b) = req.business {
        out.business = Some(business(b)?);
    }
    need(req.bank_account.is_some(), "bank_account")?;
    if let Some(b) = req.bank_account {
        out.bank_account = Some(bank_account(b)?);
    }
    Ok(out)
}

fn kind_of(raw: Option<String>) -> Result<RecipientType, ApiError> {
    match present(raw, "type")?.as_str() {
        "individual" => Ok(RecipientType::Individual),
        "business" => Ok(RecipientType::Business),
        _ => Err(ApiError::invalid("type", "type must be individual or business")),
    }
}

fn id_document_json(d: &IdDocument) -> Value {
    json!({"type": d.kind, "number": masked(&d.number)})
}

fn masked(n: &SealedNumber) -> String {
    n.masked()
}

pub fn recipient_json(r: &RecipientRecord) -> Value {
    let d = &r.data;
    json!({
        "id": r.id,
        "object": "recipient",
        "reference": d.reference,
        "type": r.kind.as_str(),
        "name": d.name,
        "email": d.email,
        "phone": d.phone,
        "country": d.country,
        "individual": d.individual.as_ref().map(|i| json!({
            "first_name": i.first_name,
            "last_name": i.last_name,
            "date_of_birth": i.date_of_birth,
            "id_document": id_document_json(&i.id_document),
        })),
        "business": d.business.as_ref().map(|b| json!({
            "legal_name": b.legal_name,
            "kind": b.kind,
            "registration_number": b.registration_number,
            "representative": {
                "name": b.representative.name,
                "id_document": id_document_json(&b.representative.id_document),
            },
        })),
        "bank_account": {
            "holder_name": d.bank_account.holder_name,
            "account_number": masked(&d.bank_account.account_number),
            "bank_code": d.bank_account.bank_code,
            "kind": d.bank_account.kind,
        },
        "onboarding": r.onboarding.as_ref().map(|o| json!({
            "id": o.id,
            "type": o.kind.as_str(),
            "status": o.status.as_str(),
            "compliance_status": o.compliance_status.as_str(),
        })),
        "capabilities": {"receive_splits": r.can_receive_splits(), "withdraw": r.can_withdraw()},
        "created_at": r.created_at.to_rfc3339(),
        "version": r.version,
    })
}

/// POST /v1/recipients
async fn create(app: Arc<App>, ctx: Ctx) -> HandlerResult {
    let merchant_id = ctx.merchant_id()?.clone();
    let today = app.clock.now().to_datetime().date_naive();
    let mut req = parse(&ctx)?;
    let kind = kind_of(req.kind.take())?;
    let input = validate(req, today, true)?;
    let record = recipients::create(&app.core, &merchant_id, kind, input, ctx.binding()).await?;
    Ok(ApiReply::json(201, &recipient_json(&record)))
}

/// GET /v1/recipients/{id}
async fn get(app: Arc<App>, ctx: Ctx) -> HandlerResult {
    let record = recipients::load_owned(&app.core, ctx.merchant_id()?, ctx.param(0)).await?;
    Ok(ApiReply::json(200, &recipient_json(&record)))
}

/// PATCH /v1/recipients/{id} — any field but `type`, by the same rules.
async fn update(app: Arc<App>, ctx: Ctx) -> HandlerResult {
    let merchant_id = ctx.merchant_id()?.clone();
    let today = app.clock.now().to_datetime().date_naive();
    let req = parse(&ctx)?;
    if req.kind.is_some() {
        return Err(ApiError::invalid("type", "type cannot be changed"));
    }
    let input = validate(req, today, false)?;
    let record = recipients::update(&app.core, &merchant_id, ctx.param(0), input).await?;
    Ok(ApiReply::json(200, &recipient_json(&record)))
}

/// GET /v1/recipients — newest first; `?reference=` filters.
async fn list(app: Arc<App>, ctx: Ctx) -> HandlerResult {
    let merchant = ctx.merchant_id()?.clone();
    let page = pagination::parse(&ctx.query, &["reference"])?;
    let prefix = match page.filters.get("reference") {
        Some(r) => keys::scan_prefix(keys::MRECREF, &[&merchant, r]),
        None => keys::scan_prefix(keys::MREC, &[&merchant]),
    };
    let found = pagination::indexed::<RecipientRecord>(&app.store, &prefix, &page)?;
    let found = found
        .into_iter()
        .filter(|r| r.merchant_id == merchant)
        .map(|r| pelago_actors::recipient::onboardings::with_current(&app.store, r))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(ApiReply::json(200, &pagination::body(found.iter().map(recipient_json).collect(), page.limit)))
}

/// GET /v1/recipients/{id}/balance — the recipient's accounts in the
/// merchant's ledger (MARKETPLACE.md §8), as its merchant's actor booked them.
async fn balance(app: Arc<App>, ctx: Ctx) -> HandlerResult {
    let record = recipients::load_owned(&app.core, ctx.merchant_id()?, ctx.param(0)).await?;
    let booked = app.store.get::<RecipientBalances>(record.id.as_bytes())?;
    let balances = booked.map(|b| b.balances).unwrap_or_default();
    let balances: Vec<Value> = balances
        .iter()
        .map(|b| {
            json!({"currency": b.currency.code(), "in_transit": b.in_transit,
                   "available": b.available, "withdrawing": b.withdrawing})
        })
        .collect();
    Ok(ApiReply::json(200, &json!({"recipient_id": record.id, "balances": balances})))
}
