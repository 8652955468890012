//! A line-based reader of the prost-generated sources of the `k8s-pb` crate: for each
//! `#[derive(.., ::prost::Message)] pub struct X { .. }` it collects the fields from their
//! `#[prost(..)]` attributes and the Rust type of the `pub name: Type,` that follows.

use std::fmt;
use std::path::Path;

/// A scalar type, a message (by package and Rust name) or a map.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RawTy {
    Scalar(&'static str),
    /// A message: proto package (`k8s.io.api.core.v1`) and the Rust struct name.
    Message(String, String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RawLabel {
    Optional,
    Repeated,
    /// A map with this scalar key type.
    Map(&'static str),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawField {
    /// The Rust field name without `r#` (`api_version`, `type`).
    pub name: String,
    pub tag: u32,
    pub ty: RawTy,
    pub label: RawLabel,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawMessage {
    /// Proto package, e.g. `k8s.io.api.core.v1`.
    pub package: String,
    /// The Rust struct name (prost may have changed the case of the proto name).
    pub name: String,
    pub fields: Vec<RawField>,
}

#[derive(Debug)]
pub struct Error(pub String);

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The scalar protobuf types and their names in `#[prost(..)]`.
const SCALARS: &[&str] =
    &["string", "bytes", "bool", "int32", "int64", "uint32", "uint64", "sint32", "sint64", "double", "float"];

fn scalar(name: &str) -> Option<&'static str> {
    SCALARS.iter().copied().find(|s| *s == name)
}

/// Reads all `mod.rs` files under `src` (a k8s-pb `src` directory). Returns the messages and
/// notes about what was skipped.
pub fn read_tree(src: &Path) -> Result<(Vec<RawMessage>, Vec<String>), Error> {
    let mut files = Vec::new();
    collect_mod_files(src, &mut Vec::new(), &mut files)?;
    files.sort();
    let mut messages = Vec::new();
    let mut notes = Vec::new();
    for (module, path) in files {
        let text = std::fs::read_to_string(&path).map_err(|e| Error(format!("{}: {e}", path.display())))?;
        let (mut m, n) = parse_module(&module, &text).map_err(|Error(e)| Error(format!("{}: {e}", path.display())))?;
        messages.append(&mut m);
        notes.extend(n.into_iter().map(|n| format!("{}: {n}", path.display())));
    }
    Ok((messages, notes))
}

fn collect_mod_files(
    dir: &Path,
    module: &mut Vec<String>,
    out: &mut Vec<(Vec<String>, std::path::PathBuf)>,
) -> Result<(), Error> {
    let entries = std::fs::read_dir(dir).map_err(|e| Error(format!("{}: {e}", dir.display())))?;
    for entry in entries {
        let entry = entry.map_err(|e| Error(format!("{}: {e}", dir.display())))?;
        let path = entry.path();
        if path.is_dir() {
            module.push(entry.file_name().to_string_lossy().into_owned());
            collect_mod_files(&path, module, out)?;
            module.pop();
        } else if entry.file_name() == "mod.rs" && !module.is_empty() {
            out.push((module.clone(), path));
        }
    }
    Ok(())
}

/// The proto package of a k8s-pb module path (`["api", "core", "v1"]` -> `k8s.io.api.core.v1`).
pub fn package_of(module: &[String]) -> String {
    let mut p = String::from("k8s.io");
    for m in module {
        p.push('.');
        p.push_str(m);
    }
    p
}

/// Parses one module file. `module` is its module path below the crate root.
pub fn parse_module(module: &[String], text: &str) -> Result<(Vec<RawMessage>, Vec<String>), Error> {
    let package = package_of(module);
    let mut messages = Vec::new();
    let mut notes = Vec::new();
    let mut derive_message = false;
    let mut current: Option<RawMessage> = None;
    let mut lines = text.lines().enumerate().peekable();
    while let Some((no, line)) = lines.next() {
        let t = line.trim();
        let at = |msg: String| Error(format!("line {}: {msg}", no + 1));
        let Some(msg) = current.as_mut() else {
            if t.starts_with("#[derive(") {
                derive_message = t.contains("::prost::Message");
                for other in ["::prost::Enumeration", "::prost::Oneof"] {
                    if t.contains(other) {
                        notes.push(format!("line {}: skipped a {other} type", no + 1));
                    }
                }
            } else if let Some(rest) = t.strip_prefix("pub struct ") {
                if !std::mem::take(&mut derive_message) {
                    continue;
                }
                let name: String = rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
                let rest = rest[name.len()..].trim();
                let m = RawMessage { package: package.clone(), name, fields: Vec::new() };
                match rest {
                    "{}" | ";" => messages.push(m),
                    "{" => current = Some(m),
                    _ => return Err(at(format!("unexpected struct header: {t}"))),
                }
            }
            continue;
        };
        if line == "}" {
            let mut m = current.take().expect("current message");
            m.fields.sort_by_key(|f| f.tag);
            if let Some(w) = m.fields.windows(2).find(|w| w[0].tag == w[1].tag) {
                return Err(at(format!("{}: tag {} used twice", m.name, w[0].tag)));
            }
            messages.push(m);
            continue;
        }
        let Some(attr) = t.strip_prefix("#[prost(") else {
            continue;
        };
        // The attribute, possibly over several lines, up to its closing `)]`.
        let mut attr = attr.to_string();
        while !attr.ends_with(")]") {
            let (_, next) = lines.next().ok_or_else(|| at("unterminated #[prost(".into()))?;
            attr.push(' ');
            attr.push_str(next.trim());
        }
        attr.truncate(attr.len() - 2);
        // The field declaration: skip doc comments and other attributes, then read up to the
        // `,` that ends it.
        let mut decl = String::new();
        for (_, next) in lines.by_ref() {
            let n = next.trim();
            if decl.is_empty() && (n.starts_with("//") || n.starts_with("#[")) {
                continue;
            }
            decl.push_str(n);
            if decl.ends_with(',') && angle_depth(&decl) == 0 {
                break;
            }
        }
        if !decl.ends_with(',') {
            return Err(at(format!("no field declaration after #[prost({attr})]")));
        }
        match parse_field(module, &attr, &decl) {
            Ok(Some(f)) => msg.fields.push(f),
            Ok(None) => notes.push(format!("line {}: skipped oneof field in {}: {decl}", no + 1, msg.name)),
            Err(e) => return Err(at(format!("{}: {e}", msg.name))),
        }
    }
    if let Some(m) = current {
        return Err(Error(format!("struct {} not closed", m.name)));
    }
    Ok((messages, notes))
}

fn angle_depth(s: &str) -> i32 {
    s.chars().map(|c| (c == '<') as i32 - (c == '>') as i32).sum()
}

/// Splits `a, b = "x, y", c` at the commas outside quotes.
fn split_attr(attr: &str) -> Vec<String> {
    let mut parts = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    for c in attr.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                cur.push(c);
            }
            ',' if !quoted => parts.push(std::mem::take(&mut cur)),
            _ => cur.push(c),
        }
    }
    parts.push(cur);
    parts.into_iter().map(|p| p.trim().to_string()).filter(|p| !p.is_empty()).collect()
}

