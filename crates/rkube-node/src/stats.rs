//! Resource usage as the kubelet reports it, read from the cgroups the agent made for its pods
//! and from the machine's `/proc`:
//! - `/stats/summary`: the Summary API (`k8s.io/kubelet/pkg/apis/stats/v1alpha1`): the node,
//!   the agent itself as the `kubelet` system container, and every running pod with its
//!   containers (CPU, memory, process count). Network and filesystem figures are not reported.
//! - `/metrics/resource`: the Prometheus text metrics-server scrapes
//!   (`pkg/kubelet/metrics/collectors/resource_metrics.go`): node, pod and container CPU
//!   seconds and working sets with the sample's timestamp, container start times, and
//!   `resource_scrape_error`.
//!
//! `usageNanoCores` is a rate: it is computed against the previous sample of the same cgroup
//! (kept at most one per second, as the kubelet's CRI stats cache keeps one), so the first
//! summary of a cgroup has none.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use chrono::{DateTime, SecondsFormat, Utc};
use k8s_openapi::api::core::v1::{ContainerStatus, Pod};
use serde_json::{json, Value};

use crate::runtime::{Cgroups, MemoryUsage, Usage};

/// One cgroup's (or the node's) figures at one moment.
#[derive(Debug, Clone)]
pub struct Sample {
    pub at: DateTime<Utc>,
    pub usage: Usage,
}

/// A running container of a pod on this node.
#[derive(Debug, Clone)]
pub struct ContainerSample {
    pub name: String,
    pub started: Option<DateTime<Utc>>,
    pub sample: Sample,
}

#[derive(Debug, Clone)]
pub struct PodSample {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub started: Option<DateTime<Utc>>,
    pub sample: Sample,
    pub containers: Vec<ContainerSample>,
}

/// Everything one stats request reports.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub node: Sample,
    pub booted: Option<DateTime<Utc>>,
    pub agent: Sample,
    pub agent_started: Option<DateTime<Utc>>,
    pub pods: Vec<PodSample>,
}

/// Reads snapshots; remembers the last CPU figures for the rates.
#[derive(Default)]
pub struct Stats {
    previous: Mutex<HashMap<String, (Instant, u64)>>,
}

impl Stats {
    /// The node, the agent and the running containers of `pods` now.
    pub fn snapshot(cgroups: &Cgroups, pods: &[std::sync::Arc<Pod>]) -> Snapshot {
        let now = Utc::now();
        let (node, booted) = node_usage();
        let (agent, agent_started) = own_usage(booted);
        let mut out = Vec::new();
        for pod in pods {
            let Some(uid) = pod.metadata.uid.clone() else { continue };
            let status = pod.status.clone().unwrap_or_default();
            let running = |s: &ContainerStatus| {
                s.state
                    .as_ref()
                    .and_then(|st| st.running.as_ref())
                    .map(|r| r.started_at.as_ref().and_then(|t| chrono_of(&t.0)))
            };
            let mut containers = Vec::new();
            let statuses =
                status.init_container_statuses.iter().flatten().chain(status.container_statuses.iter().flatten());
            for s in statuses {
                let Some(started) = running(s) else { continue };
                let Some(usage) = cgroups.usage(&format!("{uid}/{}", s.name)) else { continue };
                containers.push(ContainerSample { name: s.name.clone(), started, sample: Sample { at: now, usage } });
            }
            if containers.is_empty() {
                continue;
            }
            let Some(usage) = cgroups.usage(&uid) else { continue };
            out.push(PodSample {
                namespace: pod.metadata.namespace.clone().unwrap_or_default(),
                name: pod.metadata.name.clone().unwrap_or_default(),
                uid,
                started: status.start_time.and_then(|t| chrono_of(&t.0)),
                sample: Sample { at: now, usage },
                containers,
            });
        }
        out.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
        Snapshot { node: Sample { at: now, usage: node }, booted, agent, agent_started, pods: out }
    }

