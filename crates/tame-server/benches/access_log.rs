//! What the access log costs per request, through the router (tower
//! `oneshot`, `GET /health`): with no subscriber (as embedded, or the
//! in-process load test), with `--log-format text`'s default filter
//! (access events off), and with `--log-format json` (one access event
//! per request, formatted and written to a sink).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use criterion::{Criterion, criterion_group, criterion_main};
use tame_server::{AppState, Auth, Limits, LoadedPolicy, LogFormat};
use tower::ServiceExt;

const POLICY: &str = "version: bench\ndefault: allow\nrules: []\n";

fn router(dir: &tempfile::TempDir) -> Router {
    let loaded = LoadedPolicy {
        policy: tame_engine::Policy::from_yaml(POLICY, "bench.yml").unwrap(),
        source: POLICY.into(),
        origin: "bench.yml".into(),
        loaded_at: jiff::Timestamp::now(),
    };
    let store =
        tame_store::SqliteStore::open(dir.path().join("bench.db"), tame_store::SqliteOptions::default()).unwrap();
    tame_server::app(AppState::new(
        loaded,
        None,
        Arc::new(store),
        Auth::default(),
        Limits::default(),
    ))
}

fn health(rt: &tokio::runtime::Runtime, router: &Router) -> StatusCode {
    let req = Request::get("/health").body(Body::empty()).unwrap();
    rt.block_on(router.clone().oneshot(req)).unwrap().status()
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let router = router(&dir);
    let mut group = c.benchmark_group("access_log");
    group.bench_function("health_no_subscriber", |b| {
        b.iter(|| assert_eq!(health(&rt, &router), StatusCode::OK))
    });
    for (name, format) in [
        ("health_text_default", LogFormat::Text),
        ("health_json", LogFormat::Json),
    ] {
        let subscriber = tame_server::log_subscriber(format, None, std::io::sink, false);
        tracing::subscriber::with_default(subscriber, || {
            group.bench_function(name, |b| b.iter(|| assert_eq!(health(&rt, &router), StatusCode::OK)));
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
