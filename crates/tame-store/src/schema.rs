//! The tables and indexes of both backends, written once: each backend
//! names its integer type, the key of `policy_versions` and how the
//! `sessions` table ends (SQLite keeps it without a rowid), so the two
//! schemas cannot drift apart.

/// The schema's SQL for one backend, as a `&'static str`: `int` is the
/// 64-bit integer type, `serial` the type of `policy_versions.id` (an
/// integer key assigned on insert), `sessions_end` what follows the
/// `sessions` table's closing parenthesis.
macro_rules! schema_sql {
    (int: $int:literal, serial: $serial:literal, sessions_end: $sessions_end:literal $(,)?) => {
        concat!(
            "
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS audit (
    seq ",
            $int,
            " PRIMARY KEY,
    kind TEXT NOT NULL,
    ts TEXT NOT NULL,
    session_id TEXT,
    ref_id TEXT,
    session_prev ",
            $int,
            ",
    body TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_ref ON audit(ref_id, seq);
CREATE TABLE IF NOT EXISTS sessions (
    session_id TEXT PRIMARY KEY,
    start_time TEXT NOT NULL,
    end_time TEXT NOT NULL,
    last_seq ",
            $int,
            " NOT NULL,
    tail_seq ",
            $int,
            " NOT NULL,
    total ",
            $int,
            " NOT NULL,
    allowed ",
            $int,
            " NOT NULL,
    denied ",
            $int,
            " NOT NULL,
    approved ",
            $int,
            " NOT NULL,
    agent_id TEXT,
    user_id TEXT
)",
            $sessions_end,
            ";
CREATE INDEX IF NOT EXISTS sessions_last ON sessions(last_seq);
CREATE TABLE IF NOT EXISTS approvals (
    id TEXT PRIMARY KEY,
    created_seq ",
            $int,
            " NOT NULL,
    log_id TEXT NOT NULL,
    session_id TEXT NOT NULL,
    call_hash TEXT NOT NULL,
    state TEXT NOT NULL,
    expires_micros ",
            $int,
            " NOT NULL,
    expires_at TEXT NOT NULL,
    decided_by TEXT,
    decision_reason TEXT,
    decided_at TEXT,
    released_log_id TEXT
);
CREATE INDEX IF NOT EXISTS approvals_state ON approvals(state, expires_micros);
CREATE TABLE IF NOT EXISTS policy_versions (
    id ",
            $serial,
            " PRIMARY KEY,
    seq ",
            $int,
            " NOT NULL,
    version TEXT NOT NULL,
    hash TEXT NOT NULL,
    origin TEXT NOT NULL,
    loaded_at TEXT NOT NULL,
    source TEXT NOT NULL
);
"
        )
    };
}
pub(crate) use schema_sql;

#[cfg(test)]
mod tests {
    /// Each backend's schema, word for word as it was written out before
    /// the two were made one (apart from the order of `meta`).
    #[test]
    fn each_backend_gets_its_types() {
        let sqlite = schema_sql!(int: "INTEGER", serial: "INTEGER", sessions_end: " WITHOUT ROWID");
        let pg = schema_sql!(int: "BIGINT", serial: "BIGSERIAL", sessions_end: "");
        assert!(sqlite.contains("    seq INTEGER PRIMARY KEY,\n"));
        assert!(sqlite.contains("    user_id TEXT\n) WITHOUT ROWID;\n"));
        assert!(sqlite.contains("    id INTEGER PRIMARY KEY,\n"));
        assert!(!sqlite.contains("BIGINT"));
        assert!(pg.contains("    seq BIGINT PRIMARY KEY,\n"));
        assert!(pg.contains("    user_id TEXT\n);\n"));
        assert!(pg.contains("    id BIGSERIAL PRIMARY KEY,\n"));
        assert!(!pg.contains("INTEGER"));
        assert_eq!(sqlite.matches("CREATE TABLE").count(), 5);
        assert_eq!(pg.matches("CREATE").count(), sqlite.matches("CREATE").count());
    }
}
