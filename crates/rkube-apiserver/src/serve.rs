//! Transport: TLS 1.2/1.3 (rustls, aws-lc-rs), HTTP/1.1 and HTTP/2 by ALPN, optional
//! client certificates verified against the cluster CA. The verified certificate's
//! identity travels with each request of the connection.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use rustls::client::danger::HandshakeSignatureValid;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::{CertificateDer, UnixTime};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::codec::Body;
use crate::ApiServer;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("tls: {0}")]
    Tls(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// The server's TLS setup: the rustls config, and the verifier of client certificates
/// against the cluster CA. The handshake takes any client certificate (checking only that
/// the client holds its key); the chain is verified afterwards, so a certificate from an
/// unknown CA gets kube-apiserver's 401 `Status` instead of a failed handshake.
pub struct Tls {
    pub config: rustls::ServerConfig,
    pub client_ca: Arc<dyn ClientCertVerifier>,
}

/// Builds the TLS setup from PEM material.
pub fn tls_config(pki: &rkube_pki::Pki) -> Result<Tls, ServeError> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for c in rkube_pki::parse_cert_chain(&pki.ca_cert_pem).map_err(|e| ServeError::Tls(e.to_string()))? {
        roots.add(c).map_err(|e| ServeError::Tls(e.to_string()))?;
    }
    let client_ca = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .allow_unauthenticated()
        .build()
        .map_err(|e| ServeError::Tls(e.to_string()))?;
    let chain = rkube_pki::parse_cert_chain(&pki.serving_cert_pem).map_err(|e| ServeError::Tls(e.to_string()))?;
    let key = rkube_pki::parse_key(&pki.serving_key_pem).map_err(|e| ServeError::Tls(e.to_string()))?;
    let verifier = Arc::new(AnyClientCert { ca: client_ca.clone(), provider: provider.clone() });
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| ServeError::Tls(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(|e| ServeError::Tls(e.to_string()))?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Tls { config: cfg, client_ca })
}

