//! One worker per pod: volumes, containers (init, sidecars, regular, restarts with the
//! kubelet's back-off), status, termination and the final delete.
//!
//! Invariants: a worker is the only writer of its pod's status and directory; it ends only
//! after every process of the pod is gone; the pod's directory and cgroups are removed
//! when the pod is deleted or the agent stops.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{ConfigMap, Container, Pod, Secret, Service, ServiceAccount, Volume};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use serde_json::{json, Value};
use tokio::sync::{mpsc, watch, Mutex};

use crate::agent::Shared;
use crate::images;
use crate::runtime::{self, ContainerCgroup, Exit, LogFile};
use crate::sandbox::{BindMount, SandboxSpec};
use crate::status::{self, ContainerStatus, PodStatusInput, State};

/// What the agent tells a worker.
#[derive(Debug, Clone)]
pub struct Msg {
    /// The pod as last seen; None once it is gone from the API.
    pub pod: Option<Arc<Pod>>,
    /// The agent is stopping: end every process.
    pub stop: bool,
    /// Bumped when referenced objects may have changed.
    pub nudge: u64,
}

/// The kubelet's crash-loop back-off (pkg/kubelet/kubelet.go).
const BACKOFF_INITIAL: Duration = Duration::from_secs(10);
const BACKOFF_MAX: Duration = Duration::from_secs(300);
/// The minimum grace period the kubelet applies (minimumGracePeriodInSeconds).
const MIN_GRACE: i64 = 2;
/// How often emptyDir usage is compared with sizeLimit (the eviction manager's period).
const USAGE_CHECK_PERIOD: Duration = Duration::from_secs(10);
/// The grace period of an eviction for a local storage limit
/// (immediateEvictionGracePeriodSeconds).
const EVICTION_GRACE: i64 = 1;

pub fn is_terminal(pod: &Pod) -> bool {
    matches!(pod.status.as_ref().and_then(|s| s.phase.as_deref()), Some("Succeeded" | "Failed"))
}

fn pods_dir(root: &Path) -> PathBuf {
    root.join("pods")
}

pub fn has_state(root: &Path, uid: &str) -> bool {
    pods_dir(root).join(uid).exists()
}

/// Removes the pod directories an earlier agent left (their processes were killed with
/// their cgroups), unmounting first what it mounted there (memory-backed emptyDirs).
pub fn remove_leftovers(root: &Path) {
    unmount_under(&pods_dir(root));
    let _ = std::fs::remove_dir_all(pods_dir(root));
    let _ = std::fs::remove_dir_all(root.join("logs"));
}

/// Detaches every mount at or under `dir` in the agent's mount namespace, deepest first
/// (only the agent's own directories are ever passed here).
fn unmount_under(dir: &Path) {
    let Ok(dir) = std::fs::canonicalize(dir) else { return };
    let mut points: Vec<PathBuf> = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(crate::sandbox::unescape_mount_path)
        .filter(|p| p.starts_with(&dir))
        .collect();
    // Deepest first; a point listed twice (stacked mounts) is unmounted twice.
    points.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    for p in points {
        if let Err(e) = nix::mount::umount2(&p, nix::mount::MntFlags::MNT_DETACH) {
            tracing::warn!(path = %p.display(), error = %e, "cannot unmount a pod volume");
        }
    }
}

/// A memory-backed emptyDir's size (calculateEmptyDirMemorySize): the node's allocatable
/// memory, or the pod's memory limit when every container has one and it is smaller, or the
/// volume's sizeLimit when it is smaller still. None: the tmpfs default.
fn memory_volume_size(spec: &k8s_openapi::api::core::v1::PodSpec, v: &Volume, node_memory: Option<i64>) -> Option<i64> {
    let limit = |c: &Container| {
        let q = c.resources.as_ref()?.limits.as_ref()?.get("memory")?;
        rkube_inpod::quantity::value(&q.0).ok()
    };
    let inits = spec.init_containers.clone().unwrap_or_default();
    let (sidecars, inits): (Vec<_>, Vec<_>) =
        inits.into_iter().partition(|c| c.restart_policy.as_deref() == Some("Always"));
    let running: Option<Vec<i64>> = spec.containers.iter().chain(&sidecars).map(limit).collect();
    let inits: Option<Vec<i64>> = inits.iter().map(limit).collect();
    let pod_limit = match (running, inits) {
        (Some(r), Some(i)) => {
            Some(r.iter().fold(0i64, |a, b| a.saturating_add(*b)).max(i.into_iter().max().unwrap_or(0)))
        }
        _ => None,
    };
    let size_limit =
        v.empty_dir.as_ref().and_then(|e| e.size_limit.as_ref()).and_then(|q| rkube_inpod::quantity::value(&q.0).ok());
    let mut size = node_memory.filter(|n| *n > 0);
    for candidate in [pod_limit, size_limit].into_iter().flatten().filter(|c| *c > 0) {
        if size.is_none_or(|s| candidate <= s) {
            size = Some(candidate);
        }
    }
    size
}

/// The space a volume's files take (blocks, as `du` counts them; hard links once; no other
/// file system).
fn dir_usage(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let Ok(top) = std::fs::symlink_metadata(dir) else { return 0 };
    let mut total = top.blocks() * 512;
    let mut linked = std::collections::HashSet::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(d) = pending.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let Ok(m) = e.metadata() else { continue };
            if m.dev() != top.dev() || (!m.is_dir() && m.nlink() > 1 && !linked.insert(m.ino())) {
                continue;
            }
            total += m.blocks() * 512;
            if m.is_dir() {
                pending.push(e.path());
            }
        }
    }
    total
}

/// Whether `dir` is the root of a mount (its device differs from its parent's).
fn is_mount_point(dir: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(dir), std::fs::metadata(dir.join(".."))) {
        (Ok(a), Ok(b)) => a.dev() != b.dev() || a.ino() == b.ino(),
        _ => false,
    }
}

struct Ctr {
    spec: Container,
    init: bool,
    sidecar: bool,
    /// Added to the running pod through pods/ephemeralcontainers: started once, never
    /// restarted, no probes, not counted in phase or readiness.
    ephemeral: bool,
    /// An ephemeral container's targetContainerName: it runs in that container's process
    /// namespace.
    target: Option<String>,
    status: ContainerStatus,
    running: Option<Running>,
    /// Starts so far in this worker (the first is not a restart unless the API says it ran).
    starts: u32,
    backoff: Duration,
    not_before: Option<Instant>,
    /// The last start error shown as the waiting reason (CreateContainerConfigError...).
    ever_ran: bool,
    /// Bumped at every start: probe results of an earlier run are ignored.
    generation: u64,
    /// A BackOff event is due (the container just entered CrashLoopBackOff).
    backoff_event: bool,
    startup: Track,
    liveness: Track,
    readiness: Track,
}

impl Ctr {
    /// The container's fieldPath in events: `spec.containers{name}`, `spec.initContainers{..}`
    /// or `spec.ephemeralContainers{..}`.
    fn field_path(&self) -> String {
        let list = match (self.init, self.ephemeral) {
            (true, _) => "initContainers",
            (_, true) => "ephemeralContainers",
            _ => "containers",
        };
        format!("spec.{list}{{{}}}", self.spec.name)
    }
}

/// One probe's schedule and its consecutive results.
#[derive(Default)]
struct Track {
    next: Option<Instant>,
    successes: u32,
    failures: u32,
    in_flight: bool,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum ProbeKind {
    Startup,
    Liveness,
    Readiness,
}

impl ProbeKind {
    fn word(self) -> &'static str {
        match self {
            ProbeKind::Startup => "Startup",
            ProbeKind::Liveness => "Liveness",
            ProbeKind::Readiness => "Readiness",
        }
    }
}

struct ProbeResult {
    container: String,
    generation: u64,
    kind: ProbeKind,
    outcome: crate::probe::Outcome,
}

struct Running {
    pid: u32,
    cgroup: ContainerCgroup,
    since: Instant,
    /// How to start a process inside this container (exec probes and hooks).
    exec: crate::sandbox::ExecSpec,
    /// The host file bound at its terminationMessagePath.
    termination: Option<PathBuf>,
    /// Its log file: directory and number.
    log: (PathBuf, u32),
}

