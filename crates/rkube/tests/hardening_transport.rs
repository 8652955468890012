//! Transport attacks on the real binary (issue 16, findings 4, 5 and 7): bodies read only
//! after authorization and within a shared memory budget, header and idle timeouts, a
//! connection cap that closes the idlest connection rather than locking others out, and
//! bounded watches. Raw TLS clients here send exactly the bytes an attacker would.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::Server;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

type Tls = TlsStream<TcpStream>;

/// A TLS client for `s`, as the admin (client certificate) or anonymous.
fn connector(s: &Server, admin: bool) -> tokio_rustls::TlsConnector {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let mut roots = rustls::RootCertStore::empty();
    let ca = std::fs::read(s.pki("ca.crt")).unwrap();
    for c in rustls_pemfile::certs(&mut ca.as_slice()) {
        roots.add(c.unwrap()).unwrap();
    }
    let b = rustls::ClientConfig::builder().with_root_certificates(roots);
    let mut cfg = if admin {
        let cert = std::fs::read(s.pki("admin.crt")).unwrap();
        let key = std::fs::read(s.pki("admin.key")).unwrap();
        let chain = rustls_pemfile::certs(&mut cert.as_slice()).map(Result::unwrap).collect();
        let key = rustls_pemfile::private_key(&mut key.as_slice()).unwrap().unwrap();
        b.with_client_auth_cert(chain, key).unwrap()
    } else {
        b.with_no_client_auth()
    };
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    tokio_rustls::TlsConnector::from(Arc::new(cfg))
}

async fn connect(s: &Server, c: &tokio_rustls::TlsConnector) -> Tls {
    let addr = s.url.trim_start_matches("https://").to_string();
    let tcp = TcpStream::connect(&addr).await.unwrap();
    c.connect(rustls_pki_types::ServerName::try_from("127.0.0.1").unwrap(), tcp).await.unwrap()
}

/// Reads until the end of the response head and returns it (status line first).
async fn response_head(tls: &mut Tls, within: Duration) -> Option<String> {
    let mut buf = Vec::new();
    let read = async {
        let mut chunk = [0u8; 4096];
        loop {
            let n = tls.read(&mut chunk).await.ok()?;
            if n == 0 {
                return None;
            }
            buf.extend_from_slice(&chunk[..n]);
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                return Some(String::from_utf8_lossy(&buf[..i]).into_owned());
            }
        }
    };
    tokio::time::timeout(within, read).await.ok().flatten()
}

/// Whether the server closes `tls` within `within` (end of stream or reset).
async fn closed_within(tls: &mut Tls, within: Duration) -> bool {
    let mut chunk = [0u8; 1024];
    let wait = async {
        loop {
            match tls.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(within, wait).await.is_ok()
}

const CM: &str = "/api/v1/namespaces/default/configmaps";

fn post_head(path: &str, len: usize, extra: &str) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {len}\r\n{extra}\r\n"
    )
}

/// Finding 4: a request is authenticated and authorized from its headers; its body is
/// only read once it is allowed (kube-apiserver's filter order). Every refusal below
/// arrives while the client has sent no byte of the 3 MiB it announced.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_are_read_only_after_authorization() {
    if !common::require("curl", &["--version"]) {
        return;
    }
    let s = Server::start();
    let (anon, admin) = (connector(&s, false), connector(&s, true));
    let big = 3 * 1024 * 1024;
    let within = Duration::from_secs(10);
    for (c, extra, want) in [
        (&anon, "", "HTTP/1.1 403"),
        (&anon, "Authorization: Bearer not-a-token\r\n", "HTTP/1.1 401"),
        (&admin, "", "HTTP/1.1 413"),
    ] {
        let mut tls = connect(&s, c).await;
        let len = if want.ends_with("413") { big + 1 } else { big };
        tls.write_all(post_head(CM, len, extra).as_bytes()).await.unwrap();
        let head =
            response_head(&mut tls, within).await.unwrap_or_else(|| panic!("no answer before the body ({want})"));
        assert!(head.starts_with(want), "{head}");
    }
    // An allowed request's body is awaited, then handled.
    let body = br#"{"metadata":{"name":"late"}}"#;
    let mut tls = connect(&s, &admin).await;
    tls.write_all(post_head(CM, body.len(), "").as_bytes()).await.unwrap();
    tls.write_all(&body[..10]).await.unwrap();
    assert!(response_head(&mut tls, Duration::from_millis(500)).await.is_none(), "waits for the rest of the body");
    tls.write_all(&body[10..]).await.unwrap();
    let head = response_head(&mut tls, within).await.expect("answer");
    assert!(head.starts_with("HTTP/1.1 201"), "{head}");
}

