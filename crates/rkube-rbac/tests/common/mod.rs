//! Builders for RBAC objects shaped like `rbac.authorization.k8s.io/v1`.
#![allow(dead_code)]

use rkube_rbac::{Attributes, User};
use serde_json::{json, Value};

pub fn rule(verbs: &[&str], groups: &[&str], resources: &[&str]) -> Value {
    json!({ "verbs": verbs, "apiGroups": groups, "resources": resources })
}

pub fn named_rule(verbs: &[&str], groups: &[&str], resources: &[&str], names: &[&str]) -> Value {
    json!({ "verbs": verbs, "apiGroups": groups, "resources": resources, "resourceNames": names })
}

pub fn url_rule(verbs: &[&str], urls: &[&str]) -> Value {
    json!({ "verbs": verbs, "nonResourceURLs": urls })
}

pub fn role(namespace: &str, name: &str, rules: Vec<Value>) -> Value {
    json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": { "name": name, "namespace": namespace },
        "rules": rules,
    })
}

pub fn cluster_role(name: &str, rules: Vec<Value>) -> Value {
    json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": { "name": name },
        "rules": rules,
    })
}

pub fn labelled_cluster_role(name: &str, labels: Value, rules: Vec<Value>) -> Value {
    let mut r = cluster_role(name, rules);
    r["metadata"]["labels"] = labels;
    r
}

pub fn user_subject(name: &str) -> Value {
    json!({ "kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": name })
}

pub fn group_subject(name: &str) -> Value {
    json!({ "kind": "Group", "apiGroup": "rbac.authorization.k8s.io", "name": name })
}

pub fn sa_subject(namespace: &str, name: &str) -> Value {
    if namespace.is_empty() {
        json!({ "kind": "ServiceAccount", "name": name })
    } else {
        json!({ "kind": "ServiceAccount", "name": name, "namespace": namespace })
    }
}

pub fn role_binding(namespace: &str, name: &str, kind: &str, role: &str, subjects: Vec<Value>) -> Value {
    json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": { "name": name, "namespace": namespace },
        "subjects": subjects,
        "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": kind, "name": role },
    })
}

pub fn cluster_role_binding(name: &str, role: &str, subjects: Vec<Value>) -> Value {
    json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": { "name": name },
        "subjects": subjects,
        "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role },
    })
}

/// `system:serviceaccount:<ns>:<name>` with the groups a token gets.
pub fn service_account(namespace: &str, name: &str) -> User {
    User {
        name: format!("system:serviceaccount:{namespace}:{name}"),
        uid: "0b9e4b7e-0000-4000-8000-000000000000".into(),
        groups: vec![
            "system:serviceaccounts".into(),
            format!("system:serviceaccounts:{namespace}"),
            "system:authenticated".into(),
        ],
    }
}

pub fn anonymous() -> User {
    User::new("system:anonymous", &["system:unauthenticated"])
}

pub fn alice() -> User {
    User::new("alice", &["devs", "system:authenticated"])
}

pub fn res(verb: &str, ns: &str, group: &str, resource: &str, sub: &str, name: &str) -> Attributes {
    Attributes::resource(verb, ns, group, resource, sub, name)
}

pub fn path(verb: &str, p: &str) -> Attributes {
    Attributes::non_resource(verb, p)
}