    /// CPU use in nanocores since the previous sample of `key` (at least 100 ms before).
    fn nano_cores(&self, key: &str, cpu_ns: u64) -> Option<u64> {
        let now = Instant::now();
        let mut prev = self.previous.lock().ok()?;
        let rate = prev.get(key).and_then(|(at, ns)| {
            let secs = now.duration_since(*at).as_secs_f64();
            (secs >= 0.1 && cpu_ns >= *ns).then(|| ((cpu_ns - ns) as f64 / secs) as u64)
        });
        let stale = prev.get(key).is_none_or(|(at, _)| now.duration_since(*at).as_secs() >= 1);
        if stale {
            if prev.len() > 10_000 {
                prev.clear();
            }
            prev.insert(key.to_string(), (now, cpu_ns));
        }
        rate
    }

    /// The Summary API's JSON for a snapshot.
    pub fn summary(&self, node_name: &str, snap: &Snapshot) -> Value {
        let mut node = json!({
            "nodeName": node_name,
            "systemContainers": [self.container_json("kubelet", snap.agent_started, &snap.agent, "system/kubelet")],
        });
        if let Some(b) = snap.booted {
            node["startTime"] = json!(time(b));
        }
        self.usage_into(&mut node, &snap.node, "node");
        let pods: Vec<Value> = snap
            .pods
            .iter()
            .map(|p| {
                let containers: Vec<Value> = p
                    .containers
                    .iter()
                    .map(|c| self.container_json(&c.name, c.started, &c.sample, &format!("{}/{}", p.uid, c.name)))
                    .collect();
                let mut v = json!({
                    "podRef": {"name": p.name, "namespace": p.namespace, "uid": p.uid},
                    "containers": containers,
                });
                if let Some(s) = p.started {
                    v["startTime"] = json!(time(s));
                }
                self.usage_into(&mut v, &p.sample, &p.uid);
                if let Some(n) = p.sample.usage.processes {
                    v["process_stats"] = json!({"process_count": n});
                }
                v
            })
            .collect();
        json!({"node": node, "pods": pods})
    }

    fn container_json(&self, name: &str, started: Option<DateTime<Utc>>, s: &Sample, key: &str) -> Value {
        let mut v = json!({"name": name});
        if let Some(t) = started {
            v["startTime"] = json!(time(t));
        }
        self.usage_into(&mut v, s, key);
        v
    }

    fn usage_into(&self, v: &mut Value, s: &Sample, key: &str) {
        if let Some(ns) = s.usage.cpu_ns {
            let mut cpu = json!({"time": time(s.at), "usageCoreNanoSeconds": ns});
            if let Some(rate) = self.nano_cores(key, ns) {
                cpu["usageNanoCores"] = json!(rate);
            }
            v["cpu"] = cpu;
        }
        if let Some(m) = &s.usage.memory {
            v["memory"] = memory_json(s.at, m);
        }
    }
}

fn memory_json(at: DateTime<Utc>, m: &MemoryUsage) -> Value {
    let mut v = json!({
        "time": time(at),
        "usageBytes": m.usage,
        "workingSetBytes": m.working_set,
        "rssBytes": m.rss,
        "pageFaults": m.page_faults,
        "majorPageFaults": m.major_page_faults,
    });
    if let Some(limit) = m.limit {
        v["availableBytes"] = json!(limit.saturating_sub(m.working_set));
    }
    v
}

fn chrono_of(t: &k8s_openapi::jiff::Timestamp) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp(t.as_second(), t.subsec_nanosecond().max(0) as u32)
}

fn time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// A container's figure and, for a sample, its timestamp (ms).
type ValueOf<'a> = dyn Fn(&ContainerSample) -> Option<(f64, Option<i64>)> + 'a;

