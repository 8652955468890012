//! The decision code of Kubernetes RBAC (`rbac.authorization.k8s.io/v1`).
//!
//! # Architecture invariant
//!
//! The evaluator is a **pure function of (user, request attributes, policy
//! snapshot)**. Nothing in this crate does IO, spawns tasks, reads clocks or
//! knows about HTTP or storage: callers hand in the RBAC objects they hold
//! (as `serde_json::Value`s shaped exactly like Kubernetes' `Role`,
//! `ClusterRole`, `RoleBinding` and `ClusterRoleBinding`), build a
//! [`Policy`] snapshot from them and ask questions of it. Whoever watches
//! storage rebuilds the snapshot when those objects change; whoever serves
//! HTTP turns the answers into responses. Keeping it that way is what lets
//! every decision here be tested table-driven, without a server.
//!
//! # What is here
//!
//! * [`Policy::authorize`] / [`Policy::review`]: the request authorizer
//!   (kube-apiserver's `system:masters` short-circuit followed by the RBAC
//!   authorizer), deny by default.
//! * [`Policy::rules_for`] / [`Policy::rules_review`]: the rules that apply to
//!   a user in a namespace, for `SelfSubjectRulesReview`.
//! * [`forbidden_message`]: the exact `Forbidden` status message
//!   kube-apiserver writes for a denied request.
//! * [`confirm_no_escalation`] and [`check_rbac_write`]: privilege-escalation
//!   prevention for writes of RBAC objects.
//! * [`aggregate`]: the cluster-role aggregation controller's computation.
//! * [`bootstrap_cluster_roles`] / [`bootstrap_cluster_role_bindings`]: the
//!   default policy kube-apiserver creates at start.
//!
//! Matching follows kube's `plugin/pkg/auth/authorizer/rbac/rbac.go` and
//! `pkg/apis/rbac/v1/evaluation_helpers.go`; rule resolution follows
//! `pkg/registry/rbac/validation/rule.go`; coverage follows
//! `component-helpers/auth/rbac/validation/policy_comparator.go`.

mod aggregate;
mod bootstrap;
mod escalation;
mod message;
mod policy;
mod rule;

pub use aggregate::{aggregate, label_selector_matches, SelectorError};
pub use bootstrap::{
    bootstrap_cluster_role_bindings, bootstrap_cluster_roles, AUTOUPDATE_ANNOTATION, BOOTSTRAPPING_LABEL,
    KUBELET_API_CLIENT_USER,
};
pub use escalation::{check_rbac_write, confirm_no_escalation, escalation_allowed, RbacWrite, RbacWriteError};
pub use message::{
    forbidden_message, forbidden_message_with_reason, forbidden_status_message, go_quote, go_quote_list,
};
pub use policy::{Policy, Review, RulesReview};
pub use rule::{compact_rules, covers, PolicyRule};

/// The API group of the RBAC objects.
pub const RBAC_GROUP: &str = "rbac.authorization.k8s.io";
/// The group whose members kube-apiserver authorizes for everything.
pub const SYSTEM_MASTERS: &str = "system:masters";
/// Every authenticated user carries this group.
pub const ALL_AUTHENTICATED: &str = "system:authenticated";
/// Every anonymous request carries this group.
pub const ALL_UNAUTHENTICATED: &str = "system:unauthenticated";
/// Every service account carries this group.
pub const ALL_SERVICE_ACCOUNTS: &str = "system:serviceaccounts";
/// The user name of anonymous requests.
pub const ANONYMOUS_USER: &str = "system:anonymous";
/// Prefix of service account user names: `system:serviceaccount:<ns>:<name>`.
pub const SERVICE_ACCOUNT_USERNAME_PREFIX: &str = "system:serviceaccount:";

/// The authenticated identity a request is made as.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub uid: String,
    pub groups: Vec<String>,
}

impl User {
    /// A user with a name and groups (and no uid).
    pub fn new(name: impl Into<String>, groups: &[&str]) -> User {
        User { name: name.into(), uid: String::new(), groups: groups.iter().map(|g| g.to_string()).collect() }
    }

    /// Whether the user carries `group`.
    pub fn in_group(&self, group: &str) -> bool {
        self.groups.iter().any(|g| g == group)
    }
}

/// What a request asks to do, as kube-apiserver's `authorizer.Attributes`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Attributes {
    /// get, list, watch, create, update, patch, delete, deletecollection (or
    /// any custom verb such as bind, escalate, impersonate), or for
    /// non-resource requests the lowercase HTTP method.
    pub verb: String,
    pub is_resource: bool,
    /// "" for cluster scope.
    pub namespace: String,
    /// "" for the core group.
    pub api_group: String,
    pub resource: String,
    pub subresource: String,
    pub name: String,
    /// The URL path, for non-resource requests.
    pub path: String,
}

impl Attributes {
    /// A resource request.
    pub fn resource(
        verb: &str,
        namespace: &str,
        api_group: &str,
        resource: &str,
        subresource: &str,
        name: &str,
    ) -> Attributes {
        Attributes {
            verb: verb.to_string(),
            is_resource: true,
            namespace: namespace.to_string(),
            api_group: api_group.to_string(),
            resource: resource.to_string(),
            subresource: subresource.to_string(),
            name: name.to_string(),
            path: String::new(),
        }
    }

    /// A non-resource request (`verb` is the lowercase HTTP method).
    pub fn non_resource(verb: &str, path: &str) -> Attributes {
        Attributes { verb: verb.to_string(), is_resource: false, path: path.to_string(), ..Attributes::default() }
    }
}

/// The outcome of authorizing one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    Allow,
    /// Denied. The string is the authorizer's reason exactly as kube's RBAC
    /// authorizer gives it: empty when no rule applies, or `RBAC: ...` naming
    /// the role references that failed to resolve (for example
    /// `RBAC: clusterrole.rbac.authorization.k8s.io "x" not found`). It is
    /// what kube logs and what it appends to the Forbidden message; see
    /// [`forbidden_message_with_reason`].
    Deny(String),
}

impl Decision {
    pub fn is_allowed(&self) -> bool {
        matches!(self, Decision::Allow)
    }
}