struct Worker {
    shared: Arc<Shared>,
    uid: String,
    ns: String,
    name: String,
    dir: PathBuf,
    ctrs: Vec<Ctr>,
    exits: mpsc::UnboundedSender<(String, Exit, bool)>,
    probes: mpsc::UnboundedSender<ProbeResult>,
    start_time: String,
    pod_ip: Option<String>,
    /// The pod's network namespace, once made (pods off the host network, with networking).
    pod_net: Option<crate::net::PodNet>,
    /// The pod's pause process, pid 1 of the process namespace its containers share
    /// (`shareProcessNamespace`), started with the sandbox.
    pause: Option<tokio::process::Child>,
    /// Why the sandbox (network namespace) could not be made, reported once.
    sandbox_error: Option<String>,
    last_status: Option<Value>,
    volumes_ready: bool,
    mount_error: Option<String>,
    tokens: HashMap<String, (String, chrono::DateTime<chrono::Utc>, i64)>,
    warned: std::collections::HashSet<String>,
    /// Why the pod was evicted (an emptyDir over its sizeLimit: Evicted; past its
    /// activeDeadlineSeconds: DeadlineExceeded), reason and message: the pod is Failed.
    evicted: Option<(&'static str, String)>,
    /// When emptyDir usage is next measured (pods with a sizeLimit only).
    usage_check: Option<Instant>,
    /// The last status patch failed: it is retried without waiting for a change.
    status_unsent: bool,
}

/// Runs one pod until it is deleted (or gone, or the agent stops).
// (The steps below are boxed: each is a large state machine, allocated while it runs
// rather than held in every pod's worker all the time.)
pub(crate) async fn work(shared: Arc<Shared>, uid: String, mut rx: watch::Receiver<Msg>) {
    let Some(pod) = rx.borrow().pod.clone() else { return };
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    let name = pod.metadata.name.clone().unwrap_or_default();
    let dir = pods_dir(&shared.config.root_dir).join(&uid);
    let (exit_tx, mut exit_rx) = mpsc::unbounded_channel();
    let (probe_tx, mut probe_rx) = mpsc::unbounded_channel();
    let spec = pod.spec.clone().unwrap_or_default();
    let prev_statuses: Vec<k8s_openapi::api::core::v1::ContainerStatus> = pod
        .status
        .as_ref()
        .map(|s| {
            s.container_statuses
                .clone()
                .unwrap_or_default()
                .into_iter()
                .chain(s.init_container_statuses.clone().unwrap_or_default())
                .chain(s.ephemeral_container_statuses.clone().unwrap_or_default())
                .collect()
        })
        .unwrap_or_default();
    let has_init = spec.init_containers.as_ref().is_some_and(|c| !c.is_empty());
    let mut ctrs = Vec::new();
    for c in spec.init_containers.clone().unwrap_or_default() {
        let sidecar = c.restart_policy.as_deref() == Some("Always");
        // The kubelet's default waiting reason for every init container is PodInitializing.
        ctrs.push(new_ctr(c, true, sidecar, true, &prev_statuses));
    }
    for c in spec.containers.clone() {
        ctrs.push(new_ctr(c, false, false, has_init, &prev_statuses));
    }
    let start_time = pod
        .status
        .as_ref()
        .and_then(|s| s.start_time.as_ref())
        .map(|t| t.0.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_else(now);
    let host_network = spec.host_network.unwrap_or(false);
    let pod_ip = match (host_network, &shared.net) {
        (true, _) => Some(shared.machine.internal_ip.clone()),
        (false, None) => Some(fallback_pod_ip(&uid)),
        // Given with the pod's network namespace.
        (false, Some(_)) => None,
    };
    let mut w = Worker {
        shared,
        uid,
        ns,
        name,
        dir,
        ctrs,
        exits: exit_tx,
        probes: probe_tx,
        start_time,
        pod_ip,
        pod_net: None,
        pause: None,
        sandbox_error: None,
        last_status: pod.status.as_ref().and_then(|s| serde_json::to_value(s).ok()),
        volumes_ready: false,
        mount_error: None,
        tokens: HashMap::new(),
        warned: Default::default(),
        evicted: None,
        usage_check: None,
        status_unsent: false,
    };
    if let Err(e) = std::fs::create_dir_all(&w.dir) {
        tracing::warn!(pod = %w.name, error = %e, "cannot make the pod directory");
    }
    // Envs wait for the service cache, as the kubelet refuses envs before its informer synced.
    w.shared.services.ready().await;
    let mut seen_nudge = u64::MAX;
    let mut seen_version: Option<String> = None;
    loop {
        let msg = rx.borrow_and_update().clone();
        let Some(pod) = msg.pod.clone() else {
            // Deleted without grace (or by someone else): nothing to report to.
            Box::pin(w.kill_everything()).await;
            Box::pin(w.cleanup()).await;
            return;
        };
        if msg.stop {
            Box::pin(w.kill_everything()).await;
            Box::pin(w.cleanup()).await;
            return;
        }
        if pod.metadata.deletion_timestamp.is_some() {
            Box::pin(w.terminate(&pod, &mut exit_rx)).await;
            Box::pin(w.final_delete(&pod)).await;
            Box::pin(w.cleanup()).await;
            return;
        }
        // Labels and annotations feed downwardAPI volumes: a new pod version is a re-sync;
        // so is a token due for refresh.
        if !w.volumes_ready
            || msg.nudge != seen_nudge
            || seen_version != pod.metadata.resource_version
            || w.tokens_due()
        {
            seen_nudge = msg.nudge;
            seen_version = pod.metadata.resource_version.clone();
            Box::pin(w.watch_references(&pod)).await;
            Box::pin(w.sync_volumes(&pod)).await;
        }
        w.add_ephemeral(&pod);
        let mut terminal = is_terminal(&pod) || w.phase(&pod) == "Succeeded" || w.phase(&pod) == "Failed";
        if !terminal && w.volumes_ready && w.evicted.is_none() {
            Box::pin(w.check_empty_dir_usage(&pod, &mut exit_rx)).await;
        }
        if !terminal && w.evicted.is_none() && w.active_deadline(&pod).is_some_and(|d| d <= chrono::Utc::now()) {
            Box::pin(w.deadline_exceeded(&pod, &mut exit_rx)).await;
        }
        terminal |= w.evicted.is_some();
        if terminal {
            // Sidecars and anything still running end with the pod.
            Box::pin(w.kill_running(&mut exit_rx, 0)).await;
        } else if w.volumes_ready && Box::pin(w.sandbox(&pod)).await {
            Box::pin(w.sync_containers(&pod)).await;
            w.run_probes();
        }
        Box::pin(w.report(&pod)).await;

        let wake = w
            .ctrs
            .iter()
            .flat_map(|c| {
                // The probes run_probes would start: startup until started, then the others.
                let eligible: &[&Track] = if c.status.started { &[&c.liveness, &c.readiness] } else { &[&c.startup] };
                let probes = eligible
                    .iter()
                    .filter(|t| !t.in_flight && c.running.is_some())
                    .filter_map(|t| t.next)
                    .collect::<Vec<_>>();
                c.not_before.into_iter().chain(probes)
            })
            .chain(w.next_token_refresh())
            .min();
        let deadline = w.active_deadline(&pod).filter(|_| !terminal).map(|d| {
            Instant::now() + (d - chrono::Utc::now()).to_std().unwrap_or_default() + Duration::from_millis(10)
        });
        let wake = wake.into_iter().chain(w.usage_check.filter(|_| !terminal)).chain(deadline).min();
        let sleep = match wake {
            Some(t) => t.saturating_duration_since(Instant::now()).max(Duration::from_millis(5)),
            None if !w.volumes_ready || w.pod_ip.is_none() => Duration::from_secs(2),
            None => Duration::from_secs(3600),
        };
        // A status the API did not take (429, a connection lost) is sent again soon.
        let sleep = if w.status_unsent { sleep.min(Duration::from_secs(1)) } else { sleep };
        tokio::select! {
            changed = rx.changed() => {
                if changed.is_err() {
                    Box::pin(w.kill_everything()).await;
                    Box::pin(w.cleanup()).await;
                    return;
                }
            }
            Some((name, exit, oom)) = exit_rx.recv() => w.exited(&name, exit, oom),
            Some(r) = probe_rx.recv() => w.probe_result(&pod, r),
            _ = tokio::time::sleep(sleep) => {}
        }
    }
}

fn new_ctr(
    c: Container,
    init: bool,
    sidecar: bool,
    init_pending: bool,
    prev: &[k8s_openapi::api::core::v1::ContainerStatus],
) -> Ctr {
    let image = c.image.clone().unwrap_or_default();
    let mut status = ContainerStatus::initial(&c.name, &image, init_pending, sidecar);
    let before = prev.iter().find(|p| p.name == c.name);
    if let Some(p) = before {
        status.restart_count = p.restart_count;
    }
    let ever_ran = before.is_some_and(|p| {
        p.state.as_ref().is_some_and(|s| s.running.is_some() || s.terminated.is_some())
            || p.last_state.as_ref().is_some_and(|s| s.terminated.is_some())
    });
    Ctr {
        spec: c,
        init,
        sidecar,
        ephemeral: false,
        target: None,
        status,
        running: None,
        starts: 0,
        backoff: Duration::ZERO,
        not_before: None,
        ever_ran,
        generation: 0,
        backoff_event: false,
        startup: Track::default(),
        liveness: Track::default(),
        readiness: Track::default(),
    }
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// Without pod networking, a pod gets a loopback address of its own (127.0.0.0/8, from its
/// uid), written in its status and /etc/hosts; its processes use the host's network.
fn fallback_pod_ip(uid: &str) -> String {
    let h = uid.bytes().fold(0xcbf29ce484222325u64, |h, b| (h ^ b as u64).wrapping_mul(0x100000001b3));
    let b1 = 1 + (h % 254) as u8;
    let b2 = ((h >> 8) % 256) as u8;
    let b3 = 1 + ((h >> 16) % 254) as u8;
    format!("127.{b1}.{b2}.{b3}")
}

struct StoreObjects<'a>(&'a Shared);

impl rkube_inpod::Objects for StoreObjects<'_> {
    fn config_map(&self, namespace: &str, name: &str) -> Option<ConfigMap> {
        self.0.config_maps.get(namespace, name).map(|c| (*c).clone())
    }
    fn secret(&self, namespace: &str, name: &str) -> Option<Secret> {
        self.0.secrets.get(namespace, name).map(|c| (*c).clone())
    }
}

impl Worker {
    fn phase(&self, pod: &Pod) -> &'static str {
        let (init, regular, _) = self.statuses();
        let policy = pod.spec.as_ref().and_then(|s| s.restart_policy.clone()).unwrap_or_else(|| "Always".into());
        status::phase(&policy, &init, &regular, false)
    }

    /// The containers' statuses: init (in spec order), regular, ephemeral.
    fn statuses(&self) -> (Vec<ContainerStatus>, Vec<ContainerStatus>, Vec<ContainerStatus>) {
        let (mut init, mut regular, mut ephemeral) = (vec![], vec![], vec![]);
        for c in &self.ctrs {
            let list = match (c.init, c.ephemeral) {
                (true, _) => &mut init,
                (_, true) => &mut ephemeral,
                _ => &mut regular,
            };
            list.push(c.status.clone());
        }
        (init, regular, ephemeral)
    }

