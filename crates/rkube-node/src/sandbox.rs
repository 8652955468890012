//! The container's side of a process pod: what runs between the agent's spawn and the
//! container's own program, in the new process, as a container runtime's init does.
//!
//! The agent starts `rkube __container SPEC` (the same binary); [`container_init`] reads the
//! spec and, in order: joins the container's cgroups (so every descendant is tracked before
//! anything else runs) and the pod's network namespace, makes a mount (rslave) and UTS
//! namespace, sets the pod's hostname, builds the container's root (an overlay of the host's
//! `/` over the container's writable layer, or the host's `/` read-only), gives it its own
//! /proc, /dev, /run and /tmp, hides what a pod must never read, mounts the pod's volumes at
//! their mount paths (over all of it), pivots into the new root, drops to the pod's user and
//! group, changes to the working directory and executes the program with exactly the
//! environment the kubelet assembled.
//!
//! Invariant: the host's filesystem is never modified. A mount path whose directory does
//! not exist is created in the writable layer when the directory is on it, otherwise inside
//! a tmpfs laid over its parent (the parent's entries bound back into it), never on the host.
//!
//! Errors before the program starts are written to file descriptor 3 (close-on-exec), so
//! the agent reads either nothing (the program runs) or the reason it could not start.

use std::collections::HashSet;
use std::ffi::CString;
use std::io::Write;
use std::os::unix::fs::{symlink, FileTypeExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use serde::{Deserialize, Serialize};

/// One bind mount into the container.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct BindMount {
    /// Host path (a directory or a file).
    pub source: PathBuf,
    /// Absolute path inside the container.
    pub target: String,
    pub read_only: bool,
    /// A subPath: `source` is the volume, this the path in it (symbolic links already
    /// resolved), opened one component at a time without following a link, so a link swapped
    /// in since it was checked cannot lead the mount out of the volume.
    #[serde(default)]
    pub sub_path: Option<PathBuf>,
}

impl BindMount {
    pub fn new(source: PathBuf, target: impl Into<String>, read_only: bool) -> BindMount {
        BindMount { source, target: target.into(), read_only, sub_path: None }
    }
}

/// Everything the init needs, written by the agent as JSON.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SandboxSpec {
    /// The program and its arguments (argv[0] is looked up in the container's PATH).
    pub argv: Vec<String>,
    /// The environment, in order; nothing of the agent's own environment is inherited.
    pub env: Vec<(String, String)>,
    pub hostname: String,
    /// Where the container's root is assembled (an empty directory the agent made).
    pub root: PathBuf,
    /// The container's writable layer (an empty directory the agent made): what the program
    /// writes outside its volumes goes there, over the host's directories, never into them.
    /// None: the host's directories are read-only.
    #[serde(default)]
    pub layer: Option<PathBuf>,
    pub working_dir: Option<String>,
    /// Volumes, /etc/hosts and /etc/resolv.conf, in mount order.
    pub mounts: Vec<BindMount>,
    /// Paths covered by an empty read-only directory (or /dev/null for a file).
    pub hide: Vec<PathBuf>,
    /// Paths given a fresh writable tmpfs (the container's /tmp and HOME).
    pub tmpfs: Vec<String>,
    /// securityContext.readOnlyRootFilesystem: everything but the pod's volumes (and the
    /// kubelet's files, /dev, /proc and /sys) is read-only.
    #[serde(default)]
    pub read_only_root: bool,
    /// `cgroup.procs` files to join first.
    pub cgroup_procs: Vec<PathBuf>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub supplemental_groups: Vec<u32>,
    /// The pod's network namespace to join (None: the host's).
    #[serde(default)]
    pub netns: Option<PathBuf>,
    /// The capabilities the program keeps (numbers); None: all (a privileged container).
    #[serde(default)]
    pub capabilities: Option<Vec<u32>>,
    /// The process namespace the agent started the init in: anything but the host's gets
    /// a /proc of its own.
    #[serde(default)]
    pub pid_namespace: PidNamespace,
    /// A privileged container sees the host's devices and the whole of /proc; any other gets
    /// the runtime's few devices and the kernel's sensitive /proc and /sys files covered.
    #[serde(default)]
    pub privileged: bool,
    /// The program's standard streams are a terminal of the container's own (its
    /// `/dev/pts`), made by the init, whose controlling side goes to the agent over
    /// [`CONSOLE_FD`].
    #[serde(default)]
    pub terminal: bool,
}

/// The descriptor the init hands the controlling side of the container's terminal over
/// (a Unix socket; the descriptor travels as SCM_RIGHTS).
pub const CONSOLE_FD: i32 = 4;

/// A new terminal of the devpts instance whose multiplexer is `ptmx` (a container's
/// `/dev/pts/ptmx`, reached through its root): its controlling side and its terminal side.
pub fn open_terminal(ptmx: &Path) -> std::io::Result<(std::os::fd::OwnedFd, std::os::fd::OwnedFd)> {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    use std::os::unix::fs::OpenOptionsExt;
    // The path may be the container's to shape (the agent opens one through
    // /proc/PID/root): looked at without opening it first, and opened only if it is a
    // terminal multiplexer (5:2) on a devpts, never whatever device or FIFO was put there.
    let probe: OwnedFd = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH | libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(ptmx)?
        .into();
    let st = nix::sys::stat::fstat(&probe).map_err(std::io::Error::from)?;
    let fs = nix::sys::statfs::fstatfs(&probe).map_err(std::io::Error::from)?;
    let is_ptmx = st.st_mode & libc::S_IFMT == libc::S_IFCHR && st.st_rdev == nix::sys::stat::makedev(5, 2);
    if !is_ptmx || fs.filesystem_type() != nix::sys::statfs::DEVPTS_SUPER_MAGIC {
        return Err(std::io::Error::other(format!("{} is not a terminal multiplexer", ptmx.display())));
    }
    let master: OwnedFd = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOCTTY | libc::O_CLOEXEC | libc::O_NONBLOCK)
        .open(format!("/proc/self/fd/{}", probe.as_raw_fd()))?
        .into();
    let unlock: libc::c_int = 0;
    // SAFETY: ioctls on a descriptor we own, with the argument types the kernel expects.
    unsafe {
        if libc::ioctl(master.as_raw_fd(), libc::TIOCSPTLCK, &unlock) < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let peer = libc::ioctl(master.as_raw_fd(), libc::TIOCGPTPEER, libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC);
        if peer < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok((master, OwnedFd::from_raw_fd(peer)))
    }
}

