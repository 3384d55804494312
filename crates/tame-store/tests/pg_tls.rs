//! The PostgreSQL store over TLS. `scripts/pg-test.sh` gives its server a
//! certificate for 127.0.0.1 from a throwaway CA that `SSL_CERT_FILE`
//! trusts, and sets `TAME_TEST_PG_TLS=1`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

mod pg {
    use serde_json::json;
    use tame_store::testing::DecisionExt;
    use tame_store::*;

    /// A fresh database on the TLS-enabled test server, or `None` (after
    /// saying so) outside CI when there is none.
    fn tls_database(label: &str) -> Option<String> {
        if std::env::var("TAME_TEST_PG_TLS").as_deref() != Ok("1") {
            assert!(
                std::env::var_os("CI").is_none_or(|v| v.is_empty()),
                "TAME_TEST_PG_TLS is not set: run the PostgreSQL tests through scripts/pg-test.sh"
            );
            eprintln!("skipped: the test server has no TLS (run scripts/pg-test.sh)");
            return None;
        }
        tame_store::testing::database_or_skip(label).unwrap_or_else(|e| panic!("{e}"))
    }

    fn with_query(url: &str, query: &str) -> String {
        format!("{url}{}{query}", if url.contains('?') { '&' } else { '?' })
    }

    /// Whether each connection of the store (application `tame`) to this
    /// test's database is encrypted, as the server sees it.
    fn store_connections_encrypted(url: &str) -> Vec<bool> {
        let url = url.to_string();
        std::thread::spawn(move || {
            let mut client = postgres::Client::connect(&url, postgres::NoTls).unwrap();
            client
                .query(
                    "SELECT s.ssl FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid)
                     WHERE a.application_name = 'tame' AND a.datname = current_database()",
                    &[],
                )
                .unwrap()
                .iter()
                .map(|r| r.get::<_, bool>(0))
                .collect()
        })
        .join()
        .unwrap()
    }

    fn open(url: &str) -> StoreResult<PgStore> {
        PgStore::open(url, PgOptions::new(vec![9; 32]))
    }

    /// An allowed `send_email` call without arguments or agent, which no
    /// rule matched.
    fn decision() -> NewDecision {
        tame_store::testing::decision("l1", "s1")
            .tool("send_email")
            .args(json!({}))
            .agent(None)
            .no_rule("r")
    }

    #[test]
    fn store_connections_are_encrypted_with_sslmode_require() {
        let Some(url) = tls_database("tls_require") else { return };
        let store = open(&with_query(&url, "sslmode=require")).unwrap();
        store.record_decision(decision()).wait().unwrap();
        let encrypted = store_connections_encrypted(&url);
        assert!(!encrypted.is_empty(), "the store has no connections");
        assert!(encrypted.iter().all(|e| *e), "{encrypted:?}");
    }

    #[test]
    fn the_default_sslmode_uses_tls_when_the_server_offers_it() {
        let Some(url) = tls_database("tls_prefer") else { return };
        let _store = open(&url).unwrap();
        let encrypted = store_connections_encrypted(&url);
        assert!(!encrypted.is_empty() && encrypted.iter().all(|e| *e), "{encrypted:?}");
    }

    #[test]
    fn sslmode_disable_stays_plain() {
        let Some(url) = tls_database("tls_disable") else { return };
        let _store = open(&with_query(&url, "sslmode=disable")).unwrap();
        let encrypted = store_connections_encrypted(&url);
        assert!(!encrypted.is_empty() && encrypted.iter().all(|e| !*e), "{encrypted:?}");
    }

    #[test]
    fn a_certificate_for_another_name_is_refused() {
        let Some(url) = tls_database("tls_wrong_name") else {
            return;
        };
        // The certificate names 127.0.0.1, not localhost.
        let url = with_query(&url.replacen("127.0.0.1", "localhost", 1), "sslmode=require");
        let err = open(&url).unwrap_err().to_string();
        assert!(err.contains("cannot connect to"), "{err}");
        assert!(err.to_lowercase().contains("certificate"), "{err}");
    }
}
