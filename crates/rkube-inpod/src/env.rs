//! A container's environment as the kubelet assembles it (kubelet_pods.go
//! makeEnvironmentVariables, envvars.FromServices, the forked expansion package).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, Pod, Service};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use crate::Objects;

/// Everything a container's environment depends on.
pub struct EnvContext<'a> {
    pub pod: &'a Pod,
    pub container: &'a Container,
    pub node_allocatable: &'a BTreeMap<String, Quantity>,
    pub host_ips: &'a [String],
    pub pod_ips: &'a [String],
    /// Every Service the node knows, all namespaces.
    pub services: &'a [Service],
    pub objects: &'a dyn Objects,
}

/// Why an environment cannot be made (the kubelet's words; the container then waits with
/// CreateContainerConfigError).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct EnvError(pub String);

/// An ordered map: later sets of a name replace its value in place.
#[derive(Default)]
struct Ordered(Vec<(String, String)>);

impl Ordered {
    fn set(&mut self, k: String, v: String) {
        match self.0.iter_mut().find(|(n, _)| *n == k) {
            Some(e) => e.1 = v,
            None => self.0.push((k, v)),
        }
    }
    fn get(&self, k: &str) -> Option<&str> {
        self.0.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str())
    }
}

/// The environment in the kubelet's precedence: envFrom in order, then env in order (a
/// `value` expanded against what is set so far and the service variables; a `valueFrom`
/// taken as is, an optional missing key omitted), then the service variables not set.
/// The order is that of first setting (the kubelet's is a Go map's, i.e. random).
pub fn container_env(ctx: &EnvContext) -> Result<Vec<(String, String)>, EnvError> {
    let ns = ctx.pod.metadata.namespace.as_deref().unwrap_or("default");
    let links = ctx
        .pod
        .spec
        .as_ref()
        .and_then(|s| s.enable_service_links)
        .ok_or_else(|| EnvError("nil pod.spec.enableServiceLinks encountered, cannot construct envvars".into()))?;
    let service = service_env(ctx.services, ns, links);
    let mut env = Ordered::default();
    for from in ctx.container.env_from.iter().flatten() {
        let prefix = from.prefix.clone().unwrap_or_default();
        if let Some(r) = &from.config_map_ref {
            match ctx.objects.config_map(ns, &r.name) {
                Some(cm) => {
                    for (k, v) in cm.data.unwrap_or_default() {
                        env.set(format!("{prefix}{k}"), v);
                    }
                }
                None if r.optional == Some(true) => {}
                None => return Err(EnvError(format!("configmap \"{}\" not found", r.name))),
            }
        }
        if let Some(r) = &from.secret_ref {
            match ctx.objects.secret(ns, &r.name) {
                Some(s) => {
                    for (k, v) in s.data.unwrap_or_default() {
                        env.set(format!("{prefix}{k}"), String::from_utf8_lossy(&v.0).into_owned());
                    }
                }
                None if r.optional == Some(true) => {}
                None => return Err(EnvError(format!("secret \"{}\" not found", r.name))),
            }
        }
    }
    for e in ctx.container.env.iter().flatten() {
        let value = match (&e.value, &e.value_from) {
            (Some(v), _) if !v.is_empty() => {
                let lookup = |k: &str| {
                    env.get(k)
                        .map(str::to_string)
                        .or_else(|| service.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()))
                };
                expand(v, &lookup)
            }
            (_, Some(from)) => {
                if let Some(f) = &from.field_ref {
                    field_ref(ctx.pod, &f.field_path, ctx.host_ips, ctx.pod_ips).map_err(EnvError)?
                } else if let Some(r) = &from.resource_field_ref {
                    let cname = r.container_name.as_deref().filter(|c| !c.is_empty()).unwrap_or(&ctx.container.name);
                    resource_field_ref(ctx.pod, cname, &r.resource, r.divisor.as_ref(), ctx.node_allocatable)
                        .map_err(EnvError)?
                } else if let Some(k) = &from.config_map_key_ref {
                    let optional = k.optional == Some(true);
                    match ctx.objects.config_map(ns, &k.name) {
                        Some(cm) => match cm.data.unwrap_or_default().get(&k.key) {
                            Some(v) => v.clone(),
                            None if optional => continue,
                            None => {
                                return Err(EnvError(format!(
                                    "couldn't find key {} in ConfigMap {ns}/{}",
                                    k.key, k.name
                                )))
                            }
                        },
                        None if optional => continue,
                        None => return Err(EnvError(format!("configmap \"{}\" not found", k.name))),
                    }
                } else if let Some(k) = &from.secret_key_ref {
                    let optional = k.optional == Some(true);
                    match ctx.objects.secret(ns, &k.name) {
                        Some(s) => match s.data.unwrap_or_default().get(&k.key) {
                            Some(v) => String::from_utf8_lossy(&v.0).into_owned(),
                            None if optional => continue,
                            None => {
                                return Err(EnvError(format!("couldn't find key {} in Secret {ns}/{}", k.key, k.name)))
                            }
                        },
                        None if optional => continue,
                        None => return Err(EnvError(format!("secret \"{}\" not found", k.name))),
                    }
                } else {
                    String::new()
                }
            }
            _ => String::new(),
        };
        env.set(e.name.clone(), value);
    }
    for (k, v) in service {
        if env.get(&k).is_none() {
            env.0.push((k, v));
        }
    }
    Ok(env.0)
}

