//! Authorization: RBAC (`rkube_rbac`) over a policy snapshot kept current from the store.
//!
//! At start the bootstrap policy (cluster-admin, admin/edit/view, system:discovery, ...) is
//! created where missing. A task watches the RBAC key prefix; after each burst of changes it
//! rebuilds the snapshot and does the cluster-role aggregation controller's job (writing the
//! aggregated rules into ClusterRoles with an aggregationRule). Requests read the snapshot
//! through an `Arc`, so a decision takes no lock beyond one pointer read.

use std::sync::{Arc, RwLock};

use rkube_api::ApiError;
use rkube_rbac::{Attributes, Decision, Policy, User};
use rkube_store::{ListOptions, Op, Store};
use serde_json::Value;

use crate::authn::UserInfo;
use crate::request_info::RequestInfo;
use crate::ApiServer;

const RBAC_PREFIX: &str = "/registry/rbac.authorization.k8s.io/";

pub struct Authorizer {
    policy: RwLock<Arc<Policy>>,
}

impl Default for Authorizer {
    fn default() -> Self {
        Authorizer { policy: RwLock::new(Arc::new(Policy::new(vec![], vec![], vec![], vec![]))) }
    }
}

fn values(store: &dyn Store, plural: &str) -> Vec<Value> {
    store
        .list(&format!("{RBAC_PREFIX}{plural}/"), &ListOptions::default())
        .map(|l| l.items.iter().filter_map(|kv| serde_json::from_slice(&kv.value).ok()).collect())
        .unwrap_or_default()
}

