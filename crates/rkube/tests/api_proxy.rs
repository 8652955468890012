//! The `proxy` subresources: `pods/proxy`, `services/proxy` (what `kubectl proxy` users open
//! in a browser) and `nodes/proxy` (seed 003's kubelet proxy API), through the real path: a
//! client → the API server → the pod's kubelet (`portForward`, inside the pod's network
//! namespace) or the node's kubelet API, with RBAC on the subresource as upstream.

mod common;

use std::process::Command;
use std::time::Duration;

use common::pods::{create, get, node_name, pod_path, wait_phase};
use common::{wait_for, Server};
use serde_json::{json, Value};

/// Answers every request with what it got, as JSON: method, path with query, headers, body.
const ECHO: &str = r#"
import http.server, json
class H(http.server.BaseHTTPRequestHandler):
    def answer(self):
        n = int(self.headers.get('Content-Length') or 0)
        body = self.rfile.read(n).decode() if n else ''
        out = json.dumps({'method': self.command, 'path': self.path,
                          'headers': {k.lower(): v for k, v in self.headers.items()}, 'body': body}).encode()
        self.send_response(200)
        self.send_header('Content-Type', 'application/json')
        self.send_header('X-Echo', 'yes')
        self.send_header('Content-Length', str(len(out)))
        self.end_headers()
        self.wfile.write(out)
    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = answer
    def log_message(self, *a):
        pass
http.server.ThreadingHTTPServer(('0.0.0.0', 8080), H).serve_forever()
"#;

const TOKENS: &str = "bob-token,bob,1001,\"dev\"\n";

fn echo_pod(s: &Server) -> Value {
    let pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "echo", "labels": {"app": "echo"}},
        "spec": {
            "terminationGracePeriodSeconds": 1,
            "containers": [{
                "name": "main", "image": "python", "command": ["python3", "-c", ECHO],
                "ports": [{"containerPort": 8080, "name": "http"}],
                "readinessProbe": {"tcpSocket": {"port": 8080}, "periodSeconds": 1},
            }],
        },
    });
    create(s, "/api/v1/namespaces/default/pods", &pod);
    wait_phase(s, "echo", "Running", 60);
    let mut pod = Value::Null;
    let ready = wait_for(Duration::from_secs(30), || {
        pod = get(s, &pod_path("echo"));
        pod["status"]["containerStatuses"][0]["ready"] == true
    });
    assert!(ready, "the echo server never became ready: {pod:#}");
    pod
}

