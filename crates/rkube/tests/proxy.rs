//! `rkube proxy` with the real thing on both sides: the real `rkube server` behind it, and
//! curl, kubectl and raw HTTP/1.1 in front; real `kubectl proxy` beside it with the same
//! flags, compared answer by answer.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{require, wait_for, Server};

/// A running proxy (ours or kubectl's) and the address it printed.
struct Proxy {
    child: Child,
    addr: String,
}

impl Proxy {
    fn start(cmd: Command) -> Proxy {
        Proxy::start_logging(cmd, Stdio::null())
    }

    /// As `start`, with the proxy's log (stderr) going to `log`.
    fn start_logging(mut cmd: Command, log: impl Into<Stdio>) -> Proxy {
        let mut child = cmd.stdout(Stdio::piped()).stderr(log).spawn().expect("start proxy");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).expect("start line");
        let addr = line.trim().strip_prefix("Starting to serve on ").unwrap_or_else(|| panic!("start line {line:?}"));
        Proxy { addr: addr.to_string(), child }
    }

    fn rkube(kubeconfig: &Path, flags: &[&str]) -> Proxy {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_rkube"));
        cmd.arg("proxy").arg("--port=0").args(flags).env("KUBECONFIG", kubeconfig);
        Proxy::start(cmd)
    }

    fn kubectl(kubeconfig: &Path, flags: &[&str]) -> Proxy {
        let mut cmd = Command::new("kubectl");
        cmd.arg("proxy").arg("--port=0").args(flags).env("KUBECONFIG", kubeconfig);
        Proxy::start(cmd)
    }

    fn port(&self) -> &str {
        self.addr.rsplit(':').next().unwrap_or("")
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[derive(Debug, PartialEq)]
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(eol) = b.windows(2).position(|w| w == b"\r\n") else { return out };
        let size = usize::from_str_radix(std::str::from_utf8(&b[..eol]).unwrap_or("0").trim(), 16).unwrap_or(0);
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&b[eol + 2..eol + 2 + size]);
        b = &b[eol + 2 + size + 2..];
    }
}

fn parse_reply(raw: &[u8]) -> Reply {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no header end in {:?}", String::from_utf8_lossy(raw)));
    let head = String::from_utf8_lossy(&raw[..end]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines.next().and_then(|l| l.split_whitespace().nth(1)).and_then(|c| c.parse().ok()).unwrap_or(0);
    let headers: Vec<(String, String)> =
        lines.filter_map(|l| l.split_once(':')).map(|(n, v)| (n.trim().to_string(), v.trim().to_string())).collect();
    let mut body = raw[end + 4..].to_vec();
    if headers.iter().any(|(n, v)| n.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked")) {
        body = dechunk(&body);
    }
    Reply { status, headers, body }
}

/// One HTTP/1.1 request on a fresh connection, read to the end.
fn http(addr: &str, method: &str, path: &str, host: &str, headers: &[(&str, &str)], body: &[u8]) -> Reply {
    let mut s = TcpStream::connect(addr).expect("connect to proxy");
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
    for (n, v) in headers {
        req.push_str(&format!("{n}: {v}\r\n"));
    }
    if !body.is_empty() || matches!(method, "POST" | "PUT" | "PATCH") {
        req.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    parse_reply(&raw)
}

fn get(addr: &str, path: &str) -> Reply {
    http(addr, "GET", path, "localhost", &[], b"")
}

/// What must be equal between kubectl proxy and rkube proxy: status, the headers a client
/// acts on, and the body with the per-object generated fields masked.
fn comparable(r: &Reply) -> (u16, Option<String>, Option<String>, String) {
    let body = match serde_json::from_slice::<serde_json::Value>(&r.body) {
        Ok(mut v) => {
            if let Some(m) = v.get_mut("metadata").and_then(|m| m.as_object_mut()) {
                for k in ["uid", "creationTimestamp", "resourceVersion"] {
                    m.remove(k);
                }
            }
            v.to_string()
        }
        Err(_) => r.text(),
    };
    (r.status, r.header("content-type").map(str::to_string), r.header("location").map(str::to_string), body)
}

struct Case {
    method: &'static str,
    path: &'static str,
    host: &'static str,
    body: &'static str,
}

const fn case(method: &'static str, path: &'static str, host: &'static str) -> Case {
    Case { method, path, host, body: "" }
}

const CM: &str = r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"side"},"data":{"a":"1"}}"#;

