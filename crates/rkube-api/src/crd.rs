//! CustomResourceDefinitions: the `customresourcedefinitions` row and its strategy, and the
//! rows a definition adds to the table at run time (one per served version), served by the
//! same generic registry as every built-in resource with [`CustomStrategy`].
//!
//! What a custom resource gets: CRUD, list/watch with selectors, the status subresource when
//! the version declares it, generation, JSON/YAML only on the wire (no protobuf message
//! exists, as with kube-apiserver), Tables with Name and Age. Left out for now: OpenAPI
//! schema validation, pruning and defaulting; conversion between versions (an object keeps
//! the apiVersion it was written with); additionalPrinterColumns; the scale subresource.

use std::sync::Arc;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1 as apiext;
use serde_json::{json, Value};

use crate::resource::{ResourceBuilder, ResourceDef, Subresource};
use crate::status::FieldError;
use crate::strategy::{get_str, typed_roundtrip, typed_schema, Builtin, Strategy};
use crate::validation;

pub const GROUP: &str = "apiextensions.k8s.io";

/// The storage prefix of the definitions themselves (the controller watches it).
pub const PREFIX: &str = "/registry/apiextensions.k8s.io/customresourcedefinitions/";

/// The `customresourcedefinitions` row.
pub fn definition_row() -> ResourceDef {
    ResourceBuilder::new(
        GROUP,
        "v1",
        "CustomResourceDefinition",
        "customresourcedefinitions",
        false,
        Arc::new(Builtin {
            typed: Some(typed_roundtrip::<apiext::CustomResourceDefinition>),
            schema: Some(typed_schema::<apiext::CustomResourceDefinition>),
            validate: validate_definition,
            validate_update: validate_definition_update,
            initial_status: Some(initial_status),
            ..Default::default()
        }),
    )
    .short(&["crd", "crds"])
    .categories(&["api-extensions"])
    .subresources(&[Subresource::Status])
    .generation()
    .build()
}

/// Groups of Kubernetes' own (no dot, or `*.k8s.io` but not the community's `*.x-k8s.io`):
/// a definition claims one only with the `api-approved.kubernetes.io` annotation.
fn reserved_group(group: &str) -> bool {
    !group.contains('.') || group.ends_with(".k8s.io") && !group.ends_with(".x-k8s.io")
}

fn validate_definition(obj: &Value, errs: &mut Vec<FieldError>) {
    let group = get_str(obj, &["spec", "group"]).unwrap_or("");
    let plural = get_str(obj, &["spec", "names", "plural"]).unwrap_or("");
    let kind = get_str(obj, &["spec", "names", "kind"]).unwrap_or("");
    let name = get_str(obj, &["metadata", "name"]).unwrap_or("");
    if group.is_empty() {
        errs.push(FieldError::required("spec.group", ""));
    } else if !group.contains('.') {
        errs.push(FieldError::invalid("spec.group", json!(group), "should be a domain with at least one dot"));
    } else if reserved_group(group) && obj.pointer("/metadata/annotations/api-approved.kubernetes.io").is_none() {
        errs.push(FieldError::required(
            "metadata.annotations[api-approved.kubernetes.io]",
            "protected groups must have approval annotation \"api-approved.kubernetes.io\", see https://github.com/kubernetes/enhancements/pull/1111",
        ));
    }
    if name != format!("{plural}.{group}") {
        errs.push(FieldError::invalid("metadata.name", json!(name), "must be spec.names.plural+\".\"+spec.group"));
    }
    for (field, value) in [("plural", plural), ("singular", get_str(obj, &["spec", "names", "singular"]).unwrap_or(""))]
    {
        if !value.is_empty() {
            for e in validation::dns1035_label(value) {
                errs.push(FieldError::invalid(format!("spec.names.{field}"), json!(value), e));
            }
        }
    }
    if kind.is_empty() {
        errs.push(FieldError::required("spec.names.kind", ""));
    }
    match get_str(obj, &["spec", "scope"]) {
        Some("Namespaced" | "Cluster") => {}
        other => {
            errs.push(FieldError::not_supported("spec.scope", json!(other.unwrap_or("")), &["Cluster", "Namespaced"]))
        }
    }
    let versions = obj.pointer("/spec/versions").and_then(Value::as_array).cloned().unwrap_or_default();
    if versions.is_empty() {
        errs.push(FieldError::required("spec.versions", "must have exactly one version marked as storage version"));
    }
    let storage = versions.iter().filter(|v| v.get("storage").and_then(Value::as_bool) == Some(true)).count();
    if !versions.is_empty() && storage != 1 {
        errs.push(FieldError::invalid(
            "spec.versions",
            json!(versions.iter().map(|v| v.get("name").cloned().unwrap_or(Value::Null)).collect::<Vec<_>>()),
            "must have exactly one version marked as storage version",
        ));
    }
    let mut seen = Vec::new();
    for (i, v) in versions.iter().enumerate() {
        let vname = v.get("name").and_then(Value::as_str).unwrap_or("");
        for e in validation::dns1035_label(vname) {
            errs.push(FieldError::invalid(format!("spec.versions[{i}].name"), json!(vname), e));
        }
        if seen.contains(&vname) {
            errs.push(FieldError::duplicate(format!("spec.versions[{i}].name"), json!(vname)));
        }
        seen.push(vname);
    }
}

