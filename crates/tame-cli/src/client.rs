//! A small blocking HTTP client (ureq) for the Tame server API, and the
//! parsers for arguments given on the command line.

use std::time::Duration;

use serde_json::{Map, Value};

use crate::error::CliError;

/// Where the server is and how to authenticate.
#[derive(Clone, Debug)]
pub struct ServerOpts {
    pub url: String,
    pub key: Option<String>,
    pub timeout_secs: u64,
}

/// TLS for https:// servers: certificates are checked against the
/// system's trusted roots, or the bundle `SSL_CERT_FILE` (or the directory
/// `SSL_CERT_DIR`) names, as the PostgreSQL store checks its server's; so a
/// server behind a private CA works once that CA is trusted. With no roots
/// found, Mozilla's bundled roots are used.
#[cfg(feature = "tls")]
fn tls_config() -> ureq::tls::TlsConfig {
    let found = rustls_native_certs::load_native_certs();
    let certs: Vec<ureq::tls::Certificate<'static>> = found
        .certs
        .iter()
        .map(|der| ureq::tls::Certificate::from_der(der.as_ref()).to_owned())
        .collect();
    let roots = if certs.is_empty() {
        ureq::tls::RootCerts::WebPki
    } else {
        ureq::tls::RootCerts::new_with_certs(&certs)
    };
    ureq::tls::TlsConfig::builder().root_certs(roots).build()
}

/// A connection to one server.
#[derive(Debug)]
pub struct Client {
    agent: ureq::Agent,
    base: String,
    key: Option<String>,
}

impl Client {
    pub fn new(opts: &ServerOpts) -> Result<Client, CliError> {
        let base = opts.url.trim_end_matches('/').to_string();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(CliError::Input(format!(
                "invalid server url `{}`: expected http://HOST:PORT",
                opts.url
            )));
        }
        if base.starts_with("https://") && !cfg!(feature = "tls") {
            return Err(CliError::Input(format!(
                "cannot reach `{}`: this build of tame speaks plain http only (rebuild with `--features tls`)",
                opts.url
            )));
        }
        let builder = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(opts.timeout_secs.max(1))));
        #[cfg(feature = "tls")]
        let builder = builder.tls_config(tls_config());
        let config = builder.build();
        Ok(Client {
            agent: ureq::Agent::new_with_config(config),
            base,
            key: opts.key.clone(),
        })
    }

    /// The server's base URL.
    pub fn url(&self) -> &str {
        &self.base
    }

    /// GET a JSON document.
    pub fn get(&self, path: &str, query: &[(&str, &str)]) -> Result<Value, CliError> {
        let url = format!("{}{path}", self.base);
        let mut req = self.agent.get(&url);
        for (k, v) in query {
            req = req.query(*k, *v);
        }
        if let Some(key) = &self.key {
            req = req.header("Authorization", &format!("Bearer {key}"));
        }
        let resp = req.call();
        self.finish(&url, resp)
    }

    /// POST a JSON body, read a JSON document.
    pub fn post(&self, path: &str, body: &Value) -> Result<Value, CliError> {
        let url = format!("{}{path}", self.base);
        let mut req = self.agent.post(&url);
        if let Some(key) = &self.key {
            req = req.header("Authorization", &format!("Bearer {key}"));
        }
        let resp = req.send_json(body);
        self.finish(&url, resp)
    }

    fn finish(
        &self,
        url: &str,
        resp: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<Value, CliError> {
        let mut resp = resp.map_err(|e| CliError::ServerDown {
            url: self.base.clone(),
            reason: describe_transport_error(&e),
        })?;
        let status = resp.status().as_u16();
        let text = resp.body_mut().read_to_string().map_err(|e| CliError::ServerDown {
            url: self.base.clone(),
            reason: format!("the response could not be read: {e}"),
        })?;
        let body: Value = if text.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        if (200..300).contains(&status) {
            return Ok(body);
        }
        let detail = match body.get("detail") {
            Some(Value::String(s)) => s.clone(),
            Some(other) => other.to_string(),
            None => match &body {
                Value::String(s) => s.clone(),
                Value::Null => String::from("(empty body)"),
                other => other.to_string(),
            },
        };
        let rendered = rendered_diagnostics(&body);
        let detail = if body.get("diagnostics").is_some() && !rendered.is_empty() {
            format!("{detail}\n{}", rendered.join("\n"))
        } else {
            detail
        };
        let detail = if status == 401 {
            format!("authentication failed, check the API key (--api-key or TAME_API_KEY): {detail}")
        } else if status == 403 {
            format!("forbidden, this API key may not do that: {detail}")
        } else {
            detail
        };
        Err(CliError::Server {
            url: url.to_string(),
            status,
            detail,
        })
    }
}

