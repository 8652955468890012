//! The agent's side of a process container: cgroups that track (and limit) every process of
//! a container, the spawn of the container init ([`crate::sandbox`]), the CRI-format log file
//! its output goes to, its exit, and killing it.
//!
//! Invariant: a container's processes are all in its cgroup before its program runs (the init
//! joins first), so [`ContainerCgroup::kill_all`] reaches every descendant, whatever it does
//! with sessions or process groups.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tokio::io::AsyncReadExt;
use tokio::sync::Mutex;

use crate::sandbox::SandboxSpec;

/// The file of an agent's root directory that names its cgroup scope directories.
pub const CGROUPS_RECORD: &str = "cgroups";

/// Where an agent's cgroups live: one directory per controller hierarchy (cgroup v1) or the
/// one unified hierarchy (v2), each `<the agent's own cgroup>/rkube/<scope>`. The scope is
/// the agent's own (several agents may share a machine): an agent only ever kills in it.
#[derive(Debug, Clone)]
pub struct Cgroups {
    /// (controller name, base directory); the first one is used to list processes.
    bases: Vec<(String, PathBuf)>,
}

impl Cgroups {
    /// Finds the hierarchies this process is in. Empty when cgroups are not writable
    /// (not root): processes are then tracked by process group only, with a warning.
    pub fn detect(scope: &str) -> Cgroups {
        let own = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
        let mut bases = Vec::new();
        if Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
            if let Some(path) = own.lines().find_map(|l| l.strip_prefix("0::")) {
                bases.push((
                    "unified".to_string(),
                    Path::new("/sys/fs/cgroup").join(path.trim_start_matches('/')).join("rkube").join(scope),
                ));
            }
        } else {
            // cpuacct (CPU time used) is its own hierarchy on some machines, with cpu on others.
            let mut seen: Vec<PathBuf> = Vec::new();
            for wanted in ["pids", "memory", "cpu", "cpuacct", "devices"] {
                let Some(path) = own.lines().find_map(|l| {
                    let mut parts = l.splitn(3, ':');
                    let (_, ctrls, path) = (parts.next()?, parts.next()?, parts.next()?);
                    ctrls.split(',').any(|c| c == wanted).then(|| path.to_string())
                }) else {
                    continue;
                };
                let mount = Path::new("/sys/fs/cgroup").join(wanted);
                // cpu and cpuacct mounted together (`cpu,cpuacct`): one directory serves both.
                let canonical = std::fs::canonicalize(&mount).unwrap_or(mount.clone());
                if seen.contains(&canonical) {
                    continue;
                }
                seen.push(canonical);
                if mount.exists() {
                    bases
                        .push((wanted.to_string(), mount.join(path.trim_start_matches('/')).join("rkube").join(scope)));
                }
            }
        }
        bases.retain(|(_, b)| std::fs::create_dir_all(b).is_ok());
        Cgroups { bases }
    }

    /// The scope directories, one per line (what [`CGROUPS_RECORD`] holds).
    pub fn record(&self) -> String {
        self.bases.iter().map(|(_, b)| format!("{}\n", b.display())).collect()
    }

    /// Removes the (empty) scope directories when the agent stops.
    pub fn remove_scope(&self) {
        for (_, b) in &self.bases {
            let _ = std::fs::remove_dir(b);
        }
    }

    pub fn available(&self) -> bool {
        !self.bases.is_empty()
    }

    /// The cgroup of one container (`<pod uid>/<container>`), created empty.
    pub fn container(&self, pod_uid: &str, name: &str) -> ContainerCgroup {
        let dirs: Vec<(String, PathBuf)> =
            self.bases.iter().map(|(c, b)| (c.clone(), b.join(pod_uid).join(name))).collect();
        for (_, d) in &dirs {
            let _ = std::fs::create_dir_all(d);
        }
        ContainerCgroup { dirs }
    }

    /// Every pod cgroup left by an earlier agent (pod uids).
    pub fn leftover_pods(&self) -> Vec<String> {
        let mut uids = Vec::new();
        for (_, base) in &self.bases {
            for e in std::fs::read_dir(base).into_iter().flatten().flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if e.path().is_dir() && !uids.contains(&name) {
                    uids.push(name);
                }
            }
        }
        uids
    }

    /// What a pod (`rel` = its uid) or one of its containers (`<uid>/<name>`) uses, from
    /// the cgroups' own accounting; None when there is no such cgroup.
    pub fn usage(&self, rel: &str) -> Option<Usage> {
        let mut usage = Usage::default();
        let mut found = false;
        for (controller, base) in &self.bases {
            let dir = base.join(rel);
            if !dir.is_dir() {
                continue;
            }
            found = true;
            let read = |f: &str| std::fs::read_to_string(dir.join(f)).ok();
            let stat = |f: &str| read(f).map(|t| key_values(&t)).unwrap_or_default();
            if let Some(ns) = read("cpuacct.usage").and_then(|t| t.trim().parse().ok()) {
                usage.cpu_ns = Some(ns);
            } else if controller == "unified" {
                usage.cpu_ns = stat("cpu.stat").get("usage_usec").map(|us| us * 1000);
            }
            if let Some(n) = read("pids.current").and_then(|t| t.trim().parse().ok()) {
                usage.processes = Some(n);
            }
            let v1 = read("memory.usage_in_bytes").and_then(|t| t.trim().parse::<u64>().ok());
            let current = v1.or_else(|| read("memory.current").and_then(|t| t.trim().parse().ok()));
            if let Some(bytes) = current {
                let s = stat("memory.stat");
                // v1 names the hierarchical counters total_*; v2's are hierarchical anyway.
                let get = |k: &str| s.get(&format!("total_{k}")).or_else(|| s.get(k)).copied().unwrap_or(0);
                let limit = read(if v1.is_some() { "memory.limit_in_bytes" } else { "memory.max" })
                    .and_then(|t| t.trim().parse::<u64>().ok())
                    .filter(|l| *l < 1 << 62);
                usage.memory = Some(MemoryUsage {
                    usage: bytes,
                    // What cAdvisor calls the working set: usage less inactive page cache.
                    working_set: bytes.saturating_sub(get("inactive_file")),
                    rss: if v1.is_some() { get("rss") } else { get("anon") },
                    page_faults: get("pgfault"),
                    major_page_faults: get("pgmajfault"),
                    limit,
                });
            }
        }
        found.then_some(usage)
    }

    /// Kills every process of a pod and removes its cgroups.
    pub async fn remove_pod(&self, pod_uid: &str) {
        for (_, base) in &self.bases {
            let pod = base.join(pod_uid);
            for e in std::fs::read_dir(&pod).into_iter().flatten().flatten() {
                let cg = ContainerCgroup { dirs: vec![("".into(), e.path())] };
                cg.kill_all().await;
                let _ = std::fs::remove_dir(e.path());
            }
            let _ = std::fs::remove_dir(&pod);
        }
    }
}

