//! The Node object as a kubelet registers and reports it, and its heartbeats: the Node's
//! status every 10 s (patched when it changed or every 5 min) and the Lease in
//! `kube-node-lease` renewed every 10 s (leaseDurationSeconds 40, an ownerReference to the
//! Node), through the public API.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::Client;
use serde_json::{json, Value};

/// The kubelet's defaults (pkg/kubelet/apis/config/v1beta1/defaults.go).
pub const LEASE_DURATION_SECONDS: i32 = 40;
pub const STATUS_UPDATE_PERIOD: Duration = Duration::from_secs(10);
pub const STATUS_REPORT_PERIOD: Duration = Duration::from_secs(300);
pub const MAX_PODS: u64 = 110;
/// The kubelet's default hard eviction threshold for memory, subtracted from allocatable.
const EVICTION_MEMORY_BYTES: u64 = 100 * 1024 * 1024;

/// What the machine is, read once at start.
#[derive(Debug, Clone)]
pub struct Machine {
    pub hostname: String,
    pub cpus: u64,
    pub memory_bytes: u64,
    pub ephemeral_storage_bytes: u64,
    pub machine_id: String,
    pub system_uuid: String,
    pub boot_id: String,
    pub kernel_version: String,
    pub os_image: String,
    pub internal_ip: String,
}

impl Machine {
    /// Reads the machine; `root_dir` is where pods' files go (its filesystem is the
    /// ephemeral storage), `node_ip` overrides the address guess.
    pub fn read(root_dir: &std::path::Path, node_ip: Option<&str>) -> Machine {
        let read = |p: &str| std::fs::read_to_string(p).map(|s| s.trim().to_string()).unwrap_or_default();
        let hostname = nix::unistd::gethostname()
            .ok()
            .and_then(|h| h.into_string().ok())
            .unwrap_or_else(|| "localhost".into())
            .to_lowercase();
        let memory_bytes = read("/proc/meminfo")
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map(|kb| kb * 1024)
            .unwrap_or(0);
        let ephemeral_storage_bytes =
            nix::sys::statvfs::statvfs(root_dir).map(|s| s.blocks() * s.fragment_size()).unwrap_or(0);
        let os_image = read("/etc/os-release")
            .lines()
            .find_map(|l| l.strip_prefix("PRETTY_NAME="))
            .map(|v| v.trim_matches('"').to_string())
            .unwrap_or_else(|| "Linux".into());
        Machine {
            cpus: std::thread::available_parallelism().map(|n| n.get() as u64).unwrap_or(1),
            memory_bytes,
            ephemeral_storage_bytes,
            machine_id: read("/etc/machine-id"),
            system_uuid: read("/sys/class/dmi/id/product_uuid").to_lowercase(),
            boot_id: read("/proc/sys/kernel/random/boot_id"),
            kernel_version: nix::sys::utsname::uname()
                .map(|u| u.release().to_string_lossy().into_owned())
                .unwrap_or_default(),
            os_image,
            internal_ip: node_ip.map(str::to_string).unwrap_or_else(|| guess_ip(&hostname)),
            hostname,
        }
    }

    /// Capacity as the kubelet reports it (cAdvisor's machine info, maxPods 110).
    pub fn capacity(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            ("cpu".into(), self.cpus.to_string()),
            ("ephemeral-storage".into(), format!("{}Ki", self.ephemeral_storage_bytes / 1024)),
            ("hugepages-1Gi".into(), "0".into()),
            ("hugepages-2Mi".into(), "0".into()),
            ("memory".into(), format!("{}Ki", self.memory_bytes / 1024)),
            ("pods".into(), MAX_PODS.to_string()),
        ])
    }

    /// Allocatable: capacity minus the default hard eviction thresholds (memory.available
    /// 100Mi, nodefs.available 10 %), no reservations.
    pub fn allocatable(&self) -> BTreeMap<String, String> {
        let mut a = self.capacity();
        a.insert("memory".into(), format!("{}Ki", self.memory_bytes.saturating_sub(EVICTION_MEMORY_BYTES) / 1024));
        a.insert("ephemeral-storage".into(), (self.ephemeral_storage_bytes / 10 * 9).to_string());
        a
    }
}

