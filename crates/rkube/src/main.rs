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
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    // The proxy logs like kubectl proxy: warnings and errors, each filter decision at -v=3.
    let default_filter = match &cli.command {
        Command::Server(_) => "info",
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
        Command::Server(_) => tokio::runtime::Builder::new_multi_thread().enable_all().build(),
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
    let issuer = rkube_apiserver::tokens::TokenIssuer::new(&pki.sa_key_pem, &pki.sa_pub_pem)?;
    let _ = api.sa_tokens.set(issuer);
    let (commit_seconds, commit_writes) = (api.metrics.commit_seconds.clone(), api.metrics.commit_batch_writes.clone());
    embedded.set_commit_observer(Box::new(move |took, writes| {
        commit_seconds.observe(took.as_secs_f64());
        commit_writes.observe(writes as f64);
    }));
    bootstrap(&api).await?;
    rkube_apiserver::controllers::publish_kubernetes_service(&api, addr).await;

    let kubeconfig = args.data_dir.join("admin.kubeconfig");
    pki.write_admin_kubeconfig(&kubeconfig, &format!("https://{client_addr}")).map_err(|e| e.to_string())?;
    lock_down(&args.data_dir)?;
    tracing::info!(listen = %addr, ready_ms = started.elapsed().as_millis() as u64, "rkube server ready");
    println!("rkube: serving https://{client_addr}; kubeconfig: {}", kubeconfig.display());

    let shutdown = async {
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
    };
    rkube_apiserver::serve::serve(api.clone(), listener, tls, shutdown).await.map_err(|e| e.to_string())?;
    tracing::info!("shutting down");
    store.close().await;
    Ok(())
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
    for name in ["store.redb", "admin.kubeconfig"] {
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
