//! ClusterRole aggregation and the bootstrap policy.

mod common;

use common::*;
use rkube_rbac::{
    aggregate, bootstrap_cluster_role_bindings, bootstrap_cluster_roles, label_selector_matches, Policy, PolicyRule,
    User,
};
use serde_json::{json, Value};

fn by_name<'a>(roles: &'a [Value], name: &str) -> &'a Value {
    roles.iter().find(|r| r["metadata"]["name"] == name).unwrap_or_else(|| panic!("no {name}"))
}

/// Applies `aggregate` until nothing changes, returning the whole set.
fn settle(mut roles: Vec<Value>) -> Vec<Value> {
    for updated in aggregate(&roles) {
        let name = updated["metadata"]["name"].clone();
        *roles.iter_mut().find(|r| r["metadata"]["name"] == name).unwrap() = updated;
    }
    assert!(aggregate(&roles).is_empty(), "aggregate is not at a fixed point");
    roles
}

fn rules(role: &Value) -> Vec<PolicyRule> {
    PolicyRule::list_from_object(role)
}

#[test]
fn view_edit_admin_contain_the_aggregated_rules() {
    let roles = settle(bootstrap_cluster_roles());
    let view = rules(by_name(&roles, "view"));
    let edit = rules(by_name(&roles, "edit"));
    let admin = rules(by_name(&roles, "admin"));
    let to_view = rules(by_name(&roles, "system:aggregate-to-view"));
    let to_edit = rules(by_name(&roles, "system:aggregate-to-edit"));
    let to_admin = rules(by_name(&roles, "system:aggregate-to-admin"));

    let metrics = rules(by_name(&roles, "system:aggregated-metrics-reader"));
    assert_eq!(view.len(), to_view.len() + metrics.len());
    for r in to_view.iter().chain(&metrics) {
        assert!(view.contains(r), "view lacks {r:?}");
    }
    for r in to_view.iter().chain(&to_edit).chain(&metrics) {
        assert!(edit.contains(r), "edit lacks {r:?}");
    }
    for r in to_view.iter().chain(&to_edit).chain(&to_admin).chain(&metrics) {
        assert!(admin.contains(r), "admin lacks {r:?}");
    }
    assert!(!view.iter().any(|r| to_edit.contains(r)));
    assert_eq!(admin.len(), to_view.len() + to_edit.len() + to_admin.len() + metrics.len());

    // What the roles grant, bound in a namespace.
    let policy = Policy::new(
        vec![],
        roles,
        vec![
            role_binding("ns", "v", "ClusterRole", "view", vec![user_subject("viewer")]),
            role_binding("ns", "e", "ClusterRole", "edit", vec![user_subject("editor")]),
            role_binding("ns", "a", "ClusterRole", "admin", vec![user_subject("admin")]),
        ],
        vec![],
    );
    let viewer = User::new("viewer", &[]);
    let editor = User::new("editor", &[]);
    let admin = User::new("admin", &[]);
    // (request, viewer, editor, admin)
    let cases = [
        (res("list", "ns", "", "pods", "", ""), true, true, true),
        (res("list", "ns", "metrics.k8s.io", "pods", "", ""), true, true, true),
        (res("get", "ns", "", "pods", "log", "p"), true, true, true),
        (res("get", "ns", "", "namespaces", "", "ns"), true, true, true),
        (res("watch", "ns", "", "events", "", ""), true, true, true),
        (res("list", "ns", "events.k8s.io", "events", "", ""), true, true, true),
        (res("get", "ns", "", "secrets", "", "s"), false, true, true),
        (res("create", "ns", "", "pods", "", ""), false, true, true),
        (res("create", "ns", "", "pods", "exec", "p"), false, true, true),
        (res("update", "ns", "apps", "deployments", "scale", "d"), false, true, true),
        (res("get", "ns", "apps", "deployments", "status", "d"), true, true, true),
        (res("update", "ns", "apps", "deployments", "status", "d"), false, false, false),
        (res("list", "ns", "batch", "cronjobs", "", ""), true, true, true),
        (res("delete", "ns", "batch", "jobs", "", "j"), false, true, true),
        (res("list", "ns", "coordination.k8s.io", "leases", "", ""), false, true, true),
        (res("create", "ns", "rbac.authorization.k8s.io", "roles", "", ""), false, false, true),
        (res("create", "ns", "authorization.k8s.io", "localsubjectaccessreviews", "", ""), false, false, true),
        (res("delete", "ns", "", "namespaces", "", "ns"), false, false, false),
        (res("list", "ns", "", "resourcequotas", "", ""), true, true, true),
        (res("list", "other", "", "pods", "", ""), false, false, false),
    ];
    for (attrs, v, e, a) in cases {
        assert_eq!(policy.authorize(&viewer, &attrs).is_allowed(), v, "view {attrs:?}");
        assert_eq!(policy.authorize(&editor, &attrs).is_allowed(), e, "edit {attrs:?}");
        assert_eq!(policy.authorize(&admin, &attrs).is_allowed(), a, "admin {attrs:?}");
    }
}

