//! Probes and lifecycle hooks as the kubelet runs them (pkg/kubelet/prober,
//! pkg/kubelet/lifecycle): exec inside the container, httpGet and tcpSocket against the pod's
//! address (from the router namespace when the pod has its own), and the hooks' sleep.
//!
//! Results carry the kubelet's messages, which become the `Unhealthy` and
//! `FailedPostStartHook`/`FailedPreStopHook` events.
//!
//! Left out: gRPC probes and HTTPS httpGet (they fail with a message saying so).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, ExecAction, HTTPGetAction, Probe, TCPSocketAction};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::net::Network;
use crate::sandbox::ExecSpec;

/// Where a probe runs: the pod's address and, for exec, the running container.
#[derive(Clone)]
pub struct Target {
    pub pod_ip: Option<String>,
    /// The pod's network is reached through the router namespace.
    pub net: Option<Arc<Network>>,
    pub exec: Option<ExecSpec>,
    pub helper: std::path::PathBuf,
    /// Where exec specs are written (the container's directory).
    pub dir: std::path::PathBuf,
    /// The kubelet's version, for the probes' User-Agent.
    pub user_agent: String,
}

/// One action's outcome: success, or the failure's message.
pub type Outcome = Result<(), String>;

/// The probe's period and thresholds with the API's defaults.
pub struct Timing {
    pub initial_delay: Duration,
    pub period: Duration,
    pub timeout: Duration,
    pub success_threshold: u32,
    pub failure_threshold: u32,
}

pub fn timing(p: &Probe) -> Timing {
    let secs = |v: Option<i32>, d: i32| Duration::from_secs(v.unwrap_or(d).max(0) as u64);
    Timing {
        initial_delay: secs(p.initial_delay_seconds, 0),
        period: secs(p.period_seconds, 10).max(Duration::from_secs(1)),
        timeout: secs(p.timeout_seconds, 1).max(Duration::from_secs(1)),
        success_threshold: p.success_threshold.unwrap_or(1).max(1) as u32,
        failure_threshold: p.failure_threshold.unwrap_or(3).max(1) as u32,
    }
}

/// Runs a probe once.
pub async fn run(probe: &Probe, container: &Container, target: &Target) -> Outcome {
    let timeout = timing(probe).timeout;
    if let Some(e) = &probe.exec {
        return exec(e, target, timeout).await;
    }
    if let Some(h) = &probe.http_get {
        return http_get(h, container, target, timeout).await;
    }
    if let Some(t) = &probe.tcp_socket {
        return tcp_socket(t, container, target, timeout).await;
    }
    if probe.grpc.is_some() {
        return Err("gRPC probes are not supported by this node".into());
    }
    Err("probe has no handler".into())
}

/// Runs a lifecycle handler (postStart, preStop), bounded by `limit`.
pub async fn run_handler(
    h: &k8s_openapi::api::core::v1::LifecycleHandler,
    container: &Container,
    target: &Target,
    limit: Duration,
) -> Outcome {
    if let Some(e) = &h.exec {
        return exec(e, target, limit).await;
    }
    if let Some(g) = &h.http_get {
        return http_get(g, container, target, limit).await;
    }
    if let Some(t) = &h.tcp_socket {
        return tcp_socket(t, container, target, limit).await;
    }
    if let Some(s) = &h.sleep {
        tokio::time::sleep(Duration::from_secs(s.seconds.max(0) as u64).min(limit)).await;
        return Ok(());
    }
    Err("lifecycle handler has no action".into())
}

async fn exec(e: &ExecAction, target: &Target, timeout: Duration) -> Outcome {
    let Some(base) = &target.exec else { return Err("container is not running".into()) };
    let spec = ExecSpec { argv: e.command.clone().unwrap_or_default(), ..base.clone() };
    let path = target.dir.join(format!("exec-{}.json", uuid::Uuid::new_v4().simple()));
    match crate::runtime::exec(&target.helper, &spec, &path, timeout).await {
        Ok(out) if out.exit_code == 0 => Ok(()),
        Ok(out) => Err(if out.output.is_empty() {
            format!("command {:?} exited with {}", spec.argv, out.exit_code)
        } else {
            out.output
        }),
        Err(e) => Err(e),
    }
}

/// A port number or a named container port.
fn port(p: &IntOrString, container: &Container) -> Result<u16, String> {
    match p {
        IntOrString::Int(n) => u16::try_from(*n).map_err(|_| format!("invalid port number: {n}")),
        IntOrString::String(name) => {
            if let Ok(n) = name.parse::<u16>() {
                return Ok(n);
            }
            container
                .ports
                .iter()
                .flatten()
                .find(|cp| cp.name.as_deref() == Some(name.as_str()))
                .and_then(|cp| u16::try_from(cp.container_port).ok())
                .ok_or_else(|| format!("couldn't find port: {name} in {}", container.name))
        }
    }
}

async fn connect(host: &str, port: u16, target: &Target, timeout: Duration) -> Result<tokio::net::TcpStream, String> {
    let ip: IpAddr = host.parse().map_err(|_| format!("dial tcp {host}:{port}: unknown host"))?;
    let addr = SocketAddr::new(ip, port);
    let via_router = match (&target.net, ip) {
        (Some(net), IpAddr::V4(v4)) => net.is_pod_ip(v4),
        _ => false,
    };
    let attempt = async {
        match (&target.net, via_router) {
            (Some(net), true) => net.connect(addr).await,
            _ => tokio::net::TcpStream::connect(addr).await,
        }
    };
    match tokio::time::timeout(timeout, attempt).await {
        Ok(Ok(s)) => Ok(s),
        Ok(Err(e)) => Err(format!("dial tcp {addr}: connect: {}", go_errno(&e))),
        Err(_) => Err(format!("dial tcp {addr}: i/o timeout")),
    }
}

