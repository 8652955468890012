//! `kubectl port-forward` end to end: kubectl → the API server's `pods/portforward` → the
//! node agent's kubelet API (`/portForward`, SPDY `portforward.k8s.io`) → a connection made
//! inside the pod's network namespace. kubectl 1.28 speaks SPDY (relayed byte for byte);
//! 1.33 tunnels SPDY through a WebSocket (`SPDY/3.1+portforward.k8s.io`), which the API
//! server unwraps as kube-apiserver does.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::pods::{create, get, out_dir, pod_path, wait_phase};
use common::{require, Server};
use serde_json::json;

const KUBECTLS: &str = "/usr/lib/google-cloud-sdk/bin";

/// A running `kubectl port-forward`, ended (by its PID) when dropped.
struct Forward {
    child: Child,
    port: u16,
    stderr: mpsc::Receiver<String>,
}

impl Forward {
    fn start(s: &Server, v: &str, env: &[(&str, &str)], target: &str, remote: u16) -> Forward {
        let bin = format!("{KUBECTLS}/kubectl.{v}");
        assert!(require(&bin, &["version", "--client"]), "{bin} is needed");
        let mut cmd = Command::new(&bin);
        cmd.args(["-v=6", "port-forward", target, &format!(":{remote}")])
            .env("KUBECONFIG", &s.kubeconfig)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, val) in env {
            cmd.env(k, val);
        }
        let mut child = cmd.spawn().expect("kubectl port-forward");
        let (err_tx, stderr) = mpsc::channel();
        let err = child.stderr.take().expect("stderr");
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                let _ = err_tx.send(line);
            }
        });
        // "Forwarding from 127.0.0.1:PORT -> REMOTE"
        let (port_tx, port_rx) = mpsc::channel();
        let out = child.stdout.take().expect("stdout");
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                let port = line
                    .strip_prefix("Forwarding from 127.0.0.1:")
                    .and_then(|r| r.split(' ').next())
                    .and_then(|p| p.parse::<u16>().ok());
                if let Some(p) = port {
                    let _ = port_tx.send(p);
                }
            }
        });
        let mut f = Forward { child, port: 0, stderr };
        match port_rx.recv_timeout(Duration::from_secs(30)) {
            Ok(p) => f.port = p,
            Err(_) => panic!("kubectl {v} port-forward {target} never listened: {}", f.stderr_text()),
        }
        f
    }

    fn stderr_text(&self) -> String {
        let mut text = String::new();
        while let Ok(l) = self.stderr.recv_timeout(Duration::from_millis(200)) {
            text.push_str(&l);
            text.push('\n');
        }
        text
    }

    fn get(&self, path: &str) -> Option<Vec<u8>> {
        http_get(self.port, path)
    }
}

/// An HTTP/1.0 GET through a forwarded port: the body, or None when the connection closes
/// without an answer.
fn http_get(port: u16, path: &str) -> Option<Vec<u8>> {
    let mut c = TcpStream::connect(("127.0.0.1", port)).expect("connect to kubectl");
    c.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    c.write_all(format!("GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").as_bytes()).unwrap();
    let mut answer = Vec::new();
    let _ = c.read_to_end(&mut answer);
    let at = answer.windows(4).position(|w| w == b"\r\n\r\n")?;
    assert!(answer.starts_with(b"HTTP/1.0 200"), "{}", String::from_utf8_lossy(&answer[..at]));
    Some(answer[at + 4..].to_vec())
}

