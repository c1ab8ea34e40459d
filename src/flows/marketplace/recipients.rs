//! Recipients (MARKETPLACE.md §3): the identity and bank numbers are sealed
//! here, bound to the recipient and the field, before anything is stored or
//! sent to the recipient actor (its single writer); only their last 4 stay
//! readable. Create and PATCH go through the actor, which checks §3's
//! cross-field rules and the onboarding state.

use std::sync::Arc;

use pelago_actors::{
    Reject,
    keys::Index,
    merchant::Sealed,
    recipient::{
        CreateRecipient, GetRecipient, RecipientData, RecipientRecord, RecipientType, SealedNumber,
        UpdateRecipient,
        state::{BankAccount, Business, IdDocument, Individual, Representative},
    },
};
use pelago_storage::{MerchantId, RecipientId, Tree};

use crate::{app::Core, flows::Error};

/// A number in clear, on its way to being sealed. Never printed.
pub struct ClearNumber(pub String);

impl std::fmt::Debug for ClearNumber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

#[derive(Debug)]
pub struct IdDocumentInput {
    pub kind: String,
    pub number: ClearNumber,
}

#[derive(Debug)]
pub struct IndividualInput {
    pub first_name: String,
    pub last_name: String,
    pub date_of_birth: String,
    pub id_document: IdDocumentInput,
}

#[derive(Debug)]
pub struct BusinessInput {
    pub legal_name: String,
    pub kind: String,
    pub registration_number: String,
    pub representative_name: String,
    pub representative_id_document: IdDocumentInput,
}

#[derive(Debug)]
pub struct BankAccountInput {
    pub holder_name: String,
    pub account_number: ClearNumber,
    pub bank_code: String,
    pub kind: String,
}

/// The validated fields of a request; on a PATCH, the absent ones keep their value.
#[derive(Debug, Default)]
pub struct RecipientInput {
    pub reference: Option<String>,
    pub name: Option<String>,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub country: Option<String>,
    pub individual: Option<IndividualInput>,
    pub business: Option<BusinessInput>,
    pub bank_account: Option<BankAccountInput>,
}

fn seal(app: &Core, id: &RecipientId, field: &str, clear: ClearNumber) -> SealedNumber {
    let last4: String = clear.0.chars().rev().take(4).collect::<Vec<_>>().into_iter().rev().collect();
    let sealed = app.sealer.seal(clear.0.as_bytes(), &seal_context(id, field));
    SealedNumber { sealed: Sealed(sealed), last4 }
}

/// What a sealed number is bound to: the recipient and the field.
pub fn seal_context(id: &RecipientId, field: &str) -> String {
    format!("recipient:{id}:{field}")
}

fn id_document(app: &Core, id: &RecipientId, field: &str, input: IdDocumentInput) -> IdDocument {
    IdDocument { kind: input.kind, number: seal(app, id, field, input.number) }
}

fn individual(app: &Core, id: &RecipientId, input: IndividualInput) -> Individual {
    Individual {
        first_name: input.first_name,
        last_name: input.last_name,
        date_of_birth: input.date_of_birth,
        id_document: id_document(app, id, "individual.id_document.number", input.id_document),
    }
}

fn business(app: &Core, id: &RecipientId, input: BusinessInput) -> Business {
    Business {
        legal_name: input.legal_name,
        kind: input.kind,
        registration_number: input.registration_number,
        representative: Representative {
            name: input.representative_name,
            id_document: id_document(
                app,
                id,
                "business.representative.id_document.number",
                input.representative_id_document,
            ),
        },
    }
}

fn bank_account(app: &Core, id: &RecipientId, input: BankAccountInput) -> BankAccount {
    BankAccount {
        holder_name: input.holder_name,
        account_number: seal(app, id, "bank_account.account_number", input.account_number),
        bank_code: input.bank_code,
        kind: input.kind,
    }
}

fn required<T>(value: Option<T>, param: &str) -> Result<T, Reject> {
    value.ok_or_else(|| Reject::invalid(param, format!("{param} is required")))
}

/// Creates a recipient of `merchant_id` (HTTP validated each field; the
/// actor checks the cross-field rules). `binding`: the Idempotency-Key's.
pub async fn create(
    app: &Arc<Core>,
    merchant_id: &MerchantId,
    kind: RecipientType,
    input: RecipientInput,
    binding: Option<String>,
) -> Result<RecipientRecord, Error> {
    if let Some(b) = &binding
        && let Some(id) = app.store.get_raw(Tree::Index, b)?
    {
        let id = RecipientId::parse(&String::from_utf8_lossy(&id))
            .map_err(|_| Error::unavailable("the Idempotency-Key binding is unreadable"))?;
        let record = app.actors.ask_recipient(&id, GetRecipient).await??;
        return Ok(pelago_actors::recipient::onboardings::with_current(&app.store, record)?);
    }
    let id = RecipientId::generate();
    let data = RecipientData {
        reference: input.reference,
        name: required(input.name, "name")?,
        email: required(input.email, "email")?,
        phone: required(input.phone, "phone")?,
        country: required(input.country, "country")?,
        individual: input.individual.map(|i| individual(app, &id, i)),
        business: input.business.map(|b| business(app, &id, b)),
        bank_account: bank_account(app, &id, required(input.bank_account, "bank_account")?),
    };
    let record = RecipientRecord::create(id.clone(), merchant_id.clone(), kind, data, app.clock.now())?;
    Ok(app.actors.ask_recipient(&id, CreateRecipient { record, binding }).await??)
}

/// `PATCH`: the present fields replace the stored ones (a sub-object whole).
pub async fn update(
    app: &Arc<Core>,
    merchant_id: &MerchantId,
    raw_id: &str,
    input: RecipientInput,
) -> Result<RecipientRecord, Error> {
    let current = load_owned(app, merchant_id, raw_id).await?;
    let id = current.id.clone();
    let mut data = current.data;
    if let Some(v) = input.reference {
        data.reference = Some(v);
    }
    if let Some(v) = input.name {
        data.name = v;
    }
    if let Some(v) = input.email {
        data.email = v;
    }
    if let Some(v) = input.phone {
        data.phone = v;
    }
    if let Some(v) = input.country {
        data.country = v;
    }
    if let Some(v) = input.individual {
        data.individual = Some(individual(app, &id, v));
    }
    if let Some(v) = input.business {
        data.business = Some(business(app, &id, v));
    }
    if let Some(v) = input.bank_account {
        data.bank_account = bank_account(app, &id, v);
    }
    let record = app.actors.ask_recipient(&id, UpdateRecipient(data)).await??;
    Ok(pelago_actors::recipient::onboardings::with_current(&app.store, record)?)
}

/// The merchant's recipient `raw`, from its actor; another merchant's or an
/// unknown one → not found (never activating an actor for a foreign id).
pub async fn load_owned(
    app: &Arc<Core>,
    merchant_id: &MerchantId,
    raw: &str,
) -> Result<RecipientRecord, Error> {
    let not_found = || Error::from(Reject::NotFound { what: "recipient" });
    let id = RecipientId::parse(raw).map_err(|_| not_found())?;
    if !app.store.contains(
        Tree::Index,
        Index::MerchantRecipient { merchant: merchant_id.clone(), recipient: id.clone() }.encode(),
    )? {
        return Err(not_found());
    }
    let record = app.actors.ask_recipient(&id, GetRecipient).await??;
    Ok(pelago_actors::recipient::onboardings::with_current(&app.store, record)?)
}
