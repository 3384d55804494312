//! `cargo xtask load --external`: the server's load test as users see it.
//! A release `tame serve` (SQLite with `full` durability in a temporary
//! directory by default) is driven by an external load generator, wrk (one
//! client thread, installed by `scripts/load-tool.sh`), with a set of
//! distinct calls generated beforehand (tools, arguments, sessions, agents
//! and users vary); after a warm-up it reports decisions/s, p50, p90, p99,
//! p99.9 and max, beside the in-process load test's figures for the same
//! connections, and for a SQLite database the bytes it holds per decision
//! (checkpointed: measured after the server stopped) and whether
//! `tame audit verify` passes.

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{Result, root, run};

/// The policy the load runs under: the in-process load test's.
const POLICY: &str = include_str!("../../crates/tame-server/examples/load-policies.yml");
/// The wrk script: POSTs the calls of a file in turn, prints one summary line.
const SCRIPT: &str = include_str!("enforce.lua");

pub(crate) const USAGE: &str = "\
usage: cargo xtask load --external [--connections N] [--seconds S] [--warmup S]
           [--durability full|normal] [--db PATH|postgres://URL] [--tame BINARY]
           [--calls N] [--threads N] [--workers N] [--nodes N] [--external-only]

  --connections N   keep-alive connections of the load generator (default 64)
  --seconds S       measured seconds (default 15)
  --warmup S        seconds of load before the measured phase (default 5)
  --durability D    the server's audit durability (default full)
  --db PATH|URL     the server's database (default: SQLite in a temporary directory;
                    PostgreSQL needs TAME_AUDIT_SECRET or uses a fixed test secret)
  --tame BINARY     the `tame` binary to serve with (default: this tree's release build,
                    built first); implies --external-only
  --calls N         distinct calls generated and sent in turn (default 20000)
  --threads N       load generator threads (default 1)
  --workers N       the server's worker threads (default: the server's own default)
  --nodes N         servers on one PostgreSQL database (--db postgres://...; default 1),
                    each with its own node id and its own share of the connections
                    and sessions (as a load balancer keyed on the session sends them);
                    the table has a row per server and their sum
  --external-only   skip the in-process load test's run
";

/// The options of `load --external`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Options {
    pub(crate) connections: u32,
    pub(crate) seconds: u32,
    pub(crate) warmup: u32,
    pub(crate) durability: String,
    pub(crate) db: Option<String>,
    pub(crate) tame: Option<PathBuf>,
    pub(crate) calls: u32,
    pub(crate) threads: u32,
    pub(crate) workers: Option<u32>,
    pub(crate) nodes: u32,
    pub(crate) in_process: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            connections: 64,
            seconds: 15,
            warmup: 5,
            durability: "full".into(),
            db: None,
            tame: None,
            calls: 20_000,
            threads: 1,
            workers: None,
            nodes: 1,
            in_process: true,
        }
    }
}

