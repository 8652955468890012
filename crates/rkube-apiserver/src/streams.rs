//! `pods/exec` (and, through the same path, `pods/attach` and `pods/portforward`): kube-apiserver's
//! `ExecREST`/`AttachREST`/`PortForwardREST.Connect` (`pkg/registry/core/pod/rest/subresources.go`).
//! The pod and container are checked as `streamLocation` does, the kubelet location built
//! (`/exec/{ns}/{pod}/{container}?command=..&input=1&output=1&error=1&tty=1`), and the client's
//! upgrade request relayed there over HTTPS with the API server's kubelet client certificate.
//! Once the kubelet answers 101, the two upgraded connections are joined byte for byte (SPDY,
//! or a WebSocket the kubelet speaks); any other answer goes back to the client as it came,
//! which kubectl reports as `unable to upgrade connection: <body>`.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Response, StatusCode};
use http_body_util::BodyExt;
use rkube_api::{ApiError, ApiResult};
use serde_json::Value;

use rkube_stream::channel as ch;
use rkube_stream::remotecommand as rc;
use rkube_stream::spdy::Session;
use tokio_tungstenite::tungstenite::protocol::Role;

use crate::codec::Body;
use crate::registry::{parse_stored, Query};
use crate::ApiServer;

/// The headers of an upgrade the kubelet must see (the rest, credentials above all, stay here).
const FORWARDED: &[&str] = &[
    "connection",
    "upgrade",
    "x-stream-protocol-version",
    "sec-websocket-key",
    "sec-websocket-version",
    "sec-websocket-protocol",
    "sec-websocket-extensions",
];
/// The headers of the kubelet's 101 the client gets.
const RETURNED: &[&str] = &[
    "connection",
    "upgrade",
    "x-stream-protocol-version",
    "sec-websocket-accept",
    "sec-websocket-protocol",
    "sec-websocket-extensions",
];

/// Which stream subresource, and the kubelet path it maps to.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Kind {
    Exec,
    Attach,
    PortForward,
}

impl Kind {
    pub fn of(subresource: &str) -> Option<Kind> {
        match subresource {
            "exec" => Some(Kind::Exec),
            "attach" => Some(Kind::Attach),
            "portforward" => Some(Kind::PortForward),
            _ => None,
        }
    }
}

/// `streamLocation`'s container choice: the named one must be the pod's; none named is the
/// only one.
fn stream_container(pod: &Value, wanted: &str, name: &str) -> ApiResult<String> {
    let names = |path: &str| -> Vec<String> {
        pod.pointer(path)
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(|c| c["name"].as_str().map(str::to_string)).collect())
            .unwrap_or_default()
    };
    let (containers, init) = (names("/spec/containers"), names("/spec/initContainers"));
    if wanted.is_empty() {
        return match containers.len() {
            1 => Ok(containers[0].clone()),
            0 => Err(ApiError::bad_request(format!("a container name must be specified for pod {name}"))),
            _ => {
                let mut msg = format!(
                    "a container name must be specified for pod {name}, choose one of: [{}]",
                    containers.join(" ")
                );
                if !init.is_empty() {
                    msg.push_str(&format!(" or one of the init containers: [{}]", init.join(" ")));
                }
                Err(ApiError::bad_request(msg))
            }
        };
    }
    crate::logs::container_of(pod, wanted, name)
}

/// The kubelet query of an exec or attach (`streamParams`): each command word, then the
/// streams asked for as "1".
fn kubelet_query(kind: Kind, query: &Query) -> String {
    let mut s = form_urlencoded::Serializer::new(String::new());
    if kind == Kind::PortForward {
        // `PortForwardLocation`: each requested port.
        for (k, v) in &query.0 {
            if k == "ports" {
                for p in v.split(',').filter(|p| !p.trim().is_empty()) {
                    s.append_pair("port", p.trim());
                }
            }
        }
        return s.finish();
    }
    if kind == Kind::Exec {
        for (k, v) in &query.0 {
            if k == "command" {
                s.append_pair("command", v);
            }
        }
    }
    for (param, kubelet) in [("stdin", "input"), ("stdout", "output"), ("stderr", "error"), ("tty", "tty")] {
        if query.flag(param) {
            s.append_pair(kubelet, "1");
        }
    }
    s.finish()
}

