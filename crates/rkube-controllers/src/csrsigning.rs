//! The certificate signer (kube-controller-manager's `csrsigning` controller with its
//! `kubernetes.io/kube-apiserver-client`, `kubernetes.io/kube-apiserver-client-kubelet` and
//! `kubernetes.io/kubelet-serving` signers): a CertificateSigningRequest that is approved, not
//! failed and not yet issued, for one of those signers, is checked against that signer's
//! rules; one that passes is signed with the cluster CA and its certificate written through
//! `certificatesigningrequests/status`, one that does not gets a `Failed` condition with
//! reason `SignerValidationFailure` and the rule's message, as upstream words it. Requests
//! for other signers are left to whoever serves them.
//!
//! Certificates last `spec.expirationSeconds` (at least 10 minutes) or the signer's duration
//! (a year by default, as `--cluster-signing-duration`), whichever is shorter, and start five
//! minutes early for clock skew. No request is approved here: kube-controller-manager's
//! auto-approval covers node client certificates only (bootstrap tokens, not served by
//! rkube); serving certificates are approved by an administrator (`kubectl certificate
//! approve`), as upstream.

use std::collections::BTreeSet;
use std::future::Future;
use std::time::Duration;

use k8s_openapi::api::certificates::v1::{CertificateSigningRequest, CertificateSigningRequestCondition};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::ByteString;
use kube::api::{Api, PostParams};
use kube::runtime::reflector::{ObjectRef, Store};
use rkube_client::{Change, Informers};
use tokio::sync::broadcast::error::TryRecvError;
use tokio::time::Instant;

use crate::queue::Queue;

/// The controller's name.
pub const CONTROLLER_NAME: &str = "csrsigning";

/// What signs: the CA and how long its certificates last.
#[derive(Clone)]
pub struct Signer {
    pub ca: rkube_pki::SigningCa,
    pub duration: Duration,
}

/// The signer names served here.
pub const SIGNERS: &[&str] = &[
    "kubernetes.io/kube-apiserver-client",
    "kubernetes.io/kube-apiserver-client-kubelet",
    "kubernetes.io/kubelet-serving",
];

fn usage_set(list: &[&str]) -> BTreeSet<String> {
    list.iter().map(|s| s.to_string()).collect()
}

/// Whether the signer `signer_name` may issue what `req` asks with `usages` (upstream's
/// `isKubeletServing`, `isKubeletClient`, `isKubeAPIServerClient`): the error is the
/// Failed condition's message.
pub fn check(signer_name: &str, req: &rkube_pki::Requested, list: &[String]) -> Result<(), String> {
    let usages: BTreeSet<String> = list.iter().cloned().collect();
    let node_org = req.organizations == ["system:nodes"];
    // The SAN kinds a node's certificate may not carry, worded as upstream's errors.
    let refuse = |kinds: &[&str]| -> Result<(), String> {
        for kind in kinds {
            let present = match *kind {
                "DNS" => !req.dns_names.is_empty(),
                "Email" => !req.emails.is_empty(),
                "IP" => !req.ips.is_empty(),
                _ => !req.uris.is_empty(),
            };
            if present {
                return Err(format!("{kind} subjectAltNames are not allowed"));
            }
        }
        Ok(())
    };
    let node = |required: [&str; 3], list: &str| -> Result<(), String> {
        let without_rsa: BTreeSet<String> =
            usage_set(&required).into_iter().filter(|u| u != "key encipherment").collect();
        if usages != usage_set(&required) && usages != without_rsa {
            return Err(format!("usages did not match [{list}]"));
        }
        if !req.common_name.starts_with("system:node:") {
            return Err("subject common name does not begin with system:node:".into());
        }
        Ok(())
    };
    match signer_name {
        "kubernetes.io/kubelet-serving" => {
            if !node_org {
                return Err("subject organization is not system:nodes".into());
            }
            if req.dns_names.is_empty() && req.ips.is_empty() {
                return Err("DNS or IP subjectAltName is required".into());
            }
            refuse(&["Email", "URI"])?;
            node(
                ["key encipherment", "digital signature", "server auth"],
                "digital signature key encipherment server auth",
            )
        }
        "kubernetes.io/kube-apiserver-client-kubelet" => {
            if !node_org {
                return Err("subject organization is not system:nodes".into());
            }
            refuse(&["DNS", "Email", "IP", "URI"])?;
            node(
                ["key encipherment", "digital signature", "client auth"],
                "client auth digital signature key encipherment",
            )
        }
        _ => {
            for u in list {
                if !matches!(u.as_str(), "digital signature" | "key encipherment" | "client auth") {
                    return Err(format!("invalid usage for client certificate: {u}"));
                }
            }
            if !usages.contains("client auth") {
                return Err("missing required usage for client certificate: client auth".into());
            }
            Ok(())
        }
    }
}

