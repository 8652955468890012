use proptest::prelude::*;
use prost::Message;
use serde_json::{json, Value};

use super::*;

fn reference(name: &str) -> Value {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/reference/kube-apiserver-v1.28.7/objects")
        .join(name);
    serde_json::from_str(&std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))).unwrap()
}

/// Objects as kube-apiserver returned them (shared/reference/.../objects).
const REFERENCE_OBJECTS: &[&str] = &[
    "pod-defaulted.json",
    "deployment-defaulted.json",
    "service-defaulted.json",
    "job-defaulted.json",
    "cronjob-defaulted.json",
    "daemonset-defaulted.json",
    "configmap-kube-root-ca.json",
    "serviceaccount-default.json",
];

/// Objects a real kube-apiserver (1.28) answered as JSON and as protobuf (testdata/
/// kube-apiserver, written by its capture.sh), chosen for their zero values: Go keeps a
/// set zero of a pointer (`leaseTransitions`, `spec.replicas`, `holderIdentity: ""`) and
/// of a field without omitempty (`restartCount`, StatefulSet `status.replicas`), and
/// drops the zero of any other scalar (Deployment `status.replicas`, `generation`).
const CAPTURED: &[&str] = &["configmap", "deployment", "job", "lease", "pdb", "pod", "service", "statefulset"];

fn captured(name: &str) -> (Value, Vec<u8>) {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/kube-apiserver");
    let read = |ext: &str| {
        let p = dir.join(format!("{name}.{ext}"));
        std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
    };
    (serde_json::from_slice(&read("json")).unwrap(), read("pb"))
}

/// kube-apiserver's protobuf decodes to exactly the JSON kube-apiserver gives.
#[test]
fn captured_protobuf_decodes_to_kube_apiservers_json() {
    for name in CAPTURED {
        let (json, pb) = captured(name);
        assert_eq!(decode_object(&pb).unwrap_or_else(|e| panic!("{name}: {e}")), json, "{name}");
    }
}

/// kube-apiserver's JSON survives JSON -> protobuf -> JSON exactly, and the meaningful
/// zeros are on the wire, as prost's k8s-pb types read them.
#[test]
fn captured_json_round_trips_with_its_zeros() {
    use k8s_pb::api::{apps::v1 as apps, coordination::v1 as coordination, core::v1 as core, policy::v1 as policy};
    let encoded = |name: &str| {
        let (json, _) = captured(name);
        let bytes = encode_object(&json).unwrap();
        assert_eq!(decode_object(&bytes).unwrap(), json, "{name}");
        let (_, _, raw) = decode_envelope(&bytes).unwrap();
        raw.to_vec()
    };
    let lease = coordination::Lease::decode(&encoded("lease")[..]).unwrap().spec.unwrap();
    assert_eq!((lease.lease_transitions, lease.holder_identity.as_deref()), (Some(0), Some("")));
    let d = apps::Deployment::decode(&encoded("deployment")[..]).unwrap();
    assert_eq!(d.spec.unwrap().replicas, Some(0));
    let s = apps::StatefulSet::decode(&encoded("statefulset")[..]).unwrap();
    assert_eq!((s.spec.unwrap().replicas, s.status.unwrap().replicas), (Some(0), Some(0)));
    let pdb = policy::PodDisruptionBudget::decode(&encoded("pdb")[..]).unwrap();
    assert_eq!(pdb.spec.unwrap().min_available.and_then(|m| m.int_val), Some(0));
    let pod = core::Pod::decode(&encoded("pod")[..]).unwrap();
    let status = &pod.status.unwrap().container_statuses[0];
    assert_eq!((status.restart_count, status.ready), (Some(0), Some(false)));
    for name in CAPTURED {
        encoded(name);
    }
}

/// Real objects as kube-apiserver returned them survive JSON -> protobuf -> JSON.
#[test]
fn reference_objects_round_trip() {
    for f in REFERENCE_OBJECTS {
        let obj = reference(f);
        let bytes = encode_object(&obj).unwrap_or_else(|e| panic!("{f}: {e}"));
        assert!(bytes.starts_with(MAGIC));
        let back = decode_object(&bytes).unwrap_or_else(|e| panic!("{f}: {e}"));
        assert_eq!(back, obj, "{f}");
    }
}

