//! The embedded store: the whole key space in memory, made durable in a redb file.
//!
//! Writes go through one committer thread. It takes every write waiting in its queue (up
//! to [`BATCH_OPS_MAX`]), checks each guard against the current state plus the earlier
//! writes of the same batch, writes the batch to redb in one transaction (fsync), and only
//! then publishes the batch to readers and watchers and answers the callers. A batch that
//! fails to commit changes nothing in memory, so memory never runs ahead of disk.
//!
//! History (the events of recent revisions) is kept in memory, bounded by
//! [`HISTORY_EVENTS_MAX`] and [`HISTORY_BYTES_MAX`]; reads at an older revision are
//! answered by undoing history from the current state. History is not persisted: after a
//! restart the store is compacted at its current revision, as a fresh watch cache is.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::ops::Bound;
use std::path::Path;
use std::sync::{Arc, OnceLock, RwLock, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;
use redb::{ReadableDatabase, ReadableTable, TableDefinition};
use tokio::sync::{mpsc, oneshot};

use crate::{
    BoxFuture, Event, EventType, KeyValue, ListOptions, ListResult, Op, Revision, Store, StoreError, Watcher,
    WATCH_QUEUE_EVENTS_MAX,
};

/// The most writes committed in one redb transaction.
pub const BATCH_OPS_MAX: usize = 512;
/// The most writes waiting for the committer; callers wait beyond that.
pub const QUEUE_OPS_MAX: usize = 4096;
/// The most events kept for watch replay and reads at old revisions.
pub const HISTORY_EVENTS_MAX: usize = 50_000;
/// The most value bytes kept in history.
pub const HISTORY_BYTES_MAX: usize = 64 << 20;
/// The on-disk format this code reads and writes. Bump on any incompatible change.
pub const FORMAT_VERSION: u64 = 1;
/// redb's page cache. Everything is also in memory above it, so it only needs to hold the
/// pages a commit touches.
const REDB_CACHE_BYTES: usize = 8 << 20;

const KV: TableDefinition<&str, &[u8]> = TableDefinition::new("kv");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const META_REVISION: &str = "revision";
const META_FORMAT: &str = "format_version";

/// Called after each commit with its duration and number of writes (for metrics).
pub type CommitObserver = Box<dyn Fn(Duration, usize) + Send + Sync>;

pub struct EmbeddedStore {
    inner: Arc<Inner>,
    queue: mpsc::Sender<Request>,
}

struct Inner {
    state: RwLock<State>,
    commit_observer: OnceLock<CommitObserver>,
}

struct State {
    current: BTreeMap<Arc<str>, KeyValue>,
    revision: Revision,
    /// Events with revision in (compacted, revision], oldest first.
    history: VecDeque<Arc<Event>>,
    history_bytes: usize,
    compacted: Revision,
    watchers: Vec<WatcherSlot>,
    next_watcher_id: u64,
}

struct WatcherSlot {
    id: u64,
    prefix: String,
    tx: mpsc::Sender<Arc<Event>>,
    queued: Arc<crate::QueueBytes>,
}

enum Request {
    Op(Op, oneshot::Sender<Result<KeyValue, StoreError>>),
    Close(oneshot::Sender<()>),
}

/// What a batch does to one key on disk.
enum Mutation {
    Put(KeyValue),
    Delete(Arc<str>),
}

impl EmbeddedStore {
    /// Opens (or creates) the store file at `path` and starts the committer thread.
    pub fn open(path: &Path) -> Result<EmbeddedStore, StoreError> {
        let db = redb::Database::builder().set_cache_size(REDB_CACHE_BYTES).create(path).map_err(io_err)?;
        EmbeddedStore::start(db)
    }

    /// Opens (or creates) the store over any redb storage backend (in memory, or one that
    /// watches what redb does, as the durability test does) and starts the committer.
    pub fn open_with_backend(backend: impl redb::StorageBackend) -> Result<EmbeddedStore, StoreError> {
        let db =
            redb::Database::builder().set_cache_size(REDB_CACHE_BYTES).create_with_backend(backend).map_err(io_err)?;
        EmbeddedStore::start(db)
    }

    fn start(db: redb::Database) -> Result<EmbeddedStore, StoreError> {
        let (current, revision) = load(&db)?;
        let state = State {
            current,
            revision,
            history: VecDeque::new(),
            history_bytes: 0,
            compacted: revision,
            watchers: Vec::new(),
            next_watcher_id: 1,
        };
        let inner = Arc::new(Inner { state: RwLock::new(state), commit_observer: OnceLock::new() });
        let (tx, rx) = mpsc::channel(QUEUE_OPS_MAX);
        let committer_inner = inner.clone();
        std::thread::Builder::new()
            .name("rkube-committer".into())
            .spawn(move || committer(committer_inner, db, rx))
            .map_err(|e| StoreError::Io(e.to_string()))?;
        Ok(EmbeddedStore { inner, queue: tx })
    }

    /// Installs the commit observer (once).
    pub fn set_commit_observer(&self, observer: CommitObserver) {
        let _ = self.inner.commit_observer.set(observer);
    }

    /// How many keys the store holds.
    pub fn len(&self) -> usize {
        self.inner.read().current.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How many watchers are registered.
    pub fn watcher_count(&self) -> usize {
        self.inner.read().watchers.len()
    }
}

impl Inner {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        // A panic while holding the lock is a bug that already crashed a request; the
        // state itself is only changed by the committer in complete steps.
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }
    fn write(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|e| e.into_inner())
    }
}

