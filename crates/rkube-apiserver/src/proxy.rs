//! The `proxy` subresource of pods, services and nodes (`/api/v1/namespaces/{ns}/pods/{[scheme:]name[:port]}/proxy/{path}`,
//! the same for `services`, and `/api/v1/nodes/{name[:port]}/proxy/{path}`): any method,
//! its query, headers and body carried to the backend and its answer back, as
//! kube-apiserver's `ProxyREST` and `UpgradeAwareHandler` do. The location rules are
//! kube-apiserver's `ResourceLocation`s: a pod's port named or its first container port; a
//! service port picks a ready endpoint address of that port; a node without a port (or with
//! the kubelet's) is its kubelet over HTTPS with the API server's kubelet client certificate.
//!
//! Deliberate difference: kube-apiserver dials pod IPs itself. rkube's pod IPs live only in
//! the nodes' network namespaces, with no route from the API server's, so a pod (or service
//! endpoint) is reached through its kubelet's `portForward` (the connection is made inside the
//! pod's network namespace, to 127.0.0.1:port), which also works across machines and with
//! any kubelet. Over that connection: TLS for `https:` (no verification, as kube-apiserver's
//! proxy transport), upgrades (WebSocket) spliced both ways once the backend answers 101,
//! and an answer's links rewritten as kube-apiserver's proxy transport does ([`rewrite`]).

mod rewrite;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::BodyExt;
use rkube_api::{ApiError, ApiResult, ProxyTarget, ResourceDef};
use serde_json::Value;

use crate::codec::Body;
use crate::registry::{parse_stored, Request};
use crate::request_info::RequestInfo;
use crate::streams::Kubelet;
use crate::ApiServer;

/// Where a proxied request goes.
enum Backend {
    /// A pod's port, through its kubelet's port-forward.
    Pod { kubelet: Kubelet, ip: String, port: u16 },
    /// A node's kubelet itself.
    Kubelet(Kubelet),
    /// Another port of a node's address, plain HTTP.
    Node { host: String, port: u16 },
}

/// `utilnet.SplitSchemeNamePort`: `name`, `name:port` or `scheme:name:port`.
fn split_scheme_name_port(id: &str) -> Option<(&str, &str, &str)> {
    let parts: Vec<&str> = id.split(':').collect();
    let (scheme, name, port) = match parts.as_slice() {
        [name] => ("", *name, ""),
        [name, port] => ("", *name, *port),
        [scheme, name, port] => (*scheme, *name, *port),
        _ => return None,
    };
    let valid = !name.is_empty() && matches!(scheme, "" | "http" | "https");
    valid.then_some((scheme, name, port))
}

fn get(server: &ApiServer, key: &str, resource: &str, name: &str) -> ApiResult<Value> {
    server.store.get(key).ok_or_else(|| ApiError::not_found("", resource, name)).and_then(|kv| parse_stored(&kv))
}

fn service_unavailable(message: String) -> ApiError {
    ApiError::new(503, "ServiceUnavailable", message)
}

/// An IP the proxy may dial (`IsGlobalUnicast`: not loopback, unspecified, link-local or
/// multicast).
fn proxyable(ip: &str) -> bool {
    match ip.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(a)) => {
            !(a.is_loopback() || a.is_unspecified() || a.is_link_local() || a.is_multicast() || a.is_broadcast())
        }
        Ok(std::net::IpAddr::V6(a)) => {
            !(a.is_loopback() || a.is_unspecified() || a.is_multicast() || (a.segments()[0] & 0xffc0) == 0xfe80)
        }
        Err(_) => false,
    }
}

