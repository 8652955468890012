//! Privilege-escalation prevention for writes of RBAC objects.
//!
//! kube-apiserver lets a user create or update a Role or ClusterRole only
//! with rules the user already holds, and a RoleBinding or
//! ClusterRoleBinding only to a role whose rules the user holds, unless the
//! user is in `system:masters` or has been granted the `escalate` (roles) or
//! `bind` (bindings) verb. `pkg/registry/rbac/*/policybased/storage.go`.

use std::collections::BTreeSet;

use serde_json::Value;

use crate::message::{aggregate_errors, forbidden_status_message, go_quote, go_quote_list};
use crate::policy::RoleRef;
use crate::rule::{compact_rules, covers, PolicyRule};
use crate::{Attributes, Policy, User, RBAC_GROUP, SYSTEM_MASTERS};

/// Escalation prevention: may `user` (holding what `policy` grants it in
/// `namespace`, "" for cluster-wide rules only) create or update a
/// Role/ClusterRole with these rules? `Ok` unless some rule is not covered
/// by the user's own rules; the error is kube's message, e.g.
///
/// ```text
/// user "x" (groups=["system:authenticated"]) is attempting to grant RBAC permissions not currently held:
/// {APIGroups:[""], Resources:["pods"], Verbs:["delete"]}
/// ```
///
/// This is only the coverage check; [`check_rbac_write`] applies the whole
/// gate (system:masters, `escalate`, `bind`, the aggregationRule rule).
pub fn confirm_no_escalation(policy: &Policy, user: &User, namespace: &str, rules: &[Value]) -> Result<(), String> {
    let rules: Vec<PolicyRule> = rules.iter().map(PolicyRule::from_json).collect();
    confirm_rules(policy, user, namespace, &rules)
}

fn confirm_rules(policy: &Policy, user: &User, namespace: &str, rules: &[PolicyRule]) -> Result<(), String> {
    let (owner, errors) = policy.resolve_rules(user, namespace);
    let (covered, missing) = covers(&owner, rules);
    if covered {
        return Ok(());
    }
    // A sorted set, as kube's `sets.NewString(...).List()`.
    let described: BTreeSet<String> = compact_rules(missing).iter().map(PolicyRule::compact_string).collect();
    let mut msg = format!(
        "user {} (groups={}) is attempting to grant RBAC permissions not currently held:\n{}",
        go_quote(&user.name),
        go_quote_list(&user.groups),
        described.into_iter().collect::<Vec<_>>().join("\n")
    );
    if !errors.is_empty() {
        msg.push_str(&format!("; resolution errors: [{}]", aggregate_errors(&errors)));
    }
    Err(msg)
}

/// Members of `system:masters` may always escalate (kube's
/// `EscalationAllowed`).
pub fn escalation_allowed(user: &User) -> bool {
    user.in_group(SYSTEM_MASTERS)
}

/// A write of an RBAC object, as the storage layer sees it.
#[derive(Clone, Copy, Debug)]
pub struct RbacWrite<'a> {
    /// `roles`, `clusterroles`, `rolebindings` or `clusterrolebindings`.
    pub resource: &'a str,
    /// The request namespace ("" for the cluster-scoped kinds).
    pub namespace: &'a str,
    /// The name in the request URL ("" for a create).
    pub request_name: &'a str,
    /// The object to be stored.
    pub object: &'a Value,
    /// The stored object an update replaces (None for a create).
    pub old_object: Option<&'a Value>,
}

/// Why [`check_rbac_write`] refused a write; each carries the full
/// `Status.message` kube-apiserver would send.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RbacWriteError {
    /// 403 Forbidden, `details: {group: rbac.authorization.k8s.io, kind: <resource>, name}`.
    #[error("{message}")]
    Forbidden { resource: String, name: String, message: String },
    /// 404 NotFound: the binding's roleRef does not resolve;
    /// `details: {group: rbac.authorization.k8s.io, kind: clusterrole|role, name}`.
    #[error("{message}")]
    RoleNotFound { kind: String, name: String, message: String },
    /// 400 BadRequest (a RoleBinding write without a namespace).
    #[error("{0}")]
    BadRequest(String),
    /// 500: a roleRef kind that is neither Role nor ClusterRole (validation
    /// normally rejects those first).
    #[error("{0}")]
    Internal(String),
}

fn object_name(obj: &Value) -> String {
    obj.get("metadata").and_then(|m| m.get("name")).and_then(Value::as_str).unwrap_or_default().to_string()
}

fn rules_of(obj: &Value) -> Vec<PolicyRule> {
    PolicyRule::list_from_object(obj)
}

