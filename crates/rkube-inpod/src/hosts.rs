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

#[cfg(test)]
mod tests {
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
