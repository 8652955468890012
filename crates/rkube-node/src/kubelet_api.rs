//! The kubelet API on the agent (`pkg/kubelet/server/server.go`): HTTPS on the port the Node
//! advertises in `daemonEndpoints`, clients authenticated as the kubelet does it (a client
//! certificate signed by the `--client-ca-file` bundle, else a bearer token checked with a
//! TokenReview; nothing else: 401 `Unauthorized`) and authorized with a SubjectAccessReview
//! on `nodes/<subresource>` (`pkg/kubelet/server/auth.go`: the verb from the HTTP method,
//! the subresource from the path, `proxy` by default; a denial is 403
//! `Forbidden (user=..., verb=..., resource=nodes, subresource=...)`).
//!
//! Served: `/healthz`, `/pods`, `/containerLogs/{ns}/{pod}/{container}` (the CRI log reader
//! of `kuberuntime/logs/logs.go` over the agent's CRI-format log files), `/exec`, `/attach`,
//! `/portForward` ([`crate::streaming`]), `/stats/summary` and `/metrics/resource`
//! ([`crate::stats`]).

use std::collections::HashMap;
use std::io::{BufRead, Read, Seek};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{combinators::BoxBody, BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use k8s_openapi::api::core::v1::Pod;
use kube::Client;
use rkube_client::Informer;
use serde_json::{json, Value};

pub(crate) type Body = BoxBody<Bytes, std::io::Error>;

/// The serving certificate and the client CA bundle.
#[derive(Debug, Clone)]
pub struct Tls {
    pub cert_pem: String,
    pub key_pem: String,
    /// Client certificates signed by these are trusted (the kubelet's `--client-ca-file`);
    /// None: only bearer tokens authenticate.
    pub client_ca_pem: Option<String>,
}

/// What the handlers read.
pub(crate) struct Api {
    pub client: Client,
    pub node: String,
    pub root_dir: PathBuf,
    pub pods: Arc<Informer<Pod>>,
    pub running: Arc<crate::streaming::Running>,
    /// `rkube __exec`'s binary.
    pub helper: PathBuf,
    pub cgroups: crate::runtime::Cgroups,
    stats: crate::stats::Stats,
    /// Review answers, as the kubelet's webhook caches (authorized 5 min, denied 30 s;
    /// tokens 2 min).
    decisions: Mutex<HashMap<String, (bool, Instant)>>,
    tokens: Mutex<HashMap<String, (Option<User>, Instant)>>,
}

impl Api {
    pub(crate) fn new(client: Client, node: String, shared: &crate::agent::Shared, pods: Arc<Informer<Pod>>) -> Api {
        Api {
            client,
            node,
            root_dir: shared.config.root_dir.clone(),
            pods,
            running: shared.running.clone(),
            helper: shared.config.rkube_binary.clone(),
            cgroups: shared.cgroups.clone(),
            stats: Default::default(),
            decisions: Default::default(),
            tokens: Default::default(),
        }
    }
}

#[derive(Debug, Clone)]
struct User {
    name: String,
    uid: String,
    groups: Vec<String>,
    extra: Value,
}

/// Binds the kubelet API's listener (port 0 picks a free port).
pub async fn bind(address: IpAddr, port: u16) -> std::io::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(SocketAddr::new(address, port)).await
}

/// The TLS server configuration: certificates from `certs` (fixed, or renewed from the
/// cluster), client certificates verified against the client CA when there is one.
fn server_config(tls: &Tls, certs: Arc<crate::certificates::Current>) -> Result<rustls::ServerConfig, String> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| e.to_string())?;
    let mut cfg = match &tls.client_ca_pem {
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in rkube_pki::parse_cert_chain(ca).map_err(|e| e.to_string())? {
                roots.add(c).map_err(|e| e.to_string())?;
            }
            // Go's VerifyClientCertIfGiven: no certificate is fine (a token may follow), a
            // certificate that does not verify fails the handshake.
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .allow_unauthenticated()
                .build()
                .map_err(|e| e.to_string())?;
            builder.with_client_cert_verifier(verifier).with_cert_resolver(certs)
        }
        None => builder.with_no_client_auth().with_cert_resolver(certs),
    };
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(cfg)
}

