//! The generic registry: create, get, list, update, patch, delete and deletecollection,
//! written once for every resource (kube-apiserver's `registry/generic/registry/store.go`).
//! Per-resource behaviour comes from the resource's strategy; nothing here names a kind.
//!
//! Objects are stored as JSON with `metadata.resourceVersion` stamped at commit (see
//! [`stamp`]), so reads serve stored bytes untouched.

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Response, StatusCode};
use http_body_util::BodyExt;
use rkube_api::resource::{ResourceDef, Subresource};
use rkube_api::selector::{FieldSelector, LabelSelector};
use rkube_api::status::{success_status, ApiError, ApiResult, FieldError};
use rkube_api::strategy::{unknown_fields, Deletion};
use rkube_api::validation::validate_object_meta;
use rkube_store::{KeyValue, ListOptions, Op, StoreError, TombstoneFn, ValueFn};
use serde_json::{json, Map, Value};

use crate::authn::UserInfo;
use crate::codec::{self, Body, BodyFormat, Negotiated};
use crate::request_info::RequestInfo;
use crate::ApiServer;

mod eviction;

/// Query parameters, in order.
#[derive(Default, Clone, Debug)]
pub struct Query(pub Vec<(String, String)>);

impl Query {
    pub fn parse(q: Option<&str>) -> Query {
        Query(form_urlencoded::parse(q.unwrap_or("").as_bytes()).into_owned().collect())
    }
    pub fn get(&self, k: &str) -> Option<&str> {
        self.0.iter().find(|(key, _)| key == k).map(|(_, v)| v.as_str())
    }
    pub fn flag(&self, k: &str) -> bool {
        crate::request_info::is_true(self.get(k))
    }
}

/// One request to a resource.
pub struct Ctx<'a> {
    pub server: &'a Arc<ApiServer>,
    pub info: &'a RequestInfo,
    pub query: &'a Query,
    pub neg: &'a Negotiated,
    pub headers: &'a HeaderMap,
    pub user: &'a UserInfo,
    pub def: Arc<ResourceDef>,
    /// `Warning` headers to add to the answer.
    pub warnings: Vec<String>,
    /// How much a written object may grow beyond the request body and the stored object
    /// (JSON patch copies); with them, an upper bound of its size (see [`Ctx::check_size`]).
    pub growth: usize,
    /// The request body's length.
    pub body_len: usize,
}

/// Kubernetes time format (RFC 3339, seconds, UTC).
pub fn now_rfc3339() -> String {
    chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Builds the stored bytes once the revision is known. Requests check an object's size
/// before the commit ([`Ctx::check_size`]); the committer refuses only what is grossly
/// over the bound (16 times it in JSON: control characters take six bytes each in JSON,
/// one in protobuf), which nothing the check passes can be, so no write path can store a
/// giant object by skipping the check.
pub fn stamp(obj: Value) -> ValueFn {
    Box::new(move |rev| {
        let bytes = stamped(obj, rev);
        let max = rkube_api::limits::STORED_OBJECT_BYTES_MAX;
        if bytes.len() > 16 * max {
            return Err(format!("the object takes {} bytes, more than the limit of {max} bytes", bytes.len()));
        }
        Ok(bytes)
    })
}

/// Builds a delete's tombstone (the object as it was deleted) once the revision is known.
pub fn tombstone(obj: Value) -> TombstoneFn {
    Box::new(move |rev| stamped(obj, rev))
}

fn stamped(mut obj: Value, rev: u64) -> Bytes {
    if let Some(m) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        m.insert("resourceVersion".into(), Value::String(rev.to_string()));
    }
    Bytes::from(serde_json::to_vec(&obj).unwrap_or_default())
}

/// Objects at least this large (request bodies, patched objects) are decoded, patched
/// and measured off the async workers, so other requests do not wait behind them.
const HEAVY_BYTES: usize = 256 * 1024;

/// Runs `f` where long CPU work does not hold up other requests: for `size` of at least
/// [`HEAVY_BYTES`] on the multi-threaded runtime, on this thread with its other tasks moved
/// to another worker, and no more such jobs at once than there are cores (the rest wait
/// their turn, on their own threads).
fn heavy<T>(size: usize, f: impl FnOnce() -> T) -> T {
    static TURNS: std::sync::OnceLock<tokio::sync::Semaphore> = std::sync::OnceLock::new();
    let multi = tokio::runtime::Handle::try_current()
        .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
    if size < HEAVY_BYTES || !multi {
        return f();
    }
    let turns =
        TURNS.get_or_init(|| tokio::sync::Semaphore::new(std::thread::available_parallelism().map_or(2, |n| n.get())));
    tokio::task::block_in_place(|| {
        let _turn = tokio::runtime::Handle::current().block_on(turns.acquire());
        f()
    })
}

/// How heavy a patch may be to apply, for [`heavy`]: its size, the size of the object, or
/// (for merges, whose list work grows with the product of list lengths) the length of its
/// lists, taken as bytes.
fn patch_weight(raw_len: usize, patch: &Value, old: &Value) -> usize {
    let mut elements = 0usize;
    let mut stack = vec![patch];
    while let Some(v) = stack.pop() {
        match v {
            Value::Array(a) => {
                elements += a.len();
                stack.extend(a);
            }
            Value::Object(m) => stack.extend(m.values()),
            _ => {}
        }
    }
    let lists = if elements >= 1000 { HEAVY_BYTES } else { 0 };
    raw_len.max(lists).max(HEAVY_BYTES * usize::from(big_object(old)))
}

pub fn parse_stored(kv: &KeyValue) -> ApiResult<Value> {
    serde_json::from_slice(&kv.value)
        .map_err(|e| ApiError::internal(format!("stored object {} is not JSON: {e}", kv.key)))
}

fn store_error(def: &ResourceDef, name: &str, e: StoreError) -> ApiError {
    match e {
        StoreError::AlreadyExists => ApiError::already_exists(&def.group, &def.plural, name),
        StoreError::NotFound => ApiError::not_found(&def.group, &def.plural, name),
        StoreError::Conflict { .. } => ApiError::stale(&def.group, &def.plural, name),
        StoreError::Compacted { requested, oldest } => {
            ApiError::gone(format!("too old resource version: {requested} ({oldest})"))
        }
        StoreError::FutureRevision { requested, current } => {
            ApiError::new(504, "Timeout", format!("Too large resource version: {requested}, current: {current}"))
        }
        StoreError::Io(m) => ApiError::internal(m),
        // Deviation: kube-apiserver passes etcd's refusal on as a 500 ("etcdserver:
        // request is too large"), which clients retry; it is the request's fault.
        StoreError::Refused(m) => ApiError::new(
            413,
            "RequestEntityTooLarge",
            format!("Request entity too large: {} \"{name}\": {m}", def.plural),
        ),
        StoreError::Closed => ApiError::new(503, "ServiceUnavailable", "the server is shutting down"),
    }
}

impl<'a> Ctx<'a> {
    fn name(&self) -> &str {
        self.info.name.as_deref().unwrap_or("")
    }

    fn ns(&self) -> Option<&str> {
        if self.def.namespaced {
            self.info.namespace.as_deref()
        } else {
            None
        }
    }

    fn key(&self) -> String {
        self.def.key(self.ns(), self.name())
    }

    fn dry_run(&self) -> ApiResult<bool> {
        match self.query.get("dryRun") {
            None | Some("") => Ok(false),
            Some("All") => Ok(true),
            Some(other) => {
                Err(ApiError::bad_request(format!("Invalid dry run value: {other:?}: supported values: \"All\"")))
            }
        }
    }

