//! `dtenge-net`: the network between participants, each in its own process or machine.
//!
//! A [`Net`] is one participant's end of it and a [`Transport`] like `InProcess`, so a role's
//! code does not change when it moves to its own process. Underneath:
//!
//! - **TLS 1.3 with mutual authentication** (rustls): both ends present a certificate issued
//!   by the network's root (the NBK, `dtenge-pki`) and not on the current revocation list; a
//!   revoked participant is refused at connection, and a new list ends its live connections
//!   ([`Net::set_revocation_list`]).
//! - **HTTP/2** (hyper) on top: one long request per connection and direction, whose body is a
//!   stream of frames; HTTP/2's flow control carries a slow receiver's back-pressure to the
//!   sender.
//! - **Signed frames** ([`frame`]): each a batch of envelopes, numbered, signed by the
//!   sender's certified key and bound to the connection, so an altered, replayed or reordered
//!   frame is refused, and a participant can send only as the role its certificate names.
//!
//! Each participant dials every peer it sends to: a connection carries frames one way, from
//! the participant that opened it. Delivery is never promised (as with every `Transport`):
//! what was queued for a peer that cannot be reached is lost, and the roles' protocols resend
//! what must arrive.

#![forbid(unsafe_code)]

pub mod frame;
mod tls;

use bytes::{Bytes, BytesMut};
use dtenge_core::crypto::NodeKey;
use dtenge_pki::{read_certificate, read_revocation_list, Certified};
use dtenge_transport::{InProcess, Inbox, SendError, Transport};
use dtenge_wire::{Envelope, RoleId};
use frame::{frame_length, FrameError, Opener, Sealer, BINDING_BYTES, FRAME_ENVELOPES_MAX, LENGTH_BYTES};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use parking_lot::{Mutex, RwLock};
use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use thiserror::Error;
use tls::Tls;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Notify};
use tokio_rustls::{TlsAcceptor, TlsConnector};

/// The one path frames travel on.
pub const FRAMES_PATH: &str = "/dtenge/v1/frames";
/// Most envelopes waiting for one peer: a peer that cannot keep up slows its senders
/// (`SendError::Full`) instead of growing this without bound.
pub const PEER_QUEUE_ENVELOPES_MAX: usize = 4_096;
/// Most frames handed to one connection and not yet written.
const FRAMES_IN_FLIGHT_MAX: usize = 16;
/// Most connections this participant serves at once.
pub const CONNECTIONS_MAX: usize = 1_024;
/// A connection whose TLS handshake takes longer is dropped.
const HANDSHAKE_MS_MAX: u64 = 5_000;
/// Waits between attempts to reach a peer: doubling from the first to the last.
const RECONNECT_MS_MIN: u64 = 20;
const RECONNECT_MS_MAX: u64 = 2_000;
/// How long an arriving envelope waits for room in a full inbox of this process before it is
/// lost. While it waits, the connection reads nothing more, and HTTP/2's flow control stops
/// the sender.
const INBOX_WAIT_MS_MAX: u64 = 1_000;
/// The exporter label that binds frames to their connection (RFC 8446 §7.5).
const BINDING_LABEL: &[u8] = b"EXPORTER-dtenge-frames-v1";

/// Why a participant's end of the network could not start or change.
#[derive(Debug, Error)]
pub enum NetError {
    #[error("identity: {0}")]
    Identity(String),
    #[error("TLS: {0}")]
    Tls(String),
    #[error("revocation list: {0}")]
    Revocation(String),
    #[error("cannot listen on {address}: {source}")]
    Listen { address: SocketAddr, source: std::io::Error },
    #[error("the network's threads: {0}")]
    Runtime(std::io::Error),
}

/// What a participant proves itself with.
pub struct Identity {
    /// Its signing key (in memory or an HSM): the certificate certifies its public half.
    pub key: NodeKey,
    /// Its certificate, issued by the root.
    pub cert_der: Vec<u8>,
    /// The root certificate: the only one trusted.
    pub ca_der: Vec<u8>,
    /// The revocation list in force at start.
    pub crl_der: Vec<u8>,
}