/// Serves the kubelet API on `listener` until `shutdown`.
pub(crate) async fn serve(
    listener: tokio::net::TcpListener,
    tls: Tls,
    certs: Arc<crate::certificates::Current>,
    api: Arc<Api>,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), String> {
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server_config(&tls, certs)?));
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (tcp, _) = tokio::select! {
            _ = &mut shutdown => return Ok(()),
            a = listener.accept() => match a {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "kubelet API: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let api = api.clone();
        tokio::spawn(async move {
            let Ok(Ok(stream)) = tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await else {
                return;
            };
            let cert_user = stream
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .and_then(|c| rkube_pki::identity_from_der(c))
                .map(|(name, groups)| User { name, uid: String::new(), groups, extra: json!({}) });
            let service = hyper::service::service_fn(move |req| {
                let api = api.clone();
                let cert_user = cert_user.clone();
                async move { Ok::<_, std::convert::Infallible>(handle(&api, cert_user, req).await) }
            });
            // Headers within 32 s, as the API server asks of its clients.
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(Duration::from_secs(32))
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .with_upgrades()
                .await;
        });
    }
}

pub(crate) fn text(code: StatusCode, body: impl Into<Bytes>) -> Response<Body> {
    Response::builder()
        .status(code)
        .header(http::header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .header("X-Content-Type-Options", "nosniff")
        .body(Full::new(body.into()).map_err(|never| match never {}).boxed())
        .unwrap_or_default()
}

async fn handle(api: &Api, cert_user: Option<User>, req: Request<Incoming>) -> Response<Body> {
    let user = match cert_user {
        Some(u) => u,
        None => match bearer(&req) {
            Some(token) => match review_token(api, &token).await {
                Ok(Some(u)) => u,
                Ok(None) => return text(StatusCode::UNAUTHORIZED, "Unauthorized"),
                Err(e) => {
                    tracing::warn!(error = %e, "kubelet API: TokenReview failed");
                    return text(StatusCode::UNAUTHORIZED, "Unauthorized");
                }
            },
            None => return text(StatusCode::UNAUTHORIZED, "Unauthorized"),
        },
    };
    let path = req.uri().path().to_string();
    let verb = match *req.method() {
        http::Method::POST => "create",
        http::Method::GET | http::Method::HEAD => "get",
        http::Method::PUT => "update",
        http::Method::PATCH => "patch",
        http::Method::DELETE => "delete",
        _ => "",
    };
    let subresource = subresource_of(&path);
    match access_review(api, &user, verb, subresource).await {
        Ok(true) => {}
        Ok(false) => {
            return text(
                StatusCode::FORBIDDEN,
                format!("Forbidden (user={}, verb={verb}, resource=nodes, subresource={subresource})", user.name),
            )
        }
        Err(e) => {
            tracing::warn!(error = %e, "kubelet API: SubjectAccessReview failed");
            return text(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!(
                    "Authorization error (user={}, verb={verb}, resource=nodes, subresource={subresource})",
                    user.name
                ),
            );
        }
    }
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match (req.method(), segments.as_slice()) {
        (&http::Method::GET, ["healthz"]) => text(StatusCode::OK, "ok"),
        (&http::Method::GET, ["pods"]) => pod_list(api),
        (&http::Method::GET, ["stats", "summary"]) => {
            let snap = crate::stats::Stats::snapshot(&api.cgroups, &api.pods.store().state());
            json_response(&api.stats.summary(&api.node, &snap))
        }
        (&http::Method::GET, ["metrics", "resource"]) => {
            let snap = crate::stats::Stats::snapshot(&api.cgroups, &api.pods.store().state());
            let mut resp = text(StatusCode::OK, crate::stats::resource_metrics(&snap));
            resp.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            resp
        }
        (&http::Method::GET, ["containerLogs", ns, pod, container]) => {
            container_logs(api, ns, pod, container, req.uri().query()).await
        }
        (_, ["containerLogs", ..]) if req.method() != http::Method::GET => {
            text(StatusCode::METHOD_NOT_ALLOWED, "405: Method Not Allowed")
        }
        (_, ["containerLogs", ns, pod, ..]) => container_logs(api, ns, pod, "", req.uri().query()).await,
        (&http::Method::GET | &http::Method::POST, ["exec", ns, pod, container] | ["exec", ns, pod, _, container]) => {
            let (ns, pod, container) = (ns.to_string(), pod.to_string(), container.to_string());
            crate::streaming::exec(api, &ns, &pod, &container, req).await
        }
        (
            &http::Method::GET | &http::Method::POST,
            ["attach", ns, pod, container] | ["attach", ns, pod, _, container],
        ) => {
            let (ns, pod, container) = (ns.to_string(), pod.to_string(), container.to_string());
            crate::streaming::attach(api, &ns, &pod, &container, req).await
        }
        (&http::Method::GET | &http::Method::POST, ["portForward", ns, pod] | ["portForward", ns, pod, _]) => {
            let (ns, pod) = (ns.to_string(), pod.to_string());
            crate::streaming::port_forward(api, &ns, &pod, req).await
        }
        _ => text(StatusCode::NOT_FOUND, "404 page not found"),
    }
}

/// The subresource `auth.go` checks a path against: `stats`, `metrics`, `log` (node logs
/// under `/logs/`) and `spec`; `proxy` for everything else (exec, containerLogs, pods, ...).
pub fn subresource_of(path: &str) -> &'static str {
    let under = |p: &str| path == p || path.starts_with(&format!("{p}/"));
    if under("/stats") {
        "stats"
    } else if under("/metrics") {
        "metrics"
    } else if under("/logs") {
        "log"
    } else if under("/spec") {
        "spec"
    } else {
        "proxy"
    }
}

