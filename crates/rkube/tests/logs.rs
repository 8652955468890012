//! `kubectl logs` end to end over the real path: kubectl → the API server's `pods/log` → the
//! node agent's kubelet API (`/containerLogs`, HTTPS, authenticated and authorized as the
//! kubelet does it) → the container's CRI-format log file.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::pods::get;
use common::{wait_for, Server};
use serde_json::{json, Value};

const TOKENS: &str = "bob-token,bob,1001,\"dev\"\n";

fn start() -> (tempfile::TempDir, Server) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let tokens = tmp.path().join("tokens.csv");
    std::fs::write(&tokens, TOKENS).expect("tokens");
    let tokens = tokens.display().to_string();
    let s = Server::start_with_node(&["--node-ip", "127.0.0.1", "--token-auth-file", &tokens]);
    (tmp, s)
}

fn create_pod(s: &Server, pod: Value) {
    let body = pod.to_string();
    let (code, _, out) =
        s.curl("POST", "/api/v1/namespaces/default/pods", Some(body.as_bytes()), &["Content-Type: application/json"]);
    assert_eq!(code, 201, "create pod: {out}");
}

fn shell_pod(name: &str, containers: &[(&str, &str)], extra: Value) -> Value {
    let containers: Vec<Value> = containers
        .iter()
        .map(|(c, script)| {
            json!({"name": c, "image": "busybox", "command": ["/bin/sh", "-c", script],
                   "volumeMounts": [{"name": "cache", "mountPath": "/cache"}]})
        })
        .collect();
    let mut pod = json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "terminationGracePeriodSeconds": 1,
            "containers": containers,
            "volumes": [{"name": "cache", "emptyDir": {}}],
        },
    });
    for (k, v) in extra.as_object().cloned().unwrap_or_default() {
        pod["spec"][k] = v;
    }
    pod
}

fn wait_running(s: &Server, name: &str) -> Value {
    let mut pod = Value::Null;
    let ok = wait_for(Duration::from_secs(60), || {
        pod = get(s, &format!("/api/v1/namespaces/default/pods/{name}"));
        pod["status"]["phase"] == "Running"
            && pod["status"]["containerStatuses"]
                .as_array()
                .is_some_and(|a| a.iter().all(|c| c["state"]["running"].is_object()))
    });
    assert!(ok, "pod {name} never ran: {pod:#}");
    pod
}