/// The Docker-link style variables of the services a pod sees: `default/kubernetes`
/// always, the pod's namespace's when `enable_service_links`; headless and ExternalName
/// services have none.
pub fn service_env(services: &[Service], namespace: &str, enable_service_links: bool) -> Vec<(String, String)> {
    let mut chosen: BTreeMap<String, &Service> = BTreeMap::new();
    for s in services {
        let ns = s.metadata.namespace.as_deref().unwrap_or("");
        let name = s.metadata.name.as_deref().unwrap_or("");
        let ip = s.spec.as_ref().and_then(|sp| sp.cluster_ip.as_deref()).unwrap_or("");
        if ip.is_empty() || ip == "None" {
            continue;
        }
        if ns == namespace && enable_service_links {
            chosen.insert(name.to_string(), s);
        } else if ns == "default" && name == "kubernetes" {
            chosen.entry(name.to_string()).or_insert(s);
        }
    }
    let mut out = Vec::new();
    for (name, s) in chosen {
        let spec = s.spec.as_ref().expect("has a cluster IP");
        let ip = spec.cluster_ip.clone().unwrap_or_default();
        let ports = spec.ports.clone().unwrap_or_default();
        let Some(first) = ports.first() else { continue };
        let prefix = name.replace('-', "_").to_uppercase();
        let host_port = |port: i32| if ip.contains(':') { format!("[{ip}]:{port}") } else { format!("{ip}:{port}") };
        out.push((format!("{prefix}_SERVICE_HOST"), ip.clone()));
        out.push((format!("{prefix}_SERVICE_PORT"), first.port.to_string()));
        for p in &ports {
            if let Some(pn) = p.name.as_deref().filter(|n| !n.is_empty()) {
                out.push((
                    format!("{prefix}_SERVICE_PORT_{}", pn.replace('-', "_").to_uppercase()),
                    p.port.to_string(),
                ));
            }
        }
        let proto = |p: &k8s_openapi::api::core::v1::ServicePort| p.protocol.clone().unwrap_or_else(|| "TCP".into());
        out.push((format!("{prefix}_PORT"), format!("{}://{}", proto(first).to_lowercase(), host_port(first.port))));
        for p in &ports {
            let up = proto(p).to_uppercase();
            let base = format!("{prefix}_PORT_{}_{up}", p.port);
            out.push((base.clone(), format!("{}://{}", up.to_lowercase(), host_port(p.port))));
            out.push((format!("{base}_PROTO"), up.to_lowercase()));
            out.push((format!("{base}_PORT"), p.port.to_string()));
            out.push((format!("{base}_ADDR"), ip.clone()));
        }
    }
    out
}