fn bearer(req: &Request<Incoming>) -> Option<String> {
    let v = req.headers().get(http::header::AUTHORIZATION)?.to_str().ok()?;
    let mut parts = v.trim().splitn(3, ' ');
    let scheme = parts.next()?;
    let token = parts.next()?;
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then(|| token.to_string())
}

async fn post_review(api: &Api, path: &str, body: Value) -> Result<Value, String> {
    let req = Request::builder()
        .method("POST")
        .uri(path)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(serde_json::to_vec(&body).map_err(|e| e.to_string())?)
        .map_err(|e| e.to_string())?;
    api.client.request::<Value>(req).await.map_err(|e| e.to_string())
}

async fn review_token(api: &Api, token: &str) -> Result<Option<User>, String> {
    if let Some((u, at)) = api.tokens.lock().ok().and_then(|m| m.get(token).cloned()) {
        if at.elapsed() < Duration::from_secs(120) {
            return Ok(u);
        }
    }
    let review = json!({
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "TokenReview",
        "spec": {"token": token},
    });
    let answer = post_review(api, "/apis/authentication.k8s.io/v1/tokenreviews", review).await?;
    let status = &answer["status"];
    let user = (status["authenticated"] == json!(true)).then(|| User {
        name: status["user"]["username"].as_str().unwrap_or("").to_string(),
        uid: status["user"]["uid"].as_str().unwrap_or("").to_string(),
        groups: status["user"]["groups"]
            .as_array()
            .map(|g| g.iter().filter_map(|x| x.as_str().map(str::to_string)).collect())
            .unwrap_or_default(),
        extra: status["user"].get("extra").cloned().unwrap_or(json!({})),
    });
    if let Ok(mut m) = api.tokens.lock() {
        if m.len() > 4096 {
            m.clear();
        }
        m.insert(token.to_string(), (user.clone(), Instant::now()));
    }
    Ok(user)
}

async fn access_review(api: &Api, user: &User, verb: &str, subresource: &str) -> Result<bool, String> {
    let key = format!("{}\0{}\0{}\0{verb}\0{subresource}", user.name, user.uid, user.groups.join(","));
    if let Some((allowed, at)) = api.decisions.lock().ok().and_then(|m| m.get(&key).cloned()) {
        let ttl = if allowed { Duration::from_secs(300) } else { Duration::from_secs(30) };
        if at.elapsed() < ttl {
            return Ok(allowed);
        }
    }
    let mut spec = json!({
        "user": user.name,
        "groups": user.groups,
        "resourceAttributes": {
            "verb": verb,
            "version": "v1",
            "resource": "nodes",
            "subresource": subresource,
            "name": api.node,
        },
    });
    if !user.uid.is_empty() {
        spec["uid"] = json!(user.uid);
    }
    if user.extra.as_object().is_some_and(|m| !m.is_empty()) {
        spec["extra"] = user.extra.clone();
    }
    let review = json!({
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SubjectAccessReview",
        "spec": spec,
    });
    let answer = post_review(api, "/apis/authorization.k8s.io/v1/subjectaccessreviews", review).await?;
    let allowed = answer["status"]["allowed"] == json!(true);
    if let Ok(mut m) = api.decisions.lock() {
        if m.len() > 4096 {
            m.clear();
        }
        m.insert(key, (allowed, Instant::now()));
    }
    Ok(allowed)
}

