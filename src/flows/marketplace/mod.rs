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

/// What a resolver pass read under one marker.
pub(super) enum Found<R> {
    /// The operation's record: asked again.
    Record(R),
    /// No record: the operation never began, and the marker is removed.
    Gone,
    /// A key or value it cannot read: left as it is.
    Unreadable,
}

/// One resolver pass over the markers under `prefix` (value `{owner} {start
/// ms} ...`) whose grace has passed: `find` reads each one's record, `send`
/// asks the gateway again with its stored request id and says whether the
/// operation is final now (counted); an error of `send` ends the pass.
pub(super) async fn resolve_markers<R, Sent: Future<Output = Result<bool, super::Error>>>(
    core: &crate::app::Core,
    prefix: &str,
    find: impl Fn(&pelago_actors::keys::Marker, &str) -> Result<Found<R>, super::Error>,
    send: impl Fn(R) -> Sent,
) -> Result<usize, super::Error> {
    let mut done = 0;
    let grace = super::grace_ms(core);
    for (key, value) in super::due_markers(core, prefix, super::Started::AfterFirstWord, grace)? {
        match find(&key, &String::from_utf8_lossy(&value))? {
            Found::Record(record) => done += usize::from(send(record).await?),
            Found::Gone => super::clear_marker(core, key.encode()).await?,
            Found::Unreadable => {}
        }
    }
    Ok(done)
}

/// The id an Idempotency-Key binding names, or `fresh`, bound to the key now
/// (durably, before any effect), so a retry with the key reaches the same object.
pub(super) async fn bound_id<I: std::str::FromStr + std::fmt::Display>(
    core: &crate::app::Core,
    binding: Option<&String>,
    fresh: I,
) -> Result<I, super::Error> {
    use pelago_storage::Tree;
    let Some(binding) = binding else { return Ok(fresh) };
    if let Some(bound) = core.store.get_raw(Tree::Index, binding)? {
        return String::from_utf8_lossy(&bound)
            .parse()
            .map_err(|_| super::Error::unavailable("the Idempotency-Key binding is unreadable"));
    }
    let mut batch = pelago_storage::WriteBatch::new();
    batch.expect_absent(Tree::Index, binding);
    batch.put_raw(Tree::Index, binding, fresh.to_string().as_bytes());
    core.store.commit_durable(batch).await.map_err(|e| match e {
        pelago_storage::StoreError::Conflict { .. } => {
            super::Error::unavailable("this Idempotency-Key is in use; retry")
        }
        other => other.into(),
    })?;
    Ok(fresh)
}
