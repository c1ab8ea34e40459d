//! Opening a card whose application fee was charged with its intent (the
//! binary's `cardopen/` row, committed with the fee): the card is written
//! once, with the channel's answer, and that commit removes the intent —
//! the request id the channel sees is derived from the card id, so a retry
//! after a crash sends the same one.

#[path = "common/channel.rs"]
mod channel;
mod common;

use std::sync::{Arc, Mutex};

use channel::{InstantChannel, OneChannel};
use pelago_actors::{
    card::{
        CardStatus,
        ops::{Open, open_request_id},
    },
    keys::Marker,
    ports::SystemClock,
    system::{Actors, SystemConfig},
};
use pelago_storage::{CardId, ChannelId, Currency, Money, Store, StoreConfig, Tree, WriteBatch};

const INTENT: &[u8] = b"cardopen/under-test";
const BINDING: &str = "idem/opening-under-test";

/// What the channel saw in the store while it was being called: (the card
/// exists, the intent exists).
type Seen = Arc<Mutex<Vec<(bool, bool)>>>;

fn start(dir: &std::path::Path, unknown_opens: bool) -> (Store, Arc<Actors>, Seen) {
    let store = Store::open(dir, &StoreConfig::default()).unwrap();
    let seen: Seen = Arc::default();
    let on_open = {
        let (store, seen) = (store.clone(), Arc::clone(&seen));
        Box::new(move |req: &pelago_actors::ports::OpenCard| {
            let card = store.contains(Tree::Cards, req.card_id.as_bytes()).unwrap();
            let intent = store.contains(Tree::Operations, INTENT).unwrap();
            seen.lock().unwrap().push((card, intent));
        })
    };
    let channel = InstantChannel { on_open: Some(on_open), unknown_opens };
    let config = SystemConfig {
        channels: Arc::new(OneChannel(Arc::new(channel))),
        arbiters: 2,
        ..SystemConfig::default()
    };
    let actors = Actors::start(store.clone(), Arc::new(SystemClock), config);
    (store, actors, seen)
}

fn open_with_intent(id: &CardId, channel: &ChannelId) -> Open {
    Open {
        new: common::new_card(id, channel),
        channel_cardholder_id: "chc_under_test".into(),
        application_fee: Some(Money::new(500, Currency::USD)),
        binding: Some(BINDING.into()),
        intent: Some(INTENT.to_vec()),
    }
}

/// One opening with its intent in place (as the fee's commit left it), and what it answered.
struct Opened {
    store: Store,
    actors: Arc<Actors>,
    seen: Seen,
    id: CardId,
    channel: ChannelId,
    /// The store's commit count before the opening.
    commits: u64,
    outcome: pelago_actors::card::ops::CardOutcome,
}

async fn opened(dir: &std::path::Path, unknown_opens: bool) -> Opened {
    let (store, actors, seen) = start(dir, unknown_opens);
    let mut batch = WriteBatch::new();
    batch.put_raw(Tree::Operations, INTENT, b"the fee's commit".to_vec());
    store.commit_durable(batch).await.unwrap();
    let (id, channel) = (CardId::generate(), ChannelId::generate());
    let commits = store.commit_stats().commits;
    let outcome = actors.ask_card(&id, open_with_intent(&id, &channel)).await.unwrap().unwrap();
    Opened { store, actors, seen, id, channel, commits, outcome }
}

#[test]
fn an_opening_with_an_intent_writes_its_card_once_with_the_channels_answer() {
    let dir = tempfile::tempdir().unwrap();
    common::run(|| async {
        let Opened { store, actors, seen, id, channel, commits, outcome } = opened(dir.path(), false).await;

        assert!(outcome.settled);
        assert_eq!(outcome.card.status, CardStatus::Active);
        assert_eq!(outcome.card.open_request_id, Some(open_request_id(&id)));
        assert_eq!(
            *seen.lock().unwrap(),
            [(false, true)],
            "nothing of the card before the call; the intent was"
        );
        assert_eq!(store.commit_stats().commits - commits, 1, "one commit: the card with its answer");
        assert!(!store.contains(Tree::Operations, INTENT).unwrap(), "the intent went with the card");
        assert!(!store.contains(Tree::Operations, Marker::Open { card: id.clone() }.encode()).unwrap());
        assert_eq!(store.get_raw(Tree::Index, BINDING).unwrap(), Some(id.as_bytes().to_vec()));

        // A repeat (a retry, the resolver) answers the card and calls nobody.
        let again = actors.ask_card(&id, open_with_intent(&id, &channel)).await.unwrap().unwrap();
        assert_eq!((again.card.status, seen.lock().unwrap().len()), (CardStatus::Active, 1));
    });
}

#[test]
fn an_unknown_answer_writes_the_card_processing_with_its_marker_for_the_resolver() {
    let dir = tempfile::tempdir().unwrap();
    common::run(|| async {
        let Opened { store, seen, id, outcome, .. } = opened(dir.path(), true).await;

        assert!(!outcome.settled, "answered 202");
        assert_eq!(outcome.card.status, CardStatus::Processing);
        assert_eq!(*seen.lock().unwrap(), [(false, true)]);
        let stored = store.get::<pelago_actors::card::CardRecord>(id.as_bytes()).unwrap().unwrap();
        assert_eq!(
            (stored.status, stored.open_request_id),
            (CardStatus::Processing, Some(open_request_id(&id)))
        );
        assert!(store.contains(Tree::Operations, Marker::Open { card: id.clone() }.encode()).unwrap());
        assert!(
            !store.contains(Tree::Operations, INTENT).unwrap(),
            "the card's marker took over from the intent"
        );
    });
}