/// A participant this one sends to.
#[derive(Clone, Debug)]
pub struct Peer {
    pub role: RoleId,
    /// Where it answers, tried in turn when a connection fails: one place for most roles, one
    /// per replica for the notary (whichever replica answers hands what it gets to the
    /// leader).
    pub endpoints: Vec<Endpoint>,
}

/// One place a peer answers.
#[derive(Clone, Debug)]
pub struct Endpoint {
    /// `host:port`.
    pub address: String,
    /// The DNS name its certificate must carry.
    pub server_name: String,
}

impl Peer {
    /// A peer that answers in one place.
    pub fn at(role: RoleId, address: impl Into<String>, server_name: impl Into<String>) -> Peer {
        Peer { role, endpoints: vec![Endpoint { address: address.into(), server_name: server_name.into() }] }
    }
}

/// How `role` appears to `viewer`: as itself, except that a replica of the notary appears as
/// the notary to everyone but its fellow replicas (and the notary's shards). A bank dials "the notary" and any replica
/// may answer; a replica answers banks and central as the notary; replicas talk to each other
/// under their own numbers.
pub fn seen_as(role: &RoleId, viewer: &RoleId) -> RoleId {
    let inside = |r: &RoleId| matches!(r, RoleId::NotaryReplica(_) | RoleId::NotaryShard { .. });
    match role {
        RoleId::NotaryReplica(_) if !inside(viewer) => RoleId::Notary,
        _ => role.clone(),
    }
}

pub struct NetConfig {
    pub identity: Identity,
    pub listen: SocketAddr,
    pub peers: Vec<Peer>,
}

/// What the network did, counted since start.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NetStats {
    pub frames_sent: u64,
    pub envelopes_sent: u64,
    pub frames_received: u64,
    pub envelopes_received: u64,
    /// Frames refused: altered, replayed, reordered, from an impostor (each ends its connection).
    pub frames_refused: u64,
    /// Connections that failed their handshake (unknown root, revoked, expired, not TLS 1.3)
    /// or named another role than the one dialled.
    pub connections_refused: u64,
    /// Live connections ended because a new revocation list named their peer.
    pub connections_revoked: u64,
    /// Envelopes lost: queued for a peer that could not be reached, or arrived for a role that
    /// is not running or whose inbox stayed full.
    pub envelopes_lost: u64,
}

#[derive(Default)]
struct Counters {
    frames_sent: AtomicU64,
    envelopes_sent: AtomicU64,
    frames_received: AtomicU64,
    envelopes_received: AtomicU64,
    frames_refused: AtomicU64,
    connections_refused: AtomicU64,
    connections_revoked: AtomicU64,
    envelopes_lost: AtomicU64,
}

fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

/// A live connection, so that a revocation can end it.
struct Live {
    peer_serial: u64,
    end: Arc<Notify>,
}

struct Shared {
    me: RoleId,
    identity: Identity,
    local: InProcess,
    outbound: HashMap<RoleId, mpsc::Sender<Envelope>>,
    tls: RwLock<Arc<Tls>>,
    connections: Mutex<(u64, HashMap<u64, Live>)>,
    counters: Counters,
}

/// Removes its connection from the live ones when the connection ends.
struct Tracked<'a> {
    shared: &'a Shared,
    id: u64,
    end: Arc<Notify>,
}

impl Drop for Tracked<'_> {
    fn drop(&mut self) {
        self.shared.connections.lock().1.remove(&self.id);
    }
}

