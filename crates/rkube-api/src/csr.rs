//! CertificateSigningRequests' strategy (`pkg/apis/certificates/validation` and the
//! registry's strategies): the request must be a signed PEM certificate request, usages and
//! the signer name as upstream checks them, approval conditions set through `/approval`
//! only and never taken back, the request itself immutable.
//!
//! Deliberate differences: an update of the main resource that changes the spec, or of
//! `/status` that changes the approval conditions, is refused (422) where kube-apiserver
//! silently keeps the stored values; the refused value of an immutable field prints as `...`.

use serde_json::{json, Value};

use crate::resource::Subresource;
use crate::status::FieldError;
use crate::validation;

/// Every key usage the API knows (`allValidUsages`).
const CSR_USAGES: &[&str] = &[
    "any",
    "cert sign",
    "client auth",
    "code signing",
    "content commitment",
    "crl sign",
    "data encipherment",
    "decipher only",
    "digital signature",
    "email protection",
    "encipher only",
    "ipsec end system",
    "ipsec tunnel",
    "ipsec user",
    "key agreement",
    "key encipherment",
    "microsoft sgc",
    "netscape sgc",
    "ocsp signing",
    "s/mime",
    "server auth",
    "signing",
    "timestamping",
];

/// A CertificateSigningRequest's `spec.request`: the PEM bytes (decoded from base64).
pub fn request_pem(o: &Value) -> Vec<u8> {
    use base64::Engine;
    let request = o.pointer("/spec/request").and_then(Value::as_str).unwrap_or("");
    base64::engine::general_purpose::STANDARD.decode(request).unwrap_or_default()
}

/// Its Approved and Denied conditions (what only `/approval`, with `approve`, changes).
pub fn approvals(o: &Value) -> Vec<Value> {
    let conds = o.pointer("/status/conditions").and_then(Value::as_array).cloned().unwrap_or_default();
    conds.into_iter().filter(|c| matches!(c.get("type").and_then(Value::as_str), Some("Approved" | "Denied"))).collect()
}

pub(crate) fn validate_csr(o: &Value, errs: &mut Vec<FieldError>) {
    let spec = o.get("spec").unwrap_or(&Value::Null);
    let pem = request_pem(o);
    if let Err(e) = rkube_pki::parse_request(&pem) {
        errs.push(FieldError::invalid_rendered("spec.request", go_bytes(&pem), e));
    }
    let usages: Vec<&str> =
        spec.get("usages").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str).collect();
    if usages.is_empty() {
        errs.push(FieldError::required("spec.usages", "usages must be provided"));
    }
    for (i, u) in usages.iter().enumerate() {
        if !CSR_USAGES.contains(u) {
            errs.push(FieldError::not_supported(format!("spec.usages[{i}]"), json!(u), CSR_USAGES));
        }
    }
    let mut seen = std::collections::HashSet::new();
    for (i, u) in usages.iter().enumerate() {
        if !seen.insert(*u) {
            errs.push(FieldError::duplicate(format!("spec.usages[{i}]"), json!(u)));
        }
    }
    let signer = spec.get("signerName").and_then(Value::as_str).unwrap_or("");
    if signer == "kubernetes.io/legacy-unknown" {
        errs.push(FieldError::invalid(
            "spec.signerName",
            json!(signer),
            "the legacy signerName is not allowed via this API version",
        ));
    } else if signer.is_empty() {
        errs.push(FieldError::required("spec.signerName", ""));
    } else {
        match signer.split_once('/') {
            None => errs.push(FieldError::invalid(
                "spec.signerName",
                json!(signer),
                "must be a fully qualified domain and path of the form 'example.com/signer-name'",
            )),
            Some((domain, path)) => {
                if path.is_empty() {
                    errs.push(FieldError::invalid(
                        "spec.signerName",
                        json!(signer),
                        "validating path: must not be empty",
                    ));
                }
                if !domain.contains('.') || !validation::dns1123_subdomain(domain).is_empty() {
                    errs.push(FieldError::invalid(
                        "spec.signerName",
                        json!(signer),
                        "must be a fully qualified domain and path of the form 'example.com/signer-name'",
                    ));
                }
            }
        }
    }
    if let Some(secs) = spec.get("expirationSeconds").and_then(Value::as_i64) {
        if secs < 600 {
            errs.push(FieldError::invalid(
                "spec.expirationSeconds",
                json!(secs),
                "may not specify a duration less than 600 seconds (10 minutes)",
            ));
        }
    }
    validate_csr_conditions(o, errs);
}

