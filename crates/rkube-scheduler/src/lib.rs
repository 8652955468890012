//! rkube's scheduler: binds pending pods to nodes that fit, as kube-scheduler's default
//! profile does, talking to the API server only through its public API.
//!
//! [`run`] watches Pods and Nodes through the component's [`Informers`] (one cache each)
//! and keeps a work queue of the pods it is responsible for: no `spec.nodeName`,
//! `spec.schedulerName` unset or `default-scheduler`, not being deleted, not Succeeded or
//! Failed, no scheduling gates. For each pod it runs the filters of [`filters`] on every
//! node, picks the feasible node with the best least-allocated score (ties: the first by
//! name), and POSTs a v1 Binding to `pods/{name}/binding`, then records a `Scheduled`
//! Event. When nothing fits it patches the pod's `PodScheduled` condition to False /
//! `Unschedulable` with kube-scheduler's message and records a `FailedScheduling` Event
//! (events.k8s.io/v1, as kube-scheduler's recorder does).
//!
//! The loop is level-triggered: every decision reads the caches afresh. A pod that does
//! not fit is retried after a back-off (1 s, doubling to 10 s, as kube-scheduler's
//! podInitialBackoff/podMaxBackoff) and, when a node or an assigned pod changes in a way
//! that may make room, as soon as one second has passed since its last attempt.
//!
//! Not done (yet): preemption (nothing is evicted; the message says what the dry run
//! found), inter-pod affinity, topology spread, volumes, preferred affinities and the other
//! scores, extenders, multiple profiles, leader election.

pub mod filters;
pub mod message;
pub use rkube_api::quantity;

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::reflector::ObjectRef;
use rkube_client::{Change, Informers};
use serde_json::{json, Value};
use tokio::sync::broadcast::error::TryRecvError;
use tokio::time::Instant;

use crate::filters::{NodeInfo, Rejection};

/// The scheduler name pods ask for by default (and get when they name none).
pub const DEFAULT_SCHEDULER_NAME: &str = "default-scheduler";

/// The first retry delay of a pod that did not fit.
pub const INITIAL_BACKOFF: Duration = Duration::from_secs(1);
/// The longest retry delay.
pub const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// Who the scheduler is.
#[derive(Debug, Clone)]
pub struct Config {
    /// The `spec.schedulerName` it serves; also its Events' `reportingController`.
    pub scheduler_name: String,
    /// Its Events' `reportingInstance` (kube-scheduler: `<scheduler name>-<hostname>`).
    pub reporting_instance: String,
}

impl Default for Config {
    fn default() -> Config {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .or_else(|| std::env::var("HOSTNAME").ok())
            .unwrap_or_else(|| "localhost".into());
        Config {
            scheduler_name: DEFAULT_SCHEDULER_NAME.into(),
            reporting_instance: format!("{DEFAULT_SCHEDULER_NAME}-{host}"),
        }
    }
}

/// Schedules pods until `shutdown` resolves, with [`Config::default`]. `informers` must be
/// built on a client allowed what `system:kube-scheduler` allows (list/watch pods and nodes,
/// create `pods/binding`, patch `pods/status`, create and patch events); the Pod and Node
/// informers (all objects, no field selector) are taken from it, so other loops of the same
/// component share them.
pub async fn run(informers: Informers, shutdown: impl Future<Output = ()>) {
    run_with(informers, Config::default(), shutdown).await
}

