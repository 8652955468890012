//! Bad input through curl: every answer is the `Status` kube-apiserver gives (compared with
//! the captures in shared/reference/kube-apiserver-v1.28.7/errors/), and nothing is stored.

mod common;

use common::{reference, require, Server};
use serde_json::{json, Value};

fn status(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

/// Same code, reason, message and details as the captured answer.
fn assert_matches_reference(got: &Value, file: &str) {
    let want = reference(file);
    for k in ["kind", "apiVersion", "status", "code", "reason", "message", "details"] {
        assert_eq!(got.get(k), want.get(k), "{file}: field {k}\n got: {got}\nwant: {want}");
    }
}

const CM: &str = "/api/v1/namespaces/default/configmaps";

#[test]
fn anonymous_and_health() {
    if !require("curl", &["--version"]) {
        return;
    }
    let s = Server::start();
    let (code, _, body) = s.curl_anon("GET", "/");
    assert_eq!(code, 403);
    assert_matches_reference(&status(&body), "errors/anonymous-root-403.json");
    for p in ["/healthz", "/livez", "/readyz"] {
        let (code, _, body) = s.curl_anon("GET", p);
        assert_eq!((code, body.as_str()), (200, "ok"), "{p}");
    }
    let (code, _, body) = s.curl_anon("GET", "/version");
    assert_eq!(code, 200);
    let v = status(&body);
    assert!(!v["gitVersion"].as_str().unwrap().contains('-'), "Helm-comparable version: {v}");
    let (code, _, _) = s.curl_anon("GET", "/api/v1/namespaces/default/pods");
    assert_eq!(code, 403);
    // A token that is not known is a 401, not anonymous access.
    let (code, _, body) = s.curl_as(false, "GET", "/api", None, &["Authorization: Bearer garbage"]);
    assert_eq!(code, 401);
    assert_eq!(status(&body)["reason"], "Unauthorized");
}

#[test]
fn bad_inputs_get_kubernetes_status_and_store_nothing() {
    if !require("curl", &["--version"]) {
        return;
    }
    let s = Server::start();
    let json_ct = "Content-Type: application/json";

    let (code, _, body) = s.curl("POST", CM, Some(br#"{"apiVersion":"v1","kind":"Con"#), &[json_ct]);
    assert_eq!(code, 400);
    assert_matches_reference(&status(&body), "errors/malformed-json-400.json");

    let (code, _, body) =
        s.curl("POST", CM, Some(br#"{"apiVersion":"v1","kind":"Secret","metadata":{"name":"x"}}"#), &[json_ct]);
    assert_eq!(code, 400);
    assert_matches_reference(&status(&body), "errors/kind-mismatch-400.json");

    let (code, _, body) = s.curl(
        "POST",
        CM,
        Some(br#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"Bad_Name"}}"#),
        &[json_ct],
    );
    assert_eq!(code, 422);
    assert_matches_reference(&status(&body), "errors/invalid-name-422.json");

    let (code, _, body) = s.curl(
        "POST",
        CM,
        Some(br#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"x","namespace":"other"}}"#),
        &[json_ct],
    );
    assert_eq!(code, 400);
    assert_matches_reference(&status(&body), "errors/namespace-mismatch-400.json");

    let (code, _, body) = s.curl(
        "POST",
        "/api/v1/namespaces/nope/configmaps",
        Some(br#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"x"}}"#),
        &[json_ct],
    );
    assert_eq!(code, 404);
    assert_matches_reference(&status(&body), "errors/missing-namespace-404.json");

    let big = format!(
        r#"{{"apiVersion":"v1","kind":"ConfigMap","metadata":{{"name":"big"}},"data":{{"a":"{}"}}}}"#,
        "x".repeat(3 * 1024 * 1024 + 10)
    );
    let (code, _, body) = s.curl("POST", CM, Some(big.as_bytes()), &[json_ct]);
    assert_eq!(code, 413);
    assert_matches_reference(&status(&body), "errors/too-large-413.json");

    let (code, _, body) = s.curl("POST", CM, Some(b"x"), &["Content-Type: text/plain"]);
    assert_eq!(code, 415);
    assert_eq!(status(&body)["reason"], "UnsupportedMediaType");

    let (code, _, body) = s.curl("GET", "/api/v1/namespaces/default/widgets", None, &[]);
    assert_eq!(code, 404);
    assert_matches_reference(&status(&body), "errors/unknown-resource-404.json");

    let (code, _, body) = s.curl("GET", &format!("{CM}?labelSelector=x%20in%20("), None, &[]);
    assert_eq!(code, 400);
    assert_matches_reference(&status(&body), "errors/bad-selector-400.json");

    let (code, _, body) = s.curl("GET", &format!("{CM}?limit=1&continue=gA"), None, &[]);
    assert_eq!(code, 400);
    assert!(status(&body)["message"].as_str().unwrap().starts_with("invalid continue token"), "{body}");

    let (code, _, body) = s.curl("GET", &format!("{CM}/missing"), None, &[]);
    assert_eq!(code, 404);
    assert_matches_reference(&status(&body), "errors/not-found-404.json");

    let (code, _, body) = s.curl(
        "POST",
        &format!("{CM}?fieldValidation=Strict"),
        Some(br#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"strict"},"bogus":1}"#),
        &[json_ct],
    );
    assert_eq!(code, 400);
    assert_matches_reference(&status(&body), "errors/bad-field-strict-400.json");

    // Nothing above was stored.
    // (The namespace holds only the root CA ConfigMap its controller publishes.)
    let (_, _, body) = s.curl("GET", CM, None, &[]);
    let names: Vec<_> =
        status(&body)["items"].as_array().unwrap().iter().map(|i| i["metadata"]["name"].clone()).collect();
    assert_eq!(names, [json!("kube-root-ca.crt")], "{body}");

    // Warn stores the object without the field and says so in a Warning header.
    let (code, headers, body) = s.curl(
        "POST",
        &format!("{CM}?fieldValidation=Warn"),
        Some(br#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"warned"},"bogus":1}"#),
        &[json_ct],
    );
    assert_eq!(code, 201, "{body}");
    assert!(headers.to_lowercase().contains(r#"warning: 299 - "unknown field \"bogus\"""#), "{headers}");
    assert!(status(&body).get("bogus").is_none());

    // Duplicate create and a stale update.
    let (code, _, body) =
        s.curl("POST", CM, Some(br#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"dup"}}"#), &[json_ct]);
    assert_eq!(code, 201, "{body}");
    let (code, _, body) =
        s.curl("POST", CM, Some(br#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"dup"}}"#), &[json_ct]);
    assert_eq!(code, 409);
    assert_matches_reference(&status(&body), "errors/already-exists-409.json");
    let (code, _, body) = s.curl("PUT", &format!("{CM}/dup"), Some(br#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"dup","resourceVersion":"1"},"data":{"a":"b"}}"#), &[json_ct]);
    assert_eq!(code, 409);
    assert_matches_reference(&status(&body), "errors/conflict-409.json");

    let (code, _, body) = s.curl("PUT", "/api/v1/namespaces/default/configmaps", Some(b"{}"), &[json_ct]);
    assert_eq!(code, 405);
    assert_matches_reference(&status(&body), "errors/method-not-allowed-405.json");
}

#[test]
fn crud_list_pagination_and_selectors() {
    if !require("curl", &["--version"]) {
        return;
    }
    let s = Server::start();
    let ct = "Content-Type: application/json";
    for i in 0..5 {
        let b = format!(
            r#"{{"apiVersion":"v1","kind":"ConfigMap","metadata":{{"name":"c{i}","labels":{{"n":"{}"}}}}}}"#,
            i % 2
        );
        let (code, _, body) = s.curl("POST", CM, Some(b.as_bytes()), &[ct]);
        assert_eq!(code, 201, "{body}");
    }
    // Pages of two, at the first page's revision.
    let (_, _, body) = s.curl("GET", &format!("{CM}?limit=2"), None, &[]);
    let page = status(&body);
    assert_eq!(page["items"].as_array().unwrap().len(), 2);
    // Five of ours plus the namespace's kube-root-ca.crt.
    assert_eq!(page["metadata"]["remainingItemCount"], 4);
    let mut names: Vec<String> =
        page["items"].as_array().unwrap().iter().map(|i| i["metadata"]["name"].as_str().unwrap().to_string()).collect();
    let mut cont = page["metadata"]["continue"].as_str().unwrap().to_string();
    // A write between pages is not seen by the paginated list.
    s.curl("POST", CM, Some(br#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"c9"}}"#), &[ct]);
    loop {
        let (code, _, body) = s.curl("GET", &format!("{CM}?limit=2&continue={cont}"), None, &[]);
        assert_eq!(code, 200, "{body}");
        let p = status(&body);
        names
            .extend(p["items"].as_array().unwrap().iter().map(|i| i["metadata"]["name"].as_str().unwrap().to_string()));
        match p["metadata"]["continue"].as_str() {
            Some(c) if !c.is_empty() => cont = c.to_string(),
            _ => break,
        }
    }
    assert_eq!(names, ["c0", "c1", "c2", "c3", "c4", "kube-root-ca.crt"]);
    let (_, _, body) = s.curl("GET", &format!("{CM}?labelSelector=n%3D1"), None, &[]);
    let got: Vec<_> =
        status(&body)["items"].as_array().unwrap().iter().map(|i| i["metadata"]["name"].clone()).collect();
    assert_eq!(got, [json!("c1"), json!("c3")]);
    let (_, _, body) = s.curl("GET", &format!("{CM}?fieldSelector=metadata.name%3Dc2"), None, &[]);
    assert_eq!(status(&body)["items"].as_array().unwrap().len(), 1);
    // Merge patch, JSON patch, then delete with a stale precondition (409) and for real.
    let (code, _, body) = s.curl(
        "PATCH",
        &format!("{CM}/c0"),
        Some(br#"{"data":{"k":"v"}}"#),
        &["Content-Type: application/merge-patch+json"],
    );
    assert_eq!((code, status(&body)["data"]["k"].clone()), (200, json!("v")));
    let (code, _, body) = s.curl(
        "PATCH",
        &format!("{CM}/c0"),
        Some(br#"[{"op":"replace","path":"/data/k","value":"w"}]"#),
        &["Content-Type: application/json-patch+json"],
    );
    assert_eq!((code, status(&body)["data"]["k"].clone()), (200, json!("w")));
    let (code, _, _) = s.curl("DELETE", &format!("{CM}/c0"), Some(br#"{"preconditions":{"uid":"nope"}}"#), &[ct]);
    assert_eq!(code, 409);
    let (code, _, _) = s.curl("DELETE", &format!("{CM}/c0"), None, &[]);
    assert_eq!(code, 200);
    let (code, _, _) = s.curl("GET", &format!("{CM}/c0"), None, &[]);
    assert_eq!(code, 404);
    // deletecollection by label.
    let (code, _, _) = s.curl("DELETE", &format!("{CM}?labelSelector=n%3D1"), None, &[]);
    assert_eq!(code, 200);
    let (_, _, body) = s.curl("GET", CM, None, &[]);
    let left: Vec<_> =
        status(&body)["items"].as_array().unwrap().iter().map(|i| i["metadata"]["name"].clone()).collect();
    assert_eq!(left, [json!("c2"), json!("c4"), json!("c9"), json!("kube-root-ca.crt")]);
}

#[test]
fn discovery_matches_kubernetes_shape() {
    if !require("curl", &["--version"]) {
        return;
    }
    let s = Server::start();
    let (_, _, body) = s.curl("GET", "/apis/batch/v1", None, &[]);
    let mut got = status(&body);
    let mut want = reference("discovery/apis-batch-v1.json");
    for v in [&mut got, &mut want] {
        for r in v["resources"].as_array_mut().unwrap() {
            r.as_object_mut().unwrap().remove("storageVersionHash");
        }
    }
    assert_eq!(got, want);
    let (code, headers, body) = s.curl(
        "GET",
        "/apis",
        None,
        &["Accept: application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json"],
    );
    assert_eq!(code, 200);
    assert!(headers.contains("application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"), "{headers}");
    assert_eq!(status(&body)["kind"], "APIGroupDiscoveryList");
    let (_, _, body) =
        s.curl("GET", "/api/v1/namespaces", None, &["Accept: application/json;as=Table;v=v1;g=meta.k8s.io"]);
    let t = status(&body);
    assert_eq!(t["kind"], "Table");
    let cols: Vec<_> = t["columnDefinitions"].as_array().unwrap().iter().map(|c| c["name"].clone()).collect();
    assert_eq!(cols, [json!("Name"), json!("Status"), json!("Age")]);
    assert_eq!(t["rows"].as_array().unwrap().len(), 4, "default, kube-node-lease, kube-public, kube-system");
}
