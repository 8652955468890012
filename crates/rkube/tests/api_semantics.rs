//! API semantics through curl against the real server: watch (replay, bookmarks, initial
//! events, 410 after compaction), subresources (status, scale, binding, finalize), dry run,
//! YAML bodies, HTTP/2, token-file users, metrics, every resource family's CRUD, and a clean
//! shutdown on SIGTERM.

mod common;

use std::time::Duration;

use common::{require, wait_for, Server};
use serde_json::{json, Value};

const CT: &str = "Content-Type: application/json";

fn parse(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

fn lines(body: &str) -> Vec<Value> {
    body.lines().filter(|l| !l.trim().is_empty()).map(parse).collect()
}

fn types(events: &[Value]) -> Vec<String> {
    events.iter().map(|e| e["type"].as_str().unwrap_or("").to_string()).collect()
}

#[test]
fn watch_replays_bookmarks_initial_events_and_gone() {
    if !require("curl", &["--version"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut s = Server::start_in(dir.path(), &[]);
    let cm = "/api/v1/namespaces/default/configmaps";
    let (_, _, body) = s.curl("GET", cm, None, &[]);
    let rv0 = parse(&body)["metadata"]["resourceVersion"].as_str().unwrap().to_string();
    s.curl(
        "POST",
        cm,
        Some(br#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"w","labels":{"a":"1"}}}"#),
        &[CT],
    );
    s.curl(
        "PATCH",
        &format!("{cm}/w"),
        Some(br#"{"metadata":{"labels":{"a":"2"}}}"#),
        &["Content-Type: application/merge-patch+json"],
    );
    s.curl("DELETE", &format!("{cm}/w"), None, &[]);

    // Replay from before the create; the server ends the stream after timeoutSeconds.
    let (code, _, body) = s.curl("GET", &format!("{cm}?watch=true&resourceVersion={rv0}&timeoutSeconds=1"), None, &[]);
    assert_eq!(code, 200);
    let ev = lines(&body);
    assert_eq!(types(&ev), ["ADDED", "MODIFIED", "DELETED"], "{body}");
    let rvs: Vec<u64> =
        ev.iter().map(|e| e["object"]["metadata"]["resourceVersion"].as_str().unwrap().parse().unwrap()).collect();
    assert!(rvs.windows(2).all(|w| w[0] < w[1]), "increasing resourceVersions: {rvs:?}");

    // A label selector turns a change that leaves the selection into DELETED for that watcher.
    let (code, _, body) =
        s.curl("GET", &format!("{cm}?watch=1&resourceVersion={rv0}&labelSelector=a%3D1&timeoutSeconds=1"), None, &[]);
    assert_eq!(code, 200);
    assert_eq!(types(&lines(&body)), ["ADDED", "DELETED"], "{body}");

    // The legacy /watch/ path.
    let (_, _, body) = s.curl(
        "GET",
        &format!("/api/v1/watch/namespaces/default/configmaps?resourceVersion={rv0}&timeoutSeconds=1"),
        None,
        &[],
    );
    assert_eq!(types(&lines(&body)).len(), 3, "{body}");

    // sendInitialEvents: the current state, then the initial-events-end bookmark.
    s.curl("POST", cm, Some(br#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"x"}}"#), &[CT]);
    let (code, _, body) = s.curl(
        "GET",
        &format!("{cm}?watch=1&sendInitialEvents=true&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true&timeoutSeconds=1"),
        None,
        &[],
    );
    assert_eq!(code, 200);
    // Every namespace also holds the root CA ConfigMap, as in Kubernetes.
    let ev: Vec<Value> =
        lines(&body).into_iter().filter(|e| e["object"]["metadata"]["name"] != "kube-root-ca.crt").collect();
    assert_eq!(types(&ev), ["ADDED", "BOOKMARK"], "{body}");
    assert_eq!(ev[1]["object"]["metadata"]["annotations"]["k8s.io/initial-events-end"], "true");
    let (code, _, body) = s.curl("GET", &format!("{cm}?watch=1&sendInitialEvents=true"), None, &[]);
    assert_eq!((code, parse(&body)["reason"].clone()), (422, json!("Invalid")), "{body}");

    // After a restart the history is gone: a watch from an old revision gets 410 Expired.
    s.kill9();
    let s = Server::start_in(dir.path(), &[]);
    let (code, _, body) = s.curl("GET", &format!("{cm}?watch=1&resourceVersion={rv0}"), None, &[]);
    assert_eq!(code, 200);
    let ev = lines(&body);
    assert_eq!(types(&ev), ["ERROR"], "{body}");
    assert_eq!(ev[0]["object"]["code"], 410);
    assert_eq!(ev[0]["object"]["reason"], "Expired");
    let (code, _, body) = s.curl("GET", &format!("{cm}?resourceVersion={rv0}&resourceVersionMatch=Exact"), None, &[]);
    assert_eq!((code, parse(&body)["reason"].clone()), (410, json!("Expired")), "{body}");
}

#[test]
fn subresources_dry_run_yaml() {
    if !require("curl", &["--version"]) {
        return;
    }
    let s = Server::start();
    let pods = "/api/v1/namespaces/default/pods";
    let pod = br#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p"},"spec":{"containers":[{"name":"c","image":"busybox"}]},"status":{"phase":"Running"}}"#;
    // dryRun: a full answer, nothing stored.
    let (code, _, body) = s.curl("POST", &format!("{pods}?dryRun=All"), Some(pod), &[CT]);
    assert_eq!(code, 201, "{body}");
    assert_eq!(s.curl("GET", &format!("{pods}/p"), None, &[]).0, 404);
    // Status given at create is replaced by the initial status.
    let (code, _, body) = s.curl("POST", pods, Some(pod), &[CT]);
    assert_eq!(code, 201);
    assert_eq!(parse(&body)["status"], json!({"phase": "Pending", "qosClass": "BestEffort"}));
    // The status subresource changes status only; the main resource ignores status.
    let (code, _, body) = s.curl(
        "PATCH",
        &format!("{pods}/p/status"),
        Some(br#"{"status":{"phase":"Running"},"spec":{"nodeName":"ignored"}}"#),
        &["Content-Type: application/merge-patch+json"],
    );
    assert_eq!(code, 200, "{body}");
    let v = parse(&body);
    assert_eq!((v["status"]["phase"].clone(), v["spec"].get("nodeName").cloned()), (json!("Running"), None));
    let (_, _, body) = s.curl(
        "PATCH",
        &format!("{pods}/p"),
        Some(br#"{"status":{"phase":"Failed"},"metadata":{"labels":{"x":"y"}}}"#),
        &["Content-Type: application/merge-patch+json"],
    );
    let v = parse(&body);
    assert_eq!((v["status"]["phase"].clone(), v["metadata"]["labels"]["x"].clone()), (json!("Running"), json!("y")));
    // Binding assigns the node once.
    let binding =
        br#"{"apiVersion":"v1","kind":"Binding","metadata":{"name":"p"},"target":{"kind":"Node","name":"n1"}}"#;
    let (code, _, body) = s.curl("POST", &format!("{pods}/p/binding"), Some(binding), &[CT]);
    assert_eq!(code, 201, "{body}");
    assert_eq!(s.curl("POST", &format!("{pods}/p/binding"), Some(binding), &[CT]).0, 409);
    let (_, _, body) = s.curl("GET", &format!("{pods}/p"), None, &[]);
    assert_eq!(parse(&body)["spec"]["nodeName"], "n1");

    // YAML body; scale subresource; generation.
    let yaml = b"apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\nspec:\n  selector: {matchLabels: {app: d}}\n  template:\n    metadata: {labels: {app: d}}\n    spec: {containers: [{name: c, image: nginx}]}\n";
    let deps = "/apis/apps/v1/namespaces/default/deployments";
    let (code, _, body) = s.curl("POST", deps, Some(yaml), &["Content-Type: application/yaml"]);
    assert_eq!(code, 201, "{body}");
    let (_, _, body) = s.curl("GET", &format!("{deps}/d/scale"), None, &[]);
    let scale = parse(&body);
    assert_eq!(
        (scale["kind"].clone(), scale["spec"]["replicas"].clone(), scale["status"]["selector"].clone()),
        (json!("Scale"), json!(1), json!("app=d"))
    );
    let (code, _, _) = s.curl(
        "PATCH",
        &format!("{deps}/d/scale"),
        Some(br#"{"spec":{"replicas":5}}"#),
        &["Content-Type: application/merge-patch+json"],
    );
    assert_eq!(code, 200);
    let (_, _, body) = s.curl("GET", &format!("{deps}/d"), None, &["Accept: application/yaml"]);
    assert!(body.contains("replicas: 5") && body.contains("generation: 2"), "{body}");

    // Namespace finalize subresource and deletion.
    let (code, _, _) = s.curl(
        "POST",
        "/api/v1/namespaces",
        Some(br#"{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"fin"}}"#),
        &[CT],
    );
    assert_eq!(code, 201);
    let (code, _, body) = s.curl(
        "PUT",
        "/api/v1/namespaces/fin/finalize",
        Some(br#"{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"fin"},"spec":{"finalizers":[]}}"#),
        &[CT],
    );
    assert_eq!(code, 200, "{body}");
    assert_eq!(parse(&body)["spec"]["finalizers"], json!([]));
    let (code, _, body) = s.curl("DELETE", "/api/v1/namespaces/fin", None, &[]);
    assert_eq!((code, parse(&body)["status"]["phase"].clone()), (200, json!("Terminating")));
    assert!(common::wait_for(std::time::Duration::from_secs(10), || s
        .curl("GET", "/api/v1/namespaces/fin", None, &[])
        .0
        == 404));
}

#[test]
fn every_resource_family_round_trips() {
    if !require("curl", &["--version"]) {
        return;
    }
    let s = Server::start();
    let objects: Vec<(&str, Value)> = vec![
        (
            "/api/v1/namespaces/default/services",
            json!({"apiVersion":"v1","kind":"Service","metadata":{"name":"o"},"spec":{"ports":[{"port":80}]}}),
        ),
        (
            "/api/v1/namespaces/default/endpoints",
            json!({"apiVersion":"v1","kind":"Endpoints","metadata":{"name":"o"},"subsets":[{"addresses":[{"ip":"10.0.0.1"}],"ports":[{"port":80}]}]}),
        ),
        (
            "/api/v1/namespaces/default/configmaps",
            json!({"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"o"},"data":{"a":"b"}}),
        ),
        (
            "/api/v1/namespaces/default/secrets",
            json!({"apiVersion":"v1","kind":"Secret","metadata":{"name":"o"},"data":{"a":"Yg=="}}),
        ),
        (
            "/api/v1/namespaces/default/serviceaccounts",
            json!({"apiVersion":"v1","kind":"ServiceAccount","metadata":{"name":"o"}}),
        ),
        ("/api/v1/nodes", json!({"apiVersion":"v1","kind":"Node","metadata":{"name":"o"}})),
        (
            "/api/v1/namespaces/default/events",
            json!({"apiVersion":"v1","kind":"Event","metadata":{"name":"o"},"involvedObject":{"kind":"Pod","name":"p"},"reason":"R","message":"m"}),
        ),
        (
            "/apis/apps/v1/namespaces/default/replicasets",
            json!({"apiVersion":"apps/v1","kind":"ReplicaSet","metadata":{"name":"o"},"spec":{"selector":{"matchLabels":{"a":"b"}},"template":{"metadata":{"labels":{"a":"b"}},"spec":{"containers":[{"name":"c","image":"i"}]}}}}),
        ),
        (
            "/apis/apps/v1/namespaces/default/statefulsets",
            json!({"apiVersion":"apps/v1","kind":"StatefulSet","metadata":{"name":"o"},"spec":{"serviceName":"o","selector":{"matchLabels":{"a":"b"}},"template":{"metadata":{"labels":{"a":"b"}},"spec":{"containers":[{"name":"c","image":"i"}]}}}}),
        ),
        (
            "/apis/batch/v1/namespaces/default/cronjobs",
            json!({"apiVersion":"batch/v1","kind":"CronJob","metadata":{"name":"o"},"spec":{"schedule":"* * * * *","jobTemplate":{"spec":{"template":{"spec":{"restartPolicy":"Never","containers":[{"name":"c","image":"i"}]}}}}}}),
        ),
        (
            "/apis/rbac.authorization.k8s.io/v1/namespaces/default/roles",
            json!({"apiVersion":"rbac.authorization.k8s.io/v1","kind":"Role","metadata":{"name":"o"},"rules":[{"apiGroups":[""],"resources":["pods"],"verbs":["get"]}]}),
        ),
        (
            "/apis/rbac.authorization.k8s.io/v1/namespaces/default/rolebindings",
            json!({"apiVersion":"rbac.authorization.k8s.io/v1","kind":"RoleBinding","metadata":{"name":"o"},"roleRef":{"apiGroup":"rbac.authorization.k8s.io","kind":"Role","name":"o"},"subjects":[{"kind":"ServiceAccount","name":"default","namespace":"default"}]}),
        ),
        (
            "/apis/rbac.authorization.k8s.io/v1/clusterroles",
            json!({"apiVersion":"rbac.authorization.k8s.io/v1","kind":"ClusterRole","metadata":{"name":"o"},"rules":[]}),
        ),
        (
            "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings",
            json!({"apiVersion":"rbac.authorization.k8s.io/v1","kind":"ClusterRoleBinding","metadata":{"name":"o"},"roleRef":{"apiGroup":"rbac.authorization.k8s.io","kind":"ClusterRole","name":"o"},"subjects":[{"kind":"Group","name":"g","apiGroup":"rbac.authorization.k8s.io"}]}),
        ),
        (
            "/apis/coordination.k8s.io/v1/namespaces/default/leases",
            json!({"apiVersion":"coordination.k8s.io/v1","kind":"Lease","metadata":{"name":"o"},"spec":{"holderIdentity":"me"}}),
        ),
        (
            "/apis/events.k8s.io/v1/namespaces/default/events",
            json!({"apiVersion":"events.k8s.io/v1","kind":"Event","metadata":{"name":"o2"},"eventTime":"2026-01-01T00:00:00.000000Z","reportingController":"x","reportingInstance":"y","action":"A","reason":"R","regarding":{"kind":"Pod","name":"p"}}),
        ),
        (
            "/api/v1/namespaces/default/podtemplates",
            json!({"apiVersion":"v1","kind":"PodTemplate","metadata":{"name":"o"},"template":{"spec":{"containers":[{"name":"c","image":"i"}]}}}),
        ),
        (
            "/apis/networking.k8s.io/v1/namespaces/default/ingresses",
            json!({"apiVersion":"networking.k8s.io/v1","kind":"Ingress","metadata":{"name":"o"},"spec":{"defaultBackend":{"service":{"name":"s","port":{"number":80}}}}}),
        ),
        (
            "/apis/networking.k8s.io/v1/ingressclasses",
            json!({"apiVersion":"networking.k8s.io/v1","kind":"IngressClass","metadata":{"name":"o"},"spec":{"controller":"example.com/c"}}),
        ),
        (
            "/apis/node.k8s.io/v1/runtimeclasses",
            json!({"apiVersion":"node.k8s.io/v1","kind":"RuntimeClass","metadata":{"name":"o"},"handler":"runc"}),
        ),
        (
            "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices",
            json!({"apiVersion":"discovery.k8s.io/v1","kind":"EndpointSlice","metadata":{"name":"o"},"addressType":"IPv4","endpoints":[{"addresses":["10.0.0.1"]}],"ports":[{"port":80}]}),
        ),
        (
            "/apis/policy/v1/namespaces/default/poddisruptionbudgets",
            json!({"apiVersion":"policy/v1","kind":"PodDisruptionBudget","metadata":{"name":"o"},"spec":{"minAvailable":1}}),
        ),
    ];
    // What kube-apiserver (the baseline in shared/e2e) answered for these creates.
    let defaulted: Vec<(&str, &str, Value)> = vec![
        ("podtemplates", "/metadata/generation", json!(1)),
        (
            "podtemplates",
            "/template",
            json!({"metadata": {"creationTimestamp": null}, "spec": {"containers": [{"name": "c", "image": "i",
                "resources": {}, "terminationMessagePath": "/dev/termination-log", "terminationMessagePolicy": "File",
                "imagePullPolicy": "Always"}], "restartPolicy": "Always", "terminationGracePeriodSeconds": 30,
                "dnsPolicy": "ClusterFirst", "securityContext": {}, "schedulerName": "default-scheduler"}}),
        ),
        ("ingresses", "/status", json!({"loadBalancer": {}})),
        ("ingresses", "/metadata/generation", json!(1)),
        ("ingressclasses", "/metadata/generation", json!(1)),
        ("runtimeclasses", "/metadata/generation", Value::Null),
        ("endpointslices", "/endpoints", json!([{"addresses": ["10.0.0.1"], "conditions": {}}])),
        ("endpointslices", "/ports", json!([{"name": "", "protocol": "TCP", "port": 80}])),
        (
            "poddisruptionbudgets",
            "/status",
            json!({"disruptionsAllowed": 0, "currentHealthy": 0, "desiredHealthy": 0, "expectedPods": 0}),
        ),
        ("poddisruptionbudgets", "/metadata/generation", json!(1)),
    ];
    for (plural, pointer, want) in &defaulted {
        let (path, obj) = objects.iter().find(|(p, _)| p.ends_with(&format!("/{plural}"))).unwrap();
        let mut obj = obj.clone();
        obj["metadata"]["name"] = json!("defaulted");
        let (code, _, body) = s.curl("POST", path, Some(obj.to_string().as_bytes()), &[CT]);
        assert!(code == 201 || code == 409, "{path}: {body}");
        let (_, _, body) = s.curl("GET", &format!("{path}/defaulted"), None, &[]);
        assert_eq!(parse(&body).pointer(pointer).unwrap_or(&Value::Null), want, "{plural}{pointer}: {body}");
    }
    for (path, obj) in objects {
        let name = obj["metadata"]["name"].as_str().unwrap().to_string();
        let (_, _, body) = s.curl("GET", path, None, &[]);
        let rv = parse(&body)["metadata"]["resourceVersion"].as_str().unwrap().to_string();
        let (code, _, body) = s.curl("POST", path, Some(obj.to_string().as_bytes()), &[CT]);
        assert_eq!(code, 201, "{path}: {body}");
        let created = parse(&body);
        assert!(
            created["metadata"]["uid"].is_string() && created["metadata"]["creationTimestamp"].is_string(),
            "{body}"
        );
        let (code, _, body) = s.curl("GET", &format!("{path}/{name}"), None, &[]);
        assert_eq!(
            (code, parse(&body)["metadata"]["uid"].clone()),
            (200, created["metadata"]["uid"].clone()),
            "{path}"
        );
        let (code, _, body) = s.curl(
            "PATCH",
            &format!("{path}/{name}"),
            Some(br#"{"metadata":{"labels":{"patched":"yes"}}}"#),
            &["Content-Type: application/merge-patch+json"],
        );
        assert_eq!(
            (code, parse(&body)["metadata"]["labels"]["patched"].clone()),
            (200, json!("yes")),
            "{path}: {body}"
        );
        let (code, _, body) = s.curl("GET", &format!("{path}?labelSelector=patched%3Dyes"), None, &[]);
        assert_eq!((code, parse(&body)["items"].as_array().map(|a| a.len())), (200, Some(1)), "{path}: {body}");
        let (code, _, _) = s.curl("DELETE", &format!("{path}/{name}"), None, &[]);
        assert_eq!(code, 200, "{path}");
        let (_, _, body) = s.curl("GET", &format!("{path}?watch=1&resourceVersion={rv}&timeoutSeconds=1"), None, &[]);
        assert_eq!(types(&lines(&body)), ["ADDED", "MODIFIED", "DELETED"], "{path}: {body}");
    }
}

#[test]
fn http2_token_users_metrics_and_clean_shutdown() {
    if !require("curl", &["--version"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens.csv");
    std::fs::write(&tokens, "admintoken,alice,1,\"system:masters\"\nplaintoken,bob,2,devs\n").unwrap();
    let data = dir.path().join("data");
    let mut s = Server::start_in(&data, &["--token-auth-file", tokens.to_str().unwrap()]);

    let (code, headers, _) = s.curl("GET", "/version", None, &[]);
    assert_eq!(code, 200);
    assert!(headers.starts_with("HTTP/2"), "HTTP/2 by ALPN: {headers}");
    let (code, _, _) = s.curl_as(false, "GET", "/api/v1/namespaces", None, &["Authorization: Bearer admintoken"]);
    assert_eq!(code, 200);
    let (code, _, body) =
        s.curl_as(false, "GET", "/api/v1/namespaces/default/pods", None, &["Authorization: Bearer plaintoken"]);
    assert_eq!(code, 403);
    assert_eq!(
        parse(&body)["message"],
        "pods is forbidden: User \"bob\" cannot list resource \"pods\" in API group \"\" in the namespace \"default\""
    );
    let (code, _, _) = s.curl_as(false, "GET", "/apis", None, &["Authorization: Bearer plaintoken"]);
    assert_eq!(code, 200, "authenticated users may read discovery");

    let (code, _, body) = s.curl("GET", "/metrics", None, &[]);
    assert_eq!(code, 200);
    for metric in [
        "apiserver_request_total",
        "apiserver_request_duration_seconds_bucket",
        "apiserver_registered_watchers",
        "rkube_storage_commit_duration_seconds",
    ] {
        assert!(body.contains(metric), "{metric} missing");
    }
    assert!(body.contains("verb=\"list\",resource=\"pods\",code=\"403\""), "request counter by verb, resource, code");
    // Commits happened (the bootstrap namespaces at least) and were observed.
    let commits = body
        .lines()
        .find(|l| l.starts_with("rkube_storage_commit_duration_seconds_count"))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|n| n.parse::<u64>().ok())
        .unwrap_or(0);
    assert!(commits > 0, "commit latency is recorded:\n{body}");
    assert_eq!(s.curl_anon("GET", "/metrics").0, 403);

    // SIGTERM: a clean exit, and the data is there on the next start.
    s.curl(
        "POST",
        "/api/v1/namespaces/default/configmaps",
        Some(br#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"kept"}}"#),
        &[CT],
    );
    let mut child = s.child.take().unwrap();
    let status = std::process::Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(status.success());
    let exit = child.wait().unwrap();
    assert!(exit.success(), "clean exit on SIGTERM: {exit:?}");
    let mut s2 = Server::start_in(&data, &[]);
    assert_eq!(s2.curl("GET", "/api/v1/namespaces/default/configmaps/kept", None, &[]).0, 200);
    // SIGINT (Ctrl-C) too.
    s2.curl(
        "POST",
        "/api/v1/namespaces/default/configmaps",
        Some(br#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"kept-too"}}"#),
        &[CT],
    );
    let mut child = s2.child.take().unwrap();
    let status = std::process::Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    assert!(status.success());
    let exit = child.wait().unwrap();
    assert!(exit.success(), "clean exit on SIGINT: {exit:?}");
    let s3 = Server::start_in(&data, &[]);
    assert_eq!(s3.curl("GET", "/api/v1/namespaces/default/configmaps/kept-too", None, &[]).0, 200);
}

/// Past the in-flight limit, requests get 429 TooManyRequests with Retry-After, and a
/// refused create stores nothing; `system:masters` is never refused (kube-apiserver's
/// max-in-flight filter exempts it).
#[test]
fn inflight_limit_answers_429() {
    if !require("curl", &["--version"]) {
        return;
    }
    let (_dir, s) =
        Server::start_with_tokens("bursttoken,burst,9,bursters\n", &["--max-mutating-requests-inflight", "1"]);
    let crb =
        br#"{"apiVersion":"rbac.authorization.k8s.io/v1","kind":"ClusterRoleBinding","metadata":{"name":"bursters"},
        "roleRef":{"apiGroup":"rbac.authorization.k8s.io","kind":"ClusterRole","name":"cluster-admin"},
        "subjects":[{"kind":"Group","name":"bursters","apiGroup":"rbac.authorization.k8s.io"}]}"#;
    assert_eq!(s.curl("POST", "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings", Some(crb), &[CT]).0, 201);
    let cm = "/api/v1/namespaces/default/configmaps";
    assert!(wait_for(Duration::from_secs(5), || {
        s.curl_as(false, "GET", cm, None, &["Authorization: Bearer bursttoken"]).0 == 200
    }));
    // 300 creates at once over one HTTP/2 connection, as `burst` or as the admin.
    // Each answer's body goes to a file of its own (parallel transfers interleave on one
    // output); one line per transfer: code, Retry-After, the body's file.
    let bodies = tempfile::tempdir().unwrap();
    let burst = |admin: bool, prefix: &str| {
        let mut cmd = std::process::Command::new("curl");
        cmd.args(["-sS", "--http2", "--parallel", "--parallel-immediate", "--parallel-max", "100"])
            .args(["--cacert", &s.pki("ca.crt")]);
        if admin {
            cmd.args(["--cert", &s.pki("admin.crt"), "--key", &s.pki("admin.key")]);
        } else {
            cmd.args(["-H", "Authorization: Bearer bursttoken"]);
        }
        let body = format!(r#"{{"apiVersion":"v1","kind":"ConfigMap","metadata":{{"generateName":"{prefix}-"}}}}"#);
        let out = cmd
            .args(["-H", CT, "-d", &body])
            .args(["-w", "code=%{http_code} retry=%header{retry-after} file=%{filename_effective}\n"])
            .arg("-o")
            .arg(bodies.path().join(format!("{prefix}-#1")))
            .arg(format!("{}{cm}?n=[1-300]", s.url))
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let stored = |prefix: &str| {
        let (_, _, body) = s.curl("GET", cm, None, &[]);
        parse(&body)["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|i| i["metadata"]["name"].as_str().unwrap_or("").starts_with(&format!("{prefix}-")))
            .count()
    };
    let codes = |text: &str| -> Vec<u16> {
        text.lines()
            .filter_map(|l| l.strip_prefix("code="))
            .filter_map(|c| c.split_whitespace().next()?.parse().ok())
            .collect()
    };

    let text = burst(false, "burst");
    let got = codes(&text);
    assert_eq!(got.len(), 300, "{text}");
    assert!(got.iter().all(|c| *c == 201 || *c == 429), "{got:?}");
    let created = got.iter().filter(|c| **c == 201).count();
    assert!(created < 300, "a burst of 300 creates over one connection exceeds one in flight");
    assert_eq!(stored("burst"), created, "refused creates stored nothing");
    // Every refusal is the Status with Retry-After.
    let refusals: Vec<&str> = text.lines().filter(|l| l.starts_with("code=429 ")).collect();
    assert_eq!(refusals.len(), 300 - created);
    for r in refusals {
        assert!(r.contains(" retry=1 "), "{r}");
        let file = r.split(" file=").nth(1).unwrap();
        let st = parse(&std::fs::read_to_string(file).unwrap());
        assert_eq!((st["reason"].as_str(), st["code"].as_u64()), (Some("TooManyRequests"), Some(429)), "{st}");
        assert_eq!(st["message"], "Too many requests, please try again later.");
    }

    let text = burst(true, "admin");
    assert_eq!(codes(&text), vec![201; 300], "system:masters is never refused");
    assert_eq!(stored("admin"), 300);
}

/// `/openapi/v2` as JSON (Swagger 2.0 with the typed model's definitions) and as gnostic
/// protobuf for client-go.
#[test]
fn openapi_v2_json_and_protobuf() {
    if !require("curl", &["--version"]) {
        return;
    }
    let s = Server::start();
    let (code, _, body) = s.curl("GET", "/openapi/v2", None, &["Accept: application/json"]);
    assert_eq!(code, 200);
    let doc = parse(&body);
    assert_eq!(doc["swagger"], "2.0");
    let pod = &doc["definitions"]["io.k8s.api.core.v1.Pod"];
    assert_eq!(pod["x-kubernetes-group-version-kind"][0]["kind"], "Pod");
    let spec_ref = pod["properties"]["spec"].to_string();
    assert!(spec_ref.contains("#/definitions/io.k8s.api.core.v1.PodSpec"), "{spec_ref}");
    let (code, headers, pb) = s.curl_raw(
        true,
        "GET",
        "/openapi/v2",
        None,
        &["Accept: application/com.github.proto-openapi.spec.v2@v1.0+protobuf"],
    );
    assert_eq!(code, 200);
    assert!(headers.contains("application/com.github.proto-openapi.spec.v2.v1.0+protobuf"), "{headers}");
    // openapi.v2.Document: field 1 (swagger) = "2.0", and the definitions carry the GVK.
    assert_eq!(&pb[..5], b"\x0a\x032.0");
    assert!(pb.windows(22).any(|w| w == b"io.k8s.api.core.v1.Pod"));
    assert!(pb.windows(31).any(|w| w == b"x-kubernetes-group-version-kind"));
}

/// The pod of shared/reference/.../objects/input.yaml, created here, reads back with exactly
/// the spec kube-apiserver gave it (pod-defaulted.json): defaults, the DefaultTolerationSeconds
/// tolerations and the ServiceAccount admission's projected volume; the volume's random
/// suffix is the only difference allowed. Automount off (pod or service account) and a
/// missing service account behave as in Kubernetes.
#[test]
fn pod_spec_matches_kube_apiserver_and_service_account_admission() {
    if !require("curl", &["--version"]) {
        return;
    }
    let s = Server::start();
    let pods = "/api/v1/namespaces/default/pods";
    let pod = br#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"minimal","labels":{"app":"demo"}},
        "spec":{"containers":[{"name":"main","image":"busybox","command":["sleep","3600"]}]}}"#;
    let (code, _, body) = s.curl("POST", pods, Some(pod), &[CT]);
    assert_eq!(code, 201, "{body}");
    let got = parse(&body);
    let want = common::reference("objects/pod-defaulted.json");
    let vol = got["spec"]["volumes"][0]["name"].as_str().unwrap().to_string();
    assert!(vol.starts_with("kube-api-access-") && vol.len() == "kube-api-access-".len() + 5, "{vol}");
    let want_vol = want["spec"]["volumes"][0]["name"].as_str().unwrap().to_string();
    let normalized = serde_json::to_string(&got["spec"]).unwrap().replace(&vol, &want_vol);
    assert_eq!(parse(&normalized), want["spec"]);
    assert_eq!(got["status"], json!({"phase": "Pending", "qosClass": "BestEffort"}));

    // automountServiceAccountToken: false on the pod, then on the service account.
    let off = br#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"off"},
        "spec":{"automountServiceAccountToken":false,"containers":[{"name":"c","image":"i"}]}}"#;
    let (_, _, body) = s.curl("POST", pods, Some(off), &[CT]);
    assert!(parse(&body)["spec"].get("volumes").is_none(), "{body}");
    let sa = br#"{"apiVersion":"v1","kind":"ServiceAccount","metadata":{"name":"demo-sa"},"automountServiceAccountToken":false}"#;
    assert_eq!(s.curl("POST", "/api/v1/namespaces/default/serviceaccounts", Some(sa), &[CT]).0, 201);
    let with_sa = br#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"withsa"},
        "spec":{"serviceAccountName":"demo-sa","containers":[{"name":"c","image":"i"}]}}"#;
    let (_, _, body) = s.curl("POST", pods, Some(with_sa), &[CT]);
    let v = parse(&body);
    assert_eq!((v["spec"]["serviceAccount"].as_str(), v["spec"].get("volumes")), (Some("demo-sa"), None), "{body}");

    // A service account that does not exist.
    let missing = br#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"nosa"},
        "spec":{"serviceAccountName":"ghost","containers":[{"name":"c","image":"i"}]}}"#;
    let (code, _, body) = s.curl("POST", pods, Some(missing), &[CT]);
    assert_eq!(code, 403);
    assert_eq!(
        parse(&body)["message"],
        "pods \"nosa\" is forbidden: error looking up service account default/ghost: serviceaccount \"ghost\" not found"
    );
}

/// ConfigMaps and Secrets marked `immutable: true` refuse changes to their data and to the
/// mark itself with kube-apiserver's Status (captured from the baseline kube-apiserver),
/// store nothing, and still take metadata changes.
#[test]
fn immutable_configmaps_and_secrets_keep_their_data() {
    if !require("curl", &["--version"]) {
        return;
    }
    let s = Server::start();
    const MERGE: &str = "Content-Type: application/merge-patch+json";
    let cm = "/api/v1/namespaces/default/configmaps";
    let body = br#"{"metadata":{"name":"imm"},"immutable":true,"data":{"a":"1"}}"#;
    assert_eq!(s.curl("POST", cm, Some(body), &[CT]).0, 201);
    let refused = |path: &str, patch: &[u8]| {
        let (code, _, body) = s.curl("PATCH", path, Some(patch), &[MERGE]);
        assert_eq!(code, 422, "{body}");
        parse(&body)
    };
    let st = refused(&format!("{cm}/imm"), br#"{"data":{"a":"2"}}"#);
    assert_eq!(
        st["message"],
        "ConfigMap \"imm\" is invalid: data: Forbidden: field is immutable when `immutable` is set"
    );
    assert_eq!(st["reason"], "Invalid");
    assert_eq!(
        st["details"],
        json!({"name": "imm", "kind": "ConfigMap", "causes": [{"reason": "FieldValueForbidden",
            "message": "Forbidden: field is immutable when `immutable` is set", "field": "data"}]})
    );
    let st = refused(&format!("{cm}/imm"), br#"{"immutable":false}"#);
    assert_eq!(
        st["message"],
        "ConfigMap \"imm\" is invalid: immutable: Forbidden: field is immutable when `immutable` is set"
    );
    let st = refused(&format!("{cm}/imm"), br#"{"binaryData":{"b":"AAE="}}"#);
    assert_eq!(st["details"]["causes"][0]["field"], "binaryData");
    let (code, _, body) =
        s.curl("PATCH", &format!("{cm}/imm"), Some(br#"{"metadata":{"labels":{"x":"y"}}}"#), &[MERGE]);
    assert_eq!(code, 200, "{body}");
    let stored = parse(&s.curl("GET", &format!("{cm}/imm"), None, &[]).2);
    assert_eq!((stored["data"].clone(), stored["immutable"].clone()), (json!({"a": "1"}), json!(true)));
    assert_eq!(stored["metadata"]["labels"], json!({"x": "y"}));
    // A mutable ConfigMap may become immutable, with new data in the same write.
    assert_eq!(s.curl("POST", cm, Some(br#"{"metadata":{"name":"mut"},"data":{"a":"1"}}"#), &[CT]).0, 201);
    let (code, _, body) =
        s.curl("PATCH", &format!("{cm}/mut"), Some(br#"{"immutable":true,"data":{"a":"2"}}"#), &[MERGE]);
    assert_eq!(code, 200, "{body}");

    let secrets = "/api/v1/namespaces/default/secrets";
    let body = br#"{"metadata":{"name":"imm"},"immutable":true,"data":{"a":"MQ=="}}"#;
    assert_eq!(s.curl("POST", secrets, Some(body), &[CT]).0, 201);
    let st = refused(&format!("{secrets}/imm"), br#"{"data":{"a":"Mg=="},"type":"Foo"}"#);
    assert_eq!(
        st["message"],
        "Secret \"imm\" is invalid: [type: Invalid value: \"Foo\": field is immutable, data: Forbidden: field is \
         immutable when `immutable` is set]"
    );
    let st = refused(&format!("{secrets}/imm"), br#"{"stringData":{"a":"2"}}"#);
    assert_eq!(st["details"]["causes"][0]["field"], "data");
    let stored = parse(&s.curl("GET", &format!("{secrets}/imm"), None, &[]).2);
    assert_eq!(stored["data"], json!({"a": "MQ=="}));
    // stringData is write-only: merged into data over the same key, never stored.
    let body = br#"{"metadata":{"name":"sd"},"stringData":{"k":"v","n":"new"},"data":{"k":"eA=="}}"#;
    let (code, _, body) = s.curl("POST", secrets, Some(body), &[CT]);
    assert_eq!(code, 201, "{body}");
    let created = parse(&body);
    assert_eq!((created["data"].clone(), created.get("stringData")), (json!({"k": "dg==", "n": "bmV3"}), None));
}

/// A review asked for as a Table is a 406 with kube-apiserver's message (a review has no
/// metadata to show), and `/` lists the service-account issuer discovery paths.
#[test]
fn reviews_have_no_table_and_root_lists_issuer_discovery() {
    if !require("curl", &["--version"]) {
        return;
    }
    let s = Server::start();
    let review = br#"{"apiVersion":"authorization.k8s.io/v1","kind":"SelfSubjectAccessReview",
        "spec":{"resourceAttributes":{"verb":"get","resource":"pods"}}}"#;
    let path = "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews";
    let (code, _, body) =
        s.curl("POST", path, Some(review), &[CT, "Accept: application/json;as=Table;v=v1;g=meta.k8s.io"]);
    assert_eq!(code, 406, "{body}");
    let st = parse(&body);
    assert_eq!(st["reason"], "NotAcceptable");
    assert_eq!(
        st["message"],
        "only the following media types are accepted: application/json, application/yaml, \
         application/vnd.kubernetes.protobuf"
    );
    let (code, _, body) = s.curl("POST", path, Some(review), &[CT]);
    assert_eq!((code, parse(&body)["status"]["allowed"].clone()), (201, json!(true)), "{body}");
    let root = parse(&s.curl("GET", "/", None, &[]).2);
    let paths: Vec<&str> = root["paths"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
    for p in ["/.well-known/openid-configuration", "/openid/v1/jwks"] {
        assert!(paths.contains(&p), "{p} in {paths:?}");
        assert_eq!(s.curl("GET", p, None, &[]).0, 200, "{p}");
    }
    assert_eq!(paths[0], "/.well-known/openid-configuration", "sorted as kube-apiserver sorts them");
}

/// `pods/ephemeralcontainers`: the Pod, of which only `spec.ephemeralContainers` changes
/// through it, only by additions, validated as kube-apiserver validates them (each message
/// captured from the baseline kube-apiserver 1.28.7); the main resource refuses them.
#[test]
fn ephemeral_containers_are_added_only_through_their_subresource() {
    if !require("curl", &["--version"]) {
        return;
    }
    let s = Server::start();
    let pods = "/api/v1/namespaces/default/pods";
    let with_ec = br#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"withec"},
        "spec":{"containers":[{"name":"c","image":"busybox"}],"ephemeralContainers":[{"name":"e","image":"busybox"}]}}"#;
    let (code, _, body) = s.curl("POST", pods, Some(with_ec), &[CT]);
    assert_eq!(code, 422, "{body}");
    assert_eq!(
        parse(&body)["message"],
        "Pod \"withec\" is invalid: spec.ephemeralContainers: Forbidden: cannot be set on create"
    );
    assert_eq!(s.curl("GET", &format!("{pods}/withec"), None, &[]).0, 404, "nothing stored");
    let web = br#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"web","labels":{"run":"web"}},
        "spec":{"containers":[{"name":"web","image":"busybox"}]}}"#;
    assert_eq!(s.curl("POST", pods, Some(web), &[CT]).0, 201);
    let sub = format!("{pods}/web/ephemeralcontainers");
    const SMP: &str = "Content-Type: application/strategic-merge-patch+json";
    const JSONPATCH: &str = "Content-Type: application/json-patch+json";

    // What only the pod's own containers may set, a missing target, a taken name.
    let bad = br#"{"spec":{"ephemeralContainers":[{"name":"e1","image":"busybox","ports":[{"containerPort":80}],
        "resources":{"limits":{"cpu":"1"}},"readinessProbe":{"exec":{"command":["true"]}},
        "lifecycle":{"preStop":{"exec":{"command":["true"]}}},"restartPolicy":"Always","targetContainerName":"nope",
        "volumeMounts":[{"name":"x","mountPath":"/x","subPath":"a"}]},{"name":"web","image":"busybox"}]}}"#;
    let (code, _, body) = s.curl("PATCH", &sub, Some(bad), &[SMP]);
    assert_eq!(code, 422, "{body}");
    let f = |field: &str, what: &str| format!("spec.ephemeralContainers[{field}: {what}");
    let forbidden = "Forbidden: cannot be set for an Ephemeral Container";
    let want = [
        f("0].volumeMounts[0].name", "Not found: \"x\""),
        f("0].targetContainerName", "Not found: \"nope\""),
        f("0].ports", forbidden),
        f("0].resources", forbidden),
        f("0].restartPolicy", forbidden),
        f("0].readinessProbe", forbidden),
        f("0].lifecycle", forbidden),
        f("0].volumeMounts[0].subPath", forbidden),
        f("1].name", "Duplicate value: \"web\""),
    ];
    assert_eq!(parse(&body)["message"], format!("Pod \"web\" is invalid: [{}]", want.join(", ")));
    let causes = parse(&body)["details"]["causes"].clone();
    assert_eq!(
        causes[1],
        json!({"reason": "FieldValueNotFound", "message": "Not found: \"nope\"", "field": "spec.ephemeralContainers[0].targetContainerName"})
    );
    assert!(parse(&s.curl("GET", &sub, None, &[]).2)["spec"].get("ephemeralContainers").is_none(), "nothing stored");

    // An addition, defaulted; the rest of the request is not taken.
    let add = br#"{"metadata":{"labels":{"x":"y"}},"spec":{"containers":[{"name":"web","image":"other"}],
        "ephemeralContainers":[{"name":"e1","image":"busybox","targetContainerName":"web","resources":{}}]}}"#;
    let (code, _, body) = s.curl("PATCH", &sub, Some(add), &["Content-Type: application/merge-patch+json"]);
    assert_eq!(code, 200, "{body}");
    let pod = parse(&body);
    assert_eq!(pod["kind"], "Pod");
    assert_eq!(
        pod["spec"]["ephemeralContainers"],
        json!([{"name": "e1", "image": "busybox", "resources": {}, "terminationMessagePath": "/dev/termination-log",
                "terminationMessagePolicy": "File", "imagePullPolicy": "Always", "targetContainerName": "web"}])
    );
    assert_eq!(
        (&pod["metadata"]["labels"], &pod["spec"]["containers"][0]["image"]),
        (&json!({"run": "web"}), &json!("busybox"))
    );
    assert_eq!(parse(&s.curl("GET", &sub, None, &[]).2)["spec"]["ephemeralContainers"][0]["name"], "e1");

    // Never changed, never removed.
    let change = br#"[{"op":"replace","path":"/spec/ephemeralContainers/0/image","value":"alpine"}]"#;
    let (code, _, body) = s.curl("PATCH", &sub, Some(change), &[JSONPATCH]);
    assert_eq!(code, 422, "{body}");
    let msg = parse(&body)["message"].as_str().unwrap().to_string();
    assert!(msg.starts_with("Pod \"web\" is invalid: spec.ephemeralContainers: Forbidden: existing ephemeral containers \"e1\" may not be changed\n"), "{msg}");
    let remove = br#"[{"op":"remove","path":"/spec/ephemeralContainers/0"}]"#;
    let (code, _, body) = s.curl("PATCH", &sub, Some(remove), &[JSONPATCH]);
    assert_eq!(code, 422, "{body}");
    assert_eq!(parse(&body)["message"], "Pod \"web\" is invalid: spec.ephemeralContainers: Forbidden: existing ephemeral containers \"e1\" may not be removed\n");

    // An update (PUT) that appends one.
    let mut pod = parse(&s.curl("GET", &sub, None, &[]).2);
    pod["spec"]["ephemeralContainers"].as_array_mut().unwrap().push(json!({"name": "e3", "image": "busybox"}));
    let (code, _, body) = s.curl("PUT", &sub, Some(pod.to_string().as_bytes()), &[CT]);
    assert_eq!(code, 200, "{body}");
    let names: Vec<Value> =
        parse(&body)["spec"]["ephemeralContainers"].as_array().unwrap().iter().map(|c| c["name"].clone()).collect();
    assert_eq!(names, [json!("e1"), json!("e3")]);

    // The main resource does not take them; the subresource is get/patch/update only.
    let (code, _, body) = s.curl(
        "PATCH",
        &format!("{pods}/web"),
        Some(br#"{"spec":{"ephemeralContainers":[{"name":"e2","image":"busybox"}]}}"#),
        &[SMP],
    );
    assert_eq!(code, 422, "{body}");
    assert!(
        parse(&body)["message"]
            .as_str()
            .unwrap()
            .starts_with("Pod \"web\" is invalid: spec: Forbidden: pod updates may not change fields other than"),
        "{body}"
    );
    assert_eq!(s.curl("DELETE", &sub, None, &[]).0, 405);
    assert_eq!(s.curl("POST", &sub, Some(web), &[CT]).0, 405);
    let discovery = parse(&s.curl("GET", "/api/v1", None, &[]).2);
    let row =
        discovery["resources"].as_array().unwrap().iter().find(|r| r["name"] == "pods/ephemeralcontainers").cloned();
    assert_eq!(
        row,
        Some(
            json!({"name": "pods/ephemeralcontainers", "singularName": "", "namespaced": true, "kind": "Pod", "verbs": ["get", "patch", "update"]})
        )
    );
}
