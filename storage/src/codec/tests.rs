use serde::{Deserialize, Serialize};

use super::*;
use crate::{Currency, Money, store::Tree};

#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct Sample {
    id: String,
    amount: Money,
    count: u32,
    note: Option<String>,
}

impl Record for Sample {
    const TREE: Tree = Tree::Meta;
    const SCHEMA_VERSION: u8 = 1;
}

fn sample() -> Sample {
    Sample { id: "card_1".into(), amount: Money::new(-2500, Currency::USD), count: 300, note: None }
}

/// Locks the on-disk format: if this changes, old data would decode into wrong
/// values. Bump `SCHEMA_VERSION` and keep a decoder instead of editing the bytes.
#[test]
fn golden_bytes() {
    let bytes = encode(&sample()).unwrap();
    assert_eq!(
        bytes,
        vec![
            1, // schema version
            6, b'c', b'a', b'r', b'd', b'_', b'1', // id: varint length + utf-8
            251, 0x87, 0x13, // -2500 zig-zag: 4999 as a little-endian u16 varint
            3, b'U', b'S', b'D', // currency as its code
            251, 0x2c, 0x01, // 300 as varint
            0,    // None
        ]
    );
    assert_eq!(decode::<Sample>(&bytes).unwrap(), sample());
}

#[test]
fn refuses_other_schema_versions_and_garbage() {
    let mut bytes = encode(&sample()).unwrap();
    bytes[0] = 2;
    assert!(matches!(decode::<Sample>(&bytes), Err(StoreError::SchemaVersion { found: 2, expected: 1, .. })));
    assert!(matches!(decode::<Sample>(&[]), Err(StoreError::Corrupt { .. })));
    let mut long = encode(&sample()).unwrap();
    long.push(0);
    assert!(matches!(decode::<Sample>(&long), Err(StoreError::Corrupt { .. })));
}

#[test]
fn unknown_currency_on_disk_is_an_error_not_a_guess() {
    let mut bytes = encode(&sample()).unwrap();
    let pos = bytes.windows(3).position(|w| w == b"USD").unwrap();
    bytes[pos..pos + 3].copy_from_slice(b"XXX");
    assert!(decode::<Sample>(&bytes).is_err());
}
