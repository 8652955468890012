//! OpenAPI v3 documents generated from the resource table.
//!
//! The index and a document per group-version with every resource's paths and operations
//! (`x-kubernetes-group-version-kind`, `x-kubernetes-action`, and the `fieldValidation`
//! parameter on PATCH, which is how kubectl learns to validate on the server), and the
//! component schemas of the typed model (descriptions included, for `kubectl explain`),
//! each resource's schema marked with its group-version-kind. Documents are generated once
//! per table snapshot and cached.

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
    let mut gen = schemars::generate::SchemaSettings::openapi3().into_generator();
    let mut gvk_of: Vec<(String, Value)> = Vec::new();
    for r in t.in_group_version(group, version) {
        if let Some(reference) = r.strategy.openapi_schema(&mut gen) {
            if let Some(name) = reference.get("$ref").and_then(Value::as_str).and_then(|p| p.rsplit('/').next()) {
                gvk_of.push((name.to_string(), json!([{"group": r.group, "version": r.version, "kind": r.kind}])));
            }
        }
    }
    let mut schemas = gen.take_definitions(true);
    let mut visited = std::collections::HashSet::new();
    for r in t.in_group_version(group, version) {
        let name = gvk_of.iter().find(|(_, g)| g[0]["kind"] == r.kind.as_str()).map(|(n, _)| n.clone());
        if let (Some(name), Some(sref)) = (name, rkube_patch::schema_for(&r.group, &r.version, &r.kind)) {
            annotate_patch_meta(&mut schemas, &name, sref, &mut visited);
        }
    }
    for (name, gvk) in gvk_of {
        if let Some(Value::Object(s)) = schemas.get_mut(&name) {
            s.insert("x-kubernetes-group-version-kind".into(), gvk);
        }
    }
    Some(json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": crate::KUBE_GIT_VERSION},
        "paths": paths,
        "components": {"schemas": schemas},
    }))
}

/// The definition a property schema refers to (`$ref`, `allOf: [{$ref}]`, or the same in
/// `items` for lists).
fn referenced(prop: &Value) -> Option<String> {
    let direct = |v: &Value| -> Option<String> {
        v.get("$ref")
            .or_else(|| v.get("allOf").and_then(|a| a.get(0)).and_then(|x| x.get("$ref")))
            .and_then(Value::as_str)
            .and_then(|r| r.rsplit('/').next())
            .map(str::to_string)
    };
    direct(prop).or_else(|| prop.get("items").and_then(direct))
}

/// Adds kube-apiserver's patch extensions (`x-kubernetes-patch-strategy`,
/// `x-kubernetes-patch-merge-key`, list types) from the strategic-merge-patch table to the
/// typed model's schemas, so clients compute the same patches as against Kubernetes.
fn annotate_patch_meta(
    schemas: &mut Map<String, Value>,
    def_name: &str,
    sref: rkube_patch::SchemaRef,
    visited: &mut std::collections::HashSet<String>,
) {
    if !visited.insert(def_name.to_string()) {
        return;
    }
    let Some(props) = schemas.get(def_name).and_then(|d| d.get("properties")).and_then(Value::as_object).cloned()
    else {
        return;
    };
    let mut children = Vec::new();
    let mut updated = props.clone();
    for (field, prop) in &props {
        let Some(info) = sref.field(field) else { continue };
        let Some(target) = updated.get_mut(field).and_then(Value::as_object_mut) else { continue };
        let mut strategy = Vec::new();
        if info.merge {
            strategy.push("merge");
        }
        if info.retain_keys {
            strategy.push("retainKeys");
        }
        if !strategy.is_empty() {
            target.insert("x-kubernetes-patch-strategy".into(), json!(strategy.join(",")));
        }
        let is_list = prop.get("type").and_then(Value::as_str) == Some("array");
        match (info.merge, info.merge_key) {
            (true, Some(key)) => {
                target.insert("x-kubernetes-patch-merge-key".into(), json!(key));
                if is_list {
                    target.insert("x-kubernetes-list-type".into(), json!("map"));
                    target.insert("x-kubernetes-list-map-keys".into(), json!([key]));
                }
            }
            (true, None) if is_list => {
                target.insert("x-kubernetes-list-type".into(), json!("set"));
            }
            (false, _) if is_list => {
                target.insert("x-kubernetes-list-type".into(), json!("atomic"));
            }
            _ => {}
        }
        if let (Some(child), Some(name)) = (info.schema, referenced(prop)) {
            children.push((name, child));
        }
    }
    if let Some(Value::Object(d)) = schemas.get_mut(def_name) {
        d.insert("properties".into(), Value::Object(updated));
    }
    for (name, child) in children {
        annotate_patch_meta(schemas, &name, child, visited);
    }
}

