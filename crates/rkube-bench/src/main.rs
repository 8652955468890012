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
use rkube_bench::{client, cpu_time, ms, pct, pod, report, rss_mib, run, threads_cpu_time};

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
    /// How many times the wire comparison runs its JSON, protobuf, protobuf, JSON phases
    /// (each creating `--creates` pods, at most 10,000); the means over all rounds are
    /// printed at the end.
    #[arg(long, default_value_t = 1)]
    wire_rounds: usize,
    /// The pod the wire comparison creates: `small` (one container, a command) or
    /// `typical` (what a chart's Deployment stamps out: ports, env, resources, probes,
    /// mounts, a security context, tolerations).
    #[arg(long, default_value = "small", value_parser = ["small", "typical"])]
    wire_pod: String,
    /// Upper bound of any one phase.
    #[arg(long, default_value_t = 180)]
    phase_seconds_max: u64,
    /// Only the unread-watch phase: this many watches of a 1 MiB ConfigMap that never read
    /// a byte while it changes (what a slow or hostile client does); prints the server's
    /// RSS before and after. 0 runs the ordinary phases.
    #[arg(long, default_value_t = 0)]
    unread_watches: usize,
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
    if a.unread_watches > 0 {
        unread_watches(&c, &a.namespace, a.unread_watches, pid).await;
        if let Some(mut child) = started_child {
            let _ = child.kill();
            let _ = child.wait();
        }
        return;
    }

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
        let mut totals: HashMap<&'static str, Vec<PhaseFigures>> = HashMap::new();
        let order = [Wire::Json, Wire::Protobuf, Wire::Protobuf, Wire::Json];
        for (phase, wire) in order.into_iter().cycle().take(4 * a.wire_rounds.max(1)).enumerate() {
            let shape = WirePod { typical: a.wire_pod == "typical" };
            let f = wire_phase(
                &c,
                wire,
                shape,
                phase,
                pid,
                &a.namespace,
                &list_ns,
                conc,
                a.creates.min(10_000),
                a.gets,
                limit,
            )
            .await;
            totals.entry(wire.name()).or_default().push(f);
        }
        for wire in [Wire::Json, Wire::Protobuf] {
            let fs = totals.get(wire.name()).map(Vec::as_slice).unwrap_or_default();
            let mean = |f: fn(&PhaseFigures) -> f64| fs.iter().map(f).sum::<f64>() / fs.len().max(1) as f64;
            println!(
                "{} over {} phases: creates {:.0}/s, server CPU per create {:.1} µs (API {:.1} µs, committer {:.1} µs), gets {:.0}/s, LIST median {:.2} ms",
                wire.name(),
                fs.len(),
                mean(|f| f.creates_per_s),
                mean(|f| f.cpu_per_create_us),
                mean(|f| f.cpu_per_create_us - f.committer_per_create_us),
                mean(|f| f.committer_per_create_us),
                mean(|f| f.gets_per_s),
                mean(|f| f.list_ms),
            );
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

/// Watches that never read: each gets the 1 MiB object as its initial state and 5 changes
/// of it, and the server must hold them without a copy per watch.
async fn unread_watches(c: &kube::Client, ns: &str, n: usize, pid: Option<u32>) {
    let cms: Api<ConfigMap> = Api::namespaced(c.clone(), ns);
    let big = |round: usize| -> ConfigMap {
        let data = format!("{round}{}", "x".repeat(1024 * 1024 - 1));
        serde_json::from_value(serde_json::json!({"metadata": {"name": "big"}, "data": {"d": data}})).expect("cm")
    };
    let _ = cms.create(&PostParams::default(), &big(0)).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = rss_mib(pid);
    let mut held = Vec::new();
    for _ in 0..n {
        let req = http::Request::get(format!("/api/v1/namespaces/{ns}/configmaps?watch=true&resourceVersion=0"))
            .body(kube::client::Body::empty())
            .expect("req");
        match c.send(req).await {
            Ok(resp) if resp.status().is_success() => held.push(resp),
            _ => break,
        }
    }
    for round in 1..=5 {
        let _ = cms.replace("big", &PostParams::default(), &big(round)).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = rss_mib(pid);
    println!(
        "unread watches: {} of {n} open on a 1 MiB ConfigMap changed 5 times; server RSS {:.1} MiB before, {:.1} MiB after",
        held.len(),
        before.unwrap_or(0.0),
        after.unwrap_or(0.0)
    );
    drop(held);
    let _ = cms.delete("big", &DeleteParams::default()).await;
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

/// The pod a wire phase creates.
#[derive(Clone, Copy)]
struct WirePod {
    typical: bool,
}

impl WirePod {
    fn body(self, name: &str) -> serde_json::Value {
        use serde_json::json;
        if !self.typical {
            return json!({"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": name, "labels": {"app": "bench"}},
                "spec": {"containers": [{"name": "c", "image": "busybox", "command": ["sleep", "3600"]}]}});
        }
        json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name,
            "labels": {"app.kubernetes.io/name": "web", "app.kubernetes.io/instance": "bench",
                       "app.kubernetes.io/version": "1.4.2", "pod-template-hash": "5d8f7c9b6"},
            "annotations": {"checksum/config": "3f2a9c0d1e4b5a6978c1d2e3f4a5b6c7d8e9f0a1b2c3d4e5f6a7b8c9d0e1f2a3"}},
        "spec": {
            "containers": [{
                "name": "web", "image": "registry.example.com/team/web:1.4.2",
                "args": ["--port=8080", "--log-level=info"],
                "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"},
                          {"name": "metrics", "containerPort": 9090, "protocol": "TCP"}],
                "env": [{"name": "LOG_FORMAT", "value": "json"},
                        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                        {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
                        {"name": "GOMAXPROCS", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu"}}}],
                "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"cpu": "500m", "memory": "256Mi"}},
                "readinessProbe": {"httpGet": {"path": "/readyz", "port": "http"}, "periodSeconds": 5},
                "livenessProbe": {"httpGet": {"path": "/healthz", "port": "http"}, "initialDelaySeconds": 10, "periodSeconds": 10},
                "volumeMounts": [{"name": "config", "mountPath": "/etc/web", "readOnly": true},
                                 {"name": "tmp", "mountPath": "/tmp"}],
                "securityContext": {"allowPrivilegeEscalation": false, "readOnlyRootFilesystem": true,
                                    "runAsNonRoot": true, "runAsUser": 10001, "capabilities": {"drop": ["ALL"]}}
            }],
            "volumes": [{"name": "config", "configMap": {"name": "web-config"}}, {"name": "tmp", "emptyDir": {}}],
            "nodeSelector": {"kubernetes.io/os": "linux"},
            "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "web", "effect": "NoSchedule"}],
            "terminationGracePeriodSeconds": 30
        }})
    }
}

