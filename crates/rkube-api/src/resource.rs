//! The resource table: one row per served resource (group, version, kind, plural, scope,
//! names, verbs, subresources) plus the strategy that gives it its behaviour.
//!
//! Invariant: the request path looks resources up here and never names a kind itself, so
//! resources added at run time (CustomResourceDefinitions) are served by the same code.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use serde_json::Value;

use crate::strategy::Strategy;
use crate::validation::NameRule;

/// A subresource a resource serves besides the main object.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Subresource {
    /// `/status`: the status half of the object (the main resource ignores status changes).
    Status,
    /// `/scale`: an `autoscaling/v1` `Scale` over `spec.replicas`.
    Scale,
    /// `/binding` (pods): assigns a node.
    Binding,
    /// `/finalize` (namespaces): updates `spec.finalizers`.
    Finalize,
    /// `/token` (serviceaccounts): a TokenRequest, answered with a signed token.
    Token,
    /// `/log` (pods): the container's log, relayed from the pod's node.
    Log,
    /// `/exec` (pods): a command in a container, streamed through the pod's node.
    Exec,
    /// `/attach` (pods): the streams of a container's main process.
    Attach,
    /// `/portforward` (pods): TCP connections to the pod's ports.
    PortForward,
    /// `/proxy[/...]` (pods, services, nodes): HTTP to the object's port, any method.
    Proxy,
    /// `/eviction` (pods): a deletion that respects the pod's disruption budget.
    Eviction,
    /// `/ephemeralcontainers` (pods): the pod, of which only `spec.ephemeralContainers`
    /// changes (containers added to a running pod, for debugging).
    EphemeralContainers,
    /// `/approval` (certificatesigningrequests): the Approved or Denied condition.
    Approval,
}

impl Subresource {
    pub fn name(self) -> &'static str {
        match self {
            Subresource::Status => "status",
            Subresource::Scale => "scale",
            Subresource::Binding => "binding",
            Subresource::Finalize => "finalize",
            Subresource::Token => "token",
            Subresource::Log => "log",
            Subresource::Exec => "exec",
            Subresource::Attach => "attach",
            Subresource::PortForward => "portforward",
            Subresource::Proxy => "proxy",
            Subresource::Eviction => "eviction",
            Subresource::EphemeralContainers => "ephemeralcontainers",
            Subresource::Approval => "approval",
        }
    }

    pub fn parse(s: &str) -> Option<Subresource> {
        match s {
            "status" => Some(Subresource::Status),
            "scale" => Some(Subresource::Scale),
            "binding" => Some(Subresource::Binding),
            "finalize" => Some(Subresource::Finalize),
            "token" => Some(Subresource::Token),
            "log" => Some(Subresource::Log),
            "exec" => Some(Subresource::Exec),
            "attach" => Some(Subresource::Attach),
            "portforward" => Some(Subresource::PortForward),
            "proxy" => Some(Subresource::Proxy),
            "eviction" => Some(Subresource::Eviction),
            "ephemeralcontainers" => Some(Subresource::EphemeralContainers),
            "approval" => Some(Subresource::Approval),
            _ => None,
        }
    }

    /// The verbs discovery lists for the subresource.
    pub fn verbs(self) -> &'static [&'static str] {
        match self {
            Subresource::Status | Subresource::Scale | Subresource::EphemeralContainers | Subresource::Approval => {
                &["get", "patch", "update"]
            }
            Subresource::Binding | Subresource::Token | Subresource::Eviction => &["create"],
            Subresource::Finalize => &["update"],
            Subresource::Log => &["get"],
            Subresource::Exec | Subresource::Attach | Subresource::PortForward => &["create", "get"],
            Subresource::Proxy => &["create", "delete", "get", "patch", "update"],
        }
    }

    /// The part of the object a write through the subresource replaces (the rest is kept
    /// as stored), as a path of field names; None = not a partial write.
    pub fn part(self) -> Option<&'static [&'static str]> {
        match self {
            Subresource::Status => Some(&["status"]),
            Subresource::Finalize => Some(&["spec", "finalizers"]),
            Subresource::EphemeralContainers => Some(&["spec", "ephemeralContainers"]),
            Subresource::Approval => Some(&["status", "conditions"]),
            _ => None,
        }
    }

    /// (group, version, kind) of the subresource's body for a resource of `parent` kind,
    /// None = the parent's kind.
    pub fn body_kind(self, parent: &str) -> Option<(&'static str, &'static str, String)> {
        let (g, v, k) = match self {
            Subresource::Status
            | Subresource::Finalize
            | Subresource::Log
            | Subresource::EphemeralContainers
            | Subresource::Approval => return None,
            Subresource::Scale => ("autoscaling", "v1", "Scale"),
            Subresource::Binding => ("", "v1", "Binding"),
            Subresource::Eviction => ("policy", "v1", "Eviction"),
            Subresource::Token => ("authentication.k8s.io", "v1", "TokenRequest"),
            Subresource::Exec => ("", "v1", "PodExecOptions"),
            Subresource::Attach => ("", "v1", "PodAttachOptions"),
            Subresource::PortForward => ("", "v1", "PodPortForwardOptions"),
            Subresource::Proxy => return Some(("", "v1", format!("{parent}ProxyOptions"))),
        };
        Some((g, v, k.to_string()))
    }
}

