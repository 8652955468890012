//! `kubectl exec` end to end over the real path: kubectl → the API server's `pods/exec` →
//! the node agent's kubelet API (`/exec`, HTTPS) → a process in the container. kubectl 1.27
//! and 1.28 speak SPDY (relayed byte for byte); 1.33 speaks WebSocket `v5.channel.k8s.io`,
//! which the API server translates to SPDY as kube-apiserver does; the Python client speaks
//! WebSocket `v4.channel.k8s.io`, relayed to the agent. `kubectl attach` (and `kubectl run
//! -i`) takes the same path to `/attach`, joined to the container's own streams.
//! `kubectl cp` is tar through exec, both ways. `kubectl debug` adds an ephemeral container
//! through `pods/ephemeralcontainers` and attaches to it.

mod common;

use std::io::Write;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::pods::{command_pod, create, host_pid, out_dir, python, wait_phase};
use common::{require, wait_for, Server};
use serde_json::json;

const KUBECTLS: &str = "/usr/lib/google-cloud-sdk/bin";
const TOKENS: &str = "bob-token,bob,1001,\"dev\"\n";

fn kubectl_path(v: &str) -> String {
    let bin = format!("{KUBECTLS}/kubectl.{v}");
    assert!(require(&bin, &["version", "--client"]), "{bin} is needed");
    bin
}

fn start() -> (tempfile::TempDir, Server) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let tokens = tmp.path().join("tokens.csv");
    std::fs::write(&tokens, TOKENS).expect("tokens");
    let tokens = tokens.display().to_string();
    let s = Server::start_with_node(&["--node-ip", "127.0.0.1", "--token-auth-file", &tokens]);
    (tmp, s)
}

/// A pod whose container `main` sleeps, with a host directory at /out.
fn sleeper(s: &Server, name: &str, out: &std::path::Path) {
    let pod = command_pod(name, vec!["/bin/sh".into(), "-c".into(), "exec sleep 3600".into()], out, json!({}));
    create(s, "/api/v1/namespaces/default/pods", &pod);
    wait_phase(s, name, "Running", 60);
}

