//! The files of configMap, secret, downwardAPI and projected volumes, and the kubelet's
//! AtomicWriter that publishes them (pkg/volume/util/atomic_writer.go): the files live in a
//! timestamped directory, `..data` links to it, each top-level name links into `..data`,
//! and an update swaps `..data` with one rename, so a reader sees the old set or the new.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use k8s_openapi::api::core::v1::{
    ConfigMap, ConfigMapVolumeSource, DownwardAPIVolumeFile, KeyToPath, Pod, ProjectedVolumeSource, Secret,
    SecretVolumeSource, ServiceAccountTokenProjection,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use crate::Objects;

/// One file of a volume.
#[derive(Debug, Clone, PartialEq)]
pub struct FileProjection {
    pub data: Vec<u8>,
    pub mode: u32,
}

/// A volume's files by relative path.
pub type Payload = BTreeMap<String, FileProjection>;

/// Why a volume cannot be set up; [`VolumeError::message`] is what follows
/// `MountVolume.SetUp failed for volume "<name>" : ` in the kubelet's FailedMount event.
#[derive(Debug, Clone, PartialEq)]
pub struct VolumeError(pub String);

impl VolumeError {
    pub fn message(&self) -> String {
        self.0.clone()
    }
}

const DEFAULT_MODE: i32 = 0o644;
const DATA_DIR: &str = "..data";
const NEW_DATA_DIR: &str = "..data_tmp";

fn key_items(
    items: Option<&Vec<KeyToPath>>,
    default_mode: Option<i32>,
    mut all: BTreeMap<String, Vec<u8>>,
    missing_key: impl Fn(&str) -> String,
    optional: bool,
) -> Result<Payload, VolumeError> {
    let mode = default_mode.unwrap_or(DEFAULT_MODE) as u32;
    let mut out = Payload::new();
    match items.filter(|i| !i.is_empty()) {
        None => {
            for (k, v) in all {
                out.insert(k, FileProjection { data: v, mode });
            }
        }
        Some(items) => {
            for it in items {
                match all.remove(&it.key) {
                    Some(v) => {
                        out.insert(
                            it.path.clone(),
                            FileProjection { data: v, mode: it.mode.map(|m| m as u32).unwrap_or(mode) },
                        );
                    }
                    None if optional => {}
                    None => return Err(VolumeError(missing_key(&it.key))),
                }
            }
        }
    }
    Ok(out)
}

fn config_map_data(cm: &ConfigMap) -> BTreeMap<String, Vec<u8>> {
    let mut all: BTreeMap<String, Vec<u8>> =
        cm.data.clone().unwrap_or_default().into_iter().map(|(k, v)| (k, v.into_bytes())).collect();
    for (k, v) in cm.binary_data.clone().unwrap_or_default() {
        all.insert(k, v.0);
    }
    all
}

/// A configMap volume's files (all keys, or `items`); a missing ConfigMap is an empty volume
/// when `optional`.
pub fn config_map_payload(source: &ConfigMapVolumeSource, cm: Option<&ConfigMap>) -> Result<Payload, VolumeError> {
    let optional = source.optional == Some(true);
    let Some(cm) = cm else {
        return if optional {
            Ok(Payload::new())
        } else {
            Err(VolumeError(format!("configmap \"{}\" not found", source.name)))
        };
    };
    key_items(
        source.items.as_ref(),
        source.default_mode,
        config_map_data(cm),
        |k| format!("configmap references non-existent config key: {k}"),
        optional,
    )
}

/// A secret volume's files.
pub fn secret_payload(source: &SecretVolumeSource, secret: Option<&Secret>) -> Result<Payload, VolumeError> {
    let optional = source.optional == Some(true);
    let name = source.secret_name.clone().unwrap_or_default();
    let Some(s) = secret else {
        return if optional { Ok(Payload::new()) } else { Err(VolumeError(format!("secret \"{name}\" not found"))) };
    };
    let all = s.data.clone().unwrap_or_default().into_iter().map(|(k, v)| (k, v.0)).collect();
    key_items(
        source.items.as_ref(),
        source.default_mode,
        all,
        |k| format!("references non-existent secret key: {k}"),
        optional,
    )
}

