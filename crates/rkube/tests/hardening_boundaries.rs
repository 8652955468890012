//! Boundaries (issue 16, findings 8 to 12) through the real binary: RBAC scope of
//! cluster-scoped resources under a namespace path, a private data directory, TokenReview
//! audiences, revocation of deleted accounts' tokens, impersonation rules, client
//! certificates (the last CN, unknown CAs), and odd parameters.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{require, wait_for, Server};
use serde_json::{json, Value};

const CT: &str = "Content-Type: application/json";

fn parse(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

/// A server whose token file knows `bobtoken` (user `bob`, group `devs`).
fn server_with_bob() -> (tempfile::TempDir, Server) {
    Server::start_with_tokens(
        "bobtoken,bob,2,devs
",
        &[],
    )
}

fn bind(s: &Server, path: &str, body: Value) {
    let (code, _, text) = s.curl("POST", path, Some(body.to_string().as_bytes()), &[CT]);
    assert_eq!(code, 201, "{text}");
}

/// A ClusterRole `name` with `rules`, bound to user `bob`.
fn grant_bob(s: &Server, name: &str, rules: Value) {
    let rbac = "/apis/rbac.authorization.k8s.io/v1";
    bind(s, &format!("{rbac}/clusterroles"), json!({"metadata": {"name": name}, "rules": rules}));
    bind(
        s,
        &format!("{rbac}/clusterrolebindings"),
        json!({"metadata": {"name": name}, "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
            "subjects": [{"kind": "User", "name": "bob", "apiGroup": "rbac.authorization.k8s.io"}]}),
    );
}

/// Finding 8: `/api/v1/namespaces/{ns}/namespaces` is not served (404, as kube-apiserver),
/// so rights in one namespace never reach cluster-scoped objects.
#[test]
fn cluster_scoped_resources_under_a_namespace_are_not_found() {
    if !require("curl", &["--version"]) {
        return;
    }
    let (_dir, s) = server_with_bob();
    bind(
        &s,
        "/apis/rbac.authorization.k8s.io/v1/namespaces/default/roles",
        json!({"metadata": {"name": "ns-admin"}, "rules": [{"apiGroups": [""], "resources": ["namespaces", "nodes"], "verbs": ["*"]}]}),
    );
    bind(
        &s,
        "/apis/rbac.authorization.k8s.io/v1/namespaces/default/rolebindings",
        json!({"metadata": {"name": "bob"}, "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "ns-admin"},
            "subjects": [{"kind": "User", "name": "bob", "apiGroup": "rbac.authorization.k8s.io"}]}),
    );
    let bob = |method: &str, path: &str, body: Option<&[u8]>| {
        s.curl_as(false, method, path, body, &["Authorization: Bearer bobtoken", CT])
    };
    // The binding applies (bob may get his own namespace object) ...
    assert!(wait_for(Duration::from_secs(5), || bob("GET", "/api/v1/namespaces/default", None).0 == 200));
    // ... but no path under the namespace reaches other cluster-scoped objects.
    for path in [
        "/api/v1/namespaces/default/namespaces",
        "/api/v1/namespaces/default/namespaces/kube-system",
        "/api/v1/namespaces/default/namespaces?watch=true",
        "/api/v1/watch/namespaces/default/namespaces",
        "/api/v1/namespaces/default/nodes",
    ] {
        let (code, _, body) = bob("GET", path, None);
        assert_eq!(code, 404, "{path}: {body}");
        assert_eq!(parse(&body)["message"], "the server could not find the requested resource");
    }
    let (code, _, _) = bob("POST", "/api/v1/namespaces/default/namespaces", Some(br#"{"metadata":{"name":"evil"}}"#));
    assert_eq!(code, 404);
    let (code, _, _) = bob("DELETE", "/api/v1/namespaces/default/namespaces/kube-public", None);
    assert_eq!(code, 404);
    assert_eq!(s.curl("GET", "/api/v1/namespaces/evil", None, &[]).0, 404, "nothing was created");
    assert_eq!(s.curl("GET", "/api/v1/namespaces/kube-public", None, &[]).0, 200, "nothing was deleted");
    // Bob's rights stop at his namespace.
    assert_eq!(bob("GET", "/api/v1/namespaces/kube-system", None).0, 403);
    assert_eq!(bob("GET", "/api/v1/namespaces", None).0, 403);
}

fn modes(dir: &Path, out: &mut Vec<(String, u32)>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let mode = e.metadata().unwrap().permissions().mode() & 0o777;
        out.push((e.path().display().to_string(), mode));
        if e.file_type().unwrap().is_dir() {
            modes(&e.path(), out);
        }
    }
}

/// Finding 9: the data directory (every Secret, the CA and signing keys) is private to
/// its owner, also when an older rkube left it open.
#[test]
fn the_data_directory_is_private() {
    if !require("curl", &["--version"]) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(data.join("store.redb"), b"").unwrap();
    std::fs::set_permissions(data.join("store.redb"), std::fs::Permissions::from_mode(0o644)).unwrap();
    // Something of the user's in the directory is left as it is.
    std::fs::write(data.join("notes.sh"), b"#!/bin/sh\n").unwrap();
    std::fs::set_permissions(data.join("notes.sh"), std::fs::Permissions::from_mode(0o755)).unwrap();
    let s = Server::start_in(&data, &[]);
    let (code, _, _) = s.curl(
        "POST",
        "/api/v1/namespaces/default/secrets",
        Some(br#"{"metadata":{"name":"s"},"stringData":{"k":"v"}}"#),
        &[CT],
    );
    assert_eq!(code, 201);
    assert_eq!(std::fs::metadata(&data).unwrap().permissions().mode() & 0o777, 0o700);
    let mut all = vec![];
    modes(&data, &mut all);
    assert!(all.len() >= 10, "store, kubeconfig and the pki: {all:?}");
    for (path, mode) in all {
        if path.ends_with("notes.sh") {
            assert_eq!(mode, 0o755, "not rkube's file");
            continue;
        }
        let want = if Path::new(&path).is_dir() { 0o700 } else { 0o600 };
        assert_eq!(mode, want, "{path}: {mode:o}");
    }
}

fn token_review(s: &Server, token: &str, audiences: &[&str]) -> Value {
    let body = json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
        "spec": {"token": token, "audiences": audiences}});
    let (code, _, text) =
        s.curl("POST", "/apis/authentication.k8s.io/v1/tokenreviews", Some(body.to_string().as_bytes()), &[CT]);
    assert_eq!(code, 201, "{text}");
    parse(&text)["status"].clone()
}

/// Finding 10: TokenReview checks the audiences it is asked for, as kube-apiserver does
/// (answers compared with the baseline's): the token must name one, the answer lists
/// those it names; static tokens are good for this server's own audience only.
#[test]
fn token_review_honours_audiences() {
    if !require("kubectl", &["version", "--client"]) || !require("curl", &["--version"]) {
        return;
    }
    let (_dir, s) = server_with_bob();
    let api = "https://kubernetes.default.svc.cluster.local";
    let vault = s.kubectl_ok(&["create", "token", "default", "--audience", "vault"]).trim().to_string();
    let plain = s.kubectl_ok(&["create", "token", "default"]).trim().to_string();
    let st = token_review(&s, &vault, &[]);
    assert_eq!(st.get("authenticated"), None);
    assert_eq!(
        st["error"],
        format!(r#"[invalid bearer token, token audiences ["vault"] is invalid for the target audiences ["{api}"]]"#)
    );
    let st = token_review(&s, &vault, &["vault"]);
    assert_eq!((st["authenticated"].clone(), st["audiences"].clone()), (json!(true), json!(["vault"])));
    assert_eq!(st["user"]["username"], "system:serviceaccount:default:default");
    assert_eq!(token_review(&s, &vault, &["vault", api])["audiences"], json!(["vault"]));
    assert_eq!(token_review(&s, &plain, &[])["audiences"], json!([api]));
    assert_eq!(token_review(&s, &plain, &["vault", api])["audiences"], json!([api]));
    let st = token_review(&s, &plain, &["vault"]);
    assert_eq!(
        st["error"],
        format!(r#"[invalid bearer token, token audiences ["{api}"] is invalid for the target audiences ["vault"]]"#)
    );
    // A static token is audience-agnostic: good for this server's audience only.
    assert_eq!(token_review(&s, "bobtoken", &[])["audiences"], json!([api]));
    assert!(token_review(&s, "bobtoken", &["vault"])["error"].as_str().unwrap().contains("invalid bearer token"));
    // The server itself only takes tokens made for it.
    let with = |t: &str| s.curl_as(false, "GET", "/api", None, &[&format!("Authorization: Bearer {t}")]).0;
    assert_eq!((with(&plain), with(&vault)), (200, 401));
}

/// Finding 11: deleting a service account or a legacy token Secret revokes its tokens
/// while a finalizer still holds the object: legacy tokens at once, bound tokens once
/// the 60 s kube-apiserver allows a terminating pod have passed; a token that could never
/// authenticate is not issued.
#[test]
fn deleting_accounts_and_secrets_revokes_their_tokens() {
    if !require("kubectl", &["version", "--client"]) || !require("curl", &["--version"]) {
        return;
    }
    let s = Server::start();
    let sa = br#"{"metadata":{"name":"doomed","finalizers":["example.com/hold"]}}"#;
    assert_eq!(s.curl("POST", "/api/v1/namespaces/default/serviceaccounts", Some(sa), &[CT]).0, 201);
    let secret = br#"{"metadata":{"name":"doomed-token","finalizers":["example.com/hold"],
        "annotations":{"kubernetes.io/service-account.name":"default"}},"type":"kubernetes.io/service-account-token"}"#;
    assert_eq!(s.curl("POST", "/api/v1/namespaces/default/secrets", Some(secret), &[CT]).0, 201);
    let legacy = || {
        let (_, _, body) = s.curl("GET", "/api/v1/namespaces/default/secrets/doomed-token", None, &[]);
        parse(&body)["data"]["token"].as_str().map(|t| {
            use base64::Engine;
            String::from_utf8(base64::engine::general_purpose::STANDARD.decode(t).unwrap()).unwrap()
        })
    };
    assert!(wait_for(Duration::from_secs(10), || legacy().is_some()), "the token controller fills the Secret");
    let legacy = legacy().unwrap();
    let bound = s.kubectl_ok(&["create", "token", "doomed"]).trim().to_string();
    let with = |t: &str| s.curl_as(false, "GET", "/api", None, &[&format!("Authorization: Bearer {t}")]).0;
    assert_eq!((with(&legacy), with(&bound)), (200, 200));
    s.kubectl_ok(&["delete", "secret", "doomed-token", "--wait=false"]);
    s.kubectl_ok(&["delete", "serviceaccount", "doomed", "--wait=false"]);
    assert_eq!(with(&legacy), 401, "a legacy token dies with its Secret's deletion");
    assert_eq!(with(&bound), 200, "a bound token lives 60 s past the deletion");
    assert!(wait_for(Duration::from_secs(75), || with(&bound) == 401), "then it is refused");
    let out = s.kubectl(&["create", "token", "doomed"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("is being deleted"), "{out:?}");
    // The objects are still there, held by their finalizers.
    assert_eq!(s.curl("GET", "/api/v1/namespaces/default/serviceaccounts/doomed", None, &[]).0, 200);
}

/// Finding 12: impersonation as kube-apiserver checks it. A malformed service-account name
/// is a user name (`impersonate users`), `Impersonate-Extra-*` needs `userextras`.
#[test]
fn impersonation_checks_every_attribute() {
    if !require("curl", &["--version"]) {
        return;
    }
    let (_dir, s) = server_with_bob();
    grant_bob(
        &s,
        "impersonate-sa",
        json!([{"apiGroups": [""], "resources": ["serviceaccounts"], "verbs": ["impersonate"]}]),
    );
    let whoami = |headers: &[&str]| {
        let mut h = vec!["Authorization: Bearer bobtoken", CT];
        h.extend_from_slice(headers);
        let body = br#"{"apiVersion":"authentication.k8s.io/v1","kind":"SelfSubjectReview"}"#;
        let (code, _, text) =
            s.curl_as(false, "POST", "/apis/authentication.k8s.io/v1/selfsubjectreviews", Some(body), &h);
        (code, parse(&text))
    };
    assert!(
        wait_for(Duration::from_secs(5), || whoami(&["Impersonate-User: system:serviceaccount:default:x"]).0 == 201)
    );
    let (_, st) = whoami(&["Impersonate-User: system:serviceaccount:default:x"]);
    assert_eq!(st["status"]["userInfo"]["username"], "system:serviceaccount:default:x");
    for malformed in
        ["system:serviceaccount:default:x:y", "system:serviceaccount:Bad_NS:x", "system:serviceaccount:default"]
    {
        let (code, st) = whoami(&[&format!("Impersonate-User: {malformed}")]);
        assert_eq!(code, 403, "{malformed}: {st}");
        assert!(st["message"].as_str().unwrap().contains("cannot impersonate resource \"users\""), "{st}");
    }
    let (code, st) = whoami(&["Impersonate-User: system:serviceaccount:default:x", "Impersonate-Extra-Scopes: view"]);
    assert_eq!(code, 403, "{st}");
    assert!(st["message"].as_str().unwrap().contains("userextras/scopes"), "{st}");
    grant_bob(
        &s,
        "impersonate-scopes",
        json!([{"apiGroups": ["authentication.k8s.io"], "resources": ["userextras/scopes"], "verbs": ["impersonate"]}]),
    );
    let h = ["Impersonate-User: system:serviceaccount:default:x", "Impersonate-Extra-Scopes: view"];
    assert!(wait_for(Duration::from_secs(5), || whoami(&h).0 == 201));
    assert_eq!(whoami(&h).1["status"]["userInfo"]["extra"], json!({"scopes": ["view"]}));
}

/// Finding 12: a huge `timeoutSeconds` is a long watch, not a crash.
#[test]
fn huge_watch_timeouts_are_served() {
    if !require("curl", &["--version"]) {
        return;
    }
    let s = Server::start();
    let out = Command::new("curl")
        .args(["-sS", "-m", "2", "-o", "/dev/null", "-w", "%{http_code}"])
        .args(["--cacert", &s.pki("ca.crt"), "--cert", &s.pki("admin.crt"), "--key", &s.pki("admin.key")])
        .arg(format!("{}/api/v1/namespaces/default/configmaps?watch=true&timeoutSeconds=18446744073709551615", s.url))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "200", "{out:?}");
    assert_eq!(s.curl_anon("GET", "/healthz").0, 200);
}

fn openssl(args: &[&str]) {
    let out = Command::new("openssl").args(args).output().expect("openssl");
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// Finding 12: a client certificate names its user by its last CN (as Go reads it); one
/// from an unknown CA gets kube-apiserver's 401 Status (not a failed handshake), unless a
/// bearer token authenticates the request.
#[test]
fn client_certificates_as_kube_apiserver_reads_them() {
    if !require("curl", &["--version"]) || !require("openssl", &["version"]) {
        return;
    }
    let (dir, s) = server_with_bob();
    let p = |n: &str| dir.path().join(n).display().to_string();
    openssl(&["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", &p("k.pem")]);
    openssl(&["req", "-new", "-key", &p("k.pem"), "-subj", "/O=devs/CN=first/CN=second", "-out", &p("c.csr")]);
    std::fs::write(p("ext.cnf"), "extendedKeyUsage=clientAuth\nbasicConstraints=CA:FALSE\n").unwrap();
    openssl(&[
        "x509",
        "-req",
        "-in",
        &p("c.csr"),
        "-CA",
        &s.pki("ca.crt"),
        "-CAkey",
        &s.pki("ca.key"),
        "-CAcreateserial",
        "-days",
        "1",
        "-extfile",
        &p("ext.cnf"),
        "-out",
        &p("c.pem"),
    ]);
    openssl(&[
        "req",
        "-x509",
        "-new",
        "-key",
        &p("k.pem"),
        "-subj",
        "/CN=admin/O=system:masters",
        "-days",
        "1",
        "-out",
        &p("rogue.pem"),
    ]);
    let curl = |cert: &str, extra: &[&str]| {
        let out = Command::new("curl")
            .args(["-sS", "-X", "POST", "--cacert", &s.pki("ca.crt"), "--cert", cert, "--key", &p("k.pem"), "-H", CT])
            .args(extra)
            .args(["-d", r#"{"apiVersion":"authentication.k8s.io/v1","kind":"SelfSubjectReview"}"#])
            .arg(format!("{}/apis/authentication.k8s.io/v1/selfsubjectreviews", s.url))
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        parse(&String::from_utf8_lossy(&out.stdout))
    };
    let who = curl(&p("c.pem"), &[]);
    assert_eq!(who["status"]["userInfo"]["username"], "second", "{who}");
    assert_eq!(who["status"]["userInfo"]["groups"], json!(["devs", "system:authenticated"]));
    let rogue = curl(&p("rogue.pem"), &[]);
    assert_eq!(
        (rogue["code"].clone(), rogue["reason"].clone(), rogue["message"].clone()),
        (json!(401), json!("Unauthorized"), json!("Unauthorized")),
        "{rogue}"
    );
    let with_token = curl(&p("rogue.pem"), &["-H", "Authorization: Bearer bobtoken"]);
    assert_eq!(with_token["status"]["userInfo"]["username"], "bob", "{with_token}");
}

/// Finding 12: only the kubelet's kind of token (3607 s, bound to a pod, for this server's
/// own audience) is extended to a year; others expire when they say.
#[test]
fn only_pod_bound_kube_tokens_get_the_extended_expiry() {
    if !require("kubectl", &["version", "--client"]) || !require("curl", &["--version"]) {
        return;
    }
    let s = Server::start();
    let pod = br#"{"metadata":{"name":"p"},"spec":{"containers":[{"name":"c","image":"i"}]}}"#;
    assert_eq!(s.curl("POST", "/api/v1/namespaces/default/pods", Some(pod), &[CT]).0, 201);
    let lifetime = |extra: &[&str]| {
        let mut args = vec!["create", "token", "default", "--duration=3607s"];
        args.extend_from_slice(extra);
        let token = s.kubectl_ok(&args).trim().to_string();
        use base64::Engine;
        let payload = token.split('.').nth(1).unwrap();
        let claims: Value =
            serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap()
    };
    let bound = ["--bound-object-kind=Pod", "--bound-object-name=p"];
    assert_eq!(lifetime(&[]), 3607);
    assert_eq!(lifetime(&bound), 365 * 24 * 3600);
    assert_eq!(lifetime(&[&bound[..], &["--audience=vault"]].concat()), 3607);
}

/// Finding 12 (and the review after it): a grace period too large for a time is a long
/// grace period, not a crash.
#[test]
fn huge_grace_periods_are_served() {
    if !require("curl", &["--version"]) {
        return;
    }
    let s = Server::start();
    let node = br#"{"metadata":{"name":"n1"}}"#;
    assert_eq!(s.curl("POST", "/api/v1/nodes", Some(node), &[CT]).0, 201);
    let pod = br#"{"metadata":{"name":"p"},"spec":{"nodeName":"n1","terminationGracePeriodSeconds":9223372036854775807,
        "containers":[{"name":"c","image":"i"}]}}"#;
    let (code, _, text) = s.curl("POST", "/api/v1/namespaces/default/pods", Some(pod), &[CT]);
    assert_eq!(code, 201, "{text}");
    for query in ["", "?gracePeriodSeconds=9223372036854775807"] {
        let (code, _, text) = s.curl("DELETE", &format!("/api/v1/namespaces/default/pods/p{query}"), None, &[]);
        assert_eq!(code, 200, "{text}");
        assert!(parse(&text)["metadata"]["deletionTimestamp"].is_string(), "{text}");
    }
    assert_eq!(s.curl_anon("GET", "/healthz").0, 200);
}