/// Makes the container's terminal (its `/dev/pts` is mounted): the terminal side becomes
/// the program's standard streams and controlling terminal, the controlling side is sent to
/// the agent.
fn hand_over_terminal(ptmx: &Path) -> Result<(), String> {
    use std::os::fd::AsRawFd;
    let (master, slave) = open_terminal(ptmx).map_err(|e| format!("open a terminal: {e}"))?;
    for fd in 0..3 {
        // SAFETY: dup2 onto the standard descriptors.
        if unsafe { libc::dup2(slave.as_raw_fd(), fd) } < 0 {
            return Err(format!("terminal: {}", std::io::Error::last_os_error()));
        }
    }
    drop(slave);
    // SAFETY: TIOCSCTTY on standard input; this process leads its session.
    if unsafe { libc::ioctl(0, libc::TIOCSCTTY, 0) } < 0 {
        return Err(format!("controlling terminal: {}", std::io::Error::last_os_error()));
    }
    let fds = [master.as_raw_fd()];
    let cmsg = [nix::sys::socket::ControlMessage::ScmRights(&fds)];
    let iov = [std::io::IoSlice::new(b"t")];
    nix::sys::socket::sendmsg::<()>(CONSOLE_FD, &iov, &cmsg, nix::sys::socket::MsgFlags::empty(), None)
        .map_err(|e| format!("hand over the terminal: {e}"))?;
    // SAFETY: closing our copy of the socket.
    unsafe { libc::close(CONSOLE_FD) };
    Ok(())
}

/// Which process namespace a container's processes live in (chosen when the agent spawns
/// its init: a process cannot change its own).
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
pub enum PidNamespace {
    /// The node's (`hostPID: true`).
    #[default]
    Host,
    /// A new one whose first process (pid 1) is the container's program, as containerd
    /// gives every container by default.
    Own,
    /// The one of a running process (host pid): the pod's pause process with
    /// `shareProcessNamespace`, or an ephemeral container's target.
    Join(u32),
}

/// What containerd covers in a container that is not privileged: unreadable files and
/// directories (/dev/null or an empty read-only tmpfs laid over them)...
pub const MASKED_PATHS: &[&str] = &[
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
    "/proc/scsi",
];

/// ...and what it makes read-only.
pub const READONLY_PATHS: &[&str] = &["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"];

/// The devices of a container that is not privileged, as runc creates them in its /dev
/// (name, major, minor); their numbers are also all the device cgroup lets it open.
pub const DEVICES: &[(&str, u32, u32)] =
    &[("null", 1, 3), ("zero", 1, 5), ("full", 1, 7), ("random", 1, 8), ("urandom", 1, 9), ("tty", 5, 0)];

/// The descriptor the init reports start errors on.
pub const ERROR_FD: i32 = 3;

/// Runs the init: never returns on success (the program replaced this process).
pub fn container_init(spec_path: &Path) -> ! {
    init_main(spec_path, false, run, 128)
}

/// The pause process of a pod that shares one process namespace: as its pid 1, reaps every
/// orphan until SIGTERM or SIGINT ends it.
pub fn pause_init() -> ! {
    use nix::sys::signal::{SigSet, Signal};
    use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
    // Nothing of the host reachable through it (its /proc/1/root is what the pod's processes
    // would reach): an empty read-only root, no capabilities, the pause image's user.
    if let Err(e) = confine_pause() {
        eprintln!("pause: {e}");
        std::process::exit(1);
    }
    let mut set = SigSet::empty();
    for sig in [Signal::SIGCHLD, Signal::SIGTERM, Signal::SIGINT] {
        set.add(sig);
    }
    let _ = set.thread_block();
    loop {
        match set.wait() {
            Ok(Signal::SIGCHLD) => {
                while let Ok(status) = waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                    if status == WaitStatus::StillAlive {
                        break;
                    }
                }
            }
            Ok(_) => std::process::exit(0),
            Err(_) => {}
        }
    }
}

fn confine_pause() -> Result<(), String> {
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS).map_err(|e| format!("unshare: {e}"))?;
    mount(None::<&str>, "/", None::<&str>, MsFlags::MS_REC | MsFlags::MS_SLAVE, None::<&str>)
        .map_err(|e| format!("make / a slave: {e}"))?;
    let empty = Path::new("/tmp");
    fs_mount("tmpfs", "tmpfs", empty, MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV, "size=4k")
        .map_err(|e| format!("mount an empty root: {e}"))?;
    std::env::set_current_dir(empty).map_err(|e| format!("chdir: {e}"))?;
    nix::unistd::pivot_root(".", ".").map_err(|e| format!("pivot_root: {e}"))?;
    umount2(".", MntFlags::MNT_DETACH).map_err(|e| format!("detach the old root: {e}"))?;
    std::env::set_current_dir("/").map_err(|e| format!("chdir /: {e}"))?;
    let nobody = SandboxSpec {
        uid: Some(65535),
        gid: Some(65535),
        capabilities: Some(Vec::new()),
        working_dir: Some("/".into()),
        ..SandboxSpec::default()
    };
    become_user(&nobody)?;
    // SAFETY: prctl with integer arguments only.
    unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) };
    Ok(())
}

