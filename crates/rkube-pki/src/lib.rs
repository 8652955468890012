//! The cluster's certificates and the admin kubeconfig.
//!
//! On first start [`Pki::load_or_create`] makes a CA, a serving certificate for the API
//! server (SANs: localhost, 127.0.0.1, the listen address, and the `kubernetes.default.svc`
//! names and 10.96.0.1 that in-cluster clients use), and an admin client certificate
//! (CN `rkube-admin`, O `system:masters`). Later starts reuse them; the serving
//! certificate is reissued by the same CA when the listen address is not among its SANs.
//!
//! Invariant: private keys are written with mode 0600 and never logged.

use std::fs;
use std::io::Write;
use std::net::IpAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use base64::Engine;
use rcgen::{
    date_time_ymd, BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};

#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("certificate: {0}")]
    Cert(#[from] rcgen::Error),
    #[error("{0}")]
    Other(String),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> PkiError + '_ {
    move |source| PkiError::Io { path: path.to_path_buf(), source }
}

/// The DNS names every serving certificate carries.
pub const SERVING_DNS_NAMES: &[&str] = &[
    "localhost",
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
];
/// The first address of the service range, where in-cluster clients reach the API server.
pub const KUBERNETES_SERVICE_IP: &str = "10.96.0.1";

/// PEM material of the cluster.
pub struct Pki {
    pub dir: PathBuf,
    pub ca_cert_pem: String,
    pub ca_key_pem: String,
    pub serving_cert_pem: String,
    pub serving_key_pem: String,
    pub admin_cert_pem: String,
    pub admin_key_pem: String,
    /// The service-account token signing key (ECDSA P-256 for ES256, PKCS#8 PEM) and its
    /// public key. ES256 rather than RS256: a P-256 key is generated in microseconds, an RSA
    /// key in tens of milliseconds of the first start; verifiers handle both.
    pub sa_key_pem: String,
    pub sa_pub_pem: String,
}

fn validity(params: &mut CertificateParams, years: i32) {
    use chrono::Datelike;
    let now = chrono::Utc::now();
    params.not_before = date_time_ymd(now.year() - 1, now.month() as u8, 1);
    params.not_after = date_time_ymd(now.year() + years, now.month() as u8, 1);
}

fn write_file(path: &Path, contents: &str, mode: u32) -> Result<(), PkiError> {
    let tmp = path.with_extension("tmp");
    let mut f =
        fs::OpenOptions::new().write(true).create(true).truncate(true).mode(mode).open(&tmp).map_err(io(&tmp))?;
    f.write_all(contents.as_bytes()).map_err(io(&tmp))?;
    f.sync_all().map_err(io(&tmp))?;
    fs::rename(&tmp, path).map_err(io(path))
}

fn read(path: &Path) -> Result<Option<String>, PkiError> {
    match fs::read_to_string(path) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(PkiError::Io { path: path.to_path_buf(), source: e }),
    }
}

impl Pki {
    /// Loads the PKI under `dir`, creating whatever is missing. `listen_ip` is put in the
    /// serving certificate's SANs (unspecified addresses are skipped).
    pub fn load_or_create(dir: &Path, listen_ip: Option<IpAddr>) -> Result<Pki, PkiError> {
        fs::create_dir_all(dir).map_err(io(dir))?;
        let p = |n: &str| dir.join(n);
        let (ca_cert_pem, ca_key_pem) = match (read(&p("ca.crt"))?, read(&p("ca.key"))?) {
            (Some(c), Some(k)) => (c, k),
            _ => {
                let key = KeyPair::generate()?;
                let mut params = CertificateParams::default();
                let mut dn = DistinguishedName::new();
                dn.push(DnType::CommonName, "rkube-ca");
                params.distinguished_name = dn;
                params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
                params.key_usages =
                    vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::CrlSign];
                validity(&mut params, 10);
                let cert = params.self_signed(&key)?;
                write_file(&p("ca.key"), &key.serialize_pem(), 0o600)?;
                write_file(&p("ca.crt"), &cert.pem(), 0o644)?;
                (cert.pem(), key.serialize_pem())
            }
        };
        let ca_key = KeyPair::from_pem(&ca_key_pem)?;
        let issuer = Issuer::from_ca_cert_pem(&ca_cert_pem, ca_key)?;

