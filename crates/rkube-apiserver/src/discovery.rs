//! Discovery documents, generated from the resource table: `/api`, `/api/v1`, `/apis`,
//! `/apis/{group}`, `/apis/{group}/{version}`, aggregated discovery (apidiscovery.k8s.io
//! v2 and v2beta1), `/version` and the root path list. Shapes follow kube-apiserver's
//! (shared/reference/kube-apiserver-v1.28.7/discovery/).

use rkube_api::resource::{ResourceDef, TableSnapshot};
use serde_json::{json, Map, Value};

fn resource_entry(r: &ResourceDef) -> Value {
    let mut m = Map::new();
    m.insert("name".into(), json!(r.plural));
    m.insert("singularName".into(), json!(r.singular));
    m.insert("namespaced".into(), json!(r.namespaced));
    m.insert("kind".into(), json!(r.kind));
    m.insert("verbs".into(), json!(r.verbs));
    if !r.short_names.is_empty() {
        m.insert("shortNames".into(), json!(r.short_names));
    }
    if !r.categories.is_empty() {
        m.insert("categories".into(), json!(r.categories));
    }
    m.insert("storageVersionHash".into(), json!(r.storage_version_hash()));
    Value::Object(m)
}

fn subresource_entries(r: &ResourceDef) -> Vec<Value> {
    let mut subs: Vec<_> = r.subresources.clone();
    subs.sort_by_key(|s| s.name());
    subs.iter()
        .map(|s| {
            let mut m = Map::new();
            m.insert("name".into(), json!(format!("{}/{}", r.plural, s.name())));
            m.insert("singularName".into(), json!(""));
            m.insert("namespaced".into(), json!(r.namespaced));
            match s.body_kind(&r.kind) {
                Some((g, v, k)) => {
                    if !g.is_empty() {
                        m.insert("group".into(), json!(g));
                        m.insert("version".into(), json!(v));
                    }
                    m.insert("kind".into(), json!(k));
                }
                None => {
                    m.insert("kind".into(), json!(r.kind));
                }
            }
            m.insert("verbs".into(), json!(s.verbs()));
            Value::Object(m)
        })
        .collect()
}

/// `/api/v1` or `/apis/{group}/{version}`; None if nothing is served there.
pub fn resource_list(t: &TableSnapshot, group: &str, version: &str) -> Option<Value> {
    let mut rs: Vec<&std::sync::Arc<ResourceDef>> = t.in_group_version(group, version).collect();
    if rs.is_empty() {
        return None;
    }
    rs.sort_by(|a, b| a.plural.cmp(&b.plural));
    let mut resources = Vec::new();
    for r in rs {
        resources.push(resource_entry(r));
        resources.extend(subresource_entries(r));
    }
    let gv = if group.is_empty() { version.to_string() } else { format!("{group}/{version}") };
    let mut m = Map::new();
    m.insert("kind".into(), json!("APIResourceList"));
    if !group.is_empty() {
        m.insert("apiVersion".into(), json!("v1"));
    }
    m.insert("groupVersion".into(), json!(gv));
    m.insert("resources".into(), Value::Array(resources));
    Some(Value::Object(m))
}

pub fn api_versions(server_address: &str) -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}],
    })
}

fn group_entry(t: &TableSnapshot, group: &str) -> Value {
    let versions: Vec<Value> =
        t.versions(group).iter().map(|v| json!({"groupVersion": format!("{group}/{v}"), "version": v})).collect();
    let preferred = versions.first().cloned().unwrap_or(Value::Null);
    json!({"name": group, "versions": versions, "preferredVersion": preferred})
}

fn named_groups(t: &TableSnapshot) -> Vec<String> {
    let mut groups: Vec<String> = t.groups.iter().filter(|g| !g.is_empty()).cloned().collect();
    groups.sort();
    groups
}

