//! Criterion benchmarks of the integrations' hot paths: one `tools/call`
//! through the MCP proxy (denied and answered by the proxy, allowed and
//! relayed, and a plain request relayed for comparison) and one local tool
//! protocol run (a python3 subprocess); and what https costs a client at
//! construction: the system's roots (read once per process, then shared)
//! and one client with its rustls config (built once per client).
//!
//! The MCP "server" is `cat`: it echoes each request back, which the proxy
//! relays to the client like any server message, so a round trip measures
//! the proxy's own work plus two pipe hops.
//!
//! Run: `cargo bench -p tame-integrations --bench proxy`

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use serde_json::json;
use tame_integrations::{
    EmbeddedGuard, McpProxyOptions, RunnerSpec, TlsRoots, ToolBinding, ToolRunner, run_mcp_proxy_with,
};
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader, DuplexStream, Lines};
use tokio::runtime::Runtime;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

struct Client {
    tx: DuplexStream,
    rx: Lines<BufReader<DuplexStream>>,
}

impl Client {
    async fn round_trip(&mut self, line: &[u8]) -> usize {
        let _ = self.tx.write_all(line).await;
        match self.rx.next_line().await {
            Ok(Some(reply)) => reply.len(),
            _ => 0,
        }
    }
}

fn proxy(rt: &Runtime) -> Client {
    let guard = match EmbeddedGuard::from_file(&fixtures().join("policy.yml")) {
        Ok(guard) => Arc::new(guard),
        Err(err) => {
            eprintln!("cannot load the bench policy: {err:#}");
            std::process::exit(1);
        }
    };
    let opts = McpProxyOptions {
        command: vec!["cat".into()],
        ..McpProxyOptions::default()
    };
    let (tx, proxy_in) = tokio::io::duplex(1 << 16);
    let (proxy_out, rx) = tokio::io::duplex(1 << 16);
    rt.spawn(async move { run_mcp_proxy_with(guard, &opts, proxy_in, proxy_out).await });
    Client {
        tx,
        rx: BufReader::new(rx).lines(),
    }
}

fn bench_proxy(c: &mut Criterion) {
    let Ok(rt) = Runtime::new() else { return };
    let mut client = rt.block_on(async { proxy(&rt) });
    let line = |v: serde_json::Value| format!("{v}\n").into_bytes();
    // The same id each time: the proxy's table of pending requests stays small.
    let denied = line(json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
        "params": {"name": "read_file", "arguments": {"path": "/etc/shadow"}}}));
    let allowed = line(json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
        "params": {"name": "read_file", "arguments": {"path": "/home/ada/notes.txt"}}}));
    let plain = line(json!({"jsonrpc": "2.0", "id": 1, "method": "ping"}));

    let mut group = c.benchmark_group("mcp_proxy");
    group.bench_function("tools_call_denied_by_proxy", |b| {
        b.iter(|| rt.block_on(client.round_trip(&denied)))
    });
    group.bench_function("tools_call_allowed_relayed", |b| {
        b.iter(|| rt.block_on(client.round_trip(&allowed)))
    });
    group.bench_function("plain_request_relayed", |b| {
        b.iter(|| rt.block_on(client.round_trip(&plain)))
    });
    group.finish();
}

fn bench_runner(c: &mut Criterion) {
    let Ok(rt) = Runtime::new() else { return };
    let runner = ToolRunner::default();
    let binding = ToolBinding {
        name: "greet".into(),
        runner: RunnerSpec::Local {
            entry: "sample_tool:greet".into(),
            python: None,
            python_path: vec![fixtures().join("tools")],
            cwd: None,
            sandbox: false,
        },
        timeout_seconds: None,
    };
    let payload = json!({"name": "Ada"});
    let mut group = c.benchmark_group("tool_runner");
    group.sample_size(20).measurement_time(Duration::from_secs(8));
    group.bench_function("local_python_call", |b| {
        b.iter(|| rt.block_on(runner.execute(&binding, &payload, "bench")).ok)
    });
    group.finish();
}

fn bench_tls(c: &mut Criterion) {
    // First in the group: nothing has read the roots yet.
    let started = std::time::Instant::now();
    let roots = TlsRoots::system();
    eprintln!(
        "tls: first TlsRoots::system() {:?} ({} roots{})",
        started.elapsed(),
        roots.len(),
        roots.problem().map(|p| format!(", {p}")).unwrap_or_default()
    );
    let mut group = c.benchmark_group("tls");
    group.bench_function("system_roots_cached", |b| b.iter(|| TlsRoots::system().len()));
    group.bench_function("http_client_build", |b| {
        b.iter(|| roots.http_client(reqwest::Client::builder()).is_ok())
    });
    group.finish();
}

criterion_group!(benches, bench_tls, bench_proxy, bench_runner);
criterion_main!(benches);