/// The shared body of both inits: keep the error channel out of the program, read the
/// spec (and remove it, for an exec), run, and report why the program did not start on
/// [`ERROR_FD`] before exiting with `code`.
fn init_main<S: serde::de::DeserializeOwned>(
    spec_path: &Path,
    remove_spec: bool,
    run: fn(&S) -> String,
    code: i32,
) -> ! {
    // SAFETY: fcntl on a descriptor number; harmless if it is not open.
    unsafe { libc::fcntl(ERROR_FD, libc::F_SETFD, libc::FD_CLOEXEC) };
    // SAFETY: as above.
    unsafe { libc::fcntl(CONSOLE_FD, libc::F_SETFD, libc::FD_CLOEXEC) };
    let read = std::fs::read(spec_path);
    if remove_spec {
        let _ = std::fs::remove_file(spec_path);
    }
    let err = match read
        .map_err(|e| format!("read {}: {e}", spec_path.display()))
        .and_then(|raw| serde_json::from_slice::<S>(&raw).map_err(|e| format!("bad spec: {e}")))
    {
        Ok(spec) => run(&spec),
        Err(e) => e,
    };
    // SAFETY: fd 3 is the pipe the agent gave us; writing to a closed fd only fails.
    let mut out = unsafe { <std::fs::File as std::os::fd::FromRawFd>::from_raw_fd(ERROR_FD) };
    let _ = out.write_all(err.as_bytes());
    std::process::exit(code)
}

/// A process to start inside a running container (exec probes, hooks, `kubectl exec`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ExecSpec {
    /// The container's main process, whose namespaces are joined.
    pub target_pid: u32,
    pub argv: Vec<String>,
    /// The container's environment (as a runtime's exec gives it).
    pub env: Vec<(String, String)>,
    pub working_dir: Option<String>,
    pub cgroup_procs: Vec<PathBuf>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub supplemental_groups: Vec<u32>,
    #[serde(default)]
    pub capabilities: Option<Vec<u32>>,
    /// The container has a process namespace of its own, which the process joins (the agent
    /// starts it there).
    #[serde(default)]
    pub own_pid_namespace: bool,
}

impl ExecSpec {
    /// Where the agent starts the exec's init.
    pub fn pid_namespace(&self) -> PidNamespace {
        if self.own_pid_namespace {
            PidNamespace::Join(self.target_pid)
        } else {
            PidNamespace::Host
        }
    }
}

/// The init of an exec: joins the container's cgroups and its network, UTS and mount
/// namespaces, becomes its user and executes the program. The spec file is removed once
/// read. Start errors go to file descriptor 3 as for [`container_init`].
pub fn exec_init(spec_path: &Path) -> ! {
    init_main(spec_path, true, exec_in, 126)
}

fn exec_in(spec: &ExecSpec) -> String {
    use nix::sched::{setns, CloneFlags};
    for procs in &spec.cgroup_procs {
        if let Err(e) = join_cgroup(procs) {
            return format!("join cgroup {}: {e}", procs.display());
        }
    }
    // Every namespace is opened before any is joined (the mount namespace changes /proc).
    let mut opened = Vec::new();
    for (ns, flag) in
        [("net", CloneFlags::CLONE_NEWNET), ("uts", CloneFlags::CLONE_NEWUTS), ("mnt", CloneFlags::CLONE_NEWNS)]
    {
        match std::fs::File::open(format!("/proc/{}/ns/{ns}", spec.target_pid)) {
            Ok(f) => opened.push((ns, f, flag)),
            Err(e) => return format!("container process {} is gone: {e}", spec.target_pid),
        }
    }
    // The pid must still be the container's (in its cgroup), not a reused number. (Asked of
    // the process's own cgroup file: `cgroup.procs` lists pids as this process's namespace
    // numbers them.)
    if let Some(dir) = spec.cgroup_procs.first().and_then(|p| p.parent()) {
        let cgroups = std::fs::read_to_string(format!("/proc/{}/cgroup", spec.target_pid)).unwrap_or_default();
        let member = cgroups.lines().filter_map(|l| l.splitn(3, ':').nth(2)).any(|path| {
            let path = path.trim_start_matches('/');
            !path.is_empty() && dir.ends_with(path)
        });
        if !member {
            return format!("container process {} is gone", spec.target_pid);
        }
    }
    for (ns, f, flag) in &opened {
        if let Err(e) = setns(f, *flag) {
            return format!("join the container's {ns} namespace: {e}");
        }
    }
    let as_container = SandboxSpec {
        argv: spec.argv.clone(),
        env: spec.env.clone(),
        working_dir: spec.working_dir.clone(),
        uid: spec.uid,
        gid: spec.gid,
        supplemental_groups: spec.supplemental_groups.clone(),
        capabilities: spec.capabilities.clone(),
        ..SandboxSpec::default()
    };
    if let Err(e) = become_user(&as_container) {
        return e;
    }
    exec(&as_container)
}

/// Moves this (single-threaded) process into the cgroup whose `cgroup.procs` is `procs`. On
/// a cgroup v1 hierarchy the one thread moves itself through `tasks` ("0"): the kernel then
/// skips the global threadgroup lock that a `cgroup.procs` write takes, whose RCU grace
/// period cost every container start and exec 10-20 ms. With more threads, or on v2, the
/// process moves through `cgroup.procs`.
fn join_cgroup(procs: &Path) -> std::io::Result<()> {
    let tasks = procs.with_file_name("tasks");
    let single = std::fs::read_dir("/proc/self/task").map(|d| d.count() == 1).unwrap_or(false);
    if single && tasks.exists() {
        return std::fs::write(tasks, "0");
    }
    std::fs::write(procs, std::process::id().to_string())
}

/// Sets everything up and executes the program; returns only the reason it could not.
fn run(spec: &SandboxSpec) -> String {
    for procs in &spec.cgroup_procs {
        if let Err(e) = join_cgroup(procs) {
            return format!("join cgroup {}: {e}", procs.display());
        }
    }
    if let Err(e) = enter(spec) {
        return e;
    }
    exec(spec)
}