    fn field_validation(&self) -> ApiResult<&'a str> {
        match self.query.get("fieldValidation") {
            None | Some("") => Ok("Warn"),
            Some(v @ ("Ignore" | "Warn" | "Strict")) => Ok(v),
            Some(other) => Err(ApiError::bad_request(format!(
                "fieldValidation parameter unsupported: {other}; supported values are Ignore, Warn, Strict"
            ))),
        }
    }

    fn cannot_handle(&self, body_kind: &str, body_version: &str, why: &str) -> ApiError {
        ApiError::bad_request(format!(
            "{body_kind} in version \"{body_version}\" cannot be handled as a {}: {why}",
            self.def.kind
        ))
    }

    /// Decodes a request body into an object of this resource: media type, JSON/YAML,
    /// kind and apiVersion, the typed model, unknown fields per `fieldValidation`.
    fn decode_object(&mut self, raw: &[u8], format: BodyFormat) -> ApiResult<Value> {
        if format == BodyFormat::Protobuf && !codec::has_protobuf(&self.def) {
            // Custom resources have no protobuf form.
            return Err(ApiError::unsupported_media_type(rkube_proto::MEDIA_TYPE));
        }
        if format == BodyFormat::Yaml {
            // Aliases may expand a YAML body (within codec's bound).
            self.growth = self.body_len.saturating_add(400_000);
        }
        let mut obj = heavy(raw.len(), || codec::decode(format, raw)).map_err(|e| {
            if format == BodyFormat::Protobuf {
                return ApiError::bad_request(format!(
                    "the object provided is unrecognized (must be of type {}): {e}",
                    self.def.kind
                ));
            }
            let head = &raw[..raw.len().min(30)];
            if format == BodyFormat::Yaml {
                // kube-apiserver quotes a YAML body's head in hex.
                let hex: String = head.iter().map(|b| format!("{b:02x}")).collect();
                return ApiError::bad_request(format!(
                    "the object provided is unrecognized (must be of type {}): yaml: {e} ({hex} ...)",
                    self.def.kind
                ));
            }
            let head = String::from_utf8_lossy(head);
            ApiError::bad_request(format!(
                "the object provided is unrecognized (must be of type {}): couldn't get version/kind; json parse error: {e} ({head} ...)",
                self.def.kind
            ))
        })?;
        // A protobuf body was decoded field by field through the message table: its values
        // have their fields' types and it cannot carry unknown fields, so the typed round trip
        // JSON bodies need would only repeat that work.
        self.check_type_meta(&mut obj)?;
        if format != BodyFormat::Protobuf {
            heavy(raw.len(), || self.canonicalize(&mut obj))?;
        }
        Ok(obj)
    }

    /// Type checks a decoded object (from a body or a patch result) and canonicalizes it.
    fn check_object(&mut self, obj: &mut Value) -> ApiResult<()> {
        self.check_type_meta(obj)?;
        self.canonicalize(obj)
    }

    /// `kind` and `apiVersion` match the URL's resource (defaulted when absent); metadata
    /// is an object; the object nests at most `DEPTH_MAX` levels (so everything after this
    /// step, and every later read of the stored bytes, stays within bounded recursion).
    fn check_type_meta(&mut self, obj: &mut Value) -> ApiResult<()> {
        let def = self.def.clone();
        if rkube_api::limits::depth_exceeds(obj, rkube_api::limits::DEPTH_MAX) {
            return Err(ApiError::bad_request(format!(
                "the object provided is unrecognized (must be of type {}): couldn't get version/kind; json parse error: {}",
                def.kind,
                rkube_api::limits::DEPTH_EXCEEDED_MESSAGE
            )));
        }
        let Some(m) = obj.as_object_mut() else {
            return Err(ApiError::bad_request(format!(
                "the object provided is unrecognized (must be of type {}): couldn't get version/kind; json parse error: expected an object",
                def.kind
            )));
        };
        let kind = m.get("kind").and_then(Value::as_str).unwrap_or("").to_string();
        let api_version = m.get("apiVersion").and_then(Value::as_str).unwrap_or("").to_string();
        let body_kind = if kind.is_empty() { def.kind.clone() } else { kind.clone() };
        let body_version = if api_version.is_empty() { def.api_version() } else { api_version.clone() };
        if body_kind != def.kind || body_version != def.api_version() {
            let (from_group, from_version) = match body_version.split_once('/') {
                Some((g, v)) => (g.to_string(), v.to_string()),
                None => (String::new(), body_version.clone()),
            };
            let _ = from_group;
            let internal_group = if def.group.is_empty() {
                "core".to_string()
            } else {
                def.group.split('.').next().unwrap_or("").to_string()
            };
            return Err(self.cannot_handle(
                &body_kind,
                &from_version,
                &format!(
                    "converting ({from_version}.{body_kind}) to ({internal_group}.{}): unknown conversion",
                    def.kind
                ),
            ));
        }
        m.insert("kind".into(), Value::String(def.kind.clone()));
        m.insert("apiVersion".into(), Value::String(def.api_version()));
        if m.get("metadata").is_none_or(Value::is_null) {
            m.insert("metadata".into(), json!({}));
        }
        Ok(())
    }

    /// The typed model's view of the object: type errors are a 400, unknown fields are
    /// dropped, reported per `fieldValidation`.
    fn canonicalize(&mut self, obj: &mut Value) -> ApiResult<()> {
        let def = self.def.clone();
        let typed = def.strategy.canonicalize(obj).map_err(|e| self.cannot_handle(&def.kind, &def.version, &e))?;
        let unknown = unknown_fields(obj, &typed);
        if !unknown.is_empty() {
            match self.field_validation()? {
                "Strict" => {
                    let msgs: Vec<String> = unknown.iter().map(|f| format!("unknown field \"{f}\"")).collect();
                    return Err(self.cannot_handle(
                        &def.kind,
                        &def.version,
                        &format!("strict decoding error: {}", msgs.join(", ")),
                    ));
                }
                "Warn" => self.warnings.extend(unknown.iter().map(|f| format!("unknown field \"{f}\""))),
                _ => {}
            }
        }
        *obj = typed;
        Ok(())
    }

    /// Validates a new object (`old` None) or an update, made through `sub` if given.
    fn validate(&self, obj: &Value, old: Option<&Value>, sub: Option<Subresource>) -> ApiResult<()> {
        let def = &self.def;
        let mut errs: Vec<FieldError> = Vec::new();
        validate_object_meta(obj.get("metadata").unwrap_or(&Value::Null), def.name_rule, def.namespaced, &mut errs);
        def.strategy.validate(obj, &mut errs);
        match (old, sub) {
            (None, _) => def.strategy.validate_create(obj, &mut errs),
            // A partial write other than status has rules of its own (only additions of
            // ephemeral containers, approvals that stay); status keeps the resource's.
            (Some(old), Some(sr)) if sr != Subresource::Status && sr.part().is_some() => {
                def.strategy.validate_part_update(sr, obj, old, &mut errs)
            }
            (Some(old), _) => def.strategy.validate_update(obj, old, &mut errs),
        }
        if errs.is_empty() {
            Ok(())
        } else {
            let name = obj.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("");
            Err(ApiError::invalid(&def.group, &def.kind, name, errs))
        }
    }

    /// Refuses an object larger than etcd takes (kube-apiserver's users meet etcd's limit),
    /// before the commit. The compact JSON is measured, stopping past the bound; only an
    /// object over it in JSON pays for measuring its protobuf form (built-in kinds are
    /// stored as protobuf by kube-apiserver, custom resources as JSON; JSON is never the
    /// smaller).
    ///
    /// `bound` is what the object can be at most, from what it was made of (the body, the
    /// stored object, what a patch may add): defaults add little, so below 1 MiB the object
    /// is not measured at all.
    fn check_size(&self, obj: &Value, bound: usize) -> ApiResult<()> {
        let max = rkube_api::limits::STORED_OBJECT_BYTES_MAX;
        if bound < 1 << 20 {
            return Ok(());
        }
        let json = rkube_api::limits::shape(obj, max).bytes;
        if json <= max {
            return Ok(());
        }
        let size = if codec::has_protobuf(&self.def) {
            heavy(json, || rkube_proto::encode_object(obj).map(|b| b.len())).unwrap_or(json)
        } else {
            json
        };
        if size <= max {
            return Ok(());
        }
        let name = obj.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("");
        // Deviation: kube-apiserver passes etcd's refusal on as a 500 ("etcdserver:
        // request is too large"), which clients retry; it is the request's fault.
        Err(ApiError::new(
            413,
            "RequestEntityTooLarge",
            format!(
                "Request entity too large: {} \"{name}\": the object would take {} bytes in storage, more than the limit of {max} bytes",
                self.def.plural,
                if size > json { size } else { json }
            ),
        ))
    }

    /// Whether an object answer goes out in protobuf.
    fn answers_protobuf(&self) -> bool {
        self.neg.protobuf && !self.neg.table && codec::has_protobuf(&self.def)
    }

    /// A stored object in the negotiated form (JSON bytes as stored, a Table, or protobuf
    /// from the encoding cache).
    fn respond_object(&self, status: StatusCode, kv: &KeyValue) -> Response<Body> {
        let raw = kv.value.clone();
        if self.answers_protobuf() {
            if let Ok(pb) = self.server.proto_cache.object(kv, &self.def.api_version(), &self.def.kind) {
                return self.finish(codec::protobuf_response(status, pb));
            }
        }
        if self.neg.table {
            if let Ok(v) = serde_json::from_slice::<Value>(&raw) {
                let rv = v.pointer("/metadata/resourceVersion").and_then(Value::as_str).unwrap_or("").to_string();
                let t = to_table(&self.def, &[v], &rv, None, self.query);
                return self.finish(codec::json_response(status, &t, self.neg));
            }
        }
        self.finish(codec::bytes_response(status, raw, self.neg))
    }

    fn respond_value(&self, status: StatusCode, v: &Value) -> Response<Body> {
        self.finish(codec::json_response(status, v, self.neg))
    }

    fn finish(&self, mut r: Response<Body>) -> Response<Body> {
        for w in &self.warnings {
            if let Ok(v) = HeaderValue::from_str(&format!("299 - {}", serde_json::to_string(w).unwrap_or_default())) {
                r.headers_mut().append("warning", v);
            }
        }
        r
    }
}

/// Routes one resource request. `body` is read only by verbs that take one.
/// What of the HTTP request a resource handler reads besides its body.
pub struct Request<'a> {
    pub method: &'a http::Method,
    pub headers: &'a HeaderMap,
    /// The connection, for the subresources that take it over (exec, attach).
    pub upgrade: Option<hyper::upgrade::OnUpgrade>,
    /// The query as sent and the client's address (what a proxied request carries on).
    pub raw_query: Option<&'a str>,
    /// The authority of an HTTP/2 request (it has no Host header).
    pub authority: Option<&'a str>,
    pub peer: std::net::SocketAddr,
}

