//! Receipts for points (SECURITY.md §Receipts, API.md §4 and §5): an Ed25519
//! signed statement that a posted card purchase happened (refunds and
//! reversals earn none; verify and redeem re-check the transaction), which Polyflow
//! verifies offline with the published public key, or online (which also says
//! whether it was redeemed), and redeems exactly once.
//!
//! `receipt = "PR1." b64url(payload) "." b64url(sig)`, base64url without
//! padding, `sig` = Ed25519 over the ASCII bytes `"PR1." b64url(payload)`.
//! The payload JSON is a signed format of its own (its field names are fixed
//! by SECURITY.md), so it lives here rather than in `src/http/wire.rs`.
//!
//! The key: `PELAGO_RECEIPT_KEY` (base64 of a 32-byte seed) or a generated
//! `<data_dir>/receipt.key` (0600). `key_id` = `rk_` + the first 8 bytes of
//! SHA-256(public key) in hex: short, and stable for the key.
//!
//! Stored: `Tree::Receipts` `{receipt_id}` → [`ReceiptRecord`], and
//! `Tree::Index` `rcptxn/{transaction_id}` → receipt id, written in one commit
//! that requires the index row to be absent, so one transaction never gets
//! two receipts even under concurrent requests.

use std::path::Path;

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use pelago_actors::{
    card::TransactionRecord,
    ports::{ChannelTxnStatus, ChannelTxnType},
};
use pelago_storage::{MerchantId, ReceiptId, Store, StoreError, Timestamp, TransactionId, Tree, WriteBatch};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::security::secrets;

const PREFIX: &str = "PR1.";
/// A receipt longer than this is not one of ours (ours are well under 1 KiB).
pub const MAX_RECEIPT_LEN: usize = 4096;

/// The signed payload, fields in SECURITY.md's order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReceiptPayload {
    pub receipt_id: String,
    pub key_id: String,
    pub merchant_id: String,
    pub merchant_name: String,
    pub card_last4: Option<String>,
    pub transaction_id: String,
    pub amount: PayloadAmount,
    pub mcc: String,
    pub transaction_time: String,
    pub issued_at: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PayloadAmount {
    pub value: i64,
    pub currency: String,
}

/// A receipt as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReceiptRecord {
    pub id: ReceiptId,
    pub merchant_id: MerchantId,
    pub transaction_id: TransactionId,
    /// The full `PR1....` string, exactly as issued.
    pub receipt: String,
    pub created_at: Timestamp,
    pub redeemed_at: Option<Timestamp>,
}

pelago_storage::record!(ReceiptRecord, Receipts, 1);

pub fn txn_index_key(transaction_id: &TransactionId) -> Vec<u8> {
    crate::keys::Index::ReceiptOfTransaction { transaction: transaction_id.clone() }.encode()
}

/// Why a receipt string is not valid (the `reason` of `/verify`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Invalid {
    #[error("malformed receipt")]
    Malformed,
    #[error("unknown key id")]
    UnknownKey,
    #[error("bad signature")]
    BadSignature,
    #[error("unknown receipt")]
    UnknownReceipt,
    #[error("the transaction is no longer a posted purchase")]
    NotAPostedPurchase,
}

/// Only a posted purchase earns a receipt: an authorization or clearing that
/// is `posted` (never a refund or a reversal, which move money back).
pub fn is_posted_purchase(txn: &TransactionRecord) -> bool {
    matches!(txn.kind, ChannelTxnType::Authorization | ChannelTxnType::Clearing)
        && txn.status == ChannelTxnStatus::Posted
}

/// Storage key of a transaction: `{card_id}/{transaction_id}` (found through `txn/{id}`).
fn transaction_key(store: &Store, transaction_id: &TransactionId) -> Result<Option<String>, StoreError> {
    Ok(store
        .get_raw(
            Tree::Index,
            pelago_actors::keys::Index::Transaction { transaction: transaction_id.clone() }.encode(),
        )?
        .map(|card| format!("{}/{transaction_id}", String::from_utf8_lossy(&card))))
}

/// The transaction as stored now, with its bytes (for a compare-and-set).
pub fn transaction(
    store: &Store,
    transaction_id: &TransactionId,
) -> Result<Option<(TransactionRecord, Vec<u8>)>, StoreError> {
    match transaction_key(store, transaction_id)? {
        Some(key) => store.get_with_bytes::<TransactionRecord>(key),
        None => Ok(None),
    }
}

/// The service's receipt signing key.
pub struct ReceiptKey {
    signing: SigningKey,
    key_id: String,
}