/// A cgroup's CPU time and memory, as the kubelet's stats report them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Usage {
    /// CPU time used, in nanoseconds (all cores).
    pub cpu_ns: Option<u64>,
    pub memory: Option<MemoryUsage>,
    pub processes: Option<u64>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemoryUsage {
    pub usage: u64,
    pub working_set: u64,
    pub rss: u64,
    pub page_faults: u64,
    pub major_page_faults: u64,
    /// The memory limit, None when unlimited.
    pub limit: Option<u64>,
}

/// `key value` lines (memory.stat, cpu.stat) as a map.
fn key_values(text: &str) -> std::collections::HashMap<String, u64> {
    text.lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(' ')?;
            Some((k.to_string(), v.trim().parse().ok()?))
        })
        .collect()
}

/// One container's cgroup directories.
#[derive(Debug, Clone)]
pub struct ContainerCgroup {
    dirs: Vec<(String, PathBuf)>,
}

impl ContainerCgroup {
    /// Whether processes are tracked (there is a cgroup hierarchy to put them in).
    pub fn available(&self) -> bool {
        !self.dirs.is_empty()
    }

    pub fn procs_files(&self) -> Vec<PathBuf> {
        self.dirs.iter().map(|(_, d)| d.join("cgroup.procs")).collect()
    }

