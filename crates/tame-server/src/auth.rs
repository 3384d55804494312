//! API keys: agent keys may enforce and report results; admin keys may do
//! everything. Keys are compared as sha256 digests in constant time.
//! Refused keys are counted per client by the [`FailureLimiter`] the keys
//! carry (see [`crate::ratelimit`]).

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::error::AppError;
use crate::ratelimit::{FailureLimit, FailureLimiter};

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    /// Anyone (health, metrics, the OpenAPI document).
    Public,
    /// Agent or admin keys.
    Agent,
    /// Admin keys only.
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Public => "public",
            Role::Agent => "agent",
            Role::Admin => "admin",
        }
    }
}

/// An agent (or admin) key, checked from the headers alone. As a handler's
/// extractor ahead of [`crate::error::JsonBody`] it refuses a call without
/// a valid key (401/403) before the body is read and parsed, so a client
/// without a key cannot make the server parse megabytes of JSON.
#[derive(Debug, Clone, Copy)]
pub struct AgentKey;

impl FromRequestParts<crate::AppState> for AgentKey {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &crate::AppState) -> Result<Self, Self::Rejection> {
        // The edge checked this request's key already (see `crate::edge`).
        if parts.extensions.get::<Verified>().is_some_and(|v| v.0 >= Role::Agent) {
            return Ok(AgentKey);
        }
        AgentKey::check(state, &parts.headers)
    }
}

/// The role a request's key was found to grant, put in the request's
/// extensions by the edge (which checks the key of every API route before
/// its handler runs); only the server sets it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Verified(pub Role);

impl AgentKey {
    /// Checks the key in `headers` (for handlers called directly).
    pub fn check(state: &crate::AppState, headers: &HeaderMap) -> Result<AgentKey, AppError> {
        state.auth().check(headers, Role::Agent).map(|_| AgentKey)
    }
}

/// The configured keys, kept as digests, and the limit on failed
/// authentications (on by default: [`FailureLimit::default`]).
#[derive(Debug, Clone, Default)]
pub struct Auth {
    agent: Vec<[u8; 32]>,
    admin: Vec<[u8; 32]>,
    limiter: Arc<FailureLimiter>,
}

fn digest(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

/// Whether `candidate` equals one of `keys`, looking at every key.
fn matches_any(keys: &[[u8; 32]], candidate: &[u8; 32]) -> bool {
    let mut found = subtle::Choice::from(0u8);
    for key in keys {
        found |= key.ct_eq(candidate);
    }
    found.into()
}

impl Auth {
    pub fn new(agent_keys: &[String], admin_keys: &[String]) -> Self {
        Auth {
            agent: agent_keys.iter().filter(|k| !k.is_empty()).map(|k| digest(k)).collect(),
            admin: admin_keys.iter().filter(|k| !k.is_empty()).map(|k| digest(k)).collect(),
            limiter: Arc::default(),
        }
    }

    /// These keys with `limit` on failed authentications (burst 0: none).
    pub fn with_failure_limit(self, limit: FailureLimit) -> Self {
        Auth {
            limiter: Arc::new(FailureLimiter::new(limit)),
            ..self
        }
    }

    /// The failed-authentication limiter.
    pub fn limiter(&self) -> &FailureLimiter {
        &self.limiter
    }

    /// No keys at all: the API is open (and the server binds loopback only).
    pub fn is_open(&self) -> bool {
        self.agent.is_empty() && self.admin.is_empty()
    }

    /// The role the request's key grants, `None` without a valid key.
    fn role_of(&self, headers: &HeaderMap) -> Option<Role> {
        self.role_of_key(presented_key(headers)?)
    }

    /// The role `key` grants (`None` for an unknown key), compared in
    /// constant time against every configured key.
    pub(crate) fn role_of_key(&self, key: &str) -> Option<Role> {
        let d = digest(key);
        let admin = matches_any(&self.admin, &d);
        let agent = matches_any(&self.agent, &d);
        if admin {
            Some(Role::Admin)
        } else if agent {
            Some(Role::Agent)
        } else {
            None
        }
    }

    /// Checks that the request may call a route needing `needed`.
    pub fn check(&self, headers: &HeaderMap, needed: Role) -> Result<Role, AppError> {
        if needed == Role::Public || self.is_open() {
            return Ok(Role::Admin);
        }
        match self.role_of(headers) {
            None if presented_key(headers).is_none() => Err(AppError::new(
                StatusCode::UNAUTHORIZED,
                "missing API key: send `Authorization: Bearer <key>` or `X-API-Key: <key>`",
            )),
            None => Err(AppError::new(StatusCode::UNAUTHORIZED, "invalid API key")),
            Some(role) if role >= needed => Ok(role),
            Some(_) => Err(AppError::new(
                StatusCode::FORBIDDEN,
                format!("this route needs an {} key", needed.as_str()),
            )),
        }
    }
}

fn presented_key(headers: &HeaderMap) -> Option<&str> {
    if let Some(v) = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) {
        let v = v.trim();
        let token = v
            .strip_prefix("Bearer ")
            .or_else(|| v.strip_prefix("bearer "))
            .unwrap_or(v)
            .trim();
        if !token.is_empty() {
            return Some(token);
        }
    }
    headers
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn roles_follow_keys() {
        let auth = Auth::new(&["ag".into()], &["ad".into()]);
        assert!(!auth.is_open());
        assert_eq!(
            auth.check(&headers(&[("authorization", "Bearer ad")]), Role::Admin)
                .unwrap(),
            Role::Admin
        );
        assert_eq!(
            auth.check(&headers(&[("x-api-key", "ag")]), Role::Agent).unwrap(),
            Role::Agent
        );
        let e = auth.check(&headers(&[("x-api-key", "ag")]), Role::Admin).unwrap_err();
        assert_eq!(e.status, StatusCode::FORBIDDEN);
        let e = auth.check(&headers(&[("x-api-key", "nope")]), Role::Agent).unwrap_err();
        assert_eq!(e.status, StatusCode::UNAUTHORIZED);
        let e = auth.check(&HeaderMap::new(), Role::Agent).unwrap_err();
        assert!(e.detail.contains("missing API key"));
        assert!(auth.check(&HeaderMap::new(), Role::Public).is_ok());
    }

    #[test]
    fn no_keys_means_open() {
        let auth = Auth::new(&[], &[String::new()]);
        assert!(auth.is_open());
        assert!(auth.check(&HeaderMap::new(), Role::Admin).is_ok());
    }
}