/// `PodLogOptions` as the kubelet reads them from the query (v1 parameter codec).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct LogOptions {
    pub follow: bool,
    pub previous: bool,
    pub timestamps: bool,
    pub since_seconds: Option<i64>,
    pub since_time: Option<chrono::DateTime<chrono::Utc>>,
    pub tail_lines: Option<i64>,
    pub limit_bytes: Option<i64>,
}

/// A boolean query parameter as the parameter codec converts it
/// (`runtime.Convert_Slice_string_To_bool`): "0" and "false" (any case) are false, anything
/// else true.
pub fn parse_bool(s: &str) -> bool {
    !(s == "0" || s.eq_ignore_ascii_case("false"))
}

impl LogOptions {
    /// Decodes the query; Err is the decoding failure's text. The legacy `tail=N` is
    /// tailLines (`tail=all`: unset).
    pub fn from_query(pairs: &[(String, String)]) -> Result<LogOptions, String> {
        let mut o = LogOptions::default();
        let mut tail_override: Option<Option<String>> = None;
        for (k, v) in pairs {
            if k == "tail" && !v.is_empty() {
                tail_override = Some((v != "all").then(|| v.clone()));
            }
        }
        let int = |v: &str| v.parse::<i64>().map_err(|_| format!("strconv.ParseInt: parsing {v:?}: invalid syntax"));
        for (k, v) in pairs {
            match k.as_str() {
                "follow" => o.follow = parse_bool(v),
                "previous" => o.previous = parse_bool(v),
                "timestamps" => o.timestamps = parse_bool(v),
                "sinceSeconds" if !v.is_empty() => o.since_seconds = Some(int(v)?),
                "tailLines" if tail_override.is_none() && !v.is_empty() => o.tail_lines = Some(int(v)?),
                "limitBytes" if !v.is_empty() => o.limit_bytes = Some(int(v)?),
                "sinceTime" if !v.is_empty() => {
                    o.since_time = Some(
                        chrono::DateTime::parse_from_rfc3339(v)
                            .map_err(|_| format!("parsing time {v:?} as \"2006-01-02T15:04:05Z07:00\": cannot parse"))?
                            .with_timezone(&chrono::Utc),
                    )
                }
                _ => {}
            }
        }
        if let Some(Some(t)) = tail_override {
            o.tail_lines = Some(int(&t)?);
        }
        Ok(o)
    }

    /// `ValidatePodLogOptions`: each failure as (field, kube's error text).
    pub fn validate(&self) -> Vec<(String, String)> {
        let mut errs = Vec::new();
        if let Some(t) = self.tail_lines.filter(|t| *t < 0) {
            errs.push(("tailLines".into(), format!("Invalid value: {t}: must be greater than or equal to 0")));
        }
        if let Some(b) = self.limit_bytes.filter(|b| *b < 1) {
            errs.push(("limitBytes".into(), format!("Invalid value: {b}: must be greater than 0")));
        }
        match (self.since_seconds, self.since_time) {
            (Some(_), Some(_)) => errs.push((
                String::new(),
                "Forbidden: at most one of `sinceTime` or `sinceSeconds` may be specified".into(),
            )),
            (Some(s), None) if s < 1 => {
                errs.push(("sinceSeconds".into(), format!("Invalid value: {s}: must be greater than 0")))
            }
            _ => {}
        }
        errs
    }
}