fn io_err(e: impl std::fmt::Display) -> StoreError {
    StoreError::Io(e.to_string())
}

fn load(db: &redb::Database) -> Result<(BTreeMap<Arc<str>, KeyValue>, Revision), StoreError> {
    // Make sure both tables exist and the format is ours.
    let txn = db.begin_write().map_err(io_err)?;
    {
        let mut meta = txn.open_table(META).map_err(io_err)?;
        let format = meta.get(META_FORMAT).map_err(io_err)?.map(|v| v.value());
        match format {
            None => {
                meta.insert(META_FORMAT, FORMAT_VERSION).map_err(io_err)?;
            }
            Some(FORMAT_VERSION) => {}
            Some(other) => {
                return Err(StoreError::Io(format!(
                    "data format version {other} is not supported by this rkube (it reads version {FORMAT_VERSION})"
                )))
            }
        }
        txn.open_table(KV).map_err(io_err)?;
    }
    txn.commit().map_err(io_err)?;

    let txn = db.begin_read().map_err(io_err)?;
    let meta = txn.open_table(META).map_err(io_err)?;
    let revision = meta.get(META_REVISION).map_err(io_err)?.map(|v| v.value()).unwrap_or(0);
    let kv = txn.open_table(KV).map_err(io_err)?;
    let mut current = BTreeMap::new();
    for entry in kv.iter().map_err(io_err)? {
        let (k, v) = entry.map_err(io_err)?;
        let key: Arc<str> = Arc::from(k.value());
        let kv = decode_record(key.clone(), v.value())
            .ok_or_else(|| StoreError::Io(format!("corrupt record for key {key}")))?;
        debug_assert!(kv.mod_revision <= revision);
        current.insert(key, kv);
    }
    Ok((current, revision))
}

fn encode_record(kv: &KeyValue) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + kv.value.len());
    out.extend_from_slice(&kv.create_revision.to_le_bytes());
    out.extend_from_slice(&kv.mod_revision.to_le_bytes());
    out.extend_from_slice(&kv.value);
    out
}

fn decode_record(key: Arc<str>, raw: &[u8]) -> Option<KeyValue> {
    if raw.len() < 16 {
        return None;
    }
    let create_revision = u64::from_le_bytes(raw[0..8].try_into().ok()?);
    let mod_revision = u64::from_le_bytes(raw[8..16].try_into().ok()?);
    Some(KeyValue { key, value: Bytes::copy_from_slice(&raw[16..]), create_revision, mod_revision })
}

