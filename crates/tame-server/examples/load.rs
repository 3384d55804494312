//! Load generator: drives `POST /api/v1/enforce` (audit logging on) and the
//! trivial `GET /health` of the same server, one after the other in the
//! same run, and reports requests/s, p50, p99 and the enforce/health ratio.
//!
//! ```text
//! cargo run --release -p tame-server --example load -- [--connections 64] [--seconds 5]
//!     [--addr HOST:PORT] [--durability full|normal] [--max-requests N] [--db PATH|URL]
//!     [--only health|enforce] [--warmup SECONDS] [--rounds N]   (`-- --help` describes them)
//! ```
//!
//! Each route is warmed up before it is measured: `/health` for a second,
//! enforce for `--warmup` seconds (3 by default), so that the measured
//! phase is the server's steady state: SQLite's WAL checkpoints (a thread
//! of their own copies the WAL into the database while the writer commits,
//! and the writer restarts the WAL between batches once it passes 64 MiB)
//! and the session summaries' periodic writes are part of it.
//! `--warmup 0` measures from a cold start. `--rounds N` alternates the
//! two routes' phases N times and sums them, so that both routes are
//! measured under the same background load of a shared machine; each
//! round is also printed on its own line, to show the spread.
//!
//! Besides requests/s and latencies it reports the CPU time the whole
//! process (server and client) spent per request in each phase; their
//! ratio is the throughput ratio a machine with both routes CPU-bound
//! would show, and varies less with other load than the throughput does.
//! `--only` drives one route (e.g. under `perf record`);
//! `TAME_LOG=tame_store=debug` prints the writer's batch and job counts.
//!
//! Without `--addr` it starts the server in this process (own runtime with
//! two worker threads, or `--workers`, SQLite in a temporary directory or the database of
//! `--db`, e.g. `postgres://tame@127.0.0.1:5432/tame`, the policy below)
//! and drives it over loopback from a separate single-threaded client
//! runtime. With `--addr` it drives a running server (which must accept
//! the calls below without an API key, or set `TAME_API_KEY`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use axum::body::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;

// The same allocator as the `tame` and `tame-server` binaries.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The policy the load runs under (also `cargo xtask load --external`'s).
const POLICY: &str = include_str!("load-policies.yml");

/// Drives `POST /api/v1/enforce` and `GET /health` of one server and
/// reports requests/s, p50, p99, CPU per request and their ratio.
#[derive(Clone, clap::Parser)]
#[command(name = "load")]
struct Args {
    /// Concurrent keep-alive connections (one request in flight on each).
    /// Decisions are group-committed, so the more calls are in flight, the
    /// more of them share a commit and its sync. At 64 every run of the
    /// README's half hour kept its p99 under 5 ms.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    connections: u64,
    /// Seconds each route is measured in each round.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Rounds of one health phase then one enforce phase; the report sums
    /// them (alternating keeps both routes under the same background load)
    /// after a line for each round.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=100))]
    rounds: u64,
    /// A running server to drive instead of one started in this process.
    #[arg(long)]
    addr: Option<SocketAddr>,
    /// The in-process server's audit durability.
    #[arg(long, default_value = "full", value_parser = ["full", "normal"])]
    durability: String,
    /// Stop each phase after this many requests in all.
    #[arg(long, default_value_t = 5_000_000)]
    max_requests: u64,
    /// Drive only this route (e.g. under `perf record`).
    #[arg(long, value_parser = ["health", "enforce"])]
    only: Option<String>,
    /// The in-process server's database (a path or a postgres:// URL)
    /// instead of SQLite in a temporary directory.
    #[arg(long)]
    db: Option<String>,
    /// Seconds of enforce calls before the measured phase.
    #[arg(long, default_value_t = 3)]
    warmup: u64,
    /// The in-process server's worker threads (`tame serve --workers`).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..=64))]
    workers: u64,
}

