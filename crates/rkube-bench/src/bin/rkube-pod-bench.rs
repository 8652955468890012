//! `rkube-pod-bench`: how fast pods run, through the public API only (so it can be pointed at
//! any cluster): create to Running for pods one at a time (p50/p99) and for a batch created
//! at once, delete to gone, and, given the node agent's PID, its RSS, threads and file
//! descriptors idle and with the batch running (the pods' own processes are not counted:
//! they are other processes). Bounded in count and time; figures are printed, never asserted.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Parser;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, PostParams, WatchEvent, WatchParams};
use rkube_bench::{anon_mib, client, ms, pct, rss_mib};

#[derive(Parser)]
#[command(about = "Measure pod start-up and the node agent's footprint")]
struct Args {
    #[arg(long)]
    kubeconfig: String,
    /// PID of the node agent (for RSS, threads and descriptors).
    #[arg(long)]
    agent_pid: Option<u32>,
    #[arg(long, default_value = "default")]
    namespace: String,
    /// Pods created one after another (each waited for) for the latency figures.
    #[arg(long, default_value_t = 50)]
    sequential: usize,
    /// Pods created at once.
    #[arg(long, default_value_t = 100)]
    batch: usize,
    /// Give up on a phase after this many seconds.
    #[arg(long, default_value_t = 120)]
    timeout: u64,
}

/// A pod whose program ends on SIGTERM, as a well-behaved one does: a container's program
/// is pid 1 of its own process namespace, where a signal without a handler is ignored (a bare
/// `sleep` would be killed only once the grace period ends, as on any Kubernetes node).
fn sleeper(name: &str) -> Pod {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": {"bench": "pods"}},
        "spec": {
            "terminationGracePeriodSeconds": 1,
            "automountServiceAccountToken": true,
            "containers": [{"name": "main", "image": "busybox", "command": ["sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait"]}],
        },
    }))
    .expect("pod")
}

fn threads_and_fds(pid: u32) -> (usize, usize) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let threads =
        status.lines().find_map(|l| l.strip_prefix("Threads:")).and_then(|v| v.trim().parse().ok()).unwrap_or(0);
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).map(|d| d.count()).unwrap_or(0);
    (threads, fds)
}

/// Watches the namespace's pods and records when each was first seen Running or gone.
struct Observer {
    running: Arc<Mutex<HashMap<String, Instant>>>,
    gone: Arc<Mutex<HashMap<String, Instant>>>,
}

impl Observer {
    async fn start(api: Api<Pod>) -> Observer {
        let running: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
        let gone: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
        let (r, g) = (running.clone(), gone.clone());
        let wp = WatchParams::default().labels("bench=pods");
        let mut stream = api.watch(&wp, "0").await.expect("watch").boxed();
        tokio::spawn(async move {
            while let Some(Ok(ev)) = stream.next().await {
                let now = Instant::now();
                match ev {
                    WatchEvent::Added(p) | WatchEvent::Modified(p)
                        if p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running") =>
                    {
                        let name = p.metadata.name.unwrap_or_default();
                        r.lock().unwrap().entry(name).or_insert(now);
                    }
                    WatchEvent::Deleted(p) => {
                        g.lock().unwrap().insert(p.metadata.name.unwrap_or_default(), now);
                    }
                    _ => {}
                }
            }
        });
        Observer { running, gone }
    }

    async fn wait(&self, map: &Arc<Mutex<HashMap<String, Instant>>>, name: &str, limit: Duration) -> Option<Instant> {
        let start = Instant::now();
        while start.elapsed() < limit {
            if let Some(t) = map.lock().unwrap().get(name) {
                return Some(*t);
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        None
    }
}

fn summary(what: &str, mut lat: Vec<Duration>) {
    lat.sort();
    if lat.is_empty() {
        println!("{what}: no samples");
        return;
    }
    println!(
        "{what}: n={} p50={} p99={} max={}",
        lat.len(),
        ms(pct(&lat, 0.5)),
        ms(pct(&lat, 0.99)),
        ms(*lat.last().unwrap())
    );
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let limit = Duration::from_secs(args.timeout);
    let c = client(&args.kubeconfig).await;
    let api: Api<Pod> = Api::namespaced(c, &args.namespace);
    if let Some(pid) = args.agent_pid {
        let (t, f) = threads_and_fds(pid);
        println!(
            "agent idle: rss={:.1} MiB (anonymous {:.1} MiB) threads={t} fds={f}",
            rss_mib(Some(pid)).unwrap_or(0.0),
            anon_mib(Some(pid)).unwrap_or(0.0)
        );
    }
    let obs = Observer::start(api.clone()).await;
    let dp = DeleteParams { grace_period_seconds: Some(1), ..DeleteParams::default() };

    // One at a time.
    let mut start_lat = Vec::new();
    let mut delete_lat = Vec::new();
    for i in 0..args.sequential {
        let name = format!("bench-seq-{i}");
        let t0 = Instant::now();
        if api.create(&PostParams::default(), &sleeper(&name)).await.is_err() {
            continue;
        }
        match obs.wait(&obs.running, &name, limit).await {
            Some(t) => start_lat.push(t - t0),
            None => println!("{name}: not Running within {limit:?}"),
        }
        let t1 = Instant::now();
        let _ = api.delete(&name, &dp).await;
        match obs.wait(&obs.gone, &name, limit).await {
            Some(t) => delete_lat.push(t - t1),
            None => println!("{name}: not gone within {limit:?}"),
        }
    }
    summary("create -> Running, one at a time", start_lat);
    summary("delete -> gone, one at a time", delete_lat);

    // A batch at once.
    let t0 = Instant::now();
    let names: Vec<String> = (0..args.batch).map(|i| format!("bench-batch-{i}")).collect();
    let creates = futures::stream::iter(names.clone())
        .map(|n| {
            let api = api.clone();
            async move { api.create(&PostParams::default(), &sleeper(&n)).await.is_ok() }
        })
        .buffer_unordered(16)
        .collect::<Vec<bool>>()
        .await;
    let created = creates.iter().filter(|ok| **ok).count();
    let mut all = Vec::new();
    for n in &names {
        if let Some(t) = obs.wait(&obs.running, n, limit.saturating_sub(t0.elapsed())).await {
            all.push(t - t0);
        }
    }
    all.sort();
    println!(
        "{} pods created at once: {}/{} Running, all Running after {}",
        args.batch,
        all.len(),
        created,
        all.last().map(|d| ms(*d)).unwrap_or_else(|| "-".into())
    );
    if let Some(pid) = args.agent_pid {
        let (t, f) = threads_and_fds(pid);
        println!(
            "agent with {} pods: rss={:.1} MiB (anonymous {:.1} MiB) threads={t} fds={f}",
            all.len(),
            rss_mib(Some(pid)).unwrap_or(0.0),
            anon_mib(Some(pid)).unwrap_or(0.0)
        );
    }
    let t1 = Instant::now();
    for n in &names {
        let _ = api.delete(n, &dp).await;
    }
    let mut gone = 0;
    for n in &names {
        if obs.wait(&obs.gone, n, limit.saturating_sub(t1.elapsed())).await.is_some() {
            gone += 1;
        }
    }
    println!("{} pods deleted at once: {gone} gone after {}", args.batch, ms(t1.elapsed()));
    if let Some(pid) = args.agent_pid {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let (t, f) = threads_and_fds(pid);
        println!(
            "agent after the batch: rss={:.1} MiB (anonymous {:.1} MiB) threads={t} fds={f}",
            rss_mib(Some(pid)).unwrap_or(0.0),
            anon_mib(Some(pid)).unwrap_or(0.0)
        );
    }
}
