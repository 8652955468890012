//! The bounds of watches and lists, through the real binary: a watcher that does not read
//! is closed once more than `WATCH_QUEUE_EVENTS_MAX` events wait for it while a reading one
//! keeps going; a watch from before the retained history gets kube-apiserver's 410 on a
//! running server; the periodic BOOKMARK; a `continue` token older than the history is a
//! 410 with kube-apiserver's message and token; 1,000 HTTP/2 streams on one connection.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::Server;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use serde_json::{json, Value};
use tokio::net::TcpSocket;

type H2 = hyper::client::conn::http2::SendRequest<Full<Bytes>>;
type H1 = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

/// TLS as the admin (client certificate), offering `alpn`.
fn tls(s: &Server, alpn: &[u8]) -> tokio_rustls::TlsConnector {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let mut roots = rustls::RootCertStore::empty();
    let ca = std::fs::read(s.pki("ca.crt")).unwrap();
    for c in rustls_pemfile::certs(&mut ca.as_slice()) {
        roots.add(c.unwrap()).unwrap();
    }
    let cert = std::fs::read(s.pki("admin.crt")).unwrap();
    let key = std::fs::read(s.pki("admin.key")).unwrap();
    let chain = rustls_pemfile::certs(&mut cert.as_slice()).map(Result::unwrap).collect();
    let key = rustls_pemfile::private_key(&mut key.as_slice()).unwrap().unwrap();
    let mut cfg =
        rustls::ClientConfig::builder().with_root_certificates(roots).with_client_auth_cert(chain, key).unwrap();
    cfg.alpn_protocols = vec![alpn.to_vec()];
    tokio_rustls::TlsConnector::from(Arc::new(cfg))
}

/// A TLS connection to `s`; `recv_buffer` shrinks the socket's receive buffer (so that a
/// client that does not read stops the server's writes soon).
async fn connect(
    s: &Server,
    alpn: &[u8],
    recv_buffer: Option<u32>,
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let addr: std::net::SocketAddr = s.url.trim_start_matches("https://").parse().unwrap();
    let socket = TcpSocket::new_v4().unwrap();
    if let Some(n) = recv_buffer {
        socket.set_recv_buffer_size(n).unwrap();
    }
    let tcp = socket.connect(addr).await.unwrap();
    let name = rustls_pki_types::ServerName::try_from("127.0.0.1").unwrap();
    tls(s, alpn).connect(name, tcp).await.unwrap()
}

async fn h2(s: &Server) -> H2 {
    let io = hyper_util::rt::TokioIo::new(connect(s, b"h2", None).await);
    let (send, conn) =
        hyper::client::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new()).handshake(io).await.unwrap();
    tokio::spawn(async move {
        let _ = conn.await;
    });
    send
}