fn is_upgrade(headers: &HeaderMap) -> bool {
    headers
        .get_all(http::header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
        && headers.contains_key(http::header::UPGRADE)
}

/// Connects a stream subresource request to the pod's kubelet.
pub async fn connect(
    server: &Arc<ApiServer>,
    kind: Kind,
    ns: &str,
    name: &str,
    query: &Query,
    request: crate::registry::Request<'_>,
) -> ApiResult<Response<Body>> {
    let crate::registry::Request { method, headers, upgrade, .. } = request;
    let pod = server
        .store
        .get(&format!("/registry/core/pods/{ns}/{name}"))
        .ok_or_else(|| ApiError::not_found("", "pods", name))
        .and_then(|kv| parse_stored(&kv))?;
    let container = if kind == Kind::PortForward {
        String::new()
    } else {
        stream_container(&pod, query.get("container").unwrap_or(""), name)?
    };
    let node_name = pod.pointer("/spec/nodeName").and_then(Value::as_str).unwrap_or("");
    if node_name.is_empty() {
        return Err(ApiError::bad_request(format!("pod {name} does not have a host assigned")));
    }
    if !is_upgrade(headers) {
        return Err(ApiError::bad_request("Upgrade request required"));
    }
    let q = kubelet_query(kind, query);
    let q = if q.is_empty() { q } else { format!("?{q}") };
    let path = match kind {
        Kind::Exec => format!("/exec/{ns}/{name}/{container}{q}"),
        Kind::Attach => format!("/attach/{ns}/{name}/{container}{q}"),
        Kind::PortForward => format!("/portForward/{ns}/{name}{q}"),
    };
    let kubelet = Kubelet::of(server, node_name, path)?;
    let tunnel = if kind == Kind::PortForward { tunneled_protocols(headers) } else { Vec::new() };
    if kind == Kind::PortForward && !tunnel.is_empty() && upgrade.is_some() {
        return tunnel_port_forward(kubelet, headers, &tunnel, upgrade).await;
    }
    if kind == Kind::PortForward {
        // Only plain SPDY from here on (what else arrives is relayed as is).
    } else if let Some(resp) = translate(headers, upgrade.is_some())? {
        // v5 WebSocket clients are answered here and their streams carried to the kubelet
        // over SPDY (`TranslateStreamCloseWebsocketRequests`).
        let upgrade = upgrade.expect("checked");
        let opts = StreamOpts::of(query);
        tokio::spawn(async move {
            let Ok(io) = upgrade.await else { return };
            let c = ch::channels(hyper_util::rt::TokioIo::new(io), Role::Server, ch::V5_BINARY).await;
            let writer = c.writer.clone();
            let status = match spdy_exec(&kubelet, opts, c).await {
                Ok(error_stream) => rc::translated_status(&error_stream),
                Err(e) => rc::internal_error(&e),
            };
            let _ = writer.send(ch::ERROR, Bytes::from(status)).await;
            writer.close().await;
        });
        return Ok(resp);
    }
    let Kubelet { tls, host, port, authority, path } = kubelet;
    let fail = |e: String| ApiError::internal(format!("error dialing backend: {e}"));
    let stream = crate::logs::dial(tls, &host, port, &authority).await.map_err(fail)?;
    let (mut send, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
        .await
        .map_err(|e| fail(e.to_string()))?;
    tokio::spawn(async move {
        let _ = conn.with_upgrades().await;
    });
    let mut req = http::Request::builder()
        .method(method.clone())
        .uri(&path)
        .header(http::header::HOST, &authority)
        .header(http::header::USER_AGENT, format!("kube-apiserver/{}", crate::KUBE_GIT_VERSION));
    for (k, v) in headers {
        if FORWARDED.contains(&k.as_str()) {
            req = req.header(k, v);
        }
    }
    let req = req.body(http_body_util::Empty::<Bytes>::new()).map_err(|e| fail(e.to_string()))?;
    let resp = tokio::time::timeout(Duration::from_secs(60), send.send_request(req))
        .await
        .map_err(|_| fail("timeout awaiting response headers".into()))?
        .map_err(|e| fail(e.to_string()))?;
    if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
        return Ok(relay_refusal(resp).await);
    }
    let Some(client_upgrade) = upgrade else {
        return Err(ApiError::internal("the connection cannot be upgraded"));
    };
    let mut out = Response::new(http_body_util::Empty::new().map_err(|never| match never {}).boxed());
    *out.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    for (k, v) in resp.headers() {
        if RETURNED.contains(&k.as_str()) {
            out.headers_mut().append(k, v.clone());
        }
    }
    tokio::spawn(async move {
        let Ok(kubelet) = hyper::upgrade::on(resp).await else { return };
        let Ok(client) = client_upgrade.await else { return };
        let mut kubelet = hyper_util::rt::TokioIo::new(kubelet);
        let mut client = hyper_util::rt::TokioIo::new(client);
        let _ = tokio::io::copy_bidirectional(&mut client, &mut kubelet).await;
    });
    Ok(out)
}

/// The SPDY protocols a WebSocket port-forward tunnels (`SPDY/3.1+portforward.k8s.io`
/// offers `portforward.k8s.io`).
fn tunneled_protocols(headers: &HeaderMap) -> Vec<String> {
    let websocket = headers
        .get_all(http::header::UPGRADE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.trim().eq_ignore_ascii_case("websocket"));
    if !websocket {
        return Vec::new();
    }
    rc::offers(headers.get_all("sec-websocket-protocol").iter().filter_map(|v| v.to_str().ok()))
        .into_iter()
        .filter_map(|p| p.strip_prefix("SPDY/3.1+").filter(|p| p.ends_with(".k8s.io")).map(str::to_string))
        .collect()
}

/// kube-apiserver's `TunnelingHandler` (`PortForwardWebsockets`): the kubelet gets a plain
/// SPDY upgrade; once it answers 101 the client's WebSocket is accepted with the tunneled
/// protocol, and the SPDY bytes travel inside its binary messages. Any other answer is
/// relayed as it came.
async fn tunnel_port_forward(
    k: Kubelet,
    headers: &HeaderMap,
    protocols: &[String],
    upgrade: Option<hyper::upgrade::OnUpgrade>,
) -> ApiResult<Response<Body>> {
    let key = headers
        .get("sec-websocket-key")
        .and_then(|v| v.to_str().ok())
        .map(ch::accept_key)
        .ok_or_else(|| ApiError::bad_request("missing Sec-WebSocket-Key"))?;
    let resp =
        spdy_upgrade(&k, protocols).await.map_err(|e| ApiError::internal(format!("error dialing backend: {e}")))?;
    if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
        return Ok(relay_refusal(resp).await);
    }
    let chosen = resp.headers().get(rc::PROTOCOL_HEADER).and_then(|v| v.to_str().ok()).unwrap_or("").trim().to_string();
    let mut out = Response::new(http_body_util::Empty::new().map_err(|never| match never {}).boxed());
    *out.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = out.headers_mut();
    h.insert(http::header::CONNECTION, http::HeaderValue::from_static("Upgrade"));
    h.insert(http::header::UPGRADE, http::HeaderValue::from_static("websocket"));
    if let Ok(v) = http::HeaderValue::from_str(&key) {
        h.insert("sec-websocket-accept", v);
    }
    if !chosen.is_empty() {
        if let Ok(v) = http::HeaderValue::from_str(&format!("SPDY/3.1+{chosen}")) {
            h.insert("sec-websocket-protocol", v);
        }
    }
    let client_upgrade = upgrade.expect("checked by the caller");
    tokio::spawn(async move {
        let Ok(kubelet) = hyper::upgrade::on(resp).await else { return };
        let Ok(client) = client_upgrade.await else { return };
        let ws = tokio_tungstenite::WebSocketStream::from_raw_socket(
            hyper_util::rt::TokioIo::new(client),
            Role::Server,
            None,
        )
        .await;
        rkube_stream::channel::tunnel(ws, hyper_util::rt::TokioIo::new(kubelet)).await;
    });
    Ok(out)
}

