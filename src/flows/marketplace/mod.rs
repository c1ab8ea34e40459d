//! Marketplace I (MARKETPLACE.md §1–§5): files, recipients, onboardings,
//! compliance, agreements.

pub mod agreements;
pub mod files;
pub mod onboardings;
pub mod payments;
pub mod recipients;
pub mod refunds;
pub mod splits;
pub mod withdrawals;

/// The gateway account a merchant's marketplace calls go under.
pub(super) async fn gateway_account(
    core: &crate::app::Core,
    merchant_id: &pelago_storage::MerchantId,
) -> Result<pelago_actors::ports::GatewayAccount, super::Error> {
    let merchant = core
        .store
        .get::<pelago_actors::merchant::MerchantRecord>(merchant_id.as_bytes())?
        .ok_or_else(|| super::Error::unavailable("the merchant could not be read"))?;
    crate::flows::bootstrap::funding_account(core, &merchant)
        .await
        .map_err(|e| super::Error::from(pelago_actors::Reject::Upstream { message: e.to_string() }))
}

/// The id an Idempotency-Key binding names, or `fresh`, bound to the key now
/// (durably, before any effect), so a retry with the key reaches the same object.
pub(super) async fn bound_id(
    core: &crate::app::Core,
    binding: Option<&String>,
    fresh: String,
) -> Result<String, super::Error> {
    use pelago_storage::Tree;
    let Some(binding) = binding else { return Ok(fresh) };
    if let Some(bound) = core.store.get_raw(Tree::Index, binding)? {
        return Ok(String::from_utf8_lossy(&bound).into_owned());
    }
    let mut batch = pelago_storage::WriteBatch::new();
    batch.expect_absent(Tree::Index, binding);
    batch.put_raw(Tree::Index, binding, fresh.as_bytes());
    core.store.commit_durable(batch).await.map_err(|e| match e {
        pelago_storage::StoreError::Conflict { .. } => {
            super::Error::unavailable("this Idempotency-Key is in use; retry")
        }
        other => other.into(),
    })?;
    Ok(fresh)
}