async fn h1(s: &Server, recv_buffer: Option<u32>) -> H1 {
    let io = hyper_util::rt::TokioIo::new(connect(s, b"http/1.1", recv_buffer).await);
    let (send, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
    tokio::spawn(async move {
        let _ = conn.await;
    });
    send
}

fn request(method: &str, path: &str, body: Option<Value>) -> http::Request<Full<Bytes>> {
    let b = http::Request::builder()
        .method(method)
        .uri(format!("https://127.0.0.1{path}"))
        .header("content-type", "application/json")
        .header("accept", "application/json");
    b.body(Full::new(body.map(|v| Bytes::from(v.to_string())).unwrap_or_default())).unwrap()
}

/// Sends one request on `h` and reads the whole answer (within a minute).
async fn call(h: &H2, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let mut h = h.clone();
    let answer = async {
        let resp = h.send_request(request(method, path, body)).await.unwrap();
        let code = resp.status().as_u16();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        (code, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
    };
    tokio::time::timeout(Duration::from_secs(60), answer).await.unwrap_or_else(|_| panic!("{method} {path}: no answer"))
}

/// Creates `n` ConfigMaps `<prefix>-<i>` in `ns` holding `pad` bytes of data each,
/// `concurrency` at a time, within `within`; returns the resourceVersion of the last one.
async fn create_many(
    h: &H2,
    ns: &str,
    prefix: &str,
    (n, pad): (usize, usize),
    concurrency: usize,
    within: Duration,
) -> u64 {
    use futures::StreamExt;
    let started = Instant::now();
    let path = format!("/api/v1/namespaces/{ns}/configmaps");
    let mut results = futures::stream::iter(0..n)
        .map(|i| {
            let obj = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": format!("{prefix}-{i}")}, "data": {"i": i.to_string(), "pad": "x".repeat(pad)}});
            let (h, path) = (h.clone(), path.clone());
            async move { call(&h, "POST", &path, Some(obj)).await }
        })
        .buffer_unordered(concurrency);
    let mut last = 0;
    while let Some((code, v)) = results.next().await {
        assert_eq!(code, 201, "{v}");
        last = last.max(rv(&v));
        assert!(started.elapsed() < within, "creating {n} objects took longer than {within:?}");
    }
    last
}

fn rv(v: &Value) -> u64 {
    v["metadata"]["resourceVersion"].as_str().and_then(|s| s.parse().ok()).unwrap_or(0)
}

/// A watch answer's body, as JSON lines.
struct Lines {
    body: Incoming,
    buf: Vec<u8>,
}

impl Lines {
    fn new(resp: http::Response<Incoming>) -> Lines {
        Lines { body: resp.into_body(), buf: Vec::new() }
    }

    /// The next event; None at the end of the answer; panics if none comes within `within`.
    async fn next(&mut self, within: Duration) -> Option<Value> {
        self.try_next(within).await.unwrap_or_else(|| panic!("no watch event within {within:?}"))
    }

    /// The next event (Some(None) at the end of the answer), or None if nothing came within
    /// `within`.
    async fn try_next(&mut self, within: Duration) -> Option<Option<Value>> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Some(i) = self.buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=i).collect();
                return Some(Some(serde_json::from_slice(&line).expect("a JSON event line")));
            }
            match tokio::time::timeout_at(deadline, self.body.frame()).await {
                Err(_) => return None,
                Ok(None) => return Some(None),
                Ok(Some(Err(e))) => panic!("watch body: {e}"),
                Ok(Some(Ok(f))) => {
                    if let Some(d) = f.data_ref() {
                        self.buf.extend_from_slice(d);
                    }
                }
            }
        }
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

const NS: &str = "default";
const CM: &str = "/api/v1/namespaces/default/configmaps";

/// Opens a watch on `path` over `h` and waits for its answer's head (the stream is then
/// registered with the store).
async fn watch_h1(h: &mut H1, path: &str) -> Lines {
    let resp = h.send_request(request("GET", path, None)).await.unwrap();
    assert_eq!(resp.status(), 200);
    Lines::new(resp)
}

async fn watch_h2(h: &H2, path: &str) -> Lines {
    let mut h = h.clone();
    let resp = h.send_request(request("GET", path, None)).await.unwrap();
    assert_eq!(resp.status(), 200);
    Lines::new(resp)
}

/// The current revision, from a list of one namespace's ConfigMaps.
async fn revision(h: &H2) -> u64 {
    let (code, v) = call(h, "GET", &format!("{CM}?limit=1"), None).await;
    assert_eq!(code, 200, "{v}");
    rv(&v)
}

