//! End-to-end tests over a real socket against the `tame-server` binary:
//! SIGKILL in the middle of a load loses no acknowledged decision, SIGTERM
//! drains and flushes, SIGHUP and file changes reload the policy, an open
//! API refuses a non-loopback address, and session labels from a result
//! still hold after a restart.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

mod common;

use std::collections::HashSet;
use std::io::BufRead;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};

struct Server {
    child: Child,
    addr: SocketAddr,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(dir: &Path, extra: &[&str]) -> Server {
    start_on(dir, &Db::Sqlite, extra)
}

/// Where a test server keeps its store.
enum Db {
    /// `tame.db` in the test's directory.
    Sqlite,
    /// A PostgreSQL database (URL), with the tests' audit secret.
    Pg(String),
}

/// The audit secret of the PostgreSQL runs.
const PG_SECRET: &str = "e2e-audit-secret-0123456789";

fn start_on(dir: &Path, db: &Db, extra: &[&str]) -> Server {
    let mut command = Command::new(env!("CARGO_BIN_EXE_tame-server"));
    command.arg("--policy").arg(dir.join("policies.yml")).arg("--db");
    match db {
        Db::Sqlite => command.arg(dir.join("tame.db")),
        Db::Pg(url) => command.arg(url).env("TAME_AUDIT_SECRET", PG_SECRET),
    };
    let mut child = command
        .args(["--addr", "127.0.0.1:0"])
        .args(extra)
        .env("TAME_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut line = String::new();
    std::io::BufReader::new(stdout).read_line(&mut line).unwrap();
    let addr = line
        .trim()
        .strip_prefix("listening on http://")
        .unwrap_or_else(|| panic!("unexpected first line: {line:?}"))
        .parse()
        .unwrap();
    Server { child, addr }
}

async fn connect(addr: SocketAddr) -> Option<SendRequest<Full<Bytes>>> {
    let stream = tokio::net::TcpStream::connect(addr).await.ok()?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.ok()?;
    tokio::spawn(conn);
    Some(sender)
}

async fn send(
    sender: &mut SendRequest<Full<Bytes>>,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> Option<(u16, String)> {
    sender.ready().await.ok()?;
    let req = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header("host", "localhost")
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.map(Value::to_string).unwrap_or_default())))
        .unwrap();
    let resp = sender.send_request(req).await.ok()?;
    let status = resp.status().as_u16();
    let bytes = resp.into_body().collect().await.ok()?.to_bytes();
    Some((status, String::from_utf8_lossy(&bytes).to_string()))
}

