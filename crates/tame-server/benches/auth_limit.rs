//! What failed-authentication limiting costs, through the router (tower
//! `oneshot`, a client address in `ConnectInfo`): a valid key with the
//! limit on, off, and while another client is limited; a wrong key (a
//! counted failure); and a limited client's refusal.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, StatusCode, header};
use criterion::{Criterion, criterion_group, criterion_main};
use tame_server::{AppState, Auth, FailureLimit, Limits, LoadedPolicy};
use tower::ServiceExt;

const POLICY: &str = "version: bench\ndefault: allow\nrules:\n  - name: no_etc\n    action: deny\n    tools: [read_file]\n    condition: 'args.path.startsWith(\"/etc/\")'\n";
const AGENT: &str = "agent-key-0123456789abcdef";

fn router(limit: FailureLimit, dir: &tempfile::TempDir) -> Router {
    let loaded = LoadedPolicy {
        policy: tame_engine::Policy::from_yaml(POLICY, "bench.yml").unwrap(),
        source: POLICY.into(),
        origin: "bench.yml".into(),
        loaded_at: jiff::Timestamp::now(),
    };
    let store =
        tame_store::SqliteStore::open(dir.path().join("bench.db"), tame_store::SqliteOptions::default()).unwrap();
    let auth = Auth::new(&[AGENT.into()], &[]).with_failure_limit(limit);
    tame_server::app(AppState::new(loaded, None, Arc::new(store), auth, Limits::default()))
}

fn request(key: &str, ip: [u8; 4]) -> Request<Body> {
    let mut req = Request::get("/api/v1/policy/current")
        .header(header::AUTHORIZATION, format!("Bearer {key}"))
        .body(Body::empty())
        .unwrap();
    req.extensions_mut().insert(ConnectInfo(SocketAddr::from((ip, 40000))));
    req
}

fn call(rt: &tokio::runtime::Runtime, router: &Router, key: &str, ip: [u8; 4]) -> StatusCode {
    rt.block_on(router.clone().oneshot(request(key, ip))).unwrap().status()
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let on = router(FailureLimit::default(), &dir);
    let off_dir = tempfile::tempdir().unwrap();
    let off = router(FailureLimit::off(), &off_dir);
    let attacked_dir = tempfile::tempdir().unwrap();
    // A long period: the attacker stays limited for the whole run.
    let attacked = router(
        FailureLimit {
            period: std::time::Duration::from_secs(3600),
            ..FailureLimit::default()
        },
        &attacked_dir,
    );
    let attacker = [203, 0, 113, 66];
    for _ in 0..11 {
        call(&rt, &attacked, "guess", attacker);
    }
    assert_eq!(call(&rt, &attacked, "guess", attacker), StatusCode::TOO_MANY_REQUESTS);
    let client = [198, 51, 100, 7];

    let mut g = c.benchmark_group("auth_limit");
    g.bench_function("valid_key_limit_off", |b| {
        b.iter(|| assert_eq!(call(&rt, &off, AGENT, client), StatusCode::OK))
    });
    g.bench_function("valid_key_limit_on", |b| {
        b.iter(|| assert_eq!(call(&rt, &on, AGENT, client), StatusCode::OK))
    });
    g.bench_function("valid_key_while_another_client_is_limited", |b| {
        b.iter(|| assert_eq!(call(&rt, &attacked, AGENT, client), StatusCode::OK))
    });
    g.bench_function("wrong_key_counted", |b| {
        let off_budget = tempfile::tempdir().unwrap();
        // A huge burst: every attempt is a counted failure, never a 429.
        let counting = router(
            FailureLimit {
                burst: u32::MAX,
                ..FailureLimit::default()
            },
            &off_budget,
        );
        b.iter(|| assert_eq!(call(&rt, &counting, "guess", client), StatusCode::UNAUTHORIZED))
    });
    g.bench_function("limited_client_refused", |b| {
        b.iter(|| assert_eq!(call(&rt, &attacked, "guess", attacker), StatusCode::TOO_MANY_REQUESTS))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
