//! The node agent, through the real binary: `rkube server` registers its machine as a Node,
//! renews its Lease, schedules pods onto it and runs them as processes with the in-pod
//! files and environment a kubelet gives. Pods write what they see to a hostPath the test
//! reads (the logs/exec API comes with its own issue).

mod common;

use std::path::Path;
use std::time::Duration;

use common::pods::*;
use common::{wait_for, Server};
use serde_json::{json, Value};

#[test]
fn the_node_registers_like_a_kubelet_and_renews_its_lease() {
    let s = Server::start_with_node(&[]);
    let name = node_name(&s);
    let mut node = Value::Null;
    assert!(wait_for(Duration::from_secs(20), || {
        node = get(&s, &format!("/api/v1/nodes/{name}"));
        node["status"]["conditions"].as_array().is_some_and(|c| c.len() == 4)
    }));
    let labels = &node["metadata"]["labels"];
    assert_eq!(labels["kubernetes.io/hostname"], name.as_str());
    assert_eq!(labels["kubernetes.io/os"], "linux");
    assert!(labels["kubernetes.io/arch"].is_string());
    let conds = node["status"]["conditions"].as_array().unwrap();
    let ready = conds.last().unwrap();
    assert_eq!(ready["type"], "Ready", "Ready is the last condition");
    assert_eq!(ready["status"], "True");
    assert_eq!(ready["reason"], "KubeletReady");
    assert_eq!(ready["message"], "kubelet is posting ready status");
    assert_eq!(conds[0]["reason"], "KubeletHasSufficientMemory");
    assert_eq!(node["status"]["capacity"]["pods"], "110");
    // The kubelet API's real port (the tests' servers take a free one, not 10250).
    assert!(node["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"].as_u64().is_some_and(|p| p > 0 && p < 65536));
    assert_eq!(node["status"]["nodeInfo"]["operatingSystem"], "linux");
    assert!(node["status"]["nodeInfo"]["kubeletVersion"].as_str().unwrap().starts_with("v1."));

    let lease_path = format!("/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{name}");
    let mut lease = Value::Null;
    assert!(wait_for(Duration::from_secs(10), || {
        lease = get(&s, &lease_path);
        !lease.is_null()
    }));
    assert_eq!(lease["spec"]["holderIdentity"], name.as_str());
    assert_eq!(lease["spec"]["leaseDurationSeconds"], 40);
    assert_eq!(lease["metadata"]["ownerReferences"][0]["kind"], "Node");
    assert_eq!(lease["metadata"]["ownerReferences"][0]["uid"], node["metadata"]["uid"]);
    let first = lease["spec"]["renewTime"].as_str().unwrap().to_string();
    assert!(first.contains('.') && first.ends_with('Z'), "renewTime is a MicroTime: {first}");
    // Renewed every 10 s (with up to 4 % jitter).
    assert!(wait_for(Duration::from_secs(15), || get(&s, &lease_path)["spec"]["renewTime"] != first.as_str()));
}

#[test]
fn a_pod_runs_with_the_service_account_files_env_and_identity_of_a_pod() {
    let s = Server::start_with_node(&["--node-ip", "127.0.0.1"]);
    // ($$$$: the API turns $$ into $ in a command.)
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "sa"},
        "spec": {"terminationGracePeriodSeconds": 1,
                 "containers": [{"name": "main", "image": "busybox",
                                 "command": ["sh", "-c", "echo $$$$ > /tmp/pid; exec sleep 3600"]}]}});
    create(&s, "/api/v1/namespaces/default/pods", &pod);
    let pod = wait_phase(&s, "sa", "Running", 30);
    // What the container sees, read through `kubectl exec` as a user reads it.
    let in_pod = |script: &str| s.kubectl_ok(&["exec", "sa", "--", "sh", "-c", script]);
    let sa = "/var/run/secrets/kubernetes.io/serviceaccount";

    // The kubelet's atomic-writer layout.
    let ls = in_pod(&format!("ls -a {sa}"));
    let names: Vec<&str> = ls.lines().collect();
    assert!(
        names.contains(&"..data")
            && names.contains(&"token")
            && names.contains(&"ca.crt")
            && names.contains(&"namespace"),
        "{names:?}"
    );
    assert_eq!(in_pod(&format!("readlink {sa}/token")).trim(), "..data/token");
    let data = in_pod(&format!("readlink {sa}/..data"));
    assert!(regex::Regex::new(r"^\.\.\d{4}_\d\d_\d\d_\d\d_\d\d_\d\d\.\d+\n$").unwrap().is_match(&data), "{data:?}");
    assert_eq!(in_pod(&format!("cat {sa}/namespace")), "default", "no trailing newline");
    assert_eq!(in_pod(&format!("cat {sa}/ca.crt")), std::fs::read_to_string(s.pki("ca.crt")).unwrap());

    // The token is bound to this pod (TokenRequest), and the API accepts it.
    let token = in_pod(&format!("cat {sa}/token"));
    let review = json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": {"token": token}});
    let r = create(&s, "/apis/authentication.k8s.io/v1/tokenreviews", &review);
    assert_eq!(r["status"]["authenticated"], true, "{r:#}");
    assert_eq!(r["status"]["user"]["username"], "system:serviceaccount:default:default");
    assert_eq!(r["status"]["user"]["extra"]["authentication.kubernetes.io/pod-name"][0], "sa");
    assert_eq!(r["status"]["user"]["extra"]["authentication.kubernetes.io/pod-uid"][0], pod["metadata"]["uid"]);
    assert_eq!(r["status"]["user"]["extra"]["authentication.kubernetes.io/node-name"][0], pod["spec"]["nodeName"]);
    assert!(r["status"]["user"]["extra"]["authentication.kubernetes.io/credential-id"][0]
        .as_str()
        .unwrap()
        .starts_with("JTI="));

    // The environment a runtime and the kubelet give (an exec'd process gets the
    // container's, as containerd gives it).
    let env = in_pod("env | sort");
    let var = |k: &str| env.lines().find_map(|l| l.strip_prefix(&format!("{k}="))).map(str::to_string);
    assert_eq!(var("HOSTNAME").as_deref(), Some("sa"));
    assert_eq!(in_pod("hostname").trim(), "sa", "the pod's own UTS name");
    assert_eq!(var("HOME").as_deref(), Some("/"), "never the host user's home");
    assert!(var("PATH").is_some());
    assert!(var("KUBERNETES_SERVICE_HOST").is_some() && var("KUBERNETES_SERVICE_PORT").is_some(), "{env}");
    assert_eq!(var("KUBERNETES_SERVICE_PORT_HTTPS"), var("KUBERNETES_SERVICE_PORT"));
    assert!(
        env.lines().all(|l| !l.starts_with("CARGO") && !l.starts_with("RUST")),
        "nothing of the agent's env: {env}"
    );

    // Status as the kubelet reports it.
    let st = &pod["status"];
    let types: Vec<&str> = st["conditions"].as_array().unwrap().iter().map(|c| c["type"].as_str().unwrap()).collect();
    assert_eq!(types, ["PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady", "PodScheduled"]);
    assert!(st["podIP"].is_string() && st["hostIP"].is_string() && st["startTime"].is_string());
    let cs = &st["containerStatuses"][0];
    assert_eq!(cs["name"], "main");
    assert_eq!(cs["ready"], true);
    assert_eq!(cs["started"], true);
    assert_eq!(cs["restartCount"], 0);
    assert!(cs["state"]["running"]["startedAt"].is_string());
    assert!(cs["containerID"].as_str().unwrap().starts_with("rkube://"));

    // Scheduled and started, with the kubelet's events.
    let mut reasons: Vec<String> = Vec::new();
    assert!(
        wait_for(Duration::from_secs(10), || {
            let evs = get(&s, "/api/v1/namespaces/default/events");
            reasons = evs["items"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter(|e| e["involvedObject"]["name"] == "sa")
                        .map(|e| e["reason"].as_str().unwrap_or("").to_string())
                        .collect()
                })
                .unwrap_or_default();
            ["Created", "Started"].iter().all(|r| reasons.iter().any(|x| x == r))
        }),
        "events: {reasons:?}"
    );

    // The program is pid 1 of the container's own process namespace.
    assert_eq!(in_pod("cat /tmp/pid").trim(), "1");
    // Deleting the pod ends its process (pid 1 without a handler ignores SIGTERM, as in any
    // container: SIGKILL after the grace period) and removes it.
    let pid = host_pid(&s, "sa", 1);
    assert!(alive(pid));
    let (code, _, body) = s.curl("DELETE", &pod_path("sa"), None, &[]);
    assert_eq!(code, 200, "{body}");
    assert!(wait_for(Duration::from_secs(15), || !alive(pid)), "the pod's process ends");
    assert!(
        wait_for(Duration::from_secs(15), || s.curl("GET", &pod_path("sa"), None, &[]).0 == 404),
        "the kubelet's final delete"
    );
}