/// A pod's backend for `port` (empty: the first container port, else 80).
fn pod_backend(server: &ApiServer, ns: &str, pod: &Value, port: &str) -> ApiResult<Backend> {
    let name = pod.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("");
    let ports: Vec<&Value> = pod
        .pointer("/spec/containers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .flat_map(|c| c["ports"].as_array().into_iter().flatten())
        .collect();
    let port: u16 = if port.is_empty() {
        ports.first().and_then(|p| p["containerPort"].as_u64()).map_or(80, |p| p as u16)
    } else if let Ok(n) = port.parse() {
        n
    } else {
        ports
            .iter()
            .find(|p| p["name"] == port)
            .and_then(|p| p["containerPort"].as_u64())
            .map(|p| p as u16)
            .ok_or_else(|| ApiError::bad_request(format!("invalid pod request \"{name}:{port}\"")))?
    };
    let ip = pod.pointer("/status/podIP").and_then(Value::as_str).unwrap_or("").to_string();
    if !proxyable(&ip) {
        return Err(ApiError::bad_request("address not allowed"));
    }
    let node = pod.pointer("/spec/nodeName").and_then(Value::as_str).unwrap_or("");
    let kubelet = Kubelet::of(server, node, format!("/portForward/{ns}/{name}"))?;
    Ok(Backend::Pod { kubelet, ip, port })
}

/// The backend of `id` (the path's name) for the resource `def` serves.
fn locate(server: &ApiServer, def: &ResourceDef, ns: &str, id: &str) -> ApiResult<Backend> {
    let target = def.proxy.ok_or_else(ApiError::no_route)?;
    let what = match target {
        ProxyTarget::Pod => "pod",
        ProxyTarget::Service => "service",
        ProxyTarget::Node => "node",
    };
    let (scheme, name, port) =
        split_scheme_name_port(id).ok_or_else(|| ApiError::bad_request(format!("invalid {what} request \"{id}\"")))?;
    let _ = scheme;
    match target {
        ProxyTarget::Pod => {
            let pod = get(server, &format!("/registry/core/pods/{ns}/{name}"), "pods", name)?;
            pod_backend(server, ns, &pod, port)
        }
        ProxyTarget::Service => {
            let svc = get(server, &format!("/registry/core/services/{ns}/{name}"), "services", name)?;
            // A port number stands for the service port's name.
            let mut port_name = port.to_string();
            if let Ok(n) = port.parse::<u64>() {
                let ports = svc.pointer("/spec/ports").and_then(Value::as_array).cloned().unwrap_or_default();
                match ports.iter().find(|p| p["port"].as_u64() == Some(n)) {
                    Some(p) => port_name = p["name"].as_str().unwrap_or("").to_string(),
                    None => {
                        return Err(service_unavailable(format!("no service port {n} found for service \"{name}\"")))
                    }
                }
            }
            let eps = get(server, &format!("/registry/core/endpoints/{ns}/{name}"), "endpoints", name)?;
            let subsets = eps["subsets"].as_array().cloned().unwrap_or_default();
            if subsets.is_empty() {
                return Err(service_unavailable(format!("no endpoints available for service \"{name}\"")));
            }
            let seed = rand_index(subsets.len());
            for i in 0..subsets.len() {
                let ss = &subsets[(seed + i) % subsets.len()];
                let addrs = ss["addresses"].as_array().cloned().unwrap_or_default();
                let Some(p) = ss["ports"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .find(|p| p["name"].as_str().unwrap_or("") == port_name)
                else {
                    continue;
                };
                let target = p["port"].as_u64().unwrap_or(0).to_string();
                let start = rand_index(addrs.len().max(1));
                for j in 0..addrs.len() {
                    let a = &addrs[(start + j) % addrs.len()];
                    // `isValidAddress`: the address is a pod's, and still that pod's IP (an
                    // address without a pod is not proxied to: see the module note).
                    let ip = a["ip"].as_str().unwrap_or("");
                    let Some(pod_name) = a.pointer("/targetRef/name").and_then(Value::as_str) else { continue };
                    if a.pointer("/targetRef/kind").and_then(Value::as_str).is_some_and(|k| k != "Pod") {
                        continue;
                    }
                    let Ok(pod) = get(server, &format!("/registry/core/pods/{ns}/{pod_name}"), "pods", pod_name) else {
                        continue;
                    };
                    if pod.pointer("/status/podIP").and_then(Value::as_str) != Some(ip) {
                        continue;
                    }
                    if let Ok(b) = pod_backend(server, ns, &pod, &target) {
                        return Ok(b);
                    }
                }
            }
            Err(service_unavailable(format!("no endpoints available for service \"{id}\"")))
        }
        ProxyTarget::Node => {
            let node = get(server, &format!("/registry/core/nodes/{name}"), "nodes", name)?;
            let (host, kubelet_port) = crate::logs::kubelet_location(&node)?;
            match port.parse::<u16>() {
                Ok(p) if p != kubelet_port => Ok(Backend::Node { host, port: p }),
                Err(_) if !port.is_empty() => Err(ApiError::bad_request(format!("invalid node request \"{id}\""))),
                _ => Ok(Backend::Kubelet(Kubelet::of(server, name, String::new())?)),
            }
        }
    }
}

fn rand_index(n: usize) -> usize {
    if n <= 1 {
        return 0;
    }
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    nanos as usize % n
}

/// Whether a request asks for a protocol switch (`httpstream.IsUpgradeRequest`).
fn is_upgrade(headers: &http::HeaderMap) -> bool {
    headers
        .get_all(http::header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case("upgrade")))
        && headers.contains_key(http::header::UPGRADE)
}

/// A connection to a backend, whatever carries it.
trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static> Io for T {}

/// The `proxy` subresource: locate, then carry the request over.
pub async fn proxy(
    server: &Arc<ApiServer>,
    def: &ResourceDef,
    info: &RequestInfo,
    request: Request<'_>,
    body: Bytes,
) -> ApiResult<Response<Body>> {
    let ns = info.namespace.as_deref().unwrap_or("");
    let id = info.name.as_deref().unwrap_or("");
    let backend = locate(server, def, ns, id)?;
    // A kubelet is always reached over TLS; `https:` asks it of a pod's or a node's port.
    let https = split_scheme_name_port(id).is_some_and(|(scheme, _, _)| scheme == "https")
        && !matches!(backend, Backend::Kubelet(_));
    let Request { method, headers, raw_query, peer, upgrade, authority } = request;
    let query = raw_query.map(|q| format!("?{q}")).unwrap_or_default();
    if info.subpath.is_empty() && matches!(*method, http::Method::GET | http::Method::HEAD) {
        // `proxyRedirectsforRootPath`: relative links need the trailing slash.
        let mut resp = Response::new(http_body_util::Empty::new().map_err(|never| match never {}).boxed());
        *resp.status_mut() = StatusCode::MOVED_PERMANENTLY;
        if let Ok(v) = http::HeaderValue::from_str(&format!("{}/{query}", info.path)) {
            resp.headers_mut().insert(http::header::LOCATION, v);
        }
        return Ok(resp);
    }
    let path = if info.subpath.is_empty() { "/".to_string() } else { info.subpath.clone() };
    let upgrading = is_upgrade(headers);
    let mut req = http::Request::builder().method(method.clone()).uri(format!("{path}{query}"));
    let mut carried = headers.clone();
    rkube_stream::relay::remove_hop_by_hop(&mut carried);
    for (k, v) in &carried {
        // The caller's credentials are the API server's business only (its authentication
        // and impersonation filters drop them).
        if k == http::header::AUTHORIZATION || k.as_str().starts_with("impersonate-") || k == "x-forwarded-for" {
            continue;
        }
        req = req.header(k, v);
    }
    if upgrading {
        // The switch itself goes on to the backend.
        req = req.header(http::header::CONNECTION, "Upgrade");
        for v in headers.get_all(http::header::UPGRADE) {
            req = req.header(http::header::UPGRADE, v);
        }
    }
    let prior = headers.get("x-forwarded-for").and_then(|v| v.to_str().ok()).map(|v| format!("{v}, "));
    req = req.header("x-forwarded-for", format!("{}{}", prior.unwrap_or_default(), peer.ip()));
    let prepend = info.path.strip_suffix(info.subpath.as_str()).unwrap_or(&info.path).to_string();
    if !upgrading {
        // The proxy transport's X-Forwarded-Uri: the path the client asked for.
        let mut forwarded = rewrite::clean_join(&prepend, &path);
        if path.ends_with('/') && !forwarded.ends_with('/') {
            forwarded.push('/');
        }
        req = req.header("x-forwarded-uri", forwarded);
    }
    // Go's Request.Host: the Host header, or an HTTP/2 request's authority.
    let host_header = headers.get(http::header::HOST).and_then(|v| v.to_str().ok());
    let request_host = host_header.or(authority).unwrap_or("localhost").to_string();
    if host_header.is_none() {
        req = req.header(http::header::HOST, &request_host);
    }
    let req = req.body(http_body_util::Full::new(body)).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let reach = |e: String| service_unavailable(format!("error trying to reach service: {e}"));
    let (conn, forwarded, backend_host): (Box<dyn Io>, Option<Forwarded>, String) = match backend {
        Backend::Pod { kubelet, ip, port } => {
            let (io, f) = open_port_forward(kubelet, port).await?;
            let authority = if ip.contains(':') { format!("[{ip}]:{port}") } else { format!("{ip}:{port}") };
            (Box::new(io), Some(Forwarded { why: f, authority: authority.clone(), port }), authority)
        }
        Backend::Kubelet(k) => {
            let conn = crate::logs::dial(k.tls.clone(), &k.host, k.port, &k.authority).await.map_err(reach)?;
            (Box::new(conn), None, k.authority.clone())
        }
        Backend::Node { host, port } => {
            let authority = if host.contains(':') { format!("[{host}]:{port}") } else { format!("{host}:{port}") };
            let conn =
                tokio::time::timeout(Duration::from_secs(30), tokio::net::TcpStream::connect((host.as_str(), port)))
                    .await
                    .map_err(|_| reach(format!("dial tcp {authority}: i/o timeout")))?
                    .map_err(|e| reach(format!("dial tcp {authority}: connect: {}", why(&e))))?;
            (Box::new(conn), None, authority)
        }
    };
    let exchange = async {
        let conn: Box<dyn Io> = if https {
            // kube-apiserver's proxy transport verifies no certificate of a pod or service.
            let host = backend_host.rsplit_once(':').map_or(backend_host.as_str(), |(h, _)| h);
            let host = host.trim_start_matches('[').trim_end_matches(']');
            let name = match host.parse::<std::net::IpAddr>() {
                Ok(ip) => rustls_pki_types::ServerName::IpAddress(ip.into()),
                Err(_) => rustls_pki_types::ServerName::try_from(host.to_string()).map_err(|e| e.to_string())?,
            };
            let tls = tokio_rustls::TlsConnector::from(Arc::new(rkube_pki::unverified_client_config()));
            let stream = tokio::time::timeout(Duration::from_secs(10), tls.connect(name, conn))
                .await
                .map_err(|_| "net/http: TLS handshake timeout".to_string())?
                .map_err(|e| e.to_string())?;
            Box::new(stream)
        } else {
            conn
        };
        send(conn, req).await
    };
    let resp = match exchange.await {
        Ok(resp) => resp,
        Err(e) => {
            return Err(reach(match forwarded {
                Some(f) => f.explain(e).await,
                None => e,
            }))
        }
    };
    if upgrading && resp.status() == StatusCode::SWITCHING_PROTOCOLS {
        let Some(client_upgrade) = upgrade else {
            return Err(ApiError::internal("the connection cannot be upgraded"));
        };
        let mut out = Response::new(http_body_util::Empty::new().map_err(|never| match never {}).boxed());
        *out.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        *out.headers_mut() = resp.headers().clone();
        tokio::spawn(async move {
            let Ok(backend) = hyper::upgrade::on(resp).await else { return };
            let Ok(client) = client_upgrade.await else { return };
            let mut backend = hyper_util::rt::TokioIo::new(backend);
            let mut client = hyper_util::rt::TokioIo::new(client);
            let _ = tokio::io::copy_bidirectional(&mut client, &mut backend).await;
        });
        return Ok(out);
    }
    let (mut parts, incoming) = resp.into_parts();
    rkube_stream::relay::remove_hop_by_hop(&mut parts.headers);
    // corsRemovingTransport: the backend's CORS answers are not the API server's.
    for h in [
        "access-control-allow-credentials",
        "access-control-allow-headers",
        "access-control-allow-methods",
        "access-control-allow-origin",
    ] {
        parts.headers.remove(h);
    }
    let rw = rewrite::Rewriter { prepend, backend_host, request_host };
    let mut body = incoming.map_err(std::io::Error::other).boxed();
    if let Some(location) = parts.headers.get(http::header::LOCATION).and_then(|v| v.to_str().ok()) {
        if let Ok(v) = http::HeaderValue::from_str(&rw.url(location)) {
            parts.headers.insert(http::header::LOCATION, v);
        }
    } else if content_type(&parts.headers) == "text/html" && !upgrading {
        let encoding =
            parts.headers.get(http::header::CONTENT_ENCODING).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
        match read_bounded(body, rewrite::HTML_MAX_BYTES).await {
            Ok(whole) => match rw.body(&encoding, &whole) {
                Some(page) => {
                    parts.headers.remove(http::header::CONTENT_LENGTH);
                    body = http_body_util::Full::new(Bytes::from(page)).map_err(|never| match never {}).boxed();
                }
                None => body = http_body_util::Full::new(whole).map_err(|never| match never {}).boxed(),
            },
            Err(rest) => body = rest,
        }
    }
    let mut out = Response::new(body);
    *out.status_mut() = parts.status;
    *out.headers_mut() = parts.headers;
    Ok(out)
}

/// The media type of a Content-Type, parameters aside.
fn content_type(h: &http::HeaderMap) -> String {
    let ct = h.get(http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    ct.split(';').next().unwrap_or("").trim().to_ascii_lowercase()
}

/// The whole body if it is at most `max` bytes; else a body that gives what was read, then
/// the rest.
async fn read_bounded(mut body: Body, max: usize) -> Result<Bytes, Body> {
    let mut read: Vec<Bytes> = Vec::new();
    let mut total = 0usize;
    loop {
        match body.frame().await {
            None => break,
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    total += data.len();
                    read.push(data);
                }
                if total > max {
                    break;
                }
            }
            Some(Err(e)) => {
                let chunks = read.into_iter().map(|b| Ok(hyper::body::Frame::data(b)));
                let stream = futures::stream::iter(chunks.chain(std::iter::once(Err(e))));
                return Err(http_body_util::StreamBody::new(stream).boxed());
            }
        }
    }
    if total > max {
        let head = futures::stream::iter(read.into_iter().map(|b| Ok(hyper::body::Frame::data(b))));
        let rest = http_body_util::BodyStream::new(body);
        return Err(BodyExt::boxed(http_body_util::StreamBody::new(futures::StreamExt::chain(head, rest))));
    }
    let mut whole = Vec::with_capacity(total);
    for b in read {
        whole.extend_from_slice(&b);
    }
    Ok(Bytes::from(whole))
}

