//! OpenAPI v3 documents generated from the resource table.
//!
//! This step serves the index and a document per group-version with every resource's
//! paths and operations (`x-kubernetes-group-version-kind`, `x-kubernetes-action`, and the
//! `fieldValidation` parameter on PATCH, which is how kubectl learns to validate on the
//! server). Component schemas (for `kubectl explain`) are not generated yet.

use rkube_api::resource::{ResourceDef, TableSnapshot};
use serde_json::{json, Map, Value};

fn gv_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

fn hash_of(v: &Value) -> String {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in v.to_string().bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    format!("{h:016X}")
}

fn group_versions(t: &TableSnapshot) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for r in &t.resources {
        let gv = (r.group.clone(), r.version.clone());
        if !out.contains(&gv) {
            out.push(gv);
        }
    }
    out.sort();
    out
}

pub fn index(t: &TableSnapshot) -> Value {
    let mut paths = Map::new();
    for (g, v) in group_versions(t) {
        let doc = group_version_doc(t, &g, &v).unwrap_or(Value::Null);
        let p = gv_path(&g, &v);
        paths.insert(p.clone(), json!({"serverRelativeURL": format!("/openapi/v3/{p}?hash={}", hash_of(&doc))}));
    }
    json!({"paths": paths})
}

fn param(name: &str, location: &str, description: &str) -> Value {
    json!({"name": name, "in": location, "description": description, "schema": {"type": "string", "uniqueItems": true}})
}

fn operation(r: &ResourceDef, action: &str, op_id: &str, extra: Vec<Value>) -> Value {
    json!({
        "operationId": op_id,
        "parameters": extra,
        "responses": {"200": {"description": "OK"}, "401": {"description": "Unauthorized"}},
        "x-kubernetes-action": action,
        "x-kubernetes-group-version-kind": {"group": r.group, "version": r.version, "kind": r.kind},
    })
}

fn field_validation() -> Value {
    param(
        "fieldValidation",
        "query",
        "fieldValidation instructs the server on how to handle objects in the request containing unknown or duplicate fields: Ignore, Warn or Strict.",
    )
}

pub fn group_version_doc(t: &TableSnapshot, group: &str, version: &str) -> Option<Value> {
    let mut rs: Vec<_> = t.in_group_version(group, version).collect();
    if rs.is_empty() {
        return None;
    }
    rs.sort_by(|a, b| a.plural.cmp(&b.plural));
    let base = format!("/{}", gv_path(group, version));
    let mut paths = Map::new();
    for r in rs {
        let kind = &r.kind;
        let coll = if r.namespaced {
            format!("{base}/namespaces/{{namespace}}/{}", r.plural)
        } else {
            format!("{base}/{}", r.plural)
        };
        let item = format!("{coll}/{{name}}");
        let mut c = Map::new();
        c.insert("get".into(), operation(r, "list", &format!("list{kind}"), vec![]));
        c.insert("post".into(), operation(r, "post", &format!("create{kind}"), vec![field_validation()]));
        if r.allows("deletecollection") {
            c.insert("delete".into(), operation(r, "deletecollection", &format!("deleteCollection{kind}"), vec![]));
        }
        paths.insert(coll, Value::Object(c));
        let mut i = Map::new();
        i.insert("get".into(), operation(r, "get", &format!("read{kind}"), vec![]));
        i.insert("put".into(), operation(r, "put", &format!("replace{kind}"), vec![field_validation()]));
        i.insert("patch".into(), operation(r, "patch", &format!("patch{kind}"), vec![field_validation()]));
        i.insert("delete".into(), operation(r, "delete", &format!("delete{kind}"), vec![]));
        paths.insert(item.clone(), Value::Object(i));
        for s in &r.subresources {
            let mut sm = Map::new();
            for verb in s.verbs() {
                let (method, action) = match *verb {
                    "get" => ("get", "get"),
                    "patch" => ("patch", "patch"),
                    "update" => ("put", "put"),
                    "create" => ("post", "post"),
                    _ => continue,
                };
                let extra = if matches!(method, "patch" | "put" | "post") { vec![field_validation()] } else { vec![] };
                sm.insert(method.into(), operation(r, action, &format!("{action}{kind}{}", s.name()), extra));
            }
            paths.insert(format!("{item}/{}", s.name()), Value::Object(sm));
        }
    }
    Some(json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": crate::KUBE_GIT_VERSION},
        "paths": paths,
        "components": {"schemas": {}},
    }))
}