/// Reads the arguments after `--external`.
pub(crate) fn parse(args: &[String]) -> Result<Options> {
    let mut o = Options::default();
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let mut value = |name: &str| {
            it.next()
                .cloned()
                .ok_or_else(|| format!("`{name}` needs a value\n\n{USAGE}"))
        };
        let number = |name: &str, v: String, min: u32| -> Result<u32> {
            match v.parse::<u32>() {
                Ok(n) if n >= min => Ok(n),
                _ => Err(format!("`{name}` takes a whole number of at least {min}, not `{v}`")),
            }
        };
        match flag.as_str() {
            "--connections" => o.connections = number(flag, value(flag)?, 1)?,
            "--seconds" => o.seconds = number(flag, value(flag)?, 1)?,
            "--warmup" => o.warmup = number(flag, value(flag)?, 0)?,
            "--calls" => o.calls = number(flag, value(flag)?, 1)?,
            "--threads" => o.threads = number(flag, value(flag)?, 1)?,
            "--workers" => o.workers = Some(number(flag, value(flag)?, 1)?),
            "--nodes" => o.nodes = number(flag, value(flag)?, 1)?,
            "--durability" => {
                let v = value(flag)?;
                if v != "full" && v != "normal" {
                    return Err(format!("`--durability` is `full` or `normal`, not `{v}`"));
                }
                o.durability = v;
            }
            "--db" => o.db = Some(value(flag)?),
            "--tame" => {
                o.tame = Some(PathBuf::from(value(flag)?));
                o.in_process = false;
            }
            "--external-only" => o.in_process = false,
            "-h" | "--help" => return Err(USAGE.to_string()),
            other => return Err(format!("unknown option `{other}` of `load --external`\n\n{USAGE}")),
        }
    }
    let postgres =
        o.db.as_deref()
            .is_some_and(|d| d.starts_with("postgres://") || d.starts_with("postgresql://"));
    if o.nodes > 1 && !postgres {
        return Err(format!(
            "`--nodes {}` needs `--db postgres://...`: servers share a PostgreSQL database",
            o.nodes
        ));
    }
    if o.nodes > 1 {
        o.in_process = false;
    }
    if o.connections < o.threads.saturating_mul(o.nodes) {
        return Err(format!(
            "`--connections` ({}) must be at least `--threads` ({})",
            o.connections, o.threads
        ));
    }
    Ok(o)
}

/// One load generator run's figures (latencies in microseconds).
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Figures {
    pub(crate) requests: u64,
    pub(crate) seconds: f64,
    pub(crate) non2xx: u64,
    pub(crate) socket_errors: u64,
    pub(crate) p50: f64,
    pub(crate) p90: f64,
    pub(crate) p99: f64,
    pub(crate) p999: f64,
    pub(crate) max: f64,
}

impl Figures {
    fn rate(&self) -> f64 {
        self.requests as f64 / self.seconds.max(1e-9)
    }

    /// A row of the report's table.
    fn row(&self, name: &str) -> String {
        let ms = |us: f64| us / 1000.0;
        format!(
            "| {name} | {:.0} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {} |",
            self.rate(),
            ms(self.p50),
            ms(self.p90),
            ms(self.p99),
            ms(self.p999),
            ms(self.max),
            self.non2xx + self.socket_errors
        )
    }
}

/// Reads the script's `tame-load key=value...` line out of wrk's output.
pub(crate) fn parse_wrk(output: &str) -> Result<Figures> {
    let line = output
        .lines()
        .find_map(|l| l.strip_prefix("tame-load "))
        .ok_or_else(|| format!("wrk printed no `tame-load` line:\n{output}"))?;
    let mut f = Figures::default();
    for field in line.split_whitespace() {
        let (key, value) = field
            .split_once('=')
            .ok_or_else(|| format!("bad field `{field}` in wrk's line `{line}`"))?;
        let n: f64 = value
            .parse()
            .map_err(|_| format!("`{key}` is not a number in wrk's line `{line}`"))?;
        match key {
            "requests" => f.requests = n as u64,
            "duration_us" => f.seconds = n / 1e6,
            "non2xx" => f.non2xx = n as u64,
            "socket_errors" => f.socket_errors = n as u64,
            "p50" => f.p50 = n,
            "p90" => f.p90 = n,
            "p99" => f.p99 = n,
            "p999" => f.p999 = n,
            "max" => f.max = n,
            _ => {}
        }
    }
    Ok(f)
}

