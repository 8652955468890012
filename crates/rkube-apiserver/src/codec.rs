//! The codec layer: how bodies are read and answers written. Handlers produce JSON values
//! or stored bytes; this module alone decides the wire format (JSON, YAML bodies, Table,
//! aggregated discovery, pretty printing for curl).

use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use rkube_api::ApiError;
use serde_json::Value;

pub type Body = http_body_util::combinators::BoxBody<Bytes, std::io::Error>;

pub fn full(b: impl Into<Bytes>) -> Body {
    Full::new(b.into()).map_err(|never| match never {}).boxed()
}

/// What the client asked for in `Accept` and `User-Agent`.
#[derive(Clone, Debug, Default)]
pub struct Negotiated {
    /// `application/json;as=Table;v=v1;g=meta.k8s.io`
    pub table: bool,
    /// `application/json;as=APIGroupDiscoveryList;v=v2|v2beta1;g=apidiscovery.k8s.io`
    pub aggregated_discovery: Option<&'static str>,
    /// kube-apiserver indents JSON for curl.
    pub pretty: bool,
    /// The client accepts JSON (or anything).
    pub json_ok: bool,
    /// The client asked for YAML explicitly.
    pub yaml: bool,
    /// The client prefers `application/vnd.kubernetes.protobuf` (used for types that have
    /// a protobuf message; others fall back to JSON).
    pub protobuf: bool,
    /// The client accepts only protobuf (no JSON fallback): types without a message get 406.
    pub protobuf_only: bool,
}

impl Negotiated {
    /// The same preferences without protobuf (for documents only served as JSON).
    pub fn json(&self) -> Negotiated {
        Negotiated { protobuf: false, protobuf_only: false, ..self.clone() }
    }
}

struct MediaRange<'a> {
    essence: &'a str,
    params: Vec<(&'a str, &'a str)>,
    q: f32,
}

fn parse_accept(accept: &str) -> Vec<MediaRange<'_>> {
    let mut out: Vec<MediaRange<'_>> = accept
        .split(',')
        .filter_map(|part| {
            let mut it = part.split(';').map(str::trim);
            let essence = it.next()?;
            if essence.is_empty() {
                return None;
            }
            let mut params = Vec::new();
            let mut q = 1.0;
            for p in it {
                if let Some((k, v)) = p.split_once('=') {
                    if k.trim() == "q" {
                        q = v.trim().parse().unwrap_or(1.0);
                    } else {
                        params.push((k.trim(), v.trim()));
                    }
                }
            }
            Some(MediaRange { essence, params, q })
        })
        .collect();
    out.sort_by(|a, b| b.q.partial_cmp(&a.q).unwrap_or(std::cmp::Ordering::Equal));
    out
}

/// Whether a (sorted) Accept list allows JSON at all.
fn accepts_json(accept: &str) -> bool {
    parse_accept(accept)
        .iter()
        .any(|m| m.q > 0.0 && matches!(m.essence, "application/json" | "application/*" | "*/*" | "application/yaml"))
}

pub fn negotiate(headers: &HeaderMap) -> Negotiated {
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or("*/*");
    let ua = headers.get(header::USER_AGENT).and_then(|v| v.to_str().ok()).unwrap_or("");
    let mut n = Negotiated { pretty: ua.starts_with("curl/"), ..Default::default() };
    let json_allowed = accepts_json(accept);
    for m in parse_accept(accept) {
        if m.q <= 0.0 {
            continue;
        }
        let get = |k: &str| m.params.iter().find(|(pk, _)| *pk == k).map(|(_, v)| *v);
        match m.essence {
            "application/json" | "application/*" | "*/*" => match (get("as"), get("g"), get("v")) {
                (Some("Table"), Some("meta.k8s.io"), Some("v1" | "v1beta1")) if !n.json_ok => n.table = true,
                (Some("APIGroupDiscoveryList"), Some("apidiscovery.k8s.io"), Some(v))
                    if n.aggregated_discovery.is_none() && !n.json_ok =>
                {
                    n.aggregated_discovery = match v {
                        "v2" => Some("v2"),
                        "v2beta1" => Some("v2beta1"),
                        _ => None,
                    };
                }
                (None, _, _) => n.json_ok = true,
                _ => {}
            },
            "application/yaml" => {
                if !n.json_ok {
                    n.yaml = true;
                }
                n.json_ok = true;
            }
            // Table and discovery documents have no protobuf form (as upstream): a
            // protobuf range with `as=` parameters is not something we can produce.
            "application/vnd.kubernetes.protobuf"
                if get("as").is_none() && !n.json_ok && !n.table && n.aggregated_discovery.is_none() =>
            {
                n.protobuf = true;
            }
            _ => {}
        }
    }
    if n.protobuf && !json_allowed {
        n.protobuf_only = true;
    }
    if !n.protobuf && !json_allowed && !n.table && n.aggregated_discovery.is_none() {
        // Nothing we can produce was asked for; answer JSON anyway, as kube-apiserver
        // does for unknown types when the body is an error.
        n.json_ok = false;
    }
    n
}