/// The node's address when none is given: the hostname if it is an IP, else the first IPv4
/// the hostname resolves to that is not loopback, else the first non-loopback IPv4 of an
/// interface, else 127.0.0.1 (read only: the host's configuration is never changed).
fn guess_ip(hostname: &str) -> String {
    if hostname.parse::<std::net::IpAddr>().is_ok() {
        return hostname.to_string();
    }
    use std::net::ToSocketAddrs;
    if let Ok(addrs) = (hostname, 0).to_socket_addrs() {
        if let Some(a) = addrs.map(|a| a.ip()).find(|ip| ip.is_ipv4() && !ip.is_loopback()) {
            return a.to_string();
        }
    }
    if let Ok(ifaces) = nix::ifaddrs::getifaddrs() {
        for i in ifaces {
            if let Some(sin) = i.address.as_ref().and_then(|a| a.as_sockaddr_in()) {
                let ip = sin.ip();
                if !ip.is_loopback() {
                    return ip.to_string();
                }
            }
        }
    }
    "127.0.0.1".into()
}

/// Go's GOARCH name of this machine.
pub fn goarch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

/// The Node a kubelet registers (initialNode): labels, annotation, and no status (the
/// status is patched right after).
pub fn initial_node(name: &str, machine: &Machine, extra_labels: &BTreeMap<String, String>) -> Value {
    let mut labels = serde_json::Map::new();
    labels.insert("beta.kubernetes.io/arch".into(), json!(goarch()));
    labels.insert("beta.kubernetes.io/os".into(), json!("linux"));
    labels.insert("kubernetes.io/arch".into(), json!(goarch()));
    labels.insert("kubernetes.io/hostname".into(), json!(machine.hostname));
    labels.insert("kubernetes.io/os".into(), json!("linux"));
    for (k, v) in extra_labels {
        labels.insert(k.clone(), json!(v));
    }
    json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": labels,
            "annotations": {"volumes.kubernetes.io/controller-managed-attach-detach": "true"},
        },
        "spec": {},
    })
}

/// One node condition in the kubelet's words.
struct Condition {
    kind: &'static str,
    status: &'static str,
    reason: &'static str,
    message: String,
}

fn conditions(ready_message: &str) -> Vec<Condition> {
    vec![
        Condition {
            kind: "MemoryPressure",
            status: "False",
            reason: "KubeletHasSufficientMemory",
            message: "kubelet has sufficient memory available".into(),
        },
        Condition {
            kind: "DiskPressure",
            status: "False",
            reason: "KubeletHasNoDiskPressure",
            message: "kubelet has no disk pressure".into(),
        },
        Condition {
            kind: "PIDPressure",
            status: "False",
            reason: "KubeletHasSufficientPID",
            message: "kubelet has sufficient PID available".into(),
        },
        // Ready stays last (kubernetes issue #16961).
        Condition { kind: "Ready", status: "True", reason: "KubeletReady", message: ready_message.into() },
    ]
}

