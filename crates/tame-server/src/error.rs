//! The one error shape of the API (`{"detail": ...}` plus extra fields) and
//! the JSON body extractor whose rejections use it.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};
use tame_store::StoreError;

use crate::AppState;

/// An error answered to the client: a status, a `detail` message and
/// optional extra fields. 5xx details are generic; the cause is logged.
#[derive(Debug)]
pub struct AppError {
    pub status: StatusCode,
    pub detail: String,
    pub extra: Map<String, Value>,
}

impl AppError {
    pub fn new(status: StatusCode, detail: impl Into<String>) -> Self {
        AppError {
            status,
            detail: detail.into(),
            extra: Map::new(),
        }
    }

    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, detail)
    }

    pub fn unprocessable(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, detail)
    }

    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, detail)
    }

    /// A server-side failure: logged in full, answered generically.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "internal error");
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal server error")
    }

    /// Adds a field beside `detail`.
    pub fn with(mut self, key: &str, value: Value) -> Self {
        self.extra.insert(key.to_string(), value);
        self
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let mut body = self.extra;
        body.insert("detail".into(), Value::String(self.detail));
        (self.status, axum::Json(Value::Object(body))).into_response()
    }
}

impl From<tame_edge::Refusal> for AppError {
    fn from(r: tame_edge::Refusal) -> Self {
        AppError::new(r.status, r.detail)
    }
}

impl From<crate::service::ServiceError> for AppError {
    fn from(e: crate::service::ServiceError) -> Self {
        use crate::service::ServiceError as E;
        match e {
            E::Call(e) => AppError::unprocessable(e.to_string()).with("field", Value::String(e.path)),
            E::Refused(r) => {
                let status = StatusCode::from_u16(r.status()).unwrap_or(StatusCode::CONFLICT);
                let err = AppError::new(status, r.to_string());
                match r {
                    tame_enforce::Refusal::ApprovalPending { id, expires_at } => err
                        .with("approval_id", Value::String(id))
                        .with("expires_at", Value::String(expires_at)),
                    _ => err,
                }
            }
            E::Store(e) => AppError::from(e),
            E::ApprovalNotFound(id) => AppError::not_found(format!("approval `{id}` not found")),
            E::Internal(cause) => AppError::internal(cause),
        }
    }
}

impl From<StoreError> for AppError {
    fn from(e: StoreError) -> Self {
        match &e {
            StoreError::LogNotFound(_) | StoreError::ApprovalNotFound(_) => AppError::not_found(e.to_string()),
            StoreError::SessionMismatch { .. } | StoreError::ApprovalMismatch(_) => {
                AppError::new(StatusCode::FORBIDDEN, e.to_string())
            }
            StoreError::ApprovalState { .. } | StoreError::ApprovalUsed(_) => {
                AppError::new(StatusCode::CONFLICT, e.to_string())
            }
            // The table was altered outside tame: the client learns that
            // this approval cannot be used and why, not a bare 500; what
            // differs is for the operator (the store logs it as an error).
            StoreError::ApprovalForged { id, .. } => AppError::new(
                StatusCode::CONFLICT,
                format!(
                    "approval `{id}` cannot be used: its stored state disagrees with its records in the audit \
                         log (altered outside tame), so the call is refused; the operator should run \
                         `tame audit verify`"
                ),
            )
            .with("approval_id", Value::String(id.clone()))
            .with("error", Value::String("approval_forged".into())),
            // A session's history was altered outside tame: its calls are
            // not decided (the client sees why; retrying will not help).
            StoreError::SessionDamaged { session_id, .. } => AppError::new(StatusCode::CONFLICT, e.to_string())
                .with("session_id", Value::String(session_id.clone()))
                .with("error", Value::String("session_damaged".into())),
            // Other servers kept recording to the session while the call
            // was decided again and again: nothing was recorded.
            // The database is unreachable or its writer stopped: nothing
            // was decided or recorded, and a retry may find it back (the
            // store reconnects on its own). The cause is for the operator.
            StoreError::Db(_) | StoreError::WriterGone => {
                tracing::error!(error = %e, "the store is unavailable");
                AppError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the audit store is unavailable: nothing was decided or recorded; retry shortly",
                )
                .with("error", Value::String("store_unavailable".into()))
            }
            StoreError::SessionMoved { session_id } => AppError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
                .with("session_id", Value::String(session_id.clone()))
                .with("error", Value::String("session_busy".into())),
            _ => AppError::internal(e),
        }
    }
}

