//! Kubernetes' protobuf wire format, converted to and from the JSON values the registry
//! stores.
//!
//! - [`table`] / [`generated`]: every message of the built-in API with its fields' tags,
//!   types and JSON names (generated from the `k8s-pb` crate's message definitions).
//! - [`to_json`] / [`from_json`]: one generic, table-driven conversion, with Kubernetes'
//!   special types handled in one place (Time, MicroTime, Quantity, IntOrString,
//!   RawExtension, FieldsV1, bytes as base64).
//! - [`decode_envelope`] / [`encode_envelope`]: the `k8s\0` magic plus `runtime.Unknown`
//!   (apiVersion, kind, raw bytes) that wraps every object on the wire.
//!
//! Architecture invariant: pure functions over bytes and JSON values; no HTTP, no storage.
//! Bad input is an error, never a panic.

pub mod generated;
pub mod gnostic;
pub mod table;
pub mod transcode;
mod wire;

use base64::Engine;
use serde_json::{Map, Value};

use table::{FieldDef, Label, MessageDef, Ty};
use wire::{Reader, Writer};

/// The media type of protobuf bodies.
pub const MEDIA_TYPE: &str = "application/vnd.kubernetes.protobuf";
/// The four bytes every protobuf body starts with.
pub const MAGIC: &[u8; 4] = b"k8s\0";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProtoError {
    #[error("provided data does not appear to be a protobuf message, expected prefix {MAGIC:?}")]
    BadMagic,
    #[error("unable to decode protobuf: {0}")]
    Wire(String),
    #[error("no protobuf message known for {0}")]
    UnknownType(String),
    #[error("{field}: {why}")]
    Value { field: String, why: String },
}

const META: &str = "k8s.io.apimachinery.pkg.apis.meta.v1";
const TIME: &str = "k8s.io.apimachinery.pkg.apis.meta.v1.Time";
const MICRO_TIME: &str = "k8s.io.apimachinery.pkg.apis.meta.v1.MicroTime";
const FIELDS_V1: &str = "k8s.io.apimachinery.pkg.apis.meta.v1.FieldsV1";
const QUANTITY: &str = "k8s.io.apimachinery.pkg.api.resource.Quantity";
const INT_OR_STRING: &str = "k8s.io.apimachinery.pkg.util.intstr.IntOrString";
const RAW_EXTENSION: &str = "k8s.io.apimachinery.pkg.runtime.RawExtension";
const UNKNOWN: &str = "k8s.io.apimachinery.pkg.runtime.Unknown";

/// Fields that are pointers in Kubernetes' Go types, where a zero value (0, false, "") is
/// meaningful and must survive decoding. Every other scalar zero on the wire is Go's
/// "unset" and is dropped, as Go's `omitempty` JSON encoding drops it.
const POINTER_FIELDS: &[&str] = &[
    "activeDeadlineSeconds",
    "allowPrivilegeEscalation",
    "automountServiceAccountToken",
    "backoffLimit",
    "backoffLimitPerIndex",
    "completions",
    "defaultMode",
    "enableServiceLinks",
    "expirationSeconds",
    "failedJobsHistoryLimit",
    "fsGroup",
    "hostUsers",
    "immutable",
    "manualSelector",
    "maxFailedIndexes",
    "mode",
    "optional",
    "parallelism",
    "partition",
    "priority",
    "privileged",
    "progressDeadlineSeconds",
    "readOnlyRootFilesystem",
    "replicas",
    "revisionHistoryLimit",
    "runAsGroup",
    "runAsNonRoot",
    "runAsUser",
    "setHostnameAsFQDN",
    "shareProcessNamespace",
    "startingDeadlineSeconds",
    "successfulJobsHistoryLimit",
    "suspend",
    "terminationGracePeriodSeconds",
    "tolerationSeconds",
    "ttlSecondsAfterFinished",
    "gracePeriodSeconds",
    "orphanDependents",
    "blockOwnerDeletion",
    "controller",
    "ready",
    "started",
];

/// The message definition of a full protobuf name.
pub fn message(name: &str) -> Option<&'static MessageDef> {
    static INDEX: std::sync::OnceLock<FastMap<&'static str, &'static MessageDef>> = std::sync::OnceLock::new();
    INDEX.get_or_init(|| generated::MESSAGES.iter().map(|m| (m.name, m)).collect()).get(name).copied()
}

