//! SIGKILL while writing through card actors loses nothing acknowledged.
//!
//! This test binary runs twice: as the parent (no arguments) it starts itself
//! again as a child writer, reads the child's acknowledgements, kills it with
//! SIGKILL mid-stream, reopens the store and checks every acknowledged write is
//! there and no card is half-written.

mod common;

use std::{
    collections::HashMap,
    io::{BufRead, BufReader, Write},
    process::{Command, Stdio},
};

use pelago_actors::card::{ApplyTransaction, CardRecord, CreateCard, TransactionRecord};
use pelago_storage::{CardId, ChannelId, Store, StoreConfig, Tree};

const CARDS: usize = 64;
const KILL_AFTER_ACKS: usize = 3_000;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("child") {
        child(std::path::Path::new(&args[2]));
        return;
    }
    if args.iter().any(|a| a == "--list") {
        println!("sigkill_loses_no_acknowledged_write: test");
        return;
    }
    parent();
    println!("test sigkill_loses_no_acknowledged_write ... ok");
    println!("test result: ok. 1 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out");
}

fn parent() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .arg("child")
        .arg(dir.path())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the child writer");
    let mut acked: HashMap<String, Vec<String>> = HashMap::new();
    let mut count = 0;
    let mut channel = String::new();
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        let mut parts = line.split(' ');
        match parts.next() {
            Some("channel") => channel = parts.next().unwrap().to_owned(),
            Some("ack") => {
                let card = parts.next().unwrap().to_owned();
                let txn = parts.next().unwrap().to_owned();
                acked.entry(card).or_default().push(txn);
                count += 1;
                if count == KILL_AFTER_ACKS {
                    // SIGKILL: no destructor, no flush, nothing graceful.
                    child.kill().unwrap();
                }
            }
            _ => {}
        }
    }
    child.wait().unwrap();
    assert!(count >= KILL_AFTER_ACKS, "the child stopped early after {count} acks");

    let store = Store::open(dir.path(), &StoreConfig::default()).unwrap();
    let mut checked = 0;
    for (card_id, txns) in &acked {
        for txn in txns {
            let key = format!("chtxn/{channel}/{txn}");
            assert!(store.contains(Tree::Index, &key).unwrap(), "acknowledged {txn} of {card_id} lost");
            checked += 1;
        }
    }
    // No card is half-written: its balance is exactly what its stored transactions add up to.
    let mut cards = 0;
    for item in store.iter::<CardRecord>() {
        let (_, card) = item.unwrap();
        let stored = store
            .scan::<TransactionRecord>(format!("{}/", card.id).as_bytes(), None, false, usize::MAX)
            .unwrap();
        let sum: i64 = stored.iter().map(|(_, t)| t.balance_effect_minor).sum();
        assert_eq!(card.balance_minor, sum, "card {} balance disagrees with its transactions", card.id);
        assert_eq!(card.version, 1 + stored.len() as u64);
        cards += 1;
    }
    assert_eq!(cards, CARDS);
    eprintln!("sigkill: {checked} acknowledged writes all present after SIGKILL; {cards} cards consistent");
}

fn child(dir: &std::path::Path) {
    common::run(|| async {
        let actors = common::start(dir, Default::default());
        let channel = ChannelId::generate();
        println!("channel {channel}");
        let ids: Vec<CardId> = (0..CARDS).map(|_| CardId::generate()).collect();
        for id in &ids {
            actors.ask_card(id, CreateCard(common::new_card(id, &channel))).await.unwrap().unwrap();
        }
        let writers = ids.iter().map(|id| {
            let actors = &actors;
            async move {
                for n in 0.. {
                    let txn = format!("{id}-{n}");
                    actors.ask_card(id, ApplyTransaction(common::refund(&txn, 1))).await.unwrap().unwrap();
                    let mut out = std::io::stdout().lock();
                    writeln!(out, "ack {id} {txn}").unwrap();
                    out.flush().unwrap();
                }
            }
        });
        futures::future::join_all(writers).await;
    });
}