impl Shared {
    fn track(&self, peer_serial: u64) -> Option<Tracked<'_>> {
        let mut connections = self.connections.lock();
        if connections.1.len() >= CONNECTIONS_MAX {
            return None;
        }
        connections.0 += 1;
        let id = connections.0;
        let end = Arc::new(Notify::new());
        connections.1.insert(id, Live { peer_serial, end: end.clone() });
        Some(Tracked { shared: self, id, end })
    }

    /// The peer's certificate, once rustls verified it: its role and key. A certificate that
    /// names no participant (an API client's) is refused.
    fn certified_peer(
        &self,
        certificates: Option<&[rustls::pki_types::CertificateDer<'_>]>,
    ) -> Option<(RoleId, Certified)> {
        let certified = certificates.and_then(|c| c.first()).and_then(|der| read_certificate(der).ok());
        let peer = certified.and_then(|c| Some((c.role()?.clone(), c)));
        if peer.is_none() {
            add(&self.counters.connections_refused, 1);
        }
        peer
    }

    /// Whether the revocation list in force names the certificate `serial`. Checked before
    /// every frame, so that nothing from a revoked peer is delivered once
    /// `set_revocation_list` returned, whatever its connection is doing.
    fn is_revoked(&self, serial: u64) -> bool {
        self.tls.read().revocations.is_revoked(serial)
    }

    /// Hand `envelopes` to this process's roles, waiting (bounded) for room in a full inbox.
    async fn deliver(&self, envelopes: Vec<Envelope>) {
        add(&self.counters.frames_received, 1);
        add(&self.counters.envelopes_received, envelopes.len() as u64);
        for envelope in envelopes {
            let mut envelope = envelope;
            let mut waited_ms = 0;
            loop {
                match self.local.try_deliver(envelope) {
                    Ok(()) => break,
                    Err((SendError::Full(_), back)) if waited_ms < INBOX_WAIT_MS_MAX => {
                        envelope = back;
                        tokio::time::sleep(Duration::from_millis(1)).await;
                        waited_ms += 1;
                    }
                    Err((error, _)) => {
                        tracing::warn!(%error, "an arriving envelope is lost");
                        add(&self.counters.envelopes_lost, 1);
                        break;
                    }
                }
            }
        }
    }
}

/// The TLS configuration this participant dials with: its certificate, the root, the
/// revocation list in `identity`. For tools and tests that speak to a participant directly.
pub fn client_tls(identity: &Identity) -> Result<Arc<rustls::ClientConfig>, NetError> {
    Ok(tls::configs(identity, &identity.crl_der)?.client)
}

/// The value both ends of a connection derive from its handshake and every frame's
/// signature covers.
pub fn binding<S>(connection: &rustls::ConnectionCommon<S>) -> Option<[u8; BINDING_BYTES]> {
    connection.export_keying_material([0u8; BINDING_BYTES], BINDING_LABEL, None).ok()
}

/// One participant's end of the network.
pub struct Net {
    shared: Arc<Shared>,
    runtime: Option<tokio::runtime::Runtime>,
    local_addr: SocketAddr,
}

impl Net {
    /// Listen on `config.listen`, dial the peers as envelopes for them come, and return the
    /// inbox of this participant's role: the role its certificate names.
    pub fn start(config: NetConfig) -> Result<(Net, Inbox), NetError> {
        let certified = read_certificate(&config.identity.cert_der).map_err(|e| NetError::Identity(e.to_string()))?;
        let Some(me) = certified.role().cloned() else {
            return Err(NetError::Identity(format!("the certificate names {}, not a participant", certified.subject)));
        };
        if certified.key != config.identity.key.public_key() {
            return Err(NetError::Identity(format!("the certificate of {me} certifies another key")));
        }
        let tls = tls::configs(&config.identity, &config.identity.crl_der)?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name(format!("net-{me}"))
            .enable_all()
            .build()
            .map_err(NetError::Runtime)?;
        let listener = std::net::TcpListener::bind(config.listen)
            .and_then(|l| l.set_nonblocking(true).map(|()| l))
            .map_err(|source| NetError::Listen { address: config.listen, source })?;
        let local_addr = listener.local_addr().map_err(|source| NetError::Listen { address: config.listen, source })?;

        let mut outbound = HashMap::new();
        let mut links = Vec::new();
        for peer in config.peers {
            assert_ne!(peer.role, me, "a participant does not dial itself");
            assert!(!peer.endpoints.is_empty(), "a peer answers somewhere");
            let (sender, receiver) = mpsc::channel(PEER_QUEUE_ENVELOPES_MAX);
            outbound.insert(peer.role.clone(), sender);
            links.push((peer, receiver));
        }
        let local = InProcess::new();
        let inbox = local.register(me.clone());
        if matches!(me, RoleId::NotaryReplica(_)) {
            // What arrives for the notary is this replica's to take.
            local.alias(RoleId::Notary, &me);
        }
        let shared = Arc::new(Shared {
            me,
            identity: config.identity,
            local,
            outbound,
            tls: RwLock::new(Arc::new(tls)),
            connections: Mutex::new((0, HashMap::new())),
            counters: Counters::default(),
        });
        {
            let _entered = runtime.enter();
            let listener = TcpListener::from_std(listener).map_err(NetError::Runtime)?;
            runtime.spawn(serve(shared.clone(), listener));
        }
        for (peer, receiver) in links {
            runtime.spawn(link(shared.clone(), peer, receiver));
        }
        Ok((Net { shared, runtime: Some(runtime), local_addr }, inbox))
    }

