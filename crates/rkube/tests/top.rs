//! Resource usage end to end: the agent's kubelet API serves `/stats/summary` and
//! `/metrics/resource` from its cgroups (read here through `nodes/proxy`), and the API server
//! serves `metrics.k8s.io` from them, so `kubectl top pod|node` (1.28 and 1.33) show what
//! the containers really use; RBAC on the metrics as metrics-server's roles give it.

mod common;

use std::time::Duration;

use common::pods::get;
use common::{wait_for, Server};
use serde_json::{json, Value};

const KUBECTL_1_28: &str = "/usr/lib/google-cloud-sdk/bin/kubectl.1.28";

fn create(s: &Server, path: &str, obj: Value) {
    let body = obj.to_string();
    let (code, _, out) = s.curl("POST", path, Some(body.as_bytes()), &["Content-Type: application/json"]);
    assert_eq!(code, 201, "create {path}: {out}");
}

/// A pod with a container that holds ~30 MB and burns CPU under a 300m limit, and one that
/// sleeps.
fn burner() -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "burner", "labels": {"app": "burn"}},
        "spec": {
            "terminationGracePeriodSeconds": 1,
            "containers": [
                {"name": "burn", "image": "busybox",
                 "command": ["/bin/sh", "-c", "x=$(head -c 30000000 /dev/zero | tr '\\0' a); while :; do :; done"],
                 "resources": {"limits": {"cpu": "300m", "memory": "200Mi"}}},
                {"name": "idle", "image": "busybox", "command": ["/bin/sh", "-c", "sleep 3600"]},
            ],
        },
    })
}

fn milli_cpu(q: &str) -> f64 {
    if let Some(n) = q.strip_suffix('n') {
        n.parse::<f64>().unwrap() / 1e6
    } else if let Some(u) = q.strip_suffix('u') {
        u.parse::<f64>().unwrap() / 1e3
    } else if let Some(m) = q.strip_suffix('m') {
        m.parse().unwrap()
    } else {
        q.parse::<f64>().unwrap() * 1000.0
    }
}

fn bytes(q: &str) -> f64 {
    for (suffix, f) in [("Ki", 1024.0), ("Mi", 1048576.0), ("Gi", 1073741824.0)] {
        if let Some(n) = q.strip_suffix(suffix) {
            return n.parse::<f64>().unwrap() * f;
        }
    }
    q.parse().unwrap()
}

/// `kubectl top pod --containers` rows: (container, millicores, MiB).
fn top_containers(out: &str) -> Vec<(String, u64, u64)> {
    out.lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let cpu = f.get(2)?.strip_suffix('m')?.parse().ok()?;
            let mem = f.get(3)?.strip_suffix("Mi")?.parse().ok()?;
            Some((f.get(1)?.to_string(), cpu, mem))
        })
        .collect()
}

