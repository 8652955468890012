//! Kubernetes `Status` errors: every failure the API answers is one of these, built here
//! with Kubernetes' code, reason and message, and turned into JSON in one place.

use serde_json::{json, Map, Value};

/// One cause of an `Invalid` (422) or strict-decoding failure.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cause {
    pub reason: String,
    pub message: String,
    pub field: String,
}

/// A failed request, as a `Status`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiError {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
    /// `details.name`, `details.group`, `details.kind` (None = no details; Some with empty
    /// fields = an empty `details: {}` object, as kube-apiserver sends for some errors).
    pub details: Option<Details>,
    /// Seconds a client should wait before retrying (429, some 500s).
    pub retry_after_seconds: Option<u32>,
    /// The Status' `metadata.continue` (a 410 for an expired `continue` token carries the
    /// token that continues the list inconsistently).
    pub continue_token: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Details {
    pub name: String,
    pub group: String,
    pub kind: String,
    pub causes: Vec<Cause>,
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}): {}", self.code, self.reason, self.message)
    }
}

impl std::error::Error for ApiError {}

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    pub fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            code,
            reason,
            message: message.into(),
            details: None,
            retry_after_seconds: None,
            continue_token: None,
        }
    }

    pub fn with_details(mut self, details: Details) -> Self {
        self.details = Some(details);
        self
    }

    fn named(code: u16, reason: &'static str, message: String, group: &str, resource: &str, name: &str) -> Self {
        ApiError::new(code, reason, message).with_details(Details {
            name: name.to_string(),
            group: group.to_string(),
            kind: resource.to_string(),
            causes: vec![],
        })
    }

    /// `configmaps "x" not found` (resource is the plural, qualified with the group).
    pub fn not_found(group: &str, resource: &str, name: &str) -> Self {
        let m = format!("{} \"{}\" not found", qualified(group, resource), name);
        Self::named(404, "NotFound", m, group, resource, name)
    }

    pub fn already_exists(group: &str, resource: &str, name: &str) -> Self {
        let m = format!("{} \"{}\" already exists", qualified(group, resource), name);
        Self::named(409, "AlreadyExists", m, group, resource, name)
    }

    pub fn conflict(group: &str, resource: &str, name: &str, why: &str) -> Self {
        let m = format!("Operation cannot be fulfilled on {} \"{}\": {}", qualified(group, resource), name, why);
        Self::named(409, "Conflict", m, group, resource, name)
    }

    /// The optimistic-concurrency conflict.
    pub fn stale(group: &str, resource: &str, name: &str) -> Self {
        Self::conflict(
            group,
            resource,
            name,
            "the object has been modified; please apply your changes to the latest version and try again",
        )
    }

    /// 422 with one cause per field error, message as kube-apiserver composes it.
    pub fn invalid(group: &str, kind: &str, name: &str, errors: Vec<FieldError>) -> Self {
        let listed: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
        let joined = if listed.len() == 1 { listed[0].clone() } else { format!("[{}]", listed.join(", ")) };
        let m = format!("{} \"{}\" is invalid: {}", qualified_kind(group, kind), name, joined);
        let causes = errors
            .into_iter()
            .map(|e| Cause { reason: e.kind.reason().to_string(), message: e.body(), field: e.field })
            .collect();
        ApiError::new(422, "Invalid", m).with_details(Details {
            name: name.to_string(),
            group: group.to_string(),
            kind: kind.to_string(),
            causes,
        })
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        ApiError::new(400, "BadRequest", message)
    }

    /// `errors.NewForbidden`: `poddisruptionbudget.policy "x" is forbidden: why`.
    pub fn forbidden_object(group: &str, resource: &str, name: &str, why: &str) -> Self {
        let m = format!("{} \"{name}\" is forbidden: {why}", qualified(group, resource));
        Self::named(403, "Forbidden", m, group, resource, name)
    }

    pub fn forbidden_path(user: &str, verb: &str, path: &str) -> Self {
        ApiError::new(403, "Forbidden", format!("forbidden: User \"{user}\" cannot {verb} path \"{path}\""))
            .with_details(Details::default())
    }

    pub fn unauthorized() -> Self {
        ApiError::new(401, "Unauthorized", "Unauthorized")
    }

    /// The 404 for a path no resource serves.
    pub fn no_route() -> Self {
        ApiError::new(404, "NotFound", "the server could not find the requested resource")
            .with_details(Details::default())
    }

    pub fn method_not_allowed() -> Self {
        ApiError::new(405, "MethodNotAllowed", "the server does not allow this method on the requested resource")
            .with_details(Details::default())
    }

    pub fn gone(message: impl Into<String>) -> Self {
        ApiError::new(410, "Expired", message)
    }

    /// kube-apiserver's 410 for a `continue` token whose snapshot is no longer retained
    /// (apiserver/pkg/storage: `handleCompactedErrorForPaging`), with the token that
    /// continues from the same place at the latest revision.
    pub fn continue_expired(next: String) -> Self {
        let mut e = ApiError::gone(
            "The provided continue parameter is too old to display a consistent list result. You can start a new \
             list without the continue parameter, or use the continue token in this response to retrieve the \
             remainder of the results. Continuing with the provided token results in an inconsistent list - objects \
             that were created, modified, or deleted between the time the first chunk was returned and now may show \
             up in the list.",
        );
        e.continue_token = Some(next);
        e
    }

    pub fn too_large(limit: usize) -> Self {
        ApiError::new(413, "RequestEntityTooLarge", format!("Request entity too large: limit is {limit}"))
    }

    pub fn unsupported_media_type(_given: &str) -> Self {
        ApiError::new(
            415,
            "UnsupportedMediaType",
            "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml",
        )
    }

    pub fn not_acceptable(_given: &str) -> Self {
        ApiError::new(
            406,
            "NotAcceptable",
            "only the following media types are accepted: application/json, application/yaml",
        )
    }

    /// 406 naming the media types the resource can be answered in.
    pub fn not_acceptable_of(accepted: &[&str]) -> Self {
        ApiError::new(
            406,
            "NotAcceptable",
            format!("only the following media types are accepted: {}", accepted.join(", ")),
        )
    }

    pub fn internal(message: impl Into<String>) -> Self {
        ApiError::new(500, "InternalError", format!("Internal error occurred: {}", message.into()))
    }

    pub fn too_many_requests(message: impl Into<String>) -> Self {
        let mut e = ApiError::new(429, "TooManyRequests", message);
        e.retry_after_seconds = Some(1);
        e
    }

    /// The `Status` object.
    pub fn to_status(&self) -> Value {
        let mut status = Map::new();
        status.insert("kind".into(), json!("Status"));
        status.insert("apiVersion".into(), json!("v1"));
        match &self.continue_token {
            Some(c) => status.insert("metadata".into(), json!({"continue": c})),
            None => status.insert("metadata".into(), json!({})),
        };
        status.insert("status".into(), json!("Failure"));
        status.insert("message".into(), json!(self.message));
        status.insert("reason".into(), json!(self.reason));
        if let Some(d) = &self.details {
            let mut details = Map::new();
            if !d.name.is_empty() {
                details.insert("name".into(), json!(d.name));
            }
            if !d.group.is_empty() {
                details.insert("group".into(), json!(d.group));
            }
            if !d.kind.is_empty() {
                details.insert("kind".into(), json!(d.kind));
            }
            if !d.causes.is_empty() {
                let causes: Vec<Value> = d
                    .causes
                    .iter()
                    .map(|c| {
                        // `field` is omitempty in metav1.StatusCause.
                        let mut cause = json!({"reason": c.reason, "message": c.message});
                        if !c.field.is_empty() {
                            cause["field"] = json!(c.field);
                        }
                        cause
                    })
                    .collect();
                details.insert("causes".into(), Value::Array(causes));
            }
            if let Some(s) = self.retry_after_seconds {
                details.insert("retryAfterSeconds".into(), json!(s));
            }
            status.insert("details".into(), Value::Object(details));
        } else if let Some(s) = self.retry_after_seconds {
            status.insert("details".into(), json!({"retryAfterSeconds": s}));
        }
        status.insert("code".into(), json!(self.code));
        Value::Object(status)
    }
}

