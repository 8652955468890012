//! Stored JSON bytes straight to protobuf, without building a JSON value tree: a serde
//! visitor walks the JSON text and writes wire bytes as it goes, guided by the message
//! table. This is the read path (GET, LIST, watch) for protobuf clients, where the
//! registry holds objects as JSON bytes.
//!
//! Nested messages are written in place: a 5-byte length placeholder, the content, then
//! the placeholder is shrunk to the minimal varint. Fields of a Go embedded struct, flat in
//! JSON, are written as one occurrence of the embedded message field each; protobuf merges
//! repeated occurrences of a message field, so readers see one embedded message.

use std::fmt;

use base64::Engine;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use crate::table::{FieldDef, Label, MessageDef, Ty};
use crate::{
    compiled, message_of as message, FastMap, ProtoError, Special, FIELDS_V1, INT_OR_STRING, MICRO_TIME, QUANTITY,
    RAW_EXTENSION, TIME,
};

/// How a JSON key of a message is written.
#[derive(Clone, Copy)]
pub(crate) enum Slot {
    Direct(&'static FieldDef),
    /// A field of the embedded struct `outer` (flat in JSON).
    Inline {
        outer: &'static FieldDef,
        inner: &'static FieldDef,
    },
}

/// The JSON keys of `m`, with the fields of its embedded structs flattened in.
pub(crate) fn keys_of(m: &'static MessageDef) -> FastMap<&'static str, Slot> {
    let mut keys = FastMap::default();
    for f in m.fields {
        if f.inline {
            if let Ty::Message(name) = f.ty {
                if let Some(inner_msg) = message(name) {
                    for g in inner_msg.fields {
                        keys.entry(g.json).or_insert(Slot::Inline { outer: f, inner: g });
                    }
                }
            }
        } else {
            keys.insert(f.json, Slot::Direct(f));
        }
    }
    keys
}

pub(crate) fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn key(out: &mut Vec<u8>, tag: u32, wt: u8) {
    varint(out, ((tag as u64) << 3) | wt as u64);
}

/// Starts a length-delimited field; returns where its length goes.
pub(crate) fn open(out: &mut Vec<u8>, tag: u32) -> usize {
    key(out, tag, crate::wire::LEN);
    let at = out.len();
    out.extend_from_slice(&[0; 5]);
    at
}

/// Ends a field started by [`open`]: writes the minimal length varint and moves the content.
pub(crate) fn close(out: &mut Vec<u8>, at: usize) {
    let mut len = out.len() - at - 5;
    let mut lenbuf = [0u8; 5];
    let mut k = 0;
    while len >= 0x80 {
        lenbuf[k] = (len as u8) | 0x80;
        len >>= 7;
        k += 1;
    }
    lenbuf[k] = len as u8;
    k += 1;
    out[at..at + k].copy_from_slice(&lenbuf[..k]);
    if k < 5 {
        out.copy_within(at + 5.., at + k);
        out.truncate(out.len() - (5 - k));
    }
}

pub(crate) fn bytes_field(out: &mut Vec<u8>, tag: u32, data: &[u8]) {
    key(out, tag, crate::wire::LEN);
    varint(out, data.len() as u64);
    out.extend_from_slice(data);
}

/// Transcodes one JSON object (`json`) as message `msg`, appending to `out`.
pub fn json_to_protobuf(msg: &'static MessageDef, json: &[u8], out: &mut Vec<u8>) -> Result<(), ProtoError> {
    let mut de = serde_json::Deserializer::from_slice(json);
    MessageSeed { msg, out }.deserialize(&mut de).map_err(|e| ProtoError::Wire(e.to_string()))?;
    de.end().map_err(|e| ProtoError::Wire(e.to_string()))
}

struct MessageSeed<'a> {
    msg: &'static MessageDef,
    out: &'a mut Vec<u8>,
}

impl<'de> DeserializeSeed<'de> for MessageSeed<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        match compiled(self.msg).map_or(Special::No, |c| c.special) {
            Special::Time | Special::MicroTime => d.deserialize_any(TimeVisitor(self.out)),
            Special::Quantity => d.deserialize_any(QuantityVisitor(self.out)),
            Special::IntOrString => d.deserialize_any(IntOrStringVisitor(self.out)),
            Special::Raw | Special::Fields => {
                let raw: Box<serde_json::value::RawValue> = serde::Deserialize::deserialize(d)?;
                bytes_field(self.out, 1, raw.get().as_bytes());
                Ok(())
            }
            Special::No => d.deserialize_map(MessageVisitor { msg: self.msg, out: self.out }),
        }
    }
}

