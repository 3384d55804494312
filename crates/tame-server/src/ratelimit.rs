//! Failed-authentication limiting: per client address, a budget of failed
//! authentications (wrong or missing API keys, wrong dashboard login keys)
//! that refills over time; a client that spent it is answered `429 Too Many
//! Requests` with `Retry-After` until it refills.
//!
//! The budget is a GCRA bucket per client ([`governor`]): `burst` failures
//! at once, then one more every `period`. Failures are counted only after a
//! key was refused, so a request with a valid key never touches the
//! limiter. A client whose budget is spent is *marked*; while any client is
//! marked, each request that needs a key looks its client up among the
//! marked ones first (one read lock; nothing at all while none is marked).
//!
//! A marked client is refused before its key is even looked at, **whatever
//! key it sends, valid or not**: if a valid key still went through, the
//! difference between 429 and 200 would tell a guesser which guess was
//! right and the limit would stop nothing. While marked, every attempt
//! spends from the budget (one per `period` gets through to the key check).
//! A valid key sent from an address that others are guessing from is
//! therefore refused too until the guessing stops: behind a reverse proxy,
//! configure `trusted_proxies` so that clients are told apart by
//! `X-Forwarded-For` rather than sharing the proxy's address.
//!
//! Clients are IPv4 addresses and IPv6 /64 networks (one host usually owns
//! a whole /64). Requests without a socket peer (tests through `oneshot`)
//! share one `unknown` client. The tables are bounded: budgets that refilled
//! are dropped by [`FailureLimiter::sweep`] (the server runs it every
//! minute, and at most once a second when the table is at its cap); while
//! it stays full, failures are counted against one shared overflow budget
//! rather than growing memory (a flood of addresses then limits itself as
//! one client; valid keys of clients not limited still go through).

use std::collections::HashMap;
use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, FromRequestParts, MatchedPath, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use governor::middleware::StateInformationMiddleware;
use governor::state::keyed::DashMapStateStore;
use governor::{Quota, RateLimiter};
use ipnet::IpNet;

use crate::AppState;
use crate::auth::Role;
use crate::error::AppError;
use crate::metrics::AuthLabels;

/// Clients tracked at most (budgets plus marks); past it failures share
/// one overflow budget.
const MAX_CLIENTS: usize = 100_000;
/// Least time between two sweeps forced by a full table (a sweep walks it).
const FORCED_SWEEP_GAP: Duration = Duration::from_secs(1);

/// The failed-authentication limit's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailureLimit {
    /// Failed authentications a client may make at once; 0 turns limiting off.
    pub burst: u32,
    /// One more failure is allowed per `period` once the burst is spent.
    pub period: Duration,
    /// Reverse proxies whose `X-Forwarded-For` names the client (addresses
    /// or CIDR networks). Empty: the socket peer is the client, always.
    pub trusted_proxies: Vec<IpNet>,
}

impl Default for FailureLimit {
    fn default() -> Self {
        FailureLimit {
            burst: 10,
            period: Duration::from_secs(6),
            trusted_proxies: Vec::new(),
        }
    }
}

impl FailureLimit {
    /// No limiting at all.
    pub fn off() -> Self {
        FailureLimit {
            burst: 0,
            ..FailureLimit::default()
        }
    }

    /// Whether failures are limited.
    pub fn is_on(&self) -> bool {
        self.burst > 0
    }
}

/// A refill period in seconds (fractions allowed), above zero.
pub fn parse_period_secs(secs: f64) -> Result<Duration, String> {
    match Duration::try_from_secs_f64(secs) {
        Ok(d) if !d.is_zero() => Ok(d),
        _ => Err(format!(
            "`{secs}` is not a period in seconds above zero (turn the limit off with a burst of 0)"
        )),
    }
}

/// Parses one trusted proxy: an address (`10.0.0.7`, `::1`) or a network
/// in CIDR notation (`10.0.0.0/8`, `fd00::/8`).
pub fn parse_proxy(s: &str) -> Result<IpNet, String> {
    let s = s.trim();
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Ok(IpNet::from(ip));
    }
    s.parse::<IpNet>()
        .map(|net| net.trunc())
        .map_err(|_| format!("`{s}` is not an IP address or a CIDR network (e.g. 10.0.0.0/8)"))
}

// ------------------------------------------------------------ clients