fn why(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::ConnectionRefused => "connection refused".to_string(),
        _ => e.to_string(),
    }
}

/// One HTTP/1.1 exchange over `io` (upgrades allowed); the connection lives as long as the
/// answer's body, or its upgrade.
async fn send<T>(
    io: T,
    req: http::Request<http_body_util::Full<Bytes>>,
) -> Result<Response<hyper::body::Incoming>, String>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
{
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(io)).await.map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        let _ = conn.with_upgrades().await;
    });
    sender.send_request(req).await.map_err(|e| e.to_string())
}

/// A port-forwarded connection's error stream: the kubelet says there why it could not
/// connect (then closes both streams).
struct Forwarded {
    why: PortForwardErrors,
    /// The pod's `ip:port`, as kube-apiserver's dial error names it.
    authority: String,
    port: u16,
}

struct PortForwardErrors {
    error: rkube_stream::spdy::Stream,
    relay: tokio::task::JoinHandle<()>,
}

impl Forwarded {
    /// The failure `e` of an exchange, worded as kube-apiserver's dial error to the pod's IP
    /// when the kubelet could not connect inside the pod.
    async fn explain(self, e: String) -> String {
        let Forwarded { why: PortForwardErrors { mut error, relay }, authority, port } = self;
        let mut text = Vec::new();
        let read = async {
            while let Some(d) = error.rx.recv().await {
                text.extend_from_slice(&d);
            }
        };
        let _ = tokio::time::timeout(Duration::from_secs(2), read).await;
        relay.abort();
        let text = String::from_utf8_lossy(&text).to_string();
        // "... dial tcp4 127.0.0.1:PORT: connect: connection refused" inside the pod.
        let local = format!("127.0.0.1:{port}: ");
        match text.split_once(&local) {
            Some((_, cause)) => format!("dial tcp {authority}: {cause}"),
            None if !text.is_empty() => text,
            None => e,
        }
    }
}