/// `$(NAME)` expansion: a known NAME is replaced, an unknown one kept as written, `$$` is
/// `$`, any other `$` stays.
pub fn expand(input: &str, lookup: &dyn Fn(&str) -> Option<String>) -> String {
    let chars: Vec<char> = input.chars().collect();
    let mut out = String::with_capacity(input.len());
    let mut i = 0;
    while i < chars.len() {
        if chars[i] != '$' || i + 1 >= chars.len() {
            out.push(chars[i]);
            i += 1;
            continue;
        }
        match chars[i + 1] {
            '$' => {
                out.push('$');
                i += 2;
            }
            '(' => match chars[i + 2..].iter().position(|c| *c == ')') {
                Some(end) => {
                    let name: String = chars[i + 2..i + 2 + end].iter().collect();
                    match lookup(&name) {
                        Some(v) => out.push_str(&v),
                        None => {
                            out.push_str("$(");
                            out.push_str(&name);
                            out.push(')');
                        }
                    }
                    i += 3 + end;
                }
                None => {
                    out.extend(&chars[i..]);
                    break;
                }
            },
            other => {
                out.push('$');
                out.push(other);
                i += 2;
            }
        }
    }
    out
}

/// `command` then `args`, each expanded against the container's final environment.
pub fn command_line(container: &Container, env: &[(String, String)]) -> Vec<String> {
    let lookup = |k: &str| env.iter().rev().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    container.command.iter().flatten().chain(container.args.iter().flatten()).map(|s| expand(s, &lookup)).collect()
}

fn subscript<'a>(path: &'a str, prefix: &str) -> Option<&'a str> {
    path.strip_prefix(prefix)?.strip_prefix("['")?.strip_suffix("']")
}

/// An env `fieldRef` value (the paths the API allows for env).
pub fn field_ref(pod: &Pod, path: &str, host_ips: &[String], pod_ips: &[String]) -> Result<String, String> {
    if let Some(v) = metadata_field(pod, path)? {
        return Ok(v);
    }
    let spec = pod.spec.clone().unwrap_or_default();
    Ok(match path {
        "spec.nodeName" => spec.node_name.unwrap_or_default(),
        "spec.serviceAccountName" => spec.service_account_name.unwrap_or_default(),
        "status.hostIP" => host_ips.first().cloned().unwrap_or_default(),
        "status.hostIPs" => host_ips.join(","),
        "status.podIP" => pod_ips.first().cloned().unwrap_or_default(),
        "status.podIPs" => pod_ips.join(","),
        other => return Err(format!("unsupported fieldPath: {other}")),
    })
}

/// The metadata paths env and volumes share; `None` for other paths.
pub(crate) fn metadata_field(pod: &Pod, path: &str) -> Result<Option<String>, String> {
    let m = &pod.metadata;
    if let Some(k) = subscript(path, "metadata.labels") {
        return Ok(Some(m.labels.as_ref().and_then(|l| l.get(k)).cloned().unwrap_or_default()));
    }
    if let Some(k) = subscript(path, "metadata.annotations") {
        return Ok(Some(m.annotations.as_ref().and_then(|l| l.get(k)).cloned().unwrap_or_default()));
    }
    Ok(match path {
        "metadata.name" => Some(m.name.clone().unwrap_or_default()),
        "metadata.namespace" => Some(m.namespace.clone().unwrap_or_default()),
        "metadata.uid" => Some(m.uid.clone().unwrap_or_default()),
        "metadata.labels" => Some(format_map(&m.labels.clone().unwrap_or_default())),
        "metadata.annotations" => Some(format_map(&m.annotations.clone().unwrap_or_default())),
        _ => None,
    })
}