fn run(bin: &str, s: &Server, env: &[(&str, &str)], args: &[&str], input: Option<&[u8]>) -> Output {
    let mut cmd = Command::new(bin);
    cmd.args(args).env("KUBECONFIG", &s.kubeconfig).stdout(Stdio::piped()).stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.stdin(if input.is_some() { Stdio::piped() } else { Stdio::null() });
    let mut child = cmd.spawn().expect("run kubectl");
    if let Some(data) = input {
        let mut stdin = child.stdin.take().expect("stdin");
        let data = data.to_vec();
        std::thread::spawn(move || {
            let _ = stdin.write_all(&data);
        });
    }
    child.wait_with_output().expect("kubectl output")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn kubectl_exec_passes_output_input_and_exit_codes_over_spdy_and_websocket() {
    let (_tmp, s) = start();
    let (_out_tmp, out) = out_dir();
    sleeper(&s, "box", &out);
    // 1 MiB that is not text, to come back byte for byte.
    let input: Vec<u8> = (0..1024 * 1024u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
    type Env = &'static [(&'static str, &'static str)];
    let cases: &[(&str, Env, &str)] = &[
        ("1.27", &[], "SPDY"),
        ("1.28", &[], "SPDY"),
        ("1.32", &[], "v5.channel.k8s.io"),
        ("1.33", &[], "v5.channel.k8s.io"),
        ("1.33", &[("KUBECTL_REMOTE_COMMAND_WEBSOCKETS", "false")], "SPDY"),
    ];
    for (v, env, transport) in cases {
        let bin = kubectl_path(v);
        let what = format!("kubectl {v} over {transport}");
        let o = run(&bin, &s, env, &["-v=6", "exec", "box", "--", "sh", "-c", "echo out; echo err >&2; exit 3"], None);
        assert_eq!(o.status.code(), Some(3), "{what}: {}", text(&o.stderr));
        assert_eq!(text(&o.stdout), "out\n", "{what}");
        let err = text(&o.stderr);
        assert!(err.contains("err\n") && err.contains("command terminated with exit code 3"), "{what}: {err}");
        let websocket = err.contains("The subprotocol is v5.channel.k8s.io");
        assert_eq!(websocket, *transport != "SPDY", "{what} took the other transport: {err}");

        let o = run(&bin, &s, env, &["exec", "-i", "box", "--", "cat"], Some(&input));
        assert!(o.status.success(), "{what} stdin: {}", text(&o.stderr));
        assert!(o.stdout == input, "{what}: {} bytes came back of {}", o.stdout.len(), input.len());

        let o = run(&bin, &s, env, &["exec", "box", "--", "nonexistent-program"], None);
        assert!(!o.status.success(), "{what}");
        assert!(text(&o.stderr).contains("executable file not found"), "{what}: {}", text(&o.stderr));

        let o = run(&bin, &s, env, &["exec", "box", "-c", "nope", "--", "true"], None);
        assert!(!o.status.success());
        assert!(text(&o.stderr).contains("container nope is not valid for pod box"), "{what}: {}", text(&o.stderr));
    }
    // What the seeds look at: the container's own environment.
    let env = s.kubectl_ok(&["exec", "box", "--", "env"]);
    assert!(env.lines().any(|l| l == "HOSTNAME=box"), "{env}");
    assert!(env.lines().any(|l| l.starts_with("KUBERNETES_SERVICE_HOST=")), "{env}");

    // A pod no node runs yet.
    create(
        &s,
        "/api/v1/namespaces/default/pods",
        &json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "nowhere"},
                "spec": {"nodeSelector": {"no": "such"}, "containers": [{"name": "c", "image": "busybox"}]}}),
    );
    let o = s.kubectl(&["exec", "nowhere", "--", "true"]);
    assert!(text(&o.stderr).contains("pod nowhere does not have a host assigned"), "{}", text(&o.stderr));
}

#[test]
fn a_tty_exec_gets_a_terminal_of_the_clients_size() {
    assert!(require("script", &["--version"]), "script (util-linux) is needed");
    let (_tmp, s) = start();
    let (_out_tmp, out) = out_dir();
    sleeper(&s, "term", &out);
    for v in ["1.27", "1.33"] {
        let bin = kubectl_path(v);
        let line =
            format!("stty cols 91 rows 17; {bin} exec -it term -- sh -c 'tty; stty size; echo TERM=$TERM; exit 4'");
        let o = Command::new("script")
            .args(["-qec", &line, "/dev/null"])
            .env("KUBECONFIG", &s.kubeconfig)
            .stdin(Stdio::null())
            .output()
            .expect("script");
        let shown = text(&o.stdout);
        assert_eq!(o.status.code(), Some(4), "kubectl {v}: {shown}");
        assert!(shown.contains("/dev/pts/"), "kubectl {v}: no terminal: {shown}");
        assert!(shown.contains("17 91"), "kubectl {v}: the size did not arrive: {shown}");
        assert!(shown.contains("TERM=xterm"), "kubectl {v}: {shown}");
    }
}

#[test]
fn the_python_client_streams_exec_over_websocket() {
    let py = python().expect("the Python kubernetes client is needed");
    let (tmp, s) = start();
    let (_out_tmp, out) = out_dir();
    sleeper(&s, "pybox", &out);
    let script = tmp.path().join("exec.py");
    std::fs::write(
        &script,
        r#"
import sys
from kubernetes import client, config
from kubernetes.stream import stream
config.load_kube_config(sys.argv[1])
v1 = client.CoreV1Api()
r = stream(v1.connect_get_namespaced_pod_exec, "pybox", "default", command=["sh", "-c", "echo py-out; echo py-err >&2; exit 5"],
           stderr=True, stdin=False, stdout=True, tty=False, _preload_content=False)
r.run_forever(timeout=30)
print(repr(r.read_stdout()), repr(r.read_stderr()), r.returncode)
print(repr(stream(v1.connect_get_namespaced_pod_exec, "pybox", "default", command=["cat", "/etc/hostname"],
                  stderr=True, stdin=False, stdout=True, tty=False)))
"#,
    )
    .expect("script");
    let o = Command::new(py).arg(&script).arg(&s.kubeconfig).output().expect("python");
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert_eq!(text(&o.stdout), "'py-out\\n' 'py-err\\n' 5\n'pybox\\n'\n");
}