        let mut ips: Vec<IpAddr> = vec!["127.0.0.1".parse().expect("ip"), KUBERNETES_SERVICE_IP.parse().expect("ip")];
        if let Some(ip) = listen_ip.filter(|ip| !ip.is_unspecified()) {
            if !ips.contains(&ip) {
                ips.push(ip);
            }
        }
        let sans_line = ips.iter().map(|i| i.to_string()).collect::<Vec<_>>().join(",");
        let existing_sans = read(&p("apiserver.sans"))?;
        let serving = match (read(&p("apiserver.crt"))?, read(&p("apiserver.key"))?) {
            (Some(c), Some(k)) if existing_sans.as_deref().map(str::trim) == Some(sans_line.as_str()) => (c, k),
            _ => {
                let key = KeyPair::generate()?;
                let mut names: Vec<String> = SERVING_DNS_NAMES.iter().map(|s| s.to_string()).collect();
                names.extend(ips.iter().map(|i| i.to_string()));
                let mut params = CertificateParams::new(names)?;
                // CertificateParams::new makes IP strings DNS names; make them IP SANs.
                params.subject_alt_names = SERVING_DNS_NAMES
                    .iter()
                    .map(|n| Ok(SanType::DnsName((*n).try_into()?)))
                    .chain(ips.iter().map(|ip| Ok(SanType::IpAddress(*ip))))
                    .collect::<Result<Vec<_>, rcgen::Error>>()?;
                let mut dn = DistinguishedName::new();
                dn.push(DnType::CommonName, "kube-apiserver");
                params.distinguished_name = dn;
                params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
                params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
                params.use_authority_key_identifier_extension = true;
                validity(&mut params, 5);
                let cert = params.signed_by(&key, &issuer)?;
                write_file(&p("apiserver.key"), &key.serialize_pem(), 0o600)?;
                write_file(&p("apiserver.crt"), &cert.pem(), 0o644)?;
                write_file(&p("apiserver.sans"), &sans_line, 0o644)?;
                (cert.pem(), key.serialize_pem())
            }
        };
        let admin = match (read(&p("admin.crt"))?, read(&p("admin.key"))?) {
            (Some(c), Some(k)) => (c, k),
            _ => {
                let (c, k) = issue_client_cert(&issuer, "rkube-admin", &["system:masters"])?;
                write_file(&p("admin.key"), &k, 0o600)?;
                write_file(&p("admin.crt"), &c, 0o644)?;
                (c, k)
            }
        };
        let (sa_key_pem, sa_pub_pem) = match (read(&p("sa.key"))?, read(&p("sa.pub"))?) {
            (Some(k), Some(pubk)) => (k, pubk),
            _ => {
                let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
                write_file(&p("sa.key"), &key.serialize_pem(), 0o600)?;
                write_file(&p("sa.pub"), &key.public_key_pem(), 0o644)?;
                (key.serialize_pem(), key.public_key_pem())
            }
        };
        Ok(Pki {
            dir: dir.to_path_buf(),
            ca_cert_pem,
            ca_key_pem,
            serving_cert_pem: serving.0,
            serving_key_pem: serving.1,
            admin_cert_pem: admin.0,
            admin_key_pem: admin.1,
            sa_key_pem,
            sa_pub_pem,
        })
    }

    /// Issues a client certificate (PEM cert, PEM key) for `user` in `groups`.
    pub fn issue_client(&self, user: &str, groups: &[&str]) -> Result<(String, String), PkiError> {
        let ca_key = KeyPair::from_pem(&self.ca_key_pem)?;
        let issuer = Issuer::from_ca_cert_pem(&self.ca_cert_pem, ca_key)?;
        issue_client_cert(&issuer, user, groups)
    }

    /// Issues a serving certificate (PEM cert, PEM key) for `cn` with the given DNS and IP
    /// SANs, signed by the cluster CA (a node agent's kubelet API).
    pub fn issue_serving(&self, cn: &str, dns: &[String], ips: &[IpAddr]) -> Result<(String, String), PkiError> {
        let ca_key = KeyPair::from_pem(&self.ca_key_pem)?;
        let issuer = Issuer::from_ca_cert_pem(&self.ca_cert_pem, ca_key)?;
        let key = KeyPair::generate()?;
        let mut params = serving_params(cn, dns, ips)?;
        params.use_authority_key_identifier_extension = true;
        let cert = params.signed_by(&key, &issuer)?;
        Ok((cert.pem(), key.serialize_pem()))
    }

    /// A kubeconfig for `server` authenticating with the given client certificate.
    pub fn kubeconfig(&self, server: &str, user: &str, cert_pem: &str, key_pem: &str) -> String {
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s.as_bytes());
        let doc = serde_yaml::Mapping::from_iter([
            ("apiVersion".into(), "v1".into()),
            ("kind".into(), "Config".into()),
            (
                "clusters".into(),
                serde_yaml::to_value(vec![serde_yaml::Mapping::from_iter([
                    ("name".into(), "rkube".into()),
                    (
                        "cluster".into(),
                        serde_yaml::to_value(serde_yaml::Mapping::from_iter([
                            ("server".into(), server.into()),
                            ("certificate-authority-data".into(), b64(&self.ca_cert_pem).into()),
                        ]))
                        .unwrap_or_default(),
                    ),
                ])])
                .unwrap_or_default(),
            ),
            (
                "users".into(),
                serde_yaml::to_value(vec![serde_yaml::Mapping::from_iter([
                    ("name".into(), user.into()),
                    (
                        "user".into(),
                        serde_yaml::to_value(serde_yaml::Mapping::from_iter([
                            ("client-certificate-data".into(), b64(cert_pem).into()),
                            ("client-key-data".into(), b64(key_pem).into()),
                        ]))
                        .unwrap_or_default(),
                    ),
                ])])
                .unwrap_or_default(),
            ),
            (
                "contexts".into(),
                serde_yaml::to_value(vec![serde_yaml::Mapping::from_iter([
                    ("name".into(), "rkube".into()),
                    (
                        "context".into(),
                        serde_yaml::to_value(serde_yaml::Mapping::from_iter([
                            ("cluster".into(), "rkube".into()),
                            ("user".into(), user.into()),
                        ]))
                        .unwrap_or_default(),
                    ),
                ])])
                .unwrap_or_default(),
            ),
            ("current-context".into(), "rkube".into()),
        ]);
        serde_yaml::to_string(&doc).unwrap_or_default()
    }

    /// Writes the admin kubeconfig for `server` to `path` (mode 0600).
    pub fn write_admin_kubeconfig(&self, path: &Path, server: &str) -> Result<(), PkiError> {
        let doc = self.kubeconfig(server, "rkube-admin", &self.admin_cert_pem, &self.admin_key_pem);
        write_file(path, &doc, 0o600)
    }
}