/// The body's media type, for decoding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyFormat {
    Json,
    Yaml,
    JsonPatch,
    MergePatch,
    StrategicMergePatch,
    ApplyPatch,
    Protobuf,
}

/// Whether a served resource has a protobuf form: built-in kinds with a message; never a
/// custom resource, whatever its group or kind (kube-apiserver serves those as JSON only).
pub fn has_protobuf(def: &rkube_api::ResourceDef) -> bool {
    !def.custom && rkube_proto::has_message(&def.group, &def.version, &def.kind)
}

pub fn body_format(headers: &HeaderMap) -> Result<BodyFormat, ApiError> {
    let ct = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("application/json");
    let essence = ct.split(';').next().unwrap_or("").trim();
    Ok(match essence {
        "application/json" | "" | "*/*" => BodyFormat::Json,
        "application/yaml" => BodyFormat::Yaml,
        "application/json-patch+json" => BodyFormat::JsonPatch,
        "application/merge-patch+json" => BodyFormat::MergePatch,
        "application/strategic-merge-patch+json" => BodyFormat::StrategicMergePatch,
        "application/apply-patch+yaml" => BodyFormat::ApplyPatch,
        "application/vnd.kubernetes.protobuf" => BodyFormat::Protobuf,
        other => return Err(ApiError::unsupported_media_type(other)),
    })
}

/// Decodes a JSON, YAML or protobuf body into a value; `Err` carries the parser's message.
/// Every decoder is bounded: JSON and YAML nest at most 127 levels (serde's limit; the
/// registry then holds objects to [`rkube_api::limits::DEPTH_MAX`]), protobuf at most
/// [`rkube_proto::DEPTH_MAX`], and YAML aliases may not expand a document much beyond its
/// own size.
pub fn decode(format: BodyFormat, body: &[u8]) -> Result<Value, String> {
    match format {
        BodyFormat::Yaml | BodyFormat::ApplyPatch => decode_yaml(body),
        BodyFormat::Protobuf => rkube_proto::decode_object(body).map_err(|e| e.to_string()),
        _ => serde_json::from_slice::<Value>(body).map_err(|e| json_error(&e)),
    }
}

/// serde's messages, phrased like Go's encoding/json where the difference matters.
fn json_error(e: &serde_json::Error) -> String {
    if e.is_eof() {
        "unexpected end of JSON input".to_string()
    } else if e.to_string().starts_with("recursion limit exceeded") {
        rkube_api::limits::DEPTH_EXCEEDED_MESSAGE.to_string()
    } else {
        e.to_string()
    }
}

/// What alias expansion may add to a YAML document, in units: one per value (sequence
/// element or mapping entry) plus one per byte of each string and key. Without aliases a
/// document costs at most two units per byte of it; go-yaml, which kube-apiserver uses,
/// allows about 400,000 alias-driven values before it refuses with "excessive aliasing".
const YAML_ALIAS_VALUES_MAX: usize = 400_000;

/// Kube-apiserver's message for an alias bomb.
pub const YAML_EXCESSIVE_ALIASING: &str = "document contains excessive aliasing";

/// A YAML body as a JSON value, refusing documents whose aliases expand past
/// `2 * body.len() + YAML_ALIAS_VALUES_MAX` units (see there). The count is kept while the
/// document is read (aliases are expanded lazily by the parser as values are pulled), so a
/// bomb, of many values or of long strings, is refused after bounded work and memory.
pub fn decode_yaml(body: &[u8]) -> Result<Value, String> {
    let mut budget = body.len().saturating_mul(2).saturating_add(YAML_ALIAS_VALUES_MAX);
    let de = serde_yaml::Deserializer::from_slice(body);
    serde::de::DeserializeSeed::deserialize(YamlValue { budget: &mut budget }, de).map_err(|e| {
        // serde_yaml adds the path and position to our error; kube-apiserver has none. Its
        // own bound on alias use (100 dereferences per event) means the same.
        let e = e.to_string();
        if budget == 0 || e.starts_with("repetition limit exceeded") {
            YAML_EXCESSIVE_ALIASING.to_string()
        } else {
            e
        }
    })
}

