//! Pod networking without touching the host's: every interface, address and route lives in
//! network namespaces the agent creates and removes.
//!
//! ```text
//!   pod netns rkube-<scope>-5           router netns rkube-<scope>            host netns
//!   lo 127.0.0.1                        lo + local route 10.96.0.0/12         (unchanged)
//!   eth0 10.244.X.5/24 ──veth── v5 ─┐   rk0 bridge 10.244.X.1/24
//!   default via 10.244.X.1          ├── agent's sockets: ClusterIP:port ───▶ the API server
//!   pod netns rkube-<scope>-6       │   listeners, DNS on 10.96.0.10:53      (loopback only)
//!   eth0 10.244.X.6/24 ──veth── v6 ─┘   connects to pod IPs
//! ```
//!
//! Pods reach each other over the router's bridge; every ClusterIP is a local address of the
//! router (one `local` route for the service range), where the agent's service proxy (see
//! [`crate::services`]) listens. The agent makes its sockets inside the router namespace from
//! one thread of its own that joined it, so the agent's other threads stay in the host's
//! namespace and can reach the API server on the host's loopback. The router has no link to
//! the host: no packet of a pod leaves the machine, and nothing of the host's network
//! configuration changes.
//!
//! Namespaces are named (`/run/netns/rkube-<scope>…`, as `ip netns` names them), so an agent
//! that restarts finds and removes what an earlier one left. Interfaces are configured with
//! `ip` (iproute2), three invocations per pod.

use std::collections::BTreeSet;
use std::fs::File;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Mutex;

use tokio::io::AsyncWriteExt;

/// The service range every router treats as local (the API server's default).
pub const SERVICE_RANGE: &str = "10.96.0.0/12";
const NETNS_DIR: &str = "/run/netns";
const BRIDGE: &str = "rk0";
/// The file in the agent's root directory naming its router namespace; each pod's is that
/// name and `-<n>`.
pub const RECORD: &str = "netns";

/// One agent's pod network.
#[derive(Debug)]
pub struct Network {
    /// The router namespace's name; pods' names add `-<n>`.
    prefix: String,
    /// Jobs for the one thread that joined the router namespace (it ends with the Network).
    router: std::sync::mpsc::Sender<RouterJob>,
    /// The first three octets of the pod subnet (10.244.X.0/24).
    subnet: [u8; 3],
    /// Addresses in use, and the last one given (addresses are handed out round robin, so
    /// a pod's address is not reused at once).
    used: Mutex<(BTreeSet<u8>, u8)>,
}

type RouterJob = Box<dyn FnOnce() + Send>;

/// A pod's network namespace.
#[derive(Debug, Clone)]
pub struct PodNet {
    pub netns: PathBuf,
    pub ip: Ipv4Addr,
    name: String,
    host: u8,
}

impl Network {
    /// Makes the router namespace (after removing what an earlier agent of the same scope
    /// left). Fails where namespaces cannot be made (not root, no `ip`): the agent then
    /// runs pods on the host network.
    pub async fn setup(scope: &str, subnet: [u8; 3], record: &Path) -> Result<Network, String> {
        let prefix = format!("rkube-{}", sanitize(scope));
        remove_namespaces(&prefix).await;
        // Written before the namespace exists, so whoever kills this agent (a test, an
        // operator) knows what to remove even if it dies in the next instruction.
        std::fs::write(record, &prefix).map_err(|e| format!("write {}: {e}", record.display()))?;
        run_ip(&["netns", "add", &prefix], None).await?;
        let gw = format!("{}.{}.{}.1", subnet[0], subnet[1], subnet[2]);
        let batch = format!(
            "link set lo up\nroute add local {SERVICE_RANGE} dev lo\nlink add {BRIDGE} type bridge\naddr add {gw}/24 dev {BRIDGE}\nlink set {BRIDGE} up\n"
        );
        if let Err(e) = run_ip(&["-n", &prefix, "-batch", "-"], Some(&batch)).await {
            let _ = run_ip(&["netns", "delete", &prefix], None).await;
            return Err(e);
        }
        let router = match File::open(PathBuf::from(NETNS_DIR).join(&prefix)) {
            Ok(f) => f,
            Err(e) => {
                let _ = run_ip(&["netns", "delete", &prefix], None).await;
                return Err(format!("open {prefix}: {e}"));
            }
        };
        let (jobs, queue) = std::sync::mpsc::channel::<RouterJob>();
        let (joined_tx, joined) = std::sync::mpsc::sync_channel(1);
        std::thread::Builder::new()
            .name("rkube-router-netns".into())
            .spawn(move || {
                let joined = nix::sched::setns(&router, nix::sched::CloneFlags::CLONE_NEWNET);
                let ok = joined.is_ok();
                let _ = joined_tx.send(joined);
                if ok {
                    for job in queue {
                        job();
                    }
                }
            })
            .map_err(|e| format!("router thread: {e}"))?;
        if let Err(e) = joined.recv().map_err(|e| e.to_string()).and_then(|r| r.map_err(|e| e.to_string())) {
            let _ = run_ip(&["netns", "delete", &prefix], None).await;
            return Err(format!("join {prefix}: {e}"));
        }
        let network = Network { prefix, router: jobs, subnet, used: Mutex::new((BTreeSet::new(), 1)) };
        // The router forwards nothing, whatever a new namespace inherits from the host.
        network
            .in_router(|| std::fs::write("/proc/sys/net/ipv4/ip_forward", "0"))
            .map_err(|e| format!("router ip_forward: {e}"))?;
        Ok(network)
    }