/// [`run`] with an explicit [`Config`].
pub async fn run_with(informers: Informers, config: Config, shutdown: impl Future<Output = ()>) {
    let pods = informers.get::<Pod>("");
    let nodes = informers.get::<Node>("");
    let mut pod_rx = pods.subscribe();
    let mut node_rx = nodes.subscribe();
    let mut shutdown = std::pin::pin!(shutdown);
    tokio::select! {
        _ = &mut shutdown => return,
        _ = async { pods.ready().await; nodes.ready().await } => {}
    }
    let mut s = Scheduler {
        client: informers.client().clone(),
        config,
        pods: pods.store().clone(),
        nodes: nodes.store().clone(),
        queue: HashMap::new(),
        assumed: HashMap::new(),
        node_prints: HashMap::new(),
        events: HashMap::new(),
    };
    s.resync();
    loop {
        loop {
            match pod_rx.try_recv() {
                Ok(c) => s.on_pod(c),
                Err(TryRecvError::Lagged(_)) => s.resync(),
                Err(_) => break,
            }
        }
        loop {
            match node_rx.try_recv() {
                Ok(c) => s.on_node(c),
                Err(TryRecvError::Lagged(_)) => s.resync(),
                Err(_) => break,
            }
        }
        if let Some(key) = s.pop_due(Instant::now()) {
            tokio::select! {
                _ = &mut shutdown => return,
                _ = s.schedule_one(&key) => {}
            }
            continue;
        }
        let wake = s.next_due().unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
        tokio::select! {
            _ = &mut shutdown => return,
            c = pod_rx.recv() => match c {
                Ok(c) => s.on_pod(c),
                Err(_) => s.resync(),
            },
            c = node_rx.recv() => match c {
                Ok(c) => s.on_node(c),
                Err(_) => s.resync(),
            },
            _ = tokio::time::sleep_until(wake) => {}
        }
    }
}

/// A pod in the queue.
struct Entry {
    /// When to try it next.
    due: Instant,
    /// Failed attempts so far.
    attempts: u32,
    last_attempt: Option<Instant>,
    /// The pod's spec and labels at its last attempt: an update that changes neither (its
    /// status, say) does not warrant a retry.
    print: String,
    priority: i32,
}

/// The last FailedScheduling Event of a pod, to count repeats into its series as the
/// events recorder does.
struct EventMemo {
    name: String,
    note: String,
    regarding_version: String,
    count: u32,
}

struct Scheduler {
    client: kube::Client,
    config: Config,
    pods: kube::runtime::reflector::Store<Pod>,
    nodes: kube::runtime::reflector::Store<Node>,
    queue: HashMap<(String, String), Entry>,
    /// Pods bound by this scheduler that the cache does not show bound yet (by uid).
    assumed: HashMap<String, Arc<Pod>>,
    node_prints: HashMap<String, String>,
    events: HashMap<(String, String), EventMemo>,
}

fn key_of(pod: &Pod) -> (String, String) {
    (pod.metadata.namespace.clone().unwrap_or_default(), pod.metadata.name.clone().unwrap_or_default())
}

fn phase(pod: &Pod) -> &str {
    pod.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or("")
}

fn terminal(pod: &Pod) -> bool {
    matches!(phase(pod), "Succeeded" | "Failed")
}

fn node_name(pod: &Pod) -> &str {
    pod.spec.as_ref().and_then(|s| s.node_name.as_deref()).unwrap_or("")
}

fn print(pod: &Pod) -> String {
    serde_json::to_string(&(&pod.spec, &pod.metadata.labels)).unwrap_or_default()
}

/// What of a node can change whether a pod fits on it (not its heartbeats).
fn node_print(node: &Node) -> String {
    let status = node.status.as_ref();
    let ready = status
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
        .map(|c| c.status.clone());
    serde_json::to_string(&(&node.metadata.labels, &node.spec, status.and_then(|s| s.allocatable.as_ref()), ready))
        .unwrap_or_default()
}

fn backoff(attempts: u32) -> Duration {
    let factor = 1u32 << attempts.saturating_sub(1).min(8);
    (INITIAL_BACKOFF * factor).min(MAX_BACKOFF)
}

