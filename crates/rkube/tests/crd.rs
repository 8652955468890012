//! CustomResourceDefinitions with the real kubectl and curl: a definition becomes a served
//! resource (discovery, CRUD, status subresource, Tables), survives a restart, and takes its
//! objects with it when deleted.

mod common;

use std::time::Duration;

use common::{require, wait_for, Server};
use serde_json::{json, Value};

pub const CRD: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: crontabs.stable.example.com
spec:
  group: stable.example.com
  scope: Namespaced
  names: {plural: crontabs, singular: crontab, kind: CronTab, shortNames: [ct]}
  versions:
  - name: v1
    served: true
    storage: true
    subresources: {status: {}}
    schema:
      openAPIV3Schema:
        type: object
        x-kubernetes-preserve-unknown-fields: true
"#;

const CRONTAB: &str = r#"
apiVersion: stable.example.com/v1
kind: CronTab
metadata: {name: my-new-cron-object}
spec: {cronSpec: "* * * * */5", image: my-awesome-cron-image}
"#;

fn apply(s: &Server, dir: &std::path::Path, name: &str, yaml: &str) -> String {
    let f = dir.join(name);
    std::fs::write(&f, yaml).unwrap();
    s.kubectl_ok(&["apply", "-f", f.to_str().unwrap()])
}

const CT_PATH: &str = "/apis/stable.example.com/v1/namespaces/default/crontabs";