pub async fn handle(
    server: &Arc<ApiServer>,
    info: &RequestInfo,
    query: &Query,
    neg: &Negotiated,
    request: Request<'_>,
    user: &UserInfo,
    body: Bytes,
) -> Result<Response<Body>, ApiError> {
    let headers = request.headers;
    let snap = server.table.snapshot();
    let def = snap.get(&info.group, &info.version, &info.resource).cloned().ok_or_else(ApiError::no_route)?;
    if !def.namespaced && (info.namespace_prefix || (info.namespace.is_some() && info.resource != "namespaces")) {
        return Err(ApiError::no_route());
    }
    let sub = match &info.subresource {
        None => None,
        Some(s) => match Subresource::parse(s) {
            Some(Subresource::Proxy) if def.has_subresource(Subresource::Proxy) => Some(Subresource::Proxy),
            Some(sr) if def.has_subresource(sr) && info.subpath.is_empty() => Some(sr),
            _ => return Err(ApiError::no_route()),
        },
    };
    let mut ctx = Ctx {
        server,
        info,
        query,
        neg,
        headers,
        user,
        def: def.clone(),
        warnings: vec![],
        growth: 0,
        body_len: body.len(),
    };
    let verb = info.verb.as_str();
    if let Some(sr) = sub {
        let allowed = match verb {
            "get" => sr.verbs().contains(&"get"),
            "update" => sr.verbs().contains(&"update"),
            "patch" => sr.verbs().contains(&"patch"),
            "create" => sr.verbs().contains(&"create"),
            "delete" => sr.verbs().contains(&"delete"),
            _ => false,
        };
        if !allowed {
            return Err(ApiError::method_not_allowed());
        }
    } else if !def.allows(verb) {
        return Err(ApiError::method_not_allowed());
    }
    let item_verb = matches!(verb, "update" | "patch" | "delete" | "get");
    if (item_verb && info.name.is_none()) || (verb == "create" && info.name.is_some() && sub.is_none()) {
        return Err(ApiError::method_not_allowed());
    }
    if def.namespaced && info.namespace.is_none() && !matches!(verb, "list" | "watch") {
        return Err(ApiError::method_not_allowed());
    }
    match (verb, sub) {
        ("get" | "list", None) if def.computed.is_some() => ctx.computed().await,
        ("get", None) => ctx.get(),
        ("get", Some(Subresource::Scale)) => ctx.get_scale(),
        ("get", Some(Subresource::Log)) => {
            crate::logs::pod_log(server, info.namespace.as_deref().unwrap_or(""), ctx.name(), query).await
        }
        (_, Some(sr @ (Subresource::Exec | Subresource::Attach | Subresource::PortForward))) => {
            let kind = crate::streams::Kind::of(sr.name()).expect("a stream subresource");
            let ns = info.namespace.as_deref().unwrap_or("");
            crate::streams::connect(server, kind, ns, ctx.name(), query, request).await
        }
        (_, Some(Subresource::Proxy)) => crate::proxy::proxy(server, &def, info, request, body).await,
        ("get", Some(_)) => ctx.get(),
        ("list", _) => ctx.list(),
        ("watch", _) => crate::watch::watch(&ctx).await,
        ("create", None) if def.strategy.ephemeral() => {
            // A review has no Table form (kube-apiserver: no metadata to convert).
            if neg.table {
                return Err(ApiError::not_acceptable_of(&[
                    "application/json",
                    "application/yaml",
                    rkube_proto::MEDIA_TYPE,
                ]));
            }
            let format = codec::body_format(headers)?;
            let obj = ctx.decode_object(&body, format)?;
            let answered = crate::review::answer(server, user, &def.kind, info.namespace.as_deref(), obj)?;
            Ok(ctx.respond_value(StatusCode::CREATED, &answered))
        }
        ("create", None) => {
            let raw = body.clone();
            let format = codec::body_format(headers)?;
            let obj = ctx.decode_object(&raw, format)?;
            ctx.create(obj).await
        }
        ("create", Some(Subresource::Token)) => {
            let format = codec::body_format(headers)?;
            let req = if body.is_empty() {
                json!({})
            } else {
                codec::decode(format, &body)
                    .map_err(|e| ApiError::bad_request(format!("error decoding TokenRequest: {e}")))?
            };
            let ns = info.namespace.as_deref().unwrap_or("");
            let answered = crate::tokens::request(server, ns, info.name.as_deref().unwrap_or(""), req)?;
            Ok(ctx.respond_value(StatusCode::CREATED, &answered))
        }
        ("create", Some(Subresource::Eviction)) => {
            let format = codec::body_format(headers)?;
            let eviction = codec::decode(format, &body)
                .map_err(|e| ApiError::bad_request(format!("error decoding Eviction: {e}")))?;
            ctx.evict(eviction).await
        }
        ("create", Some(Subresource::Binding)) => {
            let raw = body.clone();
            let format = codec::body_format(headers)?;
            let binding = codec::decode(format, &raw)
                .map_err(|e| ApiError::bad_request(format!("error decoding binding: {e}")))?;
            ctx.bind(binding).await
        }
        ("update", s) => {
            let raw = body.clone();
            let format = codec::body_format(headers)?;
            if s == Some(Subresource::Scale) {
                let scale = codec::decode(format, &raw).map_err(ApiError::bad_request)?;
                return ctx.update_scale(scale, None).await;
            }
            let obj = ctx.decode_object(&raw, format)?;
            ctx.update(obj, s).await
        }
        ("patch", s) => {
            let raw = body.clone();
            let format = codec::body_format(headers)?;
            ctx.patch(&raw, format, s).await
        }
        ("delete", None) => {
            let raw = body.clone();
            ctx.delete(&raw).await
        }
        ("deletecollection", None) => {
            let raw = body.clone();
            ctx.delete_collection(&raw).await
        }
        _ => Err(ApiError::method_not_allowed()),
    }
}

const GENERATE_NAME_CHARS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// How often a create with `generateName` tries a new name when the generated one is taken.
const GENERATE_NAME_ATTEMPTS: u32 = 8;

/// `generate_name` with a random 5-character suffix, as kube-apiserver's name generator.
fn generated_name(generate_name: &str) -> String {
    let u = uuid::Uuid::new_v4();
    let mut name = generate_name.to_string();
    name.extend(
        u.as_bytes().iter().take(5).map(|b| GENERATE_NAME_CHARS[*b as usize % GENERATE_NAME_CHARS.len()] as char),
    );
    name
}

/// Everything but metadata and status: a change here bumps `metadata.generation`.
fn spec_part(v: &Value) -> Value {
    let mut c = v.clone();
    if let Some(m) = c.as_object_mut() {
        m.remove("metadata");
        m.remove("status");
    }
    c
}

fn meta_mut(v: &mut Value) -> &mut Map<String, Value> {
    rkube_api::strategy::ensure_map(v, &["metadata"])
}

impl<'a> Ctx<'a> {
    fn get(&self) -> ApiResult<Response<Body>> {
        let kv = self
            .server
            .store
            .get(&self.key())
            .ok_or_else(|| ApiError::not_found(&self.def.group, &self.def.plural, self.name()))?;
        Ok(self.respond_object(StatusCode::OK, &kv))
    }

    /// Admission checks every create goes through: the namespace exists and is not
    /// being deleted.
    fn admit_create(&self, obj: &Value) -> ApiResult<()> {
        let Some(ns) = self.ns() else { return Ok(()) };
        let ns_key = format!("/registry/core/namespaces/{ns}");
        let Some(kv) = self.server.store.get(&ns_key) else {
            return Err(ApiError::not_found("", "namespaces", ns));
        };
        let nsobj = parse_stored(&kv)?;
        if nsobj.pointer("/metadata/deletionTimestamp").is_some_and(|v| !v.is_null()) {
            let name = obj.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("");
            return Err(ApiError::new(
                403,
                "Forbidden",
                format!(
                    "{} \"{name}\" is forbidden: unable to create new content in namespace {ns} because it is being terminated",
                    self.def.plural
                ),
            )
            .with_details(rkube_api::status::Details {
                name: name.into(),
                group: self.def.group.clone(),
                kind: self.def.plural.clone(),
                causes: vec![],
            }));
        }
        Ok(())
    }

