//! `rkube`: the binary. It only parses flags and wires the crates together.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use clap::{Parser, Subcommand, ValueEnum};
use rkube_apiserver::{authn::TokenFile, registry, ApiServer};
use rkube_store::Store;

#[derive(Parser)]
#[command(name = "rkube", version, about = "A lightweight Kubernetes control plane in one binary")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the API server.
    Server(ServerArgs),
    /// Run a proxy to the Kubernetes API server (a drop-in for `kubectl proxy`).
    Proxy(Box<rkube_proxy::ProxyArgs>),
    /// Run a node agent that joins an API server and runs the pods bound to it as processes.
    Node(NodeArgs),
}

/// What both `rkube server` (its own node) and `rkube node` take about the agent.
#[derive(clap::Args, Clone)]
struct AgentArgs {
    /// The Node's name (default: the hostname).
    #[arg(long = "node-name")]
    node_name: Option<String>,
    /// The address the Node reports as its InternalIP (default: guessed, read only).
    #[arg(long)]
    node_ip: Option<String>,
    /// Labels to register the Node with (k=v,k2=v2).
    #[arg(long, value_delimiter = ',')]
    node_labels: Vec<String>,
    /// A JSON file of images to commands, extending the built-in image map.
    #[arg(long)]
    image_map: Option<PathBuf>,
    /// The kubelet API's port, advertised in the Node's daemonEndpoints (0 picks a free
    /// port).
    #[arg(long, default_value_t = 10250)]
    kubelet_port: u16,
    /// The address the kubelet API listens on (the kubelet's --address; default: the
    /// node's InternalIP).
    #[arg(long)]
    kubelet_address: Option<std::net::IpAddr>,
    /// Rotate a container's log file past this many bytes.
    #[arg(long, default_value_t = 10 * 1024 * 1024)]
    container_log_max_size: u64,
    /// Run every pod on the host network (127.0.0.0/8 pod IPs) instead of giving each its
    /// own network namespace; the fallback when namespaces cannot be made.
    #[arg(long)]
    no_pod_network: bool,
    /// The cluster DNS address pods' resolv.conf names; the agent serves it.
    #[arg(long, default_value = "10.96.0.10")]
    cluster_dns: std::net::Ipv4Addr,
    /// Refresh pods' service-account tokens this many seconds after issue instead of at
    /// 80 % of their lifetime or 24 h (tests of token rotation).
    #[arg(long, hide = true)]
    token_refresh_after_seconds: Option<u64>,
}

#[derive(clap::Args)]
struct NodeArgs {
    /// The kubeconfig of the API server to join (its user needs the system:node role).
    #[arg(long)]
    kubeconfig: PathBuf,
    /// The kubelet API's serving certificate (PEM); without it a self-signed one is made,
    /// unless --rotate-server-certificates.
    #[arg(long)]
    tls_cert_file: Option<PathBuf>,
    /// Ask the cluster for the kubelet API's serving certificate (a CertificateSigningRequest
    /// for signer kubernetes.io/kubelet-serving, to approve with `kubectl certificate
    /// approve`), and for a new one as it ages, as the kubelet's flag does.
    #[arg(long)]
    rotate_server_certificates: bool,
    /// The key of --tls-cert-file (PEM).
    #[arg(long)]
    tls_private_key_file: Option<PathBuf>,
    /// Client certificates signed by this bundle authenticate to the kubelet API (default:
    /// the kubeconfig's certificate authority).
    #[arg(long)]
    client_ca_file: Option<PathBuf>,
    /// Where pods' directories and logs live.
    #[arg(long, default_value = "./rkube-node")]
    root_dir: PathBuf,
    #[command(flatten)]
    agent: AgentArgs,
}

#[derive(Clone, Copy, ValueEnum)]
enum StorageKind {
    /// Durable embedded storage in the data directory (redb).
    Embedded,
}