/// A downwardAPI volume's files: metadata fields (labels and annotations as whole maps too)
/// and container resources.
pub fn downward_api_payload(
    items: &[DownwardAPIVolumeFile],
    default_mode: Option<i32>,
    pod: &Pod,
    node_allocatable: &BTreeMap<String, Quantity>,
) -> Result<Payload, VolumeError> {
    let mode = default_mode.unwrap_or(DEFAULT_MODE) as u32;
    let mut out = Payload::new();
    for it in items {
        let value = if let Some(f) = &it.field_ref {
            crate::env::metadata_field(pod, &f.field_path)
                .map_err(VolumeError)?
                .ok_or_else(|| VolumeError(format!("unsupported fieldPath: {}", f.field_path)))?
        } else if let Some(r) = &it.resource_field_ref {
            let cname = r.container_name.clone().unwrap_or_default();
            crate::env::resource_field_ref(pod, &cname, &r.resource, r.divisor.as_ref(), node_allocatable)
                .map_err(VolumeError)?
        } else {
            String::new()
        };
        out.insert(
            it.path.clone(),
            FileProjection { data: value.into_bytes(), mode: it.mode.map(|m| m as u32).unwrap_or(mode) },
        );
    }
    Ok(out)
}

/// A projected volume's files: its sources merged in order. The service-account token
/// comes from `token`; its file is 0600 when the pod has an fsGroup or a runAsUser
/// (group-readable once the fsGroup is applied), else the default mode.
pub fn projected_payload(
    source: &ProjectedVolumeSource,
    pod: &Pod,
    objects: &dyn Objects,
    node_allocatable: &BTreeMap<String, Quantity>,
    token: &mut dyn FnMut(&ServiceAccountTokenProjection) -> Result<String, String>,
) -> Result<Payload, VolumeError> {
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    let default_mode = source.default_mode.unwrap_or(DEFAULT_MODE);
    let sc = pod.spec.as_ref().and_then(|s| s.security_context.clone()).unwrap_or_default();
    let mut out = Payload::new();
    for src in source.sources.iter().flatten() {
        if let Some(c) = &src.config_map {
            let cm = objects.config_map(&ns, &c.name);
            let optional = c.optional == Some(true);
            match cm {
                Some(cm) => out.extend(key_items(
                    c.items.as_ref(),
                    Some(default_mode),
                    config_map_data(&cm),
                    |k| format!("configmap references non-existent config key: {k}"),
                    optional,
                )?),
                None if optional => {}
                None => return Err(VolumeError(format!("configmap \"{}\" not found", c.name))),
            }
        }
        if let Some(s) = &src.secret {
            let name = s.name.clone();
            let optional = s.optional == Some(true);
            match objects.secret(&ns, &name) {
                Some(sec) => out.extend(key_items(
                    s.items.as_ref(),
                    Some(default_mode),
                    sec.data.clone().unwrap_or_default().into_iter().map(|(k, v)| (k, v.0)).collect(),
                    |k| format!("references non-existent secret key: {k}"),
                    optional,
                )?),
                None if optional => {}
                None => return Err(VolumeError(format!("secret \"{name}\" not found"))),
            }
        }
        if let Some(d) = &src.downward_api {
            out.extend(downward_api_payload(
                &d.items.clone().unwrap_or_default(),
                Some(default_mode),
                pod,
                node_allocatable,
            )?);
        }
        if let Some(t) = &src.service_account_token {
            let tok = token(t).map_err(VolumeError)?;
            let mode = if sc.fs_group.is_some() || sc.run_as_user.is_some() { 0o600 } else { default_mode as u32 };
            out.insert(t.path.clone(), FileProjection { data: tok.into_bytes(), mode });
        }
    }
    Ok(out)
}

fn validate_path(p: &str) -> io::Result<PathBuf> {
    let bad = |why: &str| io::Error::new(io::ErrorKind::InvalidInput, format!("invalid path {p:?}: {why}"));
    if p.is_empty() || p.len() > 4096 {
        return Err(bad("empty or longer than 4096"));
    }
    let path = Path::new(p);
    if path.is_absolute() {
        return Err(bad("must be relative"));
    }
    if p.starts_with("..") {
        return Err(bad("must not start with '..'"));
    }
    let mut clean = PathBuf::new();
    for c in path.components() {
        match c {
            Component::Normal(s) if s.len() <= 255 => clean.push(s),
            Component::CurDir => {}
            _ => return Err(bad("must not contain '..' or long elements")),
        }
    }
    Ok(clean)
}

