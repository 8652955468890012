//! What a Service's Endpoints hold, as pure functions of the Service and its pods: which
//! pods count (`ShouldPodBeInEndpoints`), the address of each (`podToEndpointAddressForService`,
//! `ShouldSetHostname`), the port each service port reaches on it (`FindPort`), and the
//! canonical layout of the result (`endpoints.RepackSubsets`), as
//! `pkg/controller/endpoint` and its helpers in kubernetes/kubernetes compute them.
//!
//! Deviation: upstream orders the ports of a subset and the subsets themselves by an MD5 of
//! Go's spew dump of each; here ports are ordered by (name, port, protocol, appProtocol)
//! and subsets by their addresses (each list ordered by IP, then pod UID, as upstream). The
//! order carries no meaning and is just as deterministic, so writes still happen only when
//! something changed.

use std::collections::BTreeMap;
use std::net::IpAddr;

use k8s_openapi::api::core::v1::{
    EndpointAddress, EndpointPort, EndpointSubset, ObjectReference, Pod, Service, ServicePort,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

/// The most addresses (ready and not) an Endpoints object is given (upstream's
/// `maxCapacity`); past it the object is truncated and annotated.
pub const MAX_CAPACITY: usize = 1000;

/// The service's selector when it selects pods: present and not empty (an empty selector
/// does not survive kube-apiserver's encoding, so it means no selector).
pub fn selector(svc: &Service) -> Option<&BTreeMap<String, String>> {
    svc.spec.as_ref()?.selector.as_ref().filter(|s| !s.is_empty())
}

/// Whether `labels` has every key=value of `selector`.
pub fn selects(selector: &BTreeMap<String, String>, labels: Option<&BTreeMap<String, String>>) -> bool {
    selector.iter().all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v))
}

/// Whether the service is of type ExternalName (it gets no endpoints).
pub fn is_external_name(svc: &Service) -> bool {
    svc.spec.as_ref().and_then(|s| s.type_.as_deref()) == Some("ExternalName")
}

fn cluster_ip(svc: &Service) -> &str {
    svc.spec.as_ref().and_then(|s| s.cluster_ip.as_deref()).unwrap_or("")
}

/// Whether the service has no cluster IP (`None` or unset): its Endpoints carry the
/// `service.kubernetes.io/headless` label.
pub fn is_headless(svc: &Service) -> bool {
    matches!(cluster_ip(svc), "" | "None")
}

/// The pod's Ready condition is True.
pub fn is_ready(pod: &Pod) -> bool {
    ready_condition(pod).is_some_and(|c| c.status == "True")
}

pub(crate) fn ready_condition(pod: &Pod) -> Option<&k8s_openapi::api::core::v1::PodCondition> {
    pod.status.as_ref()?.conditions.as_ref()?.iter().find(|c| c.type_ == "Ready")
}

/// Succeeded or Failed: its containers will not run again.
pub fn is_terminal(pod: &Pod) -> bool {
    matches!(pod.status.as_ref().and_then(|s| s.phase.as_deref()), Some("Succeeded" | "Failed"))
}

/// The pod's IPs: `status.podIPs`, or `status.podIP` alone when that list is empty
/// (kube-apiserver fills the list from the single field; an API server that does not
/// still gets its pods in).
pub fn pod_ips(pod: &Pod) -> Vec<&str> {
    let Some(status) = pod.status.as_ref() else { return Vec::new() };
    let listed: Vec<&str> =
        status.pod_ips.iter().flatten().map(|p| p.ip.as_str()).filter(|ip| !ip.is_empty()).collect();
    if !listed.is_empty() {
        return listed;
    }
    status.pod_ip.as_deref().filter(|ip| !ip.is_empty()).into_iter().collect()
}

/// Whether the pod belongs in a service's endpoints at all: not terminal, has an IP, and is
/// not being deleted unless terminating pods are included (`publishNotReadyAddresses`).
pub fn should_be_in_endpoints(pod: &Pod, include_terminating: bool) -> bool {
    if is_terminal(pod) || pod_ips(pod).is_empty() {
        return false;
    }
    include_terminating || pod.metadata.deletion_timestamp.is_none()
}

