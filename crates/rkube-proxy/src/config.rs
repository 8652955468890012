//! Where the proxy's upstream and credentials come from, with kubectl's precedence
//! (client-go's `clientcmd` deferred loading):
//!
//! 1. the kubeconfig: `--kubeconfig` (must exist), else every file of `KUBECONFIG` that
//!    exists (merged, the first to set a value wins), else `~/.kube/config` if it exists;
//! 2. the context (`--context` or `current-context`), its cluster and user, each overridable
//!    (`--cluster`, `--user`), then the connection flags on top (`--server`, `--token`, ...);
//! 3. when that leaves nothing but the default server (`$KUBERNETES_MASTER` or
//!    `http://localhost:8080`) and the process runs in a pod (`KUBERNETES_SERVICE_HOST/PORT`
//!    and a token file), the in-cluster configuration, with `--server`, `--token` and
//!    `--certificate-authority` still applied;
//! 4. otherwise the default server, as kubectl does.
//!
//! Invariant: nothing here talks to the network; the result is a [`RestConfig`] that the
//! upstream client turns into connections.

use std::path::{Path, PathBuf};

use base64::Engine;
use kube_client::config::{AuthInfo, Cluster, Kubeconfig};
use secrecy::ExposeSecret;

/// Where a pod's service account files live (fixed, as in client-go).
pub const SERVICE_ACCOUNT_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// kubectl's connection flags, the ones that matter to a proxy.
#[derive(clap::Args, Debug, Default, Clone)]
pub struct ConnectionFlags {
    /// Path to the kubeconfig file to use.
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// The name of the kubeconfig context to use.
    #[arg(long)]
    pub context: Option<String>,
    /// The name of the kubeconfig cluster to use.
    #[arg(long)]
    pub cluster: Option<String>,
    /// The name of the kubeconfig user to use.
    #[arg(long)]
    pub user: Option<String>,
    /// The address and port of the Kubernetes API server.
    #[arg(short = 's', long)]
    pub server: Option<String>,
    /// Path to a cert file for the certificate authority.
    #[arg(long)]
    pub certificate_authority: Option<String>,
    /// Path to a client certificate file for TLS.
    #[arg(long)]
    pub client_certificate: Option<String>,
    /// Path to a client key file for TLS.
    #[arg(long)]
    pub client_key: Option<String>,
    /// Bearer token for authentication to the API server.
    #[arg(long)]
    pub token: Option<String>,
    /// Username for basic authentication to the API server.
    #[arg(long)]
    pub username: Option<String>,
    /// Password for basic authentication to the API server.
    #[arg(long)]
    pub password: Option<String>,
    /// If true, the server's certificate will not be checked for validity.
    #[arg(long, num_args = 0..=1, default_missing_value = "true", require_equals = true, value_name = "BOOL")]
    pub insecure_skip_tls_verify: Option<bool>,
    /// Server name to use for server certificate validation.
    #[arg(long)]
    pub tls_server_name: Option<String>,
    /// Username to impersonate for the operation.
    #[arg(long = "as")]
    pub as_user: Option<String>,
    /// Group to impersonate for the operation; repeat for more groups.
    #[arg(long = "as-group")]
    pub as_groups: Vec<String>,
    /// UID to impersonate for the operation.
    #[arg(long = "as-uid")]
    pub as_uid: Option<String>,
}

/// Who the proxy is to the API server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    None,
    /// A bearer token; when `file` is set it is re-read when the file changes.
    Bearer {
        token: String,
        file: Option<PathBuf>,
    },
    /// An exec credential plugin and what its first run returned.
    Exec {
        plugin: crate::exec::ExecPlugin,
        token: Option<String>,
        expires: Option<chrono::DateTime<chrono::Utc>>,
    },
    Basic {
        username: String,
        password: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Impersonation {
    pub user: String,
    pub uid: Option<String>,
    pub groups: Vec<String>,
}

/// A resolved connection to one API server (client-go's `rest.Config`, the part we use).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestConfig {
    /// `scheme://host[:port][/path]`.
    pub host: String,
    /// PEM bundle to verify the server with; `None` uses the system's roots.
    pub ca_pem: Option<Vec<u8>>,
    pub insecure: bool,
    pub server_name: Option<String>,
    /// PEM certificate chain and key for TLS client authentication.
    pub client_identity: Option<(Vec<u8>, Vec<u8>)>,
    pub credential: Credential,
    pub impersonate: Option<Impersonation>,
    /// "in-cluster" or "kubeconfig", for the log.
    pub source: &'static str,
}

