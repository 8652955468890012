//! Authorization decisions, rule resolution and Forbidden messages.

mod common;

use common::*;
use rkube_rbac::{
    aggregate, bootstrap_cluster_role_bindings, bootstrap_cluster_roles, forbidden_message,
    forbidden_message_with_reason, Attributes, Decision, Policy, User,
};
use serde_json::{json, Value};

/// The bootstrap ClusterRoles with aggregation applied.
fn aggregated_bootstrap_roles(mut extra: Vec<Value>) -> Vec<Value> {
    let mut roles = bootstrap_cluster_roles();
    roles.append(&mut extra);
    for updated in aggregate(&roles) {
        let name = updated["metadata"]["name"].clone();
        let slot = roles.iter_mut().find(|r| r["metadata"]["name"] == name).unwrap();
        *slot = updated;
    }
    roles
}

/// A policy with the bootstrap objects plus the given ones.
fn with_bootstrap(
    roles: Vec<Value>,
    cluster_roles: Vec<Value>,
    role_bindings: Vec<Value>,
    cluster_role_bindings: Vec<Value>,
) -> Policy {
    let mut crbs = bootstrap_cluster_role_bindings();
    crbs.extend(cluster_role_bindings);
    Policy::new(roles, aggregated_bootstrap_roles(cluster_roles), role_bindings, crbs)
}

fn bootstrap_only() -> Policy {
    with_bootstrap(vec![], vec![], vec![], vec![])
}

struct Case {
    name: &'static str,
    user: User,
    attrs: Attributes,
    allowed: bool,
}

fn run(policy: &Policy, cases: &[Case]) {
    for c in cases {
        let d = policy.authorize(&c.user, &c.attrs);
        assert_eq!(d.is_allowed(), c.allowed, "{}: {d:?}", c.name);
    }
}

#[test]
fn service_account_is_denied_listing_pods_with_kubes_exact_message() {
    let policy = bootstrap_only();
    let sa = service_account("default", "default");
    let attrs = res("list", "default", "", "pods", "", "");
    assert_eq!(policy.authorize(&sa, &attrs), Decision::Deny(String::new()));
    assert_eq!(
        forbidden_message(&sa, &attrs),
        r#"pods is forbidden: User "system:serviceaccount:default:default" cannot list resource "pods" in API group "" in the namespace "default""#
    );
}

#[test]
fn permissive_binding_lets_every_service_account_do_anything() {
    let permissive =
        cluster_role_binding("permissive-binding", "cluster-admin", vec![group_subject("system:serviceaccounts")]);
    let policy = with_bootstrap(vec![], vec![], vec![], vec![permissive]);
    let sa = service_account("default", "default");
    let other_sa = service_account("kube-system", "builder");
    run(
        &policy,
        &[
            Case {
                name: "list pods",
                user: sa.clone(),
                attrs: res("list", "default", "", "pods", "", ""),
                allowed: true,
            },
            Case {
                name: "delete nodes",
                user: sa.clone(),
                attrs: res("delete", "", "", "nodes", "", "n1"),
                allowed: true,
            },
            Case {
                name: "other namespace's account",
                user: other_sa,
                attrs: res("create", "kube-system", "apps", "deployments", "", ""),
                allowed: true,
            },
            Case { name: "non-resource", user: sa.clone(), attrs: path("get", "/metrics"), allowed: true },
            Case {
                name: "a user is not a service account",
                user: alice(),
                attrs: res("list", "default", "", "pods", "", ""),
                allowed: false,
            },
        ],
    );
    assert_eq!(
        policy.review(&sa, &res("list", "default", "", "pods", "", "")).reason,
        r#"RBAC: allowed by ClusterRoleBinding "permissive-binding" of ClusterRole "cluster-admin" to Group "system:serviceaccounts""#
    );
}

