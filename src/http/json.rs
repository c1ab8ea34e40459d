//! JSON request parsing with errors that name the field (`param`).

use super::errors::ApiError;

/// Parses `body`; a type error or missing field names its path
/// (`amount.value`), malformed JSON says so.
pub fn parse_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    if body.is_empty() {
        return Err(ApiError::bad_request("a JSON body is required"));
    }
    let de = &mut serde_json::Deserializer::from_slice(body);
    match serde_path_to_error::deserialize::<_, T>(de) {
        Ok(v) => Ok(v),
        Err(err) => {
            let path = err.path().to_string();
            let inner = err.into_inner();
            if inner.is_syntax() || inner.is_eof() {
                return Err(ApiError::bad_request("malformed JSON body"));
            }
            // serde's message names a missing field itself; keep it short and free of values.
            let message = inner.to_string();
            let message = message.split(" at line ").next().unwrap_or(&message).to_owned();
            let param = if path == "." { missing_field(&message) } else { Some(path) };
            Err(ApiError::invalid_param(param, message))
        }
    }
}

fn missing_field(message: &str) -> Option<String> {
    message.strip_prefix("missing field `").and_then(|rest| rest.split('`').next()).map(str::to_owned)
}