fn body_for(conn: u64, i: u64) -> String {
    let session = format!("load-{}", (conn * 7919 + i / 50) % 2000);
    match i % 5 {
        0 => format!(
            r#"{{"tool_name":"read_file","tool_args":{{"path":"/etc/shadow"}},"session_id":"{session}","agent_id":"bench"}}"#
        ),
        1 => format!(
            r#"{{"tool_name":"send_email","tool_args":{{"to":"a@example.com","subject":"hi {i}"}},"session_id":"{session}"}}"#
        ),
        2 => format!(
            r#"{{"tool_name":"http_post","tool_args":{{"url":"https://example.com/api"}},"session_id":"{session}"}}"#
        ),
        3 => format!(r#"{{"tool_name":"unknown_tool","tool_args":{{}},"session_id":"{session}"}}"#),
        _ => format!(
            r#"{{"tool_name":"read_file","tool_args":{{"path":"/home/u/{i}.txt"}},"session_id":"{session}","agent_id":"bench"}}"#
        ),
    }
}

#[derive(Default)]
struct Phase {
    requests: u64,
    errors: u64,
    elapsed: Duration,
    /// CPU time of the whole process (server and client) during the phase.
    cpu: Duration,
    latencies_us: Vec<u32>,
}

impl Phase {
    /// Adds another phase of the same route (latencies are sorted later).
    fn merge(&mut self, other: Phase) {
        self.requests += other.requests;
        self.errors += other.errors;
        self.elapsed += other.elapsed;
        self.cpu += other.cpu;
        self.latencies_us.extend(other.latencies_us);
    }
    fn rps(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64()
    }
    /// CPU microseconds spent per request, client included.
    fn cpu_per_request_us(&self) -> f64 {
        self.cpu.as_secs_f64() * 1e6 / self.requests.max(1) as f64
    }
    fn pct(&self, p: f64) -> f64 {
        if self.latencies_us.is_empty() {
            return 0.0;
        }
        let idx = ((self.latencies_us.len() - 1) as f64 * p).round() as usize;
        f64::from(self.latencies_us.get(idx).copied().unwrap_or(0)) / 1000.0
    }
}

async fn drive(addr: SocketAddr, enforce: bool, args: &Args, key: Option<String>) -> anyhow::Result<Phase> {
    let deadline = Instant::now() + Duration::from_secs(args.seconds);
    let budget = Arc::new(AtomicU64::new(args.max_requests));
    let started = Instant::now();
    let cpu_started = cpu_time::ProcessTime::try_now()?;
    let mut tasks = Vec::new();
    for conn in 0..args.connections {
        let budget = budget.clone();
        let key = key.clone();
        tasks.push(tokio::spawn(async move {
            let stream = tokio::net::TcpStream::connect(addr).await?;
            stream.set_nodelay(true)?;
            let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
            tokio::spawn(connection);
            let mut lat = Vec::with_capacity(100_000);
            let mut errors = 0u64;
            let mut i = 0u64;
            let take = || {
                budget
                    .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
                    .is_ok()
            };
            while Instant::now() < deadline && take() {
                let mut req = hyper::Request::builder().header("host", "localhost");
                if let Some(k) = &key {
                    req = req.header("authorization", format!("Bearer {k}"));
                }
                let req = if enforce {
                    req.method("POST")
                        .uri("/api/v1/enforce")
                        .header("content-type", "application/json")
                        .body(Full::new(Bytes::from(body_for(conn, i))))?
                } else {
                    req.method("GET").uri("/health").body(Full::new(Bytes::new()))?
                };
                let t = Instant::now();
                sender.ready().await?;
                let resp = sender.send_request(req).await?;
                let ok = resp.status().is_success();
                resp.into_body().collect().await?;
                lat.push(u32::try_from(t.elapsed().as_micros()).unwrap_or(u32::MAX));
                if !ok {
                    errors += 1;
                }
                i += 1;
            }
            anyhow::Ok((lat, errors))
        }));
    }
    let mut latencies_us = Vec::new();
    let mut errors = 0;
    for t in tasks {
        let (lat, e) = t.await??;
        latencies_us.extend(lat);
        errors += e;
    }
    let elapsed = started.elapsed();
    let cpu = cpu_started.try_elapsed()?;
    Ok(Phase {
        requests: latencies_us.len() as u64,
        errors,
        elapsed,
        cpu,
        latencies_us,
    })
}

fn main() -> anyhow::Result<()> {
    let args = <Args as clap::Parser>::parse();
    // `TAME_LOG=tame_store=debug` shows the writer's batch counts at the end.
    if let Ok(filter) = tracing_subscriber::EnvFilter::try_from_env("TAME_LOG") {
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .init();
    }
    let key = std::env::var("TAME_API_KEY").ok();
    let _dir;
    let (addr, server_rt) = match args.addr {
        Some(addr) => (addr, None),
        None => {
            let dir = tempfile::tempdir()?;
            std::fs::write(dir.path().join("policies.yml"), POLICY)?;
            let mut config = tame_server::ServerConfig {
                policy_path: dir.path().join("policies.yml"),
                db_path: dir.path().join("tame.db"),
                addr: "127.0.0.1:0".parse()?,
                watch_policy: false,
                ..Default::default()
            };
            config.apply_env([("TAME_DURABILITY".to_string(), args.durability.clone())])?;
            if let Some(db) = &args.db {
                config.db_path = db.into();
                // A PostgreSQL store needs a configured audit secret.
                config.secret = std::env::var("TAME_AUDIT_SECRET")
                    .ok()
                    .or_else(|| Some("load-test-audit-secret-0123456789".into()));
            }
            config.workers = std::num::NonZeroUsize::new(usize::try_from(args.workers)?);
            let rt = config.runtime()?;
            let (tx, rx) = std::sync::mpsc::channel();
            rt.spawn(async move {
                let r = tame_server::run_until(config, std::future::pending(), move |a| {
                    let _ = tx.send(a);
                })
                .await;
                if let Err(e) = r {
                    eprintln!("server failed: {e:#}");
                }
            });
            let addr = rx
                .recv_timeout(Duration::from_secs(30))
                .context("server did not start")?;
            _dir = dir;
            (addr, Some(rt))
        }
    };
    let client = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let (health, enforce) = client.block_on(async {
        // Warm up both routes (see the module docs).
        let warm_health = Args {
            seconds: 1,
            ..args.clone()
        };
        let warm_enforce = Args {
            seconds: args.warmup,
            ..args.clone()
        };
        let run_health = args.only.as_deref() != Some("enforce");
        let run_enforce = args.only.as_deref() != Some("health");
        if run_health {
            drive(addr, false, &warm_health, key.clone()).await?;
        }
        if run_enforce && args.warmup > 0 {
            drive(addr, true, &warm_enforce, key.clone()).await?;
        }
        // Alternate the routes' phases so that both see the same machine
        // (a shared host's background load drifts within seconds).
        let (mut health, mut enforce) = (Phase::default(), Phase::default());
        for round in 1..=args.rounds {
            let mut h = Phase::default();
            let mut e = Phase::default();
            if run_health {
                h = drive(addr, false, &args, key.clone()).await?;
            }
            if run_enforce {
                e = drive(addr, true, &args, key.clone()).await?;
            }
            if args.rounds > 1 {
                // Each round on its own, to show the spread within the run.
                h.latencies_us.sort_unstable();
                e.latencies_us.sort_unstable();
                let mut line = format!("round {round}:");
                if h.requests > 0 {
                    line += &format!("  /health {:.0} req/s ({:.1} us/req)", h.rps(), h.cpu_per_request_us());
                }
                if e.requests > 0 {
                    line += &format!(
                        "  enforce {:.0} req/s p50 {:.3} ms p99 {:.3} ms ({:.1} us/req)",
                        e.rps(),
                        e.pct(0.50),
                        e.pct(0.99),
                        e.cpu_per_request_us()
                    );
                }
                if h.requests > 0 && e.requests > 0 {
                    line += &format!("  ratio {:.2}", e.rps() / h.rps());
                }
                println!("{line}");
            }
            health.merge(h);
            enforce.merge(e);
        }
        health.latencies_us.sort_unstable();
        enforce.latencies_us.sort_unstable();
        anyhow::Ok((health, enforce))
    })?;
    println!(
        "connections: {}, seconds per phase: {}, rounds: {}, durability: {}",
        args.connections, args.seconds, args.rounds, args.durability
    );
    for (name, p) in [("GET /health", &health), ("POST /api/v1/enforce", &enforce)] {
        if p.requests == 0 {
            continue;
        }
        println!(
            "{name:<22} {:>9.0} req/s  p50 {:>6.3} ms  p99 {:>6.3} ms  cpu {:>5.1} us/req  ({} requests, {} non-2xx; p90 {:.3} ms, p99.9 {:.3} ms, max {:.3} ms)",
            p.rps(),
            p.pct(0.50),
            p.pct(0.99),
            p.cpu_per_request_us(),
            p.requests,
            p.errors,
            p.pct(0.90),
            p.pct(0.999),
            p.pct(1.0),
        );
    }
    if health.requests > 0 && enforce.requests > 0 {
        println!("enforce/health throughput ratio: {:.2}", enforce.rps() / health.rps());
        println!(
            "enforce/health cpu-per-request ratio: {:.2} (the throughput ratio a quiet machine with both routes CPU-bound would show)",
            health.cpu_per_request_us() / enforce.cpu_per_request_us()
        );
    }
    drop(server_rt);
    Ok(())
}
