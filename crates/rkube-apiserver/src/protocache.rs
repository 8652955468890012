//! Protobuf encodings of stored objects, kept so protobuf reads splice bytes as JSON reads
//! do. An entry is valid for one (key, revision): a newer revision of the key replaces it.
//! Bounded by [`PROTO_CACHE_BYTES_MAX`]; past the bound the cache starts over (objects are
//! re-encoded on their next read), which keeps memory bounded without bookkeeping on the
//! read path.

use std::collections::HashMap;
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
    entries: HashMap<Arc<str>, (u64, Bytes)>,
    bytes: usize,
}

impl ProtoCache {
    /// The message bytes of `kv` as (apiVersion, kind), encoded now if not cached.
    pub fn message(&self, kv: &KeyValue, api_version: &str, kind: &str) -> Result<Bytes, rkube_proto::ProtoError> {
        {
            let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
            if let Some((rev, b)) = inner.entries.get(&kv.key) {
                if *rev == kv.mod_revision {
                    return Ok(b.clone());
                }
            }
        }
        let encoded = Bytes::from(rkube_proto::message_bytes(api_version, kind, &kv.value)?);
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if inner.bytes + encoded.len() > PROTO_CACHE_BYTES_MAX {
            inner.entries.clear();
            inner.bytes = 0;
        }
        inner.bytes += encoded.len();
        if let Some((_, old)) = inner.entries.insert(kv.key.clone(), (kv.mod_revision, encoded.clone())) {
            inner.bytes -= old.len();
        }
        Ok(encoded)
    }
}