#[test]
fn exits_become_phases_and_reasons_and_a_missing_program_is_a_start_error() {
    let s = Server::start_with_node(&[]);
    let (_keep, out) = out_dir();
    let never = json!({"restartPolicy": "Never"});
    create(&s, "/api/v1/namespaces/default/pods", &shell_pod("ok", "exit 0", &out, never.clone()));
    create(&s, "/api/v1/namespaces/default/pods", &shell_pod("bad", "exit 3", &out, never.clone()));
    let mut missing = shell_pod("missing", "", &out, never);
    missing["spec"]["containers"][0]["command"] = json!(["no-such-program-rkube"]);
    create(&s, "/api/v1/namespaces/default/pods", &missing);

    let ok = wait_phase(&s, "ok", "Succeeded", 30);
    let t = &ok["status"]["containerStatuses"][0]["state"]["terminated"];
    assert_eq!(t["exitCode"], 0);
    assert_eq!(t["reason"], "Completed");
    let ready = ok["status"]["conditions"].as_array().unwrap().iter().find(|c| c["type"] == "Ready").unwrap().clone();
    assert_eq!(ready["reason"], "PodCompleted");

    let bad = wait_phase(&s, "bad", "Failed", 30);
    let t = &bad["status"]["containerStatuses"][0]["state"]["terminated"];
    assert_eq!(t["exitCode"], 3);
    assert_eq!(t["reason"], "Error");

    let m = wait_phase(&s, "missing", "Failed", 30);
    let t = &m["status"]["containerStatuses"][0]["state"]["terminated"];
    assert_eq!(t["exitCode"], 128);
    assert_eq!(t["reason"], "StartError");
    assert_eq!(t["message"], "exec: \"no-such-program-rkube\": executable file not found in $PATH");
}

#[test]
fn init_containers_wait_then_complete_ready_and_an_active_deadline_fails_the_pod() {
    let s = Server::start_with_node(&[]);
    let (_keep, out) = out_dir();
    let init =
        |name: &str, script: &str| json!({"name": name, "image": "busybox", "command": ["/bin/sh", "-c", script]});
    let spec = json!({"initContainers": [init("init1", "sleep 2"), init("init2", "exit 0")]});
    create(&s, "/api/v1/namespaces/default/pods", &shell_pod("init", "sleep 600", &out, spec));
    // While init1 runs, init2 waits as the kubelet shows it: PodInitializing.
    let mut pod = Value::Null;
    assert!(
        wait_for(Duration::from_secs(20), || {
            pod = get(&s, &pod_path("init"));
            pod["status"]["initContainerStatuses"][0]["state"]["running"].is_object()
        }),
        "{pod:#}"
    );
    assert_eq!(pod["status"]["initContainerStatuses"][1]["state"]["waiting"]["reason"], "PodInitializing");
    // A running init container is not ready, and not initialized.
    assert_eq!(pod["status"]["initContainerStatuses"][0]["ready"], false);
    let initialized =
        pod["status"]["conditions"].as_array().unwrap().iter().find(|c| c["type"] == "Initialized").unwrap().clone();
    assert_eq!(initialized["message"], "containers with incomplete status: [init1 init2]", "{pod:#}");
    assert_eq!(pod["status"]["containerStatuses"][0]["state"]["waiting"]["reason"], "PodInitializing");
    // Init containers that completed are Ready (the kubelet's prober sets it).
    assert!(
        wait_for(Duration::from_secs(20), || {
            pod = get(&s, &pod_path("init"));
            pod["status"]["containerStatuses"][0]["state"]["running"].is_object()
        }),
        "{pod:#}"
    );
    for c in pod["status"]["initContainerStatuses"].as_array().unwrap() {
        assert_eq!(c["state"]["terminated"]["reason"], "Completed", "{c}");
        assert_eq!(c["ready"], true, "{c}");
    }
    // activeDeadlineSeconds set on a running pod: past it, the pod fails as the kubelet's
    // active deadline handler fails it.
    let patch = json!({"spec": {"activeDeadlineSeconds": 3}}).to_string();
    let (code, _, body) = s.curl(
        "PATCH",
        &pod_path("init"),
        Some(patch.as_bytes()),
        &["Content-Type: application/strategic-merge-patch+json"],
    );
    assert_eq!(code, 200, "{body}");
    let failed = wait_phase(&s, "init", "Failed", 30);
    assert_eq!(failed["status"]["reason"], "DeadlineExceeded");
    assert_eq!(failed["status"]["message"], "Pod was active on the node longer than the specified deadline");
    assert!(failed["status"]["containerStatuses"][0]["state"]["terminated"].is_object(), "{failed:#}");
    assert!(events_for(&s, "init").iter().any(|(r, _)| r == "DeadlineExceeded"), "{:?}", events_for(&s, "init"));
}

