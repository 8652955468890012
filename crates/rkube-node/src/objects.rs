//! The ConfigMaps and Secrets the node's pods reference, each watched on its own, as the
//! kubelet's watch-based object manager does: a list and watch in the object's namespace with
//! the field selector `metadata.name=NAME`, started when the first pod referencing it
//! arrives and stopped when the last one is gone. That is exactly what kube-apiserver's Node
//! authorizer lets a node read (an object of a pod bound to it, by name), so an agent joining
//! a real control plane needs no wider grant, and nothing cluster-wide is cached.

use std::collections::{BTreeSet, HashMap};
use std::fmt::Debug;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use kube::api::Api;
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::{Client, Resource};
use serde::de::DeserializeOwned;
use tokio::sync::{broadcast, watch};

/// What is known of one watched object.
#[derive(Clone)]
enum State<K> {
    /// The first list has not come back yet.
    Syncing,
    /// Listed: the object, or None when it does not exist.
    Synced(Option<Arc<K>>),
}

struct Watched<K> {
    /// How many pods reference it.
    pods: usize,
    state: watch::Receiver<State<K>>,
    task: tokio::task::AbortHandle,
}

type Key = (String, String);

/// One kind's referenced objects (ConfigMap or Secret).
pub struct Referenced<K> {
    client: Client,
    watched: Mutex<HashMap<Key, Watched<K>>>,
    /// What each pod (by uid) references.
    by_pod: Mutex<HashMap<String, BTreeSet<Key>>>,
    changes: broadcast::Sender<()>,
}

impl<K> Referenced<K>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Default,
{
    pub fn new(client: Client) -> Referenced<K> {
        Referenced { client, watched: Mutex::default(), by_pod: Mutex::default(), changes: broadcast::channel(256).0 }
    }

    /// Says what pod `uid` references now (in `namespace`): watches start for new names and
    /// stop for names no pod references any more.
    pub fn set_pod(&self, uid: &str, namespace: &str, names: &BTreeSet<String>) {
        let keys: BTreeSet<Key> = names.iter().map(|n| (namespace.to_string(), n.clone())).collect();
        let before = {
            let mut by_pod = self.by_pod.lock().unwrap_or_else(|e| e.into_inner());
            if by_pod.get(uid) == Some(&keys) {
                return;
            }
            by_pod.insert(uid.to_string(), keys.clone()).unwrap_or_default()
        };
        let mut watched = self.watched.lock().unwrap_or_else(|e| e.into_inner());
        for key in keys.difference(&before) {
            match watched.get_mut(key) {
                Some(w) => w.pods += 1,
                None => {
                    let w = self.watch(key);
                    watched.insert(key.clone(), w);
                }
            }
        }
        for key in before.difference(&keys) {
            release(&mut watched, key);
        }
    }

    /// The pod is gone: its references are released.
    pub fn remove_pod(&self, uid: &str) {
        let Some(keys) = self.by_pod.lock().unwrap_or_else(|e| e.into_inner()).remove(uid) else { return };
        let mut watched = self.watched.lock().unwrap_or_else(|e| e.into_inner());
        for key in &keys {
            release(&mut watched, key);
        }
    }

    /// Waits until every object pod `uid` references has been listed, at most `timeout` (the
    /// kubelet waits for its caches before it reads one).
    pub async fn synced(&self, uid: &str, timeout: Duration) {
        let keys = self.by_pod.lock().unwrap_or_else(|e| e.into_inner()).get(uid).cloned().unwrap_or_default();
        let states: Vec<watch::Receiver<State<K>>> = {
            let watched = self.watched.lock().unwrap_or_else(|e| e.into_inner());
            keys.iter().filter_map(|k| watched.get(k).map(|w| w.state.clone())).collect()
        };
        let all = futures::future::join_all(
            states.into_iter().map(|mut s| async move { s.wait_for(|s| matches!(s, State::Synced(_))).await.is_ok() }),
        );
        let _ = tokio::time::timeout(timeout, all).await;
    }

    /// The object as last seen (None: absent, not listed yet, or referenced by no pod).
    pub fn get(&self, namespace: &str, name: &str) -> Option<Arc<K>> {
        let watched = self.watched.lock().unwrap_or_else(|e| e.into_inner());
        let state = watched.get(&(namespace.to_string(), name.to_string()))?.state.borrow().clone();
        match state {
            State::Synced(o) => o,
            State::Syncing => None,
        }
    }

    /// A message whenever a watched object is listed, changes or goes.
    pub fn subscribe(&self) -> broadcast::Receiver<()> {
        self.changes.subscribe()
    }

    fn watch(&self, (namespace, name): &Key) -> Watched<K> {
        let (tx, rx) = watch::channel(State::Syncing);
        let api: Api<K> = Api::namespaced(self.client.clone(), namespace);
        let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
        let changes = self.changes.clone();
        let name = name.clone();
        let stream = watcher::watcher(api, config).default_backoff();
        let task = tokio::spawn(async move {
            let mut stream = std::pin::pin!(stream);
            // What a (re)list brings, until it is complete.
            let mut listing: Option<Arc<K>> = None;
            while let Some(event) = stream.next().await {
                let state = match event {
                    Ok(Event::Init) => {
                        listing = None;
                        continue;
                    }
                    Ok(Event::InitApply(k)) => {
                        listing = Some(Arc::new(k));
                        continue;
                    }
                    Ok(Event::InitDone) => State::Synced(listing.take()),
                    Ok(Event::Apply(k)) => State::Synced(Some(Arc::new(k))),
                    Ok(Event::Delete(_)) => State::Synced(None),
                    Err(e) => {
                        tracing::debug!(error = %e, object = %name, "object watch failed; re-listing");
                        continue;
                    }
                };
                tx.send_replace(state);
                let _ = changes.send(());
            }
        });
        Watched { pods: 1, state: rx, task: task.abort_handle() }
    }
}

fn release<K>(watched: &mut HashMap<Key, Watched<K>>, key: &Key) {
    if let Some(w) = watched.get_mut(key) {
        w.pods -= 1;
        if w.pods == 0 {
            w.task.abort();
            watched.remove(key);
        }
    }
}