async fn container_logs(api: &Api, ns: &str, pod: &str, container: &str, query: Option<&str>) -> Response<Body> {
    if pod.is_empty() {
        return text(StatusCode::BAD_REQUEST, r#"{"message": "Missing podID."}"#);
    }
    if container.is_empty() {
        return text(StatusCode::BAD_REQUEST, r#"{"message": "Missing container name."}"#);
    }
    if ns.is_empty() {
        return text(StatusCode::BAD_REQUEST, r#"{"message": "Missing podNamespace."}"#);
    }
    let pairs: Vec<(String, String)> = form_urlencoded::parse(query.unwrap_or("").as_bytes()).into_owned().collect();
    let opts = match LogOptions::from_query(&pairs) {
        Ok(o) => o,
        Err(_) => return text(StatusCode::BAD_REQUEST, r#"{"message": "Unable to decode query."}"#),
    };
    if !opts.validate().is_empty() {
        return text(StatusCode::UNPROCESSABLE_ENTITY, r#"{"message": "Invalid request."}"#);
    }
    let Some(p) = find_pod(api, ns, pod) else {
        return text(StatusCode::NOT_FOUND, format!("pod {pod:?} does not exist"));
    };
    let spec = p.spec.clone().unwrap_or_default();
    let in_spec = spec.containers.iter().any(|c| c.name == container)
        || spec.init_containers.iter().flatten().any(|c| c.name == container)
        || spec.ephemeral_containers.iter().flatten().any(|c| c.name == container);
    if !in_spec {
        return text(StatusCode::NOT_FOUND, format!("container {container:?} not found in pod {pod:?}"));
    }
    if let Err(e) = validate_container_log_status(&p, container, opts.previous) {
        return text(StatusCode::BAD_REQUEST, e);
    }
    let uid = p.metadata.uid.clone().unwrap_or_default();
    let dir = api.root_dir.join("logs").join(format!("{ns}_{pod}_{uid}")).join(container);
    let files = log_numbers(&dir);
    let number = if opts.previous {
        // The last terminated run: below the current container's file when one has started,
        // else (back-off) the newest file.
        let skip = if current_started(&p, container) { 2 } else { 1 };
        files.len().checked_sub(skip).map(|i| files[i])
    } else {
        files.last().copied()
    };
    let Some(number) = number else {
        return text(
            StatusCode::BAD_REQUEST,
            if opts.previous {
                format!("previous terminated container {container:?} in pod {pod:?} not found")
            } else {
                format!("container {container:?} in pod {pod:?} is waiting to start - no logs yet")
            },
        );
    };
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(16);
    let pods = api.pods.clone();
    let (ns, pod, container) = (ns.to_string(), pod.to_string(), container.to_string());
    let follow = opts.follow && !opts.previous;
    tokio::task::spawn_blocking(move || {
        let running = || container_running(&pods, &ns, &pod, &uid, &container);
        let newer = |dir: &Path| log_numbers(dir).last().is_some_and(|n| *n > number);
        let mut sink = |b: &[u8]| tx.blocking_send(Bytes::copy_from_slice(b)).is_ok();
        let closed = || tx.is_closed();
        let _ = read_logs(&dir, number, &opts, follow, &mut sink, &closed, &|| running() && !newer(&dir));
    });
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|b| (Ok::<_, std::io::Error>(Frame::data(b)), rx))
    });
    Response::builder()
        .status(StatusCode::OK)
        .header(http::header::CONTENT_TYPE, "text/plain")
        .body(StreamBody::new(stream).boxed())
        .unwrap_or_default()
}

/// `/pods`: the pods this node runs, as the kubelet's pod manager lists them (a v1 PodList
/// whose items carry no kind of their own).
fn pod_list(api: &Api) -> Response<Body> {
    let mut pods: Vec<Value> = api
        .pods
        .store()
        .state()
        .into_iter()
        .filter_map(|p| serde_json::to_value(&*p).ok())
        .map(|mut v| {
            if let Some(m) = v.as_object_mut() {
                m.remove("kind");
                m.remove("apiVersion");
            }
            v
        })
        .collect();
    let key = |v: &Value| {
        let s = |p: &str| v.pointer(p).and_then(Value::as_str).unwrap_or("").to_string();
        (s("/metadata/namespace"), s("/metadata/name"))
    };
    pods.sort_by_key(key);
    json_response(&json!({"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": pods}))
}

fn json_response(v: &Value) -> Response<Body> {
    let mut resp = Response::new(Full::new(Bytes::from(v.to_string())).map_err(|never| match never {}).boxed());
    resp.headers_mut().insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/json"));
    resp
}

pub(crate) fn find_pod(api: &Api, ns: &str, name: &str) -> Option<Arc<Pod>> {
    api.pods
        .store()
        .state()
        .into_iter()
        .find(|p| p.metadata.namespace.as_deref() == Some(ns) && p.metadata.name.as_deref() == Some(name))
}

fn container_running(pods: &Informer<Pod>, ns: &str, name: &str, uid: &str, container: &str) -> bool {
    let Some(p) = pods.store().state().into_iter().find(|p| {
        p.metadata.namespace.as_deref() == Some(ns)
            && p.metadata.name.as_deref() == Some(name)
            && p.metadata.uid.as_deref() == Some(uid)
    }) else {
        return false;
    };
    let status = p.status.clone().unwrap_or_default();
    let all = status
        .container_statuses
        .iter()
        .flatten()
        .chain(status.init_container_statuses.iter().flatten())
        .chain(status.ephemeral_container_statuses.iter().flatten());
    for s in all {
        if s.name == container {
            // Waiting counts as running: the status may lag the start of the process.
            return s.state.as_ref().is_none_or(|st| st.terminated.is_none());
        }
    }
    true
}

/// The kubelet's `validateContainerLogStatus`: which container's logs, or why none.
pub fn validate_container_log_status(pod: &Pod, container: &str, previous: bool) -> Result<(), String> {
    let name = pod.metadata.name.as_deref().unwrap_or("");
    let Some(s) = container_status(pod, container) else {
        return Err(format!("container {container:?} in pod {name:?} is not available"));
    };
    let last = s.last_state.as_ref().and_then(|l| l.terminated.as_ref());
    let last_id = last.and_then(|t| t.container_id.as_deref()).filter(|i| !i.is_empty());
    let state = s.state.clone().unwrap_or_default();
    if previous {
        return last_id
            .map(|_| ())
            .ok_or_else(|| format!("previous terminated container {container:?} in pod {name:?} not found"));
    }
    if state.running.is_some() {
        return Ok(());
    }
    if let Some(t) = &state.terminated {
        if t.container_id.as_deref().is_some_and(|i| !i.is_empty()) || last_id.is_some() {
            return Ok(());
        }
        return Err(format!("container {container:?} in pod {name:?} is terminated"));
    }
    if last.is_some() {
        return last_id.map(|_| ()).ok_or_else(|| format!("container {container:?} in pod {name:?} is terminated"));
    }
    if let Some(w) = &state.waiting {
        let reason = w.reason.clone().unwrap_or_default();
        return Err(match reason.as_str() {
            "ErrImagePull" => {
                format!("container {container:?} in pod {name:?} is waiting to start: image can't be pulled")
            }
            "ImagePullBackOff" => {
                format!("container {container:?} in pod {name:?} is waiting to start: trying and failing to pull image")
            }
            _ => format!("container {container:?} in pod {name:?} is waiting to start: {reason}"),
        });
    }
    Err(format!("container {container:?} in pod {name:?} is waiting to start - no logs yet"))
}

/// A container's status, whichever list (regular, init, ephemeral) it is in.
fn container_status(pod: &Pod, container: &str) -> Option<k8s_openapi::api::core::v1::ContainerStatus> {
    let status = pod.status.as_ref()?;
    status
        .container_statuses
        .iter()
        .flatten()
        .chain(status.init_container_statuses.iter().flatten())
        .chain(status.ephemeral_container_statuses.iter().flatten())
        .find(|s| s.name == container)
        .cloned()
}

/// Whether the container's current run has started (running, or terminated with an id).
fn current_started(pod: &Pod, container: &str) -> bool {
    let found = container_status(pod, container).and_then(|s| s.state).unwrap_or_default();
    found.running.is_some() || found.terminated.is_some_and(|t| t.container_id.is_some_and(|i| !i.is_empty()))
}

/// The restart numbers of a container's log files (`N.log`), ascending.
fn log_numbers(dir: &Path) -> Vec<u32> {
    let mut v: Vec<u32> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.strip_suffix(".log")?.parse().ok())
        .collect();
    v.sort_unstable();
    v
}

/// One parsed CRI entry.
#[derive(Debug, PartialEq)]
pub struct Entry<'a> {
    pub timestamp: chrono::DateTime<chrono::Utc>,
    pub stream: &'a str,
    pub partial: bool,
    pub content: &'a [u8],
}

