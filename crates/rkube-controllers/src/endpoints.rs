//! The Endpoints controller (kube-controller-manager's `endpoint-controller`,
//! `pkg/controller/endpoint`): for every Service with a selector it keeps an Endpoints
//! object of the same name, listing the selected pods that have an IP, ready ones in
//! `addresses` and the others in `notReadyAddresses`, with the ports each service port
//! reaches on them ([`crate::subsets`] computes what they hold).
//!
//! Over the Service, Pod and Endpoints informers, a queue of service keys: a Service
//! change queues it; a pod change that can move its address (labels, hostname or subdomain,
//! deletion, readiness, IPs, phase, node) queues the services that select it before and
//! after; a deleted Endpoints queues its service (so one deleted by hand comes back). Each
//! sync reads the caches afresh:
//! - Service gone: its Endpoints are deleted, whether or not it had a selector, as upstream
//!   does (`default/kubernetes`, the API server's own, excepted).
//! - ExternalName, or no selector: nothing is done; such Endpoints belong to their user.
//! - Otherwise the subsets are computed, and the Endpoints created, or updated when their
//!   subsets or labels differ (labels: the service's, plus `service.kubernetes.io/headless`
//!   for a service without a cluster IP). A write sets the
//!   `endpoints.kubernetes.io/last-change-trigger-time` annotation (the service's creation
//!   for a new service, else the earliest Ready transition of the pods that changed) and,
//!   past 1000 addresses, truncates them and sets `endpoints.kubernetes.io/over-capacity:
//!   truncated`. An update that changes nothing is never sent.
//!
//! A failed write records a `FailedToCreateEndpoint` / `FailedToUpdateEndpoint` Warning
//! and is retried with back-off (5 ms doubling, dropped after 15 failures; a conflict is
//! retried the same way). After its own update the controller waits for its cache to show
//! it before syncing that service again. At start, the service of every existing Endpoints
//! is queued, so Endpoints whose Service was deleted while no controller ran go too
//! (upstream's `checkLeftoverEndpoints`; leader-election records excepted).
//!
//! Not done (yet): EndpointSlices (and mirroring hand-made Endpoints into them), several
//! workers, the update batch period (upstream's default is none), metrics.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Endpoints, ObjectReference, Pod, Service};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, PostParams};
use kube::runtime::reflector::{ObjectRef, Store};
use rkube_client::{Change, Informers};
use tokio::sync::broadcast::error::TryRecvError;
use tokio::time::Instant;

use crate::events::Recorder;
use crate::queue::Queue;
use crate::subsets;

/// The controller's name (its Events' source component).
pub const CONTROLLER_NAME: &str = "endpoint-controller";
/// When the change the Endpoints reflect happened (`v1.EndpointsLastChangeTriggerTime`).
pub const LAST_CHANGE_TRIGGER_TIME: &str = "endpoints.kubernetes.io/last-change-trigger-time";
/// Set to `truncated` on Endpoints cut to 1000 addresses (`v1.EndpointsOverCapacity`).
pub const OVER_CAPACITY: &str = "endpoints.kubernetes.io/over-capacity";
/// On the Endpoints of a service without a cluster IP (`v1.IsHeadlessService`).
pub const HEADLESS_LABEL: &str = "service.kubernetes.io/headless";
/// Leader-election records kept in Endpoints (never deleted as leftovers).
const LEADER_ANNOTATION: &str = "control-plane.alpha.kubernetes.io/leader";

/// A service (and its Endpoints): (namespace, name).
pub type Key = (String, String);

