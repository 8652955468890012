//! The scheduler against the real server: Nodes are created through the API with capacity,
//! allocatable and a Ready condition (as kwok fakes them), then pods; the scheduler binds
//! them, or explains in the pod's PodScheduled condition and in events.k8s.io Events why it
//! cannot, with kube-scheduler's words.
//!
//! The scheduler runs in the test process (its own thread and runtime) with a kubeconfig,
//! as a separate kube-scheduler would; `rkube server` does not run one here.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{require, wait_for, Server};
use serde_json::{json, Value};

const CT: &str = "Content-Type: application/json";
const MERGE: &str = "Content-Type: application/merge-patch+json";
const PODS: &str = "/api/v1/namespaces/default/pods";
const WAIT: Duration = Duration::from_secs(20);

/// A scheduler running on its own thread until dropped.
struct Scheduler {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Scheduler {
    fn start(kubeconfig: &Path) -> Scheduler {
        let kubeconfig = kubeconfig.to_path_buf();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt =
                tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("runtime");
            rt.block_on(async move {
                let client = rkube_client::connect(&kubeconfig).await.expect("client");
                let informers = rkube_client::Informers::new(client);
                rkube_scheduler::run(informers, async {
                    let _ = stopped.await;
                })
                .await;
            });
        });
        Scheduler { stop: Some(stop), thread: Some(thread) }
    }
}

impl Drop for Scheduler {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn parse(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or(Value::Null)
}

fn post(s: &Server, path: &str, body: &Value) -> Value {
    let (code, _, out) = s.curl("POST", path, Some(body.to_string().as_bytes()), &[CT]);
    assert_eq!(code, 201, "POST {path}: {out}");
    parse(&out)
}

fn get(s: &Server, path: &str) -> Value {
    let (code, _, out) = s.curl("GET", path, None, &[]);
    assert_eq!(code, 200, "GET {path}: {out}");
    parse(&out)
}

fn now() -> String {
    // The server does not check the value; any RFC 3339 time does.
    "2025-01-01T00:00:00Z".to_string()
}

/// A Node with the given labels, spec, allocatable cpu/memory/pods and readiness:
/// `allocatable` is [cpu, memory, pods].
fn node(s: &Server, name: &str, labels: Value, spec: Value, allocatable: [&str; 3], ready: bool) {
    let [cpu, memory, pods] = allocatable;
    post(
        s,
        "/api/v1/nodes",
        &json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": labels}, "spec": spec}),
    );
    let resources = json!({"cpu": cpu, "memory": memory, "pods": pods, "ephemeral-storage": "100Gi"});
    let (reason, status) = if ready { ("KubeletReady", "True") } else { ("KubeletNotReady", "False") };
    let status = json!({"status": {
        "capacity": resources,
        "allocatable": resources,
        "conditions": [{"type": "Ready", "status": status, "reason": reason, "message": "fake",
                        "lastHeartbeatTime": now(), "lastTransitionTime": now()}],
    }});
    let path = format!("/api/v1/nodes/{name}/status");
    let (code, _, out) = s.curl("PATCH", &path, Some(status.to_string().as_bytes()), &[MERGE]);
    assert_eq!(code, 200, "PATCH {path}: {out}");
}

fn container(requests: Value) -> Value {
    json!({"name": "c", "image": "registry.k8s.io/pause:3.9", "resources": {"requests": requests}})
}

fn pod(s: &Server, name: &str, spec: Value) -> Value {
    post(s, PODS, &json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec}))
}

fn read_pod(s: &Server, name: &str) -> Value {
    get(s, &format!("{PODS}/{name}"))
}

fn node_of(s: &Server, name: &str) -> String {
    read_pod(s, name)["spec"]["nodeName"].as_str().unwrap_or("").to_string()
}