/// A watcher that takes nothing while more than `WATCH_QUEUE_EVENTS_MAX` (8,192) events
/// arrive for it is closed: once it reads again it gets what was queued and then the end of
/// the answer (no timeout was asked for), so its client re-lists. A watcher that reads along
/// gets every event and stays open.
#[test]
fn a_watcher_that_does_not_read_is_closed_past_its_queue_and_a_reading_one_is_not() {
    const QUEUE: usize = 8192;
    // The events the store queues, plus what socket and server buffers take before the
    // stalled client's connection stops accepting bytes (the server's send buffer grows to
    // 4 MiB on Linux: about 3,000 of these events), plus margin. 8,192 of them are ~12 MB,
    // below the other bound (16 MiB queued), so the count is what closes the watcher.
    const WRITES: usize = 16_000;
    const PAD: usize = 1200;
    let s = Server::start();
    runtime().block_on(async {
        let h = h2(&s).await;
        let from = revision(&h).await;
        let path = format!("{CM}?watch=1&resourceVersion={from}");
        let mut stalled_conn = h1(&s, Some(4096)).await;
        let mut stalled = watch_h1(&mut stalled_conn, &path).await;
        let mut reading_conn = h1(&s, None).await;
        let mut reading = watch_h1(&mut reading_conn, &path).await;
        // The reading watcher reads along as the writes go in.
        let reader = tokio::spawn(async move {
            let mut names = Vec::new();
            while names.len() < WRITES {
                let e = reading.next(Duration::from_secs(60)).await.expect("the reading watch stays open");
                assert_eq!(e["type"], "ADDED", "{e}");
                names.push(e["object"]["metadata"]["name"].as_str().unwrap().to_string());
            }
            (names, reading)
        });
        create_many(&h, NS, "q", (WRITES, PAD), 16, Duration::from_secs(300)).await;
        let (names, mut reading) = reader.await.unwrap();
        assert_eq!(names.len(), WRITES);

        // Now the stalled one reads: what was queued, then the end.
        let mut got = 0usize;
        let mut last_rv = from;
        loop {
            let e = match stalled.try_next(Duration::from_secs(30)).await {
                Some(Some(e)) => e,
                Some(None) => break,
                None => panic!("the stalled watch neither ended nor sent more after {got} of {WRITES} events"),
            };
            assert_eq!(e["type"], "ADDED", "{e}");
            let r = rv(&e["object"]);
            assert!(r > last_rv, "events in revision order: {r} after {last_rv}");
            last_rv = r;
            got += 1;
            assert!(got <= WRITES);
        }
        eprintln!("the stalled watcher got {got} of {WRITES} events before its answer ended");
        assert!(got >= QUEUE, "it keeps what was queued before it fell behind: {got}");
        assert!(got < WRITES, "closed before the end: {got}");

        // The reading watcher is still open and gets the next event.
        call(&h, "POST", CM, Some(json!({"metadata": {"name": "after"}}))).await;
        let e = reading.next(Duration::from_secs(30)).await.expect("still open");
        assert_eq!(e["object"]["metadata"]["name"], "after");
    });
}

/// Writes enough to push every event before it out of the store's history: 80 objects of
/// ~1 MB are past `HISTORY_BYTES_MAX` (64 MiB), the bound a cluster of large objects
/// meets first (`HISTORY_EVENTS_MAX`, 50,000 events, bounds small ones). Written in
/// namespace `big`: history is one for the whole store.
async fn push_out_history(h: &H2) {
    let (code, v) = call(h, "POST", "/api/v1/namespaces", Some(json!({"metadata": {"name": "big"}}))).await;
    assert_eq!(code, 201, "{v}");
    create_many(h, "big", "big", (80, 1_000_000), 4, Duration::from_secs(300)).await;
}

