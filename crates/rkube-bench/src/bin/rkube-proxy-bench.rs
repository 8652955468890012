//! `rkube-proxy-bench`: `rkube proxy` next to `kubectl proxy`, both started here with the
//! same kubeconfig in front of the same API server, and the server itself as the baseline.
//! Small GETs (latency at concurrency 1, throughput at higher concurrency) and a large LIST,
//! all through the same client stack (kube-rs), plus the proxies' RSS. Bounded in count and
//! time; figures are printed, never asserted.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use http_body_util::BodyExt;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod};
use kube::api::{Api, PostParams};
use rkube_bench::{client, cpu_time, ms, pct, pod, rss_mib, run};

#[derive(Parser)]
#[command(about = "Measure rkube proxy next to kubectl proxy")]
struct Args {
    /// Kubeconfig of the API server both proxies forward to.
    #[arg(long)]
    kubeconfig: String,
    /// The rkube binary.
    #[arg(long, default_value = "target/release/rkube")]
    rkube: String,
    /// The kubectl binary (a versioned one, not a dispatcher, so its PID is the proxy's).
    #[arg(long, default_value = "/usr/lib/google-cloud-sdk/bin/kubectl.1.33")]
    kubectl: String,
    /// GETs at concurrency 1 (latency).
    #[arg(long, default_value_t = 3_000)]
    latency_gets: usize,
    /// GETs at the throughput concurrency.
    #[arg(long, default_value_t = 30_000)]
    gets: usize,
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Pods in the listed namespace (created first if fewer exist).
    #[arg(long, default_value_t = 10_000)]
    list_pods: usize,
    /// LISTs of all those pods, at concurrency 1 and 4.
    #[arg(long, default_value_t = 30)]
    lists: usize,
    #[arg(long, default_value_t = 120)]
    phase_seconds_max: u64,
    /// Also run the throughput phase with each proxy limited to this many CPUs (a sidecar's
    /// CPU limit; cgroup v1 `cpu` or v2), so the proxies, not the shared cores, set the pace.
    #[arg(long)]
    cpu_limit: Option<f64>,
    /// Measure only the rkube proxy (for profiling it).
    #[arg(long)]
    only_rkube: bool,
}

const NS: &str = "proxy-bench";

struct Started {
    child: Child,
    addr: String,
}

/// A CPU cgroup holding one process, removed on drop (after the process is gone).
struct CpuLimit(std::path::PathBuf);

impl CpuLimit {
    fn new(name: &str, cpus: f64, pid: u32) -> Result<CpuLimit, String> {
        let period = 100_000u64;
        let quota = (cpus * period as f64) as u64;
        let v1 = std::path::Path::new("/sys/fs/cgroup/cpu");
        let (dir, files): (std::path::PathBuf, Vec<(&str, String)>) = if v1.join("cpu.cfs_quota_us").exists() {
            let d = v1.join(name);
            (d, vec![("cpu.cfs_period_us", period.to_string()), ("cpu.cfs_quota_us", quota.to_string())])
        } else {
            let d = std::path::Path::new("/sys/fs/cgroup").join(name);
            (d, vec![("cpu.max", format!("{quota} {period}"))])
        };
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        for (f, v) in files {
            std::fs::write(dir.join(f), v).map_err(|e| format!("{f}: {e}"))?;
        }
        std::fs::write(dir.join("cgroup.procs"), pid.to_string()).map_err(|e| format!("cgroup.procs: {e}"))?;
        Ok(CpuLimit(dir))
    }
}