/// `parseCRILog`: `<RFC3339Nano> <stream> <P|F> <content>` (the line without its newline).
pub fn parse_cri(line: &[u8]) -> Option<Entry<'_>> {
    let mut parts = line.splitn(4, |b| *b == b' ');
    let ts = std::str::from_utf8(parts.next()?).ok()?;
    let timestamp = chrono::DateTime::parse_from_rfc3339(ts).ok()?.with_timezone(&chrono::Utc);
    let stream = std::str::from_utf8(parts.next()?).ok()?;
    if stream != "stdout" && stream != "stderr" {
        return None;
    }
    let tag = parts.next()?;
    let partial = tag.split(|b| *b == b':').next() == Some(b"P");
    let content = parts.next().unwrap_or(b"");
    Some(Entry { timestamp, stream, partial, content })
}

/// The start offset of the last `n` lines of `f` (`tail.FindTailLineStartIndex`).
fn tail_start(f: &mut std::fs::File, n: i64) -> std::io::Result<u64> {
    let size = f.metadata()?.len();
    if n <= 0 {
        return Ok(size);
    }
    let mut pos = size;
    let mut count = 0i64;
    let mut buf = vec![0u8; 64 * 1024];
    // The file's last byte is its last line's newline: it does not start a line.
    let mut skip_last = true;
    while pos > 0 {
        let len = buf.len().min(pos as usize);
        pos -= len as u64;
        f.seek(std::io::SeekFrom::Start(pos))?;
        f.read_exact(&mut buf[..len])?;
        for i in (0..len).rev() {
            if buf[i] == b'\n' {
                if skip_last && pos + i as u64 == size - 1 {
                    skip_last = false;
                    continue;
                }
                count += 1;
                if count == n {
                    return Ok(pos + i as u64 + 1);
                }
            }
        }
        skip_last = false;
    }
    Ok(0)
}

