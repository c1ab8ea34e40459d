use thiserror::Error;

/// Everything that can go wrong below the actors. Messages never carry record
/// contents (they may hold secrets or money details), only what failed and where.
#[derive(Debug, Error)]
pub enum StoreError {
    #[error("storage I/O failed: {0}")]
    Io(String),
    #[error("record in tree `{tree}` has schema version {found}, this build reads {expected}")]
    SchemaVersion { tree: &'static str, found: u8, expected: u8 },
    #[error("record in tree `{tree}` could not be decoded: {reason}")]
    Corrupt { tree: &'static str, reason: String },
    #[error("record for tree `{tree}` could not be encoded: {reason}")]
    Encode { tree: &'static str, reason: String },
    /// A compare-and-set precondition of a commit did not hold: another writer
    /// changed the key since it was read. Nothing of the batch was written.
    #[error("conflicting write on tree `{tree}`")]
    Conflict { tree: &'static str },
    /// The flusher failed once; from then on nothing is acknowledged as durable.
    #[error("the store can no longer make writes durable")]
    Poisoned,
}

impl From<sled::Error> for StoreError {
    fn from(e: sled::Error) -> Self {
        StoreError::Io(e.to_string())
    }
}
