//! Credentials are checked before routing (API.md §1): a request to a
//! credentialed surface without valid credentials gets 401 whatever its path.

use std::sync::Arc;

use super::{
    errors::ApiError,
    merchant_auth::{self, Presented},
    router::{Caller, Surface},
    state::App,
};

pub async fn authenticate(
    app: &Arc<App>,
    surface: Surface,
    request: Presented<'_>,
) -> Result<Caller, ApiError> {
    let bearer = || request.headers.get(http::header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    match surface {
        Surface::Public | Surface::Callback => Ok(Caller::Anonymous),
        Surface::Operator => {
            if app.admin_token.matches_header(bearer()) {
                Ok(Caller::Operator)
            } else {
                Err(ApiError::unauthenticated("missing or invalid admin token"))
            }
        }
        Surface::Polyflow => {
            if app.polyflow_token.matches_header(bearer()) {
                Ok(Caller::Polyflow)
            } else {
                Err(ApiError::unauthenticated("missing or invalid Polyflow token"))
            }
        }
        Surface::Merchant => merchant_auth::verify_request(app, request).await,
    }
}