fn condition(pod: &Value) -> Value {
    pod["status"]["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == "PodScheduled"))
        .cloned()
        .unwrap_or(Value::Null)
}

/// Waits for the pod to be bound; returns its node.
fn wait_bound(s: &Server, name: &str) -> String {
    assert!(wait_for(WAIT, || !node_of(s, name).is_empty()), "{name} not bound: {}", read_pod(s, name));
    node_of(s, name)
}

/// Waits for the pod's PodScheduled condition to say `message`; checks the rest of it.
fn wait_unschedulable(s: &Server, name: &str, message: &str) {
    let ok = wait_for(WAIT, || condition(&read_pod(s, name))["message"] == message);
    let pod = read_pod(s, name);
    assert!(ok, "{name}: want {message:?}, have {}", condition(&pod));
    let c = condition(&pod);
    assert_eq!((c["status"].as_str(), c["reason"].as_str()), (Some("False"), Some("Unschedulable")), "{c}");
    assert!(c["lastTransitionTime"].is_string(), "{c}");
    assert_eq!(pod["spec"].get("nodeName"), None);
}

/// The events.k8s.io/v1 Events about pod `name` with `reason`.
fn events(s: &Server, name: &str, reason: &str) -> Vec<Value> {
    let list = get(s, "/apis/events.k8s.io/v1/namespaces/default/events");
    list["items"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|e| e["regarding"]["name"] == name && e["reason"] == reason)
        .collect()
}

fn wait_event(s: &Server, name: &str, reason: &str) -> Value {
    assert!(wait_for(WAIT, || !events(s, name, reason).is_empty()), "no {reason} event for {name}");
    events(s, name, reason).remove(0)
}

fn check_event(e: &Value, pod: &Value, type_: &str, action: &str, note: &str) {
    assert_eq!(e["type"], type_, "{e}");
    assert_eq!(e["action"], action, "{e}");
    assert_eq!(e["note"], note, "{e}");
    assert_eq!(e["reportingController"], "default-scheduler", "{e}");
    assert!(e["reportingInstance"].as_str().unwrap_or("").starts_with("default-scheduler-"), "{e}");
    assert!(e["eventTime"].is_string(), "{e}");
    let r = &e["regarding"];
    assert_eq!((r["kind"].as_str(), r["apiVersion"].as_str()), (Some("Pod"), Some("v1")), "{e}");
    assert_eq!((&r["namespace"], &r["uid"]), (&pod["metadata"]["namespace"], &pod["metadata"]["uid"]), "{e}");
}

const NO_VICTIMS_1: &str = "preemption: 0/1 nodes are available: 1 No preemption victims found for incoming pod.";

#[test]
fn binds_pods_to_nodes_that_fit_and_records_events() {
    if !require("curl", &["--version"]) {
        return;
    }
    let s = Server::start();
    let _sched = Scheduler::start(&s.kubeconfig);
    node(&s, "small", json!({"zone": "a"}), json!({}), ["1", "2Gi", "10"], true);
    node(&s, "big", json!({"zone": "b"}), json!({}), ["4", "8Gi", "10"], true);

    // Only one node has room.
    let web = pod(&s, "web", json!({"containers": [container(json!({"cpu": "2", "memory": "1Gi"}))]}));
    assert_eq!(wait_bound(&s, "web"), "big");
    let bound = read_pod(&s, "web");
    let c = condition(&bound);
    assert_eq!(c["status"], "True", "{bound}");
    assert_eq!((c.get("reason"), c.get("message")), (None, None), "{c}");
    let e = wait_event(&s, "web", "Scheduled");
    check_event(&e, &web, "Normal", "Binding", "Successfully assigned default/web to big");

    // Least allocated: small is emptier now for a pod both fit.
    pod(&s, "light", json!({"containers": [container(json!({"cpu": "100m", "memory": "100Mi"}))]}));
    assert_eq!(wait_bound(&s, "light"), "small");

    // Init containers count by the max rule: 3 cpu init > 500m containers; only big had
    // 3 cpu free, and after web it has 2.
    pod(
        &s,
        "init-heavy",
        json!({
            "initContainers": [{"name": "i", "image": "registry.k8s.io/pause:3.9", "resources": {"requests": {"cpu": "3"}}}],
            "containers": [container(json!({"cpu": "500m"}))],
        }),
    );
    wait_unschedulable(
        &s,
        "init-heavy",
        "0/2 nodes are available: 2 Insufficient cpu. preemption: 0/2 nodes are available: 2 No preemption victims found for incoming pod.",
    );

    // Nothing has 8 cpus: the condition and a FailedScheduling event say so.
    let huge = pod(&s, "huge", json!({"containers": [container(json!({"cpu": "8"}))]}));
    let msg = "0/2 nodes are available: 2 Insufficient cpu. preemption: 0/2 nodes are available: 2 No preemption victims found for incoming pod.";
    wait_unschedulable(&s, "huge", msg);
    let e = wait_event(&s, "huge", "FailedScheduling");
    check_event(&e, &huge, "Warning", "Scheduling", msg);

    // A pod with its node preset, and one for another scheduler, are left alone.
    pod(&s, "preset", json!({"nodeName": "elsewhere", "containers": [container(json!({}))]}));
    pod(&s, "other", json!({"schedulerName": "other-scheduler", "containers": [container(json!({}))]}));
    pod(&s, "marker", json!({"containers": [container(json!({}))]}));
    wait_bound(&s, "marker");
    // The scheduler has seen both (it handled the later pod) and did nothing to them.
    std::thread::sleep(Duration::from_millis(300));
    for name in ["preset", "other"] {
        let p = read_pod(&s, name);
        assert_eq!(condition(&p), Value::Null, "{p}");
        assert!(events(&s, name, "Scheduled").is_empty() && events(&s, name, "FailedScheduling").is_empty());
    }
    assert_eq!(node_of(&s, "preset"), "elsewhere");
    assert_eq!(node_of(&s, "other"), "");
}

#[test]
fn explains_filters_with_kube_schedulers_messages() {
    if !require("curl", &["--version"]) {
        return;
    }
    let s = Server::start();
    let _sched = Scheduler::start(&s.kubeconfig);
    node(
        &s,
        "tainted",
        json!({"disk": "ssd"}),
        json!({"taints": [{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}]}),
        ["4", "8Gi", "10"],
        true,
    );
    node(&s, "cordoned", json!({"disk": "ssd"}), json!({"unschedulable": true}), ["4", "8Gi", "10"], true);
    node(&s, "down", json!({"disk": "hdd"}), json!({}), ["4", "8Gi", "10"], false);
    let three_unresolvable = "preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling.";

    pod(&s, "plain", json!({"containers": [container(json!({}))]}));
    wait_unschedulable(
        &s,
        "plain",
        &format!(
            "0/3 nodes are available: 1 node(s) had untolerated taint {{dedicated: gpu}}, \
             1 node(s) had untolerated taint {{node.kubernetes.io/not-ready: }}, 1 node(s) were unschedulable. {three_unresolvable}"
        ),
    );

    // Selector and affinity: the taint is tolerated, so affinity decides on "tainted".
    let tolerate = json!([{"key": "dedicated", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}]);
    pod(
        &s,
        "selector",
        json!({"nodeSelector": {"disk": "nvme"}, "tolerations": tolerate, "containers": [container(json!({}))]}),
    );
    wait_unschedulable(
        &s,
        "selector",
        &format!(
            "0/3 nodes are available: 1 node(s) didn't match Pod's node affinity/selector, \
             1 node(s) had untolerated taint {{node.kubernetes.io/not-ready: }}, 1 node(s) were unschedulable. {three_unresolvable}"
        ),
    );
    let affinity = |op: &str, values: Value| {
        json!({"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
            {"matchExpressions": [{"key": "disk", "operator": op, "values": values}]}]}}})
    };
    pod(
        &s,
        "not-ssd",
        json!({"affinity": affinity("NotIn", json!(["ssd"])), "tolerations": tolerate, "containers": [container(json!({}))]}),
    );
    wait_unschedulable(
        &s,
        "not-ssd",
        &format!(
            "0/3 nodes are available: 1 node(s) didn't match Pod's node affinity/selector, \
             1 node(s) had untolerated taint {{node.kubernetes.io/not-ready: }}, 1 node(s) were unschedulable. {three_unresolvable}"
        ),
    );
    pod(
        &s,
        "ssd",
        json!({"affinity": affinity("In", json!(["ssd"])), "tolerations": tolerate, "containers": [container(json!({}))]}),
    );
    assert_eq!(wait_bound(&s, "ssd"), "tainted");

    // Too big for the one node it may use: resources, with the other nodes' reasons.
    pod(
        &s,
        "big-ssd",
        json!({"affinity": affinity("Exists", json!([])), "tolerations": tolerate,
        "containers": [container(json!({"cpu": "5", "memory": "10Gi"}))]}),
    );
    wait_unschedulable(
        &s,
        "big-ssd",
        "0/3 nodes are available: 1 Insufficient cpu, 1 Insufficient memory, \
         1 node(s) had untolerated taint {node.kubernetes.io/not-ready: }, 1 node(s) were unschedulable. \
         preemption: 0/3 nodes are available: 1 No preemption victims found for incoming pod, 2 Preemption is not helpful for scheduling.",
    );

    // The node becoming Ready lets the plain pod (no tolerations) in.
    let path = "/api/v1/nodes/down/status";
    let ready = json!({"status": {"conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
        "message": "fake", "lastHeartbeatTime": now(), "lastTransitionTime": now()}]}});
    let (code, _, out) = s.curl("PATCH", path, Some(ready.to_string().as_bytes()), &[MERGE]);
    assert_eq!(code, 200, "{out}");
    assert_eq!(wait_bound(&s, "plain"), "down");

    // preemptionPolicy Never: the post-filter says it may not preempt.
    pod(
        &s,
        "never",
        json!({"preemptionPolicy": "Never", "nodeSelector": {"disk": "none"}, "containers": [container(json!({}))]}),
    );
    wait_unschedulable(
        &s,
        "never",
        "0/3 nodes are available: 1 node(s) didn't match Pod's node affinity/selector, \
         1 node(s) had untolerated taint {dedicated: gpu}, 1 node(s) were unschedulable. \
         preemption: not eligible due to preemptionPolicy=Never.",
    );
}