/// Whether the address gets the pod's hostname: it has one and its subdomain is the
/// service (in the service's namespace).
pub fn should_set_hostname(pod: &Pod, svc: &Service) -> bool {
    let spec = pod.spec.as_ref();
    let hostname = spec.and_then(|s| s.hostname.as_deref()).unwrap_or("");
    let subdomain = spec.and_then(|s| s.subdomain.as_deref()).unwrap_or("");
    !hostname.is_empty()
        && Some(subdomain) == svc.metadata.name.as_deref()
        && pod.metadata.namespace == svc.metadata.namespace
}

fn is_ipv6(ip: &str) -> bool {
    match ip.parse::<IpAddr>() {
        Ok(IpAddr::V6(v6)) => v6.to_ipv4_mapped().is_none(),
        _ => false,
    }
}

/// The pod's address for the service: its IP of the service's family (the first of
/// `spec.ipFamilies`; without them, the cluster IP's, or for a headless service the pod's
/// first IP's), its node, and a reference to it. None when it has no IP of that family.
pub fn address_for(svc: &Service, pod: &Pod) -> Option<EndpointAddress> {
    let ips = pod_ips(pod);
    let families = svc.spec.as_ref().and_then(|s| s.ip_families.as_ref()).filter(|f| !f.is_empty());
    let want_v6 = match families {
        Some(f) => f[0] == "IPv6",
        None if !is_headless(svc) => is_ipv6(cluster_ip(svc)),
        None => ips.first().is_some_and(|ip| is_ipv6(ip)),
    };
    let ip = ips.into_iter().find(|ip| is_ipv6(ip) == want_v6)?;
    let node = pod.spec.as_ref().and_then(|s| s.node_name.clone()).filter(|n| !n.is_empty());
    let mut address = EndpointAddress {
        ip: ip.to_string(),
        // Deviation: upstream writes the pod's nodeName even when empty (kube-apiserver then
        // refuses the object); an unscheduled pod with an IP gets no nodeName here.
        node_name: node,
        target_ref: Some(ObjectReference {
            kind: Some("Pod".into()),
            namespace: pod.metadata.namespace.clone(),
            name: pod.metadata.name.clone(),
            uid: pod.metadata.uid.clone(),
            ..ObjectReference::default()
        }),
        ..EndpointAddress::default()
    };
    if should_set_hostname(pod, svc) {
        address.hostname = pod.spec.as_ref().and_then(|s| s.hostname.clone());
    }
    Some(address)
}

fn protocol(p: Option<&String>) -> &str {
    p.map(String::as_str).filter(|p| !p.is_empty()).unwrap_or("TCP")
}

/// The pod's port for a service port: a numeric targetPort as is; a named one is the
/// container port of that name and the service port's protocol, in the containers or the
/// sidecars (init containers with restartPolicy Always). None when the name is not found.
pub fn find_port(pod: &Pod, svc_port: &ServicePort) -> Option<i32> {
    let name = match &svc_port.target_port {
        Some(IntOrString::Int(n)) => return Some(*n),
        // kube-apiserver defaults targetPort to the port.
        None => return Some(svc_port.port),
        Some(IntOrString::String(name)) => name,
    };
    let spec = pod.spec.as_ref()?;
    let sidecars = spec.init_containers.iter().flatten().filter(|c| c.restart_policy.as_deref() == Some("Always"));
    let want = protocol(svc_port.protocol.as_ref());
    spec.containers
        .iter()
        .chain(sidecars)
        .flat_map(|c| c.ports.iter().flatten())
        .find(|p| p.name.as_deref() == Some(name.as_str()) && protocol(p.protocol.as_ref()) == want)
        .map(|p| p.container_port)
}

/// The EndpointPort a service port gives: its name (when it has one), the resolved port,
/// its protocol and appProtocol.
pub fn endpoint_port(svc_port: &ServicePort, port: i32) -> EndpointPort {
    EndpointPort {
        name: svc_port.name.clone().filter(|n| !n.is_empty()),
        port,
        protocol: svc_port.protocol.clone(),
        app_protocol: svc_port.app_protocol.clone(),
    }
}

/// One address offering one port (None: a headless service without ports), as the
/// controller collects them before repacking.
#[derive(Debug, Clone)]
pub struct Entry {
    pub address: EndpointAddress,
    pub ready: bool,
    pub port: Option<EndpointPort>,
}