#[test]
fn demo_role_works_only_in_its_namespace() {
    let demo_role = role("default", "demo-role", vec![rule(&["get", "list", "watch"], &[""], &["pods"])]);
    let binding = role_binding("default", "demo-binding", "Role", "demo-role", vec![sa_subject("default", "default")]);
    let policy = with_bootstrap(vec![demo_role], vec![], vec![binding], vec![]);
    let sa = service_account("default", "default");
    run(
        &policy,
        &[
            Case {
                name: "list in its namespace",
                user: sa.clone(),
                attrs: res("list", "default", "", "pods", "", ""),
                allowed: true,
            },
            Case {
                name: "get one",
                user: sa.clone(),
                attrs: res("get", "default", "", "pods", "", "web-0"),
                allowed: true,
            },
            Case { name: "watch", user: sa.clone(), attrs: res("watch", "default", "", "pods", "", ""), allowed: true },
            Case {
                name: "other namespace",
                user: sa.clone(),
                attrs: res("list", "kube-system", "", "pods", "", ""),
                allowed: false,
            },
            Case {
                name: "all namespaces",
                user: sa.clone(),
                attrs: res("list", "", "", "pods", "", ""),
                allowed: false,
            },
            Case {
                name: "verb not granted",
                user: sa.clone(),
                attrs: res("delete", "default", "", "pods", "", "web-0"),
                allowed: false,
            },
            Case {
                name: "subresource not granted",
                user: sa.clone(),
                attrs: res("get", "default", "", "pods", "log", "web-0"),
                allowed: false,
            },
            Case {
                name: "other resource",
                user: sa.clone(),
                attrs: res("list", "default", "", "secrets", "", ""),
                allowed: false,
            },
            Case {
                name: "another account in the namespace",
                user: service_account("default", "other"),
                attrs: res("list", "default", "", "pods", "", ""),
                allowed: false,
            },
        ],
    );
    assert_eq!(
        policy.review(&sa, &res("list", "default", "", "pods", "", "")).reason,
        r#"RBAC: allowed by RoleBinding "demo-binding/default" of Role "demo-role" to ServiceAccount "default/default""#
    );
    assert_eq!(
        forbidden_message(&sa, &res("list", "", "", "pods", "", "")),
        r#"pods is forbidden: User "system:serviceaccount:default:default" cannot list resource "pods" in API group "" at the cluster scope"#
    );
}

#[test]
fn anonymous_gets_only_public_info() {
    let policy = bootstrap_only();
    let anon = anonymous();
    let cases: Vec<Case> = [
        ("/", false),
        ("/healthz", true),
        ("/livez", true),
        ("/readyz", true),
        ("/version", true),
        ("/version/", true),
        ("/healthz/etcd", false),
        ("/api", false),
        ("/apis", false),
        ("/metrics", false),
        ("/.well-known/openid-configuration", false),
    ]
    .into_iter()
    .map(|(p, allowed)| Case { name: p, user: anon.clone(), attrs: path("get", p), allowed })
    .collect();
    run(&policy, &cases);
    run(
        &policy,
        &[Case { name: "post /healthz", user: anon.clone(), attrs: path("post", "/healthz"), allowed: false }],
    );
    assert_eq!(
        forbidden_message(&anon, &path("get", "/")),
        r#"forbidden: User "system:anonymous" cannot get path "/""#
    );
}