/// `/metrics/resource` for a snapshot (families in name order, labels sorted, as the
/// Prometheus client writes them).
pub fn resource_metrics(snap: &Snapshot) -> String {
    let mut families: Vec<(&str, &str, &str, Vec<String>)> = Vec::new();
    let ms = |t: &DateTime<Utc>| t.timestamp_millis();
    let ctr = |p: &PodSample, c: &ContainerSample| {
        format!("{{container=\"{}\",namespace=\"{}\",pod=\"{}\"}}", esc(&c.name), esc(&p.namespace), esc(&p.name))
    };
    let pod = |p: &PodSample| format!("{{namespace=\"{}\",pod=\"{}\"}}", esc(&p.namespace), esc(&p.name));
    let cpu_s = |s: &Sample| s.usage.cpu_ns.map(|ns| ns as f64 / 1e9);
    let wss = |s: &Sample| s.usage.memory.as_ref().map(|m| m.working_set as f64);

    // One line per container that has the figure (and its timestamp, for samples).
    let per_container = |value: &ValueOf<'_>| -> Vec<String> {
        let mut lines = Vec::new();
        for p in &snap.pods {
            for c in &p.containers {
                match value(c) {
                    Some((v, Some(at))) => lines.push(format!("{} {} {at}", ctr(p, c), float(v))),
                    Some((v, None)) => lines.push(format!("{} {}", ctr(p, c), float(v))),
                    None => {}
                }
            }
        }
        lines
    };
    families.push((
        "container_cpu_usage_seconds_total",
        "Cumulative cpu time consumed by the container in core-seconds",
        "counter",
        per_container(&|c| cpu_s(&c.sample).map(|v| (v, Some(ms(&c.sample.at))))),
    ));
    families.push((
        "container_memory_working_set_bytes",
        "Current working set of the container in bytes",
        "gauge",
        per_container(&|c| wss(&c.sample).map(|v| (v, Some(ms(&c.sample.at))))),
    ));
    families.push((
        "container_start_time_seconds",
        "Start time of the container since unix epoch in seconds",
        "gauge",
        per_container(&|c| {
            c.started
                .filter(|t| t.timestamp() > 0)
                .map(|t| (t.timestamp() as f64 + t.timestamp_subsec_nanos() as f64 / 1e9, None))
        }),
    ));
    let node_line =
        |v: Option<f64>| v.map(|v| vec![format!(" {} {}", float(v), ms(&snap.node.at))]).unwrap_or_default();
    families.push((
        "node_cpu_usage_seconds_total",
        "Cumulative cpu time consumed by the node in core-seconds",
        "counter",
        node_line(cpu_s(&snap.node)),
    ));
    families.push((
        "node_memory_working_set_bytes",
        "Current working set of the node in bytes",
        "gauge",
        node_line(wss(&snap.node)),
    ));
    let lines = snap
        .pods
        .iter()
        .filter_map(|p| cpu_s(&p.sample).map(|v| format!("{} {} {}", pod(p), float(v), ms(&p.sample.at))));
    families.push((
        "pod_cpu_usage_seconds_total",
        "Cumulative cpu time consumed by the pod in core-seconds",
        "counter",
        lines.collect(),
    ));
    let lines = snap
        .pods
        .iter()
        .filter_map(|p| wss(&p.sample).map(|v| format!("{} {} {}", pod(p), float(v), ms(&p.sample.at))));
    families.push((
        "pod_memory_working_set_bytes",
        "Current working set of the pod in bytes",
        "gauge",
        lines.collect(),
    ));
    families.push((
        "resource_scrape_error",
        "1 if there was an error while getting container metrics, 0 otherwise",
        "gauge",
        vec![" 0".to_string()],
    ));
    let mut out = String::new();
    for (name, help, kind, lines) in families {
        if lines.is_empty() {
            continue;
        }
        out.push_str(&format!("# HELP {name} [STABLE] {help}\n# TYPE {name} {kind}\n"));
        for l in lines {
            out.push_str(name);
            out.push_str(&l);
            out.push('\n');
        }
    }
    out
}

