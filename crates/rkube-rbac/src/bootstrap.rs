//! The default RBAC policy kube-apiserver creates at start
//! (`plugin/pkg/auth/authorizer/rbac/bootstrappolicy/policy.go`, v1.33 with
//! default feature gates), limited to the roles of the components rkube has:
//! users, the scheduler, the controllers and the node agent.

use serde_json::{json, Map, Value};

use crate::rule::PolicyRule;
use crate::{ALL_AUTHENTICATED, ALL_SERVICE_ACCOUNTS, ALL_UNAUTHENTICATED, RBAC_GROUP, SYSTEM_MASTERS};

/// The user kube-scheduler authenticates as.
const KUBE_SCHEDULER_USER: &str = "system:kube-scheduler";
/// The user kube-controller-manager authenticates as.
const KUBE_CONTROLLER_MANAGER_USER: &str = "system:kube-controller-manager";
/// The user the API server reaches kubelets as (kubeadm's apiserver-kubelet-client).
pub const KUBELET_API_CLIENT_USER: &str = "kube-apiserver-kubelet-client";
/// The group every node (kubelet) is in.
const NODES_GROUP: &str = "system:nodes";

/// Label on every bootstrap object: `kubernetes.io/bootstrapping=rbac-defaults`.
pub const BOOTSTRAPPING_LABEL: (&str, &str) = ("kubernetes.io/bootstrapping", "rbac-defaults");
/// Annotation on every bootstrap object: reconcile it at every start.
pub const AUTOUPDATE_ANNOTATION: (&str, &str) = ("rbac.authorization.kubernetes.io/autoupdate", "true");

const AGGREGATE_TO_ADMIN: &str = "rbac.authorization.k8s.io/aggregate-to-admin";
const AGGREGATE_TO_EDIT: &str = "rbac.authorization.k8s.io/aggregate-to-edit";
const AGGREGATE_TO_VIEW: &str = "rbac.authorization.k8s.io/aggregate-to-view";

const READ: &[&str] = &["get", "list", "watch"];
const WRITE: &[&str] = &["create", "update", "patch", "delete", "deletecollection"];
const READ_WRITE: &[&str] = &["get", "list", "watch", "create", "update", "patch", "delete", "deletecollection"];

/// kube's rule builder keeps every list as a sorted set.
fn sorted(items: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = items.iter().map(|s| s.to_string()).collect();
    v.sort();
    v.dedup();
    v
}

fn rule(verbs: &[&str], groups: &[&str], resources: &[&str]) -> Value {
    PolicyRule {
        verbs: sorted(verbs),
        api_groups: sorted(groups),
        resources: sorted(resources),
        ..PolicyRule::default()
    }
    .to_json()
}

/// A rule limited to objects of the given names.
fn named_rule(verbs: &[&str], groups: &[&str], resources: &[&str], names: &[&str]) -> Value {
    PolicyRule {
        verbs: sorted(verbs),
        api_groups: sorted(groups),
        resources: sorted(resources),
        resource_names: sorted(names),
        ..PolicyRule::default()
    }
    .to_json()
}

fn url_rule(verbs: &[&str], urls: &[&str]) -> Value {
    PolicyRule { verbs: sorted(verbs), non_resource_urls: sorted(urls), ..PolicyRule::default() }.to_json()
}

fn metadata(name: &str, extra_labels: &[(&str, &str)]) -> Value {
    // Sorted by key, as Go serialises maps.
    let mut pairs: Vec<&(&str, &str)> = extra_labels.iter().chain([&BOOTSTRAPPING_LABEL]).collect();
    pairs.sort();
    let mut labels = Map::new();
    for (k, v) in pairs {
        labels.insert(k.to_string(), json!(v));
    }
    json!({
        "name": name,
        "labels": labels,
        "annotations": { AUTOUPDATE_ANNOTATION.0: AUTOUPDATE_ANNOTATION.1 },
    })
}

