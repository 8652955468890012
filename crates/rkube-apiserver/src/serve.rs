//! Transport: TLS 1.2/1.3 (rustls, aws-lc-rs), HTTP/1.1 and HTTP/2 by ALPN, optional
//! client certificates verified against the cluster CA. The verified certificate's
//! identity travels with each request of the connection.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
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
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::codec::{self, Body};
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

/// How long a client may take to send a request's headers (kube-apiserver: 32 s).
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(32);
/// How long a connection may stay open with no request in flight and nothing sent either
/// way (kube-apiserver: 90 s).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(90);
/// How long a TLS handshake may take.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a connection told to close may finish what it is doing.
const CLOSE_GRACE: Duration = Duration::from_secs(30);
/// Descriptors kept free of connections (the store, logs, the node agent's work).
const FDS_RESERVED: u64 = 256;

/// Accepts connections until `shutdown` resolves.
pub async fn serve(
    server: Arc<ApiServer>,
    listener: TcpListener,
    tls: Tls,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), ServeError> {
    let acceptor = TlsAcceptor::from(Arc::new(tls.config));
    let client_ca = tls.client_ca;
    let conns = Arc::new(Connections::new(connections_max()));
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
            // Every connection is busy with a request: this one waits for none of them.
            tracing::warn!(%peer, max = conns.max, "connection refused: too many connections, none idle");
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

/// The connection cap: what the descriptor limit allows, after raising the soft limit to
/// the hard one (as Go programs do at start).
fn connections_max() -> usize {
    let limit = raise_fd_limit();
    usize::try_from(limit.saturating_sub(FDS_RESERVED).max(64)).unwrap_or(usize::MAX)
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

/// The open connections: how many, and for each when it last did something and whether a
/// request is in flight. At the cap, a new connection makes the one idle longest close, so
/// connections opened and left idle (by an attacker or a leaky client) cannot lock others
/// out; the cap itself keeps the server within its descriptors.
pub struct Connections {
    max: usize,
    epoch: std::time::Instant,
    /// Milliseconds since `epoch`, updated twice a second.
    now: AtomicU64,
    next_id: AtomicU64,
    open: Mutex<HashMap<u64, Arc<ConnState>>>,
}

pub struct ConnState {
    last_active: AtomicU64,
    in_flight: AtomicUsize,
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

    fn admit(self: &Arc<Self>) -> Option<ConnGuard> {
        let now = self.now.load(Ordering::Relaxed);
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if open.len() >= self.max {
            let idlest = open
                .iter()
                .filter(|(_, c)| c.in_flight.load(Ordering::Relaxed) == 0)
                // Among equally idle ones (the clock is coarse), the oldest.
                .min_by_key(|(id, c)| (c.last_active.load(Ordering::Relaxed), **id))
                .map(|(id, c)| (*id, c.clone()))?;
            // It closes on its own task; it no longer counts.
            open.remove(&idlest.0);
            idlest.1.close.notify_one();
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let state = Arc::new(ConnState {
            last_active: AtomicU64::new(now),
            in_flight: AtomicUsize::new(0),
            close: tokio::sync::Notify::new(),
        });
        open.insert(id, state.clone());
        Some(ConnGuard { conns: self.clone(), id, state })
    }
}

/// The connection's socket, stamping the connection active whenever bytes move.
struct Tracked<T> {
    io: T,
    conns: Arc<Connections>,
    state: Arc<ConnState>,
}

impl<T> Tracked<T> {
    fn touch(&self) {
        self.state.last_active.store(self.conns.now.load(Ordering::Relaxed), Ordering::Relaxed);
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Tracked<T> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let r = Pin::new(&mut this.io).poll_read(cx, buf);
        if buf.filled().len() > before {
            this.touch();
        }
        r
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Tracked<T> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.io).poll_write(cx, data);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            this.touch();
        }
        r
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            this.touch();
        }
        r
    }
    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

/// A response body that counts its request in flight until it is sent or dropped.
struct InFlight {
    body: Body,
    state: Arc<ConnState>,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.state.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

impl http_body::Body for InFlight {
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
    let io = Tracked { io: tcp, conns: conn.conns.clone(), state: state.clone() };
    let tls = tokio::select! {
        r = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(io)) => r??,
        _ = state.close.notified() => return Ok(()),
    };
    let cert_user = crate::authn::client_certificate(client_ca.as_ref(), tls.get_ref().1.peer_certificates());
    let request_state = state.clone();
    let service = service_fn(move |req: http::Request<Incoming>| {
        let server = server.clone();
        let cert_user = cert_user.clone();
        let state = request_state.clone();
        async move {
            // Counted from here until the answer's body is done (a watch's lifetime).
            state.in_flight.fetch_add(1, Ordering::Relaxed);
            let guard = InFlight { body: codec::full(bytes::Bytes::new()), state };
            let resp = crate::handler::handle(server, req, cert_user, peer).await;
            let (parts, body) = resp.into_parts();
            let mut guard = guard;
            guard.body = body;
            Ok::<_, std::convert::Infallible>(http::Response::from_parts(parts, guard))
        }
    });
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(HEADER_READ_TIMEOUT);
    builder.http2().timer(TokioTimer::new()).max_concurrent_streams(crate::H2_STREAMS_MAX);
    let connection = builder.serve_connection_with_upgrades(TokioIo::new(tls), service);
    tokio::pin!(connection);
    let mut closing = false;
    loop {
        let idle_for = {
            let last = state.last_active.load(Ordering::Relaxed);
            let now = conn.conns.now.load(Ordering::Relaxed);
            Duration::from_millis(now.saturating_sub(last))
        };
        let wait =
            if closing { CLOSE_GRACE } else { IDLE_TIMEOUT.saturating_sub(idle_for).max(Duration::from_secs(1)) };
        tokio::select! {
            r = connection.as_mut() => return r,
            _ = state.close.notified(), if !closing => {
                closing = true;
                connection.as_mut().graceful_shutdown();
            }
            _ = tokio::time::sleep(wait) => {
                if closing {
                    return Ok(());
                }
                let idle = state.in_flight.load(Ordering::Relaxed) == 0;
                let last = state.last_active.load(Ordering::Relaxed);
                let now = conn.conns.now.load(Ordering::Relaxed);
                if idle && Duration::from_millis(now.saturating_sub(last)) >= IDLE_TIMEOUT {
                    closing = true;
                    connection.as_mut().graceful_shutdown();
                }
            }
        }
    }
}
