//! The store: an MVCC key-value store with etcd's model.
//!
//! One global revision counts every write. Creates, updates and deletes are guarded
//! (create only if absent, update and delete only at an expected `mod_revision`), reads
//! see a consistent snapshot at a revision, and a watch replays every event after a given
//! revision and then follows new ones. Revisions older than the retained history are
//! *compacted*: a read or watch from there fails with [`StoreError::Compacted`], and the
//! API server turns that into `410 Gone`, as with etcd.
//!
//! Architecture invariants:
//! - The store knows nothing about HTTP or Kubernetes kinds: it keeps opaque bytes under
//!   string keys at revisions.
//! - A write is acknowledged only after its batch is durable on disk (fsync), so every
//!   acknowledged write survives `kill -9`.
//! - Readers never see a write before it is durable, and watchers see events in revision
//!   order, each revision once.
//! - A watcher that falls more than [`WATCH_QUEUE_EVENTS_MAX`] events behind is closed
//!   rather than allowed to grow memory; clients re-list, as they do with kube-apiserver.
//!
//! The [`Store`] trait is what the API server uses; [`embedded::EmbeddedStore`] implements
//! it over an in-memory index with a redb file underneath. An etcd backend plugs into the
//! same trait.

pub mod embedded;

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::mpsc;

/// A store revision. Revision 0 means "nothing written yet".
pub type Revision = u64;

/// Builds the value to store once its revision is known. The API server uses it to stamp
/// `metadata.resourceVersion` into the object, so reads can serve the bytes untouched. A
/// builder may refuse the value (the API server's bound on stored sizes): the write then
/// fails with [`StoreError::Refused`], changes nothing and takes no revision.
pub type ValueFn = Box<dyn FnOnce(Revision) -> Result<Bytes, String> + Send>;

/// Builds a delete's tombstone once its revision is known. A delete is never refused.
pub type TombstoneFn = Box<dyn FnOnce(Revision) -> Bytes + Send>;

/// The most events a live watcher may have queued before it is closed.
pub const WATCH_QUEUE_EVENTS_MAX: usize = 8192;
/// The most value bytes a live watcher may have queued before it is closed (what a
/// watcher that reads too slowly can keep alive of events history has let go).
pub const WATCH_QUEUE_BYTES_MAX: usize = 16 << 20;

/// What a live watcher's queue holds, kept by the store (which adds) and the watcher
/// (which takes).
#[derive(Default, Debug)]
pub struct QueueBytes {
    bytes: std::sync::atomic::AtomicUsize,
    overflowed: std::sync::atomic::AtomicBool,
}

impl QueueBytes {
    /// Counts `e` in; false past [`WATCH_QUEUE_BYTES_MAX`], and the watcher is closed: it
    /// drops what it has queued at its next step.
    pub fn add(&self, e: &Event) -> bool {
        use std::sync::atomic::Ordering::Relaxed;
        let n = event_bytes(e);
        if self.bytes.fetch_add(n, Relaxed) + n > WATCH_QUEUE_BYTES_MAX {
            self.overflowed.store(true, Relaxed);
            return false;
        }
        true
    }

    fn take(&self, e: &Event) {
        self.bytes.fetch_sub(event_bytes(e), std::sync::atomic::Ordering::Relaxed);
    }

    fn overflowed(&self) -> bool {
        self.overflowed.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// The bytes an event keeps alive.
pub fn event_bytes(e: &Event) -> usize {
    e.kv.value.len() + e.prev.as_ref().map_or(0, |p| p.value.len())
}

/// One key at one revision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyValue {
    pub key: Arc<str>,
    pub value: Bytes,
    pub create_revision: Revision,
    pub mod_revision: Revision,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    /// A create (no `prev`) or an update.
    Put,
    /// A delete. `kv` holds the tombstone value with `mod_revision` at the delete.
    Delete,
}

/// One change, as watchers see it.
#[derive(Clone, Debug)]
pub struct Event {
    pub event_type: EventType,
    pub kv: KeyValue,
    pub prev: Option<KeyValue>,
}

impl Event {
    pub fn revision(&self) -> Revision {
        self.kv.mod_revision
    }
}

/// A guarded write.
pub enum Op {
    /// Fails with `AlreadyExists` if the key exists.
    Create { key: String, value: ValueFn },
    /// Fails with `NotFound` if absent and `Conflict` unless `mod_revision` matches
    /// (`expected == None` updates whatever is there).
    Update { key: String, expected: Option<Revision>, value: ValueFn },
    /// Fails with `NotFound` if absent and `Conflict` unless `mod_revision` matches.
    /// `tombstone` builds the value reported to watchers and to the caller.
    Delete { key: String, expected: Option<Revision>, tombstone: TombstoneFn },
}

impl Op {
    pub fn key(&self) -> &str {
        match self {
            Op::Create { key, .. } | Op::Update { key, .. } | Op::Delete { key, .. } => key,
        }
    }
}

#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum StoreError {
    #[error("key already exists")]
    AlreadyExists,
    #[error("key not found")]
    NotFound,
    #[error("revision conflict: current mod_revision is {current}")]
    Conflict { current: Revision },
    #[error("required revision {requested} has been compacted (oldest available {oldest})")]
    Compacted { requested: Revision, oldest: Revision },
    #[error("revision {requested} is newer than the store's current revision {current}")]
    FutureRevision { requested: Revision, current: Revision },
    #[error("storage error: {0}")]
    Io(String),
    /// The value builder refused the value; the message is the builder's.
    #[error("{0}")]
    Refused(String),
    #[error("store is shutting down")]
    Closed,
}

