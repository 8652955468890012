//! Privilege-escalation prevention.

mod common;

use common::*;
use rkube_rbac::{
    check_rbac_write, confirm_no_escalation, covers, escalation_allowed, Policy, PolicyRule, RbacWrite, RbacWriteError,
    User,
};
use serde_json::{json, Value};

/// alice holds `get pods` in namespace "team" (RoleBinding) and `list
/// configmaps` everywhere (ClusterRoleBinding).
fn policy() -> Policy {
    Policy::new(
        vec![role("team", "pod-getter", vec![rule(&["get"], &[""], &["pods"])])],
        vec![cluster_role("cm-lister", vec![rule(&["list"], &[""], &["configmaps"])])],
        vec![role_binding("team", "alice-pods", "Role", "pod-getter", vec![user_subject("alice")])],
        vec![cluster_role_binding("alice-cms", "cm-lister", vec![user_subject("alice")])],
    )
}

#[test]
fn cannot_grant_delete_pods_holding_only_get() {
    let p = policy();
    let err = confirm_no_escalation(&p, &alice(), "team", &[rule(&["get", "delete"], &[""], &["pods"])]).unwrap_err();
    assert_eq!(
        err,
        "user \"alice\" (groups=[\"devs\" \"system:authenticated\"]) is attempting to grant RBAC permissions not currently held:\n{APIGroups:[\"\"], Resources:[\"pods\"], Verbs:[\"delete\"]}"
    );
}

#[test]
fn can_grant_what_it_holds() {
    let p = policy();
    let cases: Vec<(&str, &str, Vec<Value>, bool)> = vec![
        ("same rule", "team", vec![rule(&["get"], &[""], &["pods"])], true),
        ("nothing", "team", vec![], true),
        ("subset by name", "team", vec![named_rule(&["get"], &[""], &["pods"], &["a", "b"])], true),
        ("cluster-wide rule in a namespace", "team", vec![rule(&["list"], &[""], &["configmaps"])], true),
        (
            "both sources at once",
            "team",
            vec![rule(&["get"], &[""], &["pods"]), rule(&["list"], &[""], &["configmaps"])],
            true,
        ),
        ("namespace rule elsewhere", "other", vec![rule(&["get"], &[""], &["pods"])], false),
        ("namespace rule at cluster scope", "", vec![rule(&["get"], &[""], &["pods"])], false),
        ("wildcard verb", "team", vec![rule(&["*"], &[""], &["pods"])], false),
        ("wildcard group", "team", vec![rule(&["get"], &["*"], &["pods"])], false),
        ("subresource", "team", vec![rule(&["get"], &[""], &["pods/log"])], false),
        ("non-resource", "team", vec![url_rule(&["get"], &["/healthz"])], false),
    ];
    for (name, ns, rules, ok) in cases {
        assert_eq!(confirm_no_escalation(&p, &alice(), ns, &rules).is_ok(), ok, "{name}");
    }
}

#[test]
fn missing_rules_are_compacted_and_sorted() {
    let err = confirm_no_escalation(
        &Policy::default(),
        &User::new("bob", &[]),
        "",
        &[
            rule(&["get", "list"], &["apps", ""], &["deployments"]),
            named_rule(&["get"], &[""], &["secrets"], &["s1"]),
            url_rule(&["get", "post"], &["/metrics"]),
        ],
    )
    .unwrap_err();
    assert_eq!(
        err,
        [
            "user \"bob\" (groups=[]) is attempting to grant RBAC permissions not currently held:",
            "{APIGroups:[\"\"], Resources:[\"deployments\"], Verbs:[\"get\" \"list\"]}",
            "{APIGroups:[\"\"], Resources:[\"secrets\"], ResourceNames:[\"s1\"], Verbs:[\"get\"]}",
            "{APIGroups:[\"apps\"], Resources:[\"deployments\"], Verbs:[\"get\" \"list\"]}",
            "{NonResourceURLs:[\"/metrics\"], Verbs:[\"get\"]}",
            "{NonResourceURLs:[\"/metrics\"], Verbs:[\"post\"]}",
        ]
        .join("\n")
    );
}

#[test]
fn resolution_errors_are_reported() {
    let p = Policy::new(vec![], vec![], vec![], vec![cluster_role_binding("b", "gone", vec![user_subject("alice")])]);
    let err = confirm_no_escalation(&p, &alice(), "", &[rule(&["get"], &[""], &["pods"])]).unwrap_err();
    assert!(
        err.ends_with(
            "{APIGroups:[\"\"], Resources:[\"pods\"], Verbs:[\"get\"]}; resolution errors: [clusterrole.rbac.authorization.k8s.io \"gone\" not found]"
        ),
        "{err}"
    );
}

