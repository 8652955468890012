//! Watch: a stream of `{"type": ..., "object": ...}` lines from a store watch, with
//! kube-apiserver's semantics for resourceVersion ("" and "0" start with the current
//! state as ADDED events; N replays from after N; compacted N is an ERROR 410 event),
//! bookmarks, sendInitialEvents with the initial-events-end bookmark, selectors
//! (an object that stops matching is DELETED for this watcher), Table events, and
//! timeoutSeconds.

use std::collections::VecDeque;
use std::sync::Arc;
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

/// How often a watch that allows bookmarks gets one.
const BOOKMARK_INTERVAL: Duration = Duration::from_secs(30);

struct State {
    def: Arc<ResourceDef>,
    filter: Filter,
    name: Option<String>,
    table: bool,
    protobuf: bool,
    query: Query,
    pending: VecDeque<Bytes>,
    watcher: Option<Watcher>,
    bookmarks: bool,
    next_bookmark: tokio::time::Instant,
    deadline: tokio::time::Instant,
    store: Arc<dyn rkube_store::Store>,
    /// The server (for the encoding cache); dropping it counts the watcher out.
    server: GaugeGuard,
}

struct GaugeGuard(Arc<crate::ApiServer>);

impl Drop for GaugeGuard {
    fn drop(&mut self) {
        self.0.metrics.watchers.dec();
    }
}