    pub fn pids(&self) -> Vec<i32> {
        let Some((_, dir)) = self.dirs.first() else { return Vec::new() };
        std::fs::read_to_string(dir.join("cgroup.procs"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect()
    }

    /// Lets the container's processes open only the runtime's default devices (all of them
    /// for a privileged container), as runc's device rules: any node may be made, only
    /// those opened. False where there is no device controller (cgroup v2 filters devices
    /// with a BPF program, which is not done here).
    pub fn restrict_devices(&self, all: bool) -> bool {
        let Some((_, dir)) = self.dirs.iter().find(|(n, _)| n == "devices") else { return false };
        let write = |file: &str, rule: &str| std::fs::write(dir.join(file), rule).is_ok();
        if all {
            return write("devices.allow", "a");
        }
        let mut rules: Vec<String> = vec!["c *:* m".into(), "b *:* m".into()];
        rules.extend(crate::sandbox::DEVICES.iter().map(|(_, major, minor)| format!("c {major}:{minor} rwm")));
        // The terminal multiplexer and terminals of the container's devpts, and /dev/net/tun.
        rules.extend(["c 5:2 rwm".into(), "c 136:* rwm".into(), "c 10:200 rwm".into()]);
        write("devices.deny", "a") && rules.iter().all(|r| write("devices.allow", r))
    }

    /// Applies memory (bytes) and CPU (millicores) limits where the controller exists;
    /// returns what could not be applied.
    pub fn limit(&self, memory: Option<u64>, cpu_millis: Option<u64>) -> Vec<String> {
        let mut missing = Vec::new();
        let find = |c: &str| self.dirs.iter().find(|(n, _)| n == c || n == "unified").map(|(_, d)| d.clone());
        if let Some(bytes) = memory {
            let ok = match find("memory") {
                Some(d) if d.join("memory.limit_in_bytes").exists() => {
                    std::fs::write(d.join("memory.limit_in_bytes"), bytes.to_string()).is_ok()
                }
                Some(d) if d.join("memory.max").exists() => {
                    std::fs::write(d.join("memory.max"), bytes.to_string()).is_ok()
                }
                _ => false,
            };
            if !ok {
                missing.push("memory limit".to_string());
            }
        }
        if let Some(millis) = cpu_millis {
            let period = 100_000u64;
            let quota = (millis * period / 1000).max(1000);
            let ok = match find("cpu") {
                Some(d) if d.join("cpu.cfs_quota_us").exists() => {
                    std::fs::write(d.join("cpu.cfs_period_us"), period.to_string()).is_ok()
                        && std::fs::write(d.join("cpu.cfs_quota_us"), quota.to_string()).is_ok()
                }
                Some(d) if d.join("cpu.max").exists() => {
                    std::fs::write(d.join("cpu.max"), format!("{quota} {period}")).is_ok()
                }
                _ => false,
            };
            if !ok {
                missing.push("cpu limit".to_string());
            }
        }
        missing
    }

    /// Whether the kernel's OOM killer killed a process of this container.
    pub fn oom_killed(&self) -> bool {
        for (_, d) in &self.dirs {
            for (file, key) in [("memory.oom_control", "oom_kill "), ("memory.events", "oom_kill ")] {
                if let Ok(text) = std::fs::read_to_string(d.join(file)) {
                    if text
                        .lines()
                        .any(|l| l.strip_prefix(key).and_then(|n| n.trim().parse::<u64>().ok()).unwrap_or(0) > 0)
                    {
                        return true;
                    }
                }
            }
        }
        false
    }

    /// SIGKILL to every process until the cgroup is empty (bounded: 5 s).
    pub async fn kill_all(&self) {
        for _ in 0..500 {
            let pids = self.pids();
            if pids.is_empty() {
                return;
            }
            for p in pids {
                let _ = kill(Pid::from_raw(p), Signal::SIGKILL);
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        tracing::warn!(cgroup = ?self.dirs.first().map(|d| &d.1), "processes survive SIGKILL");
    }

    pub fn remove(&self) {
        for (_, d) in &self.dirs {
            let _ = std::fs::remove_dir(d);
        }
    }
}

/// How a container's process ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exit {
    /// The exit code, or 128 + the signal that ended it (as runtimes report it).
    pub code: i32,
    pub signal: Option<i32>,
}

/// A started container process.
pub struct Process {
    pub pid: u32,
    /// Its standard streams as `kubectl attach` reaches them.
    pub attach: Arc<Attachable>,
    child: tokio::process::Child,
    log_tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Process {
    /// Waits for the program to end and its output to be written.
    pub async fn wait(mut self) -> Exit {
        let status = self.child.wait().await;
        for t in self.log_tasks.drain(..) {
            // Output may still come from descendants; they are killed with the cgroup, which
            // closes the pipes.
            let _ = tokio::time::timeout(Duration::from_secs(2), t).await;
        }
        self.attach.ended();
        use std::os::unix::process::ExitStatusExt;
        match status {
            Ok(s) => match (s.code(), s.signal()) {
                (Some(c), _) => Exit { code: c, signal: None },
                (None, Some(sig)) => Exit { code: 128 + sig, signal: Some(sig) },
                _ => Exit { code: 255, signal: None },
            },
            Err(_) => Exit { code: 255, signal: None },
        }
    }
}

/// A container's standard streams as its spec asks for them (`stdin`, `stdinOnce`, `tty`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stdio {
    pub stdin: bool,
    pub stdin_once: bool,
    pub tty: bool,
}

/// Starts the container init (`helper __container <spec>`) and returns once the program
/// runs, or the reason it could not start (a StartError). Its output goes to `log` and to
/// whoever attaches; with `stdio.stdin` its standard input stays open for attach; with
/// `stdio.tty` its three streams are one terminal (logged as stdout, as containerd does).
pub async fn start(
    helper: &Path,
    spec: &SandboxSpec,
    spec_path: &Path,
    log: Arc<Mutex<LogFile>>,
    stdio: Stdio,
) -> Result<Process, String> {
    use std::process::Stdio as Io;
    write_spec(spec, spec_path)?;
    let pipe = || nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| format!("pipe: {e}"));
    let (err_r, err_w) = pipe()?;
    let mut attach = Attachable {
        tty: stdio.tty,
        stdin_once: stdio.stdin_once,
        has_stdin: stdio.stdin,
        stdin: Mutex::new(None),
        pty: None,
        output: Default::default(),
    };
    // The output pipes' reading ends, read by the reactor.
    let mut outputs = Vec::new();
    // With a terminal, the init makes it in the container's own /dev/pts and sends back its
    // controlling side over this socket.
    let mut console = None;
    let streams: [Io; 3] = if stdio.tty {
        let pair = std::os::unix::net::UnixStream::pair().map_err(|e| format!("socketpair: {e}"))?;
        console = Some(pair);
        [Io::null(), Io::null(), Io::null()]
    } else {
        let input = if stdio.stdin {
            let (r, w) = pipe()?;
            let w = tokio::net::unix::pipe::Sender::from_owned_fd(w).map_err(|e| format!("pipe: {e}"))?;
            attach.stdin = Mutex::new(Some(w));
            Io::from(r)
        } else {
            Io::null()
        };
        let mut output = |stream: &'static str| -> Result<Io, String> {
            let (r, w) = pipe()?;
            let r = tokio::net::unix::pipe::Receiver::from_owned_fd(r).map_err(|e| format!("pipe: {e}"))?;
            outputs.push((Source::Pipe(r), stream));
            Ok(Io::from(w))
        };
        [input, output("stdout")?, output("stderr")?]
    };
    let mut cmd = init_command(helper, "__container", spec_path, streams, &err_w, false);
    cmd.kill_on_drop(false);
    if let Some((_, theirs)) = &console {
        let raw = std::os::fd::AsRawFd::as_raw_fd(theirs);
        // SAFETY: dup2 between fork and exec, async-signal-safe.
        unsafe {
            cmd.pre_exec(move || {
                if libc_dup2(raw, crate::sandbox::CONSOLE_FD) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    let spawned = spawn_in(&mut cmd, spec.pid_namespace);
    // The child's ends (the input pipe, the console socket) close here.
    drop(cmd);
    let mut child = spawned.map_err(|e| format!("start {}: {e}", helper.display()))?;
    drop(err_w);
    let pid = child.id().unwrap_or(0);
    if let Some((ours, theirs)) = console {
        drop(theirs);
        let master = tokio::task::spawn_blocking(move || receive_fd(&ours)).await.ok().flatten();
        if let Some(master) = master {
            attach.pty = Some(Arc::new(Pty::new(master).map_err(|e| format!("pty: {e}"))?));
        }
    }
    // Read by the reactor (a blocking-pool thread per starting container otherwise).
    let mut message = String::new();
    if let Ok(mut reader) = tokio::net::unix::pipe::Receiver::from_owned_fd(err_r) {
        let _ = reader.read_to_string(&mut message).await;
    }
    if let Some(pty) = &attach.pty {
        outputs.push((Source::Pty(pty.clone()), "stdout"));
    }
    let attach = Arc::new(attach);
    let tasks = outputs
        .into_iter()
        .map(|(source, stream)| tokio::spawn(copy_to_log(source, stream, log.clone(), attach.clone())))
        .collect();
    if !message.is_empty() {
        let _ = child.wait().await;
        return Err(message);
    }
    Ok(Process { pid, attach, child, log_tasks: tasks })
}

/// How many chunks of output an attached client may fall behind before it misses some (the
/// container never waits for a slow client).
const ATTACH_BACKLOG: usize = 1024;

/// One chunk of a container's output: whether it is standard error, and the bytes.
pub type Chunk = (bool, bytes::Bytes);

#[derive(Default)]
struct Output {
    ended: bool,
    clients: Option<tokio::sync::broadcast::Sender<Chunk>>,
}

/// A running container's main process as `kubectl attach` reaches it: its output from now on,
/// its standard input (when the spec keeps one open), its terminal (when it has one).
pub struct Attachable {
    pub tty: bool,
    pub stdin_once: bool,
    has_stdin: bool,
    stdin: Mutex<Option<tokio::net::unix::pipe::Sender>>,
    pty: Option<Arc<Pty>>,
    /// The broadcast to attached clients: made when one attaches, dropped when none is left
    /// (a container nobody attaches to holds no backlog); none once the output ended.
    output: std::sync::Mutex<Output>,
}

impl Attachable {
    /// The output from now on; None when it already ended.
    pub fn subscribe(&self) -> Option<tokio::sync::broadcast::Receiver<Chunk>> {
        let mut output = self.output.lock().unwrap_or_else(|e| e.into_inner());
        if output.ended {
            return None;
        }
        Some(output.clients.get_or_insert_with(|| tokio::sync::broadcast::channel(ATTACH_BACKLOG).0).subscribe())
    }

    fn ended(&self) {
        let mut output = self.output.lock().unwrap_or_else(|e| e.into_inner());
        output.ended = true;
        output.clients = None;
    }

    /// Passes a chunk of output to the attached clients, if any.
    fn broadcast(&self, stderr: bool, data: &[u8]) {
        let mut output = self.output.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(clients) = &output.clients {
            if clients.receiver_count() == 0 {
                output.clients = None;
            } else {
                let _ = clients.send((stderr, bytes::Bytes::copy_from_slice(data)));
            }
        }
    }

    pub fn has_stdin(&self) -> bool {
        self.has_stdin
    }

    /// Writes to the process's standard input; false once it is closed (or there is none).
    pub async fn write_stdin(&self, data: &[u8]) -> bool {
        use tokio::io::AsyncWriteExt;
        if !self.has_stdin {
            return false;
        }
        if let Some(pty) = &self.pty {
            return pty.write_all(data).await.is_ok();
        }
        let mut stdin = self.stdin.lock().await;
        match stdin.as_mut() {
            Some(w) => w.write_all(data).await.is_ok(),
            None => false,
        }
    }

    /// Ends the process's standard input (`stdinOnce` after the first attach): with a
    /// terminal there is nothing to close apart from the terminal itself, which stays.
    pub async fn close_stdin(&self) {
        self.stdin.lock().await.take();
    }

    pub fn resize(&self, width: u16, height: u16) {
        if let Some(pty) = &self.pty {
            pty.resize(width, height);
        }
    }
}

/// What a process run in a container gave: its exit code and its output (stdout and
/// stderr together, at most [`EXEC_OUTPUT_MAX`] bytes kept).
#[derive(Debug, Clone)]
pub struct ExecOutput {
    pub exit_code: i32,
    pub output: String,
}

/// The output kept of an exec probe or hook (the kubelet keeps 10 KiB).
pub const EXEC_OUTPUT_MAX: usize = 10 * 1024;

/// Runs a program inside a running container (`helper __exec <spec>`) and waits for it, at
/// most `timeout` (then its process group is killed and the error says so). Err is a
/// start error: the program could not be executed.
pub async fn exec(
    helper: &Path,
    spec: &crate::sandbox::ExecSpec,
    spec_path: &Path,
    timeout: Duration,
) -> Result<ExecOutput, String> {
    write_spec(spec, spec_path)?;
    let (err_r, err_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| format!("pipe: {e}"))?;
    let (out_r, out_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| format!("pipe: {e}"))?;
    let out_w2 = out_w.try_clone().map_err(|e| format!("pipe: {e}"))?;
    let stdio = [std::process::Stdio::null(), out_w.into(), out_w2.into()];
    let mut cmd = init_command(helper, "__exec", spec_path, stdio, &err_w, false);
    cmd.kill_on_drop(true);
    let spawned = spawn_in(&mut cmd, spec.pid_namespace());
    drop(cmd);
    let mut child = match spawned {
        Ok(c) => c,
        Err(e) => {
            let _ = std::fs::remove_file(spec_path);
            return Err(format!("start {}: {e}", helper.display()));
        }
    };
    drop(err_w);
    let pid = child.id().unwrap_or(0) as i32;
    let run = async {
        let mut message = String::new();
        // Pipes read by the reactor, not the blocking pool: a descendant that keeps one
        // open after a timeout must not hold a pool thread.
        let Ok(mut reader) = tokio::net::unix::pipe::Receiver::from_owned_fd(err_r) else {
            return (String::from("error pipe"), Vec::new(), child.wait().await);
        };
        let _ = reader.read_to_string(&mut message).await;
        let mut out = Vec::new();
        let Ok(mut r) = tokio::net::unix::pipe::Receiver::from_owned_fd(out_r) else {
            return (String::from("output pipe"), Vec::new(), child.wait().await);
        };
        let mut buf = [0u8; 4096];
        loop {
            match r.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let room = EXEC_OUTPUT_MAX.saturating_sub(out.len());
                    out.extend_from_slice(&buf[..n.min(room)]);
                }
            }
        }
        let status = child.wait().await;
        (message, out, status)
    };
    match tokio::time::timeout(timeout, run).await {
        Ok((message, _, _)) if !message.is_empty() => Err(message),
        Ok((_, out, status)) => {
            use std::os::unix::process::ExitStatusExt;
            let exit_code = match status {
                Ok(s) => s.code().unwrap_or_else(|| 128 + s.signal().unwrap_or(0)),
                Err(_) => 255,
            };
            Ok(ExecOutput { exit_code, output: String::from_utf8_lossy(&out).to_string() })
        }
        Err(_) => {
            if pid > 0 {
                let _ = kill(Pid::from_raw(-pid), Signal::SIGKILL);
            }
            let _ = std::fs::remove_file(spec_path);
            Err(format!("command timed out after {}", go_seconds(timeout)))
        }
    }
}

/// A process started in a container for `kubectl exec`: its streams are pipes, or one
/// terminal when a TTY was asked for.
pub struct Interactive {
    pub child: tokio::process::Child,
    /// Its process group (the init made it a session leader).
    pub pgid: i32,
    pub stdin: Option<tokio::net::unix::pipe::Sender>,
    pub stdout: Option<tokio::net::unix::pipe::Receiver>,
    pub stderr: Option<tokio::net::unix::pipe::Receiver>,
    /// The terminal's controlling side (standard input, output and error together).
    pub pty: Option<Arc<Pty>>,
}

impl Interactive {
    /// Ends the process and whatever it started in its session.
    pub fn kill(&self) {
        if self.pgid > 0 {
            let _ = kill(Pid::from_raw(-self.pgid), Signal::SIGKILL);
        }
    }
}

/// Starts `spec` in its container (`helper __exec`) with the streams asked for (`tty`: one
/// terminal, of this width and height if known) and returns once the program runs; Err is
/// why it could not start.
pub async fn exec_interactive(
    helper: &Path,
    spec: &crate::sandbox::ExecSpec,
    spec_path: &Path,
    stdin: bool,
    stdout: bool,
    stderr: bool,
    tty: Option<Option<(u16, u16)>>,
) -> Result<Interactive, String> {
    use std::process::Stdio;
    write_spec(spec, spec_path)?;
    let pipe = || nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| format!("pipe: {e}"));
    let (err_r, err_w) = pipe()?;
    let mut ours = (None, None, None, None);
    let stdio: [Stdio; 3] = if let Some(size) = tty {
        // A terminal of the container's own /dev/pts, as its programs see their terminals.
        let ptmx = PathBuf::from(format!("/proc/{}/root/dev/pts/ptmx", spec.target_pid));
        let (master, slave) = crate::sandbox::open_terminal(&ptmx).map_err(|e| format!("open a terminal: {e}"))?;
        let pty = Pty::new(master).map_err(|e| format!("pty: {e}"))?;
        if let Some((w, h)) = size {
            pty.resize(w, h);
        }
        let dup = |fd: &std::os::fd::OwnedFd| fd.try_clone().map(Stdio::from).map_err(|e| format!("pty: {e}"));
        let io = [dup(&slave)?, dup(&slave)?, Stdio::from(slave)];
        ours.3 = Some(Arc::new(pty));
        io
    } else {
        let input = if stdin {
            let (r, w) = pipe()?;
            ours.0 = Some(tokio::net::unix::pipe::Sender::from_owned_fd(w).map_err(|e| format!("pipe: {e}"))?);
            Stdio::from(r)
        } else {
            Stdio::null()
        };
        let output = |want: bool, slot: &mut Option<tokio::net::unix::pipe::Receiver>| -> Result<Stdio, String> {
            if !want {
                return Ok(Stdio::null());
            }
            let (r, w) = pipe()?;
            *slot = Some(tokio::net::unix::pipe::Receiver::from_owned_fd(r).map_err(|e| format!("pipe: {e}"))?);
            Ok(Stdio::from(w))
        };
        let out = output(stdout, &mut ours.1)?;
        let err = output(stderr, &mut ours.2)?;
        [input, out, err]
    };
    let mut cmd = init_command(helper, "__exec", spec_path, stdio, &err_w, tty.is_some());
    cmd.kill_on_drop(true);
    let spawned = spawn_in(&mut cmd, spec.pid_namespace());
    // The child's ends (pipes, the terminal's other side) close here, so ours see EOF.
    drop(cmd);
    drop(err_w);
    let child = match spawned {
        Ok(c) => c,
        Err(e) => {
            let _ = std::fs::remove_file(spec_path);
            return Err(format!("start {}: {e}", helper.display()));
        }
    };
    let pgid = child.id().unwrap_or(0) as i32;
    let mut message = String::new();
    if let Ok(mut reader) = tokio::net::unix::pipe::Receiver::from_owned_fd(err_r) {
        let _ = reader.read_to_string(&mut message).await;
    }
    let (stdin, stdout, stderr, pty) = ours;
    let process = Interactive { child, pgid, stdin, stdout, stderr, pty };
    if !message.is_empty() {
        process.kill();
        return Err(message);
    }
    Ok(process)
}

/// The controlling side of a terminal, read and written through the reactor.
pub struct Pty {
    fd: tokio::io::unix::AsyncFd<std::os::fd::OwnedFd>,
}

impl Pty {
    fn new(fd: std::os::fd::OwnedFd) -> std::io::Result<Pty> {
        use nix::fcntl::{fcntl, FcntlArg, OFlag};
        let flags = fcntl(&fd, FcntlArg::F_GETFL).map_err(std::io::Error::from)?;
        fcntl(&fd, FcntlArg::F_SETFL(OFlag::from_bits_truncate(flags) | OFlag::O_NONBLOCK))
            .map_err(std::io::Error::from)?;
        // SAFETY: an OwnedFd is a valid descriptor that stays open, the same one, until the
        // AsyncFd (its owner) is dropped.
        let fd = unsafe { tokio::io::unix::AsyncFd::register(fd) }.map_err(std::io::Error::from)?;
        Ok(Pty { fd })
    }

    /// Reads output; 0 once every process holding the terminal is gone (EIO).
    pub async fn read(&self, buf: &mut [u8]) -> std::io::Result<usize> {
        loop {
            let mut guard = self.fd.readable().await?;
            match guard.try_io(|fd| nix::unistd::read(fd, buf).map_err(std::io::Error::from)) {
                Ok(Ok(n)) => return Ok(n),
                Ok(Err(e)) if e.raw_os_error() == Some(libc::EIO) => return Ok(0),
                Ok(Err(e)) => return Err(e),
                Err(_would_block) => continue,
            }
        }
    }

    pub async fn write_all(&self, mut data: &[u8]) -> std::io::Result<()> {
        while !data.is_empty() {
            let mut guard = self.fd.writable().await?;
            match guard.try_io(|fd| nix::unistd::write(fd, data).map_err(std::io::Error::from)) {
                Ok(Ok(n)) => data = &data[n..],
                Ok(Err(e)) => return Err(e),
                Err(_would_block) => continue,
            }
        }
        Ok(())
    }

    /// Sets the terminal's size (the foreground process gets SIGWINCH).
    pub fn resize(&self, width: u16, height: u16) {
        let size = libc::winsize { ws_row: height, ws_col: width, ws_xpixel: 0, ws_ypixel: 0 };
        // SAFETY: TIOCSWINSZ reads one winsize from the pointer, on a descriptor we own.
        unsafe { libc::ioctl(std::os::fd::AsRawFd::as_raw_fd(self.fd.get_ref()), libc::TIOCSWINSZ, &size) };
    }
}

fn go_seconds(d: Duration) -> String {
    format!("{}s", d.as_secs())
}

/// Writes an init's spec where only root reads it (it holds the container's environment).
fn write_spec(spec: &impl serde::Serialize, path: &Path) -> Result<(), String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let raw = serde_json::to_vec(spec).map_err(|e| e.to_string())?;
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .and_then(|mut f| f.write_all(&raw))
        .map_err(|e| format!("write {}: {e}", path.display()))
}

/// The cgroup (under the pod's) of the pause process.
pub const PAUSE: &str = "POD";

/// Starts the pod's pause process (`helper __pause`): pid 1 of a new process namespace that
/// the pod's containers then share, reaping what is orphaned in it, moved into the pod's
/// `cgroup` (before any container joins its namespace); it ends on SIGTERM or SIGINT (and
/// with the cgroup).
pub fn start_pause(helper: &Path, cgroup: &ContainerCgroup) -> Result<tokio::process::Child, String> {
    use std::process::Stdio;
    let mut cmd = tokio::process::Command::new(helper);
    cmd.arg("__pause").env_clear().current_dir("/");
    cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null()).kill_on_drop(true);
    // SAFETY: between fork and exec only setsid, async-signal-safe.
    unsafe {
        cmd.pre_exec(|| nix::unistd::setsid().map(|_| ()).map_err(std::io::Error::from));
    }
    let child = spawn_in(&mut cmd, crate::sandbox::PidNamespace::Own)
        .map_err(|e| format!("start {}: {e}", helper.display()))?;
    if let Some(pid) = child.id() {
        for procs in cgroup.procs_files() {
            std::fs::write(&procs, pid.to_string()).map_err(|e| format!("join {}: {e}", procs.display()))?;
        }
    }
    Ok(child)
}