fn cluster_role(name: &str, labels: &[(&str, &str)], rules: Vec<Value>) -> Value {
    json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": metadata(name, labels),
        "rules": rules,
    })
}

/// A role whose rules the aggregation controller fills in.
fn aggregated_role(name: &str, labels: &[(&str, &str)], aggregate_label: &str) -> Value {
    json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": metadata(name, labels),
        "rules": null,
        "aggregationRule": {
            "clusterRoleSelectors": [ { "matchLabels": { aggregate_label: "true" } } ],
        },
    })
}

/// The bootstrap ClusterRoles: cluster-admin; admin, edit and view (empty,
/// aggregating `aggregate-to-admin/edit/view`, with edit labelled into admin
/// and view into edit); system:aggregate-to-admin/edit/view with upstream's
/// rules; system:discovery, system:basic-user, system:public-info-viewer and
/// system:service-account-issuer-discovery. Run [`crate::aggregate`] over
/// them (plus any stored ClusterRoles) to fill admin, edit and view.
pub fn bootstrap_cluster_roles() -> Vec<Value> {
    let core = "";
    vec![
        cluster_role("cluster-admin", &[], vec![rule(&["*"], &["*"], &["*"]), url_rule(&["*"], &["*"])]),
        cluster_role(
            "system:discovery",
            &[],
            vec![url_rule(
                &["get"],
                &[
                    "/livez",
                    "/readyz",
                    "/healthz",
                    "/version",
                    "/version/",
                    "/openapi",
                    "/openapi/*",
                    "/api",
                    "/api/*",
                    "/apis",
                    "/apis/*",
                ],
            )],
        ),
        cluster_role(
            "system:basic-user",
            &[],
            vec![
                rule(&["create"], &["authorization.k8s.io"], &["selfsubjectaccessreviews", "selfsubjectrulesreviews"]),
                rule(&["create"], &["authentication.k8s.io"], &["selfsubjectreviews"]),
            ],
        ),
        cluster_role(
            "system:public-info-viewer",
            &[],
            vec![url_rule(&["get"], &["/livez", "/readyz", "/healthz", "/version", "/version/"])],
        ),
        aggregated_role("admin", &[], AGGREGATE_TO_ADMIN),
        aggregated_role("edit", &[(AGGREGATE_TO_ADMIN, "true")], AGGREGATE_TO_EDIT),
        aggregated_role("view", &[(AGGREGATE_TO_EDIT, "true")], AGGREGATE_TO_VIEW),
        cluster_role(
            "system:aggregate-to-admin",
            &[(AGGREGATE_TO_ADMIN, "true")],
            vec![
                rule(&["create"], &["authorization.k8s.io"], &["localsubjectaccessreviews"]),
                rule(READ_WRITE, &[RBAC_GROUP], &["roles", "rolebindings"]),
            ],
        ),
        cluster_role(
            "system:aggregate-to-edit",
            &[(AGGREGATE_TO_EDIT, "true")],
            vec![
                // Read on the escalating resources.
                rule(
                    READ,
                    &[core],
                    &["pods/attach", "pods/proxy", "pods/exec", "pods/portforward", "secrets", "services/proxy"],
                ),
                rule(&["impersonate"], &[core], &["serviceaccounts"]),
                rule(WRITE, &[core], &["pods", "pods/attach", "pods/proxy", "pods/exec", "pods/portforward"]),
                rule(&["create"], &[core], &["pods/eviction"]),
                rule(
                    WRITE,
                    &[core],
                    &[
                        "replicationcontrollers",
                        "replicationcontrollers/scale",
                        "serviceaccounts",
                        "services",
                        "services/proxy",
                        "persistentvolumeclaims",
                        "configmaps",
                        "secrets",
                    ],
                ),
                rule(&["create"], &[core], &["serviceaccounts/token"]),
                rule(WRITE, &[core, "events.k8s.io"], &["events"]),
                rule(
                    WRITE,
                    &["apps"],
                    &[
                        "statefulsets",
                        "statefulsets/scale",
                        "daemonsets",
                        "deployments",
                        "deployments/scale",
                        "deployments/rollback",
                        "replicasets",
                        "replicasets/scale",
                    ],
                ),
                rule(WRITE, &["autoscaling"], &["horizontalpodautoscalers"]),
                rule(WRITE, &["batch"], &["jobs", "cronjobs"]),
                rule(
                    WRITE,
                    &["extensions"],
                    &[
                        "daemonsets",
                        "deployments",
                        "deployments/scale",
                        "deployments/rollback",
                        "ingresses",
                        "replicasets",
                        "replicasets/scale",
                        "replicationcontrollers/scale",
                        "networkpolicies",
                    ],
                ),
                rule(WRITE, &["policy"], &["poddisruptionbudgets"]),
                rule(WRITE, &["networking.k8s.io"], &["networkpolicies", "ingresses"]),
                rule(READ_WRITE, &["coordination.k8s.io"], &["leases"]),
            ],
        ),
        cluster_role(
            "system:aggregate-to-view",
            &[(AGGREGATE_TO_VIEW, "true")],
            vec![
                rule(
                    READ,
                    &[core],
                    &[
                        "pods",
                        "replicationcontrollers",
                        "replicationcontrollers/scale",
                        "serviceaccounts",
                        "services",
                        "services/status",
                        "endpoints",
                        "persistentvolumeclaims",
                        "persistentvolumeclaims/status",
                        "configmaps",
                    ],
                ),
                rule(
                    READ,
                    &[core],
                    &[
                        "limitranges",
                        "resourcequotas",
                        "bindings",
                        "pods/status",
                        "resourcequotas/status",
                        "namespaces/status",
                        "replicationcontrollers/status",
                        "pods/log",
                    ],
                ),
                // Reading namespaces at namespace scope means reading *this*
                // namespace: an indicator of which namespaces one can use.
                rule(READ, &[core], &["namespaces"]),
                rule(READ, &[core, "events.k8s.io"], &["events"]),
                rule(READ, &["discovery.k8s.io"], &["endpointslices"]),
                rule(
                    READ,
                    &["apps"],
                    &[
                        "controllerrevisions",
                        "statefulsets",
                        "statefulsets/status",
                        "statefulsets/scale",
                        "daemonsets",
                        "daemonsets/status",
                        "deployments",
                        "deployments/status",
                        "deployments/scale",
                        "replicasets",
                        "replicasets/status",
                        "replicasets/scale",
                    ],
                ),
                rule(READ, &["autoscaling"], &["horizontalpodautoscalers", "horizontalpodautoscalers/status"]),
                rule(READ, &["batch"], &["jobs", "cronjobs", "cronjobs/status", "jobs/status"]),
                rule(
                    READ,
                    &["extensions"],
                    &[
                        "daemonsets",
                        "daemonsets/status",
                        "deployments",
                        "deployments/scale",
                        "deployments/status",
                        "ingresses",
                        "ingresses/status",
                        "replicasets",
                        "replicasets/scale",
                        "replicasets/status",
                        "replicationcontrollers/scale",
                        "networkpolicies",
                    ],
                ),
                rule(READ, &["policy"], &["poddisruptionbudgets", "poddisruptionbudgets/status"]),
                rule(READ, &["networking.k8s.io"], &["networkpolicies", "ingresses", "ingresses/status"]),
            ],
        ),
        cluster_role(
            "system:service-account-issuer-discovery",
            &[],
            vec![url_rule(
                &["get"],
                &[
                    "/.well-known/openid-configuration",
                    "/.well-known/openid-configuration/",
                    "/openid/v1/jwks",
                    "/openid/v1/jwks/",
                ],
            )],
        ),
        cluster_role("system:kube-scheduler", &[], kube_scheduler_rules()),
        cluster_role("system:kube-controller-manager", &[], kube_controller_manager_rules()),
        cluster_role("system:node", &[], node_rules()),
        cluster_role("system:node-proxier", &[], node_proxier_rules()),
        cluster_role("system:kubelet-api-admin", &[], kubelet_api_admin_rules()),
        // What metrics-server's manifests add, since rkube serves metrics.k8s.io itself:
        // viewers, editors and admins may read node and pod metrics (`kubectl top`).
        cluster_role(
            "system:aggregated-metrics-reader",
            &[(AGGREGATE_TO_ADMIN, "true"), (AGGREGATE_TO_EDIT, "true"), (AGGREGATE_TO_VIEW, "true")],
            vec![rule(READ, &["metrics.k8s.io"], &["nodes", "pods"])],
        ),
    ]
}

