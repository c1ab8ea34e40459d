//! Files (MARKETPLACE.md §2): an upload is checked (not empty, an accepted
//! declared type that its magic bytes confirm), hashed, sealed under the
//! master key bound to its id, and written once with its metadata in one
//! durable commit. The content is never read back by any route.

use std::sync::Arc;

use pelago_actors::{
    Reject,
    file::{FileRecord, FileType, MAX_FILE_BYTES},
};
use pelago_storage::{FileId, MerchantId, StoreError, Tree, WriteBatch};
use sha2::{Digest, Sha256};

use crate::{app::Core, flows::Error};

/// Stores `content` as a new file of `merchant_id`. `declared` is the
/// request's `Content-Type`; `binding` the Idempotency-Key binding, so a
/// retry whose first answer was lost gets the same file, not a second one.
pub async fn create(
    app: &Arc<Core>,
    merchant_id: &MerchantId,
    declared: Option<&str>,
    content: bytes::Bytes,
    binding: Option<String>,
) -> Result<FileRecord, Error> {
    if let Some(b) = &binding
        && let Some(id) = app.store.get_raw(Tree::Index, b)?
    {
        return app
            .store
            .get::<FileRecord>(&id)?
            .ok_or_else(|| Error::unavailable("the file bound to this Idempotency-Key is missing"));
    }
    let file_type = check(declared, &content)?;
    let id = FileId::generate();
    let context = FileRecord::seal_context(&id);
    let sealing_app = Arc::clone(app);
    // Hashing and sealing 5 MiB takes milliseconds: off the async workers.
    let (sha256, sealed, content_len) = tokio::task::spawn_blocking(move || {
        let sha256 = hex::encode(Sha256::digest(&content));
        (sha256, sealing_app.sealer.seal(&content, &context), content.len())
    })
    .await
    .map_err(|_| Error::unavailable("sealing the file did not finish; retry"))?;
    let record = FileRecord {
        id: id.clone(),
        merchant_id: merchant_id.clone(),
        content_type: file_type,
        size: content_len as u64,
        sha256,
        created_at: app.clock.now(),
    };
    let mut batch = WriteBatch::new();
    batch.put(id.as_bytes(), &record)?;
    batch.put_raw(Tree::FileContents, id.as_bytes(), sealed);
    if let Some(b) = &binding {
        batch.expect_absent(Tree::Index, b);
        batch.put_raw(Tree::Index, b, id.as_bytes());
    }
    app.store.commit_durable(batch).await.map_err(|e| match e {
        StoreError::Conflict { .. } => Error::unavailable("this Idempotency-Key is in use; retry"),
        other => other.into(),
    })?;
    Ok(record)
}

/// §2: empty, another type, or a declared type its bytes do not confirm →
/// 400 on `file`.
fn check(declared: Option<&str>, content: &[u8]) -> Result<FileType, Reject> {
    if content.is_empty() {
        return Err(Reject::invalid("file", "the file is empty"));
    }
    if content.len() > MAX_FILE_BYTES {
        return Err(Reject::invalid("file", "the file is over 5 MiB"));
    }
    let declared = declared.and_then(FileType::from_content_type).ok_or_else(|| {
        Reject::invalid("file", "Content-Type must be application/pdf, image/png or image/jpeg")
    })?;
    match FileType::detect(content) {
        Some(detected) if detected == declared => Ok(detected),
        Some(detected) => Err(Reject::invalid(
            "file",
            format!("the file is declared {} but its content is {}", declared.as_str(), detected.as_str()),
        )),
        None => Err(Reject::invalid("file", "the content is not a PDF, PNG or JPEG")),
    }
}

/// The merchant's file `raw`; another merchant's or an unknown one → not found.
pub fn load_owned(app: &Core, merchant_id: &MerchantId, raw: &str) -> Result<FileRecord, Error> {
    crate::flows::load_owned::<FileId, _>(app, "file", raw, |f: &FileRecord| &f.merchant_id == merchant_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uploads_are_checked_against_their_declared_type() {
        let param = |r: Result<FileType, Reject>| match r {
            Err(Reject::InvalidRequest { param, .. }) => param.unwrap(),
            other => panic!("{other:?}"),
        };
        assert_eq!(check(Some("application/pdf"), b"%PDF-1.4 x"), Ok(FileType::Pdf));
        assert_eq!(param(check(Some("application/pdf"), b"")), "file");
        assert_eq!(param(check(Some("text/plain"), b"%PDF-1.4")), "file");
        assert_eq!(param(check(None, b"%PDF-1.4")), "file");
        assert_eq!(param(check(Some("image/png"), b"%PDF-1.4")), "file");
        assert_eq!(param(check(Some("image/jpeg"), b"hello")), "file");
    }
}