/// A subject: the organizations (groups), then the common name (user), as Kubernetes reads
/// them.
fn subject(cn: &str, orgs: &[&str]) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    for o in orgs {
        dn.push(DnType::OrganizationName, *o);
    }
    dn.push(DnType::CommonName, cn);
    dn
}

/// DNS and IP subject alternative names.
fn sans(dns: &[String], ips: &[IpAddr]) -> Result<Vec<SanType>, PkiError> {
    Ok(dns
        .iter()
        .map(|n| Ok(SanType::DnsName(n.clone().try_into()?)))
        .chain(ips.iter().map(|ip| Ok(SanType::IpAddress(*ip))))
        .collect::<Result<Vec<_>, rcgen::Error>>()?)
}

fn issue_client_cert(issuer: &Issuer<'_, KeyPair>, user: &str, groups: &[&str]) -> Result<(String, String), PkiError> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::default();
    params.distinguished_name = subject(user, groups);
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    params.use_authority_key_identifier_extension = true;
    validity(&mut params, 5);
    let cert = params.signed_by(&key, issuer)?;
    Ok((cert.pem(), key.serialize_pem()))
}

fn serving_params(cn: &str, dns: &[String], ips: &[IpAddr]) -> Result<CertificateParams, PkiError> {
    let mut params = CertificateParams::default();
    params.subject_alt_names = sans(dns, ips)?;
    params.distinguished_name = subject(cn, &[]);
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    validity(&mut params, 1);
    Ok(params)
}