pub fn api_group_list(t: &TableSnapshot) -> Value {
    let groups: Vec<Value> = named_groups(t).iter().map(|g| group_entry(t, g)).collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

pub fn api_group(t: &TableSnapshot, group: &str) -> Option<Value> {
    if group.is_empty() || t.versions(group).is_empty() {
        return None;
    }
    let mut v = group_entry(t, group);
    if let Some(m) = v.as_object_mut() {
        let mut out = Map::new();
        out.insert("kind".into(), json!("APIGroup"));
        out.insert("apiVersion".into(), json!("v1"));
        for (k, x) in m.iter() {
            out.insert(k.clone(), x.clone());
        }
        return Some(Value::Object(out));
    }
    None
}

fn aggregated_resource(r: &ResourceDef) -> Value {
    let mut m = Map::new();
    m.insert("resource".into(), json!(r.plural));
    m.insert("responseKind".into(), json!({"group": "", "version": "", "kind": r.kind}));
    m.insert("scope".into(), json!(if r.namespaced { "Namespaced" } else { "Cluster" }));
    m.insert("singularResource".into(), json!(r.singular));
    m.insert("verbs".into(), json!(r.verbs));
    if !r.short_names.is_empty() {
        m.insert("shortNames".into(), json!(r.short_names));
    }
    if !r.categories.is_empty() {
        m.insert("categories".into(), json!(r.categories));
    }
    if !r.subresources.is_empty() {
        let mut subs = r.subresources.clone();
        subs.sort_by_key(|s| s.name());
        let subs: Vec<Value> = subs
            .iter()
            .map(|s| {
                let (g, v, kind) = s.body_kind(&r.kind).unwrap_or(("", "", r.kind.clone()));
                json!({"subresource": s.name(), "responseKind": {"group": g, "version": v, "kind": kind}, "verbs": s.verbs()})
            })
            .collect();
        m.insert("subresources".into(), Value::Array(subs));
    }
    Value::Object(m)
}

fn aggregated_group(t: &TableSnapshot, group: &str) -> Value {
    let versions: Vec<Value> = t
        .versions(group)
        .iter()
        .map(|v| {
            let mut rs: Vec<_> = t.in_group_version(group, v).collect();
            rs.sort_by(|a, b| a.plural.cmp(&b.plural));
            let resources: Vec<Value> = rs.iter().map(|r| aggregated_resource(r)).collect();
            json!({"version": v, "resources": resources, "freshness": "Current"})
        })
        .collect();
    let metadata = if group.is_empty() {
        json!({"creationTimestamp": null})
    } else {
        json!({"name": group, "creationTimestamp": null})
    };
    json!({"metadata": metadata, "versions": versions})
}

/// Aggregated discovery for `/api` (core) or `/apis` (named groups).
pub fn aggregated(t: &TableSnapshot, core: bool, version: &str) -> Value {
    let items: Vec<Value> = if core {
        vec![aggregated_group(t, "")]
    } else {
        named_groups(t).iter().map(|g| aggregated_group(t, g)).collect()
    };
    json!({
        "kind": "APIGroupDiscoveryList",
        "apiVersion": format!("apidiscovery.k8s.io/{version}"),
        "metadata": {},
        "items": items,
    })
}

pub fn aggregated_content_type(version: &str) -> &'static str {
    if version == "v2" {
        "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
    } else {
        "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList"
    }
}

pub fn version() -> Value {
    json!({
        "major": crate::KUBE_MAJOR,
        "minor": crate::KUBE_MINOR,
        "gitVersion": crate::KUBE_GIT_VERSION,
        "gitCommit": option_env!("RKUBE_GIT_COMMIT").unwrap_or("unknown"),
        "gitTreeState": "clean",
        "buildDate": "1970-01-01T00:00:00Z",
        "goVersion": "rkube",
        "compiler": "rustc",
        "platform": format!("{}/{}", std::env::consts::OS, if std::env::consts::ARCH == "x86_64" { "amd64" } else { std::env::consts::ARCH }),
    })
}

/// `GET /` for callers allowed to see it: every path served.
pub fn root_paths(t: &TableSnapshot) -> Value {
    let mut paths: Vec<String> = vec![
        "/.well-known/openid-configuration".into(),
        "/api".into(),
        "/api/v1".into(),
        "/apis".into(),
        "/apis/".into(),
        "/healthz".into(),
        "/livez".into(),
        "/metrics".into(),
        "/openapi/v2".into(),
        "/openapi/v3".into(),
        "/openapi/v3/".into(),
        "/openid/v1/jwks".into(),
        "/readyz".into(),
        "/version".into(),
    ];
    for g in named_groups(t) {
        paths.push(format!("/apis/{g}"));
        for v in t.versions(&g) {
            paths.push(format!("/apis/{g}/{v}"));
        }
    }
    paths.sort();
    json!({"paths": paths})
}

#[cfg(test)]
mod tests {
    use super::*;
    use rkube_api::ResourceTable;

    fn table() -> std::sync::Arc<TableSnapshot> {
        let t = ResourceTable::default();
        rkube_api::builtin::register_builtins(&t);
        t.snapshot()
    }

    /// The batch/v1 list as kube-apiserver serves it (shared/reference/.../apis-batch-v1.json),
    /// compared without storageVersionHash, which is an opaque token of each server.
    #[test]
    fn batch_v1_matches_reference() {
        let got = resource_list(&table(), "batch", "v1").unwrap();
        let want: Value = serde_json::from_str(include_str!(
            "../../../../shared/reference/kube-apiserver-v1.28.7/discovery/apis-batch-v1.json"
        ))
        .unwrap();
        let strip = |v: &Value| {
            let mut v = v.clone();
            for r in v["resources"].as_array_mut().unwrap() {
                r.as_object_mut().unwrap().remove("storageVersionHash");
            }
            v
        };
        assert_eq!(strip(&got), strip(&want));
    }

    #[test]
    fn apps_v1_matches_reference_for_served_resources() {
        let got = resource_list(&table(), "apps", "v1").unwrap();
        let want: Value = serde_json::from_str(include_str!(
            "../../../../shared/reference/kube-apiserver-v1.28.7/discovery/apis-apps-v1.json"
        ))
        .unwrap();
        for r in got["resources"].as_array().unwrap() {
            let name = r["name"].as_str().unwrap();
            let w = want["resources"].as_array().unwrap().iter().find(|x| x["name"] == name).expect(name);
            let mut r = r.clone();
            let mut w = w.clone();
            r.as_object_mut().unwrap().remove("storageVersionHash");
            w.as_object_mut().unwrap().remove("storageVersionHash");
            assert_eq!(r, w, "{name}");
        }
    }
}
