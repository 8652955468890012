//! Watch: a stream of `{"type": ..., "object": ...}` lines from a store watch, with
//! kube-apiserver's semantics for resourceVersion ("" and "0" start with the current
//! state as ADDED events; N replays from after N; compacted N is an ERROR 410 event),
//! bookmarks, sendInitialEvents with the initial-events-end bookmark, selectors
//! (an object that stops matching is DELETED for this watcher), Table events, and
//! timeoutSeconds.
//!
//! Memory: a stream holds no copy of the objects it sends. The initial state is a list of
//! the store's values (shared), turned into events one at a time as the client reads; a
//! large object's event is sent as its stored bytes (or cached protobuf body) between a
//! small head and tail, so every stream shares them. A slow client's stream thus pins
//! what its own queue refers to, never copies of it. Streams per user are bounded
//! ([`WATCHES_PER_USER_MAX`]); `system:masters` is exempt, as from the in-flight limits.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use rkube_api::resource::ResourceDef;
use rkube_api::ApiError;
use rkube_store::{Event, EventType, ListOptions, StoreError, Watcher};
use serde_json::{json, Value};

use crate::codec::Body;
use crate::registry::{to_table, Ctx, Filter, Query};

/// The longest watch a client can ask for with `timeoutSeconds`.
const WATCH_TIMEOUT_SECONDS_MAX: u64 = 365 * 24 * 3600;

/// How often a watch that allows bookmarks gets one.
const BOOKMARK_INTERVAL: Duration = Duration::from_secs(30);

/// The most watch streams one user may have open at once (each pod's service account, or
/// a controller, uses a few dozen).
pub const WATCHES_PER_USER_MAX: usize = 2000;

/// Objects at least this large are sent as shared bytes between a head and a tail rather
/// than copied into one buffer (copying small ones is cheaper than three chunks).
const SHARE_BYTES_MIN: usize = 16 * 1024;

struct State {
    def: Arc<ResourceDef>,
    filter: Filter,
    name: Option<String>,
    table: bool,
    protobuf: bool,
    query: Query,
    /// Chunks ready to send.
    pending: VecDeque<Bytes>,
    /// The initial state not yet sent (its values are the store's, shared).
    initial: std::vec::IntoIter<rkube_store::KeyValue>,
    /// After the initial state: the initial-events-end bookmark at this revision.
    initial_end: Option<u64>,
    watcher: Option<Watcher>,
    bookmarks: bool,
    next_bookmark: Pin<Box<tokio::time::Sleep>>,
    deadline: tokio::time::Instant,
    deadline_timer: Pin<Box<tokio::time::Sleep>>,
    /// Since when something has waited that the client has not taken (for the reaper).
    waiting_since: Option<std::time::Instant>,
    /// Who to wake when the reaper ends the stream.
    waker: Option<std::task::Waker>,
    store: Arc<dyn rkube_store::Store>,
    /// The server (for the encoding cache); dropping it counts the watcher out.
    server: WatchGuard,
}

/// Counts a stream in (metrics, the user's streams) while it lives.
struct WatchGuard {
    server: Arc<crate::ApiServer>,
    user: Option<String>,
}

impl WatchGuard {
    /// Counts a new stream of `user` in, or refuses it past [`WATCHES_PER_USER_MAX`]
    /// (`None` = exempt).
    fn new(server: &Arc<crate::ApiServer>, user: Option<&str>) -> Result<WatchGuard, ApiError> {
        if let Some(u) = user {
            let mut counts = server.watches_per_user.lock().unwrap_or_else(|e| e.into_inner());
            let n = counts.entry(u.to_string()).or_insert(0);
            if *n >= WATCHES_PER_USER_MAX {
                return Err(ApiError::too_many_requests(format!(
                    "Too many requests: user {u:?} has {WATCHES_PER_USER_MAX} watches open, the most allowed"
                )));
            }
            *n += 1;
        }
        server.metrics.watchers.inc();
        Ok(WatchGuard { server: server.clone(), user: user.map(str::to_string) })
    }
}

