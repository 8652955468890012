//! The filters of kube-scheduler's default profile that apply without volumes or inter-pod
//! affinity, in its order (NodeUnschedulable, NodeName, TaintToleration, NodeAffinity,
//! NodePorts, NodeResourcesFit), with its reason strings, and the least-allocated score.
//!
//! A node is rejected by the first filter that rejects it, as the framework does (it stops
//! at the first failing plugin). Everything here is a pure function of the pod and what is
//! known about the node, so it is tested without an API server.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Container, Node, NodeSelectorRequirement, NodeSelectorTerm, Pod, ResourceRequirements, Taint, Toleration,
};

use crate::quantity;

/// NodeUnschedulable's reason.
pub const REASON_UNSCHEDULABLE: &str = "node(s) were unschedulable";
/// NodeName's reason.
pub const REASON_NODE_NAME: &str = "node(s) didn't match the requested node name";
/// NodeAffinity's reason (nodeSelector and required node affinity alike).
pub const REASON_AFFINITY: &str = "node(s) didn't match Pod's node affinity/selector";
/// NodePorts' reason.
pub const REASON_PORTS: &str = "node(s) didn't have free ports for the requested pod ports";
/// NodeResourcesFit's reason when the node holds as many pods as it allows.
pub const REASON_TOO_MANY_PODS: &str = "Too many pods";

/// The taint rkube puts on a node whose Ready condition is not True (see [`effective_taints`]).
pub const TAINT_NOT_READY: &str = "node.kubernetes.io/not-ready";
/// The taint NodeUnschedulable lets a pod tolerate to land on a cordoned node.
pub const TAINT_UNSCHEDULABLE: &str = "node.kubernetes.io/unschedulable";

/// Default requests the score assumes for a container that requests no cpu or memory
/// (kube-scheduler's `DefaultMilliCPURequest` and `DefaultMemoryRequest`).
const DEFAULT_MILLI_CPU: i64 = 100;
const DEFAULT_MEMORY: i64 = 200 * 1024 * 1024;

/// How a filter rejected a node: `Unresolvable` ones (UnschedulableAndUnresolvable) cannot
/// be helped by preempting pods on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    Unschedulable,
    Unresolvable,
}

/// A node's rejection: the code and every reason the rejecting filter gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub code: Code,
    pub reasons: Vec<String>,
}

impl Rejection {
    fn unresolvable(reason: impl Into<String>) -> Rejection {
        Rejection { code: Code::Unresolvable, reasons: vec![reason.into()] }
    }
}

/// Amounts of resources by name: `cpu` in millicores, everything else in units (bytes,
/// pods, devices).
pub type Amounts = BTreeMap<String, i64>;

fn amount(name: &str, q: &str) -> i64 {
    let parsed = if name == "cpu" { quantity::milli_value(q) } else { quantity::value(q) };
    parsed.unwrap_or(0)
}

/// Resources the scheduler accounts besides cpu, memory, ephemeral-storage and pods:
/// extended and prefixed resources (with a `/`), hugepages and attachable volumes.
fn is_scalar(name: &str) -> bool {
    name.contains('/') || name.starts_with("hugepages-") || name.starts_with("attachable-volumes-")
}

fn accounted(name: &str) -> bool {
    matches!(name, "cpu" | "memory" | "ephemeral-storage") || is_scalar(name)
}

fn add(into: &mut Amounts, from: &Amounts) {
    for (k, v) in from {
        *into.entry(k.clone()).or_insert(0) += v;
    }
}

fn max_into(into: &mut Amounts, from: &Amounts) {
    for (k, v) in from {
        let e = into.entry(k.clone()).or_insert(0);
        *e = (*e).max(*v);
    }
}

/// A container's requests; a resource with a limit and no request requests its limit (the
/// API server's defaulting does this upstream; rkube's does not, so it is done here).
fn container_requests(resources: Option<&ResourceRequirements>, non_zero: bool) -> Amounts {
    let mut out = Amounts::new();
    if let Some(r) = resources {
        for (name, q) in r.limits.iter().flatten() {
            if accounted(name) {
                out.insert(name.clone(), amount(name, &q.0));
            }
        }
        for (name, q) in r.requests.iter().flatten() {
            if accounted(name) {
                out.insert(name.clone(), amount(name, &q.0));
            }
        }
    }
    if non_zero {
        out.entry("cpu".into()).or_insert(DEFAULT_MILLI_CPU);
        out.entry("memory".into()).or_insert(DEFAULT_MEMORY);
    }
    out
}