/// Our table-driven encoding agrees with prost's encoding of the k8s-pb message types.
#[test]
fn agrees_with_prost_for_k8s_pb_types() {
    use k8s_pb::api::core::v1 as pb;
    use k8s_pb::apimachinery::pkg::apis::meta::v1 as meta;
    let pod = pb::Pod {
        metadata: Some(meta::ObjectMeta {
            name: Some("p".into()),
            namespace: Some("ns".into()),
            labels: [("app".to_string(), "x".to_string())].into(),
            creation_timestamp: Some(meta::Time { seconds: Some(1_700_000_000), nanos: None }),
            ..Default::default()
        }),
        spec: Some(pb::PodSpec {
            containers: vec![pb::Container {
                name: Some("c".into()),
                image: Some("busybox".into()),
                ports: vec![pb::ContainerPort {
                    container_port: Some(8080),
                    protocol: Some("TCP".into()),
                    ..Default::default()
                }],
                resources: Some(pb::ResourceRequirements {
                    limits: [(
                        "cpu".to_string(),
                        k8s_pb::apimachinery::pkg::api::resource::Quantity { string: Some("250m".into()) },
                    )]
                    .into(),
                    ..Default::default()
                }),
                ..Default::default()
            }],
            termination_grace_period_seconds: Some(0),
            ..Default::default()
        }),
        status: None,
    };
    let bytes = pod.encode_to_vec();
    let m = message("k8s.io.api.core.v1.Pod").expect("Pod in table");
    let v = to_json(m, &bytes).unwrap();
    assert_eq!(
        v,
        json!({
            "metadata": {"name": "p", "namespace": "ns", "creationTimestamp": "2023-11-14T22:13:20Z", "labels": {"app": "x"}},
            "spec": {"containers": [{"name": "c", "image": "busybox", "ports": [{"containerPort": 8080, "protocol": "TCP"}],
                     "resources": {"limits": {"cpu": "250m"}}}], "terminationGracePeriodSeconds": 0}
        })
    );
    // And prost reads what we write.
    let ours = from_json(m, &v).unwrap();
    let decoded = pb::Pod::decode(ours.as_slice()).unwrap();
    assert_eq!(decoded, pod);
}

#[test]
fn special_types() {
    let svc = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"},
        "spec": {"ports": [{"port": 80, "targetPort": "http"}, {"port": 81, "targetPort": 8081}]}});
    let back = decode_object(&encode_object(&svc).unwrap()).unwrap();
    assert_eq!(back["spec"]["ports"][0]["targetPort"], "http");
    assert_eq!(back["spec"]["ports"][1]["targetPort"], 8081);
    let secret = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, "data": {"k": "aGVsbG8="}, "type": "Opaque"});
    assert_eq!(decode_object(&encode_object(&secret).unwrap()).unwrap(), secret);
    let bad = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, "data": {"k": "%%%"}});
    assert!(matches!(encode_object(&bad), Err(ProtoError::Value { .. })));
    let ev = json!({"apiVersion": "events.k8s.io/v1", "kind": "Event", "metadata": {"name": "e"},
        "eventTime": "2026-01-02T03:04:05.123456Z", "reason": "R"});
    assert_eq!(decode_object(&encode_object(&ev).unwrap()).unwrap(), ev);
    let status = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": "m", "reason": "NotFound",
        "details": {"name": "x", "kind": "pods"}, "code": 404});
    assert_eq!(decode_object(&encode_object(&status).unwrap()).unwrap(), status);
}

