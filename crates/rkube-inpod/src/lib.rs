//! What a container sees, as the kubelet makes it: its environment variables ([`env`]), the
//! files of its configMap, secret, downwardAPI and projected volumes in the kubelet's
//! atomic-writer layout ([`volumes`]), and its /etc/hosts ([`hosts`]).
//!
//! Invariant: everything here is a function of the pod, its node and the objects it
//! references (given through [`Objects`]); nothing talks to an API server. The only side
//! effect is [`volumes::atomic_write`]'s files.

pub mod env;
pub mod hosts;
pub mod volumes;

pub use rkube_api::quantity;

use k8s_openapi::api::core::v1::{ConfigMap, Secret};

/// Where the objects a pod references come from (the agent's caches).
pub trait Objects {
    fn config_map(&self, namespace: &str, name: &str) -> Option<ConfigMap>;
    fn secret(&self, namespace: &str, name: &str) -> Option<Secret>;
}

/// The ConfigMaps and Secrets (names, in the pod's namespace) a pod's volumes and its
/// containers' environments reference: what the kubelet's object managers watch for it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct References {
    pub config_maps: std::collections::BTreeSet<String>,
    pub secrets: std::collections::BTreeSet<String>,
}

pub fn references(spec: &k8s_openapi::api::core::v1::PodSpec) -> References {
    let mut r = References::default();
    for v in spec.volumes.iter().flatten() {
        if let Some(c) = &v.config_map {
            r.config_maps.insert(c.name.clone());
        }
        if let Some(name) = v.secret.as_ref().and_then(|s| s.secret_name.clone()) {
            r.secrets.insert(name);
        }
        for source in v.projected.iter().flat_map(|p| p.sources.iter().flatten()) {
            if let Some(c) = &source.config_map {
                r.config_maps.insert(c.name.clone());
            }
            if let Some(s) = &source.secret {
                r.secrets.insert(s.name.clone());
            }
        }
    }
    let ephemeral = spec.ephemeral_containers.iter().flatten().map(|e| (&e.env, &e.env_from));
    let containers = spec.init_containers.iter().chain(std::iter::once(&spec.containers)).flatten();
    for (env, env_from) in containers.map(|c| (&c.env, &c.env_from)).chain(ephemeral) {
        for from in env_from.iter().flatten() {
            if let Some(c) = &from.config_map_ref {
                r.config_maps.insert(c.name.clone());
            }
            if let Some(s) = &from.secret_ref {
                r.secrets.insert(s.name.clone());
            }
        }
        for source in env.iter().flatten().filter_map(|e| e.value_from.as_ref()) {
            if let Some(k) = &source.config_map_key_ref {
                r.config_maps.insert(k.name.clone());
            }
            if let Some(k) = &source.secret_key_ref {
                r.secrets.insert(k.name.clone());
            }
        }
    }
    r.config_maps.retain(|n| !n.is_empty());
    r.secrets.retain(|n| !n.is_empty());
    r
}

#[cfg(test)]
mod tests {
    #[test]
    fn references_cover_volumes_projections_and_every_containers_environment() {
        let spec: k8s_openapi::api::core::v1::PodSpec = serde_json::from_value(serde_json::json!({
            "volumes": [
                {"name": "a", "configMap": {"name": "cm-vol"}},
                {"name": "b", "secret": {"secretName": "s-vol"}},
                {"name": "c", "projected": {"sources": [{"configMap": {"name": "kube-root-ca.crt"}},
                                                         {"secret": {"name": "s-proj"}}]}},
                {"name": "d", "emptyDir": {}}],
            "initContainers": [{"name": "i", "envFrom": [{"configMapRef": {"name": "cm-init"}}]}],
            "containers": [{"name": "m", "env": [
                {"name": "X", "valueFrom": {"secretKeyRef": {"name": "s-env", "key": "k"}}},
                {"name": "Y", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}]}],
            "ephemeralContainers": [{"name": "e", "envFrom": [{"secretRef": {"name": "s-debug"}}]}],
        }))
        .unwrap();
        let r = super::references(&spec);
        let names = |s: &std::collections::BTreeSet<String>| s.iter().cloned().collect::<Vec<_>>();
        assert_eq!(names(&r.config_maps), ["cm-init", "cm-vol", "kube-root-ca.crt"]);
        assert_eq!(names(&r.secrets), ["s-debug", "s-env", "s-proj", "s-vol"]);
    }
}
