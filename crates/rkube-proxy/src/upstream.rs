//! The proxy's side toward the API server: TLS as the kubeconfig says, credentials (a token
//! file is re-read when it changes), a pool of HTTP/1.1 keep-alive connections, and a fresh
//! connection for each upgrade.
//!
//! Invariants:
//! - bodies stream both ways: nothing here collects a request or response body;
//! - the client's `Authorization` (and `Proxy-Authorization`) never reaches the API server;
//!   the proxy's own credentials are the only ones sent;
//! - hop-by-hop headers (RFC 9110 7.6.1 and those named by `Connection`) stop here, except
//!   on an upgrade, where `Connection`/`Upgrade` are the request.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode, Uri};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_rustls::{FixedServerNameResolver, HttpsConnector, MaybeHttpsStream, ResolveServerName};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls_pki_types::ServerName;

use crate::config::{Credential, RestConfig};
use crate::Body;

/// Read buffer cap per connection (hyper grows buffers up to ~400 KiB by default): large
/// answers stream through in pieces this size, and a few concurrent LISTs do not leave
/// megabytes of buffers behind.
pub const MAX_BUF: usize = 64 * 1024;

/// How often the token file is looked at (a `stat`); a rotated token is picked up within this.
const TOKEN_RECHECK: Duration = Duration::from_secs(1);

/// A bearer token that follows its file: the kubelet replaces a projected token well before
/// it expires (atomically, by swapping the `..data` symlink), so watching (inode, mtime,
/// size) of the resolved path sees every rotation. A file that cannot be read keeps the
/// last good token, as client-go's cached file token source does.
struct TokenFile {
    path: PathBuf,
    state: Mutex<TokenState>,
}

struct TokenState {
    header: HeaderValue,
    stamp: Option<(u64, u64, SystemTime, u64)>,
    checked: Instant,
}

fn stamp(path: &std::path::Path) -> Option<(u64, u64, SystemTime, u64)> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).ok()?;
    Some((m.dev(), m.ino(), m.modified().ok()?, m.len()))
}

/// `None` for an empty token: a file caught between truncate and write keeps the last one.
fn bearer(token: &str) -> Option<HeaderValue> {
    if token.trim().is_empty() {
        return None;
    }
    let mut v = HeaderValue::from_str(&format!("Bearer {}", token.trim())).ok()?;
    v.set_sensitive(true);
    Some(v)
}

impl TokenFile {
    fn header(&self) -> HeaderValue {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if s.checked.elapsed() >= TOKEN_RECHECK {
            s.checked = Instant::now();
            let now = stamp(&self.path);
            if now.is_some() && now != s.stamp {
                match std::fs::read_to_string(&self.path).ok().as_deref().and_then(bearer) {
                    Some(h) => {
                        tracing::info!(path = %self.path.display(), "bearer token file changed; using the new token");
                        s.header = h;
                        s.stamp = now;
                    }
                    None => {
                        tracing::warn!(path = %self.path.display(), "cannot read the token file; keeping the last token")
                    }
                }
            }
        }
        s.header.clone()
    }

    /// After a 401 the next request looks at the file at once.
    fn recheck_now(&self) {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        s.checked = Instant::now() - TOKEN_RECHECK;
    }
}

/// A token from an exec plugin, refreshed by running the plugin again once it expires
/// (or after a 401). One refresh at a time; requests wait for it.
struct ExecToken {
    plugin: crate::exec::ExecPlugin,
    state: Mutex<(Option<HeaderValue>, Option<chrono::DateTime<chrono::Utc>>)>,
    refresh: tokio::sync::Mutex<()>,
}

impl ExecToken {
    fn current(&self) -> Option<Option<HeaderValue>> {
        let s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        match s.1 {
            Some(exp) if exp <= chrono::Utc::now() => None,
            _ => Some(s.0.clone()),
        }
    }

    async fn header(&self) -> Option<HeaderValue> {
        if let Some(h) = self.current() {
            return h;
        }
        let _one = self.refresh.lock().await;
        if let Some(h) = self.current() {
            return h;
        }
        let plugin = self.plugin.clone();
        let ran = tokio::task::spawn_blocking(move || plugin.run()).await.unwrap_or_else(|e| Err(e.to_string()));
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        match ran {
            Ok(c) => *s = (c.token.as_deref().and_then(bearer), c.expires),
            Err(e) => {
                // Keep the last token and try again no sooner than in 10 s, not on every request.
                tracing::error!("exec credential plugin: {e}");
                s.1 = Some(chrono::Utc::now() + chrono::Duration::seconds(10));
            }
        }
        s.0.clone()
    }

