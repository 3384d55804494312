//! API keys, each granting one role: agent keys may enforce and report
//! results; input keys may record a session's user inputs (and nothing
//! else: they stay with the integration, out of the model's reach, so an
//! agent key alone cannot say what the user asked); proxy keys may do what
//! agent keys do, and the results they report are recorded as seen by the
//! MCP proxy (`source: proxy`); admin keys may do everything. Keys are
//! compared as sha256 digests in constant time.
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

/// Who may call a route, and what a key grants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Anyone (health, metrics, the OpenAPI document).
    Public,
    /// Agent, proxy or admin keys.
    Agent,
    /// Input or admin keys: recording a user's input.
    Input,
    /// A proxy key: an agent key whose results are the MCP proxy's.
    Proxy,
    /// Admin keys only.
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Public => "public",
            Role::Agent => "agent",
            Role::Input => "input",
            Role::Proxy => "proxy",
            Role::Admin => "admin",
        }
    }

    /// Whether a key of this role may call a route needing `needed`.
    pub fn grants(self, needed: Role) -> bool {
        match needed {
            Role::Public => true,
            Role::Agent => matches!(self, Role::Agent | Role::Proxy | Role::Admin),
            Role::Input => matches!(self, Role::Input | Role::Admin),
            Role::Proxy => matches!(self, Role::Proxy | Role::Admin),
            Role::Admin => self == Role::Admin,
        }
    }

    /// Who saw a result this role reports: the MCP proxy for a proxy key,
    /// the agent otherwise (never a field of the request).
    pub fn result_source(self) -> tame_enforce::ResultSource {
        match self {
            Role::Proxy => tame_enforce::ResultSource::Proxy,
            _ => tame_enforce::ResultSource::Agent,
        }
    }
}

/// An agent (or proxy, or admin) key, checked from the headers alone,
/// with the role it grants. As a handler's extractor ahead of
/// [`crate::error::JsonBody`] it refuses a call without a valid key
/// (401/403) before the body is read and parsed, so a client without a key
/// cannot make the server parse megabytes of JSON.
#[derive(Debug, Clone, Copy)]
pub struct AgentKey(pub Role);

impl FromRequestParts<crate::AppState> for AgentKey {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &crate::AppState) -> Result<Self, Self::Rejection> {
        // The edge checked this request's key already (see `crate::edge`).
        if let Some(v) = parts.extensions.get::<Verified>()
            && v.0.grants(Role::Agent)
        {
            return Ok(AgentKey(v.0));
        }
        AgentKey::check(state, &parts.headers)
    }
}

/// An input (or admin) key, checked from the headers alone, like
/// [`AgentKey`].
#[derive(Debug, Clone, Copy)]
pub struct InputKey;

impl FromRequestParts<crate::AppState> for InputKey {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &crate::AppState) -> Result<Self, Self::Rejection> {
        if parts
            .extensions
            .get::<Verified>()
            .is_some_and(|v| v.0.grants(Role::Input))
        {
            return Ok(InputKey);
        }
        state.auth().check(&parts.headers, Role::Input).map(|_| InputKey)
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
        state.auth().check(headers, Role::Agent).map(AgentKey)
    }
}

/// The configured keys, kept as digests, and the limit on failed
/// authentications (on by default: [`FailureLimit::default`]). A key
/// listed for several roles has the first of admin, proxy, agent, input.
#[derive(Debug, Clone, Default)]
pub struct Auth {
    agent: Vec<[u8; 32]>,
    admin: Vec<[u8; 32]>,
    input: Vec<[u8; 32]>,
    proxy: Vec<[u8; 32]>,
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
            agent: digests(agent_keys),
            admin: digests(admin_keys),
            ..Auth::default()
        }
    }

    /// These keys plus input keys (they may record user inputs only) and
    /// proxy keys (agent keys whose results are the MCP proxy's).
    pub fn with_scoped_keys(self, input_keys: &[String], proxy_keys: &[String]) -> Self {
        Auth {
            input: digests(input_keys),
            proxy: digests(proxy_keys),
            ..self
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
        self.agent.is_empty() && self.admin.is_empty() && self.input.is_empty() && self.proxy.is_empty()
    }

    /// The role the request's key grants, `None` without a valid key.
    fn role_of(&self, headers: &HeaderMap) -> Option<Role> {
        self.role_of_key(presented_key(headers)?)
    }

    /// The role `key` grants (`None` for an unknown key), compared in
    /// constant time against every configured key.
    pub(crate) fn role_of_key(&self, key: &str) -> Option<Role> {
        let d = digest(key);
        // Every list is compared, whichever matches.
        let found = [
            (matches_any(&self.admin, &d), Role::Admin),
            (matches_any(&self.proxy, &d), Role::Proxy),
            (matches_any(&self.agent, &d), Role::Agent),
            (matches_any(&self.input, &d), Role::Input),
        ];
        found.into_iter().find_map(|(hit, role)| hit.then_some(role))
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
            Some(role) if role.grants(needed) => Ok(role),
            Some(role) => Err(AppError::new(
                StatusCode::FORBIDDEN,
                format!(
                    "this route needs {} key; this is {} key",
                    with_article(needed),
                    with_article(role)
                ),
            )),
        }
    }
}

fn digests(keys: &[String]) -> Vec<[u8; 32]> {
    keys.iter().filter(|k| !k.is_empty()).map(|k| digest(k)).collect()
}

/// `an admin`, `a proxy`...
fn with_article(role: Role) -> String {
    let name = role.as_str();
    let article = if name.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    };
    format!("{article} {name}")
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
    fn input_keys_record_inputs_only_and_agent_keys_cannot() {
        let auth = Auth::new(&["ag".into()], &["ad".into()]).with_scoped_keys(&["in".into()], &["px".into()]);
        let key = |k: &str| headers(&[("x-api-key", k)]);
        assert_eq!(auth.check(&key("in"), Role::Input).unwrap(), Role::Input);
        assert_eq!(auth.check(&key("ad"), Role::Input).unwrap(), Role::Admin);
        let e = auth.check(&key("ag"), Role::Input).unwrap_err();
        assert_eq!(e.status, StatusCode::FORBIDDEN);
        assert!(
            e.detail.contains("needs an input key; this is an agent key"),
            "{}",
            e.detail
        );
        assert_eq!(
            auth.check(&key("px"), Role::Input).unwrap_err().status,
            StatusCode::FORBIDDEN
        );
        // An input key is no agent key.
        assert_eq!(
            auth.check(&key("in"), Role::Agent).unwrap_err().status,
            StatusCode::FORBIDDEN
        );
        // A proxy key is an agent key whose results are the proxy's.
        let proxy = auth.check(&key("px"), Role::Agent).unwrap();
        assert_eq!(proxy.result_source(), tame_enforce::ResultSource::Proxy);
        assert_eq!(Role::Agent.result_source(), tame_enforce::ResultSource::Agent);
        assert_eq!(
            auth.check(&key("px"), Role::Admin).unwrap_err().status,
            StatusCode::FORBIDDEN
        );
        // Input keys alone close the API.
        assert!(!Auth::new(&[], &[]).with_scoped_keys(&["in".into()], &[]).is_open());
    }

    #[test]
    fn no_keys_means_open() {
        let auth = Auth::new(&[], &[String::new()]);
        assert!(auth.is_open());
        assert!(auth.check(&HeaderMap::new(), Role::Admin).is_ok());
    }
}