/// How Go spells common connect errors.
fn go_errno(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::ConnectionRefused => "connection refused".into(),
        std::io::ErrorKind::HostUnreachable => "no route to host".into(),
        _ => e.to_string().split(" (os error").next().unwrap_or("").to_lowercase(),
    }
}

async fn tcp_socket(t: &TCPSocketAction, container: &Container, target: &Target, timeout: Duration) -> Outcome {
    let port = port(&t.port, container)?;
    let host = t.host.clone().filter(|h| !h.is_empty()).or_else(|| target.pod_ip.clone()).unwrap_or_default();
    connect(&host, port, target, timeout).await.map(|_| ())
}

async fn http_get(h: &HTTPGetAction, container: &Container, target: &Target, timeout: Duration) -> Outcome {
    let port = port(&h.port, container)?;
    let host = h.host.clone().filter(|h| !h.is_empty()).or_else(|| target.pod_ip.clone()).unwrap_or_default();
    let path = h.path.clone().filter(|p| !p.is_empty()).unwrap_or_else(|| "/".into());
    let path = if path.starts_with('/') { path } else { format!("/{path}") };
    let scheme = h.scheme.clone().unwrap_or_else(|| "HTTP".into()).to_lowercase();
    let url = format!("{scheme}://{}/{}", host_port(&host, port), path.trim_start_matches('/'));
    if scheme != "http" {
        return Err(format!("Get \"{url}\": HTTPS probes are not supported by this node"));
    }
    let work = async {
        let mut conn = connect(&host, port, target, timeout).await.map_err(|e| format!("Get \"{url}\": {e}"))?;
        // The kubelet's request: its User-Agent and Accept unless the probe sets them.
        let mut headers: Vec<(String, String)> = vec![
            ("Host".into(), host_port(&host, port)),
            ("User-Agent".into(), target.user_agent.clone()),
            ("Accept".into(), "*/*".into()),
        ];
        for hd in h.http_headers.iter().flatten() {
            let name = canonical_header(&hd.name);
            if let Some(existing) = headers.iter_mut().find(|(n, _)| *n == name) {
                existing.1 = hd.value.clone();
            } else {
                headers.push((name, hd.value.clone()));
            }
        }
        let mut req = format!("GET {path} HTTP/1.1\r\n");
        for (n, v) in &headers {
            req.push_str(&format!("{n}: {v}\r\n"));
        }
        req.push_str("Connection: close\r\n\r\n");
        conn.write_all(req.as_bytes()).await.map_err(|e| format!("Get \"{url}\": {e}"))?;
        let mut head = Vec::new();
        let mut buf = [0u8; 1024];
        while !head.windows(2).any(|w| w == b"\r\n") && head.len() < 8192 {
            match conn.read(&mut buf).await {
                Ok(0) => break,
                Ok(n) => head.extend_from_slice(&buf[..n]),
                Err(e) => return Err(format!("Get \"{url}\": {e}")),
            }
        }
        let line = String::from_utf8_lossy(&head);
        let code: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| format!("Get \"{url}\": malformed HTTP response"))?;
        if (200..400).contains(&code) {
            Ok(())
        } else {
            Err(format!("HTTP probe failed with statuscode: {code}"))
        }
    };
    match tokio::time::timeout(timeout, work).await {
        Ok(r) => r,
        Err(_) => {
            Err(format!("Get \"{url}\": context deadline exceeded (Client.Timeout exceeded while awaiting headers)"))
        }
    }
}

fn host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// Go's canonical MIME header key (`user-agent` → `User-Agent`).
fn canonical_header(name: &str) -> String {
    name.split('-')
        .map(|part| {
            let mut c = part.chars();
            match c.next() {
                Some(f) => f.to_ascii_uppercase().to_string() + &c.as_str().to_ascii_lowercase(),
                None => String::new(),
            }
        })
        .collect::<Vec<_>>()
        .join("-")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_apis() {
        let t = timing(&Probe::default());
        assert_eq!(t.period, Duration::from_secs(10));
        assert_eq!(t.timeout, Duration::from_secs(1));
        assert_eq!((t.success_threshold, t.failure_threshold), (1, 3));
    }

    #[test]
    fn named_ports_resolve_to_the_containers() {
        let c: Container = serde_json::from_value(serde_json::json!({
            "name": "web", "ports": [{"name": "http", "containerPort": 8080}]}))
        .unwrap();
        assert_eq!(port(&IntOrString::String("http".into()), &c), Ok(8080));
        assert_eq!(port(&IntOrString::Int(81), &c), Ok(81));
        assert_eq!(port(&IntOrString::String("nope".into()), &c), Err("couldn't find port: nope in web".into()));
    }

    #[test]
    fn headers_are_canonical() {
        assert_eq!(canonical_header("user-agent"), "User-Agent");
        assert_eq!(canonical_header("X-CUSTOM"), "X-Custom");
    }
}
