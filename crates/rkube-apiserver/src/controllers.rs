//! In-process controllers, each a loop over a store watch that writes through the same
//! registry path a client request takes (so defaults, validation and watch events are the
//! same as for any write):
//! - service accounts: every namespace has a `default` ServiceAccount;
//! - root CA publisher: every namespace has the `kube-root-ca.crt` ConfigMap with the CA;
//! - token controller: a `kubernetes.io/service-account-token` Secret naming a service
//!   account gets `token`, `ca.crt` and `namespace` (and the service account's uid).
//!
//! Both recreate their object when it is deleted and leave terminating namespaces alone.

use std::sync::Arc;

use rkube_store::{ListOptions, Store};
use serde_json::{json, Value};

use crate::registry::{create_internal, parse_stored};
use crate::ApiServer;

const NAMESPACES: &str = "/registry/core/namespaces/";
const SERVICE_ACCOUNTS: &str = "/registry/core/serviceaccounts/";
const CONFIG_MAPS: &str = "/registry/core/configmaps/";
const SECRETS: &str = "/registry/core/secrets/";
pub const ROOT_CA_CONFIGMAP: &str = "kube-root-ca.crt";
const ROOT_CA_DESCRIPTION: &str = "Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints such as the internal service IP or kubernetes.default.svc. No other usage is guaranteed across distributions of Kubernetes clusters.";