    /// Where this participant listens (the port, when `listen` asked for 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    pub fn role(&self) -> &RoleId {
        &self.shared.me
    }

    /// Close this participant's inbox: its thread ends once it took what was waiting, and what
    /// arrives from now on is lost (counted), as on a process that is stopping.
    pub fn close_inbox(&self) {
        self.shared.local.unregister(&self.shared.me);
    }

    /// Put a newer revocation list in force: new connections are checked against it, and live
    /// ones whose peer it names end at once. An older list than the one in force is refused.
    pub fn set_revocation_list(&self, crl_der: &[u8]) -> Result<(), NetError> {
        let list = read_revocation_list(crl_der).map_err(|e| NetError::Revocation(e.to_string()))?;
        let in_force = self.shared.tls.read().revocations.number;
        if list.number < in_force {
            return Err(NetError::Revocation(format!("list {} is older than list {in_force} in force", list.number)));
        }
        let tls = tls::configs(&self.shared.identity, crl_der)?;
        *self.shared.tls.write() = Arc::new(tls);
        let connections = self.shared.connections.lock();
        for live in connections.1.values().filter(|live| list.is_revoked(live.peer_serial)) {
            live.end.notify_one();
            add(&self.shared.counters.connections_revoked, 1);
        }
        Ok(())
    }

    /// The number of the revocation list in force.
    pub fn revocation_list_number(&self) -> u64 {
        self.shared.tls.read().revocations.number
    }

    pub fn stats(&self) -> NetStats {
        let c = &self.shared.counters;
        let get = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        NetStats {
            frames_sent: get(&c.frames_sent),
            envelopes_sent: get(&c.envelopes_sent),
            frames_received: get(&c.frames_received),
            envelopes_received: get(&c.envelopes_received),
            frames_refused: get(&c.frames_refused),
            connections_refused: get(&c.connections_refused),
            connections_revoked: get(&c.connections_revoked),
            envelopes_lost: get(&c.envelopes_lost),
        }
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_timeout(Duration::from_secs(1));
        }
    }
}

impl Transport for Net {
    fn send(&self, envelope: Envelope) -> Result<(), SendError> {
        assert_eq!(envelope.from, seen_as(&self.shared.me, &envelope.to), "a participant sends as itself");
        let Some(peer) = self.shared.outbound.get(&envelope.to) else {
            return self.shared.local.send(envelope);
        };
        peer.try_send(envelope).map_err(|e| match e {
            mpsc::error::TrySendError::Full(envelope) => SendError::Full(envelope.to),
            mpsc::error::TrySendError::Closed(envelope) => SendError::Unreachable(envelope.to),
        })
    }
}

// ---- the sending side ------------------------------------------------------------------------

/// A request body fed frame by frame.
struct FrameBody(mpsc::Receiver<Bytes>);

impl hyper::body::Body for FrameBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Bytes>, Infallible>>> {
        self.0.poll_recv(cx).map(|frame| frame.map(|bytes| Ok(hyper::body::Frame::data(bytes))))
    }
}

/// Keep a connection to `peer` while this participant runs, sending what is queued for it.
async fn link(shared: Arc<Shared>, peer: Peer, mut queue: mpsc::Receiver<Envelope>) {
    let mut wait_ms = RECONNECT_MS_MIN;
    for attempt in 0usize.. {
        let endpoint = &peer.endpoints[attempt % peer.endpoints.len()];
        match send_on_connection(&shared, &peer.role, endpoint, &mut queue).await {
            Ok(()) => return,
            Err(error) => {
                tracing::warn!(peer = %peer.role, address = %endpoint.address, %error, "connection to a peer ended");
                // What waited for the peer is lost, as on a real network: the roles resend.
                let mut lost = 0u64;
                while queue.try_recv().is_ok() {
                    lost += 1;
                }
                add(&shared.counters.envelopes_lost, lost);
                tokio::time::sleep(Duration::from_millis(wait_ms)).await;
                wait_ms = (wait_ms * 2).min(RECONNECT_MS_MAX);
            }
        }
    }
}