#[derive(clap::Args)]
struct ServerArgs {
    /// Address to serve HTTPS on; port 0 picks a free port (printed at start).
    #[arg(long, default_value = "127.0.0.1:6443")]
    listen: SocketAddr,
    /// Where state, certificates and the admin kubeconfig live.
    #[arg(long, default_value = "./rkube-data")]
    data_dir: PathBuf,
    /// Storage backend.
    #[arg(long, value_enum, default_value = "embedded")]
    storage: StorageKind,
    /// Static bearer tokens, kube-apiserver's CSV format: token,user,uid,"group1,group2".
    #[arg(long)]
    token_auth_file: Option<PathBuf>,
    /// Read-only requests served at once before answering 429 (0 = no limit).
    #[arg(long, default_value_t = 400)]
    max_requests_inflight: usize,
    /// Mutating requests served at once before answering 429 (0 = no limit).
    #[arg(long, default_value_t = 200)]
    max_mutating_requests_inflight: usize,
    /// Connections served at once (within the descriptor limit); past it the cheapest
    /// open connection (unauthenticated or idle first) is closed.
    #[arg(long, default_value_t = rkube_apiserver::serve::CONNECTIONS_MAX_DEFAULT)]
    max_connections: usize,
    /// Do not run a node agent for this machine (pods then wait for another node).
    #[arg(long)]
    no_node: bool,
    /// Do not run the scheduler (pods then wait for a binding from elsewhere).
    #[arg(long)]
    no_scheduler: bool,
    /// Do not run the controllers (kube-controller-manager's part: Endpoints of Services).
    #[arg(long)]
    no_controllers: bool,
    #[command(flatten)]
    agent: AgentArgs,
}

