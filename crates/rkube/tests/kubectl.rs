//! The real kubectl against the real server: discovery, apply twice, get columns, watch,
//! label/annotate/scale/patch, delete, with the dispatcher's kubectl (the server reports
//! 1.33, so the dispatcher runs kubectl 1.33, which speaks protobuf) and, where present,
//! kubectl 1.27 and 1.32.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{require, wait_for, Server};

const MANIFEST: &str = "../../../shared/reference/kube-apiserver-v1.28.7/objects/input.yaml";

fn manifest() -> String {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(MANIFEST).display().to_string()
}

#[test]
fn discovery_api_resources_and_versions() {
    if !require("kubectl", &["version", "--client"]) {
        return;
    }
    let s = Server::start();
    let out = s.kubectl_ok(&["api-resources"]);
    for line in ["pods", "deployments", "cronjobs", "clusterrolebindings", "leases"] {
        assert!(out.lines().any(|l| l.starts_with(line)), "{line} missing in:\n{out}");
    }
    let out = s.kubectl_ok(&["api-versions"]);
    for gv in
        ["v1", "apps/v1", "batch/v1", "rbac.authorization.k8s.io/v1", "coordination.k8s.io/v1", "events.k8s.io/v1"]
    {
        assert!(out.lines().any(|l| l == gv), "{gv} missing in:\n{out}");
    }
    let out = s.kubectl_ok(&["version", "-o", "json"]);
    assert!(out.contains("\"minor\": \"33\""), "{out}");
}