/// One connection to `peer`: dial, check who answered, send frames until it fails. Returns
/// `Ok` once this participant stops (its queue closed).
async fn send_on_connection(
    shared: &Shared,
    peer: &RoleId,
    endpoint: &Endpoint,
    queue: &mut mpsc::Receiver<Envelope>,
) -> Result<(), String> {
    let client = shared.tls.read().client.clone();
    let server_name = rustls::pki_types::ServerName::try_from(endpoint.server_name.clone())
        .map_err(|e| format!("server name {:?}: {e}", endpoint.server_name))?;
    let tcp = tokio::time::timeout(Duration::from_millis(HANDSHAKE_MS_MAX), TcpStream::connect(&endpoint.address))
        .await
        .map_err(|_| "connect timed out".to_string())?
        .map_err(|e| format!("connect {}: {e}", endpoint.address))?;
    tcp.set_nodelay(true).map_err(|e| e.to_string())?;
    let tls = tokio::time::timeout(
        Duration::from_millis(HANDSHAKE_MS_MAX),
        TlsConnector::from(client).connect(server_name, tcp),
    )
    .await
    .map_err(|_| "TLS handshake timed out".to_string())?
    .map_err(|e| {
        add(&shared.counters.connections_refused, 1);
        format!("TLS handshake: {e}")
    })?;
    let (_, connection) = tls.get_ref();
    let (role, certified) =
        shared.certified_peer(connection.peer_certificates()).ok_or("the peer's certificate names no role")?;
    if seen_as(&role, &shared.me) != *peer {
        add(&shared.counters.connections_refused, 1);
        return Err(format!("{role} answered where {peer} was dialled"));
    }
    let binding = binding(connection).ok_or("no TLS exporter")?;
    let tracked = shared.track(certified.serial).ok_or("too many connections")?;

    let (mut sender, connection) = hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
        .await
        .map_err(|e| e.to_string())?;
    let connection = tokio::spawn(connection);
    let (frames, body) = mpsc::channel(FRAMES_IN_FLIGHT_MAX);
    let request = Request::post(format!("https://{}{FRAMES_PATH}", endpoint.server_name))
        .header("content-type", "application/vnd.dtenge.frames")
        .body(FrameBody(body))
        .map_err(|e| e.to_string())?;
    let mut answer = tokio::spawn(sender.send_request(request));
    let mut sealer = Sealer::new(seen_as(&shared.me, peer), peer.clone(), binding);
    let result = loop {
        let first = tokio::select! {
            envelope = queue.recv() => match envelope {
                Some(envelope) => envelope,
                None => break Ok(()),
            },
            answered = &mut answer => break Err(format!("the peer ended the stream: {answered:?}")),
            () = tracked.end.notified() => break Err("the peer's certificate was revoked".to_string()),
        };
        let mut batch = Vec::with_capacity(FRAME_ENVELOPES_MAX);
        batch.push(first);
        while batch.len() < FRAME_ENVELOPES_MAX {
            match queue.try_recv() {
                Ok(envelope) => batch.push(envelope),
                Err(_) => break,
            }
        }
        if shared.is_revoked(certified.serial) {
            break Err("the peer's certificate was revoked".to_string());
        }
        let frame = sealer.seal(&shared.identity.key, &batch);
        if frames.send(Bytes::from(frame)).await.is_err() {
            break Err("the connection closed".to_string());
        }
        add(&shared.counters.frames_sent, 1);
        add(&shared.counters.envelopes_sent, batch.len() as u64);
    };
    answer.abort();
    connection.abort();
    result
}

// ---- the receiving side ----------------------------------------------------------------------

async fn serve(shared: Arc<Shared>, listener: TcpListener) {
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            // Out of descriptors or the like: wait rather than spin.
            tokio::time::sleep(Duration::from_millis(RECONNECT_MS_MIN)).await;
            continue;
        };
        tokio::spawn(serve_connection(shared.clone(), tcp));
    }
}