fn main() -> std::process::ExitCode {
    // A container's init: set up its namespaces and become its program (no runtime, no
    // logging: nothing of the agent may run in the container).
    let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if argv.len() == 3 && argv[1] == "__container" {
        rkube_node::container_init(std::path::Path::new(&argv[2]));
    }
    if argv.len() == 3 && argv[1] == "__exec" {
        rkube_node::exec_init(std::path::Path::new(&argv[2]));
    }
    if argv.len() >= 2 && argv[1] == "__agnhost" {
        rkube_node::agnhost::main(&argv[2..]);
    }
    if argv.len() == 2 && argv[1] == "__pause" {
        rkube_node::pause_init();
    }
    let cli = Cli::parse();
    // The proxy logs like kubectl proxy: warnings and errors, each filter decision at -v=3.
    let default_filter = match &cli.command {
        Command::Server(_) | Command::Node(_) => "info",
        Command::Proxy(p) if p.verbosity >= 3 => "debug",
        Command::Proxy(_) => "warn",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("RKUBE_LOG").unwrap_or_else(|_| default_filter.into()),
        )
        .with_writer(std::io::stderr)
        .init();
    // The proxy runs on one thread: a sidecar's request path is short, and one thread keeps
    // it free of cross-thread wake-ups (lower latency) and small (one malloc arena).
    let runtime = match &cli.command {
        Command::Proxy(_) => tokio::runtime::Builder::new_current_thread().enable_all().build(),
        Command::Server(_) | Command::Node(_) => tokio::runtime::Builder::new_multi_thread().enable_all().build(),
    };
    let runtime = match runtime {
        Ok(r) => r,
        Err(e) => {
            eprintln!("rkube: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = match cli.command {
        Command::Server(args) => runtime.block_on(server(args)),
        Command::Proxy(args) => runtime.block_on(rkube_proxy::run(*args)).map_err(|e| format!("error: {e}")),
        Command::Node(args) => runtime.block_on(node(args)),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rkube: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn server(args: ServerArgs) -> Result<(), String> {
    let started = std::time::Instant::now();
    private_dir(&args.data_dir)?;
    let tokens = match &args.token_auth_file {
        Some(p) => TokenFile::load(p)?,
        None => TokenFile::default(),
    };
    let listener =
        tokio::net::TcpListener::bind(args.listen).await.map_err(|e| format!("listen {}: {e}", args.listen))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let pki = rkube_pki::Pki::load_or_create(&args.data_dir.join("pki"), Some(addr.ip())).map_err(|e| e.to_string())?;
    let tls = rkube_apiserver::serve::tls_config(&pki).map_err(|e| e.to_string())?;

    let embedded = match args.storage {
        StorageKind::Embedded => {
            let path = args.data_dir.join("store.redb");
            private_file(&path)?;
            Arc::new(rkube_store::embedded::EmbeddedStore::open(&path).map_err(|e| e.to_string())?)
        }
    };
    let store: Arc<dyn Store> = embedded.clone();
    let limits = rkube_apiserver::Limits {
        max_requests_inflight: args.max_requests_inflight,
        max_mutating_requests_inflight: args.max_mutating_requests_inflight,
        max_connections: args.max_connections,
    };
    let api = ApiServer::new(store.clone(), tokens, limits);
    let client_host = if addr.ip().is_unspecified() { "127.0.0.1".to_string() } else { addr.ip().to_string() };
    let client_addr = if addr.is_ipv6() {
        format!("[{client_host}]:{}", addr.port())
    } else {
        format!("{client_host}:{}", addr.port())
    };
    let _ = api.advertise.set(addr);
    let _ = api.ca_pem.set(pki.ca_cert_pem.clone());
    // The API server's kubelet client certificate (kubeadm's apiserver-kubelet-client).
    let (kc_cert, kc_key) =
        pki.issue_client(rkube_rbac::KUBELET_API_CLIENT_USER, &["system:masters"]).map_err(|e| e.to_string())?;
    let kubelet_tls = rkube_apiserver::logs::kubelet_client_config(&pki.ca_cert_pem, &kc_cert, &kc_key)?;
    let _ = api.kubelet_client.set(Arc::new(kubelet_tls));
    let issuer = rkube_apiserver::tokens::TokenIssuer::new(&pki.sa_key_pem, &pki.sa_pub_pem)?;
    let _ = api.sa_tokens.set(issuer);
    let (commit_seconds, commit_writes) = (api.metrics.commit_seconds.clone(), api.metrics.commit_batch_writes.clone());
    embedded.set_commit_observer(Box::new(move |took, writes| {
        commit_seconds.observe(took.as_secs_f64());
        commit_writes.observe(writes as f64);
    }));
    bootstrap(&api).await?;
    rkube_apiserver::controllers::publish_kubernetes_service(&api, addr).await;
    rkube_apiserver::controllers::publish_cluster_dns_service(&api, args.agent.cluster_dns).await;

    let kubeconfig = args.data_dir.join("admin.kubeconfig");
    pki.write_admin_kubeconfig(&kubeconfig, &format!("https://{client_addr}")).map_err(|e| e.to_string())?;
    lock_down(&args.data_dir)?;
    tracing::info!(listen = %addr, ready_ms = started.elapsed().as_millis() as u64, "rkube server ready");
    println!("rkube: serving https://{client_addr}; kubeconfig: {}", kubeconfig.display());

    // The scheduler, the controllers and the node agent reach the API as separate
    // processes would: over HTTPS, each with its own identity and RBAC role.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut components = Vec::new();
    let url = format!("https://{client_addr}");
    if !args.no_scheduler {
        let path = args.data_dir.join("scheduler.kubeconfig");
        write_identity(&pki, &path, &url, "system:kube-scheduler", &[])?;
        let client = rkube_client::connect(&path).await?;
        let stop = stopped(stop_rx.clone());
        components.push(tokio::spawn(async move {
            rkube_scheduler::run(rkube_client::Informers::new(client), stop).await;
        }));
    }
    if !args.no_controllers {
        let path = args.data_dir.join("controller-manager.kubeconfig");
        write_identity(&pki, &path, &url, "system:kube-controller-manager", &[])?;
        let client = rkube_client::connect(&path).await?;
        let stop = stopped(stop_rx.clone());
        // The cluster CA signs approved certificate requests, as kube-controller-manager's
        // --cluster-signing-cert-file does (a year by default).
        let signer = rkube_controllers::csrsigning::Signer {
            ca: rkube_pki::SigningCa { cert_pem: pki.ca_cert_pem.clone(), key_pem: pki.ca_key_pem.clone() },
            duration: std::time::Duration::from_secs(365 * 24 * 3600),
        };
        components.push(tokio::spawn(async move {
            rkube_controllers::run(rkube_client::Informers::new(client), Some(signer), stop).await;
        }));
    }
    if !args.no_node {
        let mut config = agent_config(&args.agent, args.data_dir.join("node"))?;
        let name =
            config.name.clone().unwrap_or_else(|| rkube_node::node::Machine::read(&args.data_dir, None).hostname);
        config.name = Some(name.clone());
        config.hide.push(args.data_dir.clone());
        config.api_server = Some((client_host.clone(), addr.port()));
        // The kubelet API's serving certificate, from the cluster CA, for the node's names.
        let machine = rkube_node::node::Machine::read(&args.data_dir, config.node_ip.as_deref());
        let mut ips: Vec<std::net::IpAddr> = machine.internal_ip.parse().into_iter().collect();
        ips.extend(config.kubelet_address.filter(|a| !a.is_unspecified()));
        let loopback = std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);
        if !ips.contains(&loopback) {
            ips.push(loopback);
        }
        ips.dedup();
        let mut dns = vec![machine.hostname.clone()];
        if name != machine.hostname {
            dns.push(name.clone());
        }
        let (cert_pem, key_pem) = pki.issue_serving(&name, &dns, &ips).map_err(|e| e.to_string())?;
        config.kubelet_tls =
            Some(rkube_node::kubelet_api::Tls { cert_pem, key_pem, client_ca_pem: Some(pki.ca_cert_pem.clone()) });
        let path = args.data_dir.join("node.kubeconfig");
        write_identity(&pki, &path, &url, &format!("system:node:{name}"), &["system:nodes"])?;
        let client = rkube_client::connect(&path).await?;
        let stop = stopped(stop_rx.clone());
        components.push(tokio::spawn(async move {
            if let Err(e) = rkube_node::run(client, config, stop).await {
                tracing::error!(error = %e, "node agent failed");
            }
        }));
    }
    let shutdown = async move {
        termination().await;
        // Pods end before the API server does.
        let _ = stop_tx.send(true);
        for c in components {
            let _ = tokio::time::timeout(std::time::Duration::from_secs(15), c).await;
        }
    };
    rkube_apiserver::serve::serve(api.clone(), listener, tls, shutdown).await.map_err(|e| e.to_string())?;
    tracing::info!("shutting down");
    store.close().await;
    Ok(())
}

async fn termination() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

/// Resolves once `rx` turns true.
async fn stopped(mut rx: tokio::sync::watch::Receiver<bool>) {
    let _ = rx.wait_for(|v| *v).await;
}

/// A kubeconfig in the data directory for one of the server's own components.
fn write_identity(
    pki: &rkube_pki::Pki,
    path: &std::path::Path,
    url: &str,
    user: &str,
    groups: &[&str],
) -> Result<(), String> {
    let (cert, key) = pki.issue_client(user, groups).map_err(|e| e.to_string())?;
    private_file(path)?;
    std::fs::write(path, pki.kubeconfig(url, user, &cert, &key)).map_err(|e| format!("{}: {e}", path.display()))
}

fn agent_config(a: &AgentArgs, root_dir: PathBuf) -> Result<rkube_node::Config, String> {
    let binary = std::env::current_exe().map_err(|e| format!("the rkube binary's path: {e}"))?;
    let mut image_map = rkube_node::images::ImageMap::builtin(&binary);
    if let Some(f) = &a.image_map {
        image_map.extend_from_file(f)?;
    }
    let mut node_labels = std::collections::BTreeMap::new();
    for l in &a.node_labels {
        let (k, v) = l.split_once('=').ok_or_else(|| format!("--node-labels: {l:?} is not key=value"))?;
        node_labels.insert(k.to_string(), v.to_string());
    }
    let root_dir = if root_dir.is_absolute() {
        root_dir
    } else {
        std::env::current_dir().map_err(|e| e.to_string())?.join(root_dir)
    };
    Ok(rkube_node::Config {
        name: a.node_name.clone(),
        root_dir,
        rkube_binary: binary,
        hide: Vec::new(),
        image_map,
        kubelet_port: a.kubelet_port,
        kubelet_address: a.kubelet_address,
        kubelet_tls: None,
        rotate_server_certificates: false,
        node_ip: a.node_ip.clone(),
        node_labels,
        cluster_domain: "cluster.local".into(),
        log_max_bytes: a.container_log_max_size,
        api_server: None,
        pod_network: !a.no_pod_network,
        cluster_dns: a.cluster_dns,
        version: rkube_apiserver::KUBE_GIT_VERSION.to_string(),
        token_refresh_after: a.token_refresh_after_seconds.map(std::time::Duration::from_secs),
    })
}

/// `rkube node`: an agent joining the API server a kubeconfig names.
async fn node(args: NodeArgs) -> Result<(), String> {
    let mut config = agent_config(&args.agent, args.root_dir.clone())?;
    let kc = std::fs::read_to_string(&args.kubeconfig).map_err(|e| format!("{}: {e}", args.kubeconfig.display()))?;
    let server = kc
        .lines()
        .find_map(|l| l.trim().strip_prefix("server:"))
        .map(|s| s.trim().trim_matches('"').to_string())
        .unwrap_or_default();
    config.api_server = host_port(&server);
    config.rotate_server_certificates = args.rotate_server_certificates;
    config.kubelet_tls = node_tls(&args, &kc)?;
    let client = rkube_client::connect(&args.kubeconfig).await?;
    rkube_node::run(client, config, termination()).await
}

/// `rkube node`'s kubelet API certificate (--tls-cert-file/--tls-private-key-file, else None:
/// self-signed) and client CA (--client-ca-file, else the kubeconfig's certificate
/// authority).
fn node_tls(args: &NodeArgs, kubeconfig: &str) -> Result<Option<rkube_node::kubelet_api::Tls>, String> {
    let read = |p: &PathBuf| std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()));
    let client_ca_pem = match &args.client_ca_file {
        Some(p) => Some(read(p)?),
        None => kubeconfig_ca(kubeconfig, &args.kubeconfig)?,
    };
    match (&args.tls_cert_file, &args.tls_private_key_file) {
        (Some(c), Some(k)) => {
            Ok(Some(rkube_node::kubelet_api::Tls { cert_pem: read(c)?, key_pem: read(k)?, client_ca_pem }))
        }
        (None, None) if args.rotate_server_certificates => {
            // The certificate comes from the cluster; the client CA applies.
            Ok(Some(rkube_node::kubelet_api::Tls { cert_pem: String::new(), key_pem: String::new(), client_ca_pem }))
        }
        (None, None) => {
            // The agent makes a self-signed certificate; the client CA still applies.
            let machine = rkube_node::node::Machine::read(&args.root_dir, args.agent.node_ip.as_deref());
            let name = args.agent.node_name.clone().unwrap_or_else(|| machine.hostname.clone());
            tracing::warn!("no --tls-cert-file: the kubelet API uses a self-signed certificate");
            let mut ips: Vec<std::net::IpAddr> = machine.internal_ip.parse().into_iter().collect();
            ips.push(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST));
            let cn = format!(
                "{}@{}",
                machine.hostname,
                std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
            );
            let (cert_pem, key_pem) = rkube_pki::self_signed_serving(&cn, &[machine.hostname.clone(), name], &ips)
                .map_err(|e| e.to_string())?;
            Ok(Some(rkube_node::kubelet_api::Tls { cert_pem, key_pem, client_ca_pem }))
        }
        _ => Err("--tls-cert-file and --tls-private-key-file go together".into()),
    }
}

