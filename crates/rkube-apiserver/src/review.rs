//! The review APIs: answered from the caller's identity, the token authenticator and the
//! RBAC snapshot, never stored. SelfSubjectAccessReview and SelfSubjectRulesReview (`kubectl
//! auth can-i`, `--list`), SubjectAccessReview and LocalSubjectAccessReview (for callers RBAC
//! allows to create them), SelfSubjectReview (`kubectl auth whoami`), TokenReview.

use rkube_api::{ApiError, ApiResult};
use rkube_rbac::{Attributes, User};
use serde_json::{json, Value};

use crate::authn::UserInfo;
use crate::authz::rbac_user;
use crate::ApiServer;

fn str_at<'a>(v: &'a Value, p: &str) -> &'a str {
    v.pointer(p).and_then(Value::as_str).unwrap_or("")
}

/// Request attributes from a review's `spec` (resourceAttributes or nonResourceAttributes).
fn attributes(spec: &Value, namespace_override: Option<&str>) -> ApiResult<Attributes> {
    if let Some(r) = spec.get("resourceAttributes").filter(|v| v.is_object()) {
        return Ok(Attributes {
            verb: str_at(r, "/verb").to_string(),
            is_resource: true,
            namespace: namespace_override.unwrap_or(str_at(r, "/namespace")).to_string(),
            api_group: str_at(r, "/group").to_string(),
            resource: str_at(r, "/resource").to_string(),
            subresource: str_at(r, "/subresource").to_string(),
            name: str_at(r, "/name").to_string(),
            path: String::new(),
        });
    }
    if let Some(n) = spec.get("nonResourceAttributes").filter(|v| v.is_object()) {
        return Ok(Attributes::non_resource(str_at(n, "/verb"), str_at(n, "/path")));
    }
    Err(ApiError::invalid(
        "authorization.k8s.io",
        "SelfSubjectAccessReview",
        "",
        vec![rkube_api::FieldError::invalid(
            "spec.resourceAttributes",
            Value::Null,
            "exactly one of nonResourceAttributes or resourceAttributes must be specified",
        )],
    ))
}

/// A LocalSubjectAccessReview asks about its own namespace only: the object's namespace is
/// the URL's, the attributes name it, and non-resource attributes have no namespace to be
/// asked in (kube-apiserver's validation, with its messages).
fn local_review_namespace(obj: &mut Value, spec: &Value, url_ns: &str) -> ApiResult<String> {
    let meta = rkube_api::strategy::ensure_map(obj, &["metadata"]);
    match meta.get("namespace").and_then(Value::as_str).filter(|n| !n.is_empty()) {
        Some(n) if n != url_ns => {
            return Err(ApiError::bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            ))
        }
        _ => {
            meta.insert("namespace".into(), json!(url_ns));
        }
    }
    let mut errs = vec![];
    if let Some(r) = spec.get("resourceAttributes").filter(|v| v.is_object()) {
        let asked = str_at(r, "/namespace");
        if asked != url_ns {
            errs.push(rkube_api::FieldError::invalid(
                "spec.resourceAttributes.namespace",
                json!(asked),
                "must match metadata.namespace",
            ));
        }
    }
    if let Some(n) = spec.get("nonResourceAttributes").filter(|v| v.is_object()) {
        errs.push(rkube_api::FieldError::invalid_rendered(
            "spec.nonResourceAttributes",
            format!(
                "authorization.NonResourceAttributes{{Path:{:?}, Verb:{:?}}}",
                str_at(n, "/path"),
                str_at(n, "/verb")
            ),
            "disallowed on this kind of request",
        ));
    }
    if !errs.is_empty() {
        // kube-apiserver names no kind here.
        return Err(ApiError::invalid("authorization.k8s.io", "", "", errs));
    }
    Ok(url_ns.to_string())
}

fn access_status(server: &ApiServer, user: &User, attrs: &Attributes) -> Value {
    let review = server.authz.snapshot().review(user, attrs);
    let mut status = json!({"allowed": review.allowed});
    if !review.reason.is_empty() {
        status["reason"] = json!(review.reason);
    }
    status
}

/// Fills `status` (and the subject, where Kubernetes echoes it) of a review object.
pub fn answer(
    server: &ApiServer,
    user: &UserInfo,
    kind: &str,
    namespace: Option<&str>,
    mut obj: Value,
) -> ApiResult<Value> {
    let spec = obj.get("spec").cloned().unwrap_or(json!({}));
    let status = match kind {
        "SelfSubjectAccessReview" => access_status(server, &rbac_user(user), &attributes(&spec, None)?),
        "LocalSubjectAccessReview" | "SubjectAccessReview" => {
            let subject = User {
                name: str_at(&spec, "/user").to_string(),
                uid: str_at(&spec, "/uid").to_string(),
                groups: spec
                    .get("groups")
                    .and_then(Value::as_array)
                    .map(|g| g.iter().filter_map(Value::as_str).map(str::to_string).collect())
                    .unwrap_or_default(),
            };
            if subject.name.is_empty() && subject.groups.is_empty() {
                return Err(ApiError::invalid(
                    "authorization.k8s.io",
                    kind,
                    "",
                    vec![rkube_api::FieldError::invalid(
                        "spec.user",
                        json!(""),
                        "at least one of user or group must be specified",
                    )],
                ));
            }
            let ns = if kind == "LocalSubjectAccessReview" {
                Some(local_review_namespace(&mut obj, &spec, namespace.unwrap_or(""))?)
            } else {
                None
            };
            access_status(server, &subject, &attributes(&spec, ns.as_deref())?)
        }
        "SelfSubjectRulesReview" => {
            let ns = str_at(&spec, "/namespace");
            let rr = server.authz.snapshot().rules_review(&rbac_user(user), ns);
            let mut status = json!({
                "resourceRules": rr.resource_rules,
                "nonResourceRules": rr.non_resource_rules,
                "incomplete": rr.incomplete,
            });
            if !rr.evaluation_error.is_empty() {
                status["evaluationError"] = json!(rr.evaluation_error);
            }
            status
        }
        "SelfSubjectReview" => {
            let mut info = json!({"username": user.name, "groups": user.groups});
            if !user.extra.is_empty() {
                info["extra"] = json!(user.extra);
            }
            if !user.uid.is_empty() {
                info["uid"] = json!(user.uid);
            }
            json!({"userInfo": info})
        }
        "TokenReview" => {
            let token = str_at(&spec, "/token");
            // No audiences asked for means this server's own.
            let mut audiences: Vec<String> = spec
                .get("audiences")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(Value::as_str).map(str::to_string).collect())
                .unwrap_or_default();
            if audiences.is_empty() {
                audiences.push(crate::tokens::ISSUER.to_string());
            }
            let found = match server.tokens.lookup(token) {
                Some(u) => crate::tokens::audience_agnostic(u.clone(), &audiences),
                None => crate::tokens::authenticate_for(server, token, &audiences),
            };
            match found {
                Ok(a) => {
                    let u = a.user;
                    let mut user = json!({"username": u.name, "uid": u.uid, "groups": u.groups});
                    if !u.extra.is_empty() {
                        user["extra"] = json!(u.extra);
                    }
                    json!({"authenticated": true, "user": user, "audiences": a.audiences})
                }
                Err(e) => json!({"user": {}, "error": e}),
            }
        }
        other => return Err(ApiError::internal(format!("no review answers {other}"))),
    };
    obj["status"] = status;
    if let Some(m) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        m.insert("creationTimestamp".into(), Value::Null);
    }
    Ok(obj)
}
