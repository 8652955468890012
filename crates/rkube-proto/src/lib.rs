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
    /// Nested deeper than [`DEPTH_MAX`].
    #[error("exceeded max depth")]
    TooDeep,
}

/// The deepest nesting of messages, lists and maps the decoder follows (the object itself
/// is level 1), so no input can exhaust its stack. Equal to the API server's bound on
/// every object (`rkube_api::limits::DEPTH_MAX`); raw JSON inside RawExtension and FieldsV1
/// adds at most serde_json's 127 levels, which the server's own check then refuses.
pub const DEPTH_MAX: usize = 100;

const META: &str = "k8s.io.apimachinery.pkg.apis.meta.v1";
const OBJECT_META: &str = "k8s.io.apimachinery.pkg.apis.meta.v1.ObjectMeta";
const TIME: &str = "k8s.io.apimachinery.pkg.apis.meta.v1.Time";
const MICRO_TIME: &str = "k8s.io.apimachinery.pkg.apis.meta.v1.MicroTime";
const FIELDS_V1: &str = "k8s.io.apimachinery.pkg.apis.meta.v1.FieldsV1";
const QUANTITY: &str = "k8s.io.apimachinery.pkg.api.resource.Quantity";
const INT_OR_STRING: &str = "k8s.io.apimachinery.pkg.util.intstr.IntOrString";
const RAW_EXTENSION: &str = "k8s.io.apimachinery.pkg.runtime.RawExtension";
const UNKNOWN: &str = "k8s.io.apimachinery.pkg.runtime.Unknown";

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

/// Messages whose JSON form is not an object of their fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Special {
    No,
    Time,
    MicroTime,
    Quantity,
    IntOrString,
    /// RawExtension: raw JSON bytes, or an enveloped protobuf object.
    Raw,
    /// FieldsV1: raw JSON bytes only (Go keeps them opaque).
    Fields,
}

/// What the codecs need of one message, worked out once per table entry: which special
/// form it has, its fields by tag, and its JSON keys.
pub(crate) struct Compiled {
    pub special: Special,
    /// Index into `fields` by tag (`u16::MAX`: no such field).
    by_tag: Vec<u16>,
    pub keys: FastMap<&'static str, transcode::Slot>,
}

impl Compiled {
    fn new(m: &'static MessageDef) -> Compiled {
        let special = special_of(m.name);
        let max_tag = m.fields.iter().map(|f| f.tag).max().unwrap_or(0).min(4096) as usize;
        let mut by_tag = vec![u16::MAX; max_tag + 1];
        for (i, f) in m.fields.iter().enumerate() {
            if let Some(slot) = by_tag.get_mut(f.tag as usize) {
                *slot = i as u16;
            }
        }
        Compiled { special, by_tag, keys: transcode::keys_of(m) }
    }

    /// The field with `tag`, if the message has one.
    fn field<'m>(&self, m: &'m MessageDef, tag: u32) -> Option<&'m FieldDef> {
        match self.by_tag.get(tag as usize) {
            Some(&i) if i != u16::MAX => m.fields.get(i as usize),
            Some(_) => None,
            // Tags past the table's bound (none in Kubernetes' protos): search.
            None => m.fields.iter().find(|f| f.tag == tag),
        }
    }
}

/// The compiled form of a table message, found by its position in the table (no hashing).
pub(crate) fn compiled(msg: &MessageDef) -> Option<&'static Compiled> {
    static ALL: std::sync::OnceLock<Vec<Compiled>> = std::sync::OnceLock::new();
    let all = ALL.get_or_init(|| generated::MESSAGES.iter().map(Compiled::new).collect());
    let base = generated::MESSAGES.as_ptr() as usize;
    let at = (msg as *const MessageDef as usize).wrapping_sub(base) / std::mem::size_of::<MessageDef>();
    match generated::MESSAGES.get(at) {
        Some(m) if std::ptr::eq(m, msg) => all.get(at),
        // A definition that is not the table's own: the table's entry of that name, if it
        // is the same definition (the compiled indexes refer to its fields).
        _ => message(msg.name).filter(|m| !std::ptr::eq(*m, msg) && **m == *msg).and_then(compiled),
    }
}