fn committer(inner: Arc<Inner>, db: redb::Database, mut rx: mpsc::Receiver<Request>) {
    let mut closing: Option<oneshot::Sender<()>> = None;
    while closing.is_none() {
        let Some(first) = rx.blocking_recv() else { break };
        let mut ops = Vec::new();
        match first {
            Request::Op(op, reply) => ops.push((op, reply)),
            Request::Close(done) => closing = Some(done),
        }
        while closing.is_none() && ops.len() < BATCH_OPS_MAX {
            match rx.try_recv() {
                Ok(Request::Op(op, reply)) => ops.push((op, reply)),
                Ok(Request::Close(done)) => closing = Some(done),
                Err(_) => break,
            }
        }
        if !ops.is_empty() {
            commit_batch(&inner, &db, ops);
        }
    }
    // Close every watch so streams end.
    inner.write().watchers.clear();
    drop(db);
    if let Some(done) = closing {
        let _ = done.send(());
    }
}

type Reply = oneshot::Sender<Result<KeyValue, StoreError>>;

fn commit_batch(inner: &Inner, db: &redb::Database, ops: Vec<(Op, Reply)>) {
    let started = Instant::now();
    // 1. Decide each write against the state plus this batch's earlier writes.
    let mut outcomes: Vec<(Reply, Result<Arc<Event>, StoreError>)> = Vec::with_capacity(ops.len());
    let mut mutations: Vec<Mutation> = Vec::new();
    let base_revision;
    {
        let state = inner.read();
        base_revision = state.revision;
        let mut revision = state.revision;
        let mut overlay: HashMap<Arc<str>, Option<KeyValue>> = HashMap::new();
        for (op, reply) in ops {
            let key: Arc<str> = Arc::from(op.key());
            let existing: Option<KeyValue> = match overlay.get(&key) {
                Some(v) => v.clone(),
                None => state.current.get(&key).cloned(),
            };
            let outcome = match op {
                Op::Create { value, .. } => match existing {
                    Some(_) => Err(StoreError::AlreadyExists),
                    None => value(revision + 1).map_err(StoreError::Refused).map(|value| {
                        revision += 1;
                        let kv =
                            KeyValue { key: key.clone(), value, create_revision: revision, mod_revision: revision };
                        Event { event_type: EventType::Put, kv, prev: None }
                    }),
                },
                Op::Update { expected, value, .. } => match existing {
                    None => Err(StoreError::NotFound),
                    Some(cur) if expected.is_some_and(|e| e != cur.mod_revision) => {
                        Err(StoreError::Conflict { current: cur.mod_revision })
                    }
                    Some(cur) => value(revision + 1).map_err(StoreError::Refused).map(|value| {
                        revision += 1;
                        let kv = KeyValue {
                            key: key.clone(),
                            value,
                            create_revision: cur.create_revision,
                            mod_revision: revision,
                        };
                        Event { event_type: EventType::Put, kv, prev: Some(cur) }
                    }),
                },
                Op::Delete { expected, tombstone, .. } => match existing {
                    None => Err(StoreError::NotFound),
                    Some(cur) if expected.is_some_and(|e| e != cur.mod_revision) => {
                        Err(StoreError::Conflict { current: cur.mod_revision })
                    }
                    Some(cur) => {
                        revision += 1;
                        let kv = KeyValue {
                            key: key.clone(),
                            value: tombstone(revision),
                            create_revision: cur.create_revision,
                            mod_revision: revision,
                        };
                        Ok(Event { event_type: EventType::Delete, kv, prev: Some(cur) })
                    }
                },
            };
            if let Ok(event) = &outcome {
                match event.event_type {
                    EventType::Put => {
                        overlay.insert(key.clone(), Some(event.kv.clone()));
                        mutations.push(Mutation::Put(event.kv.clone()));
                    }
                    EventType::Delete => {
                        overlay.insert(key.clone(), None);
                        mutations.push(Mutation::Delete(key.clone()));
                    }
                }
            }
            outcomes.push((reply, outcome.map(Arc::new)));
        }
    }
    let written = mutations.len();
    if written == 0 {
        for (reply, outcome) in outcomes {
            let _ = reply.send(outcome.map(|e| e.kv.clone()));
        }
        return;
    }
    let new_revision = base_revision + written as u64;

    // 2. Make the batch durable.
    if let Err(e) = persist(db, &mutations, new_revision) {
        tracing::error!(error = %e, "commit failed; the batch is refused and nothing changed");
        for (reply, outcome) in outcomes {
            let _ = reply.send(outcome.and(Err(e.clone())));
        }
        return;
    }

    // 3. Publish: memory, history, watchers; then answer.
    {
        let mut state = inner.write();
        for (_, outcome) in &outcomes {
            let Ok(event) = outcome else { continue };
            debug_assert_eq!(event.revision(), state.revision + 1, "revisions are contiguous");
            state.revision = event.revision();
            match event.event_type {
                EventType::Put => {
                    state.current.insert(event.kv.key.clone(), event.kv.clone());
                }
                EventType::Delete => {
                    state.current.remove(&event.kv.key);
                }
            }
            state.history_bytes += event.kv.value.len();
            state.history.push_back(event.clone());
            let key = &event.kv.key;
            state.watchers.retain(|w| {
                if !key.starts_with(w.prefix.as_str()) {
                    return true;
                }
                // A full queue (in events) closes this watcher: dropping the sender ends its
                // stream once it has drained what it has; past its bytes, it drops what it
                // has at once.
                w.queued.add(event) && w.tx.try_send(event.clone()).is_ok()
            });
        }
        debug_assert_eq!(state.revision, new_revision);
        trim_history(&mut state);
    }
    if let Some(observe) = inner.commit_observer.get() {
        observe(started.elapsed(), written);
    }
    for (reply, outcome) in outcomes {
        let _ = reply.send(outcome.map(|e| e.kv.clone()));
    }
}