#[test]
fn termination_messages_come_from_the_file_or_the_log_as_the_kubelets() {
    let s = Server::start_with_node(&[]);
    let (_keep, out) = out_dir();
    let never = json!({"restartPolicy": "Never"});
    // The default path, written by a non-root user.
    let mut file = shell_pod("file", "printf DONE > /dev/termination-log; exit 0", &out, never.clone());
    file["spec"]["containers"][0]["securityContext"] = json!({"runAsUser": 1000});
    create(&s, "/api/v1/namespaces/default/pods", &file);
    let mut other = shell_pod("other", "echo -n OK > /tmp/msg/term; exit 1", &out, never.clone());
    other["spec"]["containers"][0]["terminationMessagePath"] = json!("/tmp/msg/term");
    create(&s, "/api/v1/namespaces/default/pods", &other);
    let mut logs = shell_pod("logs", "echo one; echo DONE; exit 2", &out, never.clone());
    logs["spec"]["containers"][0]["terminationMessagePolicy"] = json!("FallbackToLogsOnError");
    create(&s, "/api/v1/namespaces/default/pods", &logs);
    let mut ok = shell_pod("ok", "echo out; exit 0", &out, never);
    ok["spec"]["containers"][0]["terminationMessagePolicy"] = json!("FallbackToLogsOnError");
    create(&s, "/api/v1/namespaces/default/pods", &ok);

    let terminated = |p: &Value| p["status"]["containerStatuses"][0]["state"]["terminated"].clone();
    assert_eq!(terminated(&wait_phase(&s, "file", "Succeeded", 30))["message"], "DONE");
    assert_eq!(terminated(&wait_phase(&s, "other", "Failed", 30))["message"], "OK");
    assert_eq!(terminated(&wait_phase(&s, "logs", "Failed", 30))["message"], "one\nDONE\n");
    // Only a failed container falls back to its log.
    assert!(terminated(&wait_phase(&s, "ok", "Succeeded", 30)).get("message").is_none());
}

#[test]
fn a_crashing_container_restarts_with_the_kubelets_back_off() {
    let s = Server::start_with_node(&[]);
    let (_keep, out) = out_dir();
    create(
        &s,
        "/api/v1/namespaces/default/pods",
        &shell_pod("crash", "echo run >> /out/runs; exit 1", &out, json!({})),
    );
    let mut pod = Value::Null;
    // The first restart comes after 10 s; meanwhile the container waits in CrashLoopBackOff.
    assert!(
        wait_for(Duration::from_secs(8), || {
            pod = get(&s, &pod_path("crash"));
            pod["status"]["containerStatuses"][0]["state"]["waiting"]["reason"] == "CrashLoopBackOff"
        }),
        "{pod:#}"
    );
    let cs = &pod["status"]["containerStatuses"][0];
    let msg = cs["state"]["waiting"]["message"].as_str().unwrap();
    let uid = pod["metadata"]["uid"].as_str().unwrap();
    assert_eq!(msg, format!("back-off 10s restarting failed container=main pod=crash_default({uid})"));
    let backoff = format!("Back-off restarting failed container main in pod crash_default({uid})");
    assert!(
        wait_for(Duration::from_secs(5), || events_for(&s, "crash").contains(&("BackOff".into(), backoff.clone()))),
        "{:?}",
        events_for(&s, "crash")
    );
    assert_eq!(cs["lastState"]["terminated"]["exitCode"], 1);
    assert_eq!(pod["status"]["phase"], "Running", "restartPolicy Always keeps the pod Running");
    assert!(
        wait_for(Duration::from_secs(20), || {
            pod = get(&s, &pod_path("crash"));
            pod["status"]["containerStatuses"][0]["restartCount"] == 1
        }),
        "{pod:#}"
    );
    assert_eq!(std::fs::read_to_string(out.join("runs")).unwrap(), "run\nrun\n");
}

#[test]
fn pods_cannot_read_the_servers_keys_or_the_host_users_credentials() {
    let s = Server::start_with_node(&["--node-ip", "127.0.0.1"]);
    let (_keep, out) = out_dir();
    let data = s.dir.display().to_string();
    create(&s, "/api/v1/namespaces/default/pods", &shell_pod("peek", "exec sleep 3600", &out, json!({})));
    wait_phase(&s, "peek", "Running", 30);
    // Looked at from inside, through exec (which sees what the container sees).
    let in_pod =
        |pod: &str, script: &str| s.kubectl_ok(&["exec", pod, "--", "sh", "-c", &format!("{script} 2>&1; true")]);
    let listing = in_pod("peek", &format!("ls -a {data}"));
    // Hidden: empty, or absent when it lies under the container's own /tmp.
    let empty = listing.split_whitespace().collect::<Vec<_>>() == [".", ".."];
    assert!(empty || listing.contains("No such file"), "the data directory is hidden: {listing}");
    let key = in_pod("peek", &format!("cat {data}/pki/ca.key"));
    assert!(!key.contains("PRIVATE KEY"), "{key}");
    if Path::new("/root/.kube").is_dir() {
        let kube = in_pod("peek", "ls -a /root/.kube");
        assert_eq!(kube.split_whitespace().collect::<Vec<_>>(), [".", ".."], "{kube}");
    }
    assert!(in_pod("peek", "ls /usr/bin/env").contains("/usr/bin/env"), "host programs stay runnable");

    // A hostPath volume of a directory above the data directory does not show it either.
    let parent = s.dir.parent().unwrap().display().to_string();
    let rel = s.dir.file_name().unwrap().to_string_lossy().to_string();
    let mut pod = shell_pod("peek-host", "exec sleep 3600", &out, json!({}));
    pod["spec"]["volumes"].as_array_mut().unwrap().push(json!({"name": "host", "hostPath": {"path": parent}}));
    pod["spec"]["containers"][0]["volumeMounts"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "host", "mountPath": "/host"}));
    create(&s, "/api/v1/namespaces/default/pods", &pod);
    wait_phase(&s, "peek-host", "Running", 30);
    let ls = in_pod("peek-host", "ls -a /host");
    assert!(ls.lines().any(|l| l == rel), "the hostPath volume shows the parent's entries: {ls}");
    let key = in_pod("peek-host", &format!("cat /host/{rel}/pki/ca.key"));
    assert!(!key.contains("PRIVATE KEY"), "the data directory stays hidden under a hostPath volume: {key}");
}

#[test]
fn no_pod_process_outlives_the_server() {
    let mut s = Server::start_with_node(&[]);
    let (_keep, out) = out_dir();
    // A process that leaves its session and ignores SIGTERM still ends (its cgroup is killed).
    // (`$$` is the kubelet's escape for `$`.)
    let script = "readlink /proc/self/ns/net > /out/netns; trap '' TERM; (setsid sh -c 'trap \"\" TERM; echo $$$$ > /out/child; exec sleep 3600' &); echo $$$$ > /out/pid; echo end >> /out/pid; while true; do sleep 1; done";
    create(&s, "/api/v1/namespaces/default/pods", &shell_pod("stubborn", script, &out, json!({})));
    let pid: i32 = wait_file(&out.join("pid"), 30).trim().parse().unwrap();
    assert!(
        wait_for(Duration::from_secs(5), || std::fs::read_to_string(out.join("child")).is_ok_and(|c| !c.is_empty()))
    );
    let child: i32 = std::fs::read_to_string(out.join("child")).unwrap().trim().parse().unwrap();
    let (pid, child) = (host_pid(&s, "stubborn", pid), host_pid(&s, "stubborn", child));
    assert!(alive(pid) && alive(child));
    // The pod's network namespace is one the agent made and names under /run/netns.
    let netns = std::fs::read_to_string(out.join("netns")).unwrap();
    let named = named_netns(&[netns_inode(&netns)].into());
    assert_eq!(named.len(), 1, "the pod runs in its own named network namespace ({netns})");
    assert!(s.stop(), "the server stops on SIGTERM");
    assert!(!alive(pid) && !alive(child), "every process of the pod ended with the agent");
    assert!(!named[0].exists(), "the pod's network namespace is removed with the agent");
}

