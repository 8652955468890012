//! rkube's controllers: each reconciles what users create into what upstream's
//! kube-controller-manager would make of it, talking to the API server only through its
//! public API with shared informers (as `rkube-scheduler` does), so they run against any
//! API server and from another process.
//!
//! [`run`] runs every controller on one component's [`Informers`]: for now the
//! [`endpoints`] controller. Each is level-triggered: a work queue of keys ([`queue`]) fed
//! by informer changes, every sync reading the caches afresh, failures retried with
//! client-go's back-off, Warning events ([`events`]) as upstream records them.
//!
//! Not done (yet): EndpointSlices, the workload controllers, garbage collection, namespace
//! deletion, leader election, `--controllers`.

pub mod endpoints;
pub mod events;
pub mod queue;
pub mod subsets;

use std::future::Future;

use rkube_client::Informers;

/// Runs the controllers until `shutdown` resolves. `informers` must be built on a client
/// allowed what `system:kube-controller-manager` allows in rkube's bootstrap policy (the
/// user kube-controller-manager authenticates as); its informers are shared by every
/// controller.
pub async fn run(informers: Informers, shutdown: impl Future<Output = ()>) {
    endpoints::run(informers, shutdown).await
}