/// The message a field's type names. Field types point at the table's own name strings, so
/// they are resolved by address first (no hashing of the name) and by name otherwise.
pub(crate) fn message_of(name: &'static str) -> Option<&'static MessageDef> {
    static BY_ADDR: std::sync::OnceLock<FastMap<usize, &'static MessageDef>> = std::sync::OnceLock::new();
    let by_addr = BY_ADDR.get_or_init(|| {
        let mut map = FastMap::default();
        for m in generated::MESSAGES {
            for f in m.fields {
                if let Ty::Message(n) = f.ty {
                    if let Some(target) = message(n) {
                        map.insert(n.as_ptr() as usize, target);
                    }
                }
            }
        }
        map
    });
    by_addr.get(&(name.as_ptr() as usize)).copied().or_else(|| message(name))
}

/// FNV-1a: the indexes are looked up on every nested message, with keys from a fixed
/// table, so a cheap hash beats SipHash's flood resistance here.
#[derive(Default, Clone, Copy)]
pub(crate) struct Fnv(u64);

impl std::hash::Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write_usize(&mut self, n: usize) {
        // Addresses: mix the bits once.
        self.0 = (n as u64 ^ 0xcbf29ce484222325).wrapping_mul(0x100000001b3).rotate_left(29);
    }
    fn write(&mut self, bytes: &[u8]) {
        let mut h = if self.0 == 0 { 0xcbf29ce484222325 } else { self.0 };
        for b in bytes {
            h ^= *b as u64;
            h = h.wrapping_mul(0x100000001b3);
        }
        self.0 = h;
    }
}

pub(crate) type FastMap<K, V> = std::collections::HashMap<K, V, std::hash::BuildHasherDefault<Fnv>>;

/// The protobuf message name of a Kubernetes kind (`("apps", "v1", "Deployment")` ->
/// `k8s.io.api.apps.v1.Deployment`), if the table has it.
pub fn message_for_kind(group: &str, version: &str, kind: &str) -> Option<&'static MessageDef> {
    let meta_kinds = [
        "Status",
        "DeleteOptions",
        "Table",
        "WatchEvent",
        "List",
        "APIGroupList",
        "APIResourceList",
        "APIVersions",
        "APIGroup",
    ];
    // Types every group version carries (DeleteOptions, Status, ...) are meta.v1 messages.
    let name = if meta_kinds.contains(&kind) {
        format!("{META}.{kind}")
    } else if group.contains('.') && (!group.ends_with(".k8s.io") || group.ends_with(".x-k8s.io")) {
        // A custom resource's group (a CustomResourceDefinition's): never a protobuf type,
        // even when its kind shares a name with a built-in one.
        return None;
    } else if group == "apiextensions.k8s.io" {
        format!("k8s.io.apiextensions_apiserver.pkg.apis.apiextensions.{version}.{kind}")
    } else {
        let short = if group.is_empty() { "core" } else { group.strip_suffix(".k8s.io").unwrap_or(group) };
        let short = short.split('.').next().unwrap_or(short);
        format!("k8s.io.api.{short}.{version}.{kind}")
    };
    message(&name)
}

fn field_err(field: &str, why: impl Into<String>) -> ProtoError {
    ProtoError::Value { field: field.to_string(), why: why.into() }
}

// ---------------------------------------------------------------------------------------
// protobuf -> JSON