#[test]
fn envelope_errors() {
    assert_eq!(decode_object(b"{\"kind\":\"Pod\"}"), Err(ProtoError::BadMagic));
    let good =
        encode_object(&json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"a": "b"}}))
            .unwrap();
    for cut in [5, 8, good.len() - 3] {
        assert!(decode_object(&good[..cut]).is_err(), "truncated at {cut}");
    }
    let unknown = encode_envelope("example.com/v1", "Widget", b"");
    assert!(matches!(decode_object(&unknown), Err(ProtoError::UnknownType(_))));
    assert!(has_message("apps", "v1", "Deployment"));
    assert!(has_message("rbac.authorization.k8s.io", "v1", "ClusterRole"));
    assert!(has_message("", "v1", "DeleteOptions") && has_message("apps", "v1", "DeleteOptions"));
    assert!(!has_message("example.com", "v1", "Widget"));
}

#[test]
fn watch_frames_round_trip() {
    let obj = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "resourceVersion": "5"}});
    let frame = encode_watch_event("ADDED", &obj).unwrap();
    let len = u32::from_be_bytes(frame[..4].try_into().unwrap()) as usize;
    assert_eq!(len, frame.len() - 4);
    let (ty, back) = decode_watch_event(&frame[4..]).unwrap();
    assert_eq!((ty.as_str(), back), ("ADDED", obj));
}

#[test]
fn table_is_sorted_and_consistent() {
    let all = generated::MESSAGES;
    assert!(all.windows(2).all(|w| w[0].name < w[1].name), "sorted for binary search");
    for m in all {
        for f in m.fields {
            if let Ty::Message(n) = f.ty {
                assert!(message(n).is_some(), "{}.{} refers to unknown {n}", m.name, f.json);
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]
    /// Garbage never panics: it decodes to something or fails with an error.
    #[test]
    fn garbage_never_panics(body in proptest::collection::vec(any::<u8>(), 0..256)) {
        let mut with_magic = MAGIC.to_vec();
        with_magic.extend_from_slice(&body);
        let _ = decode_object(&with_magic);
        let _ = decode_object(&body);
        if let Some(m) = message("k8s.io.api.core.v1.Pod") {
            let _ = to_json(m, &body);
        }
        let _ = decode_watch_event(&body);
    }

    /// ConfigMaps with arbitrary keys and values round-trip exactly.
    #[test]
    fn configmaps_round_trip(data in proptest::collection::btree_map("[a-z0-9._-]{1,12}", ".{0,20}", 1..6), name in "[a-z][a-z0-9-]{0,20}") {
        let obj = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": data});
        let back = decode_object(&encode_object(&obj).unwrap()).unwrap();
        prop_assert_eq!(back, obj);
    }
}

/// Go embedded structs are nested in protobuf and flat in JSON, both ways, as prost sees it.
#[test]
fn embedded_structs_are_flat_in_json() {
    use k8s_pb::api::core::v1 as pb;
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {
        "volumes": [{"name": "v", "configMap": {"name": "cm", "defaultMode": 420}}],
        "containers": [{"name": "c", "image": "i",
            "env": [{"name": "E", "valueFrom": {"configMapKeyRef": {"name": "cm", "key": "k"}}}],
            "readinessProbe": {"httpGet": {"path": "/", "port": 80}, "periodSeconds": 5}}]}});
    let bytes = encode_object(&pod).unwrap();
    assert_eq!(decode_object(&bytes).unwrap(), pod);
    let (_, _, raw) = decode_envelope(&bytes).unwrap();
    let typed = pb::Pod::decode(raw).unwrap();
    let spec = typed.spec.unwrap();
    let vol = &spec.volumes[0];
    let cm = vol.volume_source.as_ref().and_then(|s| s.config_map.as_ref()).unwrap();
    assert_eq!(cm.local_object_reference.as_ref().and_then(|r| r.name.as_deref()), Some("cm"));
    let probe = spec.containers[0].readiness_probe.as_ref().unwrap();
    assert_eq!(probe.handler.as_ref().and_then(|h| h.http_get.as_ref()).and_then(|g| g.path.as_deref()), Some("/"));
}

