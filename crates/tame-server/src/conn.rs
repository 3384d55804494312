//! Accepting and serving connections (HTTP/1.1 over hyper), with the
//! limits that keep clients from holding the server's sockets and file
//! descriptors:
//!
//! - **a cap on open connections** (`max_connections`): at the cap the
//!   server stops accepting; new connections wait in the kernel's listen
//!   queue until one closes. A warning is logged once each time the cap is
//!   reached. The default is 1024, or less when the open-file limit
//!   (`ulimit -n`) leaves less beside [`RESERVED_FDS`] for the store and
//!   the policy.
//! - **a header timeout** (`header_timeout`, 10 s): a client must send a
//!   request's whole head within this time of connecting, or of the first
//!   byte of a later request on the same connection; else the connection
//!   is dropped (no answer: the client is not reading one).
//! - **an idle timeout** (`idle_timeout`, 75 s: longer than the 60 s of
//!   common load balancers, so that they close first): a keep-alive
//!   connection that waits longer for its next request is closed. A
//!   connection asked to close that still has not finished its answer an
//!   idle timeout later (a client that stopped reading) is dropped.
//!
//! hyper's own header timeout is not used: it also runs while a kept-alive
//! connection waits for its next request, so it cannot tell an idle client
//! from a slow one. Each connection is instead one task that drives the
//! hyper connection and a timer. The time of a request's first byte and of
//! its answer are kept in atomics the connection's reads and its requests
//! update: a few loads per read and one clock read per request; the timer
//! is re-armed only when it fires.
//!
//! Shutdown stops accepting, asks every connection to close after its
//! current request (idle ones close at once) and waits for them all.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::extract::{ConnectInfo, Request};
use axum::response::Response;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, TryAcquireError, watch};
use tokio::time::Instant;
use tower::util::Oneshot;

/// The connection limits (see the module docs).
#[derive(Debug, Clone, Copy)]
pub struct ConnLimits {
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_connections: usize,
}

/// Default cap on open connections.
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;
/// File descriptors left for everything but connections (the store, its
/// WAL, the policy file, the runtime) when the cap follows `ulimit -n`.
pub const RESERVED_FDS: u64 = 64;

/// The cap on open connections: the configured one, else
/// [`DEFAULT_MAX_CONNECTIONS`] or what the open-file limit leaves beside
/// [`RESERVED_FDS`] (at least half of it), whichever is lower. A
/// configured cap above what the limit leaves is kept, with a warning.
pub fn connection_cap(configured: Option<NonZeroUsize>) -> usize {
    let room = open_file_limit().map(|limit| {
        let room = limit.saturating_sub(RESERVED_FDS).max(limit / 2).max(1);
        usize::try_from(room).unwrap_or(usize::MAX)
    });
    match (configured, room) {
        (Some(cap), Some(room)) if cap.get() > room => {
            tracing::warn!(
                max_connections = cap.get(),
                room,
                "max_connections is above what the open-file limit (ulimit -n) leaves for connections: \
                 past {room} connections, accepting fails until some close; raise the limit or lower max_connections"
            );
            cap.get()
        }
        (Some(cap), _) => cap.get(),
        (None, Some(room)) => room.min(DEFAULT_MAX_CONNECTIONS),
        (None, None) => DEFAULT_MAX_CONNECTIONS,
    }
}

#[cfg(unix)]
fn open_file_limit() -> Option<u64> {
    nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        .ok()
        .map(|(soft, _hard)| soft)
}

#[cfg(not(unix))]
fn open_file_limit() -> Option<u64> {
    None
}

