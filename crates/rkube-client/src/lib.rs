//! The client side every rkube component that is not the API server stands on: the node
//! agent and the scheduler (and, later, the controllers) reach the API server only through
//! its public API, as the kubelet and kube-scheduler do, so they work against any API server
//! and from another process.
//!
//! [`connect`] builds a client from a kubeconfig. [`Informers`] keeps one list+watch cache
//! per (resource, field selector) for a component, shared by all of its loops, and tells
//! subscribers what changed.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::fmt::Debug;
use std::path::Path;
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use kube::api::Api;
use kube::runtime::reflector::{self, Store};
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::{Client, Resource};
use serde::de::DeserializeOwned;
use tokio::sync::broadcast;

/// Requests a component has in flight at once (until their response headers arrive: a
/// watch holds its slot only until it starts streaming). A hundred pod workers reporting at
/// once share these, as a kubelet's requests share its QPS budget, so they reuse a handful of
/// pooled connections instead of opening one TLS connection each.
pub const MAX_IN_FLIGHT: usize = 16;

/// A client for the API server a kubeconfig names (its current context).
pub async fn connect(kubeconfig: &Path) -> Result<Client, String> {
    let kc = kube::config::Kubeconfig::read_from(kubeconfig).map_err(|e| format!("{}: {e}", kubeconfig.display()))?;
    let config = kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
        .await
        .map_err(|e| format!("{}: {e}", kubeconfig.display()))?;
    let builder =
        kube::client::ClientBuilder::try_from(config).map_err(|e| format!("{}: {e}", kubeconfig.display()))?;
    Ok(builder.with_layer(&tower::limit::ConcurrencyLimitLayer::new(MAX_IN_FLIGHT)).build())
}

/// What a subscriber hears from an informer.
#[derive(Debug, Clone)]
pub enum Change<K> {
    /// An object was added or modified (its new state).
    Applied(Arc<K>),
    /// An object was deleted (its last state).
    Deleted(Arc<K>),
    /// The cache was relisted: anything may have changed; read the store.
    Resynced,
}

/// One list+watch cache of a resource.
pub struct Informer<K: Resource + 'static>
where
    K::DynamicType: std::hash::Hash + Eq + Clone,
{
    store: Store<K>,
    changes: broadcast::Sender<Change<K>>,
    /// True once the first list is in the store. (The store's own `wait_until_ready` keeps
    /// one waker: of several tasks waiting at once, all but one could wait forever.)
    synced: tokio::sync::watch::Sender<bool>,
}

impl<K> Informer<K>
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: std::hash::Hash + Eq + Clone + Default,
{
    /// The cache (read it after [`Informer::ready`]).
    pub fn store(&self) -> &Store<K> {
        &self.store
    }

    /// Resolves once the first list is in the cache.
    pub async fn ready(&self) {
        let _ = self.synced.subscribe().wait_for(|synced| *synced).await;
    }

    /// Changes from now on. A subscriber that falls behind gets `Lagged` from the channel
    /// and should treat it as [`Change::Resynced`].
    pub fn subscribe(&self) -> broadcast::Receiver<Change<K>> {
        self.changes.subscribe()
    }
}

/// A component's informers: at most one per (resource type, field selector), each fed by one
/// watch that re-lists with back-off after an error.
#[derive(Clone)]
pub struct Informers {
    client: Client,
    started: Arc<Mutex<Started>>,
}

/// The informers started so far, by (resource type, field selector).
type Started = HashMap<(TypeId, String), Arc<dyn Any + Send + Sync>>;

impl Informers {
    pub fn new(client: Client) -> Informers {
        Informers { client, started: Arc::default() }
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The informer of every `K` in the cluster (namespaced kinds: in all namespaces) that
    /// matches `fields` (a field selector; "" for all), started on first use.
    pub fn get<K>(&self, fields: &str) -> Arc<Informer<K>>
    where
        K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
        K::DynamicType: std::hash::Hash + Eq + Clone + Default,
    {
        let key = (TypeId::of::<K>(), fields.to_string());
        let mut started = self.started.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(existing) = started.get(&key) {
            if let Ok(informer) = existing.clone().downcast::<Informer<K>>() {
                return informer;
            }
        }
        let (store, writer) = reflector::store::<K>();
        let (changes, _) = broadcast::channel(4096);
        let (synced, _) = tokio::sync::watch::channel(false);
        let informer = Arc::new(Informer { store, changes: changes.clone(), synced: synced.clone() });
        started.insert(key, informer.clone());
        let api: Api<K> = Api::all(self.client.clone());
        let mut config = watcher::Config::default();
        if !fields.is_empty() {
            config = config.fields(fields);
        }
        let stream = reflector::reflector(writer, watcher::watcher(api, config).default_backoff());
        tokio::spawn(async move {
            let mut stream = std::pin::pin!(stream);
            while let Some(event) = stream.next().await {
                let change = match event {
                    Ok(Event::Apply(k)) => Change::Applied(Arc::new(k)),
                    Ok(Event::Delete(k)) => Change::Deleted(Arc::new(k)),
                    Ok(Event::InitDone) => {
                        // The reflector applied the list to the store before passing it on.
                        synced.send_replace(true);
                        Change::Resynced
                    }
                    Ok(Event::Init | Event::InitApply(_)) => continue,
                    Err(e) => {
                        tracing::debug!(error = %e, kind = %K::kind(&Default::default()), "watch failed; re-listing");
                        continue;
                    }
                };
                // No subscriber yet is fine: they read the store when they start.
                let _ = changes.send(change);
            }
        });
        informer
    }
}