/// Decodes a message into its JSON form.
pub fn to_json(msg: &MessageDef, bytes: &[u8]) -> Result<Value, ProtoError> {
    if let Some(v) = special_to_json(msg.name, bytes)? {
        return Ok(v);
    }
    let mut out = Map::new();
    let mut r = Reader::new(bytes);
    while !r.done() {
        let (tag, wt) = r.key()?;
        let Some(f) = msg.fields.iter().find(|f| f.tag == tag) else {
            r.skip(wt)?;
            continue;
        };
        match f.label {
            Label::Optional if f.inline => {
                // An embedded struct: its fields belong to this object.
                if let Value::Object(inner) = read_value(&mut r, wt, f.ty, f.json)? {
                    out.extend(inner);
                }
            }
            Label::Optional => {
                let v = read_value(&mut r, wt, f.ty, f.json)?;
                // Go drops unset (zero) scalars of non-pointer fields when it writes JSON.
                if is_zero_scalar(&v) && !POINTER_FIELDS.contains(&f.json) {
                    out.shift_remove(f.json);
                    continue;
                }
                out.insert(f.json.to_string(), v);
            }
            Label::Repeated => {
                let entry = out.entry(f.json.to_string()).or_insert_with(|| Value::Array(vec![]));
                let Value::Array(list) = entry else { continue };
                if wt == wire::LEN && is_packable(f.ty) {
                    let data = r.bytes()?;
                    let mut pr = Reader::new(data);
                    while !pr.done() {
                        list.push(read_scalar(&mut pr, packed_wire_type(f.ty), f.ty)?);
                    }
                } else {
                    list.push(read_value(&mut r, wt, f.ty, f.json)?);
                }
            }
            Label::Map(key_ty) => {
                let data = r.bytes()?;
                let (k, v) = read_map_entry(data, key_ty, f.ty, f.json)?;
                let entry = out.entry(f.json.to_string()).or_insert_with(|| Value::Object(Map::new()));
                if let Value::Object(m) = entry {
                    m.insert(k, v);
                }
            }
        }
    }
    Ok(Value::Object(out))
}

/// `v` without what protobuf cannot tell from "unset" in Go: zero scalars of non-pointer
/// fields. A JSON -> protobuf -> JSON round trip equals its input after this.
pub fn without_unset_zeros(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(k, x)| !is_zero_scalar(x) || POINTER_FIELDS.contains(&k.as_str()))
                .map(|(k, x)| (k.clone(), without_unset_zeros(x)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(without_unset_zeros).collect()),
        other => other.clone(),
    }
}

fn is_zero_scalar(v: &Value) -> bool {
    match v {
        Value::String(s) => s.is_empty(),
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        _ => false,
    }
}

fn is_packable(ty: Ty) -> bool {
    !matches!(ty, Ty::String | Ty::Bytes | Ty::Message(_))
}

fn packed_wire_type(ty: Ty) -> u8 {
    match ty {
        Ty::Double => wire::I64,
        Ty::Float => wire::I32,
        _ => wire::VARINT,
    }
}

fn read_map_entry(data: &[u8], key_ty: Ty, val_ty: Ty, field: &str) -> Result<(String, Value), ProtoError> {
    let mut r = Reader::new(data);
    let mut key = String::new();
    let mut val: Option<Value> = None;
    while !r.done() {
        let (tag, wt) = r.key()?;
        match tag {
            1 => {
                key = match read_scalar(&mut r, wt, key_ty)? {
                    Value::String(s) => s,
                    other => other.to_string(),
                }
            }
            2 => val = Some(read_value(&mut r, wt, val_ty, field)?),
            _ => r.skip(wt)?,
        }
    }
    let val = val.unwrap_or_else(|| match val_ty {
        Ty::String | Ty::Bytes => Value::String(String::new()),
        Ty::Message(_) => Value::Object(Map::new()),
        Ty::Bool => Value::Bool(false),
        _ => Value::from(0),
    });
    Ok((key, val))
}

fn read_value(r: &mut Reader<'_>, wt: u8, ty: Ty, field: &str) -> Result<Value, ProtoError> {
    match ty {
        Ty::Message(name) => {
            let data = r.bytes()?;
            let m = message_of(name).ok_or_else(|| ProtoError::UnknownType(name.to_string()))?;
            to_json(m, data).map_err(|e| match e {
                ProtoError::Value { field: f, why } => field_err(&format!("{field}.{f}"), why),
                other => other,
            })
        }
        _ => read_scalar(r, wt, ty),
    }
}

