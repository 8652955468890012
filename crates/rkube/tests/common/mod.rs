//! Starts and stops the real `rkube` binary for integration tests, and finds the real
//! clients (kubectl, curl, python) they drive. A missing client skips the test with a
//! visible message locally and fails it in CI (`CI` set).

#![allow(dead_code)]

pub mod pods;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub struct Server {
    pub child: Option<Child>,
    pub dir: PathBuf,
    pub url: String,
    pub kubeconfig: PathBuf,
    /// Runs pods: stopped with SIGTERM so the agent ends them before the server exits.
    pub node: bool,
    _tmp: Option<tempfile::TempDir>,
}

impl Server {
    /// A server on a free loopback port with a fresh data directory.
    pub fn start() -> Server {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().to_path_buf();
        let mut s = Server::start_in(&dir, &[]);
        s._tmp = Some(tmp);
        s
    }

    /// A server on `dir` (kept by the caller, e.g. for restarts).
    pub fn start_in(dir: &Path, extra: &[&str]) -> Server {
        Server::spawn(dir, extra, None, false, false)
    }

    /// A fresh server that also runs its scheduler, controllers and node agent (as `rkube
    /// server` does by default), so pods run; the others leave them out, as an API-only
    /// envtest does.
    pub fn start_with_node(extra: &[&str]) -> Server {
        let tmp = tempfile::tempdir().expect("tempdir");
        let mut s = Server::spawn(tmp.path(), extra, None, true, true);
        s._tmp = Some(tmp);
        s
    }

    /// A fresh server that runs its controllers but neither scheduler nor node agent:
    /// objects are reconciled through the API while pods stay where the test puts them.
    pub fn start_with_controllers(extra: &[&str]) -> Server {
        let tmp = tempfile::tempdir().expect("tempdir");
        let mut s = Server::spawn(tmp.path(), extra, None, false, true);
        s._tmp = Some(tmp);
        s
    }

    /// [`Server::start_in`] with the controllers running.
    pub fn start_in_with_controllers(dir: &Path, extra: &[&str]) -> Server {
        Server::spawn(dir, extra, None, false, true)
    }

    /// [`Server::start_with_node`] on `dir` (kept by the caller, e.g. for restarts).
    pub fn start_in_with_node(dir: &Path, extra: &[&str]) -> Server {
        Server::spawn(dir, extra, None, true, true)
    }

    /// A fresh server with a static token file (`token,user,uid,"groups"` lines) and more
    /// flags; the directory lives as long as the returned guard.
    pub fn start_with_tokens(csv: &str, extra: &[&str]) -> (tempfile::TempDir, Server) {
        let dir = tempfile::tempdir().expect("tempdir");
        let tokens = dir.path().join("tokens.csv");
        std::fs::write(&tokens, csv).expect("token file");
        let mut args = vec!["--token-auth-file", tokens.to_str().expect("path")];
        args.extend_from_slice(extra);
        let s = Server::start_in(&dir.path().join("data"), &args);
        (dir, s)
    }

    /// A fresh server whose process may open at most `nofile` descriptors.
    pub fn start_limited(nofile: u64) -> Server {
        let tmp = tempfile::tempdir().expect("tempdir");
        let mut s = Server::spawn(tmp.path(), &[], Some(nofile), false, false);
        s._tmp = Some(tmp);
        s
    }

