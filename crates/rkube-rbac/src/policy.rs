//! The policy snapshot, rule resolution and the authorizer.

use std::collections::HashMap;

use serde_json::Value;

use crate::message::{aggregate_errors, go_quote, go_quote_list};
use crate::rule::PolicyRule;
use crate::{Attributes, Decision, User, SERVICE_ACCOUNT_USERNAME_PREFIX, SYSTEM_MASTERS};

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct RoleRef {
    pub api_group: String,
    pub kind: String,
    pub name: String,
}

impl RoleRef {
    pub(crate) fn from_json(v: Option<&Value>) -> RoleRef {
        let s = |k: &str| v.and_then(|v| v.get(k)).and_then(Value::as_str).unwrap_or_default().to_string();
        RoleRef { api_group: s("apiGroup"), kind: s("kind"), name: s("name") }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Subject {
    kind: String,
    name: String,
    namespace: String,
}

#[derive(Clone, Debug)]
struct Binding {
    name: String,
    namespace: String,
    role_ref: RoleRef,
    subjects: Vec<Subject>,
}

fn meta_str<'a>(obj: &'a Value, key: &str) -> &'a str {
    obj.get("metadata").and_then(|m| m.get(key)).and_then(Value::as_str).unwrap_or_default()
}

fn str_field(v: &Value, key: &str) -> String {
    v.get(key).and_then(Value::as_str).unwrap_or_default().to_string()
}

impl Binding {
    fn from_json(obj: &Value) -> Binding {
        let subjects = match obj.get("subjects") {
            Some(Value::Array(items)) => items
                .iter()
                .map(|s| Subject {
                    kind: str_field(s, "kind"),
                    name: str_field(s, "name"),
                    namespace: str_field(s, "namespace"),
                })
                .collect(),
            _ => Vec::new(),
        };
        Binding {
            name: meta_str(obj, "name").to_string(),
            namespace: meta_str(obj, "namespace").to_string(),
            role_ref: RoleRef::from_json(obj.get("roleRef")),
            subjects,
        }
    }
}

/// Where a rule came from, worded like kube's describers (used in the
/// `RBAC: allowed by ...` reason).
fn describe_subject(s: &Subject, binding_namespace: &str) -> String {
    if s.kind == "ServiceAccount" {
        let ns = if s.namespace.is_empty() { binding_namespace } else { &s.namespace };
        format!("{} {}", s.kind, go_quote(&format!("{}/{}", s.name, ns)))
    } else {
        format!("{} {}", s.kind, go_quote(&s.name))
    }
}

fn describe_source(b: &Binding, s: &Subject, cluster: bool) -> String {
    if cluster {
        format!(
            "ClusterRoleBinding {} of {} {} to {}",
            go_quote(&b.name),
            b.role_ref.kind,
            go_quote(&b.role_ref.name),
            describe_subject(s, "")
        )
    } else {
        format!(
            "RoleBinding {} of {} {} to {}",
            go_quote(&format!("{}/{}", b.name, b.namespace)),
            b.role_ref.kind,
            go_quote(&b.role_ref.name),
            describe_subject(s, &b.namespace)
        )
    }
}

/// Whether a binding subject names the user. A ServiceAccount subject
/// without a namespace means the binding's namespace (so it never matches
/// in a ClusterRoleBinding).
fn applies_to_user(user: &User, s: &Subject, binding_namespace: &str) -> bool {
    match s.kind.as_str() {
        "User" => user.name == s.name,
        "Group" => user.in_group(&s.name),
        "ServiceAccount" => {
            let ns = if s.namespace.is_empty() { binding_namespace } else { &s.namespace };
            if ns.is_empty() {
                return false;
            }
            user.name
                .strip_prefix(SERVICE_ACCOUNT_USERNAME_PREFIX)
                .and_then(|rest| rest.strip_prefix(ns))
                .and_then(|rest| rest.strip_prefix(':'))
                == Some(s.name.as_str())
        }
        _ => false,
    }
}

/// One step of rule resolution.
enum Visit<'a> {
    Rule { binding: &'a Binding, subject: &'a Subject, cluster: bool, rule: &'a PolicyRule },
    Error(String),
}

/// The answer to a (Self)SubjectAccessReview-style question.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Review {
    pub allowed: bool,
    /// `RBAC: allowed by ClusterRoleBinding "x" of ClusterRole "y" to Group "z"`
    /// when allowed by RBAC, empty when allowed through `system:masters`, and
    /// the [`Decision::Deny`] reason when denied.
    pub reason: String,
}

/// The answer to a `SelfSubjectRulesReview`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RulesReview {
    /// `ResourceRule` objects.
    pub resource_rules: Vec<Value>,
    /// `NonResourceRule` objects.
    pub non_resource_rules: Vec<Value>,
    /// Always false: RBAC knows every rule it has.
    pub incomplete: bool,
    /// Role references that failed to resolve, as kube words them.
    pub evaluation_error: String,
}

