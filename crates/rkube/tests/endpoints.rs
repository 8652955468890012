//! The Endpoints controller against the real server: `rkube server` runs its controllers
//! (as `system:kube-controller-manager`, over HTTPS) but neither scheduler nor node agent,
//! so pods stay as the test makes them; their IPs and readiness are set through
//! `pods/status`, as a kubelet would, and the test reads the Endpoints the controller keeps.

mod common;

use std::time::Duration;

use common::{require, wait_for, Server};
use serde_json::{json, Value};

const CT: &str = "Content-Type: application/json";
const MERGE: &str = "Content-Type: application/merge-patch+json";
const NS: &str = "/api/v1/namespaces/default";
const WAIT: Duration = Duration::from_secs(20);

fn parse(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or(Value::Null)
}

fn post(s: &Server, path: &str, body: &Value) -> Value {
    let (code, _, out) = s.curl("POST", path, Some(body.to_string().as_bytes()), &[CT]);
    assert_eq!(code, 201, "POST {path}: {out}");
    parse(&out)
}

fn patch(s: &Server, path: &str, body: &Value) -> Value {
    let (code, _, out) = s.curl("PATCH", path, Some(body.to_string().as_bytes()), &[MERGE]);
    assert_eq!(code, 200, "PATCH {path}: {out}");
    parse(&out)
}

fn delete(s: &Server, path: &str) {
    let (code, _, out) = s.curl("DELETE", path, None, &[]);
    assert_eq!(code, 200, "DELETE {path}: {out}");
}

/// The object at `path`, or None when it does not exist.
fn read(s: &Server, path: &str) -> Option<Value> {
    let (code, _, out) = s.curl("GET", path, None, &[]);
    match code {
        200 => Some(parse(&out)),
        404 => None,
        _ => panic!("GET {path}: {code} {out}"),
    }
}

fn endpoints(s: &Server, name: &str) -> Option<Value> {
    read(s, &format!("{NS}/endpoints/{name}"))
}

/// Waits until the Endpoints `name` satisfy `f`; returns them (panics with the last state
/// seen after [`WAIT`]).
fn wait_endpoints(s: &Server, name: &str, what: &str, mut f: impl FnMut(&Value) -> bool) -> Value {
    let mut last = None;
    let ok = wait_for(WAIT, || {
        last = endpoints(s, name);
        last.as_ref().is_some_and(&mut f)
    });
    assert!(ok, "endpoints {name}: {what}; last seen: {last:?}");
    last.unwrap_or_default()
}

fn wait_gone(s: &Server, name: &str) {
    let ok = wait_for(WAIT, || endpoints(s, name).is_none());
    assert!(ok, "endpoints {name} still there: {:?}", endpoints(s, name));
}

fn service(s: &Server, name: &str, labels: Value, spec: Value) -> Value {
    post(
        s,
        &format!("{NS}/services"),
        &json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "labels": labels}, "spec": spec}),
    )
}

/// A pod bound to `n1` (no node runs it) with the given labels and container ports.
fn pod(s: &Server, name: &str, labels: Value, ports: Value, extra_spec: Value) -> Value {
    let mut spec = json!({"nodeName": "n1", "containers": [{"name": "main", "image": "busybox", "ports": ports}]});
    if let (Some(spec), Some(extra)) = (spec.as_object_mut(), extra_spec.as_object()) {
        spec.extend(extra.clone());
    }
    post(
        s,
        &format!("{NS}/pods"),
        &json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": labels}, "spec": spec}),
    )
}

/// What a kubelet would report: the pod's IP and its Ready condition.
fn set_status(s: &Server, name: &str, ip: &str, ready: bool) {
    let status = if ready { "True" } else { "False" };
    patch(
        s,
        &format!("{NS}/pods/{name}/status"),
        &json!({"status": {"podIP": ip, "podIPs": [{"ip": ip}], "conditions": [
            {"type": "Ready", "status": status, "lastTransitionTime": "2025-01-01T00:00:00Z"}]}}),
    );
}