/// `system:kubelet-api-admin`: full access to the kubelet API, as upstream's
/// (`plugin/pkg/auth/authorizer/rbac/bootstrappolicy/policy.go`).
fn kubelet_api_admin_rules() -> Vec<Value> {
    let core = "";
    vec![
        rule(&["get", "list", "watch"], &[core], &["nodes"]),
        rule(&["proxy"], &[core], &["nodes"]),
        rule(&["*"], &[core], &["nodes/log", "nodes/metrics", "nodes/proxy", "nodes/stats"]),
    ]
}

/// `system:node-proxier`: what kube-proxy reads to route Services.
fn node_proxier_rules() -> Vec<Value> {
    let core = "";
    vec![
        rule(&["list", "watch"], &[core], &["endpoints", "services"]),
        rule(&["get", "list", "watch"], &[core], &["nodes"]),
        rule(&["create", "patch", "update"], &[core, "events.k8s.io"], &["events"]),
        rule(&["list", "watch"], &["discovery.k8s.io"], &["endpointslices"]),
    ]
}

/// `system:kube-scheduler`: what kube-scheduler reads, binds and reports.
fn kube_scheduler_rules() -> Vec<Value> {
    let core = "";
    let coordination = "coordination.k8s.io";
    let storage = "storage.k8s.io";
    vec![
        rule(&["create", "update", "patch"], &[core, "events.k8s.io"], &["events"]),
        // Leader election.
        rule(&["create"], &[coordination], &["leases"]),
        named_rule(&["get", "update"], &[coordination], &["leases"], &["kube-scheduler"]),
        rule(READ, &[core], &["nodes"]),
        rule(&["get", "list", "watch", "delete"], &[core], &["pods"]),
        rule(&["create"], &[core], &["pods/binding", "bindings"]),
        rule(&["patch", "update"], &[core], &["pods/status"]),
        // What selects pods (spreading).
        rule(READ, &[core], &["services", "replicationcontrollers"]),
        rule(READ, &["apps", "extensions"], &["replicasets"]),
        rule(READ, &["apps"], &["statefulsets"]),
        // What pods use or is applied to them.
        rule(READ, &["policy"], &["poddisruptionbudgets"]),
        rule(READ, &[core], &["persistentvolumeclaims", "persistentvolumes"]),
        // Delegated authentication and authorization (non-mutating creates).
        rule(&["create"], &["authentication.k8s.io"], &["tokenreviews"]),
        rule(&["create"], &["authorization.k8s.io"], &["subjectaccessreviews"]),
        rule(READ, &[storage], &["csinodes"]),
        // namespaceSelector in pod affinity.
        rule(READ, &[core], &["namespaces"]),
        rule(READ, &[storage], &["csidrivers"]),
        rule(READ, &[storage], &["csistoragecapacities"]),
        // Volume limits count attachments (v1.32 on).
        rule(READ, &[storage], &["volumeattachments"]),
    ]
}

