//! `PolicyRule`: parsing, request matching, coverage and the compact form
//! used in escalation errors.

use std::collections::HashMap;

use serde_json::{json, Map, Value};

use crate::message::go_quote_list;
use crate::Attributes;

/// `*` in verbs, apiGroups, resources and nonResourceURLs.
pub(crate) const ALL: &str = "*";

/// One `rules[]` entry of a Role or ClusterRole, normalised: a missing or
/// `null` list is an empty list, and non-string items are dropped.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PolicyRule {
    pub verbs: Vec<String>,
    pub api_groups: Vec<String>,
    pub resources: Vec<String>,
    pub resource_names: Vec<String>,
    pub non_resource_urls: Vec<String>,
}

fn strings(v: Option<&Value>) -> Vec<String> {
    match v {
        Some(Value::Array(items)) => items.iter().filter_map(|i| i.as_str().map(str::to_string)).collect(),
        _ => Vec::new(),
    }
}

fn strs(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

impl PolicyRule {
    /// A resource rule (handy in code and tests).
    pub fn resource(verbs: &[&str], api_groups: &[&str], resources: &[&str]) -> PolicyRule {
        PolicyRule {
            verbs: strs(verbs),
            api_groups: strs(api_groups),
            resources: strs(resources),
            ..PolicyRule::default()
        }
    }

    /// A non-resource rule.
    pub fn non_resource(verbs: &[&str], urls: &[&str]) -> PolicyRule {
        PolicyRule { verbs: strs(verbs), non_resource_urls: strs(urls), ..PolicyRule::default() }
    }

    /// The same rule restricted to these resource names.
    pub fn with_names(mut self, names: &[&str]) -> PolicyRule {
        self.resource_names = strs(names);
        self
    }

    /// Reads a `PolicyRule` JSON object leniently.
    pub fn from_json(v: &Value) -> PolicyRule {
        PolicyRule {
            verbs: strings(v.get("verbs")),
            api_groups: strings(v.get("apiGroups")),
            resources: strings(v.get("resources")),
            resource_names: strings(v.get("resourceNames")),
            non_resource_urls: strings(v.get("nonResourceURLs")),
        }
    }

    /// Reads the `rules` list of a Role or ClusterRole object.
    pub fn list_from_object(obj: &Value) -> Vec<PolicyRule> {
        match obj.get("rules") {
            Some(Value::Array(rules)) => rules.iter().map(PolicyRule::from_json).collect(),
            _ => Vec::new(),
        }
    }

    /// The rule as Kubernetes serialises it: `verbs` always, the other lists
    /// only when non-empty, in the field order of `rbacv1.PolicyRule`.
    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        m.insert("verbs".into(), json!(self.verbs));
        put(&mut m, "apiGroups", &self.api_groups);
        put(&mut m, "resources", &self.resources);
        put(&mut m, "resourceNames", &self.resource_names);
        put(&mut m, "nonResourceURLs", &self.non_resource_urls);
        Value::Object(m)
    }

    /// The rule as a `SelfSubjectRulesReview` `ResourceRule`.
    pub fn to_resource_rule_json(&self) -> Value {
        let mut m = Map::new();
        m.insert("verbs".into(), json!(self.verbs));
        put(&mut m, "apiGroups", &self.api_groups);
        put(&mut m, "resources", &self.resources);
        put(&mut m, "resourceNames", &self.resource_names);
        Value::Object(m)
    }

    /// The rule as a `SelfSubjectRulesReview` `NonResourceRule`.
    pub fn to_non_resource_rule_json(&self) -> Value {
        let mut m = Map::new();
        m.insert("verbs".into(), json!(self.verbs));
        put(&mut m, "nonResourceURLs", &self.non_resource_urls);
        Value::Object(m)
    }

    /// Whether this rule allows the request (kube's `RuleAllows`).
    pub fn allows(&self, attrs: &Attributes) -> bool {
        if attrs.is_resource {
            let combined;
            let resource = if attrs.subresource.is_empty() {
                attrs.resource.as_str()
            } else {
                combined = format!("{}/{}", attrs.resource, attrs.subresource);
                combined.as_str()
            };
            self.verb_matches(&attrs.verb)
                && self.api_group_matches(&attrs.api_group)
                && self.resource_matches(resource, &attrs.subresource)
                && self.resource_name_matches(&attrs.name)
        } else {
            self.verb_matches(&attrs.verb) && self.non_resource_url_matches(&attrs.path)
        }
    }

    pub fn verb_matches(&self, verb: &str) -> bool {
        self.verbs.iter().any(|v| v == ALL || v == verb)
    }

    pub fn api_group_matches(&self, group: &str) -> bool {
        self.api_groups.iter().any(|g| g == ALL || g == group)
    }

    /// `combined` is `resource` or `resource/subresource`. A rule entry
    /// matches when it is `*`, equals `combined`, or is `*/<subresource>`.
    /// (`pods/*` is not a wildcard: like upstream it only matches itself.)
    pub fn resource_matches(&self, combined: &str, subresource: &str) -> bool {
        self.resources.iter().any(|r| {
            r == ALL
                || r == combined
                || (!subresource.is_empty()
                    && r.len() == subresource.len() + 2
                    && r.starts_with("*/")
                    && r.ends_with(subresource))
        })
    }

    /// An empty `resourceNames` allows every name; a non-empty one only the
    /// names listed, so never a request without a name (list, create, ...).
    pub fn resource_name_matches(&self, name: &str) -> bool {
        self.resource_names.is_empty() || self.resource_names.iter().any(|n| n == name)
    }

    /// `*`, an exact path, or a prefix ending in `*`.
    pub fn non_resource_url_matches(&self, path: &str) -> bool {
        self.non_resource_urls.iter().any(|u| url_covers(u, path) || u == ALL)
    }

    /// Kubernetes' `CompactString`: `{APIGroups:["apps"], Resources:["deployments"], Verbs:["get"]}`.
    pub fn compact_string(&self) -> String {
        let mut parts = Vec::new();
        for (label, list) in [
            ("APIGroups", &self.api_groups),
            ("Resources", &self.resources),
            ("NonResourceURLs", &self.non_resource_urls),
            ("ResourceNames", &self.resource_names),
            ("Verbs", &self.verbs),
        ] {
            if !list.is_empty() {
                parts.push(format!("{label}:{}", go_quote_list(list)));
            }
        }
        format!("{{{}}}", parts.join(", "))
    }

    /// Splits the rule into rules of one group, one resource, one verb and at
    /// most one name (or one URL and one verb), as `BreakdownRule`.
    pub fn breakdown(&self) -> Vec<PolicyRule> {
        let mut out = Vec::new();
        for group in &self.api_groups {
            for resource in &self.resources {
                for verb in &self.verbs {
                    let base = PolicyRule {
                        verbs: vec![verb.clone()],
                        api_groups: vec![group.clone()],
                        resources: vec![resource.clone()],
                        ..PolicyRule::default()
                    };
                    if self.resource_names.is_empty() {
                        out.push(base);
                    } else {
                        for name in &self.resource_names {
                            let mut r = base.clone();
                            r.resource_names = vec![name.clone()];
                            out.push(r);
                        }
                    }
                }
            }
        }
        for url in &self.non_resource_urls {
            for verb in &self.verbs {
                out.push(PolicyRule {
                    verbs: vec![verb.clone()],
                    non_resource_urls: vec![url.clone()],
                    ..PolicyRule::default()
                });
            }
        }
        out
    }
}

