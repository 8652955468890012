//! `go-fields`: reads the Go API types of Kubernetes (the `types.go` files of k8s.io/api,
//! apimachinery, apiextensions-apiserver and kube-aggregator) and writes, per protobuf
//! message, how Go writes each field's zero value in JSON: a pointer field (`*int32`) keeps
//! a zero that was set, a field without `omitempty` always writes it, any other field drops
//! it. Protobuf cannot tell a pointer's zero from unset, so the decoder needs this to give
//! the JSON kube-apiserver gives (`leaseTransitions: 0` kept, `status.replicas: 0` dropped).
//!
//! The result is committed (`crates/xtask/go-fields.txt`) so the table can be regenerated
//! without the Go sources; one line per message:
//! `k8s.io.api.coordination.v1.LeaseSpec 1=holderIdentity:p 2=leaseDurationSeconds:p ...`
//! with `p` for a pointer, `o` for `omitempty`, nothing for neither.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

/// The Go module directories read, and the protobuf package prefix of each.
const MODULES: &[(&str, &str)] = &[
    ("api", "k8s.io.api"),
    ("apimachinery", "k8s.io.apimachinery"),
    ("apiextensions-apiserver", "k8s.io.apiextensions_apiserver"),
    ("kube-aggregator", "k8s.io.kube_aggregator"),
];

/// One Go struct field with a protobuf tag.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GoField {
    pub json: String,
    pub pointer: bool,
    pub omitempty: bool,
}

impl GoField {
    /// Whether Go's JSON has this field when it holds its zero value and was set (or, for
    /// a non-pointer, always).
    pub fn keeps_zero(&self) -> bool {
        self.pointer || !self.omitempty
    }
}

/// Message full name -> protobuf tag -> field.
pub type GoFields = BTreeMap<String, BTreeMap<u32, GoField>>;

/// Reads the Go sources under `root` (holding `api/`, `apimachinery/`, ... as checked out at
/// one release) and renders the data file, headed by `about`.
pub fn scan(root: &Path, about: &str) -> Result<String, String> {
    let mut all = GoFields::new();
    for (dir, package) in MODULES {
        let base = root.join(dir);
        if !base.is_dir() {
            return Err(format!("{} is not a directory", base.display()));
        }
        let mut files = Vec::new();
        collect_go_files(&base, &mut files).map_err(|e| format!("{}: {e}", base.display()))?;
        files.sort();
        for f in files {
            let rel = f.strip_prefix(&base).unwrap_or(&f);
            let Some(parent) = rel.parent() else { continue };
            let pkg = format!("{package}.{}", parent.to_string_lossy().replace('/', "."));
            let text = std::fs::read_to_string(&f).map_err(|e| format!("{}: {e}", f.display()))?;
            for (name, fields) in parse_structs(&text) {
                all.entry(format!("{pkg}.{name}")).or_default().extend(fields);
            }
        }
    }
    Ok(render(&all, about))
}

fn collect_go_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) -> std::io::Result<()> {
    for e in std::fs::read_dir(dir)? {
        let p = e?.path();
        let name = p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        if p.is_dir() {
            if name != "testdata" && name != "vendor" {
                collect_go_files(&p, out)?;
            }
        } else if name.ends_with(".go") && !name.ends_with("_test.go") && !name.contains("generated") {
            out.push(p);
        }
    }
    Ok(())
}

/// The structs of one Go file with the fields that have a protobuf tag, by tag.
pub fn parse_structs(text: &str) -> Vec<(String, BTreeMap<u32, GoField>)> {
    let mut out = Vec::new();
    let mut current: Option<(String, BTreeMap<u32, GoField>)> = None;
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("type ") {
            let mut words = rest.split_whitespace();
            if let (Some(name), Some("struct"), Some("{")) = (words.next(), words.next(), words.next()) {
                current = Some((name.to_string(), BTreeMap::new()));
                continue;
            }
        }
        if line.starts_with('}') {
            if let Some((name, fields)) = current.take() {
                if !fields.is_empty() {
                    out.push((name, fields));
                }
            }
            continue;
        }
        let Some((_, fields)) = current.as_mut() else { continue };
        if let Some((tag, field)) = parse_field(line) {
            fields.insert(tag, field);
        }
    }
    out
}