/// The kubelet's `ReadLogs` over file `<dir>/<number>.log`: the CRI prefix stripped, partial
/// entries joined, timestamps kept when asked, since/tail/limitBytes applied; in follow mode
/// it keeps reading new entries (and the file that replaces a rotated one) while `alive`.
/// `sink` answers false once the client has gone.
pub fn read_logs(
    dir: &Path,
    number: u32,
    opts: &LogOptions,
    follow: bool,
    sink: &mut dyn FnMut(&[u8]) -> bool,
    closed: &dyn Fn() -> bool,
    alive: &dyn Fn() -> bool,
) -> std::io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let path = dir.join(format!("{number}.log"));
    let mut file = std::fs::File::open(&path)?;
    let since = {
        let mut s = opts.since_seconds.map(|s| chrono::Utc::now() - chrono::Duration::seconds(s));
        if let Some(t) = opts.since_time {
            if s.is_none_or(|s| t > s) {
                s = Some(t);
            }
        }
        s
    };
    if let Some(n) = opts.tail_lines {
        let start = tail_start(&mut file, n)?;
        file.seek(std::io::SeekFrom::Start(start))?;
    }
    let mut remaining = opts.limit_bytes.unwrap_or(i64::MAX);
    let mut left = if follow { None } else { opts.tail_lines };
    let mut inode = file.metadata()?.ino();
    let mut reader = std::io::BufReader::new(file);
    let mut line = Vec::new();
    let mut new_line = true;
    let mut idle_since = Instant::now();
    // Follow wakes on writes to the log directory (as the kubelet's fsnotify watch), and
    // every 250 ms anyway; where inotify is not there, it polls at that pace.
    let changes = if follow { LogChanges::watch(&path) } else { None };
    loop {
        if left == Some(0) {
            return Ok(());
        }
        let n = reader.read_until(b'\n', &mut line)?;
        if n == 0 || !line.ends_with(b"\n") {
            // At the end (or inside an entry being written).
            if !follow {
                return Ok(());
            }
            if closed() {
                return Ok(());
            }
            // A rotated file: finish it, then go on in the new one.
            if let Ok(m) = std::fs::metadata(&path) {
                if m.ino() != inode && line.is_empty() {
                    if let Ok(f) = std::fs::File::open(&path) {
                        inode = m.ino();
                        reader = std::io::BufReader::new(f);
                        continue;
                    }
                }
            }
            if idle_since.elapsed() >= Duration::from_millis(500) {
                if !alive() {
                    return Ok(());
                }
                idle_since = Instant::now();
            }
            match &changes {
                Some(c) => c.wait(Duration::from_millis(250)),
                None => std::thread::sleep(Duration::from_millis(50)),
            }
            continue;
        }
        idle_since = Instant::now();
        let Some(entry) = parse_cri(&line[..line.len() - 1]) else {
            line.clear();
            continue;
        };
        let add_prefix = new_line;
        new_line = !entry.partial;
        if since.is_some_and(|s| entry.timestamp < s) {
            line.clear();
            continue;
        }
        let mut out = Vec::with_capacity(entry.content.len() + 32);
        if opts.timestamps && add_prefix {
            out.extend_from_slice(entry.timestamp.format("%Y-%m-%dT%H:%M:%S%.9fZ").to_string().as_bytes());
            out.push(b' ');
        }
        out.extend_from_slice(entry.content);
        if !entry.partial {
            out.push(b'\n');
        }
        line.clear();
        if out.len() as i64 > remaining {
            out.truncate(remaining as usize);
        }
        remaining -= out.len() as i64;
        if !sink(&out) {
            return Ok(());
        }
        if remaining <= 0 {
            return Ok(());
        }
        if let Some(l) = left.as_mut() {
            *l -= 1;
        }
    }
}

/// Writes to (and rotations in) a container's log directory, seen through inotify.
struct LogChanges(nix::sys::inotify::Inotify);

