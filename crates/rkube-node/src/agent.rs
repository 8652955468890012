//! The agent: registration and heartbeats, the informers, and one worker per pod bound to
//! this node.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Endpoints, Pod, Secret, Service};
use kube::Client;
use rkube_client::{Informer, Informers};
use tokio::sync::watch;

use crate::images::ImageMap;
use crate::kubelet_api;
use crate::net::Network;
use crate::node::{self, Machine};
use crate::pod::{self, Msg};
use crate::runtime::Cgroups;
use crate::services;

/// How the agent runs.
#[derive(Debug, Clone)]
pub struct Config {
    /// The Node's name (default: the hostname, lower case).
    pub name: Option<String>,
    /// Where pods' directories, logs and state live.
    pub root_dir: PathBuf,
    /// The rkube binary (containers start as `rkube __container`).
    pub rkube_binary: PathBuf,
    /// Host paths no container may read (the server's data directory, ...), on top of the
    /// agent's own root directory and the host users' credentials.
    pub hide: Vec<PathBuf>,
    pub image_map: ImageMap,
    /// The kubelet API's port (0: a free one), advertised in the Node's daemonEndpoints.
    pub kubelet_port: u16,
    /// Where the kubelet API listens (the kubelet's --address; default: the node's
    /// InternalIP).
    pub kubelet_address: Option<std::net::IpAddr>,
    /// The kubelet API's serving certificate and client CA (None: a self-signed
    /// certificate, and bearer tokens only).
    pub kubelet_tls: Option<crate::kubelet_api::Tls>,
    /// The serving certificate comes from the cluster through a CertificateSigningRequest,
    /// renewed as it ages (the kubelet's `--rotate-server-certificates`); `kubelet_tls`'s
    /// certificate is then not used, its client CA is.
    pub rotate_server_certificates: bool,
    pub node_ip: Option<String>,
    pub node_labels: BTreeMap<String, String>,
    pub cluster_domain: String,
    /// A container's log file rotates past this size.
    pub log_max_bytes: u64,
    /// Where pods reach the API server when they have no pod network (the fallback): the
    /// `kubernetes` service's variables and names point here instead of the ClusterIP.
    pub api_server: Option<(String, u16)>,
    /// Give pods network namespaces of their own (false: every pod on the host network).
    pub pod_network: bool,
    /// The cluster DNS address pods' resolv.conf names (the kubelet's --cluster-dns); the
    /// agent serves it in its router namespace.
    pub cluster_dns: std::net::Ipv4Addr,
    /// The version the Node reports as kubeletVersion.
    pub version: String,
    /// Refresh a pod's projected service-account tokens this long after they are issued
    /// instead of on the kubelet's rule (80 % of their lifetime or 24 h): a test knob.
    pub token_refresh_after: Option<Duration>,
}

/// What every pod worker shares.
pub(crate) struct Shared {
    pub client: Client,
    pub name: String,
    pub machine: Machine,
    pub config: Config,
    pub cgroups: Cgroups,
    pub services: Arc<Informer<Service>>,
    /// The ConfigMaps and Secrets the pods reference, each watched by name.
    pub config_maps: Arc<crate::objects::Referenced<ConfigMap>>,
    pub secrets: Arc<crate::objects::Referenced<Secret>>,
    /// Pod networking; None in the fallback mode (pods on the host network, 127.x addresses).
    pub net: Option<Arc<Network>>,
    /// The running containers, for exec, attach and port-forward.
    pub running: Arc<crate::streaming::Running>,
}

