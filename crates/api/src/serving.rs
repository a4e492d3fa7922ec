//! The gateway's HTTP server: one accept loop for the REST API and the consoles, over TLS or
//! (on loopback) plain, for `up` and for every node's own API.
//!
//! An outside review held 500 idle, slowloris and slow-body connections open for ever, ran the
//! process out of file descriptors with about 1,100 idle connects (after which `/health`
//! stopped answering), and bound a bank's gateway to a web page by DNS rebinding. So:
//! - At most [`Limits::connections_max`] connections are open. When one more arrives at the
//!   cap, the oldest connection that has no request in work (it is idle, or still sending its
//!   TLS handshake, headers or body; a request is in work from the end of its body until its
//!   handler answers) is closed to make room. A client whose request the server
//!   is working on is never pushed out by a flood: a flood pushes out only its own kind, and a
//!   real client's connection, which sends its request at once, is served before it ages. When
//!   every open connection has a request in work, the new one is refused (closed at once).
//! - A TLS handshake, a request's head and its body each have a deadline, and a connection
//!   with no request in flight is closed when it has been idle for [`Limits::idle_ms_max`]
//!   (HTTP/1.1: for [`Limits::header_ms_max`], hyper's wait for the next head).
//! - A request naming a Host the server does not serve is answered 421 `MISDIRECTED_REQUEST`
//!   before any handler sees it ([`Hosts`]).
//!
//! The process raises its own open-files limit at start (`dtenge`'s `main`), so the cap, not
//! the operating system, is what bounds the connections.

use crate::access::TlsPeer;
use crate::HttpCode;
use axum::response::IntoResponse;
use hyper::body::{Body, Bytes, Frame, Incoming, SizeHint};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use parking_lot::Mutex;
use rustls::ServerConfig;
use std::collections::VecDeque;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::Notify;
use tokio::time::Instant;
use tower::ServiceExt;

/// How long a graceful stop waits for the connections' requests in flight.
const DRAIN_MS_MAX: u64 = 30_000;
/// Requests in flight at once on one HTTP/2 connection.
const H2_STREAMS_MAX: u32 = 128;
/// How often an HTTP/2 connection is pinged, and how long its answer may take.
const H2_PING_MS: u64 = 20_000;

/// The server's bounds. [`Limits::GATEWAY`] is what every gateway runs with; tests shorten the
/// deadlines to see them act.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Connections open at once (each a file descriptor and a task).
    pub connections_max: usize,
    /// From accept to a finished TLS handshake.
    pub handshake_ms_max: u64,
    /// Waiting for a request's head, from the connection's start or the end of the request
    /// before (HTTP/1.1: hyper's head deadline, so it is also HTTP/1.1's idle deadline).
    pub header_ms_max: u64,
    /// From a request's headers to the end of its body.
    pub body_ms_max: u64,
    /// A connection with no request in flight for this long is closed (what bounds an idle
    /// HTTP/2 connection; an HTTP/1.1 one meets `header_ms_max` first).
    pub idle_ms_max: u64,
}

impl Limits {
    /// The gateways' bounds. 1,024 connections: a gateway's callers are a bank's own systems,
    /// which pool a few connections each, and browsers at the consoles, about six each. The
    /// head deadline is HTTP/1.1's keep-alive too, so it is as long as the idle one: a client
    /// that keeps a pooled connection idle for 10 s (as `bench --http` does while it loads
    /// the other connections) found it closed at its next request. What stops slow heads
    /// from starving the server is the cap's eviction, not this deadline.
    pub const GATEWAY: Limits = Limits {
        connections_max: 1_024,
        handshake_ms_max: 10_000,
        header_ms_max: 60_000,
        body_ms_max: 30_000,
        idle_ms_max: 60_000,
    };

    fn check(&self) {
        assert!((1..=65_536).contains(&self.connections_max), "connections_max is 1 to 65,536");
        for ms in [self.handshake_ms_max, self.header_ms_max, self.body_ms_max, self.idle_ms_max] {
            assert!((1..=3_600_000).contains(&ms), "a deadline is 1 ms to an hour");
        }
    }
}