impl ReceiptKey {
    /// From `configured` (base64 seed) or `<data_dir>/receipt.key`, created if absent.
    pub fn load(configured: Option<&str>, data_dir: &Path) -> Result<ReceiptKey, String> {
        let seed = match configured {
            Some(raw) => secrets::decode_key32(raw).map_err(|e| format!("PELAGO_RECEIPT_KEY: {e}"))?,
            None => secrets::load_or_create_key_file(data_dir, "receipt.key").map_err(|e| e.to_string())?,
        };
        Ok(ReceiptKey::from_seed(&seed))
    }

    pub fn from_seed(seed: &[u8; 32]) -> ReceiptKey {
        let signing = SigningKey::from_bytes(seed);
        let digest = Sha256::digest(signing.verifying_key().to_bytes());
        let key_id = format!("rk_{}", hex::encode(&digest[..8]));
        ReceiptKey { signing, key_id }
    }

    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// The public key, base64url without padding.
    pub fn public_key(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.signing.verifying_key().to_bytes())
    }

    pub fn sign(&self, payload: &ReceiptPayload) -> String {
        let json = serde_json::to_vec(payload).expect("the payload serializes");
        let signed_part = format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(json));
        let signature = self.signing.sign(signed_part.as_bytes());
        format!("{signed_part}.{}", URL_SAFE_NO_PAD.encode(signature.to_bytes()))
    }

    /// Checks form, key id and signature (not whether the receipt is stored).
    pub fn verify(&self, receipt: &str) -> Result<ReceiptPayload, Invalid> {
        verify_with(&self.signing.verifying_key(), &self.key_id, receipt)
    }
}

/// Offline verification with a published key (what Polyflow does).
pub fn verify_with(key: &VerifyingKey, key_id: &str, receipt: &str) -> Result<ReceiptPayload, Invalid> {
    if receipt.len() > MAX_RECEIPT_LEN {
        return Err(Invalid::Malformed);
    }
    let rest = receipt.strip_prefix(PREFIX).ok_or(Invalid::Malformed)?;
    let (payload_b64, signature_b64) = rest.split_once('.').ok_or(Invalid::Malformed)?;
    let payload_bytes = URL_SAFE_NO_PAD.decode(payload_b64).map_err(|_| Invalid::Malformed)?;
    let signature_bytes = URL_SAFE_NO_PAD.decode(signature_b64).map_err(|_| Invalid::Malformed)?;
    let signature = Signature::from_slice(&signature_bytes).map_err(|_| Invalid::Malformed)?;
    let payload: ReceiptPayload = serde_json::from_slice(&payload_bytes).map_err(|_| Invalid::Malformed)?;
    if payload.key_id != key_id {
        return Err(Invalid::UnknownKey);
    }
    let signed_part = &receipt[..PREFIX.len() + payload_b64.len()];
    key.verify_strict(signed_part.as_bytes(), &signature).map_err(|_| Invalid::BadSignature)?;
    Ok(payload)
}

/// The receipt a transaction already has.
pub fn for_transaction(
    store: &Store,
    transaction_id: &TransactionId,
) -> Result<Option<ReceiptRecord>, StoreError> {
    match store.get_raw(Tree::Index, txn_index_key(transaction_id))? {
        Some(id) => store.get::<ReceiptRecord>(&id),
        None => Ok(None),
    }
}

/// Stores `record` as the transaction's one receipt. `Ok(false)`: another
/// request stored one first (read it with [`for_transaction`]).
pub async fn store_new(store: &Store, record: &ReceiptRecord) -> Result<bool, StoreError> {
    let index = txn_index_key(&record.transaction_id);
    let mut batch = WriteBatch::new();
    batch.expect_absent(Tree::Index, &index);
    batch.put(record.id.as_str(), record)?;
    batch.put_raw(Tree::Index, &index, record.id.as_str());
    match store.commit_durable(batch).await {
        Ok(()) => Ok(true),
        Err(StoreError::Conflict { .. }) => Ok(false),
        Err(e) => Err(e),
    }
}

/// What a redemption came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Redeemed {
    Now(ReceiptRecord),
    Already,
    Unknown,
    /// Its transaction is no longer a posted purchase (refunded into a reversal, say).
    NotAPostedPurchase,
}