fn has_aggregation_rule(obj: &Value) -> bool {
    obj.get("aggregationRule")
        .and_then(|a| a.get("clusterRoleSelectors"))
        .and_then(Value::as_array)
        .is_some_and(|s| !s.is_empty())
}

/// kube's `IsOnlyMutatingGCFields`: the update changes nothing but
/// `metadata.ownerReferences` and `metadata.finalizers`.
fn only_mutates_gc_fields(obj: &Value, old: &Value) -> bool {
    let strip = |v: &Value| {
        let mut v = v.clone();
        if let Some(m) = v.get_mut("metadata").and_then(Value::as_object_mut) {
            m.remove("ownerReferences");
            m.remove("finalizers");
        }
        v
    };
    strip(obj) == strip(old)
}

fn full_authority() -> Vec<PolicyRule> {
    vec![PolicyRule::resource(&["*"], &["*"], &["*"]), PolicyRule::non_resource(&["*"], &["*"])]
}

/// The whole escalation gate kube-apiserver applies to a create or update of
/// an RBAC object, in its order:
///
/// * roles / clusterroles: allowed for `system:masters` or a user granted
///   `escalate` on the resource; otherwise the new rules must be covered by
///   the user's own ([`confirm_no_escalation`]), and a ClusterRole whose new
///   or old version has an aggregationRule needs `*` on everything
///   (`must have cluster-admin privileges to use the aggregationRule`);
/// * rolebindings / clusterrolebindings: allowed for `system:masters` or a
///   user granted `bind` on the referenced role; otherwise the referenced
///   role must exist and its rules must be covered by the user's own.
///
/// Updates that only touch `ownerReferences`/`finalizers` are let through.
/// Other resources are not checked.
pub fn check_rbac_write(policy: &Policy, user: &User, write: &RbacWrite<'_>) -> Result<(), RbacWriteError> {
    if escalation_allowed(user) {
        return Ok(());
    }
    let name = object_name(write.object);
    let forbidden = |message: String| RbacWriteError::Forbidden {
        resource: write.resource.to_string(),
        name: name.clone(),
        message: forbidden_status_message(RBAC_GROUP, write.resource, &name, &message),
    };
    match write.resource {
        "roles" | "clusterroles" => {
            // Cluster-scoped writes see cluster-wide rules only.
            let namespace = if write.resource == "roles" { write.namespace } else { "" };
            let escalate =
                Attributes::resource("escalate", namespace, RBAC_GROUP, write.resource, "", write.request_name);
            if policy.authorize(user, &escalate).is_allowed() {
                return Ok(());
            }
            if let Some(old) = write.old_object {
                if only_mutates_gc_fields(write.object, old) {
                    return Ok(());
                }
            }
            confirm_rules(policy, user, namespace, &rules_of(write.object)).map_err(forbidden)?;
            if write.resource == "clusterroles"
                && (has_aggregation_rule(write.object) || write.old_object.is_some_and(has_aggregation_rule))
                && confirm_rules(policy, user, "", &full_authority()).is_err()
            {
                return Err(forbidden("must have cluster-admin privileges to use the aggregationRule".to_string()));
            }
            Ok(())
        }
        "rolebindings" | "clusterrolebindings" => {
            if let Some(old) = write.old_object {
                if only_mutates_gc_fields(write.object, old) {
                    return Ok(());
                }
            }
            let namespace = if write.resource == "rolebindings" {
                if write.namespace.is_empty() {
                    return Err(RbacWriteError::BadRequest("namespace is required".to_string()));
                }
                write.namespace
            } else {
                ""
            };
            let role_ref = RoleRef::from_json(write.object.get("roleRef"));
            let bind_resource = match role_ref.kind.as_str() {
                "ClusterRole" => Some("clusterroles"),
                "Role" => Some("roles"),
                _ => None,
            };
            if let Some(resource) = bind_resource {
                let bind = Attributes::resource("bind", namespace, &role_ref.api_group, resource, "", &role_ref.name);
                if policy.authorize(user, &bind).is_allowed() {
                    return Ok(());
                }
            }
            let rules = match policy.role_ref_rules(&role_ref, namespace) {
                Ok(rules) => rules.to_vec(),
                Err(message) => {
                    return Err(match role_ref.kind.as_str() {
                        "Role" | "ClusterRole" => RbacWriteError::RoleNotFound {
                            kind: role_ref.kind.to_lowercase(),
                            name: role_ref.name.clone(),
                            message,
                        },
                        _ => RbacWriteError::Internal(message),
                    })
                }
            };
            confirm_rules(policy, user, namespace, &rules).map_err(forbidden)
        }
        _ => Ok(()),
    }
}