/// What [`desired`] found.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Desired {
    pub subsets: Vec<EndpointSubset>,
    /// Address-port pairs that are ready / not ready (upstream's log counts).
    pub ready: usize,
    pub not_ready: usize,
}

/// The subsets of the service's Endpoints given the pods its selector matches (the caller
/// selects them).
pub fn desired<'a>(svc: &Service, pods: impl IntoIterator<Item = &'a Pod>) -> Desired {
    let spec = svc.spec.clone().unwrap_or_default();
    let tolerate_unready = spec.publish_not_ready_addresses.unwrap_or(false);
    let ports = spec.ports.unwrap_or_default();
    let mut entries = Vec::new();
    let mut out = Desired::default();
    for pod in pods {
        if !should_be_in_endpoints(pod, tolerate_unready) {
            continue;
        }
        let Some(address) = address_for(svc, pod) else { continue };
        let ready = tolerate_unready || is_ready(pod);
        let mut push = |port: Option<EndpointPort>| {
            if ready {
                out.ready += 1;
            } else {
                out.not_ready += 1;
            }
            entries.push(Entry { address: address.clone(), ready, port });
        };
        if ports.is_empty() {
            // Only a headless service may have no ports: its addresses are all there is.
            if cluster_ip(svc) == "None" {
                push(None);
            }
        } else {
            for sp in &ports {
                if let Some(n) = find_port(pod, sp) {
                    push(Some(endpoint_port(sp, n)));
                }
            }
        }
    }
    out.subsets = repack(entries);
    out
}

/// Addresses are told apart by IP and pod UID.
type AddrKey = (String, String);
/// A port as a map key: (name, port, protocol, appProtocol).
type PortKey = (Option<String>, i32, Option<String>, Option<String>);

fn addr_key(a: &EndpointAddress) -> AddrKey {
    (a.ip.clone(), a.target_ref.as_ref().and_then(|r| r.uid.clone()).unwrap_or_default())
}

fn port_key(p: &EndpointPort) -> PortKey {
    (p.name.clone(), p.port, p.protocol.clone(), p.app_protocol.clone())
}

/// Packs address-port pairs into the canonical subsets (`RepackSubsets`): one subset per
/// distinct set of (address, ready) pairs, holding every port offered by exactly that set;
/// an address that is not ready for a port is not ready for it, whatever else says so.
pub fn repack(entries: Vec<Entry>) -> Vec<EndpointSubset> {
    let mut addresses: BTreeMap<AddrKey, EndpointAddress> = BTreeMap::new();
    // None: the sentinel for addresses without ports.
    let mut by_port: BTreeMap<Option<PortKey>, BTreeMap<AddrKey, bool>> = BTreeMap::new();
    for e in entries {
        let key = addr_key(&e.address);
        addresses.entry(key.clone()).or_insert(e.address);
        let ready = by_port.entry(e.port.as_ref().map(port_key)).or_default().entry(key).or_insert(e.ready);
        *ready = *ready && e.ready;
    }
    let mut groups: BTreeMap<Vec<(AddrKey, bool)>, Vec<PortKey>> = BTreeMap::new();
    for (port, members) in by_port {
        let ports = groups.entry(members.into_iter().collect()).or_default();
        ports.extend(port);
    }
    groups
        .into_iter()
        .map(|(members, mut ports)| {
            ports.sort();
            let pick = |want: bool| -> Option<Vec<EndpointAddress>> {
                let list: Vec<EndpointAddress> =
                    members.iter().filter(|(_, r)| *r == want).map(|(k, _)| addresses[k].clone()).collect();
                (!list.is_empty()).then_some(list)
            };
            let ports: Vec<EndpointPort> = ports
                .into_iter()
                .map(|(name, port, protocol, app_protocol)| EndpointPort { name, port, protocol, app_protocol })
                .collect();
            EndpointSubset {
                addresses: pick(true),
                not_ready_addresses: pick(false),
                ports: (!ports.is_empty()).then_some(ports),
            }
        })
        .collect()
}

/// Addresses in the subsets, ready and not.
pub fn count(subsets: &[EndpointSubset]) -> usize {
    subsets
        .iter()
        .map(|s| s.addresses.as_ref().map_or(0, Vec::len) + s.not_ready_addresses.as_ref().map_or(0, Vec::len))
        .sum()
}