/// Generated documents, kept while the resource table is unchanged.
#[derive(Default)]
pub struct Cache {
    inner: std::sync::Mutex<Option<(usize, std::sync::Arc<CachedDocs>)>>,
}

pub struct CachedDocs {
    pub index: Value,
    pub docs: std::collections::HashMap<String, Value>,
    /// The Swagger 2.0 document (`/openapi/v2`), as JSON and in gnostic's protobuf form.
    pub v2_json: Value,
    pub v2_protobuf: Vec<u8>,
}

/// One Swagger 2.0 document for every group-version: the v3 documents' paths (operations with
/// their Kubernetes extensions) and schemas, with references moved to `#/definitions/`.
fn v2_document(docs: &std::collections::HashMap<String, Value>) -> Value {
    let mut paths = Map::new();
    let mut definitions = Map::new();
    let mut keys: Vec<&String> = docs.keys().collect();
    keys.sort();
    for k in keys {
        let doc = &docs[k];
        if let Some(Value::Object(ps)) = doc.get("paths") {
            for (path, item) in ps {
                let mut ops = Map::new();
                for (method, op) in item.as_object().into_iter().flatten() {
                    let mut o = Map::new();
                    for key in ["operationId", "x-kubernetes-action", "x-kubernetes-group-version-kind"] {
                        if let Some(v) = op.get(key) {
                            o.insert(key.into(), v.clone());
                        }
                    }
                    o.insert("responses".into(), json!({"200": {"description": "OK"}}));
                    ops.insert(method.clone(), Value::Object(o));
                }
                paths.insert(path.clone(), Value::Object(ops));
            }
        }
        if let Some(Value::Object(schemas)) = doc.pointer("/components/schemas") {
            for (name, schema) in schemas {
                definitions.entry(name.clone()).or_insert_with(|| schema.clone());
            }
        }
    }
    let doc = json!({
        "swagger": "2.0",
        "info": {"title": "Kubernetes", "version": crate::KUBE_GIT_VERSION},
        "paths": paths,
        "definitions": definitions,
    });
    serde_json::from_str(&doc.to_string().replace("#/components/schemas/", "#/definitions/")).unwrap_or(doc)
}

impl Cache {
    /// The documents for this snapshot (keyed by its address: a new snapshot is a new table).
    pub fn get(&self, t: &std::sync::Arc<TableSnapshot>) -> std::sync::Arc<CachedDocs> {
        let key = std::sync::Arc::as_ptr(t) as usize;
        let mut guard = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((k, docs)) = guard.as_ref() {
            if *k == key {
                return docs.clone();
            }
        }
        let mut docs = std::collections::HashMap::new();
        let mut paths = Map::new();
        for (g, v) in group_versions(t) {
            let doc = group_version_doc(t, &g, &v).unwrap_or(Value::Null);
            let p = gv_path(&g, &v);
            paths.insert(p.clone(), json!({"serverRelativeURL": format!("/openapi/v3/{p}?hash={}", hash_of(&doc))}));
            docs.insert(p, doc);
        }
        let v2_json = v2_document(&docs);
        let v2_protobuf = rkube_proto::gnostic::document(&v2_json);
        let built = std::sync::Arc::new(CachedDocs { index: json!({"paths": paths}), docs, v2_json, v2_protobuf });
        *guard = Some((key, built.clone()));
        built
    }
}
