//! A pod's hostname and the /etc/hosts the kubelet writes for it (kubelet_pods.go
//! GeneratePodHostNameAndDomain, managedHostsFileContent, nodeHostsFileContent).

use k8s_openapi::api::core::v1::{HostAlias, Pod};

/// The pod's hostname (`spec.hostname`, else its name, cut to 63 characters without a
/// trailing `-` or `.`) and, with a subdomain, its domain
/// (`<subdomain>.<namespace>.svc.<cluster domain>`).
pub fn pod_hostname_and_domain(pod: &Pod, cluster_domain: &str) -> (String, Option<String>) {
    let spec = pod.spec.clone().unwrap_or_default();
    let mut hostname =
        spec.hostname.filter(|h| !h.is_empty()).unwrap_or_else(|| pod.metadata.name.clone().unwrap_or_default());
    if hostname.len() > 63 {
        hostname.truncate(63);
        hostname = hostname.trim_end_matches(['-', '.']).to_string();
    }
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    let domain = spec.subdomain.filter(|s| !s.is_empty()).map(|s| format!("{s}.{ns}.svc.{cluster_domain}"));
    (hostname, domain)
}

fn aliases_block(aliases: &[HostAlias]) -> String {
    if aliases.is_empty() {
        return String::new();
    }
    let mut out = String::from("\n# Entries added by HostAliases.\n");
    for a in aliases {
        out.push_str(&a.ip);
        for h in a.hostnames.iter().flatten() {
            out.push('\t');
            out.push_str(h);
        }
        out.push('\n');
    }
    out
}

/// /etc/hosts of a pod with its own network.
pub fn hosts_file(hostname: &str, domain: Option<&str>, pod_ips: &[String], host_aliases: &[HostAlias]) -> String {
    let mut out = String::from(
        "# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n\
         fe00::0\tip6-localnet\nfe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n",
    );
    for ip in pod_ips {
        match domain {
            Some(d) => out.push_str(&format!("{ip}\t{hostname}.{d}\t{hostname}\n")),
            None => out.push_str(&format!("{ip}\t{hostname}\n")),
        }
    }
    out.push_str(&aliases_block(host_aliases));
    out
}

/// /etc/hosts of a host-network pod: the node's, marked, plus the aliases.
pub fn host_network_hosts_file(node_etc_hosts: &str, host_aliases: &[HostAlias]) -> String {
    format!("# Kubernetes-managed hosts file (host network).\n{node_etc_hosts}{}", aliases_block(host_aliases))
}

/// A resolver configuration: what the kubelet hands the runtime (DNSConfig).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DnsConfig {
    pub servers: Vec<String>,
    pub searches: Vec<String>,
    pub options: Vec<String>,
}

/// Parses a resolv.conf as the kubelet does (`parseResolvConf`): every `nameserver`, the
/// last `search` and the last `options` line; `#` and `;` start comments.
pub fn parse_resolv_conf(text: &str) -> DnsConfig {
    let mut c = DnsConfig::default();
    for line in text.lines() {
        let line = line.split(['#', ';']).next().unwrap_or("");
        let fields: Vec<&str> = line.split_whitespace().collect();
        match fields.split_first() {
            Some((&"nameserver", [ip, ..])) => c.servers.push(ip.to_string()),
            Some((&"search", rest)) => {
                c.searches = rest.iter().filter(|s| **s != ".").map(|s| s.trim_end_matches('.').to_string()).collect()
            }
            Some((&"options", rest)) => c.options = rest.iter().map(|s| s.to_string()).collect(),
            _ => {}
        }
    }
    c
}

fn omit_duplicates(list: Vec<String>) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    list.into_iter().filter(|s| seen.insert(s.clone())).collect()
}

/// The pod's DNS configuration (`GetPodDNS`): the cluster's (its DNS servers, the
/// namespace's search path, `ndots:5`) for ClusterFirst pods off the host network and
/// ClusterFirstWithHostNet pods, the host's for Default (and ClusterFirst on the host
/// network, or with no cluster DNS), nothing for None; then `spec.dnsConfig` is appended and
/// the result cut to the resolver's limits (3 servers, 32 search domains of 2048 characters).
pub fn pod_dns(pod: &Pod, cluster_dns: &[String], cluster_domain: &str, host: &DnsConfig) -> DnsConfig {
    let spec = pod.spec.clone().unwrap_or_default();
    let host_network = spec.host_network.unwrap_or(false);
    let policy = spec.dns_policy.clone().unwrap_or_else(|| "ClusterFirst".into());
    let cluster = match policy.as_str() {
        "ClusterFirstWithHostNet" => true,
        "ClusterFirst" => !host_network,
        _ => false,
    };
    let mut c = match policy.as_str() {
        "None" => DnsConfig::default(),
        _ if cluster && !cluster_dns.is_empty() => {
            let ns = pod.metadata.namespace.clone().unwrap_or_default();
            let mut searches = if cluster_domain.is_empty() {
                vec![]
            } else {
                vec![format!("{ns}.svc.{cluster_domain}"), format!("svc.{cluster_domain}"), cluster_domain.to_string()]
            };
            searches.extend(host.searches.iter().cloned());
            DnsConfig {
                servers: cluster_dns.to_vec(),
                searches: omit_duplicates(searches),
                options: vec!["ndots:5".into()],
            }
        }
        _ => host.clone(),
    };
    if let Some(extra) = spec.dns_config {
        c.servers.extend(extra.nameservers.unwrap_or_default());
        c.servers = omit_duplicates(std::mem::take(&mut c.servers));
        c.searches.extend(extra.searches.unwrap_or_default());
        c.searches = omit_duplicates(std::mem::take(&mut c.searches));
        // Options merge by name, the pod's winning (the kubelet's map has no order; sorted here).
        let mut merged: std::collections::BTreeMap<String, String> = c
            .options
            .iter()
            .map(|o| match o.split_once(':') {
                Some((k, v)) => (k.to_string(), v.to_string()),
                None => (o.clone(), String::new()),
            })
            .collect();
        for o in extra.options.unwrap_or_default() {
            merged.insert(o.name.unwrap_or_default(), o.value.unwrap_or_default());
        }
        c.options = merged.into_iter().map(|(k, v)| if v.is_empty() { k } else { format!("{k}:{v}") }).collect();
    }
    c.servers.truncate(3);
    let mut chars = 0;
    let mut fits = 0;
    for s in c.searches.iter().take(32) {
        chars += s.len() + usize::from(fits > 0);
        if chars > 2048 {
            break;
        }
        fits += 1;
    }
    c.searches.truncate(fits);
    c
}

