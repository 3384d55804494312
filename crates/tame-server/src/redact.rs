//! Secrets out of what the server logs: request targets in its trace
//! spans, and the key of the markers that replace secrets in stored
//! identifiers. The redaction of what is stored (arguments, metadata,
//! identifiers, reasons) is the enforcement path's
//! ([`tame_enforce::redact`]).

pub use tame_enforce::Redactor;
use tame_enforce::redact::holds_secret;

/// The span of one request in the logs (`tower_http`'s trace layer): its
/// id, method, version and target; a target holding a secret, as sent or
/// percent-decoded (a session id in a path, call arguments in a query), is
/// not shown.
pub(crate) fn request_span<B>(req: &axum::http::Request<B>) -> tracing::Span {
    let target = req.uri().path_and_query().map_or("", |p| p.as_str());
    let uri = shown_target(target);
    let id = req.extensions().get::<crate::logging::RequestId>();
    tracing::debug_span!("request", request_id = id.map(crate::logging::RequestId::as_str), method = %req.method(), uri = %uri, version = ?req.version())
}

/// `target` as [`request_span`] shows it.
fn shown_target(target: &str) -> &str {
    let decoded = percent_encoding::percent_decode_str(target).decode_utf8_lossy();
    if holds_secret(target) || holds_secret(&decoded) {
        "[REDACTED: the target holds a secret]"
    } else {
        target
    }
}

/// The audit secret of the store `config` names (the key of the markers):
/// the configured one, or the one the SQLite store keeps in `<db>.secret`
/// (read after the store opened it).
pub(crate) fn audit_secret(config: &crate::ServerConfig) -> anyhow::Result<Vec<u8>> {
    if let Some(secret) = &config.secret {
        return Ok(secret.as_bytes().to_vec());
    }
    if config.db_url().is_some() {
        anyhow::bail!("the PostgreSQL store needs the audit secret: set TAME_AUDIT_SECRET");
    }
    let mut path = config.db_path.clone().into_os_string();
    path.push(".secret");
    let path = std::path::PathBuf::from(path);
    tame_store::load_or_create_secret(&path)
        .map_err(|e| anyhow::anyhow!("cannot read the audit secret `{}`: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "ghp_aB3dE5fG7hJ9kL1mN3pQ5rS7tU9vW1xY3zA5";

    #[test]
    fn request_spans_hide_targets_with_secrets() {
        assert_eq!(shown_target("/api/v1/sessions/s1?page=2"), "/api/v1/sessions/s1?page=2");
        for secret in [
            format!("/api/v1/enforce/sess.{TOKEN}/result?log_id=1"),
            format!("/api/v1/enforce/sess.{}/result", TOKEN.replace('_', "%5F")),
            format!("/api/v1/policy/test?tool_args=%7B%22t%22%3A%22{TOKEN}%22%7D"),
        ] {
            assert_eq!(
                shown_target(&secret),
                "[REDACTED: the target holds a secret]",
                "{secret}"
            );
        }
    }
}