/// Finding 4: bodies held at once share one budget (256 MiB), taken as bytes arrive, each
/// user at most a quarter of it. Uploads left unfinished by one user fill that user's part
/// (the next is refused at once with 429) but not others'; four users filling the whole
/// budget make the next body wait, then be refused; `system:masters` is outside the
/// budget; it all comes back when the uploads go.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn body_memory_is_bounded_across_requests() {
    if !common::require("curl", &["--version"]) {
        return;
    }
    let tokens: String = (1..=5).map(|i| format!("t{i},user{i},{i},uploaders\n")).collect();
    let (_dir, s) = Server::start_with_tokens(&tokens, &[]);
    let crb = br#"{"apiVersion":"rbac.authorization.k8s.io/v1","kind":"ClusterRoleBinding","metadata":{"name":"up"},
        "roleRef":{"apiGroup":"rbac.authorization.k8s.io","kind":"ClusterRole","name":"cluster-admin"},
        "subjects":[{"kind":"Group","name":"uploaders","apiGroup":"rbac.authorization.k8s.io"}]}"#;
    let json = "Content-Type: application/json";
    assert_eq!(s.curl("POST", "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings", Some(crb), &[json]).0, 201);
    assert!(common::wait_for(Duration::from_secs(5), || {
        s.curl_as(false, "GET", CM, None, &["Authorization: Bearer t1"]).0 == 200
    }));
    let anon = connector(&s, false);
    let big = 3 * 1024 * 1024;
    let part = vec![b' '; big - 100 * 1024];
    let auth = |i: usize| format!("Authorization: Bearer t{i}\r\n");
    // Starts an upload of `big` bytes and sends all but the last 100 KiB.
    let hold = |i: usize| {
        let (s, anon, part, auth) = (&s, &anon, &part, auth(i));
        async move {
            let mut tls = connect(s, anon).await;
            tls.write_all(post_head(CM, big, &auth).as_bytes()).await.unwrap();
            tls.write_all(part).await.unwrap();
            tls.flush().await.unwrap();
            tls
        }
    };
    // A held upload goes on trickling, a byte every 2 s (as an attacker would, to stay
    // under the 10 s a body may pause), until the test lets it go.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let trickle = |mut tls: Tls| {
        let stop = stop.clone();
        tokio::spawn(async move {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                tokio::time::sleep(Duration::from_secs(2)).await;
                if tls.write_all(b" ").await.is_err() {
                    break;
                }
            }
        })
    };
    let mut held = Vec::new();
    // user1 fills its quarter (64 MiB): its next upload is refused at once.
    let mut refused_after = None;
    for n in 0..30 {
        let mut tls = hold(1).await;
        match response_head(&mut tls, Duration::from_millis(300)).await {
            Some(head) => {
                assert!(head.starts_with("HTTP/1.1 429"), "{head}");
                refused_after = Some(n);
                break;
            }
            None => held.push(trickle(tls)),
        }
    }
    let n = refused_after.expect("a user's uploads stop at its quarter");
    assert!((20..=22).contains(&n), "refused after {n} uploads of 2.9 MiB");
    // Others still upload, until together they fill the budget.
    for i in 2..=5 {
        for _ in 0..n {
            held.push(trickle(hold(i).await));
        }
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    // With the budget full, another upload waits for room: refused when none comes within
    // 10 s (429), or, when some does, still short of its last bytes (408). Which one
    // depends on when other held uploads give theirs back; never is it stored.
    let mut tls = hold(5).await;
    let head = response_head(&mut tls, Duration::from_secs(75)).await.expect("an answer");
    assert!(head.starts_with("HTTP/1.1 429") || head.starts_with("HTTP/1.1 408"), "{head}");
    // The admin is not held up.
    let cm = format!(r#"{{"metadata":{{"name":"admin"}},"data":{{"a":"{}"}}}}"#, "y".repeat(1 << 20));
    assert_eq!(s.curl("POST", CM, Some(cm.as_bytes()), &[json]).0, 201);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for h in held {
        h.abort();
    }
    // The budget is back for everyone.
    let cm = format!(r#"{{"metadata":{{"name":"after"}},"data":{{"a":"{}"}}}}"#, "y".repeat(1 << 20));
    let ok = common::wait_for(Duration::from_secs(10), || {
        s.curl_as(false, "POST", CM, Some(cm.as_bytes()), &[json, "Authorization: Bearer t5"]).0 == 201
    });
    assert!(ok, "the budget is given back when requests end");
}

/// Finding 4: a body that stops arriving is refused after 10 s (408), and what it held
/// given back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_bodies_time_out() {
    if !common::require("curl", &["--version"]) {
        return;
    }
    let s = Server::start();
    let admin = connector(&s, true);
    let mut tls = connect(&s, &admin).await;
    tls.write_all(post_head(CM, 100, "").as_bytes()).await.unwrap();
    tls.write_all(b"{").await.unwrap();
    let head = response_head(&mut tls, Duration::from_secs(30)).await.expect("an answer");
    assert!(head.starts_with("HTTP/1.1 408"), "{head}");
}

/// Finding 5: a client that never finishes its headers is cut off after kube-apiserver's
/// 32 s, and a keep-alive connection left idle within 90 s (HTTP/1.1 waits at most the
/// header timeout for a next request; HTTP/2 the idle timeout); a connection that keeps
/// working stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_and_idle_connections_are_closed() {
    if !common::require("curl", &["--version"]) {
        return;
    }
    let s = Server::start();
    let anon = connector(&s, false);
    let mut slow = connect(&s, &anon).await;
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n").await.unwrap();
    let mut idle = connect(&s, &anon).await;
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").await.unwrap();
    assert!(response_head(&mut idle, Duration::from_secs(10)).await.unwrap().starts_with("HTTP/1.1 200"));
    let mut busy = connect(&s, &anon).await;
    let (slow_closed, idle_closed) = tokio::join!(
        closed_within(&mut slow, Duration::from_secs(45)),
        closed_within(&mut idle, Duration::from_secs(110)),
    );
    assert!(slow_closed, "headers not finished within 32 s: closed");
    assert!(idle_closed, "idle for 90 s: closed");
    // A connection used every few seconds is never idle.
    for _ in 0..3 {
        busy.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").await.unwrap();
        assert!(response_head(&mut busy, Duration::from_secs(10)).await.is_some(), "busy connection kept");
    }
}

