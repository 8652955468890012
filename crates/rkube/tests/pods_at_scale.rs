//! The node agent under load and at its limits, through the real binary: a hundred pods at
//! once (addresses, network namespaces, processes, all gone after), containers over their
//! memory limit (OOMKilled) or CPU-limited, memory-backed emptyDirs (a tmpfs shared by the
//! pod's containers, unmounted after) and emptyDirs over their sizeLimit (evicted). Pods
//! write what they see to a hostPath the test reads.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use common::pods::{
    alive, create, events_for, get, host_pid, named_netns, netns_inode, out_dir, pod_path, shell_pod, wait_file,
    wait_phase,
};
use common::{wait_for, Server};
use serde_json::{json, Value};

const PODS: &str = "/api/v1/namespaces/default/pods";

fn delete(s: &Server, name: &str) {
    let (code, _, body) = s.curl("DELETE", &pod_path(name), None, &[]);
    assert_eq!(code, 200, "{body}");
}

fn gone(s: &Server, name: &str) -> bool {
    s.curl("GET", &pod_path(name), None, &[]).0 == 404
}

/// This process's mounts at or under `dir`: (mount id, mount point, file system type, options).
fn mounts_under(dir: &Path) -> Vec<(String, String, String, String)> {
    let dir = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    let dir = dir.display().to_string();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter_map(|l| {
            let (left, right) = l.split_once(" - ")?;
            let f: Vec<&str> = left.split(' ').collect();
            let r: Vec<&str> = right.split(' ').collect();
            let point = f.get(4)?.to_string();
            if point != dir && !point.starts_with(&format!("{dir}/")) {
                return None;
            }
            Some((f[0].to_string(), point, r.first()?.to_string(), r.get(2).map(|s| s.to_string()).unwrap_or_default()))
        })
        .collect()
}

#[test]
fn a_hundred_pods_start_at_once_with_their_own_addresses_and_leave_nothing_behind() {
    const N: usize = 100;
    let s = Server::start_with_node(&[]);
    let (_keep, out) = out_dir();
    let names: Vec<String> = (0..N).map(|i| format!("scale-{i:03}")).collect();
    // Four clients creating at once.
    std::thread::scope(|scope| {
        for chunk in names.chunks(N / 4) {
            let (s, out) = (&s, &out);
            scope.spawn(move || {
                for name in chunk {
                    let script = format!(
                        "echo $$$$ > /out/{name}.pid; readlink /proc/self/ns/net > /out/{name}.net; echo end >> /out/{name}.net; exec sleep 3600"
                    );
                    let mut pod = shell_pod(name, &script, out, json!({}));
                    pod["metadata"]["labels"]["batch"] = json!("scale");
                    create(s, PODS, &pod);
                }
            });
        }
    });

    // All Running (a bound on correctness, not a timing assertion).
    let mut pods: Vec<Value> = Vec::new();
    let running = wait_for(Duration::from_secs(120), || {
        pods = get(&s, &format!("{PODS}?labelSelector=batch%3Dscale"))["items"].as_array().cloned().unwrap_or_default();
        pods.len() == N && pods.iter().all(|p| p["status"]["phase"] == "Running" && p["status"]["podIP"].is_string())
    });
    let phases: BTreeMap<String, usize> = pods.iter().fold(BTreeMap::new(), |mut m, p| {
        *m.entry(p["status"]["phase"].as_str().unwrap_or("-").to_string()).or_default() += 1;
        m
    });
    assert!(running, "{} pods, phases {phases:?}", pods.len());

    // Each its own address in the pod network.
    let ips: BTreeSet<String> = pods.iter().map(|p| p["status"]["podIP"].as_str().unwrap().to_string()).collect();
    assert_eq!(ips.len(), N, "distinct pod IPs: {ips:?}");
    for ip in &ips {
        let a: std::net::Ipv4Addr = ip.parse().unwrap();
        assert_eq!(&a.octets()[..2], &[10, 244], "{ip} in 10.244.0.0/16");
        assert_eq!(pods.iter().filter(|p| p["status"]["podIPs"][0]["ip"] == ip.as_str()).count(), 1);
    }

    // Each its own process and named network namespace.
    let mut pids = Vec::new();
    let mut inodes = BTreeSet::new();
    for name in &names {
        inodes.insert(netns_inode(&wait_file(&out.join(format!("{name}.net")), 30)));
        let pid: i32 = std::fs::read_to_string(out.join(format!("{name}.pid"))).unwrap().trim().parse().unwrap();
        assert_eq!(pid, 1, "{name}'s program is pid 1 of its own process namespace");
        let pid = host_pid(&s, name, pid);
        assert!(alive(pid), "{name}'s process runs");
        pids.push(pid);
    }
    assert_eq!(inodes.len(), N, "a network namespace per pod");
    let named = named_netns(&inodes);
    assert_eq!(named.len(), N, "every pod's namespace is named in /run/netns");

    // All deleted at once: gone from the API, their processes ended, their namespaces and
    // directories removed.
    let (code, _, body) = s.curl("DELETE", &format!("{PODS}?labelSelector=batch%3Dscale"), None, &[]);
    assert_eq!(code, 200, "{body}");
    let mut left = 0;
    assert!(
        wait_for(Duration::from_secs(120), || {
            left = get(&s, &format!("{PODS}?labelSelector=batch%3Dscale"))["items"]
                .as_array()
                .map_or(usize::MAX, Vec::len);
            left == 0
        }),
        "{left} pods left"
    );
    assert!(
        wait_for(Duration::from_secs(30), || pids.iter().all(|p| !alive(*p))),
        "processes left: {:?}",
        pids.iter().filter(|p| alive(**p)).collect::<Vec<_>>()
    );
    assert!(
        wait_for(Duration::from_secs(30), || named.iter().all(|p| !p.exists())),
        "{} pod network namespaces left in /run/netns",
        named.iter().filter(|p| p.exists()).count()
    );
    let pods_dir = s.dir.join("node/pods");
    assert!(
        wait_for(Duration::from_secs(30), || std::fs::read_dir(&pods_dir).map_or(true, |d| d.count() == 0)),
        "pod directories left in {}",
        pods_dir.display()
    );
}

