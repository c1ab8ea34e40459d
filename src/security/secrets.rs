//! Secrets at rest: AES-256-GCM under the master key (`PELAGO_MASTER_KEY`, or
//! a generated `<data_dir>/master.key`, mode 0600).
//!
//! A sealed value is `nonce (12 bytes) || ciphertext+tag`, with associated data
//! naming what it belongs to (e.g. the API key id), so a sealed blob copied into
//! another record does not open.

use std::{
    fs,
    io::Write,
    os::unix::fs::{OpenOptionsExt, PermissionsExt},
    path::Path,
};

use aes_gcm::{Aes256Gcm, KeyInit, aead::Aead};
use base64::Engine;

use super::random_bytes;

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("a sealed secret could not be opened (wrong master key or tampered data)")]
    Open,
    #[error("key file {path}: {problem}")]
    KeyFile { path: String, problem: String },
}

/// Decodes a 32-byte key given in base64 (standard or URL-safe, padded or not).
pub fn decode_key32(raw: &str) -> Result<[u8; 32], String> {
    let raw = raw.trim();
    let engines = [
        base64::engine::general_purpose::STANDARD,
        base64::engine::general_purpose::STANDARD_NO_PAD,
        base64::engine::general_purpose::URL_SAFE,
        base64::engine::general_purpose::URL_SAFE_NO_PAD,
    ];
    let bytes = engines
        .iter()
        .find_map(|e| e.decode(raw).ok())
        .ok_or_else(|| "expected base64 of 32 bytes, it is not base64".to_owned())?;
    bytes.try_into().map_err(|b: Vec<u8>| format!("expected base64 of 32 bytes, got {} bytes", b.len()))
}

pub fn decode_master_key(raw: &str) -> Result<[u8; 32], String> {
    decode_key32(raw)
}

/// Reads `<dir>/<name>` (base64 of 32 bytes) or creates it with a random key, mode 0600.
pub fn load_or_create_key_file(dir: &Path, name: &str) -> Result<[u8; 32], SecretError> {
    let path = dir.join(name);
    let shown = path.display().to_string();
    let key_err = |problem: String| SecretError::KeyFile { path: shown.clone(), problem };
    match fs::read_to_string(&path) {
        Ok(text) => decode_key32(&text).map_err(key_err),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = random_bytes::<32>();
            write_private(&path, base64::engine::general_purpose::STANDARD.encode(key).as_bytes())
                .map_err(|e| key_err(e.to_string()))?;
            Ok(key)
        }
        Err(e) => Err(key_err(e.to_string())),
    }
}

/// Creates `path` with mode 0600 and `contents`, durably (fsync). Fails if it exists.
pub fn write_private(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let mut file = fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
    file.write_all(contents)?;
    file.sync_all()?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o600))?;
    Ok(())
}

/// Seals and opens secrets with the master key.
pub struct Sealer {
    cipher: Aes256Gcm,
}

impl Sealer {
    pub fn new(master_key: &[u8; 32]) -> Sealer {
        Sealer { cipher: Aes256Gcm::new_from_slice(master_key).expect("a 32-byte key fits AES-256") }
    }

    /// Encrypts `plaintext`, bound to `context` (associated data).
    pub fn seal(&self, plaintext: &[u8], context: &str) -> Vec<u8> {
        let nonce_bytes = random_bytes::<12>();
        let nonce = aes_gcm::Nonce::try_from(&nonce_bytes[..]).expect("12-byte nonce");
        let ciphertext = self
            .cipher
            .encrypt(&nonce, aes_gcm::aead::Payload { msg: plaintext, aad: context.as_bytes() })
            .expect("AES-GCM encryption of an in-memory buffer cannot fail");
        let mut out = Vec::with_capacity(12 + ciphertext.len());
        out.extend_from_slice(&nonce_bytes);
        out.extend_from_slice(&ciphertext);
        out
    }

    pub fn open(&self, sealed: &[u8], context: &str) -> Result<Vec<u8>, SecretError> {
        if sealed.len() < 12 + 16 {
            return Err(SecretError::Open);
        }
        let (nonce_bytes, ciphertext) = sealed.split_at(12);
        let nonce = aes_gcm::Nonce::try_from(nonce_bytes).map_err(|_| SecretError::Open)?;
        self.cipher
            .decrypt(&nonce, aes_gcm::aead::Payload { msg: ciphertext, aad: context.as_bytes() })
            .map_err(|_| SecretError::Open)
    }

    pub fn open_string(&self, sealed: &[u8], context: &str) -> Result<String, SecretError> {
        String::from_utf8(self.open(sealed, context)?).map_err(|_| SecretError::Open)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_round_trips_and_is_bound_to_its_context() {
        let sealer = Sealer::new(&[7u8; 32]);
        let sealed = sealer.seal(b"sk_live_secret", "key_1");
        assert!(!sealed.windows(6).any(|w| w == b"sk_liv"), "ciphertext does not contain the secret");
        assert_eq!(sealer.open_string(&sealed, "key_1").unwrap(), "sk_live_secret");
        assert!(sealer.open(&sealed, "key_2").is_err(), "another record's context does not open it");
        assert!(
            Sealer::new(&[8u8; 32]).open(&sealed, "key_1").is_err(),
            "another master key does not open it"
        );
        let mut tampered = sealed.clone();
        *tampered.last_mut().unwrap() ^= 1;
        assert!(sealer.open(&tampered, "key_1").is_err());
    }

    #[test]
    fn key_files_are_created_private_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let a = load_or_create_key_file(dir.path(), "master.key").unwrap();
        let b = load_or_create_key_file(dir.path(), "master.key").unwrap();
        assert_eq!(a, b);
        let mode = fs::metadata(dir.path().join("master.key")).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(decode_key32("c2hvcnQ=").is_err());
    }
}
