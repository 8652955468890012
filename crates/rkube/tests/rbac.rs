//! RBAC enforced by the real server (issue 4's seed scenarios, with a token-file user standing
//! in for a service account until service-account tokens land): denied by default with
//! Kubernetes' message, a RoleBinding to `view` grants reads in its namespace only, a
//! ClusterRoleBinding like the seeds' `permissive-binding` grants everything, a binding to a
//! missing role grants nothing and says why.

mod common;

use std::time::Duration;

use common::{require, wait_for, Server};
use serde_json::Value;

const CT: &str = "Content-Type: application/json";

/// A server whose token file knows `bobtoken`: user `bob` in group `devs`. The directory
/// lives as long as the returned guard.
fn server_with_bob() -> (tempfile::TempDir, Server) {
    Server::start_with_tokens(
        "bobtoken,bob,2,devs
",
        &[],
    )
}

#[test]
fn rbac_decides_what_a_token_may_do() {
    if !require("curl", &["--version"]) {
        return;
    }
    let (_dir, s) = server_with_bob();
    let bob = |method: &str, path: &str, body: Option<&[u8]>| {
        let (code, _, body) = s.curl_as(false, method, path, body, &["Authorization: Bearer bobtoken", CT]);
        (code, serde_json::from_str::<Value>(&body).unwrap_or(Value::Null))
    };
    let (code, st) = bob("GET", "/api/v1/namespaces/default/pods", None);
    assert_eq!(code, 403);
    assert_eq!(
        st["message"],
        "pods is forbidden: User \"bob\" cannot list resource \"pods\" in API group \"\" in the namespace \"default\""
    );
    assert_eq!((st["details"]["kind"].as_str(), st["details"]["group"].as_str()), (Some("pods"), None));
    assert_eq!(bob("GET", "/apis/batch/v1", None).0, 200, "system:discovery");

    // A RoleBinding to the aggregated `view` ClusterRole, in `default` only.
    let rb = br#"{"apiVersion":"rbac.authorization.k8s.io/v1","kind":"RoleBinding","metadata":{"name":"bob-view"},
        "roleRef":{"apiGroup":"rbac.authorization.k8s.io","kind":"ClusterRole","name":"view"},
        "subjects":[{"kind":"User","name":"bob","apiGroup":"rbac.authorization.k8s.io"}]}"#;
    assert_eq!(
        s.curl("POST", "/apis/rbac.authorization.k8s.io/v1/namespaces/default/rolebindings", Some(rb), &[CT]).0,
        201
    );
    assert!(wait_for(Duration::from_secs(5), || bob("GET", "/api/v1/namespaces/default/pods", None).0 == 200));
    assert_eq!(bob("GET", "/api/v1/namespaces/kube-system/pods", None).0, 403);
    let (code, st) = bob(
        "POST",
        "/api/v1/namespaces/default/configmaps",
        Some(br#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"x"}}"#),
    );
    assert_eq!(code, 403);
    assert_eq!(st["message"], "configmaps is forbidden: User \"bob\" cannot create resource \"configmaps\" in API group \"\" in the namespace \"default\"");

    // A binding to a missing Role grants nothing and the answer says why.
    let missing = br#"{"apiVersion":"rbac.authorization.k8s.io/v1","kind":"RoleBinding","metadata":{"name":"dangling"},
        "roleRef":{"apiGroup":"rbac.authorization.k8s.io","kind":"Role","name":"nope"},
        "subjects":[{"kind":"Group","name":"devs","apiGroup":"rbac.authorization.k8s.io"}]}"#;
    assert_eq!(
        s.curl("POST", "/apis/rbac.authorization.k8s.io/v1/namespaces/kube-public/rolebindings", Some(missing), &[CT])
            .0,
        201
    );
    assert!(wait_for(Duration::from_secs(5), || {
        let (code, st) = bob("GET", "/api/v1/namespaces/kube-public/pods", None);
        code == 403
            && st["message"]
                .as_str()
                .unwrap_or("")
                .ends_with(": RBAC: role.rbac.authorization.k8s.io \"nope\" not found")
    }));

    // The seeds' permissive binding: cluster-admin for a group.
    let crb = br#"{"apiVersion":"rbac.authorization.k8s.io/v1","kind":"ClusterRoleBinding","metadata":{"name":"permissive-binding"},
        "roleRef":{"apiGroup":"rbac.authorization.k8s.io","kind":"ClusterRole","name":"cluster-admin"},
        "subjects":[{"kind":"Group","name":"devs","apiGroup":"rbac.authorization.k8s.io"}]}"#;
    assert_eq!(s.curl("POST", "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings", Some(crb), &[CT]).0, 201);
    assert!(wait_for(Duration::from_secs(5), || bob("GET", "/api/v1/namespaces/kube-system/pods", None).0 == 200));
    assert_eq!(
        bob(
            "POST",
            "/api/v1/namespaces/default/configmaps",
            Some(br#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"x"}}"#)
        )
        .0,
        201
    );
}