fn put(m: &mut Map<String, Value>, key: &str, list: &[String]) {
    if !list.is_empty() {
        m.insert(key.into(), json!(list));
    }
}

/// Whether the rule URL `owner` covers `path`: equal, or `owner` ends in `*`
/// and `path` starts with `owner` minus its trailing stars.
fn url_covers(owner: &str, path: &str) -> bool {
    owner == path || (owner.ends_with('*') && path.starts_with(owner.trim_end_matches('*')))
}

fn has(set: &[String], item: &str) -> bool {
    set.iter().any(|s| s == item)
}

fn has_all(set: &[String], items: &[String]) -> bool {
    items.iter().all(|i| has(set, i))
}

fn resources_cover_all(owner: &[String], wanted: &[String]) -> bool {
    if has(owner, ALL) || has_all(owner, wanted) {
        return true;
    }
    wanted.iter().all(|path| {
        if has(owner, path) {
            return true;
        }
        match path.split_once('/') {
            Some((_, sub)) => has(owner, &format!("*/{sub}")),
            None => false,
        }
    })
}

fn urls_cover_all(owner: &[String], wanted: &[String]) -> bool {
    wanted.iter().all(|p| owner.iter().any(|o| url_covers(o, p)))
}

/// Whether `owner` covers `sub`, a rule produced by [`PolicyRule::breakdown`].
fn rule_covers(owner: &PolicyRule, sub: &PolicyRule) -> bool {
    let verbs = has(&owner.verbs, ALL) || has_all(&owner.verbs, &sub.verbs);
    let groups = has(&owner.api_groups, ALL) || has_all(&owner.api_groups, &sub.api_groups);
    let resources = resources_cover_all(&owner.resources, &sub.resources);
    let urls = urls_cover_all(&owner.non_resource_urls, &sub.non_resource_urls);
    let names = if sub.resource_names.is_empty() {
        owner.resource_names.is_empty()
    } else {
        owner.resource_names.is_empty() || has_all(&owner.resource_names, &sub.resource_names)
    };
    verbs && groups && resources && names && urls
}

/// Whether `owner` rules grant everything `servant` rules do; if not, the
/// broken-down servant rules that nothing in `owner` covers (kube's `Covers`).
pub fn covers(owner: &[PolicyRule], servant: &[PolicyRule]) -> (bool, Vec<PolicyRule>) {
    let uncovered: Vec<PolicyRule> = servant
        .iter()
        .flat_map(PolicyRule::breakdown)
        .filter(|sub| !owner.iter().any(|o| rule_covers(o, sub)))
        .collect();
    (uncovered.is_empty(), uncovered)
}

/// Merges rules that name exactly one group and one resource and nothing but
/// verbs, keyed by (group, resource); other rules pass through unchanged
/// (kube's `CompactRules`). Merged rules follow the pass-through ones, in
/// order of first appearance.
pub fn compact_rules(rules: Vec<PolicyRule>) -> Vec<PolicyRule> {
    let mut out = Vec::with_capacity(rules.len());
    let mut simple: Vec<PolicyRule> = Vec::new();
    let mut index: HashMap<(String, String), usize> = HashMap::new();
    for rule in rules {
        let is_simple = rule.resource_names.is_empty()
            && rule.non_resource_urls.is_empty()
            && rule.api_groups.len() == 1
            && rule.resources.len() == 1;
        if !is_simple {
            out.push(rule);
            continue;
        }
        let key = (rule.api_groups[0].clone(), rule.resources[0].clone());
        match index.get(&key) {
            Some(&i) => simple[i].verbs.extend(rule.verbs),
            None => {
                index.insert(key, simple.len());
                simple.push(rule);
            }
        }
    }
    out.extend(simple);
    out
}
