//! `rkube-stream-bench`: what `kubectl exec`, `logs -f` and `port-forward` cost, through the
//! public API only (any cluster with a node that runs `busybox` and `python` images):
//! kubectl's own start, `kubectl exec pod -- true` round trips (p50/p99) for each kubectl
//! given, a large stdout stream through exec, the delay from a container's write to `kubectl
//! logs -f` printing it, and a large download through `kubectl port-forward`. Bounded in
//! count and time; figures are printed, never asserted.

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use clap::Parser;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, PostParams};
use rkube_bench::{client, ms, pct};

#[derive(Parser)]
#[command(about = "Measure exec, logs -f and port-forward through the API server")]
struct Args {
    #[arg(long)]
    kubeconfig: String,
    /// kubectl binaries to measure exec with (each speaks its own protocol version).
    #[arg(long, default_values_t = ["kubectl".to_string()])]
    kubectl: Vec<String>,
    #[arg(long, default_value = "default")]
    namespace: String,
    /// Round trips per kubectl.
    #[arg(long, default_value_t = 50)]
    round_trips: usize,
    /// MiB sent through exec's stdout and through port-forward.
    #[arg(long, default_value_t = 100)]
    mib: usize,
    /// A directory the node can mount (hostPath) for the port-forward download.
    #[arg(long, default_value = "/tmp")]
    scratch: String,
}

fn pod(name: &str, command: &[&str], image: &str, extra: serde_json::Value) -> Pod {
    let mut v = serde_json::json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
        "spec": {"terminationGracePeriodSeconds": 1,
                 "containers": [{"name": "main", "image": image, "command": command}]},
    });
    if let serde_json::Value::Object(m) = extra {
        for (k, val) in m {
            v["spec"][k] = val;
        }
    }
    serde_json::from_value(v).expect("pod")
}

async fn wait_running(api: &Api<Pod>, name: &str) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let p = api.get(name).await.expect("get pod");
        let ready = p
            .status
            .as_ref()
            .and_then(|s| s.container_statuses.as_ref())
            .and_then(|c| c.first())
            .is_some_and(|c| c.ready);
        if ready {
            return;
        }
        assert!(Instant::now() < deadline, "{name} never got ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn kubectl(bin: &str, kc: &str, args: &[&str]) -> Command {
    let mut c = Command::new(bin);
    c.args(args).env("KUBECONFIG", kc).stdin(Stdio::null());
    c
}

fn timed(mut c: Command) -> Duration {
    let t = Instant::now();
    let s = c.stdout(Stdio::null()).stderr(Stdio::null()).status().expect("run");
    assert!(s.success(), "{c:?} failed");
    t.elapsed()
}

fn summary(mut v: Vec<Duration>) -> (Duration, Duration) {
    v.sort();
    (pct(&v, 0.5), pct(&v, 0.99))
}