/// Serves `router` on `listener` until `shutdown` resolves, then waits for
/// the open connections to finish (see the module docs).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ConnLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections.min(Semaphore::MAX_PERMITS)));
    // Connections hold a receiver: a sent value asks them to close, and the
    // sender learns when the last one is gone.
    let (stop, stopped) = watch::channel(());
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let slot = match slots.clone().try_acquire_owned() {
            Ok(slot) => slot,
            Err(TryAcquireError::Closed) => break,
            Err(TryAcquireError::NoPermits) => {
                tracing::warn!(
                    max_connections = limits.max_connections,
                    "connection cap {} reached: new connections wait in the listen queue until one closes \
                     (max_connections, TAME_MAX_CONNECTIONS, --max-connections)",
                    limits.max_connections
                );
                tokio::select! {
                    slot = slots.clone().acquire_owned() => match slot {
                        Ok(slot) => {
                            tracing::info!("a connection closed: below the connection cap again, accepting");
                            slot
                        }
                        Err(_) => break,
                    },
                    () = &mut shutdown => break,
                }
            }
        };
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) if is_connection_error(&e) => continue,
            Err(e) => {
                // Out of file descriptors, most likely: wait rather than spin.
                tracing::error!(error = %e, "cannot accept a connection; trying again in 1 s");
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_secs(1)) => continue,
                    () = &mut shutdown => break,
                }
            }
        };
        let connection = Connection {
            router: router.clone(),
            peer,
            limits,
            stop: stopped.clone(),
        };
        tokio::spawn(async move {
            connection.run(stream).await;
            drop(slot);
        });
    }
    drop(listener);
    drop(stopped);
    // No receivers left (no connections) is fine: nothing to wait for.
    let _ = stop.send(());
    stop.closed().await;
}

/// Errors of one connection, not of the listener.
fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused | io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset
    )
}

/// One accepted connection, before it runs.
struct Connection {
    router: Router,
    peer: SocketAddr,
    limits: ConnLimits,
    stop: watch::Receiver<()>,
}

impl Connection {
    async fn run(mut self, stream: TcpStream) {
        // No Nagle delay on answers: a response written in more than one
        // segment must not wait for the client's delayed ACK.
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY on a connection");
        }
        let peer = self.peer;
        let activity = Arc::new(Activity::new());
        let io = hyper_util::rt::TokioIo::new(Watched {
            io: stream,
            activity: activity.clone(),
        });
        let service = PerConnection {
            router: self.router,
            peer,
            activity: activity.clone(),
        };
        let mut builder = hyper::server::conn::http1::Builder::new();
        // Timeouts are this connection's own (see the module docs).
        builder.header_read_timeout(None);
        let conn = builder.serve_connection(io, service);
        let mut conn = std::pin::pin!(conn);
        let limits = self.limits;
        let timer = tokio::time::sleep(recheck(&limits));
        let mut timer = std::pin::pin!(timer);
        let mut asked: Option<Instant> = None;
        loop {
            tokio::select! {
                done = conn.as_mut() => {
                    if let Err(e) = done {
                        tracing::debug!(%peer, error = %e, "connection ended with an error");
                    }
                    return;
                }
                () = &mut timer => match activity.next(Instant::now(), &limits, asked) {
                    Step::Wait(until) => timer.as_mut().reset(until),
                    Step::Ask => {
                        tracing::debug!(%peer, "closing a connection idle for {:?}", limits.idle_timeout);
                        conn.as_mut().graceful_shutdown();
                        let now = Instant::now();
                        asked = Some(now);
                        timer.as_mut().reset(now);
                    }
                    Step::Drop(why) => {
                        tracing::debug!(%peer, "dropping a connection: {why}");
                        return;
                    }
                },
                changed = self.stop.changed(), if asked.is_none() => {
                    // The server is shutting down (or gone: `changed` errs).
                    let _ = changed;
                    conn.as_mut().graceful_shutdown();
                    let now = Instant::now();
                    asked = Some(now);
                    timer.as_mut().reset(now);
                }
            }
        }
    }
}

/// What a connection's timer does when it fires.
#[derive(Debug, PartialEq, Eq)]
enum Step {
    /// Nothing yet: fire again then.
    Wait(Instant),
    /// Ask the connection to close after its current answer.
    Ask,
    /// Drop the connection (the socket closes without an answer).
    Drop(&'static str),
}

/// What a connection is doing, updated by its reads and its requests.
/// Times are nanoseconds since `opened`.
#[derive(Debug)]
struct Activity {
    opened: Instant,
    /// Requests being answered (handlers running).
    busy: AtomicUsize,
    /// When the last answer was ready.
    idle_since: AtomicU64,
    /// One more than when the first byte of the next request's head
    /// arrived; 0 while none did. A new connection starts with its head
    /// due: a client connects to send a request.
    head_since: AtomicU64,
}

impl Activity {
    fn new() -> Activity {
        Activity {
            opened: Instant::now(),
            busy: AtomicUsize::new(0),
            idle_since: AtomicU64::new(0),
            head_since: AtomicU64::new(1),
        }
    }

