//! rkube's controllers: each reconciles what users create into what upstream's
//! kube-controller-manager would make of it, talking to the API server only through its
//! public API with shared informers (as `rkube-scheduler` does), so they run against any
//! API server and from another process.
//!
//! [`run`] runs every controller on one component's [`Informers`]: for now the
//! [`endpoints`] controller and, given a CA, the certificate signer ([`csrsigning`]). Each is level-triggered: a work queue of keys ([`queue`]) fed
//! by informer changes, every sync reading the caches afresh, failures retried with
//! client-go's back-off, Warning events ([`events`]) as upstream records them.
//!
//! Not done (yet): EndpointSlices, the workload controllers, garbage collection, namespace
//! deletion, leader election, `--controllers`.

pub mod csrsigning;
pub mod endpoints;
pub mod events;
pub mod queue;
pub mod subsets;

use std::future::Future;

use rkube_client::Informers;

/// Runs the controllers until `shutdown` resolves. `informers` must be built on a client
/// allowed what `system:kube-controller-manager` allows in rkube's bootstrap policy (the
/// user kube-controller-manager authenticates as); its informers are shared by every
/// controller. `signer`: the CA certificate requests are signed with
/// (`--cluster-signing-cert-file`); without one none are.
pub async fn run(informers: Informers, signer: Option<csrsigning::Signer>, shutdown: impl Future<Output = ()>) {
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = move || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    };
    let endpoints = endpoints::run(informers.clone(), stopped());
    let signing = {
        let informers = informers.clone();
        let stop = stopped();
        async move {
            if let Some(signer) = signer {
                csrsigning::run(informers, signer, stop).await;
            }
        }
    };
    let mut all = std::pin::pin!(async { tokio::join!(endpoints, signing) });
    tokio::select! {
        _ = &mut all => {}
        _ = shutdown => {
            // Each controller finishes its sync and stops.
            let _ = stop_tx.send(true);
            all.await;
        }
    }
}