/// `system:kube-controller-manager`: upstream's rules (what kube-controller-manager needs to
/// start its shared informers and to make each controller's service account and token),
/// then the rules of the controllers rkube runs.
///
/// Deviation: upstream's controllers each act as their own service account
/// (`--use-service-account-credentials`, bound to a `system:controller:*` role); rkube's
/// act as kube-controller-manager itself, so this role also carries what upstream's
/// `system:controller:endpoint-controller` and `system:controller:certificate-controller`
/// allow.
fn kube_controller_manager_rules() -> Vec<Value> {
    let core = "";
    let coordination = "coordination.k8s.io";
    let certificates = "certificates.k8s.io";
    vec![
        rule(&["create", "update", "patch"], &[core, "events.k8s.io"], &["events"]),
        // Leader election.
        rule(&["create"], &[coordination], &["leases"]),
        named_rule(&["get", "update"], &[coordination], &["leases"], &["kube-controller-manager"]),
        // Fundamental resources.
        rule(&["create"], &[core], &["secrets", "serviceaccounts"]),
        rule(&["delete"], &[core], &["secrets"]),
        rule(&["get"], &[core], &["namespaces", "secrets", "serviceaccounts", "configmaps"]),
        rule(&["update"], &[core], &["secrets", "serviceaccounts"]),
        // Delegated authentication and authorization (non-mutating creates).
        rule(&["create"], &["authentication.k8s.io"], &["tokenreviews"]),
        rule(&["create"], &["authorization.k8s.io"], &["subjectaccessreviews"]),
        // Every shared informer.
        rule(&["list", "watch"], &["*"], &["*"]),
        rule(&["create"], &[core], &["serviceaccounts/token"]),
        // The endpoint controller's own (rkube's deviation, see above).
        rule(READ, &[core], &["services", "pods"]),
        rule(&["get", "list", "create", "update", "delete"], &[core], &["endpoints"]),
        rule(&["create"], &[core], &["endpoints/restricted"]),
        // The certificate signer's (upstream's system:controller:certificate-controller).
        rule(&["get", "list", "watch", "delete"], &[certificates], &["certificatesigningrequests"]),
        rule(
            &["update"],
            &[certificates],
            &["certificatesigningrequests/status", "certificatesigningrequests/approval"],
        ),
        named_rule(&["approve"], &[certificates], &["signers"], &["kubernetes.io/kube-apiserver-client-kubelet"]),
        named_rule(
            &["sign"],
            &[certificates],
            &["signers"],
            &[
                "kubernetes.io/legacy-unknown",
                "kubernetes.io/kube-apiserver-client",
                "kubernetes.io/kube-apiserver-client-kubelet",
                "kubernetes.io/kubelet-serving",
            ],
        ),
    ]
}

