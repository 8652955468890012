//! The API server: the Kubernetes REST API over HTTPS.
//!
//! Request path (each step a module):
//! [`serve`] (TLS, HTTP/1.1 and HTTP/2, client certificates) -> [`authn`] (who) ->
//! [`handler`] (authorization, routing by [`request_info`]) -> [`registry`] (the generic
//! verbs: decode, strategy hooks, storage) or [`discovery`] / [`openapi`] -> [`codec`]
//! (the wire format) ; [`watch`] streams store events to clients.
//!
//! Architecture invariants:
//! - Only this crate knows about HTTP.
//! - Handlers never name a kind: they look resources up in the resource table and call
//!   the strategy, so resources registered at run time are served by the same code.
//! - Every failure leaves as a `Status` built by `rkube_api::ApiError`, through
//!   `codec::error_response`.

// Errors carry Kubernetes' full Status detail; they are the cold path.
#![allow(clippy::result_large_err)]

pub mod authn;
pub mod authz;
pub mod body;
pub mod codec;
pub mod controllers;
pub mod crds;
pub mod discovery;
pub mod handler;
pub mod logs;
pub mod metrics;
pub mod metrics_api;
pub mod openapi;
pub mod protocache;
pub mod proxy;
pub mod registry;
pub mod request_info;
pub mod review;
pub mod serve;
pub mod streams;
pub mod tokens;
pub mod watch;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use rkube_api::ResourceTable;
use rkube_store::Store;

/// The version this server reports: the typed model's (k8s-openapi `v1_33`). The minor is
/// what kubectl's version dispatcher picks a client by, so users get kubectl 1.33, which
/// speaks protobuf to the typed API.
pub const KUBE_MAJOR: &str = "1";
pub const KUBE_MINOR: &str = "33";
pub const KUBE_GIT_VERSION: &str = "v1.33.0";

/// The largest request body accepted (kube-apiserver's limit).
pub const BODY_BYTES_MAX: usize = 3 * 1024 * 1024;
/// HTTP/2 streams per connection: client-go multiplexes every watch on one connection.
pub const H2_STREAMS_MAX: u32 = 1000;

pub struct Config {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub token_file: Option<authn::TokenFile>,
}

/// Concurrency limits, as kube-apiserver's `--max-requests-inflight` (read-only requests)
/// and `--max-mutating-requests-inflight`; 0 means unlimited. Watches are not counted.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub max_requests_inflight: usize,
    pub max_mutating_requests_inflight: usize,
    /// Connections served at once (0: `serve::CONNECTIONS_MAX_DEFAULT`), within the
    /// descriptor limit.
    pub max_connections: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_requests_inflight: 400, max_mutating_requests_inflight: 200, max_connections: 0 }
    }
}

/// Everything a request handler needs.
pub struct ApiServer {
    pub table: ResourceTable,
    pub store: Arc<dyn Store>,
    pub tokens: authn::TokenFile,
    pub metrics: metrics::Metrics,
    pub openapi: openapi::Cache,
    pub authz: authz::Authorizer,
    pub proto_cache: protocache::ProtoCache,
    pub started: std::time::Instant,
    /// The address clients reach the server at (for discovery's serverAddressByClientCIDRs).
    pub advertise: std::sync::OnceLock<SocketAddr>,
    /// Signs and verifies service-account tokens.
    pub sa_tokens: std::sync::OnceLock<tokens::TokenIssuer>,
    /// The cluster CA certificate (PEM), published in every namespace.
    pub ca_pem: std::sync::OnceLock<String>,
    /// How the server reaches kubelets (`pods/log`): its kubelet client certificate and
    /// the cluster CA (see [`logs::kubelet_client_config`]).
    pub kubelet_client: std::sync::OnceLock<Arc<rustls::ClientConfig>>,
    /// Permits for read-only and mutating requests in flight (None = unlimited).
    pub readonly_inflight: Option<Arc<tokio::sync::Semaphore>>,
    pub mutating_inflight: Option<Arc<tokio::sync::Semaphore>>,
    pub limits: Limits,
    /// Memory for request bodies, shared by all requests (see `body`).
    pub body_budget: body::Budget,
    /// Open watch streams, for the reaper of stalled ones (see `watch::STALL_TIMEOUT`).
    pub watch_streams: watch::Streams,
    /// Open watch streams per user (see `watch::WATCHES_PER_USER_MAX`).
    pub watches_per_user: std::sync::Mutex<std::collections::HashMap<String, usize>>,
    /// The last kubelet scrapes of `metrics.k8s.io` (see `metrics_api`).
    pub resource_metrics: metrics_api::Cache,
}

impl ApiServer {
    pub fn new(store: Arc<dyn Store>, tokens: authn::TokenFile, limits: Limits) -> Arc<ApiServer> {
        let permits = |n: usize| (n > 0).then(|| Arc::new(tokio::sync::Semaphore::new(n)));
        let table = ResourceTable::default();
        rkube_api::builtin::register_builtins(&table);
        Arc::new(ApiServer {
            table,
            store,
            tokens,
            metrics: metrics::Metrics::new(),
            openapi: openapi::Cache::default(),
            authz: authz::Authorizer::default(),
            proto_cache: protocache::ProtoCache::default(),
            started: std::time::Instant::now(),
            advertise: std::sync::OnceLock::new(),
            ca_pem: std::sync::OnceLock::new(),
            kubelet_client: std::sync::OnceLock::new(),
            sa_tokens: std::sync::OnceLock::new(),
            readonly_inflight: permits(limits.max_requests_inflight),
            mutating_inflight: permits(limits.max_mutating_requests_inflight),
            limits,
            body_budget: Default::default(),
            watch_streams: Default::default(),
            watches_per_user: Default::default(),
            resource_metrics: Default::default(),
        })
    }
}
