//! Protobuf on the wire: kubectl's typed commands (the `create <kind>` generators of 1.32,
//! everything of 1.33) and requests built here from the k8s-pb message types, decoded and
//! compared with the JSON answers for the same objects.

mod common;

use common::{require, Server};
use prost::Message;
use serde_json::{json, Value};

const PB: &str = "application/vnd.kubernetes.protobuf";

fn envelope(api_version: &str, kind: &str, raw: &[u8]) -> Vec<u8> {
    let unknown = k8s_pb::apimachinery::pkg::runtime::Unknown {
        type_meta: Some(k8s_pb::apimachinery::pkg::runtime::TypeMeta {
            api_version: Some(api_version.into()),
            kind: Some(kind.into()),
        }),
        raw: Some(raw.to_vec()),
        content_encoding: Some(String::new()),
        content_type: Some(String::new()),
    };
    let mut out = b"k8s\0".to_vec();
    out.extend_from_slice(&unknown.encode_to_vec());
    out
}

fn unwrap_envelope(body: &[u8]) -> (String, String, Vec<u8>) {
    assert!(body.starts_with(b"k8s\0"), "protobuf magic: {:?}", &body[..body.len().min(16)]);
    let u = k8s_pb::apimachinery::pkg::runtime::Unknown::decode(&body[4..]).expect("runtime.Unknown");
    let tm = u.type_meta.unwrap_or_default();
    (tm.api_version.unwrap_or_default(), tm.kind.unwrap_or_default(), u.raw.unwrap_or_default())
}

fn curl_bytes(s: &Server, method: &str, path: &str, body: Option<&[u8]>, headers: &[&str]) -> (u16, String, Vec<u8>) {
    s.curl_raw(true, method, path, body, headers)
}

#[test]
fn kubectl_create_generators_speak_protobuf() {
    if !require("kubectl", &["version", "--client"]) {
        return;
    }
    let s = Server::start();
    let cmds: &[&[&str]] = &[
        &["create", "namespace", "pbns"],
        &["create", "configmap", "cm1", "--from-literal=a=b", "-n", "pbns"],
        &["create", "secret", "generic", "sec1", "--from-literal=k=v", "-n", "pbns"],
        &["create", "serviceaccount", "sa1", "-n", "pbns"],
        &["create", "deployment", "web", "--image=nginx", "--replicas=2", "-n", "pbns"],
        &["create", "service", "clusterip", "svc1", "--tcp=80:8080", "-n", "pbns"],
        &["create", "job", "job1", "--image=busybox", "-n", "pbns"],
        &["create", "cronjob", "cj1", "--image=busybox", "--schedule=*/5 * * * *", "-n", "pbns"],
        &["create", "role", "r1", "--verb=get", "--resource=pods", "-n", "pbns"],
        &["create", "rolebinding", "rb1", "--role=r1", "--serviceaccount=pbns:sa1", "-n", "pbns"],
        &["create", "clusterrole", "cr1", "--verb=list", "--resource=nodes"],
        &["create", "clusterrolebinding", "crb1", "--clusterrole=cr1", "--group=g1"],
    ];
    for args in cmds {
        s.kubectl_ok(args);
    }
    assert_eq!(s.kubectl_ok(&["get", "cm", "cm1", "-n", "pbns", "-o", "jsonpath={.data.a}"]), "b");
    assert_eq!(s.kubectl_ok(&["get", "secret", "sec1", "-n", "pbns", "-o", "jsonpath={.data.k}"]), "dg==");
    assert_eq!(
        s.kubectl_ok(&[
            "get",
            "deploy",
            "web",
            "-n",
            "pbns",
            "-o",
            "jsonpath={.spec.replicas} {.spec.template.spec.containers[0].image} {.spec.strategy.type}"
        ]),
        "2 nginx RollingUpdate"
    );
    assert_eq!(
        s.kubectl_ok(&["get", "svc", "svc1", "-n", "pbns", "-o", "jsonpath={.spec.ports[0].targetPort}"]),
        "8080"
    );
    assert_eq!(s.kubectl_ok(&["get", "rolebinding", "rb1", "-n", "pbns", "-o", "jsonpath={.subjects[0].name}"]), "sa1");
    // Unset Go fields are not invented: no empty strings in the stored pod template.
    let dep = s.kubectl_ok(&["get", "deploy", "web", "-n", "pbns", "-o", "json"]);
    assert!(!dep.contains("\"\""), "no empty-string fields: {dep}");
    s.kubectl_ok(&["delete", "namespace", "pbns"]);
}