#[test]
fn pending_pods_are_bound_when_room_appears() {
    if !require("curl", &["--version"]) {
        return;
    }
    let s = Server::start();
    let _sched = Scheduler::start(&s.kubeconfig);

    pod(&s, "first", json!({"containers": [container(json!({"cpu": "100m"}))]}));
    wait_unschedulable(&s, "first", "no nodes available to schedule pods");
    let e = wait_event(&s, "first", "FailedScheduling");
    assert_eq!(e["note"], "no nodes available to schedule pods");

    // A node that takes one pod appears: the waiting pod is bound.
    node(&s, "one", json!({}), json!({}), ["2", "4Gi", "1"], true);
    assert_eq!(wait_bound(&s, "first"), "one");

    // The next one waits for room...
    pod(&s, "second", json!({"containers": [container(json!({"cpu": "100m"}))]}));
    wait_unschedulable(&s, "second", &format!("0/1 nodes are available: 1 Too many pods. {NO_VICTIMS_1}"));
    // ...and gets it when the first pod goes.
    let (code, _, out) = s.curl("DELETE", &format!("{PODS}/first?gracePeriodSeconds=0"), None, &[]);
    assert!(code == 200 || code == 202, "{out}");
    assert!(wait_for(WAIT, || s.curl("GET", &format!("{PODS}/first"), None, &[]).0 == 404));
    assert_eq!(wait_bound(&s, "second"), "one");
    let c = condition(&read_pod(&s, "second"));
    assert_eq!(c["status"], "True", "{c}");
}