/// Builds a JSON value as serde_json's own `Deserialize` would, counting values.
struct YamlValue<'b> {
    budget: &'b mut usize,
}

impl YamlValue<'_> {
    fn spend<E: serde::de::Error>(&mut self, units: usize) -> Result<(), E> {
        match self.budget.checked_sub(units.max(1)) {
            Some(left) => {
                *self.budget = left;
                Ok(())
            }
            None => {
                *self.budget = 0;
                Err(E::custom(YAML_EXCESSIVE_ALIASING))
            }
        }
    }
}

impl<'de> serde::de::DeserializeSeed<'de> for YamlValue<'_> {
    type Value = Value;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for YamlValue<'_> {
    type Value = Value;
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("any YAML value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }
    fn visit_str<E: serde::de::Error>(mut self, v: &str) -> Result<Value, E> {
        self.spend(v.len())?;
        Ok(Value::String(v.to_string()))
    }
    fn visit_string<E: serde::de::Error>(mut self, v: String) -> Result<Value, E> {
        self.spend(v.len())?;
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(mut self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::new();
        loop {
            self.spend(1)?;
            match seq.next_element_seed(YamlValue { budget: &mut *self.budget })? {
                Some(v) => out.push(v),
                None => return Ok(Value::Array(out)),
            }
        }
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(mut self, mut map: A) -> Result<Value, A::Error> {
        let mut out = serde_json::Map::new();
        while let Some(k) = map.next_key::<String>()? {
            self.spend(1 + k.len())?;
            let v = map.next_value_seed(YamlValue { budget: &mut *self.budget })?;
            out.insert(k, v);
        }
        Ok(Value::Object(out))
    }
}

fn base_response(status: StatusCode, content_type: &'static str) -> http::response::Builder {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, HeaderValue::from_static(content_type))
        .header(header::CACHE_CONTROL, HeaderValue::from_static("no-cache, private"))
        .header("x-content-type-options", HeaderValue::from_static("nosniff"))
}

fn encode(v: &Value, n: &Negotiated) -> Bytes {
    if n.yaml {
        return Bytes::from(serde_yaml::to_string(v).unwrap_or_default());
    }
    let out = if n.pretty { serde_json::to_vec_pretty(v) } else { serde_json::to_vec(v) };
    let mut out = out.unwrap_or_default();
    out.push(b'\n');
    Bytes::from(out)
}

fn content_type(n: &Negotiated) -> &'static str {
    if n.yaml {
        "application/yaml"
    } else {
        "application/json"
    }
}

/// A protobuf body for `v` if the client prefers protobuf and the type has a message.
fn protobuf_body(status: StatusCode, v: &Value, n: &Negotiated) -> Option<Response<Body>> {
    if !n.protobuf {
        return None;
    }
    let bytes = rkube_proto::encode_object(v).ok()?;
    base_response(status, rkube_proto::MEDIA_TYPE).body(full(bytes)).ok()
}

pub fn json_response(status: StatusCode, v: &Value, n: &Negotiated) -> Response<Body> {
    if let Some(r) = protobuf_body(status, v, n) {
        return r;
    }
    if n.protobuf_only {
        let e = ApiError::not_acceptable("application/vnd.kubernetes.protobuf");
        let body = encode(&e.to_status(), &Negotiated::default());
        return base_response(StatusCode::NOT_ACCEPTABLE, "application/json")
            .body(full(body))
            .unwrap_or_else(|_| internal_fallback());
    }
    base_response(status, content_type(n)).body(full(encode(v, n))).unwrap_or_else(|_| internal_fallback())
}

/// Stored JSON bytes: sent as they are unless the client wants them re-indented or as YAML.
pub fn bytes_response(status: StatusCode, raw: Bytes, n: &Negotiated) -> Response<Body> {
    if n.pretty || n.yaml || n.protobuf {
        if let Ok(v) = serde_json::from_slice::<Value>(&raw) {
            return json_response(status, &v, n);
        }
    }
    base_response(status, "application/json").body(full(raw)).unwrap_or_else(|_| internal_fallback())
}

pub fn raw_response(status: StatusCode, content_type: &'static str, body: Vec<u8>) -> Response<Body> {
    base_response(status, content_type).body(full(body)).unwrap_or_else(|_| internal_fallback())
}

pub fn protobuf_response(status: StatusCode, pb: impl Into<Bytes>) -> Response<Body> {
    base_response(status, rkube_proto::MEDIA_TYPE).body(full(pb)).unwrap_or_else(|_| internal_fallback())
}

pub fn with_content_type(status: StatusCode, ct: &'static str, v: &Value, n: &Negotiated) -> Response<Body> {
    base_response(status, ct).body(full(encode(v, n))).unwrap_or_else(|_| internal_fallback())
}

pub fn text_response(status: StatusCode, text: impl Into<Bytes>) -> Response<Body> {
    base_response(status, "text/plain; charset=utf-8").body(full(text)).unwrap_or_else(|_| internal_fallback())
}

pub fn error_response(e: &ApiError, n: &Negotiated) -> Response<Body> {
    let status = StatusCode::from_u16(e.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut r = json_response(status, &e.to_status(), &Negotiated { yaml: false, ..n.clone() });
    if let Some(s) = e.retry_after_seconds {
        if let Ok(v) = HeaderValue::from_str(&s.to_string()) {
            r.headers_mut().insert(header::RETRY_AFTER, v);
        }
    }
    r
}

fn internal_fallback() -> Response<Body> {
    let mut r = Response::new(full(Bytes::from_static(b"internal error\n")));
    *r.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn neg(accept: &str) -> Negotiated {
        let mut h = HeaderMap::new();
        h.insert(header::ACCEPT, HeaderValue::from_str(accept).unwrap());
        negotiate(&h)
    }

    /// Every served built-in resource (and its list) has a protobuf form, and a defaulted
    /// object of each kind survives JSON -> protobuf -> JSON.
    #[test]
    fn every_builtin_round_trips_through_protobuf() {
        use serde_json::json;
        let table = rkube_api::ResourceTable::default();
        rkube_api::builtin::register_builtins(&table);
        let snap = table.snapshot();
        let tmpl = json!({"metadata": {"labels": {"a": "b"}}, "spec": {"containers": [{"name": "c", "image": "i",
            "ports": [{"containerPort": 80}], "env": [{"name": "E", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}]}],
            "volumes": [{"name": "v", "secret": {"secretName": "s"}}]}});
        let specs = json!({
            "Pod": {"spec": tmpl["spec"]},
            "Service": {"spec": {"ports": [{"port": 80, "targetPort": "http"}], "selector": {"a": "b"}}},
            "Deployment": {"spec": {"selector": {"matchLabels": {"a": "b"}}, "template": tmpl}},
            "ReplicaSet": {"spec": {"selector": {"matchLabels": {"a": "b"}}, "template": tmpl}},
            "StatefulSet": {"spec": {"serviceName": "s", "selector": {"matchLabels": {"a": "b"}}, "template": tmpl}},
            "DaemonSet": {"spec": {"selector": {"matchLabels": {"a": "b"}}, "template": tmpl}},
            "Job": {"spec": {"template": tmpl}},
            "CronJob": {"spec": {"schedule": "* * * * *", "jobTemplate": {"spec": {"template": tmpl}}}},
            "ConfigMap": {"data": {"k": "v"}, "binaryData": {"b": "AAE="}},
            "EndpointSlice": {"addressType": "IPv4", "endpoints": [{"addresses": ["10.0.0.1"]}], "ports": [{"port": 80}]},
            "PodTemplate": {"template": tmpl},
            "Ingress": {"spec": {"defaultBackend": {"service": {"name": "s", "port": {"number": 80}}}}},
            "PodDisruptionBudget": {"spec": {"minAvailable": 0}},
            "RuntimeClass": {"handler": "runc"},
            "Secret": {"data": {"k": "dg=="}, "type": "Opaque"},
            "Role": {"rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]},
            "Lease": {"spec": {"holderIdentity": "h", "leaseDurationSeconds": 15, "renewTime": "2026-01-01T00:00:00.000000Z"}},
            "CustomResourceDefinition": {"spec": {"group": "stable.example.com", "scope": "Namespaced",
                "names": {"plural": "crontabs", "kind": "CronTab"},
                "versions": [{"name": "v1", "served": true, "storage": true}]}},
        });
        for def in snap.resources.iter().filter(|d| d.computed.is_none()) {
            assert!(rkube_proto::has_message(&def.group, &def.version, &def.kind), "{}", def.kind);
            if def.allows("list") {
                assert!(rkube_proto::has_message(&def.group, &def.version, &def.list_kind()), "{}", def.list_kind());
            }
            let mut obj = json!({"apiVersion": def.api_version(), "kind": def.kind,
                "metadata": {"name": "x", "namespace": "ns", "uid": "u", "resourceVersion": "7",
                             "creationTimestamp": "2026-01-01T00:00:00Z", "labels": {"l": "v"}}});
            if let Some(extra) = specs.get(&def.kind).and_then(serde_json::Value::as_object) {
                for (k, v) in extra {
                    obj[k] = v.clone();
                }
            }
            let mut obj = def.strategy.canonicalize(&obj).expect("valid");
            def.strategy.default(&mut obj);
            if let Some(s) = def.strategy.initial_status(&obj) {
                obj["status"] = s;
            }
            let back = rkube_proto::decode_object(&rkube_proto::encode_object(&obj).expect("encode")).expect("decode");
            assert_eq!(back, obj, "{}", def.kind);
        }
    }

    fn nested(levels: usize, kinds: &[bool]) -> String {
        let (mut open, mut close) = (String::new(), String::new());
        for i in 0..levels {
            if kinds[i % kinds.len()] {
                open.push_str("{\"k\":");
                close.insert(0, '}');
            } else {
                open.push('[');
                close.insert(0, ']');
            }
        }
        format!("{open}1{close}")
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 100, failure_persistence: None, ..Default::default() })]

        /// JSON and YAML bodies of any depth decode or fail on an ordinary stack; what
        /// decodes nests within serde's 128 levels (the registry then applies its bound).
        #[test]
        fn deep_bodies_are_safe(levels in 1usize..3000, kinds in proptest::collection::vec(proptest::prelude::any::<bool>(), 1..4)) {
            let text = nested(levels, &kinds);
            for format in [BodyFormat::Json, BodyFormat::Yaml] {
                match decode(format, text.as_bytes()) {
                    Ok(v) => proptest::prop_assert!(!rkube_api::limits::depth_exceeds(&v, 128)),
                    Err(e) => proptest::prop_assert!(levels > 127, "{format:?} {levels}: {e}"),
                }
            }
        }

        /// Alias expansion is bounded by the document's size however the aliases nest, for
        /// many small values and for long strings alike.
        #[test]
        fn yaml_aliases_are_bounded(levels in 1usize..12, fan_out in 2usize..40, long in proptest::prelude::any::<bool>()) {
            let leaf = if long { format!("\"{}\"", "s".repeat(10_000)) } else { "1".to_string() };
            let mut doc = format!("a0: &a0 [{leaf}, 2]\n");
            for l in 1..=levels {
                let refs = vec![format!("*a{}", l - 1); fan_out].join(", ");
                doc.push_str(&format!("a{l}: &a{l} [{refs}]\n"));
            }
            let leaves = fan_out.saturating_pow(levels as u32);
            let expanded = leaves.saturating_mul(if long { 10_002 } else { 2 });
            match decode_yaml(doc.as_bytes()) {
                Ok(_) => proptest::prop_assert!(expanded < 2 * doc.len() + YAML_ALIAS_VALUES_MAX, "{expanded}"),
                Err(e) => proptest::prop_assert_eq!(e, YAML_EXCESSIVE_ALIASING),
            }
        }
    }

    #[test]
    fn protobuf_negotiation() {
        let n = neg("application/vnd.kubernetes.protobuf,application/json");
        assert!(n.protobuf && !n.protobuf_only);
        let n = neg("application/vnd.kubernetes.protobuf");
        assert!(n.protobuf && n.protobuf_only);
        let n = neg("application/vnd.kubernetes.protobuf;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1;g=meta.k8s.io");
        assert!(n.table && !n.protobuf, "Table has no protobuf form: JSON Table");
        assert!(!neg("application/json,application/vnd.kubernetes.protobuf;q=0.5").protobuf);
    }

    #[test]
    fn accept_negotiation() {
        assert!(neg("application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json").table);
        assert!(!neg("application/json").table);
        assert_eq!(
            neg("application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json").aggregated_discovery,
            Some("v2")
        );
        assert_eq!(
            neg("application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList").aggregated_discovery,
            Some("v2beta1")
        );
        // A higher-q plain JSON wins over a lower-q Table.
        assert!(!neg("application/json;as=Table;v=v1;g=meta.k8s.io;q=0.5,application/json").table);
    }
}