/// The streaming transcoder writes what the value-based encoder writes (decoded alike).
#[test]
fn transcoder_agrees_with_value_encoder() {
    for f in REFERENCE_OBJECTS {
        let obj = reference(f);
        let api_version = obj["apiVersion"].as_str().unwrap();
        let kind = obj["kind"].as_str().unwrap();
        let fast = encode_json_bytes(api_version, kind, &serde_json::to_vec(&obj).unwrap()).unwrap();
        assert_eq!(decode_object(&fast).unwrap(), obj, "{f}");
    }
    let item = serde_json::to_vec(&reference("pod-defaulted.json")).unwrap();
    let msg = message_bytes("v1", "Pod", &item).unwrap();
    let list = encode_list_messages("v1", "PodList", &json!({"resourceVersion": "9"}), &[&msg, &msg]).unwrap();
    let back = decode_object(&list).unwrap();
    assert_eq!(back["metadata"]["resourceVersion"], "9");
    assert_eq!(back["items"].as_array().unwrap().len(), 2);
    assert_eq!(back["items"][1], {
        let mut p = reference("pod-defaulted.json");
        p.as_object_mut().unwrap().remove("kind");
        p.as_object_mut().unwrap().remove("apiVersion");
        p
    });
    assert!(encode_json_bytes("v1", "Pod", b"{\"spec\": 5}").is_err());
    assert!(encode_json_bytes("v1", "Pod", b"{not json").is_err());
}

#[test]
fn custom_groups_never_have_a_message() {
    assert!(crate::has_message("apps", "v1", "Deployment"));
    assert!(crate::has_message("apiextensions.k8s.io", "v1", "CustomResourceDefinition"));
    assert!(crate::has_message("apiextensions.k8s.io", "v1", "CustomResourceDefinitionList"));
    // A custom resource named like a built-in kind, in a group whose first label matches.
    assert!(!crate::has_message("apps.example.com", "v1", "Deployment"));
    assert!(!crate::has_message("stable.example.com", "v1", "CronTab"));
    assert!(!crate::has_message("cluster.x-k8s.io", "v1beta1", "Cluster"));
}

