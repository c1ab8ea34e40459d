//! Operator and Polyflow bearer tokens (SECURITY.md): from the environment, or
//! generated at first start into `<data_dir>/admin-token` / `polyflow-token`
//! (mode 0600). Only the file's path is ever logged. A token, from either
//! place, is at least 16 printable ASCII characters.

use std::{fs, path::Path};

use super::{constant_time_eq, random_token, secrets::write_private};

/// A bearer token, compared in constant time, never printed.
#[derive(Clone)]
pub struct BearerToken(String);

impl std::fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BearerToken([secret])")
    }
}

impl BearerToken {
    pub fn new(token: String) -> Self {
        Self(token)
    }

    /// Checks an `Authorization` header value (`Bearer <token>`).
    pub fn matches_header(&self, header: Option<&str>) -> bool {
        let Some(presented) = header.and_then(|h| h.strip_prefix("Bearer ")) else {
            return false;
        };
        constant_time_eq(presented.trim().as_bytes(), self.0.as_bytes())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// Shortest token accepted, from the environment or from a file.
pub const MIN_TOKEN_LEN: usize = 16;

/// The rule every token meets: at least 16 printable ASCII characters.
pub fn is_acceptable(token: &str) -> bool {
    token.len() >= MIN_TOKEN_LEN && token.bytes().all(|b| b.is_ascii_graphic())
}

#[derive(Debug, thiserror::Error)]
pub enum TokenFileError {
    /// The file holds a token that breaks [`is_acceptable`] (its content is never shown).
    #[error("{path}: the token in this file must be at least 16 printable characters")]
    Unacceptable { path: String },
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
}

/// The configured token, or the one in `<dir>/<file>`, or a new one written there.
pub fn load_or_create(
    configured: Option<&str>,
    dir: &Path,
    file: &str,
) -> Result<BearerToken, TokenFileError> {
    if let Some(t) = configured {
        return Ok(BearerToken(t.to_owned()));
    }
    let path = dir.join(file);
    let io = |source| TokenFileError::Io { path: path.display().to_string(), source };
    match fs::read_to_string(&path) {
        Ok(text) => {
            let token = text.trim();
            if !is_acceptable(token) {
                return Err(TokenFileError::Unacceptable { path: path.display().to_string() });
            }
            Ok(BearerToken(token.to_owned()))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let token = random_token::<32>();
            write_private(&path, token.as_bytes()).map_err(io)?;
            tracing::info!(path = %path.display(), "generated a bearer token; read it from this file");
            Ok(BearerToken(token))
        }
        Err(e) => Err(io(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_short_or_unprintable_token_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        for bad in ["x;!", "fifteen-chars-x", "sixteen chars ok", "sixteen\tchars-oka"] {
            fs::write(dir.path().join("t"), bad).unwrap();
            let err = load_or_create(None, dir.path(), "t").unwrap_err();
            assert!(matches!(err, TokenFileError::Unacceptable { .. }), "{bad:?}");
            assert!(!err.to_string().contains(bad), "the token is not shown");
        }
        fs::write(dir.path().join("t"), "sixteen-chars-ok\n").unwrap();
        assert_eq!(load_or_create(None, dir.path(), "t").unwrap().expose(), "sixteen-chars-ok");
    }
}
