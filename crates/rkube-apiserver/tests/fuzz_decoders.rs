//! A bounded fuzz run of every decoder on the request path, as CI runs it (proptest, a
//! fixed number of cases, no persistence): arbitrary and deeply nested input must come
//! back as a value or an error, never a panic or a stack overflow. Covered: request bodies
//! in JSON, YAML and protobuf, the typed round trip and validation of every built-in kind,
//! each patch type, label and field selectors, bearer tokens and the token file.

use proptest::prelude::*;
use rkube_apiserver::codec::{self, BodyFormat};
use serde_json::{json, Value};

/// Arbitrary JSON values, nested up to `depth` levels, with Kubernetes-ish keys so typed
/// decoding gets past the first field now and then.
fn json_value(depth: u32) -> impl Strategy<Value = Value> {
    let key = prop_oneof![
        Just("metadata".to_string()),
        Just("spec".to_string()),
        Just("name".to_string()),
        Just("containers".to_string()),
        Just("data".to_string()),
        Just("$patch".to_string()),
        Just("$setElementOrder/containers".to_string()),
        "[a-z$/]{0,8}",
    ];
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        ".{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(depth, 256, 8, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((key.clone(), inner), 0..6).prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

fn builtins() -> Vec<std::sync::Arc<rkube_api::ResourceDef>> {
    let table = rkube_api::ResourceTable::default();
    rkube_api::builtin::register_builtins(&table);
    table.snapshot().resources.clone()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, failure_persistence: None, ..ProptestConfig::default() })]

    /// Bytes as a body in every format.
    #[test]
    fn bodies_in_every_format(bytes in prop::collection::vec(any::<u8>(), 0..512), text in ".{0,256}") {
        for format in [BodyFormat::Json, BodyFormat::Yaml, BodyFormat::Protobuf, BodyFormat::ApplyPatch] {
            let _ = codec::decode(format, &bytes);
            let _ = codec::decode(format, text.as_bytes());
        }
        let mut enveloped = rkube_proto::MAGIC.to_vec();
        enveloped.extend_from_slice(&bytes);
        let _ = codec::decode(BodyFormat::Protobuf, &enveloped);
    }

    /// Any JSON object through every built-in kind's typed round trip, defaults and
    /// validation, and back through protobuf.
    #[test]
    fn typed_round_trip_of_every_kind(v in json_value(6)) {
        for def in builtins() {
            let mut obj = json!({"apiVersion": def.api_version(), "kind": def.kind});
            if let Value::Object(m) = &v {
                for (k, x) in m {
                    obj[k] = x.clone();
                }
            }
            if let Ok(mut typed) = def.strategy.canonicalize(&obj) {
                def.strategy.default(&mut typed);
                let mut errs = vec![];
                def.strategy.validate(&typed, &mut errs);
                def.strategy.validate_update(&typed, &obj, &mut errs);
                if let Ok(pb) = rkube_proto::encode_object(&typed) {
                    let _ = rkube_proto::decode_object(&pb);
                }
            }
        }
    }

    /// Every patch type on any document with any patch.
    #[test]
    fn patches_of_any_shape(doc in json_value(5), patch in json_value(5)) {
        let pod = rkube_patch::schema_for("", "v1", "Pod");
        let _ = rkube_patch::apply(&doc, &patch, pod);
        let _ = rkube_patch::apply(&doc, &patch, None);
        let mut merged = doc.clone();
        json_patch::merge(&mut merged, &patch);
        let limits = rkube_patch::json_patch::Limits { operations_max: 10_000, copy_bytes_max: 3 << 20, depth_max: 100 };
        let _ = rkube_patch::json_patch::apply(&doc, patch.clone(), limits);
        // Operation lists that parse: paths into the document.
        let ops = json!([{"op": "copy", "from": "/spec", "path": "/spec/x"}, {"op": "move", "from": "/spec", "path": "/metadata/y"},
            {"op": "add", "path": "/metadata/z", "value": patch}, {"op": "test", "path": "/metadata", "value": doc}]);
        let _ = rkube_patch::json_patch::apply(&json!({"spec": {}, "metadata": {}}), ops, limits);
    }

    /// Label and field selectors, from query strings and from objects.
    #[test]
    fn selectors(text in "[a-z0-9=!,()<> ./\\\\-]{0,40}", raw in ".{0,40}", obj in json_value(4)) {
        for s in [text.as_str(), raw.as_str()] {
            if let Ok(sel) = rkube_api::selector::LabelSelector::parse(s) {
                let _ = sel.matches(obj.as_object());
            }
            let _ = rkube_api::selector::FieldSelector::parse(s);
        }
        let _ = rkube_api::selector::LabelSelector::from_object(&obj);
    }

    /// Bearer tokens (service-account JWTs) and token files.
    #[test]
    fn tokens(garbage in ".{0,200}", parts in prop::collection::vec("[A-Za-z0-9_-]{0,40}", 0..5), csv in ".{0,200}") {
        let issuer = issuer();
        let _ = issuer.verify(&garbage);
        let _ = issuer.verify(&parts.join("."));
        let _ = rkube_apiserver::authn::TokenFile::parse(&csv);
    }
}

fn issuer() -> &'static rkube_apiserver::tokens::TokenIssuer {
    static ISSUER: std::sync::OnceLock<rkube_apiserver::tokens::TokenIssuer> = std::sync::OnceLock::new();
    ISSUER.get_or_init(|| {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
        rkube_apiserver::tokens::TokenIssuer::new(&key.serialize_pem(), &key.public_key_pem()).expect("issuer")
    })
}