/// Runs the agent until `shutdown`; then kills every pod process it started and removes
/// what it made for them.
pub async fn run(client: Client, config: Config, shutdown: impl Future<Output = ()>) -> Result<(), String> {
    let started = std::time::Instant::now();
    std::fs::create_dir_all(&config.root_dir).map_err(|e| format!("{}: {e}", config.root_dir.display()))?;
    let machine = Machine::read(&config.root_dir, config.node_ip.as_deref());
    let name = config.name.clone().unwrap_or_else(|| machine.hostname.clone());
    let scope = cgroup_scope(&name, &config.root_dir);
    let cgroups = Cgroups::detect(&scope);
    if !cgroups.available() {
        tracing::warn!(
            "cgroups are not writable: pod processes are tracked by session only and limits are not applied"
        );
    }
    // Where they are, for whoever cleans up after an agent that was killed.
    let _ = std::fs::write(config.root_dir.join(crate::runtime::CGROUPS_RECORD), cgroups.record());
    // Whatever an earlier agent left running is ended: pods are restarted from the API.
    for uid in cgroups.leftover_pods() {
        cgroups.remove_pod(&uid).await;
    }
    pod::remove_leftovers(&config.root_dir);
    let net = if config.pod_network {
        match Network::setup(&scope, crate::net::subnet_for(&name), &config.root_dir.join(crate::net::RECORD)).await {
            Ok(n) => Some(Arc::new(n)),
            Err(e) => {
                tracing::warn!(
                    error = %e,
                    "network namespaces cannot be made: pods run on the host network with 127.0.0.0/8 addresses (fallback mode)"
                );
                None
            }
        }
    } else {
        None
    };

    let kubelet_address = config
        .kubelet_address
        .or_else(|| machine.internal_ip.parse().ok())
        .unwrap_or(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST));
    let kubelet_listener = match kubelet_api::bind(kubelet_address, config.kubelet_port).await {
        Ok(l) => Some(l),
        Err(e) => {
            tracing::error!(address = %kubelet_address, port = config.kubelet_port, error = %e, "cannot listen for the kubelet API: logs and exec through the API server will fail");
            None
        }
    };
    let kubelet_port =
        kubelet_listener.as_ref().and_then(|l| l.local_addr().ok()).map_or(config.kubelet_port, |a| a.port());

    let node_obj = node::initial_node(&name, &machine, &config.node_labels);
    let mut backoff = Duration::from_millis(200);
    let node_uid = loop {
        match node::register(&client, &name, &node_obj).await {
            Ok(uid) => break uid,
            Err(e) => {
                tracing::warn!(node = %name, error = %e, "cannot register the node; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(7));
            }
        }
    };
    let status = tokio::spawn(node::status_loop(
        client.clone(),
        name.clone(),
        machine.clone(),
        kubelet_port,
        config.version.clone(),
    ));
    let lease = tokio::spawn(node::lease_loop(client.clone(), name.clone(), node_uid));

    let informers = Informers::new(client.clone());
    let pods = informers.get::<Pod>(&format!("spec.nodeName={name}"));
    let shared = Arc::new(Shared {
        client: client.clone(),
        name: name.clone(),
        machine,
        config,
        cgroups,
        services: informers.get::<Service>(""),
        config_maps: Arc::new(crate::objects::Referenced::new(client.clone())),
        secrets: Arc::new(crate::objects::Referenced::new(client.clone())),
        net: net.clone(),
        running: Default::default(),
    });
    let (kubelet_stop, kubelet_stopped) = tokio::sync::oneshot::channel::<()>();
    let mut certificate_task = None;
    let kubelet = kubelet_listener.map(|listener| -> Result<_, String> {
        let rotate = shared.config.rotate_server_certificates;
        let tls = shared.config.kubelet_tls.clone().unwrap_or_else(|| {
            if rotate {
                return kubelet_api::Tls { cert_pem: String::new(), key_pem: String::new(), client_ca_pem: None };
            }
            tracing::warn!("the kubelet API has no serving certificate (--tls-cert-file): using a self-signed one");
            self_signed(&shared.machine, &name)
        });
        let certs = if rotate {
            // From the cluster (a CertificateSigningRequest), renewed as it ages.
            let certs = Arc::new(crate::certificates::Current::default());
            let names = serving_names(&shared.machine, &name, shared.config.kubelet_address);
            let root = shared.config.root_dir.clone();
            certificate_task = Some(tokio::spawn(crate::certificates::run(client.clone(), names, root, certs.clone())));
            certs
        } else {
            match crate::certificates::Current::fixed(&tls.cert_pem, &tls.key_pem) {
                Ok(c) => Arc::new(c),
                Err(e) => return Err(format!("the kubelet API's serving certificate: {e}")),
            }
        };
        let api = Arc::new(kubelet_api::Api::new(client.clone(), name.clone(), &shared, pods.clone()));
        tracing::info!(address = %kubelet_address, port = kubelet_port, "kubelet API listening");
        Ok(tokio::spawn(async move {
            if let Err(e) = kubelet_api::serve(listener, tls, certs, api, async move {
                let _ = kubelet_stopped.await;
            })
            .await
            {
                tracing::error!(error = %e, "kubelet API failed");
            }
        }))
    });
    let kubelet = kubelet.transpose()?;
    let (proxy_stop, proxy_stopped) = tokio::sync::oneshot::channel::<()>();
    let proxy = net.as_ref().map(|net| {
        let view =
            Arc::new(services::View { services: shared.services.clone(), endpoints: informers.get::<Endpoints>("") });
        tokio::spawn(services::run(
            net.clone(),
            view,
            shared.config.cluster_dns,
            shared.config.cluster_domain.clone(),
            async move {
                let _ = proxy_stopped.await;
            },
        ))
    });
    match &net {
        Some(n) => tracing::info!(
            node = %name,
            ready_ms = started.elapsed().as_millis() as u64,
            pod_cidr = %n.pod_cidr(),
            "node agent registered (pods run as processes, each in its own network namespace)"
        ),
        None => tracing::info!(
            node = %name,
            ready_ms = started.elapsed().as_millis() as u64,
            "node agent registered (fallback mode: pods run as processes on the host network)"
        ),
    }

    let mut pod_changes = pods.subscribe();
    let mut cm_changes = shared.config_maps.subscribe();
    let mut secret_changes = shared.secrets.subscribe();
    let mut workers: HashMap<String, (watch::Sender<Msg>, tokio::task::JoinHandle<()>)> = HashMap::new();
    // Pods whose worker ended (their final delete done) while the cache still lists them.
    let mut ended: std::collections::HashSet<String> = Default::default();
    pods.ready().await;
    let mut shutdown = std::pin::pin!(shutdown);
    let mut resync = tokio::time::interval(Duration::from_secs(60));
    let mut trim_at: Option<tokio::time::Instant> = None;
    loop {
        let mut started_workers = false;
        // Level-triggered: every wake-up compares the cache with the workers.
        let mut seen = std::collections::HashSet::new();
        for p in pods.store().state() {
            let Some(uid) = p.metadata.uid.clone() else { continue };
            seen.insert(uid.clone());
            match workers.get(&uid) {
                Some((tx, _)) => {
                    tx.send_if_modified(|m| {
                        let same =
                            m.pod.as_ref().map(|old| old.metadata.resource_version == p.metadata.resource_version);
                        if same == Some(true) {
                            return false;
                        }
                        m.pod = Some(p.clone());
                        true
                    });
                }
                None => {
                    if p.metadata.deletion_timestamp.is_some() && ended.contains(&uid) {
                        // Ended by its worker; the watch has not brought the delete yet.
                        continue;
                    }
                    if pod::is_terminal(&p) && !pod::has_state(&shared.config.root_dir, &uid) {
                        // A finished pod from before this agent started: nothing to run.
                        continue;
                    }
                    let (tx, rx) = watch::channel(Msg { pod: Some(p.clone()), stop: false, nudge: 0 });
                    let handle = tokio::spawn(pod::work(shared.clone(), uid.clone(), rx));
                    workers.insert(uid, (tx, handle));
                    started_workers = true;
                }
            }
        }
        for (uid, (tx, _)) in workers.iter() {
            if !seen.contains(uid) {
                tx.send_modify(|m| m.pod = None);
            }
        }
        let before = workers.len();
        workers.retain(|uid, (_, h)| {
            let finished = h.is_finished();
            if finished {
                ended.insert(uid.clone());
            }
            !finished
        });
        if workers.len() != before || started_workers {
            // Once the pods settle (no worker came or went for 2 s).
            trim_at = Some(tokio::time::Instant::now() + Duration::from_secs(2));
        }
        ended.retain(|uid| seen.contains(uid));

        tokio::select! {
            _ = &mut shutdown => break,
            c = pod_changes.recv() => { if let Err(tokio::sync::broadcast::error::RecvError::Closed) = c { break } }
            c = cm_changes.recv() => nudge(&workers, !matches!(c, Err(tokio::sync::broadcast::error::RecvError::Closed))),
            c = secret_changes.recv() => nudge(&workers, !matches!(c, Err(tokio::sync::broadcast::error::RecvError::Closed))),
            _ = resync.tick() => nudge(&workers, true),
            _ = async { tokio::time::sleep_until(trim_at.unwrap_or_else(tokio::time::Instant::now)).await }, if trim_at.is_some() => {
                trim_at = None;
                release_free_memory();
            }
        }
    }
    tracing::info!(node = %name, pods = workers.len(), "node agent stopping: ending every pod process");
    for (tx, _) in workers.values() {
        tx.send_modify(|m| m.stop = true);
    }
    for (_, (_, handle)) in workers.drain() {
        let _ = tokio::time::timeout(Duration::from_secs(10), handle).await;
    }
    for uid in shared.cgroups.leftover_pods() {
        shared.cgroups.remove_pod(&uid).await;
    }
    shared.cgroups.remove_scope();
    let _ = proxy_stop.send(());
    let _ = kubelet_stop.send(());
    if let Some(t) = certificate_task {
        t.abort();
    }
    if let Some(k) = kubelet {
        let _ = tokio::time::timeout(Duration::from_secs(2), k).await;
    }
    if let Some(p) = proxy {
        let _ = tokio::time::timeout(Duration::from_secs(2), p).await;
    }
    if let Some(n) = &shared.net {
        n.teardown().await;
    }
    status.abort();
    lease.abort();
    Ok(())
}