/// Kubernetes MicroTime text (RFC 3339, microseconds, UTC).
fn micro_now() -> String {
    chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

fn now_rfc3339() -> String {
    chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

impl Scheduler {
    /// Whether `pod` is this scheduler's to place now.
    fn responsible(&self, pod: &Pod) -> bool {
        let Some(spec) = pod.spec.as_ref() else { return false };
        let name = spec.scheduler_name.as_deref().filter(|s| !s.is_empty()).unwrap_or(DEFAULT_SCHEDULER_NAME);
        node_name(pod).is_empty()
            && name == self.config.scheduler_name
            && pod.metadata.deletion_timestamp.is_none()
            && !terminal(pod)
            && spec.scheduling_gates.as_ref().is_none_or(|g| g.is_empty())
    }

    fn enqueue_now(&mut self, pod: &Pod) {
        let priority = pod.spec.as_ref().and_then(|s| s.priority).unwrap_or(0);
        self.queue.entry(key_of(pod)).or_insert_with(|| Entry {
            due: Instant::now(),
            attempts: 0,
            last_attempt: None,
            print: String::new(),
            priority,
        });
    }

    /// Re-reads everything: queues every pending pod not queued yet, forgets assumed pods
    /// the cache has caught up with, and treats it all as a change.
    fn resync(&mut self) {
        let pods = self.pods.state();
        for pod in &pods {
            if self.responsible(pod) {
                self.enqueue_now(pod);
            }
        }
        let bound: std::collections::HashSet<String> =
            pods.iter().filter(|p| !node_name(p).is_empty()).filter_map(|p| p.metadata.uid.clone()).collect();
        self.assumed.retain(|uid, _| !bound.contains(uid));
        self.node_prints =
            self.nodes.state().iter().map(|n| (n.metadata.name.clone().unwrap_or_default(), node_print(n))).collect();
        self.cluster_changed();
    }

    /// Something that may make room happened: pods that did not fit are retried once a
    /// second has passed since their last attempt.
    fn cluster_changed(&mut self) {
        let now = Instant::now();
        for e in self.queue.values_mut() {
            if let Some(last) = e.last_attempt {
                e.due = e.due.min((last + INITIAL_BACKOFF).max(now));
            }
        }
    }

    fn on_pod(&mut self, change: Change<Pod>) {
        match change {
            Change::Applied(pod) => {
                let key = key_of(&pod);
                if !node_name(&pod).is_empty() {
                    self.queue.remove(&key);
                    self.events.remove(&key);
                    if let Some(uid) = pod.metadata.uid.as_ref() {
                        self.assumed.remove(uid);
                    }
                    self.cluster_changed();
                } else if self.responsible(&pod) {
                    let p = print(&pod);
                    match self.queue.get_mut(&key) {
                        Some(e) if e.last_attempt.is_some() && e.print != p => {
                            let last = e.last_attempt.unwrap_or_else(Instant::now);
                            e.due = e.due.min((last + INITIAL_BACKOFF).max(Instant::now()));
                        }
                        Some(_) => {}
                        None => self.enqueue_now(&pod),
                    }
                } else {
                    self.queue.remove(&key);
                }
            }
            Change::Deleted(pod) => {
                let key = key_of(&pod);
                self.queue.remove(&key);
                self.events.remove(&key);
                if let Some(uid) = pod.metadata.uid.as_ref() {
                    self.assumed.remove(uid);
                }
                if !node_name(&pod).is_empty() {
                    self.cluster_changed();
                }
            }
            Change::Resynced => self.resync(),
        }
    }

    fn on_node(&mut self, change: Change<Node>) {
        match change {
            Change::Applied(node) => {
                let name = node.metadata.name.clone().unwrap_or_default();
                let p = node_print(&node);
                if self.node_prints.get(&name) != Some(&p) {
                    self.node_prints.insert(name, p);
                    self.cluster_changed();
                }
            }
            Change::Deleted(node) => {
                self.node_prints.remove(node.metadata.name.as_deref().unwrap_or(""));
            }
            Change::Resynced => self.resync(),
        }
    }

    /// The due pod to try first: highest priority, then the longest due.
    fn pop_due(&mut self, now: Instant) -> Option<(String, String)> {
        self.queue
            .iter()
            .filter(|(_, e)| e.due <= now)
            .min_by(|(ka, a), (kb, b)| b.priority.cmp(&a.priority).then(a.due.cmp(&b.due)).then(ka.cmp(kb)))
            .map(|(k, _)| k.clone())
    }

    fn next_due(&self) -> Option<Instant> {
        self.queue.values().map(|e| e.due).min()
    }

    /// Backs `key` off after an attempt that did not place it.
    fn back_off(&mut self, key: &(String, String), pod: &Pod) {
        if let Some(e) = self.queue.get_mut(key) {
            let now = Instant::now();
            e.attempts += 1;
            e.last_attempt = Some(now);
            e.due = now + backoff(e.attempts);
            e.print = print(pod);
        }
    }

    async fn schedule_one(&mut self, key: &(String, String)) {
        let pod = self.pods.get(&ObjectRef::new(&key.1).within(&key.0));
        let Some(pod) = pod.filter(|p| self.responsible(p)) else {
            self.queue.remove(key);
            return;
        };
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        if self.assumed.contains_key(&uid) {
            self.queue.remove(key);
            return;
        }
        let mut nodes = self.nodes.state();
        nodes.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
        if nodes.is_empty() {
            self.unschedulable(key, &pod, message::NO_NODES.to_string()).await;
            return;
        }
        let all_pods = self.pods.state();
        let mut by_node: BTreeMap<&str, Vec<&Pod>> = BTreeMap::new();
        for p in &all_pods {
            let bound_to = node_name(p);
            if !bound_to.is_empty() && !terminal(p) {
                by_node.entry(bound_to).or_default().push(p);
            }
        }
        for p in self.assumed.values() {
            by_node.entry(node_name(p)).or_default().push(p);
        }
        // An assumed pod the cache already shows bound would count twice.
        for list in by_node.values_mut() {
            let mut seen = std::collections::HashSet::new();
            list.retain(|p| seen.insert(p.metadata.uid.clone()));
        }
        let req = filters::pod_requests(&pod, false);
        let non_zero = filters::pod_requests(&pod, true);
        let mut best: Option<(i64, &str)> = None;
        let mut rejected: Vec<(NodeInfo, Rejection)> = Vec::new();
        for node in &nodes {
            let name = node.metadata.name.as_deref().unwrap_or("");
            let info = NodeInfo::new(node, by_node.get(name).cloned().unwrap_or_default());
            match filters::filter(&pod, &req, &info) {
                Ok(()) => {
                    let score = filters::least_allocated_score(&non_zero, &info);
                    if best.is_none_or(|(s, _)| score > s) {
                        best = Some((score, name));
                    }
                }
                Err(r) => rejected.push((info, r)),
            }
        }
        if let Some((_, node)) = best {
            let node = node.to_string();
            drop(rejected);
            self.bind(key, &pod, &node).await;
            return;
        }
        let post = message::preemption(&pod, &rejected);
        let msg = message::fit_error(nodes.len(), &message::histogram(rejected.iter().map(|(_, r)| r)), &post);
        drop(rejected);
        self.unschedulable(key, &pod, msg).await;
    }

    async fn bind(&mut self, key: &(String, String), pod: &Arc<Pod>, node: &str) {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &key.0);
        let binding = json!({
            "apiVersion": "v1",
            "kind": "Binding",
            "metadata": { "name": key.1, "namespace": key.0, "uid": pod.metadata.uid },
            "target": { "kind": "Node", "name": node },
        });
        match api.create_subresource::<Value, Value>("binding", &key.1, &PostParams::default(), &binding).await {
            Ok(_) => {
                tracing::info!(pod = %format!("{}/{}", key.0, key.1), node, "bound");
                let mut assumed = (**pod).clone();
                if let Some(spec) = assumed.spec.as_mut() {
                    spec.node_name = Some(node.to_string());
                }
                if let Some(uid) = pod.metadata.uid.clone() {
                    self.assumed.insert(uid, Arc::new(assumed));
                }
                self.queue.remove(key);
                self.events.remove(key);
                let note = format!("Successfully assigned {}/{} to {node}", key.0, key.1);
                self.create_event(pod, "Normal", "Scheduled", "Binding", &note).await;
            }
            Err(kube::Error::Api(status)) if status.code == 409 || status.code == 404 => {
                // The pod changed under us (bound elsewhere, deleted, recreated): the cache
                // will say what it is now.
                tracing::debug!(pod = %format!("{}/{}", key.0, key.1), error = %status.message, "binding refused");
                self.queue.remove(key);
            }
            Err(e) => {
                tracing::warn!(pod = %format!("{}/{}", key.0, key.1), node, error = %e, "binding failed; will retry");
                self.back_off(key, pod);
            }
        }
    }

    /// Records that nothing fits: the PodScheduled condition (patched only when it
    /// changes, as kube-scheduler's updatePod) and a FailedScheduling Event.
    async fn unschedulable(&mut self, key: &(String, String), pod: &Arc<Pod>, msg: String) {
        tracing::debug!(pod = %format!("{}/{}", key.0, key.1), message = %msg, "unschedulable");
        self.failed_event(key, pod, &msg).await;
        let conditions = pod.status.as_ref().and_then(|s| s.conditions.as_ref());
        let existing = conditions.and_then(|c| c.iter().find(|c| c.type_ == "PodScheduled"));
        let same = existing.is_some_and(|c| {
            c.status == "False"
                && c.reason.as_deref() == Some("Unschedulable")
                && c.message.as_deref() == Some(msg.as_str())
        });
        if !same {
            let transition = existing
                .filter(|c| c.status == "False")
                .and_then(|c| serde_json::to_value(&c.last_transition_time).ok())
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_else(now_rfc3339);
            let patch = json!({ "status": { "conditions": [{
                "type": "PodScheduled",
                "status": "False",
                "lastProbeTime": null,
                "lastTransitionTime": transition,
                "reason": "Unschedulable",
                "message": msg,
            }]}});
            let api: Api<Pod> = Api::namespaced(self.client.clone(), &key.0);
            if let Err(e) = api.patch_status(&key.1, &PatchParams::default(), &Patch::Strategic(&patch)).await {
                tracing::warn!(pod = %format!("{}/{}", key.0, key.1), error = %e, "updating PodScheduled failed");
            }
        }
        self.back_off(key, pod);
    }

    async fn failed_event(&mut self, key: &(String, String), pod: &Pod, msg: &str) {
        let note = message::truncate_note(msg);
        let version = pod.metadata.resource_version.clone().unwrap_or_default();
        if let Some(memo) = self.events.get_mut(key) {
            if memo.note == note && memo.regarding_version == version {
                // The same event again: the recorder turns it into a series, written on
                // the first repeat and counted in memory after.
                memo.count += 1;
                if memo.count == 2 {
                    let api: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(self.client.clone(), &key.0);
                    let patch = json!({ "series": { "count": 2, "lastObservedTime": micro_now() } });
                    if let Err(e) = api.patch(&memo.name, &PatchParams::default(), &Patch::Merge(&patch)).await {
                        tracing::debug!(error = %e, "updating event series failed");
                    }
                }
                return;
            }
        }
        if let Some(name) = self.create_event(pod, "Warning", "FailedScheduling", "Scheduling", &note).await {
            self.events.insert(key.clone(), EventMemo { name, note, regarding_version: version, count: 1 });
        }
    }

    /// Creates an events.k8s.io/v1 Event about `pod`, filled as client-go's events recorder
    /// fills it; returns its name.
    async fn create_event(&self, pod: &Pod, type_: &str, reason: &str, action: &str, note: &str) -> Option<String> {
        let (ns, name) = key_of(pod);
        let nanos = chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0);
        let event_name = format!("{name}.{nanos:x}");
        let event = json!({
            "apiVersion": "events.k8s.io/v1",
            "kind": "Event",
            "metadata": { "name": event_name, "namespace": ns },
            "eventTime": micro_now(),
            "reportingController": self.config.scheduler_name,
            "reportingInstance": self.config.reporting_instance,
            "action": action,
            "reason": reason,
            "regarding": {
                "kind": "Pod",
                "namespace": ns,
                "name": name,
                "uid": pod.metadata.uid,
                "apiVersion": "v1",
                "resourceVersion": pod.metadata.resource_version,
            },
            "note": message::truncate_note(note),
            "type": type_,
        });
        let event: k8s_openapi::api::events::v1::Event = match serde_json::from_value(event) {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!(error = %e, "building event failed");
                return None;
            }
        };
        let api: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(self.client.clone(), &ns);
        match api.create(&PostParams::default(), &event).await {
            Ok(_) => Some(event_name),
            Err(e) => {
                tracing::warn!(error = %e, reason, "recording event failed");
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_ten_seconds() {
        let got: Vec<u64> = (1..=7).map(|n| backoff(n).as_secs()).collect();
        assert_eq!(got, vec![1, 2, 4, 8, 10, 10, 10]);
    }
}