#[test]
fn a_missing_config_map_keeps_the_pod_waiting_until_it_exists() {
    let s = Server::start_with_node(&["--node-ip", "127.0.0.1"]);
    let (_keep, out) = out_dir();
    let mut pod = shell_pod("cfg", "exec sleep 3600", &out, json!({}));
    pod["spec"]["volumes"].as_array_mut().unwrap().push(json!({"name": "cfg", "configMap": {"name": "settings"}}));
    pod["spec"]["containers"][0]["volumeMounts"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "cfg", "mountPath": "/etc/cfg"}));
    create(&s, "/api/v1/namespaces/default/pods", &pod);
    let mut event = Value::Null;
    assert!(wait_for(Duration::from_secs(20), || {
        let evs = get(&s, "/api/v1/namespaces/default/events");
        event = evs["items"]
            .as_array()
            .and_then(|a| a.iter().find(|e| e["reason"] == "FailedMount").cloned())
            .unwrap_or(Value::Null);
        !event.is_null()
    }));
    assert_eq!(event["message"], "MountVolume.SetUp failed for volume \"cfg\" : configmap \"settings\" not found");
    assert_eq!(event["type"], "Warning");
    let p = get(&s, &pod_path("cfg"));
    assert_eq!(p["status"]["phase"], "Pending");
    assert_eq!(p["status"]["containerStatuses"][0]["state"]["waiting"]["reason"], "ContainerCreating");
    create(
        &s,
        "/api/v1/namespaces/default/configmaps",
        &json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings"}, "data": {"greeting": "hello"}}),
    );
    wait_phase(&s, "cfg", "Running", 30);
    assert_eq!(s.kubectl_ok(&["exec", "cfg", "--", "cat", "/etc/cfg/greeting"]), "hello");
    assert!(Path::new("/etc/cfg").symlink_metadata().is_err(), "the mount path was made inside the container only");
}

#[test]
fn in_cluster_clients_in_a_pod_use_its_service_account() {
    if !common::require("python3", &["-c", "import kubernetes"])
        || !common::require("kubectl", &["version", "--client"])
        || !common::require("curl", &["--version"])
    {
        return;
    }
    let s = Server::start_with_node(&[]);
    let (_keep, out) = out_dir();
    // The seeds' RBAC step: the default service account may read pods.
    default_may_view(&s);
    let py = python().expect("python3 with kubernetes");
    let kubectl = std::fs::canonicalize(which("kubectl")).unwrap().display().to_string();
    let curl = which("curl");
    // `$(...)` that names no variable stays as written (the kubelet's expansion).
    let script = format!(
        "SA=/var/run/secrets/kubernetes.io/serviceaccount; \
         {py} -c \"from kubernetes import client, config; config.load_incluster_config(); print(' '.join(sorted(p.metadata.name for p in client.CoreV1Api().list_namespaced_pod('default').items)))\" > /out/py 2>&1; echo end >> /out/py; \
         {kubectl} get pods -o name > /out/kubectl 2>&1; echo end >> /out/kubectl; \
         {curl} -s https://kubernetes.default.svc:$KUBERNETES_SERVICE_PORT/api > /out/noca 2>&1; echo \"exit $?\" >> /out/noca; echo end >> /out/noca; \
         {curl} -s --cacert $SA/ca.crt -H \"Authorization: Bearer $(cat $SA/token)\" https://kubernetes.default.svc:$KUBERNETES_SERVICE_PORT/api/v1/namespaces/default/secrets > /out/secrets; echo end >> /out/secrets; \
         sleep 3600"
    );
    create(&s, "/api/v1/namespaces/default/pods", &shell_pod("clients", &script, &out, json!({})));
    assert_eq!(wait_file(&out.join("py"), 60).trim(), "clients", "the Python client's load_incluster_config()");
    assert_eq!(wait_file(&out.join("kubectl"), 60).trim(), "pod/clients", "kubectl with no kubeconfig, in-cluster");
    let noca = wait_file(&out.join("noca"), 30);
    assert!(noca.trim().ends_with("exit 60"), "without the CA the server's certificate is not trusted: {noca}");
    let secrets: Value = serde_json::from_str(&wait_file(&out.join("secrets"), 30)).unwrap();
    assert_eq!(secrets["kind"], "Status");
    assert_eq!(secrets["code"], 403);
    assert_eq!(
        secrets["message"],
        "secrets is forbidden: User \"system:serviceaccount:default:default\" cannot list resource \"secrets\" in API group \"\" in the namespace \"default\""
    );
}