fn is_sidecar(c: &Container) -> bool {
    c.restart_policy.as_deref() == Some("Always")
}

/// What a pod requests, as kube-scheduler computes it: the sum over its containers, raised
/// to the largest init container (an init container runs beside the sidecars started before
/// it; sidecars, init containers with restartPolicy Always, run beside everything), plus
/// the pod overhead. With `non_zero`, a container without a cpu or memory request counts
/// the defaults (the score's view).
pub fn pod_requests(pod: &Pod, non_zero: bool) -> Amounts {
    let Some(spec) = pod.spec.as_ref() else { return Amounts::new() };
    let mut total = Amounts::new();
    for c in &spec.containers {
        add(&mut total, &container_requests(c.resources.as_ref(), non_zero));
    }
    let mut sidecars = Amounts::new();
    let mut init_max = Amounts::new();
    for c in spec.init_containers.iter().flatten() {
        let req = container_requests(c.resources.as_ref(), non_zero);
        if is_sidecar(c) {
            add(&mut sidecars, &req);
            max_into(&mut init_max, &sidecars);
        } else {
            let mut running = req;
            add(&mut running, &sidecars);
            max_into(&mut init_max, &running);
        }
    }
    add(&mut total, &sidecars);
    max_into(&mut total, &init_max);
    if let Some(overhead) = spec.overhead.as_ref() {
        let mut o = Amounts::new();
        for (name, q) in overhead {
            if accounted(name) {
                o.insert(name.clone(), amount(name, &q.0));
            }
        }
        add(&mut total, &o);
    }
    total.retain(|_, v| *v != 0 || non_zero);
    total
}

/// What the scheduler knows about one node: the node and the pods it holds (bound,
/// not finished, plus those the scheduler has just bound and not yet seen come back).
pub struct NodeInfo<'a> {
    pub node: &'a Node,
    pub pods: Vec<&'a Pod>,
    requested: Amounts,
    non_zero_requested: Amounts,
    allocatable: Amounts,
    allowed_pods: i64,
}

impl<'a> NodeInfo<'a> {
    pub fn new(node: &'a Node, pods: Vec<&'a Pod>) -> NodeInfo<'a> {
        let mut requested = Amounts::new();
        let mut non_zero_requested = Amounts::new();
        for p in &pods {
            add(&mut requested, &pod_requests(p, false));
            add(&mut non_zero_requested, &pod_requests(p, true));
        }
        let mut allocatable = Amounts::new();
        let mut allowed_pods = 0;
        for (name, q) in node.status.as_ref().and_then(|s| s.allocatable.as_ref()).into_iter().flatten() {
            if name == "pods" {
                allowed_pods = amount(name, &q.0);
            } else if accounted(name) {
                allocatable.insert(name.clone(), amount(name, &q.0));
            }
        }
        NodeInfo { node, pods, requested, non_zero_requested, allocatable, allowed_pods }
    }

    pub fn name(&self) -> &str {
        self.node.metadata.name.as_deref().unwrap_or("")
    }

    /// This node without `victims` (the preemption dry run's view).
    pub fn without(&self, victims: &[&Pod]) -> NodeInfo<'a> {
        let uid = |p: &Pod| p.metadata.uid.clone();
        let gone: Vec<_> = victims.iter().map(|p| uid(p)).collect();
        let pods = self.pods.iter().copied().filter(|p| !gone.contains(&uid(p))).collect();
        NodeInfo::new(self.node, pods)
    }
}

/// The node's taints as the scheduler sees them. rkube has no node-lifecycle controller
/// yet, which upstream taints a node whose Ready condition is not True with
/// `node.kubernetes.io/not-ready:NoSchedule`; until it has one, the scheduler treats such a
/// node as carrying that taint, so pods wait for Ready nodes and users see the message a
/// real cluster gives.
pub fn effective_taints(node: &Node) -> Vec<Taint> {
    let mut taints: Vec<Taint> = node.spec.as_ref().and_then(|s| s.taints.clone()).unwrap_or_default();
    let ready = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
        .is_some_and(|c| c.status == "True");
    if !ready && !taints.iter().any(|t| t.key == TAINT_NOT_READY && t.effect == "NoSchedule") {
        taints.push(Taint { key: TAINT_NOT_READY.into(), effect: "NoSchedule".into(), ..Taint::default() });
    }
    taints
}