/// populateConditionTimestamps: a condition's zero `lastUpdateTime` and
/// `lastTransitionTime` become now (the registry keeps an unchanged stored condition as is).
pub(crate) fn default_csr(o: &mut Value) {
    let Some(conds) = o.pointer_mut("/status/conditions").and_then(Value::as_array_mut) else { return };
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    for c in conds.iter_mut().filter_map(Value::as_object_mut) {
        for k in ["lastUpdateTime", "lastTransitionTime"] {
            if c.get(k).is_none_or(Value::is_null) {
                c.insert(k.into(), json!(now));
            }
        }
    }
}

/// Go prints a `[]byte` value as `[]byte{0x2d, ...}`.
fn go_bytes(b: &[u8]) -> String {
    let items: Vec<String> = b.iter().map(|x| format!("0x{x:x}")).collect();
    format!("[]byte{{{}}}", items.join(", "))
}

fn validate_csr_conditions(o: &Value, errs: &mut Vec<FieldError>) {
    let conds = o.pointer("/status/conditions").and_then(Value::as_array).cloned().unwrap_or_default();
    let mut seen = std::collections::HashSet::new();
    for (i, c) in conds.iter().enumerate() {
        let p = format!("status.conditions[{i}]");
        let ty = c.get("type").and_then(Value::as_str).unwrap_or("");
        if ty.is_empty() {
            errs.push(FieldError::required(format!("{p}.type"), ""));
        } else if matches!(ty, "Approved" | "Denied" | "Failed") && !seen.insert(ty.to_string()) {
            errs.push(FieldError::duplicate(format!("{p}.type"), json!(ty)));
        }
        match c.get("status").and_then(Value::as_str).unwrap_or("") {
            "" => errs.push(FieldError::required(format!("{p}.status"), "")),
            "True" | "False" | "Unknown" => {}
            other => {
                errs.push(FieldError::not_supported(format!("{p}.status"), json!(other), &["False", "True", "Unknown"]))
            }
        }
    }
    if seen.contains("Approved") && seen.contains("Denied") {
        errs.push(FieldError::invalid_rendered(
            "status.conditions",
            "...".into(),
            "Approved and Denied conditions are mutually exclusive",
        ));
    }
}

/// The request itself never changes; approval conditions change only through `/approval`.
pub(crate) fn validate_csr_update(new: &Value, old: &Value, errs: &mut Vec<FieldError>) {
    if new.get("spec") != old.get("spec") {
        errs.push(FieldError::invalid_rendered("spec", "...".into(), "field is immutable"));
    }
    let cert = |v: &Value| v.pointer("/status/certificate").and_then(Value::as_str).unwrap_or("").to_string();
    if !cert(old).is_empty() && cert(new) != cert(old) {
        errs.push(FieldError::forbidden("status.certificate", "updates may not modify existing certificate content"));
    }
    if approvals(new) != approvals(old) {
        errs.push(FieldError::forbidden(
            "status.conditions",
            "the Approved and Denied conditions are set through the approval subresource",
        ));
    }
}

/// `/approval`: once given, an approval or denial stays.
pub(crate) fn validate_csr_approval(_sub: Subresource, new: &Value, old: &Value, errs: &mut Vec<FieldError>) {
    if new.get("spec") != old.get("spec") {
        errs.push(FieldError::invalid_rendered("spec", "...".into(), "field is immutable"));
    }
    let conds = |v: &Value| v.pointer("/status/conditions").and_then(Value::as_array).cloned().unwrap_or_default();
    let new_conds = conds(new);
    for c in conds(old) {
        let ty = c.get("type").and_then(Value::as_str).unwrap_or("");
        if matches!(ty, "Approved" | "Denied")
            && !new_conds.iter().any(|n| n.get("type").and_then(Value::as_str) == Some(ty))
        {
            errs.push(FieldError::forbidden(
                "status.conditions",
                format!("updates may not remove a condition of type {ty:?}"),
            ));
        }
    }
}
