//! Transport: TLS 1.2/1.3 (rustls, aws-lc-rs), HTTP/1.1 and HTTP/2 by ALPN, optional
//! client certificates verified against the cluster CA. The verified certificate's
//! identity travels with each request of the connection.

use std::net::SocketAddr;
use std::sync::Arc;

use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::server::WebPkiClientVerifier;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::authn::UserInfo;
use crate::ApiServer;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("tls: {0}")]
    Tls(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// Builds the rustls server config from PEM material.
pub fn tls_config(pki: &rkube_pki::Pki) -> Result<rustls::ServerConfig, ServeError> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for c in rkube_pki::parse_cert_chain(&pki.ca_cert_pem).map_err(|e| ServeError::Tls(e.to_string()))? {
        roots.add(c).map_err(|e| ServeError::Tls(e.to_string()))?;
    }
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .allow_unauthenticated()
        .build()
        .map_err(|e| ServeError::Tls(e.to_string()))?;
    let chain = rkube_pki::parse_cert_chain(&pki.serving_cert_pem).map_err(|e| ServeError::Tls(e.to_string()))?;
    let key = rkube_pki::parse_key(&pki.serving_key_pem).map_err(|e| ServeError::Tls(e.to_string()))?;
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| ServeError::Tls(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(|e| ServeError::Tls(e.to_string()))?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(cfg)
}

/// Accepts connections until `shutdown` resolves.
pub async fn serve(
    server: Arc<ApiServer>,
    listener: TcpListener,
    tls: rustls::ServerConfig,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), ServeError> {
    let acceptor = TlsAcceptor::from(Arc::new(tls));
    tokio::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // Out of file descriptors and the like: log, back off, keep serving.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => return Ok(()),
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let server = server.clone();
        tokio::spawn(async move {
            if let Err(e) = serve_connection(server, acceptor, tcp, peer).await {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
}

async fn serve_connection(
    server: Arc<ApiServer>,
    acceptor: TlsAcceptor,
    tcp: tokio::net::TcpStream,
    peer: SocketAddr,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let tls = tokio::time::timeout(std::time::Duration::from_secs(10), acceptor.accept(tcp)).await??;
    let cert_user: Option<UserInfo> = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|certs| certs.first())
        .and_then(|c| rkube_pki::identity_from_der(c.as_ref()))
        .map(|(user, groups)| UserInfo::authenticated(user, String::new(), groups));
    let service = service_fn(move |req: http::Request<Incoming>| {
        let server = server.clone();
        let cert_user = cert_user.clone();
        async move { Ok::<_, std::convert::Infallible>(crate::handler::handle(server, req, cert_user, peer).await) }
    });
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder.http2().max_concurrent_streams(crate::H2_STREAMS_MAX);
    builder.serve_connection_with_upgrades(TokioIo::new(tls), service).await
}