/// A kubelet's non-101 answer to an upgrade, for the client as it came (UpgradeAwareHandler
/// writes it through).
async fn relay_refusal(resp: Response<hyper::body::Incoming>) -> Response<Body> {
    let status = resp.status();
    let resp_headers = resp.headers().clone();
    let body = short_body(resp).await;
    let mut out = Response::new(http_body_util::Full::new(body).map_err(|never| match never {}).boxed());
    *out.status_mut() = status;
    for (k, v) in &resp_headers {
        if k == http::header::CONTENT_TYPE || k.as_str().starts_with("x-") {
            out.headers_mut().append(k, v.clone());
        }
    }
    out
}

/// The body of a kubelet's refusal (a short text): what arrives within 10 s.
pub(crate) async fn short_body(resp: Response<hyper::body::Incoming>) -> Bytes {
    tokio::time::timeout(Duration::from_secs(10), resp.into_body().collect())
        .await
        .ok()
        .and_then(Result::ok)
        .map(|b| b.to_bytes())
        .unwrap_or_default()
}

/// A kubelet endpoint: the node's kubelet, the client configuration that reaches it (the API
/// server's kubelet client certificate) and the path asked for.
#[derive(Clone)]
pub(crate) struct Kubelet {
    pub tls: Arc<rustls::ClientConfig>,
    pub host: String,
    pub port: u16,
    pub authority: String,
    pub path: String,
}

