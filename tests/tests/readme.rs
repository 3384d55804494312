//! The README's "30 seconds" example runs as written: its `policies.yml`
//! block is saved to a scratch directory, each `$ ` line of its console
//! block is run there by `sh` (with the real `tame` first on `PATH`), and
//! what a command prints is compared with the lines the README shows below
//! it. The `curl` line runs against a real `tame serve` of the same policy
//! (on a free port instead of 8000) when `curl` is installed.

#![allow(
    clippy::panic,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    reason = "test code: a failed check panics with a message, which is how a test fails"
)]

use std::path::Path;
use std::process::Command;

use serde_json::Value;
use tame_e2e::{Server, decision_fields, engine_eval, root, tame_bin};
use tame_engine::Policy;

/// The fenced blocks of one README section: (language, lines).
fn section_blocks(readme: &str, heading: &str) -> Vec<(String, Vec<String>)> {
    let mut blocks = Vec::new();
    let mut in_section = false;
    let mut current: Option<(String, Vec<String>)> = None;
    for line in readme.lines() {
        if current.is_none() && line.starts_with("## ") {
            in_section = line.trim_end() == heading;
            continue;
        }
        if !in_section {
            continue;
        }
        if let Some(fence) = line.strip_prefix("```") {
            match current.take() {
                Some(block) => blocks.push(block),
                None => current = Some((fence.trim().to_string(), Vec::new())),
            }
        } else if let Some((_, lines)) = current.as_mut() {
            lines.push(line.to_string());
        }
    }
    blocks
}

/// A console block as (command, expected output lines); a trailing `\`
/// continues a command on the next line.
fn console_commands(lines: &[String]) -> Vec<(String, Vec<String>)> {
    let mut out: Vec<(String, Vec<String>)> = Vec::new();
    let mut continuing = false;
    for line in lines {
        if continuing {
            if let Some((cmd, _)) = out.last_mut() {
                cmd.push('\n');
                cmd.push_str(line);
            }
        } else if let Some(cmd) = line.strip_prefix("$ ") {
            out.push((cmd.to_string(), Vec::new()));
        } else if let Some((_, expected)) = out.last_mut() {
            expected.push(line.clone());
        }
        continuing = line.ends_with('\\');
    }
    out
}

fn sh(dir: &Path, command: &str) -> std::process::Output {
    let bin_dir = tame_bin().parent().expect("the binary's directory");
    let path = std::env::join_paths(
        std::iter::once(bin_dir.to_path_buf())
            .chain(std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())),
    )
    .expect("PATH");
    // Bounded: the README's commands finish in well under a second.
    assert_cmd::Command::new("sh")
        .arg("-c")
        .arg(command)
        .current_dir(dir)
        .env("PATH", path)
        .env("NO_COLOR", "1")
        .env_remove("TAME_API_URL")
        .env_remove("TAME_API_KEY")
        .timeout(tame_e2e::COMMAND_TIMEOUT)
        .output()
        .unwrap_or_else(|e| panic!("cannot run `{command}`: {e}"))
}

fn has_curl() -> bool {
    Command::new("curl")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn readme_thirty_second_example_runs_as_written() {
    let readme = std::fs::read_to_string(root().join("README.md")).expect("read README.md");
    let blocks = section_blocks(&readme, "## 30 seconds");
    let (_, yaml) = blocks
        .iter()
        .find(|(lang, _)| lang == "yaml")
        .expect("a yaml block in the README's `## 30 seconds`");
    let (_, console) = blocks
        .iter()
        .find(|(lang, _)| lang == "console")
        .expect("a console block in the README's `## 30 seconds`");

    // The block names its file in its first line (`# policies.yml`).
    let file_name = yaml
        .first()
        .and_then(|l| l.strip_prefix("# "))
        .map(str::trim)
        .filter(|n| n.ends_with(".yml") || n.ends_with(".yaml"))
        .expect("the yaml block starts with `# FILE.yml`");
    let dir = tempfile::tempdir().expect("temp dir");
    let policy_path = dir.path().join(file_name);
    std::fs::write(&policy_path, yaml.join("\n") + "\n").expect("write the policy");
    let policy =
        Policy::from_file(&policy_path).unwrap_or_else(|e| panic!("the README's policy does not compile:\n{e}"));

    let commands = console_commands(console);
    assert!(
        commands.iter().any(|(c, _)| c.contains("tame eval")),
        "the console block has a `tame eval` line: {commands:?}"
    );
    let mut compared = 0;
    let mut server: Option<Server> = None;
    for (command, expected) in &commands {
        let mut command = command.clone();
        let is_curl = command.trim_start().starts_with("curl ");
        if is_curl {
            if !has_curl() {
                eprintln!("curl is not installed: not running `{command}`");
                continue;
            }
            let running = server.get_or_insert_with(|| Server::start(&policy_path, &dir.path().join("tame.db")));
            let host = running.url.trim_start_matches("http://").to_string();
            assert!(
                command.contains("localhost:8000"),
                "the README's curl talks to localhost:8000: {command}"
            );
            command = command.replace("localhost:8000", &host);
        }
        let out = sh(dir.path(), &command);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "`{command}` failed ({:?}):\n{stdout}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        if is_curl {
            // The README shows no answer; it must be the engine's decision
            // for the same payload.
            let payload = command
                .split("-d '")
                .nth(1)
                .and_then(|rest| rest.split('\'').next())
                .expect("the curl line sends `-d '{...}'`");
            let call: Value = serde_json::from_str(payload).expect("the curl payload is JSON");
            let answer: Value =
                serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("curl printed no JSON ({e}): {stdout}"));
            let engine = engine_eval(&policy, &[call]);
            assert_eq!(decision_fields(&answer), engine[0], "{command}");
            compared += 1;
        } else if !expected.is_empty() {
            let printed: Vec<&str> = stdout.lines().collect();
            let shown: Vec<&str> = expected.iter().map(String::as_str).collect();
            assert_eq!(printed, shown, "`{command}` prints what the README shows");
            compared += 1;
        }
    }
    assert!(compared >= 1, "no README output was compared");
    if let Some(server) = server {
        server.stop();
    }
}

#[test]
fn console_blocks_are_split_into_commands_and_outputs() {
    let lines: Vec<String> = ["$ a", "out 1", "out 2", "$ b \\", "    --flag", "$ c"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let cmds = console_commands(&lines);
    assert_eq!(cmds.len(), 3);
    assert_eq!(
        cmds[0],
        ("a".to_string(), vec!["out 1".to_string(), "out 2".to_string()])
    );
    assert_eq!(cmds[1], ("b \\\n    --flag".to_string(), vec![]));
    assert_eq!(cmds[2].0, "c");
    let readme = "## A\n```yaml\nx\n```\n## B\n```console\n$ y\n```\n```yaml\nz\n```\n";
    let blocks = section_blocks(readme, "## B");
    assert_eq!(
        blocks,
        vec![
            ("console".into(), vec!["$ y".into()]),
            ("yaml".into(), vec!["z".into()])
        ]
    );
}