fn read_scalar(r: &mut Reader<'_>, wt: u8, ty: Ty) -> Result<Value, ProtoError> {
    Ok(match ty {
        Ty::String => {
            let b = r.bytes()?;
            Value::String(
                String::from_utf8(b.to_vec()).map_err(|_| ProtoError::Wire("invalid UTF-8 in a string".into()))?,
            )
        }
        Ty::Bytes => Value::String(base64::engine::general_purpose::STANDARD.encode(r.bytes()?)),
        Ty::Bool => Value::Bool(r.varint_of(wt)? != 0),
        Ty::Int32 => Value::from(r.varint_of(wt)? as i32),
        Ty::Int64 => Value::from(r.varint_of(wt)? as i64),
        Ty::Uint32 => Value::from(r.varint_of(wt)? as u32),
        Ty::Uint64 => Value::from(r.varint_of(wt)?),
        Ty::Double => Value::from(f64::from_bits(r.fixed64_of(wt)?)),
        Ty::Float => Value::from(f32::from_bits(r.fixed32_of(wt)?) as f64),
        Ty::Message(_) => return Err(ProtoError::Wire("message where a scalar was expected".into())),
    })
}

fn format_time(seconds: i64, nanos: i32, micro: bool) -> Result<String, ProtoError> {
    let t = chrono::DateTime::from_timestamp(seconds, nanos.max(0) as u32)
        .ok_or_else(|| ProtoError::Wire(format!("time out of range: {seconds}")))?;
    Ok(if micro { t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string() } else { t.format("%Y-%m-%dT%H:%M:%SZ").to_string() })
}

/// One field of a message read without its definition: (tag, wire type, bytes, varint).
type RawField = (u32, u8, Vec<u8>, u64);

/// Messages whose JSON form is not an object of their fields.
fn special_to_json(name: &str, bytes: &[u8]) -> Result<Option<Value>, ProtoError> {
    let fields = |bytes: &[u8]| -> Result<Vec<RawField>, ProtoError> {
        let mut r = Reader::new(bytes);
        let mut out = Vec::new();
        while !r.done() {
            let (tag, wt) = r.key()?;
            match wt {
                wire::LEN => out.push((tag, wt, r.bytes()?.to_vec(), 0)),
                wire::VARINT => out.push((tag, wt, vec![], r.varint()?)),
                _ => r.skip(wt)?,
            }
        }
        Ok(out)
    };
    Ok(match name {
        TIME | MICRO_TIME => {
            let fs = fields(bytes)?;
            if fs.is_empty() {
                return Ok(Some(Value::Null));
            }
            let secs = fs.iter().find(|f| f.0 == 1).map(|f| f.3 as i64).unwrap_or(0);
            let nanos = fs.iter().find(|f| f.0 == 2).map(|f| f.3 as i32).unwrap_or(0);
            Some(Value::String(format_time(secs, nanos, name == MICRO_TIME)?))
        }
        QUANTITY => {
            let fs = fields(bytes)?;
            let s =
                fs.iter().find(|f| f.0 == 1).map(|f| String::from_utf8_lossy(&f.2).into_owned()).unwrap_or_default();
            Some(Value::String(s))
        }
        INT_OR_STRING => {
            let fs = fields(bytes)?;
            let ty = fs.iter().find(|f| f.0 == 1).map(|f| f.3).unwrap_or(0);
            if ty == 1 {
                let s = fs
                    .iter()
                    .find(|f| f.0 == 3)
                    .map(|f| String::from_utf8_lossy(&f.2).into_owned())
                    .unwrap_or_default();
                Some(Value::String(s))
            } else {
                Some(Value::from(fs.iter().find(|f| f.0 == 2).map(|f| f.3 as i32).unwrap_or(0)))
            }
        }
        RAW_EXTENSION | FIELDS_V1 => {
            let fs = fields(bytes)?;
            let raw = fs.iter().find(|f| f.0 == 1).map(|f| f.2.clone()).unwrap_or_default();
            if raw.is_empty() {
                Some(Value::Null)
            } else if raw.starts_with(MAGIC) {
                // An embedded protobuf object (watch events): decode its envelope.
                let (api_version, kind, inner) = decode_envelope(&raw)?;
                let (g, v) = split_api_version(&api_version);
                let m = message_for_kind(g, v, &kind)
                    .ok_or_else(|| ProtoError::UnknownType(format!("{api_version}/{kind}")))?;
                let mut obj = to_json(m, inner)?;
                set_type_meta(&mut obj, &api_version, &kind);
                Some(obj)
            } else {
                Some(
                    serde_json::from_slice(&raw)
                        .map_err(|e| ProtoError::Wire(format!("raw extension is not JSON: {e}")))?,
                )
            }
        }
        _ => None,
    })
}