/// A successful delete of a resource without a body to return (and for deletecollection
/// of some kinds): `Status` with `status: Success`.
pub fn success_status(group: &str, resource: &str, name: &str, uid: &str) -> Value {
    let mut details = json!({"name": name, "kind": resource, "uid": uid});
    if !group.is_empty() {
        details["group"] = json!(group);
    }
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": details})
}

fn qualified(group: &str, resource: &str) -> String {
    if group.is_empty() {
        resource.to_string()
    } else {
        format!("{resource}.{group}")
    }
}

fn qualified_kind(group: &str, kind: &str) -> String {
    if group.is_empty() {
        kind.to_string()
    } else {
        format!("{kind}.{group}")
    }
}

/// What is wrong with one field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FieldErrorKind {
    /// `Invalid value: <value>: <detail>`
    Invalid(Value),
    /// `Invalid value: <rendered>: <detail>`, the value already printed as Go prints a
    /// struct (`authorization.NonResourceAttributes{Path:"/x", Verb:"get"}`).
    InvalidRendered(String),
    /// `Required value` (detail optional)
    Required,
    /// `Unsupported value: <value>: supported values: ...`
    NotSupported(Value, Vec<String>),
    /// `Duplicate value: <value>`
    Duplicate(Value),
    /// `Not found: <value>`
    NotFound(Value),
    /// `Forbidden: <detail>`
    Forbidden,
    /// `Too long: must have at most N bytes`
    TooLong(usize),
}