fn key_of(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> Key {
    (meta.namespace.clone().unwrap_or_default(), meta.name.clone().unwrap_or_default())
}

/// Keeps Endpoints until `shutdown` resolves. `informers` must be built on a client
/// allowed what upstream's `system:controller:endpoint-controller` allows (list/watch
/// services and pods; get/list/watch/create/update/delete endpoints; create and patch
/// events); its Service, Pod and Endpoints informers (all objects) are shared with the
/// component's other loops.
pub async fn run(informers: Informers, shutdown: impl Future<Output = ()>) {
    let services = informers.get::<Service>("");
    let pods = informers.get::<Pod>("");
    let endpoints = informers.get::<Endpoints>("");
    let mut svc_rx = services.subscribe();
    let mut pod_rx = pods.subscribe();
    let mut ep_rx = endpoints.subscribe();
    let mut shutdown = std::pin::pin!(shutdown);
    tokio::select! {
        _ = &mut shutdown => return,
        _ = async { services.ready().await; pods.ready().await; endpoints.ready().await } => {}
    }
    tracing::info!(controller = CONTROLLER_NAME, "starting controller");
    let client = informers.client().clone();
    let mut c = Controller {
        recorder: Recorder::new(client.clone(), CONTROLLER_NAME),
        client,
        services: services.store().clone(),
        pods: pods.store().clone(),
        endpoints: endpoints.store().clone(),
        queue: Queue::default(),
        known_services: HashSet::new(),
        pod_prints: HashMap::new(),
        trigger_times: TriggerTimes::default(),
        stale: HashMap::new(),
    };
    c.resync_services();
    c.resync_pods();
    c.queue_leftover_endpoints();
    loop {
        loop {
            match svc_rx.try_recv() {
                Ok(ch) => c.on_service(ch),
                Err(TryRecvError::Lagged(_)) => c.resync_services(),
                Err(_) => break,
            }
        }
        loop {
            match pod_rx.try_recv() {
                Ok(ch) => c.on_pod(ch),
                Err(TryRecvError::Lagged(_)) => c.resync_pods(),
                Err(_) => break,
            }
        }
        loop {
            match ep_rx.try_recv() {
                Ok(ch) => c.on_endpoints(ch),
                Err(TryRecvError::Lagged(_)) => c.queue_all_services(),
                Err(_) => break,
            }
        }
        if let Some(key) = c.queue.pop_due(Instant::now()) {
            let result = tokio::select! {
                _ = &mut shutdown => break,
                r = c.sync(&key) => r,
            };
            c.handle(key, result);
            continue;
        }
        let wake = c.queue.next_due().unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
        tokio::select! {
            _ = &mut shutdown => break,
            ch = svc_rx.recv() => match ch {
                Ok(ch) => c.on_service(ch),
                Err(_) => c.resync_services(),
            },
            ch = pod_rx.recv() => match ch {
                Ok(ch) => c.on_pod(ch),
                Err(_) => c.resync_pods(),
            },
            ch = ep_rx.recv() => match ch {
                Ok(ch) => c.on_endpoints(ch),
                Err(_) => c.queue_all_services(),
            },
            _ = tokio::time::sleep_until(wake) => {}
        }
    }
    tracing::info!(controller = CONTROLLER_NAME, "shutting down controller");
}

/// What of a pod can change its address in a service's Endpoints, or which services
/// select it.
#[derive(Debug, Clone, PartialEq)]
struct PodPrint {
    labels: BTreeMap<String, String>,
    hostname: Option<String>,
    subdomain: Option<String>,
    deletion: Option<Timestamp>,
    ready: bool,
    ips: Vec<String>,
    terminal: bool,
    node: Option<String>,
}

impl PodPrint {
    fn of(pod: &Pod) -> PodPrint {
        let spec = pod.spec.as_ref();
        PodPrint {
            labels: pod.metadata.labels.clone().unwrap_or_default(),
            hostname: spec.and_then(|s| s.hostname.clone()),
            subdomain: spec.and_then(|s| s.subdomain.clone()),
            deletion: pod.metadata.deletion_timestamp.as_ref().map(|t| t.0),
            ready: subsets::is_ready(pod),
            ips: subsets::pod_ips(pod).into_iter().map(str::to_string).collect(),
            terminal: subsets::is_terminal(pod),
            node: spec.and_then(|s| s.node_name.clone()),
        }
    }
}

struct Controller {
    client: kube::Client,
    recorder: Recorder,
    services: Store<Service>,
    pods: Store<Pod>,
    endpoints: Store<Endpoints>,
    queue: Queue<Key>,
    /// Services in the cache at the last look: one missing after a re-list was deleted
    /// meanwhile (client-go's informers report those; kube-rs' do not).
    known_services: HashSet<Key>,
    /// The last print of every pod seen.
    pod_prints: HashMap<Key, PodPrint>,
    trigger_times: TriggerTimes,
    /// The resourceVersion each service's Endpoints had before this controller's last
    /// update: a cache still showing it is behind (upstream's staleEndpointsTracker).
    stale: HashMap<Key, String>,
}

impl Controller {
    fn queue_all_services(&mut self) {
        for svc in self.services.state() {
            self.queue.add(key_of(&svc.metadata));
        }
    }

    /// Everything about services may have changed: queue them all, and the ones that
    /// vanished since the last look.
    fn resync_services(&mut self) {
        let now: HashSet<Key> = self.services.state().iter().map(|s| key_of(&s.metadata)).collect();
        for key in self.known_services.difference(&now) {
            self.queue.add(key.clone());
        }
        for key in &now {
            self.queue.add(key.clone());
        }
        self.known_services = now;
    }

    /// Pods may have changed in any way: remember them afresh and queue every service
    /// (pods that vanished are among what the services' syncs see).
    fn resync_pods(&mut self) {
        self.pod_prints = self.pods.state().iter().map(|p| (key_of(&p.metadata), PodPrint::of(p))).collect();
        self.queue_all_services();
    }

    /// Upstream's checkLeftoverEndpoints: the service of every Endpoints, so that
    /// Endpoints whose service is gone are deleted.
    fn queue_leftover_endpoints(&mut self) {
        for ep in self.endpoints.state() {
            if ep.metadata.annotations.as_ref().is_some_and(|a| a.contains_key(LEADER_ANNOTATION)) {
                continue;
            }
            self.queue.add(key_of(&ep.metadata));
        }
    }

    fn on_service(&mut self, change: Change<Service>) {
        match change {
            Change::Applied(svc) => {
                let key = key_of(&svc.metadata);
                self.known_services.insert(key.clone());
                self.queue.add(key);
            }
            Change::Deleted(svc) => {
                let key = key_of(&svc.metadata);
                self.known_services.remove(&key);
                self.queue.add(key);
            }
            Change::Resynced => self.resync_services(),
        }
    }

    /// Queues the services in `ns` whose selector matches `labels`.
    fn queue_services_for(&mut self, ns: &str, labels: &BTreeMap<String, String>) {
        for svc in self.services.state() {
            if svc.metadata.namespace.as_deref() != Some(ns) {
                continue;
            }
            if subsets::selector(&svc).is_some_and(|sel| subsets::selects(sel, Some(labels))) {
                self.queue.add(key_of(&svc.metadata));
            }
        }
    }

    fn on_pod(&mut self, change: Change<Pod>) {
        match change {
            Change::Applied(pod) => {
                let key = key_of(&pod.metadata);
                let print = PodPrint::of(&pod);
                let old = self.pod_prints.insert(key.clone(), print.clone());
                if old.as_ref() == Some(&print) {
                    return;
                }
                self.queue_services_for(&key.0, &print.labels);
                if let Some(old) = old.filter(|o| o.labels != print.labels) {
                    self.queue_services_for(&key.0, &old.labels);
                }
            }
            Change::Deleted(pod) => {
                let key = key_of(&pod.metadata);
                let old = self.pod_prints.remove(&key);
                let labels = pod.metadata.labels.clone().unwrap_or_default();
                self.queue_services_for(&key.0, &labels);
                if let Some(old) = old.filter(|o| o.labels != labels) {
                    self.queue_services_for(&key.0, &old.labels);
                }
            }
            Change::Resynced => self.resync_pods(),
        }
    }

    fn on_endpoints(&mut self, change: Change<Endpoints>) {
        match change {
            // Upstream watches Endpoints only for deletions.
            Change::Applied(_) => {}
            Change::Deleted(ep) => self.queue.add(key_of(&ep.metadata)),
            // A deletion may have been missed during the re-list.
            Change::Resynced => self.queue_all_services(),
        }
    }

    fn handle(&mut self, key: Key, result: Result<(), String>) {
        match result {
            Ok(()) => self.queue.forget(&key),
            Err(e) => {
                if self.queue.add_rate_limited(key.clone()) {
                    tracing::debug!(service = %format!("{}/{}", key.0, key.1), error = %e, "error syncing endpoints, retrying");
                } else {
                    tracing::warn!(service = %format!("{}/{}", key.0, key.1), error = %e, "dropping service out of the queue");
                }
            }
        }
    }

    async fn sync(&mut self, key: &Key) -> Result<(), String> {
        let (ns, name) = (key.0.as_str(), key.1.as_str());
        let Some(svc) = self.services.get(&ObjectRef::new(name).within(ns)) else {
            return self.service_deleted(key).await;
        };
        if subsets::is_external_name(&svc) {
            return Ok(());
        }
        let Some(selector) = subsets::selector(&svc) else {
            // Its Endpoints are made by hand.
            return Ok(());
        };
        let pods: Vec<Arc<Pod>> = self
            .pods
            .state()
            .into_iter()
            .filter(|p| p.metadata.namespace.as_deref() == Some(ns))
            .filter(|p| subsets::selects(selector, p.metadata.labels.as_ref()))
            .collect();
        // Computed before knowing whether anything changed, so that the tracker's state
        // follows every sync.
        let trigger = self.trigger_times.compute(key, &svc, &pods);
        let desired = subsets::desired(&svc, pods.iter().map(|p| p.as_ref()));

        let current = self.endpoints.get(&ObjectRef::new(name).within(ns));
        if let Some(cur) = &current {
            let rv = cur.metadata.resource_version.as_deref().unwrap_or("");
            if self.stale.get(key).is_some_and(|s| s == rv) {
                return Err(format!(
                    "endpoints informer cache is out of date, resource version {rv} already processed for endpoints {ns}/{name}"
                ));
            }
        }
        let svc_labels = svc.metadata.labels.clone().unwrap_or_default();
        let create = current.as_ref().is_none_or(|c| c.metadata.resource_version.as_deref().unwrap_or("").is_empty());
        if let Some(cur) = current.as_ref().filter(|_| !create) {
            let mut labels = cur.metadata.labels.clone().unwrap_or_default();
            labels.remove(HEADLESS_LABEL);
            let cur_subsets = cur.subsets.clone().unwrap_or_default();
            if subsets::equal_ignoring_resource_version(&cur_subsets, &desired.subsets)
                && labels == svc_labels
                && capacity_annotation_correct(cur)
            {
                return Ok(());
            }
        }

        let mut new = match &current {
            Some(cur) if !create => (**cur).clone(),
            _ => {
                let mut e = Endpoints::default();
                e.metadata.name = Some(name.to_string());
                e.metadata.namespace = Some(ns.to_string());
                e
            }
        };
        let mut new_subsets = desired.subsets;
        let mut annotations = new.metadata.annotations.take().unwrap_or_default();
        match trigger {
            Some(t) => {
                annotations.insert(LAST_CHANGE_TRIGGER_TIME.into(), go_rfc3339_nano(t));
            }
            None => {
                annotations.remove(LAST_CHANGE_TRIGGER_TIME);
            }
        }
        if subsets::truncate(&mut new_subsets) {
            annotations.insert(OVER_CAPACITY.into(), "truncated".into());
        } else {
            annotations.remove(OVER_CAPACITY);
        }
        let mut labels = svc_labels;
        if subsets::is_headless(&svc) {
            labels.insert(HEADLESS_LABEL.into(), String::new());
        } else {
            labels.remove(HEADLESS_LABEL);
        }
        new.metadata.annotations = (!annotations.is_empty()).then_some(annotations);
        new.metadata.labels = (!labels.is_empty()).then_some(labels);
        new.subsets = (!new_subsets.is_empty()).then_some(new_subsets);

        tracing::debug!(
            service = %format!("{ns}/{name}"),
            ready = desired.ready,
            not_ready = desired.not_ready,
            "updating endpoints"
        );
        let api: Api<Endpoints> = Api::namespaced(self.client.clone(), ns);
        let written = if create {
            api.create(&PostParams::default(), &new).await
        } else {
            api.replace(name, &PostParams::default(), &new).await
        };
        match written {
            Ok(updated) => {
                let before = current.as_ref().and_then(|c| c.metadata.resource_version.clone()).unwrap_or_default();
                if !create && updated.metadata.resource_version.as_deref() != Some(before.as_str()) {
                    self.stale.insert(key.clone(), before);
                }
                Ok(())
            }
            Err(e) => {
                if create && namespace_terminating(&e) {
                    // Creates keep failing in a terminating namespace: drop the service.
                    tracing::debug!(service = %format!("{ns}/{name}"), "forbidden from creating endpoints");
                    return Ok(());
                }
                let message = error_text(&e);
                let object = ObjectReference {
                    api_version: Some("v1".into()),
                    kind: Some("Endpoints".into()),
                    namespace: Some(ns.to_string()),
                    name: Some(name.to_string()),
                    uid: new.metadata.uid.clone(),
                    resource_version: new.metadata.resource_version.clone(),
                    ..ObjectReference::default()
                };
                if create {
                    let note = format!("Failed to create endpoint for service {ns}/{name}: {message}");
                    self.recorder.warning(&object, "FailedToCreateEndpoint", &note).await;
                } else {
                    let note = format!("Failed to update endpoint {ns}/{name}: {message}");
                    self.recorder.warning(&object, "FailedToUpdateEndpoint", &note).await;
                }
                Err(message)
            }
        }
    }

    /// The service is gone: so go its Endpoints (upstream deletes them whatever made them).
    async fn service_deleted(&mut self, key: &Key) -> Result<(), String> {
        let (ns, name) = (key.0.as_str(), key.1.as_str());
        self.trigger_times.remove(key);
        self.stale.remove(key);
        if ns == "default" && name == "kubernetes" {
            // The API server keeps these itself.
            return Ok(());
        }
        let api: Api<Endpoints> = Api::namespaced(self.client.clone(), ns);
        match api.delete(name, &DeleteParams::default()).await {
            Ok(_) => {
                tracing::debug!(endpoints = %format!("{ns}/{name}"), "deleted the endpoints of a deleted service");
                Ok(())
            }
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
            Err(e) => Err(error_text(&e)),
        }
    }
}

/// Upstream's capacityAnnotationSetCorrectly: at most 1000 addresses and no over-capacity
/// annotation.
fn capacity_annotation_correct(ep: &Endpoints) -> bool {
    let n = subsets::count(ep.subsets.as_deref().unwrap_or_default());
    n <= subsets::MAX_CAPACITY && !ep.metadata.annotations.as_ref().is_some_and(|a| a.contains_key(OVER_CAPACITY))
}

/// A create refused because the namespace is being deleted.
fn namespace_terminating(e: &kube::Error) -> bool {
    let kube::Error::Api(s) = e else { return false };
    s.code == 403
        && (s.details.as_ref().is_some_and(|d| d.causes.iter().any(|c| c.reason == "NamespaceTerminating"))
            || s.message.contains("because it is being terminated"))
}

/// An error as Go prints it: an API error is its message.
fn error_text(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) if !s.message.is_empty() => s.message.clone(),
        e => e.to_string(),
    }
}

