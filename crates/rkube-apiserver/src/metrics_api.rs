//! `metrics.k8s.io/v1beta1`, the resource metrics API that `kubectl top` and the
//! HorizontalPodAutoscaler read: NodeMetrics and PodMetrics as metrics-server computes them
//! (`sigs.k8s.io/metrics-server` `pkg/storage`), from each kubelet's `/metrics/resource`.
//!
//! Deliberate difference: a cluster runs metrics-server as an aggregated API server that
//! scrapes every kubelet every 15 s; rkube serves the group itself and scrapes a node when
//! its metrics are asked for, so an idle cluster does no work. CPU is a rate, so it needs two
//! scrapes: a node's previous scrape is kept, and when it is missing or more than
//! [`MAX_WINDOW`] old a second one follows after [`MIN_WINDOW`] (the first `kubectl top`
//! takes about a second; metrics-server answers "metrics not available yet" for a minute).
//! Scrapes less than [`MIN_WINDOW`] apart are not repeated: their answers are shared.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::BodyExt;
use rkube_api::table::go_duration;
use rkube_api::{quantity, ApiError, ApiResult, Computed};
use serde_json::{json, Value};

use crate::registry::parse_stored;
use crate::ApiServer;

/// The shortest window a CPU rate is computed over.
pub const MIN_WINDOW: Duration = Duration::from_secs(1);
/// An older previous scrape is not used for a rate: a fresh pair is taken.
pub const MAX_WINDOW: Duration = Duration::from_secs(90);
/// How long a kubelet has to answer (metrics-server's `--kubelet-request-timeout`).
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest `/metrics/resource` answer read.
const SCRAPE_MAX: usize = 16 << 20;

/// The scrapes kept per node.
#[derive(Default)]
pub struct Cache {
    nodes: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Pair>>>>,
}

#[derive(Default)]
struct Pair {
    previous: Option<Arc<Scrape>>,
    current: Option<Arc<Scrape>>,
}

/// One node's `/metrics/resource`, parsed.
#[derive(Debug, Default)]
struct Scrape {
    at: Option<Instant>,
    node: Option<Point>,
    /// (namespace, pod, container) → its point and start time.
    containers: HashMap<(String, String, String), (Point, Option<f64>)>,
}

/// CPU seconds and working-set bytes with the kubelet's timestamps (ms).
#[derive(Debug, Default, Clone, Copy)]
struct Point {
    cpu: Option<(f64, i64)>,
    memory: Option<(f64, i64)>,
}

/// Usage over a window.
#[derive(Debug, Clone, Copy)]
struct Usage {
    nano_cores: u64,
    memory: u64,
    /// When the newer sample was taken (ms) and the window (ms).
    at_ms: i64,
    window_ms: i64,
}

/// Parses the Prometheus text a kubelet serves at `/metrics/resource`.
fn parse(text: &str) -> Scrape {
    let mut s = Scrape::default();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (name, labels, rest) = match line.find('{') {
            Some(i) => {
                let Some(end) = line[i..].find('}').map(|e| i + e) else { continue };
                (&line[..i], labels_of(&line[i + 1..end]), &line[end + 1..])
            }
            None => match line.split_once(' ') {
                Some((n, r)) => (n, HashMap::new(), r),
                None => continue,
            },
        };
        let mut fields = rest.split_whitespace();
        let Some(value) = fields.next().and_then(|v| v.parse::<f64>().ok()) else { continue };
        let ts = fields.next().and_then(|t| t.parse::<i64>().ok()).unwrap_or(0);
        let key = || {
            let l = |k: &str| labels.get(k).cloned().unwrap_or_default();
            (l("namespace"), l("pod"), l("container"))
        };
        match name {
            "node_cpu_usage_seconds_total" => s.node.get_or_insert_with(Point::default).cpu = Some((value, ts)),
            "node_memory_working_set_bytes" => s.node.get_or_insert_with(Point::default).memory = Some((value, ts)),
            "container_cpu_usage_seconds_total" => s.containers.entry(key()).or_default().0.cpu = Some((value, ts)),
            "container_memory_working_set_bytes" => s.containers.entry(key()).or_default().0.memory = Some((value, ts)),
            "container_start_time_seconds" => s.containers.entry(key()).or_default().1 = Some(value),
            _ => {}
        }
    }
    s
}

/// `a="x",b="y"` with the text format's escapes.
fn labels_of(text: &str) -> HashMap<String, String> {
    let mut out = HashMap::new();
    let mut chars = text.chars().peekable();
    loop {
        let name: String = chars
            .by_ref()
            .take_while(|c| *c != '=')
            .collect::<String>()
            .trim()
            .trim_start_matches(',')
            .trim()
            .to_string();
        if name.is_empty() || chars.next() != Some('"') {
            break;
        }
        let mut value = String::new();
        while let Some(c) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some('n') => value.push('\n'),
                    Some(o) => value.push(o),
                    None => break,
                },
                '"' => break,
                o => value.push(o),
            }
        }
        out.insert(name, value);
    }
    out
}

