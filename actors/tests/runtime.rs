//! The actor runtime against a real store: supervision, activation and
//! passivation, pipelined durable writes.

mod common;

use std::sync::atomic::Ordering;

use common::*;
use pelago_actors::{
    ActorError,
    card::{ApplyTransaction, CardStatus, CrashNext, CreateCard, GetCard, Inspect, TransactionChange},
    runtime::RegistryConfig,
};
use pelago_storage::{CardId, ChannelId};

#[test]
fn a_panic_answers_unavailable_and_the_actor_restarts_from_the_store() {
    with_actors(RegistryConfig::default(), |actors| async move {
        let id = created_card(&actors, CardStatus::Processing).await;
        actors.ask_card(&id, ApplyTransaction(refund("r1", 700))).await.unwrap().unwrap();

        actors.ask_card(&id, CrashNext).await.unwrap();
        let crashed = actors.ask_card(&id, GetCard).await.unwrap();
        assert!(matches!(crashed, Err(ActorError::Unavailable(_))), "the crashing message gets 503");

        let card = actors.ask_card(&id, GetCard).await.unwrap().unwrap();
        assert_eq!(card.balance_minor, 700, "state intact after the restart");
        let seen = actors.ask_card(&id, Inspect).await.unwrap().unwrap();
        assert_eq!(seen.restarts, 1);
        assert_eq!(actors.counters.restarts_total.load(Ordering::Relaxed), 1);
        // Still writes after the restart (its compare-and-set fence was reloaded).
        actors.ask_card(&id, ApplyTransaction(refund("r2", 1))).await.unwrap().unwrap();
        assert_eq!(actors.ask_card(&id, GetCard).await.unwrap().unwrap().balance_minor, 701);
    });
}

#[test]
fn live_actors_stay_under_the_cap_and_passivated_ones_come_back() {
    let cap = 200;
    with_actors(RegistryConfig { max_live_actors: cap, ..RegistryConfig::default() }, |actors| async move {
        let channel = ChannelId::generate();
        let ids: Vec<CardId> = (0..2_000).map(|_| CardId::generate()).collect();
        for chunk in ids.chunks(100) {
            let calls = chunk.iter().map(|id| {
                let actors = &actors;
                let channel = &channel;
                async move {
                    actors.ask_card(id, CreateCard(new_card(id, channel))).await.unwrap().unwrap();
                    actors.ask_card(id, ApplyTransaction(refund(id.as_str(), 5))).await.unwrap().unwrap();
                }
            });
            futures::future::join_all(calls).await;
            assert!(actors.live_total() <= cap, "{} live actors over a cap of {cap}", actors.live_total());
        }
        assert!(actors.counters.passivated_total.load(Ordering::Relaxed) >= 1_800);
        // The first cards were passivated long ago: they come back with their state.
        for id in &ids[..50] {
            let card = actors.ask_card(id, GetCard).await.unwrap().unwrap();
            assert_eq!(card.balance_minor, 5);
            let again = actors.ask_card(id, ApplyTransaction(refund(id.as_str(), 5))).await.unwrap().unwrap();
            assert_eq!(again, TransactionChange::Unchanged, "dedup survives passivation");
        }
        assert!(actors.live_total() <= cap);
    });
}

#[test]
fn idle_actors_are_passivated_by_the_sweeper() {
    with_actors(RegistryConfig { idle_ms: 50, ..RegistryConfig::default() }, |actors| async move {
        let id = created_card(&actors, CardStatus::Processing).await;
        assert_eq!(actors.cards.live(), 1);
        // Wait for the condition, bounded: the sweeper runs every 100 ms here.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while actors.cards.live() > 0 {
            assert!(std::time::Instant::now() < deadline, "idle actor never passivated");
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        assert_eq!(actors.ask_card(&id, GetCard).await.unwrap().unwrap().id, id);
    });
}

#[test]
fn an_idle_actor_can_be_passivated_at_once_and_a_leased_one_cannot() {
    with_actors(RegistryConfig::default(), |actors| async move {
        let id = created_card(&actors, CardStatus::Processing).await;
        actors.ask_card(&id, ApplyTransaction(refund("r1", 300))).await.unwrap().unwrap();
        let lease = actors.cards.lease(&id);
        assert!(!actors.cards.passivate(&id), "a message in flight keeps the actor");
        drop(lease);
        assert!(actors.cards.passivate(&id));
        assert_eq!(actors.cards.live(), 0);
        assert!(!actors.cards.passivate(&id), "not live: nothing to do");
        assert_eq!(
            actors.ask_card(&id, GetCard).await.unwrap().unwrap().balance_minor,
            300,
            "back with its state"
        );
        assert_eq!(actors.cards.live(), 1);
    });
}

#[test]
fn concurrent_writes_to_one_card_are_serialized() {
    with_actors(RegistryConfig::default(), |actors| async move {
        let id = created_card(&actors, CardStatus::Processing).await;
        let calls = (0..500).map(|n| {
            let actors = &actors;
            let id = &id;
            async move {
                actors.ask_card(id, ApplyTransaction(refund(&format!("r{n}"), 3))).await.unwrap().unwrap()
            }
        });
        futures::future::join_all(calls).await;
        let card = actors.ask_card(&id, GetCard).await.unwrap().unwrap();
        assert_eq!(card.balance_minor, 1_500, "no lost update");
        assert_eq!(card.version, 501);
    });
}