struct MessageVisitor<'a> {
    msg: &'static MessageDef,
    out: &'a mut Vec<u8>,
}

impl<'de> Visitor<'de> for MessageVisitor<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "an object for {}", self.msg.name)
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let keys = compiled(self.msg).map(|c| &c.keys);
        while let Some(k) = map.next_key_seed(KeySeed)? {
            match keys.and_then(|ks| ks.get(k.as_str())) {
                Some(Slot::Direct(f)) => map.next_value_seed(FieldSeed { f, out: self.out })?,
                Some(Slot::Inline { outer, inner }) => {
                    let at = open(self.out, outer.tag);
                    map.next_value_seed(FieldSeed { f: inner, out: self.out })?;
                    close(self.out, at);
                }
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }
}

/// One field's JSON value (any label), written with the field's tag.
struct FieldSeed<'a> {
    f: &'static FieldDef,
    out: &'a mut Vec<u8>,
}

impl<'de> DeserializeSeed<'de> for FieldSeed<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        match self.f.label {
            Label::Optional => d.deserialize_any(ValueVisitor { tag: self.f.tag, ty: self.f.ty, out: self.out }),
            Label::Repeated => d.deserialize_any(ListVisitor { f: self.f, out: self.out }),
            Label::Map(key_ty) => d.deserialize_any(MapVisitor { f: self.f, key_ty, out: self.out }),
        }
    }
}

struct ListVisitor<'a> {
    f: &'static FieldDef,
    out: &'a mut Vec<u8>,
}

impl<'de> Visitor<'de> for ListVisitor<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a list for {}", self.f.json)
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(ElementSeed { tag: self.f.tag, ty: self.f.ty, out: self.out })?.is_some() {}
        Ok(())
    }
}

struct ElementSeed<'a> {
    tag: u32,
    ty: Ty,
    out: &'a mut Vec<u8>,
}

impl<'de> DeserializeSeed<'de> for ElementSeed<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(ValueVisitor { tag: self.tag, ty: self.ty, out: self.out })
    }
}

struct MapVisitor<'a> {
    f: &'static FieldDef,
    key_ty: Ty,
    out: &'a mut Vec<u8>,
}

impl<'de> Visitor<'de> for MapVisitor<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a map for {}", self.f.json)
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(k) = map.next_key_seed(KeySeed)? {
            let k = k.as_str();
            let at = open(self.out, self.f.tag);
            match self.key_ty {
                Ty::String => bytes_field(self.out, 1, k.as_bytes()),
                _ => {
                    let n: i64 = k.parse().map_err(|_| de::Error::custom(format!("map key {k:?} is not a number")))?;
                    key(self.out, 1, crate::wire::VARINT);
                    varint(self.out, n as u64);
                }
            }
            map.next_value_seed(ElementSeed { tag: 2, ty: self.f.ty, out: self.out })?;
            close(self.out, at);
        }
        Ok(())
    }
}

/// One value of a field (`tag`, `ty`).
struct ValueVisitor<'a> {
    tag: u32,
    ty: Ty,
    out: &'a mut Vec<u8>,
}