#[test]
fn authenticated_users_get_discovery() {
    let policy = bootstrap_only();
    let cases: Vec<Case> = [
        ("get", "/api", true),
        ("get", "/api/v1", true),
        ("get", "/apis", true),
        ("get", "/apis/batch/v1", true),
        ("get", "/openapi/v3", true),
        ("get", "/version", true),
        ("get", "/healthz", true),
        ("get", "/", false),
        ("get", "/metrics", false),
        ("get", "/logs", false),
        ("post", "/api", false),
        ("get", "/apix", false),
    ]
    .into_iter()
    .map(|(verb, p, allowed)| Case { name: p, user: alice(), attrs: path(verb, p), allowed })
    .collect();
    run(&policy, &cases);
    // Service accounts are authenticated and also read issuer discovery.
    let sa = service_account("default", "default");
    run(
        &policy,
        &[
            Case { name: "sa discovery", user: sa.clone(), attrs: path("get", "/apis/batch/v1"), allowed: true },
            Case { name: "sa issuer", user: sa.clone(), attrs: path("get", "/openid/v1/jwks"), allowed: true },
            Case {
                name: "plain user: no issuer discovery",
                user: alice(),
                attrs: path("get", "/openid/v1/jwks"),
                allowed: false,
            },
            Case {
                name: "self subject access review",
                user: alice(),
                attrs: res("create", "", "authorization.k8s.io", "selfsubjectaccessreviews", "", ""),
                allowed: true,
            },
            Case {
                name: "self subject review",
                user: alice(),
                attrs: res("create", "", "authentication.k8s.io", "selfsubjectreviews", "", ""),
                allowed: true,
            },
            Case {
                name: "anonymous: no basic-user",
                user: anonymous(),
                attrs: res("create", "", "authorization.k8s.io", "selfsubjectaccessreviews", "", ""),
                allowed: false,
            },
        ],
    );
}

#[test]
fn system_masters_can_do_anything() {
    let admin = User::new("kubernetes-admin", &["system:masters", "system:authenticated"]);
    let requests = [
        res("delete", "", "", "namespaces", "", "kube-system"),
        res("escalate", "", "rbac.authorization.k8s.io", "clusterroles", "", "x"),
        res("create", "default", "", "pods", "exec", "p"),
        res("frobnicate", "x", "example.com", "widgets", "status", "w"),
        path("post", "/anything/at/all"),
    ];
    let policy = bootstrap_only();
    for attrs in &requests {
        assert!(policy.authorize(&admin, attrs).is_allowed(), "{attrs:?}");
        // Through RBAC alone, via the cluster-admin binding.
        let r = policy.rbac_review(&admin, attrs);
        assert!(r.allowed, "{attrs:?}");
        assert_eq!(
            r.reason,
            r#"RBAC: allowed by ClusterRoleBinding "cluster-admin" of ClusterRole "cluster-admin" to Group "system:masters""#
        );
    }
    // And, as in kube-apiserver, even without any policy at all.
    let empty = Policy::default();
    for attrs in &requests {
        assert!(empty.authorize(&admin, attrs).is_allowed(), "{attrs:?}");
        assert!(!empty.rbac_review(&admin, attrs).allowed, "{attrs:?}");
    }
}

#[test]
fn resource_names_restrict_to_named_requests() {
    let reader = role(
        "default",
        "one-config",
        vec![named_rule(&["get", "update", "list", "create"], &[""], &["configmaps"], &["app-config"])],
    );
    let binding = role_binding("default", "b", "Role", "one-config", vec![user_subject("alice")]);
    let policy = Policy::new(vec![reader], vec![], vec![binding], vec![]);
    run(
        &policy,
        &[
            Case {
                name: "named get",
                user: alice(),
                attrs: res("get", "default", "", "configmaps", "", "app-config"),
                allowed: true,
            },
            Case {
                name: "named update",
                user: alice(),
                attrs: res("update", "default", "", "configmaps", "", "app-config"),
                allowed: true,
            },
            Case {
                name: "other name",
                user: alice(),
                attrs: res("get", "default", "", "configmaps", "", "other"),
                allowed: false,
            },
            Case {
                name: "list has no name",
                user: alice(),
                attrs: res("list", "default", "", "configmaps", "", ""),
                allowed: false,
            },
            Case {
                name: "create has no name",
                user: alice(),
                attrs: res("create", "default", "", "configmaps", "", ""),
                allowed: false,
            },
        ],
    );
}

