//! `certificates.k8s.io` CertificateSigningRequests end to end: validation and the recorded
//! requester, `kubectl certificate approve|deny` through `/approval` (with the `approve`
//! permission on `signers` as kube-apiserver's admission wants), the signer issuing
//! certificates with the cluster CA or failing requests its rules refuse, and `rkube node
//! --rotate-server-certificates` getting its kubelet API certificate through one, which the
//! API server then verifies on `kubectl logs` and `exec`.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{require, wait_for, Server};
use serde_json::{json, Value};

fn sh(script: &str, dir: &Path) -> String {
    let o = Command::new("bash").arg("-ec").arg(script).current_dir(dir).output().expect("bash");
    assert!(o.status.success(), "{script}: {}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A PEM certificate request made by openssl (EC P-256): `subject`, then `-addext` lines.
fn request(dir: &Path, name: &str, subject: &str, san: Option<&str>) -> String {
    let san = san.map(|s| format!("-addext 'subjectAltName={s}'")).unwrap_or_default();
    sh(
        &format!(
            "openssl ecparam -name prime256v1 -genkey -noout -out {name}.key 2>/dev/null
             openssl req -new -key {name}.key -subj '{subject}' {san} -out {name}.csr"
        ),
        dir,
    );
    std::fs::read_to_string(dir.join(format!("{name}.csr"))).unwrap()
}

fn csr(name: &str, pem: &str, signer: &str, usages: &[&str]) -> Value {
    use base64::Engine;
    json!({
        "apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest",
        "metadata": {"name": name},
        "spec": {"request": base64::engine::general_purpose::STANDARD.encode(pem), "signerName": signer,
                 "usages": usages, "username": "someone-else", "groups": ["system:masters"]},
    })
}

const CSRS: &str = "/apis/certificates.k8s.io/v1/certificatesigningrequests";
const CT: &str = "Content-Type: application/json";

fn get(s: &Server, name: &str) -> Value {
    serde_json::from_str(&s.curl("GET", &format!("{CSRS}/{name}"), None, &[]).2).unwrap()
}

/// The issued certificate as openssl prints it.
fn issued(s: &Server, name: &str, dir: &Path) -> String {
    let mut c = Value::Null;
    let ok = wait_for(Duration::from_secs(20), || {
        c = get(s, name);
        c["status"]["certificate"].is_string()
    });
    assert!(ok, "{name} was never issued: {c:#}");
    use base64::Engine;
    let pem = base64::engine::general_purpose::STANDARD.decode(c["status"]["certificate"].as_str().unwrap()).unwrap();
    std::fs::write(dir.join(format!("{name}.crt")), pem).unwrap();
    sh(
        &format!(
            "openssl x509 -in {name}.crt -noout -subject -issuer -ext subjectAltName,keyUsage,extendedKeyUsage,basicConstraints
             openssl verify -CAfile {} {name}.crt",
            s.pki("ca.crt")
        ),
        dir,
    )
}

#[test]
fn certificate_signing_requests_are_validated_approved_and_signed() {
    assert!(require("openssl", &["version"]), "openssl is needed");
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let tokens = dir.join("tokens.csv");
    std::fs::write(&tokens, "bob-token,bob,1001,\"dev\"\n").unwrap();
    let s = Server::start_with_controllers(&["--token-auth-file", &tokens.display().to_string()]);
    let serving = "kubernetes.io/kubelet-serving";

    // Bad requests: kube-apiserver's causes, nothing stored.
    let mut bad = csr("bad", "not a request", "example.com", &[]);
    bad["spec"]["expirationSeconds"] = json!(60);
    let (code, _, body) = s.curl("POST", CSRS, Some(bad.to_string().as_bytes()), &[CT]);
    assert_eq!(code, 422, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    let causes: Vec<(String, String)> = v["details"]["causes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["field"].as_str().unwrap().to_string(), c["message"].as_str().unwrap().to_string()))
        .collect();
    let msg = |f: &str| causes.iter().find(|(field, _)| field == f).map(|(_, m)| m.clone()).unwrap_or_default();
    assert!(msg("spec.request").ends_with(": PEM block type must be CERTIFICATE REQUEST"), "{causes:?}");
    assert_eq!(msg("spec.usages"), "Required value: usages must be provided");
    assert_eq!(
        msg("spec.signerName"),
        "Invalid value: \"example.com\": must be a fully qualified domain and path of the form 'example.com/signer-name'"
    );
    assert_eq!(
        msg("spec.expirationSeconds"),
        "Invalid value: 60: may not specify a duration less than 600 seconds (10 minutes)"
    );
    assert_eq!(s.curl("GET", &format!("{CSRS}/bad"), None, &[]).0, 404);

    // A node's serving request: the requester is who sent it, whatever the body says.
    let pem = request(dir, "n1", "/O=system:nodes/CN=system:node:n1", Some("DNS:n1,IP:127.0.0.1"));
    let (code, _, body) = s.curl(
        "POST",
        CSRS,
        Some(csr("n1", &pem, serving, &["digital signature", "server auth"]).to_string().as_bytes()),
        &[CT],
    );
    assert_eq!(code, 201, "{body}");
    let made: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(made["spec"]["username"], "rkube-admin");
    assert_eq!(made["spec"]["groups"], json!(["system:masters", "system:authenticated"]));
    assert_eq!(made["status"], json!({}));
    let listed = s.kubectl_ok(&["get", "csr"]);
    assert!(listed.lines().any(|l| l.starts_with("n1 ")), "{listed}");

    // Approval takes `approve` on the signer, besides update on the subresource.
    s.kubectl_ok(&[
        "create",
        "clusterrole",
        "csr-approval",
        "--verb=get,list,update",
        "--resource=certificatesigningrequests,certificatesigningrequests/approval",
    ]);
    s.kubectl_ok(&["create", "clusterrolebinding", "bob-approval", "--clusterrole=csr-approval", "--user=bob"]);
    let as_bob = |args: &[&str]| s.kubectl_token("bob-token", args);
    let mut out = as_bob(&["certificate", "approve", "n1"]);
    let ok = wait_for(Duration::from_secs(5), || {
        out = as_bob(&["certificate", "approve", "n1"]);
        String::from_utf8_lossy(&out.stderr).contains("user not permitted to approve")
    });
    assert!(
        ok,
        "{}",
        String::from_utf8_lossy(&out.stderr) // certificatesigningrequests.certificates.k8s.io "n1" is forbidden: ...
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(&format!(
            "certificatesigningrequests.certificates.k8s.io \"n1\" is forbidden: user not permitted to approve requests with signerName \"{serving}\""
        )),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(get(&s, "n1")["status"].get("conditions").is_none(), "nothing stored");
    // (`signers` is a virtual resource, not in discovery: kubectl create clusterrole refuses it.)
    let role = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
        "metadata": {"name": "approve-serving"},
        "rules": [{"apiGroups": ["certificates.k8s.io"], "resources": ["signers"], "verbs": ["approve"],
                   "resourceNames": [serving]}]});
    let (code, _, body) =
        s.curl("POST", "/apis/rbac.authorization.k8s.io/v1/clusterroles", Some(role.to_string().as_bytes()), &[CT]);
    assert_eq!(code, 201, "{body}");
    s.kubectl_ok(&["create", "clusterrolebinding", "bob-approves", "--clusterrole=approve-serving", "--user=bob"]);
    let ok = wait_for(Duration::from_secs(5), || as_bob(&["certificate", "approve", "n1"]).status.success());
    assert!(ok, "bob may approve now");
    let cert = issued(&s, "n1", dir);
    for want in [
        "subject=O = system:nodes, CN = system:node:n1",
        "issuer=CN = rkube-ca",
        "DNS:n1, IP Address:127.0.0.1",
        "Digital Signature",
        "TLS Web Server Authentication",
        "CA:FALSE",
        "n1.crt: OK",
    ] {
        assert!(cert.contains(want), "{want} not in {cert}");
    }
    // An issued certificate stays as issued.
    let clear = json!([{"op": "replace", "path": "/status/certificate", "value": ""}]);
    let (code, _, body) = s.curl(
        "PATCH",
        &format!("{CSRS}/n1/status"),
        Some(clear.to_string().as_bytes()),
        &["Content-Type: application/json-patch+json"],
    );
    assert_eq!(code, 422, "{body}");
    assert!(
        body.contains("status.certificate: Forbidden: updates may not modify existing certificate content"),
        "{body}"
    );
    let approved = get(&s, "n1")["status"]["conditions"][0].clone();
    assert_eq!((&approved["type"], &approved["reason"]), (&json!("Approved"), &json!("KubectlApprove")));
    assert!(approved["lastTransitionTime"].is_string(), "{approved}");
    // An approval cannot be taken back or turned into a denial.
    // (kubectl itself refuses to: the server does too.)
    let deny = json!([{"op": "add", "path": "/status/conditions/-",
                       "value": {"type": "Denied", "status": "True", "reason": "Changed", "message": "no"}}]);
    let (code, _, body) = s.curl(
        "PATCH",
        &format!("{CSRS}/n1/approval"),
        Some(deny.to_string().as_bytes()),
        &["Content-Type: application/json-patch+json"],
    );
    assert_eq!(code, 422, "{body}");
    assert!(body.contains("Approved and Denied conditions are mutually exclusive"), "{body}");
    let remove = json!([{"op": "remove", "path": "/status/conditions/0"}]);
    let (code, _, body) = s.curl(
        "PATCH",
        &format!("{CSRS}/n1/approval"),
        Some(remove.to_string().as_bytes()),
        &["Content-Type: application/json-patch+json"],
    );
    assert_eq!(code, 422, "{body}");
    assert!(body.contains("updates may not remove a condition of type \\\"Approved\\\""), "{body}");

    // A client certificate for a user, with a requested duration; and one the signer's
    // rules refuse (a serving request not in system:nodes) fails.
    let pem = request(dir, "alice", "/O=dev/CN=alice", None);
    let mut alice = csr("alice", &pem, "kubernetes.io/kube-apiserver-client", &["client auth"]);
    alice["spec"]["expirationSeconds"] = json!(3600);
    assert_eq!(s.curl("POST", CSRS, Some(alice.to_string().as_bytes()), &[CT]).0, 201);
    s.kubectl_ok(&["certificate", "approve", "alice"]);
    let cert = issued(&s, "alice", dir);
    assert!(cert.contains("subject=O = dev, CN = alice") && cert.contains("TLS Web Client Authentication"), "{cert}");
    let lifetime = sh(
        "s=$(date -d \"$(openssl x509 -in alice.crt -noout -startdate | cut -d= -f2)\" +%s)
         e=$(date -d \"$(openssl x509 -in alice.crt -noout -enddate | cut -d= -f2)\" +%s)
         echo $((e - s))",
        dir,
    );
    let lifetime: i64 = lifetime.trim().parse().unwrap();
    assert!((3899..=3901).contains(&lifetime), "an hour from a start five minutes back: {lifetime}");
    let pem = request(dir, "rogue", "/O=dev/CN=system:node:rogue", Some("DNS:rogue"));
    assert_eq!(
        s.curl(
            "POST",
            CSRS,
            Some(csr("rogue", &pem, serving, &["digital signature", "server auth"]).to_string().as_bytes()),
            &[CT]
        )
        .0,
        201
    );
    s.kubectl_ok(&["certificate", "approve", "rogue"]);
    let mut c = Value::Null;
    let failed = wait_for(Duration::from_secs(20), || {
        c = get(&s, "rogue");
        c["status"]["conditions"].as_array().is_some_and(|a| a.iter().any(|x| x["type"] == "Failed"))
    });
    assert!(failed, "{c:#}");
    let f = c["status"]["conditions"].as_array().unwrap().iter().find(|x| x["type"] == "Failed").unwrap().clone();
    assert_eq!(
        (&f["reason"], &f["message"]),
        (&json!("SignerValidationFailure"), &json!("subject organization is not system:nodes"))
    );
    assert!(c["status"].get("certificate").is_none());

    // A denial; and system:masters is never asked of the client signer.
    let pem = request(dir, "denied", "/O=dev/CN=d", None);
    assert_eq!(
        s.curl(
            "POST",
            CSRS,
            Some(csr("denied", &pem, "example.com/mine", &["client auth"]).to_string().as_bytes()),
            &[CT]
        )
        .0,
        201
    );
    s.kubectl_ok(&["certificate", "deny", "denied"]);
    assert_eq!(get(&s, "denied")["status"]["conditions"][0]["type"], "Denied");
    // kubectl get csr: kube-apiserver's columns.
    let table = s.kubectl_ok(&["get", "csr"]);
    let row = |name: &str| -> Vec<String> {
        let line = table
            .lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .unwrap_or_else(|| panic!("{name}: {table}"));
        line.split_whitespace().map(str::to_string).collect()
    };
    assert_eq!(
        table.lines().next().unwrap().split_whitespace().collect::<Vec<_>>(),
        ["NAME", "AGE", "SIGNERNAME", "REQUESTOR", "REQUESTEDDURATION", "CONDITION"]
    );
    assert_eq!(row("n1")[2..], ["kubernetes.io/kubelet-serving", "rkube-admin", "<none>", "Approved,Issued"]);
    assert_eq!(row("alice")[4..], ["60m", "Approved,Issued"]);
    assert_eq!(row("rogue")[5], "Approved,Failed");
    assert_eq!(row("denied")[5], "Denied");
    let pem = request(dir, "masters", "/O=system:masters/CN=m", None);
    let (code, _, body) = s.curl(
        "POST",
        CSRS,
        Some(csr("masters", &pem, "kubernetes.io/kube-apiserver-client", &["client auth"]).to_string().as_bytes()),
        &[CT],
    );
    assert_eq!(code, 403, "{body}");
    assert!(
        body.contains("use of kubernetes.io/kube-apiserver-client signer with system:masters group is not allowed"),
        "{body}"
    );
}

/// A process this test started, ended by its PID when dropped.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.0.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let _ = wait_for(Duration::from_secs(20), || self.0.try_wait().ok().flatten().is_some());
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_joining_node_gets_its_serving_certificate_through_a_request() {
    assert!(require("openssl", &["version"]), "openssl is needed");
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let s = Server::start_with_node(&["--node-ip", "127.0.0.1"]);
    // The joining agent's identity: a client certificate for system:node:n2 from the CA.
    request(dir, "n2", "/O=system:nodes/CN=system:node:n2", None);
    sh(
        &format!(
            "printf 'basicConstraints=CA:FALSE\\nkeyUsage=critical,digitalSignature\\nextendedKeyUsage=clientAuth\\n' > n2.ext
             openssl x509 -req -in n2.csr -CA {ca} -CAkey {key} -CAcreateserial -days 2 -extfile n2.ext -out n2.crt 2>/dev/null",
            ca = s.pki("ca.crt"),
            key = s.pki("ca.key")
        ),
        dir,
    );
    let kc = dir.join("n2.kubeconfig");
    std::fs::write(
        &kc,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster: {{server: \"{}\", certificate-authority: {}}}\n\
             users:\n- name: u\n  user: {{client-certificate: {}, client-key: {}}}\n\
             contexts:\n- name: c\n  context: {{cluster: c, user: u}}\ncurrent-context: c\n",
            s.url,
            s.pki("ca.crt"),
            dir.join("n2.crt").display(),
            dir.join("n2.key").display()
        ),
    )
    .unwrap();
    let root = dir.join("n2root");
    let spawn = |log: &str| {
        Proc(
            Command::new(env!("CARGO_BIN_EXE_rkube"))
                .args(["node", "--kubeconfig"])
                .arg(&kc)
                .arg("--root-dir")
                .arg(&root)
                .args(["--node-name", "n2", "--node-ip", "127.0.0.1", "--kubelet-address", "127.0.0.1"])
                .args(["--kubelet-port", "0", "--rotate-server-certificates", "--no-pod-network"])
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(dir.join(log)).unwrap())
                .spawn()
                .expect("rkube node"),
        )
    };
    let agent = spawn("n2.log");
    let node_log = || std::fs::read_to_string(dir.join("n2.log")).unwrap_or_default();

    // The request, as the kubelet makes it.
    let mut pending = Value::Null;
    let asked = wait_for(Duration::from_secs(30), || {
        let list: Value = serde_json::from_str(&s.curl("GET", CSRS, None, &[]).2).unwrap();
        pending = list["items"].as_array().and_then(|a| a.first().cloned()).unwrap_or_default();
        pending.is_object()
    });
    assert!(asked, "no request: {}", node_log());
    let name = pending["metadata"]["name"].as_str().unwrap().to_string();
    assert!(name.starts_with("csr-"), "{name}");
    assert_eq!(pending["spec"]["signerName"], "kubernetes.io/kubelet-serving");
    assert_eq!(pending["spec"]["usages"], json!(["digital signature", "server auth"]));
    assert_eq!(pending["spec"]["username"], "system:node:n2");

    // Until it is approved the kubelet API serves nobody; then logs and exec verify it.
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "on-n2"},
        "spec": {"nodeName": "n2", "terminationGracePeriodSeconds": 1,
                 "containers": [{"name": "main", "image": "busybox", "command": ["sh", "-c", "echo hello from n2; exec sleep 3600"]}]}});
    common::pods::create(&s, "/api/v1/namespaces/default/pods", &pod);
    common::pods::wait_phase(&s, "on-n2", "Running", 60);
    let o = s.kubectl(&["logs", "on-n2"]);
    assert!(!o.status.success(), "served before approval: {}", String::from_utf8_lossy(&o.stdout));
    s.kubectl_ok(&["certificate", "approve", &name]);
    let mut logs = String::new();
    let served = wait_for(Duration::from_secs(20), || {
        logs = String::from_utf8_lossy(&s.kubectl(&["logs", "on-n2"]).stdout).into_owned();
        logs == "hello from n2\n"
    });
    assert!(served, "{logs:?}: {}", node_log());
    assert_eq!(s.kubectl_ok(&["exec", "on-n2", "--", "echo", "exec on n2"]), "exec on n2\n");
    assert!(root.join("pki/kubelet-server-current.pem").exists());

    // A restart serves with the kept certificate at once: no new request.
    drop(agent);
    let _agent = spawn("n2-again.log");
    let mut logs = String::new();
    let again = wait_for(Duration::from_secs(30), || {
        logs = String::from_utf8_lossy(&s.kubectl(&["logs", "on-n2"]).stdout).into_owned();
        logs.starts_with("hello from n2\n")
    });
    assert!(again, "{logs:?}");
    let list: Value = serde_json::from_str(&s.curl("GET", CSRS, None, &[]).2).unwrap();
    assert_eq!(list["items"].as_array().unwrap().len(), 1, "{list:#}");
}