    /// Takes in the ephemeral containers added to the pod since the last turn. One that
    /// already ran under an earlier agent is not run again: its last known state stays (a
    /// run cut off by the agent's end shows as terminated, exit code 137).
    fn add_ephemeral(&mut self, pod: &Pod) {
        let list = pod.spec.as_ref().and_then(|s| s.ephemeral_containers.clone()).unwrap_or_default();
        if list.len() <= self.ctrs.iter().filter(|c| c.ephemeral).count() {
            return;
        }
        let prev = pod.status.as_ref().and_then(|s| s.ephemeral_container_statuses.clone()).unwrap_or_default();
        for ec in list {
            if self.ctrs.iter().any(|c| c.spec.name == ec.name) {
                continue;
            }
            // An ephemeral container is a container with a target: the same fields.
            let mut v = serde_json::to_value(&ec).unwrap_or_default();
            if let Some(m) = v.as_object_mut() {
                m.remove("targetContainerName");
            }
            let Ok(c) = serde_json::from_value::<Container>(v) else { continue };
            let mut ctr = new_ctr(c, false, false, false, &prev);
            ctr.ephemeral = true;
            ctr.target = ec.target_container_name.clone().filter(|t| !t.is_empty());
            ctr.status.ephemeral = true;
            if ctr.ever_ran {
                let p = prev.iter().find(|p| p.name == ec.name);
                let state = p.and_then(|p| p.state.clone()).unwrap_or_default();
                ctr.status.container_id = p.and_then(|p| p.container_id.clone());
                ctr.status.state = match (state.terminated, state.running) {
                    (Some(t), _) => State::Terminated {
                        exit_code: t.exit_code,
                        signal: t.signal,
                        reason: t.reason.unwrap_or_default(),
                        message: t.message,
                        started_at: t.started_at.map(|s| s.0.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()),
                        finished_at: t
                            .finished_at
                            .map(|s| s.0.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
                            .unwrap_or_else(now),
                        container_id: t.container_id,
                    },
                    (None, running) => State::Terminated {
                        exit_code: 137,
                        signal: None,
                        reason: "Error".into(),
                        message: None,
                        started_at: running
                            .and_then(|r| r.started_at)
                            .map(|s| s.0.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()),
                        finished_at: now(),
                        container_id: ctr.status.container_id.clone(),
                    },
                };
            }
            self.ctrs.push(ctr);
        }
    }

    fn node_allocatable(&self) -> BTreeMap<String, Quantity> {
        self.shared.machine.allocatable().into_iter().map(|(k, v)| (k, Quantity(v))).collect()
    }

    fn volume_dir(&self, v: &Volume) -> PathBuf {
        let plugin = if v.config_map.is_some() {
            "kubernetes.io~configmap"
        } else if v.secret.is_some() {
            "kubernetes.io~secret"
        } else if v.downward_api.is_some() {
            "kubernetes.io~downward-api"
        } else if v.projected.is_some() {
            "kubernetes.io~projected"
        } else {
            "kubernetes.io~empty-dir"
        };
        self.dir.join("volumes").join(plugin).join(&v.name)
    }

    /// Where a volume's files are on the host (hostPath: the path itself).
    fn volume_source(&self, v: &Volume) -> PathBuf {
        match &v.host_path {
            Some(h) => PathBuf::from(&h.path),
            None => self.volume_dir(v),
        }
    }

    /// When a token issued for `secs` seconds that expires at `expires` is refreshed: the
    /// kubelet's rule (80 % of its lifetime or 24 h after issue), or the agent's
    /// `token_refresh_after` after issue.
    fn token_refresh_at(&self, expires: chrono::DateTime<chrono::Utc>, secs: i64) -> chrono::DateTime<chrono::Utc> {
        let issued = expires - chrono::Duration::seconds(secs);
        match self.shared.config.token_refresh_after.and_then(|d| chrono::Duration::from_std(d).ok()) {
            Some(after) => issued + after,
            None => (issued + chrono::Duration::hours(24)).min(expires - chrono::Duration::seconds(secs * 20 / 100)),
        }
    }

    /// The earliest refresh of this pod's tokens, as an instant (one overdue, after a failed
    /// refresh, is retried in 10 s).
    fn next_token_refresh(&self) -> Option<Instant> {
        let at = self.tokens.values().map(|(_, expires, secs)| self.token_refresh_at(*expires, *secs)).min()?;
        let wait = (at - chrono::Utc::now()).to_std().unwrap_or(Duration::from_secs(10));
        Some(Instant::now() + wait)
    }

    /// Whether one of this pod's tokens is due for refresh (the volumes re-sync).
    fn tokens_due(&self) -> bool {
        let now = chrono::Utc::now();
        self.tokens.values().any(|(_, expires, secs)| now >= self.token_refresh_at(*expires, *secs))
    }

    /// A token for a projection, refreshed on the kubelet's rule (80 % of its lifetime or 24 h).
    async fn fetch_tokens(&mut self, pod: &Pod) -> Result<(), String> {
        let spec = pod.spec.clone().unwrap_or_default();
        let sa = spec.service_account_name.clone().unwrap_or_else(|| "default".into());
        for v in spec.volumes.unwrap_or_default() {
            let Some(p) = v.projected else { continue };
            for src in p.sources.unwrap_or_default() {
                let Some(t) = src.service_account_token else { continue };
                let exp = t.expiration_seconds.unwrap_or(3600);
                let key = format!("{:?}/{exp}", t.audience);
                if let Some((_, expires, secs)) = self.tokens.get(&key) {
                    if chrono::Utc::now() < self.token_refresh_at(*expires, *secs) {
                        continue;
                    }
                }
                let req = TokenRequest {
                    spec: TokenRequestSpec {
                        audiences: t.audience.clone().filter(|a| !a.is_empty()).map(|a| vec![a]).unwrap_or_default(),
                        expiration_seconds: Some(exp),
                        bound_object_ref: Some(BoundObjectReference {
                            api_version: Some("v1".into()),
                            kind: Some("Pod".into()),
                            name: pod.metadata.name.clone(),
                            uid: pod.metadata.uid.clone(),
                        }),
                    },
                    ..Default::default()
                };
                let api: Api<ServiceAccount> = Api::namespaced(self.shared.client.clone(), &self.ns);
                match api.create_token_request(&sa, &PostParams::default(), &req).await {
                    Ok(tr) => {
                        let Some(st) = tr.status else { return Err("failed to fetch token: no status".into()) };
                        let expires = chrono::DateTime::from_timestamp(st.expiration_timestamp.0.as_second(), 0)
                            .unwrap_or_default();
                        self.tokens.insert(key, (st.token, expires, exp));
                    }
                    Err(e) => {
                        if !self.tokens.contains_key(&key) {
                            return Err(format!("failed to fetch token: {}", api_message(&e)));
                        }
                        tracing::warn!(pod = %self.name, error = %e, "Couldn't update token");
                    }
                }
            }
        }
        Ok(())
    }

    /// Writes every configMap, secret, downwardAPI and projected volume (a no-op when
    /// nothing changed), makes emptyDirs, and checks hostPaths.
    async fn sync_volumes(&mut self, pod: &Pod) {
        let spec = pod.spec.clone().unwrap_or_default();
        let token_result = self.fetch_tokens(pod).await;
        let alloc = self.node_allocatable();
        let mut error: Option<(String, String)> = None;
        for v in spec.volumes.clone().unwrap_or_default() {
            let dir = self.volume_dir(&v);
            let payload = if let Some(cm) = &v.config_map {
                let obj = StoreObjects(&self.shared).config_map_owned(&self.ns, &cm.name);
                rkube_inpod::volumes::config_map_payload(cm, obj.as_ref()).map(Some)
            } else if let Some(s) = &v.secret {
                let name = s.secret_name.clone().unwrap_or_default();
                let obj = StoreObjects(&self.shared).secret_owned(&self.ns, &name);
                rkube_inpod::volumes::secret_payload(s, obj.as_ref()).map(Some)
            } else if let Some(d) = &v.downward_api {
                rkube_inpod::volumes::downward_api_payload(
                    &d.items.clone().unwrap_or_default(),
                    d.default_mode,
                    pod,
                    &alloc,
                )
                .map(Some)
            } else if let Some(p) = &v.projected {
                if let Err(e) = &token_result {
                    error = Some((v.name.clone(), e.clone()));
                    break;
                }
                let tokens = self.tokens.clone();
                let mut token = |t: &k8s_openapi::api::core::v1::ServiceAccountTokenProjection| {
                    let key = format!("{:?}/{}", t.audience, t.expiration_seconds.unwrap_or(3600));
                    tokens.get(&key).map(|(tok, _, _)| tok.clone()).ok_or_else(|| "no token".to_string())
                };
                rkube_inpod::volumes::projected_payload(p, pod, &StoreObjects(&self.shared), &alloc, &mut token)
                    .map(Some)
            } else if let Some(h) = &v.host_path {
                let path = Path::new(&h.path);
                match h.type_.as_deref().unwrap_or("") {
                    "DirectoryOrCreate" => {
                        let _ = std::fs::create_dir_all(path);
                    }
                    "FileOrCreate" => {
                        let _ = std::fs::OpenOptions::new().create(true).append(true).open(path);
                    }
                    "Directory" if !path.is_dir() => {
                        error = Some((
                            v.name.clone(),
                            format!("hostPath type check failed: {} is not a directory", h.path),
                        ));
                        break;
                    }
                    "File" if !path.is_file() => {
                        error = Some((v.name.clone(), format!("hostPath type check failed: {} is not a file", h.path)));
                        break;
                    }
                    _ => {}
                }
                if !path.exists() {
                    // The kubelet creates an untyped hostPath as a directory (the runtime does).
                    let _ = std::fs::create_dir_all(path);
                }
                Ok(None)
            } else {
                // emptyDir (and anything else: a directory of the pod), 0777 as the kubelet
                // makes it (once: what the pod does to it later stays); medium Memory is a
                // tmpfs mounted on it.
                if !dir.exists() {
                    use std::os::unix::fs::PermissionsExt;
                    let _ = std::fs::create_dir_all(&dir);
                    let _ = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777));
                }
                if v.empty_dir.as_ref().and_then(|e| e.medium.as_deref()) == Some("Memory") {
                    if let Err(e) = self.mount_memory_volume(pod, &v, &dir) {
                        error = Some((v.name.clone(), e));
                        break;
                    }
                }
                if v.empty_dir.is_none() {
                    self.warn_once(
                        pod,
                        &format!("volume-{}", v.name),
                        "FailedMount",
                        &format!("volume \"{}\" has a type rkube does not mount yet; it is an empty directory", v.name),
                    );
                }
                Ok(None)
            };
            match payload {
                Ok(Some(p)) => {
                    if let Err(e) =
                        std::fs::create_dir_all(&dir).and_then(|_| rkube_inpod::volumes::atomic_write(&dir, &p))
                    {
                        error = Some((v.name.clone(), e.to_string()));
                        break;
                    }
                }
                Ok(None) => {}
                Err(e) => {
                    error = Some((v.name.clone(), e.message()));
                    break;
                }
            }
        }
        match error {
            None => {
                self.volumes_ready = true;
                self.mount_error = None;
            }
            Some((vol, msg)) => {
                let message = format!("MountVolume.SetUp failed for volume \"{vol}\" : {msg}");
                if self.mount_error.as_deref() != Some(message.as_str()) {
                    self.event(pod, "Warning", "FailedMount", &message, None);
                }
                self.mount_error = Some(message);
                // Files already written stay; containers already running keep running.
                if !self.ctrs.iter().any(|c| c.running.is_some() || c.ever_ran) {
                    self.volumes_ready = false;
                }
            }
        }
    }

    fn warn_once(&mut self, pod: &Pod, key: &str, reason: &str, message: &str) {
        if self.warned.insert(key.to_string()) {
            self.event(pod, "Warning", reason, message, None);
        }
    }

    /// A memory-backed emptyDir: a tmpfs on its directory (mounted once, in the agent's
    /// mount namespace, so every container of the pod shares it), sized as the kubelet sizes
    /// it. Where the agent may not mount (not root) it stays a directory, with a warning.
    fn mount_memory_volume(&mut self, pod: &Pod, v: &Volume, dir: &Path) -> Result<(), String> {
        if is_mount_point(dir) {
            return Ok(());
        }
        let node_memory = self.node_allocatable().get("memory").and_then(|q| rkube_inpod::quantity::value(&q.0).ok());
        let size = memory_volume_size(&pod.spec.clone().unwrap_or_default(), v, node_memory);
        let data = size.map(|s| format!("size={s}"));
        let flags = nix::mount::MsFlags::empty();
        match nix::mount::mount(Some("tmpfs"), dir, Some("tmpfs"), flags, data.as_deref()) {
            Ok(()) => Ok(()),
            Err(nix::errno::Errno::EPERM) => {
                self.warn_once(
                    pod,
                    &format!("tmpfs-{}", v.name),
                    "FailedMount",
                    &format!(
                        "volume \"{}\" (medium Memory) is a directory on disk: this agent may not mount a tmpfs",
                        v.name
                    ),
                );
                Ok(())
            }
            Err(e) => Err(format!("mount tmpfs at {}: {e}", dir.display())),
        }
    }

    /// The eviction manager's emptyDir check (localStorageEviction), every
    /// [`USAGE_CHECK_PERIOD`]: a pod whose emptyDir holds more than its sizeLimit is
    /// evicted (its containers killed at once, the pod Failed with reason Evicted).
    async fn check_empty_dir_usage(&mut self, pod: &Pod, exits: &mut mpsc::UnboundedReceiver<(String, Exit, bool)>) {
        let limited: Vec<(Volume, String, u64)> = pod
            .spec
            .as_ref()
            .and_then(|s| s.volumes.clone())
            .unwrap_or_default()
            .into_iter()
            .filter_map(|v| {
                let text = v.empty_dir.as_ref()?.size_limit.as_ref()?.0.clone();
                let bytes = rkube_inpod::quantity::value(&text).ok().filter(|b| *b > 0)?;
                Some((v, text, bytes as u64))
            })
            .collect();
        if limited.is_empty() {
            self.usage_check = None;
            return;
        }
        let now = Instant::now();
        if self.usage_check.is_some_and(|t| now < t) {
            return;
        }
        self.usage_check = Some(now + USAGE_CHECK_PERIOD);
        for (v, text, limit) in limited {
            let dir = self.volume_dir(&v);
            let used = tokio::task::spawn_blocking(move || dir_usage(&dir)).await.unwrap_or(0);
            if used <= limit {
                continue;
            }
            // pkg/kubelet/eviction: emptyDirMessageFmt, then evictPod.
            let message = format!("Usage of EmptyDir volume {:?} exceeds the limit {:?}. ", v.name, text);
            self.event(pod, "Warning", "Evicted", &message, None);
            self.evicted = Some(("Evicted", message));
            self.usage_check = None;
            for i in 0..self.ctrs.len() {
                if self.ctrs[i].running.is_some() {
                    let name = self.ctrs[i].spec.name.clone();
                    let fp = self.ctrs[i].field_path();
                    self.event(pod, "Normal", "Killing", &format!("Stopping container {name}"), Some(&fp));
                }
            }
            self.kill_running(exits, EVICTION_GRACE).await;
            return;
        }
    }

    /// When the pod's activeDeadlineSeconds, counted from its startTime, runs out.
    fn active_deadline(&self, pod: &Pod) -> Option<chrono::DateTime<chrono::Utc>> {
        let secs = pod.spec.as_ref()?.active_deadline_seconds?;
        let start = chrono::DateTime::parse_from_rfc3339(&self.start_time).ok()?;
        Some(start.with_timezone(&chrono::Utc) + chrono::Duration::seconds(secs))
    }

    /// The kubelet's activeDeadlineHandler: a Normal event, the pod Failed with reason
    /// DeadlineExceeded, its containers killed with the pod's grace period.
    async fn deadline_exceeded(&mut self, pod: &Pod, exits: &mut mpsc::UnboundedReceiver<(String, Exit, bool)>) {
        let message = "Pod was active on the node longer than the specified deadline".to_string();
        self.event(pod, "Normal", "DeadlineExceeded", &message, None);
        self.evicted = Some(("DeadlineExceeded", message));
        let grace = pod.spec.as_ref().and_then(|s| s.termination_grace_period_seconds).unwrap_or(30);
        self.kill_running(exits, grace).await;
    }

    /// Starts what should run now: init containers in order (a sidecar counts as done once
    /// started), then every regular container; exited containers restart per restartPolicy
    /// after their back-off.
    async fn sync_containers(&mut self, pod: &Pod) {
        self.sync_containers_once(pod).await;
        for i in 0..self.ctrs.len() {
            if std::mem::take(&mut self.ctrs[i].backoff_event) {
                let c = &self.ctrs[i];
                let fp = c.field_path();
                let msg = format!(
                    "Back-off restarting failed container {} in pod {}_{}({})",
                    c.spec.name, self.name, self.ns, self.uid
                );
                self.event(pod, "Warning", "BackOff", &msg, Some(&fp));
            }
        }
    }

    async fn sync_containers_once(&mut self, pod: &Pod) {
        let policy = pod.spec.as_ref().and_then(|s| s.restart_policy.clone()).unwrap_or_else(|| "Always".into());
        // Ephemeral containers start even while the pod initializes, and run once.
        for i in 0..self.ctrs.len() {
            let c = &self.ctrs[i];
            if c.ephemeral && c.running.is_none() && !c.ever_ran && self.may_start(i, "Never") {
                self.start(pod, i).await;
            }
        }
        let mut init_done = true;
        for i in 0..self.ctrs.len() {
            if !self.ctrs[i].init {
                continue;
            }
            let c = &self.ctrs[i];
            if c.sidecar {
                if c.running.is_none() && self.may_start(i, "Always") {
                    self.start(pod, i).await;
                }
                // A sidecar lets the next container start once it has started (its startup
                // probe, if any, succeeded).
                if self.ctrs[i].running.is_none() || !self.ctrs[i].status.started {
                    init_done = false;
                    break;
                }
                continue;
            }
            match &c.status.state {
                State::Terminated { exit_code: 0, .. } => continue,
                State::Running { .. } => {
                    init_done = false;
                    break;
                }
                _ => {
                    // Init containers that fail restart unless the pod's policy is Never.
                    let init_policy = if policy == "Never" { "Never" } else { "OnFailure" };
                    if self.may_start(i, init_policy) {
                        self.start(pod, i).await;
                    }
                    init_done = false;
                    break;
                }
            }
        }
        if !init_done {
            return;
        }
        for i in 0..self.ctrs.len() {
            if self.ctrs[i].init || self.ctrs[i].ephemeral || self.ctrs[i].running.is_some() {
                continue;
            }
            if self.may_start(i, &policy) {
                self.start(pod, i).await;
            }
        }
    }

    /// Whether container `i` should start now (ShouldContainerBeRestarted plus the back-off);
    /// a container in back-off shows CrashLoopBackOff.
    fn may_start(&mut self, i: usize, policy: &str) -> bool {
        let c = &mut self.ctrs[i];
        if c.running.is_some() {
            return false;
        }
        let exited = match &c.status.state {
            State::Terminated { exit_code, .. } => Some(*exit_code),
            State::Waiting { .. } => match &c.status.last_state {
                Some(State::Terminated { exit_code, .. }) if c.starts > 0 => Some(*exit_code),
                _ => None,
            },
            State::Running { .. } => return false,
        };
        if let Some(code) = exited {
            if c.starts > 0 {
                let restart = match policy {
                    "Never" => false,
                    "OnFailure" => code != 0,
                    _ => true,
                };
                if !restart {
                    return false;
                }
            }
        }
        if let Some(t) = c.not_before {
            if Instant::now() < t {
                let crashed = match &c.status.state {
                    State::Terminated { .. } => true,
                    State::Waiting { reason, .. } => reason == "CrashLoopBackOff",
                    State::Running { .. } => false,
                };
                if !crashed {
                    // A configuration error is retried as is (its reason stays).
                    return false;
                }
                if let State::Terminated { .. } = &c.status.state {
                    let last =
                        std::mem::replace(&mut c.status.state, State::Waiting { reason: String::new(), message: None });
                    c.status.last_state = Some(last);
                    // The kubelet's BackOff event, once per back-off period here.
                    c.backoff_event = true;
                }
                c.status.state = State::Waiting {
                    reason: "CrashLoopBackOff".into(),
                    message: Some(format!(
                        "back-off {} restarting failed container={} pod={}_{}({})",
                        rkube_api::table::go_duration(c.backoff),
                        c.spec.name,
                        self.name,
                        self.ns,
                        self.uid
                    )),
                };
                return false;
            }
        }
        true
    }

    async fn start(&mut self, pod: &Pod, i: usize) {
        let shared = self.shared.clone();
        let name = self.ctrs[i].spec.name.clone();
        let field_path = self.ctrs[i].field_path();
        let container = self.ctrs[i].spec.clone();
        // The environment, as the kubelet assembles it.
        let services: Vec<Service> =
            self.services_for_env(pod.spec.as_ref().and_then(|s| s.host_network) == Some(true));
        let alloc = self.node_allocatable();
        let host_ips = vec![shared.machine.internal_ip.clone()];
        let pod_ips: Vec<String> = self.pod_ip.iter().cloned().collect();
        let env_result = {
            let objects = StoreObjects(&shared);
            let ctx = rkube_inpod::env::EnvContext {
                pod,
                container: &container,
                node_allocatable: &alloc,
                host_ips: &host_ips,
                pod_ips: &pod_ips,
                services: &services,
                objects: &objects,
            };
            rkube_inpod::env::container_env(&ctx)
        };
        let env = match env_result {
            Ok(e) => e,
            Err(e) => {
                let msg = e.to_string();
                self.config_error(pod, i, "CreateContainerConfigError", &msg, &field_path);
                return;
            }
        };
        let spec_cmd = rkube_inpod::env::command_line(&container, &env);
        let n_command = container.command.as_ref().map(|c| c.len()).unwrap_or(0);
        let (command, args) = spec_cmd.split_at(n_command.min(spec_cmd.len()));
        let image_ref = container.image.clone().unwrap_or_default();
        let entry = shared.config.image_map.get(&image_ref);
        let argv = images::argv(command, args, entry.as_ref());
        if argv.is_empty() {
            let msg = format!(
                "no command: the container gives none and image \"{image_ref}\" is not in the image map (rkube runs no images; add it with --image-map)"
            );
            self.config_error(pod, i, "CreateContainerConfigError", &msg, &field_path);
            return;
        }
        let (hostname, domain) = rkube_inpod::hosts::pod_hostname_and_domain(pod, &shared.config.cluster_domain);
        let mut full_env: Vec<(String, String)> = vec![("HOSTNAME".into(), hostname.clone())];
        let set = |k: &str, v: &str, e: &mut Vec<(String, String)>| {
            if let Some(x) = e.iter_mut().find(|(n, _)| n == k) {
                x.1 = v.to_string();
            } else {
                e.push((k.to_string(), v.to_string()));
            }
        };
        set("PATH", images::DEFAULT_PATH, &mut full_env);
        if let Some(en) = &entry {
            for (k, v) in &en.env {
                set(k, v, &mut full_env);
            }
        }
        for (k, v) in &env {
            set(k, v, &mut full_env);
        }
        if !full_env.iter().any(|(k, _)| k == "HOME") {
            // The runtime's default for a user without a home in the image: never the host user's.
            full_env.push(("HOME".into(), "/".into()));
        }
        if container.tty == Some(true) {
            set("TERM", "xterm", &mut full_env);
        }

        // Files and mounts.
        let cdir = self.dir.join("containers").join(&name);
        let root = cdir.join("root");
        if let Err(e) = std::fs::create_dir_all(&root) {
            self.config_error(pod, i, "CreateContainerError", &e.to_string(), &field_path);
            return;
        }
        let spec = pod.spec.clone().unwrap_or_default();
        let volumes = spec.volumes.clone().unwrap_or_default();
        let mut mounts = Vec::new();
        for m in container.volume_mounts.clone().unwrap_or_default() {
            let Some(v) = volumes.iter().find(|v| v.name == m.name) else { continue };
            let mut source = self.volume_source(v);
            let sub = match (&m.sub_path, &m.sub_path_expr) {
                (Some(s), _) if !s.is_empty() => Some(s.clone()),
                (_, Some(e)) if !e.is_empty() => {
                    Some(rkube_inpod::env::expand(e, &|k| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())))
                }
                _ => None,
            };
            if let Some(sub) = sub {
                // The kubelet's makeMounts checks: an expanded subPathExpr ("$(EMPTY)/x")
                // can be absolute or climb out; a symbolic link inside the volume can point out.
                let refused = if Path::new(&sub).is_absolute() {
                    Some(format!("error SubPath `{sub}` must not be an absolute path"))
                } else if sub.split('/').any(|c| c == "..") {
                    Some(format!("unable to provision SubPath `{sub}`: must not contain '..'"))
                } else {
                    None
                };
                if let Some(message) = refused {
                    self.config_error(pod, i, "CreateContainerConfigError", &message, &field_path);
                    return;
                }
                let volume_root = source.clone();
                source = source.join(&sub);
                // Checked before anything is made (the nearest existing ancestor), and after.
                let within = |p: &Path| {
                    let existing = p.ancestors().find(|a| a.exists()).unwrap_or(p);
                    match (std::fs::canonicalize(existing), std::fs::canonicalize(&volume_root)) {
                        (Ok(s), Ok(r)) => s.starts_with(&r),
                        _ => false,
                    }
                };
                let mut inside = within(&source);
                if inside && !source.exists() {
                    let _ = std::fs::create_dir_all(&source);
                    inside = within(&source);
                }
                // The container init opens what was checked here without following links.
                let resolved = match (std::fs::canonicalize(&source), std::fs::canonicalize(&volume_root)) {
                    (Ok(s), Ok(r)) if inside => s.strip_prefix(&r).ok().map(|rel| (r.clone(), rel.to_path_buf())),
                    _ => None,
                };
                let Some((volume, rel)) = resolved else {
                    let message = format!(
                        "subpath {:?} not within volume path {:?}",
                        source.display().to_string(),
                        volume_root.display().to_string()
                    );
                    self.config_error(pod, i, "CreateContainerConfigError", &message, &field_path);
                    return;
                };
                let read_only = m.read_only.unwrap_or(false);
                mounts.push(BindMount { source: volume, target: m.mount_path.clone(), read_only, sub_path: Some(rel) });
                continue;
            }
            mounts.push(BindMount::new(source, m.mount_path.clone(), m.read_only.unwrap_or(false)));
        }
        let mounts_etc_hosts = mounts.iter().any(|m| m.target == "/etc/hosts");
        if !mounts_etc_hosts {
            let hosts = self.dir.join("etc-hosts");
            let aliases = spec.host_aliases.clone().unwrap_or_default();
            let mut text = if spec.host_network.unwrap_or(false) {
                rkube_inpod::hosts::host_network_hosts_file(
                    &std::fs::read_to_string("/etc/hosts").unwrap_or_default(),
                    &aliases,
                )
            } else {
                rkube_inpod::hosts::hosts_file(&hostname, domain.as_deref(), &pod_ips, &aliases)
            };
            if let (None, Some((host, _))) = (&shared.net, &shared.config.api_server) {
                if host.parse::<std::net::IpAddr>().is_ok() && !spec.host_network.unwrap_or(false) {
                    // No cluster DNS yet: the API server's names resolve here.
                    let d = &shared.config.cluster_domain;
                    text.push_str(&format!(
                        "{host}\tkubernetes kubernetes.default kubernetes.default.svc kubernetes.default.svc.{d}\n"
                    ));
                }
            }
            let write = std::fs::write(&hosts, text);
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(&hosts, std::fs::Permissions::from_mode(0o644));
            if write.is_ok() {
                mounts.push(BindMount::new(hosts, "/etc/hosts", false));
            }
        }
        if !mounts.iter().any(|m| m.target == "/etc/hostname") {
            // As containerd gives every container: the pod's hostname (the node's on the
            // host network), one line.
            let path = self.dir.join("hostname");
            let name = if spec.host_network.unwrap_or(false) { &shared.machine.hostname } else { &hostname };
            if std::fs::write(&path, format!("{name}\n")).is_ok() {
                mounts.push(BindMount::new(path, "/etc/hostname", false));
            }
        }
        if !mounts.iter().any(|m| m.target == "/etc/resolv.conf") {
            let host =
                rkube_inpod::hosts::parse_resolv_conf(&std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default());
            // Without pod networking no cluster DNS is reachable: the host's configuration.
            let cluster_dns: Vec<String> =
                shared.net.as_ref().map(|_| shared.config.cluster_dns.to_string()).into_iter().collect();
            let dns = rkube_inpod::hosts::pod_dns(pod, &cluster_dns, &shared.config.cluster_domain, &host);
            let path = self.dir.join("resolv.conf");
            if std::fs::write(&path, rkube_inpod::hosts::resolv_conf(&dns)).is_ok() {
                mounts.push(BindMount::new(path, "/etc/resolv.conf", false));
            }
        }
        // The termination message file (the kubelet's makeMounts): an empty 0666 file per start.
        let termination = container
            .termination_message_path
            .clone()
            .filter(|p| !p.is_empty() && !mounts.iter().any(|m| &m.target == p))
            .and_then(|target| {
                use std::os::unix::fs::PermissionsExt;
                let file = self.dir.join(format!("termination-log-{name}"));
                std::fs::write(&file, b"").ok()?;
                std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o666)).ok()?;
                mounts.push(BindMount::new(file.clone(), target, false));
                Some(file)
            });
        let mut hide: Vec<PathBuf> = shared.config.hide.clone();
        // The pods' network namespace handles.
        hide.push(PathBuf::from("/run/netns"));
        hide.push(shared.config.root_dir.clone());
        hide.extend(credential_paths());

        // Who the process runs as.
        let psc = spec.security_context.clone().unwrap_or_default();
        let csc = container.security_context.clone().unwrap_or_default();
        let uid = csc.run_as_user.or(psc.run_as_user).map(|u| u as u32);
        let gid = csc.run_as_group.or(psc.run_as_group).map(|g| g as u32);
        let mut groups: Vec<u32> =
            psc.supplemental_groups.clone().unwrap_or_default().into_iter().map(|g| g as u32).collect();
        if let Some(fs) = psc.fs_group {
            groups.insert(0, fs as u32);
        }

        // Its cgroup, with its limits.
        let cgroup = shared.cgroups.container(&self.uid, &name);
        cgroup.kill_all().await;
        let limits = container.resources.as_ref().and_then(|r| r.limits.clone()).unwrap_or_default();
        let memory =
            limits.get("memory").and_then(|q| rkube_inpod::quantity::value(&q.0).ok()).map(|v| v.max(0) as u64);
        let cpu =
            limits.get("cpu").and_then(|q| rkube_inpod::quantity::milli_value(&q.0).ok()).map(|v| v.max(0) as u64);
        let restart = self.ctrs[i].starts > 0 || self.ctrs[i].ever_ran;
        let restart_count =
            if restart { self.ctrs[i].status.restart_count + 1 } else { self.ctrs[i].status.restart_count };
        let log_path = shared
            .config
            .root_dir
            .join("logs")
            .join(format!("{}_{}_{}", self.ns, self.name, self.uid))
            .join(&name)
            .join(format!("{restart_count}.log"));
        let log = match LogFile::open(&log_path, shared.config.log_max_bytes) {
            Ok(l) => Arc::new(Mutex::new(l)),
            Err(e) => {
                self.config_error(pod, i, "CreateContainerError", &format!("log file: {e}"), &field_path);
                return;
            }
        };
        // The runtime's default capabilities, with the container's adds and drops.
        let caps = csc.capabilities.clone().unwrap_or_default();
        let privileged = csc.privileged == Some(true);
        let mut capabilities =
            crate::sandbox::capability_set(privileged, &caps.add.unwrap_or_default(), &caps.drop.unwrap_or_default());
        // Which devices the container may open: where no device controller can say (cgroup
        // v2 without a device filter), a device node it made could open the host's disks,
        // so it may not make any.
        if !cgroup.restrict_devices(privileged) && !privileged {
            let mknod = crate::sandbox::CAPABILITIES.iter().position(|c| *c == "MKNOD").unwrap_or(27) as u32;
            if let Some(keep) = capabilities.as_mut().filter(|k| k.contains(&mknod)) {
                keep.retain(|c| *c != mknod);
                self.warn_once(
                    pod,
                    &format!("devices-{name}"),
                    "DeviceFilterUnavailable",
                    &format!("container {name}: no device cgroup on this node: CAP_MKNOD dropped"),
                );
            }
        }
        // The process namespace: the node's (hostPID), the pod's (shareProcessNamespace,
        // held by the pause process), an ephemeral container's target's, or its own.
        let pid_namespace = self.pid_namespace(&spec, i);
        let exec_base = crate::sandbox::ExecSpec {
            own_pid_namespace: pid_namespace != crate::sandbox::PidNamespace::Host,
            capabilities: capabilities.clone(),
            target_pid: 0,
            argv: vec![],
            env: full_env.clone(),
            working_dir: container.working_dir.clone(),
            cgroup_procs: cgroup.procs_files(),
            uid,
            gid,
            supplemental_groups: groups.clone(),
        };
        let layer = cdir.join("layer");
        // A new container, a new writable layer (as a runtime's).
        if layer.exists() {
            let _ = std::fs::remove_dir_all(&layer);
        }
        let layer = std::fs::create_dir_all(&layer).is_ok().then_some(layer);
        let sandbox = SandboxSpec {
            privileged,
            terminal: container.tty == Some(true),
            pid_namespace,
            layer,
            capabilities,
            argv,
            env: full_env,
            hostname,
            root,
            working_dir: container.working_dir.clone(),
            mounts,
            hide,
            tmpfs: vec!["/tmp".into()],
            read_only_root: csc.read_only_root_filesystem == Some(true),
            cgroup_procs: cgroup.procs_files(),
            netns: if spec.host_network.unwrap_or(false) {
                None
            } else {
                self.pod_net.as_ref().map(|p| p.netns.clone())
            },
            uid,
            gid,
            supplemental_groups: groups,
        };
        let container_id = format!("rkube://{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple());
        let image = container.image.clone().unwrap_or_default();
        self.event(
            pod,
            "Normal",
            "Pulled",
            &format!("Container image \"{image}\" already present on machine"),
            Some(&field_path),
        );
        self.event(pod, "Normal", "Created", &format!("Created container: {name}"), Some(&field_path));
        let c = &mut self.ctrs[i];
        c.starts += 1;
        c.status.restart_count = restart_count;
        if let State::Terminated { .. } = c.status.state {
            c.status.last_state = Some(c.status.state.clone());
        }
        let mut missing_limits: Vec<String> = Vec::new();
        let stdio = runtime::Stdio {
            stdin: container.stdin == Some(true),
            stdin_once: container.stdin_once == Some(true),
            tty: container.tty == Some(true),
        };
        match runtime::start(&shared.config.rkube_binary, &sandbox, &cdir.join("spec.json"), log, stdio).await {
            Ok(process) => {
                // Limits apply once the program runs: the init (the rkube binary) is not
                // charged against a small limit.
                missing_limits = if shared.cgroups.available() {
                    cgroup.limit(memory, cpu)
                } else if memory.is_some() || cpu.is_some() {
                    vec!["limits".into()]
                } else {
                    vec![]
                };
                let started_at = now();
                c.status.state = State::Running { started_at };
                c.status.container_id = Some(container_id);
                // Without a startup probe a running container has started; without a
                // readiness probe it is ready (an init container only once it completed).
                c.status.started = c.spec.startup_probe.is_none();
                let regular_or_sidecar = (!c.init || c.sidecar) && !c.ephemeral;
                c.status.ready =
                    regular_or_sidecar && c.spec.readiness_probe.is_none() && c.spec.startup_probe.is_none();
                c.ever_ran = true;
                c.generation += 1;
                let started = Instant::now();
                for (track, probe) in [
                    (&mut c.startup, &c.spec.startup_probe),
                    (&mut c.liveness, &c.spec.liveness_probe),
                    (&mut c.readiness, &c.spec.readiness_probe),
                ] {
                    *track = Track {
                        next: probe.as_ref().map(|p| started + crate::probe::timing(p).initial_delay),
                        ..Track::default()
                    };
                }
                let exec = crate::sandbox::ExecSpec { target_pid: process.pid, ..exec_base };
                self.shared.running.insert(&self.uid, &name, exec.clone(), cdir.clone(), process.attach.clone());
                let log = (log_path.parent().map(Path::to_path_buf).unwrap_or_default(), restart_count as u32);
                c.running =
                    Some(Running { pid: process.pid, cgroup: cgroup.clone(), since: started, exec, termination, log });
                let exits = self.exits.clone();
                let cname = name.clone();
                tokio::spawn(async move {
                    let exit = process.wait().await;
                    let oom = cgroup.oom_killed();
                    // The container's processes end with it, as they would with its pid namespace.
                    cgroup.kill_all().await;
                    let _ = exits.send((cname, exit, oom));
                });
                self.event(pod, "Normal", "Started", &format!("Started container {name}"), Some(&field_path));
                self.post_start(pod, i, &field_path).await;
            }
            Err(message) => {
                cgroup.kill_all().await;
                let finished = now();
                c.status.state = State::Terminated {
                    exit_code: 128,
                    signal: None,
                    reason: "StartError".into(),
                    message: Some(message.clone()),
                    started_at: None,
                    finished_at: finished,
                    container_id: Some(container_id.clone()),
                };
                c.status.container_id = Some(container_id);
                c.status.ready = false;
                c.status.started = false;
                self.bump_backoff(i);
                self.event(pod, "Warning", "Failed", &format!("Error: {message}"), Some(&field_path));
            }
        }
        if !missing_limits.is_empty() {
            self.warn_once(
                pod,
                &format!("limits-{name}"),
                "LimitsNotApplied",
                &format!(
                    "container {name}: {} not enforced on this node (cgroup controller unavailable)",
                    missing_limits.join(", ")
                ),
            );
        }
    }

    /// The services for env. Where ClusterIPs are not reachable (the fallback mode, and
    /// host-network pods: the host's own routes are never changed) the `kubernetes`
    /// service's variables name the API server's own address.
    fn services_for_env(&self, host_network: bool) -> Vec<Service> {
        let mut services: Vec<Service> = self.shared.services.store().state().iter().map(|s| (**s).clone()).collect();
        let unreachable = self.shared.net.is_none() || host_network;
        if let (true, Some((host, port))) = (unreachable, &self.shared.config.api_server) {
            for s in services.iter_mut() {
                if s.metadata.namespace.as_deref() == Some("default")
                    && s.metadata.name.as_deref() == Some("kubernetes")
                {
                    if let Some(spec) = s.spec.as_mut() {
                        spec.cluster_ip = Some(host.clone());
                        for p in spec.ports.iter_mut().flatten() {
                            p.port = *port as i32;
                        }
                    }
                }
            }
        }
        services
    }

    fn config_error(&mut self, pod: &Pod, i: usize, reason: &str, message: &str, field_path: &str) {
        let c = &mut self.ctrs[i];
        let changed = c.status.state != State::Waiting { reason: reason.into(), message: Some(message.into()) };
        c.status.state = State::Waiting { reason: reason.into(), message: Some(message.into()) };
        c.not_before = Some(Instant::now() + Duration::from_secs(2));
        if changed {
            self.event(pod, "Warning", "Failed", &format!("Error: {message}"), Some(field_path));
        }
    }

    fn bump_backoff(&mut self, i: usize) {
        let c = &mut self.ctrs[i];
        c.backoff = if c.backoff.is_zero() { BACKOFF_INITIAL } else { (c.backoff * 2).min(BACKOFF_MAX) };
        c.not_before = Some(Instant::now() + c.backoff);
    }

    fn exited(&mut self, name: &str, exit: Exit, oom: bool) {
        let Some(i) = self.ctrs.iter().position(|c| c.spec.name == name) else { return };
        let c = &mut self.ctrs[i];
        let Some(run) = c.running.take() else { return };
        self.shared.running.remove(&self.uid, name);
        // Stable for twice the maximum back-off: the back-off starts over.
        if run.since.elapsed() >= BACKOFF_MAX * 2 {
            c.backoff = Duration::ZERO;
        }
        c.status.state = State::Terminated {
            exit_code: exit.code,
            signal: None,
            reason: status::exit_reason(exit.code, oom).into(),
            message: termination_message(&run, c.spec.termination_message_policy.as_deref(), exit.code),
            started_at: match &c.status.state {
                State::Running { started_at } => Some(started_at.clone()),
                _ => None,
            },
            finished_at: now(),
            container_id: c.status.container_id.clone(),
        };
        let init_ok = c.init && !c.sidecar && exit.code == 0;
        // An init container that completed is Ready (the kubelet's prober UpdatePodStatus).
        c.status.ready = init_ok;
        c.status.started = false;
        if !init_ok && !c.ephemeral {
            self.bump_backoff(i);
        } else {
            self.ctrs[i].not_before = None;
        }
    }

    /// Patches pods/status when it changed.
    async fn report(&mut self, pod: &Pod) {
        let (init, regular, ephemeral) = self.statuses();
        let policy = pod.spec.as_ref().and_then(|s| s.restart_policy.clone()).unwrap_or_else(|| "Always".into());
        let gates: Vec<String> = pod
            .spec
            .as_ref()
            .and_then(|s| s.readiness_gates.clone())
            .unwrap_or_default()
            .into_iter()
            .map(|g| g.condition_type)
            .collect();
        let previous = pod.status.as_ref().and_then(|s| serde_json::to_value(s).ok());
        let now = now();
        let status = status::pod_status(&PodStatusInput {
            restart_policy: &policy,
            init: &init,
            regular: &regular,
            ephemeral: &ephemeral,
            sandbox_ready: true,
            terminal: false,
            host_ip: &self.shared.machine.internal_ip,
            pod_ip: self.pod_ip.as_deref(),
            start_time: &self.start_time,
            previous: previous.as_ref(),
            now: &now,
            readiness_gates: &gates,
        });
        let mut status = status;
        if let Some((reason, message)) = &self.evicted {
            // As the eviction manager's kill (or the active deadline handler) writes it.
            status["phase"] = json!("Failed");
            status["reason"] = json!(reason);
            status["message"] = json!(message);
        }
        self.send_status(status).await;
    }

    async fn send_status(&mut self, status: Value) {
        if self.last_status.as_ref().is_some_and(|l| same_status(l, &status)) {
            return;
        }
        let api: Api<Pod> = Api::namespaced(self.shared.client.clone(), &self.ns);
        match api.patch_status(&self.name, &PatchParams::default(), &Patch::Merge(&json!({"status": status}))).await {
            Ok(_) => {
                self.last_status = Some(status);
                self.status_unsent = false;
            }
            Err(e) => {
                tracing::debug!(pod = %self.name, error = %e, "status update failed; retried at the next sync");
                // Not found: the pod is gone, its deletion arrives through the watch.
                self.status_unsent = !matches!(&e, kube::Error::Api(s) if s.code == 404);
            }
        }
    }

    /// Graceful termination: SIGTERM to each container's process, SIGKILL after the grace
    /// period; the final status says how each ended.
    async fn terminate(&mut self, pod: &Pod, exits: &mut mpsc::UnboundedReceiver<(String, Exit, bool)>) {
        let grace = pod
            .metadata
            .deletion_grace_period_seconds
            .or_else(|| pod.spec.as_ref().and_then(|s| s.termination_grace_period_seconds))
            .unwrap_or(MIN_GRACE);
        let grace = if grace <= 0 { 0 } else { grace.max(MIN_GRACE) };
        for i in 0..self.ctrs.len() {
            if self.ctrs[i].running.is_some() {
                let name = self.ctrs[i].spec.name.clone();
                let fp = self.ctrs[i].field_path();
                self.event(pod, "Normal", "Killing", &format!("Stopping container {name}"), Some(&fp));
            }
        }
        self.kill_running(exits, grace).await;
        for c in self.ctrs.iter_mut() {
            if let State::Waiting { .. } = c.status.state {
                c.not_before = None;
            }
        }
        let (init, regular, ephemeral) = self.statuses();
        let policy = pod.spec.as_ref().and_then(|s| s.restart_policy.clone()).unwrap_or_else(|| "Always".into());
        let previous = pod.status.as_ref().and_then(|s| serde_json::to_value(s).ok());
        let now = now();
        let status = status::pod_status(&PodStatusInput {
            restart_policy: &policy,
            init: &init,
            regular: &regular,
            ephemeral: &ephemeral,
            sandbox_ready: false,
            terminal: regular.iter().all(|c| matches!(c.state, State::Terminated { .. })),
            host_ip: &self.shared.machine.internal_ip,
            pod_ip: self.pod_ip.as_deref(),
            start_time: &self.start_time,
            previous: previous.as_ref(),
            now: &now,
            readiness_gates: &[],
        });
        self.send_status(status).await;
    }

    /// Stops every running container: SIGTERM to its process (none when `grace` is 0), then
    /// SIGKILL to its whole cgroup once `grace` seconds passed.
    async fn kill_running(&mut self, exits: &mut mpsc::UnboundedReceiver<(String, Exit, bool)>, grace: i64) {
        if self.ctrs.iter().all(|c| c.running.is_none()) {
            return;
        }
        let deadline = Instant::now() + Duration::from_secs(grace.max(0) as u64);
        if grace > 0 {
            self.pre_stop(Duration::from_secs(grace as u64)).await;
            for c in &self.ctrs {
                if let Some(r) = &c.running {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(r.pid as i32),
                        nix::sys::signal::Signal::SIGTERM,
                    );
                }
            }
        }
        while self.ctrs.iter().any(|c| c.running.is_some()) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            match tokio::time::timeout(left, exits.recv()).await {
                Ok(Some((name, exit, oom))) => self.exited(&name, exit, oom),
                _ => break,
            }
        }
        for c in &self.ctrs {
            if let Some(r) = &c.running {
                r.cgroup.kill_all().await;
            }
        }
        while self.ctrs.iter().any(|c| c.running.is_some()) {
            match tokio::time::timeout(Duration::from_secs(5), exits.recv()).await {
                Ok(Some((name, exit, oom))) => self.exited(&name, exit, oom),
                _ => break,
            }
        }
    }

    async fn kill_everything(&mut self) {
        for c in &self.ctrs {
            if let Some(r) = &c.running {
                r.cgroup.kill_all().await;
            }
        }
        self.shared.cgroups.remove_pod(&self.uid).await;
    }

    /// The kubelet's last word on a pod: delete it with grace 0, only if it is still this pod.
    async fn final_delete(&self, pod: &Pod) {
        let api: Api<Pod> = Api::namespaced(self.shared.client.clone(), &self.ns);
        let dp = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions { uid: pod.metadata.uid.clone(), resource_version: None }),
            ..DeleteParams::default()
        };
        if let Err(e) = api.delete(&self.name, &dp).await {
            if !matches!(&e, kube::Error::Api(s) if s.code == 404 || s.code == 409) {
                tracing::warn!(pod = %self.name, error = %e, "final delete failed");
            }
        }
    }

    /// Where a container's probes and hooks run.
    fn probe_target(&self, i: usize) -> crate::probe::Target {
        let c = &self.ctrs[i];
        crate::probe::Target {
            pod_ip: self.pod_ip.clone(),
            net: self.pod_net.as_ref().and(self.shared.net.clone()),
            exec: c.running.as_ref().map(|r| r.exec.clone()),
            helper: self.shared.config.rkube_binary.clone(),
            dir: self.dir.join("containers").join(&c.spec.name),
            user_agent: probe_user_agent(&self.shared.config.version),
        }
    }

    /// Starts every probe that is due (startup first; liveness and readiness once started).
    fn run_probes(&mut self) {
        let now = Instant::now();
        for i in 0..self.ctrs.len() {
            if self.ctrs[i].running.is_none() {
                continue;
            }
            let started = self.ctrs[i].status.started;
            for kind in [ProbeKind::Startup, ProbeKind::Liveness, ProbeKind::Readiness] {
                let c = &self.ctrs[i];
                let (track, probe) = match kind {
                    ProbeKind::Startup => (&c.startup, &c.spec.startup_probe),
                    ProbeKind::Liveness => (&c.liveness, &c.spec.liveness_probe),
                    ProbeKind::Readiness => (&c.readiness, &c.spec.readiness_probe),
                };
                let Some(probe) = probe.clone() else { continue };
                let due = track.next.is_some_and(|t| t <= now) && !track.in_flight;
                if !due || (kind != ProbeKind::Startup && !started) || (kind == ProbeKind::Startup && started) {
                    continue;
                }
                let target = self.probe_target(i);
                let c = &mut self.ctrs[i];
                match kind {
                    ProbeKind::Startup => c.startup.in_flight = true,
                    ProbeKind::Liveness => c.liveness.in_flight = true,
                    ProbeKind::Readiness => c.readiness.in_flight = true,
                }
                let (container, generation, tx) = (c.spec.clone(), c.generation, self.probes.clone());
                tokio::spawn(async move {
                    let outcome = crate::probe::run(&probe, &container, &target).await;
                    let _ = tx.send(ProbeResult { container: container.name.clone(), generation, kind, outcome });
                });
            }
        }
    }

    /// Applies a probe's result with the kubelet's thresholds: readiness follows it, a failed
    /// startup or liveness probe restarts the container.
    fn probe_result(&mut self, pod: &Pod, r: ProbeResult) {
        let Some(i) = self.ctrs.iter().position(|c| c.spec.name == r.container) else { return };
        if self.ctrs[i].generation != r.generation || self.ctrs[i].running.is_none() {
            return;
        }
        let field_path = self.ctrs[i].field_path();
        let c = &mut self.ctrs[i];
        let probe = match r.kind {
            ProbeKind::Startup => c.spec.startup_probe.clone(),
            ProbeKind::Liveness => c.spec.liveness_probe.clone(),
            ProbeKind::Readiness => c.spec.readiness_probe.clone(),
        };
        let Some(probe) = probe else { return };
        let timing = crate::probe::timing(&probe);
        let track = match r.kind {
            ProbeKind::Startup => &mut c.startup,
            ProbeKind::Liveness => &mut c.liveness,
            ProbeKind::Readiness => &mut c.readiness,
        };
        track.in_flight = false;
        track.next = Some(Instant::now() + timing.period);
        let name = c.spec.name.clone();
        match r.outcome {
            Ok(()) => {
                track.successes += 1;
                track.failures = 0;
                let enough = track.successes >= timing.success_threshold;
                match r.kind {
                    ProbeKind::Startup => {
                        c.startup.next = None;
                        c.status.started = true;
                        c.status.ready = c.spec.readiness_probe.is_none();
                    }
                    ProbeKind::Readiness if enough => c.status.ready = true,
                    _ => {}
                }
            }
            Err(message) => {
                track.failures += 1;
                track.successes = 0;
                let exhausted = track.failures >= timing.failure_threshold;
                self.event(
                    pod,
                    "Warning",
                    "Unhealthy",
                    &format!("{} probe failed: {}", r.kind.word(), message.trim_end()),
                    Some(&field_path),
                );
                let c = &mut self.ctrs[i];
                match r.kind {
                    ProbeKind::Readiness if exhausted => c.status.ready = false,
                    ProbeKind::Startup | ProbeKind::Liveness if exhausted => {
                        c.startup.next = None;
                        c.liveness.next = None;
                        c.readiness.next = None;
                        let word = r.kind.word().to_lowercase();
                        self.event(
                            pod,
                            "Normal",
                            "Killing",
                            &format!("Container {name} failed {word} probe, will be restarted"),
                            Some(&field_path),
                        );
                        let grace = probe
                            .termination_grace_period_seconds
                            .or_else(|| pod.spec.as_ref().and_then(|s| s.termination_grace_period_seconds))
                            .unwrap_or(30);
                        self.stop_container(i, grace);
                    }
                    _ => {}
                }
            }
        }
    }

    /// Stops one container in the background (preStop hook, SIGTERM, SIGKILL to its cgroup
    /// after `grace` seconds); its exit arrives as any exit does.
    fn stop_container(&mut self, i: usize, grace: i64) {
        let Some(r) = &self.ctrs[i].running else { return };
        let (pid, cgroup) = (r.pid, r.cgroup.clone());
        let hook = self.ctrs[i].spec.lifecycle.as_ref().and_then(|l| l.pre_stop.clone());
        let (target, container) = (self.probe_target(i), self.ctrs[i].spec.clone());
        let grace = Duration::from_secs(grace.max(0) as u64);
        tokio::spawn(async move {
            let deadline = Instant::now() + grace;
            if let Some(h) = hook {
                let _ = crate::probe::run_handler(&h, &container, &target, grace).await;
            }
            // Only while the pid is still this container's (in its cgroup): once it ended,
            // the number may be another process's, and the cgroup a restarted run's.
            let ours = || !cgroup.available() || cgroup.pids().contains(&(pid as i32));
            let pid = nix::unistd::Pid::from_raw(pid as i32);
            if ours() {
                let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            }
            while Instant::now() < deadline && ours() && nix::sys::signal::kill(pid, None).is_ok() {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            if ours() && nix::sys::signal::kill(pid, None).is_ok() {
                cgroup.kill_all().await;
            }
        });
    }

    /// The postStart hook, right after the container started; if it fails the container is
    /// killed (and restarted per policy), as the kubelet does.
    async fn post_start(&mut self, pod: &Pod, i: usize, field_path: &str) {
        let Some(hook) = self.ctrs[i].spec.lifecycle.as_ref().and_then(|l| l.post_start.clone()) else { return };
        let target = self.probe_target(i);
        let container = self.ctrs[i].spec.clone();
        let grace = pod.spec.as_ref().and_then(|s| s.termination_grace_period_seconds).unwrap_or(30);
        let limit = Duration::from_secs(grace.max(2) as u64);
        if let Err(e) = crate::probe::run_handler(&hook, &container, &target, limit).await {
            let name = &container.name;
            let what = hook_description(&hook);
            self.event(
                pod,
                "Warning",
                "FailedPostStartHook",
                &format!(
                    "{what} for Container \"{name}\" in Pod \"{}_{}({})\" failed - error: {}",
                    self.name,
                    self.ns,
                    self.uid,
                    e.trim_end()
                ),
                Some(field_path),
            );
            self.event(pod, "Normal", "Killing", "FailedPostStartHook", Some(field_path));
            self.stop_container(i, 0);
        }
    }

    /// Every running container's preStop hook, at once, within the grace period.
    async fn pre_stop(&mut self, grace: Duration) {
        let mut hooks = Vec::new();
        for i in 0..self.ctrs.len() {
            let c = &self.ctrs[i];
            let Some(hook) = c.spec.lifecycle.as_ref().and_then(|l| l.pre_stop.clone()) else { continue };
            if c.running.is_none() {
                continue;
            }
            let (target, container) = (self.probe_target(i), c.spec.clone());
            hooks.push(async move { crate::probe::run_handler(&hook, &container, &target, grace).await });
        }
        let _ = tokio::time::timeout(grace, futures::future::join_all(hooks)).await;
    }

    /// Watches the ConfigMaps and Secrets the pod references (each by itself, as the kubelet)
    /// and waits, a little, for their first lists: a volume or variable is not read from a
    /// cache that has not listed yet.
    async fn watch_references(&self, pod: &Pod) {
        let refs = pod.spec.as_ref().map(rkube_inpod::references).unwrap_or_default();
        self.shared.config_maps.set_pod(&self.uid, &self.ns, &refs.config_maps);
        self.shared.secrets.set_pod(&self.uid, &self.ns, &refs.secrets);
        self.shared.config_maps.synced(&self.uid, Duration::from_secs(5)).await;
        self.shared.secrets.synced(&self.uid, Duration::from_secs(5)).await;
    }

    /// The process namespace container `i` is started in (see [`crate::sandbox::PidNamespace`]).
    fn pid_namespace(&self, spec: &k8s_openapi::api::core::v1::PodSpec, i: usize) -> crate::sandbox::PidNamespace {
        use crate::sandbox::PidNamespace;
        if spec.host_pid == Some(true) {
            return PidNamespace::Host;
        }
        let target = self.ctrs[i].target.as_ref().and_then(|t| self.ctrs.iter().find(|c| &c.spec.name == t));
        if let Some(running) = target.and_then(|t| t.running.as_ref()) {
            return PidNamespace::Join(running.pid);
        }
        match &self.pause {
            Some(pause) if spec.share_process_namespace == Some(true) => {
                pause.id().map(PidNamespace::Join).unwrap_or(PidNamespace::Own)
            }
            _ => PidNamespace::Own,
        }
    }

    /// Makes the pod's network namespace once (the sandbox); false while it cannot be made.
    async fn sandbox(&mut self, pod: &Pod) -> bool {
        let spec = pod.spec.as_ref();
        let shared_pids =
            spec.and_then(|s| s.share_process_namespace) == Some(true) && spec.and_then(|s| s.host_pid) != Some(true);
        // A pause process that died took its namespace's processes with it: a new one.
        if self.pause.as_mut().is_some_and(|p| matches!(p.try_wait(), Ok(Some(_)))) {
            self.pause = None;
        }
        if shared_pids && self.pause.is_none() {
            let cgroup = self.shared.cgroups.container(&self.uid, crate::runtime::PAUSE);
            match crate::runtime::start_pause(&self.shared.config.rkube_binary, &cgroup) {
                Ok(child) => self.pause = Some(child),
                Err(e) => {
                    let message = format!("Failed to create pod sandbox: start the pause process: {e}");
                    self.event(pod, "Warning", "FailedCreatePodSandBox", &message, None);
                    return false;
                }
            }
        }
        if self.pod_ip.is_some() {
            return true;
        }
        let Some(net) = self.shared.net.clone() else { return true };
        match net.add_pod().await {
            Ok(p) => {
                self.pod_ip = Some(p.ip.to_string());
                self.pod_net = Some(p);
                self.sandbox_error = None;
                true
            }
            Err(e) => {
                if self.sandbox_error.as_deref() != Some(e.as_str()) {
                    self.event(
                        pod,
                        "Warning",
                        "FailedCreatePodSandBox",
                        &format!("Failed to create pod sandbox: {e}"),
                        None,
                    );
                    self.sandbox_error = Some(e);
                }
                false
            }
        }
    }

    async fn cleanup(&mut self) {
        self.shared.running.remove_pod(&self.uid);
        self.shared.config_maps.remove_pod(&self.uid);
        self.shared.secrets.remove_pod(&self.uid);
        if let Some(mut pause) = self.pause.take() {
            let _ = pause.start_kill();
            let _ = pause.wait().await;
        }
        self.shared.cgroups.remove_pod(&self.uid).await;
        if let (Some(net), Some(p)) = (&self.shared.net, self.pod_net.take()) {
            net.remove_pod(&p).await;
        }
        // Memory-backed emptyDirs are tmpfs mounts in the pod's directory.
        unmount_under(&self.dir);
        let _ = std::fs::remove_dir_all(&self.dir);
        let logs = self.shared.config.root_dir.join("logs").join(format!("{}_{}_{}", self.ns, self.name, self.uid));
        let _ = std::fs::remove_dir_all(logs);
    }

    /// Posts a core/v1 Event about the pod, as the kubelet's recorder does (fire and forget).
    fn event(&self, pod: &Pod, kind: &str, reason: &str, message: &str, field_path: Option<&str>) {
        let client = self.shared.client.clone();
        let node = self.shared.name.clone();
        let now_micro = chrono::Utc::now();
        let ts = now_micro.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let mut involved = json!({
            "kind": "Pod",
            "namespace": self.ns,
            "name": self.name,
            "uid": self.uid,
            "apiVersion": "v1",
            "resourceVersion": pod.metadata.resource_version,
        });
        if let Some(fp) = field_path {
            involved["fieldPath"] = json!(fp);
        }
        let ev = json!({
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": format!("{}.{:x}", self.name, now_micro.timestamp_nanos_opt().unwrap_or(0)), "namespace": self.ns},
            "involvedObject": involved,
            "reason": reason,
            "message": message,
            "source": {"component": "kubelet", "host": node},
            "firstTimestamp": ts,
            "lastTimestamp": ts,
            "count": 1,
            "type": kind,
            "eventTime": null,
            "reportingComponent": "kubelet",
            "reportingInstance": node,
        });
        let ns = self.ns.clone();
        tokio::spawn(async move {
            let api: Api<k8s_openapi::api::core::v1::Event> = Api::namespaced(client, &ns);
            if let Ok(e) = serde_json::from_value(ev) {
                let _ = api.create(&PostParams::default(), &e).await;
            }
        });
    }
}

