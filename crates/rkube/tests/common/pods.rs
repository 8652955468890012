//! What pod tests share: API calls through curl, pods that write what they see to a host
//! directory mounted at /out, and waits bounded in time.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{json, Value};

use super::{wait_for, Server};

pub fn get(s: &Server, path: &str) -> Value {
    let (code, _, body) = s.curl("GET", path, None, &[]);
    if code != 200 {
        return Value::Null;
    }
    serde_json::from_str(&body).unwrap_or(Value::Null)
}

pub fn create(s: &Server, path: &str, obj: &Value) -> Value {
    let body = obj.to_string();
    let (code, _, out) = s.curl("POST", path, Some(body.as_bytes()), &["Content-Type: application/json"]);
    assert_eq!(code, 201, "create {path}: {out}");
    serde_json::from_str(&out).unwrap()
}

pub fn node_name(s: &Server) -> String {
    let mut name = String::new();
    assert!(
        wait_for(Duration::from_secs(20), || {
            let nodes = get(s, "/api/v1/nodes");
            if let Some(n) = nodes["items"].as_array().and_then(|a| a.first()) {
                name = n["metadata"]["name"].as_str().unwrap_or("").to_string();
            }
            !name.is_empty()
        }),
        "the node registers"
    );
    name
}

/// A pod running `script` under /bin/sh with `out` (a host directory) mounted at /out.
pub fn shell_pod(name: &str, script: &str, out: &Path, extra_spec: Value) -> Value {
    command_pod(name, vec!["/bin/sh".into(), "-c".into(), script.into()], out, extra_spec)
}

/// A pod whose one container `main` runs `command`, with `out` (a host directory) mounted
/// at /out; `extra_spec` fields are set on its spec.
pub fn command_pod(name: &str, command: Vec<String>, out: &Path, extra_spec: Value) -> Value {
    let mut pod = json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {
            "terminationGracePeriodSeconds": 5,
            "containers": [{
                "name": "main",
                "image": "busybox",
                "command": command,
                "volumeMounts": [{"name": "out", "mountPath": "/out"}],
            }],
            "volumes": [{"name": "out", "hostPath": {"path": out.display().to_string()}}],
        },
    });
    if let (Some(spec), Some(extra)) = (pod["spec"].as_object_mut(), extra_spec.as_object()) {
        for (k, v) in extra {
            spec.insert(k.clone(), v.clone());
        }
    }
    pod
}

pub fn pod_path(name: &str) -> String {
    format!("/api/v1/namespaces/default/pods/{name}")
}

pub fn wait_phase(s: &Server, name: &str, phase: &str, secs: u64) -> Value {
    let mut pod = Value::Null;
    let ok = wait_for(Duration::from_secs(secs), || {
        pod = get(s, &pod_path(name));
        pod["status"]["phase"] == phase
    });
    assert!(ok, "pod {name} never reached {phase}: {pod:#}");
    pod
}

pub fn wait_file(path: &Path, secs: u64) -> String {
    let mut text = String::new();
    let ok = wait_for(Duration::from_secs(secs), || {
        text = std::fs::read_to_string(path).unwrap_or_default();
        // Scripts finish a file with a line "end".
        text.ends_with("end\n")
    });
    assert!(ok, "{} never completed; has {text:?}", path.display());
    text.trim_end_matches("end\n").to_string()
}

pub fn alive(pid: i32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default().contains(") Z ")
}

pub fn out_dir() -> (tempfile::TempDir, PathBuf) {
    let d = tempfile::tempdir().expect("tempdir");
    let p = d.path().to_path_buf();
    (d, p)
}

/// The interpreter `python3` runs (an absolute path: the container's PATH is a runtime's).
pub fn python() -> Option<String> {
    let out = std::process::Command::new("python3")
        .args(["-c", "import kubernetes, sys; print(sys.executable)"])
        .output()
        .ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

pub fn which(tool: &str) -> String {
    let out = std::process::Command::new("sh").args(["-c", &format!("command -v {tool}")]).output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

pub fn events_for(s: &Server, pod: &str) -> Vec<(String, String)> {
    let evs = get(s, "/api/v1/namespaces/default/events");
    evs["items"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter(|e| e["involvedObject"]["name"] == pod)
                .map(|e| {
                    (e["reason"].as_str().unwrap_or("").to_string(), e["message"].as_str().unwrap_or("").to_string())
                })
                .collect()
        })
        .unwrap_or_default()
}

/// `net:[4026532178]` (readlink /proc/self/ns/net) as its inode.
pub fn netns_inode(link: &str) -> u64 {
    link.trim().trim_start_matches("net:[").trim_end_matches(']').parse().unwrap_or_else(|_| panic!("{link:?}"))
}

/// The /run/netns entries whose namespace has one of `inodes`. Names, not inode numbers,
/// are what a test checks afterwards: the kernel reuses the number of a namespace that is
/// gone for the next one made (by any test running alongside).
pub fn named_netns(inodes: &std::collections::BTreeSet<u64>) -> Vec<PathBuf> {
    use std::os::unix::fs::MetadataExt;
    std::fs::read_dir("/run/netns")
        .map(|d| {
            d.flatten()
                .filter(|e| std::fs::metadata(e.path()).is_ok_and(|m| inodes.contains(&m.ino())))
                .map(|e| e.path())
                .collect()
        })
        .unwrap_or_default()
}

/// The seeds' RBAC step: the default service account may read the namespace.
pub fn default_may_view(s: &Server) {
    create(
        s,
        "/apis/rbac.authorization.k8s.io/v1/namespaces/default/rolebindings",
        &json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": {"name": "default-view"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"},
            "subjects": [{"kind": "ServiceAccount", "name": "default", "namespace": "default"}],
        }),
    );
}

/// The processes of a running pod as the host numbers them, each with the number it has in
/// the pod (every container has a process namespace of its own, so a pod's `$$` is not a
/// host pid), read from the pod's cgroups.
pub fn pod_pids(s: &Server, name: &str) -> Vec<(i32, i32)> {
    let uid = get(s, &pod_path(name))["metadata"]["uid"].as_str().unwrap_or_default().to_string();
    let mut records = Vec::new();
    super::records(&s.dir, "cgroups", 3, &mut records);
    let mut out = Vec::new();
    // The first hierarchy an agent names holds every process (pids on cgroup v1, the unified one on v2).
    for base in records.iter().filter_map(|r| r.lines().next()) {
        let pod = Path::new(base).join(&uid);
        for c in std::fs::read_dir(&pod).into_iter().flatten().flatten() {
            let procs = std::fs::read_to_string(c.path().join("cgroup.procs")).unwrap_or_default();
            for host in procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
                let status = std::fs::read_to_string(format!("/proc/{host}/status")).unwrap_or_default();
                let inner = status
                    .lines()
                    .find_map(|l| l.strip_prefix("NSpid:"))
                    .and_then(|v| v.split_whitespace().last().and_then(|p| p.parse().ok()));
                if let Some(inner) = inner {
                    out.push((host, inner));
                }
            }
        }
    }
    out
}

/// The host pid of the pod's process numbered `inner` in its own namespace (each container's
/// program is 1 in its own; with several containers, the first found).
pub fn host_pid(s: &Server, name: &str, inner: i32) -> i32 {
    let pids = pod_pids(s, name);
    pids.iter()
        .find(|(_, i)| *i == inner)
        .map(|(h, _)| *h)
        .unwrap_or_else(|| panic!("pod {name}: no process {inner} in {pids:?}"))
}