pub const VERBS_ALL: &[&str] = &["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"];
/// Namespaces, for instance, have no deletecollection.
pub const VERBS_NO_DELETECOLLECTION: &[&str] = &["create", "delete", "get", "list", "patch", "update", "watch"];

/// One served resource.
pub struct ResourceDef {
    pub group: String,
    pub version: String,
    pub kind: String,
    pub plural: String,
    pub singular: String,
    pub namespaced: bool,
    pub short_names: Vec<String>,
    pub categories: Vec<String>,
    pub verbs: Vec<String>,
    pub subresources: Vec<Subresource>,
    /// How object names are validated.
    pub name_rule: NameRule,
    /// Whether `metadata.generation` tracks spec changes.
    pub has_generation: bool,
    /// Added by a CustomResourceDefinition: no typed model, protobuf message, merge keys or
    /// printer of its own, whatever its group.
    pub custom: bool,
    /// Whether create/update through the main resource may carry unknown fields through
    /// the typed check (false for built-in types, which prune them).
    pub strategy: Arc<dyn Strategy>,
    /// The storage prefix: `/registry/<group or core>/<plural>/`.
    pub storage_prefix: String,
    /// Where the `proxy` subresource leads, for the resources that have one.
    pub proxy: Option<ProxyTarget>,
    /// Objects computed when read instead of stored (get and list only).
    pub computed: Option<Computed>,
    /// Where a create records who made it (`username`, `uid`, `groups`, `extra` under this
    /// field, as a CertificateSigningRequest's `spec`), whatever the body said.
    pub requester: Option<&'static str>,
}

/// Where the objects of a resource that is not stored come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Computed {
    /// `metrics.k8s.io` NodeMetrics: each node's CPU and memory, from its kubelet.
    NodeMetrics,
    /// `metrics.k8s.io` PodMetrics: the containers of each pod, from its node's kubelet.
    PodMetrics,
}

/// What a `proxy` subresource reaches (kube-apiserver's `ResourceLocation` of the resource).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyTarget {
    /// A port of the pod.
    Pod,
    /// A ready endpoint address of a port of the service.
    Service,
    /// The node's kubelet, or another port of its address.
    Node,
}

impl ResourceDef {
    /// `v1` or `apps/v1`.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    pub fn list_kind(&self) -> String {
        format!("{}List", self.kind)
    }

    pub fn has_subresource(&self, s: Subresource) -> bool {
        self.subresources.contains(&s)
    }

    pub fn allows(&self, verb: &str) -> bool {
        self.verbs.iter().any(|v| v == verb)
    }

    /// The storage key of an object.
    pub fn key(&self, namespace: Option<&str>, name: &str) -> String {
        match namespace {
            Some(ns) if self.namespaced => format!("{}{}/{}", self.storage_prefix, ns, name),
            _ => format!("{}{}", self.storage_prefix, name),
        }
    }

    /// The storage prefix for a list in one namespace (or all).
    pub fn list_prefix(&self, namespace: Option<&str>) -> String {
        match namespace {
            Some(ns) if self.namespaced => format!("{}{}/", self.storage_prefix, ns),
            _ => self.storage_prefix.clone(),
        }
    }

    /// A short hash of the group, version and kind (discovery's `storageVersionHash`):
    /// stable for a resource, changes when its stored version would.
    pub fn storage_version_hash(&self) -> String {
        // FNV-1a over "group/version/kind", base64 of the first 8 bytes, as an opaque token.
        let mut h: u64 = 0xcbf29ce484222325;
        for b in format!("{}/{}/{}", self.group, self.version, self.kind).bytes() {
            h ^= b as u64;
            h = h.wrapping_mul(0x100000001b3);
        }
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(h.to_be_bytes())
    }
}