#[test]
fn kubectl_top_shows_what_the_containers_use() {
    if !common::require("kubectl", &["version", "--client"]) {
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let tokens = tmp.path().join("tokens.csv");
    std::fs::write(&tokens, "viewer-token,viewer,1001,\"dev\"\n").expect("tokens");
    let s = Server::start_with_node(&["--node-ip", "127.0.0.1", "--token-auth-file", &tokens.display().to_string()]);
    create(&s, "/api/v1/namespaces/default/pods", burner());
    let mut pod = Value::Null;
    assert!(
        wait_for(Duration::from_secs(60), || {
            pod = get(&s, "/api/v1/namespaces/default/pods/burner");
            pod["status"]["containerStatuses"]
                .as_array()
                .is_some_and(|a| a.len() == 2 && a.iter().all(|c| c["state"]["running"].is_object()))
        }),
        "burner never ran: {pod:#}"
    );
    let node = pod["spec"]["nodeName"].as_str().unwrap().to_string();
    let uid = pod["metadata"]["uid"].as_str().unwrap().to_string();

    // The Summary API, through nodes/proxy: the node, the agent, the pod and its containers.
    let summary_path = format!("/api/v1/nodes/{node}/proxy/stats/summary");
    let mut summary = Value::Null;
    assert!(
        wait_for(Duration::from_secs(20), || {
            summary = serde_json::from_str(&s.kubectl_ok(&["get", "--raw", &summary_path])).unwrap();
            // A rate (a second summary), and the burner's 30 MB filled.
            summary["pods"].as_array().is_some_and(|p| {
                p.iter().any(|p| {
                    p["podRef"]["name"] == "burner"
                        && p["cpu"]["usageNanoCores"].is_u64()
                        && p["containers"][0]["memory"]["workingSetBytes"].as_u64().unwrap_or(0) > 25_000_000
                })
            })
        }),
        "no CPU rate or not the memory for burner in the summary: {summary:#}"
    );
    assert_eq!(summary["node"]["nodeName"], json!(node));
    assert!(summary["node"]["cpu"]["usageCoreNanoSeconds"].as_u64().unwrap() > 0, "{summary:#}");
    assert!(summary["node"]["memory"]["workingSetBytes"].as_u64().unwrap() > 0, "{summary:#}");
    assert_eq!(summary["node"]["systemContainers"][0]["name"], "kubelet");
    let p = summary["pods"].as_array().unwrap().iter().find(|p| p["podRef"]["name"] == "burner").unwrap().clone();
    assert_eq!(p["podRef"], json!({"name": "burner", "namespace": "default", "uid": uid}));
    let names: Vec<&str> = p["containers"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["burn", "idle"], "{p:#}");
    let burn = &p["containers"][0];
    // A memory limit: what is left under it.
    let available = burn["memory"]["availableBytes"].as_u64().unwrap();
    assert!(available < 200 << 20 && available > 100 << 20, "{burn:#}");
    assert!(p["process_stats"]["process_count"].as_u64().unwrap() >= 2, "{p:#}");

    // The metrics metrics-server scrapes.
    let text = s.kubectl_ok(&["get", "--raw", &format!("/api/v1/nodes/{node}/proxy/metrics/resource")]);
    for want in [
        "# TYPE container_cpu_usage_seconds_total counter",
        "container_memory_working_set_bytes{container=\"idle\",namespace=\"default\",pod=\"burner\"} ",
        "container_start_time_seconds{container=\"burn\",namespace=\"default\",pod=\"burner\"} ",
        "pod_cpu_usage_seconds_total{namespace=\"default\",pod=\"burner\"} ",
        "node_memory_working_set_bytes ",
        "resource_scrape_error 0",
    ] {
        assert!(text.contains(want), "{want:?} not in:\n{text}");
    }

    // metrics.k8s.io in discovery, and its objects.
    let groups = s.kubectl_ok(&["api-versions"]);
    assert!(groups.lines().any(|l| l == "metrics.k8s.io/v1beta1"), "{groups}");
    let pm: Value = serde_json::from_str(&s.kubectl_ok(&[
        "get",
        "--raw",
        "/apis/metrics.k8s.io/v1beta1/namespaces/default/pods/burner",
    ]))
    .unwrap();
    assert_eq!(pm["kind"], "PodMetrics");
    assert_eq!(pm["metadata"]["labels"], json!({"app": "burn"}));
    assert!(pm["window"].as_str().unwrap().ends_with('s'), "{pm:#}");
    let usage =
        |name: &str| pm["containers"].as_array().unwrap().iter().find(|c| c["name"] == name).unwrap()["usage"].clone();
    let (burn, idle) = (usage("burn"), usage("idle"));
    // The CPU limit holds the loop near 300m (less on a busy machine).
    let burn_cpu = milli_cpu(burn["cpu"].as_str().unwrap());
    assert!((30.0..=360.0).contains(&burn_cpu), "burn: {burn}");
    assert!(milli_cpu(idle["cpu"].as_str().unwrap()) < 20.0, "idle: {idle}");
    assert!(bytes(burn["memory"].as_str().unwrap()) > 25e6, "burn: {burn}");
    let selected: Value = serde_json::from_str(&s.kubectl_ok(&[
        "get",
        "--raw",
        "/apis/metrics.k8s.io/v1beta1/namespaces/default/pods?labelSelector=app%3Dother",
    ]))
    .unwrap();
    assert_eq!(selected["kind"], "PodMetricsList");
    assert_eq!(selected["items"], json!([]));

    // kubectl top, as each version asks for it.
    for bin in ["kubectl", KUBECTL_1_28] {
        let out = s.kubectl_bin(bin, &["top", "pod", "burner", "--containers"]);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(out.status.success(), "{bin} top pod: {text}{}", String::from_utf8_lossy(&out.stderr));
        assert!(text.starts_with("POD "), "{text}");
        let rows = top_containers(&text);
        let row = |c: &str| rows.iter().find(|r| r.0 == c).cloned().unwrap_or_else(|| panic!("{c} not in {text}"));
        let (burn, idle) = (row("burn"), row("idle"));
        assert!((30..=360).contains(&burn.1) && burn.2 >= 25, "{text}");
        assert!(idle.1 < 20, "{text}");

        let out = s.kubectl_bin(bin, &["top", "pod", "-l", "app=burn"]);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(out.status.success() && text.lines().nth(1).is_some_and(|l| l.starts_with("burner ")), "{text}");

        let out = s.kubectl_bin(bin, &["top", "node"]);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(out.status.success(), "{bin} top node: {text}{}", String::from_utf8_lossy(&out.stderr));
        let row: Vec<&str> = text.lines().nth(1).unwrap_or("").split_whitespace().collect();
        assert_eq!(row.first(), Some(&node.as_str()), "{text}");
        assert!(
            row.get(2).is_some_and(|p| p.ends_with('%')) && row.get(3).is_some_and(|m| m.ends_with("Mi")),
            "{text}"
        );

        let out = s.kubectl_bin(bin, &["top", "pod", "nope"]);
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("podmetrics.metrics.k8s.io \"default/nope\" not found"), "{err}");
    }

    // RBAC: view in a namespace reads its pod metrics, not the nodes'.
    s.kubectl_ok(&["create", "rolebinding", "viewer-views", "--clusterrole=view", "--user=viewer"]);
    let out = s.kubectl_token("viewer-token", &["top", "pod", "burner"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = s.kubectl_token("viewer-token", &["top", "node"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("nodes.metrics.k8s.io is forbidden"), "{err}");
    let out = s.kubectl_token("viewer-token", &["get", "--raw", &summary_path]);
    assert!(!out.status.success(), "the summary is nodes/proxy: not for viewers");
}
