//! The PostgreSQL database's tables and indexes, and how a connection to
//! it is made (TLS through rustls for `sslmode=require`).

use super::*;
#[allow(unused_imports, reason = "the backend's modules share one scope")]
use super::{reads::*, writer::*};

/// The tables and indexes of schema version 1 (see `crate::schema`); the
/// [`MIGRATIONS`] bring them to [`PG_SCHEMA_VERSION`].
pub(super) const SCHEMA: &str = crate::schema::schema_sql!(int: "BIGINT", serial: "BIGSERIAL", sessions_end: "");

/// The numbered migrations: `(n, sql)` brings a database at version `n - 1`
/// to version `n`. Each runs once, in order, in the transaction that opens
/// the store (under [`MIGRATION_LOCK`], so servers starting together do not
/// both migrate).
pub(super) const MIGRATIONS: &[(u32, &str)] = &[
    (
        2,
        // A session's version: how many of its records (decisions, results,
        // inputs) are stored. A server holding a session's state decides on it
        // only while the version is the one its state holds; another server's
        // record moves it on. Existing sessions are counted once here.
        "ALTER TABLE sessions ADD COLUMN IF NOT EXISTS version BIGINT NOT NULL DEFAULT 0;
     UPDATE sessions s SET version = c.n
       FROM (SELECT session_id, count(*) AS n FROM audit
              WHERE session_id IS NOT NULL AND kind IN ('decision', 'result', 'input')
              GROUP BY session_id) c
      WHERE c.session_id = s.session_id;",
    ),
    (
        3,
        // A chain per node: each server appends to a chain of its own (`chain`
        // names it, `chain_seq` is the record's place in it), so servers never
        // wait for each other's chain; `seq` stays the order of the whole log,
        // drawn from a sequence. The records written before are the unnamed
        // chain, whose places are their sequence numbers. `chains` holds each
        // chain's head as its writer recorded it (it was `meta`'s `head`).
        "ALTER TABLE audit ADD COLUMN IF NOT EXISTS chain TEXT NOT NULL DEFAULT '';
     ALTER TABLE audit ADD COLUMN IF NOT EXISTS chain_seq BIGINT;
     UPDATE audit SET chain_seq = seq WHERE chain_seq IS NULL;
     ALTER TABLE audit ALTER COLUMN chain_seq SET NOT NULL;
     CREATE UNIQUE INDEX IF NOT EXISTS audit_chain ON audit(chain, chain_seq);
     CREATE SEQUENCE IF NOT EXISTS audit_seq AS BIGINT;
     SELECT setval('audit_seq', COALESCE((SELECT max(seq) FROM audit), 0) + 1, false);
     CREATE TABLE IF NOT EXISTS chains (
         chain TEXT PRIMARY KEY,
         seq BIGINT NOT NULL,
         hash TEXT NOT NULL
     );
     INSERT INTO chains(chain, seq, hash)
          SELECT '', split_part(value, ':', 1)::bigint, split_part(value, ':', 2) FROM meta WHERE key = 'head'
     ON CONFLICT (chain) DO NOTHING;
     DELETE FROM meta WHERE key = 'head';",
    ),
];

/// The transaction-level advisory lock the schema's creation and migration
/// run under: the ASCII bytes of `tamemigr`.
pub(super) const MIGRATION_LOCK: i64 = 0x7461_6d65_6d69_6772;

/// Creates the schema, or brings it to [`PG_SCHEMA_VERSION`], in one
/// transaction under [`MIGRATION_LOCK`]; refuses a database a newer tame
/// wrote. `shown` names the database in errors.
pub(super) fn migrate(client: &mut Client, shown: &str) -> StoreResult<()> {
    let mut tx = client.transaction()?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])?;
    tx.batch_execute(SCHEMA)?;
    let stored: Option<String> = tx
        .query_opt("SELECT value FROM meta WHERE key = 'schema_version'", &[])?
        .map(|r| col(&r, 0))
        .transpose()?;
    let from = match stored.as_deref().map(str::parse::<u32>) {
        // A new database: the tables were just created at version 1.
        None => 1,
        Some(Ok(v)) if v <= PG_SCHEMA_VERSION => v,
        Some(Ok(v)) => {
            return Err(StoreError::Db(format!(
                "the database `{shown}` has schema version {v}; this tame reads up to {PG_SCHEMA_VERSION}"
            )));
        }
        Some(Err(_)) => {
            return Err(StoreError::Db(format!(
                "the database `{shown}` has an unreadable schema version `{}`",
                stored.unwrap_or_default()
            )));
        }
    };
    for (n, sql) in MIGRATIONS.iter().filter(|(n, _)| *n > from) {
        tx.batch_execute(sql)
            .map_err(|e| StoreError::Db(format!("migrating `{shown}` to schema version {n}: {}", pg_message(&e))))?;
    }
    tx.execute(
        "INSERT INTO meta(key, value) VALUES ('schema_version', $1)
         ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        &[&PG_SCHEMA_VERSION.to_string()],
    )?;
    tx.commit()?;
    Ok(())
}

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