/// A connection the pod's kubelet makes inside the pod (`portForward`, one error/data
/// stream pair), as a byte stream.
async fn open_port_forward(kubelet: Kubelet, port: u16) -> ApiResult<(tokio::io::DuplexStream, PortForwardErrors)> {
    let unreachable = |why: String| service_unavailable(format!("error trying to reach service: {why}"));
    let upgraded = crate::streams::spdy_upgrade(&kubelet, &[rkube_stream::remotecommand::PORT_FORWARD])
        .await
        .map_err(|e| unreachable(format!("error dialing backend: {e}")))?;
    if upgraded.status() != StatusCode::SWITCHING_PROTOCOLS {
        let status = upgraded.status();
        let body = crate::streams::short_body(upgraded).await;
        return Err(unreachable(format!("the kubelet answered {status}: {}", String::from_utf8_lossy(&body).trim())));
    }
    let io = hyper::upgrade::on(upgraded).await.map_err(|e| unreachable(e.to_string()))?;
    let (session, _none) = rkube_stream::spdy::Session::start(hyper_util::rt::TokioIo::new(io), false);
    let headers = |kind: &str| {
        vec![
            ("streamtype".to_string(), kind.to_string()),
            ("port".to_string(), port.to_string()),
            ("requestid".to_string(), "0".to_string()),
        ]
    };
    let open = |kind: &'static str| {
        let session = session.clone();
        let h = headers(kind);
        async move { session.open(h, Duration::from_secs(30)).await.map_err(|e| e.to_string()) }
    };
    let error = open(rkube_stream::remotecommand::STREAM_ERROR).await.map_err(unreachable)?;
    let data = open(rkube_stream::remotecommand::STREAM_DATA).await.map_err(unreachable)?;
    // The data stream as a byte stream for the HTTP client.
    let (ours, theirs) = tokio::io::duplex(64 * 1024);
    let (mut from_client, mut to_client) = tokio::io::split(theirs);
    let rkube_stream::spdy::Stream { mut rx, tx, .. } = data;
    let relay = tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let down = async {
            while let Some(d) = rx.recv().await {
                if to_client.write_all(&d).await.is_err() {
                    break;
                }
            }
            let _ = to_client.shutdown().await;
        };
        let up = async {
            let mut buf = vec![0u8; 32 * 1024];
            loop {
                match from_client.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if tx.send(Bytes::copy_from_slice(&buf[..n])).await.is_err() {
                            break;
                        }
                    }
                }
            }
            let _ = tx.finish().await;
        };
        tokio::join!(down, up);
        session.close().await;
    });
    Ok((ours, PortForwardErrors { error, relay }))
}
