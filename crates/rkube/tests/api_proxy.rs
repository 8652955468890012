//! The `proxy` subresources: `pods/proxy`, `services/proxy` (what `kubectl proxy` users open
//! in a browser) and `nodes/proxy` (seed 003's kubelet proxy API), through the real path: a
//! client → the API server → the pod's kubelet (`portForward`, inside the pod's network
//! namespace) or the node's kubelet API, with RBAC on the subresource as upstream.

mod common;

use std::process::{Command, Stdio};
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
    let mut proxy = Command::new("kubectl")
        .args(["proxy", "--port=0"])
        .env("KUBECONFIG", &s.kubeconfig)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("kubectl proxy");
    let rx = common::lines(proxy.stdout.take().unwrap());
    let line = rx.recv_timeout(Duration::from_secs(30)).unwrap_or_default();
    // "Starting to serve on 127.0.0.1:PORT"
    let addr = line.trim().rsplit(' ').next().unwrap_or("").to_string();
    let o = Command::new("curl")
        .args(["-sS", &format!("http://{addr}/api/v1/namespaces/default/services/echo:web/proxy/from-browser")])
        .output()
        .unwrap();
    let _ = proxy.kill();
    let _ = proxy.wait();
    let got = json_of(&String::from_utf8_lossy(&o.stdout));
    assert_eq!(got["path"], "/from-browser", "{line}");
}