fn common_cases() -> Vec<Case> {
    vec![
        case("GET", "/", "localhost"),
        case("GET", "/api", "localhost"),
        case("GET", "/api/", "localhost"),
        case("GET", "/apis/batch/v1", "127.0.0.1"),
        case("GET", "/api/v1/namespaces/default", "localhost:8001"),
        case("GET", "/api/v1/namespaces/default/configmaps/kube-root-ca.crt", "localhost"),
        case("GET", "/api/v1/namespaces/default/configmaps/missing", "localhost"),
        case("GET", "/api/v1/pods", "localhost"),
        case("GET", "/api/v1/podtemplates", "localhost"),
        case("GET", "/api/v1/configmaps?limit=1", "localhost"),
        case("GET", "/api/v1/namespaces/default/pods/x/exec?command=ls", "localhost"),
        case("POST", "/api/v1/namespaces/default/pods/x/attach", "localhost"),
        case("GET", "/api/v1/namespaces/default/pods/x/log", "localhost"),
        case("GET", "//api", "localhost"),
        case("GET", "/api/v1/namespaces/default/configmaps/a%2Fb", "localhost"),
        case("GET", "/api/v1/namespaces/default/services/s/proxy/q/%2F//x", "localhost"),
        case("GET", "//api/%2F", "localhost"),
        case("GET", "/api/./v1?x=1", "localhost"),
        case("POST", "/api//v1", "localhost"),
        case("HEAD", "/api/../api", "localhost"),
        case("GET", "/healthz", "localhost"),
        case("GET", "/nonexistent", "localhost"),
        case("GET", "/custom/api", "localhost"),
        case("GET", "/api", "evil.example"),
        case("GET", "/api", "evil.example:8001"),
        case("GET", "/api", "[::1]"),
        case("GET", "/api", "[::1]:8001"),
        case("GET", "/api", "localhost.evil.example"),
        case("GET", "/api", "127.0.0.1:1"),
        Case { method: "POST", path: "/api/v1/namespaces/default/configmaps?dryRun=All", host: "localhost", body: CM },
        Case {
            method: "PUT",
            path: "/api/v1/namespaces/default/configmaps/side?dryRun=All",
            host: "localhost",
            body: CM,
        },
        case("DELETE", "/api/v1/namespaces/default/configmaps/missing", "localhost"),
        case("GET", "/static", "localhost"),
        case("GET", "/files", "localhost"),
        case("GET", "/files/", "localhost"),
        case("GET", "/files/a.txt", "localhost"),
        case("HEAD", "/files/a.txt", "localhost"),
        case("GET", "/files/a.txt/", "localhost"),
        case("GET", "/files/page.html", "localhost"),
        case("GET", "/files/sub", "localhost"),
        case("GET", "/files/sub/", "localhost"),
        case("GET", "/files/sub/index.html?q=1", "localhost"),
        case("GET", "/files/missing", "localhost"),
        case("GET", "/files/../etc/passwd", "localhost"),
    ]
}

/// The same flags on both proxies, the same requests, the same answers.
#[test]
fn side_by_side_with_kubectl_proxy() {
    if !require("kubectl", &["version", "--client"]) {
        return;
    }
    let s = Server::start();
    let www = tempfile::tempdir().unwrap();
    std::fs::write(www.path().join("a.txt"), "hello\n").unwrap();
    std::fs::write(www.path().join("page.html"), "<html><body>hi</body></html>").unwrap();
    std::fs::create_dir(www.path().join("sub")).unwrap();
    std::fs::write(www.path().join("sub/index.html"), "<!doctype html><p>index</p>").unwrap();
    std::fs::create_dir(www.path().join("empty")).unwrap();
    let www_flag = format!("--www={}", www.path().display());
    let flag_sets: Vec<Vec<&str>> = vec![
        vec![],
        // Seed 003's two examples.
        vec!["--reject-paths=^/api/v1/pod"],
        vec![r"--accept-hosts=^localhost$, ^127\.0\.0\.1$,^\[::1\]$"],
        vec!["--api-prefix=/custom/"],
        vec!["--api-prefix=/api/"],
        vec!["--reject-methods=POST,PUT,PATCH"],
        vec!["--accept-paths=^/api/v1/namespaces/default"],
        vec!["--accept-hosts=^.*$", "--reject-paths="],
        vec!["--disable-filter"],
        vec![&www_flag, "--www-prefix=/files/"],
    ];
    let mut compared = 0;
    for flags in &flag_sets {
        let theirs = Proxy::kubectl(&s.kubeconfig, flags);
        let ours = Proxy::rkube(&s.kubeconfig, flags);
        for c in common_cases() {
            let a = http(&theirs.addr, c.method, c.path, c.host, &[], c.body.as_bytes());
            let b = http(&ours.addr, c.method, c.path, c.host, &[], c.body.as_bytes());
            assert_eq!(
                comparable(&a),
                comparable(&b),
                "flags {flags:?}: {} {} (Host {}): kubectl proxy vs rkube proxy",
                c.method,
                c.path,
                c.host
            );
            compared += 1;
        }
    }
    eprintln!("compared {compared} answers");
}