impl RestConfig {
    pub fn is_tls(&self) -> bool {
        self.host.starts_with("https://")
    }
}

/// What the process environment offers; a struct so tests can describe a pod without one.
#[derive(Debug, Clone, Default)]
pub struct Environment {
    pub kubeconfig_env: Option<String>,
    pub home: Option<PathBuf>,
    pub kubernetes_master: Option<String>,
    pub service_host: Option<String>,
    pub service_port: Option<String>,
    pub service_account_dir: PathBuf,
}

impl Environment {
    pub fn from_process() -> Environment {
        let var = |k: &str| std::env::var(k).ok();
        Environment {
            kubeconfig_env: var("KUBECONFIG"),
            home: var("HOME").map(PathBuf::from),
            kubernetes_master: var("KUBERNETES_MASTER"),
            service_host: var("KUBERNETES_SERVICE_HOST"),
            service_port: var("KUBERNETES_SERVICE_PORT"),
            service_account_dir: PathBuf::from(SERVICE_ACCOUNT_DIR),
        }
    }

    fn default_server(&self) -> String {
        match &self.kubernetes_master {
            Some(m) if !m.is_empty() => m.clone(),
            _ => "http://localhost:8080".to_string(),
        }
    }

    /// client-go's `inClusterClientConfig.Possible`.
    fn in_cluster_possible(&self) -> bool {
        let token = self.service_account_dir.join("token");
        self.service_host.as_deref().is_some_and(|h| !h.is_empty())
            && self.service_port.as_deref().is_some_and(|p| !p.is_empty())
            && std::fs::metadata(token).is_ok_and(|m| !m.is_dir())
    }
}

fn nonempty(s: &Option<String>) -> Option<&str> {
    s.as_deref().filter(|s| !s.is_empty())
}

/// Resolves flags + environment into the upstream to proxy to.
pub fn resolve(flags: &ConnectionFlags, env: &Environment) -> Result<RestConfig, String> {
    let kubeconfig = load_kubeconfig(flags, env)?;
    let direct = direct_config(&kubeconfig, flags, env)?;
    if !is_default(&direct, env) {
        return Ok(direct);
    }
    if env.in_cluster_possible() {
        return in_cluster(flags, env);
    }
    Ok(direct)
}

fn is_default(c: &RestConfig, env: &Environment) -> bool {
    c.host == env.default_server()
        && c.ca_pem.is_none()
        && !c.insecure
        && c.server_name.is_none()
        && c.client_identity.is_none()
        && c.credential == Credential::None
        && c.impersonate.is_none()
}

/// The loading rules: explicit path, then `KUBECONFIG`'s existing files, then `~/.kube/config`.
fn load_kubeconfig(flags: &ConnectionFlags, env: &Environment) -> Result<Kubeconfig, String> {
    if let Some(path) = &flags.kubeconfig {
        if !path.as_os_str().is_empty() {
            if let Err(e) = std::fs::metadata(path) {
                return Err(format!("stat {}: {}", path.display(), io_text(&e)));
            }
            return read_kubeconfig(path);
        }
    }
    if let Some(list) = env.kubeconfig_env.as_deref().filter(|s| !s.is_empty()) {
        let mut merged = Kubeconfig::default();
        for path in std::env::split_paths(list).filter(|p| !p.as_os_str().is_empty()) {
            if !path.exists() {
                continue;
            }
            merged = merged.merge(read_kubeconfig(&path)?).map_err(|e| e.to_string())?;
        }
        return Ok(merged);
    }
    if let Some(home) = &env.home {
        let path = home.join(".kube").join("config");
        if path.exists() {
            return read_kubeconfig(&path);
        }
    }
    Ok(Kubeconfig::default())
}

fn read_kubeconfig(path: &Path) -> Result<Kubeconfig, String> {
    Kubeconfig::read_from(path).map_err(|e| format!("error loading config file \"{}\": {e}", path.display()))
}

/// Go's wording for the errors a user sees most.
fn io_text(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such file or directory".to_string(),
        std::io::ErrorKind::PermissionDenied => "permission denied".to_string(),
        _ => e.to_string(),
    }
}

fn read_file(what: &str, path: &str) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("unable to read {what} {path:?}: open {path}: {}", io_text(&e)))
}

fn decode_data(what: &str, data: &str) -> Result<Vec<u8>, String> {
    base64::engine::general_purpose::STANDARD.decode(data.trim()).map_err(|e| format!("invalid {what}: {e}"))
}

