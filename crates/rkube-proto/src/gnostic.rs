//! OpenAPI v2 (Swagger 2.0) documents in gnostic's protobuf form (`openapi.v2.Document`),
//! which client-go asks `/openapi/v2` for. Converted from the document's JSON here; only the
//! parts Kubernetes clients read are written: info, paths with their operations' vendor
//! extensions, and definitions (schemas with $ref, type, format, description, required,
//! items, allOf, properties, additionalProperties and vendor extensions). Vendor extension
//! values travel as YAML text, as gnostic stores them (JSON is valid YAML).

use serde_json::Value;

use crate::wire::Writer;

/// The media type of the answer. Clients ask with `...spec.v2@v1.0+protobuf` (older) or
/// `...spec.v2.v1.0+protobuf`; the answer uses the latter, since Go's MIME parser rejects
/// the `@`.
pub const MEDIA_TYPE: &str = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf";

fn msg(f: impl FnOnce(&mut Writer)) -> Vec<u8> {
    let mut w = Writer::default();
    f(&mut w);
    w.into_inner()
}

fn named_any(name: &str, value: &Value) -> Vec<u8> {
    msg(|w| {
        w.len_field(1, name.as_bytes());
        let any = msg(|a| a.len_field(2, value.to_string().as_bytes()));
        w.len_field(2, &any);
    })
}

fn vendor_extensions(w: &mut Writer, tag: u32, obj: &serde_json::Map<String, Value>) {
    for (k, v) in obj {
        if k.starts_with("x-") {
            w.len_field(tag, &named_any(k, v));
        }
    }
}

/// One JSON schema as `openapi.v2.Schema`.
pub fn schema(v: &Value) -> Vec<u8> {
    let Value::Object(o) = v else { return Vec::new() };
    msg(|w| {
        if let Some(r) = o.get("$ref").and_then(Value::as_str) {
            w.len_field(1, r.replace("#/components/schemas/", "#/definitions/").as_bytes());
        }
        for (tag, key) in [(2, "format"), (3, "title"), (4, "description")] {
            if let Some(s) = o.get(key).and_then(Value::as_str) {
                w.len_field(tag, s.as_bytes());
            }
        }
        if let Some(req) = o.get("required").and_then(Value::as_array) {
            for r in req.iter().filter_map(Value::as_str) {
                w.len_field(19, r.as_bytes());
            }
        }
        match o.get("additionalProperties") {
            Some(Value::Bool(b)) => w.len_field(21, &msg(|a| a.varint_field(2, *b as u64))),
            Some(s @ Value::Object(_)) => w.len_field(21, &msg(|a| a.len_field(1, &schema(s)))),
            _ => {}
        }
        match o.get("type") {
            Some(Value::String(t)) => w.len_field(22, &msg(|a| a.len_field(1, t.as_bytes()))),
            Some(Value::Array(ts)) => w.len_field(
                22,
                &msg(|a| {
                    for t in ts.iter().filter_map(Value::as_str).filter(|t| *t != "null") {
                        a.len_field(1, t.as_bytes());
                    }
                }),
            ),
            _ => {}
        }
        if let Some(items) = o.get("items") {
            w.len_field(23, &msg(|a| a.len_field(1, &schema(items))));
        }
        if let Some(all) = o.get("allOf").and_then(Value::as_array) {
            for s in all {
                w.len_field(24, &schema(s));
            }
        }
        if let Some(Value::Object(props)) = o.get("properties") {
            let p = msg(|a| {
                for (name, s) in props {
                    a.len_field(
                        1,
                        &msg(|n| {
                            n.len_field(1, name.as_bytes());
                            n.len_field(2, &schema(s));
                        }),
                    );
                }
            });
            w.len_field(25, &p);
        }
        vendor_extensions(w, 31, o);
    })
}

fn operation(op: &Value) -> Vec<u8> {
    let Value::Object(o) = op else { return Vec::new() };
    msg(|w| {
        if let Some(id) = o.get("operationId").and_then(Value::as_str) {
            w.len_field(5, id.as_bytes());
        }
        vendor_extensions(w, 13, o);
    })
}

/// A Swagger 2.0 JSON document as `openapi.v2.Document`.
pub fn document(doc: &Value) -> Vec<u8> {
    msg(|w| {
        w.len_field(1, doc.get("swagger").and_then(Value::as_str).unwrap_or("2.0").as_bytes());
        if let Some(info) = doc.get("info") {
            w.len_field(
                2,
                &msg(|i| {
                    for (tag, key) in [(1, "title"), (2, "version")] {
                        if let Some(s) = info.get(key).and_then(Value::as_str) {
                            i.len_field(tag, s.as_bytes());
                        }
                    }
                }),
            );
        }
        if let Some(Value::Object(paths)) = doc.get("paths") {
            let p = msg(|pw| {
                for (path, item) in paths {
                    let Value::Object(item) = item else { continue };
                    let pi = msg(|iw| {
                        for (tag, method) in [(2, "get"), (3, "put"), (4, "post"), (5, "delete"), (8, "patch")] {
                            if let Some(op) = item.get(method) {
                                iw.len_field(tag, &operation(op));
                            }
                        }
                    });
                    pw.len_field(
                        2,
                        &msg(|n| {
                            n.len_field(1, path.as_bytes());
                            n.len_field(2, &pi);
                        }),
                    );
                }
            });
            w.len_field(8, &p);
        }
        if let Some(Value::Object(defs)) = doc.get("definitions") {
            let d = msg(|dw| {
                for (name, s) in defs {
                    dw.len_field(
                        1,
                        &msg(|n| {
                            n.len_field(1, name.as_bytes());
                            n.len_field(2, &schema(s));
                        }),
                    );
                }
            });
            w.len_field(9, &d);
        }
    })
}