/// Whether `t` tolerates `taint` (core/v1's `Toleration.ToleratesTaint`).
pub fn tolerates(t: &Toleration, taint: &Taint) -> bool {
    if let Some(effect) = t.effect.as_deref().filter(|e| !e.is_empty()) {
        if effect != taint.effect {
            return false;
        }
    }
    if let Some(key) = t.key.as_deref().filter(|k| !k.is_empty()) {
        if key != taint.key {
            return false;
        }
    }
    match t.operator.as_deref().unwrap_or("") {
        "Exists" => true,
        "" | "Equal" => t.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or(""),
        _ => false,
    }
}

fn tolerations(pod: &Pod) -> &[Toleration] {
    pod.spec.as_ref().and_then(|s| s.tolerations.as_deref()).unwrap_or(&[])
}

fn node_unschedulable(pod: &Pod, node: &Node) -> Option<Rejection> {
    if !node.spec.as_ref().and_then(|s| s.unschedulable).unwrap_or(false) {
        return None;
    }
    let taint = Taint { key: TAINT_UNSCHEDULABLE.into(), effect: "NoSchedule".into(), ..Taint::default() };
    if tolerations(pod).iter().any(|t| tolerates(t, &taint)) {
        return None;
    }
    Some(Rejection::unresolvable(REASON_UNSCHEDULABLE))
}

fn node_name(pod: &Pod, node: &Node) -> Option<Rejection> {
    let wanted = pod.spec.as_ref().and_then(|s| s.node_name.as_deref()).unwrap_or("");
    (!wanted.is_empty() && Some(wanted) != node.metadata.name.as_deref())
        .then(|| Rejection::unresolvable(REASON_NODE_NAME))
}

fn taint_toleration(pod: &Pod, node: &Node) -> Option<Rejection> {
    let untolerated = effective_taints(node)
        .into_iter()
        .filter(|t| t.effect == "NoSchedule" || t.effect == "NoExecute")
        .find(|taint| !tolerations(pod).iter().any(|t| tolerates(t, taint)))?;
    Some(Rejection::unresolvable(format!(
        "node(s) had untolerated taint {{{}: {}}}",
        untolerated.key,
        untolerated.value.as_deref().unwrap_or("")
    )))
}

fn requirement_matches(r: &NodeSelectorRequirement, value: Option<&str>) -> bool {
    let values: &[String] = r.values.as_deref().unwrap_or(&[]);
    let int = |s: &str| s.parse::<i64>().ok();
    match r.operator.as_str() {
        "In" => value.is_some_and(|v| values.iter().any(|x| x == v)),
        "NotIn" => !value.is_some_and(|v| values.iter().any(|x| x == v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        "Gt" | "Lt" => {
            let (Some(v), [bound]) = (value.and_then(int), values) else { return false };
            let Some(bound) = int(bound) else { return false };
            if r.operator == "Gt" {
                v > bound
            } else {
                v < bound
            }
        }
        _ => false,
    }
}

/// Whether a node selector term matches: all its expressions (on labels) and fields (only
/// `metadata.name`, with In or NotIn) hold; a term with neither matches no node.
fn term_matches(term: &NodeSelectorTerm, node: &Node) -> bool {
    let exprs = term.match_expressions.as_deref().unwrap_or(&[]);
    let fields = term.match_fields.as_deref().unwrap_or(&[]);
    if exprs.is_empty() && fields.is_empty() {
        return false;
    }
    let labels = node.metadata.labels.as_ref();
    let label_ok = exprs.iter().all(|r| requirement_matches(r, labels.and_then(|l| l.get(&r.key)).map(String::as_str)));
    let field_ok = fields.iter().all(|r| {
        r.key == "metadata.name"
            && matches!(r.operator.as_str(), "In" | "NotIn")
            && r.values.as_ref().is_some_and(|v| v.len() == 1)
            && requirement_matches(r, node.metadata.name.as_deref())
    });
    label_ok && field_ok
}

/// Whether the pod's nodeSelector and required node affinity both admit the node.
pub fn affinity_matches(pod: &Pod, node: &Node) -> bool {
    let Some(spec) = pod.spec.as_ref() else { return true };
    if let Some(selector) = spec.node_selector.as_ref() {
        let labels = node.metadata.labels.as_ref();
        if !selector.iter().all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v)) {
            return false;
        }
    }
    let required = spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|a| a.required_during_scheduling_ignored_during_execution.as_ref());
    match required {
        Some(selector) => selector.node_selector_terms.iter().any(|t| term_matches(t, node)),
        None => true,
    }
}