/// What a certificate request asks to be: its subject and subject alternative names (what a
/// signer's policy is checked against).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Requested {
    pub common_name: String,
    pub organizations: Vec<String>,
    pub dns_names: Vec<String>,
    pub ips: Vec<IpAddr>,
    pub emails: Vec<String>,
    pub uris: Vec<String>,
}

/// Parses a PEM `CERTIFICATE REQUEST` and checks its signature; the error is worded as
/// kube-apiserver's validation words it.
pub fn parse_request(pem: &[u8]) -> Result<Requested, String> {
    use x509_parser::prelude::*;
    let (_, block) = x509_parser::pem::parse_x509_pem(pem).map_err(|_| "PEM block type must be CERTIFICATE REQUEST")?;
    if block.label != "CERTIFICATE REQUEST" {
        return Err("PEM block type must be CERTIFICATE REQUEST".into());
    }
    let (_, csr) = X509CertificationRequest::from_der(&block.contents).map_err(|e| format!("asn1: {e}"))?;
    let info = &csr.certification_request_info;
    let rsa = info.subject_pki.algorithm.algorithm == x509_parser::oid_registry::OID_PKCS1_RSAENCRYPTION;
    // Go's x509 wording for a bad signature.
    csr.verify_signature().map_err(|_| {
        if rsa { "crypto/rsa: verification error" } else { "x509: ECDSA verification failure" }.to_string()
    })?;
    let mut r = Requested {
        common_name: info.subject.iter_common_name().last().and_then(|c| c.as_str().ok()).unwrap_or("").to_string(),
        organizations: info.subject.iter_organization().filter_map(|o| o.as_str().ok().map(str::to_string)).collect(),
        ..Requested::default()
    };
    for ext in csr.requested_extensions().into_iter().flatten() {
        if let ParsedExtension::SubjectAlternativeName(san) = ext {
            for name in &san.general_names {
                match name {
                    GeneralName::DNSName(d) => r.dns_names.push(d.to_string()),
                    GeneralName::RFC822Name(e) => r.emails.push(e.to_string()),
                    GeneralName::URI(u) => r.uris.push(u.to_string()),
                    GeneralName::IPAddress(b) => match b.len() {
                        4 => r.ips.push(IpAddr::from(<[u8; 4]>::try_from(&b[..]).expect("4 bytes"))),
                        16 => r.ips.push(IpAddr::from(<[u8; 16]>::try_from(&b[..]).expect("16 bytes"))),
                        _ => {}
                    },
                    _ => {}
                }
            }
        }
    }
    Ok(r)
}

/// A certificate request (PEM) with its new key (ECDSA P-256, PEM), for `cn` in the
/// organizations `orgs`, with DNS and IP SANs: what a kubelet sends for its serving
/// certificate.
pub fn new_request(cn: &str, orgs: &[&str], dns: &[String], ips: &[IpAddr]) -> Result<(String, String), PkiError> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::default();
    params.distinguished_name = subject(cn, orgs);
    params.subject_alt_names = sans(dns, ips)?;
    let csr = params.serialize_request(&key)?;
    Ok((csr.pem()?, key.serialize_pem()))
}

/// A CA's certificate and key (PEM), as a signer holds them.
#[derive(Clone)]
pub struct SigningCa {
    pub cert_pem: String,
    pub key_pem: String,
}

