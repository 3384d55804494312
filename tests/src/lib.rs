//! Helpers for the end-to-end tests: the real `tame` binary, a `tame serve`
//! process on a free loopback port (killed on drop), the sample calls, and
//! the three ways of getting a decision (engine facade, `tame eval`,
//! `POST /api/v1/enforce`).

#![allow(
    clippy::panic,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    reason = "test code: a failed check panics with a message, which is how a test fails"
)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};
use tame_enforce::{CallStep, SessionState};
use tame_engine::{Policy, Request};

/// How long one `tame` command may run before the test fails.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a server may take to print its `listening on` line.
pub const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long one HTTP request may take.
pub const HTTP_TIMEOUT: Duration = Duration::from_secs(20);

/// The workspace root (the parent of this crate).
pub fn root() -> PathBuf {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    here.parent().unwrap_or(here).to_path_buf()
}

/// The real `tame` binary of `tame-cli`, found or built once per test
/// process.
///
/// The binary lives in another package, so Cargo does not hand its path to
/// this crate's tests (`CARGO_BIN_EXE_tame` exists only in `tame-cli`). In
/// order:
///
/// 1. `TAME_BIN`, when set (e.g. to test a release build).
/// 2. `tame` beside this test's own profile directory (`target/debug`),
///    when it is newer than every source and manifest of the crates: that
///    is the binary `cargo test --workspace` / `cargo nextest run
///    --workspace` built for `tame-cli`'s tests in this very run. Using it
///    as is matters: a nested `cargo build -p tame-cli` resolves features
///    for fewer packages than `--workspace` does, so it would rebuild the
///    binary and replace it under `tame-cli`'s tests running in parallel.
/// 3. Otherwise (`cargo test -p tame-e2e` from a clean clone, or sources
///    edited since) escargot runs `cargo build -p tame-cli --bin tame` in the
///    same profile and target directory and reads the artifact's path from
///    Cargo's JSON messages.
pub fn tame_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(bin) = std::env::var_os("TAME_BIN") {
            return PathBuf::from(bin);
        }
        if let Some(bin) = fresh_sibling_binary() {
            eprintln!("tame-e2e: using {} (newer than every source)", bin.display());
            return bin;
        }
        let run = escargot::CargoBuild::new()
            .package("tame-cli")
            .bin("tame")
            .current_release()
            .manifest_path(root().join("Cargo.toml"))
            .run()
            .unwrap_or_else(|e| panic!("cannot build the `tame` binary (cargo build -p tame-cli --bin tame): {e}"));
        eprintln!("tame-e2e: built {}", run.path().display());
        run.path().to_path_buf()
    })
}

/// `target/<profile>/tame` when it was built after the last change to any
/// crate's sources or manifests.
fn fresh_sibling_binary() -> Option<PathBuf> {
    // This test runs as target/<profile>/deps/NAME-HASH.
    let exe = std::env::current_exe().ok()?;
    let profile_dir = exe.parent()?.parent()?;
    let bin = profile_dir.join(format!("tame{}", std::env::consts::EXE_SUFFIX));
    let built = std::fs::metadata(&bin).and_then(|m| m.modified()).ok()?;
    let root = root();
    let mut newest = std::time::SystemTime::UNIX_EPOCH;
    for file in ["Cargo.toml", "Cargo.lock"] {
        newest = newest.max(modified(&root.join(file))?);
    }
    let crates = std::fs::read_dir(root.join("crates")).ok()?;
    for krate in crates.flatten() {
        newest = newest.max(newest_under(&krate.path())?);
    }
    (built > newest).then_some(bin)
}

fn modified(path: &Path) -> Option<std::time::SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// The newest modification time below a crate directory, leaving out what
/// does not go into its binary (tests, benches, examples, build output).
fn newest_under(dir: &Path) -> Option<std::time::SystemTime> {
    let mut newest = modified(dir)?;
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let path = entry.path();
        let name = entry.file_name();
        if path.is_dir() {
            if matches!(
                name.to_str(),
                Some("tests" | "benches" | "examples" | "target" | "fuzz" | "python")
            ) {
                continue;
            }
            newest = newest.max(newest_under(&path)?);
        } else {
            newest = newest.max(modified(&path)?);
        }
    }
    Some(newest)
}

/// `tame` with a time limit and no colours.
pub fn tame() -> assert_cmd::Command {
    let mut cmd = assert_cmd::Command::new(tame_bin());
    cmd.timeout(COMMAND_TIMEOUT)
        .env("NO_COLOR", "1")
        .env_remove("TAME_API_URL")
        .env_remove("TAME_API_KEY")
        .current_dir(root());
    cmd
}

/// The four fields every frontend reports for a decision, in one shape:
/// `{decision, rule_name, reason, policy_version}`.
pub fn decision_fields(v: &Value) -> Value {
    json!({
        "decision": v.get("decision").cloned().unwrap_or(Value::Null),
        "rule_name": v.get("rule_name").cloned().unwrap_or(Value::Null),
        "reason": v.get("reason").cloned().unwrap_or(Value::Null),
        "policy_version": v.get("policy_version").cloned().unwrap_or(Value::Null),
    })
}

