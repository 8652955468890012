//! `proto-table`: joins the messages of k8s-pb (field numbers and types) with the JSON names
//! of k8s-openapi's schemas and writes rkube-proto's `generated.rs`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use crate::go_fields::GoFields;
use crate::pb::{RawLabel, RawMessage, RawTy};

/// Packages of k8s-pb left out of the table: a test fixture, and metrics APIs that
/// kube-apiserver does not serve.
const EXCLUDED_PACKAGES: &[&str] = &["k8s.io.apimachinery.pkg.apis.testapigroup.", "k8s.io.metrics."];

/// The schema definitions of the typed model: definition name (`io.k8s.api.core.v1.Pod`) to
/// its property (JSON field) names.
pub type Definitions = BTreeMap<String, Vec<String>>;

/// Collects the definitions of every type of k8s-openapi with a schema.
pub fn openapi_definitions() -> Definitions {
    let mut gen = schemars::generate::SchemaSettings::openapi3().into_generator();
    crate::openapi_types::add_all(&mut gen);
    gen.take_definitions(true)
        .into_iter()
        .map(|(name, schema)| {
            let props = match schema.get("properties") {
                Some(serde_json::Value::Object(p)) => p.keys().cloned().collect(),
                _ => Vec::new(),
            };
            (name, props)
        })
        .collect()
}

/// Where a JSON name (or a message name) comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Source {
    /// The message's own schema.
    Schema,
    /// The schema of a type of the same name in another package (another version or group):
    /// the message, or this field of it, is not in the v1_33 model.
    SameType,
    /// The only spelling of this (normalized) name among all schemas' properties.
    AnyProperty,
    /// lowerCamelCase of the prost field name (the Rust struct name for messages), with
    /// all-caps words (`UID`, `TLS`) restored where the schemas only ever spell them so.
    Camel,
}