/// Finding 5: at the connection cap (what the descriptor limit allows), a new connection
/// makes the one idle longest close, so idle connections never lock out the admin.
#[test]
fn connections_past_the_cap_close_the_idlest() {
    if !common::require("curl", &["--version"]) {
        return;
    }
    // A descriptor limit of 400 leaves room for 144 connections.
    let s = Server::start_limited(400);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async {
        let anon = connector(&s, false);
        let mut idle = Vec::new();
        for _ in 0..144 {
            idle.push(connect(&s, &anon).await);
        }
        // Past the grace newcomers get, the cap is full of idle anonymous connections.
        tokio::time::sleep(rkube_grace() + Duration::from_millis(200)).await;
        for _ in 0..6 {
            idle.push(connect(&s, &anon).await);
        }
        // The admin gets through with curl (which opens its own connections).
        for _ in 0..3 {
            let (code, _, body) = s.curl("GET", "/api/v1/namespaces", None, &[]);
            assert_eq!(code, 200, "{body}");
        }
        // The first connections were closed to make room; the last ones are open.
        assert!(closed_within(&mut idle[0], Duration::from_secs(10)).await, "the idlest was closed");
        let last = idle.last_mut().unwrap();
        last.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").await.unwrap();
        assert!(response_head(last, Duration::from_secs(10)).await.is_some_and(|h| h.starts_with("HTTP/1.1 200")));
    });
}