#[test]
fn exec_is_authorized_as_create_or_get_on_pods_exec_and_ends_with_its_client() {
    let (_tmp, s) = start();
    let (_out_tmp, out) = out_dir();
    sleeper(&s, "guarded", &out);
    s.kubectl_ok(&["create", "role", "pod-reader", "--verb=get,list", "--resource=pods"]);
    s.kubectl_ok(&["create", "rolebinding", "bob-reads", "--role=pod-reader", "--user=bob"]);
    let as_bob = |bin: &str| {
        Command::new(bin)
            .arg("--kubeconfig=/dev/null")
            .arg(format!("--server={}", s.url))
            .arg(format!("--certificate-authority={}", s.pki("ca.crt")))
            .arg("--token=bob-token")
            .args(["exec", "guarded", "--", "echo", "in"])
            .output()
            .expect("kubectl")
    };
    // SPDY is a POST (create). kubectl 1.33's WebSocket upgrade is a GET (get), refused too,
    // after which it falls back to SPDY: both report the create.
    for (v, verb) in [("1.28", "create"), ("1.33", "create")] {
        let o = as_bob(&kubectl_path(v));
        let err = text(&o.stderr);
        assert!(!o.status.success(), "kubectl {v}");
        assert!(
            err.contains(&format!(
                "User \"bob\" cannot {verb} resource \"pods/exec\" in API group \"\" in the namespace \"default\""
            )),
            "kubectl {v}: {err}"
        );
    }
    s.kubectl_ok(&["create", "role", "pod-exec", "--verb=create,get", "--resource=pods/exec"]);
    s.kubectl_ok(&["create", "rolebinding", "bob-execs", "--role=pod-exec", "--user=bob"]);
    for v in ["1.28", "1.33"] {
        let mut o = as_bob(&kubectl_path(v));
        // RBAC caches nothing, but give the binding a moment to be read back.
        for _ in 0..20 {
            if o.status.success() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
            o = as_bob(&kubectl_path(v));
        }
        assert!(o.status.success(), "kubectl {v}: {}", text(&o.stderr));
        assert_eq!(text(&o.stdout), "in\n");
    }

    // A command whose client is killed is ended (SPDY relay and WebSocket translation).
    for v in ["1.28", "1.33"] {
        let pid_file = out.join(format!("pid-{v}"));
        let _ = std::fs::remove_file(&pid_file);
        let script = format!("echo $$ > /out/pid-{v}; exec sleep 3600");
        let mut k = Command::new(kubectl_path(v))
            .args(["exec", "guarded", "--", "sh", "-c", &script])
            .env("KUBECONFIG", &s.kubeconfig)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("kubectl");
        let mut pid = 0;
        assert!(
            wait_for(Duration::from_secs(30), || {
                pid = std::fs::read_to_string(&pid_file).ok().and_then(|p| p.trim().parse().ok()).unwrap_or(0);
                pid > 0
            }),
            "kubectl {v}: the command never started"
        );
        // It runs in the container's process namespace: its host number, from the pod's cgroups.
        let pid = host_pid(&s, "guarded", pid);
        assert!(std::path::Path::new(&format!("/proc/{pid}")).exists());
        let _ = k.kill();
        let _ = k.wait();
        assert!(
            wait_for(Duration::from_secs(20), || !std::path::Path::new(&format!("/proc/{pid}")).exists()),
            "kubectl {v}: the command outlived its client"
        );
    }
}

