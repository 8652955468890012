//! What an RBAC decision costs: `cargo bench -p rkube-rbac --bench authorize`. The policy is
//! the bootstrap policy (aggregated) plus 200 namespaces each with a Role and a RoleBinding
//! for its own service account. Prints figures; asserts nothing; bounded iterations.

use std::time::Instant;

use rkube_rbac::{Attributes, Policy, User};
use serde_json::json;

fn time(label: &str, iters: u32, mut f: impl FnMut() -> bool) {
    let t = Instant::now();
    let mut allowed = 0;
    for _ in 0..iters {
        allowed += f() as u32;
    }
    println!("{label}: {:.3} µs/decision ({allowed}/{iters} allowed)", t.elapsed().as_secs_f64() * 1e6 / iters as f64);
}

fn main() {
    let mut cluster_roles = rkube_rbac::bootstrap_cluster_roles();
    for updated in rkube_rbac::aggregate(&cluster_roles) {
        let name = updated["metadata"]["name"].clone();
        if let Some(slot) = cluster_roles.iter_mut().find(|r| r["metadata"]["name"] == name) {
            *slot = updated;
        }
    }
    let mut roles = Vec::new();
    let mut bindings = Vec::new();
    for i in 0..200 {
        let ns = format!("ns{i}");
        roles.push(json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": "reader", "namespace": ns},
            "rules": [{"apiGroups": [""], "resources": ["pods", "configmaps"], "verbs": ["get", "list", "watch"]}]}));
        bindings.push(json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": {"name": "reader", "namespace": ns},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "reader"},
            "subjects": [{"kind": "ServiceAccount", "name": "default", "namespace": ns}]}));
    }
    let policy = Policy::new(roles, cluster_roles, bindings, rkube_rbac::bootstrap_cluster_role_bindings());
    let sa = User::new(
        "system:serviceaccount:ns150:default",
        &["system:serviceaccounts", "system:serviceaccounts:ns150", "system:authenticated"],
    );
    let admin = User::new("rkube-admin", &["system:masters", "system:authenticated"]);
    let list = |ns: &str| Attributes::resource("list", ns, "", "pods", "", "");
    let n = 200_000;
    time("system:masters (short cut)", n, || policy.authorize(&admin, &list("ns1")).is_allowed());
    time("service account allowed by its RoleBinding", n, || policy.authorize(&sa, &list("ns150")).is_allowed());
    time("service account denied (every binding checked)", n, || policy.authorize(&sa, &list("ns7")).is_allowed());
    time("discovery path for an authenticated user", n, || {
        policy.authorize(&sa, &Attributes::non_resource("get", "/apis")).is_allowed()
    });
}