/// A label value escaped as the text format wants (`\\`, `\"`, `\n`).
fn esc(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// A sample value as Go's `strconv.FormatFloat(v, 'g', -1, 64)` writes it (what the
/// Prometheus client uses): the shortest digits, in exponent form below 1e-4 and from 1e6.
pub fn float(v: f64) -> String {
    if v == 0.0 {
        return "0".into();
    }
    if !v.is_finite() {
        return if v.is_nan() {
            "NaN".into()
        } else if v > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        };
    }
    let e = format!("{v:e}");
    let (mantissa, exp) = e.split_once('e').unwrap_or((&e, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if !(-4..6).contains(&exp) {
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{mantissa}e{sign}{:02}", exp.abs())
    } else {
        format!("{v}")
    }
}

/// The machine as a whole: CPU time from `/proc/stat`, memory from `/proc/meminfo` and
/// `/proc/vmstat` (working set: what is in use less the inactive page cache, as cAdvisor
/// counts the root cgroup); and when it booted.
fn node_usage() -> (Usage, Option<DateTime<Utc>>) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let hz = clock_ticks();
    let cpu_ns = stat.lines().find_map(|l| l.strip_prefix("cpu ")).map(|rest| {
        let f: Vec<u64> = rest.split_whitespace().filter_map(|x| x.parse().ok()).collect();
        // user nice system idle iowait irq softirq steal: everything but idle and iowait.
        let busy: u64 = [0usize, 1, 2, 5, 6, 7].iter().filter_map(|i| f.get(*i)).sum();
        busy * (1_000_000_000 / hz)
    });
    let booted = stat
        .lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|b| b.trim().parse::<i64>().ok())
        .and_then(|b| DateTime::from_timestamp(b, 0));
    let kib = |text: &str, key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|r| r.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
    };
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let vmstat = std::fs::read_to_string("/proc/vmstat").unwrap_or_default();
    let count = |key: &str| vmstat.lines().find_map(|l| l.strip_prefix(key)).and_then(|r| r.trim().parse::<u64>().ok());
    let memory = match (kib(&meminfo, "MemTotal:"), kib(&meminfo, "MemFree:")) {
        (Some(total), Some(free)) => {
            let used = (total - free.min(total)) * 1024;
            let inactive = kib(&meminfo, "Inactive(file):").unwrap_or(0) * 1024;
            Some(MemoryUsage {
                usage: used,
                working_set: used.saturating_sub(inactive),
                rss: kib(&meminfo, "AnonPages:").unwrap_or(0) * 1024,
                page_faults: count("pgfault ").unwrap_or(0),
                major_page_faults: count("pgmajfault ").unwrap_or(0),
                limit: Some(total * 1024),
            })
        }
        _ => None,
    };
    (Usage { cpu_ns, memory, processes: None }, booted)
}

/// The agent process itself (the kubelet's `kubelet` system container).
fn own_usage(booted: Option<DateTime<Utc>>) -> (Sample, Option<DateTime<Utc>>) {
    let hz = clock_ticks();
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which may hold spaces): state is field 3.
    let fields: Vec<u64> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().map(|x| x.parse().unwrap_or(0)).collect())
        .unwrap_or_default();
    let field = |n: usize| fields.get(n - 3).copied();
    let cpu_ns = match (field(14), field(15)) {
        (Some(u), Some(s)) => Some((u + s) * (1_000_000_000 / hz)),
        _ => None,
    };
    let started = match (booted, field(22)) {
        (Some(b), Some(ticks)) => Some(b + chrono::Duration::milliseconds((ticks * 1000 / hz) as i64)),
        _ => None,
    };
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|r| r.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|k| k * 1024);
    let memory = rss.map(|b| MemoryUsage {
        usage: b,
        working_set: b,
        rss: b,
        page_faults: field(10).unwrap_or(0),
        major_page_faults: field(12).unwrap_or(0),
        limit: None,
    });
    (Sample { at: Utc::now(), usage: Usage { cpu_ns, memory, processes: Some(1) } }, started)
}