/// The value of a cgroup file of `pid`'s cgroup for `controller` (v1), or of the unified
/// hierarchy (v2) when `v2_file` is given.
fn cgroup_file(pid: i32, controller: &str, v1_file: &str, v2_file: &str) -> Option<String> {
    let own = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    let v1 = own.lines().find_map(|l| {
        let mut parts = l.splitn(3, ':');
        let (_, ctrls, path) = (parts.next()?, parts.next()?, parts.next()?);
        ctrls.split(',').any(|c| c == controller).then(|| path.to_string())
    });
    let file = match v1 {
        Some(path) => format!("/sys/fs/cgroup/{controller}{path}/{v1_file}"),
        None => format!("/sys/fs/cgroup{}/{v2_file}", own.lines().find_map(|l| l.strip_prefix("0::"))?),
    };
    std::fs::read_to_string(file).ok().map(|t| t.trim().to_string())
}

#[test]
fn a_container_over_its_memory_limit_is_oom_killed_and_a_cpu_limited_one_runs() {
    let python = "/usr/bin/python3";
    if !Path::new(python).exists() {
        eprintln!("SKIPPED: {python} not found");
        return;
    }
    let s = Server::start_with_node(&[]);
    let (_keep, out) = out_dir();
    // The limit applies once the program runs: the allocation comes a moment later.
    let script =
        format!("sleep 1; exec {python} -c 'b = bytearray(200 * 1024 * 1024); b[:] = bytes(len(b)); print(len(b))'");
    let mut hog = shell_pod("hog", &script, &out, json!({}));
    hog["spec"]["restartPolicy"] = json!("Never");
    hog["spec"]["containers"][0]["resources"] = json!({"limits": {"memory": "50Mi"}});
    create(&s, PODS, &hog);

    let mut spin = shell_pod(
        "spin",
        "echo $$$$ > /out/spin.pid; i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done; echo $i > /out/spin; echo end >> /out/spin; exec sleep 3600",
        &out,
        json!({}),
    );
    spin["spec"]["containers"][0]["resources"] = json!({"limits": {"cpu": "200m", "memory": "64Mi"}});
    create(&s, PODS, &spin);

    let pod = wait_phase(&s, "hog", "Failed", 60);
    let t = &pod["status"]["containerStatuses"][0]["state"]["terminated"];
    assert_eq!(t["reason"], "OOMKilled", "{pod:#}");
    assert_eq!(t["exitCode"], 137, "{pod:#}");
    assert_eq!(pod["status"]["containerStatuses"][0]["restartCount"], 0, "restartPolicy Never");

    assert_eq!(wait_file(&out.join("spin"), 60).trim(), "20000", "a CPU-limited container runs to the end");
    let pod = wait_phase(&s, "spin", "Running", 10);
    assert_eq!(pod["status"]["containerStatuses"][0]["restartCount"], 0);
    let pid: i32 = std::fs::read_to_string(out.join("spin.pid")).unwrap().trim().parse().unwrap();
    let pid = host_pid(&s, "spin", pid);
    let quota = cgroup_file(pid, "cpu", "cpu.cfs_quota_us", "cpu.max");
    assert!(matches!(quota.as_deref(), Some("20000") | Some("20000 100000")), "200m of CPU: {quota:?}");
    let memory = cgroup_file(pid, "memory", "memory.limit_in_bytes", "memory.max");
    assert_eq!(memory.as_deref(), Some("67108864"), "64Mi of memory");
    assert!(!events_for(&s, "spin").iter().any(|(r, _)| r == "LimitsNotApplied"), "{:?}", events_for(&s, "spin"));
}