#[test]
fn subresources_and_wildcards() {
    let cr = cluster_role(
        "mixed",
        vec![
            rule(&["get"], &[""], &["pods/log"]),
            rule(&["update"], &["*"], &["*/scale"]),
            rule(&["get"], &[""], &["services/*"]),
            rule(&["*"], &["batch"], &["jobs"]),
            rule(&["list"], &["*"], &["*"]),
        ],
    );
    let crb = cluster_role_binding("mixed", "mixed", vec![user_subject("alice")]);
    let policy = Policy::new(vec![], vec![cr], vec![], vec![crb]);
    let cases = [
        ("pods/log", res("get", "ns", "", "pods", "log", "p"), true),
        ("pods itself", res("get", "ns", "", "pods", "", "p"), false),
        ("pods/exec", res("get", "ns", "", "pods", "exec", "p"), false),
        ("deployments/scale", res("update", "ns", "apps", "deployments", "scale", "d"), true),
        ("statefulsets/scale", res("update", "ns", "apps", "statefulsets", "scale", "d"), true),
        ("deployments itself", res("update", "ns", "apps", "deployments", "", "d"), false),
        ("deployments/status", res("update", "ns", "apps", "deployments", "status", "d"), false),
        // Like upstream, "services/*" is not a wildcard.
        ("services/proxy", res("get", "ns", "", "services", "proxy", "s"), false),
        ("jobs any verb", res("deletecollection", "ns", "batch", "jobs", "", ""), true),
        ("jobs/status", res("update", "ns", "batch", "jobs", "status", "j"), false),
        ("jobs other group", res("create", "ns", "apps", "jobs", "", ""), false),
        ("list anything", res("list", "", "example.com", "widgets", "", ""), true),
        ("list a subresource", res("list", "ns", "", "pods", "log", ""), true),
    ];
    for (name, attrs, allowed) in cases {
        assert_eq!(policy.authorize(&alice(), &attrs).is_allowed(), allowed, "{name}");
    }
}

#[test]
fn non_resource_url_matching() {
    let cr = cluster_role(
        "urls",
        vec![
            url_rule(&["get"], &["/exact", "/prefix/*", "/star*"]),
            url_rule(&["*"], &["/any-verb"]),
            // Resource rules never allow non-resource requests.
            rule(&["*"], &["*"], &["*"]),
        ],
    );
    let crb = cluster_role_binding("urls", "urls", vec![user_subject("alice")]);
    let policy = Policy::new(vec![], vec![cr], vec![], vec![crb]);
    let cases = [
        ("get", "/exact", true),
        ("get", "/exact/", false),
        ("get", "/exactly", false),
        ("get", "/prefix/", true),
        ("get", "/prefix/a/b", true),
        ("get", "/prefix", false),
        ("get", "/start", true),
        ("get", "/star", true),
        ("post", "/exact", false),
        ("delete", "/any-verb", true),
        ("get", "/other", false),
    ];
    for (verb, p, allowed) in cases {
        assert_eq!(policy.authorize(&alice(), &path(verb, p)).is_allowed(), allowed, "{verb} {p}");
    }
    // And URL rules never allow resource requests.
    let cr = cluster_role("all-urls", vec![url_rule(&["*"], &["*"])]);
    let crb = cluster_role_binding("all-urls", "all-urls", vec![user_subject("alice")]);
    let policy = Policy::new(vec![], vec![cr], vec![], vec![crb]);
    assert!(!policy.authorize(&alice(), &res("get", "ns", "", "pods", "", "p")).is_allowed());
}

