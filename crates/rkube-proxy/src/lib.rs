//! `rkube proxy`: a drop-in for `kubectl proxy`. Plain HTTP/1.1 on a local port or unix
//! socket in front of one API server, with kubectl's flags, defaults, filter and answers.
//!
//! Request path: listener -> [`Proxy::handle`] (Go `ServeMux` routing in [`gohttp`]) ->
//! static files ([`static_files`]) or the API prefix -> request filter ([`filter`]) ->
//! [`upstream::Upstream`] (credentials from [`config`], pooled HTTP/2 or HTTP/1.1, upgrades
//! spliced on their own connection).
//!
//! Deviations from kubectl proxy, on purpose:
//! - an unreachable API server is a 502 with the proxy's message (kubectl: 500 with Go's
//!   dial error);
//! - the client's `Authorization` header is dropped and the proxy's credentials sent
//!   (client-go would forward the client's own header unchanged);
//! - no interactive username/password prompt when the kubeconfig has no credentials, and
//!   exec plugins never get a terminal; auth-provider plugins (gone from kubectl since 1.26)
//!   are refused with a clear error at start-up.

pub mod config;
pub mod exec;
pub mod filter;
pub mod gohttp;
pub mod static_files;
pub mod upstream;

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{header, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};

pub use config::ConnectionFlags;
use filter::Filter;
use gohttp::Route;
use upstream::Upstream;

/// Every response body: upstream streams, local answers, files.
pub type Body = http_body_util::combinators::UnsyncBoxBody<Bytes, Box<dyn std::error::Error + Send + Sync>>;

pub(crate) fn full(b: Bytes) -> Body {
    Full::new(b).map_err(|never| match never {}).boxed_unsync()
}

/// `kubectl proxy`'s flags (same names, short forms and defaults) and kubectl's connection flags.
#[derive(clap::Args, Debug, Clone)]
pub struct ProxyArgs {
    /// The port on which to run the proxy. Set to 0 to pick a random port.
    #[arg(short = 'p', long, default_value_t = 8001)]
    pub port: u16,
    /// The IP address on which to serve on.
    #[arg(long, default_value = "127.0.0.1")]
    pub address: String,
    /// Unix socket on which to run the proxy.
    #[arg(short = 'u', long)]
    pub unix_socket: Option<PathBuf>,
    /// Prefix to serve the proxied API under.
    #[arg(long, default_value = "/")]
    pub api_prefix: String,
    /// Also serve static files from the given directory under the specified prefix.
    #[arg(short = 'w', long)]
    pub www: Option<PathBuf>,
    /// Prefix to serve static files under, if static file directory is specified.
    #[arg(short = 'P', long, default_value = "/static/")]
    pub www_prefix: String,
    /// Regular expression for paths that the proxy should accept.
    #[arg(long, default_value = filter::DEFAULT_ACCEPT_PATHS)]
    pub accept_paths: String,
    /// Regular expression for paths that the proxy should reject. Paths specified here will be rejected even accepted by --accept-paths.
    #[arg(long, default_value = filter::DEFAULT_REJECT_PATHS)]
    pub reject_paths: String,
    /// Regular expression for hosts that the proxy should accept.
    #[arg(long, default_value = filter::DEFAULT_ACCEPT_HOSTS)]
    pub accept_hosts: String,
    /// Regular expression for HTTP methods that the proxy should reject (example --reject-methods='POST,PUT,PATCH').
    #[arg(long, default_value = filter::DEFAULT_REJECT_METHODS)]
    pub reject_methods: String,
    /// If true, disable request filtering in the proxy. This is dangerous, and can leave you vulnerable to XSRF attacks, when used with an accessible port.
    #[arg(long, num_args = 0..=1, default_missing_value = "true", require_equals = true, default_value_t = false, value_name = "BOOL")]
    pub disable_filter: bool,
    /// keepalive specifies the keep-alive period for an active network connection. Set to 0 to disable keepalive.
    #[arg(long, default_value = "0s", value_parser = parse_go_duration)]
    pub keepalive: Duration,
    /// If true, enables automatic path appending of the kube context server path to each request.
    #[arg(long, num_args = 0..=1, default_missing_value = "true", require_equals = true, default_value_t = false, value_name = "BOOL")]
    pub append_server_path: bool,
    /// Log level (kubectl's -v): 3 and above log each filter decision.
    #[arg(short = 'v', long = "v", default_value_t = 0)]
    pub verbosity: u8,
    #[command(flatten)]
    pub connection: ConnectionFlags,
}