fn kubectl(s: &Server, args: &[&str]) -> (bool, String, String) {
    let out = s.kubectl(args);
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The port and address the Node advertises for its kubelet API.
fn kubelet_endpoint(s: &Server) -> String {
    let nodes = get(s, "/api/v1/nodes");
    let node = &nodes["items"][0];
    let port = node["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"].as_u64().unwrap_or(0);
    let ip = node["status"]["addresses"]
        .as_array()
        .and_then(|a| a.iter().find(|x| x["type"] == "InternalIP"))
        .and_then(|x| x["address"].as_str())
        .unwrap_or("")
        .to_string();
    assert!(port > 0 && port != 10250, "a free port is advertised: {node:#}");
    assert_eq!(ip, "127.0.0.1");
    format!("https://{ip}:{port}")
}

/// curl to the kubelet API (its certificate verified against the cluster CA).
fn curl_kubelet(s: &Server, url: &str, args: &[&str]) -> (u16, String) {
    let out = Command::new("curl")
        .args(["-sS", "--cacert", &s.pki("ca.crt"), "-w", "\n%{http_code}"])
        .args(args)
        .arg(url)
        .output()
        .expect("curl");
    assert!(out.status.success(), "curl {url}: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

const TALKER: &str = "echo out-1; sleep 0.2; echo err-1 >&2; sleep 0.2; echo out-2; sleep 0.2; \
                      printf 'part'; sleep 0.2; echo 'ial line'; sleep 3600";

#[test]
fn kubectl_logs_reads_the_containers_log_through_the_kubelet_api() {
    if !common::require("kubectl", &["version", "--client"]) {
        return;
    }
    let (_tmp, s) = start();
    create_pod(&s, shell_pod("talker", &[("main", TALKER)], json!({})));
    create_pod(&s, shell_pod("pair", &[("a", "echo from-a; sleep 3600"), ("b", "echo from-b; sleep 3600")], json!({})));
    wait_running(&s, "talker");
    wait_running(&s, "pair");
    let all = "out-1\nerr-1\nout-2\npartial line\n";
    let mut last = String::new();
    assert!(
        wait_for(Duration::from_secs(20), || {
            last = kubectl(&s, &["logs", "talker"]).1;
            last == all
        }),
        "kubectl logs talker: {last:?}"
    );
    // stdout and stderr in order, the CRI prefix stripped, the partial entry joined.
    assert_eq!(kubectl(&s, &["logs", "talker", "-c", "main"]).1, all);
    assert_eq!(kubectl(&s, &["logs", "talker", "--tail", "2"]).1, "out-2\npartial line\n");
    assert_eq!(kubectl(&s, &["logs", "talker", "--limit-bytes", "8"]).1, "out-1\ner");
    assert_eq!(kubectl(&s, &["logs", "talker", "--since", "1h"]).1, all);
    let future = (chrono_now_plus_hour()).to_string();
    assert_eq!(kubectl(&s, &["logs", "talker", "--since-time", &future]).1, "");
    let stamped = kubectl(&s, &["logs", "talker", "--timestamps"]).1;
    let re = regex::Regex::new(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z (.*)$").unwrap();
    let lines: Vec<String> =
        stamped.lines().map(|l| re.captures(l).unwrap_or_else(|| panic!("{l:?}"))[1].to_string()).collect();
    assert_eq!(lines, ["out-1", "err-1", "out-2", "partial line"], "{stamped}");

    // The kubelet's and the API server's errors, as kubectl shows them.
    let (ok, _, err) = kubectl(&s, &["logs", "talker", "--previous"]);
    assert!(!ok);
    assert_eq!(
        err.trim(),
        r#"Error from server (BadRequest): previous terminated container "main" in pod "talker" not found"#
    );
    // kubectl checks the container name itself; the API server answers as kube-apiserver.
    let (ok, _, err) = kubectl(&s, &["logs", "talker", "-c", "nope"]);
    assert!(!ok);
    assert_eq!(err.trim(), "error: container nope is not valid for pod talker");
    let (code, _, body) = s.curl("GET", "/api/v1/namespaces/default/pods/talker/log?container=nope", None, &[]);
    assert_eq!(code, 400, "{body}");
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["message"], "container nope is not valid for pod talker");
    let (ok, _, err) = kubectl(&s, &["logs", "ghost"]);
    assert!(!ok);
    // kubectl's own wording of the pod's 404 (as against kube-apiserver).
    assert_eq!(err.trim(), r#"error: error from server (NotFound): pods "ghost" not found in namespace "default""#);

    // Two containers: kubectl defaults to the first (and says so); the API itself wants one.
    let (ok, out, err) = kubectl(&s, &["logs", "pair"]);
    assert!(ok, "{err}");
    assert_eq!(out, "from-a\n");
    assert!(err.contains(r#"Defaulted container "a" out of: a, b"#), "{err}");
    assert_eq!(kubectl(&s, &["logs", "pair", "-c", "b"]).1, "from-b\n");
    let (ok, out, err) = kubectl(&s, &["logs", "pair", "--all-containers", "--prefix"]);
    assert!(ok, "{err}");
    // kubectl reads the containers' logs concurrently: the lines may come in either order.
    let mut lines: Vec<&str> = out.lines().collect();
    lines.sort();
    assert_eq!(lines, ["[pod/pair/a] from-a", "[pod/pair/b] from-b"], "{out}");
    let (code, _, body) = s.curl("GET", "/api/v1/namespaces/default/pods/pair/log", None, &[]);
    assert_eq!(code, 400, "{body}");
    let st: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(st["message"], "a container name must be specified for pod pair, choose one of: [a b]");
    assert_eq!(st["reason"], "BadRequest");
    let (code, _, body) = s.curl("GET", "/api/v1/namespaces/default/pods/talker/log?tailLines=-1", None, &[]);
    assert_eq!(code, 422, "{body}");
    let st: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        st["message"],
        r#"PodLogOptions "talker" is invalid: tailLines: Invalid value: -1: must be greater than or equal to 0"#
    );
    let (code, headers, body) = s.curl("GET", "/api/v1/namespaces/default/pods/talker/log?tailLines=1", None, &[]);
    assert_eq!((code, body.as_str()), (200, "partial line\n"));
    assert!(headers.to_lowercase().contains("content-type: text/plain"), "{headers}");

    // RBAC: `get` on pods/log (bob may read pods, not their logs).
    s.kubectl_ok(&["create", "role", "pod-reader", "--verb=get", "--verb=list", "--resource=pods"]);
    s.kubectl_ok(&["create", "rolebinding", "bob-reads", "--role=pod-reader", "--user=bob"]);
    let mut err = String::new();
    wait_for(Duration::from_secs(10), || {
        let out = s.kubectl_token("bob-token", &["logs", "talker"]);
        err = String::from_utf8_lossy(&out.stderr).trim().to_string();
        !out.status.success() && err.contains("pods/log")
    });
    assert_eq!(
        err,
        r#"Error from server (Forbidden): pods "talker" is forbidden: User "bob" cannot get resource "pods/log" in API group "" in the namespace "default""#
    );

    // The kubelet API itself: no credentials is a 401, a user without nodes/proxy a 403,
    // the cluster CA's client certificates (system:masters) may read.
    let base = kubelet_endpoint(&s);
    let logs = format!("{base}/containerLogs/default/talker/main");
    assert_eq!(curl_kubelet(&s, &logs, &[]), (401, "Unauthorized".to_string()));
    assert_eq!(curl_kubelet(&s, &logs, &["-H", "Authorization: Bearer nonsense"]), (401, "Unauthorized".to_string()));
    assert_eq!(
        curl_kubelet(&s, &logs, &["-H", "Authorization: Bearer bob-token"]),
        (403, "Forbidden (user=bob, verb=get, resource=nodes, subresource=proxy)".to_string())
    );
    let admin = ["--cert", &s.pki("admin.crt"), "--key", &s.pki("admin.key")];
    assert_eq!(curl_kubelet(&s, &logs, &admin), (200, all.to_string()));
    assert_eq!(curl_kubelet(&s, &format!("{base}/healthz"), &admin), (200, "ok".to_string()));
    assert_eq!(
        curl_kubelet(&s, &format!("{base}/containerLogs/default/talker/zzz"), &admin),
        (404, r#"container "zzz" not found in pod "talker""#.to_string())
    );
    assert_eq!(
        curl_kubelet(&s, &format!("{base}/containerLogs/default/ghost/main"), &admin),
        (404, r#"pod "ghost" does not exist"#.to_string())
    );
    assert_eq!(
        curl_kubelet(&s, &format!("{logs}?tailLines=-1"), &admin),
        (422, r#"{"message": "Invalid request."}"#.to_string())
    );

    // A node whose kubelet cannot be reached: kube-apiserver's error, at once.
    let node = get(&s, "/api/v1/nodes")["items"][0]["metadata"]["name"].as_str().unwrap().to_string();
    let patch = json!({"status": {"daemonEndpoints": {"kubeletEndpoint": {"Port": 1}}}}).to_string();
    let (code, _, body) = s.curl(
        "PATCH",
        &format!("/api/v1/nodes/{node}/status"),
        Some(patch.as_bytes()),
        &["Content-Type: application/merge-patch+json"],
    );
    assert_eq!(code, 200, "{body}");
    let (ok, _, err) = kubectl(&s, &["logs", "talker"]);
    assert!(!ok);
    assert_eq!(
        err.trim(),
        r#"Error from server: Get "https://127.0.0.1:1/containerLogs/default/talker/main": dial tcp 127.0.0.1:1: connect: connection refused"#
    );
}

fn chrono_now_plus_hour() -> String {
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() + 3600;
    // RFC3339 in UTC, by hand (no date crate in the tests).
    let days = t / 86400;
    let secs = t % 86400;
    let (y, m, d) = civil_from_days(days as i64);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", secs / 3600, secs / 60 % 60, secs % 60)
}

/// Howard Hinnant's days-to-civil.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719468;
    let era = z.div_euclid(146097);
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[test]
fn follow_streams_new_lines_and_previous_reads_the_last_run() {
    if !common::require("kubectl", &["version", "--client"]) {
        return;
    }
    let (_tmp, s) = start();
    create_pod(
        &s,
        shell_pod("ticker", &[("main", "i=0; while true; do echo tick-$i; i=$((i+1)); sleep 0.3; done")], json!({})),
    );
    // The first run exits; the second (after the kubelet's ~10 s back-off) stays.
    create_pod(
        &s,
        shell_pod(
            "restarter",
            &[(
                "main",
                "if [ -e /cache/once ]; then echo second; sleep 3600; else touch /cache/once; echo first; exit 1; fi",
            )],
            json!({"restartPolicy": "Always"}),
        ),
    );
    wait_running(&s, "ticker");

    // -f: lines arrive while the container writes them.
    let mut child = Command::new("kubectl")
        .args(["logs", "-f", "ticker"])
        .env("KUBECONFIG", &s.kubeconfig)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("kubectl logs -f");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let started = Instant::now();
    let mut seen = Vec::new();
    let mut first_at = None;
    while started.elapsed() < Duration::from_secs(30) {
        match rx.recv_timeout(Duration::from_secs(1)) {
            Ok(l) => {
                first_at.get_or_insert(Instant::now());
                seen.push(l);
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            Err(_) => break,
        }
        // Five lines written after the first arrived (1.5 s later): the stream is live.
        if first_at.is_some_and(|t| t.elapsed() > Duration::from_millis(1500)) && seen.len() >= 8 {
            break;
        }
    }
    let still_running = child.try_wait().ok().flatten().is_none();
    let _ = child.kill();
    let _ = child.wait();
    assert!(still_running, "kubectl logs -f keeps following: {seen:?}");
    assert!(seen.len() >= 8, "{seen:?}");
    for w in seen.windows(2) {
        let n = |l: &str| l.trim_start_matches("tick-").parse::<u64>().unwrap();
        assert_eq!(n(&w[1]), n(&w[0]) + 1, "{seen:?}");
    }

    // A followed container that exits ends the stream (and kubectl).
    create_pod(&s, shell_pod("brief", &[("main", "echo a; sleep 3; echo b")], json!({"restartPolicy": "Never"})));
    wait_running(&s, "brief");
    let started = Instant::now();
    let (ok, out, err) = kubectl(&s, &["logs", "-f", "brief"]);
    assert!(ok, "{err}");
    assert_eq!(out, "a\nb\n");
    assert!(started.elapsed() < Duration::from_secs(15), "took {:?}", started.elapsed());

    // --previous after a restart: the first run's log; without it, the current run's.
    let mut pod = Value::Null;
    let ok = wait_for(Duration::from_secs(60), || {
        pod = get(&s, "/api/v1/namespaces/default/pods/restarter");
        let c = &pod["status"]["containerStatuses"][0];
        c["restartCount"].as_u64().unwrap_or(0) >= 1 && c["state"]["running"].is_object()
    });
    assert!(ok, "restarter never ran again: {pod:#}");
    let mut out = String::new();
    assert!(
        wait_for(Duration::from_secs(10), || {
            out = kubectl(&s, &["logs", "restarter"]).1;
            out == "second\n"
        }),
        "{out:?}"
    );
    let (ok, out, err) = kubectl(&s, &["logs", "restarter", "--previous"]);
    assert!(ok, "{err}");
    assert_eq!(out, "first\n");
    let (ok, out, _) = kubectl(&s, &["logs", "restarter", "-p", "--timestamps"]);
    assert!(ok && out.ends_with("Z first\n"), "{out:?}");
}

/// A serving certificate for 127.0.0.1 signed by the cluster CA, as an operator would issue
/// one for `rkube node --tls-cert-file`.
fn kubelet_serving_cert(s: &Server, dir: &std::path::Path) -> (String, String) {
    let ca_cert = std::fs::read_to_string(s.pki("ca.crt")).unwrap();
    let ca_key = rcgen::KeyPair::from_pem(&std::fs::read_to_string(s.pki("ca.key")).unwrap()).unwrap();
    let issuer = rcgen::Issuer::from_ca_cert_pem(&ca_cert, ca_key).unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["joiner".to_string()]).unwrap();
    params.subject_alt_names.push(rcgen::SanType::IpAddress("127.0.0.1".parse().unwrap()));
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, &issuer).unwrap();
    let (c, k) = (dir.join("kubelet.crt"), dir.join("kubelet.key"));
    std::fs::write(&c, cert.pem()).unwrap();
    std::fs::write(&k, key.serialize_pem()).unwrap();
    (c.display().to_string(), k.display().to_string())
}

#[test]
fn a_joining_rkube_node_serves_logs_with_its_own_certificate() {
    if !common::require("kubectl", &["version", "--client"]) {
        return;
    }
    let s = Server::start_with_controllers(&[]);
    let tmp = tempfile::tempdir().unwrap();
    let (cert, key) = kubelet_serving_cert(&s, tmp.path());
    let root = tmp.path().join("node");
    // The client CA comes from the kubeconfig's certificate-authority-data.
    let mut agent = Command::new(env!("CARGO_BIN_EXE_rkube"))
        .args(["node", "--kubeconfig"])
        .arg(&s.kubeconfig)
        .arg("--root-dir")
        .arg(&root)
        .args(["--node-name", "joiner", "--node-ip", "127.0.0.1", "--kubelet-address", "127.0.0.1"])
        .args(["--kubelet-port", "0", "--no-pod-network", "--tls-cert-file", &cert, "--tls-private-key-file", &key])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("rkube node");
    let mut pod = shell_pod("joined", &[("main", "echo hello-from-joiner; sleep 3600")], json!({"nodeName": "joiner"}));
    pod["spec"]["terminationGracePeriodSeconds"] = json!(0);
    create_pod(&s, pod);
    let mut out = String::new();
    let ok = wait_for(Duration::from_secs(60), || {
        out = kubectl(&s, &["logs", "joined"]).1;
        out == "hello-from-joiner\n"
    });
    let base = kubelet_endpoint(&s);
    let admin = ["--cert", &s.pki("admin.crt"), "--key", &s.pki("admin.key")];
    let health = curl_kubelet(&s, &format!("{base}/healthz"), &admin);
    let anon = curl_kubelet(&s, &format!("{base}/healthz"), &[]);
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(agent.id() as i32), nix::sys::signal::Signal::SIGTERM);
    let deadline = Instant::now() + Duration::from_secs(20);
    while agent.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = agent.kill();
    let _ = agent.wait();
    assert!(ok, "kubectl logs joined: {out:?}");
    assert_eq!(health, (200, "ok".to_string()));
    assert_eq!(anon, (401, "Unauthorized".to_string()));
}