#[test]
fn subjects_match_like_kube() {
    let reader = cluster_role("reader", vec![rule(&["get"], &[""], &["pods"])]);
    let get = res("get", "team", "", "pods", "", "p");
    // (description, binding, user, allowed)
    let cases: Vec<(&str, Value, User, bool)> = vec![
        (
            "User subject",
            role_binding("team", "b", "ClusterRole", "reader", vec![user_subject("alice")]),
            alice(),
            true,
        ),
        (
            "User subject, other user",
            role_binding("team", "b", "ClusterRole", "reader", vec![user_subject("bob")]),
            alice(),
            false,
        ),
        (
            "Group subject",
            role_binding("team", "b", "ClusterRole", "reader", vec![group_subject("devs")]),
            alice(),
            true,
        ),
        (
            "service account in the binding's namespace, namespace omitted",
            role_binding("team", "b", "ClusterRole", "reader", vec![sa_subject("", "bot")]),
            service_account("team", "bot"),
            true,
        ),
        (
            "service account with explicit namespace",
            role_binding("team", "b", "ClusterRole", "reader", vec![sa_subject("ci", "bot")]),
            service_account("ci", "bot"),
            true,
        ),
        (
            "service account of another namespace",
            role_binding("team", "b", "ClusterRole", "reader", vec![sa_subject("team", "bot")]),
            service_account("ci", "bot"),
            false,
        ),
        (
            "a user named like the account's name",
            role_binding("team", "b", "ClusterRole", "reader", vec![sa_subject("team", "bot")]),
            User::new("bot", &[]),
            false,
        ),
        (
            "unknown kind",
            role_binding("team", "b", "ClusterRole", "reader", vec![json!({"kind": "Robot", "name": "alice"})]),
            alice(),
            false,
        ),
        (
            "second subject matches",
            role_binding("team", "b", "ClusterRole", "reader", vec![user_subject("bob"), group_subject("devs")]),
            alice(),
            true,
        ),
    ];
    for (name, binding, user, allowed) in cases {
        let policy = Policy::new(vec![], vec![reader.clone()], vec![binding], vec![]);
        assert_eq!(policy.authorize(&user, &get).is_allowed(), allowed, "{name}");
    }

    // A ServiceAccount subject without namespace never matches in a
    // ClusterRoleBinding; with one it grants everywhere.
    let sa = service_account("team", "bot");
    let no_ns = cluster_role_binding("b", "reader", vec![sa_subject("", "bot")]);
    let policy = Policy::new(vec![], vec![reader.clone()], vec![], vec![no_ns]);
    assert!(!policy.authorize(&sa, &get).is_allowed());
    let with_ns = cluster_role_binding("b", "reader", vec![sa_subject("team", "bot")]);
    let policy = Policy::new(vec![], vec![reader], vec![], vec![with_ns]);
    assert!(policy.authorize(&sa, &res("get", "elsewhere", "", "pods", "", "p")).is_allowed());
}

