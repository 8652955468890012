//! The node's service proxy and cluster DNS, inside its router namespace ([`crate::net`]).
//!
//! For every TCP port of every Service with a ClusterIP the agent listens on
//! `clusterIP:port` in the router namespace; each connection goes to one ready address of
//! the Service's Endpoints (round robin), on the endpoint port of the same name, as
//! kube-proxy's userspace mode did. Endpoints on this node's pod subnet are reached from the
//! router; the API server's own addresses (the `default/kubernetes` Endpoints) from the
//! agent's own namespace. Other addresses are refused: a pod's traffic never leaves the
//! machine, and hand-made Endpoints cannot point it at the host's other services.
//!
//! The cluster DNS ([`crate::dns`]) answers on the node's DNS address (10.96.0.10:53, UDP).
//!
//! Left out: UDP and SCTP service ports, session affinity, NodePorts and external IPs.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Endpoints, Service};
use kube::runtime::reflector::ObjectRef;
use rkube_client::Informer;

use crate::net::Network;

/// One proxied port: a Service's (namespace, name, port name).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Target {
    namespace: String,
    name: String,
    port_name: String,
}

/// What the proxy and the DNS read.
pub struct View {
    pub services: Arc<Informer<Service>>,
    pub endpoints: Arc<Informer<Endpoints>>,
}

impl crate::dns::ClusterView for View {
    fn service(&self, namespace: &str, name: &str) -> Option<Arc<Service>> {
        self.services.store().get(&ObjectRef::new(name).within(namespace))
    }
    fn endpoints(&self, namespace: &str, name: &str) -> Option<Arc<Endpoints>> {
        self.endpoints.store().get(&ObjectRef::new(name).within(namespace))
    }
}

/// Runs the proxy and the DNS until `shutdown`.
pub async fn run(
    net: Arc<Network>,
    view: Arc<View>,
    dns_ip: Ipv4Addr,
    cluster_domain: String,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    match net.bind_udp(SocketAddr::from((dns_ip, 53))) {
        Ok(sock) => {
            let mut stop = stop_rx.clone();
            let v: Arc<dyn crate::dns::ClusterView> = view.clone();
            tokio::spawn(crate::dns::serve(sock, cluster_domain, v, async move {
                let _ = stop.wait_for(|s| *s).await;
            }));
        }
        Err(e) => tracing::warn!(error = %e, "cluster DNS not served on {dns_ip}:53"),
    }
    let mut svc_changes = view.services.subscribe();
    view.services.ready().await;
    let mut listening: HashMap<SocketAddr, (Target, tokio::task::JoinHandle<()>)> = HashMap::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let mut wanted: HashMap<SocketAddr, Target> = HashMap::new();
        for s in view.services.store().state() {
            let Some(spec) = &s.spec else { continue };
            let ips = spec.cluster_ips.clone().unwrap_or_else(|| spec.cluster_ip.iter().cloned().collect());
            for ip in ips.iter().filter_map(|i| i.parse::<Ipv4Addr>().ok()) {
                if ip == dns_ip {
                    continue;
                }
                for p in spec.ports.iter().flatten() {
                    if p.protocol.as_deref().unwrap_or("TCP") != "TCP" {
                        continue;
                    }
                    let Ok(port) = u16::try_from(p.port) else { continue };
                    wanted.insert(
                        SocketAddr::from((ip, port)),
                        Target {
                            namespace: s.metadata.namespace.clone().unwrap_or_default(),
                            name: s.metadata.name.clone().unwrap_or_default(),
                            port_name: p.name.clone().unwrap_or_default(),
                        },
                    );
                }
            }
        }
        // Listeners whose service went away or changed close before their address is bound
        // again (an aborted task's socket closes only once the task has ended).
        let stale: Vec<SocketAddr> = listening
            .iter()
            .filter(|(addr, (target, task))| wanted.get(*addr) != Some(target) || task.is_finished())
            .map(|(addr, _)| *addr)
            .collect();
        for addr in stale {
            if let Some((_, task)) = listening.remove(&addr) {
                task.abort();
                let _ = task.await;
            }
        }
        let mut failed = false;
        for (addr, target) in wanted {
            if listening.contains_key(&addr) {
                continue;
            }
            match net.listen(addr) {
                Ok(l) => {
                    let task = tokio::spawn(accept_loop(l, target.clone(), net.clone(), view.clone()));
                    listening.insert(addr, (target, task));
                }
                Err(e) => {
                    tracing::warn!(%addr, error = %e, "cannot listen for a service; retrying");
                    failed = true;
                }
            }
        }
        // Endpoints are read per connection: only Service changes (or a failed bind's retry)
        // change what is listened on.
        let retry = async {
            if failed {
                tokio::time::sleep(std::time::Duration::from_secs(1)).await
            } else {
                std::future::pending().await
            }
        };
        tokio::select! {
            _ = &mut shutdown => break,
            c = svc_changes.recv() => if let Err(tokio::sync::broadcast::error::RecvError::Closed) = c { break },
            _ = retry => {}
        }
    }
    let _ = stop_tx.send(true);
    for (_, (_, task)) in listening {
        task.abort();
    }
}