/// Go's `time.ParseDuration` for the forms people write ("0", "30s", "1m30s", "1.5h", "500ms").
pub fn parse_go_duration(s: &str) -> Result<Duration, String> {
    let bad = || format!("time: invalid duration {s:?}");
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    let mut rest = s.strip_prefix('+').unwrap_or(s);
    if rest.is_empty() || rest.starts_with('-') {
        return Err(bad());
    }
    let mut total = 0f64;
    while !rest.is_empty() {
        let num_end = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).ok_or_else(bad)?;
        let n: f64 = rest[..num_end].parse().map_err(|_| bad())?;
        rest = &rest[num_end..];
        let unit_end = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let scale = match &rest[..unit_end] {
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(bad()),
        };
        total += n * scale;
        rest = &rest[unit_end..];
    }
    Duration::try_from_secs_f64(total).map_err(|_| bad())
}

/// The proxy: routing, filter, upstream.
pub struct Proxy {
    upstream: Upstream,
    filter: Option<Filter>,
    api_prefix: String,
    www: Option<(String, PathBuf)>,
}

fn decode_path(raw: &str) -> Option<String> {
    // Go rejects a malformed escape with 400 before any handler runs.
    let bytes = raw.as_bytes();
    for (i, b) in bytes.iter().enumerate() {
        if *b == b'%'
            && !(bytes.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
                && bytes.get(i + 2).is_some_and(u8::is_ascii_hexdigit))
        {
            return None;
        }
    }
    Some(percent_encoding::percent_decode_str(raw).decode_utf8_lossy().into_owned())
}

impl Proxy {
    pub fn new(args: &ProxyArgs, rest: &config::RestConfig) -> Result<Proxy, String> {
        let filter = if args.disable_filter {
            None
        } else {
            Some(Filter::new(&args.accept_paths, &args.reject_paths, &args.accept_hosts, &args.reject_methods)?)
        };
        let keepalive = (!args.keepalive.is_zero()).then_some(args.keepalive);
        let upstream = Upstream::new(rest, keepalive, args.append_server_path)?;
        let slash = |s: &str| if s.ends_with('/') { s.to_string() } else { format!("{s}/") };
        let api_prefix = slash(&args.api_prefix);
        let www = args.www.clone().filter(|w| !w.as_os_str().is_empty()).map(|w| (slash(&args.www_prefix), w));
        if www.as_ref().is_some_and(|(p, _)| *p == api_prefix) {
            return Err(format!("--www-prefix and --api-prefix are both {api_prefix:?}"));
        }
        Ok(Proxy { upstream, filter, api_prefix, www })
    }