/// Who a failure is counted against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ClientKey {
    /// An IPv4 address.
    V4([u8; 4]),
    /// The /64 network of an IPv6 address.
    V6Net([u8; 8]),
    /// No socket peer is known (requests not served from a socket).
    Unknown,
    /// New clients while the table is full.
    Overflow,
}

impl ClientKey {
    /// The client of an address (IPv4-mapped IPv6 counts as IPv4).
    pub fn of(ip: IpAddr) -> ClientKey {
        match canonical(ip) {
            IpAddr::V4(v4) => ClientKey::V4(v4.octets()),
            IpAddr::V6(v6) => {
                let mut net = [0u8; 8];
                for (dst, src) in net.iter_mut().zip(v6.octets()) {
                    *dst = src;
                }
                ClientKey::V6Net(net)
            }
        }
    }
}

impl fmt::Display for ClientKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientKey::V4(o) => write!(f, "{}", std::net::Ipv4Addr::from(*o)),
            ClientKey::V6Net(n) => {
                let mut full = [0u8; 16];
                for (dst, src) in full.iter_mut().zip(n) {
                    *dst = *src;
                }
                write!(f, "{}/64", std::net::Ipv6Addr::from(full))
            }
            ClientKey::Unknown => f.write_str("unknown"),
            ClientKey::Overflow => f.write_str("overflow (client table full)"),
        }
    }
}

fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// One `X-Forwarded-For` entry: an address, with or without a port.
fn forwarded_ip(entry: &str) -> Option<IpAddr> {
    let entry = entry.trim();
    entry
        .parse::<IpAddr>()
        .ok()
        .or_else(|| entry.parse::<SocketAddr>().ok().map(|a| a.ip()))
        .map(canonical)
}

/// The client of a request: its `ConnectInfo` peer, or, when the peer is a
/// trusted proxy, the right-most `X-Forwarded-For` entry that is not one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Client(pub ClientKey);

impl FromRequestParts<AppState> for Client {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let peer = parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0);
        Ok(Client(state.auth().limiter().client_of(peer, &parts.headers)))
    }
}

// ------------------------------------------------------------ the clock

/// The monotonic clock, plus an offset only tests move.
#[derive(Debug, Clone, Default)]
struct LimiterClock {
    offset_nanos: Arc<AtomicU64>,
}

impl governor::clock::Clock for LimiterClock {
    type Instant = Instant;

    fn now(&self) -> Instant {
        let now = Instant::now();
        let offset = self.offset_nanos.load(Ordering::Relaxed);
        now.checked_add(Duration::from_nanos(offset)).unwrap_or(now)
    }
}

impl LimiterClock {
    #[cfg(test)]
    fn advance(&self, by: Duration) {
        let nanos = u64::try_from(by.as_nanos()).unwrap_or(u64::MAX);
        self.offset_nanos.fetch_add(nanos, Ordering::Relaxed);
    }
}

// ------------------------------------------------------------ the limiter

type Buckets = RateLimiter<ClientKey, DashMapStateStore<ClientKey>, LimiterClock, StateInformationMiddleware>;

/// What the pre-check says about a request that needs a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precheck {
    /// The client is not limited: check its key as usual.
    Pass,
    /// The client is limited and this attempt spent its next unit of
    /// budget: check its key; a failure must not be counted again.
    Prepaid,
    /// Refuse without looking at the key; retry after this long.
    Limited(Duration),
}

struct Active {
    buckets: Buckets,
    clock: LimiterClock,
    /// Limited clients and when their budget is surely full again.
    marks: RwLock<HashMap<ClientKey, Instant>>,
    /// `marks.len()`, read without the lock on every request.
    marked: AtomicUsize,
    /// How long an empty budget takes to refill completely.
    full_refill: Duration,
    /// Clients tracked at most ([`MAX_CLIENTS`]).
    max_clients: usize,
    /// When the table was last swept, in nanoseconds after `born`.
    last_sweep: AtomicU64,
    born: Instant,
}

/// The per-client budgets of failed authentications (see the module docs).
pub struct FailureLimiter {
    active: Option<Active>,
    trusted: Vec<IpNet>,
    limit: FailureLimit,
}

impl fmt::Debug for FailureLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FailureLimiter")
            .field("limit", &self.limit)
            .field("limited_clients", &self.limited_clients())
            .finish_non_exhaustive()
    }
}