#[test]
fn kubectl_1_33_through_every_verb() {
    let bin = "/usr/lib/google-cloud-sdk/bin/kubectl.1.33";
    if !std::path::Path::new(bin).exists() {
        if std::env::var_os("CI").is_some() {
            panic!("{bin} is required in CI");
        }
        eprintln!("SKIPPED: {bin} not present");
        return;
    }
    let s = Server::start();
    let k = |args: &[&str]| -> String {
        let out = s.kubectl_bin(bin, args);
        assert!(out.status.success(), "kubectl 1.33 {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    k(&["create", "namespace", "n133"]);
    k(&["create", "configmap", "c", "--from-literal=x=1", "-n", "n133"]);
    k(&["create", "deployment", "d", "--image=nginx", "-n", "n133"]);
    k(&["label", "cm", "c", "l=v", "-n", "n133"]);
    k(&["annotate", "cm", "c", "a=w", "-n", "n133"]);
    k(&["scale", "deploy", "d", "--replicas=4", "-n", "n133"]);
    k(&["patch", "cm", "c", "-n", "n133", "-p", r#"{"data":{"x":"2"}}"#]);
    assert_eq!(k(&["get", "cm", "c", "-n", "n133", "-o", "jsonpath={.data.x} {.metadata.labels.l}"]), "2 v");
    assert_eq!(k(&["get", "deploy", "d", "-n", "n133", "-o", "jsonpath={.spec.replicas}"]), "4");
    let list = k(&["get", "cm", "-n", "n133"]);
    assert!(list.contains("c "), "{list}");
    k(&["delete", "cm", "c", "-n", "n133"]);
    k(&["delete", "namespace", "n133"]);
}

#[test]
fn raw_protobuf_requests_match_json() {
    if !require("curl", &["--version"]) {
        return;
    }
    let s = Server::start();
    use k8s_pb::api::core::v1 as pb;
    use k8s_pb::apimachinery::pkg::apis::meta::v1 as meta;
    let cm = pb::ConfigMap {
        metadata: Some(meta::ObjectMeta {
            name: Some("pbcm".into()),
            labels: [("k".to_string(), "v".to_string())].into(),
            ..Default::default()
        }),
        data: [("a".to_string(), "1".to_string())].into(),
        ..Default::default()
    };
    let body = envelope("v1", "ConfigMap", &cm.encode_to_vec());
    let path = "/api/v1/namespaces/default/configmaps";
    let (code, headers, resp) =
        curl_bytes(&s, "POST", path, Some(&body), &[&format!("Content-Type: {PB}"), &format!("Accept: {PB}")]);
    assert_eq!(code, 201, "{headers}{}", String::from_utf8_lossy(&resp));
    assert!(headers.to_lowercase().contains("content-type: application/vnd.kubernetes.protobuf"), "{headers}");
    let (api_version, kind, raw) = unwrap_envelope(&resp);
    assert_eq!((api_version.as_str(), kind.as_str()), ("v1", "ConfigMap"));
    let created = pb::ConfigMap::decode(raw.as_slice()).unwrap();
    let uid = created.metadata.as_ref().and_then(|m| m.uid.clone()).unwrap_or_default();
    assert!(!uid.is_empty());

    // GET in protobuf equals GET in JSON.
    let (_, _, pbget) = curl_bytes(&s, "GET", &format!("{path}/pbcm"), None, &[&format!("Accept: {PB}")]);
    let got = pb::ConfigMap::decode(unwrap_envelope(&pbget).2.as_slice()).unwrap();
    let (_, _, json) = s.curl("GET", &format!("{path}/pbcm"), None, &["Accept: application/json"]);
    let j: Value = serde_json::from_str(&json).unwrap();
    let m = got.metadata.clone().unwrap();
    assert_eq!(m.uid.as_deref(), j["metadata"]["uid"].as_str());
    assert_eq!(m.resource_version.as_deref(), j["metadata"]["resourceVersion"].as_str());
    assert_eq!(got.data.get("a").map(String::as_str), j["data"]["a"].as_str());

    // LIST in protobuf.
    let (_, _, pblist) = curl_bytes(&s, "GET", path, None, &[&format!("Accept: {PB}")]);
    let (_, kind, raw) = unwrap_envelope(&pblist);
    assert_eq!(kind, "ConfigMapList");
    let list = pb::ConfigMapList::decode(raw.as_slice()).unwrap();
    let names: Vec<_> = list.items.iter().filter_map(|i| i.metadata.as_ref().and_then(|m| m.name.clone())).collect();
    assert_eq!(names, ["kube-root-ca.crt", "pbcm"]);

    // WATCH in protobuf: length-prefixed WatchEvents with enveloped objects.
    let rv = j["metadata"]["resourceVersion"].as_str().unwrap().parse::<u64>().unwrap() - 1;
    let (code, headers, stream) = curl_bytes(
        &s,
        "GET",
        &format!("{path}?watch=1&resourceVersion={rv}&timeoutSeconds=1"),
        None,
        &[&format!("Accept: {PB};stream=watch")],
    );
    assert_eq!(code, 200);
    assert!(headers.contains("stream=watch"), "{headers}");
    let len = u32::from_be_bytes(stream[..4].try_into().unwrap()) as usize;
    let ev = meta::WatchEvent::decode(&stream[4..4 + len]).unwrap();
    assert_eq!(ev.r#type.as_deref(), Some("ADDED"));
    let inner = ev.object.and_then(|o| o.raw).unwrap();
    let obj = pb::ConfigMap::decode(unwrap_envelope(&inner).2.as_slice()).unwrap();
    assert_eq!(obj.metadata.and_then(|m| m.name).as_deref(), Some("pbcm"));

    // Bad input: wrong magic, truncated envelope, kind that does not match the URL.
    for (bad, want) in [
        (b"XXXX\x0a\x00".to_vec(), 400),
        (body[..body.len() - 5].to_vec(), 400),
        (envelope("v1", "Secret", &pb::Secret::default().encode_to_vec()), 400),
    ] {
        let (code, _, resp) = curl_bytes(&s, "POST", path, Some(&bad), &[&format!("Content-Type: {PB}")]);
        let status: Value = serde_json::from_slice(&resp).unwrap_or(Value::Null);
        assert_eq!((code, status["reason"].as_str()), (want, Some("BadRequest")), "{}", String::from_utf8_lossy(&resp));
    }
    // Errors come back as protobuf Status when asked for.
    let (code, _, resp) = curl_bytes(&s, "GET", &format!("{path}/missing"), None, &[&format!("Accept: {PB}")]);
    assert_eq!(code, 404);
    let (_, kind, raw) = unwrap_envelope(&resp);
    assert_eq!(kind, "Status");
    let st = meta::Status::decode(raw.as_slice()).unwrap();
    assert_eq!((st.code, st.reason.as_deref()), (Some(404), Some("NotFound")));
}

/// Custom resources have no protobuf message: protobuf bodies are refused with 415 and
/// nothing is stored, `Accept: protobuf, json` gets JSON (objects, lists, watches), and a
/// protobuf-only Accept is 406; kubectl 1.33 (protobuf for built-ins) works with them.
#[test]
fn custom_resources_answer_json() {
    let s = Server::start();
    let crd = json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "crontabs.stable.example.com"},
        "spec": {"group": "stable.example.com", "scope": "Namespaced",
                 "names": {"plural": "crontabs", "kind": "CronTab"},
                 "versions": [{"name": "v1", "served": true, "storage": true,
                               "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}]}
    });
    let (code, _, body) = s.curl(
        "POST",
        "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
        Some(crd.to_string().as_bytes()),
        &["Content-Type: application/json", &format!("Accept: {PB}")],
    );
    assert_eq!(code, 201, "{body}");
    let path = "/apis/stable.example.com/v1/namespaces/default/crontabs";
    assert!(common::wait_for(std::time::Duration::from_secs(10), || s.curl("GET", path, None, &[]).0 == 200));

    let raw = br#"{"spec":{"image":"x"}}"#;
    let (code, headers, body) = curl_bytes(
        &s,
        "POST",
        path,
        Some(&envelope("stable.example.com/v1", "CronTab", raw)),
        &[&format!("Content-Type: {PB}")],
    );
    let text = String::from_utf8_lossy(&body);
    assert_eq!(code, 415, "{text}");
    assert!(headers.to_ascii_lowercase().contains("content-type: application/json"), "{headers}");
    let status: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(status["reason"], "UnsupportedMediaType");
    let (_, _, list) = s.curl("GET", path, None, &[]);
    assert_eq!(serde_json::from_str::<Value>(&list).unwrap()["items"], json!([]), "nothing stored");

    let both = format!("Accept: {PB}, application/json");
    let obj =
        br#"{"apiVersion":"stable.example.com/v1","kind":"CronTab","metadata":{"name":"c1"},"spec":{"image":"x"}}"#;
    let (code, headers, body) = s.curl("POST", path, Some(obj), &["Content-Type: application/json", &both]);
    assert_eq!(code, 201, "{body}");
    assert!(headers.to_ascii_lowercase().contains("content-type: application/json"), "{headers}");
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["spec"]["image"], "x");
    for p in [format!("{path}/c1"), path.to_string(), format!("{path}?watch=1&timeoutSeconds=1")] {
        let (code, headers, body) = s.curl("GET", &p, None, &[&both]);
        assert_eq!(code, 200, "{p}: {body}");
        assert!(headers.to_ascii_lowercase().contains("content-type: application/json"), "{p}: {headers}");
        assert!(body.contains("\"c1\""), "{p}: {body}");
    }
    let (code, _, body) = s.curl("GET", &format!("{path}/c1"), None, &[&format!("Accept: {PB}")]);
    assert_eq!(code, 406, "{body}");

    let bin = "/usr/lib/google-cloud-sdk/bin/kubectl.1.33";
    if !std::path::Path::new(bin).exists() {
        assert!(std::env::var_os("CI").is_none(), "{bin} is required in CI");
        eprintln!("SKIPPED: {bin} not present");
        return;
    }
    let out = s.kubectl_bin(bin, &["get", "crontabs", "c1", "-o", "jsonpath={.spec.image}"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "x", "{}", String::from_utf8_lossy(&out.stderr));
    let out = s.kubectl_bin(bin, &["delete", "crontabs", "c1"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}
