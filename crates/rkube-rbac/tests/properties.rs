//! Property tests over random rule sets and requests.

mod common;

use common::*;
use proptest::prelude::*;
use rkube_rbac::{covers, Attributes, Policy, PolicyRule, User};
use serde_json::Value;

fn word(pool: &'static [&'static str]) -> impl Strategy<Value = String> {
    prop::sample::select(pool).prop_map(str::to_string)
}

fn list(pool: &'static [&'static str]) -> impl Strategy<Value = Vec<String>> {
    prop::collection::vec(word(pool), 0..3)
}

const VERBS: &[&str] = &["get", "list", "watch", "create", "delete", "post", "*"];
const GROUPS: &[&str] = &["", "apps", "batch", "*"];
const RESOURCES: &[&str] = &["pods", "pods/log", "deployments", "deployments/scale", "*/scale", "*", "jobs"];
const NAMES: &[&str] = &["a", "b"];
const URLS: &[&str] = &["/", "/api", "/api/*", "/apis/*", "/healthz", "*"];

/// Rules as validation admits them: resource rules (groups, resources,
/// optional names) or non-resource rules (URLs only), never both.
fn any_rule() -> impl Strategy<Value = PolicyRule> {
    let resource = (list(VERBS), list(GROUPS), list(RESOURCES), list(NAMES)).prop_map(
        |(verbs, api_groups, resources, resource_names)| PolicyRule {
            verbs,
            api_groups,
            resources,
            resource_names,
            non_resource_urls: vec![],
        },
    );
    let non_resource = (list(VERBS), list(URLS)).prop_map(|(verbs, non_resource_urls)| PolicyRule {
        verbs,
        non_resource_urls,
        ..PolicyRule::default()
    });
    prop_oneof![resource, non_resource]
}

fn any_request() -> impl Strategy<Value = Attributes> {
    let resource = (
        word(&["get", "list", "watch", "create", "delete", "escalate"]),
        word(&["", "default", "kube-system"]),
        word(&["", "apps", "batch", "example.com"]),
        word(&["pods", "deployments", "jobs", "widgets"]),
        word(&["", "log", "scale", "status"]),
        word(&["", "a", "b", "c"]),
    )
        .prop_map(|(v, ns, g, r, s, n)| Attributes::resource(&v, &ns, &g, &r, &s, &n));
    let non_resource =
        (word(&["get", "post", "put"]), word(&["/", "/api", "/api/v1", "/apis/apps", "/healthz", "/metrics", ""]))
            .prop_map(|(v, p)| Attributes::non_resource(&v, &p));
    prop_oneof![resource, non_resource]
}

fn any_user() -> impl Strategy<Value = User> {
    (
        word(&["alice", "system:anonymous", "system:serviceaccount:default:default"]),
        prop::collection::vec(word(&["devs", "system:authenticated", "system:serviceaccounts"]), 0..3),
    )
        .prop_map(|(name, groups)| User { name, uid: String::new(), groups })
}

/// A policy granting `rules` to everyone, cluster-wide.
fn granting(rules: &[PolicyRule]) -> Policy {
    let json: Vec<Value> = rules.iter().map(PolicyRule::to_json).collect();
    Policy::new(
        vec![],
        vec![cluster_role("r", json)],
        vec![],
        vec![cluster_role_binding(
            "everyone",
            "r",
            vec![
                user_subject("alice"),
                group_subject("system:authenticated"),
                group_subject("system:unauthenticated"),
                user_subject("system:anonymous"),
            ],
        )],
    )
}

fn star() -> PolicyRule {
    PolicyRule {
        verbs: vec!["*".into()],
        api_groups: vec!["*".into()],
        resources: vec!["*".into()],
        resource_names: vec![],
        non_resource_urls: vec!["*".into()],
    }
}