    fn offset(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.opened).as_nanos()).unwrap_or(u64::MAX)
    }

    fn at(&self, offset: u64) -> Instant {
        self.opened + Duration::from_nanos(offset)
    }

    /// Bytes arrived: when no request is being answered and none is
    /// arriving, they start the next request's head.
    fn on_read(&self) {
        if self.busy.load(Relaxed) == 0 && self.head_since.load(Relaxed) == 0 {
            self.head_since
                .store(self.offset(Instant::now()).saturating_add(1), Relaxed);
        }
    }

    /// What to do at `now`; `asked` is when the connection was asked to
    /// close. The timer fires again within the shorter timeout at the
    /// latest: a deadline that starts later (a request answered, a head's
    /// first byte) ends at least that long after it started, so it is met
    /// on time.
    fn next(&self, now: Instant, limits: &ConnLimits, asked: Option<Instant>) -> Step {
        let latest = now + recheck(limits);
        match self.due(now, limits, asked) {
            Step::Wait(at) => Step::Wait(at.min(latest)),
            step => step,
        }
    }

    fn due(&self, now: Instant, limits: &ConnLimits, asked: Option<Instant>) -> Step {
        if self.busy.load(Relaxed) > 0 {
            // No deadline while a handler runs (the request timeout bounds it).
            return Step::Wait(now + recheck(limits));
        }
        let head = self.head_since.load(Relaxed);
        if head != 0 {
            let due = self.at(head - 1) + limits.header_timeout;
            return if now >= due {
                Step::Drop("its request head did not arrive within the header timeout")
            } else {
                Step::Wait(due)
            };
        }
        let idle = self.at(self.idle_since.load(Relaxed));
        match asked {
            None => {
                let due = idle + limits.idle_timeout;
                if now >= due { Step::Ask } else { Step::Wait(due) }
            }
            Some(asked) => {
                let due = asked.max(idle) + limits.idle_timeout;
                if now >= due {
                    Step::Drop("asked to close, it did not finish its answer within the idle timeout")
                } else {
                    Step::Wait(due)
                }
            }
        }
    }
}

/// The longest a connection's timer sleeps.
fn recheck(limits: &ConnLimits) -> Duration {
    limits.header_timeout.min(limits.idle_timeout)
}

/// A request being answered: counted busy until dropped.
#[derive(Debug)]
struct Busy(Arc<Activity>);

impl Busy {
    fn start(activity: &Arc<Activity>) -> Busy {
        activity.busy.fetch_add(1, Relaxed);
        activity.head_since.store(0, Relaxed);
        Busy(activity.clone())
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        if self.0.busy.fetch_sub(1, Relaxed) == 1 {
            self.0.idle_since.store(self.0.offset(Instant::now()), Relaxed);
        }
    }
}

pin_project_lite::pin_project! {
    /// A TCP stream whose reads tell the connection's [`Activity`].
    struct Watched {
        #[pin]
        io: TcpStream,
        activity: Arc<Activity>,
    }
}

impl AsyncRead for Watched {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.project();
        let before = buf.filled().len();
        let read = this.io.poll_read(cx, buf);
        if matches!(read, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            this.activity.on_read();
        }
        read
    }
}

impl AsyncWrite for Watched {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.project().io.poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.project().io.poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().io.poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().io.poll_shutdown(cx)
    }
}

/// The router as one connection's hyper service: each request carries
/// the socket peer (`ConnectInfo`, for the failed-authentication limit)
/// and counts as busy until answered.
#[derive(Debug, Clone)]
struct PerConnection {
    router: Router,
    peer: SocketAddr,
    activity: Arc<Activity>,
}