/// The Host names a server serves: what its certificate names (a `*.` name as TLS matches it:
/// one label), loopback, and any IP address. A request for any other name is answered 421: a
/// web page that rebinds its own DNS name to the server's address cannot make a browser talk
/// to it. An address is always served: a page's requests name the page's own host, and a
/// page served from an address is not a rebinding page (its origin is that address).
#[derive(Clone, Debug)]
pub struct Hosts {
    /// Lowercase, without a port or a trailing dot; IPv6 addresses without brackets.
    names: Arc<[String]>,
}

impl Hosts {
    /// Loopback (`localhost`, `127.0.0.1`, `::1`), the address `listen` unless it is a
    /// wildcard, and `names` (DNS names or IP addresses).
    pub fn serving(listen: SocketAddr, names: &[String]) -> Hosts {
        let mut all: Vec<String> = vec!["localhost".into(), "127.0.0.1".into(), "::1".into()];
        if !listen.ip().is_unspecified() {
            all.push(listen.ip().to_string());
        }
        all.extend(names.iter().map(|name| host_name(name).to_ascii_lowercase()));
        all.sort();
        all.dedup();
        Hosts { names: all.into() }
    }

    /// Whether `host` (a Host header or an authority: a name or address, maybe with a port)
    /// is one this server serves.
    pub fn serves(&self, host: &str) -> bool {
        let name = host_name(host);
        if name.parse::<std::net::IpAddr>().is_ok() {
            return true;
        }
        self.names.iter().any(|served| match served.strip_prefix("*.") {
            Some(domain) => {
                name.split_once('.').is_some_and(|(label, rest)| !label.is_empty() && rest.eq_ignore_ascii_case(domain))
            }
            None => served.eq_ignore_ascii_case(name),
        })
    }

    /// The host a request names: its authority (HTTP/2, absolute form), else its one Host
    /// header; `None` when it names none, or two.
    fn of_request<B>(request: &hyper::Request<B>) -> Option<&str> {
        if let Some(authority) = request.uri().authority() {
            return Some(authority.as_str());
        }
        let mut hosts = request.headers().get_all(hyper::header::HOST).iter();
        match (hosts.next(), hosts.next()) {
            (Some(host), None) => host.to_str().ok(),
            _ => None,
        }
    }
}

/// `host` without a port, user information, brackets or a trailing dot.
fn host_name(host: &str) -> &str {
    let host = host.rsplit_once('@').map_or(host, |(_, host)| host);
    let name = match host.strip_prefix('[') {
        Some(bracketed) => bracketed.split_once(']').map_or(bracketed, |(address, _)| address),
        None => match host.rsplit_once(':') {
            Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
            _ => host,
        },
    };
    name.strip_suffix('.').unwrap_or(name)
}