#[test]
fn role_bindings_grant_only_in_their_namespace() {
    let reader = cluster_role("reader", vec![rule(&["get", "list"], &[""], &["pods"])]);
    // A Role of the same name in another namespace must not be picked.
    let other_role = role("other", "local", vec![rule(&["*"], &["*"], &["*"])]);
    let rb_cluster_role = role_binding("team", "b1", "ClusterRole", "reader", vec![user_subject("alice")]);
    let rb_role = role_binding("team", "b2", "Role", "local", vec![user_subject("alice")]);
    let policy = Policy::new(vec![other_role], vec![reader], vec![rb_cluster_role, rb_role], vec![]);
    run(
        &policy,
        &[
            Case {
                name: "ClusterRole through RoleBinding, in namespace",
                user: alice(),
                attrs: res("list", "team", "", "pods", "", ""),
                allowed: true,
            },
            Case {
                name: "ClusterRole through RoleBinding, elsewhere",
                user: alice(),
                attrs: res("list", "other", "", "pods", "", ""),
                allowed: false,
            },
            Case {
                name: "ClusterRole through RoleBinding, cluster scope",
                user: alice(),
                attrs: res("list", "", "", "pods", "", ""),
                allowed: false,
            },
            Case {
                name: "Role from another namespace is not found",
                user: alice(),
                attrs: res("delete", "team", "", "pods", "", "p"),
                allowed: false,
            },
        ],
    );
    // The missing Role shows up in the reason, as in kube.
    assert_eq!(
        policy.authorize(&alice(), &res("delete", "team", "", "pods", "", "p")),
        Decision::Deny(r#"RBAC: role.rbac.authorization.k8s.io "local" not found"#.into())
    );
}

#[test]
fn a_binding_to_a_missing_role_grants_nothing() {
    let crb = cluster_role_binding("ghostly", "ghost", vec![user_subject("alice")]);
    let rb = role_binding("team", "ghostly", "Role", "ghost", vec![user_subject("alice")]);
    let policy = Policy::new(vec![], vec![], vec![rb], vec![crb]);
    let attrs = res("get", "team", "", "pods", "", "p");
    let reason = r#"RBAC: [clusterrole.rbac.authorization.k8s.io "ghost" not found, role.rbac.authorization.k8s.io "ghost" not found]"#;
    assert_eq!(policy.authorize(&alice(), &attrs), Decision::Deny(reason.into()));
    assert_eq!(
        forbidden_message_with_reason(&alice(), &attrs, reason),
        format!(
            r#"pods "p" is forbidden: User "alice" cannot get resource "pods" in API group "" in the namespace "team": {reason}"#
        )
    );
    // Bindings that do not apply to the user are not resolved at all.
    assert_eq!(policy.authorize(&User::new("bob", &[]), &attrs), Decision::Deny(String::new()));
    // ClusterRoleBindings cannot reference Roles; an unknown kind is an error.
    let crb_role = json!({
        "metadata": {"name": "x"},
        "subjects": [user_subject("alice")],
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "r"},
    });
    let crb_odd = json!({
        "metadata": {"name": "y"},
        "subjects": [user_subject("alice")],
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Team", "name": "r"},
    });
    let r = role("", "r", vec![rule(&["*"], &["*"], &["*"])]);
    let policy = Policy::new(vec![r], vec![], vec![], vec![crb_role, crb_odd]);
    assert_eq!(
        policy.authorize(&alice(), &attrs),
        Decision::Deny(
            r#"RBAC: [role.rbac.authorization.k8s.io "r" not found, unsupported role reference kind: "Team"]"#.into()
        )
    );
}

#[test]
fn empty_policy_denies_everything() {
    let policy = Policy::new(vec![], vec![], vec![], vec![]);
    for attrs in
        [res("get", "default", "", "pods", "", "p"), res("list", "", "", "namespaces", "", ""), path("get", "/healthz")]
    {
        assert_eq!(policy.authorize(&alice(), &attrs), Decision::Deny(String::new()));
    }
}

#[test]
fn malformed_objects_grant_nothing_and_do_not_panic() {
    let crbs = vec![
        json!(null),
        json!("text"),
        json!({"subjects": "nope", "roleRef": 3}),
        json!({"metadata": {"name": "x"}, "subjects": [user_subject("alice")]}),
    ];
    let crs = vec![json!({"metadata": {"name": "cr"}, "rules": [{"verbs": "get"}, 7, null]}), json!([])];
    let policy = Policy::new(vec![json!(1)], crs, vec![json!({})], crbs);
    assert!(!policy.authorize(&alice(), &res("get", "default", "", "pods", "", "p")).is_allowed());
}