/// `system:node`: what a kubelet needs (upstream's Node authorizer and
/// NodeRestriction admission narrow it to the node's own objects).
fn node_rules() -> Vec<Value> {
    let core = "";
    let storage = "storage.k8s.io";
    vec![
        rule(&["create"], &["authentication.k8s.io"], &["tokenreviews"]),
        rule(&["create"], &["authorization.k8s.io"], &["subjectaccessreviews", "localsubjectaccessreviews"]),
        // Service environment variables.
        rule(READ, &[core], &["services"]),
        // Registering and reporting its Node.
        rule(&["create", "get", "list", "watch"], &[core], &["nodes"]),
        rule(&["update", "patch"], &[core], &["nodes/status"]),
        rule(&["update", "patch"], &[core], &["nodes"]),
        rule(&["create", "update", "patch"], &[core], &["events"]),
        rule(READ, &[core], &["pods"]),
        // Mirror pods.
        rule(&["create", "delete"], &[core], &["pods"]),
        rule(&["update", "patch"], &[core], &["pods/status"]),
        rule(&["create"], &[core], &["pods/eviction"]),
        // Secret and ConfigMap volumes, env and image pull secrets.
        rule(READ, &[core], &["secrets", "configmaps"]),
        rule(&["get"], &[core], &["persistentvolumeclaims", "persistentvolumes"]),
        rule(&["get"], &[core], &["endpoints"]),
        // Rotating its client certificate.
        rule(&["create", "get", "list", "watch"], &["certificates.k8s.io"], &["certificatesigningrequests"]),
        rule(&["get", "create", "update", "patch", "delete"], &["coordination.k8s.io"], &["leases"]),
        rule(&["get"], &[storage], &["volumeattachments"]),
        // Projected service account tokens.
        rule(&["create"], &[core], &["serviceaccounts/token"]),
        rule(&["get", "update", "patch"], &[core], &["persistentvolumeclaims/status"]),
        rule(&["get", "watch", "list"], &[storage], &["csidrivers"]),
        rule(&["get", "create", "update", "patch", "delete"], &[storage], &["csinodes"]),
        rule(&["get", "list", "watch"], &["node.k8s.io"], &["runtimeclasses"]),
    ]
}