/// Serve `app` on `listener` until `shutdown` resolves (over TLS with `tls`, else plain),
/// then let the requests in flight finish (bounded) and return.
pub async fn serve(
    app: axum::Router,
    listener: tokio::net::TcpListener,
    tls: Option<Arc<ServerConfig>>,
    hosts: Hosts,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    limits.check();
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    let graceful = GracefulShutdown::new();
    let open = Arc::new(Open::new(limits.connections_max));
    let epoch = Instant::now();
    tokio::pin!(shutdown);
    loop {
        let (tcp, peer_addr) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                // Out of descriptors (a limit below the cap) or the like: make room as the cap
                // would, and wait rather than spin.
                Err(_) => {
                    open.evict_oldest_idle();
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Some((id, activity)) = open.admit(epoch) else {
            tracing::debug!("a connection refused: every open connection has a request in work");
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let connection = Connection {
            app: app.clone(),
            peer_addr,
            tls: acceptor.is_some(),
            hosts: hosts.clone(),
            limits,
            activity,
            epoch,
        };
        let (acceptor, watcher, open) = (acceptor.clone(), graceful.watcher(), open.clone());
        tokio::spawn(async move {
            let _leave = Leave { open, id };
            connection.run(tcp, acceptor, watcher).await;
        });
    }
    // No new connections (the socket closed: a connect is refused, not left in the backlog);
    // those open finish what they were doing.
    drop(listener);
    let _ = tokio::time::timeout(Duration::from_millis(DRAIN_MS_MAX), graceful.shutdown()).await;
    Ok(())
}

/// The connections open, oldest first.
struct Open {
    connections_max: usize,
    next_id: AtomicU64,
    open: Mutex<VecDeque<(u64, Arc<Activity>)>>,
}

impl Open {
    fn new(connections_max: usize) -> Open {
        Open { connections_max, next_id: AtomicU64::new(0), open: Mutex::new(VecDeque::with_capacity(connections_max)) }
    }

    /// Room for one more connection: at the cap, the oldest with no request in work is told
    /// to close; `None` when every one has a request in work.
    fn admit(&self, epoch: Instant) -> Option<(u64, Arc<Activity>)> {
        let mut open = self.open.lock();
        assert!(open.len() <= self.connections_max);
        if open.len() == self.connections_max && !Open::evict(&mut open) {
            return None;
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let activity = Arc::new(Activity::new(epoch));
        open.push_back((id, activity.clone()));
        Some((id, activity))
    }

    /// Tell the oldest connection with no request in work to close, and take it off the list;
    /// false when every one has a request in work.
    fn evict(open: &mut VecDeque<(u64, Arc<Activity>)>) -> bool {
        // Marked evicted only while nothing is in work, in one step: a body that arrives at the
        // same moment either counts first (and this connection is passed over) or finds the
        // mark and is not taken into work.
        let oldest_idle = open.iter().position(|(_, activity)| {
            activity.working.compare_exchange(0, EVICTED, Ordering::AcqRel, Ordering::Acquire).is_ok()
        });
        match oldest_idle.and_then(|at| open.remove(at)) {
            Some((_, evicted)) => {
                evicted.close.notify_one();
                true
            }
            None => false,
        }
    }

    fn evict_oldest_idle(&self) {
        Open::evict(&mut self.open.lock());
    }

    fn leave(&self, id: u64) {
        let mut open = self.open.lock();
        // Not there when it was evicted.
        if let Some(at) = open.iter().position(|(open_id, _)| *open_id == id) {
            open.remove(at);
        }
    }
}

/// Takes a connection off the list when its task ends, however it ends.
struct Leave {
    open: Arc<Open>,
    id: u64,
}

impl Drop for Leave {
    fn drop(&mut self) {
        self.open.leave(self.id);
    }
}

/// What one connection is doing, read by the accept loop and the idle watch.
struct Activity {
    /// Requests in flight (from their headers to their answer).
    in_flight: AtomicUsize,
    /// Of those, the ones whose body has arrived and whose answer is not yet sent: the server
    /// is working on them. The [`EVICTED`] bit marks a connection being closed to make room.
    working: AtomicU64,
    /// When a request last started or ended, in ms since the server's epoch.
    last_ms: AtomicU64,
    /// Told when the connection is evicted.
    close: Notify,
}

impl Activity {
    fn new(epoch: Instant) -> Activity {
        Activity {
            in_flight: AtomicUsize::new(0),
            working: AtomicU64::new(0),
            last_ms: AtomicU64::new(ms_since(epoch)),
            close: Notify::new(),
        }
    }
}

fn ms_since(epoch: Instant) -> u64 {
    u64::try_from(epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// One accepted connection and what serving it needs.
struct Connection {
    app: axum::Router,
    /// The client's address, for the handlers that throttle by source (sign-in).
    peer_addr: SocketAddr,
    tls: bool,
    hosts: Hosts,
    limits: Limits,
    activity: Arc<Activity>,
    epoch: Instant,
}

impl Connection {
    /// Serve until the client closes, a deadline passes, the server stops or the connection is
    /// evicted.
    async fn run(self, tcp: tokio::net::TcpStream, acceptor: Option<tokio_rustls::TlsAcceptor>, watcher: Watcher) {
        let activity = self.activity.clone();
        let evicted = activity.close.notified();
        tokio::select! {
            () = evicted => {}
            () = self.handshake_and_serve(tcp, acceptor, watcher) => {}
        }
    }

    async fn handshake_and_serve(
        self,
        tcp: tokio::net::TcpStream,
        acceptor: Option<tokio_rustls::TlsAcceptor>,
        watcher: Watcher,
    ) {
        let Some(acceptor) = acceptor else {
            return self.serve_io(tcp, None, watcher).await;
        };
        let handshake = tokio::time::timeout(Duration::from_millis(self.limits.handshake_ms_max), acceptor.accept(tcp));
        let Ok(Ok(tls)) = handshake.await else {
            return;
        };
        let peer = tls.get_ref().1.peer_certificates().and_then(|c| c.first()).map(|c| TlsPeer(c.to_vec()));
        self.serve_io(tls, peer, watcher).await;
    }

    async fn serve_io<Io>(self, io: Io, peer: Option<TlsPeer>, watcher: Watcher)
    where
        Io: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let (activity, epoch, idle_ms_max) = (self.activity.clone(), self.epoch, self.limits.idle_ms_max);
        let header_ms_max = self.limits.header_ms_max;
        let this = Arc::new(self);
        let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
            let (this, peer) = (this.clone(), peer.clone());
            async move { Ok::<_, std::convert::Infallible>(this.answer(request, peer).await) }
        });
        let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
        builder.http1().timer(TokioTimer::new()).header_read_timeout(Duration::from_millis(header_ms_max));
        // Pings find an HTTP/2 peer that went away without closing.
        builder
            .http2()
            .timer(TokioTimer::new())
            .max_concurrent_streams(H2_STREAMS_MAX)
            .keep_alive_interval(Duration::from_millis(H2_PING_MS))
            .keep_alive_timeout(Duration::from_millis(H2_PING_MS));
        let connection = watcher.watch(builder.serve_connection_with_upgrades(TokioIo::new(io), service).into_owned());
        tokio::select! {
            _ = connection => {}
            () = idle(&activity, epoch, idle_ms_max) => {}
        }
    }

    /// Answer one request: 421 for a Host not served, else the app's answer, with the
    /// request's body on a deadline.
    async fn answer(&self, request: hyper::Request<Incoming>, peer: Option<TlsPeer>) -> axum::response::Response {
        let refused = match Hosts::of_request(&request) {
            None => Some(
                crate::Failure(dtenge_core::Error::malformed("a request names its host once (Host)")).into_response(),
            ),
            Some(host) if !self.hosts.serves(host) => {
                Some(HttpCode::MisdirectedRequest.response(format!("host {host:?} is not served here")))
            }
            Some(_) => None,
        };
        if let Some(mut refused) = refused {
            guard(refused.headers_mut(), self.tls);
            return refused;
        }
        let work = Arc::new(Work::start(self.activity.clone(), self.epoch));
        if request.body().is_end_stream() && !work.arrived() {
            // The connection is being closed to make room: no work starts on it.
            // (The client sees the connection close, not this answer.)
            return axum::http::StatusCode::SERVICE_UNAVAILABLE.into_response();
        }
        let deadline = Box::pin(tokio::time::sleep(Duration::from_millis(self.limits.body_ms_max)));
        let (work_of_body, body_ms_max) = (work.clone(), self.limits.body_ms_max);
        let mut request =
            request.map(|inner| axum::body::Body::new(OnDeadline { inner, deadline, body_ms_max, work: work_of_body }));
        if let Some(peer) = peer {
            request.extensions_mut().insert(peer);
        }
        request.extensions_mut().insert(axum::extract::ConnectInfo(self.peer_addr));
        let answered = self.app.clone().oneshot(request).await;
        // Out of work once answered: hyper writes the answer (HTTP/1.1 takes the whole body
        // at once; an HTTP/2 client that never opens its window must not hold the connection
        // in work for ever), and the idle watch bounds a write that makes no progress.
        drop(work);
        let mut response = match answered {
            Ok(response) => response,
            Err(never) => match never {},
        };
        guard(response.headers_mut(), self.tls);
        response
    }
}

/// The headers every answer carries, pages, JSON, `/docs` and errors alike, unless the route
/// set its own: nothing is cached (answers carry clients' data, CSRF tokens and balances),
/// nothing is sniffed as another type, framed (clickjacking) or told where it came from, and,
/// over TLS, browsers keep to HTTPS.
fn guard(headers: &mut axum::http::HeaderMap, tls: bool) {
    use axum::http::header::{self, HeaderValue};
    let mut default = |name: header::HeaderName, value: &'static str| {
        if !headers.contains_key(&name) {
            headers.insert(name, HeaderValue::from_static(value));
        }
    };
    default(header::CACHE_CONTROL, "no-store");
    default(header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    default(header::X_FRAME_OPTIONS, "DENY");
    default(header::CONTENT_SECURITY_POLICY, "frame-ancestors 'none'");
    default(header::REFERRER_POLICY, "no-referrer");
    default(header::HeaderName::from_static("cross-origin-opener-policy"), "same-origin");
    default(header::HeaderName::from_static("cross-origin-resource-policy"), "same-origin");
    if tls {
        default(header::STRICT_TRANSPORT_SECURITY, "max-age=31536000");
    }
}

/// Resolves when the connection has had no request in flight for `idle_ms_max`.
async fn idle(activity: &Activity, epoch: Instant, idle_ms_max: u64) {
    loop {
        // `in_flight` first: a request ending stores its time before it leaves, so a count of
        // 0 read first comes with that request's time or a later one.
        let in_flight = activity.in_flight.load(Ordering::Acquire);
        let idle_ms = ms_since(epoch).saturating_sub(activity.last_ms.load(Ordering::Acquire));
        if in_flight == 0 && idle_ms >= idle_ms_max {
            return;
        }
        // A request in flight: look again after a whole period; idle: when it would be due.
        let wait_ms = if in_flight > 0 { idle_ms_max } else { idle_ms_max.saturating_sub(idle_ms) };
        tokio::time::sleep(Duration::from_millis(wait_ms.max(1))).await;
    }
}

/// The bit of [`Activity::working`] that marks a connection evicted.
const EVICTED: u64 = 1 << 63;

/// One request in flight: counted on its connection from its headers to its answer, and as
/// work from the end of its body.
struct Work {
    activity: Arc<Activity>,
    epoch: Instant,
    /// `READING`, then `WORKING` once the body has arrived, then `DONE`.
    state: AtomicU8,
}

const READING: u8 = 0;
const WORKING: u8 = 1;
const DONE: u8 = 2;

impl Work {
    fn start(activity: Arc<Activity>, epoch: Instant) -> Work {
        activity.in_flight.fetch_add(1, Ordering::AcqRel);
        activity.last_ms.store(ms_since(epoch), Ordering::Release);
        Work { activity, epoch, state: AtomicU8::new(READING) }
    }

    /// The body has arrived: from now on the server works on the request (unless its
    /// connection is being evicted). Counted before the state changes, and taken back when the
    /// request was already answered, so the count never goes below what is in work.
    fn arrived(&self) -> bool {
        let counted = self
            .activity
            .working
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |w| (w & EVICTED == 0).then_some(w + 1))
            .is_ok();
        if counted && self.state.compare_exchange(READING, WORKING, Ordering::AcqRel, Ordering::Acquire).is_err() {
            let before = self.activity.working.fetch_sub(1, Ordering::AcqRel);
            assert!(before & !EVICTED > 0, "a request taken back from work it was not in");
        }
        counted
    }
}

impl Drop for Work {
    fn drop(&mut self) {
        if self.state.swap(DONE, Ordering::AcqRel) == WORKING {
            let before = self.activity.working.fetch_sub(1, Ordering::AcqRel);
            assert!(before & !EVICTED > 0, "a request left work it was not in");
        }
        self.activity.last_ms.store(ms_since(self.epoch), Ordering::Release);
        let before = self.activity.in_flight.fetch_sub(1, Ordering::AcqRel);
        assert!(before > 0, "a request left a connection it was not on");
    }
}

/// A request body that must arrive whole before its deadline, and tells its request's
/// [`Work`] when it has.
struct OnDeadline {
    inner: Incoming,
    deadline: Pin<Box<tokio::time::Sleep>>,
    body_ms_max: u64,
    work: Arc<Work>,
}

/// The body arrived as its connection was being closed to make room.
#[derive(Debug, thiserror::Error)]
#[error("the connection is closing: send the request again")]
struct ConnectionClosing;

/// The body did not arrive in time.
#[derive(Debug, thiserror::Error)]
#[error("the body did not arrive within {0} ms")]
struct BodyTooSlow(u64);

impl Body for OnDeadline {
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_frame(cx) {
            // A body that ends on a connection being evicted fails: no work starts on it.
            Poll::Ready(None) if !this.work.arrived() => Poll::Ready(Some(Err(ConnectionClosing.into()))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Ready(Some(Ok(frame))) if this.inner.is_end_stream() && !this.work.arrived() => {
                drop(frame);
                Poll::Ready(Some(Err(ConnectionClosing.into())))
            }
            Poll::Ready(Some(Ok(frame))) => Poll::Ready(Some(Ok(frame))),
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
            Poll::Pending => match this.deadline.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Some(Err(BodyTooSlow(this.body_ms_max).into()))),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::{get, post};
    use std::net::SocketAddr;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    /// Far above every deadline of [`SHORT`]: a connection the server should close is closed
    /// well before it.
    const CLOSE_WAIT_MS_MAX: u64 = 10_000;

    /// Deadlines short enough to watch them act.
    const SHORT: Limits =
        Limits { connections_max: 8, handshake_ms_max: 300, header_ms_max: 300, body_ms_max: 300, idle_ms_max: 400 };

    struct Running {
        addr: SocketAddr,
        release: Arc<Notify>,
        _stop: tokio::sync::oneshot::Sender<()>,
    }

    /// A server of `/health`, `POST /echo` (answers the body's length) and `/slow` (answers
    /// when released) on a free loopback port.
    async fn start(limits: Limits) -> Running {
        let release = Arc::new(Notify::new());
        let released = release.clone();
        let app = axum::Router::new()
            .route("/health", get(|| async { "ok" }))
            .route("/echo", post(|body: Bytes| async move { body.len().to_string() }))
            .route(
                "/slow",
                get(move || {
                    let released = released.clone();
                    async move {
                        released.notified().await;
                        "done"
                    }
                }),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let hosts = Hosts::serving(addr, &["bank.example".to_string()]);
        tokio::spawn(serve(app, listener, None, hosts, limits, async move {
            let _ = stopped.await;
        }));
        Running { addr, release, _stop: stop }
    }

    /// Send `request` and read what comes back until the server closes (or 10 s pass).
    async fn exchange(addr: SocketAddr, request: &str) -> String {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream.write_all(request.as_bytes()).await.unwrap();
        read_until_closed(&mut stream).await.expect("the server closes the connection")
    }

    /// What the server sent before it closed; `None` if it still had not after 10 s.
    async fn read_until_closed(stream: &mut TcpStream) -> Option<String> {
        let mut answer = Vec::new();
        let read = tokio::time::timeout(Duration::from_millis(CLOSE_WAIT_MS_MAX), async {
            let mut chunk = [0u8; 4_096];
            loop {
                match stream.read(&mut chunk).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => answer.extend_from_slice(&chunk[..n]),
                }
            }
        });
        read.await.ok()?;
        Some(String::from_utf8_lossy(&answer).into_owned())
    }

    /// `n` connections, each with a `/slow` request in work.
    async fn in_work(server: &Running, n: usize) -> Vec<TcpStream> {
        let mut working = Vec::with_capacity(n);
        for _ in 0..n {
            let mut stream = TcpStream::connect(server.addr).await.unwrap();
            stream.write_all(get_request("/slow", "localhost").as_bytes()).await.unwrap();
            working.push(stream);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        working
    }

    /// Release the `/slow` requests of `working`; each is answered.
    async fn answered(server: &Running, working: Vec<TcpStream>) {
        server.release.notify_waiters();
        for mut stream in working {
            let answer = read_until_closed(&mut stream).await.expect("answered");
            assert!(answer.ends_with("done"), "{answer}");
        }
    }

    fn get_request(path: &str, host: &str) -> String {
        format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n")
    }

    #[test]
    fn a_host_is_compared_by_its_name_alone() {
        let hosts = Hosts::serving("10.1.2.3:8443".parse().unwrap(), &["API.Bank.example".to_string()]);
        for served in [
            "localhost",
            "localhost:8080",
            "127.0.0.1:1",
            "[::1]:8443",
            "10.1.2.3",
            "api.bank.example.",
            "api.bank.EXAMPLE:443",
        ] {
            assert!(hosts.serves(served), "{served}");
        }
        for refused in ["attacker.example", "attacker.example:8443", "bank.example", "", "localhost.attacker.example"] {
            assert!(!hosts.serves(refused), "{refused}");
        }
        // Any address: no rebinding page names one (its requests name its own host).
        for address in ["10.1.2.4", "[0:0:0:0:0:0:0:1]:80", "192.168.0.7:8443"] {
            assert!(hosts.serves(address), "{address}");
        }
        // A certificate's wildcard name covers one label, as TLS matches it.
        let wildcard = Hosts::serving("0.0.0.0:443".parse().unwrap(), &["*.steppe.example".to_string()]);
        assert!(wildcard.serves("api.steppe.example:443"));
        for refused in ["steppe.example", "a.b.steppe.example", ".steppe.example"] {
            assert!(!wildcard.serves(refused), "{refused}");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_request_for_a_host_not_served_is_answered_421_and_reaches_no_handler() {
        let server = start(SHORT).await;
        let refused = exchange(server.addr, &get_request("/health", "attacker.example")).await;
        assert!(refused.starts_with("HTTP/1.1 421"), "{refused}");
        assert!(refused.contains("\"MISDIRECTED_REQUEST\""), "{refused}");
        assert!(!refused.ends_with("ok"), "{refused}");
        let no_host = exchange(server.addr, "GET /health HTTP/1.0\r\n\r\n").await;
        assert!(no_host.starts_with("HTTP/1.0 400") || no_host.starts_with("HTTP/1.1 400"), "{no_host}");
        let two_hosts = exchange(
            server.addr,
            "GET /health HTTP/1.1\r\nHost: localhost\r\nHost: attacker.example\r\nConnection: close\r\n\r\n",
        )
        .await;
        assert!(two_hosts.starts_with("HTTP/1.1 400"), "{two_hosts}");
        for host in [format!("127.0.0.1:{}", server.addr.port()), "localhost".into(), "bank.example:443".into()] {
            let served = exchange(server.addr, &get_request("/health", &host)).await;
            assert!(served.starts_with("HTTP/1.1 200") && served.ends_with("ok"), "{host}: {served}");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_answer_is_kept_from_caches_frames_and_sniffing() {
        let server = start(SHORT).await;
        for (path, host) in [("/health", "localhost"), ("/nowhere", "localhost"), ("/health", "attacker.example")] {
            let answer = exchange(server.addr, &get_request(path, host)).await.to_ascii_lowercase();
            for header in [
                "cache-control: no-store",
                "x-content-type-options: nosniff",
                "x-frame-options: deny",
                "content-security-policy: frame-ancestors 'none'",
                "referrer-policy: no-referrer",
            ] {
                assert!(answer.contains(header), "{path} for {host}: no {header}: {answer}");
            }
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_connection_that_sends_nothing_or_an_unfinished_head_is_closed() {
        let server = start(SHORT).await;
        let mut silent = TcpStream::connect(server.addr).await.unwrap();
        let mut slowloris = TcpStream::connect(server.addr).await.unwrap();
        slowloris.write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\nX-Slow: a").await.unwrap();
        assert!(read_until_closed(&mut silent).await.is_some(), "an idle connection stays open");
        let answer = read_until_closed(&mut slowloris).await.expect("an unfinished head stays open");
        assert!(answer.is_empty() || answer.starts_with("HTTP/1.1 408"), "{answer}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_body_that_does_not_arrive_in_time_is_refused_and_its_connection_closed() {
        let server = start(SHORT).await;
        let mut stream = TcpStream::connect(server.addr).await.unwrap();
        let head = "POST /echo HTTP/1.1\r\nHost: localhost\r\nContent-Length: 1000\r\n\r\n";
        stream.write_all(head.as_bytes()).await.unwrap();
        stream.write_all(b"0123456789").await.unwrap();
        let answer = read_until_closed(&mut stream).await.expect("a slow body stays open");
        assert!(answer.starts_with("HTTP/1.1 4"), "answered with a client error: {answer}");
        // A whole body is served.
        let whole = exchange(
            server.addr,
            "POST /echo HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Length: 10\r\n\r\n0123456789",
        )
        .await;
        assert!(whole.starts_with("HTTP/1.1 200") && whole.ends_with("10"), "{whole}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_kept_alive_connection_is_closed_when_idle_and_not_while_its_request_is_worked_on() {
        // The head deadline far beyond the idle one: what closes the connection is the idle
        // watch (HTTP/1.1's head deadline also runs between requests).
        let limits = Limits { header_ms_max: 30_000, ..SHORT };
        let server = start(limits).await;
        let started = std::time::Instant::now();
        let mut kept = TcpStream::connect(server.addr).await.unwrap();
        kept.write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n").await.unwrap();
        let answer = read_until_closed(&mut kept).await.expect("an idle kept-alive connection stays open");
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(started.elapsed() < Duration::from_millis(limits.header_ms_max), "closed by the idle watch");
        // A request worked on for longer than the idle deadline keeps its connection.
        let mut slow = TcpStream::connect(server.addr).await.unwrap();
        slow.write_all(get_request("/slow", "localhost").as_bytes()).await.unwrap();
        tokio::time::sleep(Duration::from_millis(SHORT.idle_ms_max * 3)).await;
        server.release.notify_waiters();
        let answer = read_until_closed(&mut slow).await.expect("answered and closed");
        assert!(answer.starts_with("HTTP/1.1 200") && answer.ends_with("done"), "{answer}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn at_the_cap_the_oldest_idle_connection_makes_room_and_work_is_never_pushed_out() {
        let limits = Limits { connections_max: 4, idle_ms_max: 60_000, header_ms_max: 60_000, ..SHORT };
        let server = start(limits).await;
        // Two requests in work, then two idle connections: the cap is reached.
        let working = in_work(&server, 2).await;
        let mut idle_first = TcpStream::connect(server.addr).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        let _idle_second = TcpStream::connect(server.addr).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        // One more: the oldest idle one is closed, the new one served.
        let served = exchange(server.addr, &get_request("/health", "localhost")).await;
        assert!(served.starts_with("HTTP/1.1 200"), "{served}");
        assert!(read_until_closed(&mut idle_first).await.is_some(), "the oldest idle connection made room");
        // The work in flight was not pushed out.
        answered(&server, working).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn when_every_connection_has_work_in_flight_a_new_one_is_refused() {
        let limits = Limits { connections_max: 2, ..SHORT };
        let server = start(limits).await;
        let working = in_work(&server, 2).await;
        let refused = exchange(server.addr, &get_request("/health", "localhost")).await;
        assert!(refused.is_empty(), "closed without an answer: {refused}");
        answered(&server, working).await;
        let served = exchange(server.addr, &get_request("/health", "localhost")).await;
        assert!(served.starts_with("HTTP/1.1 200"), "room again once the work is answered: {served}");
    }
}
