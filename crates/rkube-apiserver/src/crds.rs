//! The CustomResourceDefinition controller: keeps the resource table in step with the stored
//! definitions. A created or changed definition registers its served versions (discovery,
//! the registry and watch pick them up from the next request on); a deleted one unregisters
//! them and deletes its objects.
//!
//! Invariant: the table's custom rows are a function of the stored definitions; this is the
//! only writer of those rows.
//!
//! Known gap: kube-apiserver deletes a definition's objects under a finalizer, so the
//! cleanup survives a crash and finishes before the name can be reused. Here cleanup runs
//! after the definition is gone: a definition deleted and re-created before the controller
//! sees the deletion keeps the old objects, and a crash mid-cleanup leaves the rest stored.

use std::collections::HashMap;
use std::sync::Arc;

use rkube_api::crd;
use rkube_store::{ListOptions, Op};

use crate::registry::{parse_stored, stamp};
use crate::ApiServer;

/// What is registered now: (group, plural) -> the definition's spec it was built from.
type Served = HashMap<(String, String), serde_json::Value>;

/// Brings the table in step with the definitions stored now; returns the revision read.
async fn sync(server: &ApiServer, served: &mut Served) -> Option<rkube_store::Revision> {
    let Ok(list) = server.store.list(crd::PREFIX, &ListOptions::default()) else { return None };
    let revision = list.revision;
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
        // Established only once the resource is in the table.
        if let Some(done) = crd::established(&def) {
            let op = Op::Update { key: kv.key.to_string(), expected: Some(kv.mod_revision), value: stamp(done) };
            if let Err(e) = server.store.txn(op).await {
                tracing::debug!(error = %e, "Established not recorded; retried on the next change");
            }
        }
        wanted.insert(id, spec);
    }
    for gone in served.keys().filter(|id| !wanted.contains_key(*id)).cloned().collect::<Vec<_>>() {
        server.table.unregister(&gone.0, &gone.1, &[]);
        delete_objects(server, &gone.0, &gone.1).await;
        tracing::info!(group = %gone.0, resource = %gone.1, "custom resource removed");
    }
    *served = wanted;
    Some(revision)
}

/// A deleted definition takes its objects with it (kube-apiserver's
/// `customresourcecleanup` finalizer does this before the definition disappears).
async fn delete_objects(server: &ApiServer, group: &str, plural: &str) {
    let prefix = format!("/registry/{group}/{plural}/");
    let Ok(list) = server.store.list(&prefix, &ListOptions::default()) else { return };
    for kv in list.items {
        let Ok(obj) = parse_stored(&kv) else { continue };
        let _ = server
            .store
            .txn(Op::Delete { key: kv.key.to_string(), expected: None, tombstone: crate::registry::tombstone(obj) })
            .await;
    }
}

/// Registers the stored definitions now (so they are served when the server starts), then
/// follows changes.
pub async fn start(server: Arc<ApiServer>) {
    let mut served = Served::new();
    // Watching from the revision the first sync read misses no change made in between.
    let from = sync(&server, &mut served).await.unwrap_or_else(|| server.store.revision());
    let Ok(mut watcher) = server.store.watch(crd::PREFIX, from) else {
        tracing::error!("cannot watch CustomResourceDefinitions; new ones will not be served");
        return;
    };
    tokio::spawn(async move {
        while watcher.next().await.is_some() {
            while watcher.try_next().is_some() {}
            sync(&server, &mut served).await;
        }
        tracing::error!("the CustomResourceDefinition watch ended; definitions changed from now on are not served");
    });
}
