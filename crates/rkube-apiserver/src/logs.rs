//! `pods/log`: kube-apiserver's `LogREST` (`pkg/registry/core/pod/rest/log.go`). The query is
//! decoded and validated as `PodLogOptions`, the container defaulted (`validateContainer`),
//! and the request relayed to the kubelet API of the pod's node
//! (`/containerLogs/{ns}/{pod}/{container}`, `LogLocation`) over HTTPS with the API server's
//! kubelet client certificate, the kubelet's serving certificate verified against the cluster
//! CA. The kubelet's answer streams back chunk by chunk; its errors become `Status` answers
//! as `GenericHttpResponseChecker` makes them.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::BodyExt;
use rkube_api::status::Details;
use rkube_api::{ApiError, ApiResult, FieldError};
use serde_json::Value;

use crate::codec::Body;
use crate::registry::{parse_stored, Query};
use crate::ApiServer;

/// The kubelet port a Node that advertises none is reached on (`--kubelet-port`).
pub const DEFAULT_KUBELET_PORT: u16 = 10250;
/// How much of a kubelet's error body is read (`maxReadLength`).
const ERROR_BODY_MAX: usize = 50_000;

/// The rustls client configuration the API server reaches kubelets with: the cluster CA as
/// the only root, and its kubelet client certificate.
pub fn kubelet_client_config(ca_pem: &str, cert_pem: &str, key_pem: &str) -> Result<rustls::ClientConfig, String> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for c in rkube_pki::parse_cert_chain(ca_pem).map_err(|e| e.to_string())? {
        roots.add(c).map_err(|e| e.to_string())?;
    }
    let chain = rkube_pki::parse_cert_chain(cert_pem).map_err(|e| e.to_string())?;
    let key = rkube_pki::parse_key(key_pem).map_err(|e| e.to_string())?;
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .map_err(|e| e.to_string())?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(cfg)
}

/// `PodLogOptions` from the query, as the parameter codec converts it.
#[derive(Debug, Default)]
struct Options {
    container: String,
    follow: bool,
    previous: bool,
    timestamps: bool,
    since_seconds: Option<i64>,
    since_time: Option<String>,
    tail_lines: Option<i64>,
    limit_bytes: Option<i64>,
}

fn decode(q: &Query) -> ApiResult<Options> {
    let mut o = Options::default();
    let int = |v: &str| {
        v.parse::<i64>().map_err(|_| ApiError::bad_request(format!("strconv.ParseInt: parsing {v:?}: invalid syntax")))
    };
    // `Convert_Slice_string_To_bool`: only "0" and "false" are false.
    let boolean = |v: &str| !(v == "0" || v.eq_ignore_ascii_case("false"));
    for (k, v) in &q.0 {
        match k.as_str() {
            "container" => o.container = v.clone(),
            "follow" => o.follow = boolean(v),
            "previous" => o.previous = boolean(v),
            "timestamps" => o.timestamps = boolean(v),
            "sinceSeconds" if !v.is_empty() => o.since_seconds = Some(int(v)?),
            "tailLines" if !v.is_empty() => o.tail_lines = Some(int(v)?),
            "limitBytes" if !v.is_empty() => o.limit_bytes = Some(int(v)?),
            "sinceTime" if !v.is_empty() => {
                let t = chrono::DateTime::parse_from_rfc3339(v).map_err(|_| {
                    ApiError::bad_request(format!(
                        "parsing time {v:?} as \"2006-01-02T15:04:05Z07:00\": cannot parse {v:?} as \"2006\""
                    ))
                })?;
                // Sent on as `time.RFC3339` (seconds, UTC as Z).
                o.since_time = Some(t.with_timezone(&chrono::Utc).to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
            }
            _ => {}
        }
    }
    Ok(o)
}

/// `ValidatePodLogOptions`.
fn validate(o: &Options, name: &str) -> ApiResult<()> {
    let mut errs = Vec::new();
    if let Some(t) = o.tail_lines.filter(|t| *t < 0) {
        errs.push(FieldError::invalid("tailLines", t.into(), "must be greater than or equal to 0"));
    }
    if let Some(b) = o.limit_bytes.filter(|b| *b < 1) {
        errs.push(FieldError::invalid("limitBytes", b.into(), "must be greater than 0"));
    }
    match (o.since_seconds, &o.since_time) {
        (Some(_), Some(_)) => {
            errs.push(FieldError::forbidden("", "at most one of `sinceTime` or `sinceSeconds` may be specified"))
        }
        (Some(s), None) if s < 1 => errs.push(FieldError::invalid("sinceSeconds", s.into(), "must be greater than 0")),
        _ => {}
    }
    if errs.is_empty() {
        Ok(())
    } else {
        Err(ApiError::invalid("", "PodLogOptions", name, errs))
    }
}

/// `validateContainer`: the named container must be the pod's; none named is the only one.
pub(crate) fn container_of(pod: &Value, wanted: &str, name: &str) -> ApiResult<String> {
    let names = |path: &str| -> Vec<String> {
        pod.pointer(path)
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(|c| c["name"].as_str().map(str::to_string)).collect())
            .unwrap_or_default()
    };
    let containers = names("/spec/containers");
    if wanted.is_empty() {
        return match containers.len() {
            1 => Ok(containers[0].clone()),
            0 => Err(ApiError::bad_request(format!("a container name must be specified for pod {name}"))),
            _ => Err(ApiError::bad_request(format!(
                "a container name must be specified for pod {name}, choose one of: [{}]",
                containers.join(" ")
            ))),
        };
    }
    let (init, ephemeral) = (names("/spec/initContainers"), names("/spec/ephemeralContainers"));
    if containers.iter().chain(&init).chain(&ephemeral).any(|c| c == wanted) {
        Ok(wanted.to_string())
    } else {
        Err(ApiError::bad_request(format!("container {wanted} is not valid for pod {name}")))
    }
}