fn cluster_role_binding(name: &str, groups: &[&str]) -> Value {
    let subjects: Vec<Value> =
        groups.iter().map(|g| json!({ "kind": "Group", "apiGroup": RBAC_GROUP, "name": g })).collect();
    binding_with(name, subjects)
}

fn cluster_role_binding_to_user(name: &str, user: &str) -> Value {
    binding_with(name, vec![json!({ "kind": "User", "apiGroup": RBAC_GROUP, "name": user })])
}

fn binding_with(name: &str, subjects: Vec<Value>) -> Value {
    json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": metadata(name, &[]),
        "subjects": subjects,
        "roleRef": { "apiGroup": RBAC_GROUP, "kind": "ClusterRole", "name": name },
    })
}

/// The bootstrap ClusterRoleBindings, each named after the ClusterRole it
/// binds: cluster-admin to `system:masters`; system:discovery and
/// system:basic-user to `system:authenticated`; system:public-info-viewer
/// to `system:authenticated` and `system:unauthenticated`;
/// system:service-account-issuer-discovery to `system:serviceaccounts`;
/// system:kube-scheduler to the user `system:kube-scheduler` and
/// system:kube-controller-manager to the user `system:kube-controller-manager`, as
/// upstream; and system:node to the group `system:nodes`; system:node-proxier to the user
/// `system:kube-proxy`, as upstream, and to the group `system:nodes`; system:kubelet-api-admin
/// to the API server's kubelet client `kube-apiserver-kubelet-client` (upstream leaves that
/// binding to the installer; kubeadm's client certificate is also in `system:masters`).
///
/// Deviation: upstream binds system:node to no one (since 1.8 the Node
/// authorizer grants nodes what they need, narrowed to their own pods and the
/// Secrets, ConfigMaps and volumes those use). rkube has no Node authorizer
/// yet, so it binds the role to `system:nodes`; until it has one, a node can
/// read every Secret and ConfigMap and update every pod's status. rkube's node
/// agent is also its node's service proxy, hence system:node-proxier for nodes.
pub fn bootstrap_cluster_role_bindings() -> Vec<Value> {
    vec![
        cluster_role_binding("cluster-admin", &[SYSTEM_MASTERS]),
        cluster_role_binding("system:discovery", &[ALL_AUTHENTICATED]),
        cluster_role_binding("system:basic-user", &[ALL_AUTHENTICATED]),
        cluster_role_binding("system:public-info-viewer", &[ALL_AUTHENTICATED, ALL_UNAUTHENTICATED]),
        cluster_role_binding("system:service-account-issuer-discovery", &[ALL_SERVICE_ACCOUNTS]),
        cluster_role_binding_to_user("system:kube-scheduler", KUBE_SCHEDULER_USER),
        cluster_role_binding_to_user("system:kube-controller-manager", KUBE_CONTROLLER_MANAGER_USER),
        cluster_role_binding("system:node", &[NODES_GROUP]),
        cluster_role_binding_to_user("system:kubelet-api-admin", KUBELET_API_CLIENT_USER),
        binding_with(
            "system:node-proxier",
            vec![
                json!({ "kind": "User", "apiGroup": RBAC_GROUP, "name": "system:kube-proxy" }),
                json!({ "kind": "Group", "apiGroup": RBAC_GROUP, "name": NODES_GROUP }),
            ],
        ),
    ]
}