// ---------------------------------------------------------------------------------------
// JSON -> protobuf

/// Encodes a JSON object as `msg`. `apiVersion` and `kind` (carried by the envelope) and
/// unknown fields are skipped.
pub fn from_json(msg: &MessageDef, v: &Value) -> Result<Vec<u8>, ProtoError> {
    let mut w = Writer::default();
    write_message(&mut w, msg, v, "")?;
    Ok(w.into_inner())
}

fn write_message(w: &mut Writer, msg: &MessageDef, v: &Value, path: &str) -> Result<(), ProtoError> {
    if write_special(w, msg.name, v, path)? {
        return Ok(());
    }
    let Value::Object(obj) = v else {
        return Err(field_err(path, format!("expected an object for {}", msg.name)));
    };
    for f in msg.fields {
        if f.inline {
            // An embedded struct is written from this object's own fields.
            if let Ty::Message(name) = f.ty {
                let m = message_of(name).ok_or_else(|| ProtoError::UnknownType(name.to_string()))?;
                let mut inner = Writer::default();
                write_message(&mut inner, m, v, path)?;
                let bytes = inner.into_inner();
                if !bytes.is_empty() {
                    w.len_field(f.tag, &bytes);
                }
            }
            continue;
        }
        let Some(fv) = obj.get(f.json) else { continue };
        if fv.is_null() {
            // Go's zero Time (JSON null) travels as an empty message.
            if f.label == Label::Optional && matches!(f.ty, Ty::Message(TIME) | Ty::Message(MICRO_TIME)) {
                w.len_field(f.tag, &[]);
            }
            continue;
        }
        // Errors name the field and its parent path (built only when there is an error).
        let in_field = |e: ProtoError| match e {
            ProtoError::Value { field, why } => {
                let here = if path.is_empty() { f.json.to_string() } else { format!("{path}.{}", f.json) };
                let field = if field.is_empty() { here } else { format!("{here}{field}") };
                ProtoError::Value { field, why }
            }
            other => other,
        };
        match f.label {
            Label::Optional => write_field(w, f, fv, "").map_err(in_field)?,
            Label::Repeated => {
                let Value::Array(items) = fv else { return Err(in_field(field_err("", "expected a list"))) };
                for (i, item) in items.iter().enumerate() {
                    write_field(w, f, item, "").map_err(|e| match e {
                        ProtoError::Value { field, why } => in_field(field_err(&format!("[{i}]{field}"), why)),
                        other => other,
                    })?;
                }
            }
            Label::Map(key_ty) => {
                let Value::Object(m) = fv else { return Err(in_field(field_err("", "expected a map"))) };
                for (k, item) in m {
                    let mut entry = Writer::default();
                    let key_field = FieldDef { json: "key", tag: 1, ty: key_ty, label: Label::Optional, inline: false };
                    write_field(&mut entry, &key_field, &Value::String(k.clone()), "").map_err(in_field)?;
                    let val_field = FieldDef { json: "value", tag: 2, ty: f.ty, label: Label::Optional, inline: false };
                    if !item.is_null() {
                        write_field(&mut entry, &val_field, item, "").map_err(|e| match e {
                            ProtoError::Value { field, why } => in_field(field_err(&format!("[{k}]{field}"), why)),
                            other => other,
                        })?;
                    }
                    w.len_field(f.tag, &entry.into_inner());
                }
            }
        }
    }
    Ok(())
}