#[test]
fn the_downward_api_gives_the_seeds_values_and_follows_label_changes() {
    let s = Server::start_with_node(&["--node-ip", "127.0.0.1"]);
    let (_keep, out) = out_dir();
    let mut pod = shell_pod("downward", "exec sleep 3600", &out, json!({}));
    pod["metadata"]["labels"] = json!({"foo": "bar"});
    let c = &mut pod["spec"]["containers"][0];
    c["resources"] = json!({"requests": {"cpu": "15m", "memory": "500Ki"}, "limits": {"cpu": "100m", "memory": "8Mi"}});
    c["env"] = json!([
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
        {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
        {"name": "NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
        {"name": "SERVICE_ACCOUNT", "valueFrom": {"fieldRef": {"fieldPath": "spec.serviceAccountName"}}},
        {"name": "CONTAINER_CPU_REQUEST_MILLICORES", "valueFrom": {"resourceFieldRef": {"resource": "requests.cpu", "divisor": "1m"}}},
        {"name": "CONTAINER_MEMORY_LIMIT_KIBIBYTES", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1Ki"}}},
    ]);
    c["volumeMounts"].as_array_mut().unwrap().push(json!({"name": "downward", "mountPath": "/etc/downward"}));
    pod["spec"]["volumes"].as_array_mut().unwrap().push(json!({"name": "downward", "downwardAPI": {"items": [
        {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
        {"path": "annotations", "fieldRef": {"fieldPath": "metadata.annotations"}},
    ]}}));
    create(&s, "/api/v1/namespaces/default/pods", &pod);
    let running = wait_phase(&s, "downward", "Running", 30);
    // The seed's `kubectl exec downward -- env` and `-- cat /etc/downward/labels`.
    let env = s.kubectl_ok(&["exec", "downward", "--", "env"]);
    let labels = || {
        String::from_utf8_lossy(&s.kubectl(&["exec", "downward", "--", "cat", "/etc/downward/labels"]).stdout)
            .into_owned()
    };
    let var = |k: &str| env.lines().find_map(|l| l.strip_prefix(&format!("{k}="))).map(str::to_string);
    assert_eq!(var("POD_NAME").as_deref(), Some("downward"));
    assert_eq!(var("POD_NAMESPACE").as_deref(), Some("default"));
    assert_eq!(var("POD_IP").as_deref(), running["status"]["podIP"].as_str());
    assert_eq!(var("NODE_NAME").as_deref(), running["spec"]["nodeName"].as_str());
    assert_eq!(var("SERVICE_ACCOUNT").as_deref(), Some("default"));
    assert_eq!(var("CONTAINER_CPU_REQUEST_MILLICORES").as_deref(), Some("15"));
    assert_eq!(var("CONTAINER_MEMORY_LIMIT_KIBIBYTES").as_deref(), Some("8192"));
    assert!(wait_for(Duration::from_secs(10), || labels() == "foo=\"bar\""));
    // kubectl label: the file follows.
    let body = json!({"metadata": {"labels": {"foo": "baz", "tier": "web"}}}).to_string();
    let (code, _, msg) =
        s.curl("PATCH", &pod_path("downward"), Some(body.as_bytes()), &["Content-Type: application/merge-patch+json"]);
    assert_eq!(code, 200, "{msg}");
    let mut seen = String::new();
    assert!(
        wait_for(Duration::from_secs(20), || {
            seen = labels();
            seen == "foo=\"baz\"\ntier=\"web\""
        }),
        "labels file: {seen:?}"
    );
}

#[test]
fn ambassador_containers_run_rkube_proxy_on_each_pods_own_localhost() {
    if !common::require("curl", &["--version"]) {
        return;
    }
    let s = Server::start_with_node(&["--node-ip", "127.0.0.1"]);
    let (_keep, out) = out_dir();
    default_may_view(&s);
    // Seed 001's curl-am, twice at once: each main container asks the API through its own
    // ambassador's localhost:8001 (each pod has its own network namespace); the ambassador
    // image (luksa/kubectl-proxy) runs `rkube proxy`, in-cluster. Asked as the seed asks:
    // `kubectl exec curl-am -c main -- curl localhost:8001/...`.
    let curl = which("curl");
    for name in ["curl-am", "curl-am2"] {
        let mut pod = shell_pod(name, "exec sleep 3600", &out, json!({}));
        pod["spec"]["containers"]
            .as_array_mut()
            .unwrap()
            .push(json!({"name": "ambassador", "image": "luksa/kubectl-proxy:1.6.2"}));
        create(&s, "/api/v1/namespaces/default/pods", &pod);
    }
    for name in ["curl-am", "curl-am2"] {
        let p = wait_phase(&s, name, "Running", 60);
        let mut body = String::new();
        let answered = wait_for(Duration::from_secs(30), || {
            let path = format!("localhost:8001/api/v1/namespaces/default/pods/{name}");
            body = String::from_utf8_lossy(&s.kubectl(&["exec", name, "-c", "main", "--", &curl, "-sf", &path]).stdout)
                .into_owned();
            !body.is_empty()
        });
        assert!(answered, "{name}: no answer from the ambassador");
        let seen: Value = serde_json::from_str(body.trim()).unwrap_or_else(|e| panic!("{e}: {body}"));
        assert_eq!(seen["metadata"]["name"], name, "each pod's own ambassador answered");
        let names: Vec<&str> =
            p["status"]["containerStatuses"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
        assert_eq!(names, ["ambassador", "main"], "both running, sorted by name");
    }
}

/// Seed 001's session inside a pod, command for command: the `kubernetes` service's
/// variables, `curl https://kubernetes` without and with the CA, the token on 10.96.0.1, and
/// the pods of the namespace once the service accounts are cluster admins.
#[test]
fn the_seeds_curl_session_gives_the_seeds_answers_inside_a_pod() {
    if !common::require("curl", &["--version"]) {
        return;
    }
    let s = Server::start_with_node(&["--node-ip", "127.0.0.1"]);
    let (_keep, out) = out_dir();
    let curl = which("curl");
    create(&s, "/api/v1/namespaces/default/pods", &shell_pod("curl", "exec sleep 3600", &out, json!({})));
    let pod = wait_phase(&s, "curl", "Running", 60);
    // The seed's `kubectl exec -it curl -- sh`, a command at a time.
    let in_pod = |script: &str| s.kubectl_ok(&["exec", "curl", "--", "sh", "-c", script]);
    assert_eq!(
        in_pod("env | grep KUBERNETES_SERVICE | sort"),
        "KUBERNETES_SERVICE_HOST=10.96.0.1\nKUBERNETES_SERVICE_PORT=443\nKUBERNETES_SERVICE_PORT_HTTPS=443\n"
    );
    // The kubelet's search path: the namespace's, the cluster's, then the host's.
    let host_search: String = std::fs::read_to_string("/etc/resolv.conf")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.strip_prefix("search"))
        .next_back()
        .map(|l| l.split_whitespace().map(|d| format!(" {}", d.trim_end_matches('.'))).collect())
        .unwrap_or_default();
    assert_eq!(
        in_pod("cat /etc/resolv.conf"),
        format!(
            "search default.svc.cluster.local svc.cluster.local cluster.local{host_search}\nnameserver 10.96.0.10\noptions ndots:5\n"
        )
    );
    let ip = pod["status"]["podIP"].as_str().unwrap().to_string();
    assert!(ip.starts_with("10.244."), "a pod IP of the node's pod subnet: {ip}");
    assert_eq!(
        in_pod("cat /etc/hosts"),
        format!(
            "# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n\
             fe00::0\tip6-localnet\nfe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n{ip}\tcurl\n"
        )
    );
    let noca = in_pod(&format!("{curl} https://kubernetes 2>&1; echo \"exit $?\""));
    assert!(
        noca.contains("curl: (60) SSL certificate problem: unable to get local issuer certificate"),
        "kubernetes resolves and answers with a certificate the host's CAs do not trust: {noca}"
    );
    let sa = "/var/run/secrets/kubernetes.io/serviceaccount";
    let anon: Value =
        serde_json::from_str(&in_pod(&format!("{curl} -s --cacert {sa}/ca.crt https://kubernetes"))).unwrap();
    assert_eq!(
        anon,
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
               "message": "forbidden: User \"system:anonymous\" cannot get path \"/\"", "reason": "Forbidden",
               "details": {}, "code": 403})
    );
    let with_token = |url: &str| {
        let script = format!("TOKEN=$(cat {sa}/token); {curl} -s -k -H \"Authorization: Bearer $TOKEN\" {url}");
        serde_json::from_str::<Value>(&in_pod(&script)).unwrap()
    };
    let by_ip = with_token("https://10.96.0.1");
    assert_eq!(
        by_ip["message"], "forbidden: User \"system:serviceaccount:default:default\" cannot get path \"/\"",
        "10.96.0.1 is the API server, and the token is the pod's: {by_ip}"
    );
    // kubectl create clusterrolebinding permissive-binding --clusterrole=cluster-admin --group=system:serviceaccounts
    create(
        &s,
        "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings",
        &json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
            "metadata": {"name": "permissive-binding"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
            "subjects": [{"kind": "Group", "apiGroup": "rbac.authorization.k8s.io", "name": "system:serviceaccounts"}],
        }),
    );
    let mut pods = Value::Null;
    let listed = wait_for(Duration::from_secs(10), || {
        pods = with_token(
            "https://kubernetes/api/v1/namespaces/$(cat /var/run/secrets/kubernetes.io/serviceaccount/namespace)/pods",
        );
        pods["kind"] == "PodList"
    });
    assert!(listed, "{pods:#}");
    assert_eq!(pods["items"][0]["metadata"]["name"], "curl");
}

#[test]
fn pods_reach_each_other_and_services_by_cluster_ip_and_dns_name() {
    if !common::require("curl", &["--version"]) || !common::require("python3", &["--version"]) {
        return;
    }
    let s = Server::start_with_node(&[]);
    let (_keep, out) = out_dir();
    std::fs::create_dir_all(out.join("www")).unwrap();
    std::fs::write(out.join("www/hello.txt"), "hello from web\n").unwrap();
    let py = std::process::Command::new("python3").args(["-c", "import sys; print(sys.executable)"]).output().unwrap();
    let py = String::from_utf8_lossy(&py.stdout).trim().to_string();
    let mut web = shell_pod("web", &format!("exec {py} -m http.server 8080 --directory /out/www"), &out, json!({}));
    web["spec"]["containers"][0]["ports"] = json!([{"name": "http", "containerPort": 8080}]);
    create(&s, "/api/v1/namespaces/default/pods", &web);
    let svc = create(
        &s,
        "/api/v1/namespaces/default/services",
        &json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
                "spec": {"selector": {"app": "web"}, "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}}),
    );
    let cluster_ip = svc["spec"]["clusterIP"].as_str().unwrap().to_string();
    let web = wait_phase(&s, "web", "Running", 30);
    let web_ip = web["status"]["podIP"].as_str().unwrap().to_string();
    let curl = which("curl");
    let fetch = |file: &str, url: &str| {
        format!(
            "for i in $(seq 1 100); do {curl} -sf {url}/hello.txt > /out/{file} && break; sleep 0.1; done; echo end >> /out/{file}; "
        )
    };
    let script = [
        fetch("direct", &format!("http://{web_ip}:8080")),
        fetch("cluster-ip", &format!("http://{cluster_ip}")),
        fetch("short", "http://web"),
        fetch("namespaced", "http://web.default"),
        fetch("fqdn", "http://web.default.svc.cluster.local"),
        "echo $WEB_SERVICE_HOST:$WEB_SERVICE_PORT > /out/env; echo end >> /out/env; sleep 3600".to_string(),
    ]
    .concat();
    create(&s, "/api/v1/namespaces/default/pods", &shell_pod("client", &script, &out, json!({})));
    for file in ["direct", "cluster-ip", "short", "namespaced", "fqdn"] {
        assert_eq!(wait_file(&out.join(file), 60), "hello from web\n", "{file}");
    }
    assert_eq!(wait_file(&out.join("env"), 10).trim(), format!("{cluster_ip}:80"));
    let client = get(&s, &pod_path("client"));
    assert_ne!(client["status"]["podIP"], web["status"]["podIP"], "each pod its own address");
}

#[test]
fn without_pod_networking_pods_use_the_host_network_and_still_reach_the_api() {
    if !common::require("curl", &["--version"]) {
        return;
    }
    let s = Server::start_with_node(&["--no-pod-network"]);
    let (_keep, out) = out_dir();
    let curl = which("curl");
    let script = format!(
        "{curl} -s --cacert /var/run/secrets/kubernetes.io/serviceaccount/ca.crt https://kubernetes:$KUBERNETES_SERVICE_PORT > /out/anon; echo end >> /out/anon; sleep 3600"
    );
    create(&s, "/api/v1/namespaces/default/pods", &shell_pod("fallback", &script, &out, json!({})));
    let anon: Value = serde_json::from_str(&wait_file(&out.join("anon"), 60)).unwrap();
    assert_eq!(anon["message"], "forbidden: User \"system:anonymous\" cannot get path \"/\"");
    let pod = get(&s, &pod_path("fallback"));
    let ip = pod["status"]["podIP"].as_str().unwrap();
    assert!(ip.starts_with("127.") && ip != "127.0.0.1", "a loopback address of its own: {ip}");
}

#[test]
fn probes_and_lifecycle_hooks_behave_as_the_kubelets() {
    if !common::require("python3", &["--version"]) {
        return;
    }
    let s = Server::start_with_node(&[]);
    let (_keep, out) = out_dir();
    std::fs::create_dir_all(out.join("www")).unwrap();
    let py = std::process::Command::new("python3").args(["-c", "import sys; print(sys.executable)"]).output().unwrap();
    let py = String::from_utf8_lossy(&py.stdout).trim().to_string();
    let mut pod = shell_pod("probed", &format!("exec {py} -m http.server 8080 --directory /out/www"), &out, json!({}));
    let c = &mut pod["spec"]["containers"][0];
    c["ports"] = json!([{"name": "http", "containerPort": 8080}]);
    c["startupProbe"] = json!({"tcpSocket": {"port": "http"}, "periodSeconds": 1, "failureThreshold": 30});
    c["readinessProbe"] =
        json!({"httpGet": {"path": "/ready.txt", "port": 8080}, "periodSeconds": 1, "failureThreshold": 1});
    c["livenessProbe"] = json!({"exec": {"command": ["cat", "/out/alive"]}, "periodSeconds": 1, "failureThreshold": 2});
    c["lifecycle"] = json!({
        "postStart": {"exec": {"command": ["/bin/sh", "-c", "echo up > /out/alive; hostname > /out/poststart; echo end >> /out/poststart"]}},
        "preStop": {"exec": {"command": ["/bin/sh", "-c", "echo stopping > /out/prestop; echo end >> /out/prestop"]}},
    });
    create(&s, "/api/v1/namespaces/default/pods", &pod);
    // The postStart hook ran inside the container (its UTS name, its mounts).
    assert_eq!(wait_file(&out.join("poststart"), 30), "probed\n");
    // Started (the startup probe reached the port) but not ready: the readiness page is missing.
    let mut p = Value::Null;
    assert!(
        wait_for(Duration::from_secs(20), || {
            p = get(&s, &pod_path("probed"));
            p["status"]["containerStatuses"][0]["started"] == true
        }),
        "{p:#}"
    );
    assert_eq!(p["status"]["containerStatuses"][0]["ready"], false, "{p:#}");
    assert!(
        wait_for(Duration::from_secs(20), || events_for(&s, "probed")
            .contains(&("Unhealthy".into(), "Readiness probe failed: HTTP probe failed with statuscode: 404".into()))),
        "{:?}",
        events_for(&s, "probed")
    );
    std::fs::write(out.join("www/ready.txt"), "ok").unwrap();
    assert!(
        wait_for(Duration::from_secs(20), || {
            p = get(&s, &pod_path("probed"));
            p["status"]["containerStatuses"][0]["ready"] == true
                && p["status"]["conditions"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|c| c["type"] == "Ready" && c["status"] == "True")
        }),
        "ready once the probe passes: {p:#}"
    );
    // The liveness probe fails twice: the container is killed (preStop first) and restarted.
    std::fs::remove_file(out.join("alive")).unwrap();
    assert!(
        wait_for(Duration::from_secs(20), || events_for(&s, "probed")
            .contains(&("Killing".into(), "Container main failed liveness probe, will be restarted".into()))),
        "{:?}",
        events_for(&s, "probed")
    );
    assert!(
        events_for(&s, "probed").iter().any(|(r, m)| r == "Unhealthy" && m.starts_with("Liveness probe failed: ")),
        "{:?}",
        events_for(&s, "probed")
    );
    assert_eq!(wait_file(&out.join("prestop"), 20), "stopping\n");
    assert!(
        wait_for(Duration::from_secs(40), || {
            p = get(&s, &pod_path("probed"));
            p["status"]["containerStatuses"][0]["restartCount"] == 1
                && p["status"]["containerStatuses"][0]["state"]["running"].is_object()
        }),
        "restarted: {p:#}"
    );
}

#[test]
fn an_empty_dir_at_tmp_is_shared_by_the_pods_containers() {
    let s = Server::start_with_node(&["--node-ip", "127.0.0.1"]);
    let (_keep, out) = out_dir();
    // Volumes go over the runtime's private /tmp, as a volume at /tmp does in any runtime.
    let mut pod = shell_pod("scratch", "exec sleep 3600", &out, json!({}));
    pod["spec"]["volumes"].as_array_mut().unwrap().push(json!({"name": "tmp", "emptyDir": {}}));
    pod["spec"]["containers"][0]["volumeMounts"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "tmp", "mountPath": "/tmp"}));
    pod["spec"]["containers"].as_array_mut().unwrap().push(json!({
        "name": "writer", "image": "busybox",
        "command": ["/bin/sh", "-c", "echo written > /tmp/from-writer; sleep 3600"],
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
    }));
    create(&s, "/api/v1/namespaces/default/pods", &pod);
    wait_phase(&s, "scratch", "Running", 30);
    let mut seen = String::new();
    let shared = wait_for(Duration::from_secs(10), || {
        seen = String::from_utf8_lossy(
            &s.kubectl(&["exec", "scratch", "-c", "main", "--", "cat", "/tmp/from-writer"]).stdout,
        )
        .into_owned();
        seen == "written\n"
    });
    assert!(shared, "the first container sees the second's file: {seen:?}");
}