    pub async fn handle(&self, req: Request<Incoming>, peer: Option<IpAddr>) -> Response<Body> {
        let host = req
            .headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .map(str::to_string)
            .or_else(|| req.uri().authority().map(|a| a.to_string()))
            // HTTP/1.0 may omit Host; Go then filters on an empty host.
            .or_else(|| (req.version() == http::Version::HTTP_10).then(String::new));
        let Some(host) = host else {
            let mut r = gohttp::text(StatusCode::BAD_REQUEST, "400 Bad Request: missing required Host header".into());
            r.headers_mut().insert(header::CONNECTION, http::HeaderValue::from_static("close"));
            return r;
        };
        let raw_path = req.uri().path().to_string();
        let query = req.uri().query().map(str::to_string);
        let Some(path) = decode_path(&raw_path) else {
            let mut r = gohttp::text(StatusCode::BAD_REQUEST, "400 Bad Request".into());
            r.headers_mut().insert(header::CONNECTION, http::HeaderValue::from_static("close"));
            return r;
        };
        let method = req.method().clone();
        // Go 1.22's ServeMux routes and cleans the escaped path (so `%2F` stays a character
        // of a segment); the filter and the file server see the decoded one.
        match gohttp::route(
            &method,
            &raw_path,
            query.as_deref(),
            &self.api_prefix,
            self.www.as_ref().map(|w| w.0.as_str()),
        ) {
            Route::Redirect(location) => gohttp::redirect(&method, &location),
            Route::NotFound => gohttp::not_found(),
            Route::Static => {
                let (prefix, root) = self.www.as_ref().expect("routed to static only with --www");
                let rest = path.strip_prefix(prefix.as_str()).unwrap_or("");
                static_files::serve(root, rest, query.as_deref(), &method, req.headers()).await
            }
            Route::Api => {
                let (filter_path, forward_path) = if self.api_prefix.starts_with("/api") {
                    (path.clone(), raw_path)
                } else {
                    let Some(stripped) = gohttp::strip_leave_slash(&self.api_prefix, &path) else {
                        return gohttp::not_found();
                    };
                    let raw = gohttp::strip_leave_slash(&self.api_prefix, &raw_path)
                        .filter(|r| decode_path(r).as_deref() == Some(stripped.as_str()))
                        .unwrap_or_else(|| gohttp::escape_path(&stripped));
                    (stripped, raw)
                };
                let host_only = gohttp::extract_host(&host);
                if let Some(f) = &self.filter {
                    if !f.accept(method.as_str(), &filter_path, host_only) {
                        tracing::debug!("Filter rejecting {} {} {}", method, filter_path, host_only);
                        return gohttp::error(StatusCode::FORBIDDEN, "Forbidden");
                    }
                    tracing::debug!("Filter accepting {} {} {}", method, filter_path, host_only);
                }
                let forward_path = if forward_path.is_empty() { "/".to_string() } else { forward_path };
                let pq = match &query {
                    Some(q) => format!("{forward_path}?{q}"),
                    None => forward_path,
                };
                if upstream::is_upgrade(req.headers()) {
                    self.upstream.upgrade(req, &pq, peer).await
                } else {
                    self.upstream.forward(req, &pq, peer).await
                }
            }
        }
    }
}

enum Listener {
    Tcp(tokio::net::TcpListener),
    Unix(tokio::net::UnixListener),
}

async fn listen(args: &ProxyArgs) -> Result<(Listener, String), String> {
    match &args.unix_socket {
        Some(path) => {
            // As kubectl: a stale socket is removed; anything else at the path is an error.
            use std::os::unix::fs::FileTypeExt;
            if std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_socket()) {
                let _ = std::fs::remove_file(path);
            }
            let old = nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o077));
            let bound = tokio::net::UnixListener::bind(path);
            nix::sys::stat::umask(old);
            let l = bound.map_err(|e| format!("listen unix {}: {e}", path.display()))?;
            Ok((Listener::Unix(l), path.display().to_string()))
        }
        None => {
            let l = tokio::net::TcpListener::bind((args.address.as_str(), args.port))
                .await
                .map_err(|e| format!("listen tcp {}:{}: {e}", args.address, args.port))?;
            let addr = l.local_addr().map_err(|e| e.to_string())?;
            Ok((Listener::Tcp(l), addr.to_string()))
        }
    }
}

fn serve_connection<S>(proxy: Arc<Proxy>, io: S, peer: Option<IpAddr>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    tokio::spawn(async move {
        let service = hyper::service::service_fn(move |req| {
            let proxy = proxy.clone();
            async move { Ok::<_, std::convert::Infallible>(proxy.handle(req, peer).await) }
        });
        let conn = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            // Go writes canonical header names; some scripts grep for them.
            .title_case_headers(true)
            .max_buf_size(upstream::MAX_BUF)
            .serve_connection(TokioIo::new(io), service)
            .with_upgrades();
        if let Err(e) = conn.await {
            tracing::debug!("client connection: {e}");
        }
    });
}

