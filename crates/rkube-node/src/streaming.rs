//! The kubelet's streaming endpoints: `/exec/{ns}/{pod}[/{uid}]/{container}` over SPDY/3.1
//! (remotecommand `v4.channel.k8s.io` down to `channel.k8s.io`), as
//! `pkg/kubelet/cri/streaming/remotecommand` serves them: the client opens one stream per
//! standard stream plus `error` (and `resize` with a TTY), the command runs inside the
//! container (`rkube __exec`, the same init as exec probes), and the error stream carries the
//! final Status (the exit code as a `NonZeroExitCode` cause).
//!
//! Deliberate difference: when the client goes away before the command ends, its process
//! group is killed (a runtime would leave a non-TTY command running in the container).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use rkube_stream::channel::{self as ch, ChannelWriter};
use rkube_stream::remotecommand::{self as rc, Options};
use rkube_stream::spdy::{Session, Stream, StreamWriter};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::protocol::Role;

use crate::kubelet_api::{find_pod, text, Api, Body};
use crate::runtime::Attachable;
use crate::sandbox::ExecSpec;

/// How long a client has to open its streams (`DefaultStreamCreationTimeout`).
const STREAM_CREATION_TIMEOUT: Duration = Duration::from_secs(30);
/// How long output is still read once the command ended (descendants may hold it open).
const OUTPUT_DRAIN: Duration = Duration::from_secs(2);
/// How long a TTY exec waits for the client's terminal size before starting without it.
const FIRST_SIZE_WAIT: Duration = Duration::from_millis(500);

/// Where each running container can be entered: its main process's exec spec and the
/// directory exec specs are written to. Pod workers keep it current.
#[derive(Default)]
pub struct Running {
    map: Mutex<HashMap<(String, String), Target>>,
}

#[derive(Clone)]
pub struct Target {
    pub spec: ExecSpec,
    pub dir: PathBuf,
    pub attach: Arc<Attachable>,
}

impl Running {
    pub fn insert(&self, uid: &str, container: &str, spec: ExecSpec, dir: PathBuf, attach: Arc<Attachable>) {
        self.lock().insert((uid.to_string(), container.to_string()), Target { spec, dir, attach });
    }

    pub fn remove(&self, uid: &str, container: &str) {
        self.lock().remove(&(uid.to_string(), container.to_string()));
    }

    pub fn remove_pod(&self, uid: &str) {
        self.lock().retain(|(u, _), _| u != uid);
    }

    /// Any running container of the pod (they share its network namespace).
    pub fn any(&self, uid: &str) -> Option<Target> {
        self.lock().iter().find(|((u, _), _)| u == uid).map(|(_, t)| t.clone())
    }

    pub fn get(&self, uid: &str, container: &str) -> Option<Target> {
        self.lock().get(&(uid.to_string(), container.to_string())).cloned()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), Target>> {
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn header_values<'a>(req: &'a Request<Incoming>, name: &str) -> Vec<&'a str> {
    req.headers().get_all(name).iter().filter_map(|v| v.to_str().ok()).collect()
}