#[test]
fn after_kill_9_the_next_agent_ends_the_old_processes_and_runs_the_pod_again() {
    let data = tempfile::tempdir().unwrap();
    let (_keep, out) = out_dir();
    let mut s = Server::start_in_with_node(data.path(), &[]);
    let script = "readlink /proc/self/ns/net >> /out/netns; echo $$$$ >> /out/pids; exec sleep 3600";
    create(&s, "/api/v1/namespaces/default/pods", &shell_pod("survivor", script, &out, json!({})));
    assert!(wait_for(Duration::from_secs(30), || std::fs::read_to_string(out.join("pids"))
        .is_ok_and(|p| p.ends_with('\n'))));
    let first: i32 = std::fs::read_to_string(out.join("pids")).unwrap().trim().parse().unwrap();
    let first = host_pid(&s, "survivor", first);
    let first_netns = named_netns(&[netns_inode(&std::fs::read_to_string(out.join("netns")).unwrap())].into());
    assert_eq!(first_netns.len(), 1);
    // The agent dies with the server and cannot end anything: the pod's process lives on.
    s.kill9();
    assert!(alive(first), "a pod process outlives a killed agent until the next one starts");
    let s = Server::start_in_with_node(data.path(), &[]);
    // The next agent of the same node and directory ends it and starts the pod again.
    assert!(wait_for(Duration::from_secs(20), || !alive(first)), "the old process is ended");
    let mut pids = String::new();
    assert!(
        wait_for(Duration::from_secs(30), || {
            pids = std::fs::read_to_string(out.join("pids")).unwrap_or_default();
            pids.lines().count() == 2
        }),
        "the pod runs again: {pids}"
    );
    let second: i32 = pids.lines().nth(1).unwrap().parse().unwrap();
    assert!(alive(host_pid(&s, "survivor", second)));
    wait_phase(&s, "survivor", "Running", 10);
    // The old pod network namespace is gone; the new one is named. (The kernel may give the
    // new namespace the old one's number: then there is nothing to tell apart.)
    let netns = std::fs::read_to_string(out.join("netns")).unwrap();
    let inodes: Vec<u64> = netns.lines().map(netns_inode).collect();
    if inodes[0] != inodes[1] {
        use std::os::unix::fs::MetadataExt;
        let old = std::fs::metadata(&first_netns[0]).map(|m| m.ino());
        assert_ne!(old.ok(), Some(inodes[0]), "the killed agent's pod namespace was removed");
    }
    assert_eq!(named_netns(&[inodes[1]].into()).len(), 1, "the pod's new namespace is named");
}

