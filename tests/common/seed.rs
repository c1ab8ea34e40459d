//! Cards written straight into a store the service will open, as the card
//! actor stores them (for tests of many cards, and of stored transactions).

use std::path::Path;

use pelago_actors::{
    card::{CardRecord, CardStatus, NewCard},
    history::Source,
};
use pelago_storage::{CardId, ChannelId, MerchantId, Store, StoreConfig, Timestamp};

/// A `PELAGO_VIRTUAL_USD` card of `merchant` on `channel`, created at `at`.
pub fn card(merchant: &MerchantId, channel: &ChannelId, status: CardStatus, at: Timestamp) -> CardRecord {
    let new = NewCard::sandbox_usd(CardId::generate(), merchant.clone(), channel.clone(), status);
    CardRecord::create(new, at, Source::Merchant)
}

/// `n` cards (each as `edit` leaves it) written into the store of `data_dir`,
/// 1,000 a batch, then flushed: their ids.
pub fn cards(
    data_dir: &Path,
    (merchant, channel): (&MerchantId, &ChannelId),
    n: usize,
    status: CardStatus,
    edit: impl Fn(&mut CardRecord),
) -> Vec<CardId> {
    let store = Store::open(&data_dir.join("db"), &StoreConfig::default()).unwrap();
    let mut ids = Vec::with_capacity(n);
    for chunk in 0..n.div_ceil(1000) {
        let mut batch = pelago_storage::WriteBatch::new();
        for _ in 0..1000.min(n - chunk * 1000) {
            let mut card = card(merchant, channel, status, Timestamp(0));
            edit(&mut card);
            batch.put(card.id.as_bytes(), &card).unwrap();
            ids.push(card.id);
        }
        let _flushed_below = store.commit(batch).unwrap();
    }
    store.flush_blocking().unwrap();
    ids
}
