//! Operator and Polyflow bearer tokens (SECURITY.md): from the environment, or
//! generated at first start into `<data_dir>/admin-token` / `polyflow-token`
//! (mode 0600). Only the file's path is ever logged.

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

/// The configured token, or the one in `<dir>/<file>`, or a new one written there.
pub fn load_or_create(configured: Option<&str>, dir: &Path, file: &str) -> std::io::Result<BearerToken> {
    if let Some(t) = configured {
        return Ok(BearerToken(t.to_owned()));
    }
    let path = dir.join(file);
    match fs::read_to_string(&path) {
        Ok(text) => Ok(BearerToken(text.trim().to_owned())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let token = random_token::<32>();
            write_private(&path, token.as_bytes())?;
            tracing::info!(path = %path.display(), "generated a bearer token; read it from this file");
            Ok(BearerToken(token))
        }
        Err(e) => Err(e),
    }
}