/// Cuts the subsets to [`MAX_CAPACITY`] addresses as upstream's `truncateEndpoints` does:
/// not-ready addresses go first; each subset keeps a share proportional to its size
/// (rounded up, the last ones taking what is left). Returns whether anything was cut.
pub fn truncate(subsets: &mut [EndpointSubset]) -> bool {
    let ready: usize = subsets.iter().map(|s| s.addresses.as_ref().map_or(0, Vec::len)).sum();
    let not_ready: usize = subsets.iter().map(|s| s.not_ready_addresses.as_ref().map_or(0, Vec::len)).sum();
    if ready + not_ready <= MAX_CAPACITY {
        return false;
    }
    let truncate_ready = ready > MAX_CAPACITY;
    let (max, total) = if truncate_ready { (MAX_CAPACITY, ready) } else { (MAX_CAPACITY - ready, not_ready) };
    let mut can_be_added = max;
    for s in subsets.iter_mut() {
        let list = if truncate_ready { &mut s.addresses } else { &mut s.not_ready_addresses };
        let n = list.as_ref().map_or(0, Vec::len);
        let share = ((n as f64 / total as f64) * max as f64).ceil() as usize;
        let keep = share.min(can_be_added);
        if let Some(l) = list.as_mut() {
            l.truncate(keep);
        }
        can_be_added -= list.as_ref().map_or(0, Vec::len);
        if list.as_ref().is_some_and(Vec::is_empty) {
            *list = None;
        }
        if truncate_ready {
            s.not_ready_addresses = None;
        }
    }
    true
}

/// The subsets as Go's semantic equality sees them, without the pods' resourceVersions:
/// empty lists and strings count as absent.
fn canonical(subsets: &[EndpointSubset]) -> Vec<EndpointSubset> {
    fn opt(s: &Option<String>) -> Option<String> {
        s.clone().filter(|s| !s.is_empty())
    }
    fn addrs(list: &Option<Vec<EndpointAddress>>) -> Option<Vec<EndpointAddress>> {
        let list: Vec<EndpointAddress> = list
            .iter()
            .flatten()
            .map(|a| EndpointAddress {
                hostname: opt(&a.hostname),
                ip: a.ip.clone(),
                node_name: a.node_name.clone(),
                target_ref: a.target_ref.as_ref().map(|r| ObjectReference {
                    api_version: opt(&r.api_version),
                    field_path: opt(&r.field_path),
                    kind: opt(&r.kind),
                    name: opt(&r.name),
                    namespace: opt(&r.namespace),
                    resource_version: None,
                    uid: opt(&r.uid),
                }),
            })
            .collect();
        (!list.is_empty()).then_some(list)
    }
    subsets
        .iter()
        .map(|s| EndpointSubset {
            addresses: addrs(&s.addresses),
            not_ready_addresses: addrs(&s.not_ready_addresses),
            ports: s
                .ports
                .as_ref()
                .map(|ps| {
                    ps.iter()
                        .map(|p| EndpointPort {
                            name: opt(&p.name),
                            port: p.port,
                            protocol: opt(&p.protocol),
                            app_protocol: opt(&p.app_protocol),
                        })
                        .collect::<Vec<_>>()
                })
                .filter(|ps| !ps.is_empty()),
        })
        .collect()
}