/// Envelopes and watch frames are byte for byte what prost writes for `runtime.Unknown`
/// and `meta.v1.WatchEvent`, for short and long type names and payloads.
#[test]
fn envelopes_and_frames_agree_with_prost() {
    use k8s_pb::apimachinery::pkg::apis::meta::v1::WatchEvent;
    use k8s_pb::apimachinery::pkg::runtime::{RawExtension, TypeMeta, Unknown};
    let long_kind = "K".repeat(130);
    for (api_version, kind, raw) in [
        ("v1", "Pod", vec![1u8, 2, 3]),
        ("apps/v1", "Deployment", vec![]),
        ("example.k8s.io/v1", long_kind.as_str(), vec![7u8; 300]),
    ] {
        let want = Unknown {
            type_meta: Some(TypeMeta { api_version: Some(api_version.into()), kind: Some(kind.into()) }),
            raw: Some(raw.clone()),
            content_encoding: Some(String::new()),
            content_type: Some(String::new()),
        };
        let mut expected = MAGIC.to_vec();
        expected.extend(want.encode_to_vec());
        let ours = encode_envelope(api_version, kind, &raw);
        assert_eq!(ours, expected, "{kind}");
        for ty in ["ADDED", "BOOKMARK"] {
            let ev = WatchEvent { r#type: Some(ty.into()), object: Some(RawExtension { raw: Some(ours.clone()) }) };
            let body = ev.encode_to_vec();
            let mut framed = (body.len() as u32).to_be_bytes().to_vec();
            framed.extend(body);
            assert_eq!(watch_frame(ty, &ours), framed);
        }
    }
    // The range of a transcoded body is its message, as `message_bytes` writes it alone.
    let item = serde_json::to_vec(&reference("pod-defaulted.json")).unwrap();
    let (body, range) = encode_json_bytes_ranged("v1", "Pod", &item).unwrap();
    assert_eq!(body[range.clone()], message_bytes("v1", "Pod", &item).unwrap()[..]);
    assert_eq!(decode_envelope(&body).unwrap().2, &body[range]);
}

/// Protobuf allows a list's (or map's) elements to be split by other fields: they are
/// merged, and keys keep the order of their first appearance.
#[test]
fn split_repeated_fields_are_merged() {
    use k8s_pb::api::core::v1 as pb;
    let c = |name: &str| pb::Container { name: Some(name.into()), ..Default::default() };
    let mut bytes = pb::PodSpec { containers: vec![c("a")], ..Default::default() }.encode_to_vec();
    bytes.extend(pb::PodSpec { hostname: Some("h".into()), ..Default::default() }.encode_to_vec());
    bytes.extend(pb::PodSpec { containers: vec![c("b")], ..Default::default() }.encode_to_vec());
    bytes.extend(
        pb::PodSpec { node_selector: [("k".to_string(), "v".to_string())].into(), ..Default::default() }
            .encode_to_vec(),
    );
    bytes.extend(
        pb::PodSpec { node_selector: [("l".to_string(), "w".to_string())].into(), ..Default::default() }
            .encode_to_vec(),
    );
    let v = to_json(message("k8s.io.api.core.v1.PodSpec").unwrap(), &bytes).unwrap();
    assert_eq!(
        serde_json::to_string(&v).unwrap(),
        r#"{"containers":[{"name":"a"},{"name":"b"}],"hostname":"h","nodeSelector":{"k":"v","l":"w"}}"#
    );
}

/// A write's answer encoded from its value before the store gave it a resourceVersion
/// decodes (ours and prost) to the object as stored, revision included.
#[test]
fn unstored_objects_are_finished_with_their_revision() {
    use k8s_pb::api::core::v1 as pb;
    let mut pod = reference("pod-defaulted.json");
    pod["metadata"].as_object_mut().unwrap().remove("resourceVersion");
    let unstored = Unstored::encode(&pod).unwrap();
    let (body, range) = unstored.finish("4711");
    pod["metadata"]["resourceVersion"] = json!("4711");
    assert_eq!(decode_object(&body).unwrap(), pod);
    let (api_version, kind, raw) = decode_envelope(&body).unwrap();
    assert_eq!((api_version.as_str(), kind.as_str(), raw), ("v1", "Pod", &body[range]));
    let typed = pb::Pod::decode(raw).unwrap();
    let meta = typed.metadata.unwrap();
    assert_eq!(meta.resource_version.as_deref(), Some("4711"));
    assert_eq!(meta.name.as_deref(), pod["metadata"]["name"].as_str());
    assert_eq!(meta.labels.len(), pod["metadata"]["labels"].as_object().map_or(0, |m| m.len()));
    // An update's value still carries the old revision: the new one wins.
    pod["metadata"]["resourceVersion"] = json!("1");
    let (body, _) = Unstored::encode(&pod).unwrap().finish("2");
    assert_eq!(decode_object(&body).unwrap()["metadata"]["resourceVersion"], "2");
    assert!(Unstored::encode(&json!({"apiVersion": "example.com/v1", "kind": "Widget"})).is_err());
}

/// Appends the varint of `n`.
fn push_varint(out: &mut Vec<u8>, mut n: usize) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

/// A JSONSchemaProps nested `levels` deep through `properties`, wrapped byte by byte (a
/// deep prost value would itself need a deep stack to encode).
fn nested_schema(levels: usize) -> Vec<u8> {
    use k8s_pb::apiextensions_apiserver::pkg::apis::apiextensions::v1::JsonSchemaProps;
    let probe =
        JsonSchemaProps { properties: [("p".to_string(), JsonSchemaProps::default())].into(), ..Default::default() };
    let probe = probe.encode_to_vec();
    let key_len = probe.iter().position(|b| b & 0x80 == 0).unwrap() + 1;
    let key = &probe[..key_len];
    let mut inner = JsonSchemaProps { r#type: Some("string".into()), ..Default::default() }.encode_to_vec();
    for _ in 0..levels {
        let mut entry = vec![0x0a, 1, b'p', 0x12];
        push_varint(&mut entry, inner.len());
        entry.extend(inner);
        let mut out = key.to_vec();
        push_varint(&mut out, entry.len());
        out.extend(entry);
        inner = out;
    }
    inner
}

/// An AdmissionReview whose request object is another enveloped AdmissionReview, `levels`
/// times over (nesting through RawExtension).
fn nested_admission_review(levels: usize) -> Vec<u8> {
    use k8s_pb::api::admission::v1 as adm;
    use k8s_pb::apimachinery::pkg::runtime::RawExtension;
    let wrap = |raw: Option<Vec<u8>>| {
        let review = adm::AdmissionReview {
            request: Some(adm::AdmissionRequest {
                uid: Some("u".into()),
                object: raw.map(|raw| RawExtension { raw: Some(raw) }),
                ..Default::default()
            }),
            ..Default::default()
        };
        encode_envelope("admission.k8s.io/v1", "AdmissionReview", &review.encode_to_vec())
    };
    (0..levels).fold(wrap(None), |inner, _| wrap(Some(inner)))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, failure_persistence: None, ..ProptestConfig::default() })]

    /// However deep the input nests, decoding stops at the bound with an error, on a
    /// test thread's ordinary stack: each properties level is two JSON levels.
    #[test]
    fn deep_messages_stop_at_the_bound(levels in 1usize..4000) {
        let m = message("k8s.io.apiextensions_apiserver.pkg.apis.apiextensions.v1.JSONSchemaProps").unwrap();
        let got = to_json(m, &nested_schema(levels));
        if 2 * levels < DEPTH_MAX {
            prop_assert!(got.is_ok(), "{got:?}");
        } else {
            prop_assert_eq!(got, Err(ProtoError::TooDeep));
        }
    }

    /// Objects nested in RawExtensions count their envelopes' levels too.
    #[test]
    fn deep_raw_extensions_stop_at_the_bound(levels in 0usize..2000) {
        let got = decode_object(&nested_admission_review(levels));
        // Each level: review, request, object (whose envelope adds one); the innermost
        // review's request is level 3 * levels + 2.
        if 3 * levels + 2 <= DEPTH_MAX {
            prop_assert!(got.is_ok(), "{levels}: {got:?}");
        } else {
            prop_assert_eq!(got, Err(ProtoError::TooDeep));
        }
    }
}