#[test]
fn coverage_of_wildcards() {
    let owner =
        vec![PolicyRule::resource(&["get"], &["*"], &["*/scale"]), PolicyRule::non_resource(&["get"], &["/apis/*"])];
    let cases = [
        (PolicyRule::resource(&["get"], &["apps"], &["deployments/scale"]), true),
        (PolicyRule::resource(&["get"], &["apps"], &["*/scale"]), true),
        (PolicyRule::resource(&["get"], &["apps"], &["deployments"]), false),
        (PolicyRule::non_resource(&["get"], &["/apis/apps"]), true),
        (PolicyRule::non_resource(&["get"], &["/apis/*"]), true),
        (PolicyRule::non_resource(&["get"], &["/apis"]), false),
        (PolicyRule::non_resource(&["get"], &["/*"]), false),
    ];
    for (servant, ok) in cases {
        assert_eq!(covers(&owner, std::slice::from_ref(&servant)).0, ok, "{servant:?}");
    }
}

fn write<'a>(resource: &'a str, namespace: &'a str, object: &'a Value) -> RbacWrite<'a> {
    RbacWrite { resource, namespace, request_name: "", object, old_object: None }
}

#[test]
fn role_writes() {
    let p = policy();
    let escalating = role("team", "r", vec![rule(&["delete"], &[""], &["pods"])]);
    let fine = role("team", "r", vec![rule(&["get"], &[""], &["pods"])]);
    assert_eq!(check_rbac_write(&p, &alice(), &write("roles", "team", &fine)), Ok(()));
    assert_eq!(
        check_rbac_write(&p, &alice(), &write("roles", "team", &escalating)),
        Err(RbacWriteError::Forbidden {
            resource: "roles".into(),
            name: "r".into(),
            message: "roles.rbac.authorization.k8s.io \"r\" is forbidden: user \"alice\" (groups=[\"devs\" \"system:authenticated\"]) is attempting to grant RBAC permissions not currently held:\n{APIGroups:[\"\"], Resources:[\"pods\"], Verbs:[\"delete\"]}".into(),
        })
    );
    // system:masters may do anything.
    let admin = User::new("admin", &["system:masters"]);
    assert!(escalation_allowed(&admin));
    assert_eq!(check_rbac_write(&p, &admin, &write("roles", "team", &escalating)), Ok(()));

    // The escalate verb lets a user write roles it could not otherwise.
    let with_escalate = Policy::new(
        vec![role("team", "pod-getter", vec![rule(&["get"], &[""], &["pods"])])],
        vec![cluster_role("escalator", vec![rule(&["escalate"], &["rbac.authorization.k8s.io"], &["roles"])])],
        vec![role_binding("team", "e", "ClusterRole", "escalator", vec![user_subject("alice")])],
        vec![],
    );
    assert_eq!(check_rbac_write(&with_escalate, &alice(), &write("roles", "team", &escalating)), Ok(()));
    assert!(check_rbac_write(&with_escalate, &alice(), &write("roles", "other", &escalating)).is_err());

    // Updates that only touch finalizers or ownerReferences pass.
    let mut gc_only = escalating.clone();
    gc_only["metadata"]["finalizers"] = json!(["x"]);
    let w = RbacWrite { old_object: Some(&escalating), request_name: "r", ..write("roles", "team", &gc_only) };
    assert_eq!(check_rbac_write(&p, &alice(), &w), Ok(()));
}