impl Drop for WatchGuard {
    fn drop(&mut self) {
        self.server.metrics.watchers.dec();
        if let Some(u) = &self.user {
            let mut counts = self.server.watches_per_user.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(n) = counts.get_mut(u) {
                *n -= 1;
                if *n == 0 {
                    counts.remove(u);
                }
            }
        }
    }
}

fn event_head(event_type: &str) -> Bytes {
    Bytes::from_static(match event_type {
        "ADDED" => br#"{"type":"ADDED","object":"#,
        "MODIFIED" => br#"{"type":"MODIFIED","object":"#,
        "DELETED" => br#"{"type":"DELETED","object":"#,
        "BOOKMARK" => br#"{"type":"BOOKMARK","object":"#,
        _ => br#"{"type":"ERROR","object":"#,
    })
}

/// One JSON line event around `object`: one chunk, or three sharing a large object.
fn line(out: &mut VecDeque<Bytes>, event_type: &str, object: Bytes) {
    let head = event_head(event_type);
    if object.len() >= SHARE_BYTES_MIN {
        out.extend([head, object, Bytes::from_static(b"}\n")]);
        return;
    }
    let mut buf = Vec::with_capacity(object.len() + head.len() + 2);
    buf.extend_from_slice(&head);
    buf.extend_from_slice(&object);
    buf.extend_from_slice(b"}\n");
    out.push_back(Bytes::from(buf));
}

/// One protobuf event around an enveloped object, sharing it when large.
fn pb_frame(out: &mut VecDeque<Bytes>, event_type: &str, inner: Bytes) {
    let mut head = rkube_proto::watch_frame_head(event_type, inner.len());
    if inner.len() >= SHARE_BYTES_MIN {
        out.extend([Bytes::from(head), inner]);
        return;
    }
    head.extend_from_slice(&inner);
    out.push_back(Bytes::from(head));
}

impl State {
    fn matches(&self, obj: &Value) -> bool {
        if let Some(n) = &self.name {
            if obj.pointer("/metadata/name").and_then(Value::as_str) != Some(n.as_str()) {
                return false;
            }
        }
        self.filter.matches(&self.def, obj)
    }

    fn needs_parse(&self) -> bool {
        self.table || self.name.is_some() || !self.filter.is_empty()
    }

    /// One event in the stream's format: a JSON line, or a length-prefixed protobuf frame.
    fn frame(&mut self, event_type: &str, object: &Value) {
        if self.protobuf {
            match rkube_proto::encode_watch_event(event_type, object) {
                Ok(b) => return self.pending.push_back(Bytes::from(b)),
                Err(e) => tracing::warn!(error = %e, "watch event has no protobuf form; sent as JSON"),
            }
        }
        line(&mut self.pending, event_type, Bytes::from(object.to_string()));
    }

    /// A stored object's event. Protobuf encodings come from the server's (key, revision)
    /// cache, so an event is transcoded once however many watchers receive it.
    fn encode_kv(&mut self, event_type: &str, kv: &rkube_store::KeyValue, parsed: Option<&Value>) {
        if self.protobuf {
            let api_version = self.def.api_version();
            match self.server.server.proto_cache.object(kv, &api_version, &self.def.kind) {
                Ok(inner) => return pb_frame(&mut self.pending, event_type, inner),
                Err(e) => tracing::warn!(error = %e, "stored object has no protobuf form; sent as JSON"),
            }
        }
        if self.table {
            if let Some(v) = parsed {
                let rv = v.pointer("/metadata/resourceVersion").and_then(Value::as_str).unwrap_or("").to_string();
                let t = to_table(&self.def, std::slice::from_ref(v), &rv, None, &self.query);
                return line(&mut self.pending, event_type, Bytes::from(t.to_string()));
            }
        }
        line(&mut self.pending, event_type, kv.value.clone());
    }