/// The kubelet's address (`GetConnectionInfo` with InternalIP preferred, then Hostname,
/// then ExternalIP) and port (the advertised daemon endpoint, else the default).
pub(crate) fn kubelet_location(node: &Value) -> ApiResult<(String, u16)> {
    let addresses = node.pointer("/status/addresses").and_then(Value::as_array).cloned().unwrap_or_default();
    let of = |kind: &str| {
        addresses.iter().find(|a| a["type"] == kind).and_then(|a| a["address"].as_str()).map(str::to_string)
    };
    let host = of("InternalIP").or_else(|| of("Hostname")).or_else(|| of("ExternalIP")).ok_or_else(|| {
        let known: Vec<String> = addresses
            .iter()
            .map(|a| format!("{{{} {}}}", a["type"].as_str().unwrap_or(""), a["address"].as_str().unwrap_or("")))
            .collect();
        ApiError::new(500, "", format!("no preferred addresses found; known addresses: [{}]", known.join(" ")))
    })?;
    let port = node
        .pointer("/status/daemonEndpoints/kubeletEndpoint/Port")
        .and_then(Value::as_u64)
        .filter(|p| *p > 0 && *p <= 65535)
        .map_or(DEFAULT_KUBELET_PORT, |p| p as u16);
    Ok((host, port))
}

fn query_string(o: &Options) -> String {
    // url.Values.Encode: keys sorted.
    let mut params: Vec<(&str, String)> = Vec::new();
    if o.follow {
        params.push(("follow", "true".into()));
    }
    if let Some(b) = o.limit_bytes {
        params.push(("limitBytes", b.to_string()));
    }
    if o.previous {
        params.push(("previous", "true".into()));
    }
    if let Some(s) = o.since_seconds {
        params.push(("sinceSeconds", s.to_string()));
    }
    if let Some(t) = &o.since_time {
        params.push(("sinceTime", t.clone()));
    }
    if let Some(t) = o.tail_lines {
        params.push(("tailLines", t.to_string()));
    }
    if o.timestamps {
        params.push(("timestamps", "true".into()));
    }
    let mut s = form_urlencoded::Serializer::new(String::new());
    for (k, v) in &params {
        s.append_pair(k, v);
    }
    s.finish()
}