    fn expire_now(&self) {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).1 = Some(chrono::Utc::now());
    }
}

enum Auth {
    None,
    Static(HeaderValue),
    File(TokenFile),
    Exec(ExecToken),
}

/// One API server and how to reach it.
pub struct Upstream {
    client: Client<HttpsConnector<HttpConnector>, Incoming>,
    upgrade_connector: HttpsConnector<HttpConnector>,
    scheme: http::uri::Scheme,
    authority: http::uri::Authority,
    /// The server URL's path when `--append-server-path` is set, without a trailing slash.
    base_path: String,
    auth: Auth,
    impersonate: Vec<(HeaderName, HeaderValue)>,
    /// For messages: the server URL as configured.
    pub host: String,
}

fn tls_config(c: &RestConfig, alpn: &[&[u8]]) -> Result<rustls::ClientConfig, String> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let builder = if c.insecure {
        builder.dangerous().with_custom_certificate_verifier(Arc::new(rkube_pki::AnyServerCert(provider)))
    } else {
        let mut roots = rustls::RootCertStore::empty();
        match &c.ca_pem {
            Some(pem) => {
                for cert in rustls_pemfile::certs(&mut &pem[..]) {
                    let cert = cert.map_err(|e| format!("unable to load root certificates: {e}"))?;
                    roots.add(cert).map_err(|e| format!("unable to load root certificates: {e}"))?;
                }
                if roots.is_empty() {
                    return Err(
                        "unable to load root certificates: no certificates found in the certificate authority".into()
                    );
                }
            }
            None => {
                for cert in rustls_native_certs::load_native_certs().certs {
                    let _ = roots.add(cert);
                }
            }
        }
        builder.with_root_certificates(roots)
    };
    let mut config = match &c.client_identity {
        Some((cert_pem, key_pem)) => {
            let certs = rustls_pemfile::certs(&mut &cert_pem[..])
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("client certificate: {e}"))?;
            let key = rustls_pemfile::private_key(&mut &key_pem[..])
                .map_err(|e| format!("client key: {e}"))?
                .ok_or("client key: no private key found")?;
            builder.with_client_auth_cert(certs, key).map_err(|e| format!("client certificate: {e}"))?
        }
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(config)
}

fn connector(
    c: &RestConfig,
    alpn: &[&[u8]],
    keepalive: Option<Duration>,
    resolver: Arc<dyn ResolveServerName + Send + Sync>,
) -> Result<HttpsConnector<HttpConnector>, String> {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(Duration::from_secs(30)));
    http.set_keepalive(keepalive);
    let tls = tls_config(c, alpn)?;
    Ok(HttpsConnector::new(http, tls, false, resolver))
}

/// `Connection: upgrade` plus an `Upgrade` header.
pub fn is_upgrade(h: &HeaderMap) -> bool {
    h.contains_key(header::UPGRADE)
        && h.get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
}