fn validate_definition_update(new: &Value, old: &Value, errs: &mut Vec<FieldError>) {
    // Objects are stored under the group, plural and scope, and carry the kind: none of them
    // may change under existing objects.
    for (path, field) in [
        ("/spec/group", "spec.group"),
        ("/spec/names/plural", "spec.names.plural"),
        ("/spec/names/kind", "spec.names.kind"),
        ("/spec/scope", "spec.scope"),
    ] {
        if new.pointer(path) != old.pointer(path) {
            errs.push(FieldError::invalid(
                field,
                new.pointer(path).cloned().unwrap_or(Value::Null),
                "field is immutable",
            ));
        }
    }
}

/// Names are accepted at once; `Established` is added by the controller once the rows are in
/// the table (see [`established`]), so a client that waits for it can use the resource.
fn initial_status(obj: &Value) -> Value {
    let names = obj.pointer("/spec/names").cloned().unwrap_or(json!({}));
    let storage: Vec<Value> = obj
        .pointer("/spec/versions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|v| v.get("storage").and_then(Value::as_bool) == Some(true))
        .filter_map(|v| v.get("name").cloned())
        .collect();
    let now = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string();
    json!({
        "acceptedNames": names,
        "conditions": [
            {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts", "message": "no conflicts found", "lastTransitionTime": now},
        ],
        "storedVersions": storage,
    })
}

/// The definition with an `Established=True` condition, or `None` if it has one already.
pub fn established(definition: &Value) -> Option<Value> {
    let conditions = definition.pointer("/status/conditions").and_then(Value::as_array);
    if conditions.into_iter().flatten().any(|c| c["type"] == "Established" && c["status"] == "True") {
        return None;
    }
    let mut def = definition.clone();
    let now = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string();
    let cond = json!({"type": "Established", "status": "True", "reason": "InitialNamesAccepted",
                      "message": "the initial names have been accepted", "lastTransitionTime": now});
    match def.pointer_mut("/status/conditions").and_then(Value::as_array_mut) {
        Some(list) => list.push(cond),
        None => def["status"]["conditions"] = json!([cond]),
    }
    Some(def)
}

/// The behaviour of a custom resource: no typed model, so objects are stored as sent
/// (metadata is validated by the registry, `apiVersion`/`kind` checked by the codec).
pub struct CustomStrategy;

impl Strategy for CustomStrategy {}

/// The table rows a stored definition serves: one per served version.
pub fn rows(definition: &Value) -> Vec<ResourceDef> {
    let mut errs = Vec::new();
    validate_definition(definition, &mut errs);
    if !errs.is_empty() {
        return Vec::new();
    }
    let group = get_str(definition, &["spec", "group"]).unwrap_or_default();
    let plural = get_str(definition, &["spec", "names", "plural"]).unwrap_or_default();
    let kind = get_str(definition, &["spec", "names", "kind"]).unwrap_or_default();
    let singular =
        get_str(definition, &["spec", "names", "singular"]).map(str::to_string).unwrap_or(kind.to_lowercase());
    let namespaced = get_str(definition, &["spec", "scope"]) == Some("Namespaced");
    let strings = |path: &str| -> Vec<String> {
        definition
            .pointer(path)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect()
    };
    let short = strings("/spec/names/shortNames");
    let categories = strings("/spec/names/categories");
    let versions = definition.pointer("/spec/versions").and_then(Value::as_array).cloned().unwrap_or_default();
    versions
        .iter()
        .filter(|v| v.get("served").and_then(Value::as_bool) == Some(true))
        .filter_map(|v| {
            let version = v.get("name")?.as_str()?;
            let status = v.pointer("/subresources/status").is_some();
            let short: Vec<&str> = short.iter().map(String::as_str).collect();
            let categories: Vec<&str> = categories.iter().map(String::as_str).collect();
            let mut def = ResourceBuilder::new(group, version, kind, plural, namespaced, Arc::new(CustomStrategy))
                .short(&short)
                .categories(&categories)
                .subresources(if status { &[Subresource::Status] } else { &[] })
                .generation()
                .build();
            def.singular = singular.clone();
            def.custom = true;
            Some(def)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn crontab() -> Value {
        json!({
            "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": "crontabs.stable.example.com"},
            "spec": {"group": "stable.example.com", "scope": "Namespaced",
                "names": {"plural": "crontabs", "singular": "crontab", "kind": "CronTab", "shortNames": ["ct"]},
                "versions": [
                    {"name": "v1", "served": true, "storage": true, "subresources": {"status": {}},
                     "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}},
                    {"name": "v1beta1", "served": false, "storage": false,
                     "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}
                ]}
        })
    }

    #[test]
    fn a_definition_serves_its_served_versions() {
        let mut errs = Vec::new();
        validate_definition(&crontab(), &mut errs);
        assert!(errs.is_empty(), "{errs:?}");
        let rows = rows(&crontab());
        assert_eq!(rows.len(), 1);
        let r = &rows[0];
        assert_eq!((r.group.as_str(), r.version.as_str(), r.kind.as_str()), ("stable.example.com", "v1", "CronTab"));
        assert!(r.namespaced && r.has_subresource(Subresource::Status) && r.has_generation && r.custom);
        assert_eq!(r.short_names, vec!["ct"]);
        assert_eq!(r.storage_prefix, "/registry/stable.example.com/crontabs/");
        let status = initial_status(&crontab());
        assert_eq!(status["storedVersions"], json!(["v1"]));
        assert_eq!(status["conditions"][0]["type"], "NamesAccepted");
        let mut def = crontab();
        def["status"] = status;
        let done = established(&def).expect("not yet established");
        assert_eq!(done["status"]["conditions"][1]["type"], "Established");
        assert!(established(&done).is_none());
    }

    #[test]
    fn bad_definitions_are_refused_with_field_paths() {
        let mut bad = crontab();
        bad["metadata"]["name"] = json!("wrong");
        bad["spec"]["scope"] = json!("Global");
        bad["spec"]["versions"][1]["storage"] = json!(true);
        let mut errs = Vec::new();
        validate_definition(&bad, &mut errs);
        let fields: Vec<&str> = errs.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, vec!["metadata.name", "spec.scope", "spec.versions"], "{errs:?}");
        let mut core = crontab();
        core["spec"]["group"] = json!("apps.k8s.io");
        core["metadata"]["name"] = json!("crontabs.apps.k8s.io");
        let mut errs = Vec::new();
        validate_definition(&core, &mut errs);
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(rows(&core).is_empty());
        // Approved Kubernetes groups (Gateway API and the like) are allowed.
        core["metadata"]["annotations"] =
            json!({"api-approved.kubernetes.io": "https://github.com/kubernetes-sigs/gateway-api/pull/1"});
        let mut errs = Vec::new();
        validate_definition(&core, &mut errs);
        assert!(errs.is_empty(), "{errs:?}");
        let mut changed = crontab();
        changed["spec"]["scope"] = json!("Cluster");
        changed["spec"]["names"]["kind"] = json!("Other");
        let mut errs = Vec::new();
        validate_definition_update(&changed, &crontab(), &mut errs);
        let fields: Vec<&str> = errs.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, vec!["spec.names.kind", "spec.scope"]);
    }
}