fn persist(db: &redb::Database, mutations: &[Mutation], revision: Revision) -> Result<(), StoreError> {
    let mut txn = db.begin_write().map_err(io_err)?;
    // redb's default, said out loud: `commit` returns once the batch is synced to disk.
    txn.set_durability(redb::Durability::Immediate).map_err(io_err)?;
    {
        let mut kv = txn.open_table(KV).map_err(io_err)?;
        for m in mutations {
            match m {
                Mutation::Put(v) => {
                    kv.insert(&*v.key, encode_record(v).as_slice()).map_err(io_err)?;
                }
                Mutation::Delete(key) => {
                    kv.remove(&**key).map_err(io_err)?;
                }
            }
        }
        let mut meta = txn.open_table(META).map_err(io_err)?;
        meta.insert(META_REVISION, revision).map_err(io_err)?;
    }
    txn.commit().map_err(io_err)
}

fn trim_history(state: &mut State) {
    while state.history.len() > HISTORY_EVENTS_MAX || state.history_bytes > HISTORY_BYTES_MAX {
        let Some(old) = state.history.pop_front() else { break };
        state.history_bytes -= old.kv.value.len();
        state.compacted = old.revision();
    }
}

fn prefix_range<'a>(
    map: &'a BTreeMap<Arc<str>, KeyValue>,
    prefix: &str,
    start_after: Option<&str>,
) -> impl Iterator<Item = (&'a Arc<str>, &'a KeyValue)> + 'a {
    let prefix = prefix.to_string();
    let lower: Bound<&str> = match start_after {
        Some(s) if s >= prefix.as_str() => Bound::Excluded(s),
        _ => Bound::Included(prefix.as_str()),
    };
    // BTreeMap<Arc<str>, _> can be ranged by &str through Borrow<str>.
    map.range::<str, _>((lower, Bound::Unbounded)).take_while(move |(k, _)| k.starts_with(&prefix))
}

