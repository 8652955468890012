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

/// Decodes a JSON or YAML body into a value; `Err` carries the parser's message.
pub fn decode(format: BodyFormat, body: &[u8]) -> Result<Value, String> {
    match format {
        BodyFormat::Yaml | BodyFormat::ApplyPatch => serde_yaml::from_slice::<Value>(body).map_err(|e| e.to_string()),
        BodyFormat::Protobuf => rkube_proto::decode_object(body).map_err(|e| e.to_string()),
        _ => serde_json::from_slice::<Value>(body).map_err(|e| json_error(&e)),
    }
}

/// serde's messages, phrased like Go's encoding/json where the difference matters.
fn json_error(e: &serde_json::Error) -> String {
    if e.is_eof() {
        "unexpected end of JSON input".to_string()
    } else {
        e.to_string()
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
            "Secret": {"data": {"k": "dg=="}, "type": "Opaque"},
            "Role": {"rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]},
            "Lease": {"spec": {"holderIdentity": "h", "leaseDurationSeconds": 15, "renewTime": "2026-01-01T00:00:00.000000Z"}},
            "CustomResourceDefinition": {"spec": {"group": "stable.example.com", "scope": "Namespaced",
                "names": {"plural": "crontabs", "kind": "CronTab"},
                "versions": [{"name": "v1", "served": true, "storage": true}]}},
        });
        for def in &snap.resources {
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
            assert_eq!(rkube_proto::without_unset_zeros(&back), rkube_proto::without_unset_zeros(&obj), "{}", def.kind);
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