/// GET `/api/v1/namespaces/{ns}/pods/{name}/log`.
pub async fn pod_log(server: &Arc<ApiServer>, ns: &str, name: &str, query: &Query) -> ApiResult<Response<Body>> {
    let opts = decode(query)?;
    validate(&opts, name)?;
    let pod = server
        .store
        .get(&format!("/registry/core/pods/{ns}/{name}"))
        .ok_or_else(|| ApiError::not_found("", "pods", name))
        .and_then(|kv| parse_stored(&kv))?;
    let container = container_of(&pod, &opts.container, name)?;
    let node_name = pod.pointer("/spec/nodeName").and_then(Value::as_str).unwrap_or("");
    if node_name.is_empty() {
        // No node yet: an empty stream, as LocationStreamer without a location.
        return Ok(crate::codec::raw_response(StatusCode::OK, "text/plain", Vec::new()));
    }
    let node = server
        .store
        .get(&format!("/registry/core/nodes/{node_name}"))
        .ok_or_else(|| ApiError::not_found("", "nodes", node_name))
        .and_then(|kv| parse_stored(&kv))?;
    let (host, port) = kubelet_location(&node)?;
    let q = query_string(&opts);
    let path = format!("/containerLogs/{ns}/{name}/{container}{}{q}", if q.is_empty() { "" } else { "?" });
    let tls =
        server.kubelet_client.get().cloned().ok_or_else(|| {
            ApiError::internal("the API server has no kubelet client certificate: cannot reach kubelets")
        })?;
    let authority = if host.contains(':') { format!("[{host}]:{port}") } else { format!("{host}:{port}") };
    let url = format!("https://{authority}{path}");
    let fail = |e: String| ApiError::new(500, "", format!("Get \"{url}\": {e}"));
    let resp = connect_and_get(tls, &host, port, &authority, &path).await.map_err(fail)?;
    let status = resp.status();
    if !status.is_success() || status.as_u16() > 206 {
        let mut body = resp.into_body();
        let mut text = Vec::new();
        while text.len() < ERROR_BODY_MAX {
            match tokio::time::timeout(Duration::from_secs(10), body.frame()).await {
                Ok(Some(Ok(f))) => {
                    if let Ok(d) = f.into_data() {
                        text.extend_from_slice(&d);
                    }
                }
                _ => break,
            }
        }
        text.truncate(ERROR_BODY_MAX);
        return Err(kubelet_error(status.as_u16(), &String::from_utf8_lossy(&text), name));
    }
    let body = resp.into_body().map_err(std::io::Error::other).boxed();
    let mut out = Response::new(body);
    out.headers_mut().insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("text/plain"));
    Ok(out)
}

/// `GenericHttpResponseChecker.Check`.
fn kubelet_error(code: u16, body: &str, name: &str) -> ApiError {
    let details = Details { name: name.to_string(), group: String::new(), kind: "pods/log".into(), causes: vec![] };
    match code {
        500 => ApiError::internal(body.to_string()),
        400 => ApiError::bad_request(body.to_string()),
        404 => ApiError::new(404, "NotFound", "the server could not find the requested resource").with_details(details),
        401 => ApiError::new(401, "Unauthorized", "the server has asked for the client to provide credentials")
            .with_details(details),
        403 => ApiError::new(403, "Forbidden", body.to_string()).with_details(details),
        422 => ApiError::new(422, "Invalid", "the server rejected our request due to an error in our request")
            .with_details(details),
        _ => ApiError::new(
            code,
            "",
            format!("the server responded with the status code {code} but did not return more information"),
        )
        .with_details(details),
    }
}

/// The response body of a kubelet request; ends the connection's task when dropped (the
/// client went away), so a followed stream frees the kubelet's reader.
pub(crate) struct Relay {
    body: hyper::body::Incoming,
    conn: tokio::task::JoinHandle<()>,
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.conn.abort();
    }
}

impl hyper::body::Body for Relay {
    type Data = Bytes;
    type Error = hyper::Error;
    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, hyper::Error>>> {
        std::pin::Pin::new(&mut self.body).poll_frame(cx)
    }
}