fn has_true(csr: &CertificateSigningRequest, ty: &str) -> bool {
    csr.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == ty && c.status == "True"))
}

/// Approved, not denied or failed, not issued yet, and for a signer served here.
fn pending(csr: &CertificateSigningRequest) -> bool {
    let issued = csr.status.as_ref().and_then(|s| s.certificate.as_ref()).is_some_and(|c| !c.0.is_empty());
    has_true(csr, "Approved")
        && !has_true(csr, "Denied")
        && !has_true(csr, "Failed")
        && !issued
        && SIGNERS.contains(&csr.spec.signer_name.as_str())
}

/// Runs the signer until `shutdown` resolves.
pub async fn run(informers: Informers, signer: Signer, shutdown: impl Future<Output = ()>) {
    let csrs = informers.get::<CertificateSigningRequest>("");
    let mut rx = csrs.subscribe();
    let mut shutdown = std::pin::pin!(shutdown);
    tokio::select! {
        _ = &mut shutdown => return,
        _ = csrs.ready() => {}
    }
    tracing::info!(controller = CONTROLLER_NAME, "starting controller");
    let api: Api<CertificateSigningRequest> = Api::all(informers.client().clone());
    let store = csrs.store().clone();
    let mut queue: Queue<String> = Queue::default();
    let queue_all = |queue: &mut Queue<String>, store: &Store<CertificateSigningRequest>| {
        for csr in store.state() {
            if pending(&csr) {
                queue.add(csr.metadata.name.clone().unwrap_or_default());
            }
        }
    };
    let on_change = |queue: &mut Queue<String>, ch: Change<CertificateSigningRequest>| {
        if let Change::Applied(csr) = ch {
            if pending(&csr) {
                queue.add(csr.metadata.name.clone().unwrap_or_default());
            }
        }
    };
    queue_all(&mut queue, &store);
    loop {
        loop {
            match rx.try_recv() {
                Ok(ch) => on_change(&mut queue, ch),
                Err(TryRecvError::Lagged(_)) => queue_all(&mut queue, &store),
                Err(_) => break,
            }
        }
        if let Some(name) = queue.pop_due(Instant::now()) {
            let result = tokio::select! {
                _ = &mut shutdown => break,
                r = sync(&api, &store, &signer, &name) => r,
            };
            match result {
                Ok(()) => queue.forget(&name),
                Err(e) => {
                    tracing::warn!(controller = CONTROLLER_NAME, csr = %name, error = %e, "sync failed");
                    if !queue.add_rate_limited(name.clone()) {
                        queue.forget(&name);
                    }
                }
            }
            continue;
        }
        let wake = queue.next_due().unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
        tokio::select! {
            _ = &mut shutdown => break,
            ch = rx.recv() => match ch {
                Ok(ch) => on_change(&mut queue, ch),
                Err(_) => queue_all(&mut queue, &store),
            },
            _ = tokio::time::sleep_until(wake) => {}
        }
    }
    tracing::info!(controller = CONTROLLER_NAME, "shutting down controller");
}