fn has_token(req: &Request<Incoming>, name: &str, token: &str) -> bool {
    header_values(req, name).iter().flat_map(|v| v.split(',')).any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// The SPDY upgrade handshake (`httpstream.Handshake` and the SPDY responder): the chosen
/// protocol, or the refusal to send.
fn spdy_handshake(req: &Request<Incoming>, supported: &[&'static str]) -> Result<&'static str, Box<Response<Body>>> {
    if !has_token(req, "connection", "upgrade") || !has_token(req, "upgrade", "spdy/3.1") {
        return Err(Box::new(text(StatusCode::BAD_REQUEST, "unable to upgrade: missing upgrade headers in request")));
    }
    let offered = rc::offers(header_values(req, rc::PROTOCOL_HEADER));
    if offered.is_empty() {
        return Err(Box::new(text(
            StatusCode::BAD_REQUEST,
            format!("unable to upgrade: {} is required", rc::PROTOCOL_HEADER),
        )));
    }
    match rc::negotiate(&offered, supported) {
        Some(p) => Ok(p),
        None => {
            let mut resp = text(
                StatusCode::FORBIDDEN,
                format!(
                    "unable to upgrade: unable to negotiate protocol: client supports [{}], server accepts [{}]",
                    offered.join(" "),
                    supported.join(" ")
                ),
            );
            for p in supported {
                if let Ok(v) = http::HeaderValue::from_str(p) {
                    resp.headers_mut().append(rc::ACCEPTED_HEADER, v);
                }
            }
            Err(Box::new(resp))
        }
    }
}

fn switching(protocol: &str) -> Response<Body> {
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(http::header::CONNECTION, "Upgrade")
        .header(http::header::UPGRADE, "SPDY/3.1")
        .header(rc::PROTOCOL_HEADER, protocol)
        .body(Empty::new().map_err(|never| match never {}).boxed())
        .unwrap_or_default()
}

/// The 101 that accepts a WebSocket (`key`: the accept value) with `protocol` (none if "").
fn websocket_switching(key: &str, protocol: &str) -> Response<Body> {
    let mut resp = Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(http::header::CONNECTION, "Upgrade")
        .header(http::header::UPGRADE, "websocket")
        .header("sec-websocket-accept", key);
    if !protocol.is_empty() {
        resp = resp.header("sec-websocket-protocol", protocol);
    }
    resp.body(Empty::new().map_err(|never| match never {}).boxed()).unwrap_or_default()
}

fn is_websocket(req: &Request<Incoming>) -> bool {
    has_token(req, "connection", "upgrade") && has_token(req, "upgrade", "websocket")
}

/// The WebSocket protocols the kubelet's exec and attach serve (`""`: the client named none).
const WEBSOCKET_PROTOCOLS: &[&str] = &[ch::V4_BINARY, ch::V4_BASE64, ch::BINARY, ch::BASE64, ""];

/// `/exec/...`: finds the container, upgrades (SPDY or WebSocket), and runs the command once
/// the client's streams are there.
pub(crate) async fn exec(api: &Api, ns: &str, pod: &str, container: &str, req: Request<Incoming>) -> Response<Body> {
    remotecommand(api, ns, pod, container, req, false).await
}

/// `/attach/...`: the same upgrade and streams as exec, joined to the container's main
/// process (its output from now on, its standard input and terminal when the spec has them).
pub(crate) async fn attach(api: &Api, ns: &str, pod: &str, container: &str, req: Request<Incoming>) -> Response<Body> {
    remotecommand(api, ns, pod, container, req, true).await
}

async fn remotecommand(
    api: &Api,
    ns: &str,
    pod: &str,
    container: &str,
    mut req: Request<Incoming>,
    attach: bool,
) -> Response<Body> {
    let opts = Options::from_query(req.uri().query().unwrap_or(""));
    if let Err(e) = opts.check() {
        return text(StatusCode::BAD_REQUEST, e);
    }
    let Some(p) = find_pod(api, ns, pod) else {
        return text(StatusCode::NOT_FOUND, "pod does not exist");
    };
    let uid = p.metadata.uid.clone().unwrap_or_default();
    let Some(target) = api.running.get(&uid, container) else {
        return text(StatusCode::INTERNAL_SERVER_ERROR, format!("container not found ({container:?})"));
    };
    let helper = api.helper.clone();
    if is_websocket(&req) {
        let offered = rc::offers(header_values(&req, "sec-websocket-protocol"));
        let Some(protocol) = ch::choose_protocol(&offered, WEBSOCKET_PROTOCOLS) else {
            return text(
                StatusCode::BAD_REQUEST,
                format!(
                    "requested protocol(s) are not supported: [{}]; supports [{}]",
                    offered.join(" "),
                    WEBSOCKET_PROTOCOLS.join(" ")
                ),
            );
        };
        let Some(key) = req.headers().get("sec-websocket-key").and_then(|v| v.to_str().ok()).map(ch::accept_key) else {
            return text(StatusCode::BAD_REQUEST, "missing Sec-WebSocket-Key");
        };
        let upgrade = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            let Ok(io) = upgrade.await else { return };
            let c = ch::channels(hyper_util::rt::TokioIo::new(io), Role::Server, protocol).await;
            let out = |channel: u8| Out::Ws(c.writer.clone(), channel);
            let io = Io {
                stdin: opts.stdin.then_some(c.stdin),
                resize: opts.tty.then_some(c.resize),
                stdout: opts.stdout.then(|| out(ch::STDOUT)),
                stderr: (opts.stderr && !opts.tty).then(|| out(ch::STDERR)),
                error: Some(out(ch::ERROR)),
                ended: Box::pin(async move {
                    let mut e = c.ended;
                    let _ = e.wait_for(|e| *e).await;
                }),
            };
            // The client learns the connection is up from an empty message on the lowest
            // channel it reads.
            let first = io.stdout.as_ref().or(io.stderr.as_ref()).or(io.error.as_ref()).cloned();
            if let Some(first) = first {
                first.send(Bytes::new()).await;
            }
            let protocol = ch::remotecommand_version(protocol);
            if attach {
                run_attach(io, protocol, &target.attach).await
            } else {
                run_exec(io, protocol, &opts, &target, &helper).await
            }
            c.writer.close().await;
        });
        return websocket_switching(&key, protocol);
    }
    let protocol = match spdy_handshake(&req, rc::SPDY_EXEC_PROTOCOLS) {
        Ok(p) => p,
        Err(resp) => return *resp,
    };
    let upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        let Ok(io) = upgrade.await else { return };
        let (session, mut incoming) = Session::start(hyper_util::rt::TokioIo::new(io), true);
        if let Some(mut streams) = collect_streams(&mut incoming, opts.expected_streams(protocol)).await {
            // Streams opened later (none are expected) are refused by dropping the receiver.
            drop(incoming);
            let mut take = |kind: &str, wanted: bool| streams.remove(kind).filter(|_| wanted);
            let stdin = take(rc::STREAM_STDIN, opts.stdin);
            let resize = take(rc::STREAM_RESIZE, opts.tty);
            let out = |s: Option<Stream>| s.map(|s| Out::Spdy(s.tx));
            let io = Io {
                stdout: out(take(rc::STREAM_STDOUT, opts.stdout)),
                stderr: out(take(rc::STREAM_STDERR, opts.stderr && !opts.tty)),
                error: out(take(rc::STREAM_ERROR, true)),
                stdin: stdin.map(|s| s.rx),
                resize: resize.map(|s| s.rx),
                ended: Box::pin({
                    let session = session.clone();
                    async move { session.ended().await }
                }),
            };
            if attach {
                run_attach(io, protocol, &target.attach).await
            } else {
                run_exec(io, protocol, &opts, &target, &helper).await
            }
        }
        session.close().await;
    });
    switching(protocol)
}

