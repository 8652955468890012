//! The default RBAC policy kube-apiserver creates at start
//! (`plugin/pkg/auth/authorizer/rbac/bootstrappolicy/policy.go`), limited to
//! the roles that make sense without kubelets and controllers.

use serde_json::{json, Map, Value};

use crate::rule::PolicyRule;
use crate::{ALL_AUTHENTICATED, ALL_SERVICE_ACCOUNTS, ALL_UNAUTHENTICATED, RBAC_GROUP, SYSTEM_MASTERS};

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
    ]
}

fn cluster_role_binding(name: &str, groups: &[&str]) -> Value {
    let subjects: Vec<Value> =
        groups.iter().map(|g| json!({ "kind": "Group", "apiGroup": RBAC_GROUP, "name": g })).collect();
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
/// system:service-account-issuer-discovery to `system:serviceaccounts`.
pub fn bootstrap_cluster_role_bindings() -> Vec<Value> {
    vec![
        cluster_role_binding("cluster-admin", &[SYSTEM_MASTERS]),
        cluster_role_binding("system:discovery", &[ALL_AUTHENTICATED]),
        cluster_role_binding("system:basic-user", &[ALL_AUTHENTICATED]),
        cluster_role_binding("system:public-info-viewer", &[ALL_AUTHENTICATED, ALL_UNAUTHENTICATED]),
        cluster_role_binding("system:service-account-issuer-discovery", &[ALL_SERVICE_ACCOUNTS]),
    ]
}