    /// The subnet pods get addresses in, as `10.244.X.0/24`.
    pub fn pod_cidr(&self) -> String {
        let [a, b, c] = self.subnet;
        format!("{a}.{b}.{c}.0/24")
    }

    /// Whether an address belongs to this node's pods.
    pub fn is_pod_ip(&self, ip: Ipv4Addr) -> bool {
        ip.octets()[..3] == self.subnet
    }

    /// Gives a pod its namespace, address, loopback and a default route via the router.
    pub async fn add_pod(&self) -> Result<PodNet, String> {
        let host = {
            let mut guard = self.used.lock().unwrap_or_else(|e| e.into_inner());
            let (used, last) = &mut *guard;
            let Some(h) = next_free(used, *last) else {
                return Err(format!("no free pod address in {}", self.pod_cidr()));
            };
            used.insert(h);
            *last = h;
            h
        };
        let name = format!("{}-{host}", self.prefix);
        let [a, b, c] = self.subnet;
        let ip = Ipv4Addr::new(a, b, c, host);
        let pod = PodNet { netns: PathBuf::from(NETNS_DIR).join(&name), ip, name, host };
        let made = async {
            run_ip(&["netns", "add", &pod.name], None).await?;
            let router = format!(
                "link add v{host} type veth peer name eth0 netns {}\nlink set v{host} master {BRIDGE} up\n",
                pod.name
            );
            run_ip(&["-n", &self.prefix, "-batch", "-"], Some(&router)).await?;
            let inside = format!(
                "link set lo up\naddr add {ip}/24 dev eth0\nlink set eth0 up\nroute add default via {a}.{b}.{c}.1\n"
            );
            run_ip(&["-n", &pod.name, "-batch", "-"], Some(&inside)).await
        }
        .await;
        match made {
            Ok(()) => Ok(pod),
            Err(e) => {
                self.remove_pod(&pod).await;
                Err(e)
            }
        }
    }

    /// Removes a pod's veth pair and namespace and frees its address. The router's end is
    /// deleted first: the kernel removes a deleted namespace's interfaces asynchronously.
    pub async fn remove_pod(&self, pod: &PodNet) {
        let _ = run_ip(&["-n", &self.prefix, "link", "delete", &format!("v{}", pod.host)], None).await;
        let _ = run_ip(&["netns", "delete", &pod.name], None).await;
        self.used.lock().unwrap_or_else(|e| e.into_inner()).0.remove(&pod.host);
    }

    /// Removes the router and every pod namespace of this agent.
    pub async fn teardown(&self) {
        remove_namespaces(&self.prefix).await;
    }

    /// A TCP listener inside the router namespace.
    pub fn listen(&self, addr: SocketAddr) -> io::Result<tokio::net::TcpListener> {
        let l = self.in_router(move || {
            let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
            s.set_reuse_address(true)?;
            s.set_nonblocking(true)?;
            s.bind(&addr.into())?;
            s.listen(1024)?;
            Ok(std::net::TcpListener::from(s))
        })?;
        tokio::net::TcpListener::from_std(l)
    }

    /// A UDP socket bound inside the router namespace.
    pub fn bind_udp(&self, addr: SocketAddr) -> io::Result<tokio::net::UdpSocket> {
        let s = self.in_router(move || {
            let s = std::net::UdpSocket::bind(addr)?;
            s.set_nonblocking(true)?;
            Ok(s)
        })?;
        tokio::net::UdpSocket::from_std(s)
    }

