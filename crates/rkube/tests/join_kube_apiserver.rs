//! `rkube node` joins a real kube-apiserver (v1.28.7, from the conformance kit in
//! `../shared/e2e`, with the Node authorizer and NodeRestriction as clusters run it): the
//! Node registers, a pod bound to it runs with its service account token, and `kubectl logs`,
//! `exec` and `port-forward` go through kube-apiserver to the agent's kubelet API. What the
//! agent serves is the kubelet's API, not a private protocol with rkube's own server. Its
//! serving certificate comes as a kubelet's does with `--rotate-server-certificates`: a
//! CertificateSigningRequest, approved here with kubectl, signed by kube-controller-manager's
//! csrsigning controller, and verified by kube-apiserver (`--kubelet-certificate-authority`).
//!
//! Needs the kit (its `setup.sh` unpacks kube-apiserver and installs etcd), `etcd` and
//! `openssl`; `RKUBE_E2E_KIT` names the kit's directory if it is not `../shared/e2e` next
//! to the repository.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use common::wait_for;

const KUBECTL_128: &str = "/usr/lib/google-cloud-sdk/bin/kubectl.1.28";

/// `RKUBE_E2E_KIT`, else `shared/e2e` beside the repository or a directory above it.
fn kit() -> PathBuf {
    if let Some(dir) = std::env::var_os("RKUBE_E2E_KIT") {
        return PathBuf::from(dir);
    }
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    repo.ancestors().map(|a| a.join("shared/e2e")).find(|d| d.join("setup.sh").exists()).unwrap_or_else(|| {
        panic!("the conformance kit (shared/e2e) is needed above {} or in RKUBE_E2E_KIT", repo.display())
    })
}

/// A process this test started, ended by its PID when dropped.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn(cmd: &mut Command, log: &Path) -> Proc {
    let out = std::fs::File::create(log).unwrap();
    let err = out.try_clone().unwrap();
    Proc(cmd.stdout(out).stderr(err).stdin(Stdio::null()).spawn().unwrap_or_else(|e| panic!("{cmd:?}: {e}")))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn sh(script: &str, dir: &Path) {
    let o = Command::new("bash").arg("-ec").arg(script).current_dir(dir).output().expect("bash");
    assert!(o.status.success(), "{script}: {}", String::from_utf8_lossy(&o.stderr));
}

/// A certificate signed by the kit's CA (`pki/ca.*`): `ext` is its extensions.
fn issue(dir: &Path, pki: &Path, name: &str, subject: &str, ext: &str) {
    std::fs::write(dir.join(format!("{name}.ext")), ext).unwrap();
    let ca = pki.display();
    sh(
        &format!(
            "openssl genrsa -out {name}.key 2048 2>/dev/null
             openssl req -new -key {name}.key -subj '{subject}' -out {name}.csr
             openssl x509 -req -in {name}.csr -CA {ca}/ca.crt -CAkey {ca}/ca.key -CAcreateserial -days 2 \
               -extfile {name}.ext -out {name}.crt 2>/dev/null"
        ),
        dir,
    );
}