/// Marks the receipt redeemed exactly once: compare-and-set on the stored
/// bytes, so of concurrent redeemers one wins and the others see `Already`.
/// The transaction is re-read and must still be a posted purchase; the commit
/// is also conditioned on its bytes, so a change landing in between is seen.
pub async fn redeem(store: &Store, id: &ReceiptId, now: Timestamp) -> Result<Redeemed, StoreError> {
    for _ in 0..16 {
        let Some((mut record, bytes)) = store.get_with_bytes::<ReceiptRecord>(id.as_bytes())? else {
            return Ok(Redeemed::Unknown);
        };
        if record.redeemed_at.is_some() {
            return Ok(Redeemed::Already);
        }
        let Some(txn_key) = transaction_key(store, &record.transaction_id)? else {
            return Ok(Redeemed::NotAPostedPurchase);
        };
        let Some((txn, txn_bytes)) = store.get_with_bytes::<TransactionRecord>(&txn_key)? else {
            return Ok(Redeemed::NotAPostedPurchase);
        };
        if !is_posted_purchase(&txn) {
            return Ok(Redeemed::NotAPostedPurchase);
        }
        record.redeemed_at = Some(now);
        let mut batch = WriteBatch::new();
        batch.expect_raw(Tree::Transactions, txn_key.as_bytes(), Some(txn_bytes));
        batch.expect_raw(Tree::Receipts, id.as_bytes(), Some(bytes));
        batch.put(id.as_bytes(), &record)?;
        match store.commit_durable(batch).await {
            Ok(()) => return Ok(Redeemed::Now(record)),
            Err(StoreError::Conflict { .. }) => continue,
            Err(e) => return Err(e),
        }
    }
    // Sixteen lost races means someone else changed it: it is redeemed by now.
    Ok(Redeemed::Already)
}

/// The receipt string as a QR code, SVG: the `qrcode` crate's modules, drawn
/// as one path of horizontal runs (`M{x} {y}h{len}v1H{x}V{y}`, one unit per
/// module, a 4-module quiet zone), which keeps it several times smaller than
/// one rectangle per module.
pub fn qr_svg(receipt: &str) -> Result<String, qrcode::types::QrError> {
    use std::fmt::Write;
    const QUIET: usize = 4;
    let code = qrcode::QrCode::with_error_correction_level(receipt.as_bytes(), qrcode::EcLevel::L)?;
    let width = code.width();
    let colors = code.to_colors();
    let size = width + 2 * QUIET;
    let mut path = String::new();
    for (y, row) in colors.chunks(width).enumerate() {
        let mut x = 0;
        while x < width {
            if row[x] != qrcode::Color::Dark {
                x += 1;
                continue;
            }
            let start = x;
            while x < width && row[x] == qrcode::Color::Dark {
                x += 1;
            }
            let (left, top) = (start + QUIET, y + QUIET);
            let _ = write!(path, "M{left} {top}h{}v1H{left}V{top}", x - start);
        }
    }
    Ok(format!(
        concat!(
            r#"<svg xmlns="http://www.w3.org/2000/svg" version="1.1" width="{px}" height="{px}" "#,
            r#"viewBox="0 0 {size} {size}" shape-rendering="crispEdges">"#,
            r##"<rect x="0" y="0" width="{size}" height="{size}" fill="#fff"/>"##,
            r##"<path fill="#000" d="{path}"/></svg>"##
        ),
        px = size * 4,
        size = size,
        path = path
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(key: &ReceiptKey) -> ReceiptPayload {
        ReceiptPayload {
            receipt_id: "rcp_01JDEMO0000000000000000000".into(),
            key_id: key.key_id().into(),
            merchant_id: "mch_01JDEMO0000000000000000000".into(),
            merchant_name: "Demo".into(),
            card_last4: Some("4242".into()),
            transaction_id: "txn_01JDEMO0000000000000000000".into(),
            amount: PayloadAmount { value: 1250, currency: "USD".into() },
            mcc: "5812".into(),
            transaction_time: "2026-11-22T08:00:00Z".into(),
            issued_at: "2026-11-22T09:00:00Z".into(),
        }
    }

    #[test]
    fn signs_and_verifies_and_rejects_any_change() {
        let key = ReceiptKey::from_seed(&[9u8; 32]);
        assert_eq!(key.key_id(), ReceiptKey::from_seed(&[9u8; 32]).key_id(), "the key id is stable");
        assert!(key.key_id().starts_with("rk_") && key.key_id().len() == 19);
        let receipt = key.sign(&payload(&key));
        assert!(receipt.starts_with("PR1.") && !receipt.contains('='));
        assert_eq!(key.verify(&receipt), Ok(payload(&key)));
        let bytes = receipt.as_bytes();
        for i in 0..bytes.len() {
            let mut changed = bytes.to_vec();
            changed[i] = if changed[i] == b'A' { b'B' } else { b'A' };
            let changed = String::from_utf8(changed).unwrap();
            if changed != receipt {
                assert!(key.verify(&changed).is_err(), "byte {i} changed yet valid");
            }
        }
        let other = ReceiptKey::from_seed(&[1u8; 32]);
        assert_eq!(other.verify(&receipt), Err(Invalid::UnknownKey));
        assert_eq!(key.verify("PR1.nope"), Err(Invalid::Malformed));
        assert!(qr_svg(&receipt).unwrap().starts_with("<svg "));
    }
}