fn json_of(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

#[test]
fn proxy_subresources_reach_pods_services_and_the_kubelet() {
    let tmp = tempfile::tempdir().unwrap();
    let tokens = tmp.path().join("tokens.csv");
    std::fs::write(&tokens, TOKENS).unwrap();
    let s = Server::start_with_node(&["--node-ip", "127.0.0.1", "--token-auth-file", &tokens.display().to_string()]);
    let pod = echo_pod(&s);
    let pod_ip = pod["status"]["podIP"].as_str().unwrap().to_string();
    create(
        &s,
        "/api/v1/namespaces/default/services",
        &json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "echo"},
                "spec": {"selector": {"app": "echo"}, "ports": [{"name": "web", "port": 80, "targetPort": "http"}]}}),
    );

    // pods/proxy: the path after proxy/ (trailing slash, doubled slash, escaped query) and
    // the method, headers and body go to the pod; the caller's credentials do not.
    let (code, headers, body) = s.curl("GET", "/api/v1/namespaces/default/pods/echo/proxy/a//b/?x=1&y=%2F", None, &[]);
    assert_eq!(code, 200, "{headers}{body}");
    assert!(headers.to_ascii_lowercase().contains("x-echo: yes"), "{headers}");
    let got = json_of(&body);
    assert_eq!((got["method"].as_str(), got["path"].as_str()), (Some("GET"), Some("/a//b/?x=1&y=%2F")));
    assert!(got["headers"]["x-forwarded-for"].as_str().is_some_and(|v| v.contains("127.0.0.1")), "{got}");
    for (method, path) in [
        ("POST", "/api/v1/namespaces/default/pods/echo:8080/proxy/post"),
        ("PUT", "/api/v1/namespaces/default/pods/http:echo:http/proxy/put"),
        ("DELETE", "/api/v1/namespaces/default/services/echo:web/proxy/delete"),
        ("PATCH", "/api/v1/namespaces/default/services/echo:80/proxy/patch"),
    ] {
        let (code, _, body) = s.curl(method, path, Some(b"payload"), &["Content-Type: text/plain"]);
        assert_eq!(code, 200, "{method} {path}: {body}");
        let got = json_of(&body);
        assert_eq!(got["method"], method, "{path}");
        assert_eq!(got["body"], "payload", "{method} {path}");
        assert_eq!(got["headers"]["content-type"], "text/plain", "{method} {path}");
    }
    // No path: a redirect to the trailing slash (relative links then work).
    let (code, headers, _) = s.curl("GET", "/api/v1/namespaces/default/pods/echo/proxy?q=1", None, &[]);
    assert_eq!(code, 301);
    assert!(headers.contains("/api/v1/namespaces/default/pods/echo/proxy/?q=1"), "{headers}");

    // Failures as kube-apiserver words them.
    let status = |path: &str| {
        let (code, _, body) = s.curl("GET", path, None, &[]);
        let v = json_of(&body);
        (code, v["reason"].as_str().unwrap_or("").to_string(), v["message"].as_str().unwrap_or("").to_string())
    };
    let refused = format!("error trying to reach service: dial tcp {pod_ip}:9999: connect: connection refused");
    assert_eq!(status("/api/v1/namespaces/default/pods/echo:9999/proxy/"), (503, "ServiceUnavailable".into(), refused));
    assert_eq!(
        status("/api/v1/namespaces/default/services/echo:81/proxy/"),
        (503, "ServiceUnavailable".into(), "no service port 81 found for service \"echo\"".into())
    );
    // The service's one port has a name: no port names none of it.
    assert_eq!(
        status("/api/v1/namespaces/default/services/echo/proxy/"),
        (503, "ServiceUnavailable".into(), "no endpoints available for service \"echo\"".into())
    );
    assert_eq!(status("/api/v1/namespaces/default/pods/nope/proxy/").0, 404);
    assert_eq!(status("/api/v1/namespaces/default/pods/a:b:c:d/proxy/").1, "BadRequest");

    // nodes/proxy: the kubelet API itself (seed 003), with the API server's client certificate.
    let node = node_name(&s);
    let o = s.kubectl(&["get", "--raw", &format!("/api/v1/nodes/{node}/proxy/healthz")]);
    assert_eq!(String::from_utf8_lossy(&o.stdout), "ok", "{}", String::from_utf8_lossy(&o.stderr));
    // The kubelet's /pods: what the node runs.
    let o = s.kubectl(&["get", "--raw", &format!("/api/v1/nodes/{node}/proxy/pods")]);
    let list = json_of(&String::from_utf8_lossy(&o.stdout));
    assert_eq!(list["kind"], "PodList");
    let names: Vec<&str> =
        list["items"].as_array().unwrap().iter().filter_map(|p| p["metadata"]["name"].as_str()).collect();
    assert_eq!(names, ["echo"], "{list}");
    assert_eq!(list["items"][0]["status"]["podIP"], pod_ip.as_str());

    // RBAC on the subresource: reading pods is not proxying to them.
    s.kubectl_ok(&["create", "role", "pod-reader", "--verb=get,list", "--resource=pods"]);
    s.kubectl_ok(&["create", "rolebinding", "bob-reads", "--role=pod-reader", "--user=bob"]);
    let as_bob = |method: &str, path: &str| {
        let (code, _, body) = s.curl_as(false, method, path, None, &["Authorization: Bearer bob-token"]);
        (code, body)
    };
    let (code, body) = as_bob("GET", "/api/v1/namespaces/default/pods/echo/proxy/");
    assert_eq!(code, 403, "{body}");
    assert!(
        body.contains("User \\\"bob\\\" cannot get resource \\\"pods/proxy\\\" in API group \\\"\\\" in the namespace \\\"default\\\""),
        "{body}"
    );
    s.kubectl_ok(&["create", "role", "pod-proxy", "--verb=get", "--resource=pods/proxy"]);
    s.kubectl_ok(&["create", "rolebinding", "bob-proxies", "--role=pod-proxy", "--user=bob"]);
    let mut answer = (0, String::new());
    assert!(
        wait_for(Duration::from_secs(5), || {
            answer = as_bob("GET", "/api/v1/namespaces/default/pods/echo/proxy/who");
            answer.0 == 200
        }),
        "{answer:?}"
    );
    let got = json_of(&answer.1);
    assert!(got["headers"].get("authorization").is_none(), "the bearer token reached the pod: {got}");
    assert_eq!(as_bob("POST", "/api/v1/namespaces/default/pods/echo/proxy/who").0, 403, "create is not granted");

    // What a browser behind `kubectl proxy` opens.
    let (addr, proxy) = s.local_proxy("kubectl", &[]);
    let o = Command::new("curl")
        .args(["-sS", &format!("http://{addr}/api/v1/namespaces/default/services/echo:web/proxy/from-browser")])
        .output()
        .unwrap();
    drop(proxy);
    let got = json_of(&String::from_utf8_lossy(&o.stdout));
    assert_eq!(got["path"], "/from-browser", "{addr}");
}