/// A `resourceFieldRef` value: `ceil(value / divisor)`, a missing limit of cpu, memory or
/// ephemeral-storage taken from the node's allocatable, a missing request as 0.
pub fn resource_field_ref(
    pod: &Pod,
    container_name: &str,
    resource: &str,
    divisor: Option<&Quantity>,
    node_allocatable: &BTreeMap<String, Quantity>,
) -> Result<String, String> {
    let spec = pod.spec.clone().unwrap_or_default();
    let container = spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .find(|c| c.name == container_name)
        .ok_or_else(|| format!("container {container_name} not found"))?;
    let res = container.resources.clone().unwrap_or_default();
    let (list, name) =
        resource.split_once('.').ok_or_else(|| format!("unsupported container resource : {resource}"))?;
    let value = match list {
        "limits" => res.limits.as_ref().and_then(|l| l.get(name)).cloned().or_else(|| {
            ["cpu", "memory", "ephemeral-storage"]
                .contains(&name)
                .then(|| node_allocatable.get(name).cloned())
                .flatten()
        }),
        "requests" => res.requests.as_ref().and_then(|l| l.get(name)).cloned(),
        _ => return Err(format!("unsupported container resource : {resource}")),
    };
    let value = value.map(|q| q.0).unwrap_or_else(|| "0".into());
    let divisor = divisor.map(|d| d.0.clone()).filter(|d| !d.is_empty() && d != "0").unwrap_or_else(|| "1".into());
    rkube_api::quantity::divide_ceil(&value, &divisor).map(|v| v.to_string()).map_err(|e| e.to_string())
}

/// Labels or annotations as the Downward API writes them: sorted `key="value"` lines (Go
/// `%q` quoting), no trailing newline.
pub fn format_map(map: &BTreeMap<String, String>) -> String {
    map.iter().map(|(k, v)| format!("{k}={}", go_quote(v))).collect::<Vec<_>>().join("\n")
}