fn clock_ticks() -> u64 {
    nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK).ok().flatten().map_or(100, |t| t.max(1) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_are_written_as_go_writes_them() {
        assert_eq!(float(0.0), "0");
        assert_eq!(float(1.0), "1");
        assert_eq!(float(0.012345), "0.012345");
        assert_eq!(float(123456.0), "123456");
        assert_eq!(float(24576000.0), "2.4576e+07");
        assert_eq!(float(1.733250000123e9), "1.733250000123e+09");
        assert_eq!(float(0.00001), "1e-05");
        assert_eq!(float(1e21), "1e+21");
    }

    #[test]
    fn metrics_text_has_the_kubelets_families_labels_and_timestamps() {
        let at = DateTime::from_timestamp(1_700_000_000, 5_000_000).unwrap();
        let usage = |cpu: u64, ws: u64| Usage {
            cpu_ns: Some(cpu),
            memory: Some(MemoryUsage { usage: ws, working_set: ws, ..Default::default() }),
            processes: Some(2),
        };
        let snap = Snapshot {
            node: Sample { at, usage: usage(2_500_000_000, 1 << 30) },
            booted: None,
            agent: Sample { at, usage: Usage::default() },
            agent_started: None,
            pods: vec![PodSample {
                namespace: "default".into(),
                name: "web".into(),
                uid: "u".into(),
                started: None,
                sample: Sample { at, usage: usage(20_000_000, 4096) },
                containers: vec![ContainerSample {
                    name: "main".into(),
                    started: Some(DateTime::from_timestamp(1_699_999_990, 0).unwrap()),
                    sample: Sample { at, usage: usage(20_000_000, 4096) },
                }],
            }],
        };
        let text = resource_metrics(&snap);
        let want = "\
# HELP container_cpu_usage_seconds_total [STABLE] Cumulative cpu time consumed by the container in core-seconds
# TYPE container_cpu_usage_seconds_total counter
container_cpu_usage_seconds_total{container=\"main\",namespace=\"default\",pod=\"web\"} 0.02 1700000000005
# HELP container_memory_working_set_bytes [STABLE] Current working set of the container in bytes
# TYPE container_memory_working_set_bytes gauge
container_memory_working_set_bytes{container=\"main\",namespace=\"default\",pod=\"web\"} 4096 1700000000005
# HELP container_start_time_seconds [STABLE] Start time of the container since unix epoch in seconds
# TYPE container_start_time_seconds gauge
container_start_time_seconds{container=\"main\",namespace=\"default\",pod=\"web\"} 1.69999999e+09
# HELP node_cpu_usage_seconds_total [STABLE] Cumulative cpu time consumed by the node in core-seconds
# TYPE node_cpu_usage_seconds_total counter
node_cpu_usage_seconds_total 2.5 1700000000005
# HELP node_memory_working_set_bytes [STABLE] Current working set of the node in bytes
# TYPE node_memory_working_set_bytes gauge
node_memory_working_set_bytes 1.073741824e+09 1700000000005
# HELP pod_cpu_usage_seconds_total [STABLE] Cumulative cpu time consumed by the pod in core-seconds
# TYPE pod_cpu_usage_seconds_total counter
pod_cpu_usage_seconds_total{namespace=\"default\",pod=\"web\"} 0.02 1700000000005
# HELP pod_memory_working_set_bytes [STABLE] Current working set of the pod in bytes
# TYPE pod_memory_working_set_bytes gauge
pod_memory_working_set_bytes{namespace=\"default\",pod=\"web\"} 4096 1700000000005
# HELP resource_scrape_error [STABLE] 1 if there was an error while getting container metrics, 0 otherwise
# TYPE resource_scrape_error gauge
resource_scrape_error 0
";
        assert_eq!(text, want);
    }

    #[test]
    fn the_rate_needs_an_earlier_sample() {
        let stats = Stats::default();
        assert_eq!(stats.nano_cores("k", 1_000), None);
        std::thread::sleep(std::time::Duration::from_millis(150));
        let r = stats.nano_cores("k", 1_000 + 150_000_000).unwrap();
        // 0.15 s of CPU in ~0.15 s: about one core.
        assert!((500_000_000..=1_100_000_000).contains(&r), "{r}");
    }
}