fn node_affinity(pod: &Pod, node: &Node) -> Option<Rejection> {
    (!affinity_matches(pod, node)).then(|| Rejection::unresolvable(REASON_AFFINITY))
}

/// The (protocol, hostIP, hostPort) triples a pod's containers claim on their node.
fn host_ports(pod: &Pod) -> Vec<(String, String, i32)> {
    let Some(spec) = pod.spec.as_ref() else { return vec![] };
    spec.containers
        .iter()
        .flat_map(|c| c.ports.iter().flatten())
        .filter_map(|p| {
            let port = p.host_port.filter(|p| *p > 0)?;
            let ip = p.host_ip.clone().filter(|s| !s.is_empty()).unwrap_or_else(|| "0.0.0.0".into());
            Some((p.protocol.clone().unwrap_or_else(|| "TCP".into()), ip, port))
        })
        .collect()
}

fn node_ports(pod: &Pod, info: &NodeInfo) -> Option<Rejection> {
    let wanted = host_ports(pod);
    if wanted.is_empty() {
        return None;
    }
    let used: Vec<_> = info.pods.iter().flat_map(|p| host_ports(p)).collect();
    let clash = wanted.iter().any(|(proto, ip, port)| {
        used.iter()
            .any(|(p2, ip2, port2)| proto == p2 && port == port2 && (ip == ip2 || ip == "0.0.0.0" || ip2 == "0.0.0.0"))
    });
    clash.then(|| Rejection { code: Code::Unschedulable, reasons: vec![REASON_PORTS.into()] })
}

fn resources_fit(req: &Amounts, info: &NodeInfo) -> Option<Rejection> {
    let mut reasons = Vec::new();
    if info.pods.len() as i64 + 1 > info.allowed_pods {
        reasons.push(REASON_TOO_MANY_PODS.to_string());
    }
    if req.values().any(|v| *v != 0) {
        let free = |name: &str| {
            info.allocatable.get(name).copied().unwrap_or(0) - info.requested.get(name).copied().unwrap_or(0)
        };
        for name in ["cpu", "memory", "ephemeral-storage"] {
            let want = req.get(name).copied().unwrap_or(0);
            if want > 0 && want > free(name) {
                reasons.push(format!("Insufficient {name}"));
            }
        }
        for (name, want) in req.iter().filter(|(n, v)| is_scalar(n) && **v != 0) {
            if *want > free(name) {
                reasons.push(format!("Insufficient {name}"));
            }
        }
    }
    (!reasons.is_empty()).then_some(Rejection { code: Code::Unschedulable, reasons })
}

/// Runs the filters in kube-scheduler's order; `req` is [`pod_requests`] of the pod.
pub fn filter(pod: &Pod, req: &Amounts, info: &NodeInfo) -> Result<(), Rejection> {
    let rejection = node_unschedulable(pod, info.node)
        .or_else(|| node_name(pod, info.node))
        .or_else(|| taint_toleration(pod, info.node))
        .or_else(|| node_affinity(pod, info.node))
        .or_else(|| node_ports(pod, info))
        .or_else(|| resources_fit(req, info));
    rejection.map_or(Ok(()), Err)
}