impl Authorizer {
    pub fn snapshot(&self) -> Arc<Policy> {
        self.policy.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Rebuilds the snapshot from the store.
    pub fn rebuild(&self, store: &dyn Store) {
        let policy = Policy::new(
            values(store, "roles"),
            values(store, "clusterroles"),
            values(store, "rolebindings"),
            values(store, "clusterrolebindings"),
        );
        *self.policy.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(policy);
    }
}

pub fn rbac_user(u: &UserInfo) -> User {
    User { name: u.name.clone(), uid: u.uid.clone(), groups: u.groups.clone() }
}

pub fn attributes(info: &RequestInfo) -> Attributes {
    Attributes {
        verb: info.verb.clone(),
        is_resource: info.is_resource,
        namespace: info.namespace.clone().unwrap_or_default(),
        api_group: info.group.clone(),
        resource: info.resource.clone(),
        subresource: info.subresource.clone().unwrap_or_default(),
        name: info.name.clone().unwrap_or_default(),
        path: info.path.clone(),
    }
}

/// The RBAC decision for a request; a denial is kube-apiserver's Forbidden Status.
pub fn authorize(server: &ApiServer, user: &UserInfo, info: &RequestInfo) -> Result<(), ApiError> {
    let attrs = attributes(info);
    let ru = rbac_user(user);
    match server.authz.snapshot().authorize(&ru, &attrs) {
        Decision::Allow => Ok(()),
        Decision::Deny(reason) => {
            let message = rkube_rbac::forbidden_message_with_reason(&ru, &attrs, &reason);
            let details = if info.is_resource {
                rkube_api::status::Details {
                    name: info.name.clone().unwrap_or_default(),
                    group: info.group.clone(),
                    kind: info.resource.clone(),
                    causes: vec![],
                }
            } else {
                rkube_api::status::Details::default()
            };
            Err(ApiError::new(403, "Forbidden", message).with_details(details))
        }
    }
}

/// Creates the bootstrap ClusterRoles and ClusterRoleBindings that are missing.
pub async fn bootstrap(server: &Arc<ApiServer>) -> Result<(), ApiError> {
    for (plural, objects) in [
        ("clusterroles", rkube_rbac::bootstrap_cluster_roles()),
        ("clusterrolebindings", rkube_rbac::bootstrap_cluster_role_bindings()),
    ] {
        for obj in objects {
            let name = obj.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("").to_string();
            if server.store.get(&format!("{RBAC_PREFIX}{plural}/{name}")).is_some() {
                continue;
            }
            crate::registry::create_internal(server, "rbac.authorization.k8s.io", "v1", plural, None, obj).await?;
        }
    }
    Ok(())
}

/// Writes aggregated rules into ClusterRoles whose aggregationRule selects changed roles.
async fn aggregate(store: &Arc<dyn Store>) {
    let roles = values(store.as_ref(), "clusterroles");
    for updated in rkube_rbac::aggregate(&roles) {
        let Some(name) = updated.pointer("/metadata/name").and_then(Value::as_str) else { continue };
        let key = format!("{RBAC_PREFIX}clusterroles/{name}");
        let Some(kv) = store.get(&key) else { continue };
        let op = Op::Update { key, expected: Some(kv.mod_revision), value: crate::registry::stamp(updated) };
        if let Err(e) = store.txn(op).await {
            // A concurrent change: the watch brings it back here.
            tracing::debug!(error = %e, "cluster role aggregation write skipped");
        }
    }
}

/// Builds the first snapshot, aggregates, and keeps both current from a watch.
pub async fn start(server: Arc<ApiServer>) {
    let store = server.store.clone();
    aggregate(&store).await;
    server.authz.rebuild(store.as_ref());
    let from = store.revision();
    let Ok(mut watcher) = store.watch(RBAC_PREFIX, from) else {
        tracing::error!("cannot watch RBAC objects; the policy will not follow changes");
        return;
    };
    tokio::spawn(async move {
        while watcher.next().await.is_some() {
            // Coalesce a burst of changes into one rebuild.
            while watcher.try_next().is_some() {}
            aggregate(&store).await;
            server.authz.rebuild(store.as_ref());
        }
    });
}

/// Impersonation (`Impersonate-User`, `Impersonate-Group`, `Impersonate-Uid` headers, what
/// `kubectl --as/--as-group` send): each requested identity must be allowed by the
/// `impersonate` verb, then the request proceeds as that user.
pub fn impersonate(server: &ApiServer, user: UserInfo, headers: &http::HeaderMap) -> Result<UserInfo, ApiError> {
    let get_all = |name: &str| -> Vec<String> {
        headers.get_all(name).iter().filter_map(|v| v.to_str().ok()).map(str::to_string).collect()
    };
    let target = get_all("impersonate-user").into_iter().next().filter(|t| !t.is_empty());
    let groups = get_all("impersonate-group");
    let uid = get_all("impersonate-uid").into_iter().next();
    // Impersonate-Extra-<key>: the key is percent-encoded in the header name.
    let mut extra: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for (name, value) in headers {
        if let Some(key) = name.as_str().strip_prefix("impersonate-extra-") {
            let key = percent_encoding::percent_decode_str(key).decode_utf8_lossy().to_lowercase();
            if let Ok(v) = value.to_str() {
                extra.entry(key).or_default().push(v.to_string());
            }
        }
    }
    let Some(target) = target else {
        if !groups.is_empty() || uid.is_some() || !extra.is_empty() {
            return Err(ApiError::internal(
                "requested impersonation of groups, uid or extra without impersonating a user",
            ));
        }
        return Ok(user);
    };
    let policy = server.authz.snapshot();
    let ru = rbac_user(&user);
    let check = |resource: &str, subresource: &str, group: &str, namespace: &str, name: &str| -> Result<(), ApiError> {
        let attrs = Attributes {
            verb: "impersonate".into(),
            is_resource: true,
            namespace: namespace.into(),
            api_group: group.into(),
            resource: resource.into(),
            subresource: subresource.into(),
            name: name.into(),
            path: String::new(),
        };
        match policy.authorize(&ru, &attrs) {
            Decision::Allow => Ok(()),
            Decision::Deny(reason) => {
                Err(ApiError::new(403, "Forbidden", rkube_rbac::forbidden_message_with_reason(&ru, &attrs, &reason))
                    .with_details(rkube_api::status::Details {
                        name: name.into(),
                        group: group.into(),
                        kind: resource.into(),
                        causes: vec![],
                    }))
            }
        }
    };
    let mut out_groups = groups.clone();
    // Only a well-formed service-account name is a service account (kube-apiserver's
    // SplitUsername); anything else is a user name, needing `impersonate users`.
    match service_account_of(&target) {
        Some((ns, name)) => {
            check("serviceaccounts", "", "", ns, name)?;
            if groups.is_empty() {
                out_groups.push("system:serviceaccounts".into());
                out_groups.push(format!("system:serviceaccounts:{ns}"));
            }
        }
        None => check("users", "", "", "", &target)?,
    }
    for g in &groups {
        check("groups", "", "", "", g)?;
    }
    for (key, values) in &extra {
        for v in values {
            check("userextras", key, "authentication.k8s.io", "", v)?;
        }
    }
    if let Some(u) = &uid {
        check("uids", "", "authentication.k8s.io", "", u)?;
    }
    if target == "system:anonymous" {
        if !out_groups.iter().any(|g| g == "system:unauthenticated") {
            out_groups.push("system:unauthenticated".into());
        }
        return Ok(UserInfo { name: target, uid: uid.unwrap_or_default(), groups: out_groups, extra });
    }
    let mut u = UserInfo::authenticated(target, uid.unwrap_or_default(), out_groups);
    u.extra = extra;
    Ok(u)
}

/// `system:serviceaccount:<namespace>:<name>` with a valid namespace and name.
fn service_account_of(user: &str) -> Option<(&str, &str)> {
    let rest = user.strip_prefix("system:serviceaccount:")?;
    let (ns, name) = rest.split_once(':')?;
    let valid = rkube_api::validation::dns1123_label(ns).is_empty()
        && rkube_api::validation::dns1123_subdomain(name).is_empty()
        && !name.contains(':');
    valid.then_some((ns, name))
}

/// Admission for writes: RBAC objects may only grant what the writer holds (or what
/// `escalate`/`bind` allow), and bindings must name an existing role; kube-apiserver's RBAC
/// storage does the same. Other resources pass.
pub fn admit_write(
    server: &ApiServer,
    user: &UserInfo,
    def: &rkube_api::ResourceDef,
    namespace: &str,
    request_name: &str,
    object: &Value,
    old: Option<&Value>,
) -> Result<(), ApiError> {
    if def.group == "certificates.k8s.io" && def.plural == "certificatesigningrequests" {
        return admit_csr(server, user, request_name, object, old);
    }
    if def.group != "rbac.authorization.k8s.io" {
        return Ok(());
    }
    let write = rkube_rbac::RbacWrite { resource: &def.plural, namespace, request_name, object, old_object: old };
    rkube_rbac::check_rbac_write(&server.authz.snapshot(), &rbac_user(user), &write).map_err(|e| match e {
        rkube_rbac::RbacWriteError::Forbidden { resource, name, message } => ApiError::new(403, "Forbidden", message)
            .with_details(rkube_api::status::Details {
                name,
                group: "rbac.authorization.k8s.io".into(),
                kind: resource,
                causes: vec![],
            }),
        rkube_rbac::RbacWriteError::RoleNotFound { kind, name, message } => ApiError::new(404, "NotFound", message)
            .with_details(rkube_api::status::Details {
                name,
                group: "rbac.authorization.k8s.io".into(),
                kind,
                causes: vec![],
            }),
        rkube_rbac::RbacWriteError::BadRequest(m) => ApiError::bad_request(m),
        rkube_rbac::RbacWriteError::Internal(m) => ApiError::internal(m),
    })
}

/// kube-apiserver's CertificateApproval, CertificateSigning and CertificateSubjectRestriction
/// admission: approving or denying a request takes `approve`, issuing its certificate
/// `sign`, on the `signers` resource named by its signerName (or its `domain/*`); the
/// kube-apiserver-client signer is never asked for a `system:masters` certificate.
fn admit_csr(
    server: &ApiServer,
    user: &UserInfo,
    request_name: &str,
    object: &Value,
    old: Option<&Value>,
) -> Result<(), ApiError> {
    let signer = object.pointer("/spec/signerName").and_then(Value::as_str).unwrap_or("");
    let name = object.pointer("/metadata/name").and_then(Value::as_str).unwrap_or(request_name);
    let forbidden = |why: String| {
        ApiError::new(
            403,
            "Forbidden",
            format!("certificatesigningrequests.certificates.k8s.io \"{name}\" is forbidden: {why}"),
        )
        .with_details(rkube_api::status::Details {
            name: name.to_string(),
            group: "certificates.k8s.io".into(),
            kind: "certificatesigningrequests".into(),
            causes: vec![],
        })
    };
    let Some(old) = old else {
        if signer == "kubernetes.io/kube-apiserver-client" {
            let pem = rkube_api::csr::request_pem(object);
            if rkube_pki::parse_request(&pem).is_ok_and(|r| r.organizations.iter().any(|o| o == "system:masters")) {
                return Err(forbidden(
                    "use of kubernetes.io/kube-apiserver-client signer with system:masters group is not allowed".into(),
                ));
            }
        }
        return Ok(());
    };
    let allowed = |verb: &str| {
        let policy = server.authz.snapshot();
        let ru = rbac_user(user);
        let domain_wildcard = signer.split_once('/').map(|(d, _)| format!("{d}/*"));
        [Some(signer.to_string()), domain_wildcard].into_iter().flatten().any(|n| {
            let attrs = Attributes {
                verb: verb.into(),
                is_resource: true,
                api_group: "certificates.k8s.io".into(),
                resource: "signers".into(),
                name: n,
                ..Attributes::default()
            };
            matches!(policy.authorize(&ru, &attrs), Decision::Allow)
        })
    };
    if rkube_api::csr::approvals(object) != rkube_api::csr::approvals(old) && !allowed("approve") {
        return Err(forbidden(format!("user not permitted to approve requests with signerName {signer:?}")));
    }
    let cert = |v: &Value| v.pointer("/status/certificate").cloned();
    if cert(object) != cert(old) && cert(object).is_some() && !allowed("sign") {
        return Err(forbidden(format!("user not permitted to sign requests with signerName {signer:?}")));
    }
    Ok(())
}