impl Kubelet {
    /// `path` on the kubelet of node `node_name`.
    pub fn of(server: &ApiServer, node_name: &str, path: String) -> ApiResult<Kubelet> {
        let node = server
            .store
            .get(&format!("/registry/core/nodes/{node_name}"))
            .ok_or_else(|| ApiError::not_found("", "nodes", node_name))
            .and_then(|kv| parse_stored(&kv))?;
        let (host, port) = crate::logs::kubelet_location(&node)?;
        let tls = server.kubelet_client.get().cloned().ok_or_else(|| {
            ApiError::internal("the API server has no kubelet client certificate: cannot reach kubelets")
        })?;
        let authority = if host.contains(':') { format!("[{host}]:{port}") } else { format!("{host}:{port}") };
        Ok(Kubelet { tls, host, port, authority, path })
    }
}

#[derive(Clone, Copy)]
struct StreamOpts {
    stdin: bool,
    stdout: bool,
    stderr: bool,
    tty: bool,
}

impl StreamOpts {
    fn of(query: &Query) -> StreamOpts {
        let tty = query.flag("tty");
        StreamOpts {
            stdin: query.flag("stdin"),
            stdout: query.flag("stdout"),
            stderr: query.flag("stderr") && !tty,
            tty,
        }
    }
}

/// For a WebSocket request offering `v5.channel.k8s.io`: the 101 that accepts it.
fn translate(headers: &HeaderMap, can_upgrade: bool) -> ApiResult<Option<Response<Body>>> {
    let websocket = headers
        .get_all(http::header::UPGRADE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.trim().eq_ignore_ascii_case("websocket"));
    let offered = rc::offers(headers.get_all("sec-websocket-protocol").iter().filter_map(|v| v.to_str().ok()));
    if !websocket || !offered.iter().any(|p| p == ch::V5_BINARY) || !can_upgrade {
        return Ok(None);
    }
    let key = headers
        .get("sec-websocket-key")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| ApiError::bad_request("missing Sec-WebSocket-Key"))?;
    let mut out = Response::new(http_body_util::Empty::new().map_err(|never| match never {}).boxed());
    *out.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = out.headers_mut();
    h.insert(http::header::CONNECTION, http::HeaderValue::from_static("Upgrade"));
    h.insert(http::header::UPGRADE, http::HeaderValue::from_static("websocket"));
    h.insert("sec-websocket-protocol", http::HeaderValue::from_static(ch::V5_BINARY));
    if let Ok(v) = http::HeaderValue::from_str(&ch::accept_key(key)) {
        h.insert("sec-websocket-accept", v);
    }
    Ok(Some(out))
}

/// A SPDY upgrade request (POST, offering `protocols`) to the kubelet; its answer.
pub(crate) async fn spdy_upgrade<P: AsRef<str>>(
    k: &Kubelet,
    protocols: &[P],
) -> Result<Response<hyper::body::Incoming>, String> {
    let stream = crate::logs::dial(k.tls.clone(), &k.host, k.port, &k.authority).await?;
    let (mut send, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await.map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        let _ = conn.with_upgrades().await;
    });
    let mut req = http::Request::post(&k.path)
        .header(http::header::HOST, &k.authority)
        .header(http::header::USER_AGENT, format!("kube-apiserver/{}", crate::KUBE_GIT_VERSION))
        .header(http::header::CONNECTION, "Upgrade")
        .header(http::header::UPGRADE, "SPDY/3.1");
    for p in protocols {
        req = req.header(rc::PROTOCOL_HEADER, p.as_ref());
    }
    let req = req.body(http_body_util::Empty::<Bytes>::new()).map_err(|e| e.to_string())?;
    tokio::time::timeout(Duration::from_secs(60), send.send_request(req))
        .await
        .map_err(|_| "timeout awaiting response headers".to_string())?
        .map_err(|e| e.to_string())
}

