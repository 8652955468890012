//! `pods/eviction` with real pods: an eviction deletes the pod gracefully (after the
//! DisruptionTarget condition) unless its PodDisruptionBudget forbids it, answered as
//! kube-apiserver does (429 with the budget's cause, 201 Success), and `kubectl drain` evicts
//! a node's pods through it.

mod common;

use std::time::Duration;

use common::pods::{command_pod, create, get, node_name, out_dir, pod_path, wait_phase};
use common::{wait_for, Server};
use serde_json::{json, Value};

fn evict(s: &Server, name: &str, query: &str) -> (u16, Value) {
    let body =
        json!({"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": name, "namespace": "default"}});
    let (code, _, out) = s.curl(
        "POST",
        &format!("/api/v1/namespaces/default/pods/{name}/eviction{query}"),
        Some(body.to_string().as_bytes()),
        &["Content-Type: application/json"],
    );
    (code, serde_json::from_str(&out).unwrap_or(Value::Null))
}

fn sleeper(s: &Server, name: &str, out: &std::path::Path) {
    let mut pod = command_pod(name, vec!["sleep".into(), "3600".into()], out, json!({}));
    pod["metadata"]["labels"] = json!({"app": name});
    pod["spec"]["terminationGracePeriodSeconds"] = json!(1);
    create(s, "/api/v1/namespaces/default/pods", &pod);
    wait_phase(s, name, "Running", 60);
}

fn gone(s: &Server, name: &str) -> bool {
    wait_for(Duration::from_secs(30), || get(s, &pod_path(name)).is_null())
}

#[test]
fn eviction_respects_the_disruption_budget_and_kubectl_drain_uses_it() {
    let s = Server::start_with_node(&["--node-ip", "127.0.0.1"]);
    let (_tmp, out) = out_dir();
    sleeper(&s, "free", &out);
    sleeper(&s, "guarded", &out);

    // The URL's name and the body's must agree.
    let body = json!({"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": "other"}});
    let (code, _, text) = s.curl(
        "POST",
        "/api/v1/namespaces/default/pods/free/eviction",
        Some(body.to_string().as_bytes()),
        &["Content-Type: application/json"],
    );
    assert_eq!(code, 400, "{text}");
    assert!(text.contains("name in URL does not match name in Eviction object"), "{text}");

    // A dry run changes nothing.
    let (code, _) = evict(&s, "free", "?dryRun=All");
    assert_eq!(code, 201);
    assert!(get(&s, &pod_path("free"))["metadata"]["deletionTimestamp"].is_null());

    // No budget: the pod is marked and deleted gracefully.
    let (code, status) = evict(&s, "free", "");
    assert_eq!((code, &status["status"], &status["code"]), (201, &json!("Success"), &json!(201)), "{status}");
    let pod = get(&s, &pod_path("free"));
    if !pod.is_null() {
        let conditions = pod["status"]["conditions"].as_array().cloned().unwrap_or_default();
        assert!(
            conditions.iter().any(|c| c["type"] == "DisruptionTarget"
                && c["reason"] == "EvictionByEvictionAPI"
                && c["message"] == "Eviction API: evicting"),
            "{pod:#}"
        );
    }
    assert!(gone(&s, "free"), "the evicted pod stays");

    // A budget no disruption controller has looked at yet.
    create(
        &s,
        "/apis/policy/v1/namespaces/default/poddisruptionbudgets",
        &json!({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": "keep"},
                "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "guarded"}}}}),
    );
    let (code, status) = evict(&s, "guarded", "");
    assert_eq!(code, 429, "{status}");
    assert_eq!(status["message"], "Cannot evict pod as it would violate the pod's disruption budget.");
    assert_eq!(
        status["details"]["causes"][0],
        json!({"reason": "DisruptionBudget", "message": "The disruption budget keep is still being processed by the server."})
    );
    assert_eq!(status["details"]["retryAfterSeconds"], 10, "{status}");

    // The status a disruption controller would write: no disruption allowed, then one.
    let set_status = |allowed: i64| {
        let mut pdb = get(&s, "/apis/policy/v1/namespaces/default/poddisruptionbudgets/keep");
        pdb["status"] = json!({"observedGeneration": 1, "disruptionsAllowed": allowed, "currentHealthy": 1,
                               "desiredHealthy": 1, "expectedPods": 1});
        let (code, _, text) = s.curl(
            "PUT",
            "/apis/policy/v1/namespaces/default/poddisruptionbudgets/keep/status",
            Some(pdb.to_string().as_bytes()),
            &["Content-Type: application/json"],
        );
        assert_eq!(code, 200, "{text}");
    };
    set_status(0);
    let (code, status) = evict(&s, "guarded", "");
    assert_eq!(code, 429, "{status}");
    assert_eq!(
        status["details"]["causes"][0]["message"],
        "The disruption budget keep needs 1 healthy pods and has 1 currently"
    );
    assert!(get(&s, &pod_path("guarded"))["metadata"]["deletionTimestamp"].is_null());
    set_status(1);
    let (code, status) = evict(&s, "guarded", "");
    assert_eq!(code, 201, "{status}");
    let pdb = get(&s, "/apis/policy/v1/namespaces/default/poddisruptionbudgets/keep");
    assert_eq!(pdb["status"]["disruptionsAllowed"], 0, "{pdb:#}");
    assert!(pdb["status"]["disruptedPods"]["guarded"].is_string(), "{pdb:#}");
    let allowed = pdb["status"]["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == "DisruptionAllowed").cloned());
    assert_eq!(
        allowed.as_ref().map(|c| (&c["status"], &c["reason"])),
        Some((&json!("False"), &json!("InsufficientPods"))),
        "{pdb:#}"
    );
    assert!(gone(&s, "guarded"));

    // A pod nothing runs (Pending) goes whatever its budget says.
    let pending = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "nowhere", "labels": {"app": "guarded"}},
                         "spec": {"nodeSelector": {"no": "such"}, "containers": [{"name": "c", "image": "busybox"}]}});
    create(&s, "/api/v1/namespaces/default/pods", &pending);
    assert_eq!(evict(&s, "nowhere", "").0, 201);
    assert!(gone(&s, "nowhere"));
    assert_eq!(evict(&s, "nowhere", "").0, 404);

    // kubectl drain: cordons the node and evicts its pods.
    sleeper(&s, "drained", &out);
    let node = node_name(&s);
    let o = s.kubectl(&["drain", &node, "--force", "--grace-period=1", "--timeout=60s"]);
    let (stdout, stderr) = (String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    assert!(o.status.success(), "{stdout}{stderr}");
    assert!(stdout.contains("pod/drained evicted"), "{stdout}{stderr}");
    assert!(stdout.contains(&format!("node/{node} drained")), "{stdout}");
    assert_eq!(get(&s, &format!("/api/v1/nodes/{node}"))["spec"]["unschedulable"], true);
    assert!(get(&s, &pod_path("drained")).is_null());
}