/// The usage between two points; None if either lacks a figure or the counter went back
/// (a restarted container).
fn usage(prev: &Point, cur: &Point) -> Option<Usage> {
    let ((c1, t1), (c2, t2)) = (prev.cpu?, cur.cpu?);
    let (memory, _) = cur.memory?;
    let window_ms = t2 - t1;
    if window_ms <= 0 || c2 < c1 {
        return None;
    }
    Some(Usage {
        nano_cores: ((c2 - c1) / (window_ms as f64 / 1000.0) * 1e9) as u64,
        memory: memory.max(0.0) as u64,
        at_ms: t2,
        window_ms,
    })
}

async fn scrape(server: &ApiServer, node: &str) -> Result<Scrape, String> {
    let k = crate::streams::Kubelet::of(server, node, "/metrics/resource".into()).map_err(|e| e.message)?;
    let get = async {
        let resp = crate::logs::connect_and_get(k.tls.clone(), &k.host, k.port, &k.authority, &k.path).await?;
        if resp.status() != http::StatusCode::OK {
            return Err(format!("request failed, status: \"{}\"", resp.status()));
        }
        let body = http_body_util::Limited::new(resp.into_body(), SCRAPE_MAX)
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        Ok::<Bytes, String>(body)
    };
    let body = tokio::time::timeout(SCRAPE_TIMEOUT, get).await.map_err(|_| "timed out".to_string())??;
    let mut s = parse(&String::from_utf8_lossy(&body));
    s.at = Some(Instant::now());
    Ok(s)
}

/// The two scrapes of a node a rate is computed from (see the module's notes).
async fn pair(server: &ApiServer, node: &str) -> Result<(Arc<Scrape>, Arc<Scrape>), String> {
    let slot = {
        let mut nodes = server.resource_metrics.nodes.lock().map_err(|_| "poisoned".to_string())?;
        if nodes.len() > 10_000 {
            nodes.clear();
        }
        nodes.entry(node.to_string()).or_default().clone()
    };
    let mut p = slot.lock().await;
    let age = |s: &Option<Arc<Scrape>>| s.as_ref().and_then(|s| s.at).map(|a| a.elapsed());
    if age(&p.current).is_none_or(|a| a >= MIN_WINDOW) {
        let s = Arc::new(scrape(server, node).await?);
        p.previous = p.current.take();
        p.current = Some(s);
    }
    if age(&p.previous).is_none_or(|a| a > MAX_WINDOW) {
        tokio::time::sleep(MIN_WINDOW).await;
        let s = Arc::new(scrape(server, node).await?);
        p.previous = p.current.take();
        p.current = Some(s);
    }
    match (&p.previous, &p.current) {
        (Some(a), Some(b)) => Ok((a.clone(), b.clone())),
        _ => Err("no scrapes".into()),
    }
}

/// The pairs of several nodes, scraped at once; a node that cannot be scraped is left out
/// (and logged), as metrics-server leaves it out.
async fn pairs(server: &ApiServer, nodes: Vec<String>) -> HashMap<String, (Arc<Scrape>, Arc<Scrape>)> {
    let tasks = nodes.into_iter().map(|n| async move {
        let r = pair(server, &n).await;
        (n, r)
    });
    let mut out = HashMap::new();
    for (n, r) in futures::future::join_all(tasks).await {
        match r {
            Ok(p) => {
                out.insert(n, p);
            }
            Err(e) => tracing::warn!(node = %n, error = %e, "cannot scrape the node's resource metrics"),
        }
    }
    out
}

