//! Cardholders (API.md §4): create, get, list (`?reference=`), and the sandbox
//! approve helper. The id document number is sealed at rest and shown as
//! `****1234`.

use std::sync::Arc;

use chrono::{Datelike, NaiveDate};
use http::Method;
use pelago_actors::{
    cardholder::{CardholderRecord, Identity},
    keys::scan_prefix,
    merchant::MerchantRecord,
    ports::Address,
};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{
    errors::ApiError,
    pagination,
    router::{ApiReply, Ctx, HandlerResult, Route},
    wire,
};
use crate::{flows::cardholders, http::state::App};

pub fn routes() -> Vec<Route> {
    vec![
        Route::new(Method::POST, "/v1/cardholders", create).creates::<CreateCardholderIn>(),
        Route::new(Method::GET, "/v1/cardholders", list),
        Route::new(Method::GET, "/v1/cardholders/{id}", get),
        Route::new(Method::POST, "/v1/test_helpers/cardholders/{id}/approve", approve),
    ]
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct CreateCardholderIn {
    card_name: String,
    reference: Option<String>,
    first_name: String,
    last_name: String,
    email: String,
    phone: String,
    date_of_birth: String,
    nationality: String,
    id_document: IdDocumentIn,
    address: AddressIn,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct IdDocumentIn {
    /// `passport`, `national_id` or `driver_license`.
    #[serde(rename = "type")]
    kind: String,
    number: String,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct AddressIn {
    line1: String,
    line2: Option<String>,
    city: String,
    state: Option<String>,
    postal_code: String,
    country: String,
}

/// ISO 3166-1 alpha-2.
const COUNTRIES: &str = "AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ BL BM BN BO BQ BR BS BT BV BW BY BZ CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ DE DJ DK DM DO DZ EC EE EG EH ER ES ET FI FJ FK FM FO FR GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS GT GU GW GY HK HM HN HR HT HU ID IE IL IM IN IO IQ IR IS IT JE JM JO JP KE KG KH KI KM KN KP KR KW KY KZ LA LB LC LI LK LR LS LT LU LV LY MA MC MD ME MF MG MH MK ML MM MN MO MP MQ MR MS MT MU MV MW MX MY MZ NA NC NE NF NG NI NL NO NP NR NU NZ OM PA PE PF PG PH PK PL PM PN PR PS PT PW PY QA RE RO RS RU RW SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SR SS ST SV SX SY SZ TC TD TF TG TH TJ TK TL TM TN TO TR TT TV TW TZ UA UG UM US UY UZ VA VC VE VG VI VN VU WF WS YE YT ZA ZM ZW";

pub(super) fn is_country(code: &str) -> bool {
    code.len() == 2 && COUNTRIES.split(' ').any(|c| c == code)
}

fn text(value: String, param: &str, max: usize) -> Result<String, ApiError> {
    let v = value.trim().to_owned();
    if v.is_empty() || v.chars().count() > max || v.chars().any(char::is_control) {
        return Err(ApiError::invalid(param, format!("{param} must be 1 to {max} printable characters")));
    }
    Ok(v)
}

fn optional_text(value: Option<String>, param: &str, max: usize) -> Result<Option<String>, ApiError> {
    value.map(|v| text(v, param, max)).transpose()
}

pub(super) fn email(raw: String) -> Result<String, ApiError> {
    let bad = || ApiError::invalid("email", "email is not an email address");
    let (local, domain) = raw.split_once('@').ok_or_else(bad)?;
    let ok = !local.is_empty()
        && raw.len() <= 254
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !domain.contains('@')
        && !raw.chars().any(|c| c.is_whitespace() || c.is_control());
    if ok { Ok(raw) } else { Err(bad()) }
}

pub(super) fn phone(raw: String) -> Result<String, ApiError> {
    let digits = raw.strip_prefix('+').unwrap_or("");
    let ok = (7..=15).contains(&digits.len())
        && digits.bytes().all(|b| b.is_ascii_digit())
        && !digits.starts_with('0');
    if ok { Ok(raw) } else { Err(ApiError::invalid("phone", "phone must be E.164, like +6591234567")) }
}

pub(super) fn date_of_birth(raw: String, today: NaiveDate) -> Result<String, ApiError> {
    let date = NaiveDate::parse_from_str(&raw, "%Y-%m-%d")
        .ok()
        .filter(|_| raw.len() == 10)
        .ok_or_else(|| ApiError::invalid("date_of_birth", "date_of_birth must be a date YYYY-MM-DD"))?;
    if date >= today {
        return Err(ApiError::invalid("date_of_birth", "date_of_birth must be in the past"));
    }
    let mut age = today.year() - date.year();
    if (today.month(), today.day()) < (date.month(), date.day()) {
        age -= 1;
    }
    if age < 18 {
        return Err(ApiError::invalid("date_of_birth", "the cardholder must be at least 18"));
    }
    Ok(raw)
}

fn validate(req: CreateCardholderIn, today: NaiveDate) -> Result<cardholders::NewCardholder, ApiError> {
    let card_name = text(req.card_name, "card_name", 64)?;
    let reference = optional_text(req.reference, "reference", 255)?;
    let first_name = text(req.first_name, "first_name", 100)?;
    let last_name = text(req.last_name, "last_name", 100)?;
    let email = email(req.email)?;
    let phone = phone(req.phone)?;
    let date_of_birth = date_of_birth(req.date_of_birth, today)?;
    if !is_country(&req.nationality) {
        return Err(ApiError::invalid("nationality", "nationality must be an ISO 3166-1 alpha-2 code"));
    }
    if !matches!(req.id_document.kind.as_str(), "passport" | "national_id" | "driver_license") {
        return Err(ApiError::invalid(
            "id_document.type",
            "id_document.type must be passport, national_id or driver_license",
        ));
    }
    let number = req.id_document.number;
    if !(4..=32).contains(&number.len()) || !number.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(ApiError::invalid(
            "id_document.number",
            "id_document.number must be 4 to 32 letters or digits",
        ));
    }
    let a = req.address;
    if !is_country(&a.country) {
        return Err(ApiError::invalid(
            "address.country",
            "address.country must be an ISO 3166-1 alpha-2 code",
        ));
    }
    let address = Address {
        line1: text(a.line1, "address.line1", 200)?,
        line2: optional_text(a.line2, "address.line2", 200)?,
        city: text(a.city, "address.city", 100)?,
        state: optional_text(a.state, "address.state", 100)?,
        postal_code: text(a.postal_code, "address.postal_code", 20)?,
        country: a.country,
    };
    let identity = Identity {
        first_name,
        last_name,
        email,
        phone,
        date_of_birth,
        nationality: req.nationality,
        id_document_type: req.id_document.kind,
    };
    Ok(cardholders::NewCardholder { card_name, reference, identity, id_document_number: number, address })
}

pub fn cardholder_json(c: &CardholderRecord) -> Value {
    json!({
        "id": c.id,
        "object": "cardholder",
        "reference": c.reference,
        "card_name": c.card_name,
        "bin": c.bin,
        "status": c.status.as_str(),
        "failure_reason": c.failure_reason,
        "first_name": c.identity.first_name,
        "last_name": c.identity.last_name,
        "email": c.identity.email,
        "phone": c.identity.phone,
        "date_of_birth": c.identity.date_of_birth,
        "nationality": c.identity.nationality,
        "id_document": {"type": c.identity.id_document_type, "number": format!("****{}", c.id_document_last4)},
        "address": {
            "line1": c.address.line1, "line2": c.address.line2, "city": c.address.city,
            "state": c.address.state, "postal_code": c.address.postal_code, "country": c.address.country,
        },
        "version": c.version,
        "status_history": wire::history(&c.status_history),
        "created_at": c.created_at.to_rfc3339(),
    })
}

/// POST /v1/cardholders
async fn create(app: Arc<App>, ctx: Ctx) -> HandlerResult {
    let merchant_id = ctx.merchant_id()?.clone();
    let merchant = app.store.get::<MerchantRecord>(merchant_id.as_bytes())?.ok_or_else(ApiError::internal)?;
    let today = app.clock.now().to_datetime().date_naive();
    let new = validate(ctx.json()?, today)?;
    let created = cardholders::create(&app, &merchant, new, ctx.binding()).await?;
    Ok(ApiReply::created(!created.settled, &cardholder_json(&created.record)))
}

/// GET /v1/cardholders/{id}
async fn get(app: Arc<App>, ctx: Ctx) -> HandlerResult {
    let c = cardholders::load_owned(&app, ctx.merchant_id()?, ctx.param(0))?;
    Ok(ApiReply::json(200, &cardholder_json(&c)))
}

/// GET /v1/cardholders — newest first; `?reference=` filters.
async fn list(app: Arc<App>, ctx: Ctx) -> HandlerResult {
    let merchant = ctx.merchant_id()?.clone();
    let page = pagination::parse(&ctx.query, &["reference"])?;
    let prefix = match page.filters.get("reference") {
        Some(r) => scan_prefix(crate::keys::MCHDREF, &[&merchant, r]),
        None => scan_prefix(crate::keys::MCHD, &[&merchant]),
    };
    let holders = pagination::indexed::<CardholderRecord>(&app.store, &prefix, &page)?;
    Ok(ApiReply::json(200, &pagination::body(holders.iter().map(cardholder_json).collect(), page.limit)))
}

/// POST /v1/test_helpers/cardholders/{id}/approve — sandbox only: the channel
/// approves a `Pending` cardholder; answers once Pelago processed the callback.
async fn approve(app: Arc<App>, ctx: Ctx) -> HandlerResult {
    let control = app.upstreams.sandbox.as_ref().ok_or_else(|| ApiError::not_found("route"))?;
    let c = cardholders::load_owned(&app, ctx.merchant_id()?, ctx.param(0))?;
    let channel_cardholder_id = c
        .channel_cardholder_id
        .as_deref()
        .ok_or_else(|| ApiError::invalid_state("the channel has not seen this cardholder yet"))?;
    control
        .approve_cardholder(channel_cardholder_id)
        .await
        .map_err(|e| ApiError::upstream(format!("the sandbox channel refused: {e}")))?;
    let c = cardholders::load_owned(&app, ctx.merchant_id()?, ctx.param(0))?;
    Ok(ApiReply::json(200, &cardholder_json(&c)))
}