fn enter(spec: &SandboxSpec) -> Result<(), String> {
    use nix::sched::{unshare, CloneFlags};
    if let Some(ns) = &spec.netns {
        let f = std::fs::File::open(ns).map_err(|e| format!("open network namespace {}: {e}", ns.display()))?;
        nix::sched::setns(&f, CloneFlags::CLONE_NEWNET).map_err(|e| format!("join network namespace: {e}"))?;
    }
    unshare(CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_NEWUTS).map_err(|e| format!("unshare: {e}"))?;
    nix::unistd::sethostname(&spec.hostname).map_err(|e| format!("sethostname: {e}"))?;
    // Slave, as runc's rslave: the host's unmounts still reach the container's copies (a
    // volume unmounted on the host is not kept busy), nothing of the container's reaches the host.
    mount(None::<&str>, "/", None::<&str>, MsFlags::MS_REC | MsFlags::MS_SLAVE, None::<&str>)
        .map_err(|e| format!("make / a slave: {e}"))?;
    let mut root = Root::build(&spec.root, spec.layer.as_deref(), spec.privileged, &spec.hide)?;
    // The runtime's own layer first (a private /tmp, the host's secrets covered, the
    // container's /proc and /dev), then the pod's volumes on top: an emptyDir at /tmp or
    // /dev/shm, or a volume under a covered path (a kubeconfig mounted at ~/.kube), is what
    // the container sees.
    for t in &spec.tmpfs {
        root.tmpfs(t)?;
    }
    for h in &spec.hide {
        root.hide(h)?;
    }
    if spec.pid_namespace != PidNamespace::Host {
        root.own_proc()?;
    }
    if !spec.privileged {
        root.devices()?;
        for m in MASKED_PATHS {
            root.hide(Path::new(m))?;
        }
        for r in READONLY_PATHS.iter().chain(&["/sys"]) {
            root.read_only_tree(Path::new(r))?;
        }
    }
    if spec.terminal {
        hand_over_terminal(&root.root.join("dev/pts/ptmx"))?;
    }
    for m in &spec.mounts {
        match &m.sub_path {
            Some(sub) => {
                let fd = open_beneath(&m.source, sub)?;
                let fd_path = PathBuf::from(format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&fd)));
                root.bind(&fd_path, &m.target, m.read_only)?;
            }
            None => root.bind(&m.source, &m.target, m.read_only)?,
        }
    }
    // A hostPath volume at or above a hidden path shows the real files again: covered too.
    for m in &spec.mounts {
        let source = m.sub_path.as_ref().map(|sub| m.source.join(sub)).unwrap_or_else(|| m.source.clone());
        for h in &spec.hide {
            if let Ok(rest) = h.strip_prefix(&source) {
                root.hide(&Path::new(&m.target).join(rest))?;
            }
        }
    }
    if spec.read_only_root {
        root.read_only()?;
    }
    root.pivot()?;
    become_user(spec)
}

/// `rel` under the directory `volume`, opened (as a path only) one component at a time,
/// none of them followed if it is a symbolic link: what it names is inside the volume.
fn open_beneath(volume: &Path, rel: &Path) -> Result<std::os::fd::OwnedFd, String> {
    use nix::fcntl::{open, openat, OFlag};
    use nix::sys::stat::{fstat, Mode, SFlag};
    let outside = || {
        format!(
            "subpath {:?} not within volume path {:?}",
            volume.join(rel).display().to_string(),
            volume.display().to_string()
        )
    };
    let mut fd = open(volume, OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())
        .map_err(|e| format!("open volume {}: {e}", volume.display()))?;
    for c in rel.components() {
        let Component::Normal(name) = c else { return Err(outside()) };
        fd = openat(&fd, name, OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC, Mode::empty())
            .map_err(|e| format!("open subpath {}: {e}", volume.join(rel).display()))?;
        let st = fstat(&fd).map_err(|e| format!("stat subpath: {e}"))?;
        if SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits()) == SFlag::S_IFLNK {
            return Err(outside());
        }
    }
    Ok(fd)
}

/// Drops to the pod's groups and user and changes to the working directory.
fn become_user(spec: &SandboxSpec) -> Result<(), String> {
    let dir = spec.working_dir.as_deref().filter(|d| !d.is_empty()).unwrap_or("/");
    // The bounding set goes first, while this process may still change it.
    if let Some(keep) = &spec.capabilities {
        drop_bounding(keep)?;
    }
    if let Some(gid) = spec.gid {
        let mut groups: Vec<nix::unistd::Gid> = vec![nix::unistd::Gid::from_raw(gid)];
        groups.extend(spec.supplemental_groups.iter().map(|g| nix::unistd::Gid::from_raw(*g)));
        nix::unistd::setgroups(&groups).map_err(|e| format!("setgroups: {e}"))?;
        nix::unistd::setgid(nix::unistd::Gid::from_raw(gid)).map_err(|e| format!("setgid {gid}: {e}"))?;
    } else if !spec.supplemental_groups.is_empty() {
        let groups: Vec<nix::unistd::Gid> =
            spec.supplemental_groups.iter().map(|g| nix::unistd::Gid::from_raw(*g)).collect();
        nix::unistd::setgroups(&groups).map_err(|e| format!("setgroups: {e}"))?;
    }
    if let Some(uid) = spec.uid {
        nix::unistd::setuid(nix::unistd::Uid::from_raw(uid)).map_err(|e| format!("setuid {uid}: {e}"))?;
    }
    // A working directory that does not exist is made, as runc does (in a tmpfs over its parent).
    std::env::set_current_dir(dir).map_err(|e| format!("chdir to cwd (\"{dir}\") set in config.json failed: {e}"))?;
    if let Some(keep) = &spec.capabilities {
        limit_capabilities(keep)?;
    }
    Ok(())
}

/// Linux capability names, by number (linux/capability.h).
pub const CAPABILITIES: &[&str] = &[
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
    "SETPCAP",
    "LINUX_IMMUTABLE",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_ADMIN",
    "NET_RAW",
    "IPC_LOCK",
    "IPC_OWNER",
    "SYS_MODULE",
    "SYS_RAWIO",
    "SYS_CHROOT",
    "SYS_PTRACE",
    "SYS_PACCT",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_NICE",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "MKNOD",
    "LEASE",
    "AUDIT_WRITE",
    "AUDIT_CONTROL",
    "SETFCAP",
    "MAC_OVERRIDE",
    "MAC_ADMIN",
    "SYSLOG",
    "WAKE_ALARM",
    "BLOCK_SUSPEND",
    "AUDIT_READ",
    "PERFMON",
    "BPF",
    "CHECKPOINT_RESTORE",
];

/// What containerd and Docker give a container by default.
pub const DEFAULT_CAPABILITIES: &[&str] = &[
    "CHOWN",
    "DAC_OVERRIDE",
    "FSETID",
    "FOWNER",
    "MKNOD",
    "NET_RAW",
    "SETGID",
    "SETUID",
    "SETFCAP",
    "SETPCAP",
    "NET_BIND_SERVICE",
    "SYS_CHROOT",
    "KILL",
    "AUDIT_WRITE",
];