/// A pod whose container keeps its standard input open for attach.
fn attachable(s: &Server, name: &str, script: &str, tty: bool, out: &std::path::Path) {
    let mut pod = command_pod(name, vec!["/bin/sh".into(), "-c".into(), script.into()], out, json!({}));
    pod["spec"]["restartPolicy"] = json!("Never");
    let c = &mut pod["spec"]["containers"][0];
    c["stdin"] = json!(true);
    c["stdinOnce"] = json!(true);
    c["tty"] = json!(tty);
    create(s, "/api/v1/namespaces/default/pods", &pod);
    wait_phase(s, name, "Running", 60);
}

fn terminated(s: &Server, name: &str) -> serde_json::Value {
    let mut state = serde_json::Value::Null;
    let ok = wait_for(Duration::from_secs(30), || {
        state = common::pods::get(s, &common::pods::pod_path(name))["status"]["containerStatuses"][0]["state"].clone();
        state.get("terminated").is_some()
    });
    assert!(ok, "{name} never terminated: {state}");
    state["terminated"].clone()
}

#[test]
fn kubectl_attach_joins_the_containers_own_streams() {
    let (_tmp, s) = start();
    let (_out_tmp, out) = out_dir();
    // stdinOnce: the first attach's end of input is the container's.
    let script = "echo started; while read l; do echo \"got $l\"; echo \"err $l\" >&2; done; echo bye; exit 6";
    for (v, transport) in [("1.27", "SPDY"), ("1.33", "v5.channel.k8s.io")] {
        let name = format!("reader-{}", v.replace('.', "-"));
        attachable(&s, &name, script, false, &out);
        let o = run(&kubectl_path(v), &s, &[], &["-v=6", "attach", "-i", &name], Some(b"a\nb\n"));
        let (stdout, stderr) = (text(&o.stdout), text(&o.stderr));
        assert!(o.status.success(), "kubectl {v}: {stderr}");
        // Output from before the attach is in the log only.
        assert_eq!(stdout, "got a\ngot b\nbye\n", "kubectl {v}: {stderr}");
        assert!(stderr.contains("err a\nerr b\n"), "kubectl {v}: {stderr}");
        assert_eq!(
            stderr.contains("The subprotocol is v5.channel.k8s.io"),
            transport != "SPDY",
            "kubectl {v}: {stderr}"
        );
        assert_eq!(terminated(&s, &name)["exitCode"], 6, "kubectl {v}");
        // The log has both outputs, from the start (their relative order is the pipes').
        let log = s.kubectl_ok(&["logs", &name]);
        let mut lines: Vec<&str> = log.lines().collect();
        lines.sort();
        assert_eq!(lines, ["bye", "err a", "err b", "got a", "got b", "started"], "{log}");
    }

    // kubectl run -i --rm: create, attach, then delete the pod.
    let o = run(
        &kubectl_path("1.33"),
        &s,
        &[],
        &["run", "once", "-i", "--rm", "--restart=Never", "--image=busybox", "--", "sh", "-c", "read x; echo hello $x"],
        Some(b"world\n"),
    );
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(text(&o.stdout).starts_with("hello world\n"), "{}", text(&o.stdout));
    assert!(
        wait_for(Duration::from_secs(30), || common::pods::get(&s, &common::pods::pod_path("once")).is_null()),
        "kubectl run --rm deletes its pod"
    );

    // A client that goes away leaves the container running.
    attachable(&s, "stays", "exec sleep 3600", false, &out);
    let mut k = Command::new(kubectl_path("1.28"))
        .args(["attach", "-i", "stays"])
        .env("KUBECONFIG", &s.kubeconfig)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("kubectl");
    std::thread::sleep(Duration::from_secs(2));
    let _ = k.kill();
    let _ = k.wait();
    std::thread::sleep(Duration::from_secs(1));
    let pod = common::pods::get(&s, &common::pods::pod_path("stays"));
    assert!(pod["status"]["containerStatuses"][0]["state"]["running"].is_object(), "{pod:#}");

    // Not running (any more): the kubelet's error, through the API server.
    let o = s.kubectl(&["attach", "reader-1-27"]);
    assert!(!o.status.success());
    let err = text(&o.stderr);
    assert!(err.contains("completed pod; current phase is Failed"), "{err}");
}