/// A JSON request body: size-limited (413), depth-limited (400), parsed
/// (400 with line and column), in that order, before any deserializing.
#[derive(Debug)]
pub struct JsonBody(pub Value);

impl FromRequest<AppState> for JsonBody {
    type Rejection = AppError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let limit = state.limits().body_bytes;
        if let Some(len) = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            && len > limit as u64
        {
            return Err(too_large(limit));
        }
        let bytes = axum::body::to_bytes(req.into_body(), limit)
            .await
            .map_err(|_| too_large(limit))?;
        parse_json(&bytes, state.limits().json_depth).map(JsonBody)
    }
}

fn too_large(limit: usize) -> AppError {
    AppError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("request body is larger than the limit of {limit} bytes"),
    )
    .with("limit", json!(limit))
}

/// Parses a body after checking its nesting depth without recursion.
pub fn parse_json(bytes: &Bytes, max_depth: usize) -> Result<Value, AppError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(AppError::bad_request("request body is empty; expected a JSON object"));
    }
    check_depth(bytes, max_depth)?;
    serde_json::from_slice(bytes).map_err(|e| {
        AppError::bad_request(format!(
            "malformed JSON at line {} column {}: {e}",
            e.line(),
            e.column()
        ))
        .with("line", json!(e.line()))
        .with("column", json!(e.column()))
    })
}

fn check_depth(bytes: &[u8], max_depth: usize) -> Result<(), AppError> {
    // Nesting cannot go deeper than the number of opening brackets (those
    // in strings counted too): most bodies have fewer than the limit and
    // pass after this one count, which compiles to vector compares.
    if bytes.iter().filter(|&&b| b == b'{' || b == b'[').count() <= max_depth {
        return Ok(());
    }
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for (offset, &b) in bytes.iter().enumerate() {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > max_depth {
                    return Err(AppError::bad_request(format!(
                        "JSON nesting is deeper than the limit of {max_depth} (at byte {offset})"
                    ))
                    .with("limit", json!(max_depth)));
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

/// Deserializes a parsed body into `T`; a wrong type or a missing field is
/// a 422 naming the field's path.
pub fn typed<T: DeserializeOwned>(value: Value) -> Result<T, AppError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let field = if path == "." { "body".to_string() } else { path };
        AppError::unprocessable(format!("{field}: {}", e.inner())).with("field", Value::String(field))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depth_counts_brackets_outside_strings_only() {
        assert!(check_depth(br#"{"a":[[["]]]]]]"]]]}"#, 4).is_ok());
        assert!(check_depth(br#"[[[[[1]]]]]"#, 4).is_err());
        assert!(check_depth(br#"{"a\"[[[[[": 1}"#, 1).is_ok());
        // More opening brackets than the limit, but not nested that deep.
        assert!(check_depth(br#"[[],[],{},[{}]]"#, 3).is_ok());
        assert!(check_depth(br#"{"a":"[[[[[[","b":[1]}"#, 2).is_ok());
        // At the limit and one past it.
        assert!(check_depth(br#"[[[[1]]]]"#, 4).is_ok());
        assert!(check_depth(br#"[[[[1]]]]"#, 3).is_err());
        assert!(check_depth(br#"[1,[2,[3,[4]]],"]]]"]"#, 3).is_err());
    }

    #[test]
    fn malformed_json_names_line_and_column() {
        let e = parse_json(&Bytes::from_static(b"{\n  \"a\": }"), 8).unwrap_err();
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        assert_eq!(e.extra["line"], 2);
        let e = parse_json(&Bytes::from_static(b"  "), 8).unwrap_err();
        assert!(e.detail.contains("empty"));
    }

    #[test]
    fn typed_errors_name_the_field() {
        #[derive(serde::Deserialize, Debug)]
        #[allow(dead_code)]
        struct B {
            reason: Option<String>,
            inner: Inner,
        }
        #[derive(serde::Deserialize, Debug)]
        #[allow(dead_code)]
        struct Inner {
            n: u32,
        }
        let e = typed::<B>(json!({"reason": "x", "inner": {"n": "no"}})).unwrap_err();
        assert_eq!(e.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(e.extra["field"], "inner.n");
        assert!(e.detail.starts_with("inner.n: invalid type"), "{}", e.detail);
    }
}