/// NodeResourcesFit's default score (LeastAllocated over cpu and memory, weight 1 each):
/// the share of each left free once the pod is placed, 0..=100, averaged.
pub fn least_allocated_score(pod_non_zero: &Amounts, info: &NodeInfo) -> i64 {
    let mut sum = 0;
    let mut weights = 0;
    for name in ["cpu", "memory"] {
        let alloc = info.allocatable.get(name).copied().unwrap_or(0);
        if alloc == 0 {
            continue;
        }
        let requested =
            info.non_zero_requested.get(name).copied().unwrap_or(0) + pod_non_zero.get(name).copied().unwrap_or(0);
        sum += if requested > alloc { 0 } else { (alloc - requested) * 100 / alloc };
        weights += 1;
    }
    if weights == 0 {
        0
    } else {
        sum / weights
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(spec: serde_json::Value) -> Pod {
        serde_json::from_value(json!({"metadata": {"name": "p", "namespace": "default", "uid": "u"}, "spec": spec}))
            .unwrap()
    }

    fn node(extra: serde_json::Value) -> Node {
        let mut n = json!({
            "metadata": {"name": "n1", "labels": {"zone": "a", "size": "10"}},
            "spec": {},
            "status": {
                "allocatable": {"cpu": "2", "memory": "4Gi", "pods": "3", "ephemeral-storage": "10Gi"},
                "conditions": [{"type": "Ready", "status": "True"}],
            },
        });
        merge(&mut n, extra);
        serde_json::from_value(n).unwrap()
    }

    fn merge(into: &mut serde_json::Value, from: serde_json::Value) {
        match (into, from) {
            (serde_json::Value::Object(a), serde_json::Value::Object(b)) => {
                for (k, v) in b {
                    merge(a.entry(k).or_insert(serde_json::Value::Null), v);
                }
            }
            (slot, v) => *slot = v,
        }
    }

    fn container(requests: serde_json::Value) -> serde_json::Value {
        json!({"name": "c", "image": "i", "resources": {"requests": requests}})
    }

    fn check(p: &Pod, n: &Node, others: &[&Pod]) -> Result<(), Rejection> {
        let info = NodeInfo::new(n, others.to_vec());
        filter(p, &pod_requests(p, false), &info)
    }

    fn reasons(r: Result<(), Rejection>) -> Vec<String> {
        r.err().map(|r| r.reasons).unwrap_or_default()
    }

    #[test]
    fn requests_follow_the_init_container_and_sidecar_rules() {
        let p = pod(json!({
            "initContainers": [
                {"name": "i1", "image": "i", "resources": {"requests": {"cpu": "3"}}},
                {"name": "s1", "image": "i", "restartPolicy": "Always", "resources": {"requests": {"cpu": "500m", "memory": "1Gi"}}},
                {"name": "i2", "image": "i", "resources": {"requests": {"cpu": "2800m"}}},
            ],
            "containers": [container(json!({"cpu": "1", "memory": "1Gi"})), container(json!({"cpu": "250m"}))],
            "overhead": {"cpu": "10m"},
        }));
        let r = pod_requests(&p, false);
        // Containers 1250m + sidecar 500m = 1750m; init i1 3000m; i2 2800m + sidecar 500m = 3300m.
        assert_eq!(r["cpu"], 3310);
        assert_eq!(r["memory"], 2 << 30);
        let limits_only =
            pod(json!({"containers": [{"name": "c", "image": "i", "resources": {"limits": {"cpu": "2"}}}]}));
        assert_eq!(pod_requests(&limits_only, false)["cpu"], 2000);
        let none = pod(json!({"containers": [{"name": "c", "image": "i"}]}));
        assert!(pod_requests(&none, false).is_empty());
        assert_eq!(pod_requests(&none, true)["cpu"], 100);
    }

    #[test]
    fn resources_fit_counts_pods_already_there() {
        let n = node(json!({}));
        let big = pod(json!({"containers": [container(json!({"cpu": "1500m", "memory": "1Gi"}))]}));
        assert_eq!(check(&big, &n, &[]), Ok(()));
        let mut other = big.clone();
        other.metadata.uid = Some("o".into());
        assert_eq!(reasons(check(&big, &n, &[&other])), vec!["Insufficient cpu"]);
        let huge = pod(
            json!({"containers": [container(json!({"cpu": "3", "memory": "5Gi", "ephemeral-storage": "20Gi", "example.com/gpu": "1"}))]}),
        );
        assert_eq!(
            reasons(check(&huge, &n, &[])),
            vec![
                "Insufficient cpu",
                "Insufficient memory",
                "Insufficient ephemeral-storage",
                "Insufficient example.com/gpu"
            ]
        );
        let empty = pod(json!({"containers": [{"name": "c", "image": "i"}]}));
        let r = check(&empty, &n, &[&other, &other, &other]);
        assert_eq!(r, Err(Rejection { code: Code::Unschedulable, reasons: vec!["Too many pods".into()] }));
    }

    #[test]
    fn taints_tolerations_and_readiness() {
        let tainted = node(json!({"spec": {"taints": [
            {"key": "soft", "value": "x", "effect": "PreferNoSchedule"},
            {"key": "dedicated", "value": "gpu", "effect": "NoSchedule"},
        ]}}));
        let plain = pod(json!({"containers": [{"name": "c", "image": "i"}]}));
        assert_eq!(
            check(&plain, &tainted, &[]),
            Err(Rejection::unresolvable("node(s) had untolerated taint {dedicated: gpu}"))
        );
        for t in [
            json!({"key": "dedicated", "operator": "Equal", "value": "gpu"}),
            json!({"key": "dedicated", "operator": "Exists", "effect": "NoSchedule"}),
            json!({"operator": "Exists"}),
        ] {
            let p = pod(json!({"containers": [{"name": "c", "image": "i"}], "tolerations": [t]}));
            assert_eq!(check(&p, &tainted, &[]), Ok(()), "{t}");
        }
        let wrong = pod(json!({"containers": [{"name": "c", "image": "i"}],
            "tolerations": [{"key": "dedicated", "value": "cpu"}, {"key": "dedicated", "operator": "Exists", "effect": "NoExecute"}]}));
        assert!(check(&wrong, &tainted, &[]).is_err());

        let not_ready = node(json!({"status": {"conditions": [{"type": "Ready", "status": "False"}]}}));
        assert_eq!(
            reasons(check(&plain, &not_ready, &[])),
            vec!["node(s) had untolerated taint {node.kubernetes.io/not-ready: }"]
        );
        let cordoned = node(json!({"spec": {"unschedulable": true}}));
        assert_eq!(reasons(check(&plain, &cordoned, &[])), vec!["node(s) were unschedulable"]);
        let tolerant = pod(json!({"containers": [{"name": "c", "image": "i"}],
            "tolerations": [{"key": "node.kubernetes.io/unschedulable", "operator": "Exists", "effect": "NoSchedule"}]}));
        assert_eq!(check(&tolerant, &cordoned, &[]), Ok(()));
    }

    #[test]
    fn node_selector_and_affinity_operators() {
        let n = node(json!({}));
        let with = |affinity: serde_json::Value| {
            pod(json!({"containers": [{"name": "c", "image": "i"}],
                "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": affinity}}}}))
        };
        let expr = |key: &str, op: &str, values: &[&str]| json!([{"matchExpressions": [{"key": key, "operator": op, "values": values}]}]);
        let cases = [
            (expr("zone", "In", &["a", "b"]), true),
            (expr("zone", "In", &["b"]), false),
            (expr("zone", "NotIn", &["b"]), true),
            (expr("missing", "NotIn", &["b"]), true),
            (expr("zone", "Exists", &[]), true),
            (expr("missing", "DoesNotExist", &[]), true),
            (expr("zone", "DoesNotExist", &[]), false),
            (expr("size", "Gt", &["9"]), true),
            (expr("size", "Gt", &["10"]), false),
            (expr("size", "Lt", &["11"]), true),
            (expr("zone", "Gt", &["1"]), false),
            (json!([{"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n1"]}]}]), true),
            (json!([{"matchFields": [{"key": "metadata.name", "operator": "NotIn", "values": ["n1"]}]}]), false),
            (json!([{}]), false),
            (
                json!([{"matchExpressions": [{"key": "zone", "operator": "In", "values": ["b"]}]},
                    {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}]),
                true,
            ),
        ];
        for (terms, want) in cases {
            let r = check(&with(terms.clone()), &n, &[]);
            assert_eq!(r.is_ok(), want, "{terms}");
            if !want {
                assert_eq!(reasons(r), vec![REASON_AFFINITY]);
            }
        }
        let sel = |v: &str| pod(json!({"containers": [{"name": "c", "image": "i"}], "nodeSelector": {"zone": v}}));
        assert_eq!(check(&sel("a"), &n, &[]), Ok(()));
        assert_eq!(reasons(check(&sel("b"), &n, &[])), vec![REASON_AFFINITY]);
    }

    #[test]
    fn host_ports_clash() {
        let n = node(json!({}));
        let p = |ip: &str| {
            let mut port = json!({"containerPort": 80, "hostPort": 8080});
            if !ip.is_empty() {
                port["hostIP"] = json!(ip);
            }
            pod(json!({"containers": [{"name": "c", "image": "i", "ports": [port]}]}))
        };
        assert_eq!(reasons(check(&p(""), &n, &[&p("")])), vec![REASON_PORTS]);
        assert_eq!(reasons(check(&p("10.0.0.1"), &n, &[&p("")])), vec![REASON_PORTS]);
        assert_eq!(check(&p("10.0.0.1"), &n, &[&p("10.0.0.2")]), Ok(()));
    }

    #[test]
    fn least_allocated_prefers_the_emptier_node() {
        let n = node(json!({}));
        let p = pod(json!({"containers": [container(json!({"cpu": "1", "memory": "1Gi"}))]}));
        let empty = NodeInfo::new(&n, vec![]);
        let busy = NodeInfo::new(&n, vec![&p]);
        let req = pod_requests(&p, true);
        assert_eq!(least_allocated_score(&req, &empty), (50 + 75) / 2);
        assert!(least_allocated_score(&req, &busy) < least_allocated_score(&req, &empty));
    }
}