/// Reads the in-process load test's enforce line (`req/s`, `p50 X ms`,
/// `p99 X ms`, `N requests, M non-2xx; p90 X ms, p99.9 X ms, max X ms`).
pub(crate) fn parse_in_process(output: &str, seconds: u32) -> Result<Figures> {
    let line = output
        .lines()
        .find(|l| l.starts_with("POST /api/v1/enforce"))
        .ok_or_else(|| format!("the in-process load test printed no enforce line:\n{output}"))?;
    let words: Vec<&str> = line
        .split(|c: char| c.is_whitespace() || c == '(' || c == ')' || c == ',' || c == ';')
        .filter(|w| !w.is_empty())
        .collect();
    let after = |key: &str| -> Result<f64> {
        let at = words
            .iter()
            .position(|w| *w == key)
            .ok_or_else(|| format!("no `{key}` in `{line}`"))?;
        words
            .get(at + 1)
            .and_then(|w| w.parse::<f64>().ok())
            .ok_or_else(|| format!("no number after `{key}` in `{line}`"))
    };
    let before = |key: &str| -> Result<f64> {
        let at = words
            .iter()
            .position(|w| *w == key)
            .ok_or_else(|| format!("no `{key}` in `{line}`"))?;
        at.checked_sub(1)
            .and_then(|i| words.get(i))
            .and_then(|w| w.parse::<f64>().ok())
            .ok_or_else(|| format!("no number before `{key}` in `{line}`"))
    };
    let requests = before("requests")?;
    Ok(Figures {
        requests: requests as u64,
        seconds: requests / before("req/s")?.max(1e-9),
        non2xx: before("non-2xx")? as u64,
        socket_errors: 0,
        p50: after("p50")? * 1000.0,
        p90: after("p90")? * 1000.0,
        p99: after("p99")? * 1000.0,
        p999: after("p99.9")? * 1000.0,
        max: after("max")? * 1000.0,
    })
    .map(|f| Figures {
        seconds: if f.seconds > 0.0 { f.seconds } else { f64::from(seconds) },
        ..f
    })
}