/// On a running server (no restart, no explicit compaction), a watch from a
/// resourceVersion older than the retained history gets kube-apiserver's answer: 200 and
/// one ERROR event with a 410 `Expired` Status, "too old resource version: N (M)" (the
/// watch cache's message), then the end; a watch from inside the history replays.
#[test]
fn a_watch_from_before_the_history_is_410_on_a_running_server() {
    let s = Server::start();
    let pid = s.pid();
    runtime().block_on(async {
        let h = h2(&s).await;
        let (code, v) = call(&h, "POST", CM, Some(json!({"metadata": {"name": "old"}}))).await;
        assert_eq!(code, 201, "{v}");
        let old = rv(&v);
        // While the revision is retained, a watch from it replays what came after.
        let (code, v) = call(&h, "POST", CM, Some(json!({"metadata": {"name": "next"}}))).await;
        assert_eq!(code, 201, "{v}");
        let mut w = watch_h2(&h, &format!("{CM}?watch=1&resourceVersion={old}")).await;
        let e = w.next(Duration::from_secs(30)).await.unwrap();
        assert_eq!((e["type"].as_str(), e["object"]["metadata"]["name"].as_str()), (Some("ADDED"), Some("next")));

        push_out_history(&h).await;
        let latest = revision(&h).await;
        let mut w = watch_h2(&h, &format!("{CM}?watch=1&resourceVersion={old}")).await;
        let e = w.next(Duration::from_secs(30)).await.expect("an ERROR event");
        assert_eq!(e["type"], "ERROR", "{e}");
        let st = &e["object"];
        assert_eq!((st["kind"].as_str(), st["status"].as_str()), (Some("Status"), Some("Failure")), "{st}");
        assert_eq!((st["code"].as_i64(), st["reason"].as_str()), (Some(410), Some("Expired")), "{st}");
        let msg = st["message"].as_str().unwrap();
        let oldest: u64 = msg
            .strip_prefix(&format!("too old resource version: {old} ("))
            .and_then(|m| m.strip_suffix(')'))
            .and_then(|m| m.parse().ok())
            .unwrap_or_else(|| panic!("kube-apiserver's message: {msg}"));
        assert!(old < oldest && oldest < latest, "{old} < {oldest} < {latest}");
        assert!(w.next(Duration::from_secs(30)).await.is_none(), "the answer ends after the error");
        // Newer revisions still replay: only what history let go is gone.
        let mut w = watch_h2(&h, &format!("{CM}?watch=1&resourceVersion={latest}")).await;
        call(&h, "POST", CM, Some(json!({"metadata": {"name": "newer"}}))).await;
        let e = w.next(Duration::from_secs(30)).await.unwrap();
        assert_eq!(e["object"]["metadata"]["name"], "newer", "{e}");
    });
    assert_eq!(s.pid(), pid, "the same server process throughout");
}

/// kube-apiserver's answer to a `continue` token whose snapshot is no longer retained
/// (etcd3 store, `handleCompactedErrorForPaging`): 410 `Expired` with its message and, in
/// the Status' metadata, a new token that continues from the same place at the latest
/// revision (an inconsistent remainder), which works.
#[test]
fn a_continue_token_older_than_the_history_is_410_with_kube_apiservers_message() {
    const INCONSISTENT_CONTINUE: &str = "The provided continue parameter is too old to display a consistent list \
        result. You can start a new list without the continue parameter, or use the continue token in this \
        response to retrieve the remainder of the results. Continuing with the provided token results in an \
        inconsistent list - objects that were created, modified, or deleted between the time the first chunk was \
        returned and now may show up in the list.";
    let s = Server::start();
    runtime().block_on(async {
        let h = h2(&s).await;
        let ns = "/api/v1/namespaces/paged/configmaps";
        let (code, v) = call(&h, "POST", "/api/v1/namespaces", Some(json!({"metadata": {"name": "paged"}}))).await;
        assert_eq!(code, 201, "{v}");
        for name in ["a", "b", "c"] {
            let (code, v) = call(&h, "POST", ns, Some(json!({"metadata": {"name": name}}))).await;
            assert_eq!(code, 201, "{v}");
        }
        // Page one (a, b; the namespace's kube-root-ca.crt sorts last), and a token that works.
        let (code, page) = call(&h, "GET", &format!("{ns}?limit=2"), None).await;
        assert_eq!(code, 200, "{page}");
        let token = page["metadata"]["continue"].as_str().expect("a continue token").to_string();
        let (code, v) = call(&h, "GET", &format!("{ns}?limit=2&continue={token}"), None).await;
        assert_eq!(code, 200, "the fresh token works: {v}");

        push_out_history(&h).await;
        // Written after page one: an inconsistent remainder may show it.
        let (code, v) = call(&h, "POST", ns, Some(json!({"metadata": {"name": "d"}}))).await;
        assert_eq!(code, 201, "{v}");
        let (code, st) = call(&h, "GET", &format!("{ns}?limit=2&continue={token}"), None).await;
        assert_eq!(code, 410, "{st}");
        assert_eq!(
            (st["kind"].as_str(), st["reason"].as_str(), st["code"].as_i64()),
            (Some("Status"), Some("Expired"), Some(410)),
            "{st}"
        );
        assert_eq!(st["message"].as_str(), Some(INCONSISTENT_CONTINUE), "{st}");
        let next = st["metadata"]["continue"].as_str().expect("a token for the remainder");
        let (code, rest) = call(&h, "GET", &format!("{ns}?limit=10&continue={next}"), None).await;
        assert_eq!(code, 200, "{rest}");
        let names: Vec<&str> =
            rest["items"].as_array().unwrap().iter().filter_map(|i| i["metadata"]["name"].as_str()).collect();
        assert_eq!(names, ["c", "d", "kube-root-ca.crt"], "the remainder after page one, at the latest revision");
        assert!(rv(&rest) > rv(&page), "{rest}");
    });
}

