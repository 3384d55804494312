//! TLS for the integrations' HTTP clients (the remote guard's Tame server,
//! tool services): rustls with the ring provider, certificates checked
//! against the system's trusted roots or roots given explicitly.
//!
//! The system's roots come from `rustls-native-certs`: the platform's store,
//! or the bundle `SSL_CERT_FILE` (the directory `SSL_CERT_DIR`) names, as the
//! CLI and the PostgreSQL store read them. They are read once per process.
//! When none are found, plain `http://` keeps working and an `https://` URL
//! fails with a message saying how to fix it.

use std::fmt;
use std::sync::{Arc, OnceLock};

use crate::error::{Error, Result};
use rustls::RootCertStore;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject as _;

/// The certificates an `https://` peer's certificate chain must lead to.
///
/// Cheap to clone; a client built from it holds its own rustls config.
#[derive(Clone)]
pub struct TlsRoots {
    roots: Result<Arc<RootCertStore>, Arc<str>>,
}

impl fmt::Debug for TlsRoots {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.roots {
            Ok(roots) => f.debug_struct("TlsRoots").field("certificates", &roots.len()).finish(),
            Err(problem) => f.debug_struct("TlsRoots").field("problem", problem).finish(),
        }
    }
}

impl Default for TlsRoots {
    fn default() -> Self {
        TlsRoots::system()
    }
}

impl TlsRoots {
    /// The system's trusted roots (`SSL_CERT_FILE` / `SSL_CERT_DIR`
    /// honoured), loaded on first use and shared by every client of the
    /// process. With none found this holds the problem instead: see
    /// [`TlsRoots::problem`].
    pub fn system() -> TlsRoots {
        static SYSTEM: OnceLock<Result<Arc<RootCertStore>, Arc<str>>> = OnceLock::new();
        let roots = SYSTEM.get_or_init(|| {
            let found = rustls_native_certs::load_native_certs();
            let mut roots = RootCertStore::empty();
            let (added, ignored) = roots.add_parsable_certificates(found.certs);
            if added > 0 {
                return Ok(Arc::new(roots));
            }
            let why = match found.errors.first() {
                Some(err) => err.to_string(),
                None if ignored > 0 => format!("{ignored} certificates found, none usable"),
                None => "none found".to_owned(),
            };
            Err(no_roots(&why))
        });
        TlsRoots { roots: roots.clone() }
    }

    /// Exactly the certificates of a PEM bundle (for a private CA: only
    /// servers whose chain leads to one of them are trusted).
    pub fn from_pem(pem: &[u8]) -> Result<TlsRoots> {
        let mut roots = RootCertStore::empty();
        for (n, cert) in CertificateDer::pem_slice_iter(pem).enumerate() {
            let cert =
                cert.map_err(|e| Error::Tls(format!("cannot read certificate {} of the pem bundle: {e}", n + 1)))?;
            roots.add(cert).map_err(|e| {
                Error::Tls(format!(
                    "certificate {} of the pem bundle is not a usable root: {e}",
                    n + 1
                ))
            })?;
        }
        if roots.is_empty() {
            return Err(Error::Tls("the pem bundle holds no certificate".into()));
        }
        Ok(TlsRoots {
            roots: Ok(Arc::new(roots)),
        })
    }

    /// Reads [`TlsRoots::from_pem`] from a file.
    pub fn from_pem_file(path: &std::path::Path) -> Result<TlsRoots> {
        let pem = std::fs::read(path).map_err(|source| Error::File {
            action: "read",
            path: path.to_path_buf(),
            source,
        })?;
        TlsRoots::from_pem(&pem).map_err(|e| Error::Tls(format!("no trusted roots in `{}`: {e}", path.display())))
    }

    /// Why `https://` cannot work with these roots (none were found), or
    /// `None` when it can.
    pub fn problem(&self) -> Option<&str> {
        self.roots.as_ref().err().map(|p| &**p)
    }

    /// How many root certificates are trusted.
    pub fn len(&self) -> usize {
        self.roots.as_ref().map_or(0, |r| r.len())
    }

    /// No root is trusted (see [`TlsRoots::problem`]).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Refuses an `https://` URL when no roots were found, with the reason
    /// and the fix; anything else passes.
    pub(crate) fn check(&self, url: &reqwest::Url) -> Result<(), String> {
        match (&self.roots, url.scheme()) {
            (Err(problem), "https") => Err(format!("cannot use `{url}`: {problem}")),
            _ => Ok(()),
        }
    }