/// client-go's SPDY executor towards the kubelet, its streams joined to the WebSocket
/// client's channels; returns what the kubelet wrote on the error stream.
async fn spdy_exec(k: &Kubelet, opts: StreamOpts, c: ch::Channels) -> Result<Vec<u8>, String> {
    let resp = spdy_upgrade(k, &[rc::V5, rc::V4, rc::V3, rc::V2, rc::V1]).await?;
    if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
        let body = short_body(resp).await;
        return Err(format!("unable to upgrade connection: {}", String::from_utf8_lossy(&body).trim()));
    }
    let protocol = resp.headers().get(rc::PROTOCOL_HEADER).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    let io = hyper::upgrade::on(resp).await.map_err(|e| e.to_string())?;
    let (session, _none) = Session::start(hyper_util::rt::TokioIo::new(io), false);
    let result = bridge(&session, &protocol, opts, c).await;
    session.close().await;
    result
}

async fn bridge(session: &Session, protocol: &str, opts: StreamOpts, c: ch::Channels) -> Result<Vec<u8>, String> {
    let open = |kind: &'static str| {
        let session = session.clone();
        async move {
            session
                .open(vec![("streamtype".to_string(), kind.to_string())], Duration::from_secs(30))
                .await
                .map_err(|e| e.to_string())
        }
    };
    // client-go's order: error, stdin, stdout, stderr, resize.
    let mut error = open(rc::STREAM_ERROR).await?;
    let stdin = if opts.stdin { Some(open(rc::STREAM_STDIN).await?) } else { None };
    let stdout = if opts.stdout { Some(open(rc::STREAM_STDOUT).await?) } else { None };
    let stderr = if opts.stderr { Some(open(rc::STREAM_STDERR).await?) } else { None };
    let resize_supported = protocol != rc::V1 && protocol != rc::V2;
    let resize = if opts.tty && resize_supported { Some(open(rc::STREAM_RESIZE).await?) } else { None };
    let ch::Channels { stdin: stdin_rx, resize: resize_rx, writer, mut ended } = c;
    let (stdin_rx, resize_rx) = (Some(stdin_rx), Some(resize_rx));
    let mut tasks = Vec::new();
    if let (Some(s), Some(mut rx)) = (stdin, stdin_rx) {
        tasks.push(tokio::spawn(async move {
            while let Some(d) = rx.recv().await {
                if s.tx.send(d).await.is_err() {
                    return;
                }
            }
            let _ = s.tx.finish().await;
        }));
    }
    if let (Some(s), Some(mut rx)) = (resize, resize_rx) {
        tasks.push(tokio::spawn(async move {
            while let Some(d) = rx.recv().await {
                if s.tx.send(d).await.is_err() {
                    return;
                }
            }
        }));
    }
    let mut outputs = Vec::new();
    for (s, channel) in [(stdout, ch::STDOUT), (stderr, ch::STDERR)] {
        if let Some(mut s) = s {
            let w = writer.clone();
            outputs.push(tokio::spawn(async move {
                while let Some(d) = s.rx.recv().await {
                    if w.send(channel, d).await.is_err() {
                        break;
                    }
                }
            }));
        }
    }
    let finished = async {
        let mut status = Vec::new();
        while let Some(d) = error.rx.recv().await {
            status.extend_from_slice(&d);
        }
        for o in outputs.iter_mut() {
            let _ = o.await;
        }
        status
    };
    let result = tokio::select! {
        s = finished => Ok(s),
        _ = ended.wait_for(|e| *e) => Err("the client went away".to_string()),
    };
    for t in tasks.into_iter().chain(outputs) {
        t.abort();
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_kubelet_query_is_stream_params() {
        let q =
            Query::parse(Some("command=sh&command=-c&command=echo+hi&stdin=true&stdout=true&tty=false&container=c"));
        assert_eq!(kubelet_query(Kind::Exec, &q), "command=sh&command=-c&command=echo+hi&input=1&output=1");
        assert_eq!(kubelet_query(Kind::Attach, &q), "input=1&output=1");
    }

    #[test]
    fn a_container_is_chosen_as_stream_location_does() {
        let pod = json!({"spec": {"containers": [{"name": "a"}, {"name": "b"}], "initContainers": [{"name": "i"}]}});
        let e = stream_container(&pod, "", "p").unwrap_err();
        assert_eq!(
            e.message,
            "a container name must be specified for pod p, choose one of: [a b] or one of the init containers: [i]"
        );
        assert_eq!(stream_container(&pod, "i", "p").unwrap(), "i");
        assert_eq!(stream_container(&pod, "x", "p").unwrap_err().message, "container x is not valid for pod p");
    }
}
