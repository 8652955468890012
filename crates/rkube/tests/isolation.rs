//! What a pod may not reach on its node, and what it sees of itself, as a container runtime
//! gives it: the host's directories under a writable layer of the container's own (nothing
//! it writes reaches the host), a process namespace per container (the pod's with
//! `shareProcessNamespace`, the node's with `hostPID`, the target's for an ephemeral
//! container) with its own /proc, runc's few devices and the device cgroup, the kernel's
//! sensitive files covered, /proc/sys and /sys read-only, the host's password hashes hidden.

mod common;

use std::collections::BTreeSet;
use std::os::unix::fs::FileTypeExt;
use std::time::Duration;

use common::pods::*;
use common::{wait_for, Server};
use serde_json::json;

const PODS: &str = "/api/v1/namespaces/default/pods";

fn sleeper(name: &str, extra: serde_json::Value) -> serde_json::Value {
    let mut pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
        "spec": {"terminationGracePeriodSeconds": 1,
                 "containers": [{"name": "main", "image": "busybox", "command": ["sleep", "3600"]}]}});
    for (k, v) in extra.as_object().unwrap() {
        pod["spec"][k] = v.clone();
    }
    pod
}

#[test]
fn writes_outside_the_volumes_go_to_the_containers_own_layer_never_to_the_host() {
    let s = Server::start_with_node(&["--node-ip", "127.0.0.1"]);
    let (_keep, out) = out_dir();
    let marker = format!("rkube-layer-{}", std::process::id());
    // Every start checks for what an earlier start of the container wrote, then writes it.
    let script = format!(
        "if [ -e /etc/{marker} ]; then echo stale >> /out/runs; else echo fresh >> /out/runs; fi; \
         echo pod > /etc/{marker}; mkdir -p /usr/local/{marker}; echo ok > /usr/local/{marker}/f; sleep 8; exit 1"
    );
    create(&s, PODS, &shell_pod("writer", &script, &out, json!({"restartPolicy": "OnFailure"})));
    wait_phase(&s, "writer", "Running", 30);
    assert!(
        wait_for(Duration::from_secs(10), || std::fs::read_to_string(out.join("runs")).is_ok_and(|r| r == "fresh\n"))
    );
    // The container reads back what it wrote; the host has none of it.
    assert_eq!(s.kubectl_ok(&["exec", "writer", "--", "cat", &format!("/etc/{marker}")]), "pod\n");
    assert!(!std::path::Path::new(&format!("/etc/{marker}")).exists(), "nothing written into the host's /etc");
    assert!(!std::path::Path::new(&format!("/usr/local/{marker}")).exists(), "nor into /usr");
    // The host's files are all there below the layer.
    let os = s.kubectl_ok(&["exec", "writer", "--", "cat", "/etc/os-release"]);
    assert_eq!(os, std::fs::read_to_string("/etc/os-release").unwrap());
    // A restarted container is a new container: a fresh layer.
    let mut runs = String::new();
    assert!(
        wait_for(Duration::from_secs(40), || {
            runs = std::fs::read_to_string(out.join("runs")).unwrap_or_default();
            runs.lines().count() >= 2
        }),
        "the container restarts: {runs:?}"
    );
    assert_eq!(runs.lines().take(2).collect::<Vec<_>>(), ["fresh", "fresh"], "each start sees the host's files only");
    assert!(!std::path::Path::new(&format!("/etc/{marker}")).exists());
}