#[test]
fn a_definition_becomes_a_served_resource() {
    if !require("kubectl", &["version", "--client"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut s = Server::start_in(dir.path(), &[]);
    let files = tempfile::tempdir().unwrap();
    apply(&s, files.path(), "crd.yaml", CRD);
    s.kubectl_ok(&["wait", "--for=condition=Established", "crd/crontabs.stable.example.com", "--timeout=10s"]);
    let out = s.kubectl_ok(&["api-resources", "--api-group=stable.example.com"]);
    assert!(
        out.lines().any(|l| l.split_whitespace().collect::<Vec<_>>()
            == ["crontabs", "ct", "stable.example.com/v1", "true", "CronTab"]),
        "{out}"
    );

    assert!(apply(&s, files.path(), "ct.yaml", CRONTAB).contains("created"));
    assert!(apply(&s, files.path(), "ct.yaml", CRONTAB).contains("unchanged"));
    let out = s.kubectl_ok(&["get", "ct"]);
    let header: Vec<&str> = out.lines().next().unwrap_or("").split_whitespace().collect();
    assert_eq!(header, ["NAME", "AGE"], "custom resources print Name and Age: {out}");
    assert!(out.contains("my-new-cron-object"));
    s.kubectl_ok(&["label", "ct", "my-new-cron-object", "tier=batch"]);
    s.kubectl_ok(&["patch", "ct", "my-new-cron-object", "--type=merge", "-p", r#"{"spec":{"image":"v2"}}"#]);
    let obj: Value = serde_json::from_str(&s.kubectl_ok(&["get", "ct", "my-new-cron-object", "-o", "json"])).unwrap();
    assert_eq!(obj["spec"]["image"], "v2");
    assert_eq!(obj["metadata"]["labels"]["tier"], "batch");
    assert_eq!(obj["metadata"]["generation"], 2, "a spec change bumps generation, a label does not");
    // Strategic merge patch needs merge keys, which custom resources do not have.
    let (code, _, body) = s.curl(
        "PATCH",
        &format!("{CT_PATH}/my-new-cron-object"),
        Some(br#"{"spec":{"image":"v3"}}"#),
        &["Content-Type: application/strategic-merge-patch+json"],
    );
    assert_eq!(code, 415, "{body}");

    // The status subresource: the main resource ignores status, /status changes only status.
    let mut with_status = obj.clone();
    with_status["status"] = json!({"lastScheduleTime": "now"});
    with_status["spec"]["image"] = json!("v4");
    let body = serde_json::to_vec(&with_status).unwrap();
    let (code, _, out) = s.curl(
        "PUT",
        &format!("{CT_PATH}/my-new-cron-object/status"),
        Some(&body),
        &["Content-Type: application/json"],
    );
    assert_eq!(code, 200, "{out}");
    let after: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (after["status"]["lastScheduleTime"].as_str(), after["spec"]["image"].as_str()),
        (Some("now"), Some("v2"))
    );

    // Bad input: a kind that is not the resource's, a namespace that does not exist.
    let wrong = br#"{"apiVersion":"stable.example.com/v1","kind":"Other","metadata":{"name":"x"}}"#;
    let (code, _, body) = s.curl("POST", CT_PATH, Some(wrong), &["Content-Type: application/json"]);
    assert_eq!(code, 400, "{body}");
    let ok = br#"{"apiVersion":"stable.example.com/v1","kind":"CronTab","metadata":{"name":"x"}}"#;
    let (code, _, body) = s.curl(
        "POST",
        "/apis/stable.example.com/v1/namespaces/nope/crontabs",
        Some(ok),
        &["Content-Type: application/json"],
    );
    assert_eq!(code, 404, "{body}");

    // A restart serves the stored definition from the start.
    s.kill9();
    let s = Server::start_in(dir.path(), &[]);
    let out = s.kubectl_ok(&["get", "crontabs", "-o", "name"]);
    assert_eq!(out.trim(), "crontab.stable.example.com/my-new-cron-object");

    // A version that stops being served disappears; its objects stay for when it comes back.
    let served = |on: bool| {
        let patch = format!(r#"[{{"op":"replace","path":"/spec/versions/0/served","value":{on}}}]"#);
        s.kubectl_ok(&["patch", "crd", "crontabs.stable.example.com", "--type=json", "-p", &patch]);
    };
    served(false);
    assert!(wait_for(Duration::from_secs(10), || s.curl("GET", CT_PATH, None, &[]).0 == 404), "still served");
    served(true);
    assert!(wait_for(Duration::from_secs(10), || s.curl("GET", CT_PATH, None, &[]).0 == 200), "not served again");
    let (_, _, items) = s.curl("GET", CT_PATH, None, &[]);
    assert!(items.contains("my-new-cron-object"), "objects lost while not served: {items}");

    // Deleting the definition removes the resource and its objects.
    s.kubectl_ok(&["delete", "crd", "crontabs.stable.example.com"]);
    assert!(
        wait_for(Duration::from_secs(10), || s.curl("GET", CT_PATH, None, &[]).0 == 404),
        "the resource is still served"
    );
    let (_, _, list) = s.curl("GET", "/apis", None, &[]);
    assert!(!list.contains("stable.example.com"), "{list}");
    apply(&s, files.path(), "crd.yaml", CRD);
    assert!(wait_for(Duration::from_secs(10), || s.curl("GET", CT_PATH, None, &[]).0 == 200));
    let (_, _, items) = s.curl("GET", CT_PATH, None, &[]);
    let items: Value = serde_json::from_str(&items).unwrap();
    assert_eq!(items["items"], json!([]), "objects of a deleted definition must not come back");
}

#[test]
fn invalid_definitions_are_refused() {
    let s = Server::start();
    let bad = json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "wrong.example.com"},
        "spec": {"group": "stable.example.com", "scope": "Global",
                 "names": {"plural": "crontabs", "kind": "CronTab"},
                 "versions": [{"name": "v1", "served": true, "storage": false}]}
    });
    let (code, _, body) = s.curl(
        "POST",
        "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
        Some(bad.to_string().as_bytes()),
        &["Content-Type: application/json"],
    );
    assert_eq!(code, 422, "{body}");
    let status: Value = serde_json::from_str(&body).unwrap();
    let fields: Vec<&str> =
        status["details"]["causes"].as_array().unwrap().iter().filter_map(|c| c["field"].as_str()).collect();
    assert_eq!(fields, ["metadata.name", "spec.scope", "spec.versions"], "{body}");
    let (code, _, _) = s.curl("GET", "/apis/stable.example.com/v1", None, &[]);
    assert_eq!(code, 404, "nothing is served from a refused definition");
}