impl Default for FailureLimiter {
    fn default() -> Self {
        FailureLimiter::new(FailureLimit::default())
    }
}

impl FailureLimiter {
    /// A limiter for `limit`; off when its burst or period is zero.
    pub fn new(limit: FailureLimit) -> FailureLimiter {
        Self::with_cap(limit, MAX_CLIENTS)
    }

    fn with_cap(limit: FailureLimit, max_clients: usize) -> FailureLimiter {
        let quota = NonZeroU32::new(limit.burst)
            .and_then(|burst| Quota::with_period(limit.period).map(|q| q.allow_burst(burst)));
        let active = quota.map(|quota| {
            let clock = LimiterClock::default();
            let born = governor::clock::Clock::now(&clock);
            Active {
                buckets: RateLimiter::dashmap_with_clock(quota, clock.clone())
                    .with_middleware::<StateInformationMiddleware>(),
                clock,
                marks: RwLock::new(HashMap::new()),
                marked: AtomicUsize::new(0),
                full_refill: limit.period.saturating_mul(limit.burst),
                max_clients,
                last_sweep: AtomicU64::new(0),
                born,
            }
        });
        FailureLimiter {
            active,
            trusted: limit.trusted_proxies.clone(),
            limit,
        }
    }

    /// The settings this limiter was made with.
    pub fn limit(&self) -> &FailureLimit {
        &self.limit
    }

    /// Whether failures are limited at all.
    pub fn is_on(&self) -> bool {
        self.active.is_some()
    }

    /// Clients limited right now (their budget is spent).
    pub fn limited_clients(&self) -> usize {
        self.active.as_ref().map_or(0, |a| a.marked.load(Ordering::Relaxed))
    }

    /// Clients with a budget in the table.
    pub fn tracked_clients(&self) -> usize {
        self.active.as_ref().map_or(0, |a| a.buckets.len())
    }

    /// The client of a request from `peer`: the peer's address, or, when
    /// the peer is a trusted proxy, the right-most `X-Forwarded-For` entry
    /// that is not one.
    pub fn client_of(&self, peer: Option<SocketAddr>, headers: &HeaderMap) -> ClientKey {
        let Some(peer) = peer else {
            return ClientKey::Unknown;
        };
        let mut client = canonical(peer.ip());
        if !self.is_trusted(client) {
            return ClientKey::of(client);
        }
        // Each trusted proxy appends the address it got the request from:
        // walk from the right past the trusted ones. A malformed entry
        // stops the walk at the last proxy that is known to have said it.
        for value in headers.get_all("x-forwarded-for").iter().rev() {
            let Ok(list) = value.to_str() else {
                return ClientKey::of(client);
            };
            for entry in list.rsplit(',') {
                let Some(ip) = forwarded_ip(entry) else {
                    return ClientKey::of(client);
                };
                client = ip;
                if !self.is_trusted(ip) {
                    return ClientKey::of(ip);
                }
            }
        }
        ClientKey::of(client)
    }

    fn is_trusted(&self, ip: IpAddr) -> bool {
        self.trusted.iter().any(|net| net.contains(&ip))
    }

    /// Whether `client` is among the limited ones (a read lock; nothing
    /// while no client is limited). Spends nothing, unlike [`Self::precheck`].
    pub fn is_marked(&self, client: ClientKey) -> bool {
        let Some(a) = &self.active else {
            return false;
        };
        a.marked.load(Ordering::Relaxed) > 0 && a.read_marks().contains_key(&client)
    }

    /// Before a request that needs a key: is its client limited?
    pub fn precheck(&self, client: ClientKey) -> Precheck {
        let Some(a) = &self.active else {
            return Precheck::Pass;
        };
        if a.marked.load(Ordering::Relaxed) == 0 {
            return Precheck::Pass;
        }
        let lapsed = match a.read_marks().get(&client) {
            None => return Precheck::Pass,
            Some(until) => *until <= a.now(),
        };
        if lapsed {
            a.unmark(client);
            return Precheck::Pass;
        }
        match a.buckets.check_key(&client) {
            Err(not_until) => Precheck::Limited(not_until.wait_time_from(a.now())),
            Ok(snapshot) => {
                if snapshot.remaining_burst_capacity() > 0 {
                    a.unmark(client);
                } else {
                    a.mark(client, false);
                }
                Precheck::Prepaid
            }
        }
    }

