//! Property tests.
//!
//! 1. On documents made only of objects and scalars, a strategic merge
//!    patch without schema is exactly an RFC 7386 JSON merge patch.
//! 2. On arbitrary documents sprinkled with directives and merge keys,
//!    `apply` never panics, and a successful result holds no directive keys.

use proptest::prelude::*;
use rkube_patch::{apply, schema_for, SchemaRef};
use serde_json::{Map, Value};

/// RFC 7386 section 2, written straight from the pseudo-code.
fn merge_patch(target: &Value, patch: &Value) -> Value {
    let Value::Object(patch) = patch else {
        return patch.clone();
    };
    let mut result = match target {
        Value::Object(t) => t.clone(),
        _ => Map::new(),
    };
    for (name, value) in patch {
        if value.is_null() {
            result.remove(name);
        } else {
            let current = result.get(name).cloned().unwrap_or(Value::Null);
            result.insert(name.clone(), merge_patch(&current, value));
        }
    }
    Value::Object(result)
}

fn scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i32>().prop_map(Value::from),
        "[a-z]{0,4}".prop_map(Value::String),
    ]
}

/// Objects and scalars only; keys from a small alphabet so patch and
/// original collide often.
fn maps_only() -> impl Strategy<Value = Value> {
    scalar().prop_recursive(4, 48, 5, |inner| {
        prop::collection::btree_map("[a-e]", inner, 0..5).prop_map(|m| Value::Object(m.into_iter().collect()))
    })
}

fn object(strategy: impl Strategy<Value = Value>) -> impl Strategy<Value = Value> {
    prop::collection::btree_map("[a-e]", strategy, 0..5).prop_map(|m| Value::Object(m.into_iter().collect()))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn schemaless_smp_equals_json_merge_patch(
        original in object(maps_only()),
        patch in object(maps_only()),
    ) {
        let got = apply(&original, &patch, None);
        prop_assert_eq!(got, Ok(merge_patch(&original, &patch)));
    }
}

/// Keys that exercise every code path: directives, merge keys, typed fields.
const KEYS: &[&str] = &[
    "$patch",
    "$retainKeys",
    "$setElementOrder/containers",
    "$setElementOrder/finalizers",
    "$setElementOrder/env",
    "$deleteFromPrimitiveList/finalizers",
    "$deleteFromPrimitiveList/x",
    "metadata",
    "finalizers",
    "spec",
    "template",
    "containers",
    "env",
    "ports",
    "containerPort",
    "name",
    "value",
    "x",
];

fn chaotic() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        (0i64..4).prop_map(Value::from),
        prop::sample::select(vec!["a", "b", "delete", "replace", "merge", "name", "x"]).prop_map(Value::from),
    ];
    leaf.prop_recursive(5, 64, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(prop::sample::select(KEYS.to_vec()), inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())),
        ]
    })
}

fn has_directive(v: &Value) -> bool {
    match v {
        Value::Object(map) => map.iter().any(|(k, child)| {
            k == "$patch"
                || k == "$retainKeys"
                || k.starts_with("$setElementOrder")
                || k.starts_with("$deleteFromPrimitiveList")
                || has_directive(child)
        }),
        Value::Array(items) => items.iter().any(has_directive),
        _ => false,
    }
}

fn schemas() -> Vec<Option<SchemaRef>> {
    vec![None, schema_for("", "v1", "Pod"), schema_for("apps", "v1", "Deployment")]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    #[test]
    fn never_panics_and_strips_directives(
        original in chaotic(),
        patch in chaotic(),
        which in 0usize..3,
    ) {
        let schema = schemas()[which];
        // The original may carry directive-looking keys of its own; only
        // check results built from directive-free originals.
        if let Ok(result) = apply(&original, &patch, schema) {
            if !has_directive(&original) {
                prop_assert!(!has_directive(&result), "directive left in {}", result);
            }
        }
    }

    #[test]
    fn pod_shaped_patches_never_panic(
        containers in prop::collection::vec(chaotic(), 0..4),
        patch_containers in prop::collection::vec(chaotic(), 0..4),
        order in prop::collection::vec(chaotic(), 0..4),
    ) {
        let original = serde_json::json!({"spec": {"containers": containers}});
        let patch = serde_json::json!({"spec": {
            "$setElementOrder/containers": order,
            "containers": patch_containers,
        }});
        let _ = apply(&original, &patch, schema_for("", "v1", "Pod"));
    }
}