/// Finding 7: one user may hold at most 2,000 watches (429 past that); the admin is not
/// bounded. Watches share what they send, so unread ones pin no copies.
#[test]
fn watches_per_user_are_bounded() {
    if !common::require("curl", &["--version"]) {
        return;
    }
    let (_dir, s) = Server::start_with_tokens("watchtoken,watcher,7,watchers\n", &[]);
    let crb = br#"{"apiVersion":"rbac.authorization.k8s.io/v1","kind":"ClusterRoleBinding","metadata":{"name":"w"},
        "roleRef":{"apiGroup":"rbac.authorization.k8s.io","kind":"ClusterRole","name":"view"},
        "subjects":[{"kind":"User","name":"watcher","apiGroup":"rbac.authorization.k8s.io"}]}"#;
    assert_eq!(
        s.curl(
            "POST",
            "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings",
            Some(crb),
            &["Content-Type: application/json"]
        )
        .0,
        201
    );
    // The binding is in force (RBAC follows its objects through a watch).
    assert!(common::wait_for(Duration::from_secs(10), || {
        s.curl_as(false, "GET", CM, None, &["Authorization: Bearer watchtoken"]).0 == 200
    }));
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async {
        let anon = connector(&s, false);
        let watch =
            format!("GET {CM}?watch=true HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer watchtoken\r\n\r\n");
        let mut open = Vec::new();
        let mut refused = None;
        for i in 0..2001 {
            let mut tls = connect(&s, &anon).await;
            tls.write_all(watch.as_bytes()).await.unwrap();
            let head = response_head(&mut tls, Duration::from_secs(10)).await.expect("answer");
            if head.starts_with("HTTP/1.1 200") {
                open.push(tls);
            } else {
                refused = Some((i, head));
                break;
            }
        }
        let (i, head) = refused.expect("the 2,001st watch is refused");
        assert_eq!(i, 2000, "{head}");
        assert!(head.starts_with("HTTP/1.1 429"), "{head}");
        // The admin still watches.
        let admin = connector(&s, true);
        let mut tls = connect(&s, &admin).await;
        tls.write_all(format!("GET {CM}?watch=true HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").as_bytes()).await.unwrap();
        assert!(response_head(&mut tls, Duration::from_secs(10)).await.unwrap().starts_with("HTTP/1.1 200"));
        // Closing one makes room for one.
        open.pop();
        let ok = common::wait_for_async(Duration::from_secs(10), || async {
            let mut tls = connect(&s, &anon).await;
            tls.write_all(watch.as_bytes()).await.unwrap();
            response_head(&mut tls, Duration::from_secs(10)).await.is_some_and(|h| h.starts_with("HTTP/1.1 200"))
        })
        .await;
        assert!(ok);
    });
}

/// HTTP/2 over TLS with a stream window of 0: the server can send headers but never a
/// byte of a body, so every answer stays open for as long as the client likes. None when
/// the server refuses the connection.
async fn stalled_h2(
    s: &Server,
) -> Option<(hyper::client::conn::http2::SendRequest<http_body_util::Empty<bytes::Bytes>>, tokio::task::JoinHandle<()>)>
{
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let mut roots = rustls::RootCertStore::empty();
    let ca = std::fs::read(s.pki("ca.crt")).unwrap();
    for c in rustls_pemfile::certs(&mut ca.as_slice()) {
        roots.add(c.unwrap()).unwrap();
    }
    let mut cfg = rustls::ClientConfig::builder().with_root_certificates(roots).with_no_client_auth();
    cfg.alpn_protocols = vec![b"h2".to_vec()];
    let addr = s.url.trim_start_matches("https://").to_string();
    let tcp = TcpStream::connect(&addr).await.ok()?;
    let name = rustls_pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(cfg)).connect(name, tcp).await.ok()?;
    let (send, conn) = hyper::client::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
        .initial_stream_window_size(0)
        .initial_connection_window_size(65_535)
        .handshake(hyper_util::rt::TokioIo::new(tls))
        .await
        .ok()?;
    let conn = tokio::spawn(async move {
        let _ = conn.await;
    });
    Some((send, conn))
}

/// The grace a new connection gets before it may be closed to make room (the server's
/// `UNAUTHENTICATED_GRACE`).
fn rkube_grace() -> Duration {
    Duration::from_secs(1)
}

/// The review's attack on the connection cap: anonymous connections whose answers can
/// never be sent (a zero window) are still the first to go when the cap is reached, so
/// they lock nobody out.
#[test]
fn stalled_anonymous_connections_do_not_lock_anyone_out() {
    if !common::require("curl", &["--version"]) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let s = Server::start_in(tmp.path(), &["--max-connections", "20"]);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async {
        let mut stalled = Vec::new();
        for _ in 0..25 {
            // Past the cap, newcomers are refused while every connection is younger than
            // the grace a new client gets to authenticate.
            let Some((mut send, conn)) = stalled_h2(&s).await else { continue };
            let req = http::Request::get(format!("{}/version", s.url)).body(http_body_util::Empty::new()).unwrap();
            // Headers come back; the body never can.
            if let Ok(Ok(resp)) = tokio::time::timeout(Duration::from_secs(5), send.send_request(req)).await {
                stalled.push((send, conn, resp));
            }
        }
        assert!(stalled.len() >= 20, "the cap is full of stalled answers: {}", stalled.len());
        tokio::time::sleep(rkube_grace() + Duration::from_millis(200)).await;
        for _ in 0..5 {
            let (code, _, body) = s.curl("GET", "/api/v1/namespaces", None, &[]);
            assert_eq!(code, 200, "the admin gets in: {body}");
        }
    });
}