/// The bounds above, exactly at their edges (a random run rarely lands on them).
#[test]
fn depth_bounds_at_their_edges() {
    let m = message("k8s.io.apiextensions_apiserver.pkg.apis.apiextensions.v1.JSONSchemaProps").unwrap();
    for levels in 45..55 {
        let got = to_json(m, &nested_schema(levels));
        assert_eq!(got.is_ok(), 2 * levels < DEPTH_MAX, "{levels}: {got:?}");
    }
    for levels in 28..38 {
        let got = decode_object(&nested_admission_review(levels));
        assert_eq!(got.is_ok(), 3 * levels + 2 <= DEPTH_MAX, "{levels}: {got:?}");
    }
}

/// Managed fields are JSON in protobuf too: an enveloped object there is refused, as Go,
/// which never decodes it, would fail to write it as JSON.
#[test]
fn fields_v1_is_never_a_nested_object() {
    use k8s_pb::apimachinery::pkg::apis::meta::v1 as meta;
    let entry = |raw: &[u8]| {
        meta::ManagedFieldsEntry { fields_v1: Some(meta::FieldsV1 { raw: Some(raw.to_vec()) }), ..Default::default() }
            .encode_to_vec()
    };
    let m = message("k8s.io.apimachinery.pkg.apis.meta.v1.ManagedFieldsEntry").unwrap();
    assert_eq!(to_json(m, &entry(br#"{"f:data":{}}"#)).unwrap(), json!({"fieldsV1": {"f:data": {}}}));
    let enveloped = encode_envelope("v1", "ConfigMap", &[]);
    assert!(matches!(to_json(m, &entry(&enveloped)), Err(ProtoError::Wire(w)) if w.contains("fieldsV1 is not JSON")));
}