/// A container's capabilities from its securityContext, as containerd computes them: the
/// runtime's defaults, `drop: [ALL]` starting from none, `add` (ALL: every one), then the
/// other drops. None for a privileged container (it keeps everything).
pub fn capability_set(privileged: bool, add: &[String], drop: &[String]) -> Option<Vec<u32>> {
    if privileged {
        return None;
    }
    let norm = |c: &String| c.trim_start_matches("CAP_").to_ascii_uppercase();
    let mut keep: std::collections::BTreeSet<String> = if drop.iter().any(|d| norm(d) == "ALL") {
        Default::default()
    } else {
        DEFAULT_CAPABILITIES.iter().map(|c| c.to_string()).collect()
    };
    if add.iter().any(|a| norm(a) == "ALL") {
        keep.extend(CAPABILITIES.iter().map(|c| c.to_string()));
    }
    keep.extend(add.iter().map(norm).filter(|a| a != "ALL"));
    for d in drop.iter().map(norm) {
        keep.remove(&d);
    }
    Some(keep.iter().filter_map(|n| CAPABILITIES.iter().position(|c| c == n)).map(|i| i as u32).collect())
}

/// Drops every capability not in `keep` from the bounding set (no later exec regains them)
/// and clears the ambient set.
fn drop_bounding(keep: &[u32]) -> Result<(), String> {
    let last: u32 = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(CAPABILITIES.len() as u32 - 1);
    for cap in (0..=last).filter(|c| !keep.contains(c)) {
        // SAFETY: prctl with integer arguments only.
        if unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) } != 0 {
            return Err(format!("drop capability {cap}: {}", std::io::Error::last_os_error()));
        }
    }
    // SAFETY: as above.
    unsafe { libc::prctl(libc::PR_CAP_AMBIENT, libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong, 0, 0, 0) };
    Ok(())
}

/// Narrows the effective, permitted and inheritable sets to `keep` (a root program keeps
/// only those; a non-root one has none after setuid anyway).
fn limit_capabilities(keep: &[u32]) -> Result<(), String> {
    #[repr(C)]
    struct Header {
        version: u32,
        pid: i32,
    }
    #[repr(C)]
    #[derive(Clone, Copy, Default)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    let mut mask = [0u32; 2];
    for c in keep.iter().filter(|c| **c < 64) {
        mask[(*c / 32) as usize] |= 1 << (c % 32);
    }
    let header = Header { version: 0x2008_0522, pid: 0 };
    let mut data = [Data::default(); 2];
    // SAFETY: capget/capset with a v3 header and two data words, as the ABI defines them.
    unsafe {
        if libc::syscall(libc::SYS_capget, &header as *const Header, data.as_mut_ptr()) != 0 {
            return Err(format!("capget: {}", std::io::Error::last_os_error()));
        }
        for (d, m) in data.iter_mut().zip(mask) {
            d.effective &= m;
            d.permitted &= m;
            d.inheritable &= m;
        }
        if libc::syscall(libc::SYS_capset, &header as *const Header, data.as_ptr()) != 0 {
            return Err(format!("capset: {}", std::io::Error::last_os_error()));
        }
    }
    Ok(())
}

fn exec(spec: &SandboxSpec) -> String {
    let Some(program) = spec.argv.first() else {
        return "no command specified".to_string();
    };
    let path_var = spec.env.iter().rev().find(|(k, _)| k == "PATH").map(|(_, v)| v.as_str()).unwrap_or("");
    let resolved = match resolve_program(program, path_var) {
        Some(p) => p,
        None => return format!("exec: \"{program}\": executable file not found in $PATH"),
    };
    let to_c = |s: &str| CString::new(s).map_err(|_| format!("{s:?} contains a NUL byte"));
    let mut argv = Vec::new();
    for a in &spec.argv {
        match to_c(a) {
            Ok(c) => argv.push(c),
            Err(e) => return e,
        }
    }
    let mut envp = Vec::new();
    for (k, v) in &spec.env {
        match to_c(&format!("{k}={v}")) {
            Ok(c) => envp.push(c),
            Err(e) => return e,
        }
    }
    let Ok(path) = CString::new(resolved.as_os_str().as_encoded_bytes()) else {
        return format!("exec: \"{program}\": bad path");
    };
    match nix::unistd::execve(&path, &argv, &envp) {
        Ok(never) => match never {},
        Err(e) => format!("exec: \"{program}\": {}", e.desc().to_lowercase()),
    }
}

/// `program` as an executable path: a name with a slash as is; otherwise the first
/// executable of that name in the container's PATH.
fn resolve_program(program: &str, path_var: &str) -> Option<PathBuf> {
    if program.contains('/') {
        return Some(PathBuf::from(program));
    }
    path_var
        .split(':')
        .filter(|d| !d.is_empty())
        .map(|d| Path::new(d).join(program))
        .find(|p| std::fs::metadata(p).map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0).unwrap_or(false))
}

/// The container's root while it is assembled.
struct Root {
    root: PathBuf,
    /// Directories inside the root that live in our tmpfs (safe to create entries in).
    ours: HashSet<PathBuf>,
    /// The device of the container's writable layer (the overlay at the root): a directory
    /// on it takes new entries.
    layer_dev: Option<u64>,
    shadows: usize,
    /// Where the pod's volumes (and the kubelet's files) were mounted: they stay writable.
    volumes: Vec<PathBuf>,
}