/// The Node's status as the kubelet's setters fill it. `previous` is the stored status:
/// a condition's lastTransitionTime changes only when its status flips.
pub fn node_status(machine: &Machine, kubelet_port: u16, version: &str, previous: Option<&Value>, now: &str) -> Value {
    let conds: Vec<Value> = conditions("kubelet is posting ready status")
        .into_iter()
        .map(|c| {
            let prev = previous
                .and_then(|p| p.get("conditions"))
                .and_then(Value::as_array)
                .and_then(|a| a.iter().find(|x| x.get("type").and_then(Value::as_str) == Some(c.kind)));
            let transition = prev
                .filter(|p| p.get("status").and_then(Value::as_str) == Some(c.status))
                .and_then(|p| p.get("lastTransitionTime").cloned())
                .unwrap_or_else(|| json!(now));
            json!({
                "type": c.kind,
                "status": c.status,
                "lastHeartbeatTime": now,
                "lastTransitionTime": transition,
                "reason": c.reason,
                "message": c.message,
            })
        })
        .collect();
    json!({
        "capacity": machine.capacity(),
        "allocatable": machine.allocatable(),
        "conditions": conds,
        "addresses": [
            {"type": "InternalIP", "address": machine.internal_ip},
            {"type": "Hostname", "address": machine.hostname},
        ],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": kubelet_port}},
        "nodeInfo": {
            "machineID": machine.machine_id,
            "systemUUID": machine.system_uuid,
            "bootID": machine.boot_id,
            "kernelVersion": machine.kernel_version,
            "osImage": machine.os_image,
            "containerRuntimeVersion": format!("rkube://{}", env!("CARGO_PKG_VERSION")),
            "kubeletVersion": version,
            "kubeProxyVersion": version,
            "operatingSystem": "linux",
            "architecture": goarch(),
        },
    })
}

/// The status without its heartbeat times: what "changed" compares.
fn without_heartbeats(status: &Value) -> Value {
    let mut s = status.clone();
    if let Some(conds) = s.get_mut("conditions").and_then(Value::as_array_mut) {
        for c in conds {
            if let Some(m) = c.as_object_mut() {
                m.remove("lastHeartbeatTime");
            }
        }
    }
    s
}

fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// Registers the Node (POST; an existing Node keeps its spec, its labels and annotations
/// are reconciled) and reports its first status. Returns the Node's uid.
pub async fn register(client: &Client, name: &str, node: &Value) -> Result<String, kube::Error> {
    let api: Api<Node> = Api::all(client.clone());
    let typed: Node = serde_json::from_value(node.clone()).map_err(kube::Error::SerdeError)?;
    let created = match api.create(&PostParams::default(), &typed).await {
        Ok(n) => n,
        Err(kube::Error::Api(e)) if e.code == 409 => {
            let patch = json!({"metadata": {"labels": node["metadata"]["labels"], "annotations": node["metadata"]["annotations"]}});
            api.patch(name, &PatchParams::default(), &Patch::Merge(&patch)).await?
        }
        Err(e) => return Err(e),
    };
    Ok(created.metadata.uid.unwrap_or_default())
}

/// Keeps the Node's status current until `stop`: computed every 10 s, patched when it
/// changed or every 5 min.
pub async fn status_loop(client: Client, name: String, machine: Machine, kubelet_port: u16, version: String) {
    let api: Api<Node> = Api::all(client);
    let mut last_sent: Option<(Value, std::time::Instant)> = None;
    loop {
        let previous = api.get_status(&name).await.ok().and_then(|n| serde_json::to_value(n.status).ok());
        let status = node_status(&machine, kubelet_port, &version, previous.as_ref(), &now_rfc3339());
        let due = match &last_sent {
            None => true,
            Some((sent, at)) => {
                without_heartbeats(sent) != without_heartbeats(&status) || at.elapsed() >= STATUS_REPORT_PERIOD
            }
        };
        if due {
            match api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&json!({"status": status}))).await {
                Ok(_) => last_sent = Some((status, std::time::Instant::now())),
                Err(e) => tracing::warn!(node = %name, error = %e, "cannot update the node status"),
            }
        }
        tokio::time::sleep(STATUS_UPDATE_PERIOD).await;
    }
}