fn kubeconfig(path: &Path, port: u16, ca: &Path, cert: &Path, key: &Path) {
    let text = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster: {{server: \"https://127.0.0.1:{port}\", certificate-authority: {}}}\n\
         users:\n- name: u\n  user: {{client-certificate: {}, client-key: {}}}\n\
         contexts:\n- name: c\n  context: {{cluster: c, user: u}}\ncurrent-context: c\n",
        ca.display(),
        cert.display(),
        key.display()
    );
    std::fs::write(path, text).unwrap();
}

fn kubectl(kc: &Path, args: &[&str], input: Option<&[u8]>) -> Output {
    let mut cmd = Command::new(KUBECTL_128);
    cmd.args(args).env("KUBECONFIG", kc).stdout(Stdio::piped()).stderr(Stdio::piped());
    cmd.stdin(if input.is_some() { Stdio::piped() } else { Stdio::null() });
    let mut child = cmd.spawn().expect("kubectl");
    if let Some(data) = input {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(data).unwrap();
    }
    child.wait_with_output().unwrap()
}

fn ok(o: &Output, what: &str) -> String {
    assert!(o.status.success(), "{what}: {}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn rkube_node_joins_a_real_kube_apiserver() {
    let kit = kit();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let home = dir.join("kit");
    // The kit's binaries (unpacked once into its default home; etcd installed if missing)
    // and a CA, admin and SA keys of this test's own.
    sh(&format!("bash {}/setup.sh >/dev/null", kit.display()), dir);
    assert!(common::require("etcd", &["--version"]), "etcd is needed");
    assert!(common::require("openssl", &["version"]), "openssl is needed");
    assert!(common::require(KUBECTL_128, &["version", "--client"]), "kubectl 1.28 is needed");
    let bin = PathBuf::from(std::env::var("E2E_HOME").unwrap_or_else(|_| "/tmp/k8s-e2e".into())).join("bin");
    let api_port = free_port();
    sh(&format!("E2E_HOME={} API_PORT={api_port} bash {}/gen-certs.sh >/dev/null", home.display(), kit.display()), dir);
    let pki = home.join("pki");
    issue(
        dir,
        &pki,
        "node",
        "/O=system:nodes/CN=system:node:joiner",
        "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=clientAuth\n",
    );
    let admin = home.join("admin.kubeconfig");
    let node_kc = dir.join("node.kubeconfig");
    kubeconfig(&node_kc, api_port, &pki.join("ca.crt"), &dir.join("node.crt"), &dir.join("node.key"));

    let (etcd_port, peer_port) = (free_port(), free_port());
    let _etcd = spawn(
        Command::new("etcd")
            .args(["--name", "join", "--data-dir"])
            .arg(dir.join("etcd"))
            .arg(format!("--listen-client-urls=http://127.0.0.1:{etcd_port}"))
            .arg(format!("--advertise-client-urls=http://127.0.0.1:{etcd_port}"))
            .arg(format!("--listen-peer-urls=http://127.0.0.1:{peer_port}"))
            .arg(format!("--initial-advertise-peer-urls=http://127.0.0.1:{peer_port}"))
            .arg(format!("--initial-cluster=join=http://127.0.0.1:{peer_port}"))
            .arg("--listen-metrics-urls=http://127.0.0.1:0"),
        &dir.join("etcd.log"),
    );
    let p = |f: &str| pki.join(f).display().to_string();
    let _apiserver = spawn(
        Command::new(bin.join("kube-apiserver"))
            .arg(format!("--etcd-servers=http://127.0.0.1:{etcd_port}"))
            .args(["--bind-address=127.0.0.1", "--advertise-address=127.0.0.1"])
            .arg(format!("--secure-port={api_port}"))
            .arg(format!("--tls-cert-file={}", p("apiserver.crt")))
            .arg(format!("--tls-private-key-file={}", p("apiserver.key")))
            .arg(format!("--client-ca-file={}", p("ca.crt")))
            .arg("--authorization-mode=Node,RBAC")
            .arg("--enable-admission-plugins=NamespaceLifecycle,LimitRanger,ServiceAccount,NodeRestriction")
            .arg(format!("--service-account-key-file={}", p("sa.pub")))
            .arg(format!("--service-account-signing-key-file={}", p("sa.key")))
            .args(["--service-account-issuer=https://kubernetes.default.svc.cluster.local"])
            .args(["--api-audiences=https://kubernetes.default.svc.cluster.local"])
            .args(["--service-cluster-ip-range=10.96.0.0/12", "--profiling=false"])
            // How kube-apiserver reaches kubelets (the admin identity: its nodes/proxy review
            // passes), and by which address.
            .arg(format!("--kubelet-client-certificate={}", p("admin.crt")))
            .arg(format!("--kubelet-client-key={}", p("admin.key")))
            .arg(format!("--kubelet-certificate-authority={}", p("ca.crt")))
            .arg("--kubelet-preferred-address-types=InternalIP,Hostname"),
        &dir.join("apiserver.log"),
    );
    let ready =
        wait_for(Duration::from_secs(120), || kubectl(&admin, &["get", "--raw", "/readyz"], None).status.success());
    let log = |f: &str| std::fs::read_to_string(dir.join(f)).unwrap_or_default();
    assert!(ready, "kube-apiserver never got ready: {}", log("apiserver.log"));
    // Only its certificate signer, with the cluster CA.
    let _kcm = spawn(
        Command::new(bin.join("kube-controller-manager"))
            .arg(format!("--kubeconfig={}", admin.display()))
            .args(["--controllers=csrsigning", "--leader-elect=false", "--profiling=false"])
            .args(["--bind-address=127.0.0.1", &format!("--secure-port={}", free_port())])
            .arg(format!("--authentication-kubeconfig={}", admin.display()))
            .arg(format!("--authorization-kubeconfig={}", admin.display()))
            .arg(format!("--cluster-signing-cert-file={}", p("ca.crt")))
            .arg(format!("--cluster-signing-key-file={}", p("ca.key"))),
        &dir.join("kcm.log"),
    );
    // What kube-controller-manager would make (it does not run here): the default service
    // account and the root CA config map every service account volume projects.
    ok(&kubectl(&admin, &["create", "serviceaccount", "default"], None), "default service account");
    let ca = p("ca.crt");
    ok(
        &kubectl(&admin, &["create", "configmap", "kube-root-ca.crt", &format!("--from-file=ca.crt={ca}")], None),
        "root CA",
    );
    // What the pod reads: the agent watches each by name, as a kubelet, which is all the Node
    // authorizer lets it read.
    ok(&kubectl(&admin, &["create", "secret", "generic", "word", "--from-literal=word=swordfish"], None), "secret");
    ok(&kubectl(&admin, &["create", "configmap", "settings", "--from-literal=greeting=hi"], None), "config map");
    // The agent's service proxy (kube-proxy's part) lists Endpoints, which a node may not.
    ok(
        &kubectl(
            &admin,
            &["create", "clusterrole", "rkube-node", "--verb=get,list,watch", "--resource=endpoints"],
            None,
        ),
        "role",
    );
    ok(
        &kubectl(
            &admin,
            &["create", "clusterrolebinding", "rkube-node", "--clusterrole=rkube-node", "--group=system:nodes"],
            None,
        ),
        "binding",
    );

    let root = dir.join("root");
    let node = spawn(
        Command::new(env!("CARGO_BIN_EXE_rkube"))
            .args(["node", "--kubeconfig"])
            .arg(&node_kc)
            .arg("--root-dir")
            .arg(&root)
            .args(["--node-name", "joiner", "--node-ip", "127.0.0.1", "--kubelet-address", "127.0.0.1"])
            .args(["--kubelet-port", "0", "--rotate-server-certificates"]),
        &dir.join("node.log"),
    );
    let mut node = Agent { proc: Some(node), root: root.clone() };
    let registered = wait_for(Duration::from_secs(30), || {
        let o = kubectl(
            &admin,
            &["get", "node", "joiner", "-o", "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}"],
            None,
        );
        String::from_utf8_lossy(&o.stdout) == "True"
    });
    assert!(registered, "the node never got Ready: {}", log("node.log"));
    // Its serving certificate request, approved as an administrator does.
    let mut csr = String::new();
    let asked = wait_for(Duration::from_secs(30), || {
        let o = kubectl(
            &admin,
            &[
                "get",
                "csr",
                "-o",
                "jsonpath={.items[0].metadata.name} {.items[0].spec.signerName} {.items[0].spec.username}",
            ],
            None,
        );
        csr = String::from_utf8_lossy(&o.stdout).into_owned();
        !csr.is_empty()
    });
    assert!(asked, "no certificate request: {}", log("node.log"));
    let (csr_name, rest) = csr.split_once(' ').unwrap();
    assert_eq!(rest, "kubernetes.io/kubelet-serving system:node:joiner");
    ok(&kubectl(&admin, &["certificate", "approve", csr_name], None), "approve");

    let pod = r#"{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "hello"},
        "spec": {"nodeName": "joiner", "terminationGracePeriodSeconds": 1, "containers": [{
          "name": "main", "image": "python", "ports": [{"containerPort": 8080}],
          "env": [{"name": "WORD", "valueFrom": {"secretKeyRef": {"name": "word", "key": "word"}}}],
          "volumeMounts": [{"name": "cfg", "mountPath": "/etc/cfg"}],
          "readinessProbe": {"periodSeconds": 1, "exec": {"command": ["python3", "-c",
            "import socket; socket.create_connection(('127.0.0.1', 8080), 1)"]}},
          "command": ["sh", "-c", "echo hello from rkube; cat /var/run/secrets/kubernetes.io/serviceaccount/namespace; echo; exec python3 -m http.server 8080 --bind 127.0.0.1 --directory /etc"]}],
          "volumes": [{"name": "cfg", "configMap": {"name": "settings"}}]}}"#;
    ok(&kubectl(&admin, &["create", "-f", "-"], Some(pod.as_bytes())), "create pod");
    let mut logs = String::new();
    let ran = wait_for(Duration::from_secs(60), || {
        logs = String::from_utf8_lossy(&kubectl(&admin, &["logs", "hello"], None).stdout).into_owned();
        logs.starts_with("hello from rkube\ndefault\n")
    });
    assert!(ran, "kubectl logs through kube-apiserver: {logs:?}\n{}", log("node.log"));

    let out = ok(&kubectl(&admin, &["exec", "hello", "--", "sh", "-c", "hostname; exit 0"], None), "exec");
    assert_eq!(out, "hello\n");
    let script = "echo $WORD; cat /etc/cfg/greeting";
    let out = ok(&kubectl(&admin, &["exec", "hello", "--", "sh", "-c", script], None), "exec");
    assert_eq!(out, "swordfish\nhi", "the secret and the config map, each read by name");
    let out = ok(&kubectl(&admin, &["exec", "-i", "hello", "--", "cat"], Some(b"through kube-apiserver\n")), "exec -i");
    assert_eq!(out, "through kube-apiserver\n");
    let o = kubectl(&admin, &["exec", "hello", "--", "sh", "-c", "exit 3"], None);
    assert_eq!(o.status.code(), Some(3), "{}", String::from_utf8_lossy(&o.stderr));

    // The pod's status as kube-apiserver stores it: Running, and ready once its server is.
    let mut status = String::new();
    let ready = wait_for(Duration::from_secs(30), || {
        let o = kubectl(
            &admin,
            &["get", "pod", "hello", "-o", "jsonpath={.status.phase} {.status.containerStatuses[0].ready}"],
            None,
        );
        status = String::from_utf8_lossy(&o.stdout).into_owned();
        status == "Running true"
    });
    assert!(ready, "{status}");

    // port-forward: the pod's server listens on its own loopback only.
    let mut pf = Command::new(KUBECTL_128)
        .args(["port-forward", "pod/hello", ":8080"])
        .env("KUBECONFIG", &admin)
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(dir.join("port-forward.log")).unwrap())
        .spawn()
        .unwrap();
    let rx = common::lines(pf.stdout.take().unwrap());
    let line = rx.recv_timeout(Duration::from_secs(30)).unwrap_or_default();
    let port = line.split("127.0.0.1:").nth(1).and_then(|r| r.split(' ').next()).unwrap_or("").to_string();
    let got =
        Command::new("curl").args(["-sS", "-m", "20", &format!("http://127.0.0.1:{port}/hostname")]).output().unwrap();
    let _ = pf.kill();
    let _ = pf.wait();
    assert_eq!(
        String::from_utf8_lossy(&got.stdout),
        "hello\n",
        "{line}: {}\n{}\n{}",
        String::from_utf8_lossy(&got.stderr),
        log("port-forward.log"),
        log("node.log")
    );

    node.stop();
}

/// The agent, stopped with SIGTERM (it ends its pods and removes its namespaces and cgroups)
/// before the API server goes.
struct Agent {
    proc: Option<Proc>,
    root: PathBuf,
}

impl Agent {
    fn stop(&mut self) {
        let Some(mut p) = self.proc.take() else { return };
        let pid = nix::unistd::Pid::from_raw(p.0.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let _ = wait_for(Duration::from_secs(20), || p.0.try_wait().ok().flatten().is_some());
        drop(p);
        common::reap_namespaces(&self.root);
        common::reap_cgroups(&self.root);
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.stop();
    }
}