    /// Queues the next item of the initial state this watcher sees; false when none is left.
    fn next_initial(&mut self) -> bool {
        while let Some(kv) = self.initial.next() {
            let parsed = if self.needs_parse() { serde_json::from_slice::<Value>(&kv.value).ok() } else { None };
            if parsed.as_ref().is_some_and(|v| !self.matches(v)) {
                continue;
            }
            self.encode_kv("ADDED", &kv, parsed.as_ref());
            return true;
        }
        if let Some(rev) = self.initial_end.take() {
            self.bookmark(rev, true);
            return true;
        }
        false
    }

    /// Queues one store event if this watcher sees it.
    fn event(&mut self, e: &Event) {
        if !self.needs_parse() {
            let t = match (e.event_type, &e.prev) {
                (EventType::Put, None) => "ADDED",
                (EventType::Put, Some(_)) => "MODIFIED",
                (EventType::Delete, _) => "DELETED",
            };
            return self.encode_kv(t, &e.kv, None);
        }
        let Ok(cur) = serde_json::from_slice::<Value>(&e.kv.value) else { return };
        let cur_match = self.matches(&cur);
        let prev_match = match &e.prev {
            Some(p) => serde_json::from_slice::<Value>(&p.value).map(|v| self.matches(&v)).unwrap_or(false),
            None => false,
        };
        let t = match e.event_type {
            EventType::Delete => {
                if !prev_match && !cur_match {
                    return;
                }
                "DELETED"
            }
            EventType::Put => match (prev_match, cur_match) {
                (true, true) => "MODIFIED",
                (false, true) => "ADDED",
                (true, false) => "DELETED",
                (false, false) => return,
            },
        };
        self.encode_kv(t, &e.kv, Some(&cur))
    }

    fn bookmark(&mut self, rv: u64, initial_end: bool) {
        let mut meta = json!({"resourceVersion": rv.to_string()});
        if initial_end {
            meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        let obj = json!({"kind": self.def.kind, "apiVersion": self.def.api_version(), "metadata": meta});
        self.frame("BOOKMARK", &obj)
    }

    fn error(&mut self, e: &ApiError) {
        self.frame("ERROR", &e.to_status())
    }

    /// The next chunk to send: queued chunks, then the initial state, then store events and
    /// bookmarks, until the deadline.
    fn poll_chunk(&mut self, cx: &mut Context<'_>) -> Poll<Option<Bytes>> {
        loop {
            if let Some(b) = self.pending.pop_front() {
                self.waiting_since = None;
                return Poll::Ready(Some(b));
            }
            if self.next_initial() {
                continue;
            }
            if self.watcher.is_none() || self.deadline_timer.as_mut().poll(cx).is_ready() {
                return Poll::Ready(None);
            }
            if self.bookmarks && self.next_bookmark.as_mut().poll(cx).is_ready() {
                self.next_bookmark.as_mut().reset(tokio::time::Instant::now() + BOOKMARK_INTERVAL);
                let rev = self.store.revision();
                self.bookmark(rev, false);
                continue;
            }
            let Some(w) = self.watcher.as_mut() else { return Poll::Ready(None) };
            match w.poll_next(cx) {
                Poll::Ready(Some(e)) => self.event(&e),
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Pending => return Poll::Pending,
            }
        }
    }

    /// Whether the reaper should end this stream: past its deadline, or with something to
    /// send that the client has not taken for [`STALL_TIMEOUT`] (from the first time the
    /// reaper saw it waiting, so a quiet watch that just got an event is not ended). A
    /// client that takes a little now and then keeps its stream, but not an unbounded
    /// backlog: the store ends a watcher [`rkube_store::WATCH_QUEUE_BYTES_MAX`] behind.
    fn reapable(&mut self, now: std::time::Instant) -> bool {
        if tokio::time::Instant::now() >= self.deadline {
            return true;
        }
        let has_work = !self.pending.is_empty()
            || self.initial.len() > 0
            || self.watcher.as_ref().is_some_and(Watcher::has_queued);
        if !has_work {
            self.waiting_since = None;
            return false;
        }
        let since = *self.waiting_since.get_or_insert(now);
        now.duration_since(since) >= STALL_TIMEOUT
    }
}

/// The body of a watch response. The stream's state sits behind a lock the reaper can
/// take it from: a client that stops reading is never polled again, so only from outside
/// can what its stream holds be let go.
struct WatchStream(Arc<Mutex<Option<State>>>);

impl futures::Stream for WatchStream {
    type Item = Result<Frame<Bytes>, std::io::Error>;
    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let mut guard = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let Some(st) = guard.as_mut() else { return Poll::Ready(None) };
        match st.poll_chunk(cx) {
            Poll::Ready(Some(b)) => Poll::Ready(Some(Ok(Frame::data(b)))),
            Poll::Ready(None) => {
                // Done: let the state (and its store watcher) go now.
                *guard = None;
                Poll::Ready(None)
            }
            Poll::Pending => {
                if !st.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                    st.waker = Some(cx.waker().clone());
                }
                Poll::Pending
            }
        }
    }
}