#[test]
fn kubectl_attach_to_a_terminal_container_gets_its_size_and_input() {
    assert!(require("script", &["--version"]), "script (util-linux) is needed");
    let (_tmp, s) = start();
    let (_out_tmp, out) = out_dir();
    for v in ["1.28", "1.33"] {
        let name = format!("term-{}", v.replace('.', "-"));
        attachable(&s, &name, "read -r line; tty; stty size; echo \"line=$line\"; exit 7", true, &out);
        let bin = kubectl_path(v);
        let line = format!("stty cols 91 rows 17; {bin} attach -it {name}");
        let mut child = Command::new("script")
            .args(["-qec", &line, "/dev/null"])
            .env("KUBECONFIG", &s.kubeconfig)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("script");
        let mut stdin = child.stdin.take().expect("stdin");
        std::thread::spawn(move || {
            // After kubectl is attached (the container's terminal keeps what comes early
            // anyway).
            std::thread::sleep(Duration::from_secs(2));
            let _ = stdin.write_all(b"hello\r");
            std::thread::sleep(Duration::from_secs(20));
        });
        let o = child.wait_with_output().expect("script");
        let shown = text(&o.stdout);
        assert!(shown.contains("/dev/pts/"), "kubectl {v}: no terminal: {shown}");
        assert!(shown.contains("17 91"), "kubectl {v}: the size did not arrive: {shown}");
        assert!(shown.contains("line=hello"), "kubectl {v}: {shown}");
        assert_eq!(terminated(&s, &name)["exitCode"], 7, "kubectl {v}");
    }
}

#[test]
fn kubectl_cp_copies_both_ways_through_tar_in_the_container() {
    let (tmp, s) = start();
    let (_out_tmp, out) = out_dir();
    sleeper(&s, "files", &out);
    let src = tmp.path().join("src");
    std::fs::create_dir_all(src.join("sub")).unwrap();
    std::fs::write(src.join("a.txt"), "one\n").unwrap();
    let blob: Vec<u8> = (0..300_000u32).map(|i| (i.wrapping_mul(2654435761) >> 7) as u8).collect();
    std::fs::write(src.join("sub/blob"), &blob).unwrap();
    for v in ["1.28", "1.33"] {
        let bin = kubectl_path(v);
        let dst = format!("/tmp/in-{v}");
        let o = run(&bin, &s, &[], &["cp", &src.display().to_string(), &format!("files:{dst}")], None);
        assert!(o.status.success(), "kubectl {v} cp in: {}", text(&o.stderr));
        let o = run(&bin, &s, &[], &["exec", "files", "--", "cat", &format!("{dst}/a.txt")], None);
        assert_eq!(text(&o.stdout), "one\n", "kubectl {v}");
        let back = tmp.path().join(format!("back-{v}"));
        let o = run(&bin, &s, &[], &["cp", &format!("files:{dst}"), &back.display().to_string()], None);
        assert!(o.status.success(), "kubectl {v} cp out: {}", text(&o.stderr));
        assert_eq!(std::fs::read_to_string(back.join("a.txt")).unwrap(), "one\n", "kubectl {v}");
        assert!(std::fs::read(back.join("sub/blob")).unwrap() == blob, "kubectl {v}: the binary file changed");
    }
}