impl SigningCa {
    /// Signs a certificate request (PEM) with the CA, as kube-controller-manager's signers
    /// do: the request's subject and SANs, the key usages and extended key usages named by
    /// `usages` (the CertificateSigningRequest API's words), not a CA, valid from five
    /// minutes ago (clock skew) until `not_after`.
    pub fn sign_request(
        &self,
        request_pem: &str,
        usages: &[String],
        not_after: chrono::DateTime<chrono::Utc>,
    ) -> Result<String, PkiError> {
        let ca_key = KeyPair::from_pem(&self.key_pem)?;
        let issuer = Issuer::from_ca_cert_pem(&self.cert_pem, ca_key)?;
        let mut req = rcgen::CertificateSigningRequestParams::from_pem(request_pem)?;
        let p = &mut req.params;
        p.is_ca = IsCa::ExplicitNoCa;
        p.key_usages.clear();
        p.extended_key_usages.clear();
        for u in usages {
            match u.as_str() {
                "signing" | "digital signature" => p.key_usages.push(KeyUsagePurpose::DigitalSignature),
                "content commitment" => p.key_usages.push(KeyUsagePurpose::ContentCommitment),
                "key encipherment" => p.key_usages.push(KeyUsagePurpose::KeyEncipherment),
                "key agreement" => p.key_usages.push(KeyUsagePurpose::KeyAgreement),
                "data encipherment" => p.key_usages.push(KeyUsagePurpose::DataEncipherment),
                "cert sign" => p.key_usages.push(KeyUsagePurpose::KeyCertSign),
                "crl sign" => p.key_usages.push(KeyUsagePurpose::CrlSign),
                "encipher only" => p.key_usages.push(KeyUsagePurpose::EncipherOnly),
                "decipher only" => p.key_usages.push(KeyUsagePurpose::DecipherOnly),
                "any" => p.extended_key_usages.push(ExtendedKeyUsagePurpose::Any),
                "server auth" => p.extended_key_usages.push(ExtendedKeyUsagePurpose::ServerAuth),
                "client auth" => p.extended_key_usages.push(ExtendedKeyUsagePurpose::ClientAuth),
                "code signing" => p.extended_key_usages.push(ExtendedKeyUsagePurpose::CodeSigning),
                "email protection" | "s/mime" => p.extended_key_usages.push(ExtendedKeyUsagePurpose::EmailProtection),
                "timestamping" => p.extended_key_usages.push(ExtendedKeyUsagePurpose::TimeStamping),
                "ocsp signing" => p.extended_key_usages.push(ExtendedKeyUsagePurpose::OcspSigning),
                other => return Err(PkiError::Other(format!("unsupported key usage: {other}"))),
            }
        }
        p.key_usages.dedup();
        p.extended_key_usages.dedup();
        p.use_authority_key_identifier_extension = true;
        let now = chrono::Utc::now();
        let to_offset = |t: chrono::DateTime<chrono::Utc>| {
            time::OffsetDateTime::from_unix_timestamp(t.timestamp()).map_err(|e| PkiError::Other(e.to_string()))
        };
        p.not_before = to_offset(now - chrono::Duration::minutes(5))?;
        // Never past the CA's own end (upstream's signer caps it too).
        let ca_end = rustls_pemfile::certs(&mut self.cert_pem.as_bytes())
            .next()
            .and_then(Result::ok)
            .and_then(|der| {
                x509_parser::parse_x509_certificate(&der).ok().map(|(_, c)| c.validity().not_after.timestamp())
            })
            .and_then(|t| chrono::DateTime::from_timestamp(t, 0));
        let not_after = match ca_end {
            Some(end) if end <= now => return Err(PkiError::Other("the signing CA has expired".into())),
            Some(end) => not_after.min(end),
            None => not_after,
        };
        p.not_after = to_offset(not_after)?;
        p.serial_number = Some(rcgen::SerialNumber::from_slice(&rand_serial()));
        Ok(req.signed_by(&issuer)?.pem())
    }
}