fn write_field(w: &mut Writer, f: &FieldDef, v: &Value, path: &str) -> Result<(), ProtoError> {
    let int = |v: &Value| -> Result<i64, ProtoError> {
        match v {
            Value::Number(n) => n
                .as_i64()
                .or_else(|| n.as_f64().filter(|x| x.fract() == 0.0).map(|x| x as i64))
                .ok_or_else(|| field_err(path, format!("expected an integer, got {n}"))),
            Value::String(s) => s.parse().map_err(|_| field_err(path, format!("expected an integer, got {s:?}"))),
            other => Err(field_err(path, format!("expected an integer, got {other}"))),
        }
    };
    match f.ty {
        Ty::String => match v {
            Value::String(s) => w.len_field(f.tag, s.as_bytes()),
            Value::Number(n) if f.label == Label::Optional => w.len_field(f.tag, n.to_string().as_bytes()),
            other => return Err(field_err(path, format!("expected a string, got {other}"))),
        },
        Ty::Bytes => {
            let Value::String(s) = v else { return Err(field_err(path, "expected base64 data")) };
            let b = base64::engine::general_purpose::STANDARD
                .decode(s)
                .map_err(|e| field_err(path, format!("illegal base64 data: {e}")))?;
            w.len_field(f.tag, &b);
        }
        Ty::Bool => match v {
            Value::Bool(b) => w.varint_field(f.tag, *b as u64),
            other => return Err(field_err(path, format!("expected a boolean, got {other}"))),
        },
        Ty::Int32 | Ty::Int64 => w.varint_field(f.tag, int(v)? as u64),
        Ty::Uint32 | Ty::Uint64 => w.varint_field(f.tag, int(v)? as u64),
        Ty::Double => w.fixed64_field(f.tag, v.as_f64().ok_or_else(|| field_err(path, "expected a number"))?.to_bits()),
        Ty::Float => {
            w.fixed32_field(f.tag, (v.as_f64().ok_or_else(|| field_err(path, "expected a number"))? as f32).to_bits())
        }
        Ty::Message(name) => {
            let m = message_of(name).ok_or_else(|| ProtoError::UnknownType(name.to_string()))?;
            let mut inner = Writer::default();
            write_message(&mut inner, m, v, path)?;
            w.len_field(f.tag, &inner.into_inner());
        }
    }
    Ok(())
}

fn parse_time(s: &str, path: &str) -> Result<(i64, i32), ProtoError> {
    let t = chrono::DateTime::parse_from_rfc3339(s).map_err(|e| field_err(path, format!("invalid time {s:?}: {e}")))?;
    Ok((t.timestamp(), t.timestamp_subsec_nanos() as i32))
}

fn write_special(w: &mut Writer, name: &str, v: &Value, path: &str) -> Result<bool, ProtoError> {
    match name {
        TIME | MICRO_TIME => {
            let Value::String(s) = v else { return Err(field_err(path, "expected an RFC 3339 time")) };
            let (secs, nanos) = parse_time(s, path)?;
            w.varint_field(1, secs as u64);
            if nanos != 0 {
                w.varint_field(2, nanos as u64);
            }
        }
        QUANTITY => {
            let s = match v {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                other => return Err(field_err(path, format!("expected a quantity, got {other}"))),
            };
            w.len_field(1, s.as_bytes());
        }
        INT_OR_STRING => match v {
            Value::String(s) => {
                w.varint_field(1, 1);
                w.len_field(3, s.as_bytes());
            }
            Value::Number(n) => {
                let i = n.as_i64().ok_or_else(|| field_err(path, "expected an integer or a string"))?;
                w.varint_field(1, 0);
                w.varint_field(2, i as u64);
            }
            other => return Err(field_err(path, format!("expected an integer or a string, got {other}"))),
        },
        RAW_EXTENSION | FIELDS_V1 => {
            let raw = serde_json::to_vec(v).map_err(|e| field_err(path, e.to_string()))?;
            w.len_field(1, &raw);
        }
        _ => return Ok(false),
    }
    Ok(true)
}

// ---------------------------------------------------------------------------------------
// The envelope

/// Splits `apps/v1` into (`apps`, `v1`) and `v1` into (``, `v1`).
pub fn split_api_version(api_version: &str) -> (&str, &str) {
    match api_version.split_once('/') {
        Some((g, v)) => (g, v),
        None => ("", api_version),
    }
}

fn set_type_meta(obj: &mut Value, api_version: &str, kind: &str) {
    if let Value::Object(m) = obj {
        let mut out = Map::new();
        out.insert("kind".into(), Value::String(kind.to_string()));
        out.insert("apiVersion".into(), Value::String(api_version.to_string()));
        for (k, v) in std::mem::take(m) {
            out.insert(k, v);
        }
        *m = out;
    }
}