impl Drop for Forward {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn kubectl_port_forward_reaches_a_pod_port_over_spdy_and_the_websocket_tunnel() {
    let s = Server::start_with_node(&["--node-ip", "127.0.0.1"]);
    let (_www_tmp, www) = out_dir();
    // 3 MiB that is not text, to come back byte for byte.
    let payload: Vec<u8> = (0..3 * 1024 * 1024u32).map(|i| (i.wrapping_mul(2654435761) >> 11) as u8).collect();
    std::fs::write(www.join("blob"), &payload).unwrap();
    std::fs::write(www.join("hello"), "hello from the pod\n").unwrap();
    // The pod's server listens on its own loopback only: nothing but a connection made
    // inside its network namespace reaches it.
    let pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "web", "labels": {"app": "web"}},
        "spec": {
            "terminationGracePeriodSeconds": 2,
            "containers": [{
                "name": "main", "image": "python",
                "command": ["python3", "-m", "http.server", "8080", "--bind", "127.0.0.1", "--directory", "/www"],
                "ports": [{"containerPort": 8080, "name": "http"}],
                "readinessProbe": {"exec": {"command": ["python3", "-c",
                    "import socket; socket.create_connection(('127.0.0.1', 8080), 1)"]}, "periodSeconds": 1},
                "volumeMounts": [{"name": "www", "mountPath": "/www"}],
            }],
            "volumes": [{"name": "www", "hostPath": {"path": www.display().to_string()}}],
        },
    });
    create(&s, "/api/v1/namespaces/default/pods", &pod);
    wait_phase(&s, "web", "Running", 60);
    assert!(
        common::wait_for(Duration::from_secs(30), || get(&s, &pod_path("web"))["status"]["containerStatuses"][0]
            ["ready"]
            == true),
        "the pod's server never became ready"
    );
    let uid = get(&s, &pod_path("web"))["metadata"]["uid"].as_str().unwrap().to_string();
    create(
        &s,
        "/api/v1/namespaces/default/services",
        &json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
                "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": "http"}]}}),
    );

    type Env = &'static [(&'static str, &'static str)];
    let cases: &[(&str, Env, bool)] = &[
        ("1.28", &[], false),
        ("1.32", &[], true),
        ("1.33", &[], true),
        ("1.33", &[("KUBECTL_PORT_FORWARD_WEBSOCKETS", "false")], false),
    ];
    for (v, env, tunnel) in cases {
        let what = format!("kubectl {v}{}", if *tunnel { " (WebSocket tunnel)" } else { " (SPDY)" });
        let f = Forward::start(&s, v, env, "pod/web", 8080);
        // Several connections at once over the one session, each its own stream pair.
        let gets: Vec<_> = (0..3)
            .map(|_| {
                let port = f.port;
                std::thread::spawn(move || http_get(port, "/blob"))
            })
            .collect();
        for g in gets {
            let body = g.join().unwrap().unwrap_or_else(|| panic!("{what}: no answer"));
            assert!(body == payload, "{what}: {} bytes of {} came back, or other ones", body.len(), payload.len());
        }
        assert_eq!(f.get("/hello").as_deref(), Some(&b"hello from the pod\n"[..]), "{what}");
        let log = f.stderr_text();
        assert_eq!(log.contains("Before WebSocket Upgrade Connection"), *tunnel, "{what} took the other way: {log}");
        assert!(log.contains("/api/v1/namespaces/default/pods/web/portforward"), "{what}: {log}");
    }

    // svc/NAME: kubectl picks a pod of the Service and its targetPort (named "http").
    let f = Forward::start(&s, "1.33", &[], "svc/web", 80);
    assert_eq!(f.get("/hello").as_deref(), Some(&b"hello from the pod\n"[..]));
    drop(f);

    // The Python client's portforward: WebSocket channels, relayed to the kubelet's
    // WebSocket form of /portForward.
    let py = common::pods::python().expect("the Python kubernetes client is needed");
    let script = www.join("pf.py");
    std::fs::write(
        &script,
        r#"
import sys
from kubernetes import client, config
from kubernetes.stream import portforward
config.load_kube_config(sys.argv[1])
v1 = client.CoreV1Api()
pf = portforward(v1.connect_get_namespaced_pod_portforward, "web", "default", ports="8080,9999")
s = pf.socket(8080)
s.setblocking(True)
s.sendall(b"GET /hello HTTP/1.0\r\nHost: x\r\n\r\n")
data = b""
while True:
    chunk = s.recv(65536)
    if not chunk:
        break
    data += chunk
s.close()
print(data.split(b"\r\n\r\n", 1)[1].decode(), end="")
print(pf.error(9999))
"#,
    )
    .unwrap();
    let o = std::process::Command::new(py).arg(&script).arg(&s.kubeconfig).output().expect("python");
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{out}{}", String::from_utf8_lossy(&o.stderr));
    let refused =
        format!("error forwarding port 9999 to pod {uid}, uid : dial tcp4 127.0.0.1:9999: connect: connection refused");
    assert_eq!(out, format!("hello from the pod\n{refused}\n"));

    // A port nothing listens on: the kubelet's error reaches kubectl, which then ends (as
    // client-go does since 1.23: an error on a stream closes the connection).
    for v in ["1.28", "1.33"] {
        let mut f = Forward::start(&s, v, &[], "pod/web", 9999);
        assert_eq!(f.get("/hello"), None, "kubectl {v}");
        let status = (0..100).find_map(|_| {
            std::thread::sleep(Duration::from_millis(100));
            f.child.try_wait().ok().flatten()
        });
        let err = f.stderr_text();
        let want = format!(
            "error forwarding port 9999 to pod {uid}, uid : dial tcp4 127.0.0.1:9999: connect: connection refused"
        );
        assert!(err.contains(&want), "kubectl {v}: {err}");
        assert!(err.contains("lost connection to pod"), "kubectl {v}: {err}");
        assert!(status.is_some_and(|s| !s.success()), "kubectl {v} kept running: {status:?}");
    }
}