    /// Builds `builder` into a client speaking TLS through a rustls config
    /// made here (ring provider, safe default protocol versions), once for
    /// the client's life. Without roots the config trusts nothing, so that
    /// `http://` still works; this crate's clients refuse `https://` first,
    /// naming the problem.
    ///
    /// Build every reqwest client of a program linking this crate this way
    /// (or with another preconfigured rustls config): reqwest is built
    /// without a default crypto provider (no aws-lc-rs), so its own
    /// `Client::new()` panics unless a process-wide provider is installed.
    pub fn http_client(&self, builder: reqwest::ClientBuilder) -> Result<reqwest::Client> {
        let roots = self.roots.clone().unwrap_or_else(|_| Arc::new(RootCertStore::empty()));
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::Tls(format!("cannot set up TLS: {e}")))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        builder
            .tls_backend_preconfigured(config)
            .build()
            .map_err(|e| Error::Tls(format!("cannot build the http client: {}", error_chain(&e))))
    }
}

/// An error and its sources, `: `-separated (reqwest's own message names
/// the URL only; the cause, such as a certificate problem, is a source).
pub(crate) fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let line = cause.to_string();
        if !text.contains(&line) {
            text.push_str(": ");
            text.push_str(&line);
        }
        source = cause.source();
    }
    text
}

/// The problem [`TlsRoots::system`] holds when it found no usable root,
/// `why` saying what it found instead.
fn no_roots(why: &str) -> Arc<str> {
    Arc::from(format!(
        "no trusted root certificates ({why}); install ca-certificates or set SSL_CERT_FILE to a CA bundle"
    ))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use serde_json::{Map, json};

    use super::*;
    use crate::{RemoteGuard, RunnerSpec, ToolBinding, ToolRunner};

    /// What [`TlsRoots::system`] holds on a machine without a CA bundle.
    fn none_found() -> TlsRoots {
        TlsRoots {
            roots: Err(no_roots("none found")),
        }
    }

    fn service(url: &str) -> ToolBinding {
        ToolBinding {
            name: "greeter".into(),
            runner: RunnerSpec::Service {
                url: url.into(),
                entry: None,
                kind: None,
                required_guarantees: Map::new(),
            },
            timeout_seconds: Some(2.0),
        }
    }

    #[tokio::test]
    async fn without_roots_https_services_are_refused_naming_the_fix_and_http_is_tried() {
        let runner = ToolRunner::with_tls_roots(Duration::from_secs(2), none_found());
        let run = runner
            .execute(&service("https://127.0.0.1:9/tools/run"), &json!({}), "t")
            .await;
        let error = run.error.clone().expect("https ran without roots");
        assert_eq!(error.kind, "ServiceError");
        assert_eq!(
            error.message,
            "cannot use `https://127.0.0.1:9/tools/run`: no trusted root certificates (none found); \
             install ca-certificates or set SSL_CERT_FILE to a CA bundle"
        );
        // No handshake was attempted.
        assert_eq!(run.trace.service_handshake, None);

        // http goes out (and finds nobody listening on port 9).
        let run = runner
            .execute(&service("http://127.0.0.1:9/tools/run"), &json!({}), "t")
            .await;
        let error = run.error.clone().expect("nobody listens on port 9");
        assert!(
            error.message.starts_with("cannot reach service at"),
            "{}",
            error.message
        );
        assert!(!error.message.contains("root certificates"), "{}", error.message);
    }

    #[test]
    fn without_roots_a_remote_guard_refuses_an_https_server_up_front() {
        let roots = none_found();
        assert!(roots.is_empty());
        assert!(roots.problem().is_some_and(|p| p.contains("SSL_CERT_FILE")));
        let err = RemoteGuard::with_tls_roots("https://tame.example.com/", None, &roots)
            .err()
            .unwrap_or_else(|| panic!("built an https guard without roots"));
        assert!(
            err.to_string()
                .starts_with("cannot use `https://tame.example.com/`: no trusted root certificates"),
            "{err}"
        );
        assert!(RemoteGuard::with_tls_roots("http://127.0.0.1:8000", None, &roots).is_ok());
    }

    #[test]
    fn error_chains_keep_each_distinct_cause_once() {
        let io = std::io::Error::other("invalid peer certificate: UnknownIssuer");
        let outer = anyhow::Error::new(io).context("error sending request");
        let chain: &(dyn std::error::Error + 'static) = outer.as_ref();
        assert_eq!(
            error_chain(chain),
            "error sending request: invalid peer certificate: UnknownIssuer"
        );
    }
}