/// Reads `k8s\0` + `runtime.Unknown`: returns (apiVersion, kind, raw message bytes).
pub fn decode_envelope(body: &[u8]) -> Result<(String, String, &[u8]), ProtoError> {
    let rest = body.strip_prefix(MAGIC.as_slice()).ok_or(ProtoError::BadMagic)?;
    let mut r = Reader::new(rest);
    let (mut api_version, mut kind, mut raw): (String, String, &[u8]) = (String::new(), String::new(), &[]);
    while !r.done() {
        let (tag, wt) = r.key()?;
        match tag {
            1 => {
                let mut tr = Reader::new(r.bytes()?);
                while !tr.done() {
                    let (t, w) = tr.key()?;
                    match t {
                        1 => api_version = String::from_utf8_lossy(tr.bytes()?).into_owned(),
                        2 => kind = String::from_utf8_lossy(tr.bytes()?).into_owned(),
                        _ => tr.skip(w)?,
                    }
                }
            }
            2 => raw = r.bytes()?,
            _ => r.skip(wt)?,
        }
    }
    Ok((api_version, kind, raw))
}

/// Writes `k8s\0` + `runtime.Unknown` around raw message bytes.
pub fn encode_envelope(api_version: &str, kind: &str, raw: &[u8]) -> Vec<u8> {
    let mut type_meta = Writer::default();
    type_meta.len_field(1, api_version.as_bytes());
    type_meta.len_field(2, kind.as_bytes());
    let mut w = Writer::default();
    w.len_field(1, &type_meta.into_inner());
    w.len_field(2, raw);
    w.len_field(3, b"");
    w.len_field(4, b"");
    let mut out = MAGIC.to_vec();
    out.extend_from_slice(&w.into_inner());
    out
}

/// Decodes a protobuf request body into a JSON object with `apiVersion` and `kind` set.
pub fn decode_object(body: &[u8]) -> Result<Value, ProtoError> {
    let (api_version, kind, raw) = decode_envelope(body)?;
    let (g, v) = split_api_version(&api_version);
    let m =
        message_for_kind(g, v, &kind).ok_or_else(|| ProtoError::UnknownType(format!("{api_version}, Kind={kind}")))?;
    let mut obj = to_json(m, raw)?;
    set_type_meta(&mut obj, &api_version, &kind);
    Ok(obj)
}

/// Encodes a JSON object (with `apiVersion` and `kind`) as a protobuf body.
pub fn encode_object(obj: &Value) -> Result<Vec<u8>, ProtoError> {
    let api_version = obj.get("apiVersion").and_then(Value::as_str).unwrap_or("");
    let kind = obj.get("kind").and_then(Value::as_str).unwrap_or("");
    let (g, v) = split_api_version(api_version);
    let m =
        message_for_kind(g, v, kind).ok_or_else(|| ProtoError::UnknownType(format!("{api_version}, Kind={kind}")))?;
    Ok(encode_envelope(api_version, kind, &from_json(m, obj)?))
}

/// One frame of a protobuf watch stream (`application/vnd.kubernetes.protobuf;stream=watch`):
/// a 4-byte big-endian length, then a `meta.v1.WatchEvent` without envelope (the stream
/// serializer is the raw one) whose object is a complete enveloped object.
pub fn encode_watch_event(event_type: &str, object: &Value) -> Result<Vec<u8>, ProtoError> {
    Ok(watch_frame(event_type, &encode_object(object)?))
}