/// Data wins over a file, as in client-go's `dataFromSliceOrFile`.
fn data_or_file(what: &str, data: Option<&str>, file: Option<&str>) -> Result<Option<Vec<u8>>, String> {
    if let Some(d) = data.filter(|d| !d.is_empty()) {
        return decode_data(what, d).map(Some);
    }
    match file.filter(|f| !f.is_empty()) {
        Some(f) => read_file(what, f).map(Some),
        None => Ok(None),
    }
}

/// clientcmd's `DirectClientConfig.ClientConfig` over the merged kubeconfig and the flags.
fn direct_config(kc: &Kubeconfig, flags: &ConnectionFlags, env: &Environment) -> Result<RestConfig, String> {
    let context_name = nonempty(&flags.context).or(kc.current_context.as_deref()).unwrap_or("");
    let context = kc.contexts.iter().find(|c| c.name == context_name).and_then(|c| c.context.clone());
    if context.is_none() && nonempty(&flags.context).is_some() {
        return Err(format!("context \"{context_name}\" does not exist"));
    }
    if context.is_none() && !context_name.is_empty() {
        return Err(format!("invalid configuration: context was not found for specified context: {context_name}"));
    }
    let cluster_name = nonempty(&flags.cluster).or(context.as_ref().map(|c| c.cluster.as_str())).unwrap_or("");
    let mut cluster: Cluster =
        kc.clusters.iter().find(|c| c.name == cluster_name).and_then(|c| c.cluster.clone()).unwrap_or_default();
    if nonempty(&flags.cluster).is_some() && !kc.clusters.iter().any(|c| c.name == cluster_name) {
        return Err(format!("cluster \"{cluster_name}\" does not exist"));
    }
    let user_name = nonempty(&flags.user).or(context.as_ref().and_then(|c| c.user.as_deref())).unwrap_or("");
    let mut user: AuthInfo =
        kc.auth_infos.iter().find(|a| a.name == user_name).and_then(|a| a.auth_info.clone()).unwrap_or_default();
    if nonempty(&flags.user).is_some() && !kc.auth_infos.iter().any(|a| a.name == user_name) {
        return Err(format!("auth info \"{user_name}\" does not exist"));
    }

    // Cluster overrides (clientcmd getCluster).
    if let Some(s) = nonempty(&flags.server) {
        cluster.server = Some(s.to_string());
    }
    let insecure_override = flags.insecure_skip_tls_verify.unwrap_or(false);
    if insecure_override || nonempty(&flags.certificate_authority).is_some() {
        cluster.insecure_skip_tls_verify = Some(insecure_override);
        cluster.certificate_authority = flags.certificate_authority.clone().filter(|s| !s.is_empty());
        cluster.certificate_authority_data = None;
    }
    if nonempty(&flags.tls_server_name).is_some() || nonempty(&flags.server).is_some() {
        cluster.tls_server_name = flags.tls_server_name.clone().filter(|s| !s.is_empty());
    }
    // User overrides (clientcmd getAuthInfo).
    if let Some(t) = nonempty(&flags.token) {
        user.token = Some(t.to_string().into());
    }
    if nonempty(&flags.client_certificate).is_some() {
        user.client_certificate = flags.client_certificate.clone();
        user.client_certificate_data = None;
    }
    if nonempty(&flags.client_key).is_some() {
        user.client_key = flags.client_key.clone();
        user.client_key_data = None;
    }
    if let Some(u) = nonempty(&flags.username) {
        user.username = Some(u.to_string());
    }
    if let Some(p) = nonempty(&flags.password) {
        user.password = Some(p.to_string().into());
    }
    if let Some(u) = nonempty(&flags.as_user) {
        user.impersonate = Some(u.to_string());
    }
    if let Some(u) = nonempty(&flags.as_uid) {
        user.impersonate_uid = Some(u.to_string());
    }
    if !flags.as_groups.is_empty() {
        user.impersonate_groups = Some(flags.as_groups.clone());
    }

    let insecure = cluster.insecure_skip_tls_verify.unwrap_or(false);
    let has_ca =
        nonempty(&cluster.certificate_authority).is_some() || nonempty(&cluster.certificate_authority_data).is_some();
    if insecure && has_ca {
        return Err(format!(
            "invalid configuration: specifying a root certificates file with the insecure flag is not allowed for cluster {cluster_name:?}"
        ));
    }

    let mut host = match nonempty(&cluster.server) {
        Some(s) => s.to_string(),
        None => env.default_server(),
    };
    if !host.contains("://") {
        // client-go decides TLS before it reads the CA or credentials, so a bare host:port
        // is plain HTTP with neither (`rest.DefaultServerURL` with defaultTLS false).
        host = format!("http://{host}");
    }
    let impersonate = user.impersonate.clone().filter(|u| !u.is_empty()).map(|u| Impersonation {
        user: u,
        uid: user.impersonate_uid.clone(),
        groups: user.impersonate_groups.clone().unwrap_or_default(),
    });
    let mut config = RestConfig {
        host,
        ca_pem: None,
        insecure: false,
        server_name: None,
        client_identity: None,
        credential: Credential::None,
        impersonate,
        source: "kubeconfig",
    };
    // As in client-go: authentication and server identity are read only for TLS.
    if !config.is_tls() {
        return Ok(config);
    }
    config.insecure = insecure;
    config.server_name = cluster.tls_server_name.clone().filter(|s| !s.is_empty());
    config.ca_pem = data_or_file(
        "certificate-authority",
        cluster.certificate_authority_data.as_deref(),
        cluster.certificate_authority.as_deref(),
    )?;
    if user.auth_provider.is_some() {
        return Err(format!(
            "the kubeconfig user {user_name:?} uses an auth-provider plugin (removed from kubectl in 1.26); use an exec plugin, --token, a tokenFile or a client certificate"
        ));
    }
    let token = user.token.as_ref().map(|t| t.expose_secret().to_string()).filter(|t| !t.is_empty());
    let token_file = user.token_file.clone().filter(|f| !f.is_empty());
    config.credential = match (token, token_file) {
        // With both, client-go's token source reads the file (the inline token only covers a
        // file it cannot read).
        (Some(token), Some(file)) => {
            let from_file = std::fs::read_to_string(&file).ok().map(|t| t.trim().to_string()).filter(|t| !t.is_empty());
            Credential::Bearer { token: from_file.unwrap_or(token), file: Some(file.into()) }
        }
        (Some(token), None) => Credential::Bearer { token, file: None },
        (None, Some(file)) => {
            let token = read_file("token file", &file)?;
            Credential::Bearer { token: String::from_utf8_lossy(&token).trim().to_string(), file: Some(file.into()) }
        }
        (None, None) => match (nonempty(&user.username), &user.password) {
            (Some(u), p) => Credential::Basic {
                username: u.to_string(),
                password: p.as_ref().map(|p| p.expose_secret().to_string()).unwrap_or_default(),
            },
            _ => Credential::None,
        },
    };
    // As in client-go, a token or basic auth from the kubeconfig wins over an exec plugin.
    let mut exec_identity = None;
    if let (Credential::None, Some(exec)) = (&config.credential, &user.exec) {
        let cluster_info = json_cluster(&config, &cluster);
        let plugin = crate::exec::ExecPlugin::from_config(exec, Some(cluster_info))?;
        let first = plugin.run()?;
        exec_identity = first.client_identity.clone();
        config.credential = Credential::Exec { plugin, token: first.token, expires: first.expires };
    }
    let cert = data_or_file(
        "client-certificate",
        user.client_certificate_data.as_deref(),
        user.client_certificate.as_deref(),
    )?;
    let key = data_or_file(
        "client-key",
        user.client_key_data.as_ref().map(|k| k.expose_secret()),
        user.client_key.as_deref(),
    )?;
    config.client_identity = match (cert, key) {
        (Some(c), Some(k)) => Some((c, k)),
        (None, None) => exec_identity,
        (Some(_), None) => return Err(format!("client-key-data or client-key must be specified for {user_name:?} to use the clientCert authentication method")),
        (None, Some(_)) => return Err(format!("client-cert-data or client-cert must be specified for {user_name:?} to use the clientCert authentication method")),
    };
    Ok(config)
}