#[test]
fn hand_made_endpoints_cannot_point_pods_at_the_hosts_own_services() {
    if !common::require("curl", &["--version"]) {
        return;
    }
    let s = Server::start_with_node(&[]);
    let (_keep, out) = out_dir();
    // A service of the host's own, on its loopback.
    let host = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    host.set_nonblocking(true).unwrap();
    let port = host.local_addr().unwrap().port();
    let svc = create(
        &s,
        "/api/v1/namespaces/default/services",
        &json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "sneak"},
                "spec": {"ports": [{"name": "http", "port": 80, "targetPort": port}]}}),
    );
    create(
        &s,
        "/api/v1/namespaces/default/endpoints",
        &json!({"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": "sneak"},
                "subsets": [{"addresses": [{"ip": "127.0.0.1"}], "ports": [{"name": "http", "port": port}]}]}),
    );
    let ip = svc["spec"]["clusterIP"].as_str().unwrap();
    let curl = which("curl");
    let script = format!(
        "for i in 1 2 3 4 5; do {curl} -s -m 2 http://{ip}/ > /dev/null; echo \"exit $?\" >> /out/sneak; sleep 0.5; done; echo end >> /out/sneak; sleep 3600"
    );
    create(&s, "/api/v1/namespaces/default/pods", &shell_pod("sneaker", &script, &out, json!({})));
    let tries = wait_file(&out.join("sneak"), 60);
    assert!(tries.lines().all(|l| l != "exit 0"), "{tries}");
    assert!(host.accept().is_err(), "the host's loopback service was never reached from the pod");
}