/// The client's streams by type, once `need` of them have arrived.
async fn collect_streams(
    incoming: &mut tokio::sync::mpsc::Receiver<Stream>,
    need: usize,
) -> Option<HashMap<&'static str, Stream>> {
    let mut streams = HashMap::new();
    let deadline = tokio::time::Instant::now() + STREAM_CREATION_TIMEOUT;
    while streams.len() < need {
        let s = match tokio::time::timeout_at(deadline, incoming.recv()).await {
            Ok(Some(s)) => s,
            Ok(None) => return None,
            Err(_) => {
                tracing::debug!("exec: timed out waiting for client to create streams");
                return None;
            }
        };
        if s.tx.reply().await.is_err() {
            return None;
        }
        let kind = s.header("streamtype").unwrap_or("").to_ascii_lowercase();
        let known = [rc::STREAM_ERROR, rc::STREAM_STDIN, rc::STREAM_STDOUT, rc::STREAM_STDERR, rc::STREAM_RESIZE];
        match known.iter().find(|k| **k == kind) {
            Some(k) => {
                streams.insert(*k, s);
            }
            None => tracing::debug!(kind, "exec: unexpected stream type"),
        }
    }
    Some(streams)
}

/// Where one of the command's outputs goes: a SPDY stream or a WebSocket channel.
#[derive(Clone)]
enum Out {
    Spdy(StreamWriter),
    Ws(ChannelWriter, u8),
}