    /// After a refused key: counts the failure. `Some(wait)`: the failure
    /// went past the budget; answer 429 and `Retry-After: wait`.
    pub fn record_failure(&self, client: ClientKey, prepaid: bool) -> Option<Duration> {
        let a = self.active.as_ref()?;
        if prepaid {
            return None;
        }
        let client = self.tracked(a, client);
        match a.buckets.check_key(&client) {
            Ok(snapshot) => {
                if snapshot.remaining_burst_capacity() == 0 {
                    a.mark(client, true);
                }
                None
            }
            Err(not_until) => {
                // Only when the mark was missing (table full, or a race
                // with another failure of the same client).
                a.mark(client, true);
                Some(not_until.wait_time_from(a.now()).max(Duration::from_secs(1)))
            }
        }
    }

    /// The key a failure of `client` is counted under: its own, or the
    /// shared overflow budget when the table is full even after a sweep
    /// (the table cannot tell whether `client` is in it already)
    /// (forced at most once per [`FORCED_SWEEP_GAP`], so that a flood of
    /// new clients cannot make every failure walk the table).
    fn tracked(&self, a: &Active, client: ClientKey) -> ClientKey {
        if a.buckets.len() < a.max_clients {
            return client;
        }
        let since_born = a.now().saturating_duration_since(a.born);
        let now = u64::try_from(since_born.as_nanos()).unwrap_or(u64::MAX);
        let last = a.last_sweep.load(Ordering::Relaxed);
        let gap = u64::try_from(FORCED_SWEEP_GAP.as_nanos()).unwrap_or(u64::MAX);
        if now.saturating_sub(last) >= gap
            && a.last_sweep
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            self.sweep();
        }
        if a.buckets.len() < a.max_clients {
            client
        } else {
            ClientKey::Overflow
        }
    }

    /// Drops budgets that refilled completely and marks that lapsed.
    pub fn sweep(&self) {
        let Some(a) = &self.active else {
            return;
        };
        a.buckets.retain_recent();
        a.buckets.shrink_to_fit();
        let now = a.now();
        let mut marks = a.write_marks();
        marks.retain(|_, until| *until > now);
        a.marked.store(marks.len(), Ordering::Relaxed);
    }

    #[cfg(test)]
    fn advance_clock(&self, by: Duration) {
        if let Some(a) = &self.active {
            a.clock.advance(by);
        }
    }
}

impl Active {
    fn now(&self) -> Instant {
        governor::clock::Clock::now(&self.clock)
    }