fn describe_transport_error(err: &ureq::Error) -> String {
    match err {
        ureq::Error::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused => String::from("connection refused"),
        ureq::Error::Timeout(_) => String::from("timed out"),
        ureq::Error::HostNotFound => String::from("host not found"),
        other => other.to_string(),
    }
}

/// Parses a JSON object given on the command line.
pub fn parse_object(text: &str, what: &str) -> Result<Value, CliError> {
    let value: Value = serde_json::from_str(text).map_err(|e| {
        CliError::Input(format!(
            "{what} is not valid JSON (line {}, column {}): {e}",
            e.line(),
            e.column()
        ))
    })?;
    if !value.is_object() {
        return Err(CliError::Input(format!("{what} must be a JSON object, got `{text}`")));
    }
    Ok(value)
}

/// Parses arguments written as JSON or as `key=value,key=value` (REPL).
pub fn parse_loose_args(text: &str) -> Result<Value, CliError> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(Value::Object(Map::new()));
    }
    if text.starts_with('{') {
        return parse_object(text, "the arguments");
    }
    let mut map = Map::new();
    for pair in text.split(',') {
        let pair = pair.trim();
        if pair.is_empty() {
            continue;
        }
        let Some((key, value)) = pair.split_once('=') else {
            return Err(CliError::Input(format!(
                "cannot read `{pair}`: write arguments as JSON or as key=value,key=value"
            )));
        };
        let value = value.trim();
        // Numbers, booleans and null keep their type; anything else is a string.
        let parsed = match serde_json::from_str::<Value>(value) {
            Ok(v @ (Value::Number(_) | Value::Bool(_) | Value::Null)) => v,
            _ => Value::String(value.to_string()),
        };
        map.insert(key.trim().to_string(), parsed);
    }
    Ok(Value::Object(map))
}

/// A string field of a JSON object, `""` when absent.
pub fn str_field<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

/// A JSON value for humans: `-` for null or absent, strings unquoted.
pub fn show(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => String::from("-"),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

/// Percent-encodes a path segment (ids are usually UUIDs; be safe anyway).
pub fn encode(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for b in segment.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The rendered diagnostics of a server answer (validate, reload errors).
pub fn rendered_diagnostics(body: &Value) -> Vec<String> {
    if let Some(diags) = body.get("diagnostics").and_then(Value::as_array) {
        return diags
            .iter()
            .filter_map(|d| d.get("rendered").and_then(Value::as_str))
            .map(|r| r.trim_end().to_string())
            .collect();
    }
    body.get("errors")
        .and_then(Value::as_array)
        .map(|errs| errs.iter().map(|e| show(Some(e))).collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn loose_args_keep_scalar_types() {
        let v = parse_loose_args("url=https://example.com,method=GET,n=3,ok=true").unwrap();
        assert_eq!(
            v,
            json!({"url": "https://example.com", "method": "GET", "n": 3, "ok": true})
        );
    }

    #[test]
    fn loose_args_accept_json_and_reject_junk() {
        assert_eq!(parse_loose_args(r#"{"a": [1]}"#).unwrap(), json!({"a": [1]}));
        assert_eq!(parse_loose_args("").unwrap(), json!({}));
        let err = parse_loose_args("nonsense").unwrap_err().to_string();
        assert!(err.contains("`nonsense`"), "{err}");
    }

    #[test]
    fn object_parser_names_position_and_type() {
        let err = parse_object("{\"a\": }", "--args").unwrap_err().to_string();
        assert!(err.contains("--args is not valid JSON (line 1, column 7)"), "{err}");
        let err = parse_object("[1]", "--args").unwrap_err().to_string();
        assert!(err.contains("must be a JSON object"), "{err}");
    }

    #[test]
    fn path_segments_are_encoded() {
        assert_eq!(encode("ab-12_3"), "ab-12_3");
        assert_eq!(encode("a/b c"), "a%2Fb%20c");
    }

    #[test]
    fn bad_urls_are_refused() {
        let opts = ServerOpts {
            url: "localhost:8000".into(),
            key: None,
            timeout_secs: 1,
        };
        let err = Client::new(&opts).unwrap_err().to_string();
        assert!(err.contains("invalid server url `localhost:8000`"), "{err}");
    }
}