impl Root {
    /// The host's `/` at `root` as the container's image: an overlay whose upper half (in
    /// `layer`) takes what the container writes, with the host's other mounts bound
    /// read-only where they are (an overlay shows only the root filesystem's own files); or,
    /// without a layer or where no overlay can be made, the host's `/` bound read-only.
    /// `/proc` and `/sys` are the host's (for a privileged container `/dev` too); `/dev`,
    /// `/run` and `/tmp` are made the container's own afterwards.
    fn build(root: &Path, layer: Option<&Path>, privileged: bool, hide: &[PathBuf]) -> Result<Root, String> {
        let mut r =
            Root { root: root.to_path_buf(), ours: HashSet::new(), layer_dev: None, shadows: 0, volumes: Vec::new() };
        let host = mounts()?;
        let overlaid = layer.is_some_and(|layer| {
            let (upper, work) = (layer.join("upper"), layer.join("work"));
            let plain = |p: &Path| !p.to_string_lossy().contains([',', ':', '\\']);
            if !plain(&upper) || !plain(&work) {
                return false;
            }
            if std::fs::create_dir_all(&upper).is_err() || std::fs::create_dir_all(&work).is_err() {
                return false;
            }
            let opts = format!("lowerdir=/,upperdir={},workdir={}", upper.display(), work.display());
            mount(Some("overlay"), root, Some("overlay"), MsFlags::empty(), Some(opts.as_str())).is_ok()
        });
        // The trees the container gets otherwise.
        let own = |m: &Path| {
            let top = m.components().nth(1).map(|c| c.as_os_str().to_string_lossy().into_owned());
            matches!(top.as_deref(), Some("proc" | "sys" | "dev" | "run" | "tmp"))
        };
        if overlaid {
            use std::os::unix::fs::MetadataExt;
            r.layer_dev = std::fs::metadata(root).map(|m| m.dev()).ok();
            // Not what is hidden anyway (other pods' tmpfs volumes under the agent's root): a
            // bind would keep them busy.
            let hidden = |m: &Path| hide.iter().any(|h| m.starts_with(h));
            for (m, opts) in host.iter().filter(|(m, _)| m.as_path() != Path::new("/") && !own(m) && !hidden(m)) {
                let at = root.join(m.strip_prefix("/").unwrap_or(m));
                // A mount point the overlay does not show (under another mount) is left out.
                if std::fs::symlink_metadata(&at).is_err() {
                    continue;
                }
                // A bind keeps the flags of what it binds.
                if mount(Some(m), &at, None::<&str>, MsFlags::MS_BIND, None::<&str>).is_ok() {
                    remount_read_only(&at, opts)?;
                }
            }
        } else {
            bind_at(Path::new("/"), root)?;
            for (m, opts) in mounts()?.iter().filter(|(m, _)| m.starts_with(root)) {
                let rel = Path::new("/").join(m.strip_prefix(root).unwrap_or(m));
                if !own(&rel) {
                    remount_read_only(m, opts)?;
                }
            }
        }
        // (The read-only fallback bound them with the rest of `/`.)
        if overlaid {
            let from_host: &[&str] = if privileged { &["proc", "sys", "dev"] } else { &["proc", "sys"] };
            for name in from_host {
                bind_at(&Path::new("/").join(name), &root.join(name))?;
            }
        }
        let run = root.join("run");
        if run.is_dir() {
            fs_mount("tmpfs", "tmpfs", &run, MsFlags::MS_NOSUID | MsFlags::MS_NODEV, "mode=0755")
                .map_err(|e| format!("mount tmpfs at /run: {e}"))?;
            r.ours.insert(run);
        }
        Ok(r)
    }