impl StoreObjects<'_> {
    fn config_map_owned(&self, ns: &str, name: &str) -> Option<ConfigMap> {
        rkube_inpod::Objects::config_map(self, ns, name)
    }
    fn secret_owned(&self, ns: &str, name: &str) -> Option<Secret> {
        rkube_inpod::Objects::secret(self, ns, name)
    }
}

/// The kubelet's probe User-Agent: `kube-probe/<major>.<minor>`.
/// The kubelet's getTerminationMessage: the first 4096 bytes of the file at
/// terminationMessagePath; with FallbackToLogsOnError, a container that failed without one
/// gets the last 80 lines (at most 2048 bytes) of its log.
fn termination_message(run: &Running, policy: Option<&str>, code: i32) -> Option<String> {
    use std::io::Read;
    let mut data = Vec::new();
    if let Some(f) = run.termination.as_ref().and_then(|p| std::fs::File::open(p).ok()) {
        let _ = f.take(4096).read_to_end(&mut data);
    }
    if data.is_empty() && policy == Some("FallbackToLogsOnError") && code != 0 {
        let opts =
            crate::kubelet_api::LogOptions { tail_lines: Some(80), limit_bytes: Some(2048), ..Default::default() };
        let mut sink = |b: &[u8]| {
            data.extend_from_slice(b);
            true
        };
        let _ = crate::kubelet_api::read_logs(&run.log.0, run.log.1, &opts, false, &mut sink, &|| false, &|| false);
    }
    (!data.is_empty()).then(|| String::from_utf8_lossy(&data).into_owned())
}