    fn spawn(dir: &Path, extra: &[&str], nofile: Option<u64>, node: bool, controllers: bool) -> Server {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_rkube"));
        cmd.args(["server", "--listen", "127.0.0.1:0", "--data-dir"]).arg(dir).args(extra);
        if node {
            // The kubelet API on a free loopback port: parallel tests never collide on 10250
            // and nothing listens beyond the loopback.
            if !extra.contains(&"--kubelet-port") {
                cmd.args(["--kubelet-port", "0"]);
            }
            if !extra.contains(&"--kubelet-address") {
                cmd.args(["--kubelet-address", "127.0.0.1"]);
            }
        }
        if !node {
            cmd.args(["--no-node", "--no-scheduler"]);
            if !controllers {
                cmd.arg("--no-controllers");
            }
        }
        cmd.stdout(Stdio::piped()).stderr(Stdio::null());
        // RKUBE_TEST_LOG=FILE keeps the server's log there (for debugging a test).
        if let Some(path) = std::env::var_os("RKUBE_TEST_LOG") {
            if let Ok(f) = std::fs::OpenOptions::new().create(true).append(true).open(path) {
                cmd.stderr(f);
            }
        }
        if let Some(n) = nofile {
            use std::os::unix::process::CommandExt;
            // SAFETY: only setrlimit, which is async-signal-safe, runs between fork and exec.
            unsafe {
                cmd.pre_exec(move || {
                    nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE, n, n)
                        .map_err(std::io::Error::from)
                });
            }
        }
        let mut child = cmd.spawn().expect("start rkube");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).expect("read start line");
        // "rkube: serving https://127.0.0.1:PORT; kubeconfig: PATH"
        let url = line.split("serving ").nth(1).and_then(|s| s.split(';').next()).unwrap_or("").to_string();
        assert!(url.starts_with("https://127.0.0.1:"), "unexpected start line: {line:?}");
        Server {
            child: Some(child),
            dir: dir.to_path_buf(),
            url,
            kubeconfig: dir.join("admin.kubeconfig"),
            node,
            _tmp: None,
        }
    }

    /// SIGTERM (by PID) and wait up to 30 s for a clean exit; returns whether it exited.
    pub fn stop(&mut self) -> bool {
        let Some(mut c) = self.child.take() else { return true };
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(c.id() as i32), nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = c.try_wait() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = c.kill();
        let _ = c.wait();
        reap_namespaces(&self.dir);
        false
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    /// `kill -9` this server (by its PID) and wait for it.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
            reap_namespaces(&self.dir);
        }
    }

    /// kubectl (the dispatcher on PATH unless `bin` names a versioned one) with this
    /// server's admin kubeconfig.
    pub fn kubectl_bin(&self, bin: &str, args: &[&str]) -> Output {
        Command::new(bin).args(args).env("KUBECONFIG", &self.kubeconfig).output().expect("run kubectl")
    }

    pub fn kubectl(&self, args: &[&str]) -> Output {
        self.kubectl_bin("kubectl", args)
    }

    /// kubectl authenticating with a bearer token only (no kubeconfig), as an in-cluster
    /// client or a script would.
    pub fn kubectl_token(&self, token: &str, args: &[&str]) -> Output {
        Command::new("kubectl")
            .arg("--kubeconfig=/dev/null")
            .arg(format!("--server={}", self.url))
            .arg(format!("--certificate-authority={}", self.pki("ca.crt")))
            .arg(format!("--token={token}"))
            .args(args)
            .output()
            .expect("run kubectl")
    }

    /// kubectl that must succeed; returns stdout.
    pub fn kubectl_ok(&self, args: &[&str]) -> String {
        let out = self.kubectl(args);
        assert!(
            out.status.success(),
            "kubectl {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Watch streams the server has open now (`apiserver_registered_watchers`): a watch
    /// counted here is established, so waiting for the count replaces sleeping.
    pub fn registered_watchers(&self) -> i64 {
        let (_, _, body) = self.curl("GET", "/metrics", None, &[]);
        body.lines()
            .find(|l| l.starts_with("apiserver_registered_watchers"))
            .and_then(|l| l.split_whitespace().last())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no apiserver_registered_watchers in /metrics:\n{body}"))
    }

    pub fn pki(&self, name: &str) -> String {
        self.dir.join("pki").join(name).display().to_string()
    }

    /// curl as the admin (client certificate), verifying the server against the CA.
    /// Returns (HTTP code, headers, body).
    pub fn curl(&self, method: &str, path: &str, body: Option<&[u8]>, headers: &[&str]) -> (u16, String, String) {
        self.curl_as(true, method, path, body, headers)
    }

    pub fn curl_anon(&self, method: &str, path: &str) -> (u16, String, String) {
        self.curl_as(false, method, path, None, &[])
    }

    pub fn curl_as(
        &self,
        admin: bool,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
        headers: &[&str],
    ) -> (u16, String, String) {
        let (code, headers, body) = self.curl_raw(admin, method, path, body, headers);
        (code, headers, String::from_utf8_lossy(&body).into_owned())
    }

    /// curl with the body returned as bytes (protobuf answers are binary).
    pub fn curl_raw(
        &self,
        admin: bool,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
        headers: &[&str],
    ) -> (u16, String, Vec<u8>) {
        let tmp = tempfile::tempdir().expect("tmp");
        let hdr = tmp.path().join("h");
        let out_file = tmp.path().join("o");
        let mut cmd = Command::new("curl");
        cmd.args(["-sS", "-X", method, "--cacert", &self.pki("ca.crt"), "-D"]).arg(&hdr).arg("-o").arg(&out_file);
        if admin {
            cmd.args(["--cert", &self.pki("admin.crt"), "--key", &self.pki("admin.key")]);
        }
        for h in headers {
            cmd.args(["-H", h]);
        }
        if let Some(b) = body {
            let f = tmp.path().join("body");
            std::fs::write(&f, b).expect("write body");
            cmd.arg("--data-binary").arg(format!("@{}", f.display()));
        }
        cmd.arg(format!("{}{}", self.url, path));
        let out = cmd.output().expect("run curl");
        assert!(out.status.success(), "curl {method} {path} failed: {}", String::from_utf8_lossy(&out.stderr));
        let headers = std::fs::read_to_string(&hdr).unwrap_or_default();
        let code = headers
            .lines()
            .rfind(|l| l.starts_with("HTTP/"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        (code, headers, std::fs::read(&out_file).unwrap_or_default())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.node {
            self.stop();
        }
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
            reap_namespaces(&self.dir);
        }
        // A cleanly stopped agent removed its namespaces; one it left is reported (an agent
        // bug) and removed all the same: nothing of a test outlives it.
        let left = leftover_namespaces(&self.dir);
        if !left.is_empty() {
            eprintln!("WARNING: the stopped agent left network namespaces {left:?}; removing them");
            reap_namespaces(&self.dir);
        }
        reap_cgroups(&self.dir);
    }
}

/// Files named `name` in `dir` and its subdirectories (three levels down).
pub fn records(dir: &Path, name: &str, depth: u32, out: &mut Vec<String>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        let path = e.path();
        if path.is_dir() && depth > 0 {
            records(&path, name, depth - 1, out);
        } else if e.file_name() == name {
            out.push(std::fs::read_to_string(&path).unwrap_or_default());
        }
    }
}

/// Ends the processes and removes the cgroups an agent under `dir` left (it names its scope
/// directories in a `cgroups` file): nothing when it stopped cleanly, the pods of one that
/// was killed and never followed by another agent.
pub fn reap_cgroups(dir: &Path) {
    fn reap(d: &Path) {
        for e in std::fs::read_dir(d).into_iter().flatten().flatten() {
            if e.path().is_dir() {
                reap(&e.path());
            }
        }
        for _ in 0..100 {
            let procs = std::fs::read_to_string(d.join("cgroup.procs")).unwrap_or_default();
            let pids: Vec<i32> = procs.lines().filter_map(|l| l.trim().parse().ok()).collect();
            if pids.is_empty() {
                break;
            }
            for p in pids {
                let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(p), nix::sys::signal::Signal::SIGKILL);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        for _ in 0..20 {
            if std::fs::remove_dir(d).is_ok() || !d.exists() {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    let mut found = Vec::new();
    records(dir, "cgroups", 3, &mut found);
    for base in found.iter().flat_map(|f| f.lines()) {
        let base = Path::new(base);
        if base.starts_with("/sys/fs/cgroup") && base.components().any(|c| c.as_os_str() == "rkube") {
            reap(base);
        }
    }
}

/// Removes the network namespaces a killed agent under `dir` had made: each agent names its
/// router namespace in a `netns` file of its root directory before making it, and its pods'
/// namespaces are that name and `-<n>`. (A later agent on the same directory would remove
/// them too; a test's directory has none.)
pub fn reap_namespaces(dir: &Path) {
    // An `ip netns add` the agent started outlives it by a few milliseconds: look again.
    for round in 0..4 {
        if round > 0 {
            std::thread::sleep(Duration::from_millis(150));
        }
        for name in leftover_namespaces(dir) {
            let _ = Command::new("ip").args(["netns", "delete", &name]).status();
        }
    }
}

/// The network namespaces of the agents under `dir` that exist now.
fn leftover_namespaces(dir: &Path) -> Vec<String> {
    let mut prefixes = Vec::new();
    records(dir, "netns", 3, &mut prefixes);
    prefixes.retain(|name| name.starts_with("rkube-") && !name.contains('/'));
    if prefixes.is_empty() {
        return Vec::new();
    }
    let Ok(entries) = std::fs::read_dir("/run/netns") else { return Vec::new() };
    entries
        .flatten()
        .map(|e| e.file_name().to_string_lossy().to_string())
        .filter(|name| {
            prefixes.iter().any(|p| {
                name == p
                    || name
                        .strip_prefix(p.as_str())
                        .and_then(|r| r.strip_prefix('-'))
                        .is_some_and(|n| n.parse::<u8>().is_ok())
            })
        })
        .collect()
}

/// Whether `tool --version`-ish runs. Missing tools fail in CI and skip loudly elsewhere.
pub fn require(tool: &str, probe: &[&str]) -> bool {
    let ok = Command::new(tool)
        .args(probe)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !ok {
        if std::env::var_os("CI").is_some() {
            panic!("{tool} is required in CI but was not found");
        }
        eprintln!("SKIPPED: {tool} not found; install it to run this test");
    }
    ok
}

/// A child's output line by line, read to the end on a thread of its own (a pipe closed
/// early would end a program such as kubectl at its next line).
/// A process a test started, ended by its PID when dropped (an assertion that fails leaves
/// nothing running).
pub struct Ends(pub Child);

impl Drop for Ends {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Server {
    /// `kubectl proxy` or `rkube proxy` (`bin`) for this server on a free port: its address
    /// (from "Starting to serve on ADDR"), and the process.
    pub fn local_proxy(&self, bin: &str, flags: &[&str]) -> (String, Ends) {
        let mut child = Command::new(bin)
            .args(["proxy", "--port=0"])
            .args(flags)
            .env("KUBECONFIG", &self.kubeconfig)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("proxy");
        let rx = lines(child.stdout.take().expect("stdout"));
        let line = rx.recv_timeout(Duration::from_secs(30)).unwrap_or_default();
        (line.trim().rsplit(' ').next().unwrap_or("").to_string(), Ends(child))
    }
}

pub fn lines(out: impl std::io::Read + Send + 'static) -> std::sync::mpsc::Receiver<String> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for l in BufReader::new(out).lines().map_while(Result::ok) {
            let _ = tx.send(l);
        }
    });
    rx
}

/// Waits until `f` is true or `timeout` passes.
pub fn wait_for(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// Waits until the async check `f` is true or `timeout` passes.
pub async fn wait_for_async<F, Fut>(timeout: Duration, mut f: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while start.elapsed() < timeout {
        if f().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// The captured kube-apiserver answer `shared/reference/kube-apiserver-v1.28.7/<rel>`.
pub fn reference(rel: &str) -> serde_json::Value {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/reference/kube-apiserver-v1.28.7").join(rel);
    let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    serde_json::from_str(&text).expect("reference json")
}
