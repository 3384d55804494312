//! The PostgreSQL database's tables and indexes, and how a connection to
//! it is made (TLS through rustls for `sslmode=require`).

use super::*;
#[allow(unused_imports, reason = "the backend's modules share one scope")]
use super::{reads::*, writer::*};

/// The tables and indexes (see `crate::schema`).
pub(super) const SCHEMA: &str = crate::schema::schema_sql!(int: "BIGINT", serial: "BIGSERIAL", sessions_end: "");

pub(super) fn connect(config: &postgres::Config, shown: &str) -> StoreResult<Client> {
    let connected = match config.get_ssl_mode() {
        SslMode::Disable => config.connect(NoTls),
        SslMode::Require => config.connect(MakeRustlsConnect::new(tls_config(shown)?)),
        // `prefer` is opportunistic: without trusted roots it stays plain.
        _ => match tls_config(shown) {
            Ok(tls) => config.connect(MakeRustlsConnect::new(tls)),
            Err(e) => {
                tracing::warn!("{e}; connecting without TLS (sslmode=prefer)");
                config.connect(NoTls)
            }
        },
    };
    connected.map_err(|e| StoreError::Db(format!("cannot connect to `{shown}`: {}", pg_message(&e))))
}

/// TLS for the URL's `sslmode=prefer` (the default: TLS when the server
/// offers it) and `sslmode=require`; `sslmode=disable` stays plain. The
/// server's certificate is always verified, against the system's trusted
/// roots (`SSL_CERT_FILE`/`SSL_CERT_DIR` name others, such as a cloud
/// provider's CA bundle): an untrusted certificate fails the connection.
///
/// The roots are read once per process (every connection of every store
/// would otherwise parse the system's CA bundle again).
pub(super) fn tls_config(shown: &str) -> StoreResult<rustls::ClientConfig> {
    static CONFIG: std::sync::OnceLock<Result<rustls::ClientConfig, String>> = std::sync::OnceLock::new();
    let config = CONFIG.get_or_init(|| {
        let mut roots = rustls::RootCertStore::empty();
        let found = rustls_native_certs::load_native_certs();
        let (added, _ignored) = roots.add_parsable_certificates(found.certs);
        if added == 0 {
            let why = found
                .errors
                .first()
                .map_or_else(|| "none found".to_string(), ToString::to_string);
            return Err(format!(
                "no trusted root certificates ({why}); \
                 install ca-certificates, set SSL_CERT_FILE, or add `sslmode=disable` to the URL"
            ));
        }
        rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map(|b| b.with_root_certificates(roots).with_no_client_auth())
            .map_err(|e| format!("cannot set up TLS: {e}"))
    });
    config
        .clone()
        .map_err(|why| StoreError::Db(format!("cannot connect to `{shown}` with TLS: {why}")))
}