/// `rkube proxy`: resolves the upstream, binds, prints kubectl's start line, serves forever.
pub async fn run(args: ProxyArgs) -> Result<(), String> {
    if args.port != 8001 && args.unix_socket.is_some() {
        return Err("cannot set --unix-socket and --port at the same time".into());
    }
    let rest = config::resolve(&args.connection, &config::Environment::from_process())?;
    if !args.append_server_path {
        if let Ok(uri) = rest.host.parse::<http::Uri>() {
            if !matches!(uri.path(), "" | "/") {
                tracing::warn!("Your kube context contains a server path {}, use --append-server-path to automatically append the path to each request", uri.path());
            }
        }
    }
    if args.disable_filter {
        if args.unix_socket.is_none() {
            tracing::warn!("Request filter disabled, your proxy is vulnerable to XSRF attacks, please be cautious");
        }
    } else if args.reject_paths.is_empty() || args.reject_methods.is_empty() {
        tracing::warn!("Request filter has been relaxed, your proxy may be vulnerable to attacks, please be cautious");
    }
    if let Some(www) = &args.www {
        match std::fs::metadata(www) {
            Err(e) => tracing::warn!("Failed to stat static file directory {}: {e}", www.display()),
            Ok(m) if !m.is_dir() => tracing::warn!("Static file directory {} is not a directory", www.display()),
            Ok(_) => {}
        }
    }
    let proxy = Arc::new(Proxy::new(&args, &rest)?);
    tracing::debug!(upstream = %rest.host, source = rest.source, "proxying");
    let (listener, shown) = listen(&args).await?;
    {
        use std::io::Write;
        let mut out = std::io::stdout();
        let _ = writeln!(out, "Starting to serve on {shown}");
        let _ = out.flush();
    }
    trim_executable_pages();
    loop {
        match &listener {
            Listener::Tcp(l) => match l.accept().await {
                Ok((s, peer)) => {
                    let _ = s.set_nodelay(true);
                    serve_connection(proxy.clone(), s, Some(peer.ip()));
                }
                Err(e) => accept_failed(e).await,
            },
            Listener::Unix(l) => match l.accept().await {
                Ok((s, _)) => serve_connection(proxy.clone(), s, None),
                Err(e) => accept_failed(e).await,
            },
        }
    }
}

/// Gives back the pages of our own executable that start-up made resident. The kernel maps
/// an executable in large folios (fault-around and large page-cache folios), so start-up
/// alone leaves most of the 15 MB of text resident though the proxy's request path uses a
/// small part of it. These are clean file pages: paging them out costs nothing but a
/// re-read of the few the request path touches next. Read-only mappings only; writable
/// data is never touched.
fn trim_executable_pages() {
    use std::ptr::NonNull;
    let (Ok(exe), Ok(maps)) = (std::fs::read_link("/proc/self/exe"), std::fs::read_to_string("/proc/self/maps")) else {
        return;
    };
    let exe = exe.to_string_lossy();
    for line in maps.lines().filter(|l| l.ends_with(exe.as_ref())) {
        let mut fields = line.split_whitespace();
        let (Some(range), Some(perms)) = (fields.next(), fields.next()) else { continue };
        if perms.contains('w') {
            continue;
        }
        let Some((a, b)) = range.split_once('-') else { continue };
        let (Ok(a), Ok(b)) = (usize::from_str_radix(a, 16), usize::from_str_radix(b, 16)) else { continue };
        let Some(addr) = NonNull::new(a as *mut std::ffi::c_void) else { continue };
        // SAFETY: the range is a whole read-only file mapping of this process, taken from
        // /proc/self/maps; MADV_PAGEOUT only drops resident pages, contents stay valid.
        if let Err(e) = unsafe { nix::sys::mman::madvise(addr, b - a, nix::sys::mman::MmapAdvise::MADV_PAGEOUT) } {
            tracing::debug!("madvise {range}: {e}");
        }
    }
}

/// Out of file descriptors and the like: wait a little, as Go's server does, instead of spinning.
async fn accept_failed(e: std::io::Error) {
    tracing::error!("accept: {e}");
    tokio::time::sleep(Duration::from_millis(50)).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        assert_eq!(parse_go_duration("0").unwrap(), Duration::ZERO);
        assert_eq!(parse_go_duration("0s").unwrap(), Duration::ZERO);
        assert_eq!(parse_go_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_go_duration("1m30s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_go_duration("500ms").unwrap(), Duration::from_millis(500));
        assert!(parse_go_duration("30").is_err());
        assert!(parse_go_duration("-1s").is_err());
        assert!(parse_go_duration("").is_err());
    }

    #[test]
    fn malformed_escapes_are_refused() {
        assert_eq!(decode_path("/a%2Fb").as_deref(), Some("/a/b"));
        assert_eq!(decode_path("/a%zz"), None);
        assert_eq!(decode_path("/a%2"), None);
    }
}