    fn read_marks(&self) -> std::sync::RwLockReadGuard<'_, HashMap<ClientKey, Instant>> {
        // Every change is one insert or remove: a panic cannot leave half.
        self.marks.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write_marks(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<ClientKey, Instant>> {
        self.marks.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// Marks `client` limited (or extends its mark); logs a new mark once.
    fn mark(&self, client: ClientKey, log: bool) {
        let now = self.now();
        let until = now.checked_add(self.full_refill).unwrap_or(now);
        let mut marks = self.write_marks();
        if marks.len() >= self.max_clients && !marks.contains_key(&client) {
            // Full until the next sweep: this client's failures still get
            // 429 once over budget, but after the key check, not before.
            return;
        }
        let new = marks.insert(client, until).is_none();
        self.marked.store(marks.len(), Ordering::Relaxed);
        drop(marks);
        if new && log {
            tracing::warn!(
                client = %client,
                "too many failed authentications from this client: refusing its keys until its budget refills"
            );
        }
    }

    fn unmark(&self, client: ClientKey) {
        let mut marks = self.write_marks();
        marks.remove(&client);
        self.marked.store(marks.len(), Ordering::Relaxed);
    }
}

/// `Retry-After` seconds: the wait rounded up, at least 1.
pub fn retry_after_secs(wait: Duration) -> u64 {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    secs.max(1)
}

/// The API's 429: the usual error body with `retry_after`, and the header.
pub fn api_limited(wait: Duration) -> Response {
    let secs = retry_after_secs(wait);
    let mut resp = AppError::new(
        StatusCode::TOO_MANY_REQUESTS,
        format!("too many failed authentications from your address: try again in {secs} s"),
    )
    .with("retry_after", serde_json::Value::from(secs))
    .into_response();
    resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
    resp
}

// ------------------------------------------------------------ the API layer

/// Limits failed authentications on the API's routes (`/api/...`; it lets
/// every other request through untouched).
#[derive(Clone)]
pub struct AuthLimitLayer {
    state: AppState,
}

impl AuthLimitLayer {
    pub fn new(state: AppState) -> Self {
        AuthLimitLayer { state }
    }
}

impl<S> tower::Layer<S> for AuthLimitLayer {
    type Service = AuthLimit<S>;

    fn layer(&self, inner: S) -> AuthLimit<S> {
        AuthLimit {
            inner,
            state: self.state.clone(),
        }
    }
}

/// The service of [`AuthLimitLayer`].
#[derive(Clone)]
pub struct AuthLimit<S> {
    inner: S,
    state: AppState,
}

/// Whether the matched route needs a key (unknown routes are assumed to).
fn needs_key(req: &Request) -> bool {
    let Some(path) = req.extensions().get::<MatchedPath>() else {
        return true;
    };
    let path = path.as_str();
    let method = req.method().as_str();
    crate::ROUTES
        .iter()
        .find(|r| r.path == path && r.method.eq_ignore_ascii_case(method))
        .is_none_or(|r| r.role != Role::Public)
}

impl<S> tower::Service<Request> for AuthLimit<S>
where
    S: tower::Service<Request, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = AuthLimitFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        let auth = self.state.auth();
        let limiter = auth.limiter();
        // No keys: nothing can fail; the dashboard counts its own logins.
        if auth.is_open() || !req.uri().path().starts_with("/api/") {
            return AuthLimitFuture::Inner {
                inner: self.inner.call(req),
                after: None,
            };
        }
        // Limiting off: failures are still counted in the metrics.
        if !limiter.is_on() {
            return AuthLimitFuture::Inner {
                inner: self.inner.call(req),
                after: Some(After {
                    state: self.state.clone(),
                    client: ClientKey::Unknown,
                    prepaid: false,
                }),
            };
        }
        let peer = req.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0);
        let client = limiter.client_of(peer, req.headers());
        let mut prepaid = false;
        if limiter.limited_clients() > 0 && limiter.is_marked(client) && needs_key(&req) {
            match limiter.precheck(client) {
                Precheck::Pass => {}
                Precheck::Prepaid => prepaid = true,
                Precheck::Limited(wait) => {
                    count(&self.state, "api", Counted::Limited);
                    return AuthLimitFuture::Ready {
                        response: Some(api_limited(wait)),
                    };
                }
            }
        }
        AuthLimitFuture::Inner {
            inner: self.inner.call(req),
            after: Some(After {
                state: self.state.clone(),
                client,
                prepaid,
            }),
        }
    }
}

/// What to do once the route answered.
struct After {
    state: AppState,
    client: ClientKey,
    prepaid: bool,
}

impl After {
    fn finish(self, resp: Response) -> Response {
        // Only the key check answers 401 on the API.
        if resp.status() != StatusCode::UNAUTHORIZED {
            return resp;
        }
        count(&self.state, "api", Counted::Failure);
        match self.state.auth().limiter().record_failure(self.client, self.prepaid) {
            None => resp,
            Some(wait) => {
                count(&self.state, "api", Counted::Limited);
                api_limited(wait)
            }
        }
    }
}

pin_project_lite::pin_project! {
    /// The future of [`AuthLimit`]: an early 429, or the route's answer
    /// looked at for a refused key.
    #[project = AuthLimitProj]
    pub enum AuthLimitFuture<F> {
        Ready { response: Option<Response> },
        Inner { #[pin] inner: F, after: Option<After> },
    }
}

impl<F, E> Future for AuthLimitFuture<F>
where
    F: Future<Output = Result<Response, E>>,
{
    type Output = Result<Response, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            AuthLimitProj::Ready { response } => Poll::Ready(Ok(response
                .take()
                .unwrap_or_else(|| StatusCode::TOO_MANY_REQUESTS.into_response()))),
            AuthLimitProj::Inner { inner, after } => match inner.poll(cx) {
                Poll::Pending => Poll::Pending,
                Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
                Poll::Ready(Ok(resp)) => Poll::Ready(Ok(match after.take() {
                    Some(after) => after.finish(resp),
                    None => resp,
                })),
            },
        }
    }
}