/// `\tReplicas *int32 `json:"replicas,omitempty" protobuf:"varint,1,opt,name=replicas"``.
fn parse_field(line: &str) -> Option<(u32, GoField)> {
    let trimmed = line.trim_start();
    if trimmed.starts_with("//") {
        return None;
    }
    let (decl, tags) = trimmed.split_once('`')?;
    // `Name Type` or an embedded `Type` (`metav1.ObjectMeta`).
    let words: Vec<&str> = decl.split_whitespace().collect();
    let ty = *words.get(1).or(words.first())?;
    let json = struct_tag(tags, "json")?;
    let proto = struct_tag(tags, "protobuf")?;
    let mut json_parts = json.split(',');
    // Empty for an inlined embedded struct (`json:",inline"`).
    let json_name = json_parts.next()?.to_string();
    if json_name == "-" {
        return None;
    }
    let omitempty = json_parts.any(|o| o == "omitempty");
    let tag = proto.split(',').nth(1)?.parse().ok()?;
    Some((tag, GoField { json: json_name, pointer: ty.starts_with('*'), omitempty }))
}

/// The value of `key:"..."` in a Go struct tag.
fn struct_tag<'a>(tags: &'a str, key: &str) -> Option<&'a str> {
    let start = tags.find(&format!("{key}:\""))? + key.len() + 2;
    let len = tags[start..].find('"')?;
    Some(&tags[start..start + len])
}

fn render(all: &GoFields, about: &str) -> String {
    let mut out = String::new();
    for line in about.lines() {
        let _ = writeln!(out, "# {line}");
    }
    for (message, fields) in all {
        out.push_str(message);
        for (tag, f) in fields {
            let flags = match (f.pointer, f.omitempty) {
                (true, true) => "po",
                (true, false) => "p",
                (false, true) => "o",
                (false, false) => "",
            };
            let _ = write!(out, " {tag}={}:{flags}", f.json);
        }
        out.push('\n');
    }
    out
}

/// Reads the data file back.
pub fn parse(text: &str) -> Result<GoFields, String> {
    let mut all = GoFields::new();
    for (n, line) in text.lines().enumerate() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let bad = || format!("go-fields line {}: {line:?}", n + 1);
        let mut words = line.split(' ');
        let message = words.next().ok_or_else(bad)?;
        let fields = all.entry(message.to_string()).or_default();
        for w in words {
            let (tag, rest) = w.split_once('=').ok_or_else(bad)?;
            let (json, flags) = rest.split_once(':').ok_or_else(bad)?;
            let tag = tag.parse().map_err(|_| bad())?;
            fields.insert(
                tag,
                GoField { json: json.to_string(), pointer: flags.contains('p'), omitempty: flags.contains('o') },
            );
        }
    }
    Ok(all)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_struct_fields() {
        let src = "package v1\n\n// LeaseSpec is ...\ntype LeaseSpec struct {\n\t// holder\n\t// +optional\n\t\
                   HolderIdentity *string `json:\"holderIdentity,omitempty\" protobuf:\"bytes,1,opt,name=holderIdentity\"`\n\t\
                   Count int32 `json:\"count\" protobuf:\"varint,2,opt,name=count\"`\n\t\
                   Replicas int32 `json:\"replicas,omitempty\" protobuf:\"varint,3,opt,name=replicas\"`\n\t\
                   metav1.TypeMeta `json:\",inline\"`\n\tNoProto string `json:\"noProto\"`\n\t\
                   metav1.ObjectMeta `json:\"metadata,omitempty\" protobuf:\"bytes,4,opt,name=metadata\"`\n}\n\n\
                   type Empty struct {\n}\n";
        let structs = parse_structs(src);
        assert_eq!(structs.len(), 1);
        let (name, fields) = &structs[0];
        assert_eq!(name, "LeaseSpec");
        let keeps: Vec<(u32, &str, bool)> = fields.iter().map(|(t, f)| (*t, f.json.as_str(), f.keeps_zero())).collect();
        assert_eq!(
            keeps,
            vec![(1, "holderIdentity", true), (2, "count", true), (3, "replicas", false), (4, "metadata", false)]
        );
        let mut all = GoFields::new();
        all.insert("k8s.io.api.coordination.v1.LeaseSpec".into(), fields.clone());
        let text = render(&all, "from test");
        assert_eq!(
            text,
            "# from test\nk8s.io.api.coordination.v1.LeaseSpec 1=holderIdentity:po 2=count: 3=replicas:o 4=metadata:o\n"
        );
        assert_eq!(parse(&text).unwrap(), all);
    }
}
