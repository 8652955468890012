//! rkube's node agent: a kubelet whose containers are local processes.
//!
//! It talks to the API server only through the public API, as a kubelet does: it registers
//! its Node, renews the Node's Lease, watches the pods bound to it (one shared informer per
//! resource), asks TokenRequest for their tokens, patches their status and posts Events. So
//! the same agent runs inside `rkube server` and as `rkube node --kubeconfig F` against any
//! API server.
//!
//! The path of a pod: [`agent`] hears of a pod bound to this node and starts one worker for
//! it ([`pod`]); the worker prepares the pod's directory and volumes (files written by
//! `rkube-inpod`'s atomic writer), assembles each container's environment, and starts each
//! container through [`runtime`] as `rkube __container SPEC`, whose [`sandbox`] builds the
//! container's mount namespace and executes the program; exits are reported with the
//! kubelet's [`status`] rules; deletion stops the processes (SIGTERM, then SIGKILL after the
//! grace period) and removes every trace.

pub mod agent;
pub mod agnhost;
pub mod certificates;
pub mod dns;
pub mod images;
pub mod kubelet_api;
pub mod net;
pub mod node;
pub mod objects;
pub mod pod;
pub mod probe;
pub mod runtime;
pub mod sandbox;
pub mod services;
pub mod stats;
pub mod status;
pub mod streaming;

pub use agent::{run, Config};
pub use sandbox::{container_init, exec_init, pause_init};