/// Starts `cmd` in the process namespace `pid`: the agent's own, a new one (whose pid 1 the
/// child becomes) or a running process's. A process never changes its own pid namespace,
/// only its children's: the child is forked by a short-lived thread that entered it first
/// (no other thread of the agent is changed).
pub(crate) fn spawn_in(
    cmd: &mut tokio::process::Command,
    pid: crate::sandbox::PidNamespace,
) -> std::io::Result<tokio::process::Child> {
    use crate::sandbox::PidNamespace;
    use nix::sched::CloneFlags;
    let target = match pid {
        PidNamespace::Host => return cmd.spawn(),
        PidNamespace::Own => None,
        PidNamespace::Join(pid) => Some(std::fs::File::open(format!("/proc/{pid}/ns/pid"))?),
    };
    let runtime = tokio::runtime::Handle::current();
    std::thread::scope(|scope| {
        let spawner = scope.spawn(|| {
            let _entered = runtime.enter();
            match &target {
                Some(ns) => nix::sched::setns(ns, CloneFlags::CLONE_NEWPID),
                None => nix::sched::unshare(CloneFlags::CLONE_NEWPID),
            }
            .map_err(std::io::Error::from)?;
            cmd.spawn()
        });
        spawner.join().unwrap_or_else(|_| Err(std::io::Error::other("the spawning thread panicked")))
    })
}

