//! Every patch type does bounded work whatever its input: deep nesting, long lists,
//! quadratic merges and copy bombs end in an error, not in a stack overflow or hours of CPU.

use proptest::prelude::*;
use rkube_patch::json_patch::{self, JsonPatchError, Limits};
use rkube_patch::{apply, apply_with_limit, schema_for, PatchError};
use serde_json::{json, Value};

const LIMITS: Limits = Limits { operations_max: 10_000, copy_bytes_max: 3 << 20, depth_max: 100 };

/// `levels` nested objects or arrays (as `kinds` says) around a scalar.
fn nest(levels: usize, kinds: &[bool]) -> Value {
    (0..levels).fold(json!("leaf"), |v, i| if kinds[i % kinds.len()] { json!({ "k": v }) } else { json!([v]) })
}

#[test]
fn distinct_set_elements_stop_at_the_work_bound() {
    // Finalizers merge as a set: 20,000 distinct values against 20,000 others would cost
    // 8 * 10^8 comparisons.
    let live = json!({"metadata": {"finalizers": (0..20_000).map(|i| format!("a{i}")).collect::<Vec<_>>()}});
    let patch = json!({"metadata": {"finalizers": (0..20_000).map(|i| format!("b{i}")).collect::<Vec<_>>()}});
    let got = apply(&live, &patch, schema_for("", "v1", "Pod"));
    assert_eq!(got, Err(PatchError::TooComplex { max: rkube_patch::WORK_MAX }));
    assert_eq!(PatchError::TooComplex { max: 1 }.http_status(), 413);
}

#[test]
fn keyed_lists_and_element_orders_are_charged() {
    let containers = |n: usize, p: &str| (0..n).map(|i| json!({"name": format!("{p}{i}")})).collect::<Vec<_>>();
    let live = json!({"spec": {"containers": containers(1000, "a")}});
    let patch = json!({"spec": {"containers": containers(1000, "b"),
        "$setElementOrder/containers": containers(1000, "b")}});
    let pod = schema_for("", "v1", "Pod");
    assert!(matches!(apply_with_limit(&live, &patch, pod, 100_000), Err(PatchError::TooComplex { .. })));
    // The same patch merges with the default bound: real patches are far below it.
    let merged = apply(&live, &patch, pod).expect("within the bound");
    assert_eq!(merged["spec"]["containers"].as_array().map(Vec::len), Some(2000));
    // Deleting many keyed elements one by one is charged too.
    let deletes: Vec<Value> = (0..1000).map(|i| json!({"$patch": "delete", "name": format!("a{i}")})).collect();
    let patch = json!({"spec": {"containers": deletes}});
    assert!(matches!(apply_with_limit(&live, &patch, pod, 100_000), Err(PatchError::TooComplex { .. })));
    assert_eq!(apply(&live, &patch, pod).expect("deletes")["spec"]["containers"], json!([]));
}

#[test]
fn primitive_list_deletions_are_charged() {
    let live = json!({"metadata": {"finalizers": (0..5000).map(|i| format!("a{i}")).collect::<Vec<_>>()}});
    let patch = json!({"metadata": {"$deleteFromPrimitiveList/finalizers": (0..5000).map(|i| format!("b{i}")).collect::<Vec<_>>()}});
    let pod = schema_for("", "v1", "Pod");
    assert!(matches!(apply_with_limit(&live, &patch, pod, 1_000_000), Err(PatchError::TooComplex { .. })));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, failure_persistence: None, ..ProptestConfig::default() })]

    /// Strategic merge of deeply nested documents and patches (as deep as a decoded body
    /// can be) finishes, with or without a schema.
    #[test]
    fn strategic_merge_of_deep_values_is_safe(
        a in 1usize..128, b in 1usize..128, kinds in prop::collection::vec(any::<bool>(), 1..4),
    ) {
        let live = json!({"spec": nest(a, &kinds)});
        let patch = json!({"spec": nest(b, &kinds), "metadata": {"labels": {"x": "y"}}});
        for schema in [None, schema_for("", "v1", "Pod")] {
            let _ = apply(&live, &patch, schema);
        }
    }

    /// JSON patches that nest, copy and move deep values keep the document within the
    /// depth bound, or refuse.
    #[test]
    fn json_patch_of_deep_values_stays_bounded(
        depth in 1usize..128, copies in 0usize..300, kinds in prop::collection::vec(any::<bool>(), 1..4),
    ) {
        let mut ops = vec![json!({"op": "add", "path": "/d", "value": nest(depth, &kinds)})];
        ops.extend((0..copies).map(|i| if i % 3 == 2 {
            json!({"op": "move", "from": "/d", "path": "/e"})
        } else {
            json!({"op": "copy", "from": "/d", "path": "/d/k"})
        }));
        match json_patch::apply(&json!({"d": {}}), Value::Array(ops), LIMITS) {
            Ok(doc) => prop_assert!(!rkube_depth_exceeds(&doc, LIMITS.depth_max)),
            Err(JsonPatchError::TooDeep | JsonPatchError::Apply(_)) => {}
            Err(e) => prop_assert!(false, "unexpected {e}"),
        }
    }
}

/// Depth as the API server counts it (the document itself is level 1).
fn rkube_depth_exceeds(v: &Value, max: usize) -> bool {
    fn depth(v: &Value) -> usize {
        match v {
            Value::Array(a) => 1 + a.iter().map(depth).max().unwrap_or(0),
            Value::Object(m) => 1 + m.values().map(depth).max().unwrap_or(0),
            _ => 0,
        }
    }
    depth(v) > max
}

#[test]
fn removing_many_keys_is_one_pass() {
    // 90,000 keys nulled by one patch: removed together, not one shift at a time.
    let keys: Vec<String> = (0..90_000).map(|i| format!("k{i}")).collect();
    let live = json!({"data": keys.iter().map(|k| (k.clone(), json!(""))).collect::<serde_json::Map<_, _>>()});
    let mut patch_data: serde_json::Map<String, Value> = keys.iter().map(|k| (k.clone(), Value::Null)).collect();
    patch_data.insert("kept".into(), json!("v"));
    let got = apply(&live, &json!({"data": patch_data}), schema_for("", "v1", "ConfigMap")).expect("merges");
    assert_eq!(got["data"], json!({"kept": "v"}));
    // Many $setElementOrder directives leave the patch in one pass too.
    let mut patch = serde_json::Map::new();
    for i in 0..20_000 {
        patch.insert(format!("$setElementOrder/l{i}"), json!([1]));
        patch.insert(format!("l{i}"), json!([1]));
    }
    let got = apply(&json!({}), &Value::Object(patch), None).expect("merges");
    assert_eq!(got.as_object().map(|m| m.len()), Some(20_000));
    assert!(got.as_object().unwrap().keys().all(|k| !k.starts_with('$')));
}