/// The review's attack on watch memory: a watch whose client stops reading while the
/// object it watches changes is ended after `STALL_TIMEOUT` (60 s), and what it held is
/// let go (the server's registered-watchers gauge falls back).
#[test]
fn stalled_watches_are_ended() {
    if !common::require("curl", &["--version"]) {
        return;
    }
    let s = Server::start();
    let watchers = || {
        let (_, _, body) = s.curl("GET", "/metrics", None, &[]);
        body.lines()
            .find(|l| l.starts_with("apiserver_registered_watchers"))
            .and_then(|l| l.split_whitespace().last())
            .and_then(|n| n.parse::<f64>().ok())
            .unwrap_or(-1.0)
    };
    let cm =
        |n: usize| format!(r#"{{"metadata":{{"name":"big"}},"data":{{"a":"{n}{}"}}}}"#, "y".repeat((1 << 20) - 10));
    let json = "Content-Type: application/json";
    assert_eq!(s.curl("POST", CM, Some(cm(0).as_bytes()), &[json]).0, 201);
    let base = watchers();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async {
        let admin = connector(&s, true);
        let mut tls = connect(&s, &admin).await;
        tls.write_all(format!("GET {CM}?watch=true&resourceVersion=0 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").as_bytes())
            .await
            .unwrap();
        assert!(response_head(&mut tls, Duration::from_secs(10)).await.unwrap().starts_with("HTTP/1.1 200"));
        // More than the sockets' buffers hold, never read.
        for n in 1..=20 {
            assert_eq!(s.curl("PUT", &format!("{CM}/big"), Some(cm(n).as_bytes()), &[json]).0, 200);
        }
        assert_eq!(watchers(), base + 1.0);
        let ended = common::wait_for(Duration::from_secs(90), || watchers() == base);
        assert!(ended, "the stalled watch was ended");
        drop(tls);
    });
}

/// The second review's attack on the connection cap: one token's many connections (even
/// one that may do nothing) are closed before anyone else's, so they cannot evict the
/// admin's watch; a newcomer gets a moment to authenticate before it may be closed.
#[test]
fn one_identity_cannot_crowd_out_others() {
    if !common::require("curl", &["--version"]) {
        return;
    }
    let (_dir, s) = Server::start_with_tokens("crowdtoken,crowd,3,\n", &["--max-connections", "16"]);
    let crb = br#"{"apiVersion":"rbac.authorization.k8s.io/v1","kind":"ClusterRoleBinding","metadata":{"name":"crowd"},
        "roleRef":{"apiGroup":"rbac.authorization.k8s.io","kind":"ClusterRole","name":"view"},
        "subjects":[{"kind":"User","name":"crowd","apiGroup":"rbac.authorization.k8s.io"}]}"#;
    let json = "Content-Type: application/json";
    assert_eq!(s.curl("POST", "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings", Some(crb), &[json]).0, 201);
    assert!(common::wait_for(Duration::from_secs(5), || {
        s.curl_as(false, "GET", CM, None, &["Authorization: Bearer crowdtoken"]).0 == 200
    }));
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async {
        let admin = connector(&s, true);
        let mut watch = connect(&s, &admin).await;
        watch
            .write_all(format!("GET {CM}?watch=true&resourceVersion=0 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").as_bytes())
            .await
            .unwrap();
        assert!(response_head(&mut watch, Duration::from_secs(10)).await.unwrap().starts_with("HTTP/1.1 200"));
        // The crowd watches too, on every connection it can get, all busier and newer than
        // the admin's.
        let anon = connector(&s, false);
        let ask =
            format!("GET {CM}?watch=true HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer crowdtoken\r\n\r\n");
        let mut crowd = Vec::new();
        for _ in 0..40 {
            let mut tls = connect(&s, &anon).await;
            if tls.write_all(ask.as_bytes()).await.is_ok() {
                if let Some(h) = response_head(&mut tls, Duration::from_secs(5)).await {
                    assert!(h.starts_with("HTTP/1.1 200"), "{h}");
                    crowd.push(tls);
                }
            }
            // Past the newcomers' grace, so the crowd's own become evictable.
            tokio::time::sleep(Duration::from_millis(60)).await;
        }
        // The admin's watch is still open: it gets the next event.
        assert_eq!(s.curl("POST", CM, Some(br#"{"metadata":{"name":"seen"}}"#), &[json]).0, 201);
        let mut got = Vec::new();
        let seen = tokio::time::timeout(Duration::from_secs(10), async {
            let mut chunk = [0u8; 4096];
            loop {
                let n = watch.read(&mut chunk).await.unwrap_or(0);
                if n == 0 {
                    return false;
                }
                got.extend_from_slice(&chunk[..n]);
                if String::from_utf8_lossy(&got).contains("\"seen\"") {
                    return true;
                }
            }
        })
        .await;
        assert_eq!(seen, Ok(true), "the admin's watch survived the crowd");
    });
}