    /// The resource's own admission step (e.g. the ServiceAccount admission for pods), with
    /// read access to the store. A refusal the hook marks as retryable (what a controller is
    /// about to create, like a new namespace's `default` ServiceAccount) is retried for up to
    /// 2 s (deviation: kube-apiserver refuses at once; waiting spares clients that create a
    /// namespace and a pod back to back).
    async fn admit_by_strategy(&self, obj: &mut Value) -> ApiResult<()> {
        let store = self.server.store.clone();
        let lookup = move |plural: &str, ns: &str, name: &str| -> Option<Value> {
            store.get(&format!("/registry/core/{plural}/{ns}/{name}")).and_then(|kv| parse_stored(&kv).ok())
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
        loop {
            // In place: a hook's changes before it refuses are idempotent, so a retry is safe.
            match self.def.strategy.admit(obj, &lookup) {
                Ok(()) => return Ok(()),
                Err(rkube_api::strategy::Refusal { reason, retry }) => {
                    if retry && std::time::Instant::now() < deadline {
                        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                        continue;
                    }
                    let name = obj.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("");
                    return Err(ApiError::new(
                        403,
                        "Forbidden",
                        format!("{} \"{name}\" is forbidden: {reason}", self.def.plural),
                    )
                    .with_details(rkube_api::status::Details {
                        name: name.into(),
                        group: self.def.group.clone(),
                        kind: self.def.plural.clone(),
                        causes: vec![],
                    }));
                }
            }
        }
    }

    pub async fn create(&mut self, mut obj: Value) -> ApiResult<Response<Body>> {
        let def = self.def.clone();
        let dry = self.dry_run()?;
        let generated;
        {
            let url_ns = self.ns().map(str::to_string);
            let meta = meta_mut(&mut obj);
            let body_ns = meta.get("namespace").and_then(Value::as_str).unwrap_or("").to_string();
            if def.namespaced {
                let url_ns = url_ns.unwrap_or_default();
                if !body_ns.is_empty() && body_ns != url_ns {
                    return Err(ApiError::bad_request(
                        "the namespace of the provided object does not match the namespace sent on the request",
                    ));
                }
                meta.insert("namespace".into(), json!(url_ns));
            } else {
                meta.remove("namespace");
            }
            let name = meta.get("name").and_then(Value::as_str).unwrap_or("").to_string();
            let generate = meta.get("generateName").and_then(Value::as_str).unwrap_or("").to_string();
            generated = name.is_empty() && !generate.is_empty();
            if generated {
                meta.insert("name".into(), json!(generated_name(&generate)));
            }
            meta.insert("uid".into(), json!(uuid::Uuid::new_v4().to_string()));
            meta.insert("creationTimestamp".into(), json!(now_rfc3339()));
            for k in ["resourceVersion", "deletionTimestamp", "deletionGracePeriodSeconds", "selfLink", "managedFields"]
            {
                meta.remove(k);
            }
            if def.has_generation {
                meta.insert("generation".into(), json!(1));
            } else {
                meta.remove("generation");
            }
        }
        def.strategy.default(&mut obj);
        def.strategy.prepare_for_create(&mut obj);
        if let Some(field) = def.requester {
            // Who asks is the API server's to say (a CertificateSigningRequest's requester).
            let m = rkube_api::strategy::ensure_map(&mut obj, &[field]);
            let user = self.user;
            m.insert("username".into(), json!(user.name));
            for (k, v) in [("uid", json!(user.uid)), ("groups", json!(user.groups)), ("extra", json!(user.extra))] {
                let empty = v.as_str() == Some("")
                    || v.as_array().is_some_and(|a| a.is_empty())
                    || v.as_object().is_some_and(|o| o.is_empty());
                if empty {
                    m.remove(k);
                } else {
                    m.insert(k.into(), v);
                }
            }
        }
        if def.has_subresource(Subresource::Status) {
            match def.strategy.initial_status(&obj) {
                Some(s) => {
                    obj["status"] = s;
                }
                None => {
                    if let Some(m) = obj.as_object_mut() {
                        m.remove("status");
                    }
                }
            }
        }
        self.admit_create(&obj)?;
        self.admit_by_strategy(&mut obj).await?;
        if let Some(pointer) = def.strategy.allocated_field() {
            let existing = self
                .server
                .store
                .list(&def.storage_prefix, &ListOptions::default())
                .map_err(|e| store_error(&def, "", e))?;
            let used: std::collections::HashSet<String> = existing
                .items
                .iter()
                .filter_map(|kv| serde_json::from_slice::<Value>(&kv.value).ok())
                .filter_map(|v| v.pointer(pointer).and_then(Value::as_str).map(str::to_string))
                .collect();
            let name = obj.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("").to_string();
            def.strategy
                .allocate(&mut obj, &|v| used.contains(v))
                .map_err(|e| ApiError::invalid(&def.group, &def.kind, &name, vec![e]))?;
        }
        self.validate(&obj, None, None)?;
        let ns = self.ns().unwrap_or("").to_string();
        crate::authz::admit_write(self.server, self.user, &def, &ns, "", &obj, None)?;
        let name = obj.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("").to_string();
        if dry {
            return Ok(self.respond_value(StatusCode::CREATED, &obj));
        }
        self.check_size(&obj, self.body_len.saturating_add(self.growth))?;
        // A generated name that is taken is generated again, up to 8 attempts in all, as
        // kube-apiserver 1.32+ does (RetryGenerateName).
        let mut attempts = if generated { GENERATE_NAME_ATTEMPTS } else { 1 };
        let mut name = name;
        loop {
            attempts -= 1;
            let key = def.key(self.ns(), &name);
            let unstored = self.protobuf_answer_from(&obj);
            let retry = (attempts > 0).then(|| obj.clone());
            match self.server.store.txn(Op::Create { key, value: stamp(obj) }).await {
                Ok(kv) => return Ok(self.respond_stored(StatusCode::CREATED, &kv, unstored)),
                Err(StoreError::AlreadyExists) if retry.is_some() => {
                    obj = retry.unwrap_or_default();
                    name = generated_name(obj.pointer("/metadata/generateName").and_then(Value::as_str).unwrap_or(""));
                    meta_mut(&mut obj).insert("name".into(), json!(name));
                }
                Err(e) => return Err(store_error(&def, &name, e)),
            }
        }
    }

    /// For a write answered in protobuf: the object's message, encoded from the value tree
    /// about to be stored (cheaper than transcoding the stored JSON bytes afterwards).
    fn protobuf_answer_from(&self, obj: &Value) -> Option<rkube_proto::Unstored> {
        if !self.answers_protobuf() {
            return None;
        }
        rkube_proto::Unstored::encode(obj).ok()
    }

    /// Answers a stored write: with its protobuf body when one was encoded before the
    /// commit (see [`Ctx::protobuf_answer_from`]), which is also cached so later protobuf
    /// reads of this revision splice it; else as [`Ctx::respond_object`].
    fn respond_stored(
        &self,
        status: StatusCode,
        kv: &KeyValue,
        unstored: Option<rkube_proto::Unstored>,
    ) -> Response<Body> {
        let Some(u) = unstored else { return self.respond_object(status, kv) };
        let (body, message) = u.finish(&kv.mod_revision.to_string());
        let entry = self.server.proto_cache.put(kv, body, message);
        self.finish(codec::protobuf_response(status, entry.body()))
    }

    /// Makes the object to store from the old one and the requested new one: identity and
    /// system fields kept, the status/spec split, generation, validation. Returns None if
    /// nothing would change.
    fn prepare_update(&mut self, old: &Value, mut new: Value, sub: Option<Subresource>) -> ApiResult<Option<Value>> {
        let def = self.def.clone();
        if let Some(part) = sub.and_then(Subresource::part) {
            // A partial subresource (status, finalize, ephemeralcontainers) changes its part
            // only: the rest, metadata included, is kept as stored.
            let pointer: String = part.iter().map(|f| format!("/{f}")).collect();
            let value = new.pointer(&pointer).cloned();
            new = old.clone();
            let (last, parents) = part.split_last().expect("a part names a field");
            match value {
                Some(v) => {
                    rkube_api::strategy::ensure_map(&mut new, parents).insert((*last).into(), v);
                }
                None => {
                    if let Some(m) =
                        new.pointer_mut(&pointer[..pointer.len() - last.len() - 1]).and_then(Value::as_object_mut)
                    {
                        m.remove(*last);
                    }
                }
            }
            // The new part gets its defaults, as decoding the request gives them (not for
            // status: the stored object is defaulted already and status has no defaults,
            // so the kubelets' frequent writes skip the work).
            if sub != Some(Subresource::Status) {
                def.strategy.default(&mut new);
            }
        } else {
            def.strategy.default(&mut new);
            if def.has_subresource(Subresource::Status) {
                match old.get("status") {
                    Some(s) => new["status"] = s.clone(),
                    None => {
                        if let Some(m) = new.as_object_mut() {
                            m.remove("status");
                        }
                    }
                }
            }
        }
        {
            let old_meta = old.get("metadata").and_then(Value::as_object).cloned().unwrap_or_default();
            let meta = meta_mut(&mut new);
            for k in [
                "uid",
                "creationTimestamp",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
                "generation",
                "namespace",
                "name",
            ] {
                match old_meta.get(k) {
                    Some(v) => {
                        meta.insert(k.into(), v.clone());
                    }
                    None => {
                        meta.remove(k);
                    }
                }
            }
            meta.remove("managedFields");
            meta.remove("selfLink");
            meta.insert("resourceVersion".into(), old_meta.get("resourceVersion").cloned().unwrap_or(json!("")));
        }
        if def.has_generation && spec_part(&new) != spec_part(old) {
            let g = old.pointer("/metadata/generation").and_then(Value::as_i64).unwrap_or(0);
            meta_mut(&mut new).insert("generation".into(), json!(g + 1));
        }
        self.validate(&new, Some(old), sub)?;
        if &new == old {
            return Ok(None);
        }
        Ok(Some(new))
    }

    /// Reads, transforms and writes with optimistic concurrency, retrying on conflicts
    /// unless the client pinned a resourceVersion (kube-apiserver's GuaranteedUpdate).
    async fn guaranteed_update(
        &mut self,
        sub: Option<Subresource>,
        mut transform: impl FnMut(&mut Self, &Value) -> ApiResult<(Value, Option<String>)>,
    ) -> ApiResult<Response<Body>> {
        let def = self.def.clone();
        let key = self.key();
        let name = self.name().to_string();
        let dry = self.dry_run()?;
        for _attempt in 0..8 {
            let kv = self.server.store.get(&key).ok_or_else(|| ApiError::not_found(&def.group, &def.plural, &name))?;
            let old = parse_stored(&kv)?;
            let (new, pinned_rv) = transform(self, &old)?;
            if let Some(rv) = &pinned_rv {
                if *rv != kv.mod_revision.to_string() {
                    return Err(ApiError::stale(&def.group, &def.plural, &name));
                }
            }
            let uid_new = new.pointer("/metadata/uid").and_then(Value::as_str).unwrap_or("");
            let uid_old = old.pointer("/metadata/uid").and_then(Value::as_str).unwrap_or("");
            if !uid_new.is_empty() && uid_new != uid_old {
                return Err(ApiError::conflict(
                    &def.group,
                    &def.plural,
                    &name,
                    &format!("Precondition failed: UID in precondition: {uid_new}, UID in object meta: {uid_old}"),
                ));
            }
            let Some(prepared) = self.prepare_update(&old, new, sub)? else {
                return Ok(self.respond_object(StatusCode::OK, &kv));
            };
            let ns = self.ns().unwrap_or("").to_string();
            crate::authz::admit_write(self.server, self.user, &def, &ns, &name, &prepared, Some(&old))?;
            if dry {
                return Ok(self.respond_value(StatusCode::OK, &prepared));
            }
            // An object being deleted whose last finalizer is gone is deleted now.
            let deleting = prepared.pointer("/metadata/deletionTimestamp").is_some_and(|v| !v.is_null());
            let finalizers_left =
                prepared.pointer("/metadata/finalizers").and_then(Value::as_array).is_some_and(|a| !a.is_empty());
            let pending_grace = prepared.pointer("/metadata/deletionGracePeriodSeconds").and_then(Value::as_i64);
            let graceful = matches!(self.deletion(&prepared, pending_grace), Deletion::Graceful { .. });
            let mut unstored = None;
            if !(deleting && !finalizers_left && !graceful) {
                self.check_size(&prepared, kv.value.len().saturating_add(self.body_len).saturating_add(self.growth))?;
            }
            let op = if deleting && !finalizers_left && !graceful {
                Op::Delete { key: key.clone(), expected: Some(kv.mod_revision), tombstone: tombstone(prepared) }
            } else {
                unstored = self.protobuf_answer_from(&prepared);
                Op::Update { key: key.clone(), expected: Some(kv.mod_revision), value: stamp(prepared) }
            };
            match self.server.store.txn(op).await {
                Ok(kv) => return Ok(self.respond_stored(StatusCode::OK, &kv, unstored)),
                Err(StoreError::Conflict { .. }) if pinned_rv.is_none() => continue,
                Err(e) => return Err(store_error(&def, &name, e)),
            }
        }
        Err(ApiError::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {} \"{name}\": too many conflicting writes; try again",
                def.plural
            ),
        ))
    }

    async fn update(&mut self, obj: Value, sub: Option<Subresource>) -> ApiResult<Response<Body>> {
        let name = obj.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("").to_string();
        if name != self.name() {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({name}) does not match the name on the URL ({})",
                self.name()
            )));
        }
        if self.def.namespaced {
            let body_ns = obj.pointer("/metadata/namespace").and_then(Value::as_str).unwrap_or("");
            if !body_ns.is_empty() && Some(body_ns) != self.ns() {
                return Err(ApiError::bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request",
                ));
            }
        }
        let rv = obj
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_string);
        self.guaranteed_update(sub, move |_, _old| Ok((obj.clone(), rv.clone()))).await
    }

    async fn patch(&mut self, raw: &[u8], format: BodyFormat, sub: Option<Subresource>) -> ApiResult<Response<Body>> {
        if format == BodyFormat::StrategicMergePatch && self.def.custom {
            // Custom resources have no merge keys; kube-apiserver refuses this patch type.
            return Err(ApiError::new(
                415,
                "UnsupportedMediaType",
                "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml",
            ));
        }
        if format == BodyFormat::JsonPatch {
            // Copies may add this much beyond the body and the stored object.
            self.growth = rkube_api::limits::JSON_PATCH_COPY_BYTES_MAX;
        }
        let patch: Value = match format {
            BodyFormat::JsonPatch | BodyFormat::MergePatch | BodyFormat::StrategicMergePatch => {
                serde_json::from_slice(raw).map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))?
            }
            BodyFormat::ApplyPatch => {
                return Err(ApiError::new(
                    415,
                    "UnsupportedMediaType",
                    "server-side apply (application/apply-patch+yaml) is not supported by this server yet",
                ))
            }
            _ => {
                return Err(ApiError::new(
                    415,
                    "UnsupportedMediaType",
                    "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml, application/strategic-merge-patch+json",
                ))
            }
        };
        let def = self.def.clone();
        if sub == Some(Subresource::Scale) {
            let key = self.key();
            let kv =
                self.server.store.get(&key).ok_or_else(|| ApiError::not_found(&def.group, &def.plural, self.name()))?;
            let old_scale = to_scale(&def, &parse_stored(&kv)?);
            let new_scale = apply_patch(&def, &old_scale, &patch, format, true)?;
            return self.update_scale(new_scale, Some(kv.mod_revision)).await;
        }
        if !matches!(format, BodyFormat::JsonPatch) && !patch.is_object() {
            return Err(ApiError::bad_request("error decoding patch: the patch is not a JSON object"));
        }
        let size = raw.len();
        self.guaranteed_update(sub, move |ctx, old| {
            let patched = heavy(patch_weight(size, &patch, old), || {
                let mut patched = apply_patch(&ctx.def, old, &patch, format, false)?;
                ctx.check_object(&mut patched)?;
                Ok::<_, ApiError>(patched)
            })?;
            let old_rv = old.pointer("/metadata/resourceVersion").and_then(Value::as_str).unwrap_or("");
            let rv = patched
                .pointer("/metadata/resourceVersion")
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty() && *s != old_rv)
                .map(str::to_string);
            // A patch that names the current resourceVersion pins it too.
            let pinned =
                rv.or_else(|| patch.pointer("/metadata/resourceVersion").and_then(Value::as_str).map(str::to_string));
            Ok((patched, pinned))
        })
        .await
    }

    fn get_scale(&self) -> ApiResult<Response<Body>> {
        let kv = self
            .server
            .store
            .get(&self.key())
            .ok_or_else(|| ApiError::not_found(&self.def.group, &self.def.plural, self.name()))?;
        Ok(self.respond_value(StatusCode::OK, &to_scale(&self.def, &parse_stored(&kv)?)))
    }

    async fn update_scale(&mut self, scale: Value, _read_at: Option<u64>) -> ApiResult<Response<Body>> {
        let replicas = scale.pointer("/spec/replicas").and_then(Value::as_i64);
        let def = self.def.clone();
        let Some(replicas) = replicas.filter(|r| *r >= 0) else {
            return Err(ApiError::invalid(
                "autoscaling",
                "Scale",
                self.name(),
                vec![FieldError::invalid(
                    "spec.replicas",
                    scale.pointer("/spec/replicas").cloned().unwrap_or(Value::Null),
                    "must be greater than or equal to 0",
                )],
            ));
        };
        let rv = scale
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_string);
        let resp = self
            .guaranteed_update(None, move |_, old| {
                let mut new = old.clone();
                rkube_api::strategy::ensure_map(&mut new, &["spec"]).insert("replicas".into(), json!(replicas));
                Ok((new, rv.clone()))
            })
            .await?;
        // Answer with the Scale of the updated object.
        let kv = self
            .server
            .store
            .get(&self.key())
            .ok_or_else(|| ApiError::not_found(&def.group, &def.plural, self.name()))?;
        let _ = resp;
        Ok(self.respond_value(StatusCode::OK, &to_scale(&def, &parse_stored(&kv)?)))
    }

    /// `pods/{name}/binding` (kube-apiserver's BindingREST): sets `spec.nodeName` if and only
    /// if the pod is unassigned, merges the binding's annotations into the pod's, and sets
    /// the pod's PodScheduled condition to True (`setPodHostAndAnnotations`). The binding's
    /// `metadata.uid` and `resourceVersion`, when given, are preconditions on the pod. A
    /// pod being deleted, already assigned or still gated is a Conflict.
    async fn bind(&mut self, binding: Value) -> ApiResult<Response<Body>> {
        /// The PodScheduled condition as `podutil.UpdatePodCondition` leaves it for a binding:
        /// replaced by one with only type and status (reason and message dropped,
        /// lastProbeTime null), keeping lastTransitionTime when it was True already.
        fn set_pod_scheduled(pod: &mut Value) {
            let status = rkube_api::strategy::ensure_map(pod, &["status"]);
            let conditions = status.entry("conditions").or_insert_with(|| json!([]));
            if !conditions.is_array() {
                *conditions = json!([]);
            }
            let Some(list) = conditions.as_array_mut() else { return };
            let mut condition = json!({
                "type": "PodScheduled",
                "status": "True",
                "lastProbeTime": null,
                "lastTransitionTime": now_rfc3339(),
            });
            match list.iter_mut().find(|c| c.get("type").and_then(Value::as_str) == Some("PodScheduled")) {
                Some(existing) => {
                    if existing.get("status").and_then(Value::as_str) == Some("True") {
                        if let Some(t) = existing.get("lastTransitionTime").filter(|t| !t.is_null()) {
                            condition["lastTransitionTime"] = t.clone();
                        }
                    }
                    *existing = condition;
                }
                None => list.push(condition),
            }
        }

        let node = binding.pointer("/target/name").and_then(Value::as_str).unwrap_or("").to_string();
        if node.is_empty() {
            return Err(ApiError::invalid("", "Binding", self.name(), vec![FieldError::required("target.name", "")]));
        }
        let name = self.name().to_string();
        let def = self.def.clone();
        let key = self.key();
        let want_uid = binding.pointer("/metadata/uid").and_then(Value::as_str).filter(|s| !s.is_empty());
        let want_rv = binding.pointer("/metadata/resourceVersion").and_then(Value::as_str).filter(|s| !s.is_empty());
        let annotations = binding.pointer("/metadata/annotations").and_then(Value::as_object).cloned();
        let conflict = |why: String| ApiError::conflict(&def.group, &def.plural, &name, &why);
        let mut last_error = StoreError::Conflict { current: 0 };
        // Read, check, write; a write that lost a race reads again (GuaranteedUpdate).
        for _ in 0..8 {
            let kv = self.server.store.get(&key).ok_or_else(|| ApiError::not_found(&def.group, &def.plural, &name))?;
            let mut pod = parse_stored(&kv)?;
            let uid = pod.pointer("/metadata/uid").and_then(Value::as_str).unwrap_or("").to_string();
            if let Some(want) = want_uid.filter(|w| *w != uid) {
                return Err(conflict(format!(
                    "Precondition failed: UID in precondition: {want}, UID in object meta: {uid}"
                )));
            }
            if let Some(want) = want_rv.filter(|w| *w != kv.mod_revision.to_string()) {
                return Err(conflict(format!(
                    "Precondition failed: ResourceVersion in precondition: {want}, ResourceVersion in object meta: {}",
                    kv.mod_revision
                )));
            }
            if pod.pointer("/metadata/deletionTimestamp").is_some_and(|v| !v.is_null()) {
                return Err(conflict(format!("pod {name} is being deleted, cannot be assigned to a host")));
            }
            if let Some(existing) = pod.pointer("/spec/nodeName").and_then(Value::as_str).filter(|s| !s.is_empty()) {
                return Err(conflict(format!("pod {name} is already assigned to node \"{existing}\"")));
            }
            if pod.pointer("/spec/schedulingGates").and_then(Value::as_array).is_some_and(|g| !g.is_empty()) {
                return Err(conflict(format!("pod {name} has non-empty .spec.schedulingGates")));
            }
            rkube_api::strategy::ensure_map(&mut pod, &["spec"]).insert("nodeName".into(), json!(node));
            if let Some(extra) = annotations.as_ref().filter(|a| !a.is_empty()) {
                let target = rkube_api::strategy::ensure_map(&mut pod, &["metadata", "annotations"]);
                for (k, v) in extra {
                    target.insert(k.clone(), v.clone());
                }
            }
            set_pod_scheduled(&mut pod);
            let op = Op::Update { key: key.clone(), expected: Some(kv.mod_revision), value: stamp(pod) };
            match self.server.store.txn(op).await {
                Ok(_) => {
                    let mut status = success_status(&def.group, &def.plural, &name, &uid);
                    status["code"] = json!(201);
                    return Ok(self.respond_value(StatusCode::CREATED, &status));
                }
                Err(e @ StoreError::Conflict { .. }) => last_error = e,
                Err(e) => return Err(store_error(&def, &name, e)),
            }
        }
        Err(store_error(&def, &name, last_error))
    }

    /// How deleting `obj` proceeds (the strategy decides; it may ask what exists).
    fn deletion(&self, obj: &Value, grace: Option<i64>) -> Deletion {
        let store = &self.server.store;
        self.def
            .strategy
            .deletion(obj, grace, &|plural, name| store.get(&format!("/registry/core/{plural}/{name}")).is_some())
    }

    async fn delete(&mut self, raw: &[u8]) -> ApiResult<Response<Body>> {
        let format = codec::body_format(self.headers).unwrap_or(BodyFormat::Json);
        let opts = delete_options(raw, format, self.query)?;
        self.delete_with(&opts).await
    }

    /// Deletes the named object with these (decoded) DeleteOptions.
    async fn delete_with(&mut self, opts: &Value) -> ApiResult<Response<Body>> {
        let def = self.def.clone();
        let name = self.name().to_string();
        let key = self.key();
        let dry = self.dry_run()? || opts.get("dryRun").and_then(Value::as_array).is_some_and(|a| !a.is_empty());
        for _ in 0..8 {
            let kv = self.server.store.get(&key).ok_or_else(|| ApiError::not_found(&def.group, &def.plural, &name))?;
            let mut obj = parse_stored(&kv)?;
            if let Some(pre) = opts.get("preconditions") {
                if let Some(uid) = pre.get("uid").and_then(Value::as_str) {
                    let cur = obj.pointer("/metadata/uid").and_then(Value::as_str).unwrap_or("");
                    if uid != cur {
                        return Err(ApiError::conflict(
                            &def.group,
                            &def.plural,
                            &name,
                            &format!("Precondition failed: UID in precondition: {uid}, UID in object meta: {cur}"),
                        ));
                    }
                }
                if let Some(rv) = pre.get("resourceVersion").and_then(Value::as_str) {
                    let cur = kv.mod_revision.to_string();
                    if rv != cur {
                        return Err(ApiError::conflict(&def.group, &def.plural, &name, &format!("Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {cur}")));
                    }
                }
            }
            let already_deleting = obj.pointer("/metadata/deletionTimestamp").is_some_and(|v| !v.is_null());
            let has_finalizers =
                obj.pointer("/metadata/finalizers").and_then(Value::as_array).is_some_and(|a| !a.is_empty());
            let grace = opts.get("gracePeriodSeconds").and_then(Value::as_i64);
            let how = self.deletion(&obj, grace);
            let is_namespace = how == Deletion::NamespaceLifecycle;
            let graceful_pod = matches!(how, Deletion::Graceful { .. });
            let grace = match how {
                Deletion::Graceful { seconds } => Some(seconds),
                _ => None,
            };
            if already_deleting && (has_finalizers || is_namespace || graceful_pod) {
                return Ok(self.respond_object(StatusCode::OK, &kv));
            }
            let op = if (has_finalizers || is_namespace || graceful_pod) && !already_deleting {
                let meta = meta_mut(&mut obj);
                let when = if graceful_pod {
                    // Any grace period is taken; beyond a century it is a century (the
                    // deadline must stay a time).
                    let grace = grace.unwrap_or(0).clamp(0, 100 * 365 * 24 * 3600);
                    (chrono::Utc::now() + chrono::Duration::seconds(grace)).format("%Y-%m-%dT%H:%M:%SZ").to_string()
                } else {
                    now_rfc3339()
                };
                meta.insert("deletionTimestamp".into(), json!(when));
                meta.insert(
                    "deletionGracePeriodSeconds".into(),
                    json!(if graceful_pod { grace.unwrap_or(0) } else { 0 }),
                );
                if is_namespace {
                    rkube_api::strategy::ensure_map(&mut obj, &["status"]).insert("phase".into(), json!("Terminating"));
                }
                if dry {
                    return Ok(self.respond_value(StatusCode::OK, &obj));
                }
                Op::Update { key: key.clone(), expected: Some(kv.mod_revision), value: stamp(obj) }
            } else {
                if dry {
                    return Ok(self.respond_object(StatusCode::OK, &kv));
                }
                Op::Delete { key: key.clone(), expected: Some(kv.mod_revision), tombstone: tombstone(obj) }
            };
            match self.server.store.txn(op).await {
                Ok(done) => {
                    if is_namespace {
                        spawn_namespace_finalizer(self.server.clone(), name.clone());
                    }
                    return Ok(self.respond_object(StatusCode::OK, &done));
                }
                Err(StoreError::Conflict { .. }) => continue,
                Err(e) => return Err(store_error(&def, &name, e)),
            }
        }
        Err(ApiError::stale(&def.group, &def.plural, &name))
    }

    async fn delete_collection(&mut self, raw: &[u8]) -> ApiResult<Response<Body>> {
        let def = self.def.clone();
        let filter = Filter::from_query(&def, self.query)?;
        let items = self
            .server
            .store
            .list(&def.list_prefix(self.ns()), &ListOptions::default())
            .map_err(|e| store_error(&def, "", e))?;
        let mut deleted = Vec::new();
        for kv in items.items {
            let obj = parse_stored(&kv)?;
            if !filter.matches(&def, &obj) {
                continue;
            }
            let name = obj.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("").to_string();
            let info = RequestInfo { name: Some(name.clone()), ..self.info.clone() };
            let mut sub = Ctx {
                server: self.server,
                info: &info,
                query: self.query,
                neg: &Negotiated::default(),
                headers: self.headers,
                user: self.user,
                def: def.clone(),
                warnings: vec![],
                growth: 0,
                body_len: 0,
            };
            match sub.delete(raw).await {
                Ok(r) => {
                    let b = r.into_body().collect().await.map(|c| c.to_bytes()).unwrap_or_default();
                    if let Ok(v) = serde_json::from_slice::<Value>(&b) {
                        deleted.push(v);
                    }
                }
                Err(e) if e.code == 404 => {}
                Err(e) => return Err(e),
            }
        }
        let rv = self.server.store.revision().to_string();
        let list = json!({"kind": def.list_kind(), "apiVersion": def.api_version(), "metadata": {"resourceVersion": rv}, "items": deleted});
        Ok(self.respond_value(StatusCode::OK, &list))
    }

    /// A read of a resource whose objects are computed, not stored (`metrics.k8s.io`).
    async fn computed(&self) -> ApiResult<Response<Body>> {
        let kind = self.def.computed.ok_or_else(ApiError::no_route)?;
        let filter = Filter::from_query(&self.def, self.query)?;
        let objs = crate::metrics_api::read(self.server, kind, self.ns(), self.info.name.as_deref()).await?;
        if self.info.name.is_some() {
            let obj = objs.into_iter().next().ok_or_else(|| ApiError::internal("no object"))?;
            if self.neg.table {
                let t = to_table(&self.def, std::slice::from_ref(&obj), "", None, self.query);
                return Ok(self.respond_value(StatusCode::OK, &t));
            }
            return Ok(self.respond_value(StatusCode::OK, &obj));
        }
        let items: Vec<Value> = objs.into_iter().filter(|o| filter.matches(&self.def, o)).collect();
        if self.neg.table {
            let t = to_table(&self.def, &items, "", None, self.query);
            return Ok(self.respond_value(StatusCode::OK, &t));
        }
        let list = json!({
            "kind": self.def.list_kind(),
            "apiVersion": self.def.api_version(),
            "metadata": {},
            "items": items,
        });
        Ok(self.respond_value(StatusCode::OK, &list))
    }

    fn list(&self) -> ApiResult<Response<Body>> {
        let def = &self.def;
        let filter = Filter::from_query(def, self.query)?;
        let limit: usize = match self.query.get("limit") {
            None | Some("") => 0,
            Some(l) => {
                l.parse::<i64>().map_err(|_| ApiError::bad_request(format!("invalid limit: {l}")))?.max(0) as usize
            }
        };
        let prefix = def.list_prefix(self.ns());
        let rv_param = self.query.get("resourceVersion").unwrap_or("");
        let rv_match = self.query.get("resourceVersionMatch").unwrap_or("");
        let mut opts = ListOptions::default();
        let mut continued_from: Option<String> = None;
        if let Some(token) = self.query.get("continue").filter(|s| !s.is_empty()) {
            if !rv_param.is_empty() && rv_param != "0" {
                return Err(ApiError::bad_request("specifying resource version is not allowed when using continue"));
            }
            let (rev, start) = decode_continue(token)?;
            // None: a token kube-apiserver hands out with an expired-continue 410 (its
            // resourceVersion -1), which continues at the latest revision.
            opts.at_revision = rev;
            opts.start_after = Some(format!("{prefix}{start}"));
            continued_from = Some(start);
        } else {
            match (rv_match, rv_param) {
                ("", _) | ("NotOlderThan", _) => {
                    if let Ok(n) = rv_param.parse::<u64>() {
                        let cur = self.server.store.revision();
                        if n > cur {
                            return Err(ApiError::new(504, "Timeout", format!("Too large resource version: {n}, current: {cur}")));
                        }
                    } else if !rv_param.is_empty() {
                        return Err(ApiError::bad_request(format!("invalid resource version: {rv_param}")));
                    }
                }
                ("Exact", _) => {
                    let n = rv_param.parse::<u64>().map_err(|_| {
                        ApiError::bad_request("resourceVersionMatch: Exact requires a resourceVersion greater than 0")
                    })?;
                    if n == 0 {
                        return Err(ApiError::bad_request("resourceVersionMatch: Exact requires a resourceVersion greater than 0"));
                    }
                    opts.at_revision = Some(n);
                }
                (other, _) => {
                    return Err(ApiError::bad_request(format!(
                        "resourceVersionMatch: Unsupported value: \"{other}\": supported values: \"Exact\", \"NotOlderThan\", \"\""
                    )))
                }
            }
        }
        if filter.is_empty() {
            opts.limit = limit;
        }
        let res = self.server.store.list(&prefix, &opts).map_err(|e| match (e, continued_from) {
            (StoreError::Compacted { .. }, Some(start)) => {
                ApiError::continue_expired(encode_continue_token(-1, &start))
            }
            (e, _) => store_error(def, "", e),
        })?;
        let revision = res.revision;
        let mut items: Vec<KeyValue> = Vec::new();
        let mut more = res.remaining > 0;
        if filter.is_empty() {
            items = res.items;
        } else {
            let mut iter = res.items.into_iter();
            for kv in iter.by_ref() {
                if limit > 0 && items.len() == limit {
                    more = true;
                    break;
                }
                let obj = parse_stored(&kv)?;
                if filter.matches(def, &obj) {
                    items.push(kv);
                }
            }
            if limit > 0 && items.len() == limit && iter.len() > 0 {
                more = true;
            }
        }
        let cont = if more && limit > 0 {
            items.last().map(|kv| encode_continue(revision, &kv.key[prefix.len()..]))
        } else {
            None
        };
        let remaining = if more && filter.is_empty() { Some(res.remaining) } else { None };
        if self.neg.table {
            let objs: Vec<Value> = items.iter().map(parse_stored).collect::<ApiResult<_>>()?;
            let t = to_table(def, &objs, &revision.to_string(), cont.as_deref(), self.query);
            return Ok(self.respond_value(StatusCode::OK, &t));
        }
        // Stored bytes are spliced into the list without re-encoding (JSON) or transcoded
        // item by item (protobuf).
        let mut meta = json!({"resourceVersion": revision.to_string()});
        if let Some(c) = &cont {
            meta["continue"] = json!(c);
        }
        if let Some(r) = remaining {
            meta["remainingItemCount"] = json!(r);
        }
        if self.neg.protobuf && codec::has_protobuf(def) {
            let api_version = def.api_version();
            let encoded: Result<Vec<Bytes>, _> =
                items.iter().map(|kv| self.server.proto_cache.message(kv, &api_version, &def.kind)).collect();
            if let Ok(encoded) = encoded {
                let refs: Vec<&[u8]> = encoded.iter().map(|b| &b[..]).collect();
                if let Ok(pb) = rkube_proto::encode_list_messages(&api_version, &def.list_kind(), &meta, &refs) {
                    return Ok(self.finish(codec::protobuf_response(StatusCode::OK, pb)));
                }
            }
        }
        let total: usize = items.iter().map(|kv| kv.value.len() + 1).sum();
        let mut out = Vec::with_capacity(total + 128);
        out.extend_from_slice(br#"{"kind":""#);
        out.extend_from_slice(def.list_kind().as_bytes());
        out.extend_from_slice(br#"","apiVersion":""#);
        out.extend_from_slice(def.api_version().as_bytes());
        out.extend_from_slice(br#"","metadata":"#);
        out.extend_from_slice(meta.to_string().as_bytes());
        out.extend_from_slice(br#","items":["#);
        for (i, kv) in items.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(&kv.value);
        }
        out.extend_from_slice(b"]}\n");
        Ok(self.finish(codec::bytes_response(StatusCode::OK, Bytes::from(out), self.neg)))
    }
}

/// Applies a patch of any type, each bounded before it works (see `rkube_patch`): JSON
/// patches by kube-apiserver's operation and copy limits and the depth bound, strategic
/// merges by a bound of work; a merge patch costs at most its own size.
/// Whether a stored object is large enough that patching it is heavy work (see [`heavy`]).
fn big_object(v: &Value) -> bool {
    rkube_api::limits::shape(v, HEAVY_BYTES).bytes >= HEAVY_BYTES
}

fn apply_patch(def: &ResourceDef, old: &Value, patch: &Value, format: BodyFormat, is_scale: bool) -> ApiResult<Value> {
    use rkube_api::limits;
    use rkube_patch::json_patch::{self, JsonPatchError};
    match format {
        BodyFormat::JsonPatch => {
            let bounds = json_patch::Limits {
                operations_max: limits::JSON_PATCH_OPERATIONS_MAX,
                copy_bytes_max: limits::JSON_PATCH_COPY_BYTES_MAX,
                depth_max: limits::DEPTH_MAX,
            };
            json_patch::apply(old, patch.clone(), bounds).map_err(|e| match e {
                JsonPatchError::Decode(m) => ApiError::bad_request(format!("error decoding patch: {m}")),
                JsonPatchError::TooManyOperations { .. } | JsonPatchError::TooComplex { .. } => {
                    ApiError::new(413, "RequestEntityTooLarge", format!("Request entity too large: {e}"))
                }
                // kube-apiserver answers every failure to apply as this 422 (without the
                // reason, which is kept here).
                _ => ApiError::new(
                    422,
                    "Invalid",
                    format!("the server rejected our request due to an error in our request: {e}"),
                ),
            })
        }
        BodyFormat::MergePatch => {
            let mut doc = old.clone();
            ::json_patch::merge(&mut doc, patch);
            Ok(doc)
        }
        BodyFormat::StrategicMergePatch => {
            let schema = if is_scale { None } else { rkube_patch::schema_for(&def.group, &def.version, &def.kind) };
            rkube_patch::apply(old, patch, schema).map_err(|e| match e {
                rkube_patch::PatchError::TooComplex { .. } => {
                    ApiError::new(413, "RequestEntityTooLarge", format!("Request entity too large: {e}"))
                }
                _ => ApiError::bad_request(e.to_string()),
            })
        }
        _ => Err(ApiError::unsupported_media_type("")),
    }
}

fn to_scale(def: &ResourceDef, obj: &Value) -> Value {
    let meta = obj.get("metadata").cloned().unwrap_or(json!({}));
    let selector = obj
        .pointer("/spec/selector")
        .and_then(|s| LabelSelector::from_object(s).ok())
        .map(|s| selector_string(&s))
        .unwrap_or_default();
    let _ = def;
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": meta.get("name"),
            "namespace": meta.get("namespace"),
            "uid": meta.get("uid"),
            "resourceVersion": meta.get("resourceVersion"),
            "creationTimestamp": meta.get("creationTimestamp"),
        },
        "spec": {"replicas": obj.pointer("/spec/replicas").and_then(Value::as_i64).unwrap_or(0)},
        "status": {
            "replicas": obj.pointer("/status/replicas").and_then(Value::as_i64).unwrap_or(0),
            "selector": selector,
        },
    })
}

