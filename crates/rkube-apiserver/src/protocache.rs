//! Protobuf encodings of stored objects, kept so protobuf reads splice bytes as JSON reads
//! do. An entry is the whole enveloped body (what a GET, a create's answer or a watch
//! event sends) plus where its message lies in it (what a list splices), valid for one
//! (key, revision): a newer revision of the key replaces it. Bounded by
//! [`PROTO_CACHE_BYTES_MAX`]; past the bound the cache starts over (objects are
//! re-encoded on their next read), which keeps memory bounded without bookkeeping on the
//! read path.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use rkube_store::KeyValue;

pub const PROTO_CACHE_BYTES_MAX: usize = 48 << 20;

#[derive(Default)]
pub struct ProtoCache {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    entries: HashMap<Arc<str>, Entry>,
    bytes: usize,
}

#[derive(Clone)]
pub struct Entry {
    revision: u64,
    body: Bytes,
    message: Range<usize>,
}

impl Entry {
    /// The whole protobuf body (envelope and message).
    pub fn body(&self) -> Bytes {
        self.body.clone()
    }
}

impl ProtoCache {
    /// The protobuf body (envelope and message) of `kv` as (apiVersion, kind).
    pub fn object(&self, kv: &KeyValue, api_version: &str, kind: &str) -> Result<Bytes, rkube_proto::ProtoError> {
        Ok(self.entry(kv, api_version, kind)?.body)
    }

    /// The message bytes of `kv` as (apiVersion, kind), without the envelope.
    pub fn message(&self, kv: &KeyValue, api_version: &str, kind: &str) -> Result<Bytes, rkube_proto::ProtoError> {
        let e = self.entry(kv, api_version, kind)?;
        Ok(e.body.slice(e.message))
    }

    fn entry(&self, kv: &KeyValue, api_version: &str, kind: &str) -> Result<Entry, rkube_proto::ProtoError> {
        {
            let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(e) = inner.entries.get(&kv.key) {
                if e.revision == kv.mod_revision {
                    return Ok(e.clone());
                }
            }
        }
        let (body, message) = rkube_proto::encode_json_bytes_ranged(api_version, kind, &kv.value)?;
        Ok(self.put(kv, body, message))
    }

    /// Records the protobuf body of `kv` (made by the writer, from the value it stored) and
    /// where its message lies in it.
    pub fn put(&self, kv: &KeyValue, body: Vec<u8>, message: Range<usize>) -> Entry {
        let entry = Entry { revision: kv.mod_revision, body: Bytes::from(body), message };
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if inner.entries.get(&kv.key).is_some_and(|e| e.revision > entry.revision) {
            // A newer revision got here first (writers and readers race): keep it.
            return entry;
        }
        if inner.bytes + entry.body.len() > PROTO_CACHE_BYTES_MAX {
            inner.entries.clear();
            inner.bytes = 0;
        }
        inner.bytes += entry.body.len();
        if let Some(old) = inner.entries.insert(kv.key.clone(), entry.clone()) {
            inner.bytes -= old.body.len();
        }
        entry
    }
}