fn token_kubeconfig(s: &Server, dir: &Path, token: &str) -> PathBuf {
    let path = dir.join(format!("{token}.kubeconfig"));
    let text = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: rkube\n  cluster:\n    server: {}\n    certificate-authority: {}\n\
         users:\n- name: u\n  user:\n    token: {token}\ncontexts:\n- name: c\n  context:\n    cluster: rkube\n    user: u\n\
         current-context: c\n",
        s.url,
        s.pki("ca.crt")
    );
    std::fs::write(&path, text).expect("kubeconfig");
    path
}

#[test]
fn the_kube_scheduler_user_may_do_what_scheduling_needs() {
    if !require("curl", &["--version"]) {
        return;
    }
    let (dir, s) = Server::start_with_tokens("schedtoken,system:kube-scheduler,sched-uid\nbobtoken,bob,bob-uid\n", &[]);
    let as_user = |token: &str, method: &str, path: &str, body: Option<&Value>, ct: &str| {
        let auth = format!("Authorization: Bearer {token}");
        let bytes = body.map(|b| b.to_string().into_bytes());
        let (code, _, out) = s.curl_as(false, method, path, bytes.as_deref(), &[auth.as_str(), ct]);
        (code, parse(&out))
    };
    node(&s, "n1", json!({}), json!({}), ["2", "4Gi", "10"], true);
    pod(&s, "manual", json!({"containers": [container(json!({}))]}));

    // Directly: bind, patch pods/status, record an event; bob may not.
    let binding = json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "manual"}, "target": {"kind": "Node", "name": "n1"}});
    let bind_path = format!("{PODS}/manual/binding");
    assert_eq!(as_user("bobtoken", "POST", &bind_path, Some(&binding), CT).0, 403);
    // The binding's uid is a precondition; its annotations are copied to the pod.
    let mut stale = binding.clone();
    stale["metadata"]["uid"] = json!("not-the-uid");
    let (code, out) = as_user("schedtoken", "POST", &bind_path, Some(&stale), CT);
    assert_eq!(code, 409, "{out}");
    assert!(
        out["message"].as_str().unwrap_or("").contains("Precondition failed: UID in precondition: not-the-uid"),
        "{out}"
    );
    let mut binding = binding;
    binding["metadata"]["annotations"] = json!({"example.com/placed-by": "test"});
    let (code, out) = as_user("schedtoken", "POST", &bind_path, Some(&binding), CT);
    assert_eq!(code, 201, "{out}");
    let bound = read_pod(&s, "manual");
    assert_eq!(bound["metadata"]["annotations"]["example.com/placed-by"], "test", "{bound}");
    assert_eq!(condition(&bound)["status"], "True", "{bound}");
    let (code, out) = as_user("schedtoken", "POST", &bind_path, Some(&binding), CT);
    assert_eq!(code, 409, "{out}");
    assert!(out["message"].as_str().unwrap_or("").contains("is already assigned to node \"n1\""), "{out}");
    let status = json!({"status": {"conditions": [{"type": "PodScheduled", "status": "True"}]}});
    let status_path = format!("{PODS}/manual/status");
    assert_eq!(as_user("bobtoken", "PATCH", &status_path, Some(&status), MERGE).0, 403);
    let (code, out) = as_user("schedtoken", "PATCH", &status_path, Some(&status), MERGE);
    assert_eq!(code, 200, "{out}");
    let event = json!({"apiVersion": "events.k8s.io/v1", "kind": "Event", "metadata": {"name": "manual.1"},
        "eventTime": "2025-01-01T00:00:00.000000Z", "reportingController": "default-scheduler",
        "reportingInstance": "default-scheduler-test", "action": "Binding", "reason": "Scheduled",
        "regarding": {"kind": "Pod", "namespace": "default", "name": "manual"}, "note": "n", "type": "Normal"});
    let events_path = "/apis/events.k8s.io/v1/namespaces/default/events";
    assert_eq!(as_user("bobtoken", "POST", events_path, Some(&event), CT).0, 403);
    let (code, out) = as_user("schedtoken", "POST", events_path, Some(&event), CT);
    assert_eq!(code, 201, "{out}");

    // And end to end: the scheduler running as system:kube-scheduler places pods and
    // reports failures.
    let kubeconfig = token_kubeconfig(&s, dir.path(), "schedtoken");
    let _sched = Scheduler::start(&kubeconfig);
    pod(&s, "auto", json!({"containers": [container(json!({"cpu": "1"}))]}));
    assert_eq!(wait_bound(&s, "auto"), "n1");
    wait_event(&s, "auto", "Scheduled");
    pod(&s, "too-big", json!({"containers": [container(json!({"memory": "5Gi"}))]}));
    wait_unschedulable(&s, "too-big", &format!("0/1 nodes are available: 1 Insufficient memory. {NO_VICTIMS_1}"));
    wait_event(&s, "too-big", "FailedScheduling");
}