    /// A /proc of the container's own process namespace instead of the host's.
    fn own_proc(&mut self) -> Result<(), String> {
        let at = self.root.join("proc");
        umount2(&at, MntFlags::MNT_DETACH).map_err(|e| format!("unmount the host's /proc: {e}"))?;
        mount(
            Some("proc"),
            &at,
            Some("proc"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
            None::<&str>,
        )
        .map_err(|e| format!("mount proc: {e}"))
    }

    /// The /dev runc gives a container that is not privileged: a tmpfs with the few devices
    /// of [`DEVICES`], a terminal instance of its own (`/dev/pts`, `/dev/ptmx`), `/dev/shm`
    /// and the standard links. The host's disks and other devices are not there (and the
    /// device cgroup refuses to open any other device made here).
    fn devices(&mut self) -> Result<(), String> {
        use nix::sys::stat::{makedev, mknod, Mode, SFlag};
        let dev = self.root.join("dev");
        fs_mount("tmpfs", "tmpfs", &dev, MsFlags::MS_NOSUID | MsFlags::MS_STRICTATIME, "mode=755,size=65536k")
            .map_err(|e| format!("mount tmpfs at /dev: {e}"))?;
        for (name, major, minor) in DEVICES {
            let at = dev.join(name);
            let made = mknod(
                &at,
                SFlag::S_IFCHR,
                Mode::from_bits_truncate(0o666),
                makedev(u64::from(*major), u64::from(*minor)),
            );
            if made.is_err() {
                // Where nodes cannot be made, the host's own, bound.
                std::fs::File::create(&at).map_err(|e| format!("create /dev/{name}: {e}"))?;
                bind_at(&Path::new("/dev").join(name), &at)?;
            }
            let _ = std::fs::set_permissions(&at, std::fs::Permissions::from_mode(0o666));
        }
        // A terminal instance of its own and a /dev/shm.
        let filesystems = [
            (
                "pts",
                "devpts",
                "devpts",
                MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
                "newinstance,ptmxmode=0666,mode=0620,gid=5",
            ),
            (
                "shm",
                "shm",
                "tmpfs",
                MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
                "mode=1777,size=65536k",
            ),
        ];
        for (name, source, fstype, flags, data) in filesystems {
            let at = dev.join(name);
            std::fs::create_dir(&at).map_err(|e| format!("mkdir /dev/{name}: {e}"))?;
            fs_mount(source, fstype, &at, flags, data).map_err(|e| format!("mount /dev/{name}: {e}"))?;
        }
        let shm = dev.join("shm");
        for (link, target) in [
            ("ptmx", "pts/ptmx"),
            ("fd", "/proc/self/fd"),
            ("stdin", "/proc/self/fd/0"),
            ("stdout", "/proc/self/fd/1"),
            ("stderr", "/proc/self/fd/2"),
            ("core", "/proc/kcore"),
        ] {
            symlink(target, dev.join(link)).map_err(|e| format!("link /dev/{link}: {e}"))?;
        }
        self.ours.insert(dev.clone());
        self.ours.insert(shm);
        Ok(())
    }

    /// Makes the container path `inside` and every mount under it read-only (absent: nothing).
    fn read_only_tree(&self, inside: &Path) -> Result<(), String> {
        let at = self.root.join(inside.strip_prefix("/").unwrap_or(inside));
        let Ok(meta) = std::fs::symlink_metadata(&at) else { return Ok(()) };
        if meta.file_type().is_symlink() {
            return Ok(());
        }
        let mut all = mounts()?;
        if !all.iter().any(|(m, _)| m == &at) {
            bind_at(&at, &at)?;
            all = mounts()?;
        }
        for (m, opts) in all.iter().filter(|(m, _)| m.starts_with(&at)) {
            remount_read_only(m, opts)?;
        }
        Ok(())
    }

    /// Resolves `inside` (an absolute container path) to a path under the root, following
    /// symbolic links as the container will see them and creating missing directories
    /// (the last component as a directory, or as a file when `file`).
    fn ensure(&mut self, inside: &str, file: bool) -> Result<PathBuf, String> {
        let mut pending: Vec<String> = components(inside);
        pending.reverse();
        let mut cur = self.root.clone();
        let mut hops = 0;
        while let Some(c) = pending.pop() {
            if c == ".." {
                if cur != self.root {
                    cur.pop();
                }
                continue;
            }
            let next = cur.join(&c);
            match std::fs::symlink_metadata(&next) {
                Ok(m) if m.file_type().is_symlink() => {
                    hops += 1;
                    if hops > 40 {
                        return Err(format!("{inside}: too many levels of symbolic links"));
                    }
                    let target = std::fs::read_link(&next).map_err(|e| format!("{}: {e}", next.display()))?;
                    let mut more = components(&target.to_string_lossy());
                    more.reverse();
                    pending.extend(more);
                    if target.is_absolute() {
                        cur = self.root.clone();
                    }
                }
                Ok(_) => cur = next,
                Err(_) => {
                    self.make_ours(&cur)?;
                    if pending.is_empty() && file {
                        std::fs::File::create(&next).map_err(|e| format!("create {}: {e}", next.display()))?;
                    } else {
                        std::fs::create_dir(&next).map_err(|e| format!("mkdir {}: {e}", next.display()))?;
                        self.ours.insert(next.clone());
                    }
                    cur = next;
                }
            }
        }
        Ok(cur)
    }

    /// Makes `dir` writable without touching the host: a directory of the host is covered by
    /// a tmpfs into which its entries are bound back.
    fn make_ours(&mut self, dir: &Path) -> Result<(), String> {
        if self.ours.contains(dir) {
            return Ok(());
        }
        // On the writable layer itself (the overlay, not a mount over it: a hidden path, a host
        // mount, /dev, /proc, /sys) a new entry goes to the layer.
        use std::os::unix::fs::MetadataExt;
        if self.layer_dev.is_some() && std::fs::metadata(dir).map(|m| m.dev()).ok() == self.layer_dev {
            return Ok(());
        }
        self.shadows += 1;
        let staging = self.root.join(format!(".rkube-shadow-{}", self.shadows));
        std::fs::create_dir(&staging).map_err(|e| format!("mkdir {}: {e}", staging.display()))?;
        fs_mount("tmpfs", "tmpfs", &staging, MsFlags::empty(), "mode=0755").map_err(|e| format!("mount tmpfs: {e}"))?;
        if let Ok(m) = std::fs::metadata(dir) {
            let _ =
                std::fs::set_permissions(&staging, std::fs::Permissions::from_mode(m.permissions().mode() & 0o7777));
        }
        replicate(dir, &staging)?;
        mount(Some(&staging), dir, None::<&str>, MsFlags::MS_MOVE, None::<&str>)
            .map_err(|e| format!("move tmpfs onto {}: {e}", dir.display()))?;
        let _ = std::fs::remove_dir(&staging);
        self.ours.insert(dir.to_path_buf());
        Ok(())
    }

    fn bind(&mut self, source: &Path, target: &str, read_only: bool) -> Result<(), String> {
        let is_dir = std::fs::metadata(source).map_err(|e| format!("{}: {e}", source.display()))?.is_dir();
        let at = self.ensure(target, !is_dir)?;
        bind_at(source, &at)?;
        self.volumes.push(at.clone());
        if read_only {
            mount(
                None::<&str>,
                &at,
                None::<&str>,
                MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | MsFlags::MS_REC,
                None::<&str>,
            )
            .map_err(|e| format!("remount {target} read-only: {e}"))?;
        }
        Ok(())
    }

    /// A read-only root filesystem, as runc makes it: every mount under the root goes
    /// read-only (its other flags kept), but the volumes and the kubelet's files (their own
    /// mounts, and what is mounted under them) and the `/dev`, `/proc` and `/sys` trees.
    fn read_only(&self) -> Result<(), String> {
        for (point, opts) in mounts()? {
            let Ok(rel) = point.strip_prefix(&self.root) else { continue };
            let top = rel.components().next().map(|c| c.as_os_str().to_string_lossy().to_string());
            if matches!(top.as_deref(), Some("dev" | "proc" | "sys"))
                || self.volumes.iter().any(|v| point.starts_with(v))
            {
                continue;
            }
            remount_read_only(&point, &opts)?;
        }
        Ok(())
    }

    fn tmpfs(&mut self, target: &str) -> Result<(), String> {
        let at = self.ensure(target, false)?;
        mount(Some("tmpfs"), &at, Some("tmpfs"), MsFlags::MS_NOSUID | MsFlags::MS_NODEV, Some("mode=1777"))
            .map_err(|e| format!("mount tmpfs at {target}: {e}"))
    }

    /// Covers a host path: nothing of it is readable from the container.
    fn hide(&mut self, host: &Path) -> Result<(), String> {
        let inside = self.root.join(host.strip_prefix("/").unwrap_or(host));
        let Ok(m) = std::fs::metadata(&inside) else { return Ok(()) };
        if m.is_dir() {
            mount(Some("tmpfs"), &inside, Some("tmpfs"), MsFlags::MS_RDONLY, Some("mode=0755,size=4k"))
                .map_err(|e| format!("hide {}: {e}", host.display()))
        } else {
            bind_at(Path::new("/dev/null"), &inside)
        }
    }

    fn pivot(&self) -> Result<(), String> {
        std::env::set_current_dir(&self.root).map_err(|e| format!("chdir {}: {e}", self.root.display()))?;
        nix::unistd::pivot_root(".", ".").map_err(|e| format!("pivot_root: {e}"))?;
        umount2(".", MntFlags::MNT_DETACH).map_err(|e| format!("detach the old root: {e}"))?;
        std::env::set_current_dir("/").map_err(|e| format!("chdir /: {e}"))
    }
}

/// Every mount of this mount namespace and its options, as /proc/self/mountinfo lists them
/// (a mount before those under it).
fn mounts() -> Result<Vec<(PathBuf, String)>, String> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").map_err(|e| format!("mountinfo: {e}"))?;
    Ok(info
        .lines()
        .filter_map(|line| {
            let mut fields = line.split(' ').skip(4);
            let point = fields.next()?;
            Some((unescape_mount_path(point), fields.next()?.to_string()))
        })
        .collect())
}