/// Which counter to bump.
#[derive(Debug, Clone, Copy)]
pub enum Counted {
    /// A refused key (`tame_auth_failures_total`).
    Failure,
    /// A 429 (`tame_auth_limited_total`).
    Limited,
}

/// Bumps an auth counter of `surface` (`api` or `dashboard`).
pub fn count(state: &AppState, surface: &'static str, what: Counted) {
    let metrics = state.metrics();
    let family = match what {
        Counted::Failure => &metrics.auth_failures,
        Counted::Limited => &metrics.auth_limited,
    };
    family.get_or_create(&AuthLabels { surface }).inc();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limit(burst: u32, secs: u64) -> FailureLimit {
        FailureLimit {
            burst,
            period: Duration::from_secs(secs),
            trusted_proxies: Vec::new(),
        }
    }

    fn v4(a: u8) -> ClientKey {
        ClientKey::of(IpAddr::from([10, 0, 0, a]))
    }

    /// Fails `n` times (not prepaid); the waits of those answered 429.
    fn fail(l: &FailureLimiter, c: ClientKey, n: usize) -> Vec<Option<Duration>> {
        (0..n).map(|_| l.record_failure(c, false)).collect()
    }

    #[test]
    fn the_burst_then_limited_until_one_refills() {
        let l = FailureLimiter::new(limit(3, 6));
        let c = v4(1);
        assert_eq!(l.precheck(c), Precheck::Pass);
        assert_eq!(fail(&l, c, 3), [None, None, None], "the burst is answered 401");
        assert_eq!(l.limited_clients(), 1, "the spent budget marks the client");
        let Precheck::Limited(wait) = l.precheck(c) else {
            panic!("the 4th attempt is refused before its key is checked");
        };
        assert!(
            wait > Duration::from_secs(5) && wait <= Duration::from_secs(6),
            "{wait:?}"
        );
        assert_eq!(retry_after_secs(wait), 6);
        // Refused attempts spend nothing: still limited, same horizon.
        for _ in 0..50 {
            assert!(matches!(l.precheck(c), Precheck::Limited(_)));
        }
        assert_eq!(l.precheck(v4(2)), Precheck::Pass, "another client is not limited");

        l.advance_clock(Duration::from_secs(6));
        assert_eq!(
            l.precheck(c),
            Precheck::Prepaid,
            "one unit refilled: one attempt is checked"
        );
        assert_eq!(
            l.record_failure(c, true),
            None,
            "a prepaid failure is not counted twice"
        );
        assert!(matches!(l.precheck(c), Precheck::Limited(_)), "and it spent the unit");
        assert_eq!(l.limited_clients(), 1);

        // Two units refilled: the attempt gets through and unmarks.
        l.advance_clock(Duration::from_secs(12));
        assert_eq!(l.precheck(c), Precheck::Prepaid);
        assert_eq!(l.limited_clients(), 0);
        assert_eq!(l.precheck(c), Precheck::Pass);
    }

    #[test]
    fn a_missed_mark_still_answers_429_after_the_check() {
        let l = FailureLimiter::new(limit(2, 6));
        let c = v4(3);
        assert_eq!(fail(&l, c, 2), [None, None]);
        // Drop the mark as a full table would have.
        if let Some(a) = &l.active {
            a.unmark(c);
        }
        let waits = fail(&l, c, 1);
        assert!(
            matches!(waits.as_slice(), [Some(w)] if *w >= Duration::from_secs(1)),
            "{waits:?}"
        );
        assert_eq!(l.limited_clients(), 1, "and the client is marked again");
    }

    #[test]
    fn off_limits_nothing() {
        for l in [
            FailureLimiter::new(FailureLimit::off()),
            FailureLimiter::new(limit(5, 0)),
        ] {
            assert!(!l.is_on());
            assert!(fail(&l, v4(1), 100).iter().all(Option::is_none));
            assert_eq!(l.precheck(v4(1)), Precheck::Pass);
            assert_eq!(l.limited_clients(), 0);
        }
    }

    #[test]
    fn sweep_drops_refilled_budgets_and_lapsed_marks() {
        let l = FailureLimiter::new(limit(2, 6));
        for a in 0..50 {
            fail(&l, v4(a), 2);
        }
        fail(&l, v4(200), 1);
        assert_eq!(l.tracked_clients(), 51);
        assert_eq!(l.limited_clients(), 50);
        l.sweep();
        assert_eq!(l.tracked_clients(), 51, "nothing refilled yet");
        l.advance_clock(Duration::from_secs(12));
        l.sweep();
        assert_eq!(l.limited_clients(), 0, "marks lapse once the budget is full again");
        // governor keeps a bucket one period longer than its refill.
        l.advance_clock(Duration::from_secs(7));
        l.sweep();
        assert_eq!(l.tracked_clients(), 0);
        assert_eq!(l.limited_clients(), 0);
        assert_eq!(l.precheck(v4(1)), Precheck::Pass);
    }

    #[test]
    fn a_full_table_puts_new_clients_on_one_shared_budget() {
        let l = FailureLimiter::with_cap(limit(2, 6), 4);
        for a in 0..4 {
            assert_eq!(fail(&l, v4(a), 1), [None]);
        }
        assert_eq!(l.tracked_clients(), 4);
        // Full, and nothing refilled: new clients share the overflow budget.
        assert_eq!(fail(&l, v4(10), 1), [None]);
        assert_eq!(fail(&l, v4(11), 1), [None]);
        assert_eq!(l.tracked_clients(), 5, "the four and the overflow");
        let w = fail(&l, v4(12), 1);
        assert!(matches!(w.as_slice(), [Some(_)]), "the shared budget is spent: {w:?}");
        assert!(matches!(l.precheck(ClientKey::Overflow), Precheck::Limited(_)));
        // While full, every failure shares it (the table cannot say who is
        // in it), but keys are still checked for clients not limited.
        assert!(matches!(fail(&l, v4(0), 1).as_slice(), [Some(_)]));
        assert_eq!(l.precheck(v4(0)), Precheck::Pass);
        // Once budgets refill, a (forced) sweep makes room again.
        l.advance_clock(Duration::from_secs(30));
        assert_eq!(fail(&l, v4(20), 1), [None]);
        assert_eq!(l.tracked_clients(), 1, "swept, then the new client");
    }

    #[test]
    fn clients_are_v4_addresses_and_v6_networks() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::2".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(ClientKey::of(a), ClientKey::of(b), "same /64");
        assert_ne!(ClientKey::of(a), ClientKey::of(c));
        assert_eq!(ClientKey::of(a).to_string(), "2001:db8:1:2::/64");
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        assert_eq!(ClientKey::of(mapped), ClientKey::of(IpAddr::from([192, 0, 2, 7])));
        assert_eq!(ClientKey::of(mapped).to_string(), "192.0.2.7");
    }

    fn xff(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append("x-forwarded-for", v.parse().unwrap());
        }
        h
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let peer = |s: &str| Some(SocketAddr::new(s.parse().unwrap(), 40000));
        let untrusting = FailureLimiter::new(limit(10, 6));
        assert_eq!(
            untrusting.client_of(peer("198.51.100.9"), &xff(&["203.0.113.5"])),
            ClientKey::of("198.51.100.9".parse().unwrap()),
            "by default X-Forwarded-For is ignored"
        );
        assert_eq!(untrusting.client_of(None, &HeaderMap::new()), ClientKey::Unknown);

        let trusting = FailureLimiter::new(FailureLimit {
            trusted_proxies: vec![parse_proxy("10.0.0.0/8").unwrap(), parse_proxy("192.0.2.1").unwrap()],
            ..limit(10, 6)
        });
        let client = |p: &str, h: &[&str]| trusting.client_of(peer(p), &xff(h));
        let ip = |s: &str| ClientKey::of(s.parse().unwrap());
        // The right-most entry that is not a trusted proxy.
        assert_eq!(client("10.1.1.1", &["203.0.113.5"]), ip("203.0.113.5"));
        assert_eq!(
            client("10.1.1.1", &["6.6.6.6, 203.0.113.5, 10.2.2.2"]),
            ip("203.0.113.5"),
            "a client cannot pick its address by prepending entries"
        );
        assert_eq!(
            client("10.1.1.1", &["6.6.6.6", "203.0.113.5:5000, 192.0.2.1"]),
            ip("203.0.113.5")
        );
        assert_eq!(client("10.1.1.1", &["[2001:db8::1]:443"]), ip("2001:db8::1"));
        // Not from a trusted proxy: the header is ignored.
        assert_eq!(client("198.51.100.9", &["203.0.113.5"]), ip("198.51.100.9"));
        // Malformed or missing: the last hop known for sure.
        assert_eq!(client("10.1.1.1", &["203.0.113.5, junk"]), ip("10.1.1.1"));
        assert_eq!(client("10.1.1.1", &[]), ip("10.1.1.1"));
        assert_eq!(
            client("10.1.1.1", &["10.3.3.3"]),
            ip("10.3.3.3"),
            "only proxies: the left-most"
        );
    }

    /// A keyed server state over a temporary store, limited by `limit`.
    fn keyed_state(limit: FailureLimit) -> (AppState, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let source = "version: t\ndefault: allow\nrules: []\n";
        let loaded = crate::LoadedPolicy {
            policy: tame_engine::Policy::from_yaml(source, "p.yml").unwrap(),
            source: source.into(),
            origin: "p.yml".into(),
            loaded_at: jiff::Timestamp::now(),
        };
        let store =
            tame_store::SqliteStore::open(dir.path().join("t.db"), tame_store::SqliteOptions::default()).unwrap();
        let auth = crate::Auth::new(&["agent".into()], &[]).with_failure_limit(limit);
        let state = AppState::new(loaded, None, Arc::new(store), auth, crate::Limits::default());
        (state, dir)
    }

    async fn enforce_from(state: &AppState, key: &str, ip: [u8; 4]) -> StatusCode {
        use tower::ServiceExt;
        let mut req = axum::http::Request::post("/api/v1/enforce")
            .header(header::AUTHORIZATION, format!("Bearer {key}"))
            .header(header::CONTENT_TYPE, "application/json")
            .body(axum::body::Body::from(r#"{"tool_name":"t","tool_args":{}}"#))
            .unwrap();
        req.extensions_mut().insert(ConnectInfo(SocketAddr::from((ip, 4000))));
        crate::app(state.clone()).oneshot(req).await.unwrap().status()
    }

    #[tokio::test]
    async fn through_the_router_the_budget_refills_one_attempt_per_period() {
        let (state, _dir) = keyed_state(limit(2, 6));
        let ip = [203, 0, 113, 1];
        assert_eq!(enforce_from(&state, "x", ip).await, StatusCode::UNAUTHORIZED);
        assert_eq!(enforce_from(&state, "x", ip).await, StatusCode::UNAUTHORIZED);
        assert_eq!(enforce_from(&state, "x", ip).await, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(enforce_from(&state, "agent", ip).await, StatusCode::TOO_MANY_REQUESTS);

        // One period later one attempt is checked: a wrong key is answered
        // 401 (and spends the unit), the next is refused unchecked.
        state.auth().limiter().advance_clock(Duration::from_secs(6));
        assert_eq!(enforce_from(&state, "x", ip).await, StatusCode::UNAUTHORIZED);
        assert_eq!(enforce_from(&state, "agent", ip).await, StatusCode::TOO_MANY_REQUESTS);
        // After another, the right key gets through.
        state.auth().limiter().advance_clock(Duration::from_secs(6));
        assert_eq!(enforce_from(&state, "agent", ip).await, StatusCode::OK);
        assert_eq!(
            enforce_from(&state, "x", ip).await,
            StatusCode::TOO_MANY_REQUESTS,
            "still over budget"
        );
        // A full refill forgets the client.
        state.auth().limiter().advance_clock(Duration::from_secs(12));
        assert_eq!(enforce_from(&state, "x", ip).await, StatusCode::UNAUTHORIZED);
        assert_eq!(enforce_from(&state, "agent", ip).await, StatusCode::OK);
    }

    #[test]
    fn proxies_parse() {
        assert_eq!(parse_proxy(" 10.0.0.7 ").unwrap().to_string(), "10.0.0.7/32");
        assert_eq!(parse_proxy("10.1.2.3/8").unwrap().to_string(), "10.0.0.0/8");
        assert_eq!(parse_proxy("fd00::/8").unwrap().to_string(), "fd00::/8");
        let e = parse_proxy("10.0.0.0/33").unwrap_err();
        assert!(e.contains("`10.0.0.0/33`"), "{e}");
        assert!(parse_proxy("proxy.internal").is_err());
    }
}
