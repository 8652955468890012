//! The kubelet API's serving certificate from the cluster, as the kubelet's
//! `--rotate-server-certificates` (`serverTLSBootstrap`) gets it: a new ECDSA P-256 key, a
//! CertificateSigningRequest for `system:node:<name>` in `system:nodes` with the node's
//! names and addresses, signer `kubernetes.io/kubelet-serving`, usages `digital signature`
//! and `server auth`; once an administrator approves it (`kubectl certificate approve`) and
//! the signer issues it, the API serves with it, and it is kept in
//! `<root>/pki/kubelet-server-current.pem` for the next start. A new one is asked for at 80 %
//! of its lifetime (the kubelet picks 70-90 %). Until the first is issued the kubelet API
//! refuses TLS handshakes, as the kubelet's does; a denied or failed request is logged and
//! asked again after a back-off.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use k8s_openapi::api::certificates::v1::{CertificateSigningRequest, CertificateSigningRequestSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::ByteString;
use kube::api::{Api, PostParams, WatchEvent, WatchParams};
use kube::Client;

/// The serving certificate now in use, shared with the kubelet API's TLS handshakes.
#[derive(Debug, Default)]
pub struct Current(RwLock<Option<Arc<rustls::sign::CertifiedKey>>>);

impl Current {
    /// A holder of one fixed certificate (PEM chain and key).
    pub fn fixed(cert_pem: &str, key_pem: &str) -> Result<Current, String> {
        let c = Current::default();
        c.set(cert_pem, key_pem)?;
        Ok(c)
    }

    pub fn set(&self, cert_pem: &str, key_pem: &str) -> Result<(), String> {
        let chain = rkube_pki::parse_cert_chain(cert_pem).map_err(|e| e.to_string())?;
        let key = rkube_pki::parse_key(key_pem).map_err(|e| e.to_string())?;
        let provider = rustls::crypto::aws_lc_rs::default_provider();
        let key = provider.key_provider.load_private_key(key).map_err(|e| e.to_string())?;
        *self.0.write().unwrap_or_else(|e| e.into_inner()) =
            Some(Arc::new(rustls::sign::CertifiedKey::new(chain, key)));
        Ok(())
    }

    pub fn get(&self) -> Option<Arc<rustls::sign::CertifiedKey>> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl rustls::server::ResolvesServerCert for Current {
    fn resolve(&self, _hello: rustls::server::ClientHello<'_>) -> Option<Arc<rustls::sign::CertifiedKey>> {
        self.get()
    }
}

/// What the certificate is for.
pub struct Names {
    pub node: String,
    pub dns: Vec<String>,
    pub ips: Vec<std::net::IpAddr>,
}

fn current_file(root: &Path) -> PathBuf {
    root.join("pki").join("kubelet-server-current.pem")
}

/// The certificate's validity (not before, not after), from its first PEM block.
fn validity(pem: &str) -> Option<(i64, i64)> {
    let der = rkube_pki::parse_cert_chain(pem).ok()?.into_iter().next()?;
    let (_, cert) = x509_parser::parse_x509_certificate(&der).ok()?;
    Some((cert.validity().not_before.timestamp(), cert.validity().not_after.timestamp()))
}

/// When to ask for the next one: 80 % into the certificate's lifetime.
fn renew_at(pem: &str) -> Option<i64> {
    let (from, to) = validity(pem)?;
    Some(from + (to - from) * 8 / 10)
}

/// Keeps `current` holding a valid certificate from the cluster until the agent stops.
pub async fn run(client: Client, names: Names, root: PathBuf, current: Arc<Current>) {
    let file = current_file(&root);
    let mut backoff = Duration::from_secs(1);
    loop {
        // A kept certificate (cert and key in one file) serves until it is due.
        if let Ok(pem) = std::fs::read_to_string(&file) {
            let now = chrono::Utc::now().timestamp();
            if let (Some(due), Some((_, to))) = (renew_at(&pem), validity(&pem)) {
                if now < to && current.get().is_none() && current.set(&pem, &pem).is_ok() {
                    tracing::info!(file = %file.display(), "serving with the kept kubelet certificate");
                }
                if now < due {
                    tokio::time::sleep(Duration::from_secs((due - now) as u64)).await;
                    continue;
                }
            }
        }
        match request(&client, &names).await {
            Ok((cert_pem, key_pem)) => {
                backoff = Duration::from_secs(1);
                let both = format!("{cert_pem}{key_pem}");
                if let Err(e) = current.set(&cert_pem, &key_pem) {
                    tracing::error!(error = %e, retry_in = ?backoff, "the issued serving certificate cannot be used");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(300));
                    continue;
                }
                if let Some(dir) = file.parent() {
                    let _ = std::fs::create_dir_all(dir);
                }
                if let Err(e) = write_private(&file, &both) {
                    tracing::warn!(error = %e, "cannot keep the serving certificate");
                }
                tracing::info!("kubelet serving certificate issued");
                // The one in memory serves until it is due, kept on disk or not.
                let now = chrono::Utc::now().timestamp();
                let due = renew_at(&cert_pem).unwrap_or(now + 3600);
                tokio::time::sleep(Duration::from_secs(due.saturating_sub(now).max(60) as u64)).await;
            }
            Err(e) => {
                tracing::warn!(error = %e, retry_in = ?backoff, "no kubelet serving certificate");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(300));
            }
        }
    }
}

fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// One request, waited on until it is issued, denied or failed.
async fn request(client: &Client, names: &Names) -> Result<(String, String), String> {
    let cn = format!("system:node:{}", names.node);
    let (csr_pem, key_pem) =
        rkube_pki::new_request(&cn, &["system:nodes"], &names.dns, &names.ips).map_err(|e| e.to_string())?;
    let api: Api<CertificateSigningRequest> = Api::all(client.clone());
    let csr = CertificateSigningRequest {
        metadata: ObjectMeta { generate_name: Some("csr-".into()), ..Default::default() },
        spec: CertificateSigningRequestSpec {
            request: ByteString(csr_pem.into_bytes()),
            signer_name: "kubernetes.io/kubelet-serving".into(),
            usages: Some(vec!["digital signature".into(), "server auth".into()]),
            ..Default::default()
        },
        status: None,
    };
    let made = api.create(&PostParams::default(), &csr).await.map_err(|e| format!("cannot create the request: {e}"))?;
    let name = made.metadata.name.clone().unwrap_or_default();
    tracing::info!(csr = %name, "kubelet serving certificate requested; waiting for its approval");
    let mut rv = made.metadata.resource_version.clone().unwrap_or_default();
    let mut seen = made;
    loop {
        if let Some(result) = outcome(&seen) {
            return result.map(|cert| (cert, key_pem));
        }
        let wp = WatchParams::default().fields(&format!("metadata.name={name}")).timeout(290);
        use futures::StreamExt;
        let mut stream = api.watch(&wp, &rv).await.map_err(|e| e.to_string())?.boxed();
        while let Some(ev) = stream.next().await {
            match ev.map_err(|e| e.to_string())? {
                WatchEvent::Added(c) | WatchEvent::Modified(c) => {
                    rv = c.metadata.resource_version.clone().unwrap_or_default();
                    seen = c;
                    if outcome(&seen).is_some() {
                        break;
                    }
                }
                WatchEvent::Deleted(_) => return Err(format!("certificate signing request {name} was deleted")),
                WatchEvent::Bookmark(b) => rv = b.metadata.resource_version,
                WatchEvent::Error(e) if e.code == 410 => {
                    seen = api.get(&name).await.map_err(|e| e.to_string())?;
                    rv = seen.metadata.resource_version.clone().unwrap_or_default();
                    break;
                }
                WatchEvent::Error(e) => return Err(e.message),
            }
        }
    }
}

/// Issued (its certificate), denied or failed (why), or still pending (None).
fn outcome(csr: &CertificateSigningRequest) -> Option<Result<String, String>> {
    let status = csr.status.as_ref()?;
    for c in status.conditions.iter().flatten() {
        if (c.type_ == "Denied" || c.type_ == "Failed") && c.status == "True" {
            let word = if c.type_ == "Denied" { "denied" } else { "failed" };
            return Some(Err(format!(
                "certificate signing request is {word}, reason: {}, message: {}",
                c.reason.clone().unwrap_or_default(),
                c.message.clone().unwrap_or_default()
            )));
        }
    }
    let cert = status.certificate.as_ref().filter(|c| !c.0.is_empty())?;
    Some(Ok(String::from_utf8_lossy(&cert.0).into_owned()))
}
