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