#[test]
fn curl_and_kubectl_through_the_proxy() {
    if !require("kubectl", &["version", "--client"]) || !require("curl", &["--version"]) {
        return;
    }
    let s = Server::start();
    // Seed 003: `kubectl proxy --reject-paths="^/api/v1/pod" --port=8080 --v=1`.
    let p = Proxy::rkube(&s.kubeconfig, &["--reject-paths=^/api/v1/pod", "--v=1"]);
    let curl = |path: &str| {
        let out = Command::new("curl").args(["-s", &format!("http://localhost:{}{path}", p.port())]).output().unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert_eq!(curl("/api/v1/pods"), "Forbidden\n");
    assert!(curl("/api/v1/configmaps").contains("\"kind\": \"ConfigMapList\""));
    assert!(curl("/api/").contains("\"kind\": \"APIVersions\""));
    drop(p);

    // kubectl with no kubeconfig of its own, through the proxy (seed 001's curl-then-kubectl).
    let p = Proxy::rkube(&s.kubeconfig, &[]);
    let server = format!("--server=http://127.0.0.1:{}", p.port());
    let kubectl = |args: &[&str]| {
        Command::new("kubectl").arg("--kubeconfig=/dev/null").arg(&server).args(args).output().expect("kubectl")
    };
    let watchers = s.registered_watchers();
    let mut watch = Command::new("kubectl")
        .arg("--kubeconfig=/dev/null")
        .arg(&server)
        .args(["get", "pods", "-w", "--output-watch-events"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // The watch is established (the server counts it) before the pod is created.
    assert!(
        wait_for(Duration::from_secs(60), || s.registered_watchers() > watchers),
        "kubectl get -w through the proxy did not start watching"
    );
    let out = kubectl(&["run", "through-proxy", "--image=busybox", "--restart=Never"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = kubectl(&["get", "pod", "through-proxy", "-o", "jsonpath={.spec.containers[0].image}"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "busybox");
    let out = kubectl(&["delete", "pod", "through-proxy"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // The watch stream flows through as events happen.
    let reader = BufReader::new(watch.stdout.take().unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in reader.lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut seen = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !seen.iter().any(|l: &String| l.starts_with("DELETED") && l.contains("through-proxy")) {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok(l) => seen.push(l),
            Err(_) => break,
        }
    }
    let _ = watch.kill();
    let _ = watch.wait();
    assert!(seen.iter().any(|l| l.starts_with("ADDED") && l.contains("through-proxy")), "{seen:?}");
    assert!(seen.iter().any(|l| l.starts_with("DELETED") && l.contains("through-proxy")), "{seen:?}");
}

/// The proxy's credentials are the ones the API server sees, whatever the client sends
/// (kubectl proxy forwards a client's own Authorization header, and client-go then adds
/// none of its own; we do not, on purpose). The proxy authenticates with a bearer token
/// here, so a forwarded client header would replace it: the server would see the client's
/// identity, or none, instead of the proxy's.
#[test]
fn client_authorization_is_never_forwarded() {
    let (_tokens, s) = Server::start_with_tokens(
        "proxy-token,proxy-user,proxy-uid,\"proxy-group\"\nclient-token,client-user,client-uid,\"client-group\"\n",
        &[],
    );
    let review = r#"{"apiVersion":"authentication.k8s.io/v1","kind":"SelfSubjectReview"}"#;
    let path = "/apis/authentication.k8s.io/v1/selfsubjectreviews";
    let who = |status: u16, body: &[u8]| -> String {
        let v: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
        format!("{status} {} {}", v["status"]["userInfo"]["username"], v["status"]["userInfo"]["groups"])
    };
    // Sent straight to the server, the client's headers are another identity or none.
    let basic_client = "Basic Y2xpZW50LXVzZXI6Y2xpZW50LXRva2Vu"; // client-user:client-token
    let cases = [None, Some("Bearer client-token"), Some("Bearer not-a-token"), Some(basic_client), Some("Basic YTpi")];
    for auth in cases.iter().flatten() {
        let (code, _, body) = s.curl_as(
            false,
            "POST",
            path,
            Some(review.as_bytes()),
            &["Content-Type: application/json", &format!("Authorization: {auth}")],
        );
        let direct = who(code, body.as_bytes());
        assert!(!direct.contains("proxy-user"), "{auth} sent directly: {direct}");
    }
    let (code, _, body) = s.curl_as(
        false,
        "POST",
        path,
        Some(review.as_bytes()),
        &["Content-Type: application/json", "Authorization: Bearer client-token"],
    );
    assert!(who(code, body.as_bytes()).starts_with("201 \"client-user\""), "{}", who(code, body.as_bytes()));

    let none = tempfile::tempdir().unwrap();
    let p = Proxy::rkube(
        &none.path().join("none"),
        &[
            &format!("--server={}", s.url),
            &format!("--certificate-authority={}", s.pki("ca.crt")),
            "--token=proxy-token",
        ],
    );
    for auth in cases {
        let headers: Vec<(&str, &str)> = auth.map(|a| vec![("Authorization", a)]).unwrap_or_default();
        let r = http(&p.addr, "POST", path, "localhost", &headers, review.as_bytes());
        assert_eq!(
            who(r.status, &r.body),
            "201 \"proxy-user\" [\"proxy-group\",\"system:authenticated\"]",
            "{auth:?} through the proxy: {}",
            r.text()
        );
    }
}

/// Seed 000/001's ambassador: in a pod (here: a private mount namespace with the kubelet's
/// service-account layout at the real path), no flags at all; the projected token rotates
/// while a watch runs through the proxy and the proxy keeps working after the old token dies.
#[test]
fn ambassador_in_cluster_config_and_token_rotation() {
    if !require("unshare", &["--version"]) || !require("kubectl", &["version", "--client"]) {
        return;
    }
    let s = Server::start();
    s.kubectl_ok(&["create", "namespace", "amb"]);
    s.kubectl_ok(&["create", "serviceaccount", "ambassador", "-n", "amb"]);
    s.kubectl_ok(&[
        "create",
        "rolebinding",
        "amb-edit",
        "--clusterrole=edit",
        "--serviceaccount=amb:ambassador",
        "-n",
        "amb",
    ]);
    s.kubectl_ok(&["create", "secret", "generic", "bound-a", "-n", "amb"]);
    s.kubectl_ok(&["create", "secret", "generic", "bound-b", "-n", "amb"]);
    let token = |secret: &str| {
        s.kubectl_ok(&[
            "create",
            "token",
            "ambassador",
            "-n",
            "amb",
            "--bound-object-kind=Secret",
            &format!("--bound-object-name={secret}"),
        ])
        .trim()
        .to_string()
    };
    // The kubelet's atomic writer layout: a timestamped directory, `..data` pointing at it,
    // and each file a symlink through `..data`.
    let sa = tempfile::tempdir().unwrap();
    let write_generation = |gen: &str, tok: &str| {
        let dir = sa.path().join(format!("..{gen}"));
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join("token"), tok).unwrap();
        std::fs::copy(s.pki("ca.crt"), dir.join("ca.crt")).unwrap();
        std::fs::write(dir.join("namespace"), "amb").unwrap();
        let tmp = sa.path().join("..data_tmp");
        std::os::unix::fs::symlink(format!("..{gen}"), &tmp).unwrap();
        std::fs::rename(&tmp, sa.path().join("..data")).unwrap();
        for f in ["token", "ca.crt", "namespace"] {
            let link = sa.path().join(f);
            if std::fs::symlink_metadata(&link).is_err() {
                std::os::unix::fs::symlink(format!("..data/{f}"), &link).unwrap();
            }
        }
    };
    let old_token = token("bound-a");
    write_generation("2026_11_24_10_00_00.1", &old_token);

    let port = s.url.rsplit(':').next().unwrap().to_string();
    let script = format!(
        "mount -t tmpfs tmpfs /run && mkdir -p /run/secrets/kubernetes.io/serviceaccount && \
         mount --bind {} /run/secrets/kubernetes.io/serviceaccount && exec {} proxy --port=0",
        sa.path().display(),
        env!("CARGO_BIN_EXE_rkube")
    );
    let mut cmd = Command::new("unshare");
    cmd.args(["--mount", "--propagation", "private", "sh", "-c", &script])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", sa.path())
        .env("RKUBE_LOG", "info")
        .env("KUBERNETES_SERVICE_HOST", "127.0.0.1")
        .env("KUBERNETES_SERVICE_PORT", &port);
    let logs = tempfile::tempdir().unwrap();
    let log_path = logs.path().join("proxy.log");
    let p = Proxy::start_logging(cmd, std::fs::File::create(&log_path).unwrap());
    let log = || std::fs::read_to_string(&log_path).unwrap_or_default();
    let pods = "/api/v1/namespaces/amb/pods";
    assert_eq!(get(&p.addr, pods).status, 200, "in-cluster config with the pod's token");
    assert_eq!(get(&p.addr, "/api/v1/namespaces/default/pods").status, 403, "RBAC applies to the pod's identity");

    // A watch through the proxy, read on a thread, established (the server counts it)
    // before the token rotates, so it runs on the old token.
    let watchers = s.registered_watchers();
    let mut w = TcpStream::connect(&p.addr).unwrap();
    write!(w, "GET {pods}?watch=1 HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let mut wr = w.try_clone().unwrap();
    std::thread::spawn(move || {
        let mut buf = [0u8; 65536];
        while let Ok(n) = wr.read(&mut buf) {
            if n == 0 || tx.send(String::from_utf8_lossy(&buf[..n]).into_owned()).is_err() {
                break;
            }
        }
    });

    assert!(wait_for(Duration::from_secs(60), || s.registered_watchers() > watchers), "the watch did not open");

    // Rotate as the kubelet does (the old token stays valid for a while): not one request
    // fails while the proxy picks up the new file (its log says when).
    write_generation("2026_11_24_10_50_00.2", &token("bound-b"));
    let switched = wait_for(Duration::from_secs(60), || {
        let r = get(&p.addr, pods);
        assert_eq!(r.status, 200, "a request failed during the rotation: {}", r.text());
        log().contains("bearer token file changed; using the new token")
    });
    assert!(switched, "the proxy did not re-read the rotated token file; its log:\n{}", log());
    // Then the old token dies: the server refuses it from now on, and the proxy, which
    // switched, is not refused.
    let direct = |tok: &str| s.curl_as(false, "GET", pods, None, &[&format!("Authorization: Bearer {tok}")]).0;
    assert_eq!(direct(&old_token), 200, "the old token is still good before its Secret goes");
    s.kubectl_ok(&["delete", "secret", "bound-a", "-n", "amb"]);
    assert_eq!(direct(&old_token), 401, "the old token is refused once its Secret is gone");
    let r = get(&p.addr, pods);
    assert_eq!(r.status, 200, "the proxy still sent the old token: {}", r.text());
    // The watch opened with the old token kept running and sees new events.
    let pod = r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"after-rotation"},"spec":{"automountServiceAccountToken":false,"containers":[{"name":"c","image":"busybox"}]}}"#;
    let r = http(&p.addr, "POST", pods, "localhost", &[("Content-Type", "application/json")], pod.as_bytes());
    assert_eq!(r.status, 201, "{}", r.text());
    let mut streamed = String::new();
    let got = wait_for(Duration::from_secs(10), || {
        while let Ok(chunk) = rx.try_recv() {
            streamed.push_str(&chunk);
        }
        streamed.contains("after-rotation")
    });
    assert!(got, "watch through the proxy saw: {streamed}");
    drop(w);
}

/// The API server goes away and comes back on the same address.
#[test]
fn upstream_down_is_502_and_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Server::start_in(dir.path(), &[]);
    let listen = s.url.trim_start_matches("https://").to_string();
    let p = Proxy::rkube(&s.kubeconfig, &[]);
    assert_eq!(get(&p.addr, "/api").status, 200);
    s.kill9();
    let r = get(&p.addr, "/api");
    assert_eq!(r.status, 502, "{}", r.text());
    assert!(r.text().contains("is unreachable") && r.text().contains(&listen), "{}", r.text());
    assert_eq!(r.header("content-type"), Some("text/plain; charset=utf-8"));
    // Same data directory (same CA and admin certificate), same port.
    let mut back = Command::new(env!("CARGO_BIN_EXE_rkube"))
        .args(["server", "--listen", &listen, "--data-dir"])
        .arg(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let ok = wait_for(Duration::from_secs(15), || get(&p.addr, "/api").status == 200);
    let _ = back.kill();
    let _ = back.wait();
    assert!(ok, "the proxy did not recover when the API server came back");
}

/// A client that goes away mid-stream frees the upstream watch.
#[test]
fn client_disconnect_frees_the_upstream_watch() {
    if !require("curl", &["--version"]) {
        return;
    }
    let s = Server::start();
    let p = Proxy::rkube(&s.kubeconfig, &[]);
    let base = s.registered_watchers();
    let mut clients = Vec::new();
    for _ in 0..3 {
        let mut c = TcpStream::connect(&p.addr).unwrap();
        write!(c, "GET /api/v1/configmaps?watch=1 HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
        clients.push(c);
    }
    assert!(wait_for(Duration::from_secs(10), || s.registered_watchers() == base + 3), "watches did not open");
    clients.clear();
    assert!(
        wait_for(Duration::from_secs(10), || s.registered_watchers() == base),
        "upstream watches still open after the clients left: {}",
        s.registered_watchers()
    );
}

/// An upgrade-capable upstream that shows what the proxy forwards of an upgrade (the real
/// exec and port-forward through the proxy are in `tests/exec.rs`): answers 101 naming the
/// request's headers in `X-Seen-Headers`, and
/// echoes upper-cased; any other request gets back the request line, headers and the
/// proxy's source port, as JSON, on a keep-alive connection.
const ECHO_UPSTREAM: &str = r#"
import json, socket, sys, threading
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", 0)); s.listen(16)
print(s.getsockname()[1], flush=True)
def handle(c):
    f = c.makefile("rb")
    while True:
        line = f.readline().decode().strip()
        if not line:
            break
        headers = []
        while True:
            h = f.readline()
            if h in (b"\r\n", b"\n", b""):
                break
            headers.append(h.decode().strip())
        low = {h.split(":", 1)[0].lower(): h.split(":", 1)[1].strip() for h in headers}
        if "upgrade" in low:
            c.sendall(("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: %s\r\nX-Stream-Protocol-Version: v4.channel.k8s.io\r\nX-Seen-Headers: %s\r\n\r\n" % (low["upgrade"], ",".join(sorted(low)))).encode())
            while True:
                data = f.read1(65536)
                if not data:
                    break
                c.sendall(data.upper())
            break
        f.read(int(low.get("content-length", "0")))
        body = json.dumps({"line": line, "headers": headers, "peer_port": c.getpeername()[1]}).encode()
        c.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
    c.close()
while True:
    c, _ = s.accept()
    threading.Thread(target=handle, args=(c,), daemon=True).start()
"#;

struct Echo(Child, String);

impl Drop for Echo {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn echo_upstream() -> Echo {
    let mut child = Command::new("python3")
        .args(["-c", ECHO_UPSTREAM])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("python3");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    Echo(child, format!("http://127.0.0.1:{}", line.trim()))
}

/// Sends an upgrade request on a fresh connection and reads the response head (up to the
/// blank line, byte by byte so no upgraded bytes are consumed); returns it lower-cased.
fn upgrade_head(addr: &str, request: &str) -> (TcpStream, String) {
    let mut c = TcpStream::connect(addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    c.write_all(request.as_bytes()).unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(c.read(&mut byte).unwrap(), 1, "closed in the response head: {:?}", String::from_utf8_lossy(&head));
        head.push(byte[0]);
    }
    (c, String::from_utf8_lossy(&head).to_ascii_lowercase())
}

#[test]
fn upgrades_and_hop_by_hop_headers() {
    if !require("python3", &["--version"]) {
        return;
    }
    let echo = echo_upstream();
    let none = tempfile::tempdir().unwrap();
    let kubeconfig = none.path().join("none");
    let p = Proxy::rkube(&kubeconfig, &[&format!("--server={}", echo.1)]);

    // Plain request: hop-by-hop headers and the client's credentials stop at the proxy
    // (which has none of its own for a plain-HTTP server, so any Authorization the echo
    // sees is the client's).
    for auth in ["Bearer client-secret", "Basic YTpi"] {
        let r = http(
            &p.addr,
            "GET",
            "/api/v1/namespaces/a/pods/p?x=1",
            "localhost",
            &[
                ("Authorization", auth),
                ("Proxy-Authorization", "Basic x"),
                ("Connection", "close, X-Hop"),
                ("X-Hop", "1"),
                ("Keep-Alive", "timeout=5"),
                ("X-Kept", "yes"),
            ],
            b"",
        );
        assert_eq!(r.status, 200, "{}", r.text());
        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(v["line"], "GET /api/v1/namespaces/a/pods/p?x=1 HTTP/1.1");
        let sent: Vec<String> =
            v["headers"].as_array().unwrap().iter().map(|h| h.as_str().unwrap().to_ascii_lowercase()).collect();
        for gone in ["authorization", "proxy-authorization", "x-hop", "keep-alive"] {
            assert!(!sent.iter().any(|h| h.starts_with(&format!("{gone}:"))), "{auth}: {gone} forwarded: {sent:?}");
        }
        assert!(sent.iter().any(|h| h == "x-kept: yes"), "{sent:?}");
        assert!(sent.iter().any(|h| h == "x-forwarded-for: 127.0.0.1"), "{sent:?}");
        assert!(sent.iter().any(|h| h.starts_with("host: 127.0.0.1:")), "{sent:?}");
    }
    // On an upgrade the echo names the headers it got in its 101.
    let seen_headers = |head: &str| -> Vec<String> {
        let line = head.lines().find_map(|l| l.strip_prefix("x-seen-headers:")).unwrap_or_else(|| panic!("{head}"));
        line.trim().split(',').map(str::to_string).collect()
    };

    // Sequential requests reuse one upstream connection.
    let ports: std::collections::BTreeSet<u64> = (0..5)
        .map(|_| {
            let r = get(&p.addr, "/api");
            serde_json::from_slice::<serde_json::Value>(&r.body).unwrap()["peer_port"].as_u64().unwrap()
        })
        .collect();
    assert_eq!(ports.len(), 1, "upstream connections were not reused: {ports:?}");

    // A server URL with a path: ignored by default (as kubectl, with a warning), appended
    // with --append-server-path.
    let line = |flags: &[&str]| {
        let p = Proxy::rkube(&kubeconfig, flags);
        let r = get(&p.addr, "/api/v1?x=1");
        serde_json::from_slice::<serde_json::Value>(&r.body).unwrap()["line"].as_str().unwrap().to_string()
    };
    let with_path = format!("--server={}/base/", echo.1);
    assert_eq!(line(&[&with_path]), "GET /api/v1?x=1 HTTP/1.1");
    assert_eq!(line(&[&with_path, "--append-server-path"]), "GET /base/api/v1?x=1 HTTP/1.1");

    // Port-forward style upgrade (allowed by the default filter): 101, then bytes both ways.
    let (mut c, head) = upgrade_head(
        &p.addr,
        "POST /api/v1/namespaces/a/pods/p/portforward HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\nX-Stream-Protocol-Version: portforward.k8s.io\r\nAuthorization: Basic YTpi\r\nProxy-Authorization: Basic x\r\nX-Kept: yes\r\nContent-Length: 0\r\n\r\n",
    );
    assert!(head.starts_with("http/1.1 101"), "{head}");
    let seen = seen_headers(&head);
    assert!(seen.contains(&"x-kept".to_string()) && seen.contains(&"upgrade".to_string()), "{seen:?}");
    for gone in ["authorization", "proxy-authorization"] {
        assert!(!seen.contains(&gone.to_string()), "{gone} forwarded on a port-forward upgrade: {seen:?}");
    }
    assert!(
        head.contains("upgrade: spdy/3.1") && head.contains("x-stream-protocol-version: v4.channel.k8s.io"),
        "{head}"
    );
    for msg in ["hello", "second frame"] {
        c.write_all(msg.as_bytes()).unwrap();
        let mut got = vec![0u8; msg.len()];
        c.read_exact(&mut got).unwrap();
        assert_eq!(got, msg.to_uppercase().as_bytes());
    }
    drop(c);

    // Exec is an upgrade too, and the default filter refuses it before it goes anywhere.
    let r = http(
        &p.addr,
        "POST",
        "/api/v1/namespaces/a/pods/p/exec?command=sh",
        "localhost",
        &[("Connection", "Upgrade"), ("Upgrade", "websocket")],
        b"",
    );
    assert_eq!((r.status, r.text().as_str()), (403, "Forbidden\n"));

    // With the exec rule lifted, a WebSocket exec upgrade passes through like port-forward.
    let open = Proxy::rkube(&kubeconfig, &[&format!("--server={}", echo.1), "--reject-paths="]);
    let (mut c, head) = upgrade_head(
        &open.addr,
        "GET /api/v1/namespaces/a/pods/p/exec?command=sh&stdin=true HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: v5.channel.k8s.io\r\nAuthorization: Bearer client-secret\r\n\r\n",
    );
    assert!(head.starts_with("http/1.1 101") && head.contains("upgrade: websocket"), "{head}");
    let seen = seen_headers(&head);
    assert!(seen.contains(&"sec-websocket-key".to_string()), "{seen:?}");
    assert!(!seen.contains(&"authorization".to_string()), "authorization forwarded on a WebSocket upgrade: {seen:?}");
    c.write_all(b"ws bytes").unwrap();
    let mut got = [0u8; 8];
    c.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"WS BYTES");
}

#[test]
fn unix_socket_flags_and_bad_input() {
    if !require("curl", &["--version"]) {
        return;
    }
    let s = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("proxy.sock");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_rkube"));
    cmd.arg("proxy").arg("-u").arg(&sock).env("KUBECONFIG", &s.kubeconfig);
    let p = Proxy::start(cmd);
    assert_eq!(p.addr, sock.display().to_string());
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&sock).unwrap().permissions().mode() & 0o777, 0o700, "only the user may connect");
    let out =
        Command::new("curl").arg("-s").arg("--unix-socket").arg(&sock).arg("http://localhost/api").output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("APIVersions"));
    drop(p);

    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_rkube"))
            .arg("proxy")
            .args(args)
            .env("KUBECONFIG", &s.kubeconfig)
            .output()
            .unwrap()
    };
    let out = run(&["-u", "/tmp/x.sock", "-p", "9000"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot set --unix-socket and --port at the same time"));
    let out = run(&["--port=0", "--accept-paths=("]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--accept-paths") && err.contains("regular expression"), "{err}");
    let out = run(&["--port=0", "--keepalive=ten"]);
    assert!(!out.status.success());

    // Malformed requests are a 400 and do not take the proxy down.
    let p = Proxy::rkube(&s.kubeconfig, &[]);
    for garbage in [
        &b"GARBAGE\r\n\r\n"[..],
        b"GET /api HTTP/1.1\r\nHost: localhost\r\nBad Header\r\n\r\n",
        b"GET / HTTP/1.1\r\n\r\n",
    ] {
        let mut c = TcpStream::connect(&p.addr).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        c.write_all(garbage).unwrap();
        let mut raw = Vec::new();
        let _ = c.read_to_end(&mut raw);
        let text = String::from_utf8_lossy(&raw);
        assert!(text.starts_with("HTTP/1.1 400"), "{:?} -> {text:?}", String::from_utf8_lossy(garbage));
    }
    assert_eq!(get(&p.addr, "/a%zz").status, 400);
    assert_eq!(get(&p.addr, "/api").status, 200);
}

/// A kubeconfig whose user is an exec credential plugin (as with GKE, EKS, AKS): the plugin
/// runs at start-up, its token is used, it runs again once the token expires, and its new
/// token is then kept until that one expires.
#[test]
fn exec_credential_plugin() {
    if !require("kubectl", &["version", "--client"]) {
        return;
    }
    let s = Server::start();
    s.kubectl_ok(&["create", "serviceaccount", "plugin"]);
    s.kubectl_ok(&[
        "create",
        "clusterrolebinding",
        "plugin-view",
        "--clusterrole=view",
        "--serviceaccount=default:plugin",
    ]);
    let token = s.kubectl_ok(&["create", "token", "plugin"]).trim().to_string();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    let plugin = dir.path().join("plugin.sh");
    // The token lives 2 s until the test creates `long`, then an hour: the short one is
    // sure to expire while the proxy runs (however slow the machine), the long one sure
    // not to before the test ends. Each run is recorded in `runs`.
    std::fs::write(
        &plugin,
        format!(
            "#!/bin/sh\necho run >> {d}/runs\nprintf '%s' \"$KUBERNETES_EXEC_INFO\" > {d}/info\n\
             life='+2 seconds'; [ -e {d}/long ] && life='+1 hour'\n\
             printf '{{\"apiVersion\":\"client.authentication.k8s.io/v1\",\"kind\":\"ExecCredential\",\"status\":{{\"token\":\"%s\",\"expirationTimestamp\":\"%s\"}}}}' \
             {token} \"$(date -u -d \"$life\" +%Y-%m-%dT%H:%M:%SZ)\"\n"
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&plugin, std::fs::Permissions::from_mode(0o755)).unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: c\ncontexts:\n- name: c\n  context: {{cluster: k, user: u}}\n\
             clusters:\n- name: k\n  cluster: {{server: \"{}\", certificate-authority: \"{}\"}}\n\
             users:\n- name: u\n  user:\n    exec:\n      apiVersion: client.authentication.k8s.io/v1\n      command: {}\n      interactiveMode: Never\n      provideClusterInfo: true\n",
            s.url,
            s.pki("ca.crt"),
            plugin.display()
        ),
    )
    .unwrap();
    let p = Proxy::rkube(&kubeconfig, &[]);
    let runs = || std::fs::read_to_string(dir.path().join("runs")).unwrap_or_default().lines().count();
    assert_eq!(runs(), 1, "the plugin runs once at start-up");
    std::fs::write(dir.path().join("long"), "").unwrap();
    let info: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("info")).unwrap()).unwrap();
    assert_eq!(info["spec"]["interactive"], false);
    assert_eq!(info["spec"]["cluster"]["server"], s.url.as_str());
    let r = get(&p.addr, "/api/v1/namespaces/default/configmaps");
    assert_eq!(r.status, 200, "{}", r.text());
    let r = http(&p.addr, "DELETE", "/api/v1/namespaces/default/configmaps/kube-root-ca.crt", "localhost", &[], b"");
    assert_eq!(r.status, 403, "the plugin's identity (view only) is used: {}", r.text());
    assert!(r.text().contains("system:serviceaccount:default:plugin"), "{}", r.text());
    // Once the first token has expired a request runs the plugin again; no request fails.
    let rerun = wait_for(Duration::from_secs(60), || {
        assert_eq!(get(&p.addr, "/api/v1/namespaces/default/configmaps").status, 200);
        runs() >= 2
    });
    assert!(rerun, "the plugin did not run again after its token expired");
    // The new token (an hour) is kept: more requests do not run the plugin.
    for _ in 0..5 {
        assert_eq!(get(&p.addr, "/api/v1/namespaces/default/configmaps").status, 200);
    }
    assert_eq!(runs(), 2, "the plugin ran again while its token was still valid");
}