/// The current cluster's certificate authority in a kubeconfig (inline data or a file).
fn kubeconfig_ca(text: &str, path: &std::path::Path) -> Result<Option<String>, String> {
    use base64::Engine;
    let doc: serde_yaml::Value = serde_yaml::from_str(text).map_err(|e| format!("{}: {e}", path.display()))?;
    let current = doc["current-context"].as_str().unwrap_or("");
    let contexts = doc["contexts"].as_sequence().cloned().unwrap_or_default();
    let cluster_name = contexts
        .iter()
        .find(|c| c["name"].as_str() == Some(current))
        .and_then(|c| c["context"]["cluster"].as_str().map(str::to_string));
    let clusters = doc["clusters"].as_sequence().cloned().unwrap_or_default();
    let cluster = clusters
        .iter()
        .find(|c| cluster_name.is_none() || c["name"].as_str() == cluster_name.as_deref())
        .map(|c| c["cluster"].clone());
    let Some(cluster) = cluster else { return Ok(None) };
    if let Some(data) = cluster["certificate-authority-data"].as_str() {
        let pem = base64::engine::general_purpose::STANDARD
            .decode(data.trim())
            .map_err(|e| format!("{}: certificate-authority-data: {e}", path.display()))?;
        return Ok(Some(String::from_utf8_lossy(&pem).into_owned()));
    }
    if let Some(file) = cluster["certificate-authority"].as_str() {
        let p = path.parent().unwrap_or(std::path::Path::new(".")).join(file);
        return std::fs::read_to_string(&p).map(Some).map_err(|e| format!("{}: {e}", p.display()));
    }
    Ok(None)
}