impl FieldErrorKind {
    fn reason(&self) -> &'static str {
        match self {
            FieldErrorKind::Invalid(_) | FieldErrorKind::InvalidRendered(_) => "FieldValueInvalid",
            FieldErrorKind::Required => "FieldValueRequired",
            FieldErrorKind::NotSupported(..) => "FieldValueNotSupported",
            FieldErrorKind::Duplicate(_) => "FieldValueDuplicate",
            FieldErrorKind::NotFound(_) => "FieldValueNotFound",
            FieldErrorKind::Forbidden => "FieldValueForbidden",
            FieldErrorKind::TooLong(_) => "FieldValueTooLong",
        }
    }
}

/// A validation error at a field path, e.g. `metadata.name` or `spec.containers[0].image`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    pub field: String,
    pub kind: FieldErrorKind,
    pub detail: String,
}

impl FieldError {
    pub fn invalid(field: impl Into<String>, value: Value, detail: impl Into<String>) -> Self {
        FieldError { field: field.into(), kind: FieldErrorKind::Invalid(value), detail: detail.into() }
    }
    pub fn invalid_rendered(field: impl Into<String>, value: String, detail: impl Into<String>) -> Self {
        FieldError { field: field.into(), kind: FieldErrorKind::InvalidRendered(value), detail: detail.into() }
    }
    pub fn required(field: impl Into<String>, detail: impl Into<String>) -> Self {
        FieldError { field: field.into(), kind: FieldErrorKind::Required, detail: detail.into() }
    }
    pub fn not_supported(field: impl Into<String>, value: Value, supported: &[&str]) -> Self {
        let supported = supported.iter().map(|s| s.to_string()).collect();
        FieldError { field: field.into(), kind: FieldErrorKind::NotSupported(value, supported), detail: String::new() }
    }
    pub fn duplicate(field: impl Into<String>, value: Value) -> Self {
        FieldError { field: field.into(), kind: FieldErrorKind::Duplicate(value), detail: String::new() }
    }
    pub fn not_found(field: impl Into<String>, value: Value) -> Self {
        FieldError { field: field.into(), kind: FieldErrorKind::NotFound(value), detail: String::new() }
    }
    pub fn forbidden(field: impl Into<String>, detail: impl Into<String>) -> Self {
        FieldError { field: field.into(), kind: FieldErrorKind::Forbidden, detail: detail.into() }
    }
    pub fn too_long(field: impl Into<String>, max: usize) -> Self {
        FieldError { field: field.into(), kind: FieldErrorKind::TooLong(max), detail: String::new() }
    }

    /// The message without the field, as in a cause's `message`.
    pub fn body(&self) -> String {
        match &self.kind {
            FieldErrorKind::Invalid(v) => {
                if self.detail.is_empty() {
                    format!("Invalid value: {}", go_value(v))
                } else {
                    format!("Invalid value: {}: {}", go_value(v), self.detail)
                }
            }
            FieldErrorKind::InvalidRendered(v) => format!("Invalid value: {v}: {}", self.detail),
            FieldErrorKind::Required => {
                if self.detail.is_empty() {
                    "Required value".to_string()
                } else {
                    format!("Required value: {}", self.detail)
                }
            }
            FieldErrorKind::NotSupported(v, s) => {
                let quoted: Vec<String> = s.iter().map(|x| format!("\"{x}\"")).collect();
                format!("Unsupported value: {}: supported values: {}", go_value(v), quoted.join(", "))
            }
            FieldErrorKind::Duplicate(v) => format!("Duplicate value: {}", go_value(v)),
            FieldErrorKind::NotFound(v) => format!("Not found: {}", go_value(v)),
            FieldErrorKind::Forbidden => format!("Forbidden: {}", self.detail),
            FieldErrorKind::TooLong(n) => format!("Too long: must have at most {n} bytes"),
        }
    }
}

impl std::fmt::Display for FieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.body())
    }
}

/// Values in messages as Go's `%#v`-ish printing in field errors: strings quoted, numbers bare.
fn go_value(v: &Value) -> String {
    match v {
        Value::String(s) => format!("{s:?}"),
        Value::Null => "null".to_string(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_found_matches_kube_apiserver() {
        // shared/reference/kube-apiserver-v1.28.7/errors/not-found-404.json
        let got = ApiError::not_found("", "configmaps", "missing").to_status();
        let want: Value = serde_json::from_str(
            r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure",
            "message":"configmaps \"missing\" not found","reason":"NotFound",
            "details":{"name":"missing","kind":"configmaps"},"code":404}"#,
        )
        .unwrap();
        assert_eq!(got, want);
    }

    #[test]
    fn invalid_name_matches_kube_apiserver() {
        // shared/reference/kube-apiserver-v1.28.7/errors/invalid-name-422.json
        let detail = crate::validation::DNS1123_SUBDOMAIN_MSG;
        let err = ApiError::invalid(
            "",
            "ConfigMap",
            "Bad_Name",
            vec![FieldError::invalid("metadata.name", Value::from("Bad_Name"), detail)],
        );
        assert_eq!(
            err.message,
            "ConfigMap \"Bad_Name\" is invalid: metadata.name: Invalid value: \"Bad_Name\": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
        );
        assert_eq!(err.to_status()["details"]["causes"][0]["field"], "metadata.name");
    }
}