/// `count` distinct calls, one JSON object a line: the tools of an agent's
/// day (file reads and listings, searches, mail, HTTP posts, a secret read,
/// writes and unknown tools), each with its own arguments, over 2,000
/// sessions of 16 agents and 64 users; about one call in eight is denied
/// by a rule and one in eight by the default.
pub(crate) fn calls(count: u32) -> String {
    // Seeded: every run sends the same calls.
    let mut rng = fastrand::Rng::with_seed(0x7A3E_5EED_0000_0001);
    let mut out = String::new();
    for i in 0..count {
        let session = rng.u64(..2000);
        let (tool, args) = match rng.u64(..16) {
            0..=4 => (
                "read_file",
                format!(
                    r#"{{"path":"/home/user{}/projects/app/src/module_{}.rs"}}"#,
                    session % 64,
                    rng.u64(..100_000)
                ),
            ),
            5 => (
                "read_file",
                format!(r#"{{"path":"/etc/app/config-{}.conf"}}"#, rng.u64(..1000)),
            ),
            6..=7 => (
                "list_directory",
                format!(
                    r#"{{"path":"/srv/data/batch-{}","recursive":false}}"#,
                    rng.u64(..10_000)
                ),
            ),
            8..=9 => (
                "search_web",
                format!(
                    r#"{{"query":"rust sqlite wal checkpoint latency {}","max_results":{}}}"#,
                    rng.u64(..1_000_000),
                    5 + rng.u64(..20)
                ),
            ),
            10 => (
                "send_email",
                format!(
                    r#"{{"to":"colleague{}@example.com","subject":"weekly report {}","body":"Hello, the numbers for week {} are attached."}}"#,
                    rng.u64(..500),
                    i,
                    rng.u64(..52)
                ),
            ),
            11 => (
                "http_post",
                format!(
                    r#"{{"url":"https://api.example.com/v1/items/{}","body":{{"status":"done","count":{}}}}}"#,
                    rng.u64(..100_000),
                    rng.u64(..1000)
                ),
            ),
            12 => ("read_secret", format!(r#"{{"name":"service-{}"}}"#, rng.u64(..50))),
            13 => (
                "write_file",
                format!(
                    r#"{{"path":"/tmp/out/{}.txt","content":"result {}"}}"#,
                    rng.u64(..100_000),
                    rng.u64(..1000)
                ),
            ),
            _ => (
                "run_shell",
                format!(r#"{{"command":"ls -la /var/log/app{}"}}"#, rng.u64(..100)),
            ),
        };
        let user = if session.is_multiple_of(3) {
            format!(r#","user_id":"user-{}""#, session % 64)
        } else {
            String::new()
        };
        let _ = writeln!(
            out,
            r#"{{"tool_name":"{tool}","tool_args":{args},"session_id":"sess-{session:04}","agent_id":"agent-{}"{user}}}"#,
            session % 16
        );
    }
    out
}

/// A free loopback port (taken, then released for the server).
fn free_port() -> Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("cannot find a free port: {e}"))?;
    listener
        .local_addr()
        .map_err(|e| format!("cannot read the free port's address: {e}"))
}

/// Whether `GET /health` answers 200.
fn healthy(addr: SocketAddr) -> bool {
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    if stream
        .write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut answer = [0u8; 12];
    stream.read_exact(&mut answer).is_ok() && answer.starts_with(b"HTTP/1.1 200")
}

/// A `tame serve` of the run, stopped (SIGTERM, then SIGKILL) when dropped.
struct Server(Child);

impl Server {
    fn stop(&mut self) -> Result {
        let pid = self.0.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
        Err("the server did not stop within 30 s of SIGTERM (killed)".into())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.stop();
        }
    }
}

/// Runs wrk for `seconds` against `addr` with the calls file.
fn wrk(wrk: &str, o: &Options, addr: SocketAddr, seconds: u32, script: &Path, calls: &Path) -> Result<Figures> {
    let args = [
        format!("-t{}", o.threads),
        format!("-c{}", o.connections),
        format!("-d{seconds}s"),
        "--timeout".into(),
        "10s".into(),
        "-s".into(),
        script.display().to_string(),
        format!("http://{addr}"),
        "--".into(),
        calls.display().to_string(),
    ];
    eprintln!("\n$ {wrk} {}", args.join(" "));
    let output = Command::new(wrk)
        .args(&args)
        .output()
        .map_err(|e| format!("cannot run `{wrk}`: {e}"))?;
    let text = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        return Err(format!(
            "wrk failed ({}):\n{text}{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    parse_wrk(&text)
}

/// The run: see the module's documentation.
pub(crate) fn external(args: &[String]) -> Result {
    let o = parse(args)?;
    let wrk_path = {
        eprintln!("\n$ bash scripts/load-tool.sh");
        let out = Command::new("bash")
            .arg("scripts/load-tool.sh")
            .current_dir(root())
            .stderr(Stdio::inherit())
            .output()
            .map_err(|e| format!("cannot run scripts/load-tool.sh: {e}"))?;
        if !out.status.success() {
            return Err("scripts/load-tool.sh could not install wrk".into());
        }
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let tame = match &o.tame {
        Some(path) => path.clone(),
        None => {
            run("cargo", &["build", "--release", "-p", "tame-cli", "--bin", "tame"])?;
            std::env::var_os("CARGO_TARGET_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| root().join("target"))
                .join("release")
                .join("tame")
        }
    };
    let in_process = if o.in_process { Some(in_process_run(&o)?) } else { None };

    let dir = scratch_dir()?;
    let result = serve_and_drive(&o, &tame, &wrk_path, &dir);
    let _ = std::fs::remove_dir_all(&dir);
    let (external, disk) = result?;

    println!(
        "\n{} server(s), connections {}, {} s measured after {} s of warm-up, durability {}, database {}, {} distinct calls, {} wrk thread(s) per server",
        o.nodes,
        o.connections,
        o.seconds,
        o.warmup,
        o.durability,
        o.db.as_deref().unwrap_or("SQLite (temporary)"),
        o.calls,
        o.threads
    );
    println!("| client | decisions/s | p50 ms | p90 ms | p99 ms | p99.9 ms | max ms | errors |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    if external.len() == 1 {
        println!("{}", combined(&external).row("external (wrk)"));
    } else {
        for (node, figures) in external.iter().enumerate() {
            println!("{}", figures.row(&format!("server load-{node} (wrk)")));
        }
        println!(
            "{}",
            combined(&external).row(&format!(
                "all {} servers (sum; each percentile the slowest server's)",
                external.len()
            ))
        );
    }
    if let Some(f) = &in_process {
        println!("{}", f.row("in-process"));
    }
    if let Some(line) = disk {
        println!("{line}");
    }
    Ok(())
}

/// A fresh directory for the run's policy, calls and database.
fn scratch_dir() -> Result<PathBuf> {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let dir = std::env::temp_dir().join(format!("tame-load-{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    Ok(dir)
}

/// The in-process load test's enforce figures for the same connections.
fn in_process_run(o: &Options) -> Result<Figures> {
    let mut argv: Vec<String> = [
        "run",
        "--release",
        "-p",
        "tame-server",
        "--example",
        "load",
        "--",
        "--only",
        "enforce",
    ]
    .map(String::from)
    .to_vec();
    argv.extend([
        "--connections".into(),
        o.connections.to_string(),
        "--seconds".into(),
        o.seconds.to_string(),
        "--warmup".into(),
        o.warmup.to_string(),
        "--durability".into(),
        o.durability.clone(),
    ]);
    if let Some(w) = o.workers {
        argv.extend(["--workers".into(), w.to_string()]);
    }
    if let Some(db) = &o.db {
        argv.extend(["--db".into(), db.clone()]);
    }
    eprintln!("\n$ cargo {}", argv.join(" "));
    let output = Command::new("cargo")
        .args(&argv)
        .current_dir(root())
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("cannot run the in-process load test: {e}"))?;
    let text = String::from_utf8_lossy(&output.stdout);
    print!("{text}");
    if !output.status.success() {
        return Err(format!("the in-process load test failed ({})", output.status));
    }
    parse_in_process(&text, o.seconds)
}

/// Runs wrk against every `(address, calls file)` at once for `seconds`.
fn drive_all(
    wrk_path: &str,
    o: &Options,
    targets: &[(SocketAddr, PathBuf)],
    seconds: u32,
    script: &Path,
) -> Result<Vec<Figures>> {
    std::thread::scope(|scope| {
        let runs: Vec<_> = targets
            .iter()
            .map(|(addr, calls)| scope.spawn(move || wrk(wrk_path, o, *addr, seconds, script, calls)))
            .collect();
        runs.into_iter()
            .map(|r| r.join().unwrap_or_else(|_| Err("a wrk thread panicked".into())))
            .collect()
    })
}

/// The figures of several servers measured at once: their decisions
/// added up, and each percentile the slowest server's.
fn combined(all: &[Figures]) -> Figures {
    let worst = |f: fn(&Figures) -> f64| all.iter().map(f).fold(0.0, f64::max);
    Figures {
        requests: all.iter().map(|f| f.requests).sum(),
        seconds: worst(|f| f.seconds),
        non2xx: all.iter().map(|f| f.non2xx).sum(),
        socket_errors: all.iter().map(|f| f.socket_errors).sum(),
        p50: worst(|f| f.p50),
        p90: worst(|f| f.p90),
        p99: worst(|f| f.p99),
        p999: worst(|f| f.p999),
        max: worst(|f| f.max),
    }
}

/// Starts the server(s), warms them up, measures, stops them, and for
/// SQLite measures the database's bytes per decision and verifies its
/// chain. Several servers (`--nodes`) share the PostgreSQL database, each
/// with its own node id, connections and sessions.
fn serve_and_drive(o: &Options, tame: &Path, wrk_path: &str, dir: &Path) -> Result<(Vec<Figures>, Option<String>)> {
    let write = |name: &str, text: &str| -> Result<PathBuf> {
        let path = dir.join(name);
        std::fs::write(&path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        Ok(path)
    };
    let policy = write("policies.yml", POLICY)?;
    let script = write("enforce.lua", SCRIPT)?;
    let all_calls = calls(o.calls);
    let db =
        o.db.clone()
            .unwrap_or_else(|| dir.join("tame.db").display().to_string());
    let postgres = db.starts_with("postgres://") || db.starts_with("postgresql://");
    let mut servers = Vec::new();
    let mut targets = Vec::new();
    for node in 0..o.nodes {
        // Each server its own sessions, as a balancer keyed on the session would send them.
        let calls_file = if o.nodes == 1 {
            write("calls.jsonl", &all_calls)?
        } else {
            let mine = all_calls.replace(r#""session_id":"sess-"#, &format!(r#""session_id":"n{node}-sess-"#));
            write(&format!("calls-{node}.jsonl"), &mine)?
        };
        let addr = free_port()?;
        let mut envs = vec![
            ("TAME_POLICY".to_string(), policy.display().to_string()),
            ("TAME_DB".into(), db.clone()),
            ("TAME_ADDR".into(), addr.to_string()),
            ("TAME_DURABILITY".into(), o.durability.clone()),
            ("TAME_WATCH_POLICY".into(), "false".into()),
            ("TAME_LOG".into(), "warn".into()),
        ];
        if o.nodes > 1 {
            envs.push(("TAME_NODE_ID".into(), format!("load-{node}")));
        }
        if let Some(w) = o.workers {
            envs.push(("TAME_WORKERS".into(), w.to_string()));
        }
        if postgres && std::env::var_os("TAME_AUDIT_SECRET").is_none() {
            envs.push(("TAME_AUDIT_SECRET".into(), "load-test-audit-secret-0123456789".into()));
        }
        eprintln!("\n$ {} serve   (TAME_DB={db} TAME_ADDR={addr})", tame.display());
        let child = Command::new(tame)
            .arg("serve")
            .envs(envs.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("cannot start `{} serve`: {e}", tame.display()))?;
        let mut server = Server(child);
        let started = Instant::now();
        while !healthy(addr) {
            if let Ok(Some(status)) = server.0.try_wait() {
                return Err(format!("`tame serve` exited at start ({status})"));
            }
            if started.elapsed() > Duration::from_secs(30) {
                return Err(format!("`tame serve` did not answer /health on {addr} within 30 s"));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        servers.push(server);
        targets.push((addr, calls_file));
    }
    let per_server = Options {
        connections: (o.connections / o.nodes).max(1),
        ..o.clone()
    };
    let warm = if o.warmup > 0 {
        combined(&drive_all(wrk_path, &per_server, &targets, o.warmup, &script)?)
    } else {
        Figures::default()
    };
    let measured = drive_all(wrk_path, &per_server, &targets, o.seconds, &script)?;
    // The chain(s) of what was written, checked by a running server.
    let addr = targets.first().map(|(a, _)| *a).ok_or("no server")?;
    eprintln!("\n$ {} audit verify --api-url http://{addr}", tame.display());
    let verify = Command::new(tame)
        .args([
            "audit",
            "verify",
            "--api-url",
            &format!("http://{addr}"),
            "--timeout",
            "600",
        ])
        .output()
        .map_err(|e| format!("cannot run `tame audit verify`: {e}"))?;
    let verdict = if verify.status.success() { "passes" } else { "FAILS" };
    if !verify.status.success() {
        eprint!("{}", String::from_utf8_lossy(&verify.stdout));
        eprint!("{}", String::from_utf8_lossy(&verify.stderr));
    }
    for mut server in servers {
        server.stop()?;
    }
    if postgres {
        return Ok((measured, Some(format!("tame audit verify {verdict}"))));
    }
    // Stopped: the last connection's close checkpointed the WAL into the
    // database file.
    let size = |p: &str| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    let bytes = size(&db) + size(&format!("{db}-wal"));
    let all = combined(&measured);
    let decisions = (warm.requests + all.requests).saturating_sub(warm.non2xx + all.non2xx);
    Ok((
        measured,
        Some(format!(
            "database: {bytes} bytes for {decisions} decisions: {:.0} bytes per decision; tame audit verify {verdict}",
            bytes as f64 / decisions.max(1) as f64
        )),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(args: &[&str]) -> Vec<String> {
        args.iter().map(|s| (*s).to_string()).collect()
    }

    #[test]
    fn parses_the_options() {
        assert_eq!(parse(&[]).unwrap(), Options::default());
        let o = parse(&strings(&[
            "--connections",
            "16",
            "--seconds",
            "3",
            "--warmup",
            "0",
            "--db",
            "postgres://tame@127.0.0.1:5432/tame",
            "--tame",
            "/tmp/tame",
            "--workers",
            "1",
        ]))
        .unwrap();
        assert_eq!((o.connections, o.seconds, o.warmup, o.workers), (16, 3, 0, Some(1)));
        assert_eq!(o.db.as_deref(), Some("postgres://tame@127.0.0.1:5432/tame"));
        assert_eq!(o.tame, Some(PathBuf::from("/tmp/tame")));
        assert!(!o.in_process, "a given binary is measured alone");
    }

    #[test]
    fn refuses_bad_options() {
        for (args, says) in [
            (&["--connections"][..], "needs a value"),
            (&["--connections", "0"], "at least 1"),
            (&["--seconds", "x"], "not `x`"),
            (&["--durability", "off"], "`full` or `normal`"),
            (&["--threads", "8", "--connections", "4"], "at least `--threads`"),
            (&["--frobnicate"], "unknown option `--frobnicate`"),
        ] {
            let e = parse(&strings(args)).unwrap_err();
            assert!(e.contains(says), "{args:?}: {e}");
        }
        assert!(parse(&strings(&["--help"])).unwrap_err().starts_with("usage:"));
    }

    #[test]
    fn reads_the_load_lines() {
        let wrk = "Running 15s test\ntame-load requests=600000 duration_us=15000000 non2xx=2 socket_errors=1 p50=1200 p90=1900 p99=2500 p999=9000 max=30000\n";
        let f = parse_wrk(wrk).unwrap();
        assert_eq!((f.requests, f.non2xx, f.socket_errors), (600_000, 2, 1));
        assert!((f.rate() - 40_000.0).abs() < 1e-6);
        assert_eq!((f.p50, f.p99, f.p999, f.max), (1200.0, 2500.0, 9000.0, 30000.0));
        assert!(parse_wrk("nothing").is_err());

        let inproc = "POST /api/v1/enforce      40000 req/s  p50  1.250 ms  p99  3.500 ms  cpu  40.0 us/req  (200000 requests, 0 non-2xx; p90 2.000 ms, p99.9 30.000 ms, max 45.000 ms)\n";
        let f = parse_in_process(inproc, 5).unwrap();
        assert_eq!((f.requests, f.non2xx), (200_000, 0));
        assert!((f.rate() - 40_000.0).abs() < 1.0);
        assert_eq!(
            (f.p50, f.p90, f.p99, f.p999, f.max),
            (1250.0, 2000.0, 3500.0, 30000.0, 45000.0)
        );
    }

    #[test]
    fn several_servers_need_postgresql() {
        let e = parse(&strings(&["--nodes", "2"])).unwrap_err();
        assert!(e.contains("needs `--db postgres://"), "{e}");
        let o = parse(&strings(&["--nodes", "2", "--db", "postgres://tame@127.0.0.1/t"])).unwrap();
        assert_eq!((o.nodes, o.in_process), (2, false));
        let e = parse(&strings(&[
            "--nodes",
            "4",
            "--connections",
            "2",
            "--db",
            "postgres://x/y",
        ]))
        .unwrap_err();
        assert!(e.contains("must be at least"), "{e}");
    }

    #[test]
    fn calls_are_distinct_json_lines() {
        let text = calls(2000);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2000);
        let distinct: std::collections::HashSet<&str> = lines.iter().copied().collect();
        assert!(distinct.len() > 1990, "{} distinct", distinct.len());
        let tools: std::collections::HashSet<&str> = lines
            .iter()
            .filter_map(|l| l.split("\"tool_name\":\"").nth(1)?.split('"').next())
            .collect();
        assert!(tools.len() >= 8, "{tools:?}");
        assert!(lines.iter().all(|l| l.starts_with('{') && l.ends_with('}')));
    }
}
