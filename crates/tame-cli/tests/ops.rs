//! `tame serve --log-format json` and `tame health` through the real
//! binary: a server's stderr is one JSON object per line (its start, and
//! an access event per request), and `tame health [--ready]` exits 0 while
//! it serves, 1 when nothing answers.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

use std::io::BufRead as _;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use serde_json::Value;

fn tame() -> Command {
    let mut cmd = Command::new(assert_cmd::cargo::cargo_bin("tame"));
    cmd.env_remove("TAME_API_URL").env_remove("TAME_API_KEY");
    cmd
}

/// Runs `cmd`: exit code and stdout.
fn run(cmd: &mut Command) -> (i32, String) {
    let out = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap_or(-1), format!("{stdout}{stderr}"))
}

#[test]
fn json_logs_and_health_probes_of_a_running_server() {
    let dir = tempfile::tempdir().unwrap();
    let policy = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../policies/example.yml");
    let log = dir.path().join("stderr.log");
    let mut child = tame()
        .args([
            "serve",
            "--addr",
            "127.0.0.1:0",
            "--no-watch",
            "--log-format",
            "json",
            "--policy",
        ])
        .arg(&policy)
        .arg("--db")
        .arg(dir.path().join("tame.db"))
        .env_remove("TAME_LOG")
        .env_remove("TAME_LOG_FORMAT")
        .env_remove("TAME_POLICY")
        .env_remove("TAME_ADDR")
        .env_remove("TAME_DB")
        .env_remove("TAME_CONFIG")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let mut first = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    let url = first.trim().strip_prefix("listening on ").unwrap().to_string();

    let (code, out) = run(tame().args(["--api-url", &url, "health"]));
    assert_eq!(code, 0, "{out}");
    assert!(out.contains(&format!("{url}/health")), "{out}");
    let (code, out) = run(tame().args(["--api-url", &url, "--json", "health", "--ready"]));
    assert_eq!(code, 0, "{out}");
    let ready: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(ready["status"], "ready", "{ready}");
    let (code, out) = run(tame().args([
        "--api-url",
        &url,
        "enforce",
        "--tool",
        "read_file",
        "--args",
        r#"{"path": "/etc/passwd"}"#,
    ]));
    assert_eq!(code, 2, "denied: {out}");
    let _ = child.kill();
    let _ = child.wait();

    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    for line in &lines {
        for key in ["timestamp", "level", "message"] {
            assert!(line.get(key).is_some(), "{key} missing: {line}");
        }
    }
    assert!(lines.iter().any(|l| l["message"] == "tame server listening"), "{text}");
    let access = |route: &str| {
        lines
            .iter()
            .find(|l| l["target"] == tame_server::ACCESS_TARGET && l["route"] == route)
            .unwrap_or_else(|| panic!("no access event for {route}: {text}"))
    };
    assert_eq!(access("/health")["status"], 200);
    assert_eq!(access("/ready")["status"], 200);
    let enforce = access("/api/v1/enforce");
    assert_eq!(enforce["method"], "POST");
    assert_eq!(enforce["decision"], "deny");
    assert_eq!(enforce["rule"], "block_system_files");
    assert!(enforce["latency_ms"].is_number(), "{enforce}");

    // Nothing listens: the probe fails with exit code 1.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let (code, out) = run(tame().args([
        "--api-url",
        &format!("http://127.0.0.1:{port}"),
        "--timeout",
        "2",
        "health",
    ]));
    assert_eq!(code, 1, "{out}");
}