/// How long a watch may hold something to send without its client taking any of it
/// before the stream is ended and what it holds let go (kube-apiserver ends slow watchers
/// too; clients re-list and watch again).
pub const STALL_TIMEOUT: Duration = Duration::from_secs(60);
/// How often the reaper looks.
const REAP_INTERVAL: Duration = Duration::from_secs(5);

/// Every open watch stream, for the reaper.
#[derive(Default)]
pub struct Streams {
    open: Mutex<Vec<std::sync::Weak<Mutex<Option<State>>>>>,
    reaper: std::sync::OnceLock<()>,
}

impl Streams {
    fn register(&self, server: &Arc<crate::ApiServer>, stream: &Arc<Mutex<Option<State>>>) {
        self.open.lock().unwrap_or_else(|e| e.into_inner()).push(Arc::downgrade(stream));
        let server = Arc::downgrade(server);
        self.reaper.get_or_init(|| {
            tokio::spawn(async move {
                let mut every = tokio::time::interval(REAP_INTERVAL);
                loop {
                    every.tick().await;
                    let Some(server) = server.upgrade() else { return };
                    server.watch_streams.reap();
                }
            });
        });
    }

    /// Ends the streams that are past their deadline or stalled; forgets the closed ones.
    fn reap(&self) {
        let now = std::time::Instant::now();
        let mut ended = Vec::new();
        self.open.lock().unwrap_or_else(|e| e.into_inner()).retain(|w| {
            let Some(stream) = w.upgrade() else { return false };
            // A stream being polled right now is making progress.
            let Ok(mut guard) = stream.try_lock() else { return true };
            let reap = match guard.as_mut() {
                None => return false,
                Some(st) => st.reapable(now),
            };
            if reap {
                ended.push(guard.take());
            }
            !reap
        });
        // Dropped here, outside the list's lock; the streams are woken to end their answers.
        for st in ended.into_iter().flatten() {
            let waker = st.waker.clone();
            drop(st);
            if let Some(w) = waker {
                w.wake();
            }
        }
    }

