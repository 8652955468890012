//! `rkube-bench`: measures a Kubernetes API server through its public API only, so the same
//! run can be pointed at rkube, kube-apiserver, k3s or kind. Every phase is bounded in count
//! and in time; figures are printed, never asserted.

use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Parser;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod};
use kube::api::{Api, DeleteParams, ListParams, PostParams, WatchEvent, WatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use rkube_bench::{client, cpu_time, ms, pct, pod, report, rss_mib, run};

#[derive(Parser)]
#[command(about = "Measure a Kubernetes API server")]
struct Args {
    /// Kubeconfig of the server to measure (written by --start-cmd if given).
    #[arg(long)]
    kubeconfig: String,
    /// Command that starts the server (time to ready is measured from its spawn to the
    /// first 200 from /readyz through the kubeconfig). Its PID gives RSS figures.
    #[arg(long)]
    start_cmd: Option<String>,
    /// PID of an already running server, for RSS figures.
    #[arg(long)]
    pid: Option<u32>,
    /// Namespace to create and use.
    #[arg(long, default_value = "bench")]
    namespace: String,
    /// Creates per concurrency level.
    #[arg(long, default_value_t = 10_000)]
    creates: usize,
    /// Concurrency levels for creates and gets.
    #[arg(long, value_delimiter = ',', default_value = "1,8,32")]
    concurrency: Vec<usize>,
    /// GETs at the highest concurrency.
    #[arg(long, default_value_t = 30_000)]
    gets: usize,
    /// Pods listed in the LIST phase (created first if fewer exist).
    #[arg(long, default_value_t = 10_000)]
    list_pods: usize,
    /// Watcher counts for the fan-out phase.
    #[arg(long, value_delimiter = ',', default_value = "100,1000")]
    watchers: Vec<usize>,
    /// Events (ConfigMap creates) per fan-out run.
    #[arg(long, default_value_t = 100)]
    watch_events: usize,
    /// Also compare the JSON and protobuf wire formats with raw requests (creates, GETs,
    /// LIST), at the highest concurrency.
    #[arg(long)]
    wire_compare: bool,
    /// Upper bound of any one phase.
    #[arg(long, default_value_t = 180)]
    phase_seconds_max: u64,
}

#[tokio::main]
async fn main() {
    let a = Args::parse();
    let limit = Duration::from_secs(a.phase_seconds_max);
    let mut pid = a.pid;
    let mut started_child = None;
    if let Some(cmd) = &a.start_cmd {
        let _ = std::fs::remove_file(&a.kubeconfig);
        let t0 = Instant::now();
        let child = Command::new("sh")
            .args(["-c", &format!("exec {cmd}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start server");
        pid = Some(child.id());
        let mut ready = None;
        while t0.elapsed() < Duration::from_secs(60) {
            if std::path::Path::new(&a.kubeconfig).exists() {
                if let Ok(kc) = Kubeconfig::read_from(&a.kubeconfig) {
                    if let Ok(cfg) = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default()).await {
                        if let Ok(c) = kube::Client::try_from(cfg) {
                            let req = http::Request::get("/readyz").body(Vec::new()).expect("req");
                            if c.request_text(req).await.is_ok() {
                                ready = Some(t0.elapsed());
                                break;
                            }
                        }
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        match ready {
            Some(d) => println!("time to ready: {}", ms(d)),
            None => println!("time to ready: not ready within 60 s"),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        started_child = Some(child);
    }
    if let Some(r) = rss_mib(pid) {
        println!("idle RSS: {r:.1} MiB");
    }
    let c = client(&a.kubeconfig).await;
    let namespaces: Api<Namespace> = Api::all(c.clone());
    let ns: Namespace = serde_json::from_value(serde_json::json!({"metadata": {"name": a.namespace}})).expect("ns");
    let _ = namespaces.create(&PostParams::default(), &ns).await;
    let pods: Api<Pod> = Api::namespaced(c.clone(), &a.namespace);

    // Creates at each concurrency.
    let mut created_names: Vec<String> = Vec::new();
    for (round, &conc) in a.concurrency.iter().enumerate() {
        let n = a.creates;
        let api = pods.clone();
        let (el, lat, failed) = run(n, conc, limit, move |i| {
            let api = api.clone();
            async move { api.create(&PostParams::default(), &pod(&format!("p{round}-{i}"))).await.is_ok() }
        })
        .await;
        created_names.extend((0..lat.len()).map(|i| format!("p{round}-{i}")));
        report(&format!("create pods, concurrency {conc}"), lat.len(), el, lat);
        if failed > 0 {
            println!("  ({failed} failed)");
        }
    }
    // GETs at the highest concurrency.
    let conc = a.concurrency.iter().copied().max().unwrap_or(32);
    if !created_names.is_empty() {
        let names = Arc::new(created_names.clone());
        let api = pods.clone();
        let (el, lat, failed) = run(a.gets, conc, limit, move |i| {
            let api = api.clone();
            let name = names[i % names.len()].clone();
            async move { api.get(&name).await.is_ok() }
        })
        .await;
        report(&format!("get pod, concurrency {conc}"), lat.len(), el, lat);
        if failed > 0 {
            println!("  ({failed} failed)");
        }
    }
    // LIST of list_pods pods in a namespace of their own: top up, then whole and paged.
    let list_ns = format!("{}-list", a.namespace);
    let ns2: Namespace = serde_json::from_value(serde_json::json!({"metadata": {"name": list_ns}})).expect("ns");
    let _ = namespaces.create(&PostParams::default(), &ns2).await;
    let pods: Api<Pod> = Api::namespaced(c.clone(), &list_ns);
    let existing = pods
        .list(&ListParams::default().limit(1))
        .await
        .map(|l| l.metadata.remaining_item_count.unwrap_or(0) as usize + l.items.len())
        .unwrap_or(0);
    if existing < a.list_pods {
        let api = pods.clone();
        let _ = run(a.list_pods - existing, conc, limit, move |i| {
            let api = api.clone();
            async move { api.create(&PostParams::default(), &pod(&format!("l-{i}"))).await.is_ok() }
        })
        .await;
    }
    let mut whole = Vec::new();
    let mut count = 0;
    for _ in 0..5 {
        let t = Instant::now();
        if let Ok(l) = pods.list(&ListParams::default()).await {
            count = l.items.len();
        }
        whole.push(t.elapsed());
    }
    whole.sort();
    println!(
        "list {count} pods: median {} (best {}, worst {})",
        ms(pct(&whole, 0.5)),
        ms(whole[0]),
        ms(*whole.last().unwrap_or(&Duration::ZERO))
    );
    let mut paged = Vec::new();
    for _ in 0..3 {
        let t = Instant::now();
        let mut lp = ListParams::default().limit(500);
        let mut n = 0;
        loop {
            let Ok(l) = pods.list(&lp).await else { break };
            n += l.items.len();
            match l.metadata.continue_.filter(|c| !c.is_empty()) {
                Some(cont) => lp = lp.continue_token(&cont),
                None => break,
            }
        }
        count = n;
        paged.push(t.elapsed());
    }
    paged.sort();
    println!("list {count} pods in pages of 500: median {}", ms(pct(&paged, 0.5)));

    if a.wire_compare {
        // ABBA order: each format runs once early and once late, so the growth of the store
        // between phases does not favour whichever format goes first.
        for (round, wire) in [Wire::Json, Wire::Protobuf, Wire::Protobuf, Wire::Json].into_iter().enumerate() {
            wire_phase(&c, wire, round, pid, &a.namespace, &list_ns, conc, a.creates.min(10_000), a.gets, limit).await;
        }
    }

    // Watch fan-out.
    for &w in &a.watchers {
        fanout(&c, &a.namespace, w, a.watch_events, limit).await;
    }
    if let Some(r) = rss_mib(pid) {
        println!("RSS after load: {r:.1} MiB");
    }
    let _ = namespaces.delete(&a.namespace, &DeleteParams::default()).await;
    let _ = namespaces.delete(&list_ns, &DeleteParams::default()).await;
    // Stop only the server this run started.
    if let Some(mut child) = started_child {
        let _ = child.kill();
        let _ = child.wait();
    }
}

async fn fanout(c: &kube::Client, ns: &str, watchers: usize, events: usize, limit: Duration) {
    let cms: Api<ConfigMap> = Api::namespaced(c.clone(), ns);
    let rv = cms
        .list(&ListParams::default().limit(1))
        .await
        .ok()
        .and_then(|l| l.metadata.resource_version)
        .unwrap_or_default();
    let sent: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let lat: Arc<Mutex<Vec<Duration>>> = Arc::default();
    let prefix = format!("w{watchers}-");
    let mut tasks = Vec::new();
    let mut ready = 0;
    for _ in 0..watchers {
        let Ok(stream) = cms.watch(&WatchParams::default().timeout(limit.as_secs() as u32), &rv).await else {
            continue;
        };
        ready += 1;
        let sent = sent.clone();
        let lat = lat.clone();
        let prefix = prefix.clone();
        tasks.push(tokio::spawn(async move {
            let mut stream = stream.boxed();
            let mut got = 0;
            let deadline = Instant::now() + limit;
            while got < events && Instant::now() < deadline {
                match tokio::time::timeout(Duration::from_secs(10), stream.try_next()).await {
                    Ok(Ok(Some(WatchEvent::Added(o)))) => {
                        let now = Instant::now();
                        let name = o.metadata.name.unwrap_or_default();
                        if name.starts_with(&prefix) {
                            got += 1;
                            if let Some(t) = sent.lock().unwrap().get(&name) {
                                lat.lock().unwrap().push(now - *t);
                            }
                        }
                    }
                    Ok(Ok(Some(_))) => {}
                    _ => break,
                }
            }
            got
        }));
    }
    let t0 = Instant::now();
    for i in 0..events {
        let name = format!("{prefix}{i}");
        sent.lock().unwrap().insert(name.clone(), Instant::now());
        let cm: ConfigMap =
            serde_json::from_value(serde_json::json!({"metadata": {"name": name}, "data": {"i": i.to_string()}}))
                .expect("cm");
        let _ = cms.create(&PostParams::default(), &cm).await;
        // Paced: one event every 10 ms, so delivery latency is not queueing behind a burst.
        tokio::time::sleep(Duration::from_millis(10)).await;
        if t0.elapsed() > limit {
            break;
        }
    }
    let mut received = 0;
    for t in tasks {
        received += t.await.unwrap_or(0);
    }
    let mut l = lat.lock().unwrap().clone();
    l.sort();
    let expected = ready * events;
    println!(
        "watch fan-out: {watchers} watchers ({ready} open), {events} events: {received}/{expected} delivered, lost {}; delivery latency from create request p50 {} p99 {} max {}",
        expected - received.min(expected),
        ms(pct(&l, 0.5)),
        ms(pct(&l, 0.99)),
        ms(l.last().copied().unwrap_or_default())
    );
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Wire {
    Json,
    Protobuf,
}

impl Wire {
    fn name(self) -> &'static str {
        match self {
            Wire::Json => "JSON",
            Wire::Protobuf => "protobuf",
        }
    }
    fn media(self) -> &'static str {
        match self {
            Wire::Json => "application/json",
            Wire::Protobuf => "application/vnd.kubernetes.protobuf",
        }
    }
    fn encode(self, v: &serde_json::Value) -> Vec<u8> {
        match self {
            Wire::Json => serde_json::to_vec(v).expect("json"),
            Wire::Protobuf => rkube_proto::encode_object(v).expect("protobuf"),
        }
    }
}

/// One raw request; true on a 2xx answer whose body was fully read.
async fn raw(c: &kube::Client, method: &str, path: &str, wire: Wire, body: Vec<u8>) -> bool {
    let req = http::Request::builder()
        .method(method)
        .uri(path)
        .header("Accept", wire.media())
        .header("Content-Type", wire.media())
        .body(kube::client::Body::from(body))
        .expect("request");
    match c.send(req).await {
        Ok(resp) => resp.status().is_success() && resp.into_body().collect_bytes().await.is_ok(),
        Err(_) => false,
    }
}

#[allow(clippy::too_many_arguments)]
async fn wire_phase(
    c: &kube::Client,
    wire: Wire,
    round: usize,
    pid: Option<u32>,
    ns: &str,
    list_ns: &str,
    conc: usize,
    creates: usize,
    gets: usize,
    limit: Duration,
) {
    let base = format!("/api/v1/namespaces/{ns}/pods");
    let tag = wire.name();
    // Bodies are encoded before the clock starts: the figure is the server's, not the
    // load generator's encoder sharing the same cores.
    let bodies: Arc<Vec<Vec<u8>>> = Arc::new(
        (0..creates)
            .map(|i| {
                wire.encode(&serde_json::json!({"apiVersion": "v1", "kind": "Pod",
                    "metadata": {"name": format!("{}-{round}-{i}", tag.to_lowercase()), "labels": {"app": "bench"}},
                    "spec": {"containers": [{"name": "c", "image": "busybox", "command": ["sleep", "3600"]}]}}))
            })
            .collect(),
    );
    let (cl, b) = (c.clone(), base.clone());
    let cpu_before = pid.and_then(cpu_time);
    let (el, lat, failed) = run(creates, conc, limit, move |i| {
        let c = cl.clone();
        let path = b.clone();
        let body = bodies[i].clone();
        async move { raw(&c, "POST", &path, wire, body).await }
    })
    .await;
    let done = lat.len();
    report(&format!("{tag}: create pods, concurrency {conc}"), done, el, lat);
    if let (Some(a), Some(b)) = (cpu_before, pid.and_then(cpu_time)) {
        println!("  server CPU per create: {:.1} µs", (b - a).as_secs_f64() * 1e6 / done.max(1) as f64);
    }
    if failed > 0 {
        println!("  ({failed} failed)");
    }
    let (cl, b) = (c.clone(), base.clone());
    let (el, lat, _) = run(gets, conc, limit, move |i| {
        let c = cl.clone();
        let path = format!("{b}/{}-{round}-{}", tag.to_lowercase(), i % creates.max(1));
        async move { raw(&c, "GET", &path, wire, Vec::new()).await }
    })
    .await;
    report(&format!("{tag}: get pod, concurrency {conc}"), lat.len(), el, lat);
    let list_path = format!("/api/v1/namespaces/{list_ns}/pods");
    let mut times = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        if raw(c, "GET", &list_path, wire, Vec::new()).await {
            times.push(t.elapsed());
        }
    }
    times.sort();
    println!(
        "{tag}: list all pods of the LIST namespace (server answer, not decoded): median {}",
        ms(pct(&times, 0.5))
    );
}