#[test]
fn forbidden_messages_match_kube_apiserver() {
    let sa = service_account("default", "default");
    let cases = [
        (
            res("get", "default", "", "pods", "", "p"),
            r#"pods "p" is forbidden: User "system:serviceaccount:default:default" cannot get resource "pods" in API group "" in the namespace "default""#,
        ),
        (
            res("list", "", "apps", "deployments", "", ""),
            r#"deployments.apps is forbidden: User "system:serviceaccount:default:default" cannot list resource "deployments" in API group "apps" at the cluster scope"#,
        ),
        (
            res("get", "default", "", "pods", "log", "p"),
            r#"pods "p" is forbidden: User "system:serviceaccount:default:default" cannot get resource "pods/log" in API group "" in the namespace "default""#,
        ),
        (
            res("update", "ns", "apps", "deployments", "scale", "web"),
            r#"deployments.apps "web" is forbidden: User "system:serviceaccount:default:default" cannot update resource "deployments/scale" in API group "apps" in the namespace "ns""#,
        ),
        (
            res("get", "", "", "namespaces", "", "kube-system"),
            r#"namespaces "kube-system" is forbidden: User "system:serviceaccount:default:default" cannot get resource "namespaces" in API group "" at the cluster scope"#,
        ),
        (
            path("post", "/api/v1"),
            r#"forbidden: User "system:serviceaccount:default:default" cannot post path "/api/v1""#,
        ),
    ];
    for (attrs, want) in cases {
        assert_eq!(forbidden_message(&sa, &attrs), want);
    }
    // Quotes are escaped as Go's %q does and HTML is neutralised.
    let odd = User::new("a\"<b>&c", &[]);
    assert_eq!(
        forbidden_message(&odd, &path("get", "/x")),
        r#"forbidden: User "a\"&lt;b&gt;&amp;c" cannot get path "/x""#
    );
}

#[test]
fn describe_denial_reads_like_kubes_log() {
    let attrs = res("get", "ns", "apps", "deployments", "scale", "web");
    assert_eq!(
        Policy::describe_denial(&alice(), &attrs),
        r#"RBAC: no rules authorize user "alice" with groups ["devs" "system:authenticated"] to "get" resource "deployments.apps/scale" named "web" in namespace "ns""#
    );
    assert_eq!(
        Policy::describe_denial(&anonymous(), &path("get", "/")),
        r#"RBAC: no rules authorize user "system:anonymous" with groups ["system:unauthenticated"] to "get" nonResourceURL "/" cluster-wide"#
    );
}