/// A watch frame around an already encoded (enveloped) object.
pub fn watch_frame(event_type: &str, inner: &[u8]) -> Vec<u8> {
    let mut raw_ext = Writer::default();
    raw_ext.len_field(1, inner);
    let mut ev = Writer::default();
    ev.len_field(1, event_type.as_bytes());
    ev.len_field(2, &raw_ext.into_inner());
    let body = ev.into_inner();
    let mut out = (body.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(&body);
    out
}

/// Reads one watch frame's payload back: (type, object).
pub fn decode_watch_event(payload: &[u8]) -> Result<(String, Value), ProtoError> {
    let mut r = Reader::new(payload);
    let (mut ty, mut obj) = (String::new(), Value::Null);
    while !r.done() {
        let (tag, wt) = r.key()?;
        match tag {
            1 => ty = String::from_utf8_lossy(r.bytes()?).into_owned(),
            2 => {
                let raw_ext = r.bytes()?;
                if let Some(v) = special_to_json(RAW_EXTENSION, raw_ext)? {
                    obj = v;
                }
            }
            _ => r.skip(wt)?,
        }
    }
    Ok((ty, obj))
}

/// Writes `k8s\0` + `runtime.Unknown` whose raw bytes `content` appends to the buffer.
fn envelope_with(
    api_version: &str,
    kind: &str,
    content: impl FnOnce(&mut Vec<u8>) -> Result<(), ProtoError>,
) -> Result<Vec<u8>, ProtoError> {
    let mut type_meta = Writer::default();
    type_meta.len_field(1, api_version.as_bytes());
    type_meta.len_field(2, kind.as_bytes());
    let mut head = Writer::default();
    head.len_field(1, &type_meta.into_inner());
    let mut out = MAGIC.to_vec();
    out.extend_from_slice(&head.into_inner());
    let at = transcode::open(&mut out, 2);
    content(&mut out)?;
    transcode::close(&mut out, at);
    out.extend_from_slice(&[0x1a, 0x00, 0x22, 0x00]);
    Ok(out)
}

/// Stored JSON bytes of an object of (apiVersion, kind) as a protobuf body, transcoded
/// without building a JSON value.
pub fn encode_json_bytes(api_version: &str, kind: &str, json: &[u8]) -> Result<Vec<u8>, ProtoError> {
    let (g, v) = split_api_version(api_version);
    let m =
        message_for_kind(g, v, kind).ok_or_else(|| ProtoError::UnknownType(format!("{api_version}, Kind={kind}")))?;
    envelope_with(api_version, kind, |out| transcode::json_to_protobuf(m, json, out))
}

/// The message bytes (no envelope) of stored JSON for (apiVersion, kind).
pub fn message_bytes(api_version: &str, kind: &str, json: &[u8]) -> Result<Vec<u8>, ProtoError> {
    let (g, v) = split_api_version(api_version);
    let m =
        message_for_kind(g, v, kind).ok_or_else(|| ProtoError::UnknownType(format!("{api_version}, Kind={kind}")))?;
    let mut out = Vec::with_capacity(json.len() / 2);
    transcode::json_to_protobuf(m, json, &mut out)?;
    Ok(out)
}

/// A list body from its metadata and its items' encoded messages (see [`message_bytes`]).
pub fn encode_list_messages(
    api_version: &str,
    list_kind: &str,
    list_meta: &Value,
    items: &[&[u8]],
) -> Result<Vec<u8>, ProtoError> {
    let (g, v) = split_api_version(api_version);
    let list = message_for_kind(g, v, list_kind).ok_or_else(|| ProtoError::UnknownType(list_kind.to_string()))?;
    let meta_field =
        list.fields.iter().find(|f| f.json == "metadata").ok_or_else(|| ProtoError::UnknownType(list_kind.into()))?;
    let items_field =
        list.fields.iter().find(|f| f.json == "items").ok_or_else(|| ProtoError::UnknownType(list_kind.into()))?;
    let Ty::Message(meta_name) = meta_field.ty else { return Err(ProtoError::UnknownType(list_kind.into())) };
    let meta_msg = message(meta_name).ok_or_else(|| ProtoError::UnknownType(meta_name.into()))?;
    envelope_with(api_version, list_kind, |out| {
        let mut w = Writer::default();
        w.len_field(meta_field.tag, &from_json(meta_msg, list_meta)?);
        for item in items {
            w.len_field(items_field.tag, item);
        }
        out.extend_from_slice(&w.into_inner());
        Ok(())
    })
}

/// Whether a kind has a protobuf message (custom resources do not).
pub fn has_message(group: &str, version: &str, kind: &str) -> bool {
    message_for_kind(group, version, kind).is_some()
}

#[doc(hidden)]
pub fn unknown_message() -> Option<&'static MessageDef> {
    message(UNKNOWN)
}

#[cfg(test)]
mod tests;