#[test]
fn a_container_sees_its_own_processes_and_only_the_runtimes_devices() {
    let s = Server::start_with_node(&["--node-ip", "127.0.0.1"]);
    create(&s, PODS, &sleeper("plain", json!({})));
    wait_phase(&s, "plain", "Running", 30);
    let sh = |script: &str| {
        let o = s.kubectl(&["exec", "plain", "--", "sh", "-c", script]);
        String::from_utf8_lossy(&o.stdout).to_string() + &String::from_utf8_lossy(&o.stderr)
    };

    // Its program is pid 1; /proc lists its own processes, not the host's.
    assert_eq!(sh("cat /proc/1/cmdline | tr '\\0' ' '"), "sleep 3600 ");
    let listed: BTreeSet<u32> = sh("ls /proc").split_whitespace().filter_map(|p| p.parse().ok()).collect();
    assert!(listed.contains(&1) && listed.len() <= 6, "the container's processes only: {listed:?}");
    assert!(!sh("ls /proc").split_whitespace().any(|p| p == std::process::id().to_string()));
    // Pid 1 with no handler is not ended by SIGTERM from inside, as in any container.
    sh("kill -TERM 1; sleep 0.5");
    let pod = get(&s, &pod_path("plain"));
    assert_eq!(pod["status"]["containerStatuses"][0]["restartCount"], 0, "{pod:#}");
    assert!(pod["status"]["containerStatuses"][0]["state"]["running"].is_object());

    // runc's /dev: a handful of devices, a devpts of its own, /dev/shm, the standard links.
    let dev: Vec<String> = sh("ls /dev").split_whitespace().map(String::from).collect();
    let want = [
        "core",
        "fd",
        "full",
        "null",
        "ptmx",
        "pts",
        "random",
        "shm",
        "stderr",
        "stdin",
        "stdout",
        "termination-log",
        "tty",
        "urandom",
        "zero",
    ];
    assert_eq!(dev, want, "the container's /dev");
    assert_eq!(sh("head -c 4 /dev/zero | od -An -tx1").trim(), "00 00 00 00");
    assert_eq!(sh("grep ' /dev/pts ' /proc/mounts | cut -d' ' -f3"), "devpts\n");
    // A device node it makes of the host's disk cannot be opened (the device cgroup).
    let root_dev = {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata("/").unwrap().dev()
    };
    let (major, minor) = (nix::sys::stat::major(root_dev), nix::sys::stat::minor(root_dev));
    // (Made in the writable layer: /tmp is a nodev tmpfs anyway.)
    let opened = sh(&format!("mknod /etc/disk b {major} {minor} && head -c 16 /etc/disk | wc -c"));
    assert!(opened.contains("Operation not permitted"), "the host's disk stays closed: {opened}");

    // The kernel's sensitive files covered, /proc/sys and /sys read-only.
    assert_eq!(sh("cat /proc/keys /proc/timer_list 2>&1 | wc -c").trim(), "0");
    let ro = sh("echo 1 > /proc/sys/vm/drop_caches; echo x > /sys/kernel/uevent_helper");
    assert_eq!(ro.matches("Read-only file system").count(), 2, "{ro}");
    // The host's password hashes are not the container's to read.
    if std::path::Path::new("/etc/shadow").exists() {
        assert_eq!(sh("wc -c < /etc/shadow").trim(), "0");
    }

    // A privileged container has the host's devices.
    let mut pod = sleeper("privileged", json!({}));
    pod["spec"]["containers"][0]["securityContext"] = json!({"privileged": true});
    create(&s, PODS, &pod);
    wait_phase(&s, "privileged", "Running", 30);
    let host_blocks: BTreeSet<String> = std::fs::read_dir("/dev")
        .unwrap()
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_block_device()))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    let names: Vec<&str> = host_blocks.iter().map(|n| n.as_str()).collect();
    let script = format!("cd /dev && for d in {}; do stat -c '%n %F' $d; done", names.join(" "));
    let seen = s.kubectl_ok(&["exec", "privileged", "--", "sh", "-c", &script]);
    let seen: BTreeSet<String> =
        seen.lines().filter_map(|l| l.strip_suffix(" block special file")).map(String::from).collect();
    assert_eq!(seen, host_blocks, "the privileged container has the host's block devices");
}