/// Whether `rule` allows `req`, written from Kubernetes' RBAC rules (`RuleAllows` in
/// plugin/pkg/auth/authorizer/rbac) independently of `PolicyRule::allows`, as the oracle.
fn spec_allows(rule: &PolicyRule, req: &Attributes) -> bool {
    let any = |list: &[String], want: &str| list.iter().any(|x| x == "*" || x == want);
    if !any(&rule.verbs, &req.verb) {
        return false;
    }
    if !req.is_resource {
        return rule
            .non_resource_urls
            .iter()
            .any(|u| u == "*" || *u == req.path || (u.ends_with('*') && req.path.starts_with(&u[..u.len() - 1])));
    }
    let combined =
        if req.subresource.is_empty() { req.resource.clone() } else { format!("{}/{}", req.resource, req.subresource) };
    let resource_ok = rule.resources.iter().any(|r| {
        r == "*"
            || *r == combined
            || (!req.subresource.is_empty()
                && r.len() == req.subresource.len() + 2
                && *r == format!("*/{}", req.subresource))
    });
    let name_ok = rule.resource_names.is_empty() || rule.resource_names.contains(&req.name);
    any(&rule.api_groups, &req.api_group) && resource_ok && name_ok
}

proptest! {
    // The committed regression seeds (properties.proptest-regressions) replay first.
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// A rule with `*` in every field allows every request, whatever else
    /// is granted alongside it.
    #[test]
    fn star_rule_allows_everything(mut rules in prop::collection::vec(any_rule(), 0..4), pos in 0usize..5, req in any_request()) {
        rules.insert(pos.min(rules.len()), star());
        prop_assert!(star().allows(&req));
        let user = User::new("alice", &[]);
        prop_assert!(granting(&rules).authorize(&user, &req).is_allowed());
    }

    /// An empty rule list (or no policy at all) allows nothing.
    #[test]
    fn empty_rules_allow_nothing(user in any_user(), req in any_request()) {
        prop_assume!(!user.in_group("system:masters"));
        prop_assert!(!granting(&[]).authorize(&user, &req).is_allowed());
        prop_assert!(!Policy::default().authorize(&user, &req).is_allowed());
        let (resource_rules, non_resource_rules) = granting(&[]).rules_for(&user, &req.namespace);
        prop_assert!(resource_rules.is_empty() && non_resource_rules.is_empty());
    }

    /// The authorizer allows exactly what Kubernetes' rule matching says some granted
    /// rule allows, and `PolicyRule::allows` agrees with it rule by rule.
    #[test]
    fn authorize_is_any_rule_allows(rules in prop::collection::vec(any_rule(), 0..4), req in any_request()) {
        let user = User::new("alice", &[]);
        let expected = rules.iter().any(|r| spec_allows(r, &req));
        prop_assert_eq!(granting(&rules).authorize(&user, &req).is_allowed(), expected);
        for r in &rules {
            prop_assert_eq!(r.allows(&req), spec_allows(r, &req), "{:?} {:?}", r, req);
        }
    }

    /// JSON round trip keeps a rule.
    #[test]
    fn json_round_trip(rule in any_rule()) {
        prop_assert_eq!(PolicyRule::from_json(&rule.to_json()), rule);
    }

    /// Every rule set covers itself.
    #[test]
    fn covers_is_reflexive(rules in prop::collection::vec(any_rule(), 0..4)) {
        let (ok, missing) = covers(&rules, &rules);
        prop_assert!(ok, "missing {:?}", missing);
    }

    /// Coverage is sound: whatever the covered rules allow, the covering
    /// rules allow too.
    #[test]
    fn covers_is_sound(owner in prop::collection::vec(any_rule(), 0..4), servant in prop::collection::vec(any_rule(), 0..3), req in any_request()) {
        if covers(&owner, &servant).0 && servant.iter().any(|r| spec_allows(r, &req)) {
            prop_assert!(owner.iter().any(|r| spec_allows(r, &req)), "{:?} {:?} {:?}", owner, servant, req);
        }
    }

    /// A user granted some rules may grant those rules on, and the
    /// escalation check agrees with coverage.
    #[test]
    fn escalation_agrees_with_coverage(owner in prop::collection::vec(any_rule(), 0..4), servant in prop::collection::vec(any_rule(), 0..3)) {
        let user = User::new("alice", &[]);
        let policy = granting(&owner);
        let own: Vec<Value> = owner.iter().map(PolicyRule::to_json).collect();
        prop_assert!(rkube_rbac::confirm_no_escalation(&policy, &user, "default", &own).is_ok());
        let wanted: Vec<Value> = servant.iter().map(PolicyRule::to_json).collect();
        prop_assert_eq!(
            rkube_rbac::confirm_no_escalation(&policy, &user, "default", &wanted).is_ok(),
            covers(&owner, &servant).0
        );
    }
}