/// Asks for a client certificate and accepts any whose key the client proves it holds;
/// trust is decided after the handshake (see [`Tls`]), as Go's `RequestClientCert` and
/// kube-apiserver's x509 authenticator do.
#[derive(Debug)]
struct AnyClientCert {
    ca: Arc<dyn ClientCertVerifier>,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl ClientCertVerifier for AnyClientCert {
    fn offer_client_auth(&self) -> bool {
        true
    }
    fn client_auth_mandatory(&self) -> bool {
        false
    }
    fn root_hint_subjects(&self) -> &[rustls::DistinguishedName] {
        self.ca.root_hint_subjects()
    }
    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

/// How long a client may take to send a request's headers (kube-apiserver: 32 s). Hyper
/// also runs this timer while an HTTP/1.1 connection waits for its next request, so idle
/// HTTP/1.1 connections close after it.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(32);
/// How long a connection may stay open with no request open (kube-apiserver: 90 s). A
/// connection no request on has authenticated is closed this long after its last request
/// began or ended, even with a response open: anonymous callers only read small documents,
/// so an open one that long is a client that does not read (an HTTP/2 window held at 0).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(90);
/// How long a TLS handshake may take.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a connection told to close may finish what it is doing.
const CLOSE_GRACE: Duration = Duration::from_secs(10);
/// Descriptors kept free of connections (the store, logs, the node agent's work).
const FDS_RESERVED: u64 = 256;
/// Connections served at once unless `--max-connections` says otherwise (each costs some
/// 20 KiB; the descriptor limit may lower it).
pub const CONNECTIONS_MAX_DEFAULT: usize = 10_000;

/// Accepts connections until `shutdown` resolves.
pub async fn serve(
    server: Arc<ApiServer>,
    listener: TcpListener,
    tls: Tls,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), ServeError> {
    let acceptor = TlsAcceptor::from(Arc::new(tls.config));
    let client_ca = tls.client_ca;
    let conns = Arc::new(Connections::new(connections_max(server.limits.max_connections)));
    let clock = tokio::spawn(tick(conns.clone()));
    tokio::pin!(shutdown);
    let result = loop {
        let (tcp, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // Out of file descriptors and the like: log, back off, keep serving.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break Ok(()),
        };
        let Some(conn) = conns.admit() else {
            tracing::warn!(%peer, max = conns.max, "connection refused: at the connection cap, none may be closed for it");
            drop(tcp);
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let server = server.clone();
        let client_ca = client_ca.clone();
        tokio::spawn(async move {
            if let Err(e) = serve_connection(server, acceptor, client_ca, tcp, peer, conn).await {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    };
    clock.abort();
    result
}

/// The connection cap: `configured` (0: the default), within what the descriptor limit
/// allows after raising the soft limit to the hard one (as Go programs do at start).
fn connections_max(configured: usize) -> usize {
    let wanted = if configured == 0 { CONNECTIONS_MAX_DEFAULT } else { configured };
    let fds = usize::try_from(raise_fd_limit().saturating_sub(FDS_RESERVED)).unwrap_or(usize::MAX);
    wanted.min(fds).max(16)
}

fn raise_fd_limit() -> u64 {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else { return 1024 };
    if soft < hard && setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_ok() {
        return hard;
    }
    soft
}

/// Keeps the coarse clock connections stamp their activity with.
async fn tick(conns: Arc<Connections>) {
    let mut every = tokio::time::interval(Duration::from_millis(500));
    loop {
        every.tick().await;
        conns.now.store(conns.epoch.elapsed().as_millis() as u64, Ordering::Relaxed);
    }
}

/// The open connections and, for each, what closing it would cost. At the cap, a new
/// connection makes one close at once, the cheapest first: one no request has
/// authenticated on (anonymous callers, handshakes, attackers), then an authenticated one
/// with no request open, then the least recently used; so idle or hostile connections
/// never lock anyone out, and the cap keeps the server within its memory and descriptors.
pub struct Connections {
    max: usize,
    epoch: std::time::Instant,
    /// Milliseconds since `epoch`, updated twice a second.
    now: AtomicU64,
    next_id: AtomicU64,
    open: Mutex<HashMap<u64, Arc<ConnState>>>,
}

pub struct ConnState {
    /// When it was accepted (milliseconds since the epoch).
    opened: u64,
    /// When a request on it last began or ended (milliseconds since the epoch).
    last_active: AtomicU64,
    /// Requests whose answer is not yet fully sent (a watch counts for its lifetime).
    open_requests: AtomicUsize,
    /// A request on it authenticated as someone.
    authenticated: AtomicBool,
    /// Who first authenticated on it, and whether in `system:masters`.
    identity: std::sync::OnceLock<(String, bool)>,
    /// Told to close (by eviction): at once, without finishing what is open.
    evicted: AtomicBool,
    close: tokio::sync::Notify,
}

/// One admitted connection; dropping it counts the connection out.
pub struct ConnGuard {
    conns: Arc<Connections>,
    id: u64,
    state: Arc<ConnState>,
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        self.conns.open.lock().unwrap_or_else(|e| e.into_inner()).remove(&self.id);
    }
}

impl Connections {
    fn new(max: usize) -> Connections {
        Connections {
            max,
            epoch: std::time::Instant::now(),
            now: AtomicU64::new(0),
            next_id: AtomicU64::new(0),
            open: Mutex::new(HashMap::new()),
        }
    }

    fn now(&self) -> u64 {
        self.now.load(Ordering::Relaxed)
    }

    /// Counts a new connection in, closing the cheapest open one at the cap (see
    /// [`Connections::victim`]), or refuses it (None) when none may be closed for it. The
    /// evicted connection stays counted until its task ends (at once: it is dropped).
    fn admit(self: &Arc<Self>) -> Option<ConnGuard> {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if open.len() >= self.max {
            let v = self.victim(&open)?;
            v.evicted.store(true, Ordering::Relaxed);
            v.close.notify_one();
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let state = Arc::new(ConnState {
            opened: self.now(),
            identity: std::sync::OnceLock::new(),
            last_active: AtomicU64::new(self.now()),
            open_requests: AtomicUsize::new(0),
            authenticated: AtomicBool::new(false),
            evicted: AtomicBool::new(false),
            close: tokio::sync::Notify::new(),
        });
        open.insert(id, state.clone());
        Some(ConnGuard { conns: self.clone(), id, state })
    }

    /// Which connection a newcomer (not yet authenticated) closes at the cap:
    /// 1. the oldest connection nobody has authenticated on, at least
    ///    [`UNAUTHENTICATED_GRACE`] old (a new client gets that long to say who it is);
    /// 2. else, while unauthenticated connections hold less than half the cap, one of the
    ///    identity (not `system:masters`) holding the most connections, idle ones and the
    ///    least recently used first, so one token's connections never crowd others out;
    /// 3. else one of `system:masters`' (the same order);
    /// 4. else none: the newcomer is refused (every unauthenticated connection is younger
    ///    than the grace, or they hold half the cap and authenticated ones keep the rest).
    fn victim(&self, open: &HashMap<u64, Arc<ConnState>>) -> Option<Arc<ConnState>> {
        let now = self.now();
        let grace = UNAUTHENTICATED_GRACE.as_millis() as u64;
        let live = || open.iter().filter(|(_, c)| !c.evicted.load(Ordering::Relaxed));
        let unauthenticated = live().filter(|(_, c)| c.identity.get().is_none()).count();
        let aged = live()
            .filter(|(_, c)| c.identity.get().is_none() && now.saturating_sub(c.opened) >= grace)
            .min_by_key(|(id, c)| (c.opened, **id));
        if let Some((_, c)) = aged {
            return Some(c.clone());
        }
        if unauthenticated * 2 >= self.max {
            return None;
        }
        let mut per_user: HashMap<&str, usize> = HashMap::new();
        for (_, c) in live() {
            if let Some((user, _)) = c.identity.get() {
                *per_user.entry(user.as_str()).or_default() += 1;
            }
        }
        live()
            .filter_map(|(id, c)| c.identity.get().map(|(user, master)| (id, c, user, *master)))
            .min_by_key(|(id, c, user, master)| {
                (
                    *master,
                    std::cmp::Reverse(per_user.get(user.as_str()).copied().unwrap_or(0)),
                    c.open_requests.load(Ordering::Relaxed) > 0,
                    c.last_active.load(Ordering::Relaxed),
                    **id,
                )
            })
            .map(|(_, c, _, _)| c.clone())
    }
}

/// How long a new connection may go without authenticating before it may be closed to
/// make room for another.
pub const UNAUTHENTICATED_GRACE: Duration = Duration::from_secs(1);

/// Counts a request open while it lives (from its start until its answer is sent).
struct Opened {
    state: Arc<ConnState>,
    conns: Arc<Connections>,
}

impl Opened {
    fn new(state: Arc<ConnState>, conns: Arc<Connections>) -> Opened {
        state.open_requests.fetch_add(1, Ordering::Relaxed);
        state.last_active.store(conns.now(), Ordering::Relaxed);
        Opened { state, conns }
    }
}

impl Drop for Opened {
    fn drop(&mut self) {
        self.state.last_active.store(self.conns.now(), Ordering::Relaxed);
        self.state.open_requests.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A response body that keeps its request counted open until it is sent or dropped.
struct OpenRequest {
    body: Body,
    _opened: Opened,
}

impl http_body::Body for OpenRequest {
    type Data = bytes::Bytes;
    type Error = std::io::Error;
    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }
    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }
    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

async fn serve_connection(
    server: Arc<ApiServer>,
    acceptor: TlsAcceptor,
    client_ca: Arc<dyn ClientCertVerifier>,
    tcp: tokio::net::TcpStream,
    peer: SocketAddr,
    conn: ConnGuard,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let state = conn.state.clone();
    let conns = conn.conns.clone();
    let tls = tokio::select! {
        r = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)) => r??,
        _ = state.close.notified() => return Ok(()),
    };
    let cert_user = crate::authn::client_certificate(client_ca.as_ref(), tls.get_ref().1.peer_certificates());
    if let crate::authn::ClientCert::Valid(u) = &cert_user {
        let _ = state.identity.set((u.name.clone(), u.in_group("system:masters")));
        state.authenticated.store(true, Ordering::Relaxed);
    }
    let (request_state, request_conns) = (state.clone(), conns.clone());
    let service = service_fn(move |req: http::Request<Incoming>| {
        let server = server.clone();
        let cert_user = cert_user.clone();
        let (state, conns) = (request_state.clone(), request_conns.clone());
        async move {
            // Counted from here until the answer's body is done (a watch's lifetime).
            let opened = Opened::new(state.clone(), conns);
            let resp = crate::handler::handle(server, req, cert_user, peer, &state.identity).await;
            if state.identity.get().is_some() {
                state.authenticated.store(true, Ordering::Relaxed);
            }
            let (parts, body) = resp.into_parts();
            Ok::<_, std::convert::Infallible>(http::Response::from_parts(parts, OpenRequest { body, _opened: opened }))
        }
    });
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(HEADER_READ_TIMEOUT);
    builder.http2().timer(TokioTimer::new()).max_concurrent_streams(crate::H2_STREAMS_MAX);
    let connection = builder.serve_connection_with_upgrades(TokioIo::new(tls), service);
    tokio::pin!(connection);
    let mut closing = false;
    loop {
        let idle_for = Duration::from_millis(conns.now().saturating_sub(state.last_active.load(Ordering::Relaxed)));
        let wait =
            if closing { CLOSE_GRACE } else { IDLE_TIMEOUT.saturating_sub(idle_for).max(Duration::from_secs(1)) };
        tokio::select! {
            r = connection.as_mut() => return r,
            _ = state.close.notified() => {
                // Evicted: closed now, whatever is open.
                return Ok(());
            }
            _ = tokio::time::sleep(wait) => {
                if closing {
                    return Ok(());
                }
                let idle_for =
                    Duration::from_millis(conns.now().saturating_sub(state.last_active.load(Ordering::Relaxed)));
                if idle_for < IDLE_TIMEOUT {
                    continue;
                }
                if !state.authenticated.load(Ordering::Relaxed) {
                    return Ok(());
                }
                if state.open_requests.load(Ordering::Relaxed) == 0 {
                    closing = true;
                    connection.as_mut().graceful_shutdown();
                }
            }
        }
    }
}