async fn accept_loop(listener: tokio::net::TcpListener, target: Target, net: Arc<Network>, view: Arc<View>) {
    let next = Arc::new(AtomicUsize::new(0));
    loop {
        let mut conn = match listener.accept().await {
            Ok((c, _)) => c,
            Err(e) => {
                // Out of descriptors and the like: wait instead of spinning.
                tracing::debug!(error = %e, "service accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let backends = backends(&view, &target);
        if backends.is_empty() {
            // No ready endpoint: the connection is refused, as kube-proxy rejects it.
            drop(conn);
            continue;
        }
        let start = next.fetch_add(1, Ordering::Relaxed);
        let (net, api_server) = (net.clone(), api_server_endpoints(&view));
        tokio::spawn(async move {
            for k in 0..backends.len() {
                let addr = backends[(start + k) % backends.len()];
                let connect = async {
                    match addr.ip() {
                        IpAddr::V4(ip) if net.is_pod_ip(ip) => net.connect(addr).await,
                        _ if api_server.contains(&addr) => tokio::net::TcpStream::connect(addr).await,
                        _ => Err(std::io::ErrorKind::PermissionDenied.into()),
                    }
                };
                // A dead endpoint costs a few seconds, not the kernel's SYN retries.
                let upstream = tokio::time::timeout(std::time::Duration::from_secs(5), connect).await;
                if let Ok(Ok(mut up)) = upstream {
                    let _ = up.set_nodelay(true);
                    let _ = conn.set_nodelay(true);
                    let _ = tokio::io::copy_bidirectional(&mut conn, &mut up).await;
                    return;
                }
            }
        });
    }
}

/// The API server's own addresses (the `default/kubernetes` Endpoints, which only the API
/// server writes): the only ones reached from the host's namespace, so hand-made Endpoints
/// cannot point a pod at the host's other services.
fn api_server_endpoints(view: &View) -> Vec<SocketAddr> {
    let target = Target { namespace: "default".into(), name: "kubernetes".into(), port_name: "https".into() };
    backends(view, &target)
}

/// The ready addresses of a Service's Endpoints on the port named like the service port.
fn backends(view: &View, target: &Target) -> Vec<SocketAddr> {
    let Some(ep) = view.endpoints.store().get(&ObjectRef::new(&target.name).within(&target.namespace)) else {
        return vec![];
    };
    let mut out = Vec::new();
    for subset in ep.subsets.iter().flatten() {
        let ports = subset.ports.clone().unwrap_or_default();
        let port = ports
            .iter()
            .find(|p| p.name.clone().unwrap_or_default() == target.port_name)
            .or_else(|| (ports.len() == 1 && target.port_name.is_empty()).then(|| &ports[0]));
        let Some(port) = port.and_then(|p| u16::try_from(p.port).ok()) else { continue };
        for a in subset.addresses.iter().flatten() {
            if let Ok(ip) = a.ip.parse::<IpAddr>() {
                out.push(SocketAddr::new(ip, port));
            }
        }
    }
    out
}