/// A TLS connection to a kubelet, its serving certificate verified against the cluster CA.
pub(crate) async fn dial(
    tls: Arc<rustls::ClientConfig>,
    host: &str,
    port: u16,
    authority: &str,
) -> Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>, String> {
    let tcp = tokio::time::timeout(Duration::from_secs(30), tokio::net::TcpStream::connect((host, port)))
        .await
        .map_err(|_| format!("dial tcp {authority}: i/o timeout"))?
        .map_err(|e| {
            let why = match e.kind() {
                std::io::ErrorKind::ConnectionRefused => "connection refused".to_string(),
                _ => e.to_string(),
            };
            format!("dial tcp {authority}: connect: {why}")
        })?;
    let _ = tcp.set_nodelay(true);
    let server_name = match host.parse::<std::net::IpAddr>() {
        Ok(ip) => rustls_pki_types::ServerName::IpAddress(ip.into()),
        Err(_) => rustls_pki_types::ServerName::try_from(host.to_string()).map_err(|e| e.to_string())?,
    };
    tokio::time::timeout(Duration::from_secs(10), tokio_rustls::TlsConnector::from(tls).connect(server_name, tcp))
        .await
        .map_err(|_| "net/http: TLS handshake timeout".to_string())?
        .map_err(|e| format!("tls: failed to verify certificate: {e}"))
}

pub(crate) async fn connect_and_get(
    tls: Arc<rustls::ClientConfig>,
    host: &str,
    port: u16,
    authority: &str,
    path: &str,
) -> Result<Response<Relay>, String> {
    let stream = dial(tls, host, port, authority).await?;
    let (mut send, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await.map_err(|e| e.to_string())?;
    let conn = tokio::spawn(async move {
        let _ = conn.await;
    });
    let req = http::Request::get(path)
        .header(http::header::HOST, authority)
        .header(http::header::USER_AGENT, format!("kube-apiserver/{}", crate::KUBE_GIT_VERSION))
        .body(http_body_util::Empty::<Bytes>::new())
        .map_err(|e| e.to_string())?;
    // The kubelet answers with its headers before any log line: a node that accepts and
    // says nothing is an error, not a hang.
    let resp = tokio::time::timeout(Duration::from_secs(60), send.send_request(req))
        .await
        .map_err(|_| "net/http: timeout awaiting response headers".to_string())?
        .map_err(|e| e.to_string())?;
    let (parts, body) = resp.into_parts();
    Ok(Response::from_parts(parts, Relay { body, conn }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn options_are_decoded_validated_and_passed_on_as_log_location_does() {
        let o =
            decode(&Query::parse(Some("follow=1&tailLines=2&timestamps=true&sinceTime=2026-01-01T01:00:00%2B01:00")))
                .unwrap();
        assert_eq!(query_string(&o), "follow=true&sinceTime=2026-01-01T00%3A00%3A00Z&tailLines=2&timestamps=true");
        assert!(decode(&Query::parse(Some("tailLines=x"))).is_err());
        let bad = decode(&Query::parse(Some("tailLines=-1"))).unwrap();
        let e = validate(&bad, "p").unwrap_err();
        assert_eq!(e.code, 422);
        assert_eq!(
            e.message,
            "PodLogOptions \"p\" is invalid: tailLines: Invalid value: -1: must be greater than or equal to 0"
        );
        let pod = json!({"spec": {"containers": [{"name": "a"}, {"name": "b"}]}});
        assert_eq!(
            container_of(&pod, "", "p").unwrap_err().message,
            "a container name must be specified for pod p, choose one of: [a b]"
        );
        assert_eq!(container_of(&pod, "c", "p").unwrap_err().message, "container c is not valid for pod p");
        assert_eq!(container_of(&pod, "b", "p").unwrap(), "b");
        let node = json!({"status": {"addresses": [{"type": "Hostname", "address": "h"}, {"type": "InternalIP", "address": "10.0.0.1"}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 4321}}}});
        assert_eq!(kubelet_location(&node).unwrap(), ("10.0.0.1".to_string(), 4321));
    }
}