/// Reads a JSON-lines file of calls (blank lines skipped).
pub fn read_calls(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l).unwrap_or_else(|e| panic!("{}:{}: invalid JSON: {e}", path.display(), i + 1))
        })
        .collect()
}

/// Decisions straight from the engine facade over the one session state
/// (`tame_enforce::SessionState`), with the session semantics `tame eval`
/// documents: calls sharing a `session_id` share facts; a
/// `session` object on a line replaces that session's facts before the
/// call; a call without a `session_id` starts from empty facts plus its
/// own `session`; windows are measured back from the call's `now`; only
/// allowed calls count (denied calls and calls waiting for approval did
/// not run).
pub fn engine_eval(policy: &Policy, calls: &[Value]) -> Vec<Value> {
    let mut sessions: HashMap<String, SessionState> = HashMap::new();
    calls
        .iter()
        .map(|call| {
            let mut obj = call.as_object().cloned().unwrap_or_default();
            let session = obj.remove("session");
            let now = obj.remove("now");
            let mut request = Request::from_call_json(&Value::Object(obj))
                .unwrap_or_else(|e| panic!("the engine rejects the call {call}: {e}"));
            if let Some(now) = now {
                request.now = now
                    .as_str()
                    .and_then(|s| s.parse::<jiff::Timestamp>().ok())
                    .unwrap_or_else(|| panic!("bad `now` in {call}"));
            }
            let given = match session {
                None | Some(Value::Null) => None,
                Some(s) => Some(SessionState::from_json(&s).unwrap_or_else(|e| panic!("bad `session` in {call}: {e}"))),
            };
            let mut local;
            let state = match request.session_id.as_deref() {
                Some(id) => {
                    let entry = sessions.entry(id.to_string()).or_default();
                    if let Some(given) = given {
                        *entry = given;
                    }
                    entry
                }
                None => {
                    local = given.unwrap_or_default();
                    &mut local
                }
            };
            let d = policy.evaluate(&request, &state.view(request.now));
            state.record(CallStep::decided(&request, &d));
            json!({
                "decision": d.action.as_str(),
                "rule_name": d.rule_name.as_deref(),
                "reason": &*d.reason,
                "policy_version": &*d.policy_version,
            })
        })
        .collect()
}

/// Decisions from the real `tame eval POLICY -`, the calls on its stdin.
pub fn cli_eval(policy: &Path, calls: &[Value]) -> Vec<Value> {
    let input: String = calls.iter().map(|c| format!("{c}\n")).collect();
    let out = tame()
        .arg("eval")
        .arg(policy)
        .arg("-")
        .write_stdin(input)
        .output()
        .expect("run tame eval");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "tame eval {} failed ({:?}):\n{stdout}\n{}",
        policy.display(),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<Value> = stdout
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            serde_json::from_str(l).unwrap_or_else(|e| panic!("tame eval printed a line that is not JSON ({e}): {l}"))
        })
        .collect();
    assert_eq!(
        lines.len(),
        calls.len(),
        "tame eval printed one line per call:\n{stdout}"
    );
    lines
}