pub struct Field {
    pub json: String,
    pub source: Source,
    pub tag: u32,
    pub ty: Ty,
    pub label: Label,
    /// The prost field name.
    pub rust: String,
    /// The field holds a message whose fields are all properties of this message's schema:
    /// probably a Go embedded struct, inlined in JSON.
    pub embedded: bool,
    /// Go's JSON keeps the field's zero value: a message, a pointer, or a scalar without
    /// `omitempty`.
    pub keeps_zero: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ty {
    Scalar(&'static str),
    Message(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Label {
    Optional,
    Repeated,
    Map(&'static str),
}

pub struct Message {
    pub name: String,
    pub name_source: Source,
    /// Whether the message has a schema in the typed model.
    pub has_schema: bool,
    pub fields: Vec<Field>,
}

pub struct Table {
    /// Sorted by name.
    pub messages: Vec<Message>,
    /// The all-caps words used to restore lowerCamelCase names.
    pub acronyms: BTreeSet<String>,
    /// Ambiguities and other remarks for the report.
    pub notes: Vec<String>,
}

/// Lowercase alphanumerics only: `volume_id`, `volumeID` and `$ref`/`ref` compare equal.
fn normalize(s: &str) -> String {
    s.chars().filter(|c| c.is_ascii_alphanumeric()).map(|c| c.to_ascii_lowercase()).collect()
}

/// Undoes prost's snake_case: `int_val` -> `intVal`, `pod_i_ps` -> `podIPs`; a word found in
/// `acronyms` is written in capitals (`pod_uid` -> `podUID`).
pub fn lower_camel(snake: &str, acronyms: &BTreeSet<String>) -> String {
    let mut out = String::new();
    for (i, part) in snake.split('_').enumerate() {
        let mut chars = part.chars();
        if i == 0 {
            out.push_str(part);
        } else if acronyms.contains(&part.to_ascii_uppercase()) {
            out.push_str(&part.to_ascii_uppercase());
        } else if let Some(c) = chars.next() {
            out.push(c.to_ascii_uppercase());
            out.push_str(chars.as_str());
        }
    }
    out
}

/// The words of a name as prost (heck's snake_case) splits them: at non-alphanumerics,
/// before an uppercase letter that follows a lowercase one (digits keep the case of what
/// precedes them), and before the last capital of a run that a lowercase letter follows:
/// `insecureSkipTLSVerifyBackend` -> insecure, Skip, TLS, Verify, Backend; `podIPs` -> pod,
/// I, Ps; `openAPIV3Schema` -> open, APIV3, Schema.
fn words(name: &str) -> Vec<&str> {
    let mut words = Vec::new();
    for part in name.split(|c: char| !c.is_ascii_alphanumeric()).filter(|p| !p.is_empty()) {
        let b = part.as_bytes();
        let mut start = 0;
        // Whether the current word runs in lowercase (after a lowercase letter) or capitals.
        let mut lower = false;
        let mut upper = false;
        for i in 0..b.len() {
            let c = b[i];
            let next = b.get(i + 1).copied();
            if c.is_ascii_lowercase() {
                (lower, upper) = (true, false);
            } else if c.is_ascii_uppercase() {
                if upper && next.is_some_and(|n| n.is_ascii_lowercase()) && i > start {
                    words.push(&part[start..i]);
                    start = i;
                }
                (lower, upper) = (false, true);
            }
            if lower && next.is_some_and(|n| n.is_ascii_uppercase()) {
                words.push(&part[start..=i]);
                start = i + 1;
                (lower, upper) = (false, false);
            }
        }
        if start < part.len() {
            words.push(&part[start..]);
        }
    }
    words
}

/// prost's (heck's) snake_case of a name: `volumeID` -> `volume_id`, `podIPs` -> `pod_i_ps`.
pub fn snake(name: &str) -> String {
    words(name).iter().map(|w| w.to_ascii_lowercase()).collect::<Vec<_>>().join("_")
}

/// Common initialisms, written in capitals in Kubernetes' JSON names unless a schema writes
/// them otherwise.
const INITIALISMS: &[&str] = &[
    "ACL", "API", "CIDR", "CPU", "DNS", "FQDN", "GID", "HTTP", "HTTPS", "ID", "IP", "JSON", "QPS", "TCP", "TLS", "TTL",
    "UDP", "UID", "URI", "URL", "UUID",
];

/// The words that lowerCamelCase names write in capitals: the all-caps words of the schemas'
/// property names (after the first word) and the common initialisms, less those that some
/// property writes capitalized (`Uid`).
fn acronyms(defs: &Definitions) -> BTreeSet<String> {
    let mut caps: BTreeSet<String> = INITIALISMS.iter().map(|s| s.to_string()).collect();
    let mut capitalized = BTreeSet::new();
    for props in defs.values() {
        for p in props {
            for w in words(p).into_iter().skip(1) {
                let letters = w.chars().filter(char::is_ascii_alphabetic).count();
                if letters >= 2 && w.chars().all(|c| !c.is_ascii_lowercase()) {
                    caps.insert(w.to_string());
                } else {
                    capitalized.insert(w.to_ascii_uppercase());
                }
            }
        }
    }
    caps.difference(&capitalized).cloned().collect()
}

/// The schema package of a proto package: `k8s.io.api.core.v1` -> `io.k8s.api.core.v1`,
/// `k8s.io.apiextensions_apiserver.pkg..` -> `io.k8s.apiextensions-apiserver.pkg..`.
pub fn schema_package(proto_package: &str) -> String {
    let rest = proto_package.strip_prefix("k8s.io.").unwrap_or(proto_package);
    let (first, tail) = rest.split_once('.').unwrap_or((rest, ""));
    let mut out = format!("io.k8s.{}", first.replace('_', "-"));
    if !tail.is_empty() {
        out.push('.');
        out.push_str(tail);
    }
    out
}

/// The one spelling in `spellings`, if there is exactly one.
fn one<'a>(spellings: impl IntoIterator<Item = &'a str>) -> Result<Option<&'a str>, Vec<&'a str>> {
    let set: BTreeSet<&str> = spellings.into_iter().collect();
    match set.len() {
        0 => Ok(None),
        1 => Ok(set.into_iter().next()),
        _ => Err(set.into_iter().collect()),
    }
}

/// prost name (snake_case) of a property -> its spelling, for one definition.
fn props_of(defs: &Definitions, def: &str) -> BTreeMap<String, String> {
    defs.get(def).map(|p| p.iter().map(|p| (snake(p), p.clone())).collect()).unwrap_or_default()
}

pub fn build(raw: Vec<RawMessage>, defs: &Definitions, go: &GoFields) -> Result<Table, String> {
    let mut notes = Vec::new();
    let go_by_name: BTreeMap<String, &BTreeMap<u32, crate::go_fields::GoField>> =
        go.iter().map(|(k, v)| (k.to_ascii_lowercase(), v)).collect();
    let raw: Vec<RawMessage> =
        raw.into_iter().filter(|m| !EXCLUDED_PACKAGES.iter().any(|p| m.package.starts_with(p))).collect();
    let raw_by_name: BTreeMap<(&str, &str), &RawMessage> =
        raw.iter().map(|m| ((m.package.as_str(), m.name.as_str()), m)).collect();
    let acronyms = acronyms(defs);

    // Definitions by normalized type name (all packages); all property spellings by their
    // prost (snake_case) name.
    let mut defs_by_type: BTreeMap<String, Vec<&str>> = BTreeMap::new();
    let mut all_props: BTreeMap<String, BTreeSet<&str>> = BTreeMap::new();
    for (name, props) in defs {
        let ty = name.rsplit('.').next().unwrap_or(name);
        defs_by_type.entry(normalize(ty)).or_default().push(name);
        for p in props {
            all_props.entry(snake(p)).or_default().insert(p);
        }
    }

    // Per message (package, Rust name): proto name, its source, its own definition and the
    // same-named definitions of other packages.
    struct Named<'d> {
        full: String,
        source: Source,
        own: Option<&'d str>,
        others: Vec<&'d str>,
    }
    let mut names: BTreeMap<(String, String), Named> = BTreeMap::new();
    for m in &raw {
        let own_name = format!("{}.", schema_package(&m.package));
        let same: &[&str] = defs_by_type.get(&normalize(&m.name)).map(Vec::as_slice).unwrap_or_default();
        let own = same.iter().copied().find(|d| d.strip_prefix(&own_name).is_some_and(|t| !t.contains('.')));
        let others: Vec<&str> = same.iter().copied().filter(|d| Some(*d) != own).collect();
        let short_of = |d: &str| d.rsplit('.').next().unwrap_or(d).to_string();
        let (short, source) = match (own, one(others.iter().map(|d| d.rsplit('.').next().unwrap_or(d)))) {
            (Some(d), _) => (short_of(d), Source::Schema),
            (None, Ok(Some(s))) => (s.to_string(), Source::SameType),
            (None, Ok(None)) => (m.name.clone(), Source::Camel),
            (None, Err(spellings)) => {
                notes.push(format!("{}.{}: type name spelled {spellings:?} in schemas", m.package, m.name));
                (m.name.clone(), Source::Camel)
            }
        };
        let full = format!("{}.{short}", m.package);
        if names.insert((m.package.clone(), m.name.clone()), Named { full, source, own, others }).is_some() {
            return Err(format!("{}.{} defined twice", m.package, m.name));
        }
    }

    let mut messages = Vec::new();
    for m in &raw {
        let named = &names[&(m.package.clone(), m.name.clone())];
        let name = named.full.clone();
        let own: BTreeMap<String, String> = named.own.map(|d| props_of(defs, d)).unwrap_or_default();
        let others: Vec<BTreeMap<String, String>> = named.others.iter().map(|d| props_of(defs, d)).collect();
        let go_msg = go_by_name.get(&name.to_ascii_lowercase()).copied();
        if go_msg.is_none() && m.fields.iter().any(|f| matches!(f.ty, RawTy::Scalar(_))) {
            notes.push(format!("{name}: no Go type with protobuf tags; scalar zeros are dropped"));
        }
        let mut fields = Vec::new();
        for f in &m.fields {
            let key = f.name.as_str();
            let mut camel = lower_camel(&f.name, &acronyms);
            if snake(&camel) != f.name {
                notes.push(format!("{name}.{}: {camel} does not give back the prost name", f.name));
                camel = lower_camel(&f.name, &BTreeSet::new());
            }
            // In other types' schemas, the property of this prost name, or else one of the
            // same letters (prost names do not always come from the JSON name: `u_id`, `pod_ips`).
            let mut from_others = one(others.iter().filter_map(|o| o.get(key)).map(String::as_str));
            if from_others == Ok(None) {
                let loose = others.iter().flat_map(|o| o.values()).filter(|p| normalize(p) == normalize(key));
                from_others = one(loose.map(String::as_str));
            }
            let from_any = one(all_props.get(key).into_iter().flatten().copied());
            let own_loose = own.values().find(|p| normalize(p) == normalize(key));
            let (json, source) = if let Some(p) = own.get(key) {
                (p.clone(), Source::Schema)
            } else if let Some(p) = own_loose {
                notes.push(format!("{name}.{}: matched property {p} ignoring case", f.name));
                (p.clone(), Source::Schema)
            } else if let Ok(Some(p)) = from_others {
                (p.to_string(), Source::SameType)
            } else if let Ok(Some(p)) = from_any {
                (p.to_string(), Source::AnyProperty)
            } else {
                for spellings in [from_others.err(), from_any.err()].into_iter().flatten() {
                    notes.push(format!("{name}.{}: spelled {spellings:?} in schemas; used {camel}", f.name));
                }
                (camel, Source::Camel)
            };
            let ty = match &f.ty {
                RawTy::Scalar(s) => Ty::Scalar(s),
                RawTy::Message(pkg, rust) => match names.get(&(pkg.clone(), rust.clone())) {
                    Some(n) => Ty::Message(n.full.clone()),
                    None => return Err(format!("{name}.{}: unknown message {pkg}.{rust}", f.name)),
                },
            };
            let label = match f.label {
                RawLabel::Optional => Label::Optional,
                RawLabel::Repeated => Label::Repeated,
                RawLabel::Map(k) => Label::Map(k),
            };
            // An embedded struct: a message field that is not a property, while the fields of
            // its message are (at least half of them, for fields newer than the own schema;
            // all, in another version's schema).
            let parent = if named.own.is_some() { Some(&own) } else { others.first() };
            let embedded = match (&f.ty, &label, parent) {
                (RawTy::Message(pkg, rust), Label::Optional, Some(parent)) if source != Source::Schema => {
                    raw_by_name.get(&(pkg.as_str(), rust.as_str())).is_some_and(|inner| {
                        let present = inner.fields.iter().filter(|g| parent.contains_key(&g.name)).count();
                        let enough = if named.own.is_some() {
                            2 * present >= inner.fields.len()
                        } else {
                            present == inner.fields.len()
                        };
                        !inner.fields.is_empty() && !parent.contains_key(key) && enough
                    })
                }
                _ => false,
            };
            let go_field = go_msg.and_then(|g| g.get(&f.tag));
            let mut json = json;
            if let Some(g) = go_field {
                // The Go type's JSON tag is what kube-apiserver writes.
                if !g.json.is_empty() && g.json != json {
                    notes.push(format!("{name}.{}: the schemas gave {json}; the Go type's {} is used", f.name, g.json));
                    json = g.json.clone();
                }
            } else if go_msg.is_some() {
                notes.push(format!("{name}.{}: tag {} not in the Go type", f.name, f.tag));
            }
            // Go never leaves out a struct (a message); `omitempty` only drops zero scalars.
            let keeps_zero = matches!(ty, Ty::Message(_)) || go_field.is_some_and(|g| g.keeps_zero());
            fields.push(Field { json, source, tag: f.tag, ty, label, rust: f.name.clone(), embedded, keeps_zero });
        }
        let mut seen = BTreeSet::new();
        if let Some(dup) = fields.iter().find(|f| !seen.insert(f.json.as_str())) {
            return Err(format!("{name}: JSON name {} used twice", dup.json));
        }
        messages.push(Message { name, name_source: named.source, has_schema: named.own.is_some(), fields });
    }
    messages.sort_by(|a, b| a.name.cmp(&b.name));
    if let Some(w) = messages.windows(2).find(|w| w[0].name == w[1].name) {
        return Err(format!("message {} defined twice", w[0].name));
    }
    Ok(Table { messages, acronyms, notes })
}

fn ty_expr(ty: &Ty) -> String {
    match ty {
        Ty::Scalar(s) => {
            let v = match *s {
                "string" => "String",
                "bytes" => "Bytes",
                "bool" => "Bool",
                "int32" | "sint32" => "Int32",
                "int64" | "sint64" => "Int64",
                "uint32" => "Uint32",
                "uint64" => "Uint64",
                "double" => "Double",
                "float" => "Float",
                other => unreachable!("scalar {other}"),
            };
            format!("Ty::{v}")
        }
        Ty::Message(m) => format!("Ty::Message({m:?})"),
    }
}

/// Renders the table as Rust source (to be formatted by rustfmt).
pub fn render(table: &Table) -> String {
    let mut out = String::new();
    out.push_str(
        "// Generated by `cargo run -p xtask -- proto-table` from k8s-pb 0.9.0 (messages, field\n\
         // numbers and types), k8s-openapi 0.29 (v1_33) (JSON names) and crates/xtask/go-fields.txt\n\
         // (which zeros JSON keeps). Do not edit.\n\n\
         use crate::table::{FieldDef, Label, MessageDef, Ty};\n\n\
         /// The messages of the Kubernetes API, sorted by name.\n\
         pub static MESSAGES: &[MessageDef] = &[\n",
    );
    for m in &table.messages {
        let _ = writeln!(out, "MessageDef {{ name: {:?}, fields: &[", m.name);
        for f in &m.fields {
            let label = match f.label {
                Label::Optional => "Label::Optional".to_string(),
                Label::Repeated => "Label::Repeated".to_string(),
                Label::Map(k) => format!("Label::Map({})", ty_expr(&Ty::Scalar(k))),
            };
            let _ = writeln!(
                out,
                "FieldDef {{ json: {:?}, tag: {}, ty: {}, label: {label}, inline: {}, keeps_zero: {} }},",
                f.json,
                f.tag,
                ty_expr(&f.ty),
                f.embedded,
                f.keeps_zero
            );
        }
        out.push_str("] },\n");
    }
    out.push_str("];\n");
    out
}

/// A human-readable account of the names that did not come from the message's own schema.
pub fn report(table: &Table, notes: &[String]) -> String {
    let mut out = String::new();
    let all = || table.messages.iter().flat_map(|m| m.fields.iter().map(move |f| (m, f)));
    let _ = writeln!(out, "{} messages, {} fields", table.messages.len(), all().count());
    let count = |s: Source| all().filter(|(_, f)| f.source == s).count();
    let _ = writeln!(
        out,
        "JSON names: {} from the message's schema, {} from a same-named type's schema, {} the only \
         spelling among all properties, {} lowerCamelCase",
        count(Source::Schema),
        count(Source::SameType),
        count(Source::AnyProperty),
        count(Source::Camel)
    );
    let _ = writeln!(out, "words written in capitals in lowerCamelCase names: {:?}", table.acronyms);
    let no_schema: Vec<&Message> = table.messages.iter().filter(|m| !m.has_schema).collect();
    let _ = writeln!(out, "\nmessages without a schema in k8s-openapi (v1_33): {}", no_schema.len());
    for m in &no_schema {
        let how = match m.name_source {
            Source::SameType => " (name spelled as a same-named type's schema)",
            _ => "",
        };
        let _ = writeln!(out, "  {}{how}", m.name);
    }
    let _ = writeln!(out, "\nmessage fields that are probably Go embedded structs (inlined in JSON):");
    for (m, f) in all().filter(|(_, f)| f.embedded) {
        let _ = writeln!(out, "  {}: {} (tag {})", m.name, f.json, f.tag);
    }
    for (source, title) in [
        (Source::SameType, "fields named by a same-named type's schema (another version or group)"),
        (Source::AnyProperty, "fields named by the only spelling among all properties"),
        (Source::Camel, "fields named by lowerCamelCase of the prost name"),
    ] {
        let _ = writeln!(out, "\n{title}:");
        for (m, f) in all().filter(|(_, f)| f.source == source) {
            let schema = if m.has_schema { " [the message has a schema]" } else { "" };
            let _ = writeln!(out, "  {}: {} -> {}{schema}", m.name, f.rust, f.json);
        }
    }
    if !notes.is_empty() || !table.notes.is_empty() {
        let _ = writeln!(out, "\nnotes:");
        for n in notes.iter().chain(&table.notes) {
            let _ = writeln!(out, "  {n}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pb::RawField;

    #[test]
    fn names() {
        let none = BTreeSet::new();
        assert_eq!(lower_camel("int_val", &none), "intVal");
        assert_eq!(lower_camel("content_encoding", &none), "contentEncoding");
        assert_eq!(lower_camel("pod_i_ps", &none), "podIPs");
        assert_eq!(lower_camel("type", &none), "type");
        let caps: BTreeSet<String> = ["UID".to_string(), "TLS".to_string()].into();
        assert_eq!(lower_camel("pod_uid", &caps), "podUID");
        assert_eq!(lower_camel("uid", &caps), "uid");
        assert_eq!(lower_camel("insecure_skip_tls_verify", &caps), "insecureSkipTLSVerify");
        assert_eq!(words("insecureSkipTLSVerifyBackend"), ["insecure", "Skip", "TLS", "Verify", "Backend"]);
        assert_eq!(words("podIPs"), ["pod", "I", "Ps"]);
        assert_eq!(snake("openAPIV3Schema"), "open_apiv3_schema");
        assert_eq!(snake("fieldsV1"), "fields_v1");
        assert_eq!(snake("x-kubernetes-int-or-string"), "x_kubernetes_int_or_string");
        assert_eq!(snake("$ref"), "ref");
        assert_eq!(snake("podCIDRs"), "pod_cid_rs");
        assert_eq!(snake("a1B"), "a1_b");
        assert_eq!(snake("A1B"), "a1b");
        assert_eq!(snake("subResource"), "sub_resource");
        assert_eq!(schema_package("k8s.io.api.core.v1"), "io.k8s.api.core.v1");
        assert_eq!(
            schema_package("k8s.io.apiextensions_apiserver.pkg.apis.apiextensions.v1"),
            "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1"
        );
        assert_eq!(normalize("$ref"), normalize("ref"));
        assert_eq!(normalize("volumeID"), normalize("volume_id"));
    }

    fn field(name: &str, tag: u32, ty: RawTy) -> RawField {
        RawField { name: name.into(), tag, ty, label: RawLabel::Optional }
    }

    fn defs(d: &[(&str, &[&str])]) -> Definitions {
        d.iter().map(|(n, p)| (n.to_string(), p.iter().map(|p| p.to_string()).collect())).collect()
    }

    #[test]
    fn joins_names() {
        let core = "k8s.io.api.core.v1".to_string();
        let raw = vec![
            RawMessage {
                package: core.clone(),
                name: "AwsElasticBlockStoreVolumeSource".into(),
                fields: vec![
                    field("volume_id", 1, RawTy::Scalar("string")),
                    field("new_field", 2, RawTy::Scalar("bool")),
                    field("node_uid", 3, RawTy::Scalar("string")),
                ],
            },
            RawMessage {
                package: "k8s.io.api.core.v1beta1".into(),
                name: "Thing".into(),
                fields: vec![
                    field("host_ipc", 1, RawTy::Scalar("bool")),
                    field("source", 2, RawTy::Message(core.clone(), "AwsElasticBlockStoreVolumeSource".into())),
                    field("port", 3, RawTy::Scalar("int32")),
                    field("sub_resource", 4, RawTy::Scalar("string")),
                ],
            },
        ];
        let defs = defs(&[
            ("io.k8s.api.core.v1.AWSElasticBlockStoreVolumeSource", &["volumeID"]),
            ("io.k8s.api.core.v1.PodSpec", &["hostIPC", "podUID", "subresource"]),
            ("io.k8s.api.core.v1.DaemonEndpoint", &["Port"]),
            ("io.k8s.api.core.v1.Thing", &["port"]),
        ]);
        let t = build(raw, &defs, &GoFields::new()).unwrap();
        let aws = &t.messages[0];
        assert_eq!(aws.name, "k8s.io.api.core.v1.AWSElasticBlockStoreVolumeSource");
        let got: Vec<(&str, Source)> = aws.fields.iter().map(|f| (f.json.as_str(), f.source)).collect();
        assert_eq!(got, [("volumeID", Source::Schema), ("newField", Source::Camel), ("nodeUID", Source::Camel)]);
        let thing = &t.messages[1];
        assert_eq!(thing.name, "k8s.io.api.core.v1beta1.Thing");
        let got: Vec<(&str, Source)> = thing.fields.iter().map(|f| (f.json.as_str(), f.source)).collect();
        assert_eq!(
            got,
            [
                ("hostIPC", Source::AnyProperty),
                ("source", Source::Camel),
                ("port", Source::SameType),
                ("subResource", Source::Camel)
            ]
        );
        assert_eq!(thing.fields[1].ty, Ty::Message("k8s.io.api.core.v1.AWSElasticBlockStoreVolumeSource".into()));
        let src = render(&t);
        assert!(src.contains(r#"ty: Ty::Message("k8s.io.api.core.v1.AWSElasticBlockStoreVolumeSource")"#));
    }

    #[test]
    fn finds_embedded_structs() {
        let core = "k8s.io.api.core.v1".to_string();
        let raw = vec![
            RawMessage {
                package: core.clone(),
                name: "LocalObjectReference".into(),
                fields: vec![field("name", 1, RawTy::Scalar("string"))],
            },
            RawMessage {
                package: core.clone(),
                name: "SecretEnvSource".into(),
                fields: vec![
                    field("local_object_reference", 1, RawTy::Message(core.clone(), "LocalObjectReference".into())),
                    field("optional", 2, RawTy::Scalar("bool")),
                ],
            },
        ];
        let defs = defs(&[
            ("io.k8s.api.core.v1.LocalObjectReference", &["name"]),
            ("io.k8s.api.core.v1.SecretEnvSource", &["name", "optional"]),
        ]);
        let t = build(raw, &defs, &GoFields::new()).unwrap();
        let env = &t.messages[1];
        assert_eq!(env.fields[0].json, "localObjectReference");
        assert!(env.fields[0].embedded);
        assert!(!env.fields[1].embedded);
    }
}