/// A pod whose two containers share a memory-backed emptyDir at /cache.
fn memory_volume_pod(out: &Path, size_limit: &str) -> Value {
    let writer = "grep ' /cache ' /proc/mounts > /out/mounts; stat -c %a /cache > /out/mode; \
        echo shared > /cache/.hello; mv /cache/.hello /cache/hello; echo end >> /out/mounts; exec sleep 3600";
    let reader = "while [ ! -e /cache/hello ]; do sleep 0.1; done; cat /cache/hello > /out/seen; \
        grep ' /cache ' /proc/mounts >> /out/seen; echo end >> /out/seen; exec sleep 3600";
    let mut pod = shell_pod("memvol", writer, out, json!({}));
    let mounts = json!([{"name": "out", "mountPath": "/out"}, {"name": "cache", "mountPath": "/cache"}]);
    pod["spec"]["containers"][0]["volumeMounts"] = mounts.clone();
    pod["spec"]["containers"].as_array_mut().unwrap().push(
        json!({"name": "reader", "image": "busybox", "command": ["/bin/sh", "-c", reader], "volumeMounts": mounts}),
    );
    pod["spec"]["volumes"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "cache", "emptyDir": {"medium": "Memory", "sizeLimit": size_limit}}));
    pod
}

#[test]
fn a_memory_empty_dir_is_a_tmpfs_shared_by_the_pods_containers_and_unmounted_after() {
    let data = tempfile::tempdir().unwrap();
    let mut s = Server::start_in_with_node(data.path(), &[]);
    let (_keep, out) = out_dir();
    create(&s, PODS, &memory_volume_pod(&out, "16Mi"));

    // A tmpfs of the sizeLimit, in the container...
    let mounts = wait_file(&out.join("mounts"), 30);
    let fields: Vec<&str> = mounts.split_whitespace().collect();
    assert_eq!(fields.get(2), Some(&"tmpfs"), "{mounts}");
    assert!(fields[3].split(',').any(|o| o == "size=16384k"), "{mounts}");
    // ...with the mode of a tmpfs the kubelet mounts (no mode option: 1777).
    assert_eq!(std::fs::read_to_string(out.join("mode")).unwrap().trim(), "1777");
    // ...that the other container sees too.
    let seen = wait_file(&out.join("seen"), 30);
    assert!(seen.starts_with("shared\n"), "{seen}");
    assert!(seen.contains(" /cache tmpfs "), "{seen}");

    // On the host: one tmpfs in the pod's directory, under the agent's root.
    let root = data.path().join("node");
    let on_host = mounts_under(data.path());
    assert_eq!(on_host.len(), 1, "{on_host:?}");
    let (_, point, fstype, _) = on_host[0].clone();
    assert_eq!(fstype, "tmpfs");
    assert!(point.starts_with(&std::fs::canonicalize(&root).unwrap().display().to_string()), "{point}");
    assert!(point.ends_with("/volumes/kubernetes.io~empty-dir/cache"), "{point}");

    // An agent that died leaves its mount; the next one unmounts it before the pod's
    // directory goes, and mounts a fresh one when it runs the pod again.
    // (A handle on the old tmpfs keeps its device number from being reused.)
    use std::os::unix::fs::MetadataExt;
    let old = std::fs::File::open(&point).unwrap();
    s.kill9();
    assert_eq!(mounts_under(data.path()).len(), 1, "the mount outlives a killed agent");
    std::fs::remove_file(out.join("mounts")).unwrap();
    std::fs::remove_file(out.join("seen")).unwrap();
    let s = Server::start_in_with_node(data.path(), &[]);
    let seen = wait_file(&out.join("seen"), 60);
    assert!(seen.starts_with("shared\n"), "{seen}");
    let again = mounts_under(data.path());
    assert_eq!(again.len(), 1, "{again:?}");
    let new_dev = std::fs::metadata(&again[0].1).unwrap().dev();
    assert_ne!(new_dev, old.metadata().unwrap().dev(), "a new tmpfs, not the old one: {again:?}");
    drop(old);

    // Deleted: no mount remains on the host, nor the pod's directory.
    delete(&s, "memvol");
    assert!(wait_for(Duration::from_secs(30), || gone(&s, "memvol")), "the pod is deleted");
    assert!(
        wait_for(Duration::from_secs(15), || mounts_under(data.path()).is_empty()),
        "{:?}",
        mounts_under(data.path())
    );
    assert!(wait_for(Duration::from_secs(15), || std::fs::read_dir(root.join("pods")).map_or(true, |d| d.count() == 0)));
}