fn probe_user_agent(version: &str) -> String {
    let v = version.trim_start_matches('v');
    let mut parts = v.split(['.', '-', '+']);
    format!("kube-probe/{}.{}", parts.next().unwrap_or("1"), parts.next().unwrap_or("0"))
}

/// How the kubelet names a hook in its event (`Exec lifecycle hook ([cmd])`, `HTTP lifecycle hook (path)`).
fn hook_description(h: &k8s_openapi::api::core::v1::LifecycleHandler) -> String {
    if let Some(e) = &h.exec {
        return format!("Exec lifecycle hook ([{}])", e.command.clone().unwrap_or_default().join(" "));
    }
    if let Some(g) = &h.http_get {
        return format!("HTTP lifecycle hook ({})", g.path.clone().unwrap_or_default());
    }
    if h.sleep.is_some() {
        return "Sleep lifecycle hook".into();
    }
    "lifecycle hook".into()
}

/// Whether a status was already sent (pod conditions carry no heartbeat, so equality is
/// the test).
fn same_status(a: &Value, b: &Value) -> bool {
    a == b
}

/// Host users' credentials no pod may read: kubeconfigs, SSH keys, cloud and registry
/// credentials, under /root and every /home/* (and kube-apiserver's /etc/kubernetes).
fn credential_paths() -> Vec<PathBuf> {
    const IN_HOME: &[&str] = &[
        ".kube",
        ".ssh",
        ".aws",
        ".azure",
        ".docker",
        ".gnupg",
        ".config/gcloud",
        ".netrc",
        ".git-credentials",
        ".cargo/credentials",
        ".cargo/credentials.toml",
        ".pypirc",
        ".config/gh",
    ];
    let mut homes = vec![PathBuf::from("/root")];
    if let Ok(rd) = std::fs::read_dir("/home") {
        homes.extend(rd.flatten().map(|e| e.path()));
    }
    let mut out: Vec<PathBuf> = homes.iter().flat_map(|h| IN_HOME.iter().map(move |p| h.join(p))).collect();
    out.push(PathBuf::from("/etc/kubernetes"));
    // The host's password hashes and SSH host keys.
    out.extend(["/etc/shadow", "/etc/shadow-", "/etc/gshadow", "/etc/gshadow-"].map(PathBuf::from));
    for e in std::fs::read_dir("/etc/ssh").into_iter().flatten().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with("ssh_host_") && name.ends_with("_key") {
            out.push(e.path());
        }
    }
    // The host's own service-account token, when the agent itself runs in a pod.
    out.push(PathBuf::from("/run/secrets/kubernetes.io"));
    out.retain(|p| p.exists());
    out
}