#[test]
fn apply_twice_get_label_scale_delete() {
    if !require("kubectl", &["version", "--client"]) {
        return;
    }
    let s = Server::start();
    let first = s.kubectl_ok(&["apply", "-f", &manifest()]);
    assert!(first.contains("pod/minimal created") && first.contains("deployment.apps/web created"), "{first}");
    let second = s.kubectl_ok(&["apply", "-f", &manifest()]);
    assert_eq!(second.matches("unchanged").count(), 6, "{second}");

    let pods = s.kubectl_ok(&["get", "pods"]);
    let header: Vec<&str> = pods.lines().next().unwrap_or("").split_whitespace().collect();
    assert_eq!(header, ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]);
    assert!(pods.contains("minimal") && pods.contains("Pending"), "{pods}");
    let svc = s.kubectl_ok(&["get", "svc", "svc", "-o", "jsonpath={.spec.clusterIP}"]);
    assert!(svc.starts_with("10."), "cluster IP allocated: {svc}");

    // Defaulting as kube-apiserver does it.
    let pull = s.kubectl_ok(&["get", "deploy", "web", "-o", "jsonpath={.spec.template.spec.containers[0].imagePullPolicy} {.spec.strategy.rollingUpdate.maxSurge} {.metadata.generation}"]);
    assert_eq!(pull, "Always 25% 1");

    // A changed manifest is a strategic merge patch that bumps generation.
    let changed = std::fs::read_to_string(manifest()).unwrap().replace("image: nginx", "image: nginx:1.27");
    let path = s.dir.join("changed.yaml");
    std::fs::write(&path, changed).unwrap();
    let out = s.kubectl_ok(&["apply", "-f", path.to_str().unwrap()]);
    assert!(out.contains("deployment.apps/web configured"), "{out}");
    let img = s.kubectl_ok(&["get", "deploy", "web", "-o", "jsonpath={.spec.template.spec.containers[0].image} {.spec.template.spec.containers[0].imagePullPolicy} {.metadata.generation}"]);
    assert_eq!(img, "nginx:1.27 Always 2", "an already-defaulted pull policy is kept, as in Kubernetes");

    s.kubectl_ok(&["label", "pod", "minimal", "tier=x"]);
    s.kubectl_ok(&["annotate", "pod", "minimal", "note=y"]);
    let got = s.kubectl_ok(&["get", "pods", "-l", "tier=x", "-o", "jsonpath={.items[*].metadata.annotations.note}"]);
    assert_eq!(got, "y");
    s.kubectl_ok(&["scale", "deploy", "web", "--replicas=3"]);
    assert_eq!(s.kubectl_ok(&["get", "deploy", "web", "-o", "jsonpath={.spec.replicas}"]), "3");
    s.kubectl_ok(&["patch", "deploy", "web", "--type=merge", "-p", r#"{"spec":{"replicas":2}}"#]);
    assert_eq!(s.kubectl_ok(&["get", "deploy", "web", "-o", "jsonpath={.spec.replicas}"]), "2");
    s.kubectl_ok(&[
        "patch",
        "deploy",
        "web",
        "-p",
        r#"{"spec":{"template":{"spec":{"containers":[{"name":"web","env":[{"name":"A","value":"1"}]}]}}}}"#,
    ]);
    assert_eq!(
        s.kubectl_ok(&["get", "deploy", "web", "-o", "jsonpath={.spec.template.spec.containers[0].env[0].name}"]),
        "A"
    );

    let out = s.kubectl_ok(&["delete", "-f", &manifest()]);
    assert!(out.contains("pod \"minimal\" deleted"), "{out}");
    assert_eq!(s.kubectl_ok(&["get", "pods", "-o", "name"]), "");

    // Namespaces: create, fill, delete; the contents go with it.
    let ns = s.dir.join("ns.yaml");
    std::fs::write(&ns, "apiVersion: v1\nkind: Namespace\nmetadata: {name: scratch}\n").unwrap();
    s.kubectl_ok(&["apply", "-f", ns.to_str().unwrap()]);
    s.kubectl_ok(&["apply", "-n", "scratch", "-f", &manifest()]);
    s.kubectl_ok(&["delete", "namespace", "scratch", "--timeout=30s"]);
    let left = s.kubectl(&["get", "pods", "-n", "scratch", "-o", "name"]);
    assert_eq!(String::from_utf8_lossy(&left.stdout), "");
}

#[test]
fn get_watch_sees_changes() {
    if !require("kubectl", &["version", "--client"]) {
        return;
    }
    let s = Server::start();
    let watchers = s.registered_watchers();
    let mut w = Command::new("kubectl")
        .args(["get", "configmaps", "-w", "--output-watch-events", "--request-timeout=60s"])
        .env("KUBECONFIG", &s.kubeconfig)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("kubectl get -w");
    let stdout = w.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    // Established before anything changes: kubectl has printed the list (the namespace's
    // kube-root-ca.crt) and the server counts its watch.
    let mut seen: Vec<String> = Vec::new();
    let established = wait_for(Duration::from_secs(60), || {
        seen.extend(rx.try_iter());
        seen.iter().any(|l| l.contains("kube-root-ca.crt")) && s.registered_watchers() > watchers
    });
    assert!(established, "kubectl get -w did not start watching; it printed {seen:?}");
    let cm = s.dir.join("cm.yaml");
    std::fs::write(&cm, "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: watched}\ndata: {a: '1'}\n").unwrap();
    s.kubectl_ok(&["apply", "-f", cm.to_str().unwrap()]);
    s.kubectl_ok(&["delete", "configmap", "watched"]);
    wait_for(Duration::from_secs(60), || {
        seen.extend(rx.try_iter());
        seen.iter().any(|l| l.starts_with("DELETED") && l.contains("watched"))
    });
    let _ = w.kill();
    let _ = w.wait();
    assert!(seen.iter().any(|l| l.starts_with("ADDED") && l.contains("watched")), "{seen:?}");
    assert!(seen.iter().any(|l| l.starts_with("DELETED") && l.contains("watched")), "{seen:?}");
}

/// Other kubectl versions shipped beside the dispatcher, when present.
#[test]
fn other_kubectl_versions_apply_and_get() {
    let dir = "/usr/lib/google-cloud-sdk/bin";
    for v in ["1.27", "1.32"] {
        let bin = format!("{dir}/kubectl.{v}");
        if !require(&bin, &["version", "--client"]) {
            continue;
        }
        let s = Server::start();
        // kubectl 1.27 reads /openapi/v2 (protobuf) to decide how to validate.
        let validate = "--validate=true";
        let out = s.kubectl_bin(&bin, &["apply", validate, "-f", &manifest()]);
        assert!(out.status.success(), "kubectl {v} apply: {}", String::from_utf8_lossy(&out.stderr));
        let out = s.kubectl_bin(&bin, &["apply", validate, "-f", &manifest()]);
        assert!(out.status.success(), "kubectl {v} apply again: {}", String::from_utf8_lossy(&out.stderr));
        let out = s.kubectl_bin(&bin, &["get", "pods"]);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && text.contains("minimal"),
            "kubectl {v} get pods: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let out = s.kubectl_bin(&bin, &["delete", "-f", &manifest()]);
        assert!(out.status.success(), "kubectl {v} delete: {}", String::from_utf8_lossy(&out.stderr));
    }
}

#[test]
fn explain_and_edit() {
    if !require("kubectl", &["version", "--client"]) {
        return;
    }
    let s = Server::start();
    let out = s.kubectl_ok(&["explain", "pods.spec"]);
    assert!(out.contains("FIELD: spec <PodSpec>") && out.contains("containers\t<[]Container> -required-"), "{out}");
    let out = s.kubectl_ok(&["explain", "deployment.spec.strategy.rollingUpdate"]);
    assert!(out.contains("maxSurge"), "{out}");

    // `kubectl edit` with an editor that changes the image: a strategic merge patch.
    s.kubectl_ok(&["apply", "-f", &manifest()]);
    let editor = s.dir.join("editor.sh");
    std::fs::write(&editor, "#!/bin/sh\nsed -i 's/image: busybox/image: busybox:1.36/' \"$1\"\n").unwrap();
    std::process::Command::new("chmod").args(["+x", editor.to_str().unwrap()]).status().unwrap();
    let out = Command::new("kubectl")
        .args(["edit", "daemonset", "ds"])
        .env("KUBECONFIG", &s.kubeconfig)
        .env("KUBE_EDITOR", &editor)
        .output()
        .unwrap();
    assert!(out.status.success(), "kubectl edit: {}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("daemonset.apps/ds edited"));
    let img = s.kubectl_ok(&[
        "get",
        "ds",
        "ds",
        "-o",
        "jsonpath={.spec.template.spec.containers[0].image} {.metadata.generation}",
    ]);
    assert_eq!(img, "busybox:1.36 2");
}

/// Every namespace gets the `default` ServiceAccount and the `kube-root-ca.crt` ConfigMap
/// holding the cluster CA, and gets them back when they are deleted.
#[test]
fn namespaces_get_default_service_account_and_root_ca() {
    if !require("kubectl", &["version", "--client"]) {
        return;
    }
    let s = Server::start();
    let sas = s.kubectl_ok(&[
        "get",
        "serviceaccounts",
        "-A",
        "-o",
        "jsonpath={range .items[*]}{.metadata.namespace}/{.metadata.name} {end}",
    ]);
    for ns in ["default", "kube-node-lease", "kube-public", "kube-system"] {
        assert!(sas.contains(&format!("{ns}/default")), "{sas}");
    }
    let ns = s.dir.join("ns.yaml");
    std::fs::write(&ns, "apiVersion: v1\nkind: Namespace\nmetadata: {name: fresh}\n").unwrap();
    s.kubectl_ok(&["apply", "-f", ns.to_str().unwrap()]);
    let ca = std::fs::read_to_string(s.pki("ca.crt")).unwrap();
    assert!(common::wait_for(Duration::from_secs(5), || {
        s.kubectl(&["get", "configmap", "kube-root-ca.crt", "-n", "fresh", "-o", "jsonpath={.data.ca\\.crt}"]).stdout
            == ca.as_bytes()
    }));
    s.kubectl_ok(&["delete", "serviceaccount", "default", "-n", "fresh"]);
    assert!(common::wait_for(Duration::from_secs(5), || s
        .kubectl(&["get", "sa", "default", "-n", "fresh"])
        .status
        .success()));
}