/// Publishes `payload` in `target` in the AtomicWriter layout; returns whether a new
/// version was written (unchanged bytes write nothing).
pub fn atomic_write(target: &Path, payload: &Payload) -> io::Result<bool> {
    let mut files: BTreeMap<PathBuf, &FileProjection> = BTreeMap::new();
    for (p, f) in payload {
        files.insert(validate_path(p)?, f);
    }
    let old_ts = std::fs::read_link(target.join(DATA_DIR)).ok();
    // Paths of the old version that the new one no longer has (not parents of new paths).
    let mut to_remove: BTreeSet<PathBuf> = BTreeSet::new();
    if let Some(old) = &old_ts {
        walk(&target.join(old), Path::new(""), &mut |rel| {
            let parent_of_new = files.keys().any(|k| k.starts_with(rel) && k != rel);
            if !files.contains_key(rel) && !parent_of_new {
                to_remove.insert(rel.to_path_buf());
            }
        })?;
    }
    let changed = match &old_ts {
        None => true,
        Some(old) => {
            !to_remove.is_empty()
                || files
                    .iter()
                    .any(|(p, f)| std::fs::read(target.join(old).join(p)).map(|d| d != f.data).unwrap_or(true))
        }
    };
    if changed {
        let ts = new_ts_dir(target)?;
        for (p, f) in &files {
            let path = target.join(&ts).join(p);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::write(&path, &f.data)?;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(f.mode))?;
        }
        let tmp = target.join(NEW_DATA_DIR);
        let _ = std::fs::remove_file(&tmp);
        symlink(&ts, &tmp)?;
        std::fs::rename(&tmp, target.join(DATA_DIR))?;
    }
    // The user-visible links: one per first path element.
    let mut firsts: BTreeSet<String> = BTreeSet::new();
    for p in files.keys() {
        if let Some(Component::Normal(first)) = p.components().next() {
            firsts.insert(first.to_string_lossy().into_owned());
        }
    }
    for f in &firsts {
        let link = target.join(f);
        if std::fs::symlink_metadata(&link).is_err() {
            symlink(Path::new(DATA_DIR).join(f), &link)?;
        }
    }
    for p in &to_remove {
        if p.components().count() == 1 {
            let _ = std::fs::remove_file(target.join(p));
        }
    }
    if changed {
        if let Some(old) = old_ts {
            let _ = std::fs::remove_dir_all(target.join(old));
        }
    }
    Ok(changed)
}