/// The descriptor the container init sends over `socket` (None once it closed without one:
/// the init failed, and says why on its error pipe).
fn receive_fd(socket: &std::os::unix::net::UnixStream) -> Option<std::os::fd::OwnedFd> {
    use std::os::fd::{AsRawFd, FromRawFd};
    let _ = socket.set_read_timeout(Some(Duration::from_secs(30)));
    let mut buf = [0u8; 1];
    let mut iov = [std::io::IoSliceMut::new(&mut buf)];
    let mut space = nix::cmsg_space!([std::os::fd::RawFd; 1]);
    let msg = nix::sys::socket::recvmsg::<()>(
        socket.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        nix::sys::socket::MsgFlags::MSG_CMSG_CLOEXEC,
    )
    .ok()?;
    for c in msg.cmsgs().ok()? {
        if let nix::sys::socket::ControlMessageOwned::ScmRights(fds) = c {
            // SAFETY: a descriptor the kernel just gave this process.
            return fds.first().map(|fd| unsafe { std::os::fd::OwnedFd::from_raw_fd(*fd) });
        }
    }
    None
}

/// `helper MODE SPEC` (`__container` or `__exec`) with nothing of the agent's environment,
/// in a session of its own, its start errors on [`crate::sandbox::ERROR_FD`].
fn init_command(
    helper: &Path,
    mode: &str,
    spec_path: &Path,
    stdio: [std::process::Stdio; 3],
    err_w: &std::os::fd::OwnedFd,
    tty: bool,
) -> tokio::process::Command {
    let [stdin, stdout, stderr] = stdio;
    let mut cmd = tokio::process::Command::new(helper);
    cmd.arg(mode).arg(spec_path).env_clear().stdin(stdin).stdout(stdout).stderr(stderr);
    let raw_w = std::os::fd::AsRawFd::as_raw_fd(err_w);
    // SAFETY: between fork and exec only async-signal-safe calls (setsid, ioctl, dup2).
    unsafe {
        cmd.pre_exec(move || {
            nix::unistd::setsid().map_err(std::io::Error::from)?;
            // A terminal on standard input becomes the new session's controlling terminal.
            if tty && libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            if libc_dup2(raw_w, crate::sandbox::ERROR_FD) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd
}

fn libc_dup2(from: i32, to: i32) -> i32 {
    // SAFETY: dup2 on descriptors we own; async-signal-safe.
    unsafe { libc::dup2(from, to) }
}

/// A time as Go's RFC3339Nano writes it (what containerd puts in CRI logs): UTC, trailing
/// zeros of the fraction dropped, no fraction when it is zero.
pub fn rfc3339_nano(t: chrono::DateTime<chrono::Utc>) -> String {
    let fixed = t.format("%Y-%m-%dT%H:%M:%S%.9f").to_string();
    let trimmed = fixed.trim_end_matches('0').trim_end_matches('.');
    format!("{trimmed}Z")
}

/// A container's log file in the CRI format (`<RFC3339Nano> <stream> <P|F> <line>`), rotated
/// when it passes `max_bytes` (the previous file kept as `<name>.1`, as one rotation).
pub struct LogFile {
    path: PathBuf,
    file: std::fs::File,
    size: u64,
    max_bytes: u64,
}

/// The longest line written as one entry; longer lines are split into partial (`P`) entries.
const MAX_LINE: usize = 16 * 1024;

impl LogFile {
    pub fn open(path: &Path, max_bytes: u64) -> std::io::Result<LogFile> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let file = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
        let size = file.metadata()?.len();
        Ok(LogFile { path: path.to_path_buf(), file, size, max_bytes })
    }

    /// Writes one entry: `partial` when the line continues in the next entry.
    pub fn write(&mut self, stream: &str, content: &[u8], partial: bool) {
        use std::io::Write;
        let ts = rfc3339_nano(chrono::Utc::now());
        let mut line = Vec::with_capacity(content.len() + 48);
        line.extend_from_slice(ts.as_bytes());
        line.push(b' ');
        line.extend_from_slice(stream.as_bytes());
        line.extend_from_slice(if partial { b" P " } else { b" F " });
        line.extend_from_slice(content);
        line.push(b'\n');
        if self.size + line.len() as u64 > self.max_bytes && self.size > 0 {
            let rotated = self.path.with_extension("log.1");
            let _ = std::fs::rename(&self.path, &rotated);
            if let Ok(f) = std::fs::OpenOptions::new().create(true).append(true).open(&self.path) {
                self.file = f;
                self.size = 0;
            }
        }
        if self.file.write_all(&line).is_ok() {
            self.size += line.len() as u64;
        }
    }
}

/// Copies one output of a container to its log, and to attached clients as it comes.
async fn copy_to_log(mut from: Source, stream: &'static str, log: Arc<Mutex<LogFile>>, attach: Arc<Attachable>) {
    let mut pending: Vec<u8> = Vec::new();
    loop {
        let chunk = from.next().await;
        if chunk.is_empty() {
            break;
        }
        attach.broadcast(stream == "stderr", &chunk);
        pending.extend_from_slice(&chunk);
        drop(chunk);
        let mut log = log.lock().await;
        while let Some(pos) = pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = pending.drain(..=pos).collect();
            write_split(&mut log, stream, &line[..line.len() - 1], false);
        }
        while pending.len() >= MAX_LINE {
            let chunk: Vec<u8> = pending.drain(..MAX_LINE).collect();
            log.write(stream, &chunk, true);
        }
        if pending.is_empty() {
            // An idle container holds no buffer.
            pending = Vec::new();
        }
    }
    if !pending.is_empty() {
        // The last line had no newline: a partial entry, as containerd writes it.
        log.lock().await.write(stream, &pending, true);
    }
}

/// Where a container's output is read from: a pipe, or its terminal.
enum Source {
    Pipe(tokio::net::unix::pipe::Receiver),
    Pty(Arc<Pty>),
}

impl Source {
    /// Waits for output, then reads what is there into a buffer made for it (nothing is held
    /// while the container is quiet); empty at the end.
    async fn next(&mut self) -> Vec<u8> {
        const CHUNK: usize = 32 * 1024;
        loop {
            let read = match self {
                Source::Pipe(r) => {
                    if r.readable().await.is_err() {
                        return Vec::new();
                    }
                    let mut buf = vec![0u8; CHUNK];
                    r.try_read(&mut buf).map(|n| {
                        buf.truncate(n);
                        buf
                    })
                }
                Source::Pty(p) => {
                    let Ok(mut guard) = p.fd.readable().await else { return Vec::new() };
                    let mut buf = vec![0u8; CHUNK];
                    match guard.try_io(|fd| nix::unistd::read(fd, &mut buf).map_err(std::io::Error::from)) {
                        Ok(Ok(n)) => {
                            buf.truncate(n);
                            Ok(buf)
                        }
                        Ok(Err(e)) if e.raw_os_error() == Some(libc::EIO) => return Vec::new(),
                        Ok(Err(e)) => Err(e),
                        Err(_would_block) => continue,
                    }
                }
            };
            match read {
                Ok(buf) => return buf,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                Err(_) => return Vec::new(),
            }
        }
    }
}

fn write_split(log: &mut LogFile, stream: &str, line: &[u8], _partial: bool) {
    let mut rest = line;
    while rest.len() > MAX_LINE {
        log.write(stream, &rest[..MAX_LINE], true);
        rest = &rest[MAX_LINE..];
    }
    log.write(stream, rest, false);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_gos_rfc3339nano() {
        use chrono::TimeZone;
        let t = chrono::Utc.with_ymd_and_hms(2024, 5, 1, 9, 30, 12).unwrap();
        assert_eq!(rfc3339_nano(t), "2024-05-01T09:30:12Z");
        assert_eq!(rfc3339_nano(t + chrono::Duration::nanoseconds(123_400_000)), "2024-05-01T09:30:12.1234Z");
        assert_eq!(rfc3339_nano(t + chrono::Duration::nanoseconds(5)), "2024-05-01T09:30:12.000000005Z");
    }

    #[test]
    fn log_entries_are_cri_lines_and_rotate() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c/0.log");
        let mut log = LogFile::open(&path, 200).unwrap();
        log.write("stdout", b"hello", false);
        log.write("stderr", b"part", true);
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        let re = |l: &str, rest: &str| {
            let (ts, tail) = l.split_once(' ').unwrap();
            assert!(chrono::DateTime::parse_from_rfc3339(ts).is_ok(), "{ts}");
            assert_eq!(tail, rest);
        };
        re(lines[0], "stdout F hello");
        re(lines[1], "stderr P part");
        for _ in 0..5 {
            log.write("stdout", &[b'x'; 60], false);
        }
        assert!(path.with_extension("log.1").exists(), "rotated at 200 bytes");
        assert!(std::fs::metadata(&path).unwrap().len() <= 200);
    }
}