impl Upstream {
    pub fn new(c: &RestConfig, keepalive: Option<Duration>, append_server_path: bool) -> Result<Upstream, String> {
        let uri: Uri = c.host.parse().map_err(|e| format!("invalid server URL {:?}: {e}", c.host))?;
        let scheme = uri.scheme().cloned().unwrap_or(http::uri::Scheme::HTTPS);
        let authority = uri.authority().cloned().ok_or_else(|| format!("invalid server URL {:?}: no host", c.host))?;
        let resolver: Arc<dyn ResolveServerName + Send + Sync> = match &c.server_name {
            Some(name) => Arc::new(FixedServerNameResolver::new(
                ServerName::try_from(name.clone()).map_err(|e| format!("invalid tls-server-name {name:?}: {e}"))?,
            )),
            None => Arc::new(hyper_rustls::DefaultServerNameResolver::default()),
        };
        // HTTP/1.1 keep-alive connections, one per request in flight: measured against
        // rkube's server, this hop is ~30 µs faster at p50 and ~20 % higher in throughput
        // than multiplexing over one HTTP/2 connection, and there is no per-connection
        // stream cap to stall the 101st watch. Upgrades need HTTP/1.1 anyway.
        let connector = connector(c, &[b"http/1.1"], keepalive, resolver)?;
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(256)
            .http1_max_buf_size(MAX_BUF)
            .build(connector.clone());
        let base_path = if append_server_path { uri.path().trim_end_matches('/').to_string() } else { String::new() };
        let auth = match &c.credential {
            Credential::None => Auth::None,
            Credential::Bearer { token, file: None } => {
                Auth::Static(bearer(token).ok_or("the bearer token is not a valid header value")?)
            }
            Credential::Bearer { token, file: Some(path) } => Auth::File(TokenFile {
                path: path.clone(),
                state: Mutex::new(TokenState {
                    header: bearer(token).ok_or("the bearer token is not a valid header value")?,
                    stamp: stamp(path),
                    checked: Instant::now(),
                }),
            }),
            Credential::Exec { plugin, token, expires } => Auth::Exec(ExecToken {
                plugin: plugin.clone(),
                state: Mutex::new((token.as_deref().and_then(bearer), *expires)),
                refresh: tokio::sync::Mutex::new(()),
            }),
            Credential::Basic { username, password } => {
                use base64::Engine;
                let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"));
                let mut v = HeaderValue::from_str(&format!("Basic {encoded}")).map_err(|e| e.to_string())?;
                v.set_sensitive(true);
                Auth::Static(v)
            }
        };
        let mut impersonate = Vec::new();
        if let Some(imp) = &c.impersonate {
            let value = |s: &str| HeaderValue::from_str(s).map_err(|e| format!("impersonation header {s:?}: {e}"));
            impersonate.push((HeaderName::from_static("impersonate-user"), value(&imp.user)?));
            if let Some(uid) = &imp.uid {
                impersonate.push((HeaderName::from_static("impersonate-uid"), value(uid)?));
            }
            for g in &imp.groups {
                impersonate.push((HeaderName::from_static("impersonate-group"), value(g)?));
            }
        }
        Ok(Upstream {
            client,
            upgrade_connector: connector,
            scheme,
            authority,
            base_path,
            auth,
            impersonate,
            host: c.host.clone(),
        })
    }

    fn uri(&self, path_and_query: &str) -> Result<Uri, http::Error> {
        Uri::builder()
            .scheme(self.scheme.clone())
            .authority(self.authority.clone())
            .path_and_query(format!("{}{}", self.base_path, path_and_query))
            .build()
    }

    /// The headers the API server gets: the client's, less hop-by-hop and credentials, plus
    /// ours (as client-go's round trippers add them: impersonation only when the client set
    /// none, a User-Agent only when the client sent none).
    async fn outbound_headers(&self, h: &mut HeaderMap, peer: Option<IpAddr>) {
        h.remove(header::HOST);
        h.remove(header::AUTHORIZATION);
        let auth = match &self.auth {
            Auth::None => None,
            Auth::Static(v) => Some(v.clone()),
            Auth::File(f) => Some(f.header()),
            Auth::Exec(e) => e.header().await,
        };
        if let Some(v) = auth {
            h.insert(header::AUTHORIZATION, v);
        }
        if !self.impersonate.is_empty() && !h.contains_key("impersonate-user") {
            for (n, v) in &self.impersonate {
                h.append(n.clone(), v.clone());
            }
        }
        if !h.contains_key(header::USER_AGENT) {
            h.insert(header::USER_AGENT, HeaderValue::from_static(concat!("rkube-proxy/", env!("CARGO_PKG_VERSION"))));
        }
        if let Some(ip) = peer {
            let prior =
                h.get_all("x-forwarded-for").iter().filter_map(|v| v.to_str().ok()).collect::<Vec<_>>().join(", ");
            let value = if prior.is_empty() { ip.to_string() } else { format!("{prior}, {ip}") };
            if let Ok(v) = HeaderValue::from_str(&value) {
                h.insert("x-forwarded-for", v);
            }
        }
    }

    fn saw_status(&self, status: StatusCode) {
        if status == StatusCode::UNAUTHORIZED {
            match &self.auth {
                Auth::File(f) => f.recheck_now(),
                Auth::Exec(e) => e.expire_now(),
                _ => {}
            }
        }
    }

    fn unreachable(&self, e: &dyn std::error::Error) -> Response<Body> {
        let mut msg = e.to_string();
        let mut source = e.source();
        while let Some(s) = source {
            msg = format!("{msg}: {s}");
            source = s.source();
        }
        tracing::error!("Error while proxying request: {msg}");
        crate::gohttp::error(
            StatusCode::BAD_GATEWAY,
            &format!("rkube proxy: the API server at {} is unreachable: {msg}", self.host),
        )
    }