/// How to read a range.
#[derive(Clone, Debug, Default)]
pub struct ListOptions {
    /// Only keys strictly greater than this (pagination).
    pub start_after: Option<String>,
    /// At most this many items (0 = no limit).
    pub limit: usize,
    /// Read the snapshot at this revision (None = latest).
    pub at_revision: Option<Revision>,
}

#[derive(Clone, Debug)]
pub struct ListResult {
    pub items: Vec<KeyValue>,
    /// The snapshot revision the items were read at.
    pub revision: Revision,
    /// How many more keys matched after the last item returned.
    pub remaining: usize,
}

/// A watch on a key prefix. Events arrive in revision order; replayed history first.
pub struct Watcher {
    replay: VecDeque<Arc<Event>>,
    /// None once closed for falling too far behind (its queue let go).
    live: Option<mpsc::Receiver<Arc<Event>>>,
    queued: Arc<QueueBytes>,
    /// Dropping the guard deregisters the watcher.
    _guard: Box<dyn Send + Sync>,
}

impl Watcher {
    pub fn new(
        replay: VecDeque<Arc<Event>>,
        live: mpsc::Receiver<Arc<Event>>,
        queued: Arc<QueueBytes>,
        guard: Box<dyn Send + Sync>,
    ) -> Self {
        Watcher { replay, live: Some(live), queued, _guard: guard }
    }

    /// The next event, or None when the store closed the watch (shutdown, or the watcher
    /// fell more than [`WATCH_QUEUE_EVENTS_MAX`] events or [`WATCH_QUEUE_BYTES_MAX`] bytes
    /// behind).
    pub async fn next(&mut self) -> Option<Arc<Event>> {
        std::future::poll_fn(|cx| self.poll_next(cx)).await
    }

    /// [`Watcher::next`] as a poll.
    pub fn poll_next(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<Option<Arc<Event>>> {
        if self.queued.overflowed() {
            // Too far behind: let go of everything queued now; the client re-lists.
            self.replay.clear();
            self.live = None;
            return std::task::Poll::Ready(None);
        }
        if let Some(e) = self.replay.pop_front() {
            return std::task::Poll::Ready(Some(e));
        }
        let Some(live) = self.live.as_mut() else { return std::task::Poll::Ready(None) };
        let got = live.poll_recv(cx);
        if let std::task::Poll::Ready(Some(e)) = &got {
            self.queued.take(e);
        }
        got
    }

    /// Whether events wait in this watcher's queue.
    pub fn has_queued(&self) -> bool {
        !self.replay.is_empty() || self.live.as_ref().is_some_and(|l| !l.is_empty())
    }

    /// An event if one is ready now, without waiting.
    pub fn try_next(&mut self) -> Option<Arc<Event>> {
        let waker = std::task::Waker::noop();
        match self.poll_next(&mut std::task::Context::from_waker(waker)) {
            std::task::Poll::Ready(e) => e,
            std::task::Poll::Pending => None,
        }
    }
}

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What the API server needs from storage.
pub trait Store: Send + Sync + 'static {
    /// Applies a guarded write once it is durable; returns the new key-value (for deletes,
    /// the tombstone at the delete's revision).
    fn txn(&self, op: Op) -> BoxFuture<'static, Result<KeyValue, StoreError>>;
    /// The latest value of a key.
    fn get(&self, key: &str) -> Option<KeyValue>;
    /// The keys under `prefix`, in key order.
    fn list(&self, prefix: &str, opts: &ListOptions) -> Result<ListResult, StoreError>;
    /// Events under `prefix` with revision > `after`.
    fn watch(&self, prefix: &str, after: Revision) -> Result<Watcher, StoreError>;
    /// The latest revision.
    fn revision(&self) -> Revision;
    /// The oldest revision still readable (reads and watches from before it are compacted).
    fn compacted_revision(&self) -> Revision;
    /// Drops history up to and including `revision`.
    fn compact(&self, revision: Revision);
    /// Waits until every acknowledged write is on disk and stops accepting writes.
    fn close(&self) -> BoxFuture<'static, ()>;
}