    /// Connects from the router namespace (to a pod).
    pub async fn connect(&self, addr: SocketAddr) -> io::Result<tokio::net::TcpStream> {
        let s = self.in_router(|| {
            let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
            s.set_nonblocking(true)?;
            Ok(std::net::TcpStream::from(s))
        })?;
        tokio::net::TcpSocket::from_std_stream(s).connect(addr).await
    }

    /// Runs `f` on the thread that joined the router namespace (sockets keep the namespace
    /// they were made in) and waits for it: a socket call or two, never a blocking one.
    fn in_router<T: Send + 'static>(&self, f: impl FnOnce() -> io::Result<T> + Send + 'static) -> io::Result<T> {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.router
            .send(Box::new(move || {
                let _ = tx.send(f());
            }))
            .map_err(|_| io::Error::other("the router namespace thread is gone"))?;
        rx.recv().unwrap_or_else(|_| Err(io::Error::other("the router namespace thread is gone")))
    }
}

/// The first free host number (2..=254) after `last`, wrapping around.
fn next_free(used: &BTreeSet<u8>, last: u8) -> Option<u8> {
    let start = last.saturating_sub(1) as u16;
    (start..253).chain(0..start).map(|k| k as u8 + 2).find(|h| !used.contains(h))
}

/// Namespace names keep to what file names and `ip` accept.
fn sanitize(scope: &str) -> String {
    scope.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '-' }).collect()
}

/// Deletes the namespace `prefix` and every `prefix-<n>`.
async fn remove_namespaces(prefix: &str) {
    let Ok(entries) = std::fs::read_dir(NETNS_DIR) else { return };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        let ours = name == prefix
            || name.strip_prefix(prefix).and_then(|r| r.strip_prefix('-')).is_some_and(|n| n.parse::<u8>().is_ok());
        if !ours {
            continue;
        }
        // A failed delete is tried again (a namespace must not outlive its agent).
        for attempt in 1..=3 {
            match run_ip(&["netns", "delete", &name], None).await {
                Ok(()) => break,
                Err(e) if !std::path::Path::new(NETNS_DIR).join(&name).exists() => {
                    tracing::debug!(namespace = %name, error = %e, "network namespace already gone");
                    break;
                }
                Err(e) => {
                    tracing::warn!(namespace = %name, attempt, error = %e, "could not remove a network namespace");
                    tokio::time::sleep(std::time::Duration::from_millis(50 * attempt)).await;
                }
            }
        }
    }
}

/// Runs `ip ARGS` (with `input` on its standard input for `-batch -`).
async fn run_ip(args: &[&str], input: Option<&str>) -> Result<(), String> {
    let mut cmd = tokio::process::Command::new("ip");
    cmd.args(args)
        .stdin(if input.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd.spawn().map_err(|e| format!("ip {}: {e}", args.join(" ")))?;
    if let (Some(text), Some(mut stdin)) = (input, child.stdin.take()) {
        stdin.write_all(text.as_bytes()).await.map_err(|e| format!("ip {}: {e}", args.join(" ")))?;
    }
    let out = child.wait_with_output().await.map_err(|e| format!("ip {}: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim()))
    }
}

/// The pod subnet's third octet for a node: stable for a name, never 0.
pub fn subnet_for(node: &str) -> [u8; 3] {
    let h = node.bytes().fold(0x811c9dc5u32, |h, b| (h ^ b as u32).wrapping_mul(0x01000193));
    [10, 244, (h % 255) as u8 + 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_go_round_robin() {
        let mut used = BTreeSet::new();
        assert_eq!(next_free(&used, 1), Some(2));
        used.insert(2);
        assert_eq!(next_free(&used, 2), Some(3));
        // Freed 2 is not given again before the others.
        used.remove(&2);
        assert_eq!(next_free(&used, 3), Some(4));
        assert_eq!(next_free(&used, 254), Some(2), "wraps around");
        let full: BTreeSet<u8> = (2..=254).collect();
        assert_eq!(next_free(&full, 7), None);
    }

    #[test]
    fn scopes_become_namespace_names() {
        assert_eq!(sanitize("node.a_b-1"), "node-a-b-1");
    }

    #[test]
    fn a_node_subnet_is_stable_and_in_10_244() {
        let s = subnet_for("worker-1");
        assert_eq!(s, subnet_for("worker-1"));
        assert_eq!(&s[..2], &[10, 244]);
        assert_ne!(s[2], 0);
    }
}