impl Out {
    /// False once the client cannot be written to.
    async fn send(&self, data: Bytes) -> bool {
        match self {
            Out::Spdy(w) => w.send(data).await.is_ok(),
            Out::Ws(w, channel) => w.send(*channel, data).await.is_ok(),
        }
    }

    async fn finish(&self) {
        match self {
            Out::Spdy(w) => {
                let _ = w.finish().await;
            }
            Out::Ws(w, channel) => w.close_channel(*channel).await,
        }
    }
}

/// One exec's streams, whatever carries them.
struct Io {
    stdin: Option<tokio::sync::mpsc::Receiver<Bytes>>,
    resize: Option<tokio::sync::mpsc::Receiver<Bytes>>,
    stdout: Option<Out>,
    stderr: Option<Out>,
    error: Option<Out>,
    /// Resolves when the client went away.
    ended: std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>,
}

async fn run_exec(io: Io, protocol: &'static str, opts: &Options, target: &Target, helper: &std::path::Path) {
    let Io { stdin, mut resize, stdout, stderr, error, ended } = io;
    // The client sends its terminal's size first thing: the terminal starts with it, so the
    // command never sees 0x0.
    let mut first_size = None;
    let mut resize_buf = Vec::new();
    if let (true, Some(rx)) = (opts.tty, resize.as_mut()) {
        let deadline = tokio::time::Instant::now() + FIRST_SIZE_WAIT;
        while first_size.is_none() {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(d)) => {
                    resize_buf.extend_from_slice(&d);
                    first_size = rc::take_sizes(&mut resize_buf).last().map(|s| (s.width, s.height));
                }
                _ => break,
            }
        }
    }
    let mut spec = ExecSpec { argv: opts.command.clone(), ..target.spec.clone() };
    if opts.tty && !spec.env.iter().any(|(k, _)| k == "TERM") {
        // As containerd does for a TTY exec.
        spec.env.push(("TERM".into(), "xterm".into()));
    }
    let path = target.dir.join(format!("exec-{}.json", uuid::Uuid::new_v4().simple()));
    let started = crate::runtime::exec_interactive(
        helper,
        &spec,
        &path,
        stdin.is_some(),
        stdout.is_some(),
        stderr.is_some(),
        opts.tty.then_some(first_size),
    )
    .await;
    let mut process = match started {
        Ok(p) => p,
        Err(message) => {
            if let Some(e) = &error {
                e.send(Bytes::from(rc::error_status(protocol, &message))).await;
                e.finish().await;
            }
            return;
        }
    };
    let mut tasks = Vec::new();
    let mut outputs = Vec::new();
    if let Some(pty) = process.pty.clone() {
        if let Some(mut rx) = stdin {
            let pty = pty.clone();
            tasks.push(tokio::spawn(async move {
                while let Some(d) = rx.recv().await {
                    if pty.write_all(&d).await.is_err() {
                        break;
                    }
                }
            }));
        }
        if let Some(mut rx) = resize {
            let pty = pty.clone();
            tasks.push(tokio::spawn(async move {
                let mut buf = resize_buf;
                while let Some(d) = rx.recv().await {
                    buf.extend_from_slice(&d);
                    for size in rc::take_sizes(&mut buf) {
                        pty.resize(size.width, size.height);
                    }
                    buf.truncate(64 * 1024);
                }
            }));
        }
        if let Some(out) = stdout {
            outputs.push(tokio::spawn(async move {
                let mut buf = vec![0u8; 32 * 1024];
                while let Ok(n) = pty.read(&mut buf).await {
                    if n == 0 || !out.send(Bytes::copy_from_slice(&buf[..n])).await {
                        break;
                    }
                }
                out.finish().await;
            }));
        }
    } else {
        if let (Some(mut rx), Some(mut w)) = (stdin, process.stdin.take()) {
            tasks.push(tokio::spawn(async move {
                while let Some(d) = rx.recv().await {
                    if w.write_all(&d).await.is_err() {
                        break;
                    }
                }
                // Dropping the pipe is the command's end of input.
            }));
        }
        for (out, pipe) in [(stdout, process.stdout.take()), (stderr, process.stderr.take())] {
            if let (Some(out), Some(mut pipe)) = (out, pipe) {
                outputs.push(tokio::spawn(async move {
                    let mut buf = vec![0u8; 32 * 1024];
                    while let Ok(n) = pipe.read(&mut buf).await {
                        if n == 0 || !out.send(Bytes::copy_from_slice(&buf[..n])).await {
                            break;
                        }
                    }
                    out.finish().await;
                }));
            }
        }
    }
    let status = tokio::select! {
        s = process.child.wait() => s.ok(),
        _ = ended => None,
    };
    let Some(status) = status else {
        // The client went away: the command goes with it.
        process.kill();
        let _ = process.child.wait().await;
        for t in tasks.into_iter().chain(outputs) {
            t.abort();
        }
        return;
    };
    use std::os::unix::process::ExitStatusExt;
    let code = status.code().unwrap_or_else(|| 128 + status.signal().unwrap_or(0));
    let drain = futures::future::join_all(outputs.iter_mut());
    if tokio::time::timeout(OUTPUT_DRAIN, drain).await.is_err() {
        for t in &outputs {
            t.abort();
        }
    }
    for t in tasks {
        t.abort();
    }
    if let Some(e) = &error {
        let status = rc::exit_status(protocol, &opts.command, code);
        if !status.is_empty() {
            e.send(Bytes::from(status)).await;
        }
        e.finish().await;
    }
}