/// The resolv.conf a runtime writes for a DNS configuration (containerd's format).
pub fn resolv_conf(c: &DnsConfig) -> String {
    let mut out = String::new();
    if !c.searches.is_empty() {
        out.push_str(&format!("search {}\n", c.searches.join(" ")));
    }
    if !c.servers.is_empty() {
        out.push_str(&format!("nameserver {}\n", c.servers.join("\nnameserver ")));
    }
    if !c.options.is_empty() {
        out.push_str(&format!("options {}\n", c.options.join(" ")));
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn cluster_first_resolv_conf_is_the_kubelets() {
        let pod: k8s_openapi::api::core::v1::Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "namespace": "default"}, "spec": {"containers": []}}))
        .unwrap();
        let host = super::parse_resolv_conf("# x\nnameserver 192.168.1.1\nsearch lan.\noptions edns0\n");
        assert_eq!(host.searches, vec!["lan"]);
        let c = super::pod_dns(&pod, &["10.96.0.10".into()], "cluster.local", &host);
        assert_eq!(
            super::resolv_conf(&c),
            "search default.svc.cluster.local svc.cluster.local cluster.local lan\nnameserver 10.96.0.10\noptions ndots:5\n"
        );
        let mut hn = pod.clone();
        hn.spec.as_mut().unwrap().host_network = Some(true);
        assert_eq!(super::pod_dns(&hn, &["10.96.0.10".into()], "cluster.local", &host), host);
        let custom: k8s_openapi::api::core::v1::Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "namespace": "ns1"},
            "spec": {"containers": [], "dnsPolicy": "None", "dnsConfig": {
                "nameservers": ["1.2.3.4"], "searches": ["a.b"], "options": [{"name": "ndots", "value": "2"}, {"name": "edns0"}]}}})).unwrap();
        let c = super::pod_dns(&custom, &["10.96.0.10".into()], "cluster.local", &host);
        assert_eq!(super::resolv_conf(&c), "search a.b\nnameserver 1.2.3.4\noptions edns0 ndots:2\n");
    }

    use super::*;
    use serde_json::json;

    #[test]
    fn the_kubelets_bytes() {
        let aliases: Vec<HostAlias> =
            serde_json::from_value(json!([{"ip": "10.1.2.3", "hostnames": ["foo.local", "bar.local"]}])).unwrap();
        let text = hosts_file("web-0", Some("web.default.svc.cluster.local"), &["10.244.0.5".into()], &aliases);
        assert_eq!(
            text,
            "# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nfe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n10.244.0.5\tweb-0.web.default.svc.cluster.local\tweb-0\n\n# Entries added by HostAliases.\n10.1.2.3\tfoo.local\tbar.local\n"
        );
        assert!(hosts_file("p", None, &["10.0.0.1".into()], &[]).ends_with("fe00::2\tip6-allrouters\n10.0.0.1\tp\n"));
        assert_eq!(
            host_network_hosts_file("127.0.0.1 localhost\n", &[]),
            "# Kubernetes-managed hosts file (host network).\n127.0.0.1 localhost\n"
        );
    }

    #[test]
    fn hostnames_and_domains() {
        let pod: Pod = serde_json::from_value(json!({"metadata": {"name": "p", "namespace": "ns"}, "spec": {"containers": [], "hostname": "h", "subdomain": "s"}})).unwrap();
        assert_eq!(pod_hostname_and_domain(&pod, "cluster.local"), ("h".into(), Some("s.ns.svc.cluster.local".into())));
        let long = format!("{}-{}", "a".repeat(62), "b");
        let pod: Pod =
            serde_json::from_value(json!({"metadata": {"name": long, "namespace": "ns"}, "spec": {"containers": []}}))
                .unwrap();
        assert_eq!(pod_hostname_and_domain(&pod, "cluster.local").0, "a".repeat(62));
    }
}