impl hyper::service::Service<hyper::Request<hyper::body::Incoming>> for PerConnection {
    type Response = Response;
    type Error = Infallible;
    type Future = Answer;

    fn call(&self, req: hyper::Request<hyper::body::Incoming>) -> Answer {
        let busy = Busy::start(&self.activity);
        let mut req = req.map(axum::body::Body::new);
        req.extensions_mut().insert(ConnectInfo(self.peer));
        Answer {
            inner: tower::ServiceExt::oneshot(self.router.clone(), req),
            _busy: busy,
        }
    }
}

pin_project_lite::pin_project! {
    /// The router's answer to one request.
    struct Answer {
        #[pin]
        inner: Oneshot<Router, Request>,
        _busy: Busy,
    }
}

impl Future for Answer {
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.project().inner.poll(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: ConnLimits = ConnLimits {
        header_timeout: Duration::from_secs(10),
        idle_timeout: Duration::from_secs(75),
        max_connections: 8,
    };

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn the_head_is_due_from_the_connection_and_from_its_first_byte() {
        let a = Arc::new(Activity::new());
        let t0 = a.opened;
        assert_eq!(a.next(t0, &LIMITS, None), Step::Wait(t0 + secs(10)));
        assert!(matches!(a.next(t0 + secs(10), &LIMITS, None), Step::Drop(_)));

        // While a request is answered nothing is due; look again soon.
        let busy = Busy::start(&a);
        assert_eq!(a.head_since.load(Relaxed), 0);
        assert_eq!(a.next(t0 + secs(30), &LIMITS, None), Step::Wait(t0 + secs(40)));
        // Bytes of a request being answered (its body) are not a head.
        a.on_read();
        assert_eq!(a.head_since.load(Relaxed), 0);
        drop(busy);
        assert_eq!(a.busy.load(Relaxed), 0);

        // Answered at 35 s: idle from then, looked at every 10 s.
        a.idle_since.store(u64::try_from(secs(35).as_nanos()).unwrap(), Relaxed);
        assert_eq!(a.next(t0 + secs(40), &LIMITS, None), Step::Wait(t0 + secs(50)));
        assert_eq!(a.next(t0 + secs(105), &LIMITS, None), Step::Wait(t0 + secs(110)));
        assert_eq!(a.next(t0 + secs(110), &LIMITS, None), Step::Ask);

        // The next head's first byte: the header timeout runs from it.
        a.on_read();
        let first = a.at(a.head_since.load(Relaxed) - 1);
        assert!(first >= t0);
        assert_eq!(a.next(first, &LIMITS, None), Step::Wait(first + secs(10)));
        assert!(matches!(a.next(first + secs(10), &LIMITS, None), Step::Drop(_)));
    }

    #[test]
    fn a_connection_asked_to_close_is_dropped_an_idle_timeout_later() {
        let a = Arc::new(Activity::new());
        drop(Busy::start(&a));
        let idle = a.at(a.idle_since.load(Relaxed));
        let asked = idle + LIMITS.idle_timeout;
        assert_eq!(a.next(asked, &LIMITS, None), Step::Ask);
        assert_eq!(a.next(asked, &LIMITS, Some(asked)), Step::Wait(asked + secs(10)));
        assert_eq!(
            a.next(asked + secs(70), &LIMITS, Some(asked)),
            Step::Wait(asked + LIMITS.idle_timeout)
        );
        assert!(matches!(
            a.next(asked + LIMITS.idle_timeout, &LIMITS, Some(asked)),
            Step::Drop(_)
        ));
    }

    #[test]
    fn the_default_cap_fits_the_open_file_limit() {
        let cap = connection_cap(None);
        assert!((1..=DEFAULT_MAX_CONNECTIONS).contains(&cap));
        if let Some(limit) = open_file_limit() {
            assert!(u64::try_from(cap).unwrap() <= limit.saturating_sub(RESERVED_FDS).max(limit / 2).max(1));
        }
        assert_eq!(connection_cap(NonZeroUsize::new(3)), 3);
    }
}