impl ValueVisitor<'_> {
    fn int<E: de::Error>(self, v: i64) -> Result<(), E> {
        match self.ty {
            Ty::Int32 | Ty::Int64 | Ty::Uint32 | Ty::Uint64 | Ty::Bool => {
                key(self.out, self.tag, crate::wire::VARINT);
                varint(self.out, v as u64);
            }
            Ty::Double => {
                key(self.out, self.tag, crate::wire::I64);
                self.out.extend_from_slice(&(v as f64).to_bits().to_le_bytes());
            }
            Ty::Float => {
                key(self.out, self.tag, crate::wire::I32);
                self.out.extend_from_slice(&(v as f32).to_bits().to_le_bytes());
            }
            Ty::String => bytes_field(self.out, self.tag, v.to_string().as_bytes()),
            Ty::Message(name) => {
                let msg = message(name).ok_or_else(|| E::custom(format!("unknown message {name}")))?;
                let at = open(self.out, self.tag);
                match msg.name {
                    INT_OR_STRING => IntOrStringVisitor(self.out).visit_i64::<E>(v)?,
                    QUANTITY => bytes_field(self.out, 1, v.to_string().as_bytes()),
                    RAW_EXTENSION | FIELDS_V1 => bytes_field(self.out, 1, v.to_string().as_bytes()),
                    _ => return Err(E::custom(format!("expected an object for {name}, got a number"))),
                }
                close(self.out, at);
            }
            Ty::Bytes => return Err(E::custom("expected base64 data, got a number")),
        }
        Ok(())
    }
}