/// An ephemeral container's status, once `done` says it is far enough.
fn ephemeral_status(s: &Server, pod: &str, name: &str, done: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
    let mut status = serde_json::Value::Null;
    let ok = wait_for(Duration::from_secs(30), || {
        let p = common::pods::get(s, &common::pods::pod_path(pod));
        let list = p["status"]["ephemeralContainerStatuses"].as_array().cloned().unwrap_or_default();
        status = list.into_iter().find(|c| c["name"] == name).unwrap_or_default();
        done(&status)
    });
    assert!(ok, "ephemeral container {name} of {pod}: {status:#}");
    status
}

/// The host's processes whose command line is exactly `argv`.
fn processes(argv: &[&str]) -> Vec<u32> {
    let want: Vec<u8> = argv.iter().flat_map(|a| a.bytes().chain([0])).collect();
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c == want))
        .collect()
}

#[test]
fn kubectl_debug_runs_an_ephemeral_container_once_inside_the_pod() {
    let (_tmp, s) = start();
    let (_out_tmp, out) = out_dir();
    sleeper(&s, "box", &out);
    let k133 = kubectl_path("1.33");

    // Without -i kubectl only adds it; it runs on its own, in the pod's network namespace.
    let script = "echo from-debug; readlink /proc/self/ns/net; exit 0";
    let args = ["debug", "pod/box", "--image=busybox", "-c", "once", "--profile=general", "--", "sh", "-c", script];
    let o = run(&k133, &s, &[], &args, None);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let status = ephemeral_status(&s, "box", "once", |c| c["state"]["terminated"].is_object());
    assert_eq!(status["state"]["terminated"]["reason"], "Completed", "{status:#}");
    assert_eq!((&status["ready"], &status["restartCount"], status.get("started")), (&json!(false), &json!(0), None));
    let logs = s.kubectl_ok(&["logs", "box", "-c", "once"]);
    let main_net = s.kubectl_ok(&["exec", "box", "-c", "main", "--", "readlink", "/proc/self/ns/net"]);
    assert_eq!(logs, format!("from-debug\n{main_net}"));
    let pod = common::pods::get(&s, &common::pods::pod_path("box"));
    let spec = &pod["spec"]["ephemeralContainers"][0];
    assert_eq!(spec["securityContext"], json!({"capabilities": {"add": ["SYS_PTRACE"]}}), "the general profile");
    assert_eq!(pod["status"]["phase"], "Running");

    // -i: kubectl attaches to its standard input and output (1.27 over SPDY, 1.33 over v5).
    for v in ["1.27", "1.33"] {
        let name = format!("piped-{}", v.replace('.', "-"));
        let o = run(
            &kubectl_path(v),
            &s,
            &[],
            &["debug", "-i", "pod/box", "--image=busybox", "-c", &name],
            Some(b"echo piped-$((1+2)); exit 0\n"),
        );
        assert!(o.status.success(), "kubectl {v}: {}", text(&o.stderr));
        assert!(text(&o.stdout).contains("piped-3"), "kubectl {v}: {} / {}", text(&o.stdout), text(&o.stderr));
        ephemeral_status(&s, "box", &name, |c| c["state"]["terminated"]["exitCode"] == 0);
    }

    // A long-running one: exec reaches it by name; the pod's end is its end.
    let argv = ["sleep", "3617"];
    let o = run(&k133, &s, &[], &["debug", "pod/box", "--image=busybox", "-c", "long", "--", argv[0], argv[1]], None);
    assert!(o.status.success(), "{}", text(&o.stderr));
    ephemeral_status(&s, "box", "long", |c| c["state"]["running"].is_object());
    assert_eq!(s.kubectl_ok(&["exec", "box", "-c", "long", "--", "echo", "in-long"]), "in-long\n");
    assert_eq!(processes(&argv).len(), 1, "the ephemeral container's process");
    // Ephemeral containers count for neither readiness nor restarts.
    let pod = common::pods::get(&s, &common::pods::pod_path("box"));
    let ready = pod["status"]["conditions"].as_array().unwrap().iter().find(|c| c["type"] == "Ready").cloned();
    assert_eq!(ready.unwrap()["status"], "True", "{pod:#}");
    let once = ephemeral_status(&s, "box", "once", |c| c["state"]["terminated"].is_object());
    assert_eq!((&once["restartCount"], &once["state"], &once["lastState"]), (&json!(0), &status["state"], &json!({})));

    s.kubectl_ok(&["delete", "pod", "box", "--wait=true", "--timeout=60s"]);
    assert!(
        wait_for(Duration::from_secs(10), || processes(&argv).is_empty()),
        "the ephemeral container outlived its pod"
    );
}