impl Drop for CpuLimit {
    fn drop(&mut self) {
        // Hand the process back to the parent group, then remove ours.
        if let (Ok(procs), Some(parent)) = (std::fs::read_to_string(self.0.join("cgroup.procs")), self.0.parent()) {
            for pid in procs.lines() {
                let _ = std::fs::write(parent.join("cgroup.procs"), pid);
            }
        }
        for _ in 0..50 {
            if std::fs::remove_dir(&self.0).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Plain-client GETs/s through a proxy at the throughput concurrency.
async fn raw_rate(p: &Started, args: &Args) -> f64 {
    let raw = Arc::new(raw_client());
    let url = format!("http://{}/api/v1/namespaces/{NS}/configmaps/small", p.addr);
    let (took, _, f) = run(args.gets, args.concurrency, Duration::from_secs(args.phase_seconds_max), move |_| {
        let (raw, url) = (raw.clone(), url.clone());
        async move { fetch_raw(&raw, &url).await.is_some() }
    })
    .await;
    (args.gets - f) as f64 / took.as_secs_f64()
}

impl Drop for Started {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_proxy(bin: &str, first: &[&str], kubeconfig: &str) -> Started {
    let mut child = Command::new(bin)
        .args(first)
        .arg("--port=0")
        .env("KUBECONFIG", kubeconfig)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("start {bin}: {e}"));
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut line).expect("start line");
    let addr =
        line.trim().strip_prefix("Starting to serve on ").unwrap_or_else(|| panic!("{bin}: {line:?}")).to_string();
    Started { child, addr }
}

async fn plain_client(addr: &str) -> kube::Client {
    let cfg = kube::Config::new(format!("http://{addr}").parse().expect("url"));
    kube::Client::try_from(cfg).expect("client")
}

/// A plain HTTP/1.1 keep-alive client, the cheapest load generator at hand: the throughput
/// phases through a proxy use it so the proxy, not the client, is what runs out of CPU.
type Raw = hyper_util::client::legacy::Client<
    hyper_util::client::legacy::connect::HttpConnector,
    http_body_util::Empty<bytes::Bytes>,
>;

fn raw_client() -> Raw {
    hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .pool_max_idle_per_host(1024)
        .build_http()
}

async fn fetch_raw(c: &Raw, url: &str) -> Option<usize> {
    let resp = c.get(url.parse().ok()?).await.ok()?;
    if !resp.status().is_success() {
        return None;
    }
    Some(resp.into_body().collect().await.ok()?.to_bytes().len())
}

async fn fetch(c: &kube::Client, path: &str) -> Option<usize> {
    let req = http::Request::get(path).body(kube::client::Body::empty()).ok()?;
    let resp = c.send(req).await.ok()?;
    if !resp.status().is_success() {
        return None;
    }
    Some(resp.into_body().collect().await.ok()?.to_bytes().len())
}

struct Figures {
    /// Small GETs/s through the plain client (proxies only) and the proxy's CPU per GET.
    raw_rate: Option<f64>,
    cpu_per_get: Option<Duration>,
    get_p50: Duration,
    get_p99: Duration,
    get_rate: f64,
    list_p50: Duration,
    list_rate: f64,
    list_bytes: usize,
    failures: usize,
}

async fn measure(c: kube::Client, proxy: Option<&Started>, args: &Args) -> Figures {
    let limit = Duration::from_secs(args.phase_seconds_max);
    let small = format!("/api/v1/namespaces/{NS}/configmaps/small");
    let list = format!("/api/v1/namespaces/{NS}/pods");
    let c = Arc::new(c);
    let op = |path: String| {
        let c = c.clone();
        move |_| {
            let c = c.clone();
            let path = path.clone();
            async move { fetch(&c, &path).await.is_some() }
        }
    };
    let (_, _, warm_failed) = run(500, 4, limit, op(small.clone())).await;
    let (_, mut lat, f1) = run(args.latency_gets, 1, limit, op(small.clone())).await;
    lat.sort();
    let (took, _, f2) = run(args.gets, args.concurrency, limit, op(small.clone())).await;
    let get_rate = (args.gets - f2) as f64 / took.as_secs_f64();
    let (mut raw, mut cpu_per_get) = (None, None);
    if let Some(p) = proxy {
        let before = cpu_time(p.child.id());
        let rate = raw_rate(p, args).await;
        raw = Some(rate);
        if let (Some(a), Some(b)) = (before, cpu_time(p.child.id())) {
            cpu_per_get = Some((b - a) / (args.gets as u32).max(1));
        }
    }
    let list_bytes = fetch(&c, &list).await.unwrap_or(0);
    let (_, mut list_lat, f3) = run(args.lists, 1, limit, op(list.clone())).await;
    list_lat.sort();
    let (took, _, f4) = run(args.lists, 4, limit, op(list.clone())).await;
    Figures {
        raw_rate: raw,
        cpu_per_get,
        get_p50: pct(&lat, 0.5),
        get_p99: pct(&lat, 0.99),
        get_rate,
        list_p50: pct(&list_lat, 0.5),
        list_rate: (args.lists - f4) as f64 / took.as_secs_f64(),
        list_bytes,
        failures: warm_failed + f1 + f2 + f3 + f4,
    }
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let admin = client(&args.kubeconfig).await;
    let namespaces: Api<Namespace> = Api::all(admin.clone());
    let ns: Namespace = serde_json::from_value(serde_json::json!({"metadata": {"name": NS}})).expect("ns");
    let _ = namespaces.create(&PostParams::default(), &ns).await;
    let cms: Api<ConfigMap> = Api::namespaced(admin.clone(), NS);
    let cm: ConfigMap =
        serde_json::from_value(serde_json::json!({"metadata": {"name": "small"}, "data": {"k": "v"}})).expect("cm");
    let _ = cms.create(&PostParams::default(), &cm).await;
    let pods: Api<Pod> = Api::namespaced(admin.clone(), NS);
    let have = pods.list_metadata(&Default::default()).await.map(|l| l.items.len()).unwrap_or(0);
    if have < args.list_pods {
        let pods = Arc::new(pods);
        let start = have;
        run(args.list_pods - have, 32, Duration::from_secs(args.phase_seconds_max), move |i| {
            let pods = pods.clone();
            async move { pods.create(&PostParams::default(), &pod(&format!("p-{}", start + i))).await.is_ok() }
        })
        .await;
    }

    let ours = start_proxy(&args.rkube, &["proxy"], &args.kubeconfig);
    let theirs = start_proxy(&args.kubectl, &["proxy"], &args.kubeconfig);
    let idle = (rss_mib(Some(ours.child.id())), rss_mib(Some(theirs.child.id())));

    if args.only_rkube {
        println!("rkube proxy pid {}", ours.child.id());
        let f = measure(plain_client(&ours.addr).await, Some(&ours), &args).await;
        println!(
            "GET p50 {} GETs/s {:.0} (plain client {:.0}, proxy CPU {:?}/GET) LIST p50 {}",
            ms(f.get_p50),
            f.get_rate,
            f.raw_rate.unwrap_or(0.0),
            f.cpu_per_get.unwrap_or_default(),
            ms(f.list_p50)
        );
        return;
    }
    let direct = measure(admin.clone(), None, &args).await;
    let rkube = measure(plain_client(&ours.addr).await, Some(&ours), &args).await;
    let kubectl = measure(plain_client(&theirs.addr).await, Some(&theirs), &args).await;
    let after = (rss_mib(Some(ours.child.id())), rss_mib(Some(theirs.child.id())));
    // Both proxies get time to give memory back (Go's scavenger, rkube's heap trim).
    tokio::time::sleep(Duration::from_secs(12)).await;
    let settled = (rss_mib(Some(ours.child.id())), rss_mib(Some(theirs.child.id())));
    let mut limited = None;
    if let Some(cpus) = args.cpu_limit {
        let me = std::process::id();
        let a = CpuLimit::new(&format!("rkube-proxy-bench-{me}-rkube"), cpus, ours.child.id());
        let b = CpuLimit::new(&format!("rkube-proxy-bench-{me}-kubectl"), cpus, theirs.child.id());
        match (a, b) {
            (Ok(_a), Ok(_b)) => limited = Some((cpus, raw_rate(&ours, &args).await, raw_rate(&theirs, &args).await)),
            (Err(e), _) | (_, Err(e)) => println!("no CPU limit phase: {e}"),
        }
    }

    let mib = |v: Option<f64>| v.map(|v| format!("{v:.1} MiB")).unwrap_or_else(|| "-".into());
    println!(
        "small GET: {} at concurrency 1, {} at concurrency {}; LIST: {} pods, {:.1} MiB per answer, {} at concurrency 1 and 4",
        args.latency_gets,
        args.gets,
        args.concurrency,
        args.list_pods,
        direct.list_bytes as f64 / (1024.0 * 1024.0),
        args.lists
    );
    println!("| path | GET p50 | GET p99 | added p50 | GETs/s (kube-rs) | GETs/s (plain client) | proxy CPU per GET | LIST p50 | LISTs/s (c=4) | RSS idle | RSS after | RSS 12 s later | failures |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for (name, f, rss) in [
        ("direct (HTTPS, HTTP/2)", &direct, (None, None, None)),
        ("rkube proxy", &rkube, (idle.0, after.0, settled.0)),
        ("kubectl proxy", &kubectl, (idle.1, after.1, settled.1)),
    ] {
        let added = f.get_p50.as_secs_f64() - direct.get_p50.as_secs_f64();
        println!(
            "| {name} | {} | {} | {:.0} µs | {:.0} | {} | {} | {} | {:.1} | {} | {} | {} | {} |",
            ms(f.get_p50),
            ms(f.get_p99),
            added * 1e6,
            f.get_rate,
            f.raw_rate.map(|r| format!("{r:.0}")).unwrap_or_else(|| "-".into()),
            f.cpu_per_get.map(|c| format!("{:.1} µs", c.as_secs_f64() * 1e6)).unwrap_or_else(|| "-".into()),
            ms(f.list_p50),
            f.list_rate,
            mib(rss.0),
            mib(rss.1),
            mib(rss.2),
            f.failures
        );
    }
    if let Some((cpus, ours, theirs)) = limited {
        println!(
            "each proxy limited to {cpus} CPU: rkube proxy {ours:.0} GETs/s, kubectl proxy {theirs:.0} GETs/s (x{:.2})",
            ours / theirs
        );
    }
    println!(
        "rkube proxy / kubectl proxy: GET throughput x{:.2} (kube-rs client), x{:.2} (plain client); CPU per GET x{:.2} less; LIST throughput x{:.2}",
        rkube.get_rate / kubectl.get_rate,
        rkube.raw_rate.unwrap_or(0.0) / kubectl.raw_rate.unwrap_or(1.0),
        kubectl.cpu_per_get.unwrap_or_default().as_secs_f64() / rkube.cpu_per_get.unwrap_or(Duration::from_nanos(1)).as_secs_f64(),
        rkube.list_rate / kubectl.list_rate
    );
}
