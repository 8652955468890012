//! Protobuf on the wire: kubectl's typed commands (the `create <kind>` generators of 1.32
//! and 1.33; its other verbs ask for JSON only) and requests built here from the k8s-pb
//! message types, decoded and compared with the JSON answers for the same objects. What
//! each request was really answered in is read from the server's
//! `rkube_responses_total{verb,resource,content_type}`, so a server that answered JSON to a
//! client accepting both would fail these tests.

mod common;

use std::collections::BTreeMap;

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

const JSON: &str = "application/json";

/// The server's count of answers to resource requests: (verb, resource, content type).
type Answers = BTreeMap<(String, String, String), u64>;

fn answers(s: &Server) -> Answers {
    let (code, _, body) = s.curl("GET", "/metrics", None, &[]);
    assert_eq!(code, 200, "{body}");
    let mut out = Answers::new();
    for line in body.lines().filter_map(|l| l.strip_prefix("rkube_responses_total{")) {
        let (labels, value) = line.rsplit_once("} ").expect("metric line");
        let get = |name: &str| {
            labels
                .split("\",")
                .find_map(|kv| kv.strip_prefix(&format!("{name}=\"")))
                .map(|v| v.trim_end_matches('"').to_string())
                .unwrap_or_else(|| panic!("no {name} in {line}"))
        };
        let key = (get("verb"), get("resource"), get("content_type"));
        if !key.1.is_empty() {
            out.insert(key, value.trim().parse().expect("counter value"));
        }
    }
    out
}

/// What `f` made the server answer to resource requests (counts by verb, resource and the
/// content type of the answer).
fn answered_during(s: &Server, f: impl FnOnce()) -> Answers {
    let before = answers(s);
    f();
    let mut delta = answers(s);
    for (k, n) in delta.iter_mut() {
        *n -= before.get(k).copied().unwrap_or(0);
    }
    delta.retain(|_, n| *n > 0);
    delta
}