/// The periodic BOOKMARK of a watch that allows them: with nothing written, one comes
/// (every 30 s, `BOOKMARK_INTERVAL`) carrying the kind and the current resourceVersion;
/// a watch that did not ask for bookmarks gets none.
#[test]
fn a_quiet_watch_that_allows_bookmarks_gets_one_periodically() {
    let s = Server::start();
    runtime().block_on(async {
        let h = h2(&s).await;
        let from = revision(&h).await;
        let mut with = watch_h2(&h, &format!("{CM}?watch=1&resourceVersion={from}&allowWatchBookmarks=true")).await;
        let mut without = watch_h2(&h, &format!("{CM}?watch=1&resourceVersion={from}")).await;
        let e = with.next(Duration::from_secs(60)).await.expect("a bookmark");
        assert_eq!(e["type"], "BOOKMARK", "{e}");
        assert_eq!(
            (e["object"]["kind"].as_str(), e["object"]["apiVersion"].as_str()),
            (Some("ConfigMap"), Some("v1")),
            "{e}"
        );
        assert!(rv(&e["object"]) >= from, "{e}");
        // Then a write: the first thing the other watch sees is that, no bookmark.
        call(&h, "POST", CM, Some(json!({"metadata": {"name": "after-bookmark"}}))).await;
        let e = without.next(Duration::from_secs(30)).await.unwrap();
        assert_eq!(
            (e["type"].as_str(), e["object"]["metadata"]["name"].as_str()),
            (Some("ADDED"), Some("after-bookmark")),
            "{e}"
        );
        let e = with.next(Duration::from_secs(30)).await.unwrap();
        assert_eq!(e["type"], "ADDED", "{e}");
    });
}

/// 1,000 streams open at once on one HTTP/2 connection (the server's
/// `SETTINGS_MAX_CONCURRENT_STREAMS`, as README and ARCHITECTURE say): 1,000 watches, all
/// answered and all delivering the next event.
#[test]
fn one_thousand_http2_streams_on_one_connection_are_all_answered() {
    const STREAMS: usize = 1000;
    let s = Server::start();
    runtime().block_on(async {
        use futures::StreamExt;
        let h = h2(&s).await;
        let from = revision(&h).await;
        let before = s.registered_watchers();
        let path = format!("{CM}?watch=1&resourceVersion={from}");
        // All opened together; the client keeps past the server's stream limit waiting, so
        // each of these is answered only if 1,000 may be open at once.
        let opened: Vec<Lines> = tokio::time::timeout(
            Duration::from_secs(120),
            futures::stream::iter(0..STREAMS).map(|_| watch_h2(&h, &path)).buffer_unordered(STREAMS).collect(),
        )
        .await
        .expect("1,000 watches answered on one connection");
        assert_eq!(opened.len(), STREAMS);
        assert_eq!(s.registered_watchers() - before, STREAMS as i64);
        // Written on another connection: this one has no stream left.
        let other = h2(&s).await;
        call(&other, "POST", CM, Some(json!({"metadata": {"name": "to-all"}}))).await;
        let got: Vec<Value> = futures::stream::iter(opened)
            .map(|mut w| async move { w.next(Duration::from_secs(60)).await.expect("an event") })
            .buffer_unordered(STREAMS)
            .collect()
            .await;
        assert!(got.iter().all(|e| e["object"]["metadata"]["name"] == "to-all"), "every stream got the event");
    });
}