#[test]
fn a_labelled_custom_role_is_picked_up_by_view_and_above() {
    let widgets = labelled_cluster_role(
        "widgets-view",
        json!({"rbac.authorization.k8s.io/aggregate-to-view": "true"}),
        vec![rule(&["get", "list", "watch"], &["example.com"], &["widgets"])],
    );
    let widget_rule = PolicyRule::resource(&["get", "list", "watch"], &["example.com"], &["widgets"]);
    let mut roles = bootstrap_cluster_roles();
    roles.push(widgets.clone());
    let roles = settle(roles);
    for name in ["view", "edit", "admin"] {
        assert!(rules(by_name(&roles, name)).contains(&widget_rule), "{name}");
    }
    // Dropping the label takes the rules away again on the next pass.
    let mut unlabelled = roles.clone();
    by_name_mut(&mut unlabelled, "widgets-view")["metadata"]["labels"] = json!({});
    let updated = aggregate(&unlabelled);
    let names: Vec<&Value> = updated.iter().map(|r| &r["metadata"]["name"]).collect();
    assert_eq!(names, vec!["admin", "edit", "view"]);
    let unlabelled = settle(unlabelled);
    for name in ["view", "edit", "admin"] {
        assert!(!rules(by_name(&unlabelled, name)).contains(&widget_rule), "{name}");
    }
}

fn by_name_mut<'a>(roles: &'a mut [Value], name: &str) -> &'a mut Value {
    roles.iter_mut().find(|r| r["metadata"]["name"] == name).unwrap()
}