fn line(event_type: &str, object: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(object.len() + 40);
    out.extend_from_slice(br#"{"type":""#);
    out.extend_from_slice(event_type.as_bytes());
    out.extend_from_slice(br#"","object":"#);
    out.extend_from_slice(object);
    out.extend_from_slice(b"}\n");
    Bytes::from(out)
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
    fn frame(&self, event_type: &str, object: &Value) -> Bytes {
        if self.protobuf {
            match rkube_proto::encode_watch_event(event_type, object) {
                Ok(b) => return Bytes::from(b),
                Err(e) => tracing::warn!(error = %e, "watch event has no protobuf form; sent as JSON"),
            }
        }
        line(event_type, object.to_string().as_bytes())
    }

    /// A stored object's event. Protobuf encodings come from the server's (key, revision)
    /// cache, so an event is transcoded once however many watchers receive it.
    fn encode_kv(&self, event_type: &str, kv: &rkube_store::KeyValue, parsed: Option<&Value>) -> Bytes {
        if self.protobuf {
            let api_version = self.def.api_version();
            match self.server.0.proto_cache.object(kv, &api_version, &self.def.kind) {
                Ok(inner) => return Bytes::from(rkube_proto::watch_frame(event_type, &inner)),
                Err(e) => tracing::warn!(error = %e, "stored object has no protobuf form; sent as JSON"),
            }
        }
        self.encode(event_type, &kv.value, parsed)
    }

    fn encode(&self, event_type: &str, raw: &[u8], parsed: Option<&Value>) -> Bytes {
        if self.table {
            if let Some(v) = parsed {
                let rv = v.pointer("/metadata/resourceVersion").and_then(Value::as_str).unwrap_or("").to_string();
                let t = to_table(&self.def, std::slice::from_ref(v), &rv, None, &self.query);
                return line(event_type, t.to_string().as_bytes());
            }
        }
        line(event_type, raw)
    }

    /// The line for one store event, or None if this watcher does not see it.
    fn event_line(&self, e: &Event) -> Option<Bytes> {
        if !self.needs_parse() {
            let t = match (e.event_type, &e.prev) {
                (EventType::Put, None) => "ADDED",
                (EventType::Put, Some(_)) => "MODIFIED",
                (EventType::Delete, _) => "DELETED",
            };
            return Some(self.encode_kv(t, &e.kv, None));
        }
        let cur: Value = serde_json::from_slice(&e.kv.value).ok()?;
        let cur_match = self.matches(&cur);
        let prev_match = match &e.prev {
            Some(p) => serde_json::from_slice::<Value>(&p.value).map(|v| self.matches(&v)).unwrap_or(false),
            None => false,
        };
        let t = match e.event_type {
            EventType::Delete => {
                if !prev_match && !cur_match {
                    return None;
                }
                "DELETED"
            }
            EventType::Put => match (prev_match, cur_match) {
                (true, true) => "MODIFIED",
                (false, true) => "ADDED",
                (true, false) => "DELETED",
                (false, false) => return None,
            },
        };
        Some(self.encode_kv(t, &e.kv, Some(&cur)))
    }

    fn bookmark(&self, rv: u64, initial_end: bool) -> Bytes {
        let mut meta = json!({"resourceVersion": rv.to_string()});
        if initial_end {
            meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        let obj = json!({"kind": self.def.kind, "apiVersion": self.def.api_version(), "metadata": meta});
        self.frame("BOOKMARK", &obj)
    }

    fn error(&self, e: &ApiError) -> Bytes {
        self.frame("ERROR", &e.to_status())
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
        Some(t) => Duration::from_secs(
            t.parse::<u64>().map_err(|_| ApiError::bad_request(format!("invalid timeoutSeconds: {t}")))?,
        ),
        // kube-apiserver spreads watch lifetimes over 30-60 minutes.
        None => Duration::from_secs(1800 + (uuid::Uuid::new_v4().as_u128() % 1800) as u64),
    };
    let store = ctx.server.store.clone();
    let protobuf = ctx.neg.protobuf && crate::codec::has_protobuf(&def);
    ctx.server.metrics.watchers.inc();
    let mut state = State {
        def: def.clone(),
        filter,
        name: ctx.info.name.clone(),
        table: ctx.neg.table,
        protobuf,
        query: q.clone(),
        pending: VecDeque::new(),
        watcher: None,
        bookmarks,
        next_bookmark: tokio::time::Instant::now() + BOOKMARK_INTERVAL,
        deadline: tokio::time::Instant::now() + timeout,
        store: store.clone(),
        server: GaugeGuard(ctx.server.clone()),
    };
    let initial_state = match (send_initial, rv) {
        (Some(true), _) => true,
        (Some(false), _) => false,
        (None, "" | "0") => true,
        _ => false,
    };
    let start_rev = if initial_state {
        let list = store.list(&prefix, &ListOptions::default()).map_err(|e| ApiError::internal(e.to_string()))?;
        for kv in &list.items {
            let parsed = if state.needs_parse() { serde_json::from_slice::<Value>(&kv.value).ok() } else { None };
            if let Some(v) = &parsed {
                if !state.matches(v) {
                    continue;
                }
            }
            let l = state.encode_kv("ADDED", kv, parsed.as_ref());
            state.pending.push_back(l);
        }
        if send_initial == Some(true) {
            let b = state.bookmark(list.revision, true);
            state.pending.push_back(b);
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
                let e = state.error(&ApiError::gone(format!("too old resource version: {requested} ({oldest})")));
                state.pending.push_back(e);
            }
            Err(e) => return Err(ApiError::internal(e.to_string())),
        }
    }
    let stream = futures::stream::unfold(state, |mut st| async move {
        loop {
            if let Some(b) = st.pending.pop_front() {
                return Some((Ok::<_, std::io::Error>(Frame::data(b)), st));
            }
            let watcher = st.watcher.as_mut()?;
            let tick = if st.bookmarks { st.next_bookmark.min(st.deadline) } else { st.deadline };
            tokio::select! {
                ev = watcher.next() => {
                    let e = ev?;
                    if let Some(l) = st.event_line(&e) {
                        return Some((Ok(Frame::data(l)), st));
                    }
                }
                _ = tokio::time::sleep_until(tick) => {
                    if tokio::time::Instant::now() >= st.deadline {
                        return None;
                    }
                    st.next_bookmark = tokio::time::Instant::now() + BOOKMARK_INTERVAL;
                    let b = st.bookmark(st.store.revision(), false);
                    return Some((Ok(Frame::data(b)), st));
                }
            }
        }
    });
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