/// Renews `kube-node-lease/<name>` every leaseDuration/4 (10 s) with a 4 % jitter, creating it
/// (owned by the Node) when missing, as the kubelet's lease controller does.
pub async fn lease_loop(client: Client, name: String, node_uid: String) {
    let api: Api<Lease> = Api::namespaced(client, "kube-node-lease");
    let interval = Duration::from_secs_f64(LEASE_DURATION_SECONDS as f64 * 0.25);
    let mut backoff = Duration::from_millis(200);
    loop {
        let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
        let lease = json!({
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {
                "name": name,
                "namespace": "kube-node-lease",
                "ownerReferences": [{"apiVersion": "v1", "kind": "Node", "name": name, "uid": node_uid}],
            },
            "spec": {"holderIdentity": name, "leaseDurationSeconds": LEASE_DURATION_SECONDS, "renewTime": now},
        });
        let result = match api.get_opt(&name).await {
            Ok(Some(_)) => {
                let patch = json!({"spec": {"holderIdentity": name, "leaseDurationSeconds": LEASE_DURATION_SECONDS, "renewTime": now}});
                api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch)).await.map(|_| ())
            }
            Ok(None) => match serde_json::from_value::<Lease>(lease) {
                Ok(l) => api.create(&PostParams::default(), &l).await.map(|_| ()),
                Err(e) => Err(kube::Error::SerdeError(e)),
            },
            Err(e) => Err(e),
        };
        match result {
            Ok(()) => {
                backoff = Duration::from_millis(200);
                let jitter = interval.mul_f64(0.04 * rand_fraction());
                tokio::time::sleep(interval + jitter).await;
            }
            Err(e) => {
                tracing::warn!(node = %name, error = %e, "cannot renew the node lease");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(7));
            }
        }
    }
}

/// A number in [0, 1) (jitter needs no quality).
fn rand_fraction() -> f64 {
    (uuid::Uuid::new_v4().as_u128() % 10_000) as f64 / 10_000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn machine() -> Machine {
        Machine {
            hostname: "box".into(),
            cpus: 2,
            memory_bytes: 4 * 1024 * 1024 * 1024,
            ephemeral_storage_bytes: 100 * 1024 * 1024 * 1024,
            machine_id: "m".into(),
            system_uuid: "u".into(),
            boot_id: "b".into(),
            kernel_version: "6.1.0".into(),
            os_image: "Debian GNU/Linux 12 (bookworm)".into(),
            internal_ip: "192.0.2.10".into(),
        }
    }

    #[test]
    fn status_has_the_kubelets_conditions_with_ready_last() {
        let s = node_status(&machine(), 10250, "v1.33.0", None, "2026-12-02T10:00:00Z");
        let types: Vec<&str> =
            s["conditions"].as_array().unwrap().iter().map(|c| c["type"].as_str().unwrap()).collect();
        assert_eq!(types, ["MemoryPressure", "DiskPressure", "PIDPressure", "Ready"]);
        assert_eq!(s["conditions"][3]["reason"], "KubeletReady");
        assert_eq!(s["conditions"][3]["message"], "kubelet is posting ready status");
        assert_eq!(s["capacity"]["memory"], "4194304Ki");
        assert_eq!(s["allocatable"]["memory"], "4091904Ki");
        assert_eq!(s["capacity"]["pods"], "110");
        assert_eq!(s["daemonEndpoints"]["kubeletEndpoint"]["Port"], 10250);
        assert_eq!(s["addresses"][0], json!({"type": "InternalIP", "address": "192.0.2.10"}));
        // A later status keeps the transition time of an unchanged condition.
        let later = node_status(&machine(), 10250, "v1.33.0", Some(&s), "2026-12-02T10:00:10Z");
        assert_eq!(later["conditions"][3]["lastTransitionTime"], "2026-12-02T10:00:00Z");
        assert_eq!(later["conditions"][3]["lastHeartbeatTime"], "2026-12-02T10:00:10Z");
        assert_eq!(without_heartbeats(&s), without_heartbeats(&later));
    }

    #[test]
    fn labels_are_the_kubelets() {
        let n = initial_node("box", &machine(), &BTreeMap::from([("role".to_string(), "ci".to_string())]));
        let labels = n["metadata"]["labels"].as_object().unwrap();
        assert_eq!(labels["kubernetes.io/hostname"], "box");
        assert_eq!(labels["kubernetes.io/os"], "linux");
        assert_eq!(labels["kubernetes.io/arch"], goarch());
        assert_eq!(labels["beta.kubernetes.io/os"], "linux");
        assert_eq!(labels["role"], "ci");
    }
}