/// Joins an attach session to the container: its output as it comes (stderr to the client's
/// stderr unless the container has a terminal), the client's input to its standard input
/// (closed after this session with `stdinOnce`), resizes to its terminal. Ends when the
/// container's output ends (it exited) with Success, or when the client goes away; the
/// container keeps running either way.
async fn run_attach(io: Io, protocol: &'static str, attach: &Arc<Attachable>) {
    let Io { stdin, resize, stdout, stderr, error, ended } = io;
    // Subscribed before any input goes in, so the output it causes is seen.
    let output = attach.subscribe();
    let mut tasks = Vec::new();
    if let (Some(mut rx), true) = (resize, attach.tty) {
        let a = attach.clone();
        tasks.push(tokio::spawn(async move {
            let mut buf = Vec::new();
            while let Some(d) = rx.recv().await {
                buf.extend_from_slice(&d);
                for size in rc::take_sizes(&mut buf) {
                    a.resize(size.width, size.height);
                }
                buf.truncate(64 * 1024);
            }
        }));
    }
    if let Some(mut rx) = stdin {
        let a = attach.clone();
        tasks.push(tokio::spawn(async move {
            while let Some(d) = rx.recv().await {
                if !a.write_stdin(&d).await {
                    // No (more) standard input: the client's is read and dropped.
                    continue;
                }
            }
            if a.stdin_once {
                a.close_stdin().await;
            }
        }));
    }
    let forward = async {
        let Some(mut output) = output else { return };
        loop {
            let (is_stderr, data) = match output.recv().await {
                Ok(chunk) => chunk,
                Err(tokio::sync::broadcast::error::RecvError::Lagged(missed)) => {
                    tracing::debug!(missed, "attach: a slow client missed output");
                    continue;
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            };
            let out = if is_stderr { stderr.as_ref() } else { stdout.as_ref() };
            if let Some(out) = out {
                if !out.send(data).await {
                    return;
                }
            }
        }
    };
    let finished = tokio::select! {
        _ = forward => true,
        _ = ended => false,
    };
    for t in tasks {
        t.abort();
    }
    if !finished {
        return;
    }
    for out in [&stdout, &stderr].into_iter().flatten() {
        out.finish().await;
    }
    if let Some(e) = &error {
        let status = rc::exit_status(protocol, &[], 0);
        if !status.is_empty() {
            e.send(Bytes::from(status)).await;
        }
        e.finish().await;
    }
}

/// `/portForward/{ns}/{pod}[/{uid}]` over SPDY (`portforward.k8s.io`,
/// `pkg/kubelet/cri/streaming/portforward/httpstream.go`): each forwarded connection is a
/// pair of client-opened streams, `error` and `data`, with the same `port` and `requestID`
/// headers; the data stream is joined to a TCP connection to `localhost:<port>` inside the
/// pod's network namespace, and a failure is written as text on the error stream.
pub(crate) async fn port_forward(api: &Api, ns: &str, pod: &str, mut req: Request<Incoming>) -> Response<Body> {
    let Some(p) = find_pod(api, ns, pod) else {
        return text(StatusCode::NOT_FOUND, "pod does not exist");
    };
    let uid = p.metadata.uid.clone().unwrap_or_default();
    let Some(target) = api.running.any(&uid) else {
        return text(StatusCode::INTERNAL_SERVER_ERROR, format!("pod {pod:?} has no running container"));
    };
    if is_websocket(&req) {
        return websocket_port_forward(req, target.spec.target_pid, uid);
    }
    let protocol = match spdy_handshake(&req, &[rc::PORT_FORWARD]) {
        Ok(p) => p,
        Err(resp) => return *resp,
    };
    let upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        let Ok(io) = upgrade.await else { return };
        let (session, incoming) = Session::start(hyper_util::rt::TokioIo::new(io), true);
        serve_port_forward(incoming, target.spec.target_pid, uid).await;
        session.close().await;
    });
    switching(protocol)
}