/// A site: HTML pages with links (plain and gzip), redirects, a JSON echo, a WebSocket echo
/// on /ws, on 8080 and over TLS (a fresh self-signed certificate) on 8443; every answer
/// carries a CORS header.
const SITE: &str = r#"
import base64, gzip, hashlib, http.server, json, ssl, struct, subprocess, threading
PAGE = (b'<html><head><link rel="stylesheet" href="/s.css"></head><body><a href="/x?a=1">x</a> '
        b'<a href="rel">r</a> <img src="http://other.example/i.png"> <a href="http://HOST/self">s</a></body></html>')
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.1'
    def websocket(self):
        key = self.headers['Sec-WebSocket-Key'] + '258EAFA5-E914-47DA-95CA-C5AB0DC85B11'
        self.send_response(101)
        self.send_header('Upgrade', 'websocket')
        self.send_header('Connection', 'Upgrade')
        self.send_header('Sec-WebSocket-Accept', base64.b64encode(hashlib.sha1(key.encode()).digest()).decode())
        self.end_headers()
        self.wfile.flush()
        r, w = self.rfile, self.wfile
        while True:
            h = r.read(2)
            if len(h) < 2:
                return
            op, n = h[0] & 15, h[1] & 127
            if n == 126:
                n = struct.unpack('>H', r.read(2))[0]
            mask = r.read(4) if h[1] & 128 else b'\0\0\0\0'
            data = bytes(b ^ mask[i % 4] for i, b in enumerate(r.read(n)))
            if op == 8:
                w.write(b'\x88\x00'); w.flush(); return
            out = b'echo:' + data
            w.write(bytes([0x80 | op, len(out)]) + out); w.flush()
    def do_GET(self):
        if self.path == '/ws' and self.headers.get('Upgrade', '').lower() == 'websocket':
            return self.websocket()
        code, ctype, extra = 200, 'text/html; charset=utf-8', []
        page = PAGE.replace(b'HOST', (self.headers.get('Host') or '').encode())
        if self.path == '/page.html':
            body = page
        elif self.path == '/page.gz':
            body = gzip.compress(page); extra.append(('Content-Encoding', 'gzip'))
        elif self.path in ('/go', '/away'):
            code, body = 302, b''
            extra.append(('Location', '/target?x=1' if self.path == '/go' else 'http://other.example/y'))
        else:
            ctype = 'application/json'
            body = json.dumps({'path': self.path, 'tls': self.server.tls,
                               'headers': {k.lower(): v for k, v in self.headers.items()}}).encode()
        self.send_response(code)
        self.send_header('Content-Type', ctype)
        self.send_header('Content-Length', str(len(body)))
        self.send_header('Access-Control-Allow-Origin', '*')
        for k, v in extra:
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
subprocess.run(['openssl', 'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
                '-keyout', '/tmp/k.pem', '-out', '/tmp/c.pem', '-subj', '/CN=site', '-days', '1'],
               check=True, capture_output=True)
