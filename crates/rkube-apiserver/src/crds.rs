//! The CustomResourceDefinition controller: keeps the resource table in step with the stored
//! definitions. A created or changed definition registers its served versions (discovery,
//! the registry and watch pick them up from the next request on); a deleted one unregisters
//! them and deletes its objects.
//!
//! Invariant: the table's custom rows are a function of the stored definitions; this is the
//! only writer of those rows.

use std::collections::HashMap;
use std::sync::Arc;

use rkube_api::crd;
use rkube_store::{ListOptions, Op};

use crate::registry::{parse_stored, stamp};
use crate::ApiServer;

/// What is registered now: (group, plural) -> the definition's spec it was built from.
type Served = HashMap<(String, String), serde_json::Value>;

async fn sync(server: &ApiServer, served: &mut Served) {
    let Ok(list) = server.store.list(crd::PREFIX, &ListOptions::default()) else { return };
    let mut wanted: Served = HashMap::new();
    for kv in list.items {
        let Ok(def) = parse_stored(&kv) else { continue };
        let rows = crd::rows(&def);
        // Identified by the definition, not its rows: one that serves no version keeps its
        // objects, it just serves nothing.
        let (Some(group), Some(plural)) = (def.pointer("/spec/group"), def.pointer("/spec/names/plural")) else {
            continue;
        };
        let id = (group.as_str().unwrap_or_default().to_string(), plural.as_str().unwrap_or_default().to_string());
        let spec = def.get("spec").cloned().unwrap_or_default();
        if served.get(&id) != Some(&spec) {
            // The served versions are replaced in place, then the others removed, so a
            // changed definition's resource is never missing in between.
            let versions: Vec<String> = rows.iter().map(|r| r.version.clone()).collect();
            for row in rows {
                server.table.register(row);
            }
            server.table.unregister(&id.0, &id.1, &versions);
            tracing::info!(group = %id.0, resource = %id.1, "custom resource served");
        }
        wanted.insert(id, spec);
    }
    for gone in served.keys().filter(|id| !wanted.contains_key(*id)).cloned().collect::<Vec<_>>() {
        server.table.unregister(&gone.0, &gone.1, &[]);
        delete_objects(server, &gone.0, &gone.1).await;
        tracing::info!(group = %gone.0, resource = %gone.1, "custom resource removed");
    }
    *served = wanted;
}

/// A deleted definition takes its objects with it (kube-apiserver's
/// `customresourcecleanup` finalizer does this before the definition disappears).
async fn delete_objects(server: &ApiServer, group: &str, plural: &str) {
    let prefix = format!("/registry/{group}/{plural}/");
    let Ok(list) = server.store.list(&prefix, &ListOptions::default()) else { return };
    for kv in list.items {
        let Ok(obj) = parse_stored(&kv) else { continue };
        let _ = server.store.txn(Op::Delete { key: kv.key.to_string(), expected: None, tombstone: stamp(obj) }).await;
    }
}

/// Registers the stored definitions now (so they are served when the server starts), then
/// follows changes.
pub async fn start(server: Arc<ApiServer>) {
    let mut served = Served::new();
    sync(&server, &mut served).await;
    let from = server.store.revision();
    let Ok(mut watcher) = server.store.watch(crd::PREFIX, from) else {
        tracing::error!("cannot watch CustomResourceDefinitions; new ones will not be served");
        return;
    };
    tokio::spawn(async move {
        while watcher.next().await.is_some() {
            while watcher.try_next().is_some() {}
            sync(&server, &mut served).await;
        }
    });
}