    /// Forwards one request; the response body streams as the API server sends it.
    pub async fn forward(&self, req: Request<Incoming>, path_and_query: &str, peer: Option<IpAddr>) -> Response<Body> {
        let (mut parts, body) = req.into_parts();
        parts.uri = match self.uri(path_and_query) {
            Ok(u) => u,
            Err(e) => return crate::gohttp::error(StatusCode::BAD_REQUEST, &format!("invalid request path: {e}")),
        };
        parts.version = http::Version::HTTP_11;
        rkube_stream::relay::remove_hop_by_hop(&mut parts.headers);
        self.outbound_headers(&mut parts.headers, peer).await;
        match self.client.request(Request::from_parts(parts, body)).await {
            Ok(resp) => {
                self.saw_status(resp.status());
                let (mut parts, body) = resp.into_parts();
                rkube_stream::relay::remove_hop_by_hop(&mut parts.headers);
                parts.version = http::Version::HTTP_11;
                Response::from_parts(parts, body.map_err(Into::into).boxed_unsync())
            }
            Err(e) => self.unreachable(&e),
        }
    }

    /// An upgrade (exec, attach, port-forward over WebSocket or SPDY): a fresh HTTP/1.1
    /// connection, the request as the client sent it (with our credentials), and on 101 the
    /// two connections spliced together until either side closes.
    pub async fn upgrade(
        &self,
        mut req: Request<Incoming>,
        path_and_query: &str,
        peer: Option<IpAddr>,
    ) -> Response<Body> {
        use tower_service::Service;
        let client_upgrade = hyper::upgrade::on(&mut req);
        let uri = match self.uri(path_and_query) {
            Ok(u) => u,
            Err(e) => return crate::gohttp::error(StatusCode::BAD_REQUEST, &format!("invalid request path: {e}")),
        };
        let mut connector = self.upgrade_connector.clone();
        let io: MaybeHttpsStream<TokioIo<tokio::net::TcpStream>> = match connector.call(uri.clone()).await {
            Ok(io) => io,
            Err(e) => return self.unreachable(e.as_ref()),
        };
        let (mut sender, conn) = match hyper::client::conn::http1::handshake(io).await {
            Ok(x) => x,
            Err(e) => return self.unreachable(&e),
        };
        tokio::spawn(async move {
            if let Err(e) = conn.with_upgrades().await {
                tracing::debug!("upgraded upstream connection: {e}");
            }
        });
        let (mut parts, body) = req.into_parts();
        let connection = parts.headers.get(header::CONNECTION).cloned();
        let upgrade = parts.headers.get(header::UPGRADE).cloned();
        rkube_stream::relay::remove_hop_by_hop(&mut parts.headers);
        self.outbound_headers(&mut parts.headers, peer).await;
        if let (Some(c), Some(u)) = (connection, upgrade) {
            parts.headers.insert(header::CONNECTION, c);
            parts.headers.insert(header::UPGRADE, u);
        }
        if let Ok(host) = HeaderValue::from_str(self.authority.as_str()) {
            parts.headers.insert(header::HOST, host);
        }
        parts.uri = uri.path_and_query().map(|p| Uri::from(p.clone())).unwrap_or_default();
        parts.version = http::Version::HTTP_11;
        let mut resp = match sender.send_request(Request::from_parts(parts, body)).await {
            Ok(r) => r,
            Err(e) => return self.unreachable(&e),
        };
        self.saw_status(resp.status());
        if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
            let (mut parts, body) = resp.into_parts();
            rkube_stream::relay::remove_hop_by_hop(&mut parts.headers);
            return Response::from_parts(parts, body.map_err(Into::into).boxed_unsync());
        }
        let upstream_upgrade = hyper::upgrade::on(&mut resp);
        tokio::spawn(async move {
            match tokio::try_join!(client_upgrade, upstream_upgrade) {
                Ok((client, upstream)) => {
                    let (mut client, mut upstream) = (TokioIo::new(client), TokioIo::new(upstream));
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                }
                Err(e) => tracing::debug!("upgrade failed: {e}"),
            }
        });
        let (parts, _) = resp.into_parts();
        Response::from_parts(parts, crate::full(Bytes::new()))
    }
}