#[test]
fn rules_for_lists_cluster_and_namespace_rules() {
    let demo_role = role(
        "default",
        "demo-role",
        vec![rule(&["get", "list", "watch"], &[""], &["pods"]), named_rule(&["get"], &[""], &["configmaps"], &["cfg"])],
    );
    let binding = role_binding("default", "demo-binding", "Role", "demo-role", vec![sa_subject("default", "default")]);
    let missing = role_binding("default", "m", "ClusterRole", "gone", vec![sa_subject("", "default")]);
    let policy = with_bootstrap(vec![demo_role], vec![], vec![binding, missing], vec![]);
    let sa = service_account("default", "default");

    let (resource_rules, non_resource_rules) = policy.rules_for(&sa, "default");
    assert!(resource_rules.contains(&json!({
        "verbs": ["get", "list", "watch"], "apiGroups": [""], "resources": ["pods"]
    })));
    assert!(resource_rules.contains(&json!({
        "verbs": ["get"], "apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["cfg"]
    })));
    assert!(resource_rules.contains(&json!({
        "verbs": ["create"],
        "apiGroups": ["authorization.k8s.io"],
        "resources": ["selfsubjectaccessreviews", "selfsubjectrulesreviews"]
    })));
    assert!(non_resource_rules.contains(&json!({
        "verbs": ["get"],
        "nonResourceURLs": ["/api", "/api/*", "/apis", "/apis/*", "/healthz", "/livez",
                            "/openapi", "/openapi/*", "/readyz", "/version", "/version/"]
    })));
    assert!(non_resource_rules.contains(&json!({
        "verbs": ["get"],
        "nonResourceURLs": ["/.well-known/openid-configuration", "/.well-known/openid-configuration/",
                            "/openid/v1/jwks", "/openid/v1/jwks/"]
    })));
    assert_eq!(resource_rules.len(), 4);
    assert_eq!(non_resource_rules.len(), 3);
    let review = policy.rules_review(&sa, "default");
    assert_eq!(review.evaluation_error, r#"clusterrole.rbac.authorization.k8s.io "gone" not found"#);
    assert!(!review.incomplete);

    // Elsewhere only the cluster-wide rules apply.
    let (resource_rules, _) = policy.rules_for(&sa, "kube-system");
    assert_eq!(resource_rules.len(), 2);
    assert!(!resource_rules.iter().any(|r| r["resources"] == json!(["pods"])));
}

#[test]
fn the_scheduler_controllers_and_nodes_get_what_they_need_from_the_bootstrap_policy() {
    let policy = bootstrap_only();
    let scheduler = User::new("system:kube-scheduler", &["system:authenticated"]);
    let kcm = User::new("system:kube-controller-manager", &["system:authenticated"]);
    let node = User::new("system:node:n1", &["system:nodes", "system:authenticated"]);
    let cases = [
        ("scheduler binds", &scheduler, res("create", "default", "", "pods", "binding", "p"), true),
        ("scheduler patches pod status", &scheduler, res("patch", "default", "", "pods", "status", "p"), true),
        ("scheduler watches pods", &scheduler, res("watch", "", "", "pods", "", ""), true),
        ("scheduler lists nodes", &scheduler, res("list", "", "", "nodes", "", ""), true),
        ("scheduler records events", &scheduler, res("create", "default", "events.k8s.io", "events", "", ""), true),
        ("scheduler patches events", &scheduler, res("patch", "default", "events.k8s.io", "events", "", "e"), true),
        (
            "scheduler renews its own lease",
            &scheduler,
            res("update", "kube-system", "coordination.k8s.io", "leases", "", "kube-scheduler"),
            true,
        ),
        (
            "scheduler cannot take another lease",
            &scheduler,
            res("update", "kube-system", "coordination.k8s.io", "leases", "", "other"),
            false,
        ),
        ("scheduler cannot update pods", &scheduler, res("update", "default", "", "pods", "", "p"), false),
        ("scheduler cannot read secrets", &scheduler, res("get", "default", "", "secrets", "", "s"), false),
        ("controllers watch services", &kcm, res("watch", "", "", "services", "", ""), true),
        ("controllers list pods", &kcm, res("list", "", "", "pods", "", ""), true),
        ("controllers create endpoints", &kcm, res("create", "default", "", "endpoints", "", ""), true),
        ("controllers update endpoints", &kcm, res("update", "default", "", "endpoints", "", "web"), true),
        ("controllers delete endpoints", &kcm, res("delete", "default", "", "endpoints", "", "web"), true),
        ("controllers record events", &kcm, res("create", "default", "", "events", "", ""), true),
        ("controllers count events", &kcm, res("patch", "default", "", "events", "", "e"), true),
        ("controllers cannot update pods", &kcm, res("update", "default", "", "pods", "", "p"), false),
        ("controllers cannot delete services", &kcm, res("delete", "default", "", "services", "", "web"), false),
        ("node registers", &node, res("create", "", "", "nodes", "", ""), true),
        ("node reports status", &node, res("patch", "", "", "nodes", "status", "n1"), true),
        ("node reports pod status", &node, res("patch", "default", "", "pods", "status", "p"), true),
        (
            "node renews its lease",
            &node,
            res("update", "kube-node-lease", "coordination.k8s.io", "leases", "", "n1"),
            true,
        ),
        ("node records core events", &node, res("create", "default", "", "events", "", ""), true),
        // The node agent is also its node's service proxy (system:node-proxier), whose rules
        // include events.k8s.io events.
        ("node proxies services", &node, res("watch", "", "", "endpoints", "", ""), true),
        ("node proxier records events", &node, res("create", "default", "events.k8s.io", "events", "", ""), true),
        ("node cannot write endpoints", &node, res("update", "default", "", "endpoints", "", "web"), false),
        ("node cannot bind", &node, res("create", "default", "", "pods", "binding", "p"), false),
        ("node cannot delete nodes", &node, res("delete", "", "", "nodes", "", "n1"), false),
    ];
    for (name, user, attrs, allowed) in cases {
        assert_eq!(policy.authorize(user, &attrs).is_allowed(), allowed, "{name}");
    }
}