/// Rewrites offline calls into what a live server can be sent, so that all
/// three frontends can be compared like with like:
///
/// - `now` is dropped: the server decides at its own clock (and windows are
///   measured back from it); the offline runs then use the clock too.
/// - A `session` object (offline facts the server cannot be told) becomes
///   real history: for `counts: {tool: n}` n earlier calls of `tool` (with
///   this call's arguments when it is the same tool, else none), for
///   `called: [tool]` one call, all in a session of their own named
///   `<tag>-<index>`. The server, like `tame eval`, counts only the calls it
///   allowed, so the history may leave fewer facts than the offline
///   `session` said (a rate limit stops counting at its limit); every
///   frontend is handed the same history, so they must still agree.
/// - Facts that no call can create (a bare `calls` total, `labels`) are
///   dropped; the second result names each call that lost some. Again the
///   same for every frontend.
pub fn live_calls(calls: &[Value], tag: &str) -> (Vec<Value>, Vec<String>) {
    let mut out = Vec::new();
    let mut dropped_facts = Vec::new();
    for (index, call) in calls.iter().enumerate() {
        let mut obj = call.as_object().cloned().unwrap_or_default();
        obj.remove("now");
        let Some(session) = obj.remove("session").filter(|s| !s.is_null()) else {
            out.push(Value::Object(obj));
            continue;
        };
        let facts = session.as_object().cloned().unwrap_or_default();
        let dropped: Vec<&String> = facts.keys().filter(|k| *k != "counts" && *k != "called").collect();
        if !dropped.is_empty() {
            dropped_facts.push(format!("call {} loses {dropped:?}: {call}", index + 1));
        }
        let session_id = obj
            .get("session_id")
            .and_then(Value::as_str)
            .map_or_else(|| format!("{tag}-{}", index + 1), str::to_string);
        let tool = obj
            .get("tool_name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let mut history: Vec<(String, u64)> = Vec::new();
        if let Some(Value::Object(counts)) = facts.get("counts") {
            history.extend(counts.iter().map(|(t, n)| (t.clone(), n.as_u64().unwrap_or(0))));
        }
        if let Some(Value::Array(called)) = facts.get("called") {
            for t in called.iter().filter_map(Value::as_str) {
                if !history.iter().any(|(h, _)| h == t) {
                    history.push((t.to_string(), 1));
                }
            }
        }
        for (t, n) in history {
            let args = if t == tool {
                obj.get("tool_args").cloned().unwrap_or(json!({}))
            } else {
                json!({})
            };
            for _ in 0..n {
                let mut earlier = Map::new();
                earlier.insert("tool_name".into(), json!(t));
                earlier.insert("tool_args".into(), args.clone());
                earlier.insert("session_id".into(), json!(session_id));
                for key in ["agent_id", "user_id", "metadata"] {
                    if let Some(v) = obj.get(key) {
                        earlier.insert(key.into(), v.clone());
                    }
                }
                out.push(Value::Object(earlier));
            }
        }
        obj.insert("session_id".into(), json!(session_id));
        out.push(Value::Object(obj));
    }
    (out, dropped_facts)
}

/// A `tame serve` process on a free loopback port with its own SQLite
/// database; killed (and waited for) on drop.
#[derive(Debug)]
pub struct Server {
    child: Option<Child>,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// The server's stderr (its log), for failure messages.
    pub log: PathBuf,
    agent: ureq::Agent,
}

impl Server {
    /// Starts `tame serve --policy POLICY --db DB --addr 127.0.0.1:0` and
    /// waits (bounded) for its `listening on` line.
    pub fn start(policy: &Path, db: &Path) -> Server {
        let log = db.with_extension(format!("log.{}", std::process::id()));
        let log_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", log.display()));
        let mut child = Command::new(tame_bin())
            .args(["serve", "--addr", "127.0.0.1:0", "--no-watch", "--policy"])
            .arg(policy)
            .arg("--db")
            .arg(db)
            .env("NO_COLOR", "1")
            .env("TAME_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log_file))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start tame serve: {e}"));
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel::<String>();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(url) = line.trim().strip_prefix("listening on ") {
                    let _ = tx.send(url.to_string());
                }
            }
        });
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(HTTP_TIMEOUT))
            .build()
            .into();
        let mut server = Server {
            child: Some(child),
            url: String::new(),
            log,
            agent,
        };
        match rx.recv_timeout(START_TIMEOUT) {
            Ok(url) => server.url = url,
            Err(_) => {
                let status = server.child.as_mut().and_then(|c| c.try_wait().ok().flatten());
                panic!(
                    "tame serve did not print `listening on` within {START_TIMEOUT:?} (exit: {status:?}); its log:\n{}",
                    server.log_text()
                );
            }
        }
        server
    }

    /// The server's log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `POST path` with a JSON body: the status and the JSON answer.
    pub fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        let url = format!("{}{path}", self.url);
        let mut resp = self
            .agent
            .post(&url)
            .send_json(body)
            .unwrap_or_else(|e| panic!("POST {url}: {e}"));
        let status = resp.status().as_u16();
        let text = resp
            .body_mut()
            .read_to_string()
            .unwrap_or_else(|e| panic!("POST {url}: {e}"));
        (
            status,
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("POST {url}: not JSON ({e}): {text}")),
        )
    }

    /// `GET path`: the status and the JSON answer.
    pub fn get(&self, path: &str) -> (u16, Value) {
        let url = format!("{}{path}", self.url);
        let mut resp = self.agent.get(&url).call().unwrap_or_else(|e| panic!("GET {url}: {e}"));
        let status = resp.status().as_u16();
        let text = resp
            .body_mut()
            .read_to_string()
            .unwrap_or_else(|e| panic!("GET {url}: {e}"));
        (
            status,
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("GET {url}: not JSON ({e}): {text}")),
        )
    }

    /// `POST /api/v1/enforce` that must succeed; the whole answer.
    pub fn enforce(&self, call: &Value) -> Value {
        let (status, body) = self.post("/api/v1/enforce", call);
        assert_eq!(status, 200, "enforce {call}: {body}\nserver log:\n{}", self.log_text());
        body
    }

    /// Decisions of the server for each call, in order.
    pub fn eval(&self, calls: &[Value]) -> Vec<Value> {
        calls.iter().map(|c| self.enforce(c)).collect()
    }

    /// Stops the server with SIGTERM (it drains and flushes its audit
    /// writer) and waits for it, killing it after a time limit.
    pub fn stop(mut self) {
        let Some(mut child) = self.child.take() else { return };
        let _ = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            match child.try_wait() {
                Ok(Some(status)) => {
                    assert!(
                        status.success(),
                        "tame serve exited with {status}; log:\n{}",
                        self.log_text()
                    );
                    return;
                }
                Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(25)),
                _ => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!(
                        "tame serve did not stop on SIGTERM within 15 s; log:\n{}",
                        self.log_text()
                    );
                }
            }
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