/// The `cluster` an exec plugin gets with `provideClusterInfo: true`.
fn json_cluster(config: &RestConfig, cluster: &Cluster) -> serde_json::Value {
    let mut c = serde_json::json!({"server": config.host});
    if let Some(ca) = &config.ca_pem {
        use base64::Engine;
        c["certificate-authority-data"] = base64::engine::general_purpose::STANDARD.encode(ca).into();
    }
    if config.insecure {
        c["insecure-skip-tls-verify"] = true.into();
    }
    if let Some(n) = &config.server_name {
        c["tls-server-name"] = n.clone().into();
    }
    if let Some(ext) = cluster.extensions.iter().flatten().find(|e| e.name == "client.authentication.k8s.io/exec") {
        c["config"] = ext.extension.clone();
    }
    c
}

/// client-go's `rest.InClusterConfig` with the overrides clientcmd applies to it.
fn in_cluster(flags: &ConnectionFlags, env: &Environment) -> Result<RestConfig, String> {
    let host = env.service_host.clone().unwrap_or_default();
    let port = env.service_port.clone().unwrap_or_default();
    let joined = if host.contains(':') { format!("[{host}]:{port}") } else { format!("{host}:{port}") };
    let token_path = env.service_account_dir.join("token");
    let ca_path = env.service_account_dir.join("ca.crt");
    let mut credential = match std::fs::read(&token_path) {
        Ok(t) => {
            Credential::Bearer { token: String::from_utf8_lossy(&t).trim().to_string(), file: Some(token_path.clone()) }
        }
        Err(e) => return Err(format!("open {}: {}", token_path.display(), io_text(&e))),
    };
    let mut ca_pem = match std::fs::read(&ca_path) {
        Ok(ca) => Some(ca),
        Err(e) => {
            tracing::error!("Expected to load root CA config from {}, but got err: {e}", ca_path.display());
            None
        }
    };
    let mut host = format!("https://{joined}");
    if let Some(s) = nonempty(&flags.server) {
        host = s.to_string();
    }
    if let Some(t) = nonempty(&flags.token) {
        credential = Credential::Bearer { token: t.to_string(), file: None };
    }
    if let Some(ca) = nonempty(&flags.certificate_authority) {
        ca_pem = Some(read_file("certificate-authority", ca)?);
    }
    Ok(RestConfig {
        host,
        ca_pem,
        insecure: false,
        server_name: None,
        client_identity: None,
        credential,
        impersonate: None,
        source: "in-cluster",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_in(dir: &Path) -> Environment {
        Environment {
            kubeconfig_env: None,
            home: Some(dir.join("home")),
            kubernetes_master: None,
            service_host: None,
            service_port: None,
            service_account_dir: dir.join("sa"),
        }
    }

    fn pod(dir: &Path) -> Environment {
        std::fs::create_dir_all(dir.join("sa")).unwrap();
        std::fs::write(dir.join("sa/token"), "pod-token\n").unwrap();
        std::fs::write(dir.join("sa/ca.crt"), "CA").unwrap();
        Environment { service_host: Some("10.96.0.1".into()), service_port: Some("443".into()), ..env_in(dir) }
    }

    fn write_kubeconfig(path: &Path, server: &str, token: &str) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(
            path,
            format!(
                "apiVersion: v1\nkind: Config\ncurrent-context: c\ncontexts:\n- name: c\n  context: {{cluster: k, user: u}}\n- name: other\n  context: {{cluster: k2, user: u}}\nclusters:\n- name: k\n  cluster: {{server: \"{server}\", insecure-skip-tls-verify: true}}\n- name: k2\n  cluster: {{server: \"https://other:6443\", insecure-skip-tls-verify: true}}\nusers:\n- name: u\n  user: {{token: {token}}}\n"
            ),
        )
        .unwrap();
    }

    #[test]
    fn nothing_at_all_is_localhost_8080() {
        let dir = tempfile::tempdir().unwrap();
        let c = resolve(&ConnectionFlags::default(), &env_in(dir.path())).unwrap();
        assert_eq!(c.host, "http://localhost:8080");
        assert_eq!(c.credential, Credential::None);
    }

    #[test]
    fn in_a_pod_without_kubeconfig_is_in_cluster_with_the_token_file() {
        let dir = tempfile::tempdir().unwrap();
        let c = resolve(&ConnectionFlags::default(), &pod(dir.path())).unwrap();
        assert_eq!(c.source, "in-cluster");
        assert_eq!(c.host, "https://10.96.0.1:443");
        assert_eq!(c.ca_pem.as_deref(), Some(&b"CA"[..]));
        assert_eq!(
            c.credential,
            Credential::Bearer { token: "pod-token".into(), file: Some(dir.path().join("sa/token")) }
        );
        // The seed's ambassador script: overrides on top of in-cluster.
        let flags = ConnectionFlags {
            server: Some("https://kubernetes.default.svc".into()),
            token: Some("t2".into()),
            ..Default::default()
        };
        let c = resolve(&flags, &pod(dir.path())).unwrap();
        assert_eq!(c.host, "https://kubernetes.default.svc");
        assert_eq!(c.credential, Credential::Bearer { token: "t2".into(), file: None });
    }

    #[test]
    fn a_kubeconfig_wins_over_in_cluster() {
        let dir = tempfile::tempdir().unwrap();
        let mut env = pod(dir.path());
        write_kubeconfig(&dir.path().join("home/.kube/config"), "https://home:6443", "home-token");
        let c = resolve(&ConnectionFlags::default(), &env).unwrap();
        assert_eq!((c.host.as_str(), c.source), ("https://home:6443", "kubeconfig"));
        // KUBECONFIG beats ~/.kube/config; missing entries in it are skipped.
        write_kubeconfig(&dir.path().join("kc"), "https://env:6443", "env-token");
        env.kubeconfig_env =
            Some(format!("{}:{}", dir.path().join("missing").display(), dir.path().join("kc").display()));
        let c = resolve(&ConnectionFlags::default(), &env).unwrap();
        assert_eq!(c.host, "https://env:6443");
        assert_eq!(c.credential, Credential::Bearer { token: "env-token".into(), file: None });
        // --kubeconfig beats KUBECONFIG and must exist.
        let flags = ConnectionFlags { kubeconfig: Some(dir.path().join("home/.kube/config")), ..Default::default() };
        assert_eq!(resolve(&flags, &env).unwrap().host, "https://home:6443");
        let flags = ConnectionFlags { kubeconfig: Some(dir.path().join("nope")), ..Default::default() };
        assert!(resolve(&flags, &env).unwrap_err().contains("no such file or directory"));
        // --context picks another context; a missing one is an error.
        let flags = ConnectionFlags { context: Some("other".into()), ..Default::default() };
        assert_eq!(resolve(&flags, &env).unwrap().host, "https://other:6443");
        let flags = ConnectionFlags { context: Some("nope".into()), ..Default::default() };
        assert_eq!(resolve(&flags, &env).unwrap_err(), "context \"nope\" does not exist");
        // --insecure with a --certificate-authority from the flags: the flag CA wins and clears insecure.
        std::fs::write(dir.path().join("ca.pem"), "FLAGCA").unwrap();
        let flags = ConnectionFlags {
            certificate_authority: Some(dir.path().join("ca.pem").display().to_string()),
            ..Default::default()
        };
        let c = resolve(&flags, &env).unwrap();
        assert_eq!((c.insecure, c.ca_pem.as_deref()), (false, Some(&b"FLAGCA"[..])));
    }

    #[test]
    fn token_file_in_kubeconfig_is_read_and_kept_for_rotation() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("tok"), "from-file\n").unwrap();
        std::fs::write(
            dir.path().join("kc"),
            "current-context: c\ncontexts: [{name: c, context: {cluster: k, user: u}}]\nclusters: [{name: k, cluster: {server: 'https://h:1', insecure-skip-tls-verify: true}}]\nusers: [{name: u, user: {tokenFile: tok}}]\n",
        )
        .unwrap();
        let env =
            Environment { kubeconfig_env: Some(dir.path().join("kc").display().to_string()), ..env_in(dir.path()) };
        let c = resolve(&ConnectionFlags::default(), &env).unwrap();
        // Relative paths are relative to the kubeconfig's directory.
        assert_eq!(c.credential, Credential::Bearer { token: "from-file".into(), file: Some(dir.path().join("tok")) });
    }

    #[test]
    fn bare_host_port_is_plain_http_as_in_client_go() {
        let dir = tempfile::tempdir().unwrap();
        let flags =
            ConnectionFlags { server: Some("127.0.0.1:9".into()), token: Some("x".into()), ..Default::default() };
        let c = resolve(&flags, &env_in(dir.path())).unwrap();
        assert_eq!((c.host.as_str(), &c.credential), ("http://127.0.0.1:9", &Credential::None));
    }

    #[test]
    fn plain_http_server_carries_no_credentials_as_in_client_go() {
        let dir = tempfile::tempdir().unwrap();
        let flags = ConnectionFlags {
            server: Some("http://127.0.0.1:9".into()),
            token: Some("x".into()),
            ..Default::default()
        };
        let c = resolve(&flags, &env_in(dir.path())).unwrap();
        assert_eq!((c.host.as_str(), &c.credential), ("http://127.0.0.1:9", &Credential::None));
    }
}