#[test]
fn aggregation_details() {
    let a = labelled_cluster_role("a", json!({"tier": "one"}), vec![rule(&["get"], &[""], &["pods"])]);
    let b = labelled_cluster_role(
        "b",
        json!({"tier": "two", "extra": "yes"}),
        vec![rule(&["get"], &[""], &["pods"]), rule(&["list"], &[""], &["pods"])],
    );
    let c = labelled_cluster_role("c", json!({}), vec![url_rule(&["get"], &["/x"])]);
    let agg = |name: &str, selectors: Value| {
        let mut r = cluster_role(name, vec![rule(&["stale"], &[""], &["x"])]);
        r["aggregationRule"] = json!({ "clusterRoleSelectors": selectors });
        r["metadata"]["labels"] = json!({"tier": "agg"});
        r
    };
    let get = PolicyRule::resource(&["get"], &[""], &["pods"]);
    let list = PolicyRule::resource(&["list"], &[""], &["pods"]);
    let url = PolicyRule::non_resource(&["get"], &["/x"]);
    // (selectors, expected rules; None = left unchanged)
    let cases: Vec<(Value, Option<Vec<PolicyRule>>)> = vec![
        (json!([{"matchLabels": {"tier": "one"}}]), Some(vec![get.clone()])),
        // Duplicates are dropped, roles are taken in name order.
        (
            json!([{"matchLabels": {"tier": "two"}}, {"matchLabels": {"tier": "one"}}]),
            Some(vec![get.clone(), list.clone()]),
        ),
        (
            json!([{"matchExpressions": [{"key": "tier", "operator": "In", "values": ["one", "two"]}]}]),
            Some(vec![get.clone(), list.clone()]),
        ),
        (
            json!([{"matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["one", "agg"]}]}]),
            Some(vec![get.clone(), list.clone(), url.clone()]),
        ),
        (
            json!([{"matchExpressions": [{"key": "extra", "operator": "Exists"}]}]),
            Some(vec![get.clone(), list.clone()]),
        ),
        (json!([{"matchExpressions": [{"key": "tier", "operator": "DoesNotExist"}]}]), Some(vec![url.clone()])),
        (
            json!([{"matchLabels": {"tier": "two"}, "matchExpressions": [{"key": "extra", "operator": "In", "values": ["no"]}]}]),
            Some(vec![]),
        ),
        // An empty selector matches every other role (never the role itself).
        (json!([{}]), Some(vec![get.clone(), list.clone(), url.clone()])),
        // No selectors: the rules are cleared.
        (json!([]), Some(vec![])),
        // Invalid selectors leave the role alone.
        (json!([{"matchExpressions": [{"key": "tier", "operator": "In", "values": []}]}]), None),
        (json!([{"matchExpressions": [{"key": "tier", "operator": "Exists", "values": ["x"]}]}]), None),
        (json!([{"matchExpressions": [{"key": "tier", "operator": "Near"}]}]), None),
    ];
    for (selectors, want) in cases {
        let roles = vec![a.clone(), b.clone(), c.clone(), agg("z", selectors.clone())];
        let updated = aggregate(&roles);
        match want {
            None => assert!(updated.is_empty(), "{selectors}: {updated:?}"),
            Some(want) => {
                assert_eq!(updated.len(), 1, "{selectors}");
                assert_eq!(rules(&updated[0]), want, "{selectors}");
                // Everything but the rules is kept.
                assert_eq!(updated[0]["aggregationRule"]["clusterRoleSelectors"], selectors);
                assert_eq!(updated[0]["metadata"]["labels"], json!({"tier": "agg"}));
            }
        }
    }
    // Roles without an aggregationRule are never touched; neither is one
    // already up to date.
    let done = {
        let mut r = agg("z", json!([{"matchLabels": {"tier": "one"}}]));
        r["rules"] = json!([{"verbs": ["get"], "apiGroups": [""], "resources": ["pods"]}]);
        r
    };
    assert!(aggregate(&[a.clone(), b.clone(), c.clone(), done]).is_empty());
    assert!(aggregate(&[a, b, c]).is_empty());
}

#[test]
fn aggregation_cycles_terminate() {
    let mut x = labelled_cluster_role("x", json!({"g": "x"}), vec![rule(&["get"], &[""], &["a"])]);
    x["aggregationRule"] = json!({"clusterRoleSelectors": [{"matchLabels": {"g": "y"}}]});
    let mut y = labelled_cluster_role("y", json!({"g": "y"}), vec![rule(&["get"], &[""], &["b"])]);
    y["aggregationRule"] = json!({"clusterRoleSelectors": [{"matchLabels": {"g": "x"}}]});
    // Roles settle in order, as the controller's sequential syncs would: x takes y's rules,
    // then y takes x's (now y's own), and nothing changes after that.
    let updated = aggregate(&[x, y]);
    assert_eq!(updated.len(), 1, "{updated:?}");
    assert_eq!(updated[0]["metadata"]["name"], "x");
    assert_eq!(updated[0]["rules"], json!([rule(&["get"], &[""], &["b"])]));
    // Settled input is a fixed point.
    let mut settled = updated[0].clone();
    settled["aggregationRule"] = json!({"clusterRoleSelectors": [{"matchLabels": {"g": "y"}}]});
    let mut y = labelled_cluster_role("y", json!({"g": "y"}), vec![rule(&["get"], &[""], &["b"])]);
    y["aggregationRule"] = json!({"clusterRoleSelectors": [{"matchLabels": {"g": "x"}}]});
    assert!(aggregate(&[settled, y]).is_empty());
}

#[test]
fn label_selectors() {
    let labels = json!({"a": "1", "b": "2"});
    let labels = labels.as_object().unwrap();
    let cases = [
        (json!(null), true),
        (json!({}), true),
        (json!({"matchLabels": {"a": "1"}}), true),
        (json!({"matchLabels": {"a": "1", "b": "3"}}), false),
        (json!({"matchExpressions": [{"key": "c", "operator": "NotIn", "values": ["1"]}]}), true),
        (json!({"matchExpressions": [{"key": "a", "operator": "NotIn", "values": ["1"]}]}), false),
        (json!({"matchExpressions": [{"key": "c", "operator": "In", "values": ["1"]}]}), false),
        (json!({"matchExpressions": [{"key": "c", "operator": "DoesNotExist"}]}), true),
    ];
    for (selector, want) in cases {
        assert_eq!(label_selector_matches(&selector, labels), Ok(want), "{selector}");
    }
    assert!(label_selector_matches(&json!("x"), labels).is_err());
}

#[test]
fn bootstrap_objects_are_labelled_and_bound_as_upstream() {
    let roles = bootstrap_cluster_roles();
    let names: Vec<&str> = roles.iter().map(|r| r["metadata"]["name"].as_str().unwrap()).collect();
    for want in [
        "cluster-admin",
        "admin",
        "edit",
        "view",
        "system:aggregate-to-admin",
        "system:aggregate-to-edit",
        "system:aggregate-to-view",
        "system:discovery",
        "system:basic-user",
        "system:public-info-viewer",
        "system:service-account-issuer-discovery",
        "system:kube-scheduler",
        "system:kube-controller-manager",
        "system:node",
        "system:node-proxier",
        "system:kubelet-api-admin",
        "system:aggregated-metrics-reader",
    ] {
        assert!(names.contains(&want), "{want}");
    }
    assert_eq!(roles.len(), 17);
    let bindings = bootstrap_cluster_role_bindings();
    for obj in roles.iter().chain(&bindings) {
        assert_eq!(obj["apiVersion"], "rbac.authorization.k8s.io/v1");
        assert_eq!(obj["metadata"]["labels"]["kubernetes.io/bootstrapping"], "rbac-defaults");
        assert_eq!(obj["metadata"]["annotations"]["rbac.authorization.kubernetes.io/autoupdate"], "true");
    }
    let aggregation = |name: &str| by_name(&roles, name)["aggregationRule"].clone();
    assert_eq!(
        aggregation("admin"),
        json!({"clusterRoleSelectors": [{"matchLabels": {"rbac.authorization.k8s.io/aggregate-to-admin": "true"}}]})
    );
    assert_eq!(by_name(&roles, "edit")["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-admin"], "true");
    assert_eq!(by_name(&roles, "view")["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-edit"], "true");
    assert_eq!(
        by_name(&roles, "cluster-admin")["rules"],
        json!([
            {"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]},
            {"verbs": ["*"], "nonResourceURLs": ["*"]},
        ])
    );

    let subjects = |name: &str| -> Vec<(String, String)> {
        let b = by_name(&bindings, name);
        assert_eq!(b["roleRef"], json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name}));
        b["subjects"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| (s["kind"].as_str().unwrap().into(), s["name"].as_str().unwrap().into()))
            .collect()
    };
    let group = |g: &str| ("Group".to_string(), g.to_string());
    assert_eq!(subjects("cluster-admin"), vec![group("system:masters")]);
    assert_eq!(subjects("system:discovery"), vec![group("system:authenticated")]);
    assert_eq!(subjects("system:basic-user"), vec![group("system:authenticated")]);
    assert_eq!(
        subjects("system:public-info-viewer"),
        vec![group("system:authenticated"), group("system:unauthenticated")]
    );
    assert_eq!(subjects("system:service-account-issuer-discovery"), vec![group("system:serviceaccounts")]);
    assert_eq!(subjects("system:kube-scheduler"), vec![("User".to_string(), "system:kube-scheduler".to_string())]);
    assert_eq!(
        subjects("system:kube-controller-manager"),
        vec![("User".to_string(), "system:kube-controller-manager".to_string())]
    );
    // Deviation (no Node authorizer yet): upstream binds system:node to no one.
    assert_eq!(subjects("system:node"), vec![group("system:nodes")]);
    // rkube's node agent is also the node's service proxy.
    assert_eq!(
        subjects("system:node-proxier"),
        vec![("User".to_string(), "system:kube-proxy".to_string()), group("system:nodes")]
    );
    // The API server's kubelet client gets full access to the kubelet API.
    assert_eq!(
        subjects("system:kubelet-api-admin"),
        vec![("User".to_string(), "kube-apiserver-kubelet-client".to_string())]
    );
    assert_eq!(
        by_name(&roles, "system:kubelet-api-admin")["rules"],
        json!([
            {"verbs": ["get", "list", "watch"], "apiGroups": [""], "resources": ["nodes"]},
            {"verbs": ["proxy"], "apiGroups": [""], "resources": ["nodes"]},
            {"verbs": ["*"], "apiGroups": [""], "resources": ["nodes/log", "nodes/metrics", "nodes/proxy", "nodes/stats"]},
        ])
    );
    assert_eq!(bindings.len(), 10);

    // Every binding's role exists, and every rule list is sorted like
    // kube's rule builder leaves it.
    for b in &bindings {
        assert!(names.contains(&b["roleRef"]["name"].as_str().unwrap()));
    }
    for r in &roles {
        for rule in rules(r) {
            for list in [&rule.verbs, &rule.api_groups, &rule.resources, &rule.non_resource_urls] {
                let mut sorted = list.clone();
                sorted.sort();
                assert_eq!(list, &sorted, "{}", r["metadata"]["name"]);
            }
        }
    }
}

#[test]
fn scheduler_and_node_roles_have_upstreams_rules() {
    let roles = bootstrap_cluster_roles();
    let read = json!(["get", "list", "watch"]);
    let r = |groups: Value, resources: Value, verbs: Value| json!({"verbs": verbs, "apiGroups": groups, "resources": resources});
    // plugin/pkg/auth/authorizer/rbac/bootstrappolicy/testdata/cluster-roles.yaml (v1.33).
    assert_eq!(
        by_name(&roles, "system:kube-scheduler")["rules"],
        json!([
            r(json!(["", "events.k8s.io"]), json!(["events"]), json!(["create", "patch", "update"])),
            r(json!(["coordination.k8s.io"]), json!(["leases"]), json!(["create"])),
            {"verbs": ["get", "update"], "apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "resourceNames": ["kube-scheduler"]},
            r(json!([""]), json!(["nodes"]), read.clone()),
            r(json!([""]), json!(["pods"]), json!(["delete", "get", "list", "watch"])),
            r(json!([""]), json!(["bindings", "pods/binding"]), json!(["create"])),
            r(json!([""]), json!(["pods/status"]), json!(["patch", "update"])),
            r(json!([""]), json!(["replicationcontrollers", "services"]), read.clone()),
            r(json!(["apps", "extensions"]), json!(["replicasets"]), read.clone()),
            r(json!(["apps"]), json!(["statefulsets"]), read.clone()),
            r(json!(["policy"]), json!(["poddisruptionbudgets"]), read.clone()),
            r(json!([""]), json!(["persistentvolumeclaims", "persistentvolumes"]), read.clone()),
            r(json!(["authentication.k8s.io"]), json!(["tokenreviews"]), json!(["create"])),
            r(json!(["authorization.k8s.io"]), json!(["subjectaccessreviews"]), json!(["create"])),
            r(json!(["storage.k8s.io"]), json!(["csinodes"]), read.clone()),
            r(json!([""]), json!(["namespaces"]), read.clone()),
            r(json!(["storage.k8s.io"]), json!(["csidrivers"]), read.clone()),
            r(json!(["storage.k8s.io"]), json!(["csistoragecapacities"]), read.clone()),
            r(json!(["storage.k8s.io"]), json!(["volumeattachments"]), read.clone()),
        ])
    );
    // Upstream's rules, then (deviation: no per-controller service accounts) those of
    // system:controller:endpoint-controller.
    assert_eq!(
        by_name(&roles, "system:kube-controller-manager")["rules"],
        json!([
            r(json!(["", "events.k8s.io"]), json!(["events"]), json!(["create", "patch", "update"])),
            r(json!(["coordination.k8s.io"]), json!(["leases"]), json!(["create"])),
            {"verbs": ["get", "update"], "apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "resourceNames": ["kube-controller-manager"]},
            r(json!([""]), json!(["secrets", "serviceaccounts"]), json!(["create"])),
            r(json!([""]), json!(["secrets"]), json!(["delete"])),
            r(json!([""]), json!(["configmaps", "namespaces", "secrets", "serviceaccounts"]), json!(["get"])),
            r(json!([""]), json!(["secrets", "serviceaccounts"]), json!(["update"])),
            r(json!(["authentication.k8s.io"]), json!(["tokenreviews"]), json!(["create"])),
            r(json!(["authorization.k8s.io"]), json!(["subjectaccessreviews"]), json!(["create"])),
            r(json!(["*"]), json!(["*"]), json!(["list", "watch"])),
            r(json!([""]), json!(["serviceaccounts/token"]), json!(["create"])),
            r(json!([""]), json!(["pods", "services"]), read.clone()),
            r(json!([""]), json!(["endpoints"]), json!(["create", "delete", "get", "list", "update"])),
            r(json!([""]), json!(["endpoints/restricted"]), json!(["create"])),
            // The certificate signer's (upstream's system:controller:certificate-controller).
            r(
                json!(["certificates.k8s.io"]),
                json!(["certificatesigningrequests"]),
                json!(["delete", "get", "list", "watch"])
            ),
            r(
                json!(["certificates.k8s.io"]),
                json!(["certificatesigningrequests/approval", "certificatesigningrequests/status"]),
                json!(["update"])
            ),
            json!({"verbs": ["approve"], "apiGroups": ["certificates.k8s.io"], "resources": ["signers"],
                   "resourceNames": ["kubernetes.io/kube-apiserver-client-kubelet"]}),
            json!({"verbs": ["sign"], "apiGroups": ["certificates.k8s.io"], "resources": ["signers"],
                   "resourceNames": ["kubernetes.io/kube-apiserver-client", "kubernetes.io/kube-apiserver-client-kubelet",
                                     "kubernetes.io/kubelet-serving", "kubernetes.io/legacy-unknown"]}),
        ])
    );
    let node = by_name(&roles, "system:node")["rules"].as_array().unwrap().clone();
    assert_eq!(node.len(), 22);
    assert_eq!(node[0], r(json!(["authentication.k8s.io"]), json!(["tokenreviews"]), json!(["create"])));
    assert_eq!(node[11], r(json!([""]), json!(["configmaps", "secrets"]), read.clone()));
    assert_eq!(node[21], r(json!(["node.k8s.io"]), json!(["runtimeclasses"]), read));
}