fn live_namespaces(store: &dyn Store) -> Vec<String> {
    store
        .list(NAMESPACES, &ListOptions::default())
        .map(|l| {
            l.items
                .iter()
                .filter_map(|kv| parse_stored(kv).ok())
                .filter(|ns| ns.pointer("/metadata/deletionTimestamp").is_none_or(Value::is_null))
                .filter_map(|ns| ns.pointer("/metadata/name").and_then(Value::as_str).map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Makes sure every live namespace has its default ServiceAccount and root CA ConfigMap.
async fn reconcile(server: &Arc<ApiServer>) {
    for ns in live_namespaces(server.store.as_ref()) {
        if server.store.get(&format!("{SERVICE_ACCOUNTS}{ns}/default")).is_none() {
            let sa = json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default"}});
            if let Err(e) = create_internal(server, "", "v1", "serviceaccounts", Some(&ns), sa).await {
                tracing::debug!(namespace = %ns, error = %e, "default service account not created");
            }
        }
        if server.store.get(&format!("{CONFIG_MAPS}{ns}/{ROOT_CA_CONFIGMAP}")).is_none() {
            if let Some(ca) = server.ca_pem.get() {
                let cm = json!({"apiVersion": "v1", "kind": "ConfigMap",
                    "metadata": {"name": ROOT_CA_CONFIGMAP, "annotations": {"kubernetes.io/description": ROOT_CA_DESCRIPTION}},
                    "data": {"ca.crt": ca}});
                if let Err(e) = create_internal(server, "", "v1", "configmaps", Some(&ns), cm).await {
                    tracing::debug!(namespace = %ns, error = %e, "root CA configmap not created");
                }
            }
        }
    }
}

/// Fills service-account token Secrets that have no token yet.
async fn fill_token_secrets(server: &Arc<ApiServer>) {
    use base64::Engine;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s.as_bytes());
    let Ok(list) = server.store.list(SECRETS, &ListOptions::default()) else { return };
    for kv in list.items {
        let Ok(mut secret) = parse_stored(&kv) else { continue };
        if secret.get("type").and_then(Value::as_str) != Some("kubernetes.io/service-account-token") {
            continue;
        }
        if secret.pointer("/data/token").and_then(Value::as_str).is_some_and(|t| !t.is_empty()) {
            continue;
        }
        let ns = secret.pointer("/metadata/namespace").and_then(Value::as_str).unwrap_or("").to_string();
        let name = secret.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("").to_string();
        let Some(sa_name) = secret
            .pointer("/metadata/annotations/kubernetes.io~1service-account.name")
            .and_then(Value::as_str)
            .map(str::to_string)
        else {
            continue;
        };
        // The service account must exist (kube-controller-manager deletes the Secret
        // otherwise; here it waits for it).
        let Some(sa) =
            server.store.get(&format!("{SERVICE_ACCOUNTS}{ns}/{sa_name}")).and_then(|kv| parse_stored(&kv).ok())
        else {
            continue;
        };
        let sa_uid = sa.pointer("/metadata/uid").and_then(Value::as_str).unwrap_or("").to_string();
        let (Some(issuer), Some(ca)) = (server.sa_tokens.get(), server.ca_pem.get()) else { return };
        let Ok(token) = issuer.legacy_token(&ns, &name, &sa_name, &sa_uid) else { continue };
        let data = rkube_api::strategy::ensure_map(&mut secret, &["data"]);
        data.insert("token".into(), json!(b64(&token)));
        data.insert("ca.crt".into(), json!(b64(ca)));
        data.insert("namespace".into(), json!(b64(&ns)));
        rkube_api::strategy::ensure_map(&mut secret, &["metadata", "annotations"])
            .insert("kubernetes.io/service-account.uid".into(), json!(sa_uid));
        let op = rkube_store::Op::Update {
            key: kv.key.to_string(),
            expected: Some(kv.mod_revision),
            value: crate::registry::stamp(secret),
        };
        if let Err(e) = server.store.txn(op).await {
            tracing::debug!(error = %e, "token secret not filled; retried on the next change");
        }
    }
}

/// Runs the controllers: once now (so they are in place when the server starts serving), then
/// after every change to namespaces, service accounts or config maps.
pub async fn start(server: Arc<ApiServer>) {
    reconcile(&server).await;
    fill_token_secrets(&server).await;
    let store = server.store.clone();
    let from = store.revision();
    let watches = [NAMESPACES, SERVICE_ACCOUNTS, CONFIG_MAPS, SECRETS].map(|p| store.watch(p, from));
    let mut watchers = Vec::new();
    for w in watches {
        match w {
            Ok(w) => watchers.push(w),
            Err(e) => {
                tracing::error!(error = %e, "controllers cannot watch; they will not follow changes");
                return;
            }
        }
    }
    let (tx, mut rx) = tokio::sync::mpsc::channel::<()>(1);
    for mut w in watchers {
        let tx = tx.clone();
        tokio::spawn(async move {
            while w.next().await.is_some() {
                let _ = tx.try_send(());
            }
        });
    }
    tokio::spawn(async move {
        while rx.recv().await.is_some() {
            reconcile(&server).await;
            fill_token_secrets(&server).await;
        }
    });
}

/// The `kube-dns` Service in `kube-system` at the cluster DNS address, as kubeadm and k3s
/// install it with CoreDNS; rkube's node agents answer DNS on that address themselves, and
/// the Service keeps the address from being given to another Service.
pub async fn publish_cluster_dns_service(server: &Arc<ApiServer>, ip: std::net::Ipv4Addr) {
    if server.store.get("/registry/core/services/kube-system/kube-dns").is_some() {
        return;
    }
    let svc = json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "kube-dns", "labels": {"k8s-app": "kube-dns", "kubernetes.io/cluster-service": "true", "kubernetes.io/name": "CoreDNS"}},
        "spec": {"type": "ClusterIP", "clusterIP": ip.to_string(), "selector": {"k8s-app": "kube-dns"},
                 "ports": [{"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 53},
                           {"name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": 53},
                           {"name": "metrics", "port": 9153, "protocol": "TCP", "targetPort": 9153}]}});
    if let Err(e) = create_internal(server, "", "v1", "services", Some("kube-system"), svc).await {
        tracing::warn!(error = %e, "the kube-dns Service was not created");
    }
}

/// The `kubernetes` Service in `default` (ClusterIP 10.96.0.1, port 443) and its Endpoints
/// pointing at this server, as kube-apiserver's bootstrap controller keeps them; the
/// Endpoints are rewritten when the server's address changed since the last start.
pub async fn publish_kubernetes_service(server: &Arc<ApiServer>, addr: std::net::SocketAddr) {
    let ip = if addr.ip().is_unspecified() { "127.0.0.1".to_string() } else { addr.ip().to_string() };
    let port = addr.port();
    if server.store.get("/registry/core/services/default/kubernetes").is_none() {
        let svc = json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "kubernetes", "labels": {"component": "apiserver", "provider": "kubernetes"}},
            "spec": {"type": "ClusterIP", "clusterIP": rkube_pki::KUBERNETES_SERVICE_IP, "sessionAffinity": "None",
                     "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": port}]}});
        if let Err(e) = create_internal(server, "", "v1", "services", Some("default"), svc).await {
            tracing::warn!(error = %e, "the kubernetes Service was not created");
        }
    }
    let subsets = json!([{"addresses": [{"ip": ip}], "ports": [{"name": "https", "port": port, "protocol": "TCP"}]}]);
    let key = "/registry/core/endpoints/default/kubernetes";
    match server.store.get(key) {
        None => {
            let ep = json!({"apiVersion": "v1", "kind": "Endpoints",
                "metadata": {"name": "kubernetes", "labels": {"endpointslice.kubernetes.io/skip-mirror": "true"}},
                "subsets": subsets});
            if let Err(e) = create_internal(server, "", "v1", "endpoints", Some("default"), ep).await {
                tracing::warn!(error = %e, "the kubernetes Endpoints were not created");
            }
        }
        Some(kv) => {
            let Ok(mut ep) = parse_stored(&kv) else { return };
            if ep.get("subsets") != Some(&subsets) {
                ep["subsets"] = subsets;
                let op = rkube_store::Op::Update {
                    key: key.to_string(),
                    expected: Some(kv.mod_revision),
                    value: crate::registry::stamp(ep),
                };
                if let Err(e) = server.store.txn(op).await {
                    tracing::warn!(error = %e, "the kubernetes Endpoints were not updated");
                }
            }
        }
    }
}