/// The WebSocket form of `/portForward` (`portforward/websocket.go`), what the Python
/// client speaks: the ports come in the query (`port=`, one or more), the i-th has data on
/// channel 2i and errors on 2i+1, each channel first carrying its port (2 bytes, little
/// endian); one connection per port, made at once inside the pod. The WebSocket closes once
/// every port's connection has ended.
fn websocket_port_forward(mut req: Request<Incoming>, pid: u32, uid: String) -> Response<Body> {
    let query = req.uri().query().unwrap_or("").to_string();
    let mut ports = Vec::new();
    for (k, v) in form_urlencoded::parse(query.as_bytes()) {
        if k == "port" {
            match v.parse::<u16>() {
                Ok(p) if p > 0 => ports.push(p),
                _ => return text(StatusCode::BAD_REQUEST, format!("unable to parse \"{v}\" as a port: invalid port")),
            }
        }
    }
    if ports.is_empty() {
        return text(StatusCode::BAD_REQUEST, "query parameter \"port\" is required");
    }
    let offered = rc::offers(header_values(&req, "sec-websocket-protocol"));
    let Some(protocol) = ch::choose_protocol(&offered, ch::PORT_FORWARD_PROTOCOLS) else {
        return text(
            StatusCode::BAD_REQUEST,
            format!("requested protocol(s) are not supported: [{}]", offered.join(" ")),
        );
    };
    let Some(key) = req.headers().get("sec-websocket-key").and_then(|v| v.to_str().ok()).map(ch::accept_key) else {
        return text(StatusCode::BAD_REQUEST, "missing Sec-WebSocket-Key");
    };
    let upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        let Ok(io) = upgrade.await else { return };
        let (writer, mut incoming) = ch::open(hyper_util::rt::TokioIo::new(io), Role::Server, protocol).await;
        let mut to_pod = Vec::new();
        let mut forwards = Vec::new();
        for (i, port) in ports.iter().copied().enumerate() {
            let (data, error) = ((2 * i) as u8, (2 * i + 1) as u8);
            let _ = writer.send(data, Bytes::copy_from_slice(&port.to_le_bytes())).await;
            let _ = writer.send(error, Bytes::copy_from_slice(&port.to_le_bytes())).await;
            let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(32);
            to_pod.push(tx);
            forwards.push(tokio::spawn(forward_channel(writer.clone(), data, rx, pid, port, uid.clone())));
        }
        let dispatch = async {
            while let Some(m) = incoming.recv().await {
                // What the client writes on a data channel goes to that port's connection.
                if let ch::Message::Data(c, d) = m {
                    if c % 2 == 0 {
                        if let Some(tx) = to_pod.get(c as usize / 2) {
                            let _ = tx.send(Bytes::from(d)).await;
                        }
                    }
                }
            }
        };
        tokio::select! {
            _ = dispatch => {}
            _ = futures::future::join_all(&mut forwards) => {}
        }
        for f in &forwards {
            f.abort();
        }
        writer.close().await;
    });
    websocket_switching(&key, protocol)
}