/// `kubectl auth can-i` (SelfSubjectAccessReview), `--list` (SelfSubjectRulesReview),
/// `auth whoami` (SelfSubjectReview) and impersonation with `--as`/`--as-group`.
#[test]
fn kubectl_auth_reviews_and_impersonation() {
    if !require("kubectl", &["version", "--client"]) {
        return;
    }
    let (_dir, s) = server_with_bob();
    let as_bob = |args: &[&str]| {
        let out = s.kubectl_token("bobtoken", args);
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).trim().to_string(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    assert_eq!(s.kubectl_ok(&["auth", "can-i", "delete", "nodes"]).trim(), "yes");
    let (_, out, _) = as_bob(&["auth", "can-i", "list", "pods"]);
    assert_eq!(out, "no");
    let (_, out, _) = as_bob(&["auth", "whoami"]);
    assert!(out.contains("bob") && out.contains("devs"), "{out}");
    let (_, out, _) = as_bob(&["auth", "can-i", "--list"]);
    assert!(out.contains("selfsubjectaccessreviews.authorization.k8s.io") && out.contains("[/api/*]"), "{out}");
    // The admin impersonates bob: bob's answers.
    assert_eq!(s.kubectl(&["auth", "can-i", "list", "pods", "--as=bob"]).stdout, b"no\n");
    assert_eq!(s.kubectl(&["auth", "can-i", "list", "pods", "--as=bob", "--as-group=system:masters"]).stdout, b"yes\n");
    let who = s.kubectl_ok(&["auth", "whoami", "--as=system:serviceaccount:default:default"]);
    assert!(who.contains("system:serviceaccounts:default"), "{who}");
    // bob may not impersonate anyone.
    let (code, _, err) = as_bob(&["get", "pods", "--as=alice"]);
    assert_ne!(code, Some(0));
    assert!(err.contains("users \"alice\" is forbidden: User \"bob\" cannot impersonate resource \"users\" in API group \"\" at the cluster scope"), "{err}");
}

/// `kubectl create token` (TokenRequest) and the tokens' life: what the token may do is RBAC's
/// answer for its service account; expiry rules; a token bound to a pod dies with the pod;
/// garbage, tampered and other-audience tokens are 401.
#[test]
fn service_account_tokens() {
    if !require("kubectl", &["version", "--client"]) || !require("curl", &["--version"]) {
        return;
    }
    let s = Server::start();
    let token = s.kubectl_ok(&["create", "token", "default"]).trim().to_string();
    let with = |t: &str, path: &str| {
        let (code, _, body) = s.curl_as(false, "GET", path, None, &[&format!("Authorization: Bearer {t}")]);
        (code, serde_json::from_str::<Value>(&body).unwrap_or(Value::Null))
    };
    assert_eq!(with(&token, "/api").0, 200);
    let (code, st) = with(&token, "/api/v1/namespaces/default/pods");
    assert_eq!(code, 403);
    assert_eq!(st["message"], "pods is forbidden: User \"system:serviceaccount:default:default\" cannot list resource \"pods\" in API group \"\" in the namespace \"default\"");
    // The seeds' permissive binding.
    let crb = br#"{"apiVersion":"rbac.authorization.k8s.io/v1","kind":"ClusterRoleBinding","metadata":{"name":"permissive-binding"},
        "roleRef":{"apiGroup":"rbac.authorization.k8s.io","kind":"ClusterRole","name":"cluster-admin"},
        "subjects":[{"kind":"Group","name":"system:serviceaccounts","apiGroup":"rbac.authorization.k8s.io"}]}"#;
    assert_eq!(s.curl("POST", "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings", Some(crb), &[CT]).0, 201);
    assert!(wait_for(Duration::from_secs(5), || with(&token, "/api/v1/namespaces/default/pods").0 == 200));

    // Expiry rules.
    let out = s.kubectl(&["create", "token", "default", "--duration=5m"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("may not specify a duration less than 10 minutes"));
    assert!(s.kubectl(&["create", "token", "default", "--duration=10m"]).status.success());

    // Bad tokens.
    assert_eq!(with("garbage", "/api").0, 401);
    let mut tampered = token.clone();
    tampered.pop();
    assert_eq!(with(&tampered, "/api").0, 401);
    let other =
        s.kubectl_ok(&["create", "token", "default", "--audience=https://elsewhere.example"]).trim().to_string();
    assert_eq!(with(&other, "/api").0, 401, "a token for another audience");

    // Bound to a pod: valid while the pod lives.
    let pod =
        br#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p"},"spec":{"containers":[{"name":"c","image":"i"}]}}"#;
    assert_eq!(s.curl("POST", "/api/v1/namespaces/default/pods", Some(pod), &[CT]).0, 201);
    let bound = s
        .kubectl_ok(&["create", "token", "default", "--bound-object-kind=Pod", "--bound-object-name=p"])
        .trim()
        .to_string();
    assert_eq!(with(&bound, "/api").0, 200);
    let review =
        format!(r#"{{"apiVersion":"authentication.k8s.io/v1","kind":"TokenReview","spec":{{"token":"{bound}"}}}}"#);
    let (code, _, body) = s.curl("POST", "/apis/authentication.k8s.io/v1/tokenreviews", Some(review.as_bytes()), &[CT]);
    assert_eq!(code, 201);
    let tr: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(tr["status"]["authenticated"], true, "{body}");
    assert_eq!(tr["status"]["user"]["username"], "system:serviceaccount:default:default");
    s.kubectl_ok(&["delete", "pod", "p", "--wait=true"]);
    assert_eq!(with(&bound, "/api").0, 401, "a token bound to a deleted pod is revoked");
    // A new pod of the same name has another uid: the old token stays refused.
    assert_eq!(s.curl("POST", "/api/v1/namespaces/default/pods", Some(pod), &[CT]).0, 201);
    assert_eq!(with(&bound, "/api").0, 401, "a token bound to a pod's earlier incarnation");
    let rebound = s
        .kubectl_ok(&["create", "token", "default", "--bound-object-kind=Pod", "--bound-object-name=p"])
        .trim()
        .to_string();
    assert_eq!(with(&rebound, "/api").0, 200, "a token for the new pod works");
    // Deleting the service account revokes its tokens (the controller makes a new one with another uid).
    s.kubectl_ok(&["delete", "serviceaccount", "default"]);
    assert!(wait_for(Duration::from_secs(5), || with(&token, "/api").0 == 401));
}

/// OIDC discovery: an outside verifier checks a token with nothing but the published JWKS;
/// the `kubernetes` Service and Endpoints point at this server.
#[test]
fn oidc_discovery_and_kubernetes_service() {
    if !require("kubectl", &["version", "--client"]) || !require("curl", &["--version"]) {
        return;
    }
    let s = Server::start();
    let token = s.kubectl_ok(&["create", "token", "default"]).trim().to_string();
    let auth = format!("Authorization: Bearer {token}");
    let (code, _, body) = s.curl_as(false, "GET", "/.well-known/openid-configuration", None, &[&auth]);
    assert_eq!(code, 200);
    let conf: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(conf["issuer"], "https://kubernetes.default.svc.cluster.local");
    assert_eq!(conf["jwks_uri"], format!("{}/openid/v1/jwks", s.url));
    let (code, _, body) = s.curl_as(false, "GET", "/openid/v1/jwks", None, &[&auth]);
    assert_eq!(code, 200);
    let jwks: jsonwebtoken::jwk::JwkSet = serde_json::from_str(&body).unwrap();
    let header = jsonwebtoken::decode_header(&token).unwrap();
    let jwk = jwks.find(header.kid.as_deref().unwrap()).expect("the token's key is published");
    let key = jsonwebtoken::DecodingKey::from_jwk(jwk).unwrap();
    let mut v = jsonwebtoken::Validation::new(header.alg);
    v.set_audience(&["https://kubernetes.default.svc.cluster.local"]);
    let claims = jsonwebtoken::decode::<Value>(&token, &key, &v).unwrap().claims;
    assert_eq!(claims["sub"], "system:serviceaccount:default:default");
    assert_eq!(claims["kubernetes.io"]["serviceaccount"]["name"], "default");
    // Anonymous callers may not read them (kube-apiserver's default).
    assert_eq!(s.curl_anon("GET", "/openid/v1/jwks").0, 403);

    let svc = s.kubectl_ok(&["get", "svc", "kubernetes", "-o", "jsonpath={.spec.clusterIP} {.spec.ports[0].port}"]);
    assert_eq!(svc, "10.96.0.1 443");
    let port = s.url.rsplit(':').next().unwrap();
    let ep = s.kubectl_ok(&[
        "get",
        "endpoints",
        "kubernetes",
        "-o",
        "jsonpath={.subsets[0].addresses[0].ip}:{.subsets[0].ports[0].port}",
    ]);
    assert_eq!(ep, format!("127.0.0.1:{port}"));
}

/// The seeds' legacy flow: a `kubernetes.io/service-account-token` Secret gets a token (and
/// ca.crt, namespace) from the token controller; the token works until the Secret is deleted.
#[test]
fn legacy_service_account_token_secrets() {
    if !require("kubectl", &["version", "--client"]) || !require("curl", &["--version"]) {
        return;
    }
    let s = Server::start();
    let secret = s.dir.join("secret.yaml");
    std::fs::write(
        &secret,
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: default-token\n  annotations: {kubernetes.io/service-account.name: default}\ntype: kubernetes.io/service-account-token\n",
    )
    .unwrap();
    s.kubectl_ok(&["apply", "-f", secret.to_str().unwrap()]);
    let mut encoded = String::new();
    assert!(wait_for(Duration::from_secs(5), || {
        encoded = s.kubectl_ok(&["get", "secret", "default-token", "-o", "jsonpath={.data.token}"]);
        !encoded.is_empty()
    }));
    use base64::Engine;
    let token = String::from_utf8(base64::engine::general_purpose::STANDARD.decode(encoded.trim()).unwrap()).unwrap();
    let ns = s.kubectl_ok(&["get", "secret", "default-token", "-o", "jsonpath={.data.namespace}"]);
    assert_eq!(base64::engine::general_purpose::STANDARD.decode(ns.trim()).unwrap(), b"default");
    let with = |path: &str| s.curl_as(false, "GET", path, None, &[&format!("Authorization: Bearer {token}")]);
    assert_eq!(with("/api").0, 200);
    let (code, _, body) = with("/api/v1/namespaces/default/pods");
    assert_eq!(code, 403);
    assert!(
        body.contains("User \\\"system:serviceaccount:default:default\\\" cannot list resource \\\"pods\\\""),
        "{body}"
    );
    s.kubectl_ok(&["delete", "secret", "default-token"]);
    assert_eq!(with("/api").0, 401, "deleting the Secret revokes its token");
}

/// Privilege-escalation prevention: a user may create Roles only with rules it holds, and
/// bindings must name an existing role.
#[test]
fn rbac_writes_cannot_escalate() {
    if !require("curl", &["--version"]) {
        return;
    }
    let (_dir, s) = server_with_bob();
    // bob may manage Roles in `default` and read pods there; nothing more.
    let role = br#"{"apiVersion":"rbac.authorization.k8s.io/v1","kind":"Role","metadata":{"name":"role-admin"},
        "rules":[{"apiGroups":["rbac.authorization.k8s.io"],"resources":["roles","rolebindings"],"verbs":["create","get","list","update","patch"]},
                 {"apiGroups":[""],"resources":["pods"],"verbs":["get","list"]}]}"#;
    let rb =
        br#"{"apiVersion":"rbac.authorization.k8s.io/v1","kind":"RoleBinding","metadata":{"name":"bob-role-admin"},
        "roleRef":{"apiGroup":"rbac.authorization.k8s.io","kind":"Role","name":"role-admin"},
        "subjects":[{"kind":"User","name":"bob","apiGroup":"rbac.authorization.k8s.io"}]}"#;
    let roles = "/apis/rbac.authorization.k8s.io/v1/namespaces/default/roles";
    assert_eq!(s.curl("POST", roles, Some(role), &[CT]).0, 201);
    assert_eq!(
        s.curl("POST", "/apis/rbac.authorization.k8s.io/v1/namespaces/default/rolebindings", Some(rb), &[CT]).0,
        201
    );
    let bob = |path: &str, body: &[u8]| {
        let (code, _, body) = s.curl_as(false, "POST", path, Some(body), &["Authorization: Bearer bobtoken", CT]);
        (code, serde_json::from_str::<Value>(&body).unwrap_or(Value::Null))
    };
    let held = br#"{"apiVersion":"rbac.authorization.k8s.io/v1","kind":"Role","metadata":{"name":"readers"},
        "rules":[{"apiGroups":[""],"resources":["pods"],"verbs":["get"]}]}"#;
    assert!(wait_for(Duration::from_secs(5), || bob(roles, held).0 == 201));
    let more = br#"{"apiVersion":"rbac.authorization.k8s.io/v1","kind":"Role","metadata":{"name":"deleters"},
        "rules":[{"apiGroups":[""],"resources":["pods"],"verbs":["delete"]}]}"#;
    let (code, st) = bob(roles, more);
    assert_eq!(code, 403);
    let msg = st["message"].as_str().unwrap_or("");
    assert!(msg.contains("is attempting to grant RBAC permissions not currently held"), "{msg}");
    assert!(msg.contains("Verbs:[\"delete\"]"), "{msg}");
    assert_eq!(s.curl("GET", &format!("{roles}/deleters"), None, &[]).0, 404, "nothing stored");
    // A binding to a Role that does not exist.
    let dangling = br#"{"apiVersion":"rbac.authorization.k8s.io/v1","kind":"RoleBinding","metadata":{"name":"x"},
        "roleRef":{"apiGroup":"rbac.authorization.k8s.io","kind":"Role","name":"nope"},
        "subjects":[{"kind":"User","name":"carol","apiGroup":"rbac.authorization.k8s.io"}]}"#;
    let (code, _) = bob("/apis/rbac.authorization.k8s.io/v1/namespaces/default/rolebindings", dangling);
    assert_eq!(code, 404);

    // Growing a Role bob may edit, by update or by patch, is refused the same way.
    let bob_write = |method: &str, path: &str, ct: &str, body: &[u8]| {
        let (code, _, body) = s.curl_as(
            false,
            method,
            path,
            Some(body),
            &["Authorization: Bearer bobtoken", &format!("Content-Type: {ct}")],
        );
        (code, serde_json::from_str::<Value>(&body).unwrap_or(Value::Null))
    };
    let grown = br#"{"apiVersion":"rbac.authorization.k8s.io/v1","kind":"Role","metadata":{"name":"readers"},
        "rules":[{"apiGroups":[""],"resources":["pods"],"verbs":["get","delete"]}]}"#;
    let (code, st) = bob_write("PUT", &format!("{roles}/readers"), "application/json", grown);
    assert_eq!(code, 403, "{st}");
    assert!(st["message"].as_str().unwrap_or("").contains("not currently held"), "{st}");
    let patch = br#"{"rules":[{"apiGroups":[""],"resources":["pods"],"verbs":["*"]}]}"#;
    let (code, st) = bob_write("PATCH", &format!("{roles}/readers"), "application/merge-patch+json", patch);
    assert_eq!(code, 403, "{st}");
    let (_, _, body) = s.curl("GET", &format!("{roles}/readers"), None, &[]);
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["rules"][0]["verbs"],
        serde_json::json!(["get"]),
        "unchanged"
    );
    // Binding a role bob does not hold all of (admin, cluster-admin) is refused too.
    for role in ["admin", "cluster-admin"] {
        let rb = format!(
            r#"{{"apiVersion":"rbac.authorization.k8s.io/v1","kind":"RoleBinding","metadata":{{"name":"bob-{role}"}},
            "roleRef":{{"apiGroup":"rbac.authorization.k8s.io","kind":"ClusterRole","name":"{role}"}},
            "subjects":[{{"kind":"User","name":"bob","apiGroup":"rbac.authorization.k8s.io"}}]}}"#
        );
        let (code, st) = bob("/apis/rbac.authorization.k8s.io/v1/namespaces/default/rolebindings", rb.as_bytes());
        assert_eq!(code, 403, "{role}: {st}");
        assert!(st["message"].as_str().unwrap_or("").contains("not currently held"), "{st}");
    }
}