/// 16 random bytes, high bit clear (a positive serial number).
fn rand_serial() -> [u8; 16] {
    let mut b = *uuid::Uuid::new_v4().as_bytes();
    b[0] &= 0x7f;
    b
}

/// A self-signed serving certificate (PEM cert, PEM key), as the kubelet makes itself when it
/// is given none (`<hostname>@<unix time>` CN).
pub fn self_signed_serving(cn: &str, dns: &[String], ips: &[IpAddr]) -> Result<(String, String), PkiError> {
    let key = KeyPair::generate()?;
    let params = serving_params(cn, dns, ips)?;
    let cert = params.self_signed(&key)?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// The user (CN) and groups (O) of a client certificate, as kube-apiserver reads them.
pub fn identity_from_der(der: &[u8]) -> Option<(String, Vec<String>)> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let subject = cert.subject();
    // Go keeps the last CommonName of a subject with several.
    let cn = subject.iter_common_name().last()?.as_str().ok()?.to_string();
    let groups = subject.iter_organization().filter_map(|o| o.as_str().ok().map(str::to_string)).collect();
    Some((cn, groups))
}

/// rustls server config pieces: the certificate chain and key from PEM.
pub fn parse_cert_chain(pem: &str) -> Result<Vec<rustls_pki_types::CertificateDer<'static>>, PkiError> {
    rustls_pemfile::certs(&mut pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| PkiError::Other(format!("bad certificate PEM: {e}")))
}

pub fn parse_key(pem: &str) -> Result<rustls_pki_types::PrivateKeyDer<'static>, PkiError> {
    rustls_pemfile::private_key(&mut pem.as_bytes())
        .map_err(|e| PkiError::Other(format!("bad key PEM: {e}")))?
        .ok_or_else(|| PkiError::Other("no private key in PEM".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creates_then_reuses_and_admin_is_a_master() {
        let dir = tempfile::tempdir().unwrap();
        let a = Pki::load_or_create(dir.path(), Some("127.0.0.1".parse().unwrap())).unwrap();
        let b = Pki::load_or_create(dir.path(), Some("127.0.0.1".parse().unwrap())).unwrap();
        assert_eq!(a.ca_cert_pem, b.ca_cert_pem);
        assert_eq!(a.serving_cert_pem, b.serving_cert_pem);
        // A new listen address reissues only the serving certificate.
        let c = Pki::load_or_create(dir.path(), Some("127.0.0.2".parse().unwrap())).unwrap();
        assert_eq!(a.ca_cert_pem, c.ca_cert_pem);
        assert_ne!(a.serving_cert_pem, c.serving_cert_pem);
        let der = parse_cert_chain(&a.admin_cert_pem).unwrap();
        let (user, groups) = identity_from_der(&der[0]).unwrap();
        assert_eq!(user, "rkube-admin");
        assert_eq!(groups, vec!["system:masters".to_string()]);
        let kc = a.kubeconfig("https://127.0.0.1:6443", "u", "c", "k");
        assert!(kc.contains("current-context: rkube"));
    }
}

/// A server certificate verifier that accepts any certificate (`--insecure-skip-tls-verify`,
/// and kube-apiserver's proxy to `https:` pods and services, which it does not verify); the
/// handshake signatures are still checked, so the session keys belong to whoever presented
/// the certificate.
#[derive(Debug)]
pub struct AnyServerCert(pub std::sync::Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyServerCert {
    fn verify_server_cert(
        &self,
        _: &rustls_pki_types::CertificateDer<'_>,
        _: &[rustls_pki_types::CertificateDer<'_>],
        _: &rustls_pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls_pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls_pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls_pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// A TLS client configuration that verifies no server certificate (see [`AnyServerCert`]).
pub fn unverified_client_config() -> rustls::ClientConfig {
    let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("the default protocol versions")
        .dangerous()
        .with_custom_certificate_verifier(std::sync::Arc::new(AnyServerCert(provider)))
        .with_no_client_auth()
}