impl LogChanges {
    fn watch(log: &std::path::Path) -> Option<LogChanges> {
        use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
        let dir = log.parent()?;
        let fd = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC).ok()?;
        let mask = AddWatchFlags::IN_MODIFY | AddWatchFlags::IN_CREATE | AddWatchFlags::IN_MOVED_TO;
        fd.add_watch(dir, mask).ok()?;
        Some(LogChanges(fd))
    }

    /// Returns once something changed, or after `timeout`.
    fn wait(&self, timeout: Duration) {
        use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
        use std::os::fd::AsFd;
        let ms = u16::try_from(timeout.as_millis()).unwrap_or(u16::MAX);
        let mut fds = [PollFd::new(self.0.as_fd(), PollFlags::POLLIN)];
        if poll(&mut fds, PollTimeout::from(ms)).unwrap_or(0) > 0 {
            // Drained: the events only say "look again".
            while matches!(self.0.read_events(), Ok(e) if !e.is_empty()) {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(dir: &Path, opts: &LogOptions) -> String {
        let mut out = Vec::new();
        read_logs(
            dir,
            0,
            opts,
            false,
            &mut |b| {
                out.extend_from_slice(b);
                true
            },
            &|| false,
            &|| false,
        )
        .unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn cri_lines_are_joined_stripped_and_limited_as_the_kubelet_reads_them() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("0.log"),
            "2026-01-01T00:00:01.5Z stdout F one\n\
             2026-01-01T00:00:02Z stderr P tw\n\
             2026-01-01T00:00:02.1Z stderr F o\n\
             2026-01-01T00:00:03.123456789Z stdout F three\n",
        )
        .unwrap();
        assert_eq!(collect(dir.path(), &LogOptions::default()), "one\ntwo\nthree\n");
        let ts = LogOptions { timestamps: true, ..Default::default() };
        assert_eq!(
            collect(dir.path(), &ts),
            "2026-01-01T00:00:01.500000000Z one\n2026-01-01T00:00:02.000000000Z two\n2026-01-01T00:00:03.123456789Z three\n"
        );
        let tail = LogOptions { tail_lines: Some(1), ..Default::default() };
        assert_eq!(collect(dir.path(), &tail), "three\n");
        let tail0 = LogOptions { tail_lines: Some(0), ..Default::default() };
        assert_eq!(collect(dir.path(), &tail0), "");
        let limit = LogOptions { limit_bytes: Some(6), ..Default::default() };
        assert_eq!(collect(dir.path(), &limit), "one\ntw");
        let since = LogOptions {
            since_time: Some(chrono::DateTime::parse_from_rfc3339("2026-01-01T00:00:03Z").unwrap().into()),
            ..Default::default()
        };
        assert_eq!(collect(dir.path(), &since), "three\n");
    }

    #[test]
    fn queries_decode_and_validate_as_pod_log_options() {
        let q = |s: &str| -> Vec<(String, String)> { form_urlencoded::parse(s.as_bytes()).into_owned().collect() };
        let o = LogOptions::from_query(&q("follow=true&timestamps=1&tailLines=3&limitBytes=10")).unwrap();
        assert!(o.follow && o.timestamps && !o.previous);
        assert_eq!((o.tail_lines, o.limit_bytes), (Some(3), Some(10)));
        assert_eq!(LogOptions::from_query(&q("tail=all&tailLines=3")).unwrap().tail_lines, None);
        assert_eq!(LogOptions::from_query(&q("tail=5")).unwrap().tail_lines, Some(5));
        assert!(LogOptions::from_query(&q("follow=yes")).unwrap().follow, "the codec's lenient booleans");
        assert!(!LogOptions::from_query(&q("follow=FALSE")).unwrap().follow);
        assert!(LogOptions::from_query(&q("tailLines=x")).is_err());
        let bad = LogOptions::from_query(&q("tailLines=-1&limitBytes=0")).unwrap().validate();
        assert_eq!(bad[0], ("tailLines".into(), "Invalid value: -1: must be greater than or equal to 0".into()));
        assert_eq!(bad[1], ("limitBytes".into(), "Invalid value: 0: must be greater than 0".into()));
        assert_eq!(subresource_of("/containerLogs/a/b/c"), "proxy");
        assert_eq!(subresource_of("/stats/summary"), "stats");
        assert_eq!(subresource_of("/logs/"), "log");
        assert_eq!(subresource_of("/healthz"), "proxy");
    }
}
