//! Helpers shared by the CLI's integration tests: the repository's
//! `policies/`, the `tame` binary with a clean environment, and its output.
#![allow(dead_code, reason = "each test binary uses some of the helpers")]

use std::path::{Path, PathBuf};

use assert_cmd::Command;
use serde_json::Value;

pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

pub fn policies_dir() -> PathBuf {
    repo().join("policies")
}

/// Every file directly in `policies/` with one of the extensions.
pub fn files_in_policies(pred: impl Fn(&str) -> bool) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(policies_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file() && pred(&p.file_name().unwrap().to_string_lossy()))
        .collect();
    files.sort();
    files
}

/// Every policy file in `policies/` and its folders, as `tame check
/// policies/` expands the directory.
pub fn policy_files_recursive() -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut dirs = vec![policies_dir()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(dir).unwrap() {
            let p = entry.unwrap().path();
            let name = p.file_name().unwrap().to_string_lossy().to_string();
            if p.is_dir() {
                dirs.push(p);
            } else if is_yaml(&name) && !name.contains(".tests.") {
                files.push(p);
            }
        }
    }
    files.sort();
    files
}

pub fn is_yaml(name: &str) -> bool {
    name.ends_with(".yml") || name.ends_with(".yaml")
}

/// Every policy file in `policies/` (not the test files).
pub fn policy_files() -> Vec<PathBuf> {
    files_in_policies(|n| is_yaml(n) && !n.contains(".tests."))
}

pub fn tame() -> Command {
    let mut cmd = Command::cargo_bin("tame").unwrap();
    cmd.env_remove("TAME_API_URL")
        .env_remove("TAME_API_KEY")
        .env_remove("TAME_POLICY")
        .env_remove("TAME_ADDR")
        .env_remove("TAME_DB")
        .env("NO_COLOR", "1");
    cmd
}

pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

pub fn run(cmd: &mut Command) -> Run {
    let out = cmd.output().unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

pub fn json_lines(text: &str) -> Vec<Value> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l}: {e}")))
        .collect()
}

pub fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

// ---------------------------------------------------------------- policies/
