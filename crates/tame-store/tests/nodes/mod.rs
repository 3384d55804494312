//! Several servers on one PostgreSQL database (`nodes::pg::*`): each
//! appends to a chain of its own at once, a session's records link across
//! chains in the order they were committed, decisions made on a state
//! another server moved past are refused, a restarted server resumes its
//! chain, and `verify` checks every chain and names a problem's chain.

use std::sync::Arc;

use serde_json::{Value, json};
use tame_store::testing::{decision, result};
use tame_store::*;

use super::TestDb;

const SECRET: [u8; 32] = [7; 32];

/// A store of the database as server `node`.
fn node(db: &TestDb, node: &str) -> Arc<PgStore> {
    let TestDb::Pg(url, _) = db else {
        panic!("a PostgreSQL test got a SQLite database")
    };
    let options = PgOptions {
        node: Some(node.to_string()),
        ..PgOptions::new(SECRET.to_vec())
    };
    Arc::new(PgStore::open(url, options).unwrap())
}

fn export(store: &dyn Store) -> Vec<Value> {
    let mut out = Vec::new();
    store.export(&mut out).unwrap();
    String::from_utf8(out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// A decision made on state `epoch` holding `records` of the session (the
/// test's epochs are far above those the stores give their states).
fn at(log_id: &str, session: &str, (epoch, records): (u64, u64)) -> NewDecision {
    let mut d = decision(log_id, session);
    d.session_version = Some(StateVersion {
        epoch: TEST_EPOCHS + epoch,
        records,
    });
    d
}

const TEST_EPOCHS: u64 = 1 << 40;

/// Two servers write to one session in turn: each record links to the one
/// before it whichever server wrote it, each server's records are a chain
/// of their own, and a decision made on a state the other server moved
/// past is refused.
fn two_servers_take_turns_on_one_session(db: &TestDb) {
    let a = node(db, "node-a");
    let b = node(db, "node-b");
    a.record_decision(at("l0", "s1", (1, 0))).wait().unwrap();
    b.record_decision(at("l1", "s1", (1, 1))).wait().unwrap();
    // `a`'s state after its own decision: `b` moved the session on.
    assert!(matches!(
        a.record_decision(at("l2", "s1", (1, 1))).wait(),
        Err(StoreError::SessionMoved { .. })
    ));
    // That state is spent: a decision made on it after the refused one
    // (its count now matching the stored one) is refused too.
    assert!(matches!(
        a.record_decision(at("l3", "s1", (1, 2))).wait(),
        Err(StoreError::SessionMoved { .. })
    ));
    // Read back (as the server does after the refusal), it holds both.
    let state = a.session_facts("s1").unwrap().lock().state_version();
    assert_eq!(state.records, 2);
    let mut d = decision("l2", "s1");
    d.session_version = Some(state);
    a.record_decision(d).wait().unwrap();
    // A result reported through the other server.
    b.record_result(result("s1", "l2", jiff::Timestamp::now(), json!({"status": "success"})))
        .wait()
        .unwrap();
    let lines = export(&*a);
    let chains: Vec<(&str, u64)> = lines
        .iter()
        .map(|l| (l["chain"].as_str().unwrap(), l["chain_seq"].as_u64().unwrap()))
        .collect();
    assert_eq!(chains, [("node-a", 1), ("node-b", 1), ("node-a", 2), ("node-b", 2)]);
    let links: Vec<Value> = lines.iter().map(|l| l["session_prev"].clone()).collect();
    let seqs: Vec<Value> = lines.iter().map(|l| l["seq"].clone()).collect();
    assert_eq!(links[0], Value::Null);
    assert_eq!(&links[1..], &seqs[..3]);
    let log = b.session_log("s1").unwrap().unwrap();
    let ids: Vec<&str> = log.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(ids, ["l0", "l1", "l2"]);
    for store in [&a, &b] {
        let report = store.verify().unwrap();
        assert!(report.valid, "{report:?}");
        assert_eq!(report.records, 4);
    }
}

/// Both servers append at once to the same sessions (no state checks):
/// every record is stored once, each session's records link into one
/// list, and both chains verify.
fn two_servers_append_at_once(db: &TestDb) {
    let stores = [node(db, "node-a"), node(db, "node-b")];
    std::thread::scope(|scope| {
        for (n, store) in stores.iter().enumerate() {
            scope.spawn(move || {
                for i in 0..60 {
                    let tickets: Vec<_> = (0..5)
                        .map(|j| store.record_decision(decision(&format!("l{n}-{i}-{j}"), &format!("s{}", j % 3))))
                        .collect();
                    for t in tickets {
                        t.wait().unwrap();
                    }
                }
            });
        }
    });
    let mut total = 0;
    for s in ["s0", "s1", "s2"] {
        let log = stores[0].session_log(s).unwrap().unwrap();
        total += log.len();
        // Read back through the links, checked row by row.
        assert!(stores[1].session_facts(s).is_ok());
    }
    assert_eq!(total, 600);
    let report = stores[1].verify().unwrap();
    assert!(report.valid, "{report:?}");
    assert_eq!(report.records, 600);
}

/// A server restarted with its node id goes on with its chain; one edited
/// record of the other server's chain is found and named by its chain.
fn a_restarted_server_resumes_its_chain(db: &TestDb) {
    {
        let a = node(db, "node-a");
        let b = node(db, "node-b");
        a.record_decision(decision("l0", "s1")).wait().unwrap();
        b.record_decision(decision("l1", "s2")).wait().unwrap();
    }
    let a = node(db, "node-a");
    a.record_decision(decision("l2", "s1")).wait().unwrap();
    let places: Vec<(String, u64)> = export(&*a)
        .iter()
        .map(|l| {
            (
                l["chain"].as_str().unwrap().to_owned(),
                l["chain_seq"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        places,
        [
            ("node-a".to_owned(), 1),
            ("node-b".to_owned(), 1),
            ("node-a".to_owned(), 2)
        ]
    );
    assert!(a.verify().unwrap().valid);
    assert_eq!(
        db.exec("UPDATE audit SET body = replace(body, '/tmp/x', '/tmp/y') WHERE chain = 'node-b'"),
        1
    );
    let report = a.verify().unwrap();
    let problem = report.first_problem.unwrap();
    assert_eq!(problem.kind, ChainProblemKind::Edited);
    assert!(
        problem.message.contains("record 1 of chain `node-b`"),
        "{}",
        problem.message
    );
    // A record moved into the other chain (its place and name rewritten) is found too.
    db.exec("UPDATE audit SET body = replace(body, '/tmp/y', '/tmp/x') WHERE chain = 'node-b'");
    assert!(a.verify().unwrap().valid);
    db.exec("UPDATE audit SET chain = 'node-a', chain_seq = 3 WHERE chain = 'node-b'");
    db.exec("DELETE FROM chains WHERE chain = 'node-b'");
    assert!(!a.verify().unwrap().valid);
}

/// A node id that cannot name a chain is refused before connecting.
fn a_bad_node_id_is_refused(db: &TestDb) {
    let TestDb::Pg(url, _) = db else { panic!() };
    for bad in ["", "a b", "x".repeat(MAX_NODE_ID + 1).as_str(), "n\u{e9}"] {
        let options = PgOptions {
            node: Some(bad.to_string()),
            ..PgOptions::new(SECRET.to_vec())
        };
        let e = PgStore::open(url, options).unwrap_err().to_string();
        assert!(e.contains("cannot name an audit chain"), "{bad:?}: {e}");
    }
}

tests_by_backend!(
    both: [],
    pg_only: [
        two_servers_take_turns_on_one_session,
        two_servers_append_at_once,
        a_restarted_server_resumes_its_chain,
        a_bad_node_id_is_refused,
    ],
);