async fn call(addr: SocketAddr, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
    let mut s = connect(addr).await.expect("connect");
    let (status, text) = send(&mut s, method, path, body).await.expect("request");
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

fn setup() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("policies.yml"), common::POLICY).unwrap();
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_load_loses_no_acknowledged_decision() {
    sigkill_mid_load(&["--no-watch"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_load_loses_nothing_with_normal_durability() {
    sigkill_mid_load(&["--no-watch", "--durability", "normal"]).await;
}

async fn sigkill_mid_load(flags: &[&str]) {
    sigkill_mid_load_on(&Db::Sqlite, flags).await;
}

/// The same tests with the store in PostgreSQL (`TAME_TEST_DATABASE_URL`;
/// run through `scripts/pg-test.sh`).
mod pg {
    use super::*;

    /// A fresh database, or `None` (after saying so) when no server is
    /// configured outside CI; in CI a missing server fails the test.
    fn database(label: &str) -> Option<Db> {
        tame_store::testing::database_or_skip(label)
            .unwrap_or_else(|e| panic!("{e}"))
            .map(Db::Pg)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sigkill_mid_load_loses_no_acknowledged_decision() {
        let Some(db) = database("e2e_sigkill") else { return };
        sigkill_mid_load_on(&db, &["--no-watch"]).await;
    }

    /// Two servers (two processes, two node ids) on one database take load
    /// on shared sessions; one is killed without warning. The other keeps
    /// answering; every decision either answered is in the log; the killed
    /// one restarts on its chain and the whole log verifies.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn sigkill_one_of_two_servers_loses_nothing() {
        let Some(db) = database("e2e_two_sigkill") else { return };
        let dir = setup();
        let mut a = start_on(dir.path(), &db, &["--no-watch", "--node-id", "node-a"]);
        let b = start_on(dir.path(), &db, &["--no-watch", "--node-id", "node-b"]);
        let load = |addr: SocketAddr, w: usize, stop: Option<Instant>| {
            tokio::spawn(async move {
                let mut got = Vec::new();
                let Some(mut s) = connect(addr).await else { return got };
                for i in 0.. {
                    if stop.is_some_and(|t| Instant::now() > t) {
                        break;
                    }
                    // Sessions shared by both servers.
                    let body = json!({"tool_name": "read_file", "tool_args": {"path": format!("/tmp/{w}/{i}")}, "session_id": format!("s{}", w % 3)});
                    match send(&mut s, "POST", "/api/v1/enforce", Some(&body)).await {
                        Some((200, text)) => {
                            let v: Value = serde_json::from_str(&text).unwrap();
                            got.push(v["log_id"].as_str().unwrap().to_string());
                        }
                        // Refused while the other server kept moving a session on.
                        Some((503, text)) => assert!(text.contains("session_busy"), "{text}"),
                        Some((status, text)) => panic!("unexpected {status}: {text}"),
                        None => break,
                    }
                }
                got
            })
        };
        let until = Instant::now() + Duration::from_millis(3000);
        let mut on_a = Vec::new();
        let mut on_b = Vec::new();
        for w in 0..4 {
            on_a.push(load(a.addr, w, None));
            on_b.push(load(b.addr, w + 4, Some(until)));
        }
        tokio::time::sleep(Duration::from_millis(1500)).await;
        a.child.kill().unwrap(); // SIGKILL on Unix
        a.child.wait().unwrap();
        let mut received = Vec::new();
        for w in on_a {
            received.extend(w.await.unwrap());
        }
        let before_b = received.len();
        for w in on_b {
            received.extend(w.await.unwrap());
        }
        let from_b = received.len() - before_b;
        assert!(
            before_b > 20 && from_b > 20,
            "too little load: {before_b} on a, {from_b} on b"
        );
        // `b` answered after `a` died.
        let (status, after) = call(
            b.addr,
            "POST",
            "/api/v1/enforce",
            Some(&json!({"tool_name": "read_file", "tool_args": {"path": "/tmp/after"}, "session_id": "s0"})),
        )
        .await;
        assert_eq!(status, 200, "{after}");
        received.push(after["log_id"].as_str().unwrap().to_string());
        drop(a);
        let a = start_on(dir.path(), &db, &["--no-watch", "--node-id", "node-a"]);
        for server in [&a, &b] {
            let (status, report) = call(server.addr, "GET", "/api/v1/audit/verify", None).await;
            assert_eq!(status, 200);
            assert_eq!(report["valid"], true, "{report}");
        }
        let logged = logged_decisions(a.addr).await;
        let missing = received.iter().filter(|id| !logged.contains(*id)).count();
        assert_eq!(missing, 0, "{missing} of {} answered decisions missing", received.len());
        eprintln!(
            "two servers, one killed: {} answered, {} logged",
            received.len(),
            logged.len()
        );
    }

    /// A server started with a policy file that is an older version than
    /// the one another server reloaded serves the newer one (it joins);
    /// one started with a file never stored makes it the newest for all.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_starting_server_joins_at_the_newest_stored_policy() {
        let Some(db) = database("e2e_join") else { return };
        let dir = setup();
        let a = start_on(dir.path(), &db, &["--no-watch", "--node-id", "node-a"]);
        let newer = common::POLICY.replace("version: \"t1\"", "version: \"t2\"");
        let (status, reloaded) = call(
            a.addr,
            "POST",
            "/api/v1/policy/reload",
            Some(&json!({"policy_content": newer})),
        )
        .await;
        assert_eq!(status, 200, "{reloaded}");
        // `b`'s file is still `t1`, the version stored first.
        let b = start_on(dir.path(), &db, &["--no-watch", "--node-id", "node-b"]);
        let (_, current) = call(b.addr, "GET", "/api/v1/policy/current", None).await;
        assert_eq!(current["version"], "t2", "{current}");
        // A file no server has loaded is a new version, for everyone.
        let newest = common::POLICY.replace("version: \"t1\"", "version: \"t3\"");
        std::fs::write(dir.path().join("policies.yml"), newest).unwrap();
        let c = start_on(dir.path(), &db, &["--no-watch", "--node-id", "node-c"]);
        for server in [&c, &a, &b] {
            let mut version = Value::Null;
            for _ in 0..40 {
                version = call(server.addr, "GET", "/api/v1/policy/current", None).await.1["version"].clone();
                if version == "t3" {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            assert_eq!(version, "t3");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_second_server_on_the_same_database_is_refused() {
        let Some(db) = database("e2e_second") else { return };
        let dir = setup();
        let server = start_on(dir.path(), &db, &["--no-watch"]);
        let (status, _) = call(
            server.addr,
            "POST",
            "/api/v1/enforce",
            Some(&json!({"tool_name": "read_file", "tool_args": {"path": "/tmp"}, "session_id": "s"})),
        )
        .await;
        assert_eq!(status, 200);
        let Db::Pg(url) = &db else { unreachable!() };
        let out = Command::new(env!("CARGO_BIN_EXE_tame-server"))
            .arg("--policy")
            .arg(dir.path().join("policies.yml"))
            .args(["--db", url.as_str(), "--addr", "127.0.0.1:0", "--no-watch"])
            .env("TAME_AUDIT_SECRET", PG_SECRET)
            .output()
            .unwrap();
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("another tame server is writing chain"), "{err}");
        assert!(err.contains("--node-id"), "{err}");
    }
}

/// The log ids of the decisions in the log, as the server at `addr` exports it.
async fn logged_decisions(addr: SocketAddr) -> HashSet<String> {
    let mut s = connect(addr).await.unwrap();
    let (_, export) = send(&mut s, "GET", "/api/v1/audit/export", None).await.unwrap();
    export
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|v| v["kind"] == "decision")
        .map(|v| v["ref_id"].as_str().unwrap().to_string())
        .collect()
}

async fn sigkill_mid_load_on(db: &Db, flags: &[&str]) {
    let dir = setup();
    let mut server = start_on(dir.path(), db, flags);
    let addr = server.addr;
    let mut workers = Vec::new();
    for w in 0..8 {
        workers.push(tokio::spawn(async move {
            let mut got = Vec::new();
            let Some(mut s) = connect(addr).await else { return got };
            for i in 0.. {
                let body = json!({"tool_name": "read_file", "tool_args": {"path": format!("/tmp/{w}/{i}")}, "session_id": format!("s{w}")});
                match send(&mut s, "POST", "/api/v1/enforce", Some(&body)).await {
                    Some((200, text)) => {
                        let v: Value = serde_json::from_str(&text).unwrap();
                        got.push(v["log_id"].as_str().unwrap().to_string());
                    }
                    Some((status, text)) => panic!("unexpected {status}: {text}"),
                    None => break,
                }
            }
            got
        }));
    }
    // Let the load run, then kill the server without warning.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    server.child.kill().unwrap(); // SIGKILL on Unix
    server.child.wait().unwrap();
    let mut received = Vec::new();
    for w in workers {
        received.extend(w.await.unwrap());
    }
    assert!(received.len() > 100, "too little load: {}", received.len());
    drop(server);

    let server = start_on(dir.path(), db, flags);
    let (status, report) = call(server.addr, "GET", "/api/v1/audit/verify", None).await;
    assert_eq!(status, 200);
    assert_eq!(report["valid"], true, "{report}");
    let logged = logged_decisions(server.addr).await;
    let missing: Vec<&String> = received.iter().filter(|id| !logged.contains(*id)).collect();
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged decisions missing",
        missing.len(),
        received.len()
    );
    eprintln!("sigkill: {} acknowledged, {} logged", received.len(), logged.len());
}

#[tokio::test]
async fn sigterm_drains_and_flushes() {
    let dir = setup();
    let mut server = start(dir.path(), &["--no-watch"]);
    let (_, r) = call(
        server.addr,
        "POST",
        "/api/v1/enforce",
        Some(&json!({"tool_name": "read_file", "tool_args": {"path": "/tmp"}, "session_id": "s"})),
    )
    .await;
    assert_eq!(r["decision"], "allow");
    let status = Command::new("kill")
        .args(["-TERM", &server.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    let exit = loop {
        if let Some(exit) = server.child.try_wait().unwrap() {
            break exit;
        }
        assert!(Instant::now() < deadline, "server did not stop on SIGTERM");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(exit.success(), "{exit:?}");
    let db = rusqlite::Connection::open(dir.path().join("tame.db")).unwrap();
    let n: i64 = db
        .query_row("SELECT COUNT(*) FROM audit WHERE kind = 'decision'", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 1);
}

async fn wait_for_version(addr: SocketAddr, version: &str) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        let (_, cur) = call(addr, "GET", "/api/v1/policy/current", None).await;
        if cur["version"] == version {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

#[tokio::test]
async fn sighup_reloads_and_a_broken_file_keeps_the_running_policy() {
    let dir = setup();
    let server = start(dir.path(), &["--no-watch"]);
    let path = dir.path().join("policies.yml");
    std::fs::write(&path, "version: \"bad\"\nrules:\n  - name: r\n    action: nope\n").unwrap();
    Command::new("kill")
        .args(["-HUP", &server.child.id().to_string()])
        .status()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (_, cur) = call(server.addr, "GET", "/api/v1/policy/current", None).await;
    assert_eq!(cur["version"], "t1");
    std::fs::write(&path, common::POLICY.replace("\"t1\"", "\"t2\"")).unwrap();
    Command::new("kill")
        .args(["-HUP", &server.child.id().to_string()])
        .status()
        .unwrap();
    assert!(wait_for_version(server.addr, "t2").await);
    let (_, versions) = call(server.addr, "GET", "/api/v1/policy/versions", None).await;
    let list: Vec<&str> = versions["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["version"].as_str().unwrap())
        .collect();
    assert_eq!(list, ["t1", "t2"]);
}

#[tokio::test]
async fn file_changes_reload_the_policy() {
    let dir = setup();
    let server = start(dir.path(), &[]);
    std::fs::write(
        dir.path().join("policies.yml"),
        common::POLICY.replace("\"t1\"", "\"t3\""),
    )
    .unwrap();
    assert!(
        wait_for_version(server.addr, "t3").await,
        "the file watcher did not reload"
    );
}

#[tokio::test]
async fn a_policy_replaced_by_rename_is_reloaded() {
    // How editors and config tools save: a new file renamed over the old.
    let dir = setup();
    let server = start(dir.path(), &[]);
    let tmp = dir.path().join(".policies.yml.tmp");
    std::fs::write(&tmp, common::POLICY.replace("\"t1\"", "\"t4\"")).unwrap();
    std::fs::rename(&tmp, dir.path().join("policies.yml")).unwrap();
    assert!(
        wait_for_version(server.addr, "t4").await,
        "a policy renamed into place was not reloaded"
    );
}

#[cfg(unix)]
#[tokio::test]
async fn a_policy_behind_a_swapped_symlink_is_reloaded() {
    // A Kubernetes ConfigMap volume: `policies.yml -> ..data/policies.yml`,
    // and an update points `..data` at a new directory; the file named
    // policies.yml is never written.
    use std::os::unix::fs::symlink;
    let dir = tempfile::tempdir().unwrap();
    let v1 = dir.path().join("..2026_11_21_v1");
    std::fs::create_dir(&v1).unwrap();
    std::fs::write(v1.join("policies.yml"), common::POLICY).unwrap();
    symlink("..2026_11_21_v1", dir.path().join("..data")).unwrap();
    symlink("..data/policies.yml", dir.path().join("policies.yml")).unwrap();
    let server = start(dir.path(), &[]);
    let v2 = dir.path().join("..2026_11_21_v2");
    std::fs::create_dir(&v2).unwrap();
    std::fs::write(v2.join("policies.yml"), common::POLICY.replace("\"t1\"", "\"t5\"")).unwrap();
    symlink("..2026_11_21_v2", dir.path().join("..data_tmp")).unwrap();
    std::fs::rename(dir.path().join("..data_tmp"), dir.path().join("..data")).unwrap();
    assert!(
        wait_for_version(server.addr, "t5").await,
        "a ConfigMap-style symlink swap was not reloaded"
    );
}

#[test]
fn an_open_api_refuses_non_loopback_addresses() {
    let dir = setup();
    let out = Command::new(env!("CARGO_BIN_EXE_tame-server"))
        .arg("--policy")
        .arg(dir.path().join("policies.yml"))
        .arg("--db")
        .arg(dir.path().join("tame.db"))
        .args(["--addr", "0.0.0.0:0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("without API keys"), "{err}");
}

#[test]
fn a_policy_that_does_not_compile_stops_startup_with_diagnostics() {
    let dir = setup();
    std::fs::write(
        dir.path().join("policies.yml"),
        "rules:\n  - name: r\n    action: deny\n    condition: 'nosuch_root.x'\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_tame-server"))
        .arg("--policy")
        .arg(dir.path().join("policies.yml"))
        .arg("--db")
        .arg(dir.path().join("tame.db"))
        .args(["--addr", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("does not compile") && err.contains("nosuch_root"), "{err}");
}

const LABEL_POLICY: &str = r#"
version: "labels1"
default: allow
rules:
  - name: no_email_after_secret
    action: deny
    tools: [send_email]
    condition: '"secret" in session.labels'
    reason: "a secret was read in this session"
"#;

#[tokio::test]
async fn session_labels_hold_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("policies.yml"), LABEL_POLICY).unwrap();
    let email =
        |session: &str| json!({"tool_name": "send_email", "session_id": session, "tool_args": {"to": "a@example.com"}});
    {
        let server = start(dir.path(), &["--no-watch"]);
        let (_, j) = call(
            server.addr,
            "POST",
            "/api/v1/enforce",
            Some(&json!({"tool_name": "read_file", "session_id": "s1", "tool_args": {"path": "/k"}})),
        )
        .await;
        assert_eq!(j["decision"], "allow", "{j}");
        let log_id = j["log_id"].as_str().unwrap().to_string();
        let result = json!({"status": "success", "result": {"content": "aws_key=AKIAIOSFODNN7EXAMPLE"}});
        let (status, r) = call(
            server.addr,
            "POST",
            &format!("/api/v1/enforce/s1/result?log_id={log_id}"),
            Some(&result),
        )
        .await;
        assert_eq!(status, 200, "{r}");
        assert!(r["labels"].as_array().unwrap().contains(&json!("secret")), "{r}");
        let (_, j) = call(server.addr, "POST", "/api/v1/enforce", Some(&email("s1"))).await;
        assert_eq!(j["rule_name"], "no_email_after_secret", "{j}");
        // Dropping the server kills it (SIGKILL): the acknowledged result is on disk.
    }
    let server = start(dir.path(), &["--no-watch"]);
    let (_, j) = call(server.addr, "POST", "/api/v1/enforce", Some(&email("s1"))).await;
    assert_eq!(j["decision"], "deny", "{j}");
    assert_eq!(j["rule_name"], "no_email_after_secret");
    // Another session never saw the secret.
    let (_, j) = call(server.addr, "POST", "/api/v1/enforce", Some(&email("s2"))).await;
    assert_eq!(j["decision"], "allow", "{j}");
    // The stored result is redacted; the label record verifies.
    let (_, report) = call(server.addr, "GET", "/api/v1/audit/verify", None).await;
    assert_eq!(report["valid"], true, "{report}");
    let mut s = connect(server.addr).await.unwrap();
    let (_, export) = send(&mut s, "GET", "/api/v1/audit/export", None).await.unwrap();
    assert!(!export.contains("AKIAIOSFODNN7EXAMPLE"));
    assert!(export.contains("\"labels\":[\"secret\""), "{export}");
}