/// Go's `time.RFC3339Nano` in UTC: fractional seconds only when not zero, without
/// trailing zeros.
fn go_rfc3339_nano(t: Timestamp) -> String {
    let secs = t.as_second();
    let nanos = t.subsec_nanosecond();
    let base = chrono::DateTime::from_timestamp(secs, 0)
        .map(|d| d.format("%Y-%m-%dT%H:%M:%S").to_string())
        .unwrap_or_default();
    if nanos == 0 {
        return format!("{base}Z");
    }
    let frac = format!("{nanos:09}");
    format!("{base}.{}Z", frac.trim_end_matches('0'))
}

/// Upstream's TriggerTimeTracker: remembers, per service, its creation time and each
/// pod's last Ready transition seen at the last sync, and gives the time a sync should
/// export as [`LAST_CHANGE_TRIGGER_TIME`].
#[derive(Default)]
struct TriggerTimes {
    services: HashMap<Key, ServiceState>,
}

#[derive(Default)]
struct ServiceState {
    service: Option<Timestamp>,
    pods: HashMap<String, Timestamp>,
}

fn pod_trigger_time(pod: &Pod) -> Option<Timestamp> {
    subsets::ready_condition(pod).and_then(|c| c.last_transition_time.as_ref()).map(|t| t.0)
}