#[test]
fn cluster_role_writes_and_aggregation_rules() {
    let p = policy();
    let plain = cluster_role("c", vec![rule(&["list"], &[""], &["configmaps"])]);
    assert_eq!(check_rbac_write(&p, &alice(), &write("clusterroles", "", &plain)), Ok(()));

    let mut aggregating = cluster_role("c", vec![]);
    aggregating["aggregationRule"] = json!({"clusterRoleSelectors": [{"matchLabels": {"x": "y"}}]});
    let err = check_rbac_write(&p, &alice(), &write("clusterroles", "", &aggregating)).unwrap_err();
    assert_eq!(
        err.to_string(),
        "clusterroles.rbac.authorization.k8s.io \"c\" is forbidden: must have cluster-admin privileges to use the aggregationRule"
    );
    // Removing the aggregation rule of an existing role is checked too.
    let w = RbacWrite { old_object: Some(&aggregating), request_name: "c", ..write("clusterroles", "", &plain) };
    assert!(check_rbac_write(&p, &alice(), &w).is_err());

    // A cluster-admin (by binding, not system:masters) may.
    let admin = User::new("root", &[]);
    let p = Policy::new(
        vec![],
        vec![cluster_role("cluster-admin", vec![rule(&["*"], &["*"], &["*"]), url_rule(&["*"], &["*"])])],
        vec![],
        vec![cluster_role_binding("root", "cluster-admin", vec![user_subject("root")])],
    );
    assert_eq!(check_rbac_write(&p, &admin, &write("clusterroles", "", &aggregating)), Ok(()));
}

#[test]
fn binding_writes() {
    let p = Policy::new(
        vec![role("team", "pod-getter", vec![rule(&["get"], &[""], &["pods"])])],
        vec![
            cluster_role("pod-deleter", vec![rule(&["delete"], &[""], &["pods"])]),
            cluster_role("cm-lister", vec![rule(&["list"], &[""], &["configmaps"])]),
            cluster_role(
                "binder",
                vec![named_rule(&["bind"], &["rbac.authorization.k8s.io"], &["clusterroles"], &["pod-deleter"])],
            ),
        ],
        vec![
            role_binding("team", "a", "Role", "pod-getter", vec![user_subject("alice")]),
            role_binding("team", "b", "ClusterRole", "binder", vec![user_subject("alice")]),
        ],
        vec![cluster_role_binding("c", "cm-lister", vec![user_subject("alice")])],
    );
    let rb =
        |role_kind: &str, role_name: &str| role_binding("team", "new", role_kind, role_name, vec![user_subject("bob")]);
    // (case, resource, namespace, object, expected outcome)
    type Case<'a> = (&'a str, &'a str, &'a str, Value, Result<(), &'a str>);
    let cases: Vec<Case> = vec![
        ("bind a held Role", "rolebindings", "team", rb("Role", "pod-getter"), Ok(())),
        ("bind a held ClusterRole", "rolebindings", "team", rb("ClusterRole", "cm-lister"), Ok(())),
        ("bind verb on a role it does not hold", "rolebindings", "team", rb("ClusterRole", "pod-deleter"), Ok(())),
        (
            "bind verb only in its namespace",
            "rolebindings",
            "other",
            role_binding("other", "new", "ClusterRole", "pod-deleter", vec![]),
            Err("forbidden"),
        ),
        (
            "cluster role binding to a namespace-held role",
            "clusterrolebindings",
            "",
            cluster_role_binding("new", "pod-deleter", vec![]),
            Err("forbidden"),
        ),
        (
            "cluster role binding to a cluster-held role",
            "clusterrolebindings",
            "",
            cluster_role_binding("new", "cm-lister", vec![]),
            Ok(()),
        ),
        ("missing role", "rolebindings", "team", rb("ClusterRole", "nope"), Err("not found")),
        ("missing namespace", "rolebindings", "", rb("Role", "pod-getter"), Err("bad request")),
    ];
    for (name, resource, ns, obj, want) in cases {
        let got = check_rbac_write(&p, &alice(), &write(resource, ns, &obj));
        match (want, &got) {
            (Ok(()), Ok(())) => {}
            (Err("forbidden"), Err(RbacWriteError::Forbidden { .. })) => {}
            (Err("not found"), Err(RbacWriteError::RoleNotFound { kind, message, .. })) => {
                assert_eq!(kind, "clusterrole");
                assert_eq!(message, "clusterrole.rbac.authorization.k8s.io \"nope\" not found");
            }
            (Err("bad request"), Err(RbacWriteError::BadRequest(m))) => {
                assert_eq!(m, "namespace is required")
            }
            _ => panic!("{name}: got {got:?}"),
        }
    }
    let err = check_rbac_write(
        &p,
        &alice(),
        &write("clusterrolebindings", "", &cluster_role_binding("new", "pod-deleter", vec![])),
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "clusterrolebindings.rbac.authorization.k8s.io \"new\" is forbidden: user \"alice\" (groups=[\"devs\" \"system:authenticated\"]) is attempting to grant RBAC permissions not currently held:\n{APIGroups:[\"\"], Resources:[\"pods\"], Verbs:[\"delete\"]}"
    );
}