fn answer(verb: &str, resource: &str, content_type: &str, n: u64) -> ((String, String, String), u64) {
    ((verb.into(), resource.into(), content_type.into()), n)
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
    // Each command and the resource its one request creates, answered in protobuf.
    let cmds: &[(&[&str], &str)] = &[
        (&["create", "namespace", "pbns"], "namespaces"),
        (&["create", "configmap", "cm1", "--from-literal=a=b", "-n", "pbns"], "configmaps"),
        (&["create", "secret", "generic", "sec1", "--from-literal=k=v", "-n", "pbns"], "secrets"),
        (&["create", "serviceaccount", "sa1", "-n", "pbns"], "serviceaccounts"),
        (&["create", "deployment", "web", "--image=nginx", "--replicas=2", "-n", "pbns"], "deployments"),
        (&["create", "service", "clusterip", "svc1", "--tcp=80:8080", "-n", "pbns"], "services"),
        (&["create", "job", "job1", "--image=busybox", "-n", "pbns"], "jobs"),
        (&["create", "cronjob", "cj1", "--image=busybox", "--schedule=*/5 * * * *", "-n", "pbns"], "cronjobs"),
        (&["create", "role", "r1", "--verb=get", "--resource=pods", "-n", "pbns"], "roles"),
        (&["create", "rolebinding", "rb1", "--role=r1", "--serviceaccount=pbns:sa1", "-n", "pbns"], "rolebindings"),
        (&["create", "clusterrole", "cr1", "--verb=list", "--resource=nodes"], "clusterroles"),
        (&["create", "clusterrolebinding", "crb1", "--clusterrole=cr1", "--group=g1"], "clusterrolebindings"),
    ];
    for (args, resource) in cmds {
        let seen = answered_during(&s, || {
            s.kubectl_ok(args);
        });
        assert_eq!(seen, Answers::from([answer("create", resource, PB, 1)]), "kubectl {args:?}");
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
    // kubectl 1.33 asks for protobuf (or JSON) only in its typed `create` generators; its
    // other verbs ask for JSON alone. Each command is checked for exactly the answers it
    // got: (verb, resource, content type) -> how many.
    let mut out = String::new();
    let mut run = |args: &[&str], want: &[(&str, &str, &str, u64)]| {
        let seen = answered_during(&s, || out = k(args));
        let want: Answers = want.iter().map(|(v, r, c, n)| answer(v, r, c, *n)).collect();
        assert_eq!(seen, want, "kubectl 1.33 {args:?}");
        std::mem::take(&mut out)
    };
    run(&["create", "namespace", "n133"], &[("create", "namespaces", PB, 1)]);
    run(&["create", "configmap", "c", "--from-literal=x=1", "-n", "n133"], &[("create", "configmaps", PB, 1)]);
    run(&["create", "deployment", "d", "--image=nginx", "-n", "n133"], &[("create", "deployments", PB, 1)]);
    let read_patch = [("get", "configmaps", JSON, 1), ("patch", "configmaps", JSON, 1)];
    run(&["label", "cm", "c", "l=v", "-n", "n133"], &read_patch);
    run(&["annotate", "cm", "c", "a=w", "-n", "n133"], &read_patch);
    run(
        &["scale", "deploy", "d", "--replicas=4", "-n", "n133"],
        &[("get", "deployments", JSON, 1), ("patch", "deployments/scale", JSON, 1)],
    );
    run(&["patch", "cm", "c", "-n", "n133", "-p", r#"{"data":{"x":"2"}}"#], &read_patch);
    let got = run(
        &["get", "cm", "c", "-n", "n133", "-o", "jsonpath={.data.x} {.metadata.labels.l}"],
        &[("get", "configmaps", JSON, 1)],
    );
    assert_eq!(got, "2 v");
    let got = run(
        &["get", "deploy", "d", "-n", "n133", "-o", "jsonpath={.spec.replicas}"],
        &[("get", "deployments", JSON, 1)],
    );
    assert_eq!(got, "4");
    // A Table, which is JSON.
    let list = run(&["get", "cm", "-n", "n133"], &[("list", "configmaps", JSON, 1)]);
    assert!(list.contains("c "), "{list}");
    // Then kubectl waits for it to be gone (a GET that finds nothing).
    run(&["delete", "cm", "c", "-n", "n133"], &[("delete", "configmaps", JSON, 1), ("get", "configmaps", JSON, 1)]);
    // The namespace's finalizer makes kubectl's wait a list and a watch, or only a GET when
    // it is already gone: only the content types are certain.
    let seen = answered_during(&s, || {
        k(&["delete", "namespace", "n133"]);
    });
    assert!(seen.contains_key(&answer("delete", "namespaces", JSON, 1).0), "{seen:?}");
    assert!(seen.keys().all(|(_, _, ct)| ct == JSON), "{seen:?}");
}

/// Protobuf answers to update (PUT) and patch, each followed by protobuf reads (GET, LIST,
/// WATCH) of the new revision: the server keeps protobuf encodings keyed by (key,
/// revision), and a read must never be answered from an older revision's entry, however
/// the newer revision was written (a protobuf write fills the cache itself; a JSON write
/// does not).
#[test]
fn protobuf_put_and_patch_then_reads_see_the_new_revision() {
    if !require("curl", &["--version"]) {
        return;
    }
    let s = Server::start();
    use k8s_pb::api::core::v1 as pb;
    use k8s_pb::apimachinery::pkg::apis::meta::v1 as meta;
    let path = "/api/v1/namespaces/default/configmaps";
    let obj_path = format!("{path}/fresh");
    let accept_pb = format!("Accept: {PB}");
    let cm = |data: &str, rv: Option<&str>| pb::ConfigMap {
        metadata: Some(meta::ObjectMeta {
            name: Some("fresh".into()),
            resource_version: rv.map(str::to_string),
            ..Default::default()
        }),
        data: [("a".to_string(), data.to_string())].into(),
        ..Default::default()
    };
    let decode = |body: &[u8]| -> (String, String) {
        let (api_version, kind, raw) = unwrap_envelope(body);
        assert_eq!((api_version.as_str(), kind.as_str()), ("v1", "ConfigMap"));
        let c = pb::ConfigMap::decode(raw.as_slice()).expect("ConfigMap");
        let rv = c.metadata.and_then(|m| m.resource_version).unwrap_or_default();
        (c.data.get("a").cloned().unwrap_or_default(), rv)
    };
    // What a protobuf GET, LIST and WATCH (from just before `rv`) answer for the object.
    let reads = |rv: &str| -> [(String, String); 3] {
        let (code, headers, body) = curl_bytes(&s, "GET", &obj_path, None, &[&accept_pb]);
        assert_eq!(code, 200, "{headers}");
        let get = decode(&body);
        let (_, _, body) =
            curl_bytes(&s, "GET", &format!("{path}?fieldSelector=metadata.name%3Dfresh"), None, &[&accept_pb]);
        let (_, kind, raw) = unwrap_envelope(&body);
        assert_eq!(kind, "ConfigMapList");
        let list = pb::ConfigMapList::decode(raw.as_slice()).unwrap();
        assert_eq!(list.items.len(), 1);
        let item = &list.items[0];
        let listed = (
            item.data.get("a").cloned().unwrap_or_default(),
            item.metadata.as_ref().and_then(|m| m.resource_version.clone()).unwrap_or_default(),
        );
        let before = rv.parse::<u64>().unwrap() - 1;
        let (_, _, stream) = curl_bytes(
            &s,
            "GET",
            &format!("{path}?watch=1&fieldSelector=metadata.name%3Dfresh&resourceVersion={before}&timeoutSeconds=1"),
            None,
            &[&format!("Accept: {PB};stream=watch")],
        );
        let len = u32::from_be_bytes(stream[..4].try_into().unwrap()) as usize;
        let ev = meta::WatchEvent::decode(&stream[4..4 + len]).unwrap();
        let watched = decode(&ev.object.and_then(|o| o.raw).unwrap());
        [get, listed, watched]
    };
    let json_get = || -> (String, String) {
        let (_, _, body) = s.curl("GET", &obj_path, None, &["Accept: application/json"]);
        let v: Value = serde_json::from_str(&body).unwrap();
        (v["data"]["a"].as_str().unwrap().to_string(), v["metadata"]["resourceVersion"].as_str().unwrap().to_string())
    };

    let pb_headers = [format!("Content-Type: {PB}"), accept_pb.clone()];
    let pb_headers: Vec<&str> = pb_headers.iter().map(String::as_str).collect();
    let (code, _, body) =
        curl_bytes(&s, "POST", path, Some(&envelope("v1", "ConfigMap", &cm("1", None).encode_to_vec())), &pb_headers);
    assert_eq!(code, 201, "{}", String::from_utf8_lossy(&body));
    let (_, rv1) = decode(&body);
    let first = reads(&rv1);
    assert!(first.iter().all(|r| *r == ("1".to_string(), rv1.clone())), "{first:?}");

    // PUT in protobuf, answered in protobuf.
    let put = envelope("v1", "ConfigMap", &cm("2", Some(&rv1)).encode_to_vec());
    let (code, headers, body) = curl_bytes(&s, "PUT", &obj_path, Some(&put), &pb_headers);
    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
    assert!(headers.to_ascii_lowercase().contains(&format!("content-type: {PB}")), "{headers}");
    let (data, rv2) = decode(&body);
    assert_eq!(data, "2");
    assert_ne!(rv2, rv1);
    assert_eq!(json_get(), ("2".to_string(), rv2.clone()));
    let after_put = reads(&rv2);
    assert!(
        after_put.iter().all(|r| *r == ("2".to_string(), rv2.clone())),
        "stale protobuf read after PUT: {after_put:?}"
    );

    // A merge patch answered in protobuf.
    let seen_patch = answered_during(&s, || {
        let (code, headers, body) = curl_bytes(
            &s,
            "PATCH",
            &obj_path,
            Some(br#"{"data":{"a":"3"}}"#),
            &["Content-Type: application/merge-patch+json", &accept_pb],
        );
        assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
        assert!(headers.to_ascii_lowercase().contains(&format!("content-type: {PB}")), "{headers}");
        let (data, rv3) = decode(&body);
        assert_eq!(data, "3");
        assert_eq!(json_get(), ("3".to_string(), rv3.clone()));
        let after_patch = reads(&rv3);
        assert!(
            after_patch.iter().all(|r| *r == ("3".to_string(), rv3.clone())),
            "stale protobuf read after PATCH: {after_patch:?}"
        );
    });
    assert_eq!(seen_patch.get(&answer("patch", "configmaps", PB, 0).0), Some(&1), "{seen_patch:?}");
    assert_eq!(seen_patch.get(&answer("get", "configmaps", PB, 0).0), Some(&1), "{seen_patch:?}");
    assert_eq!(seen_patch.get(&answer("list", "configmaps", PB, 0).0), Some(&1), "{seen_patch:?}");
    assert_eq!(seen_patch.get(&answer("watch", "configmaps", PB, 0).0), Some(&1), "{seen_patch:?}");

    // A write answered in JSON leaves the cache with the previous revision's encoding:
    // protobuf reads must still see the new one.
    let (code, _, body) = s.curl(
        "PATCH",
        &obj_path,
        Some(br#"{"data":{"a":"4"}}"#),
        &["Content-Type: application/merge-patch+json", "Accept: application/json"],
    );
    assert_eq!(code, 200, "{body}");
    let (data, rv4) = json_get();
    assert_eq!(data, "4");
    let after_json = reads(&rv4);
    assert!(
        after_json.iter().all(|r| *r == ("4".to_string(), rv4.clone())),
        "stale protobuf read after a JSON write: {after_json:?}"
    );

    let totals = answers(&s);
    assert_eq!(totals.get(&answer("update", "configmaps", PB, 0).0), Some(&1), "{totals:?}");
    assert_eq!(totals.get(&answer("create", "configmaps", PB, 0).0), Some(&1), "{totals:?}");
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