/// The subsets as (ports "name:port", ready pod names, not-ready pod names), sorted.
fn shape(ep: &Value) -> Vec<(Vec<String>, Vec<String>, Vec<String>)> {
    let names = |list: &Value| -> Vec<String> {
        let mut v: Vec<String> = list
            .as_array()
            .map(|l| l.iter().map(|a| a["targetRef"]["name"].as_str().unwrap_or("?").to_string()).collect())
            .unwrap_or_default();
        v.sort();
        v
    };
    let mut out: Vec<_> = ep["subsets"]
        .as_array()
        .map(|subsets| {
            subsets
                .iter()
                .map(|s| {
                    let ports = s["ports"]
                        .as_array()
                        .map(|p| {
                            p.iter().map(|p| format!("{}:{}", p["name"].as_str().unwrap_or(""), p["port"])).collect()
                        })
                        .unwrap_or_default();
                    (ports, names(&s["addresses"]), names(&s["notReadyAddresses"]))
                })
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// A sync the controller finishes after everything queued before it: a new Service's
/// Endpoints appear once the worker got past what was waiting.
fn barrier(s: &Server, n: u32) {
    let name = format!("barrier-{n}");
    service(s, &name, json!({}), json!({"selector": {"app": "none"}, "ports": [{"port": 1}]}));
    wait_endpoints(s, &name, "created", |_| true);
}

#[test]
fn endpoints_follow_the_pods_a_service_selects() {
    if !require("curl", &["--version"]) {
        return;
    }
    let s = Server::start_with_controllers(&[]);
    // The node the pods are bound to (no agent runs it: pods are deleted gracefully and
    // stay Terminating).
    post(&s, "/api/v1/nodes", &json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"}}));
    let svc = service(
        &s,
        "web",
        json!({"team": "a"}),
        json!({"selector": {"app": "web"}, "ports": [
            {"name": "http", "port": 80, "targetPort": "http"},
            {"name": "metrics", "port": 9090, "targetPort": 9100, "appProtocol": "http"},
        ]}),
    );
    // Created at once, empty, with the service's labels and the trigger time.
    let ep = wait_endpoints(&s, "web", "created", |_| true);
    assert!(ep.get("subsets").is_none(), "{ep}");
    assert_eq!(ep["metadata"]["labels"], json!({"team": "a"}), "{ep}");
    assert_eq!(
        ep["metadata"]["annotations"]["endpoints.kubernetes.io/last-change-trigger-time"],
        svc["metadata"]["creationTimestamp"],
        "{ep}"
    );

    let http = |port: u16| json!([{"name": "http", "containerPort": port}]);
    let a = pod(&s, "a", json!({"app": "web"}), http(8080), json!({}));
    pod(&s, "b", json!({"app": "web"}), http(8081), json!({}));
    // No port named http: only the numeric targetPort reaches it.
    pod(&s, "c", json!({"app": "web"}), json!([{"name": "other", "containerPort": 7000}]), json!({}));
    pod(&s, "d", json!({"app": "other"}), http(8080), json!({}));
    // Without an IP a pod is left out.
    pod(&s, "no-ip", json!({"app": "web"}), http(8080), json!({}));
    set_status(&s, "a", "10.244.0.11", true);
    set_status(&s, "b", "10.244.0.12", false);
    set_status(&s, "c", "10.244.0.13", true);
    set_status(&s, "d", "10.244.0.14", true);

    let want = vec![
        (strings(&["http:8080"]), strings(&["a"]), vec![]),
        (strings(&["http:8081"]), vec![], strings(&["b"])),
        (strings(&["metrics:9100"]), strings(&["a", "c"]), strings(&["b"])),
    ];
    let ep = wait_endpoints(&s, "web", "a, b and c by port", |ep| shape(ep) == want);
    // Each address names its pod; each port the service port's name, protocol, appProtocol.
    let subsets = ep["subsets"].as_array().unwrap();
    let with_a = subsets.iter().find(|s| s["ports"][0]["port"] == 8080).unwrap();
    assert_eq!(
        with_a["addresses"],
        json!([{"ip": "10.244.0.11", "nodeName": "n1",
                "targetRef": {"kind": "Pod", "namespace": "default", "name": "a", "uid": a["metadata"]["uid"]}}]),
        "{ep}"
    );
    assert_eq!(with_a["ports"], json!([{"name": "http", "port": 8080, "protocol": "TCP"}]), "{ep}");
    let metrics = subsets.iter().find(|s| s["ports"][0]["port"] == 9100).unwrap();
    assert_eq!(metrics["ports"], json!([{"name": "metrics", "port": 9100, "protocol": "TCP", "appProtocol": "http"}]));

    // Readiness moves an address (a and b reach http on different ports: apart they stay).
    set_status(&s, "b", "10.244.0.12", true);
    set_status(&s, "a", "10.244.0.11", false);
    let want = vec![
        (strings(&["http:8080"]), vec![], strings(&["a"])),
        (strings(&["http:8081"]), strings(&["b"]), vec![]),
        (strings(&["metrics:9100"]), strings(&["b", "c"]), strings(&["a"])),
    ];
    wait_endpoints(&s, "web", "a not ready, b ready", |ep| shape(ep) == want);

    // A pod being deleted leaves at once (c waits for n1's kubelet, which never comes, so
    // it stays Terminating); a relabelled pod leaves too.
    delete(&s, &format!("{NS}/pods/c"));
    assert!(read(&s, &format!("{NS}/pods/c")).is_some_and(|p| p["metadata"]["deletionTimestamp"].is_string()));
    patch(&s, &format!("{NS}/pods/b"), &json!({"metadata": {"labels": {"app": "moved"}}}));
    let want = vec![(strings(&["http:8080", "metrics:9100"]), vec![], strings(&["a"]))];
    let ep = wait_endpoints(&s, "web", "only a, not ready", |ep| shape(ep) == want);

    // Nothing that leaves the Endpoints as they are writes them: another annotation on a
    // pod, on the service.
    let version = ep["metadata"]["resourceVersion"].clone();
    patch(&s, &format!("{NS}/pods/a"), &json!({"metadata": {"annotations": {"x": "1"}}}));
    patch(&s, &format!("{NS}/services/web"), &json!({"metadata": {"annotations": {"x": "1"}}}));
    barrier(&s, 1);
    assert_eq!(endpoints(&s, "web").unwrap()["metadata"]["resourceVersion"], version);

    // The service's labels follow.
    patch(&s, &format!("{NS}/services/web"), &json!({"metadata": {"labels": {"team": "b"}}}));
    wait_endpoints(&s, "web", "relabelled", |ep| ep["metadata"]["labels"] == json!({"team": "b"}));

    // Deleted by hand: made again.
    delete(&s, &format!("{NS}/endpoints/web"));
    wait_endpoints(&s, "web", "recreated", |ep| shape(ep) == want);

    // The last pod gone for good: no subsets.
    delete(&s, &format!("{NS}/pods/a?gracePeriodSeconds=0"));
    wait_endpoints(&s, "web", "empty", |ep| ep.get("subsets").is_none());

    // The service goes: so do its Endpoints.
    delete(&s, &format!("{NS}/services/web"));
    wait_gone(&s, "web");
}

#[test]
fn headless_services_get_hostnames_and_hand_made_endpoints_are_left_alone() {
    if !require("curl", &["--version"]) {
        return;
    }
    let s = Server::start_with_controllers(&[]);

    // Headless, no ports: the addresses alone, with the pods' hostnames under this
    // subdomain, and the headless label.
    service(&s, "db", json!({}), json!({"clusterIP": "None", "selector": {"app": "db"}}));
    let sub = |host: &str, subdomain: &str| json!({"hostname": host, "subdomain": subdomain});
    pod(&s, "db-0", json!({"app": "db"}), json!([]), sub("db-0", "db"));
    pod(&s, "db-1", json!({"app": "db"}), json!([]), sub("db-1", "elsewhere"));
    set_status(&s, "db-0", "10.244.0.20", true);
    set_status(&s, "db-1", "10.244.0.21", true);
    let ep = wait_endpoints(&s, "db", "both pods", |ep| {
        ep["subsets"][0]["addresses"].as_array().is_some_and(|a| a.len() == 2)
    });
    assert_eq!(ep["metadata"]["labels"], json!({"service.kubernetes.io/headless": ""}), "{ep}");
    let addresses = &ep["subsets"][0]["addresses"];
    assert_eq!(addresses[0]["hostname"], "db-0", "{ep}");
    assert_eq!(addresses[1]["ip"], "10.244.0.21", "{ep}");
    assert!(addresses[1].get("hostname").is_none(), "another subdomain: no hostname: {ep}");
    assert!(ep["subsets"][0].get("ports").is_none(), "{ep}");

    // publishNotReadyAddresses: a pod that is not ready is a ready address.
    service(
        &s,
        "peers",
        json!({}),
        json!({"clusterIP": "None", "publishNotReadyAddresses": true, "selector": {"app": "db"}, "ports": [{"name": "p", "port": 7000}]}),
    );
    set_status(&s, "db-1", "10.244.0.21", false);
    wait_endpoints(&s, "peers", "not-ready pods published", |ep| {
        shape(ep) == vec![(strings(&["p:7000"]), strings(&["db-0", "db-1"]), vec![])]
    });

    // A service without a selector: its Endpoints are its user's.
    service(&s, "external", json!({}), json!({"ports": [{"name": "pg", "port": 5432}]}));
    let hand_made = post(
        &s,
        &format!("{NS}/endpoints"),
        &json!({"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": "external", "labels": {"mine": "yes"}},
                "subsets": [{"addresses": [{"ip": "192.0.2.10"}], "ports": [{"name": "pg", "port": 5432}]}]}),
    );
    patch(&s, &format!("{NS}/services/external"), &json!({"metadata": {"labels": {"changed": "1"}}}));
    pod(&s, "e", json!({"app": "external"}), json!([]), json!({}));
    set_status(&s, "e", "10.244.0.30", true);
    barrier(&s, 1);
    let now = endpoints(&s, "external").expect("hand-made endpoints");
    assert_eq!(now["metadata"]["resourceVersion"], hand_made["metadata"]["resourceVersion"], "{now}");
    assert_eq!(now["subsets"], hand_made["subsets"]);

    // ExternalName services get none.
    service(
        &s,
        "alias",
        json!({}),
        json!({"type": "ExternalName", "externalName": "example.com", "selector": {"app": "db"}}),
    );
    barrier(&s, 2);
    assert!(endpoints(&s, "alias").is_none());

    // The API server's own are left as they are.
    let kubernetes = read(&s, "/api/v1/namespaces/default/endpoints/kubernetes").expect("kubernetes endpoints");
    assert!(kubernetes["subsets"][0]["addresses"][0]["ip"].is_string(), "{kubernetes}");

    // Deleting a selector-less service deletes its Endpoints too, as upstream does.
    delete(&s, &format!("{NS}/services/external"));
    wait_gone(&s, "external");
}

#[test]
fn endpoints_of_services_deleted_while_no_controller_ran_go_at_start() {
    if !require("curl", &["--version"]) {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let mut s = Server::start_in(dir.path(), &[]);
    // No controller: nothing makes Endpoints for this one.
    service(&s, "web", json!({}), json!({"selector": {"app": "web"}, "ports": [{"port": 80}]}));
    post(
        &s,
        &format!("{NS}/endpoints"),
        &json!({"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": "orphan"},
                "subsets": [{"addresses": [{"ip": "192.0.2.1"}], "ports": [{"port": 80}]}]}),
    );
    assert!(endpoints(&s, "web").is_none());
    assert!(s.stop());

    let s = Server::start_in_with_controllers(dir.path(), &[]);
    wait_endpoints(&s, "web", "made at start", |_| true);
    wait_gone(&s, "orphan");
    assert!(endpoints(&s, "kubernetes").is_some(), "the API server's own stay");
}