/// A multiply-rotate hash taking eight bytes a step (as rustc's FxHash): the indexes are
/// looked up for every key of every object transcoded, with keys from a fixed table, so a
/// cheap hash beats SipHash's flood resistance here.
#[derive(Default, Clone, Copy)]
pub(crate) struct WordHash(u64);

const HASH_K: u64 = 0x517c_c1b7_2722_0a95;

impl WordHash {
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(HASH_K);
    }
}

impl std::hash::Hasher for WordHash {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write_usize(&mut self, n: usize) {
        self.add(n as u64);
    }
    fn write_u8(&mut self, n: u8) {
        self.add(n as u64);
    }
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            self.add(u64::from_le_bytes(c.try_into().unwrap_or_default()));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut last = [0u8; 8];
            last[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(last));
        }
    }
}

pub(crate) type FastMap<K, V> = std::collections::HashMap<K, V, std::hash::BuildHasherDefault<WordHash>>;

/// The protobuf message name of a Kubernetes kind (`("apps", "v1", "Deployment")` ->
/// `k8s.io.api.apps.v1.Deployment`), if the table has it. Looked up per request (and per
/// object answered), so the names are indexed once by (package, version, kind) rather
/// than formatted each time.
pub fn message_for_kind(group: &str, version: &str, kind: &str) -> Option<&'static MessageDef> {
    const META_KINDS: [&str; 9] = [
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
    const API: &str = "k8s.io.api.";
    const APIEXTENSIONS: &str = "k8s.io.apiextensions_apiserver.pkg.apis.apiextensions.";
    // (package, version, kind): package is `meta` for meta.v1 types, `apiextensions` for
    // CRDs, else the group's short name (`core`, `apps`, `rbac`, ...).
    type Index = FastMap<(&'static str, &'static str, &'static str), &'static MessageDef>;
    static INDEX: std::sync::OnceLock<Index> = std::sync::OnceLock::new();
    let index = INDEX.get_or_init(|| {
        let mut index = Index::default();
        for m in generated::MESSAGES {
            let (package, rest) = if let Some(rest) = m.name.strip_prefix(API) {
                match rest.split_once('.') {
                    Some((package, rest)) => (package, rest),
                    None => continue,
                }
            } else if let Some(rest) = m.name.strip_prefix(APIEXTENSIONS) {
                ("apiextensions", rest)
            } else if let Some(kind) = m.name.strip_prefix(META).and_then(|k| k.strip_prefix('.')) {
                index.insert(("meta", "", kind), m);
                continue;
            } else {
                continue;
            };
            if let Some((version, kind)) = rest.split_once('.') {
                index.insert((package, version, kind), m);
            }
        }
        index
    });
    // Types every group version carries (DeleteOptions, Status, ...) are meta.v1 messages.
    let key = if META_KINDS.contains(&kind) {
        ("meta", "", kind)
    } else if group.contains('.') && (!group.ends_with(".k8s.io") || group.ends_with(".x-k8s.io")) {
        // A custom resource's group (a CustomResourceDefinition's): never a protobuf type,
        // even when its kind shares a name with a built-in one.
        return None;
    } else if group == "apiextensions.k8s.io" {
        ("apiextensions", version, kind)
    } else {
        let short = if group.is_empty() { "core" } else { group.strip_suffix(".k8s.io").unwrap_or(group) };
        (short.split('.').next().unwrap_or(short), version, kind)
    };
    index.get(&key).copied()
}

fn field_err(field: &str, why: impl Into<String>) -> ProtoError {
    ProtoError::Value { field: field.to_string(), why: why.into() }
}

// ---------------------------------------------------------------------------------------
// protobuf -> JSON

/// Decodes a message into its JSON form.
pub fn to_json(msg: &MessageDef, bytes: &[u8]) -> Result<Value, ProtoError> {
    to_json_at(msg, bytes, 1)
}

/// [`to_json`] for a message whose JSON value sits at nesting level `depth` (1 = the
/// top). Every nested message, list and map adds a level, an embedded struct too (its
/// fields are flat in JSON, but it costs a call), so both the JSON produced and the
/// decoder's recursion stay within [`DEPTH_MAX`] whatever the input.
fn to_json_at(msg: &MessageDef, bytes: &[u8], depth: usize) -> Result<Value, ProtoError> {
    if depth > DEPTH_MAX {
        return Err(ProtoError::TooDeep);
    }
    let c = compiled(msg);
    let special = c.map_or_else(|| special_of(msg.name), |c| c.special);
    if special != Special::No {
        return special_to_json(special, bytes, depth);
    }
    let mut out = Map::new();
    // The list or map field being read: (tag, JSON name, its elements so far).
    let mut pending: Option<(u32, &'static str, Value)> = None;
    let mut r = Reader::new(bytes);
    while !r.done() {
        let (tag, wt) = r.key()?;
        let found = match c {
            Some(c) => c.field(msg, tag),
            None => msg.fields.iter().find(|f| f.tag == tag),
        };
        let Some(f) = found else {
            r.skip(wt)?;
            continue;
        };
        if pending.as_ref().is_some_and(|p| p.0 != f.tag) {
            // Keys keep the order in which their fields first appear.
            flush(&mut out, pending.take());
        }
        match f.label {
            Label::Optional if f.inline => {
                // An embedded struct: its fields belong to this object.
                if let Value::Object(inner) = read_value(&mut r, wt, f.ty, f.json, depth + 1)? {
                    for (k, v) in inner {
                        merge_field(&mut out, k, v);
                    }
                }
            }
            Label::Optional => {
                let v = read_value(&mut r, wt, f.ty, f.json, depth + 1)?;
                // Go's JSON leaves out the zero of a non-pointer `omitempty` field.
                if !f.keeps_zero && is_zero_scalar(&v) {
                    out.shift_remove(f.json);
                    continue;
                }
                if matches!(f.ty, Ty::Message(_)) {
                    // A message field met again is merged into what came before.
                    merge_field(&mut out, f.json.to_string(), v);
                } else {
                    out.insert(f.json.to_string(), v);
                }
            }
            Label::Repeated => {
                // Elements of one field arrive back to back: they are gathered here and
                // put in the object once, when another field starts.
                let list = match &mut pending {
                    Some((_, _, Value::Array(list))) => list,
                    _ => {
                        let (_, _, Value::Array(list)) = pending.insert((f.tag, f.json, Value::Array(vec![]))) else {
                            continue;
                        };
                        list
                    }
                };
                if wt == wire::LEN && is_packable(f.ty) {
                    let data = r.bytes()?;
                    let mut pr = Reader::new(data);
                    while !pr.done() {
                        list.push(read_scalar(&mut pr, packed_wire_type(f.ty), f.ty)?);
                    }
                } else {
                    list.push(read_value(&mut r, wt, f.ty, f.json, depth + 2)?);
                }
            }
            Label::Map(key_ty) => {
                let data = r.bytes()?;
                let (k, v) = read_map_entry(data, key_ty, f.ty, f.json, depth + 2)?;
                match &mut pending {
                    Some((_, _, Value::Object(m))) => {
                        m.insert(k, v);
                    }
                    _ => {
                        let mut m = Map::new();
                        m.insert(k, v);
                        pending = Some((f.tag, f.json, Value::Object(m)));
                    }
                }
            }
        }
    }
    flush(&mut out, pending);
    Ok(Value::Object(out))
}

/// Sets `key` to `v` as protobuf merges a field that occurs again: messages field by
/// field, lists appended, anything else replaced.
fn merge_field(out: &mut Map<String, Value>, key: String, v: Value) {
    match out.get_mut(&key) {
        Some(old) => merge_value(old, v),
        None => {
            out.insert(key, v);
        }
    }
}

fn merge_value(old: &mut Value, new: Value) {
    match (old, new) {
        (Value::Object(o), Value::Object(n)) => {
            for (k, v) in n {
                merge_field(o, k, v);
            }
        }
        (Value::Array(o), Value::Array(n)) => o.extend(n),
        (old, new) => *old = new,
    }
}

/// Puts a gathered list or map field into `out`, after the elements of an earlier
/// occurrence of the same field (protobuf lets a field's elements be split up).
fn flush(out: &mut Map<String, Value>, pending: Option<(u32, &'static str, Value)>) {
    let Some((_, key, v)) = pending else { return };
    match (out.get_mut(key), v) {
        (Some(Value::Array(old)), Value::Array(new)) => old.extend(new),
        (Some(Value::Object(old)), Value::Object(new)) => old.extend(new),
        (_, v) => {
            out.insert(key.to_string(), v);
        }
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

fn read_map_entry(
    data: &[u8],
    key_ty: Ty,
    val_ty: Ty,
    field: &str,
    depth: usize,
) -> Result<(String, Value), ProtoError> {
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
            2 => val = Some(read_value(&mut r, wt, val_ty, field, depth)?),
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

/// One field's value; a message's lands at nesting level `depth`.
fn read_value(r: &mut Reader<'_>, wt: u8, ty: Ty, field: &str, depth: usize) -> Result<Value, ProtoError> {
    match ty {
        Ty::Message(name) => {
            let data = r.bytes()?;
            let m = message_of(name).ok_or_else(|| ProtoError::UnknownType(name.to_string()))?;
            to_json_at(m, data, depth).map_err(|e| match e {
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
    use chrono::{Datelike, Timelike};
    if !(0..=9999).contains(&t.year()) {
        // Outside four-digit years: chrono's own rendering (rare enough not to matter).
        return Ok(if micro {
            t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
        } else {
            t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
        });
    }
    let (y, mo, d, h, mi, se) = (t.year(), t.month(), t.day(), t.hour(), t.minute(), t.second());
    Ok(if micro {
        let us = (t.nanosecond() / 1000).min(999_999);
        format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{se:02}.{us:06}Z")
    } else {
        format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{se:02}Z")
    })
}

fn special_of(name: &str) -> Special {
    match name {
        TIME => Special::Time,
        MICRO_TIME => Special::MicroTime,
        QUANTITY => Special::Quantity,
        INT_OR_STRING => Special::IntOrString,
        RAW_EXTENSION => Special::Raw,
        FIELDS_V1 => Special::Fields,
        _ => Special::No,
    }
}

/// The fields of a special message that its JSON form needs: the last varint and the last
/// bytes of tags 1 to 3 (protobuf's last-one-wins for repeated scalars).
#[derive(Default)]
struct SpecialFields<'a> {
    present: bool,
    varints: [Option<u64>; 4],
    bytes: [Option<&'a [u8]>; 4],
}

fn special_fields(bytes: &[u8]) -> Result<SpecialFields<'_>, ProtoError> {
    let mut r = Reader::new(bytes);
    let mut out = SpecialFields::default();
    while !r.done() {
        let (tag, wt) = r.key()?;
        let slot = (tag as usize).min(3);
        match wt {
            wire::LEN => {
                out.present = true;
                let b = r.bytes()?;
                if tag <= 3 {
                    out.bytes[slot] = Some(b);
                }
            }
            wire::VARINT => {
                out.present = true;
                let v = r.varint()?;
                if tag <= 3 {
                    out.varints[slot] = Some(v);
                }
            }
            _ => r.skip(wt)?,
        }
    }
    Ok(out)
}

/// Raw JSON bytes of a RawExtension or FieldsV1. serde_json reads at most 127 levels, so
/// the value nests at most that much below its field; callers bound the whole object.
fn raw_json(raw: &[u8], what: &str) -> Result<Value, ProtoError> {
    serde_json::from_slice(raw).map_err(|e| ProtoError::Wire(format!("{what} is not JSON: {e}")))
}

/// The JSON form of a special message (see [`Special`]) at nesting level `depth`.
fn special_to_json(special: Special, bytes: &[u8], depth: usize) -> Result<Value, ProtoError> {
    let fs = special_fields(bytes)?;
    let text = |b: Option<&[u8]>| String::from_utf8_lossy(b.unwrap_or_default()).into_owned();
    Ok(match special {
        Special::Time | Special::MicroTime => {
            if !fs.present {
                return Ok(Value::Null);
            }
            let secs = fs.varints[1].unwrap_or(0) as i64;
            let nanos = fs.varints[2].unwrap_or(0) as i32;
            Value::String(format_time(secs, nanos, special == Special::MicroTime)?)
        }
        Special::Quantity => Value::String(text(fs.bytes[1])),
        Special::IntOrString => {
            if fs.varints[1] == Some(1) {
                Value::String(text(fs.bytes[3]))
            } else {
                Value::from(fs.varints[2].unwrap_or(0) as i32)
            }
        }
        Special::Raw => {
            let raw = fs.bytes[1].unwrap_or_default();
            if raw.is_empty() {
                Value::Null
            } else if raw.starts_with(MAGIC) {
                // An embedded protobuf object (watch events): decode its envelope. It takes
                // the RawExtension's place, one level further for the envelope's sake.
                let (api_version, kind, inner) = decode_envelope(raw)?;
                let (g, v) = split_api_version(&api_version);
                let m = message_for_kind(g, v, &kind)
                    .ok_or_else(|| ProtoError::UnknownType(format!("{api_version}/{kind}")))?;
                let mut obj = to_json_at(m, inner, depth + 1)?;
                set_type_meta(&mut obj, &api_version, &kind);
                obj
            } else {
                raw_json(raw, "raw extension")?
            }
        }
        Special::Fields => {
            // Managed fields are JSON in every encoding; Go never decodes them as an object.
            let raw = fs.bytes[1].unwrap_or_default();
            if raw.is_empty() {
                Value::Null
            } else {
                raw_json(raw, "fieldsV1")?
            }
        }
        Special::No => Value::Null,
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

/// Writes the fields of `v` as `msg`, in the object's key order (a parser takes fields in
/// any order), nested messages in place. The fields of a Go embedded struct, flat in JSON,
/// are written as one occurrence of the embedded message each, which parsers merge.
fn write_message(w: &mut Writer, msg: &MessageDef, v: &Value, path: &str) -> Result<(), ProtoError> {
    let c = compiled(msg).ok_or_else(|| ProtoError::UnknownType(msg.name.to_string()))?;
    if c.special != Special::No {
        return write_special(w, c.special, v, path);
    }
    let Value::Object(obj) = v else {
        return Err(field_err(path, format!("expected an object for {}", msg.name)));
    };
    for (k, fv) in obj {
        let Some(slot) = c.keys.get(k.as_str()) else { continue };
        match *slot {
            transcode::Slot::Direct(f) => write_entry(w, f, fv, path)?,
            transcode::Slot::Inline { outer, inner } => {
                let at = w.open(outer.tag);
                write_entry(w, inner, fv, path)?;
                w.close(at);
            }
        }
    }
    Ok(())
}

/// One key of an object: the field `f` with its value `fv` (any label).
fn write_entry(w: &mut Writer, f: &FieldDef, fv: &Value, path: &str) -> Result<(), ProtoError> {
    if fv.is_null() {
        // Go's zero Time (JSON null) travels as an empty message.
        if f.label == Label::Optional && matches!(f.ty, Ty::Message(TIME) | Ty::Message(MICRO_TIME)) {
            w.len_field(f.tag, &[]);
        }
        return Ok(());
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
        Label::Optional => write_field(w, f.tag, f.ty, f.label, fv, "").map_err(in_field)?,
        Label::Repeated => {
            let Value::Array(items) = fv else { return Err(in_field(field_err("", "expected a list"))) };
            for (i, item) in items.iter().enumerate() {
                write_field(w, f.tag, f.ty, f.label, item, "").map_err(|e| match e {
                    ProtoError::Value { field, why } => in_field(field_err(&format!("[{i}]{field}"), why)),
                    other => other,
                })?;
            }
        }
        Label::Map(key_ty) => {
            let Value::Object(m) = fv else { return Err(in_field(field_err("", "expected a map"))) };
            for (k, item) in m {
                let at = w.open(f.tag);
                match key_ty {
                    Ty::String => w.len_field(1, k.as_bytes()),
                    _ => {
                        let n: i64 =
                            k.parse().map_err(|_| in_field(field_err("", format!("map key {k:?} is not a number"))))?;
                        w.varint_field(1, n as u64);
                    }
                }
                if !item.is_null() {
                    write_field(w, 2, f.ty, Label::Optional, item, "").map_err(|e| match e {
                        ProtoError::Value { field, why } => in_field(field_err(&format!("[{k}]{field}"), why)),
                        other => other,
                    })?;
                }
                w.close(at);
            }
        }
    }
    Ok(())
}

fn write_field(w: &mut Writer, tag: u32, ty: Ty, label: Label, v: &Value, path: &str) -> Result<(), ProtoError> {
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
    match ty {
        Ty::String => match v {
            Value::String(s) => w.len_field(tag, s.as_bytes()),
            Value::Number(n) if label == Label::Optional => w.len_field(tag, n.to_string().as_bytes()),
            other => return Err(field_err(path, format!("expected a string, got {other}"))),
        },
        Ty::Bytes => {
            let Value::String(s) = v else { return Err(field_err(path, "expected base64 data")) };
            let b = base64::engine::general_purpose::STANDARD
                .decode(s)
                .map_err(|e| field_err(path, format!("illegal base64 data: {e}")))?;
            w.len_field(tag, &b);
        }
        Ty::Bool => match v {
            Value::Bool(b) => w.varint_field(tag, *b as u64),
            other => return Err(field_err(path, format!("expected a boolean, got {other}"))),
        },
        Ty::Int32 | Ty::Int64 => w.varint_field(tag, int(v)? as u64),
        Ty::Uint32 | Ty::Uint64 => w.varint_field(tag, int(v)? as u64),
        Ty::Double => w.fixed64_field(tag, v.as_f64().ok_or_else(|| field_err(path, "expected a number"))?.to_bits()),
        Ty::Float => {
            w.fixed32_field(tag, (v.as_f64().ok_or_else(|| field_err(path, "expected a number"))? as f32).to_bits())
        }
        Ty::Message(name) => {
            let m = message_of(name).ok_or_else(|| ProtoError::UnknownType(name.to_string()))?;
            let at = w.open(tag);
            write_message(w, m, v, path)?;
            w.close(at);
        }
    }
    Ok(())
}

fn parse_time(s: &str, path: &str) -> Result<(i64, i32), ProtoError> {
    let t = chrono::DateTime::parse_from_rfc3339(s).map_err(|e| field_err(path, format!("invalid time {s:?}: {e}")))?;
    Ok((t.timestamp(), t.timestamp_subsec_nanos() as i32))
}

fn write_special(w: &mut Writer, special: Special, v: &Value, path: &str) -> Result<(), ProtoError> {
    match special {
        Special::Time | Special::MicroTime => {
            let Value::String(s) = v else { return Err(field_err(path, "expected an RFC 3339 time")) };
            let (secs, nanos) = parse_time(s, path)?;
            w.varint_field(1, secs as u64);
            if nanos != 0 {
                w.varint_field(2, nanos as u64);
            }
        }
        Special::Quantity => match v {
            Value::String(s) => w.len_field(1, s.as_bytes()),
            Value::Number(n) => w.len_field(1, n.to_string().as_bytes()),
            other => return Err(field_err(path, format!("expected a quantity, got {other}"))),
        },
        Special::IntOrString => match v {
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
        Special::Raw | Special::Fields => {
            let raw = serde_json::to_vec(v).map_err(|e| field_err(path, e.to_string()))?;
            w.len_field(1, &raw);
        }
        Special::No => {}
    }
    Ok(())
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
    let body = envelope_with(api_version, kind, raw.len() + 5, |out| {
        out.extend_from_slice(raw);
        Ok(())
    });
    body.map(|b| b.0).unwrap_or_default()
}

/// Decodes a protobuf request body into a JSON object with `apiVersion` and `kind` set.
pub fn decode_object(body: &[u8]) -> Result<Value, ProtoError> {
    let (api_version, kind, raw) = decode_envelope(body)?;
    let (g, v) = split_api_version(&api_version);
    let m =
        message_for_kind(g, v, &kind).ok_or_else(|| ProtoError::UnknownType(format!("{api_version}, Kind={kind}")))?;
    let mut obj = to_json_at(m, raw, 1)?;
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
    let mut out = watch_frame_head(event_type, inner.len());
    out.extend_from_slice(inner);
    out
}

/// The bytes of a watch frame before its object's `inner_len` enveloped bytes: a frame
/// is this head followed by the object as it is, so many streams can send one object's
/// bytes without copying them.
pub fn watch_frame_head(event_type: &str, inner_len: usize) -> Vec<u8> {
    let raw_ext_len = 1 + varint_len(inner_len) + inner_len;
    let body_len = 1 + varint_len(event_type.len()) + event_type.len() + 1 + varint_len(raw_ext_len) + raw_ext_len;
    let mut out = Vec::with_capacity(4 + body_len - inner_len);
    out.extend_from_slice(&(body_len as u32).to_be_bytes());
    transcode::bytes_field(&mut out, 1, event_type.as_bytes());
    out.push(0x12);
    transcode::varint(&mut out, raw_ext_len as u64);
    out.push(0x0a);
    transcode::varint(&mut out, inner_len as u64);
    out
}

/// How many bytes the varint of `n` takes.
fn varint_len(mut n: usize) -> usize {
    let mut k = 1;
    while n >= 0x80 {
        n >>= 7;
        k += 1;
    }
    k
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
                obj = special_to_json(Special::Raw, raw_ext, 1)?;
            }
            _ => r.skip(wt)?,
        }
    }
    Ok((ty, obj))
}

/// Writes `k8s\0` + `runtime.Unknown` whose raw bytes `content` appends to the buffer
/// (sized for about `hint` bytes of content). Returns the body and where the raw message
/// lies in it.
fn envelope_with(
    api_version: &str,
    kind: &str,
    hint: usize,
    content: impl FnOnce(&mut Vec<u8>) -> Result<(), ProtoError>,
) -> Result<(Vec<u8>, std::ops::Range<usize>), ProtoError> {
    let mut out = Vec::with_capacity(hint + api_version.len() + kind.len() + 24);
    out.extend_from_slice(MAGIC);
    let type_meta_len = 2 + api_version.len() + 2 + kind.len();
    if api_version.len() < 0x80 && kind.len() < 0x80 && type_meta_len < 0x80 {
        // The common case, written in place: short apiVersion and kind.
        out.extend_from_slice(&[0x0a, type_meta_len as u8, 0x0a, api_version.len() as u8]);
        out.extend_from_slice(api_version.as_bytes());
        out.extend_from_slice(&[0x12, kind.len() as u8]);
        out.extend_from_slice(kind.as_bytes());
    } else {
        let mut type_meta = Writer::default();
        type_meta.len_field(1, api_version.as_bytes());
        type_meta.len_field(2, kind.as_bytes());
        let mut head = Writer::default();
        head.len_field(1, &type_meta.into_inner());
        out.extend_from_slice(&head.into_inner());
    }
    let at = transcode::open(&mut out, 2);
    content(&mut out)?;
    let len = out.len() - at - 5;
    transcode::close(&mut out, at);
    let start = out.len() - len;
    let range = start..out.len();
    out.extend_from_slice(&[0x1a, 0x00, 0x22, 0x00]);
    Ok((out, range))
}

/// Stored JSON bytes of an object of (apiVersion, kind) as a protobuf body, transcoded
/// without building a JSON value.
pub fn encode_json_bytes(api_version: &str, kind: &str, json: &[u8]) -> Result<Vec<u8>, ProtoError> {
    Ok(encode_json_bytes_ranged(api_version, kind, json)?.0)
}

/// [`encode_json_bytes`], also telling where the raw message (what a list splices) lies
/// in the body.
pub fn encode_json_bytes_ranged(
    api_version: &str,
    kind: &str,
    json: &[u8],
) -> Result<(Vec<u8>, std::ops::Range<usize>), ProtoError> {
    let (g, v) = split_api_version(api_version);
    let m =
        message_for_kind(g, v, kind).ok_or_else(|| ProtoError::UnknownType(format!("{api_version}, Kind={kind}")))?;
    // Protobuf runs at about 40 % of the JSON size for Kubernetes objects.
    envelope_with(api_version, kind, json.len() / 2, |out| transcode::json_to_protobuf(m, json, out))
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

/// An object's protobuf message, encoded from its value tree before the store has given it
/// a resourceVersion: [`Unstored::finish`] adds that once known. This spares a write the
/// transcoding of the stored JSON bytes when the answer is protobuf.
pub struct Unstored {
    api_version: String,
    kind: String,
    metadata_tag: u32,
    message: Vec<u8>,
}

/// The tag of `resourceVersion` in `meta.v1.ObjectMeta`.
const OBJECT_META_RESOURCE_VERSION: u32 = 6;

impl Unstored {
    /// Encodes `obj` (with apiVersion and kind) whose `metadata` is an ObjectMeta.
    pub fn encode(obj: &Value) -> Result<Unstored, ProtoError> {
        let api_version = obj.get("apiVersion").and_then(Value::as_str).unwrap_or("");
        let kind = obj.get("kind").and_then(Value::as_str).unwrap_or("");
        let (g, v) = split_api_version(api_version);
        let m = message_for_kind(g, v, kind)
            .ok_or_else(|| ProtoError::UnknownType(format!("{api_version}, Kind={kind}")))?;
        let metadata = m
            .fields
            .iter()
            .find(|f| f.json == "metadata" && f.ty == Ty::Message(OBJECT_META))
            .ok_or_else(|| ProtoError::UnknownType(format!("{api_version}, Kind={kind} has no ObjectMeta")))?;
        Ok(Unstored {
            api_version: api_version.to_string(),
            kind: kind.to_string(),
            metadata_tag: metadata.tag,
            message: from_json(m, obj)?,
        })
    }

    /// The protobuf body of the object as stored with `resource_version`, and where its
    /// message lies in it (as [`encode_json_bytes_ranged`]). The resourceVersion travels
    /// as a second occurrence of the metadata field, which parsers merge into the first
    /// (protobuf's rule for a message field met twice; Go's generated code and prost
    /// follow it).
    pub fn finish(&self, resource_version: &str) -> (Vec<u8>, std::ops::Range<usize>) {
        let hint = self.message.len() + resource_version.len() + 8;
        let body = envelope_with(&self.api_version, &self.kind, hint, |out| {
            out.extend_from_slice(&self.message);
            let at = transcode::open(out, self.metadata_tag);
            transcode::bytes_field(out, OBJECT_META_RESOURCE_VERSION, resource_version.as_bytes());
            transcode::close(out, at);
            Ok(())
        });
        body.unwrap_or_default()
    }
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
    let hint = items.iter().map(|i| i.len() + 4).sum::<usize>() + 64;
    let body = envelope_with(api_version, list_kind, hint, |out| {
        transcode::bytes_field(out, meta_field.tag, &from_json(meta_msg, list_meta)?);
        for item in items {
            transcode::bytes_field(out, items_field.tag, item);
        }
        Ok(())
    })?;
    Ok(body.0)
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