/// Signs (or fails) one request, read afresh from the cache.
async fn sync(
    api: &Api<CertificateSigningRequest>,
    store: &Store<CertificateSigningRequest>,
    signer: &Signer,
    name: &str,
) -> Result<(), String> {
    let Some(csr) = store.get(&ObjectRef::new(name)) else { return Ok(()) };
    if !pending(&csr) {
        return Ok(());
    }
    let mut csr = (*csr).clone();
    let request = String::from_utf8_lossy(&csr.spec.request.0).to_string();
    let parsed =
        rkube_pki::parse_request(&csr.spec.request.0).map_err(|e| format!("unable to parse csr {name:?}: {e}"))?;
    let usages = csr.spec.usages.clone().unwrap_or_default();
    let status = csr.status.get_or_insert_with(Default::default);
    match check(&csr.spec.signer_name, &parsed, &usages) {
        Err(message) => {
            status.conditions.get_or_insert_with(Vec::new).push(CertificateSigningRequestCondition {
                type_: "Failed".into(),
                status: "True".into(),
                reason: Some("SignerValidationFailure".into()),
                message: Some(message),
                last_update_time: Some(Time(k8s_openapi::jiff::Timestamp::now())),
                ..Default::default()
            });
        }
        Ok(()) => {
            let mut ttl = signer.duration;
            if let Some(secs) = csr.spec.expiration_seconds {
                ttl = ttl.min(Duration::from_secs(secs.max(600) as u64));
            }
            let not_after = chrono::Utc::now() + chrono::Duration::from_std(ttl).map_err(|e| e.to_string())?;
            let pem = signer
                .ca
                .sign_request(&request, &usages, not_after)
                .map_err(|e| format!("error auto signing csr: {e}"))?;
            status.certificate = Some(ByteString(pem.into_bytes()));
        }
    }
    match api.replace_status(name, &PostParams::default(), &csr).await {
        Ok(_) => Ok(()),
        // Someone else changed it: the change comes back through the watch.
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
        Err(e) => Err(format!("error updating signature for csr: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(cn: &str, orgs: &[&str], dns: &[&str]) -> rkube_pki::Requested {
        rkube_pki::Requested {
            common_name: cn.into(),
            organizations: orgs.iter().map(|s| s.to_string()).collect(),
            dns_names: dns.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    fn u(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn each_signer_has_upstreams_rules() {
        let serving = "kubernetes.io/kubelet-serving";
        let node = req("system:node:n1", &["system:nodes"], &["n1"]);
        assert_eq!(check(serving, &node, &u(&["digital signature", "server auth"])), Ok(()));
        assert_eq!(check(serving, &node, &u(&["digital signature", "key encipherment", "server auth"])), Ok(()));
        assert_eq!(
            check(serving, &node, &u(&["client auth", "digital signature"])),
            Err("usages did not match [digital signature key encipherment server auth]".into())
        );
        assert_eq!(
            check(serving, &req("system:node:n1", &["x"], &["n1"]), &u(&["digital signature", "server auth"])),
            Err("subject organization is not system:nodes".into())
        );
        assert_eq!(
            check(serving, &req("system:node:n1", &["system:nodes"], &[]), &u(&["digital signature", "server auth"])),
            Err("DNS or IP subjectAltName is required".into())
        );
        assert_eq!(
            check(serving, &req("n1", &["system:nodes"], &["n1"]), &u(&["digital signature", "server auth"])),
            Err("subject common name does not begin with system:node:".into())
        );
        let kubelet = "kubernetes.io/kube-apiserver-client-kubelet";
        assert_eq!(
            check(kubelet, &node, &u(&["digital signature", "client auth"])),
            Err("DNS subjectAltNames are not allowed".into())
        );
        let client = "kubernetes.io/kube-apiserver-client";
        assert_eq!(check(client, &req("alice", &[], &[]), &u(&["client auth"])), Ok(()));
        assert_eq!(
            check(client, &req("alice", &[], &[]), &u(&["client auth", "server auth"])),
            Err("invalid usage for client certificate: server auth".into())
        );
        assert_eq!(
            check(client, &req("alice", &[], &[]), &u(&["digital signature"])),
            Err("missing required usage for client certificate: client auth".into())
        );
    }
}