#[test]
fn process_namespaces_are_the_pods_with_share_process_namespace_the_nodes_with_host_pid() {
    let s = Server::start_with_node(&["--node-ip", "127.0.0.1"]);
    let mut pod = sleeper("shared", json!({"shareProcessNamespace": true}));
    pod["spec"]["containers"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "side", "image": "busybox", "command": ["sleep", "3601"]}));
    create(&s, PODS, &pod);
    create(&s, PODS, &sleeper("host", json!({"hostPID": true})));
    create(&s, PODS, &sleeper("alone", json!({})));
    for p in ["shared", "host", "alone"] {
        wait_phase(&s, p, "Running", 30);
    }
    let ps = |pod: &str, c: &str| s.kubectl_ok(&["exec", pod, "-c", c, "--", "ps", "-eo", "pid,args"]);

    // Shared: pid 1 is the pod's pause process, both containers' programs are there.
    let seen = ps("shared", "side");
    let first = seen.lines().nth(1).unwrap_or_default().split_whitespace().collect::<Vec<_>>();
    assert_eq!(first.first(), Some(&"1"), "{seen}");
    assert!(first.last() == Some(&"__pause"), "the pause process is pid 1: {seen}");
    assert!(seen.contains("sleep 3600") && seen.contains("sleep 3601"), "{seen}");
    // Not pid 1, the main container's program ends on SIGTERM: the container restarts.
    s.kubectl_ok(&["exec", "shared", "-c", "side", "--", "pkill", "-TERM", "-f", "sleep 3600"]);
    assert!(
        wait_for(Duration::from_secs(30), || {
            get(&s, &pod_path("shared"))["status"]["containerStatuses"]
                .as_array()
                .is_some_and(|c| c.iter().any(|c| c["name"] == "main" && c["restartCount"] == 1))
        }),
        "main restarted after SIGTERM"
    );

    // A pause process that dies takes the namespace's processes with it; a new one comes and
    // the containers run again in its namespace.
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(host_pid(&s, "shared", 1)), nix::sys::signal::Signal::SIGKILL)
        .unwrap();
    assert!(
        wait_for(Duration::from_secs(40), || {
            let seen = s.kubectl(&["exec", "shared", "-c", "side", "--", "ps", "-eo", "pid,args"]);
            let seen = String::from_utf8_lossy(&seen.stdout).to_string();
            let restarted = get(&s, &pod_path("shared"))["status"]["containerStatuses"]
                .as_array()
                .is_some_and(|c| c.iter().all(|c| c["restartCount"].as_i64() >= Some(1)));
            restarted && seen.contains("__pause") && seen.contains("sleep 3600") && seen.contains("sleep 3601")
        }),
        "the pod's containers run again under a new pause process"
    );

    // hostPID: the node's processes, this test's among them.
    let seen = ps("host", "main");
    let me = std::process::id().to_string();
    assert!(seen.lines().any(|l| l.split_whitespace().next() == Some(me.as_str())), "{seen}");

    // Its own: only itself (and the ps).
    let seen = ps("alone", "main");
    assert_eq!(seen.lines().count(), 3, "{seen}");

    // An ephemeral container with a target runs in the target's namespace; without, in its own.
    s.kubectl_ok(&["debug", "alone", "--image=busybox", "--target=main", "-c", "peek", "--", "ps", "-eo", "pid,args"]);
    s.kubectl_ok(&["debug", "alone", "--image=busybox", "-c", "solo", "--", "ps", "-eo", "pid,args"]);
    let logs = |c: &str| {
        let mut text = String::new();
        wait_for(Duration::from_secs(30), || {
            let o = s.kubectl(&["logs", "alone", "-c", c]);
            text = String::from_utf8_lossy(&o.stdout).to_string();
            text.contains("ps -eo")
        });
        text
    };
    let peek = logs("peek");
    assert!(peek.contains("1 sleep 3600"), "the target's processes: {peek}");
    let solo = logs("solo");
    assert!(!solo.contains("sleep 3600") && solo.lines().count() == 2, "its own namespace: {solo}");

    // Every process of the shared pod ends with it, the pause process too.
    let pids: Vec<i32> = pod_pids(&s, "shared").into_iter().map(|(h, _)| h).collect();
    assert!(pids.len() >= 3, "{pids:?}");
    let (code, _, body) = s.curl("DELETE", &pod_path("shared"), None, &[]);
    assert_eq!(code, 200, "{body}");
    assert!(wait_for(Duration::from_secs(20), || pids.iter().all(|p| !alive(*p))), "{pids:?}");
}