impl TriggerTimes {
    /// A new service: its creation time. Otherwise the earliest of the trigger times that
    /// moved since the last sync (the service's, or a pod's Ready transition), or None.
    fn compute(&mut self, key: &Key, svc: &Service, pods: &[Arc<Pod>]) -> Option<Timestamp> {
        let known = self.services.contains_key(key);
        let state = self.services.entry(key.clone()).or_default();
        let mut min_changed: Option<Timestamp> = None;
        let mut seen = HashMap::new();
        for pod in pods {
            let Some(t) = pod_trigger_time(pod) else { continue };
            let name = pod.metadata.name.clone().unwrap_or_default();
            if state.pods.get(&name).is_none_or(|last| t > *last) {
                min_changed = Some(min_changed.map_or(t, |m| m.min(t)));
            }
            seen.insert(name, t);
        }
        let created = svc.metadata.creation_timestamp.as_ref().map(|t| t.0);
        if let Some(t) = created {
            if state.service.is_none_or(|last| t > last) {
                min_changed = Some(min_changed.map_or(t, |m| m.min(t)));
            }
        }
        state.pods = seen;
        state.service = created;
        if !known {
            return created;
        }
        min_changed
    }

    fn remove(&mut self, key: &Key) {
        self.services.remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn trigger_times_are_formatted_as_go_does() {
        assert_eq!(go_rfc3339_nano(ts("2025-01-02T03:04:05Z")), "2025-01-02T03:04:05Z");
        assert_eq!(go_rfc3339_nano(ts("2025-01-02T03:04:05.120Z")), "2025-01-02T03:04:05.12Z");
        assert_eq!(go_rfc3339_nano(ts("2025-01-02T03:04:05.000000001Z")), "2025-01-02T03:04:05.000000001Z");
    }

    fn pod(name: &str, ready_at: &str) -> Arc<Pod> {
        Arc::new(
            serde_json::from_value(json!({
                "metadata": {"name": name, "namespace": "ns"},
                "status": {"conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": ready_at}]},
            }))
            .unwrap(),
        )
    }

    #[test]
    fn the_trigger_time_is_the_earliest_change_since_the_last_sync() {
        let svc: Service = serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "ns", "creationTimestamp": "2025-01-01T00:00:00Z"}
        }))
        .unwrap();
        let key = ("ns".to_string(), "web".to_string());
        let mut t = TriggerTimes::default();
        let a = pod("a", "2025-01-01T00:01:00Z");
        // A service seen for the first time: its creation.
        assert_eq!(t.compute(&key, &svc, std::slice::from_ref(&a)), Some(ts("2025-01-01T00:00:00Z")));
        // Nothing moved.
        assert_eq!(t.compute(&key, &svc, std::slice::from_ref(&a)), None);
        // Two pods changed: the earlier.
        let b = pod("b", "2025-01-01T00:03:00Z");
        let a2 = pod("a", "2025-01-01T00:02:00Z");
        assert_eq!(t.compute(&key, &svc, &[a2.clone(), b.clone()]), Some(ts("2025-01-01T00:02:00Z")));
        // A pod that left changes nothing by itself.
        assert_eq!(t.compute(&key, &svc, &[b]), None);
        t.remove(&key);
        assert_eq!(t.compute(&key, &svc, &[a2]), Some(ts("2025-01-01T00:00:00Z")));
    }

    #[test]
    fn the_capacity_annotation_must_match_the_size() {
        let mut ep = Endpoints::default();
        assert!(capacity_annotation_correct(&ep));
        ep.metadata.annotations = Some([(OVER_CAPACITY.to_string(), "truncated".to_string())].into());
        assert!(!capacity_annotation_correct(&ep));
    }
}