/// Go's `strconv.Quote`.
pub fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => out.push_str(&format!("\\x{:02x}", c as u32)),
            c if c.is_control() => {
                if (c as u32) < 0x10000 {
                    out.push_str(&format!("\\u{:04x}", c as u32));
                } else {
                    out.push_str(&format!("\\U{:08x}", c as u32));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{ServicePort, ServiceSpec};
    use serde_json::json;

    struct NoObjects;
    impl Objects for NoObjects {
        fn config_map(&self, _: &str, _: &str) -> Option<k8s_openapi::api::core::v1::ConfigMap> {
            None
        }
        fn secret(&self, _: &str, _: &str) -> Option<k8s_openapi::api::core::v1::Secret> {
            None
        }
    }

    fn kubernetes_service() -> Service {
        Service {
            metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                name: Some("kubernetes".into()),
                namespace: Some("default".into()),
                ..Default::default()
            },
            spec: Some(ServiceSpec {
                cluster_ip: Some("10.96.0.1".into()),
                ports: Some(vec![ServicePort {
                    name: Some("https".into()),
                    port: 443,
                    protocol: Some("TCP".into()),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn the_kubernetes_service_variables() {
        let env = service_env(&[kubernetes_service()], "other", false);
        let want = [
            ("KUBERNETES_SERVICE_HOST", "10.96.0.1"),
            ("KUBERNETES_SERVICE_PORT", "443"),
            ("KUBERNETES_SERVICE_PORT_HTTPS", "443"),
            ("KUBERNETES_PORT", "tcp://10.96.0.1:443"),
            ("KUBERNETES_PORT_443_TCP", "tcp://10.96.0.1:443"),
            ("KUBERNETES_PORT_443_TCP_PROTO", "tcp"),
            ("KUBERNETES_PORT_443_TCP_PORT", "443"),
            ("KUBERNETES_PORT_443_TCP_ADDR", "10.96.0.1"),
        ];
        assert_eq!(env, want.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect::<Vec<_>>());
    }

    #[test]
    fn expansion_follows_the_kubelets_rules() {
        let lookup = |k: &str| (k == "A").then(|| "1".to_string());
        assert_eq!(expand("$(A)-x", &lookup), "1-x");
        assert_eq!(expand("$$(A)", &lookup), "$(A)");
        assert_eq!(expand("$(MISSING)", &lookup), "$(MISSING)");
        assert_eq!(expand("a$b", &lookup), "a$b");
        assert_eq!(expand("$(A", &lookup), "$(A");
        assert_eq!(expand("end$", &lookup), "end$");
    }

    #[test]
    fn the_seeds_downward_env() {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "downward", "namespace": "default", "labels": {"foo": "bar"}},
            "spec": {"enableServiceLinks": true, "nodeName": "n1", "serviceAccountName": "default", "containers": [{
                "name": "main", "image": "busybox",
                "resources": {"requests": {"cpu": "15m", "memory": "500Ki"}, "limits": {"cpu": "100m", "memory": "8Mi"}},
                "env": [
                    {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                    {"name": "NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
                    {"name": "CONTAINER_CPU_REQUEST_MILLICORES", "valueFrom": {"resourceFieldRef": {"resource": "requests.cpu", "divisor": "1m"}}},
                    {"name": "CONTAINER_MEMORY_LIMIT_KIBIBYTES", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1Ki"}}},
                    {"name": "GREETING", "value": "hi $(POD_NAME) on $(KUBERNETES_SERVICE_HOST) $(NOPE)"},
                    {"name": "FOO_LABEL", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['foo']"}}},
                ],
            }]},
        }))
        .unwrap();
        let c = pod.spec.as_ref().unwrap().containers[0].clone();
        let alloc = BTreeMap::new();
        let services = [kubernetes_service()];
        let ctx = EnvContext {
            pod: &pod,
            container: &c,
            node_allocatable: &alloc,
            host_ips: &[],
            pod_ips: &[],
            services: &services,
            objects: &NoObjects,
        };
        let env = container_env(&ctx).unwrap();
        let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("POD_NAME"), Some("downward"));
        assert_eq!(get("NODE_NAME"), Some("n1"));
        assert_eq!(get("CONTAINER_CPU_REQUEST_MILLICORES"), Some("15"));
        assert_eq!(get("CONTAINER_MEMORY_LIMIT_KIBIBYTES"), Some("8192"));
        assert_eq!(get("GREETING"), Some("hi downward on 10.96.0.1 $(NOPE)"));
        assert_eq!(get("FOO_LABEL"), Some("bar"));
        assert_eq!(env[0].0, "POD_NAME", "user variables first, then the service variables");
        assert_eq!(get("KUBERNETES_SERVICE_PORT"), Some("443"));
    }

    #[test]
    fn missing_references_use_the_kubelets_messages() {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "ns"},
            "spec": {"enableServiceLinks": true, "containers": [{"name": "c", "env": [
                {"name": "X", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "k"}}},
            ]}]},
        }))
        .unwrap();
        let c = pod.spec.as_ref().unwrap().containers[0].clone();
        let alloc = BTreeMap::new();
        let ctx = EnvContext {
            pod: &pod,
            container: &c,
            node_allocatable: &alloc,
            host_ips: &[],
            pod_ips: &[],
            services: &[],
            objects: &NoObjects,
        };
        assert_eq!(container_env(&ctx).unwrap_err().0, "configmap \"cfg\" not found");
        let mut pod2 = pod.clone();
        pod2.spec.as_mut().unwrap().enable_service_links = None;
        let ctx = EnvContext { pod: &pod2, ..ctx };
        assert_eq!(
            container_env(&ctx).unwrap_err().0,
            "nil pod.spec.enableServiceLinks encountered, cannot construct envvars"
        );
    }

    #[test]
    fn maps_are_quoted_as_go_does() {
        let m =
            BTreeMap::from([("note".to_string(), "say \"hi\"\n".to_string()), ("app".to_string(), "web".to_string())]);
        assert_eq!(format_map(&m), "app=\"web\"\nnote=\"say \\\"hi\\\"\\n\"");
        assert_eq!(format_map(&BTreeMap::new()), "");
        assert_eq!(go_quote("é\u{1}"), "\"é\\x01\"");
    }
}