tls = http.server.ThreadingHTTPServer(('0.0.0.0', 8443), H)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain('/tmp/c.pem', '/tmp/k.pem')
tls.socket = ctx.wrap_socket(tls.socket, server_side=True)
tls.tls = True
threading.Thread(target=tls.serve_forever, daemon=True).start()
plain = http.server.ThreadingHTTPServer(('0.0.0.0', 8080), H)
plain.tls = False
plain.serve_forever()
"#;

/// A WebSocket client (the Python client's own websocket-client): sends each argument,
/// prints each answer.
const WS_CLIENT: &str = r#"
import ssl, sys, websocket
url, ca, cert, key = sys.argv[1:5]
ws = websocket.create_connection(url, sslopt={'ca_certs': ca, 'certfile': cert, 'keyfile': key})
for m in sys.argv[5:]:
    ws.send(m)
    print(ws.recv())
ws.close()
"#;

#[test]
fn proxied_pages_keep_their_links_and_https_and_websockets_go_through() {
    let py = common::pods::python().expect("the Python kubernetes client (and its websocket-client) is needed");
    let s = Server::start_with_node(&["--node-ip", "127.0.0.1"]);
    let pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "site", "labels": {"app": "site"}},
        "spec": {
            "terminationGracePeriodSeconds": 1,
            "containers": [{
                "name": "main", "image": "python", "command": ["python3", "-c", SITE],
                "ports": [{"containerPort": 8080, "name": "http"}, {"containerPort": 8443, "name": "https"}],
                "readinessProbe": {"tcpSocket": {"port": 8443}, "periodSeconds": 1},
            }],
        },
    });
    create(&s, "/api/v1/namespaces/default/pods", &pod);
    let mut got = Value::Null;
    assert!(
        wait_for(Duration::from_secs(60), || {
            got = get(&s, &pod_path("site"));
            got["status"]["containerStatuses"][0]["ready"] == true
        }),
        "the site never became ready: {got:#}"
    );
    let pod_ip = got["status"]["podIP"].as_str().unwrap().to_string();
    create(
        &s,
        "/api/v1/namespaces/default/services",
        &json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "site"},
                "spec": {"selector": {"app": "site"}, "ports": [{"name": "web", "port": 80, "targetPort": "http"}]}}),
    );
    let base = "/api/v1/namespaces/default/pods/site:8080/proxy";

    // Links to the site itself go through the proxy path; relative and foreign ones stay.
    let (code, headers, page) = s.curl("GET", &format!("{base}/page.html"), None, &[]);
    assert_eq!(code, 200, "{headers}{page}");
    let want = format!(
        "<html><head><link rel=\"stylesheet\" href=\"{base}/s.css\"></head><body><a href=\"{base}/x?a=1\">x</a> \
         <a href=\"rel\">r</a> <img src=\"http://other.example/i.png\"> <a href=\"{base}/self\">s</a></body></html>"
    );
    assert_eq!(page, want);
    assert!(!headers.to_ascii_lowercase().contains("access-control-allow-origin"), "CORS headers dropped: {headers}");
    // gzip: decoded, rewritten, encoded again.
    let tmp = tempfile::tempdir().unwrap();
    let gz = tmp.path().join("page.gz");
    let o = Command::new("curl")
        .args(["-sS", "--cacert", &s.pki("ca.crt"), "--cert", &s.pki("admin.crt"), "--key", &s.pki("admin.key")])
        .args(["-H", "Accept-Encoding: gzip", "-o"])
        .arg(&gz)
        .arg(format!("{}{base}/page.gz", s.url))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = Command::new("gzip").arg("-dc").arg(&gz).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&o.stdout), want, "{}", String::from_utf8_lossy(&o.stderr));
    // Redirects: to the site's own path through the proxy, elsewhere as they are.
    let location = |path: &str| {
        let (code, headers, _) = s.curl("GET", &format!("{base}{path}"), None, &[]);
        assert_eq!(code, 302, "{headers}");
        headers
            .lines()
            .find_map(|l| l.strip_prefix("location: ").or(l.strip_prefix("Location: ")))
            .unwrap()
            .trim()
            .to_string()
    };
    assert_eq!(location("/go"), format!("{base}/target?x=1"));
    assert_eq!(location("/away"), "http://other.example/y");
    // The path the client asked for, for backends that build their own links.
    let (_, _, body) = s.curl("GET", &format!("{base}/who/"), None, &[]);
    assert_eq!(json_of(&body)["headers"]["x-forwarded-uri"], format!("{base}/who/"));

    // https: (the pod's certificate is not verified, as kube-apiserver's proxy does not).
    let (code, _, body) = s.curl("GET", "/api/v1/namespaces/default/pods/https:site:8443/proxy/tls", None, &[]);
    assert_eq!(code, 200, "{body}");
    assert_eq!((json_of(&body)["path"].as_str(), json_of(&body)["tls"].as_bool()), (Some("/tls"), Some(true)));
    let (code, _, body) = s.curl("GET", "/api/v1/namespaces/default/pods/https:site:8080/proxy/", None, &[]);
    assert_eq!(code, 503, "TLS to a plain port: {body}");
    assert!(json_of(&body)["message"].as_str().unwrap().starts_with("error trying to reach service: "), "{body}");
    let refused = format!("error trying to reach service: dial tcp {pod_ip}:9443: connect: connection refused");
    let (_, _, body) = s.curl("GET", "/api/v1/namespaces/default/pods/https:site:9443/proxy/", None, &[]);
    assert_eq!(json_of(&body)["message"], refused.as_str());

    // A WebSocket through pods/proxy and services/proxy, both ways.
    let client = tmp.path().join("ws.py");
    std::fs::write(&client, WS_CLIENT).unwrap();
    let wss = s.url.replace("https://", "wss://");
    for path in
        ["/api/v1/namespaces/default/pods/site:8080/proxy/ws", "/api/v1/namespaces/default/services/site:web/proxy/ws"]
    {
        let o = Command::new(&py)
            .arg(&client)
            .arg(format!("{wss}{path}"))
            .args([s.pki("ca.crt"), s.pki("admin.crt"), s.pki("admin.key")])
            .args(["one", "two"])
            .output()
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&o.stdout),
            "echo:one\necho:two\n",
            "{path}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }

    // The same behind `kubectl proxy` and `rkube proxy`, as a browser opens it.
    for bin in ["kubectl", env!("CARGO_BIN_EXE_rkube")] {
        let (addr, proxy) = s.local_proxy(bin, &[]);
        let page = Command::new("curl").args(["-sS", &format!("http://{addr}{base}/page.html")]).output().unwrap();
        let ws = Command::new(&py)
            .arg(&client)
            .arg(format!("ws://{addr}/api/v1/namespaces/default/services/site:web/proxy/ws"))
            .args([s.pki("ca.crt"), s.pki("admin.crt"), s.pki("admin.key")])
            .arg("three")
            .output()
            .unwrap();
        drop(proxy);
        let page = String::from_utf8_lossy(&page.stdout);
        assert!(page.contains(&format!("<a href=\"{base}/x?a=1\">")), "{bin}: {page}");
        assert!(page.contains(&format!("<a href=\"{base}/self\">")), "{bin}: {page}");
        assert_eq!(
            String::from_utf8_lossy(&ws.stdout),
            "echo:three\n",
            "{bin}: {}",
            String::from_utf8_lossy(&ws.stderr)
        );
    }
}
