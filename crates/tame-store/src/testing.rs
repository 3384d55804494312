//! Test support for the PostgreSQL backend, shared by this crate's tests
//! and the server's: a fresh database per test on the server named by
//! `TAME_TEST_DATABASE_URL` (see `scripts/pg-test.sh`). Not part of the
//! store's API.

use std::sync::atomic::{AtomicU64, Ordering};

use postgres::{Client, NoTls};

/// The variable naming the PostgreSQL server for tests.
pub const TEST_DATABASE_URL: &str = "TAME_TEST_DATABASE_URL";

/// Why a PostgreSQL test cannot run.
#[derive(Debug, thiserror::Error)]
pub enum TestDbError {
    /// No server configured, outside CI: the caller skips the test.
    #[error("{TEST_DATABASE_URL} is not set")]
    NotConfigured,
    #[error(
        "{TEST_DATABASE_URL} is not set but CI is: the PostgreSQL tests must run in CI \
         (run them through scripts/pg-test.sh)"
    )]
    MissingInCi,
    #[error("cannot create a test database on `{url}`: {message}")]
    Create { url: String, message: String },
}

/// Creates an empty database named after `label` (plus a unique suffix) on
/// the test server and returns its URL. `Err(NotConfigured)` when
/// `TAME_TEST_DATABASE_URL` is unset and `CI` is not; `Err(MissingInCi)`
/// when it is unset in CI, where a skipped test would hide a failure.
pub fn fresh_database(label: &str) -> Result<String, TestDbError> {
    let base = match std::env::var(TEST_DATABASE_URL) {
        Ok(url) if !url.trim().is_empty() => url,
        _ if std::env::var_os("CI").is_some_and(|v| !v.is_empty()) => return Err(TestDbError::MissingInCi),
        _ => return Err(TestDbError::NotConfigured),
    };
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let clean: String = label
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .take(30)
        .collect();
    let name = format!(
        "t_{clean}_{}_{}_{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed),
        jiff::Timestamp::now().as_microsecond() % 1_000_000_000
    );
    let shown = crate::redact_url(&base);
    let create = |e: String| TestDbError::Create {
        url: shown.clone(),
        message: e,
    };
    // Runs on a plain thread: the synchronous client must not run inside
    // the caller's async runtime (server tests are async).
    let sql = format!("CREATE DATABASE \"{name}\"");
    let admin_url = base.clone();
    std::thread::spawn(move || -> Result<(), String> {
        let mut admin = Client::connect(&admin_url, NoTls).map_err(|e| e.to_string())?;
        admin.batch_execute(&sql).map_err(|e| e.to_string())
    })
    .join()
    .map_err(|_| create("the setup thread panicked".into()))?
    .map_err(create)?;
    Ok(with_database(&base, &name))
}

/// `url` pointing at database `name` instead of its own.
pub fn with_database(url: &str, name: &str) -> String {
    let (scheme, rest) = match url.find("://") {
        Some(i) => url.split_at(i + 3),
        None => ("", url),
    };
    let query_at = rest.find('?').unwrap_or(rest.len());
    let (before_query, query) = rest.split_at(query_at);
    let host_end = before_query.rfind('@').map_or(0, |at| at + 1);
    let (userhost_head, after_user) = before_query.split_at(host_end);
    let authority = match after_user.find('/') {
        Some(slash) => after_user.split_at(slash).0,
        None => after_user,
    };
    format!("{scheme}{userhost_head}{authority}/{name}{query}")
}

/// Runs SQL on the database at `url` (e.g. to tamper with the log in a
/// test), on a plain thread; returns the rows the last statement changed.
pub fn execute(url: &str, sql: &str) -> Result<u64, String> {
    let url = url.to_string();
    let sql = sql.to_string();
    std::thread::spawn(move || -> Result<u64, String> {
        let mut client = Client::connect(&url, NoTls).map_err(|e| e.to_string())?;
        client.execute(sql.as_str(), &[]).map_err(|e| e.to_string())
    })
    .join()
    .map_err(|_| "the sql thread panicked".to_string())?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_database_name_is_swapped_in_the_url() {
        assert_eq!(
            with_database("postgres://tame@127.0.0.1:5432/tame_test", "t_x"),
            "postgres://tame@127.0.0.1:5432/t_x"
        );
        assert_eq!(
            with_database("postgresql://u:p@h/db?sslmode=disable", "n"),
            "postgresql://u:p@h/n?sslmode=disable"
        );
        assert_eq!(with_database("postgres://h:1", "n"), "postgres://h:1/n");
    }
}