/// `https://host:port` as (host, port).
fn host_port(url: &str) -> Option<(String, u16)> {
    let rest = url.strip_prefix("https://").or_else(|| url.strip_prefix("http://"))?;
    let authority = rest.split('/').next()?;
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => (h, p.parse().ok()?),
        _ => (authority, 443),
    };
    Some((host.trim_start_matches('[').trim_end_matches(']').to_string(), port))
}

/// The data directory holds every Secret and the cluster's keys: only its owner may
/// enter it (0700), whatever the umask, and a directory made by an older rkube is
/// tightened too.
fn private_dir(dir: &std::path::Path) -> Result<(), String> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let err = |e: std::io::Error| format!("{}: {e}", dir.display());
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(err)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(err)
}

/// Creates `path` (empty) readable by its owner only, or tightens it if it exists.
fn private_file(path: &std::path::Path) -> Result<(), String> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let err = |e: std::io::Error| format!("{}: {e}", path.display());
    std::fs::OpenOptions::new().create(true).append(true).mode(0o600).open(path).map_err(err)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(err)
}

/// What rkube keeps in the data directory, readable by its owner only: the directory and
/// `pki/` 0700, the store, the admin kubeconfig and every file rkube wrote in `pki/` 0600
/// (certificates included: nobody but the server needs them from here; clients get the CA
/// from the kubeconfig). Nothing else in the directory is touched.
fn lock_down(dir: &std::path::Path) -> Result<(), String> {
    private_dir(dir)?;
    for name in
        ["store.redb", "admin.kubeconfig", "scheduler.kubeconfig", "controller-manager.kubeconfig", "node.kubeconfig"]
    {
        let path = dir.join(name);
        if path.exists() {
            private_file(&path)?;
        }
    }
    let pki = dir.join("pki");
    private_dir(&pki)?;
    for entry in std::fs::read_dir(&pki).map_err(|e| format!("{}: {e}", pki.display()))? {
        let entry = entry.map_err(|e| e.to_string())?;
        // Symbolic links are left alone: what they point at is not ours to change.
        if entry.file_type().map_err(|e| e.to_string())?.is_file() {
            private_file(&entry.path())?;
        }
    }
    Ok(())
}

/// Objects every cluster has from the start.
async fn bootstrap(api: &Arc<ApiServer>) -> Result<(), String> {
    for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        let key = format!("/registry/core/namespaces/{ns}");
        if api.store.get(&key).is_none() {
            let obj = serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}});
            registry::create_internal(api, "", "v1", "namespaces", None, obj)
                .await
                .map_err(|e| format!("bootstrap namespace {ns}: {e}"))?;
        }
    }
    rkube_apiserver::authz::bootstrap(api).await.map_err(|e| format!("bootstrap RBAC policy: {e}"))?;
    rkube_apiserver::authz::start(api.clone()).await;
    rkube_apiserver::controllers::start(api.clone()).await;
    rkube_apiserver::crds::start(api.clone()).await;
    Ok(())
}