impl Store for EmbeddedStore {
    fn txn(&self, op: Op) -> BoxFuture<'static, Result<KeyValue, StoreError>> {
        let queue = self.queue.clone();
        Box::pin(async move {
            let (tx, rx) = oneshot::channel();
            queue.send(Request::Op(op, tx)).await.map_err(|_| StoreError::Closed)?;
            rx.await.map_err(|_| StoreError::Closed)?
        })
    }

    fn get(&self, key: &str) -> Option<KeyValue> {
        self.inner.read().current.get(key).cloned()
    }

    fn list(&self, prefix: &str, opts: &ListOptions) -> Result<ListResult, StoreError> {
        let state = self.inner.read();
        let limit = if opts.limit == 0 { usize::MAX } else { opts.limit };
        let at = opts.at_revision.unwrap_or(state.revision);
        if at > state.revision {
            return Err(StoreError::FutureRevision { requested: at, current: state.revision });
        }
        if at == state.revision {
            let mut iter = prefix_range(&state.current, prefix, opts.start_after.as_deref());
            let items: Vec<KeyValue> = iter.by_ref().take(limit).map(|(_, v)| v.clone()).collect();
            let remaining = iter.count();
            return Ok(ListResult { items, revision: at, remaining });
        }
        if at < state.compacted {
            return Err(StoreError::Compacted { requested: at, oldest: state.compacted });
        }
        // Undo the events after `at`, newest first, on a copy of the matching range.
        let mut snapshot: BTreeMap<Arc<str>, KeyValue> =
            prefix_range(&state.current, prefix, None).map(|(k, v)| (k.clone(), v.clone())).collect();
        for event in state.history.iter().rev() {
            if event.revision() <= at {
                break;
            }
            if !event.kv.key.starts_with(prefix) {
                continue;
            }
            match &event.prev {
                Some(prev) => {
                    snapshot.insert(prev.key.clone(), prev.clone());
                }
                None => {
                    snapshot.remove(&event.kv.key);
                }
            }
        }
        let mut iter = prefix_range(&snapshot, prefix, opts.start_after.as_deref());
        let items: Vec<KeyValue> = iter.by_ref().take(limit).map(|(_, v)| v.clone()).collect();
        let remaining = iter.count();
        Ok(ListResult { items, revision: at, remaining })
    }

    fn watch(&self, prefix: &str, after: Revision) -> Result<Watcher, StoreError> {
        let mut state = self.inner.write();
        if after < state.compacted {
            return Err(StoreError::Compacted { requested: after, oldest: state.compacted });
        }
        if after > state.revision {
            return Err(StoreError::FutureRevision { requested: after, current: state.revision });
        }
        let replay: VecDeque<Arc<Event>> =
            state.history.iter().filter(|e| e.revision() > after && e.kv.key.starts_with(prefix)).cloned().collect();
        let (tx, rx) = mpsc::channel(WATCH_QUEUE_EVENTS_MAX);
        let id = state.next_watcher_id;
        state.next_watcher_id += 1;
        let queued = Arc::new(crate::QueueBytes::default());
        state.watchers.push(WatcherSlot { id, prefix: prefix.to_string(), tx, queued: queued.clone() });
        let guard = WatchGuard { inner: Arc::downgrade(&self.inner), id };
        Ok(Watcher::new(replay, rx, queued, Box::new(guard)))
    }

    fn revision(&self) -> Revision {
        self.inner.read().revision
    }

    fn compacted_revision(&self) -> Revision {
        self.inner.read().compacted
    }

    fn compact(&self, revision: Revision) {
        let mut state = self.inner.write();
        while state.history.front().is_some_and(|e| e.revision() <= revision) {
            if let Some(old) = state.history.pop_front() {
                state.history_bytes -= old.kv.value.len();
            }
        }
        state.compacted = state.compacted.max(revision.min(state.revision));
    }

    fn close(&self) -> BoxFuture<'static, ()> {
        let queue = self.queue.clone();
        Box::pin(async move {
            let (tx, rx) = oneshot::channel();
            if queue.send(Request::Close(tx)).await.is_ok() {
                let _ = rx.await;
            }
        })
    }
}

struct WatchGuard {
    inner: Weak<Inner>,
    id: u64,
}

impl Drop for WatchGuard {
    fn drop(&mut self) {
        if let Some(inner) = self.inner.upgrade() {
            inner.write().watchers.retain(|w| w.id != self.id);
        }
    }
}

#[cfg(test)]
mod tests;