#[test]
fn containers_get_the_runtimes_default_capabilities_and_their_adds_and_drops() {
    let s = Server::start_with_node(&["--node-ip", "127.0.0.1"]);
    let (_keep, out) = out_dir();
    let caps = |name: &str, sc: Value| {
        let mut pod = shell_pod(
            name,
            &format!("grep -E '^Cap(Eff|Bnd)' /proc/self/status > /out/{name}; echo end >> /out/{name}; sleep 3600"),
            &out,
            json!({}),
        );
        pod["spec"]["containers"][0]["securityContext"] = sc;
        create(&s, "/api/v1/namespaces/default/pods", &pod);
    };
    caps("plain", json!({}));
    caps("netadmin", json!({"capabilities": {"add": ["NET_ADMIN"], "drop": ["CAP_MKNOD"]}}));
    caps("none", json!({"capabilities": {"drop": ["ALL"]}}));
    caps("privileged", json!({"privileged": true}));
    // containerd's and Docker's default set: 0xa80425fb.
    assert_eq!(wait_file(&out.join("plain"), 30), "CapEff:\t00000000a80425fb\nCapBnd:\t00000000a80425fb\n");
    // + NET_ADMIN (bit 12), - MKNOD (bit 27).
    assert_eq!(wait_file(&out.join("netadmin"), 30), "CapEff:\t00000000a00435fb\nCapBnd:\t00000000a00435fb\n");
    assert_eq!(wait_file(&out.join("none"), 30), "CapEff:\t0000000000000000\nCapBnd:\t0000000000000000\n");
    let host = std::fs::read_to_string("/proc/self/status").unwrap();
    let bnd = host.lines().find(|l| l.starts_with("CapBnd")).unwrap().to_string();
    assert!(wait_file(&out.join("privileged"), 30).contains(&bnd), "a privileged container keeps the host's set");
    // A process exec'd into a container gets the container's set.
    for name in ["plain", "netadmin", "none", "privileged"] {
        let seen = s.kubectl_ok(&["exec", name, "--", "grep", "-E", "^Cap(Eff|Bnd)", "/proc/self/status"]);
        assert_eq!(seen, std::fs::read_to_string(out.join(name)).unwrap().trim_end_matches("end\n"), "{name}");
    }
}

#[test]
fn a_read_only_root_filesystem_leaves_only_volumes_writable() {
    let s = Server::start_with_node(&["--node-ip", "127.0.0.1"]);
    let (_keep, out) = out_dir();
    let mut pod = shell_pod("ro", "exec sleep 3600", &out, json!({}));
    pod["spec"]["containers"][0]["securityContext"] = json!({"readOnlyRootFilesystem": true});
    pod["spec"]["volumes"].as_array_mut().unwrap().push(json!({"name": "scratch", "emptyDir": {}}));
    pod["spec"]["containers"][0]["volumeMounts"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "scratch", "mountPath": "/scratch"}));
    create(&s, "/api/v1/namespaces/default/pods", &pod);
    wait_phase(&s, "ro", "Running", 30);
    let in_pod = |script: &str| {
        s.kubectl_ok(&["exec", "ro", "--", "sh", "-c", &format!("{{ {script}; }} 2>&1; echo \" exit=$?\"")])
    };
    // The upstream conformance test's write, and the runtime's own layers.
    for path in ["/file", "/tmp/file", "/usr/rkube-test-file", "/etc/rkube-test-file"] {
        let o = in_pod(&format!("echo test > {path}"));
        assert!(o.contains("Read-only file system") && !o.contains("exit=0"), "{path}: {o}");
        assert!(!Path::new(path).exists(), "{path} on the host");
    }
    // Volumes, the kubelet's files and devices stay writable.
    assert_eq!(in_pod("echo a > /scratch/x && cat /scratch/x"), "a\n exit=0\n");
    assert_eq!(in_pod("echo a > /out/ro-wrote && echo ok"), "ok\n exit=0\n");
    assert_eq!(in_pod("echo a > /dev/null && echo ok"), "ok\n exit=0\n");
    assert_eq!(in_pod("echo '1.2.3.4 x' >> /etc/hosts && echo ok"), "ok\n exit=0\n");
}

/// The kubelet's subPath checks: an expanded subPathExpr that is absolute keeps the container
/// waiting (CreateContainerConfigError) until the pod changes; a subPath through a symbolic
/// link out of its volume is refused, and nothing is made outside the volume.
#[test]
fn sub_paths_stay_inside_their_volumes() {
    let s = Server::start_with_node(&["--node-ip", "127.0.0.1"]);
    let (_keep, out) = out_dir();
    let waiting = |name: &str| -> Value {
        let mut w = Value::Null;
        let ok = wait_for(Duration::from_secs(20), || {
            w = get(&s, &pod_path(name))["status"]["containerStatuses"][0]["state"]["waiting"].clone();
            w["reason"] == "CreateContainerConfigError"
        });
        assert!(ok, "{name}: {w}");
        w
    };
    // Upstream's "a failing subpath expansion can be modified during the lifecycle".
    let mut pod = shell_pod("expand", "exec sleep 3600", &out, json!({}));
    pod["metadata"]["annotations"] = json!({"notmysubpath": "mypath"});
    let c = &mut pod["spec"]["containers"][0];
    c["env"] = json!([
        {"name": "POD_NAME", "value": "foo"},
        {"name": "ANNOTATION", "valueFrom": {"fieldRef": {"fieldPath": "metadata.annotations['mysubpath']"}}},
    ]);
    c["volumeMounts"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "work", "mountPath": "/subpath_mount", "subPathExpr": "$(ANNOTATION)/$(POD_NAME)"}));
    pod["spec"]["volumes"].as_array_mut().unwrap().push(json!({"name": "work", "emptyDir": {}}));
    create(&s, "/api/v1/namespaces/default/pods", &pod);
    assert_eq!(waiting("expand")["message"], "error SubPath `/foo` must not be an absolute path");
    assert_eq!(get(&s, &pod_path("expand"))["status"]["phase"], "Pending");
    let body = json!({"metadata": {"annotations": {"mysubpath": "mypath"}}}).to_string();
    let (code, _, msg) =
        s.curl("PATCH", &pod_path("expand"), Some(body.as_bytes()), &["Content-Type: application/merge-patch+json"]);
    assert_eq!(code, 200, "{msg}");
    wait_phase(&s, "expand", "Running", 30);
    assert_eq!(
        s.kubectl_ok(&["exec", "expand", "--", "sh", "-c", "echo in > /subpath_mount/f && cat /subpath_mount/f"]),
        "in\n"
    );

    // A symbolic link in a hostPath volume that points out of it.
    std::os::unix::fs::symlink("/etc", out.join("escape")).unwrap();
    let mut pod = shell_pod("sneaky", "exec sleep 3600", &out, json!({}));
    pod["spec"]["containers"][0]["volumeMounts"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "out", "mountPath": "/mnt", "subPath": "escape/rkube-subpath-test"}));
    create(&s, "/api/v1/namespaces/default/pods", &pod);
    let w = waiting("sneaky");
    assert!(w["message"].as_str().unwrap().contains("not within volume path"), "{w}");
    assert!(!Path::new("/etc/rkube-subpath-test").exists(), "nothing made outside the volume");
}