/// What one wire phase measured.
struct PhaseFigures {
    creates_per_s: f64,
    cpu_per_create_us: f64,
    committer_per_create_us: f64,
    gets_per_s: f64,
    list_ms: f64,
}

#[allow(clippy::too_many_arguments)]
async fn wire_phase(
    c: &kube::Client,
    wire: Wire,
    shape: WirePod,
    round: usize,
    pid: Option<u32>,
    ns: &str,
    list_ns: &str,
    conc: usize,
    creates: usize,
    gets: usize,
    limit: Duration,
) -> PhaseFigures {
    let base = format!("/api/v1/namespaces/{ns}/pods");
    let tag = wire.name();
    // Bodies are encoded before the clock starts: the figure is the server's, not the
    // load generator's encoder sharing the same cores.
    let bodies: Arc<Vec<Vec<u8>>> = Arc::new(
        (0..creates).map(|i| wire.encode(&shape.body(&format!("{}-{round}-{i}", tag.to_lowercase())))).collect(),
    );
    let (cl, b) = (c.clone(), base.clone());
    let cpu_before = pid.and_then(cpu_time);
    let committer_before = pid.and_then(|p| threads_cpu_time(p, "rkube-committer"));
    let (el, lat, failed) = run(creates, conc, limit, move |i| {
        let c = cl.clone();
        let path = b.clone();
        let body = bodies[i].clone();
        async move { raw(&c, "POST", &path, wire, body).await }
    })
    .await;
    let done = lat.len();
    let creates_per_s = done as f64 / el.as_secs_f64();
    report(&format!("{tag}: create pods, concurrency {conc}"), done, el, lat);
    let per_create = |a: Duration, b: Duration| (b.saturating_sub(a)).as_secs_f64() * 1e6 / done.max(1) as f64;
    let mut cpu_per_create_us = 0.0;
    let mut committer_per_create_us = 0.0;
    if let (Some(a), Some(b)) = (cpu_before, pid.and_then(cpu_time)) {
        cpu_per_create_us = per_create(a, b);
        if let (Some(ca), Some(cb)) = (committer_before, pid.and_then(|p| threads_cpu_time(p, "rkube-committer"))) {
            committer_per_create_us = per_create(ca, cb);
        }
        println!(
            "  server CPU per create: {cpu_per_create_us:.1} µs (committer thread {committer_per_create_us:.1} µs)"
        );
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
    let gets_per_s = lat.len() as f64 / el.as_secs_f64();
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
    PhaseFigures {
        creates_per_s,
        cpu_per_create_us,
        committer_per_create_us,
        gets_per_s,
        list_ms: pct(&times, 0.5).as_secs_f64() * 1e3,
    }
}