    /// How many watch streams hold state.
    pub fn len(&self) -> usize {
        self.open.lock().unwrap_or_else(|e| e.into_inner()).iter().filter(|w| w.strong_count() > 0).count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

pub async fn watch(ctx: &Ctx<'_>) -> Result<Response<Body>, ApiError> {
    let def = ctx.def.clone();
    let q = ctx.query;
    let filter = Filter::from_query(&def, q)?;
    let ns = if def.namespaced { ctx.info.namespace.as_deref() } else { None };
    let prefix = def.list_prefix(ns);
    let rv = q.get("resourceVersion").unwrap_or("");
    let send_initial = q.get("sendInitialEvents").map(|v| crate::request_info::is_true(Some(v)));
    let bookmarks = q.flag("allowWatchBookmarks");
    if send_initial.is_some() && q.get("resourceVersionMatch") != Some("NotOlderThan") {
        return Err(ApiError::invalid(
            "meta.k8s.io",
            "ListOptions",
            "",
            vec![rkube_api::FieldError::forbidden(
                "sendInitialEvents",
                "sendInitialEvents is forbidden for watch unless resourceVersionMatch is set to NotOlderThan",
            )],
        ));
    }
    if send_initial == Some(true) && !bookmarks {
        return Err(ApiError::invalid(
            "meta.k8s.io",
            "ListOptions",
            "",
            vec![rkube_api::FieldError::forbidden(
                "allowWatchBookmarks",
                "allowWatchBookmarks must be set to true when sendInitialEvents is set",
            )],
        ));
    }
    let timeout = match q.get("timeoutSeconds") {
        // Any number is taken; beyond a year it is a year (a deadline must stay a time).
        Some(t) => Duration::from_secs(
            t.parse::<u64>()
                .map_err(|_| ApiError::bad_request(format!("invalid timeoutSeconds: {t}")))?
                .min(WATCH_TIMEOUT_SECONDS_MAX),
        ),
        // kube-apiserver spreads watch lifetimes over 30-60 minutes.
        None => Duration::from_secs(1800 + (uuid::Uuid::new_v4().as_u128() % 1800) as u64),
    };
    let store = ctx.server.store.clone();
    let protobuf = ctx.neg.protobuf && crate::codec::has_protobuf(&def);
    let exempt = ctx.user.in_group("system:masters");
    let guard = WatchGuard::new(ctx.server, (!exempt).then_some(ctx.user.name.as_str()))?;
    let mut state = State {
        def: def.clone(),
        filter,
        name: ctx.info.name.clone(),
        table: ctx.neg.table,
        protobuf,
        query: q.clone(),
        pending: VecDeque::new(),
        initial: Vec::new().into_iter(),
        initial_end: None,
        watcher: None,
        bookmarks,
        next_bookmark: Box::pin(tokio::time::sleep(BOOKMARK_INTERVAL)),
        deadline: tokio::time::Instant::now() + timeout,
        deadline_timer: Box::pin(tokio::time::sleep(timeout)),
        waiting_since: None,
        waker: None,
        store: store.clone(),
        server: guard,
    };
    let initial_state = match (send_initial, rv) {
        (Some(true), _) => true,
        (Some(false), _) => false,
        (None, "" | "0") => true,
        _ => false,
    };
    let start_rev = if initial_state {
        let list = store.list(&prefix, &ListOptions::default()).map_err(|e| ApiError::internal(e.to_string()))?;
        state.initial = list.items.into_iter();
        if send_initial == Some(true) {
            state.initial_end = Some(list.revision);
        }
        Some(list.revision)
    } else {
        match rv.parse::<u64>() {
            Ok(n) => Some(n.min(store.revision())),
            Err(_) => return Err(ApiError::bad_request(format!("invalid resource version: {rv}"))),
        }
    };
    if let Some(after) = start_rev {
        match store.watch(&prefix, after) {
            Ok(w) => state.watcher = Some(w),
            Err(StoreError::Compacted { requested, oldest }) => {
                state.error(&ApiError::gone(format!("too old resource version: {requested} ({oldest})")));
            }
            Err(e) => return Err(ApiError::internal(e.to_string())),
        }
    }
    let shared = Arc::new(Mutex::new(Some(state)));
    ctx.server.watch_streams.register(ctx.server, &shared);
    let stream = WatchStream(shared);
    let body: Body = StreamBody::new(stream).boxed();
    let content_type = if protobuf { "application/vnd.kubernetes.protobuf;stream=watch" } else { "application/json" };
    let resp = Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, HeaderValue::from_static(content_type))
        .header(header::CACHE_CONTROL, HeaderValue::from_static("no-cache, private"))
        .body(body)
        .map_err(|e| ApiError::internal(e.to_string()))?;
    Ok(resp)
}