/// `key = "value"` -> (`key`, Some(`value`)); `key` -> (`key`, None).
fn key_value(part: &str) -> (&str, Option<&str>) {
    match part.split_once('=') {
        Some((k, v)) => (k.trim(), Some(v.trim().trim_matches('"'))),
        None => (part, None),
    }
}

/// Parses one field from its attribute (without `#[prost(` and `)]`) and its declaration
/// (`pub name: Type,`). Returns `None` for a `oneof` field.
fn parse_field(module: &[String], attr: &str, decl: &str) -> Result<Option<RawField>, String> {
    let decl = decl.strip_prefix("pub ").ok_or_else(|| format!("not a pub field: {decl}"))?;
    let (name, rust_ty) = decl.split_once(':').ok_or_else(|| format!("not a field: {decl}"))?;
    let name = name.trim().trim_start_matches("r#").to_string();
    let rust_ty: String = rust_ty.trim_end_matches(',').chars().filter(|c| !c.is_whitespace()).collect();
    let parts = split_attr(attr);
    if parts.iter().any(|p| key_value(p).0 == "oneof") {
        return Ok(None);
    }
    let mut tag = None;
    let mut kind = None;
    let mut label = None;
    for part in &parts {
        let (k, v) = key_value(part);
        match (k, v) {
            ("tag", Some(v)) => tag = Some(v.parse::<u32>().map_err(|e| format!("tag {v}: {e}"))?),
            ("optional" | "required", None) => label = Some(RawLabel::Optional),
            ("repeated", None) => label = Some(RawLabel::Repeated),
            ("packed" | "boxed" | "default" | "json_name", _) => {}
            ("message", None) => kind = Some(RawTy::Message(String::new(), String::new())),
            ("enumeration", Some(_)) => kind = Some(RawTy::Scalar("int32")),
            ("bytes", _) => kind = Some(RawTy::Scalar("bytes")),
            ("map" | "btree_map" | "hash_map", Some(v)) => {
                let (key, value) = v.split_once(',').ok_or_else(|| format!("map without value type: {part}"))?;
                let key = scalar(key.trim()).ok_or_else(|| format!("unknown map key type: {part}"))?;
                label = Some(RawLabel::Map(key));
                kind = Some(match value.trim() {
                    "message" => RawTy::Message(String::new(), String::new()),
                    v if v.starts_with("enumeration") => RawTy::Scalar("int32"),
                    v => RawTy::Scalar(scalar(v).ok_or_else(|| format!("unknown map value type: {part}"))?),
                });
            }
            (k, None) if scalar(k).is_some() => kind = scalar(k).map(RawTy::Scalar),
            _ => return Err(format!("unknown #[prost] item `{part}` in #[prost({attr})]")),
        }
    }
    let tag = tag.ok_or_else(|| format!("no tag in #[prost({attr})]"))?;
    let label = label.ok_or_else(|| format!("no label in #[prost({attr})]"))?;
    let mut ty = kind.ok_or_else(|| format!("no type in #[prost({attr})]"))?;
    if let RawTy::Message(..) = ty {
        let path = message_path(&rust_ty, matches!(label, RawLabel::Map(_)))
            .ok_or_else(|| format!("cannot find the message type in `{rust_ty}`"))?;
        ty = resolve(module, path)?;
    }
    Ok(Some(RawField { name, tag, ty, label }))
}

