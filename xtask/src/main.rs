//! `cargo xtask`: Tame's build, CI, benchmark and fuzz tasks.
//!
//! Each step is echoed before it runs, and the first failing step stops the
//! task with its exit code. Usage: `cargo xtask <ci|test|build|bench|fuzz|load|lint|docs|scenarios>`.

use std::env;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

mod load;
mod scenarios;

const USAGE: &str = "\
usage: cargo xtask <task> [args]

tasks:
  ci              fmt check, clippy (warnings denied), every test (Rust, PostgreSQL
                  store, Python, MCP)
  test            every test, without the fmt and clippy gates
  lint            fmt check and clippy only
  build           release builds of every frontend: the `tame` binary (CLI + server),
                  the Python wheel (maturin), and the fuzz targets
  bench [ARGS]    criterion benchmarks (extra ARGS go to `cargo bench`)
  fuzz [TARGET] [SECONDS]
                  build the fuzz targets; with TARGET, run it for SECONDS (default 60)
  docs [--check]  write docs/language.md (the condition language's reference) from the
                  function registry; --check fails when the file is not up to date
  scenarios [--check | --write] [--tame BINARY]
                  replay every session of policies/scenarios/ through `tame eval`: per
                  scenario, benign sessions allowed without a human, attacks denied, sent
                  to a human, missed; --write puts the table in README.md, --check fails
                  on a benign session not allowed, an unlisted miss or a stale table
  load [ARGS]     the server's load test: /api/v1/enforce (audit logging on) and the
                  trivial /health of one server in one run, over loopback; ARGS go to
                  the load generator (e.g. --connections 64 --seconds 10, --addr HOST:PORT)
  load --external [ARGS]
                  a release `tame serve` driven by an external load generator (wrk,
                  installed by scripts/load-tool.sh) with distinct calls: p50, p90, p99,
                  p99.9, max and decisions/s beside the in-process figures, bytes per
                  decision (`cargo xtask load --external --help` lists ARGS)
";

type Result<T = ()> = std::result::Result<T, String>;

fn main() -> ExitCode {
    let args: Vec<String> = env::args().skip(1).collect();
    let Some(task) = args.first() else {
        eprint!("{USAGE}");
        return ExitCode::from(2);
    };
    let rest = args.get(1..).unwrap_or_default();
    let result = match task.as_str() {
        "ci" => lint().and_then(|()| test()),
        "test" => test(),
        "lint" => lint(),
        "build" => build(),
        "bench" => bench(rest),
        "fuzz" => fuzz(rest),
        "load" => load(rest),
        "docs" => docs(rest),
        "scenarios" => scenarios::run(rest, tame_binary),
        "help" | "-h" | "--help" => {
            print!("{USAGE}");
            Ok(())
        }
        other => Err(format!("unknown task `{other}`\n\n{USAGE}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("xtask: {message}");
            ExitCode::FAILURE
        }
    }
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// Runs a command in the workspace root, echoing it first.
fn run(program: &str, args: &[&str]) -> Result {
    run_env(program, args, &[])
}

fn run_env(program: &str, args: &[&str], envs: &[(&str, &str)]) -> Result {
    let shown: Vec<String> = envs.iter().map(|(k, v)| format!("{k}={v}")).collect();
    eprintln!(
        "\n$ {}{} {}",
        if shown.is_empty() {
            String::new()
        } else {
            shown.join(" ") + " "
        },
        program,
        args.join(" ")
    );
    let status = Command::new(program)
        .args(args)
        .envs(envs.iter().copied())
        .current_dir(root())
        .status()
        .map_err(|e| format!("cannot run `{program}`: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("`{program} {}` failed ({status})", args.join(" ")))
    }
}

fn has(program: &str, probe: &[&str]) -> bool {
    Command::new(program)
        .args(probe)
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

fn lint() -> Result {
    run("cargo", &["fmt", "--all", "--check"])?;
    run(
        "cargo",
        &["clippy", "--workspace", "--all-targets", "--", "-D", "warnings"],
    )
}

/// nextest filter of every test but the PostgreSQL ones (`pg::` in their path).
const PG_TESTS_EXCLUDED: &str = "not test(/(^|::)pg::/)";

fn test() -> Result {
    // Rust: every crate's unit, integration and doc tests (debug build, one
    // target dir), but the PostgreSQL ones (`pg::`): they run below, with a
    // server.
    if has("cargo", &["nextest", "--version"]) {
        run(
            "cargo",
            &[
                "nextest",
                "run",
                "--workspace",
                "--no-fail-fast",
                "-E",
                PG_TESTS_EXCLUDED,
            ],
        )?;
    } else {
        run(
            "cargo",
            &["test", "--workspace", "--no-fail-fast", "--", "--skip", "pg::"],
        )?;
    }
    // The store's and the server's tests against PostgreSQL: a throwaway
    // server in target/pg (installed with apt-get when missing).
    run("bash", &["scripts/pg-test.sh"])?;
    run("cargo", &["test", "--workspace", "--doc"])?;
    // The policies shipped in policies/ must check and pass their own tests.
    // Use the `tame` the workspace test run just built: `cargo run -p
    // tame-cli` would unify features differently and link it all over again.
    let tame = tame_binary()?;
    let tame = tame.to_string_lossy();
    run(&tame, &["check", "policies/"])?;
    run(&tame, &["test", "policies/"])?;
    // The scenarios' sessions: benign ones allowed, attacks not missed
    // unless listed as known misses, README's table current.
    scenarios::run(
        &[String::from("--check"), String::from("--tame"), tame.to_string()],
        tame_binary,
    )?;
    // Python package and the integrations that need Python packages.
    for script in ["scripts/py-test.sh", "crates/tame-integrations/scripts/mcp-test.sh"] {
        if root().join(script).exists() {
            run("bash", &[script])?;
        }
    }
    Ok(())
}

/// The debug `tame` binary of this workspace, built if it is missing.
fn tame_binary() -> Result<PathBuf> {
    let target = env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"));
    let bin = target.join("debug").join("tame");
    if !bin.exists() {
        run("cargo", &["build", "-p", "tame-cli", "--bin", "tame"])?;
    }
    Ok(bin)
}

fn build() -> Result {
    run("cargo", &["build", "--release", "-p", "tame-cli"])?;
    if root().join("scripts/py-build.sh").exists() {
        run("bash", &["scripts/py-build.sh"])?;
    }
    fuzz_build()
}

fn bench(args: &[String]) -> Result {
    let mut argv = vec!["bench", "-p", "tame-benches"];
    argv.extend(args.iter().map(String::as_str));
    run("cargo", &argv)
}

/// Writes (or with `--check`, compares) the language reference generated
/// from the function registry.
fn docs(args: &[String]) -> Result {
    let check = match args {
        [] => false,
        [flag] if flag == "--check" => true,
        _ => return Err(format!("usage: cargo xtask docs [--check]\n\n{USAGE}")),
    };
    let path = root().join("docs").join("language.md");
    let text = tame_lang::reference::language_reference(&tame_lang::Registry::builtins());
    let current = std::fs::read_to_string(&path).unwrap_or_default();
    if check {
        eprintln!("\n$ compare {} with the registry", path.display());
        return if current == text {
            Ok(())
        } else {
            Err(format!("{} is out of date: run `cargo xtask docs`", path.display()))
        };
    }
    eprintln!("\n$ write {}", path.display());
    if current == text {
        eprintln!("up to date");
        return Ok(());
    }
    std::fs::create_dir_all(root().join("docs")).map_err(|e| format!("cannot create docs/: {e}"))?;
    std::fs::write(&path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

fn load(args: &[String]) -> Result {
    if let Some(at) = args.iter().position(|a| a == "--external") {
        let mut rest = args.to_vec();
        rest.remove(at);
        return match load::external(&rest) {
            Err(usage) if usage.starts_with("usage:") => {
                print!("{usage}");
                Ok(())
            }
            other => other,
        };
    }
    let mut argv = vec!["run", "--release", "-p", "tame-server", "--example", "load", "--"];
    argv.extend(args.iter().map(String::as_str));
    run("cargo", &argv)
}

/// cargo-fuzz needs nightly-only compiler flags; the stable toolchain accepts
/// them with RUSTC_BOOTSTRAP, which is how the targets build here.
fn ensure_cargo_fuzz() -> Result {
    if !has("cargo", &["fuzz", "--version"]) {
        run("cargo", &["install", "cargo-fuzz", "--locked"])?;
    }
    Ok(())
}

fn fuzz_build() -> Result {
    ensure_cargo_fuzz()?;
    run_env(
        "cargo",
        &["fuzz", "build", "--fuzz-dir", "fuzz"],
        &[("RUSTC_BOOTSTRAP", "1")],
    )
}

fn fuzz(args: &[String]) -> Result {
    fuzz_build()?;
    let Some(target) = args.first() else { return Ok(()) };
    let seconds = args.get(1).map(String::as_str).unwrap_or("60");
    let limit = format!("-max_total_time={seconds}");
    run_env(
        "cargo",
        &["fuzz", "run", "--fuzz-dir", "fuzz", target, "--", &limit],
        &[("RUSTC_BOOTSTRAP", "1")],
    )
}