/// Mounts a filesystem of type `fstype` (from `source`) at `at`.
fn fs_mount(source: &str, fstype: &str, at: &Path, flags: MsFlags, data: &str) -> nix::Result<()> {
    mount(Some(source), at, Some(fstype), flags, Some(data))
}

/// Remounts the mount at `point` read-only, as runc does, keeping its other flags (`opts`:
/// its mountinfo options). A mount that cannot be made read-only fails the start (one that
/// vanished meanwhile excepted).
fn remount_read_only(point: &Path, opts: &str) -> Result<(), String> {
    let mut flags = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY;
    for (name, flag) in [
        ("nosuid", MsFlags::MS_NOSUID),
        ("nodev", MsFlags::MS_NODEV),
        ("noexec", MsFlags::MS_NOEXEC),
        ("noatime", MsFlags::MS_NOATIME),
        ("nodiratime", MsFlags::MS_NODIRATIME),
        ("relatime", MsFlags::MS_RELATIME),
        ("strictatime", MsFlags::MS_STRICTATIME),
    ] {
        if opts.split(',').any(|o| o == name) {
            flags |= flag;
        }
    }
    match mount(None::<&str>, point, None::<&str>, flags, None::<&str>) {
        Ok(()) | Err(nix::errno::Errno::ENOENT) => Ok(()),
        Err(e) => Err(format!("remount {} read-only: {e}", point.display())),
    }
}

fn components(p: &str) -> Vec<String> {
    Path::new(p)
        .components()
        .filter_map(|c| match c {
            Component::Normal(s) => Some(s.to_string_lossy().into_owned()),
            Component::ParentDir => Some("..".into()),
            _ => None,
        })
        .collect()
}

fn bind_at(source: &Path, at: &Path) -> Result<(), String> {
    mount(Some(source), at, None::<&str>, MsFlags::MS_BIND | MsFlags::MS_REC, None::<&str>)
        .map_err(|e| format!("bind {} at {}: {e}", source.display(), at.display()))
}

/// A mount point as /proc/self/mountinfo writes it (octal escapes for space, tab, newline and
/// backslash) turned back into a path.
pub(crate) fn unescape_mount_path(s: &str) -> PathBuf {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let code = (b[i] == b'\\' && i + 3 < b.len())
            .then(|| &b[i + 1..=i + 3])
            .filter(|d| d.iter().all(|c| (b'0'..=b'7').contains(c)))
            .map(|d| d.iter().fold(0u16, |n, c| n * 8 + u16::from(c - b'0')))
            .and_then(|n| u8::try_from(n).ok());
        if let Some(c) = code {
            out.push(c);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    use std::os::unix::ffi::OsStringExt;
    PathBuf::from(std::ffi::OsString::from_vec(out))
}

/// Fills the (tmpfs) directory `into` with the entries of `from`: directories and files
/// bound (recursively, so their submounts come along), symbolic links copied.
fn replicate(from: &Path, into: &Path) -> Result<(), String> {
    let entries = std::fs::read_dir(from).map_err(|e| format!("read {}: {e}", from.display()))?;
    for entry in entries.flatten() {
        let src = entry.path();
        let dst = into.join(entry.file_name());
        let Ok(ft) = entry.file_type() else { continue };
        if ft.is_symlink() {
            if let Ok(target) = std::fs::read_link(&src) {
                let _ = symlink(target, &dst);
            }
            continue;
        }
        if ft.is_dir() {
            if std::fs::create_dir(&dst).is_err() {
                continue;
            }
        } else if ft.is_file() || ft.is_socket() || ft.is_fifo() || ft.is_char_device() || ft.is_block_device() {
            if std::fs::File::create(&dst).is_err() {
                continue;
            }
        } else {
            continue;
        }
        // A directory we cannot bind (a vanished entry) is left empty, not fatal.
        let _ = bind_at(&src, &dst);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn programs_resolve_through_the_containers_path() {
        assert_eq!(resolve_program("/bin/sh", ""), Some(PathBuf::from("/bin/sh")));
        assert_eq!(resolve_program("sh", "/nonexistent:/bin"), Some(PathBuf::from("/bin/sh")));
        assert_eq!(resolve_program("sh", ""), None);
        assert_eq!(resolve_program("no-such-program-rkube", "/bin:/usr/bin"), None);
    }

    #[test]
    fn a_sub_path_is_opened_without_following_links() {
        let volume = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(volume.path().join("a/b")).unwrap();
        std::os::unix::fs::symlink("/", volume.path().join("out")).unwrap();
        std::os::unix::fs::symlink("a", volume.path().join("in")).unwrap();
        let fd = open_beneath(volume.path(), Path::new("a/b")).unwrap();
        let opened = std::fs::read_link(format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&fd))).unwrap();
        assert_eq!(opened, volume.path().join("a/b"));
        // A link, even one that stays inside, is not followed (the agent resolved links before).
        for rel in ["out", "out/etc", "in/b", "a/../a"] {
            let err = open_beneath(volume.path(), Path::new(rel)).unwrap_err();
            assert!(err.contains("not within volume path"), "{rel}: {err}");
        }
    }

    #[test]
    fn components_keep_parent_references() {
        assert_eq!(components("/var/run/../x"), vec!["var", "run", "..", "x"]);
        assert_eq!(components("/"), Vec::<String>::new());
    }
}
