//! Upstream's test image `agnhost`, as the conformance suite runs it: the image map runs
//! rkube's own emulation of its `pause`, `etc-hosts` and `mounttest` subcommands, whose
//! output the suite compares line by line.

mod common;

use std::time::Duration;

use common::pods::*;
use common::{wait_for, Server};
use serde_json::json;

const PODS: &str = "/api/v1/namespaces/default/pods";
const AGNHOST: &str = "registry.k8s.io/e2e-test-images/agnhost:2.45";

fn agnhost_pod(name: &str, args: &[&str], extra: serde_json::Value) -> serde_json::Value {
    let mut pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
        "spec": {"restartPolicy": "Never", "terminationGracePeriodSeconds": 5,
                 "containers": [{"name": "c", "image": AGNHOST, "args": args}]}});
    for (k, v) in extra.as_object().unwrap() {
        pod["spec"][k] = v.clone();
    }
    pod
}

fn logs_when_done(s: &Server, name: &str) -> String {
    let pod = wait_phase(s, name, "Succeeded", 30);
    assert_eq!(pod["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"], 0, "{pod:#}");
    s.kubectl_ok(&["logs", name])
}

#[test]
fn mounttest_reports_a_volume_as_upstreams_tests_expect() {
    let s = Server::start_with_node(&["--node-ip", "127.0.0.1"]);
    let volume = |medium: &str| json!({"volumes": [{"name": "v", "emptyDir": {"medium": medium}}]});
    for (name, medium, user) in [("tmpfs-root", "Memory", None), ("disk-user", "", Some(1001))] {
        let args = [
            "mounttest",
            "--fs_type=/test-volume",
            "--new_file_0644=/test-volume/test-file",
            "--file_perm=/test-volume/test-file",
            "--file_mode=/test-volume",
            "--file_owner=/test-volume/test-file",
        ];
        let mut pod = agnhost_pod(name, &args, volume(medium));
        pod["spec"]["containers"][0]["volumeMounts"] = json!([{"name": "v", "mountPath": "/test-volume"}]);
        if let Some(uid) = user {
            pod["spec"]["securityContext"] = json!({"runAsUser": uid});
        }
        create(&s, PODS, &pod);
        let out = logs_when_done(&s, name);
        let mut want = vec![
            "content of file \"/test-volume/test-file\": mount-tester new file\n".to_string(),
            "perms of file \"/test-volume/test-file\": -rw-r--r--".to_string(),
            // The kubelet makes an emptyDir 0777; a tmpfs one keeps tmpfs's sticky bit.
            format!("mode of file \"/test-volume\": {}", if medium == "Memory" { "dtrwxrwxrwx" } else { "drwxrwxrwx" }),
            format!("owner UID of \"/test-volume/test-file\": {}", user.unwrap_or(0)),
        ];
        if medium == "Memory" {
            want.push("mount type of \"/test-volume\": tmpfs".into());
        } else {
            assert!(!out.contains(": tmpfs"), "{out}");
        }
        for line in want {
            assert!(out.contains(&line), "{name}: {line:?} not in {out:?}");
        }
    }

    // A missing file fails it, with Go's words.
    create(&s, PODS, &agnhost_pod("missing", &["mounttest", "--file_content=/nope"], json!({})));
    let pod = wait_phase(&s, "missing", "Failed", 30);
    assert_eq!(pod["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"], 1);
    let out = s.kubectl_ok(&["logs", "missing"]);
    assert_eq!(out, "error reading file content for \"/nope\": open /nope: no such file or directory\n");
}

#[test]
fn pause_and_etc_hosts_behave_as_agnhosts() {
    let s = Server::start_with_node(&["--node-ip", "127.0.0.1"]);
    let aliases = json!({"hostAliases": [{"ip": "123.45.67.89", "hostnames": ["foo.local", "bar.local"]}]});
    create(&s, PODS, &agnhost_pod("hosts", &["etc-hosts"], aliases));
    let out = logs_when_done(&s, "hosts");
    assert!(out.contains("123.45.67.89\tfoo.local\tbar.local\n"), "{out}");
    assert!(out.starts_with("# Kubernetes-managed hosts file.\n"), "{out}");

    // No args: the image's default, `pause`, which ends with status 2 on SIGTERM (it is the
    // container's pid 1 and has a handler).
    create(&s, PODS, &agnhost_pod("paused", &[], json!({"restartPolicy": "Always"})));
    wait_phase(&s, "paused", "Running", 30);
    assert!(wait_for(Duration::from_secs(10), || s.kubectl(&["logs", "paused"]).stdout == b"Paused\n"));
    let pid = host_pid(&s, "paused", 1);
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGTERM).unwrap();
    assert!(
        wait_for(Duration::from_secs(20), || {
            let p = get(&s, &pod_path("paused"));
            let last = &p["status"]["containerStatuses"][0]["lastState"]["terminated"];
            last["exitCode"] == 2 && last["reason"] == "Error"
        }),
        "{:#}",
        get(&s, &pod_path("paused"))
    );

    // An unknown subcommand ends it as agnhost's command line does.
    create(&s, PODS, &agnhost_pod("unknown", &["no-such-thing"], json!({})));
    let pod = wait_phase(&s, "unknown", "Failed", 30);
    assert_eq!(pod["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"], 1);
}