#[test]
fn logs_exec_and_port_forward_work_through_kubectl_proxy_and_rkube_proxy_as_its_filter_allows() {
    let (_tmp, s) = start();
    let (_out_tmp, out) = out_dir();
    let script = "echo proxied log; exec python3 -m http.server 8080 --bind 127.0.0.1 --directory /etc";
    let mut pod = command_pod("behind", vec!["/bin/sh".into(), "-c".into(), script.into()], &out, json!({}));
    pod["spec"]["containers"][0]["image"] = json!("python");
    create(&s, "/api/v1/namespaces/default/pods", &pod);
    wait_phase(&s, "behind", "Running", 60);
    for bin in ["kubectl", env!("CARGO_BIN_EXE_rkube")] {
        let (addr, _proxy) = s.local_proxy(bin, &[]);
        let (open_addr, _open) = s.local_proxy(bin, &["--disable-filter"]);
        // A client of the proxy needs no credentials of its own.
        let via = |addr: &str, v: &str, args: &[&str]| {
            let mut all = vec!["--kubeconfig=/dev/null".to_string(), format!("--server=http://{addr}")];
            all.extend(args.iter().map(|a| a.to_string()));
            let all: Vec<&str> = all.iter().map(String::as_str).collect();
            run(&kubectl_path(v), &s, &[], &all, None)
        };
        let o = via(&addr, "1.33", &["logs", "behind"]);
        // (The server's access log follows once it has been reached.)
        assert!(text(&o.stdout).starts_with("proxied log\n"), "{bin}: {}{}", text(&o.stdout), text(&o.stderr));
        // exec is refused by the default filter (kubectl proxy's --reject-paths), allowed
        // without it, over SPDY (1.28) and WebSocket (1.33).
        let o = via(&addr, "1.33", &["exec", "behind", "--", "echo", "hi"]);
        assert!(!o.status.success(), "{bin}: exec passed the default filter");
        for v in ["1.28", "1.33"] {
            let o = via(&open_addr, v, &["exec", "behind", "--", "sh", "-c", "echo through $0; exit 4", "proxy"]);
            assert_eq!(
                (text(&o.stdout).as_str(), o.status.code()),
                ("through proxy\n", Some(4)),
                "{bin} {v}: {}",
                text(&o.stderr)
            );
        }
        // port-forward through the proxy (1.28: SPDY upgrade; 1.33: the WebSocket tunnel).
        for v in ["1.28", "1.33"] {
            let mut pf = common::Ends(
                Command::new(kubectl_path(v))
                    .args([
                        "--kubeconfig=/dev/null",
                        &format!("--server=http://{addr}"),
                        "port-forward",
                        "pod/behind",
                        ":8080",
                    ])
                    .stdout(Stdio::piped())
                    .stderr(Stdio::null())
                    .spawn()
                    .unwrap(),
            );
            let rx = common::lines(pf.0.stdout.take().unwrap());
            let line = rx.recv_timeout(Duration::from_secs(30)).unwrap_or_default();
            let port = line.split("127.0.0.1:").nth(1).and_then(|r| r.split(' ').next()).unwrap_or("").to_string();
            let got = Command::new("curl")
                .args(["-sS", "-m", "20", &format!("http://127.0.0.1:{port}/hostname")])
                .output()
                .unwrap();
            drop(pf);
            assert_eq!(text(&got.stdout), "behind\n", "{bin} {v}: {line} {}", text(&got.stderr));
        }
    }
}