#[test]
fn an_empty_dir_over_its_size_limit_gets_the_pod_evicted() {
    let s = Server::start_with_node(&[]);
    let (_keep, out) = out_dir();
    let mut pod = shell_pod(
        "filler",
        "echo $$$$ > /out/pid; head -c 4194304 /dev/zero > /scratch/fill; echo end >> /out/pid; exec sleep 3600",
        &out,
        json!({}),
    );
    pod["spec"]["containers"][0]["volumeMounts"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "scratch", "mountPath": "/scratch"}));
    pod["spec"]["volumes"].as_array_mut().unwrap().push(json!({"name": "scratch", "emptyDir": {"sizeLimit": "1Mi"}}));
    create(&s, PODS, &pod);
    let pid: i32 = wait_file(&out.join("pid"), 30).trim().parse().unwrap();
    let pid = host_pid(&s, "filler", pid);

    // The eviction manager checks every 10 s.
    let pod = wait_phase(&s, "filler", "Failed", 40);
    let message = "Usage of EmptyDir volume \"scratch\" exceeds the limit \"1Mi\". ";
    assert_eq!(pod["status"]["reason"], "Evicted", "{pod:#}");
    assert_eq!(pod["status"]["message"], message);
    let cs = &pod["status"]["containerStatuses"][0];
    assert!(cs["state"]["terminated"].is_object(), "{cs:#}");
    assert_eq!(cs["ready"], false);
    assert!(wait_for(Duration::from_secs(10), || !alive(pid)), "the container is killed");
    assert!(
        wait_for(Duration::from_secs(10), || events_for(&s, "filler")
            .contains(&("Evicted".to_string(), message.to_string()))),
        "{:?}",
        events_for(&s, "filler")
    );
    // Not restarted: the pod stays Failed (restartPolicy Always notwithstanding).
    std::thread::sleep(Duration::from_secs(3));
    let pod = get(&s, &pod_path("filler"));
    assert_eq!(pod["status"]["phase"], "Failed");
    assert_eq!(pod["status"]["containerStatuses"][0]["restartCount"], 0, "{pod:#}");
}