/// Whether two subset lists are the same but for the pods' resourceVersions.
pub fn equal_ignoring_resource_version(a: &[EndpointSubset], b: &[EndpointSubset]) -> bool {
    canonical(a) == canonical(b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn svc(spec: Value) -> Service {
        serde_json::from_value(json!({"metadata": {"name": "web", "namespace": "ns"}, "spec": spec})).unwrap()
    }

    fn pod(name: &str, ip: &str, ready: bool, extra: Value) -> Pod {
        let mut p = json!({
            "metadata": {"name": name, "namespace": "ns", "uid": format!("uid-{name}"), "labels": {"app": "web"}},
            "spec": {"nodeName": "n1", "containers": [{"name": "c", "ports": [
                {"name": "http", "containerPort": 8080, "protocol": "TCP"},
                {"name": "dns", "containerPort": 5353, "protocol": "UDP"},
            ]}]},
            "status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}],
                       "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]},
        });
        merge(&mut p, extra);
        serde_json::from_value(p).unwrap()
    }

    fn merge(a: &mut Value, b: Value) {
        match (a, b) {
            (Value::Object(a), Value::Object(b)) => {
                for (k, v) in b {
                    merge(a.entry(k).or_insert(Value::Null), v);
                }
            }
            (a, b) => *a = b,
        }
    }

    fn json_of(subsets: &[EndpointSubset]) -> Value {
        serde_json::to_value(subsets).unwrap()
    }

    fn target(name: &str) -> Value {
        json!({"kind": "Pod", "namespace": "ns", "name": name, "uid": format!("uid-{name}")})
    }

    #[test]
    fn ready_and_not_ready_pods_with_named_and_numeric_ports() {
        let s = svc(json!({"clusterIP": "10.96.0.10", "selector": {"app": "web"}, "ports": [
            {"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"},
            {"name": "metrics", "port": 9090, "targetPort": 9091, "protocol": "TCP", "appProtocol": "http"},
        ]}));
        let pods = [pod("b", "10.0.0.2", false, json!({})), pod("a", "10.0.0.1", true, json!({}))];
        let d = desired(&s, &pods);
        assert_eq!((d.ready, d.not_ready), (2, 2));
        assert_eq!(
            json_of(&d.subsets),
            json!([{
                "addresses": [{"ip": "10.0.0.1", "nodeName": "n1", "targetRef": target("a")}],
                "notReadyAddresses": [{"ip": "10.0.0.2", "nodeName": "n1", "targetRef": target("b")}],
                "ports": [
                    {"name": "http", "port": 8080, "protocol": "TCP"},
                    {"name": "metrics", "port": 9091, "protocol": "TCP", "appProtocol": "http"},
                ],
            }])
        );
    }

    #[test]
    fn a_name_that_does_not_resolve_leaves_the_pod_out_of_that_port() {
        let s = svc(json!({"clusterIP": "10.96.0.10", "ports": [
            {"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"},
            // The container's "dns" port is UDP: no match over TCP.
            {"name": "dns", "port": 53, "targetPort": "dns", "protocol": "TCP"},
        ]}));
        let other = pod(
            "c",
            "10.0.0.3",
            true,
            json!({"spec": {"containers": [{"name": "c", "ports": [{"name": "dns", "containerPort": 53, "protocol": "TCP"}]}]}}),
        );
        let pods = [pod("a", "10.0.0.1", true, json!({})), other];
        let d = desired(&s, &pods);
        assert_eq!(
            json_of(&d.subsets),
            json!([
                {"addresses": [{"ip": "10.0.0.1", "nodeName": "n1", "targetRef": target("a")}],
                 "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]},
                {"addresses": [{"ip": "10.0.0.3", "nodeName": "n1", "targetRef": target("c")}],
                 "ports": [{"name": "dns", "port": 53, "protocol": "TCP"}]},
            ])
        );
    }

    #[test]
    fn sidecar_ports_resolve_names_plain_init_containers_do_not() {
        let s =
            svc(json!({"clusterIP": "10.96.0.10", "ports": [{"port": 80, "targetPort": "side", "protocol": "TCP"}]}));
        let sidecar = |policy: Value| {
            pod(
                "a",
                "10.0.0.1",
                true,
                json!({"spec": {"initContainers": [
                    {"name": "s", "restartPolicy": policy, "ports": [{"name": "side", "containerPort": 7000}]}
                ]}}),
            )
        };
        let d = desired(&s, &[sidecar(json!("Always"))]);
        assert_eq!(d.subsets[0].ports.as_ref().unwrap()[0].port, 7000);
        assert!(d.subsets[0].ports.as_ref().unwrap()[0].name.is_none(), "an unnamed service port has no name");
        assert!(desired(&s, &[sidecar(Value::Null)]).subsets.is_empty());
    }

    #[test]
    fn terminal_deleted_and_ip_less_pods_are_left_out_unless_published() {
        let s = svc(json!({"clusterIP": "10.96.0.10", "ports": [{"port": 80, "targetPort": 80, "protocol": "TCP"}]}));
        let deleting = pod("d", "10.0.0.4", true, json!({"metadata": {"deletionTimestamp": "2025-01-01T00:00:00Z"}}));
        let pods = [
            pod("a", "10.0.0.1", true, json!({"status": {"phase": "Succeeded"}})),
            pod("b", "10.0.0.2", true, json!({"status": {"phase": "Failed"}})),
            pod("c", "", true, json!({"status": {"podIPs": []}})),
            deleting,
            pod("e", "10.0.0.5", false, json!({})),
        ];
        let d = desired(&s, &pods);
        assert_eq!(count(&d.subsets), 1);
        assert_eq!(d.subsets[0].not_ready_addresses.as_ref().unwrap()[0].ip, "10.0.0.5");

        // publishNotReadyAddresses: not-ready and terminating pods are ready addresses.
        let mut published = s.clone();
        published.spec.as_mut().unwrap().publish_not_ready_addresses = Some(true);
        let d = desired(&published, &pods);
        let ips: Vec<&str> = d.subsets[0].addresses.as_ref().unwrap().iter().map(|a| a.ip.as_str()).collect();
        assert_eq!(ips, vec!["10.0.0.4", "10.0.0.5"]);
        assert!(d.subsets[0].not_ready_addresses.is_none());
    }

    #[test]
    fn headless_services_without_ports_and_hostnames() {
        let s = svc(json!({"clusterIP": "None", "selector": {"app": "web"}}));
        let named = pod("a", "10.0.0.1", true, json!({"spec": {"hostname": "a-0", "subdomain": "web"}}));
        let other_domain = pod("b", "10.0.0.2", true, json!({"spec": {"hostname": "b-0", "subdomain": "other"}}));
        let d = desired(&s, &[named, other_domain]);
        assert_eq!(
            json_of(&d.subsets),
            json!([{"addresses": [
                {"hostname": "a-0", "ip": "10.0.0.1", "nodeName": "n1", "targetRef": target("a")},
                {"ip": "10.0.0.2", "nodeName": "n1", "targetRef": target("b")},
            ]}])
        );
        // A service with a cluster IP and no ports has no endpoints.
        let s = svc(json!({"clusterIP": "10.96.0.10"}));
        assert!(desired(&s, &[pod("a", "10.0.0.1", true, json!({}))]).subsets.is_empty());
    }

    #[test]
    fn the_address_is_of_the_services_family() {
        let dual =
            || pod("a", "10.0.0.1", true, json!({"status": {"podIPs": [{"ip": "10.0.0.1"}, {"ip": "fd00::1"}]}}));
        let s6 = svc(
            json!({"clusterIP": "fd00:96::10", "ipFamilies": ["IPv6"], "ports": [{"port": 80, "protocol": "TCP"}]}),
        );
        assert_eq!(address_for(&s6, &dual()).unwrap().ip, "fd00::1");
        // No ipFamilies: the cluster IP's family.
        let s6_old = svc(json!({"clusterIP": "fd00:96::10"}));
        assert_eq!(address_for(&s6_old, &dual()).unwrap().ip, "fd00::1");
        let s4 = svc(json!({"clusterIP": "10.96.0.10", "ipFamilies": ["IPv4"]}));
        assert_eq!(address_for(&s4, &dual()).unwrap().ip, "10.0.0.1");
        // No IP of the family: no address.
        assert!(address_for(&s6, &pod("b", "10.0.0.2", true, json!({}))).is_none());
        // Only podIP set: used.
        let only = pod("c", "10.0.0.3", true, json!({"status": {"podIPs": null}}));
        assert_eq!(address_for(&s4, &only).unwrap().ip, "10.0.0.3");
        // No node: no nodeName.
        let unscheduled = pod("d", "10.0.0.4", true, json!({"spec": {"nodeName": null}}));
        assert!(address_for(&s4, &unscheduled).unwrap().node_name.is_none());
    }

    fn addr(ip: &str, uid: &str) -> EndpointAddress {
        EndpointAddress {
            ip: ip.into(),
            target_ref: Some(ObjectReference { uid: Some(uid.into()), ..Default::default() }),
            ..Default::default()
        }
    }

    fn port(name: &str, n: i32) -> Option<EndpointPort> {
        Some(EndpointPort { name: Some(name.into()), port: n, protocol: Some("TCP".into()), app_protocol: None })
    }

    #[test]
    fn repacking_groups_addresses_by_identical_port_sets() {
        let e = |a: EndpointAddress, ready: bool, p: Option<EndpointPort>| Entry { address: a, ready, port: p };
        let entries = vec![
            e(addr("10.0.0.2", "u2"), true, port("a", 1)),
            e(addr("10.0.0.1", "u1"), true, port("b", 2)),
            e(addr("10.0.0.1", "u1"), true, port("a", 1)),
            e(addr("10.0.0.2", "u2"), true, port("b", 2)),
            // Same IP, another pod: a separate address.
            e(addr("10.0.0.1", "u0"), true, port("c", 3)),
            // Ready for one entry and not for another of the same port: not ready.
            e(addr("10.0.0.3", "u3"), true, port("c", 3)),
            e(addr("10.0.0.3", "u3"), false, port("c", 3)),
        ];
        let got = repack(entries);
        let shape: Vec<(Vec<String>, Vec<String>, Vec<i32>)> = got
            .iter()
            .map(|s| {
                let ids = |l: &Option<Vec<EndpointAddress>>| {
                    l.iter()
                        .flatten()
                        .map(|a| format!("{}/{}", a.ip, a.target_ref.as_ref().unwrap().uid.as_ref().unwrap()))
                        .collect()
                };
                (ids(&s.addresses), ids(&s.not_ready_addresses), s.ports.iter().flatten().map(|p| p.port).collect())
            })
            .collect();
        assert_eq!(
            shape,
            vec![
                (vec!["10.0.0.1/u0".to_string()], vec!["10.0.0.3/u3".to_string()], vec![3]),
                (vec!["10.0.0.1/u1".to_string(), "10.0.0.2/u2".to_string()], vec![], vec![1, 2]),
            ]
        );
        assert!(repack(Vec::new()).is_empty());
    }

    #[test]
    fn truncation_keeps_ready_addresses_first() {
        let many = |n: usize, base: u32| -> Option<Vec<EndpointAddress>> {
            Some((0..n).map(|i| addr(&format!("10.{base}.{}.{}", i / 250, i % 250), &format!("u{base}-{i}"))).collect())
        };
        let mut subsets = vec![
            EndpointSubset { addresses: many(600, 1), not_ready_addresses: many(300, 2), ports: None },
            EndpointSubset { addresses: many(200, 3), not_ready_addresses: many(100, 4), ports: None },
        ];
        assert!(truncate(&mut subsets));
        assert_eq!(count(&subsets), MAX_CAPACITY);
        let lens: Vec<(usize, usize)> = subsets
            .iter()
            .map(|s| (s.addresses.as_ref().map_or(0, Vec::len), s.not_ready_addresses.as_ref().map_or(0, Vec::len)))
            .collect();
        // 800 ready stay; 200 not-ready places, shared 3:1.
        assert_eq!(lens, vec![(600, 150), (200, 50)]);

        let mut subsets =
            vec![EndpointSubset { addresses: many(1200, 1), not_ready_addresses: many(5, 2), ports: None }];
        assert!(truncate(&mut subsets));
        assert_eq!(subsets[0].addresses.as_ref().unwrap().len(), 1000);
        assert!(subsets[0].not_ready_addresses.is_none());

        let mut small = vec![EndpointSubset { addresses: many(3, 1), ..Default::default() }];
        assert!(!truncate(&mut small));
    }

    #[test]
    fn equality_ignores_resource_versions_and_empty_lists() {
        let mut a = addr("10.0.0.1", "u1");
        let subsets = vec![EndpointSubset {
            addresses: Some(vec![a.clone()]),
            ports: port("x", 1).map(|p| vec![p]),
            ..Default::default()
        }];
        a.target_ref.as_mut().unwrap().resource_version = Some("42".into());
        let other = vec![EndpointSubset {
            addresses: Some(vec![a]),
            not_ready_addresses: Some(vec![]),
            ports: port("x", 1).map(|p| vec![p]),
        }];
        assert!(equal_ignoring_resource_version(&subsets, &other));
        let mut moved = other.clone();
        moved[0].ports.as_mut().unwrap()[0].port = 2;
        assert!(!equal_ignoring_resource_version(&subsets, &moved));
    }

    #[test]
    fn selectors_match_every_pair() {
        let sel: BTreeMap<String, String> = [("app".to_string(), "web".to_string())].into();
        let labels: BTreeMap<String, String> = [("app".into(), "web".into()), ("tier".into(), "x".into())].into();
        assert!(selects(&sel, Some(&labels)));
        assert!(!selects(&sel, None));
        let empty = svc(json!({"selector": {}}));
        assert!(selector(&empty).is_none(), "an empty selector selects nothing");
    }
}