#[tokio::main]
async fn main() {
    let a = Args::parse();
    let api: Api<Pod> = Api::namespaced(client(&a.kubeconfig).await, &a.namespace);
    let names = ["bench-exec", "bench-logs", "bench-web"];
    for n in names {
        let _ = api.delete(n, &DeleteParams::default().grace_period(0)).await;
    }
    let dir = std::path::Path::new(&a.scratch).join(format!("rkube-stream-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    let blob = vec![0x5au8; a.mib << 20];
    std::fs::write(dir.join("blob"), &blob).expect("blob");
    drop(blob);
    let pp = PostParams::default();
    api.create(&pp, &pod("bench-exec", &["sleep", "3600"], "busybox", serde_json::json!({}))).await.expect("pod");
    let logger = "while true; do date +%s%N; sleep 0.02; done";
    api.create(&pp, &pod("bench-logs", &["sh", "-c", logger], "busybox", serde_json::json!({}))).await.expect("pod");
    let web = pod(
        "bench-web",
        &["python3", "-m", "http.server", "8080", "--bind", "127.0.0.1", "--directory", "/data"],
        "python",
        serde_json::json!({"volumes": [{"name": "d", "hostPath": {"path": dir.display().to_string()}}]}),
    );
    let mut web = serde_json::to_value(web).unwrap();
    web["spec"]["containers"][0]["volumeMounts"] = serde_json::json!([{"name": "d", "mountPath": "/data"}]);
    web["spec"]["containers"][0]["readinessProbe"] = serde_json::json!({"periodSeconds": 1,
        "exec": {"command": ["python3", "-c", "import socket; socket.create_connection(('127.0.0.1', 8080), 1)"]}});
    api.create(&pp, &serde_json::from_value(web).unwrap()).await.expect("pod");
    for n in names {
        wait_running(&api, n).await;
    }
    let kc = a.kubeconfig.as_str();

    for bin in &a.kubectl {
        let start: Vec<Duration> =
            (0..a.round_trips.min(20)).map(|_| timed(kubectl(bin, kc, &["version", "--client"]))).collect();
        let (start50, _) = summary(start);
        // What any request costs kubectl (config, TLS, one GET): the part of exec that is not
        // the stream.
        let get: Vec<Duration> =
            (0..a.round_trips.min(20)).map(|_| timed(kubectl(bin, kc, &["get", "pod", "bench-exec"]))).collect();
        let (get50, _) = summary(get);
        let rt: Vec<Duration> =
            (0..a.round_trips).map(|_| timed(kubectl(bin, kc, &["exec", "bench-exec", "--", "true"]))).collect();
        let (p50, p99) = summary(rt);
        println!(
            "{bin}: start {}; get pod {}; exec -- true p50 {} p99 {}; over its start: {}; over a get: {}",
            ms(start50),
            ms(get50),
            ms(p50),
            ms(p99),
            ms(p50.saturating_sub(start50)),
            ms(p50.saturating_sub(get50))
        );
        let mut c =
            kubectl(bin, kc, &["exec", "bench-exec", "--", "head", "-c", &format!("{}", a.mib << 20), "/dev/zero"]);
        let t = Instant::now();
        let mut child = c.stdout(Stdio::piped()).stderr(Stdio::null()).spawn().expect("kubectl exec");
        let mut out = child.stdout.take().unwrap();
        let mut buf = vec![0u8; 1 << 20];
        let mut got = 0usize;
        while let Ok(n) = out.read(&mut buf) {
            if n == 0 {
                break;
            }
            got += n;
        }
        let _ = child.wait();
        let secs = t.elapsed().as_secs_f64();
        println!("{bin}: exec stdout {} MiB in {secs:.2} s: {:.0} MiB/s", got >> 20, (got as f64 / 1048576.0) / secs);
    }

    // logs -f: the container writes its clock every 20 ms; the delay is the reader's clock
    // minus the line's (same machine, same clock).
    let bin = a.kubectl[0].as_str();
    let mut child = kubectl(bin, kc, &["logs", "-f", "--tail=0", "bench-logs"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("kubectl logs -f");
    let mut delays = Vec::new();
    for line in BufReader::new(child.stdout.take().unwrap()).lines().map_while(Result::ok) {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
        if let Ok(ts) = line.trim().parse::<u128>() {
            delays.push(Duration::from_nanos(now.saturating_sub(ts) as u64));
        }
        if delays.len() >= 200 {
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    let (p50, p99) = summary(delays);
    println!("{bin}: logs -f write to print p50 {} p99 {}", ms(p50), ms(p99));

    // port-forward: one download of the blob through kubectl's local port.
    let mut pf = kubectl(bin, kc, &["port-forward", "pod/bench-web", ":8080"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("kubectl port-forward");
    let mut lines = BufReader::new(pf.stdout.take().unwrap()).lines();
    let first = lines.next().and_then(Result::ok).unwrap_or_default();
    std::thread::spawn(move || for _ in lines {});
    let port = first.split("127.0.0.1:").nth(1).and_then(|r| r.split(' ').next()).unwrap_or("").to_string();
    let t = Instant::now();
    let o = Command::new("curl")
        .args(["-sS", "-o", "/dev/null", "-w", "%{size_download}", &format!("http://127.0.0.1:{port}/blob")])
        .output()
        .expect("curl");
    let secs = t.elapsed().as_secs_f64();
    let bytes: f64 = String::from_utf8_lossy(&o.stdout).trim().parse().unwrap_or(0.0);
    println!("{bin}: port-forward {:.0} MiB in {secs:.2} s: {:.0} MiB/s", bytes / 1048576.0, bytes / 1048576.0 / secs);
    let _ = pf.kill();
    let _ = pf.wait();

    for n in names {
        let _ = api.delete(n, &DeleteParams::default().grace_period(0)).await;
    }
    let _ = std::fs::remove_dir_all(&dir);
}