async fn serve_connection(shared: Arc<Shared>, tcp: TcpStream) {
    if tcp.set_nodelay(true).is_err() {
        return;
    }
    let server = shared.tls.read().server.clone();
    let tls = match tokio::time::timeout(Duration::from_millis(HANDSHAKE_MS_MAX), TlsAcceptor::from(server).accept(tcp))
        .await
    {
        Ok(Ok(tls)) => tls,
        Ok(Err(error)) => {
            tracing::warn!(%error, "a connection failed its TLS handshake");
            add(&shared.counters.connections_refused, 1);
            return;
        }
        Err(_) => return,
    };
    let (_, connection) = tls.get_ref();
    let Some((role, certified)) = shared.certified_peer(connection.peer_certificates()) else {
        return;
    };
    let Some(binding) = binding(connection) else {
        return;
    };
    let Some(tracked) = shared.track(certified.serial) else {
        add(&shared.counters.connections_refused, 1);
        return;
    };
    // One stream of frames per connection: a second one would share the sequence.
    let peer_serial = certified.serial;
    // Both ends name each other as they appear to each other (`seen_as`): a bank's frames to
    // a replica are signed "to the notary", the replica's to the bank "from the notary".
    let opener = Opener::new(seen_as(&role, &shared.me), certified.key, seen_as(&shared.me, &role), binding);
    let opener = Arc::new(Mutex::new(Some(opener)));
    let refused = Arc::new(Notify::new());
    let service = {
        let shared = shared.clone();
        let refused = refused.clone();
        hyper::service::service_fn(move |request| {
            let opener = opener.lock().take();
            receive(shared.clone(), opener, peer_serial, refused.clone(), request)
        })
    };
    let connection = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
        .max_concurrent_streams(1)
        .serve_connection(TokioIo::new(tls), service);
    tokio::select! {
        _ = connection => {}
        () = tracked.end.notified() => {}
        () = refused.notified() => {}
    }
}

fn answer(status: StatusCode) -> Response<http_body_util::Empty<Bytes>> {
    let mut response = Response::new(http_body_util::Empty::new());
    *response.status_mut() = status;
    response
}

/// Read one stream of frames, delivering each frame's envelopes once it opens.
async fn receive(
    shared: Arc<Shared>,
    opener: Option<Opener>,
    peer_serial: u64,
    refused: Arc<Notify>,
    request: Request<Incoming>,
) -> Result<Response<http_body_util::Empty<Bytes>>, Infallible> {
    if request.uri().path() != FRAMES_PATH || request.method() != hyper::Method::POST {
        return Ok(answer(StatusCode::NOT_FOUND));
    }
    let Some(mut opener) = opener else {
        return Ok(answer(StatusCode::CONFLICT));
    };
    let mut body = request.into_body();
    let mut buffer = BytesMut::new();
    while let Some(chunk) = body.frame().await {
        let Ok(chunk) = chunk else {
            return Ok(answer(StatusCode::BAD_REQUEST));
        };
        let Ok(data) = chunk.into_data() else {
            continue;
        };
        buffer.extend_from_slice(&data);
        if let Err(error) = open_frames(&shared, &mut opener, peer_serial, &mut buffer).await {
            tracing::warn!(%error, "a frame was refused; the connection ends");
            add(&shared.counters.frames_refused, 1);
            refused.notify_one();
            return Ok(answer(StatusCode::BAD_REQUEST));
        }
    }
    Ok(answer(StatusCode::OK))
}

/// Open and deliver every whole frame at the head of `buffer`.
async fn open_frames(
    shared: &Shared,
    opener: &mut Opener,
    peer_serial: u64,
    buffer: &mut BytesMut,
) -> Result<(), String> {
    // Each turn consumes a frame, so the loop ends with the buffer.
    while let Some(length) = frame_length(buffer).map_err(|e| e.to_string())? {
        if buffer.len() < LENGTH_BYTES + length {
            break;
        }
        if shared.is_revoked(peer_serial) {
            return Err(format!("certificate {peer_serial} is revoked"));
        }
        let frame = buffer.split_to(LENGTH_BYTES + length);
        let envelopes = opener.open(&frame[LENGTH_BYTES..]).map_err(|e: FrameError| e.to_string())?;
        shared.deliver(envelopes).await;
    }
    Ok(())
}
