//! Prometheus metrics: decisions by action and rule, enforce latency,
//! policy reloads, failed authentications and the 429s of their limit.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DecisionLabels {
    pub action: &'static str,
    /// The matching rule (the policy's own name: cloning it allocates
    /// nothing); empty when the policy's default applied.
    pub rule: Option<std::sync::Arc<str>>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReloadLabels {
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AuthLabels {
    /// `api` or `dashboard`.
    pub surface: &'static str,
}

/// The server's metrics and their registry.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    pub decisions: Family<DecisionLabels, Counter>,
    pub enforce_seconds: Histogram,
    pub reloads: Family<ReloadLabels, Counter>,
    pub auth_failures: Family<AuthLabels, Counter>,
    pub auth_limited: Family<AuthLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("tame");
        let decisions = Family::<DecisionLabels, Counter>::default();
        registry.register(
            "decisions",
            "Decisions answered by /api/v1/enforce, by action and rule",
            decisions.clone(),
        );
        // 25 µs .. ~0.8 s
        let enforce_seconds = Histogram::new(exponential_buckets(0.000_025, 2.0, 16));
        registry.register(
            "enforce_duration_seconds",
            "Time to answer /api/v1/enforce, including the audit commit",
            enforce_seconds.clone(),
        );
        let reloads = Family::<ReloadLabels, Counter>::default();
        registry.register("policy_reloads", "Policy reload attempts by outcome", reloads.clone());
        let auth_failures = Family::<AuthLabels, Counter>::default();
        registry.register(
            "auth_failures",
            "Refused authentications (wrong or missing API key, wrong dashboard login key), by surface",
            auth_failures.clone(),
        );
        let auth_limited = Family::<AuthLabels, Counter>::default();
        registry.register(
            "auth_limited",
            "Requests answered 429 because their client spent its failed-authentication budget, by surface",
            auth_limited.clone(),
        );
        Metrics {
            registry,
            decisions,
            enforce_seconds,
            reloads,
            auth_failures,
            auth_limited,
        }
    }
}

impl Metrics {
    /// The metrics in the Prometheus text format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            tracing::error!("cannot encode metrics");
        }
        out
    }
}
