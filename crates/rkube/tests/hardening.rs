//! Attacks on the real binary (issue 16's findings), each answered as kube-apiserver
//! answers it where it has an answer, with nothing stored and the server still serving.

mod common;

use common::{require, Server};
use prost::Message;
use serde_json::{json, Value};

const CM: &str = "/api/v1/namespaces/default/configmaps";
const JSON: &str = "Content-Type: application/json";

fn status(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

/// The server answers and stores nothing under `path`.
fn assert_serving_and_absent(s: &Server, path: &str) {
    let (code, _, body) = s.curl("GET", path, None, &[]);
    assert_eq!(code, 404, "{path} must not exist: {body}");
    let (code, _, _) = s.curl_anon("GET", "/healthz");
    assert_eq!(code, 200, "the server still serves");
}

fn envelope(api_version: &str, kind: &str, raw: Vec<u8>) -> Vec<u8> {
    use k8s_pb::apimachinery::pkg::runtime::{TypeMeta, Unknown};
    let unknown = Unknown {
        type_meta: Some(TypeMeta { api_version: Some(api_version.into()), kind: Some(kind.into()) }),
        raw: Some(raw),
        content_encoding: Some(String::new()),
        content_type: Some(String::new()),
    };
    let mut out = b"k8s\0".to_vec();
    out.extend(unknown.encode_to_vec());
    out
}

/// A SelfSubjectAccessReview whose managedFields hold another enveloped review, `levels`
/// times over: the 27 KB body that overflowed a worker's stack.
fn nested_review(levels: usize) -> Vec<u8> {
    use k8s_pb::api::authorization::v1 as authz;
    use k8s_pb::apimachinery::pkg::apis::meta::v1 as meta;
    let review = |fields: Option<Vec<u8>>| {
        let managed = fields
            .map(|raw| {
                vec![meta::ManagedFieldsEntry {
                    fields_v1: Some(meta::FieldsV1 { raw: Some(raw) }),
                    ..Default::default()
                }]
            })
            .unwrap_or_default();
        let r = authz::SelfSubjectAccessReview {
            metadata: Some(meta::ObjectMeta { managed_fields: managed, ..Default::default() }),
            spec: Some(authz::SelfSubjectAccessReviewSpec {
                resource_attributes: Some(authz::ResourceAttributes {
                    verb: Some("get".into()),
                    resource: Some("pods".into()),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        envelope("authorization.k8s.io/v1", "SelfSubjectAccessReview", r.encode_to_vec())
    };
    (0..levels).fold(review(None), |inner, _| review(Some(inner)))
}

/// A CustomResourceDefinition whose schema nests `levels` properties deep (built on a
/// thread with room for prost's recursion).
fn nested_crd(levels: usize) -> Vec<u8> {
    std::thread::Builder::new()
        .stack_size(256 << 20)
        .spawn(move || nested_crd_here(levels))
        .expect("thread")
        .join()
        .expect("built")
}

fn nested_crd_here(levels: usize) -> Vec<u8> {
    use k8s_pb::apiextensions_apiserver::pkg::apis::apiextensions::v1 as ext;
    use k8s_pb::apimachinery::pkg::apis::meta::v1 as meta;
    let schema =
        (0..levels).fold(ext::JsonSchemaProps { r#type: Some("string".into()), ..Default::default() }, |inner, _| {
            ext::JsonSchemaProps {
                r#type: Some("object".into()),
                properties: [("p".to_string(), inner)].into_iter().collect(),
                ..Default::default()
            }
        });
    let crd = ext::CustomResourceDefinition {
        metadata: Some(meta::ObjectMeta { name: Some("deeps.example.com".into()), ..Default::default() }),
        spec: Some(ext::CustomResourceDefinitionSpec {
            group: Some("example.com".into()),
            names: Some(ext::CustomResourceDefinitionNames {
                plural: Some("deeps".into()),
                kind: Some("Deep".into()),
                ..Default::default()
            }),
            scope: Some("Namespaced".into()),
            versions: vec![ext::CustomResourceDefinitionVersion {
                name: Some("v1".into()),
                served: Some(true),
                storage: Some(true),
                schema: Some(ext::CustomResourceValidation { open_apiv3_schema: Some(schema) }),
                ..Default::default()
            }],
            ..Default::default()
        }),
        ..Default::default()
    };
    envelope("apiextensions.k8s.io/v1", "CustomResourceDefinition", crd.encode_to_vec())
}

/// Finding 1: no body nests deeper than the bound, in any format, and no input reaches a
/// stack overflow. kube-apiserver's JSON answer is "exceeded max depth" (at 10,000 levels;
/// rkube's bound is 100, far beyond real objects).
#[test]
fn deep_nesting_is_refused_in_every_format() {
    if !require("curl", &["--version"]) {
        return;
    }
    let s = Server::start();
    let pb = "Content-Type: application/vnd.kubernetes.protobuf";
    let ssar = "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews";
    let body = nested_review(600);
    assert!(body.len() < 64 * 1024, "the attack is small: {} bytes", body.len());
    let (code, _, text) = s.curl("POST", ssar, Some(&body), &[pb]);
    assert_eq!(code, 400, "{text}");
    assert!(text.contains("fieldsV1 is not JSON"), "managed fields are JSON, never a nested object: {text}");
    // An ordinary protobuf review still works.
    let (code, _, text) = s.curl("POST", ssar, Some(&nested_review(0)), &[pb]);
    assert_eq!(code, 201, "{text}");

    let crds = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions";
    let (code, _, text) = s.curl("POST", crds, Some(&nested_crd(2000)), &[pb]);
    assert_eq!(code, 400, "{text}");
    assert!(status(&text)["message"].as_str().unwrap().contains("exceeded max depth"), "{text}");
    // 47 levels of properties reach exactly the bound (100 levels of JSON): accepted, and
    // read back in both formats (the typed model and the codecs recurse that deep).
    let (code, _, text) = s.curl("POST", crds, Some(&nested_crd(47)), &[pb]);
    assert_eq!(code, 201, "{text}");
    let (code, _, text) = s.curl("GET", &format!("{crds}/deeps.example.com"), None, &[]);
    assert_eq!(code, 200, "{text}");
    let (code, _, _) =
        s.curl("GET", &format!("{crds}/deeps.example.com"), None, &["Accept: application/vnd.kubernetes.protobuf"]);
    assert_eq!(code, 200);
    let (code, _, text) = s.curl("DELETE", &format!("{crds}/deeps.example.com"), None, &[]);
    assert_eq!(code, 200, "{text}");
    let (code, _, text) = s.curl("POST", crds, Some(&nested_crd(48)), &[pb]);
    assert_eq!(code, 400, "one level more is refused: {text}");
    assert!(common::wait_for(std::time::Duration::from_secs(10), || s
        .curl("GET", &format!("{crds}/deeps.example.com"), None, &[])
        .0
        == 404));

    let deep_json = |levels: usize| {
        format!(
            r#"{{"apiVersion":"v1","kind":"ConfigMap","metadata":{{"name":"deep","annotations":{}{}}}}}"#,
            "[".repeat(levels),
            "]".repeat(levels)
        )
    };
    for levels in [10_001, 120] {
        let (code, _, text) = s.curl("POST", CM, Some(deep_json(levels).as_bytes()), &[JSON]);
        assert_eq!(code, 400, "{text}");
        let message = status(&text)["message"].as_str().unwrap().to_string();
        assert!(
            message.starts_with("the object provided is unrecognized (must be of type ConfigMap): couldn't get version/kind; json parse error: exceeded max depth"),
            "{message}"
        );
    }
    let yaml = format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: deep\ndata: {}{}\n",
        "[".repeat(127),
        "]".repeat(127)
    );
    let (code, _, text) = s.curl("POST", CM, Some(yaml.as_bytes()), &["Content-Type: application/yaml"]);
    assert_eq!(code, 400, "{text}");
    assert_serving_and_absent(&s, &format!("{CM}/deep"));

    // A JSON patch that nests the object deeper with each copy stops at the bound.
    let (code, _, _) = s.curl("POST", CM, Some(br#"{"metadata":{"name":"grow"},"data":{}}"#), &[JSON]);
    assert_eq!(code, 201);
    let ops: Vec<Value> =
        (0..300).map(|_| json!({"op": "copy", "from": "/metadata/labels", "path": "/metadata/labels/x"})).collect();
    let mut all = vec![json!({"op": "add", "path": "/metadata/labels", "value": {}})];
    all.extend(ops);
    let (code, _, text) = s.curl(
        "PATCH",
        &format!("{CM}/grow"),
        Some(serde_json::to_string(&all).unwrap().as_bytes()),
        &["Content-Type: application/json-patch+json"],
    );
    assert_eq!(code, 422, "{text}");
    assert!(text.contains("exceeded max depth"), "{text}");
}

/// Finding 2: a 75 KB YAML alias bomb (225 million values once expanded) is refused with
/// kube-apiserver's words; ordinary aliases still work.
#[test]
fn yaml_alias_bomb_is_refused() {
    if !require("curl", &["--version"]) {
        return;
    }
    let s = Server::start();
    let n = 15_000;
    let bomb = format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: bomb\nx: &a [{}]\ny: [{}]\n",
        vec!["1"; n].join(","),
        vec!["*a"; n].join(",")
    );
    let yaml = "Content-Type: application/yaml";
    let (code, _, text) = s.curl("POST", CM, Some(bomb.as_bytes()), &[yaml]);
    assert_eq!(code, 400, "{text}");
    let st = status(&text);
    assert_eq!(st["reason"], "BadRequest");
    // kube-apiserver: the same words, with the body's first 30 bytes in hex.
    assert_eq!(
        st["message"],
        "the object provided is unrecognized (must be of type ConfigMap): yaml: document contains excessive aliasing (61706956657273696f6e3a2076310a6b696e643a20436f6e6669674d6170 ...)"
    );
    assert_serving_and_absent(&s, &format!("{CM}/bomb"));
    // Few values, long strings: 3,000 aliases of a 1 MiB string would be 3 GB.
    let strings = format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: bomb\ndata:\n  x: &a \"{}\"\nfoo: [{}]\n",
        "s".repeat(1 << 20),
        vec!["*a"; 3000].join(",")
    );
    let (code, _, text) = s.curl("POST", CM, Some(strings.as_bytes()), &[yaml]);
    assert_eq!(code, 400, "{}", &text[..text.len().min(300)]);
    assert!(text.contains("document contains excessive aliasing"), "{}", &text[..text.len().min(300)]);
    assert_serving_and_absent(&s, &format!("{CM}/bomb"));
    let ok = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: alias\n  labels: &l\n    a: b\n  annotations: *l\n";
    let (code, _, text) = s.curl("POST", CM, Some(ok.as_bytes()), &[yaml]);
    assert_eq!(code, 201, "{text}");
    assert_eq!(status(&text)["metadata"]["annotations"], json!({"a": "b"}));
}

/// Finding 3: every patch type is bounded before it works. JSON patches as kube-apiserver
/// bounds them (10,000 operations: 413; copies adding more than 3 MiB: 422), strategic
/// merges by a bound of comparisons (413).
#[test]
fn patches_are_bounded_before_they_work() {
    if !require("curl", &["--version"]) {
        return;
    }
    let s = Server::start();
    let (code, _, _) = s.curl("POST", CM, Some(br#"{"metadata":{"name":"cp"},"data":{"a":"b"}}"#), &[JSON]);
    assert_eq!(code, 201);
    let (_, _, before) = s.curl("GET", &format!("{CM}/cp"), None, &[]);
    let jp = "Content-Type: application/json-patch+json";
    let patch = |body: &Value, ct: &str| s.curl("PATCH", &format!("{CM}/cp"), Some(body.to_string().as_bytes()), &[ct]);

    let ops = Value::Array(vec![json!({"op": "test", "path": "/metadata/name", "value": "cp"}); 10_001]);
    let (code, _, text) = patch(&ops, jp);
    assert_eq!(code, 413);
    let st = status(&text);
    assert_eq!(st["reason"], "RequestEntityTooLarge");
    assert_eq!(
        st["message"],
        "Request entity too large: The allowed maximum operations in a JSON patch is 10000, got 10001"
    );

    // 24 copies of a 1 KiB list into itself: 16 GiB if done.
    let mut ops = vec![json!({"op": "add", "path": "/metadata/annotations", "value": {"l": "x"}})];
    ops.push(json!({"op": "add", "path": "/metadata/finalizers", "value": ["a".repeat(1024)]}));
    ops.extend(
        (0..24).map(|_| json!({"op": "copy", "from": "/metadata/finalizers", "path": "/metadata/finalizers/-"})),
    );
    let body = Value::Array(ops);
    assert!(body.to_string().len() < 4096);
    let (code, _, text) = patch(&body, jp);
    assert_eq!(code, 422, "{text}");
    let st = status(&text);
    assert_eq!(st["reason"], "Invalid");
    assert!(st["message"].as_str().unwrap().contains("accumulated size increase of copy"), "{text}");

    // A strategic merge of 20,000 distinct finalizers into 20,000 others.
    let list = |p: &str| (0..20_000).map(|i| format!("{p}{i}")).collect::<Vec<_>>();
    let (code, _, text) =
        patch(&json!({"metadata": {"finalizers": list("a")}}), "Content-Type: application/merge-patch+json");
    assert_eq!(code, 200, "{text}");
    let (code, _, text) =
        patch(&json!({"metadata": {"finalizers": list("b")}}), "Content-Type: application/strategic-merge-patch+json");
    assert_eq!(code, 413, "{text}");
    assert_eq!(status(&text)["reason"], "RequestEntityTooLarge");
    let (_, _, after) = s.curl("GET", &format!("{CM}/cp"), None, &[]);
    let (before, after) = (status(&before), status(&after));
    assert_eq!(after["metadata"]["finalizers"].as_array().map(Vec::len), Some(20_000), "only the merge patch applied");
    assert_eq!(after["data"], before["data"]);
    // Clean up so the namespace can go (finalizers hold the object).
    let (code, _, _) = patch(&json!({"metadata": {"finalizers": null}}), "Content-Type: application/merge-patch+json");
    assert_eq!(code, 200);
}

/// Finding 6: ConfigMap and Secret data at most 1 MiB (422 with kube-apiserver's message),
/// any stored object at most etcd's 1.5 MiB (413; kube-apiserver passes etcd's refusal on
/// as a 500), whether it arrives whole or grows by patches.
#[test]
fn object_sizes_are_bounded() {
    if !require("curl", &["--version"]) {
        return;
    }
    let s = Server::start();
    let mib = 1 << 20;
    let cm = |name: &str, n: usize| json!({"metadata": {"name": name}, "data": {"a": "y".repeat(n)}}).to_string();
    let (code, _, text) = s.curl("POST", CM, Some(cm("big", mib + 1).as_bytes()), &[JSON]);
    assert_eq!(code, 422);
    let st = status(&text);
    assert_eq!(st["message"], "ConfigMap \"big\" is invalid: []: Too long: must have at most 1048576 bytes");
    assert_eq!(
        st["details"],
        json!({"name": "big", "kind": "ConfigMap", "causes": [{"reason": "FieldValueTooLong",
            "message": "Too long: must have at most 1048576 bytes", "field": "[]"}]})
    );
    assert_serving_and_absent(&s, &format!("{CM}/big"));
    let (code, _, _) = s.curl("POST", CM, Some(cm("max", mib).as_bytes()), &[JSON]);
    assert_eq!(code, 201, "exactly 1 MiB is allowed");

    use base64::Engine;
    let secret = json!({"metadata": {"name": "big"}, "data": {"a": base64::engine::general_purpose::STANDARD.encode(vec![b'y'; mib + 1])}});
    let (code, _, text) =
        s.curl("POST", "/api/v1/namespaces/default/secrets", Some(secret.to_string().as_bytes()), &[JSON]);
    assert_eq!(code, 422);
    assert_eq!(status(&text)["message"], "Secret \"big\" is invalid: data: Too long: must have at most 1048576 bytes");

    // A 2 KB merge patch cannot grow a ConfigMap past the bound either.
    let (code, _, _) = s.curl("POST", CM, Some(cm("grow", 10).as_bytes()), &[JSON]);
    assert_eq!(code, 201);
    let mut ops = vec![json!({"op": "add", "path": "/data/b", "value": "y".repeat(1000)})];
    ops.extend((0..1100).map(|i| json!({"op": "copy", "from": "/data/b", "path": format!("/data/c{i}")})));
    let (code, _, text) = s.curl(
        "PATCH",
        &format!("{CM}/grow"),
        Some(Value::Array(ops).to_string().as_bytes()),
        &["Content-Type: application/json-patch+json"],
    );
    assert_eq!(code, 422, "{text}");
    assert!(text.contains("must have at most 1048576 bytes"), "{text}");

    // Any kind: a 2 MB Role is more than etcd takes.
    let rules = vec![
        json!({"apiGroups": [""], "resources": ["pods"], "verbs": ["get"], "resourceNames": ["x".repeat(1000)]});
        2000
    ];
    let role = json!({"metadata": {"name": "big"}, "rules": rules}).to_string();
    let roles = "/apis/rbac.authorization.k8s.io/v1/namespaces/default/roles";
    let (code, _, text) = s.curl("POST", roles, Some(role.as_bytes()), &[JSON]);
    assert_eq!(code, 413, "{text}");
    let st = status(&text);
    assert_eq!(st["reason"], "RequestEntityTooLarge");
    assert!(st["message"].as_str().unwrap().contains("more than the limit of 1572864 bytes"), "{text}");
    assert_serving_and_absent(&s, &format!("{roles}/big"));
    // Over the bound in JSON, under it in protobuf (binary data is base64 in JSON): stored,
    // as etcd would store it.
    let full = json!({"metadata": {"name": "full", "annotations": {"a": "z".repeat(250_000)}},
        "binaryData": {"b": base64::engine::general_purpose::STANDARD.encode(vec![7u8; mib])}})
    .to_string();
    assert!(full.len() > 1536 * 1024);
    let (code, _, text) = s.curl("POST", CM, Some(full.as_bytes()), &[JSON]);
    assert_eq!(code, 201, "{}", &text[..text.len().min(300)]);
}