/// One port of a WebSocket port-forward: its connection inside the pod joined to its data
/// channel; a failure to connect is written on its error channel.
async fn forward_channel(
    writer: ChannelWriter,
    data: u8,
    mut from_client: tokio::sync::mpsc::Receiver<Bytes>,
    pid: u32,
    port: u16,
    uid: String,
) {
    let tcp = match connect_in(pid, port).await {
        Ok(t) => t,
        Err(e) => {
            let msg = format!("error forwarding port {port} to pod {uid}, uid : {}", dial_error(port, &e));
            let _ = writer.send(data + 1, Bytes::from(msg)).await;
            return;
        }
    };
    let _ = tcp.set_nodelay(true);
    let (mut r, mut w) = tcp.into_split();
    let up = async {
        while let Some(d) = from_client.recv().await {
            if w.write_all(&d).await.is_err() {
                break;
            }
        }
        let _ = w.shutdown().await;
    };
    let down = async {
        let mut buf = vec![0u8; 32 * 1024];
        while let Ok(n) = r.read(&mut buf).await {
            if n == 0 || writer.send(data, Bytes::copy_from_slice(&buf[..n])).await.is_err() {
                break;
            }
        }
    };
    // The pod's side ending ends the port (what it answered is all written by then).
    tokio::pin!(up, down);
    tokio::select! {
        _ = &mut down => {}
        _ = &mut up => { let _ = tokio::time::timeout(CLOSE_GRACE, down).await; }
    }
}

/// The dial error as the kubelet words it.
fn dial_error(port: u16, e: &std::io::Error) -> String {
    let why = match e.kind() {
        std::io::ErrorKind::ConnectionRefused => "connect: connection refused".to_string(),
        _ => e.to_string(),
    };
    format!("dial tcp4 127.0.0.1:{port}: {why}")
}

/// A half-made pair of port-forward streams.
#[derive(Default)]
struct Pair {
    error: Option<Stream>,
    data: Option<Stream>,
    since: Option<tokio::time::Instant>,
}

