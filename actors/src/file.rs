//! Uploaded files (MARKETPLACE.md §2): identity documents, business licenses,
//! bank proofs. A file is written once, by the request that uploads it, and
//! never changed; its content sits sealed in `Tree::FileContents` (key: the
//! file id) and is never served back. Only the metadata below is shown.

use pelago_storage::{FileId, MerchantId, Timestamp};
use serde::{Deserialize, Serialize};

/// The largest file accepted: 5 MiB (declared or read; more → 413).
pub const MAX_FILE_BYTES: usize = 5 * 1024 * 1024;

/// The accepted types, each recognised by its magic bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum FileType {
    Pdf,
    Png,
    Jpeg,
}

impl FileType {
    pub const ALL: [FileType; 3] = [FileType::Pdf, FileType::Png, FileType::Jpeg];

    /// The media type (`application/pdf`).
    pub fn as_str(self) -> &'static str {
        match self {
            FileType::Pdf => "application/pdf",
            FileType::Png => "image/png",
            FileType::Jpeg => "image/jpeg",
        }
    }

    /// A declared `Content-Type` (parameters such as `; charset=` ignored,
    /// case-insensitive), if it is one of the accepted types.
    pub fn from_content_type(raw: &str) -> Option<FileType> {
        let essence = raw.split(';').next().unwrap_or("").trim();
        Self::ALL.into_iter().find(|t| t.as_str().eq_ignore_ascii_case(essence))
    }

    fn magic(self) -> &'static [u8] {
        match self {
            FileType::Pdf => b"%PDF-",
            FileType::Png => &[0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A],
            FileType::Jpeg => &[0xFF, 0xD8, 0xFF],
        }
    }

    /// The type the content's first bytes say it is.
    pub fn detect(content: &[u8]) -> Option<FileType> {
        Self::ALL.into_iter().find(|t| content.starts_with(t.magic()))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileRecord {
    pub id: FileId,
    pub merchant_id: MerchantId,
    pub content_type: FileType,
    pub size: u64,
    /// Lower-case hex SHA-256 of the content.
    pub sha256: String,
    pub created_at: Timestamp,
}

pelago_storage::record!(FileRecord, Files, 1);

impl FileRecord {
    /// What a file's sealed content is bound to (so it opens for no other record).
    pub fn seal_context(id: &FileId) -> String {
        format!("file:{id}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_are_known_by_their_magic_bytes_and_declared_types_parse() {
        assert_eq!(FileType::detect(b"%PDF-1.7\n"), Some(FileType::Pdf));
        assert_eq!(
            FileType::detect(&[0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A, 0]),
            Some(FileType::Png)
        );
        assert_eq!(FileType::detect(&[0xFF, 0xD8, 0xFF, 0xE0]), Some(FileType::Jpeg));
        assert_eq!(FileType::detect(b"%PDF"), None, "a prefix of the magic is not enough");
        assert_eq!(FileType::detect(b""), None);
        assert_eq!(FileType::detect(b"GIF89a"), None);
        assert_eq!(FileType::from_content_type("Image/PNG; charset=binary"), Some(FileType::Png));
        assert_eq!(FileType::from_content_type("text/plain"), None);
    }
}