/// An immutable snapshot of the RBAC objects, indexed for evaluation.
///
/// Objects are read leniently: missing fields are empty, malformed entries
/// grant nothing. When two objects share a key the later one wins.
#[derive(Clone, Debug, Default)]
pub struct Policy {
    roles: HashMap<(String, String), Vec<PolicyRule>>,
    cluster_roles: HashMap<String, Vec<PolicyRule>>,
    role_bindings: HashMap<String, Vec<Binding>>,
    cluster_role_bindings: Vec<Binding>,
}

impl Policy {
    /// A policy snapshot built from the four kinds of RBAC objects.
    pub fn new(
        roles: Vec<Value>,
        cluster_roles: Vec<Value>,
        role_bindings: Vec<Value>,
        cluster_role_bindings: Vec<Value>,
    ) -> Policy {
        let mut p = Policy::default();
        for r in &roles {
            let key = (meta_str(r, "namespace").to_string(), meta_str(r, "name").to_string());
            p.roles.insert(key, PolicyRule::list_from_object(r));
        }
        for r in &cluster_roles {
            p.cluster_roles.insert(meta_str(r, "name").to_string(), PolicyRule::list_from_object(r));
        }
        for b in &role_bindings {
            let b = Binding::from_json(b);
            if b.namespace.is_empty() {
                continue;
            }
            p.role_bindings.entry(b.namespace.clone()).or_default().push(b);
        }
        p.cluster_role_bindings = cluster_role_bindings.iter().map(Binding::from_json).collect();
        p
    }

    /// The rules a role reference grants, for a binding in
    /// `binding_namespace` ("" for a ClusterRoleBinding), or kube's error:
    /// `clusterrole.rbac.authorization.k8s.io "x" not found`,
    /// `role.rbac.authorization.k8s.io "x" not found` or
    /// `unsupported role reference kind: "X"`.
    pub(crate) fn role_ref_rules(&self, role_ref: &RoleRef, binding_namespace: &str) -> Result<&[PolicyRule], String> {
        match role_ref.kind.as_str() {
            // A ClusterRoleBinding ("" namespace) cannot reach any Role.
            "Role" => self
                .roles
                .get(&(binding_namespace.to_string(), role_ref.name.clone()))
                .filter(|_| !binding_namespace.is_empty())
                .map(Vec::as_slice)
                .ok_or_else(|| format!("role.rbac.authorization.k8s.io {} not found", go_quote(&role_ref.name))),
            "ClusterRole" => {
                self.cluster_roles.get(&role_ref.name).map(Vec::as_slice).ok_or_else(|| {
                    format!("clusterrole.rbac.authorization.k8s.io {} not found", go_quote(&role_ref.name))
                })
            }
            other => Err(format!("unsupported role reference kind: {}", go_quote(other))),
        }
    }

    /// The rules of a `roleRef` JSON object, as [`crate::PolicyRule`]s.
    pub fn role_ref_policy_rules(&self, role_ref: &Value, binding_namespace: &str) -> Result<Vec<PolicyRule>, String> {
        self.role_ref_rules(&RoleRef::from_json(Some(role_ref)), binding_namespace).map(<[PolicyRule]>::to_vec)
    }

    /// Visits every rule that applies to `user` in `namespace`
    /// (ClusterRoleBindings first, then that namespace's RoleBindings) and
    /// every resolution error, until `visitor` returns false.
    fn visit_rules_for<'a>(&'a self, user: &User, namespace: &str, mut visitor: impl FnMut(Visit<'a>) -> bool) {
        for b in &self.cluster_role_bindings {
            let Some(subject) = b.subjects.iter().find(|s| applies_to_user(user, s, "")) else {
                continue;
            };
            match self.role_ref_rules(&b.role_ref, "") {
                Err(e) => {
                    if !visitor(Visit::Error(e)) {
                        return;
                    }
                }
                Ok(rules) => {
                    for rule in rules {
                        let v = Visit::Rule { binding: b, subject, cluster: true, rule };
                        if !visitor(v) {
                            return;
                        }
                    }
                }
            }
        }
        if namespace.is_empty() {
            return;
        }
        let Some(bindings) = self.role_bindings.get(namespace) else {
            return;
        };
        for b in bindings {
            let Some(subject) = b.subjects.iter().find(|s| applies_to_user(user, s, namespace)) else {
                continue;
            };
            match self.role_ref_rules(&b.role_ref, namespace) {
                Err(e) => {
                    if !visitor(Visit::Error(e)) {
                        return;
                    }
                }
                Ok(rules) => {
                    for rule in rules {
                        let v = Visit::Rule { binding: b, subject, cluster: false, rule };
                        if !visitor(v) {
                            return;
                        }
                    }
                }
            }
        }
    }