/// Seed 004: a Role `demo-role` (get/list/watch pods) bound to the `default` service account
/// lets its token read pods in that namespace only; `kubectl auth can-i --list` as that
/// service account shows the rule.
#[test]
fn demo_role_for_the_default_service_account() {
    if !require("kubectl", &["version", "--client"]) {
        return;
    }
    let s = Server::start();
    let manifest = s.dir.join("demo.yaml");
    std::fs::write(
        &manifest,
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata: {name: demo-role, namespace: default}\nrules:\n- apiGroups: [\"\"]\n  resources: [pods]\n  verbs: [get, list, watch]\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {name: demo-role-binding, namespace: default}\nroleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: demo-role}\nsubjects:\n- {kind: ServiceAccount, name: default, namespace: default}\n",
    )
    .unwrap();
    s.kubectl_ok(&["apply", "-f", manifest.to_str().unwrap()]);
    let token = s.kubectl_ok(&["create", "token", "default"]).trim().to_string();
    let as_sa = |args: &[&str]| s.kubectl_token(&token, args);
    assert!(wait_for(Duration::from_secs(5), || as_sa(&["get", "pods", "-n", "default"]).status.success()));
    let denied = as_sa(&["get", "pods", "-n", "kube-system"]);
    assert!(!denied.status.success());
    assert!(String::from_utf8_lossy(&denied.stderr).contains(
        "pods is forbidden: User \"system:serviceaccount:default:default\" cannot list resource \"pods\" in API group \"\" in the namespace \"kube-system\""
    ));
    let list = String::from_utf8_lossy(&as_sa(&["auth", "can-i", "--list", "-n", "default"]).stdout).into_owned();
    let pods_line = list.lines().find(|l| l.starts_with("pods ")).unwrap_or_else(|| panic!("{list}"));
    assert!(pods_line.contains("[get list watch]"), "{pods_line}");
    assert_eq!(
        String::from_utf8_lossy(&as_sa(&["auth", "can-i", "delete", "pods", "-n", "default"]).stdout).trim(),
        "no"
    );
}

/// SubjectAccessReview and LocalSubjectAccessReview: the admin asks about another subject.
#[test]
fn subject_access_reviews() {
    if !require("curl", &["--version"]) {
        return;
    }
    let s = Server::start();
    let sar = br#"{"apiVersion":"authorization.k8s.io/v1","kind":"SubjectAccessReview",
        "spec":{"user":"system:serviceaccount:default:default","groups":["system:serviceaccounts"],
                "resourceAttributes":{"namespace":"default","verb":"list","resource":"pods"}}}"#;
    let (code, _, body) = s.curl("POST", "/apis/authorization.k8s.io/v1/subjectaccessreviews", Some(sar), &[CT]);
    assert_eq!(code, 201, "{body}");
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["status"]["allowed"], false);
    let local = br#"{"apiVersion":"authorization.k8s.io/v1","kind":"LocalSubjectAccessReview","metadata":{"namespace":"default"},
        "spec":{"user":"someone","groups":["system:masters"],"resourceAttributes":{"namespace":"default","verb":"delete","resource":"nodes"}}}"#;
    let (code, _, body) = s.curl(
        "POST",
        "/apis/authorization.k8s.io/v1/namespaces/default/localsubjectaccessreviews",
        Some(local),
        &[CT],
    );
    assert_eq!(code, 201, "{body}");
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["status"]["allowed"], true);
    // A local review asks about its own namespace only, with kube-apiserver's answers.
    let lsar = "/apis/authorization.k8s.io/v1/namespaces/default/localsubjectaccessreviews";
    for (spec, want) in [
        (
            r#"{"user":"u","nonResourceAttributes":{"path":"/x","verb":"get"}}"#,
            r#".authorization.k8s.io "" is invalid: spec.nonResourceAttributes: Invalid value: authorization.NonResourceAttributes{Path:"/x", Verb:"get"}: disallowed on this kind of request"#,
        ),
        (
            r#"{"user":"u","resourceAttributes":{"namespace":"other","verb":"get","resource":"pods"}}"#,
            r#".authorization.k8s.io "" is invalid: spec.resourceAttributes.namespace: Invalid value: "other": must match metadata.namespace"#,
        ),
    ] {
        let body =
            format!(r#"{{"apiVersion":"authorization.k8s.io/v1","kind":"LocalSubjectAccessReview","spec":{spec}}}"#);
        let (code, _, text) = s.curl("POST", lsar, Some(body.as_bytes()), &[CT]);
        assert_eq!(code, 422, "{text}");
        let st: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(st["message"], want);
        assert_eq!(st["details"]["group"], "authorization.k8s.io");
        assert!(st["details"].get("kind").is_none(), "{text}");
    }
    let other_ns =
        br#"{"apiVersion":"authorization.k8s.io/v1","kind":"LocalSubjectAccessReview","metadata":{"namespace":"other"},
        "spec":{"user":"u","resourceAttributes":{"namespace":"other","verb":"get","resource":"pods"}}}"#;
    let (code, _, text) = s.curl("POST", lsar, Some(other_ns), &[CT]);
    assert_eq!(code, 400, "{text}");
    assert!(text.contains("the namespace of the provided object does not match the namespace sent on the request"));
    let bad = br#"{"apiVersion":"authorization.k8s.io/v1","kind":"SubjectAccessReview","spec":{"resourceAttributes":{"verb":"get","resource":"pods"}}}"#;
    assert_eq!(s.curl("POST", "/apis/authorization.k8s.io/v1/subjectaccessreviews", Some(bad), &[CT]).0, 422);
}
