//! Record codec: one schema-version byte, then bincode 2 (standard config).
//!
//! bincode is not self-describing: bytes written under another config or another
//! struct layout decode into wrong values rather than failing. The version byte
//! and the golden-bytes tests in `tests.rs` are what keep that from happening:
//! change a record's layout → bump its `SCHEMA_VERSION` and keep a decoder for
//! the old one. Records must not use serde features bincode cannot carry
//! (`#[serde(flatten)]`, internally tagged enums, `skip_serializing_if`,
//! `serde_json::Value`).

use serde::{Serialize, de::DeserializeOwned};

use crate::{StoreError, store::Tree};

/// A value stored in one tree of the store.
pub trait Record: Serialize + DeserializeOwned {
    const TREE: Tree;
    const SCHEMA_VERSION: u8;
}

/// `record!(Type, Tree, version)`: `Type` is stored in `Tree::Tree` with
/// schema version `version` (bump it, and keep reading the old one, whenever
/// the encoding changes).
#[macro_export]
macro_rules! record {
    ($ty:ty, $tree:ident, $version:literal) => {
        impl $crate::Record for $ty {
            const TREE: $crate::store::Tree = $crate::store::Tree::$tree;
            const SCHEMA_VERSION: u8 = $version;
        }
    };
}

fn config() -> bincode::config::Configuration {
    bincode::config::standard()
}

pub fn encode<R: Record>(record: &R) -> Result<Vec<u8>, StoreError> {
    let mut out = vec![R::SCHEMA_VERSION];
    bincode::serde::encode_into_std_write(record, &mut out, config())
        .map_err(|e| StoreError::Encode { tree: R::TREE.name(), reason: e.to_string() })?;
    Ok(out)
}

pub fn decode<R: Record>(bytes: &[u8]) -> Result<R, StoreError> {
    let tree = R::TREE.name();
    let (&version, body) =
        bytes.split_first().ok_or_else(|| StoreError::Corrupt { tree, reason: "empty record".into() })?;
    if version != R::SCHEMA_VERSION {
        return Err(StoreError::SchemaVersion { tree, found: version, expected: R::SCHEMA_VERSION });
    }
    let (record, read) = bincode::serde::decode_from_slice(body, config())
        .map_err(|e| StoreError::Corrupt { tree, reason: e.to_string() })?;
    if read != body.len() {
        return Err(StoreError::Corrupt { tree, reason: "trailing bytes".into() });
    }
    Ok(record)
}

#[cfg(test)]
mod tests;
