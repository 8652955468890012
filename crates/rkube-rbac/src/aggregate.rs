//! ClusterRole aggregation (kube's clusterrole-aggregation controller).

use serde_json::{Map, Value};

use crate::rule::PolicyRule;

/// Why a label selector cannot be used (kube's `LabelSelectorAsSelector`
/// errors); an aggregated ClusterRole with such a selector is left alone.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SelectorError {
    #[error("{0:?} is not a valid label selector operator")]
    UnknownOperator(String),
    #[error("for 'in', 'notin' operators, values set can't be empty")]
    EmptyValues,
    #[error("values set must be empty for exists and does not exist")]
    ValuesNotAllowed,
    #[error("invalid label selector: {0}")]
    Malformed(String),
}

fn labels_of(obj: &Value) -> Option<&Map<String, Value>> {
    obj.get("metadata").and_then(|m| m.get("labels")).and_then(Value::as_object)
}

/// Whether an object's labels match a `metav1.LabelSelector` JSON value:
/// every `matchLabels` pair and every `matchExpressions` requirement (In,
/// NotIn, Exists, DoesNotExist) must hold. An empty selector (or `null`)
/// matches everything, as in `LabelSelectorAsSelector`.
pub fn label_selector_matches(selector: &Value, labels: &Map<String, Value>) -> Result<bool, SelectorError> {
    let selector = match selector {
        Value::Null => return Ok(true),
        Value::Object(s) => s,
        other => return Err(SelectorError::Malformed(other.to_string())),
    };
    let label = |k: &str| labels.get(k).and_then(Value::as_str);
    let mut matched = true;
    match selector.get("matchLabels") {
        None | Some(Value::Null) => {}
        Some(Value::Object(ml)) => {
            for (k, v) in ml {
                let v = v.as_str().ok_or_else(|| SelectorError::Malformed(format!("matchLabels.{k}")))?;
                matched &= label(k) == Some(v);
            }
        }
        Some(other) => return Err(SelectorError::Malformed(other.to_string())),
    }
    match selector.get("matchExpressions") {
        None | Some(Value::Null) => {}
        Some(Value::Array(exprs)) => {
            for e in exprs {
                let key =
                    e.get("key").and_then(Value::as_str).ok_or_else(|| SelectorError::Malformed(e.to_string()))?;
                let op = e.get("operator").and_then(Value::as_str).unwrap_or_default();
                let values: Vec<&str> = match e.get("values") {
                    None | Some(Value::Null) => Vec::new(),
                    Some(Value::Array(vs)) => vs.iter().filter_map(Value::as_str).collect(),
                    Some(other) => return Err(SelectorError::Malformed(other.to_string())),
                };
                let have = label(key);
                let ok = match op {
                    "In" | "NotIn" => {
                        if values.is_empty() {
                            return Err(SelectorError::EmptyValues);
                        }
                        let inside = have.is_some_and(|h| values.contains(&h));
                        if op == "In" {
                            inside
                        } else {
                            !inside
                        }
                    }
                    "Exists" | "DoesNotExist" => {
                        if !values.is_empty() {
                            return Err(SelectorError::ValuesNotAllowed);
                        }
                        (op == "Exists") == have.is_some()
                    }
                    other => return Err(SelectorError::UnknownOperator(other.to_string())),
                };
                matched &= ok;
            }
        }
        Some(other) => return Err(SelectorError::Malformed(other.to_string())),
    }
    Ok(matched)
}

fn name_of(obj: &Value) -> &str {
    obj.get("metadata").and_then(|m| m.get("name")).and_then(Value::as_str).unwrap_or_default()
}

/// The selectors of an aggregating ClusterRole, or None when it has no
/// aggregationRule.
fn selectors_of(obj: &Value) -> Option<Vec<Value>> {
    match obj.get("aggregationRule") {
        None | Some(Value::Null) => None,
        Some(rule) => Some(match rule.get("clusterRoleSelectors") {
            Some(Value::Array(s)) => s.clone(),
            _ => Vec::new(),
        }),
    }
}

/// The rules an aggregating role should hold given the current roles, or
/// None when one of its selectors is invalid.
fn aggregated_rules(roles: &[Value], me: usize, selectors: &[Value]) -> Option<Vec<PolicyRule>> {
    let my_name = name_of(&roles[me]);
    let mut by_name: Vec<&Value> = roles.iter().collect();
    by_name.sort_by(|a, b| name_of(a).cmp(name_of(b)));
    let empty = Map::new();
    for selector in selectors {
        label_selector_matches(selector, &empty).ok()?;
    }
    let mut out: Vec<PolicyRule> = Vec::new();
    for selector in selectors {
        for role in &by_name {
            if name_of(role) == my_name {
                continue;
            }
            let labels = labels_of(role).unwrap_or(&empty);
            if !label_selector_matches(selector, labels).ok()? {
                continue;
            }
            for rule in PolicyRule::list_from_object(role) {
                if !out.contains(&rule) {
                    out.push(rule);
                }
            }
        }
    }
    Some(out)
}

/// Aggregation: every ClusterRole with an `aggregationRule` gets the rules of
/// every other ClusterRole matched by its `clusterRoleSelectors` (matchLabels
/// and matchExpressions In/NotIn/Exists/DoesNotExist), selector by selector,
/// roles in name order, duplicates dropped. Aggregated roles feed each other
/// (admin takes edit, which takes view), so this runs to a fixed point.
///
/// Returns the updated ClusterRole objects whose rules changed (a controller
/// writes them), in input order. A role with an invalid selector is left
/// unchanged, as the controller fails to sync it.
pub fn aggregate(cluster_roles: &[Value]) -> Vec<Value> {
    let mut roles: Vec<Value> = cluster_roles.to_vec();
    // Each pass settles at least one more level of nesting; a cycle of
    // aggregating roles cannot run forever.
    for _ in 0..=roles.len() {
        let mut any = false;
        for i in 0..roles.len() {
            let Some(selectors) = selectors_of(&roles[i]) else {
                continue;
            };
            let Some(rules) = aggregated_rules(&roles, i, &selectors) else {
                continue;
            };
            if rules == PolicyRule::list_from_object(&roles[i]) {
                continue;
            }
            let json: Vec<Value> = rules.iter().map(PolicyRule::to_json).collect();
            if let Some(obj) = roles[i].as_object_mut() {
                obj.insert("rules".to_string(), Value::Array(json));
                any = true;
            }
        }
        if !any {
            break;
        }
    }
    roles
        .into_iter()
        .zip(cluster_roles)
        .filter(|(new, old)| PolicyRule::list_from_object(new) != PolicyRule::list_from_object(old))
        .map(|(new, _)| new)
        .collect()
}