async fn serve_port_forward(mut incoming: tokio::sync::mpsc::Receiver<Stream>, pid: u32, uid: String) {
    let mut pairs: HashMap<String, Pair> = HashMap::new();
    while let Some(s) = incoming.recv().await {
        // Pairs that never completed are dropped (the kubelet: "timed out waiting for streams").
        pairs.retain(|_, p| p.since.is_none_or(|t| t.elapsed() < STREAM_CREATION_TIMEOUT));
        let port = match s.header("port").map(str::parse::<u16>) {
            Some(Ok(p)) if p > 0 => p,
            _ => {
                tracing::debug!("port-forward: stream without a valid port header refused");
                let _ = s.tx.reset(rkube_stream::spdy::REFUSED_STREAM).await;
                continue;
            }
        };
        let kind = s.header("streamtype").unwrap_or("").to_ascii_lowercase();
        // Old clients send no requestID: the error stream's id is the data stream's + 2.
        let key = match (s.header("requestid"), kind.as_str()) {
            (Some(id), _) => id.to_string(),
            (None, rc::STREAM_DATA) => format!("#{}", s.id + 2),
            (None, _) => format!("#{}", s.id),
        };
        if kind != rc::STREAM_ERROR && kind != rc::STREAM_DATA {
            let _ = s.tx.reset(rkube_stream::spdy::REFUSED_STREAM).await;
            continue;
        }
        if s.tx.reply().await.is_err() {
            return;
        }
        let pair = pairs.entry(key.clone()).or_default();
        pair.since.get_or_insert_with(tokio::time::Instant::now);
        if kind == rc::STREAM_ERROR {
            pair.error = Some(s);
        } else {
            pair.data = Some(s);
        }
        if pair.error.is_some() && pair.data.is_some() {
            let Some(Pair { error: Some(error), data: Some(data), .. }) = pairs.remove(&key) else { continue };
            tokio::spawn(forward(error, data, pid, port, uid.clone()));
        }
    }
}

/// A TCP connection to 127.0.0.1:`port` made inside the network namespace of process `pid`.
async fn connect_in(pid: u32, port: u16) -> std::io::Result<tokio::net::TcpStream> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    // A thread of its own: joining a namespace changes the calling thread for good.
    std::thread::Builder::new().name("rkube-port-forward".into()).spawn(move || {
        let connect = || -> std::io::Result<std::net::TcpStream> {
            let ns = std::fs::File::open(format!("/proc/{pid}/ns/net"))?;
            nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET).map_err(std::io::Error::from)?;
            let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
            let s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(10))?;
            s.set_nonblocking(true)?;
            Ok(s)
        };
        let _ = tx.send(connect());
    })?;
    let std = rx.await.map_err(|_| std::io::Error::other("port-forward thread ended"))??;
    tokio::net::TcpStream::from_std(std)
}

async fn forward(error: Stream, mut data: Stream, pid: u32, port: u16, uid: String) {
    let tcp = match connect_in(pid, port).await {
        Ok(t) => t,
        Err(e) => {
            let msg = format!("error forwarding port {port} to pod {uid}, uid : {}", dial_error(port, &e));
            let _ = error.tx.send(Bytes::from(msg)).await;
            let _ = error.tx.finish().await;
            let _ = data.tx.finish().await;
            return;
        }
    };
    let _ = tcp.set_nodelay(true);
    let (mut r, mut w) = tcp.into_split();
    let to_pod = async {
        while let Some(d) = data.rx.recv().await {
            if w.write_all(&d).await.is_err() {
                break;
            }
        }
        let _ = w.shutdown().await;
    };
    let from_pod = async {
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            match r.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if data.tx.send(Bytes::copy_from_slice(&buf[..n])).await.is_err() {
                        break;
                    }
                }
            }
        }
        // The pod closed its side: the client sees the end at once.
        let _ = data.tx.finish().await;
    };
    // As containerd (and socat): once one direction ends, the other gets a second to finish,
    // then both streams close (client-go waits for the error stream's end to drop the pair).
    tokio::pin!(to_pod, from_pod);
    let pod_side_ended = tokio::select! {
        _ = &mut to_pod => tokio::time::timeout(CLOSE_GRACE, from_pod).await.is_ok(),
        _ = &mut from_pod => {
            let _ = tokio::time::timeout(CLOSE_GRACE, to_pod).await;
            true
        }
    };
    if !pod_side_ended {
        let _ = data.tx.finish().await;
    }
    let _ = error.tx.finish().await;
}

/// How long a forwarded connection's other direction may go on once one has ended.
const CLOSE_GRACE: Duration = Duration::from_secs(1);