/// The path of the message type inside a field's Rust type: unwraps `Option<..>`, `Vec<..>`,
/// `Box<..>`, and takes the value type of a map.
fn message_path(rust_ty: &str, map: bool) -> Option<&str> {
    let mut t = rust_ty;
    loop {
        let Some(open) = t.find('<') else {
            return Some(t);
        };
        let outer = &t[..open];
        // rustfmt leaves a trailing comma in generic arguments split over lines.
        let inner = t[open + 1..].strip_suffix('>')?.trim_end_matches(',');
        let last = outer.rsplit("::").next()?;
        t = match last {
            "Option" | "Vec" | "Box" => inner,
            "BTreeMap" | "HashMap" if map => top_level_split(inner)?.1.trim_end_matches(','),
            _ => return None,
        };
    }
}

/// Splits `K, V` at the top-level comma.
fn top_level_split(s: &str) -> Option<(&str, &str)> {
    let mut depth = 0;
    for (i, c) in s.char_indices() {
        match c {
            '<' => depth += 1,
            '>' => depth -= 1,
            ',' if depth == 0 => return Some((&s[..i], &s[i + 1..])),
            _ => {}
        }
    }
    None
}

/// Resolves a type path relative to `module` (`super::super::x::Y`, `crate::x::Y`, `Y`).
fn resolve(module: &[String], path: &str) -> Result<RawTy, String> {
    let mut segments: Vec<&str> = path.split("::").collect();
    let name = segments.pop().filter(|n| !n.is_empty()).ok_or_else(|| format!("bad type path {path}"))?;
    let mut base: Vec<String> = module.to_vec();
    let mut rest = segments.as_slice();
    if let Some(("crate", r)) = rest.split_first().map(|(a, r)| (*a, r)) {
        base.clear();
        rest = r;
    }
    while let Some(("super", r)) = rest.split_first().map(|(a, r)| (*a, r)) {
        base.pop().ok_or_else(|| format!("too many `super` in {path}"))?;
        rest = r;
    }
    if rest.first().is_some_and(|s| s.is_empty() || *s == "self") {
        return Err(format!("unsupported type path {path}"));
    }
    base.extend(rest.iter().map(|s| s.to_string()));
    Ok(RawTy::Message(package_of(&base), name.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn module(m: &str) -> Vec<String> {
        m.split("::").map(str::to_string).collect()
    }

    const SAMPLE: &str = r#"// This file is @generated by prost-build.
/// Doc.
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct Pod {
    /// Standard object's metadata.
    #[prost(message, optional, tag = "1")]
    pub metadata: ::core::option::Option<
        super::super::super::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    >,
    #[prost(message, optional, tag = "3")]
    pub status: ::core::option::Option<PodStatus>,
    #[prost(message, optional, tag = "2")]
    pub spec: ::core::option::Option<PodSpec>,
}
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct Patch {}
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct X {
    #[prost(btree_map = "string, message", tag = "1")]
    pub limits: ::prost::alloc::collections::BTreeMap<
        ::prost::alloc::string::String,
        super::super::super::apimachinery::pkg::api::resource::Quantity,
    >,
    #[prost(btree_map = "string, bytes", tag = "2")]
    pub data: ::prost::alloc::collections::BTreeMap<::prost::alloc::string::String, ::prost::alloc::vec::Vec<u8>>,
    #[prost(message, repeated, tag = "3")]
    pub items: ::prost::alloc::vec::Vec<Pod>,
    #[prost(int64, repeated, packed = "false", tag = "4")]
    pub ids: ::prost::alloc::vec::Vec<i64>,
    #[prost(string, optional, tag = "5")]
    pub r#type: ::core::option::Option<::prost::alloc::string::String>,
    #[prost(bytes = "vec", optional, tag = "6")]
    pub raw: ::core::option::Option<::prost::alloc::vec::Vec<u8>>,
    #[prost(message, optional, boxed, tag = "7")]
    pub not: ::core::option::Option<::prost::alloc::boxed::Box<X>>,
}

impl crate::Resource for Pod {
    const KIND: &'static str = "Pod";
}
"#;

    #[test]
    fn parses_structs_fields_and_types() {
        let (msgs, notes) = parse_module(&module("api::core::v1"), SAMPLE).unwrap();
        assert!(notes.is_empty(), "{notes:?}");
        let names: Vec<&str> = msgs.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, ["Pod", "Patch", "X"]);
        let pod = &msgs[0];
        assert_eq!(pod.package, "k8s.io.api.core.v1");
        let tags: Vec<u32> = pod.fields.iter().map(|f| f.tag).collect();
        assert_eq!(tags, [1, 2, 3], "fields are in tag order");
        assert_eq!(
            pod.fields[0].ty,
            RawTy::Message("k8s.io.apimachinery.pkg.apis.meta.v1".into(), "ObjectMeta".into())
        );
        assert_eq!(pod.fields[1].ty, RawTy::Message("k8s.io.api.core.v1".into(), "PodSpec".into()));
        let x = &msgs[2].fields;
        assert_eq!(x[0].label, RawLabel::Map("string"));
        assert_eq!(x[0].ty, RawTy::Message("k8s.io.apimachinery.pkg.api.resource".into(), "Quantity".into()));
        assert_eq!((&x[1].label, &x[1].ty), (&RawLabel::Map("string"), &RawTy::Scalar("bytes")));
        assert_eq!(
            (&x[2].label, &x[2].ty),
            (&RawLabel::Repeated, &RawTy::Message("k8s.io.api.core.v1".into(), "Pod".into()))
        );
        assert_eq!((&x[3].label, &x[3].ty), (&RawLabel::Repeated, &RawTy::Scalar("int64")));
        assert_eq!((x[4].name.as_str(), &x[4].ty), ("type", &RawTy::Scalar("string")));
        assert_eq!(x[5].ty, RawTy::Scalar("bytes"));
        assert_eq!(x[6].ty, RawTy::Message("k8s.io.api.core.v1".into(), "X".into()));
    }

    #[test]
    fn skips_oneof_and_rejects_unknown_items() {
        let text = "#[derive(::prost::Message)]\npub struct A {\n    #[prost(oneof = \"a::B\", tags = \"1, 2\")]\n    pub b: ::core::option::Option<a::B>,\n}\n";
        let (msgs, notes) = parse_module(&module("api::x::v1"), text).unwrap();
        assert!(msgs[0].fields.is_empty());
        assert_eq!(notes.len(), 1);
        let bad = "#[derive(::prost::Message)]\npub struct A {\n    #[prost(fixed99, optional, tag = \"1\")]\n    pub b: u32,\n}\n";
        assert!(parse_module(&module("api::x::v1"), bad).is_err());
    }
}