/// The objects of a `metrics.k8s.io` read: one for a get (or NotFound), every one for a list.
pub async fn read(
    server: &Arc<ApiServer>,
    kind: Computed,
    namespace: Option<&str>,
    name: Option<&str>,
) -> ApiResult<Vec<Value>> {
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    match kind {
        Computed::NodeMetrics => {
            let nodes = stored(server, name.map(|n| format!("/registry/core/nodes/{n}")), "/registry/core/nodes/")?;
            let names: Vec<String> = nodes.iter().map(|n| str_at(n, "/metadata/name")).collect();
            let scraped = pairs(server, names).await;
            let mut out = Vec::new();
            for n in &nodes {
                let node = str_at(n, "/metadata/name");
                let Some((prev, cur)) = scraped.get(&node) else { continue };
                let (Some(a), Some(b)) = (&prev.node, &cur.node) else { continue };
                let Some(u) = usage(a, b) else { continue };
                out.push(json!({
                    "kind": "NodeMetrics",
                    "apiVersion": "metrics.k8s.io/v1beta1",
                    "metadata": meta(n, &now),
                    "timestamp": timestamp(u.at_ms),
                    "window": go_duration(Duration::from_millis(u.window_ms.max(0) as u64)),
                    "usage": {"cpu": quantity::nanos(u.nano_cores), "memory": quantity::binary(u.memory)},
                }));
            }
            if let (Some(n), true) = (name, out.is_empty()) {
                return Err(ApiError::not_found("metrics.k8s.io", "nodemetrics", n));
            }
            Ok(out)
        }
        Computed::PodMetrics => {
            let prefix = match namespace {
                Some(ns) => format!("/registry/core/pods/{ns}/"),
                None => "/registry/core/pods/".into(),
            };
            let pods = stored(server, name.map(|n| format!("{prefix}{n}")), &prefix)?;
            let mut nodes: Vec<String> =
                pods.iter().map(|p| str_at(p, "/spec/nodeName")).filter(|n| !n.is_empty()).collect();
            nodes.sort();
            nodes.dedup();
            let scraped = pairs(server, nodes).await;
            let mut out = Vec::new();
            for p in &pods {
                let Some((prev, cur)) = scraped.get(&str_at(p, "/spec/nodeName")) else { continue };
                let (ns, pod) = (str_at(p, "/metadata/namespace"), str_at(p, "/metadata/name"));
                let mut containers = Vec::new();
                let mut latest: Option<Usage> = None;
                let names = p
                    .pointer("/spec/initContainers")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .chain(p.pointer("/spec/containers").and_then(Value::as_array).into_iter().flatten())
                    .filter_map(|c| c["name"].as_str());
                for c in names {
                    let key = (ns.clone(), pod.clone(), c.to_string());
                    let (Some((a, started_a)), Some((b, started_b))) =
                        (prev.containers.get(&key), cur.containers.get(&key))
                    else {
                        continue;
                    };
                    // A container that restarted between the scrapes has no rate yet.
                    if started_a != started_b {
                        continue;
                    }
                    let Some(u) = usage(a, b) else { continue };
                    if latest.is_none_or(|l| u.at_ms > l.at_ms) {
                        latest = Some(u);
                    }
                    containers.push(json!({
                        "name": c,
                        "usage": {"cpu": quantity::nanos(u.nano_cores), "memory": quantity::binary(u.memory)},
                    }));
                }
                let Some(l) = latest else { continue };
                out.push(json!({
                    "kind": "PodMetrics",
                    "apiVersion": "metrics.k8s.io/v1beta1",
                    "metadata": meta(p, &now),
                    "timestamp": timestamp(l.at_ms),
                    "window": go_duration(Duration::from_millis(l.window_ms.max(0) as u64)),
                    "containers": containers,
                }));
            }
            if let (Some(n), true) = (name, out.is_empty()) {
                let ns = namespace.unwrap_or("");
                return Err(ApiError::not_found("metrics.k8s.io", "podmetrics", &format!("{ns}/{n}")));
            }
            Ok(out)
        }
    }
}

/// The stored object at `key` (none if it is missing), or every object under `prefix`.
fn stored(server: &ApiServer, key: Option<String>, prefix: &str) -> ApiResult<Vec<Value>> {
    match key {
        Some(k) => server.store.get(&k).map(|kv| parse_stored(&kv)).transpose().map(|o| o.into_iter().collect()),
        None => server
            .store
            .list(prefix, &Default::default())
            .map_err(|e| ApiError::internal(e.to_string()))?
            .items
            .iter()
            .map(parse_stored)
            .collect(),
    }
}

fn str_at(v: &Value, p: &str) -> String {
    v.pointer(p).and_then(Value::as_str).unwrap_or("").to_string()
}

/// Name, namespace and labels of the object measured; created now (as metrics-server).
fn meta(of: &Value, now: &str) -> Value {
    let mut m = json!({"name": str_at(of, "/metadata/name"), "creationTimestamp": now});
    let ns = str_at(of, "/metadata/namespace");
    if !ns.is_empty() {
        m["namespace"] = json!(ns);
    }
    if let Some(l) = of.pointer("/metadata/labels").filter(|l| l.as_object().is_some_and(|o| !o.is_empty())) {
        m["labels"] = l.clone();
    }
    m
}

fn timestamp(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms).unwrap_or_default().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kubelets_resource_metrics_are_parsed_and_rated() {
        let a = parse(
            "# HELP x y\nnode_cpu_usage_seconds_total 10 1000\nnode_memory_working_set_bytes 2.048e+06 1000\n\
             container_cpu_usage_seconds_total{container=\"c\",namespace=\"n\",pod=\"p\\\"q\"} 1 1000\n\
             container_memory_working_set_bytes{container=\"c\",namespace=\"n\",pod=\"p\\\"q\"} 4096 1000\n\
             container_start_time_seconds{container=\"c\",namespace=\"n\",pod=\"p\\\"q\"} 1.7e+09\n",
        );
        let b = parse("node_cpu_usage_seconds_total 11.5 3000\nnode_memory_working_set_bytes 4096 3000\n");
        let u = usage(a.node.as_ref().unwrap(), b.node.as_ref().unwrap()).unwrap();
        assert_eq!((u.nano_cores, u.memory, u.window_ms), (750_000_000, 4096, 2000));
        let key = ("n".to_string(), "p\"q".to_string(), "c".to_string());
        let (point, started) = a.containers.get(&key).unwrap();
        assert_eq!((point.cpu, point.memory, *started), (Some((1.0, 1000)), Some((4096.0, 1000)), Some(1.7e9)));
        // A counter that went back (a restart) gives no rate.
        assert!(usage(b.node.as_ref().unwrap(), a.node.as_ref().unwrap()).is_none());
    }
}