fn selector_string(s: &LabelSelector) -> String {
    use rkube_api::selector::Op;
    s.requirements
        .iter()
        .map(|r| {
            let vals: Vec<&str> = r.values.iter().map(String::as_str).collect();
            match r.op {
                Op::Equals => format!("{}={}", r.key, vals.join(",")),
                Op::NotEquals => format!("{}!={}", r.key, vals.join(",")),
                Op::In => format!("{} in ({})", r.key, vals.join(",")),
                Op::NotIn => format!("{} notin ({})", r.key, vals.join(",")),
                Op::Exists => r.key.clone(),
                Op::DoesNotExist => format!("!{}", r.key),
                Op::GreaterThan => format!("{}>{}", r.key, vals.join(",")),
                Op::LessThan => format!("{}<{}", r.key, vals.join(",")),
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

fn delete_options(raw: &[u8], format: BodyFormat, q: &Query) -> ApiResult<Value> {
    let mut opts: Value = if raw.iter().all(u8::is_ascii_whitespace) {
        json!({})
    } else {
        codec::decode(format, raw).map_err(|e| ApiError::bad_request(format!("error decoding DeleteOptions: {e}")))?
    };
    if !opts.is_object() {
        return Err(ApiError::bad_request("DeleteOptions must be an object"));
    }
    if let Some(g) = q.get("gracePeriodSeconds") {
        let g: i64 = g.parse().map_err(|_| ApiError::bad_request(format!("invalid gracePeriodSeconds: {g}")))?;
        opts["gracePeriodSeconds"] = json!(g);
    }
    if let Some(p) = q.get("propagationPolicy") {
        opts["propagationPolicy"] = json!(p);
    }
    if let Some(p) = opts.get("propagationPolicy").and_then(Value::as_str) {
        if !["Orphan", "Background", "Foreground"].contains(&p) {
            return Err(ApiError::invalid(
                "",
                "DeleteOptions",
                "",
                vec![FieldError::not_supported(
                    "propagationPolicy",
                    json!(p),
                    &["Foreground", "Background", "Orphan", "nil"],
                )],
            ));
        }
    }
    if let Some(g) = opts.get("gracePeriodSeconds").and_then(Value::as_i64) {
        if g < 0 {
            opts["gracePeriodSeconds"] = json!(0);
        }
    }
    Ok(opts)
}

fn encode_continue(rev: u64, start: &str) -> String {
    encode_continue_token(rev as i64, start)
}

/// kube-apiserver's continue token; `rev` -1 continues at the latest revision.
fn encode_continue_token(rev: i64, start: &str) -> String {
    use base64::Engine;
    let tok = json!({"v": "meta.k8s.io/v1", "rv": rev, "start": format!("{start}\u{0}")});
    base64::engine::general_purpose::URL_SAFE.encode(tok.to_string())
}

/// The revision (None for -1: the latest) and the key after which a token continues.
fn decode_continue(token: &str) -> ApiResult<(Option<u64>, String)> {
    use base64::Engine;
    let invalid = |why: String| ApiError::bad_request(format!("invalid continue token: {why}"));
    let raw = base64::engine::general_purpose::URL_SAFE
        .decode(token)
        .or_else(|_| base64::engine::general_purpose::STANDARD.decode(token))
        .map_err(|e| invalid(format!("continue key is not valid: {e}")))?;
    let v: Value = serde_json::from_slice(&raw).map_err(|e| invalid(format!("continue key is not valid: {e}")))?;
    if v.get("v").and_then(Value::as_str) != Some("meta.k8s.io/v1") {
        return Err(invalid("continue key is not valid: server does not recognize this encoded version".into()));
    }
    let rev = match v.get("rv").and_then(Value::as_i64) {
        Some(-1) => None,
        Some(r) if r > 0 => Some(r as u64),
        _ => {
            return Err(invalid(
                "continue key is not valid: incorrect encoded start resourceVersion (version meta.k8s.io/v1)".into(),
            ))
        }
    };
    let start = v.get("start").and_then(Value::as_str).unwrap_or("").trim_end_matches('\u{0}').to_string();
    if start.contains("..") || start.starts_with('/') {
        return Err(invalid("continue key is not valid: invalid start key".into()));
    }
    Ok((rev, start))
}

/// Label and field selectors of a list, watch or deletecollection.
pub struct Filter {
    pub labels: LabelSelector,
    pub fields: FieldSelector,
}

impl Filter {
    pub fn from_query(def: &ResourceDef, q: &Query) -> ApiResult<Filter> {
        let labels = LabelSelector::parse(q.get("labelSelector").unwrap_or(""))
            .map_err(|e| ApiError::bad_request(format!("unable to parse requirement: {e}")))?;
        let fields = FieldSelector::parse(q.get("fieldSelector").unwrap_or("")).map_err(ApiError::bad_request)?;
        let probe = json!({});
        for r in &fields.requirements {
            let supported = matches!(r.field.as_str(), "metadata.name" | "metadata.namespace")
                || def.strategy.field(&probe, &r.field).is_some();
            if !supported {
                return Err(ApiError::bad_request(format!("field label not supported: {}", r.field)));
            }
        }
        Ok(Filter { labels, fields })
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty() && self.fields.is_empty()
    }

    pub fn matches(&self, def: &ResourceDef, obj: &Value) -> bool {
        self.labels.matches(obj.pointer("/metadata/labels").and_then(Value::as_object))
            && self.fields.matches(|f| match f {
                "metadata.name" => obj.pointer("/metadata/name").and_then(Value::as_str).map(str::to_string),
                "metadata.namespace" => obj.pointer("/metadata/namespace").and_then(Value::as_str).map(str::to_string),
                other => def.strategy.field(obj, other),
            })
    }
}

/// A `meta.k8s.io/v1` Table of objects, as `kubectl get` asks for.
pub fn to_table(def: &ResourceDef, objs: &[Value], rv: &str, cont: Option<&str>, q: &Query) -> Value {
    let now = chrono::Utc::now();
    let include = q.get("includeObject").unwrap_or("Metadata");
    let rows: Vec<Value> = objs
        .iter()
        .map(|o| {
            let cells = rkube_api::table::cells_of(def, o, now);
            let object = match include {
                "None" => Value::Null,
                "Object" => o.clone(),
                _ => json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": o.get("metadata").cloned().unwrap_or(json!({}))}),
            };
            json!({"cells": cells, "object": object})
        })
        .collect();
    let mut meta = json!({"resourceVersion": rv});
    if let Some(c) = cont {
        meta["continue"] = json!(c);
    }
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": meta,
        "columnDefinitions": rkube_api::table::column_definitions_of(def),
        "rows": rows,
    })
}

/// Creates an object from inside the server (bootstrap, controllers): the same path as a
/// request, as the system user.
pub async fn create_internal(
    server: &Arc<ApiServer>,
    group: &str,
    version: &str,
    plural: &str,
    namespace: Option<&str>,
    obj: Value,
) -> ApiResult<()> {
    let info = RequestInfo {
        is_resource: true,
        verb: "create".into(),
        group: group.into(),
        version: version.into(),
        resource: plural.into(),
        namespace: namespace.map(str::to_string),
        ..Default::default()
    };
    let def = server.table.snapshot().get(group, version, plural).cloned().ok_or_else(ApiError::no_route)?;
    let user = UserInfo::authenticated("system:apiserver".into(), String::new(), vec!["system:masters".into()]);
    let headers = HeaderMap::new();
    let query = Query::default();
    let neg = Negotiated::default();
    let mut ctx = Ctx {
        server,
        info: &info,
        query: &query,
        neg: &neg,
        headers: &headers,
        user: &user,
        def,
        warnings: vec![],
        growth: 0,
        body_len: usize::MAX,
    };
    let mut obj = obj;
    ctx.check_object(&mut obj)?;
    ctx.create(obj).await.map(|_| ())
}

/// The namespace lifecycle controller's job for one namespace: delete everything in it,
/// then the namespace itself.
fn spawn_namespace_finalizer(server: Arc<ApiServer>, ns: String) {
    tokio::spawn(async move {
        let snap = server.table.snapshot();
        for def in snap.resources.iter().filter(|d| d.namespaced) {
            let Ok(list) = server.store.list(&def.list_prefix(Some(&ns)), &ListOptions::default()) else { continue };
            for kv in list.items {
                let tomb = match parse_stored(&kv) {
                    Ok(v) => v,
                    Err(_) => continue,
                };
                let _ = server
                    .store
                    .txn(Op::Delete { key: kv.key.to_string(), expected: None, tombstone: tombstone(tomb) })
                    .await;
            }
        }
        let key = format!("/registry/core/namespaces/{ns}");
        if let Some(kv) = server.store.get(&key) {
            if let Ok(obj) = parse_stored(&kv) {
                let _ = server
                    .store
                    .txn(Op::Delete { key, expected: Some(kv.mod_revision), tombstone: tombstone(obj) })
                    .await;
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continue_tokens_round_trip_and_reject_garbage() {
        let t = encode_continue(42, "default/p1");
        assert_eq!(decode_continue(&t).unwrap(), (Some(42), "default/p1".to_string()));
        let latest = encode_continue_token(-1, "default/p1");
        assert_eq!(decode_continue(&latest).unwrap(), (None, "default/p1".to_string()));
        assert!(decode_continue("!!!").is_err());
        use base64::Engine;
        let bad = base64::engine::general_purpose::URL_SAFE.encode(r#"{"v":"x","rv":1}"#);
        assert!(decode_continue(&bad).is_err());
    }
}