/// The agent's cgroup scope: its node name and a digest of its root directory, so two
/// agents on one machine (tests, or `rkube node` next to `rkube server`) never touch each
/// other's pods, and a restarted agent finds its own.
fn cgroup_scope(name: &str, root: &std::path::Path) -> String {
    let root = std::fs::canonicalize(root).unwrap_or_else(|_| root.to_path_buf());
    let h = root
        .as_os_str()
        .as_encoded_bytes()
        .iter()
        .fold(0xcbf29ce484222325u64, |h, b| (h ^ *b as u64).wrapping_mul(0x100000001b3));
    format!("{name}-{:08x}", h as u32)
}

/// Gives the memory the allocator keeps free back to the system (a burst of pod starts
/// leaves much of it behind, which glibc's malloc would otherwise hold for the next burst).
fn release_free_memory() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only walks the allocator's own free lists.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Tells every worker that referenced objects may have changed (they re-sync volumes).
fn nudge(workers: &HashMap<String, (watch::Sender<Msg>, tokio::task::JoinHandle<()>)>, yes: bool) {
    if yes {
        for (tx, _) in workers.values() {
            tx.send_modify(|m| m.nudge += 1);
        }
    }
}

/// The names a serving certificate from the cluster is asked for: the node's name and
/// hostname, its InternalIP and the kubelet API's address.
fn serving_names(machine: &Machine, name: &str, address: Option<std::net::IpAddr>) -> crate::certificates::Names {
    let mut dns = vec![name.to_string()];
    if machine.hostname != name {
        dns.push(machine.hostname.clone());
    }
    let mut ips: Vec<std::net::IpAddr> = machine.internal_ip.parse().into_iter().collect();
    ips.extend(address.filter(|a| !a.is_unspecified() && !ips.contains(a)));
    crate::certificates::Names { node: name.to_string(), dns, ips }
}

/// The kubelet's fallback: a self-signed serving certificate for the node's names.
fn self_signed(machine: &Machine, name: &str) -> kubelet_api::Tls {
    let mut ips: Vec<std::net::IpAddr> = machine.internal_ip.parse().into_iter().collect();
    ips.push(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST));
    let dns = vec![machine.hostname.clone(), name.to_string(), "localhost".into()];
    let cn = format!("{}@{}", machine.hostname, chrono::Utc::now().timestamp());
    let (cert_pem, key_pem) = rkube_pki::self_signed_serving(&cn, &dns, &ips).unwrap_or_default();
    kubelet_api::Tls { cert_pem, key_pem, client_ca_pem: None }
}