fn api_message(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) => s.message.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fallback_pod_ips_are_loopback_and_stable() {
        let a = fallback_pod_ip("0b5e7c8e-1111-2222-3333-444455556666");
        assert_eq!(a, fallback_pod_ip("0b5e7c8e-1111-2222-3333-444455556666"));
        let ip: std::net::Ipv4Addr = a.parse().unwrap();
        assert!(ip.is_loopback());
        assert_ne!(ip.octets()[1], 0, "never 127.0.x.x (the host's own loopback uses)");
    }

    #[test]
    fn mount_points_are_read_as_mountinfo_escapes_them() {
        assert_eq!(crate::sandbox::unescape_mount_path("/a\\040b/c\\011d\\134"), PathBuf::from("/a b/c\td\\"));
        assert_eq!(crate::sandbox::unescape_mount_path("/plain\\9"), PathBuf::from("/plain\\9"));
    }

    fn memory_volume(limit: Option<&str>) -> Volume {
        serde_json::from_value(json!({"name": "cache", "emptyDir": {"medium": "Memory", "sizeLimit": limit}})).unwrap()
    }

    #[test]
    fn memory_volumes_are_sized_as_the_kubelet_sizes_them() {
        let spec = |limits: &[Option<&str>]| -> k8s_openapi::api::core::v1::PodSpec {
            let containers: Vec<Value> = limits
                .iter()
                .enumerate()
                .map(|(i, l)| match l {
                    Some(l) => json!({"name": format!("c{i}"), "resources": {"limits": {"memory": l}}}),
                    None => json!({"name": format!("c{i}")}),
                })
                .collect();
            serde_json::from_value(json!({"containers": containers})).unwrap()
        };
        let node = Some(8 << 30);
        // Nothing smaller than the node's allocatable memory.
        assert_eq!(memory_volume_size(&spec(&[None]), &memory_volume(None), node), node);
        // Every container limited: their sum.
        assert_eq!(
            memory_volume_size(&spec(&[Some("64Mi"), Some("64Mi")]), &memory_volume(None), node),
            Some(128 << 20)
        );
        // One unlimited container: no pod limit.
        assert_eq!(memory_volume_size(&spec(&[Some("64Mi"), None]), &memory_volume(None), node), node);
        // The sizeLimit when it is the least.
        assert_eq!(memory_volume_size(&spec(&[Some("64Mi")]), &memory_volume(Some("16Mi")), node), Some(16 << 20));
        assert_eq!(memory_volume_size(&spec(&[Some("64Mi")]), &memory_volume(Some("1Gi")), node), Some(64 << 20));
        assert_eq!(memory_volume_size(&spec(&[None]), &memory_volume(Some("16Mi")), None), Some(16 << 20));
    }

    #[test]
    fn usage_counts_the_blocks_of_a_volume() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("sub")).unwrap();
        std::fs::write(d.path().join("sub/a"), vec![1u8; 256 * 1024]).unwrap();
        std::fs::hard_link(d.path().join("sub/a"), d.path().join("b")).unwrap();
        let used = dir_usage(d.path());
        assert!((256 * 1024..512 * 1024).contains(&used), "{used}: a hard-linked file counts once");
        assert_eq!(dir_usage(&d.path().join("missing")), 0);
    }

    #[test]
    fn leftover_mounts_are_unmounted_before_the_pod_directories_go() {
        let root = tempfile::tempdir().unwrap();
        let vol = pods_dir(root.path()).join("uid/volumes/kubernetes.io~empty-dir/cache");
        std::fs::create_dir_all(&vol).unwrap();
        let flags = nix::mount::MsFlags::empty();
        if nix::mount::mount(Some("tmpfs"), &vol, Some("tmpfs"), flags, Some("size=1m")).is_err() {
            eprintln!("SKIPPED: mounting a tmpfs needs root");
            return;
        }
        std::fs::write(vol.join("data"), "x").unwrap();
        assert!(is_mount_point(&vol));
        remove_leftovers(root.path());
        let canonical = std::fs::canonicalize(root.path()).unwrap();
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        assert!(!mounts.contains(canonical.to_str().unwrap()), "{mounts}");
        assert!(!pods_dir(root.path()).exists());
    }
}