    /// Every rule that applies to `user` in `namespace` ("" for cluster
    /// scope only) and the resolution errors met on the way.
    pub fn resolve_rules(&self, user: &User, namespace: &str) -> (Vec<PolicyRule>, Vec<String>) {
        let mut rules = Vec::new();
        let mut errors = Vec::new();
        self.visit_rules_for(user, namespace, |v| {
            match v {
                Visit::Rule { rule, .. } => rules.push(rule.clone()),
                Visit::Error(e) => errors.push(e),
            }
            true
        });
        (rules, errors)
    }

    /// The RBAC authorizer alone (no `system:masters` short-circuit), as
    /// kube's `RBACAuthorizer.Authorize`.
    pub fn rbac_review(&self, user: &User, attrs: &Attributes) -> Review {
        let mut allowed_by = None;
        let mut errors = Vec::new();
        self.visit_rules_for(user, &attrs.namespace, |v| match v {
            Visit::Rule { binding, subject, cluster, rule } => {
                if rule.allows(attrs) {
                    allowed_by = Some(describe_source(binding, subject, cluster));
                    false
                } else {
                    true
                }
            }
            Visit::Error(e) => {
                errors.push(e);
                true
            }
        });
        match allowed_by {
            Some(source) => Review { allowed: true, reason: format!("RBAC: allowed by {source}") },
            None => Review {
                allowed: false,
                reason: if errors.is_empty() { String::new() } else { format!("RBAC: {}", aggregate_errors(&errors)) },
            },
        }
    }

    /// Authorization as kube-apiserver decides it with
    /// `--authorization-mode=RBAC`: members of `system:masters` may do
    /// anything (the privileged-group authorizer runs first), everyone else
    /// gets what RBAC grants, and everything else is denied.
    pub fn review(&self, user: &User, attrs: &Attributes) -> Review {
        if user.in_group(SYSTEM_MASTERS) {
            return Review { allowed: true, reason: String::new() };
        }
        self.rbac_review(user, attrs)
    }

    /// [`Policy::review`] as a [`Decision`].
    pub fn authorize(&self, user: &User, attrs: &Attributes) -> Decision {
        let r = self.review(user, attrs);
        if r.allowed {
            Decision::Allow
        } else {
            Decision::Deny(r.reason)
        }
    }

    /// The rules that apply to `user` in `namespace` (cluster-wide ones plus
    /// that namespace's), for SelfSubjectRulesReview: `ResourceRule` JSON for
    /// every rule with resources and `NonResourceRule` JSON for every rule
    /// with non-resource URLs.
    pub fn rules_for(&self, user: &User, namespace: &str) -> (Vec<Value>, Vec<Value>) {
        let r = self.rules_review(user, namespace);
        (r.resource_rules, r.non_resource_rules)
    }

    /// [`Policy::rules_for`] with the fields of a `SelfSubjectRulesReview`
    /// status.
    pub fn rules_review(&self, user: &User, namespace: &str) -> RulesReview {
        let (rules, errors) = self.resolve_rules(user, namespace);
        let mut out = RulesReview { evaluation_error: aggregate_errors(&errors), ..RulesReview::default() };
        for r in &rules {
            if !r.resources.is_empty() {
                out.resource_rules.push(r.to_resource_rule_json());
            }
            if !r.non_resource_urls.is_empty() {
                out.non_resource_rules.push(r.to_non_resource_rule_json());
            }
        }
        out
    }

    /// A log line in the words of kube's verbose RBAC denial log:
    /// `RBAC: no rules authorize user "u" with groups ["g"] to "get" resource "pods" named "p" in namespace "ns"`.
    pub fn describe_denial(user: &User, attrs: &Attributes) -> String {
        let operation = if attrs.is_resource {
            let mut res = attrs.resource.clone();
            if !attrs.api_group.is_empty() {
                res = format!("{res}.{}", attrs.api_group);
            }
            if !attrs.subresource.is_empty() {
                res = format!("{res}/{}", attrs.subresource);
            }
            let mut s = format!("{} resource {}", go_quote(&attrs.verb), go_quote(&res));
            if !attrs.name.is_empty() {
                s = format!("{s} named {}", go_quote(&attrs.name));
            }
            s
        } else {
            format!("{} nonResourceURL {}", go_quote(&attrs.verb), go_quote(&attrs.path))
        };
        let scope = if attrs.namespace.is_empty() {
            "cluster-wide".to_string()
        } else {
            format!("in namespace {}", go_quote(&attrs.namespace))
        };
        format!(
            "RBAC: no rules authorize user {} with groups {} to {operation} {scope}",
            go_quote(&user.name),
            go_quote_list(&user.groups)
        )
    }
}
