//! The image map: what a container whose spec gives no command runs, since no image is
//! pulled. An entry gives the image's entrypoint and cmd (as an image config does) and its
//! environment. Built-in entries cover the images rkube's examples use; a JSON file
//! (`--image-map FILE`) adds or replaces entries:
//!
//! ```json
//! {"myorg/tool": {"entrypoint": ["/usr/local/bin/tool"], "cmd": ["serve"], "env": {"MODE": "ci"}}}
//! ```
//!
//! The string `@rkube` in an entry stands for the path of the rkube binary (so the
//! `kubectl proxy` ambassador images run `rkube proxy`).

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

/// The PATH a container gets when its image entry sets none (containerd's default).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct ImageEntry {
    #[serde(default)]
    pub entrypoint: Vec<String>,
    #[serde(default)]
    pub cmd: Vec<String>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
}

#[derive(Debug, Clone)]
pub struct ImageMap {
    entries: BTreeMap<String, ImageEntry>,
    rkube: String,
}

fn entry(entrypoint: &[&str], cmd: &[&str]) -> ImageEntry {
    ImageEntry {
        entrypoint: entrypoint.iter().map(|s| s.to_string()).collect(),
        cmd: cmd.iter().map(|s| s.to_string()).collect(),
        env: BTreeMap::new(),
    }
}

impl ImageMap {
    /// The built-in entries; `rkube` is the rkube binary's path.
    pub fn builtin(rkube: &Path) -> ImageMap {
        let proxy = entry(&["@rkube", "proxy"], &[]);
        let entries = BTreeMap::from([
            ("busybox".to_string(), entry(&[], &["sh"])),
            ("alpine".to_string(), entry(&[], &["/bin/sh"])),
            ("curlimages/curl".to_string(), entry(&["curl"], &[])),
            ("luksa/kubectl-proxy".to_string(), proxy.clone()),
            ("suofeiya/kube-api".to_string(), proxy.clone()),
            ("bitnami/kubectl".to_string(), entry(&["kubectl"], &[])),
            ("registry.k8s.io/pause".to_string(), entry(&["sleep"], &["infinity"])),
            // Upstream's test image: its subcommands that rkube emulates (`crate::agnhost`);
            // its default CMD is `pause`.
            ("registry.k8s.io/e2e-test-images/agnhost".to_string(), entry(&["@rkube", "__agnhost"], &["pause"])),
        ]);
        ImageMap { entries, rkube: rkube.display().to_string() }
    }

    /// Adds (or replaces) entries from a JSON file.
    pub fn extend_from_file(&mut self, path: &Path) -> Result<(), String> {
        let raw = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let more: BTreeMap<String, ImageEntry> =
            serde_json::from_slice(&raw).map_err(|e| format!("{}: {e}", path.display()))?;
        for (k, v) in more {
            self.entries.insert(normalize(&k), v);
        }
        Ok(())
    }

    /// The entry for an image reference (tag and digest ignored; `docker.io/`,
    /// `docker.io/library/` and `library/` prefixes ignored).
    pub fn get(&self, image: &str) -> Option<ImageEntry> {
        let e = self.entries.get(&normalize(image))?;
        let sub = |v: &Vec<String>| v.iter().map(|s| s.replace("@rkube", &self.rkube)).collect();
        Some(ImageEntry { entrypoint: sub(&e.entrypoint), cmd: sub(&e.cmd), env: e.env.clone() })
    }
}

/// `docker.io/library/busybox:1.36@sha256:...` is `busybox`.
pub fn normalize(image: &str) -> String {
    let no_digest = image.split('@').next().unwrap_or(image);
    // A ':' after the last '/' starts the tag (a ':' before it is a registry port).
    let name = match no_digest.rfind(':') {
        Some(i) if !no_digest[i..].contains('/') => &no_digest[..i],
        _ => no_digest,
    };
    let name = name.strip_prefix("docker.io/").unwrap_or(name);
    let name = name.strip_prefix("index.docker.io/").unwrap_or(name);
    name.strip_prefix("library/").unwrap_or(name).to_string()
}

/// The argv as a runtime forms it from the spec and the image: `command` replaces the
/// entrypoint and drops the image's cmd; `args` replaces the cmd.
pub fn argv(command: &[String], args: &[String], image: Option<&ImageEntry>) -> Vec<String> {
    let (entrypoint, cmd) = match image {
        Some(i) => (i.entrypoint.clone(), i.cmd.clone()),
        None => (Vec::new(), Vec::new()),
    };
    match (command.is_empty(), args.is_empty()) {
        (false, false) => command.iter().chain(args).cloned().collect(),
        (false, true) => command.to_vec(),
        (true, false) => entrypoint.into_iter().chain(args.iter().cloned()).collect(),
        (true, true) => entrypoint.into_iter().chain(cmd).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_are_normalized() {
        assert_eq!(normalize("busybox"), "busybox");
        assert_eq!(normalize("busybox:1.36"), "busybox");
        assert_eq!(normalize("docker.io/library/busybox:1.36@sha256:abc"), "busybox");
        assert_eq!(normalize("luksa/kubectl-proxy:1.6.2"), "luksa/kubectl-proxy");
        assert_eq!(normalize("localhost:5000/app"), "localhost:5000/app");
        assert_eq!(normalize("localhost:5000/app:v1"), "localhost:5000/app");
    }

    #[test]
    fn argv_follows_the_runtime_rules() {
        let m = ImageMap::builtin(Path::new("/usr/bin/rkube"));
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(argv(&[], &[], m.get("busybox").as_ref()), s(&["sh"]));
        assert_eq!(argv(&[], &s(&["-c", "x"]), m.get("curlimages/curl").as_ref()), s(&["curl", "-c", "x"]));
        assert_eq!(argv(&s(&["sleep"]), &s(&["1"]), m.get("busybox").as_ref()), s(&["sleep", "1"]));
        assert_eq!(argv(&[], &[], m.get("luksa/kubectl-proxy:1.6.2").as_ref()), s(&["/usr/bin/rkube", "proxy"]));
        assert!(argv(&[], &[], m.get("nginx").as_ref()).is_empty());
        let agnhost = m.get("registry.k8s.io/e2e-test-images/agnhost:2.45");
        assert_eq!(argv(&[], &[], agnhost.as_ref()), s(&["/usr/bin/rkube", "__agnhost", "pause"]));
    }
}
