//! `POST /api/v1/enforce`: HTTP glue over [`crate::service::enforce`].

use axum::extract::State;
use axum::response::{IntoResponse, Response};

use crate::AppState;
use crate::auth::AgentKey;
use crate::error::{AppError, JsonBody};

pub async fn enforce(
    State(state): State<AppState>,
    _key: AgentKey,
    JsonBody(body): JsonBody,
) -> Result<Response, AppError> {
    let enforced = crate::service::enforce(&state, body).await?;
    // Written into a buffer sized for the usual answer (axum's `Json`
    // starts at 128 bytes and grows).
    let mut out = Vec::with_capacity(512);
    serde_json::to_writer(&mut out, &enforced).map_err(AppError::internal)?;
    let json = axum::http::HeaderValue::from_static("application/json");
    let mut resp = ([(axum::http::header::CONTENT_TYPE, json)], out).into_response();
    // For the access log.
    resp.extensions_mut().insert(crate::logging::Decided {
        decision: enforced.decision,
        rule: enforced.rule_name.clone(),
    });
    Ok(resp)
}