/// `..<UTC timestamp>.<random decimal>`, made 0755 (as os.MkdirTemp with the kubelet's prefix).
fn new_ts_dir(target: &Path) -> io::Result<PathBuf> {
    let stamp = chrono::Utc::now().format("..%Y_%m_%d_%H_%M_%S.").to_string();
    for attempt in 0..100u32 {
        let nanos =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
        let random = nanos.wrapping_mul(2_654_435_761).wrapping_add(attempt.wrapping_mul(40_503)) ^ std::process::id();
        let name = PathBuf::from(format!("{stamp}{random}"));
        match std::fs::create_dir(target.join(&name)) {
            Ok(()) => {
                std::fs::set_permissions(target.join(&name), std::fs::Permissions::from_mode(0o755))?;
                return Ok(name);
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::other("cannot make a timestamped directory"))
}

fn walk(dir: &Path, rel: &Path, f: &mut dyn FnMut(&Path)) -> io::Result<()> {
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        let r = rel.join(e.file_name());
        f(&r);
        if e.file_type()?.is_dir() {
            walk(&e.path(), &r, f)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn file(s: &str) -> FileProjection {
        FileProjection { data: s.as_bytes().to_vec(), mode: 0o644 }
    }

    #[test]
    fn the_atomic_writer_layout_updates_and_no_ops() {
        let d = tempfile::tempdir().unwrap();
        let t = d.path();
        let p1 = Payload::from([
            ("token".to_string(), file("one")),
            ("sub/file".to_string(), file("x")),
            ("gone".to_string(), file("g")),
        ]);
        assert!(atomic_write(t, &p1).unwrap());
        let ts1 = std::fs::read_link(t.join("..data")).unwrap();
        let name = ts1.to_string_lossy().into_owned();
        let re_ok = name.starts_with("..") && name.len() > 22 && name[2..21].chars().filter(|c| *c == '_').count() == 5;
        assert!(re_ok, "{name}");
        assert_eq!(std::fs::read_link(t.join("token")).unwrap(), Path::new("..data/token"));
        assert_eq!(std::fs::read_link(t.join("sub")).unwrap(), Path::new("..data/sub"));
        assert_eq!(std::fs::read_to_string(t.join("sub/file")).unwrap(), "x");
        let mode = std::fs::metadata(t.join(&ts1)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o755);

        // Same bytes: nothing new.
        assert!(!atomic_write(t, &p1).unwrap());
        assert_eq!(std::fs::read_link(t.join("..data")).unwrap(), ts1);

        // One file changes, one goes away.
        let p2 = Payload::from([("token".to_string(), file("two")), ("sub/file".to_string(), file("x"))]);
        assert!(atomic_write(t, &p2).unwrap());
        let ts2 = std::fs::read_link(t.join("..data")).unwrap();
        assert_ne!(ts1, ts2);
        assert_eq!(std::fs::read_to_string(t.join("token")).unwrap(), "two");
        assert!(std::fs::symlink_metadata(t.join("gone")).is_err(), "the stale link is removed");
        assert!(!t.join(&ts1).exists(), "the old version is removed");
        assert!(std::fs::symlink_metadata(t.join("..data_tmp")).is_err());
    }

    #[test]
    fn readers_see_the_old_or_the_new_content_never_a_mix() {
        let d = tempfile::tempdir().unwrap();
        let t = d.path().to_path_buf();
        atomic_write(&t, &Payload::from([("f".to_string(), file("aaaa"))])).unwrap();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (t2, s2) = (t.clone(), stop.clone());
        let reader = std::thread::spawn(move || {
            let mut reads = 0;
            while !s2.load(std::sync::atomic::Ordering::Relaxed) {
                // A lookup that went through `..data` just before the old version was removed
                // finds nothing (as with the kubelet's writer); what is read is never mixed.
                match std::fs::read_to_string(t2.join("f")) {
                    Ok(c) => {
                        assert!(c == "aaaa" || c == "bbbb", "{c:?}");
                        reads += 1;
                    }
                    Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::NotFound),
                }
            }
            reads
        });
        for i in 0..200 {
            let v = if i % 2 == 0 { "bbbb" } else { "aaaa" };
            atomic_write(&t, &Payload::from([("f".to_string(), file(v))])).unwrap();
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        assert!(reader.join().unwrap() > 0);
    }

    #[test]
    fn config_map_items_modes_and_errors() {
        let cm: ConfigMap =
            serde_json::from_value(json!({"metadata": {"name": "c"}, "data": {"a": "1", "b": "2"}})).unwrap();
        let all: ConfigMapVolumeSource = serde_json::from_value(json!({"name": "c", "defaultMode": 0o600})).unwrap();
        let p = config_map_payload(&all, Some(&cm)).unwrap();
        assert_eq!(p.keys().collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(p["a"].mode, 0o600);
        let items: ConfigMapVolumeSource =
            serde_json::from_value(json!({"name": "c", "items": [{"key": "b", "path": "x/y", "mode": 0o400}]}))
                .unwrap();
        let p = config_map_payload(&items, Some(&cm)).unwrap();
        assert_eq!(p["x/y"], FileProjection { data: b"2".to_vec(), mode: 0o400 });
        assert_eq!(config_map_payload(&all, None).unwrap_err().message(), "configmap \"c\" not found");
        let missing: ConfigMapVolumeSource =
            serde_json::from_value(json!({"name": "c", "items": [{"key": "z", "path": "z"}]})).unwrap();
        assert_eq!(
            config_map_payload(&missing, Some(&cm)).unwrap_err().message(),
            "configmap references non-existent config key: z"
        );
        let opt: ConfigMapVolumeSource = serde_json::from_value(json!({"name": "c", "optional": true})).unwrap();
        assert!(config_map_payload(&opt, None).unwrap().is_empty());
    }

    #[test]
    fn downward_labels_file() {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "ns", "labels": {"foo": "bar"}},
            "spec": {"containers": [{"name": "main", "resources": {"limits": {"memory": "8Mi"}}}]},
        }))
        .unwrap();
        let items: Vec<DownwardAPIVolumeFile> = serde_json::from_value(json!([
            {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
            {"path": "mem", "resourceFieldRef": {"containerName": "main", "resource": "limits.memory", "divisor": "1Ki"}},
            {"path": "cpu", "resourceFieldRef": {"containerName": "main", "resource": "limits.cpu", "divisor": "1m"}},
        ]))
        .unwrap();
        let alloc = BTreeMap::from([("cpu".to_string(), Quantity("2".into()))]);
        let p = downward_api_payload(&items, None, &pod, &alloc).unwrap();
        assert_eq!(p["labels"].data, b"foo=\"bar\"");
        assert_eq!(p["mem"].data, b"8192");
        assert_eq!(p["cpu"].data, b"2000", "no limit: the node's allocatable");
        assert_eq!(p["labels"].mode, 0o644);
    }
}