/// Builds a row with the common defaults; callers adjust fields.
pub struct ResourceBuilder(ResourceDef);

impl ResourceBuilder {
    pub fn new(
        group: &str,
        version: &str,
        kind: &str,
        plural: &str,
        namespaced: bool,
        strategy: Arc<dyn Strategy>,
    ) -> Self {
        let storage_group = if group.is_empty() { "core" } else { group };
        ResourceBuilder(ResourceDef {
            group: group.into(),
            version: version.into(),
            kind: kind.into(),
            plural: plural.into(),
            singular: kind.to_lowercase(),
            namespaced,
            short_names: vec![],
            categories: vec![],
            verbs: VERBS_ALL.iter().map(|s| s.to_string()).collect(),
            subresources: vec![],
            name_rule: NameRule::Dns1123Subdomain,
            has_generation: false,
            custom: false,
            strategy,
            storage_prefix: format!("/registry/{storage_group}/{plural}/"),
            proxy: None,
            computed: None,
            requester: None,
        })
    }
    /// Computes the objects when read (see [`Computed`]): get and list only.
    pub fn computed(mut self, c: Computed) -> Self {
        self.0.computed = Some(c);
        self.0.verbs = vec!["get".into(), "list".into()];
        self
    }
    /// Records who creates an object under `field` (see [`ResourceDef::requester`]).
    pub fn requester(mut self, field: &'static str) -> Self {
        self.0.requester = Some(field);
        self
    }

    /// Serves the `proxy` subresource, leading to `target`.
    pub fn proxy(mut self, target: ProxyTarget) -> Self {
        self.0.proxy = Some(target);
        if !self.0.subresources.contains(&Subresource::Proxy) {
            self.0.subresources.push(Subresource::Proxy);
        }
        self
    }
    pub fn short(mut self, names: &[&str]) -> Self {
        self.0.short_names = names.iter().map(|s| s.to_string()).collect();
        self
    }
    pub fn categories(mut self, c: &[&str]) -> Self {
        self.0.categories = c.iter().map(|s| s.to_string()).collect();
        self
    }
    pub fn verbs(mut self, v: &[&str]) -> Self {
        self.0.verbs = v.iter().map(|s| s.to_string()).collect();
        self
    }
    pub fn subresources(mut self, s: &[Subresource]) -> Self {
        self.0.subresources = s.to_vec();
        self
    }
    pub fn names(mut self, rule: NameRule) -> Self {
        self.0.name_rule = rule;
        self
    }
    pub fn generation(mut self) -> Self {
        self.0.has_generation = true;
        self
    }
    pub fn build(self) -> ResourceDef {
        self.0
    }
}

/// All served resources. Readers take a snapshot (`Arc`), so adding a resource at run time
/// never blocks requests in flight.
#[derive(Default)]
pub struct ResourceTable {
    inner: RwLock<Arc<TableSnapshot>>,
}

#[derive(Default)]
pub struct TableSnapshot {
    pub resources: Vec<Arc<ResourceDef>>,
    by_path: HashMap<(String, String, String), Arc<ResourceDef>>,
    /// Group order as discovery lists them (core first, then registration order).
    pub groups: Vec<String>,
}

impl TableSnapshot {
    pub fn get(&self, group: &str, version: &str, plural: &str) -> Option<&Arc<ResourceDef>> {
        self.by_path.get(&(group.to_string(), version.to_string(), plural.to_string()))
    }

    pub fn by_kind(&self, group: &str, kind: &str) -> Option<&Arc<ResourceDef>> {
        self.resources.iter().find(|r| r.group == group && r.kind == kind)
    }