impl<'de> Visitor<'de> for ValueVisitor<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a value of type {:?}", self.ty)
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        // null: absent, except Go's zero Time, which travels as an empty message.
        if let Ty::Message(TIME | MICRO_TIME) = self.ty {
            bytes_field(self.out, self.tag, &[]);
        }
        Ok(())
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<(), E> {
        match self.ty {
            Ty::Bool => {
                key(self.out, self.tag, crate::wire::VARINT);
                varint(self.out, v as u64);
                Ok(())
            }
            Ty::Message(RAW_EXTENSION | FIELDS_V1) => {
                let at = open(self.out, self.tag);
                bytes_field(self.out, 1, if v { b"true" } else { b"false" });
                close(self.out, at);
                Ok(())
            }
            _ => Err(E::custom(format!("expected {:?}, got a boolean", self.ty))),
        }
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<(), E> {
        self.int(v)
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<(), E> {
        self.int(v as i64)
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<(), E> {
        match self.ty {
            Ty::Double => {
                key(self.out, self.tag, crate::wire::I64);
                self.out.extend_from_slice(&v.to_bits().to_le_bytes());
                Ok(())
            }
            Ty::Float => {
                key(self.out, self.tag, crate::wire::I32);
                self.out.extend_from_slice(&(v as f32).to_bits().to_le_bytes());
                Ok(())
            }
            _ if v.fract() == 0.0 => self.int(v as i64),
            Ty::Message(_) => {
                let at = open(self.out, self.tag);
                bytes_field(self.out, 1, v.to_string().as_bytes());
                close(self.out, at);
                Ok(())
            }
            _ => Err(E::custom(format!("expected {:?}, got {v}", self.ty))),
        }
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<(), E> {
        match self.ty {
            Ty::String => bytes_field(self.out, self.tag, v.as_bytes()),
            Ty::Bytes => {
                let b = base64::engine::general_purpose::STANDARD
                    .decode(v)
                    .map_err(|e| E::custom(format!("illegal base64 data: {e}")))?;
                bytes_field(self.out, self.tag, &b);
            }
            Ty::Int32 | Ty::Int64 | Ty::Uint32 | Ty::Uint64 => {
                let n: i64 = v.parse().map_err(|_| E::custom(format!("expected an integer, got {v:?}")))?;
                return self.int(n);
            }
            Ty::Message(name) => {
                let at = open(self.out, self.tag);
                match name {
                    TIME | MICRO_TIME => TimeVisitor(self.out).visit_str::<E>(v)?,
                    QUANTITY => bytes_field(self.out, 1, v.as_bytes()),
                    INT_OR_STRING => IntOrStringVisitor(self.out).visit_str::<E>(v)?,
                    RAW_EXTENSION | FIELDS_V1 => {
                        let s = serde_json::to_string(v).map_err(E::custom)?;
                        bytes_field(self.out, 1, s.as_bytes());
                    }
                    _ => return Err(E::custom(format!("expected an object for {name}, got a string"))),
                }
                close(self.out, at);
            }
            _ => return Err(E::custom(format!("expected {:?}, got a string", self.ty))),
        }
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<(), A::Error> {
        let Ty::Message(name) = self.ty else {
            return Err(de::Error::custom(format!("expected {:?}, got an object", self.ty)));
        };
        let msg = message(name).ok_or_else(|| de::Error::custom(format!("unknown message {name}")))?;
        let at = open(self.out, self.tag);
        if matches!(name, RAW_EXTENSION | FIELDS_V1) {
            // Re-serialize the object as the raw JSON bytes.
            let v: serde_json::Value = serde::Deserialize::deserialize(de::value::MapAccessDeserializer::new(map))?;
            bytes_field(self.out, 1, v.to_string().as_bytes());
        } else {
            MessageVisitor { msg, out: self.out }.visit_map(map)?;
        }
        close(self.out, at);
        Ok(())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<(), A::Error> {
        if let Ty::Message(RAW_EXTENSION | FIELDS_V1) = self.ty {
            let v: serde_json::Value = serde::Deserialize::deserialize(de::value::SeqAccessDeserializer::new(seq))?;
            let at = open(self.out, self.tag);
            bytes_field(self.out, 1, v.to_string().as_bytes());
            close(self.out, at);
            return Ok(());
        }
        Err(de::Error::custom(format!("expected {:?}, got a list", self.ty)))
    }
}

/// Time and MicroTime: an RFC 3339 string to (seconds, nanos).
struct TimeVisitor<'a>(&'a mut Vec<u8>);

impl<'de> Visitor<'de> for TimeVisitor<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an RFC 3339 time")
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<(), E> {
        let t = chrono::DateTime::parse_from_rfc3339(v).map_err(|e| E::custom(format!("invalid time {v:?}: {e}")))?;
        key(self.0, 1, crate::wire::VARINT);
        varint(self.0, t.timestamp() as u64);
        let nanos = t.timestamp_subsec_nanos();
        if nanos != 0 {
            key(self.0, 2, crate::wire::VARINT);
            varint(self.0, nanos as u64);
        }
        Ok(())
    }
}

struct QuantityVisitor<'a>(&'a mut Vec<u8>);

impl<'de> Visitor<'de> for QuantityVisitor<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a quantity")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<(), E> {
        bytes_field(self.0, 1, v.as_bytes());
        Ok(())
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<(), E> {
        bytes_field(self.0, 1, v.to_string().as_bytes());
        Ok(())
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<(), E> {
        bytes_field(self.0, 1, v.to_string().as_bytes());
        Ok(())
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<(), E> {
        bytes_field(self.0, 1, v.to_string().as_bytes());
        Ok(())
    }
}

struct IntOrStringVisitor<'a>(&'a mut Vec<u8>);

impl<'de> Visitor<'de> for IntOrStringVisitor<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an integer or a string")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<(), E> {
        key(self.0, 1, crate::wire::VARINT);
        varint(self.0, 1);
        bytes_field(self.0, 3, v.as_bytes());
        Ok(())
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<(), E> {
        key(self.0, 1, crate::wire::VARINT);
        varint(self.0, 0);
        key(self.0, 2, crate::wire::VARINT);
        varint(self.0, v as u64);
        Ok(())
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<(), E> {
        self.visit_i64(v as i64)
    }
}

/// A JSON object key, borrowed from the input when it has no escapes (serde's `Cow<str>`
/// always allocates).
enum Key<'de> {
    Borrowed(&'de str),
    Owned(String),
}

impl Key<'_> {
    fn as_str(&self) -> &str {
        match self {
            Key::Borrowed(s) => s,
            Key::Owned(s) => s,
        }
    }
}

struct KeySeed;

impl<'de> DeserializeSeed<'de> for KeySeed {
    type Value = Key<'de>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Key<'de>, D::Error> {
        d.deserialize_str(KeyVisitor)
    }
}

struct KeyVisitor;

impl<'de> Visitor<'de> for KeyVisitor {
    type Value = Key<'de>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string key")
    }
    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Key<'de>, E> {
        Ok(Key::Borrowed(v))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Key<'de>, E> {
        Ok(Key::Owned(v.to_string()))
    }
}