    /// Versions served for a group, preferred first.
    pub fn versions(&self, group: &str) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for r in &self.resources {
            if r.group == group && !out.contains(&r.version) {
                out.push(r.version.clone());
            }
        }
        out.sort_by(|a, b| version_priority(b).cmp(&version_priority(a)).then_with(|| a.cmp(b)));
        out
    }

    pub fn in_group_version<'a>(
        &'a self,
        group: &'a str,
        version: &'a str,
    ) -> impl Iterator<Item = &'a Arc<ResourceDef>> + 'a {
        self.resources.iter().filter(move |r| r.group == group && r.version == version)
    }
}

impl ResourceTable {
    pub fn snapshot(&self) -> Arc<TableSnapshot> {
        self.inner.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Removes the versions of `group`'s `plural` not in `keep` (all of them for a deleted
    /// CustomResourceDefinition, the ones no longer served for a changed one).
    pub fn unregister(&self, group: &str, plural: &str, keep: &[String]) {
        let mut guard = self.inner.write().unwrap_or_else(|e| e.into_inner());
        let old = guard.clone();
        let resources: Vec<Arc<ResourceDef>> = old
            .resources
            .iter()
            .filter(|r| !(r.group == group && r.plural == plural && !keep.contains(&r.version)))
            .cloned()
            .collect();
        let groups = old.groups.iter().filter(|g| resources.iter().any(|r| &r.group == *g)).cloned().collect();
        let by_path =
            resources.iter().map(|r| ((r.group.clone(), r.version.clone(), r.plural.clone()), r.clone())).collect();
        *guard = Arc::new(TableSnapshot { resources, by_path, groups });
    }

    /// Adds (or replaces) a resource.
    pub fn register(&self, def: ResourceDef) {
        let mut guard = self.inner.write().unwrap_or_else(|e| e.into_inner());
        let old = guard.clone();
        let def = Arc::new(def);
        let mut resources: Vec<Arc<ResourceDef>> = old
            .resources
            .iter()
            .filter(|r| !(r.group == def.group && r.version == def.version && r.plural == def.plural))
            .cloned()
            .collect();
        resources.push(def.clone());
        let mut groups = old.groups.clone();
        if !groups.contains(&def.group) {
            groups.push(def.group.clone());
        }
        let by_path =
            resources.iter().map(|r| ((r.group.clone(), r.version.clone(), r.plural.clone()), r.clone())).collect();
        *guard = Arc::new(TableSnapshot { resources, by_path, groups });
    }
}

/// Kubernetes' version priority (higher first in discovery): GA `vN` above `vNbetaM` above
/// `vNalphaM`, higher numbers first within each; anything else below them all.
pub fn version_priority(v: &str) -> (u8, u64, u64) {
    let Some(rest) = v.strip_prefix('v') else { return (0, 0, 0) };
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    let Ok(major) = rest[..digits].parse::<u64>() else { return (0, 0, 0) };
    let tail = &rest[digits..];
    let (class, minor) = match (tail.strip_prefix("beta"), tail.strip_prefix("alpha")) {
        _ if tail.is_empty() => (3, 0),
        (Some(m), _) | (None, Some(m)) => match m.parse::<u64>() {
            Ok(n) => (if tail.starts_with("beta") { 2 } else { 1 }, n),
            Err(_) => return (0, 0, 0),
        },
        (None, None) => return (0, 0, 0),
    };
    (class, major, minor)
}

/// The `kind` and `apiVersion` fields of an object, if present.
pub fn type_meta(obj: &Value) -> (Option<&str>, Option<&str>) {
    (obj.get("apiVersion").and_then(Value::as_str), obj.get("kind").and_then(Value::as_str))
}

#[cfg(test)]
mod tests {
    use super::version_priority;

    #[test]
    fn versions_sort_as_kubernetes_orders_them() {
        let mut v = vec!["v1alpha1", "foo", "v1beta1", "v2beta2", "v1", "v2", "v1beta2", "v11alpha2"];
        v.sort_by(|a, b| version_priority(b).cmp(&version_priority(a)).then_with(|| a.cmp(b)));
        assert_eq!(v, ["v2", "v1", "v2beta2", "v1beta2", "v1beta1", "v11alpha2", "v1alpha1", "foo"]);
    }
}
