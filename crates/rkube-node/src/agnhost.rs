//! The subcommands of upstream's test image `agnhost` that the conformance suite runs most
//! (`rkube __agnhost SUBCOMMAND [flags]`, what the image map runs for that image), written
//! from their documented behaviour and output, so upstream's own tests can run on process
//! pods: `pause`, `etc-hosts` and `mounttest`. Any other subcommand ends as agnhost ends on
//! an unknown one.
//!
//! This runs inside the container, as its program: plain std, no runtime, no logging.

use std::ffi::OsString;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::time::{Duration, Instant};

/// Runs the subcommand `args[0]` and exits with its status.
pub fn main(args: &[OsString]) -> ! {
    let args: Vec<String> = args.iter().map(|a| a.to_string_lossy().into_owned()).collect();
    let code = match args.first().map(String::as_str) {
        Some("pause") => pause(),
        Some("etc-hosts") => {
            println!("{}", std::fs::read_to_string("/etc/hosts").unwrap_or_default());
            0
        }
        Some("mounttest") => mounttest(&args[1..]),
        Some(other) => {
            eprintln!("Error: unknown command {other:?} for \"agnhost\"\nRun 'agnhost --help' for usage.");
            1
        }
        None => {
            eprintln!("agnhost: a subcommand is needed");
            1
        }
    };
    std::process::exit(code)
}

/// Waits for SIGINT (exit 1) or SIGTERM (exit 2), having said "Paused".
fn pause() -> i32 {
    use nix::sys::signal::{SigSet, Signal};
    println!("Paused");
    let mut set = SigSet::empty();
    set.add(Signal::SIGINT);
    set.add(Signal::SIGTERM);
    let _ = set.thread_block();
    loop {
        match set.wait() {
            Ok(Signal::SIGINT) => return 1,
            Ok(Signal::SIGTERM) => return 2,
            _ => {}
        }
    }
}

/// Flags as Go's pflag reads them: `--name=value`, `--name value`, a bare `--name` for a
/// boolean.
fn flags(args: &[String], booleans: &[&str]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let name = a.trim_start_matches('-');
        match name.split_once('=') {
            Some((k, v)) => out.push((k.to_string(), v.to_string())),
            None if booleans.contains(&name) => out.push((name.to_string(), "true".into())),
            None => out.push((name.to_string(), it.next().cloned().unwrap_or_default())),
        }
    }
    out
}

/// The kernel's error as Go's `syscall.Errno` words it (lower case, no number).
fn errno_text(e: &std::io::Error) -> String {
    let text = e.raw_os_error().map(|n| nix::errno::Errno::from_raw(n).desc().to_string()).unwrap_or(e.to_string());
    let mut chars = text.chars();
    chars.next().map(|c| c.to_lowercase().collect::<String>() + chars.as_str()).unwrap_or_default()
}

/// An `os` function's error as Go's `PathError` prints it.
fn go_error(op: &str, path: &str, e: &std::io::Error) -> String {
    format!("{op} {path}: {}", errno_text(e))
}

/// A file mode as Go's `fs.FileMode` prints it (`drwxrwxrwx`, `dgtrwxrwxrwx`, `-rw-r--r--`).
fn go_mode(mode: u32, perm_only: bool) -> String {
    let kind = mode & libc::S_IFMT;
    let mut s = String::new();
    if !perm_only {
        for (on, c) in [
            (kind == libc::S_IFDIR, 'd'),
            (kind == libc::S_IFLNK, 'L'),
            (kind == libc::S_IFBLK || kind == libc::S_IFCHR, 'D'),
            (kind == libc::S_IFIFO, 'p'),
            (kind == libc::S_IFSOCK, 'S'),
            (mode & libc::S_ISUID != 0, 'u'),
            (mode & libc::S_ISGID != 0, 'g'),
            (kind == libc::S_IFCHR, 'c'),
            (mode & libc::S_ISVTX != 0, 't'),
        ] {
            if on {
                s.push(c);
            }
        }
    }
    if s.is_empty() {
        s.push('-');
    }
    for (i, c) in "rwxrwxrwx".chars().enumerate() {
        s.push(if mode & (1 << (8 - i)) != 0 { c } else { '-' });
    }
    s
}

const INITIAL_CONTENT: &str = "mount-tester new file\n";

/// Checks a volume as agnhost's mounttest does, in its order: the filesystem type, new files
/// written with a mode and read back, then mode, permissions, owner and content of the
/// paths given, and a content awaited in a loop; exit 1 if anything failed.
fn mounttest(args: &[String]) -> i32 {
    let flags = flags(args, &["break_on_expected_content"]);
    let get = |name: &str| flags.iter().rev().find(|(k, _)| k == name).map(|(_, v)| v.clone()).unwrap_or_default();
    // SAFETY: umask only sets this process's file creation mask.
    unsafe { libc::umask(0) };
    let mut failed = false;
    let mut check = |ok: bool| failed |= !ok;

    let fs_type = get("fs_type");
    if !fs_type.is_empty() {
        match nix::sys::statfs::statfs(fs_type.as_str()) {
            Ok(st) => {
                let kind = st.filesystem_type();
                let name = if kind == nix::sys::statfs::TMPFS_MAGIC { "tmpfs".to_string() } else { kind.0.to_string() };
                println!("mount type of {fs_type:?}: {name}");
            }
            Err(e) => {
                println!("error from statfs({fs_type:?}): {}", errno_text(&std::io::Error::from(e)));
                check(false);
            }
        }
    }
    for (flag, mode) in
        [("new_file_0644", 0o644), ("new_file_0666", 0o666), ("new_file_0660", 0o660), ("new_file_0777", 0o777)]
    {
        let path = get(flag);
        if path.is_empty() {
            continue;
        }
        let written = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&path)
            .and_then(|mut f| std::io::Write::write_all(&mut f, INITIAL_CONTENT.as_bytes()));
        match written {
            Ok(()) => check(read_content(&path)),
            Err(e) => {
                println!("error writing new file {path:?}: {}", go_error("open", &path, &e));
                check(false);
            }
        }
    }
    for (flag, perm_only) in [("file_mode", false), ("file_perm", true)] {
        let path = get(flag);
        if path.is_empty() {
            continue;
        }
        match std::fs::metadata(&path) {
            Ok(m) if perm_only => println!("perms of file {path:?}: {}", go_mode(m.mode(), true)),
            Ok(m) => println!("mode of file {path:?}: {}", go_mode(m.mode(), false)),
            Err(e) => {
                println!("error from Stat({path:?}): {}", go_error("stat", &path, &e));
                check(false);
            }
        }
    }
    let owner = get("file_owner");
    if !owner.is_empty() {
        match std::fs::metadata(&owner) {
            Ok(m) => {
                println!("owner UID of {owner:?}: {}", m.uid());
                println!("owner GID of {owner:?}: {}", m.gid());
            }
            Err(e) => {
                println!("error from stat({owner:?}): {}", errno_text(&e));
                check(false);
            }
        }
    }
    let content = get("file_content");
    if !content.is_empty() {
        check(read_content(&content));
    }
    let in_loop = get("file_content_in_loop");
    if !in_loop.is_empty() {
        let retry = get("retry_time").parse::<u64>().unwrap_or(180);
        let break_on_expected = get("break_on_expected_content") != "false";
        check(content_in_loop(&in_loop, Duration::from_secs(retry), break_on_expected));
    }
    i32::from(failed)
}

fn read_content(path: &str) -> bool {
    match std::fs::read(path) {
        Ok(bytes) => {
            println!("content of file {path:?}: {}", String::from_utf8_lossy(&bytes));
            true
        }
        Err(e) => {
            println!("error reading file content for {path:?}: {}", go_error("open", path, &e));
            false
        }
    }
}

/// Reads the file every 2 s for `retry` (printing it each time), with `break_on_expected`
/// until it holds mounttest's initial content; the last read decides.
fn content_in_loop(path: &str, retry: Duration, break_on_expected: bool) -> bool {
    let start = Instant::now();
    let mut ok = false;
    while start.elapsed() < retry {
        match std::fs::read(path) {
            Err(e) => {
                println!("Error reading file {path}: {}, retrying", go_error("open", path, &e));
                ok = false;
            }
            Ok(bytes) => {
                ok = true;
                let text = String::from_utf8_lossy(&bytes);
                println!("content of file {path:?}: {text}");
                // Without `break_on_expected` it reads on until the time is up.
                if break_on_expected {
                    if text == INITIAL_CONTENT {
                        break;
                    }
                    print!("Unexpected content. Expected: {INITIAL_CONTENT}. Retrying");
                }
            }
        }
        std::thread::sleep(Duration::from_secs(2));
    }
    ok
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_print_as_gos_file_mode() {
        assert_eq!(go_mode(libc::S_IFDIR | 0o777, false), "drwxrwxrwx");
        assert_eq!(go_mode(libc::S_IFDIR | libc::S_ISGID | libc::S_ISVTX | 0o777, false), "dgtrwxrwxrwx");
        assert_eq!(go_mode(libc::S_IFREG | 0o644, false), "-rw-r--r--");
        assert_eq!(go_mode(libc::S_IFDIR | 0o777, true), "-rwxrwxrwx");
        assert_eq!(go_mode(libc::S_IFCHR | 0o666, false), "Dcrw-rw-rw-");
    }

    #[test]
    fn flags_read_as_pflag_reads_them() {
        let args: Vec<String> = ["--fs_type=/v", "--file_perm", "/v/f", "--break_on_expected_content"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let f = flags(&args, &["break_on_expected_content"]);
        assert_eq!(
            f,
            [("fs_type", "/v"), ("file_perm", "/v/f"), ("break_on_expected_content", "true")]
                .map(|(k, v)| (k.to_string(), v.to_string()))
        );
    }

    #[test]
    fn errors_read_as_gos() {
        let e = std::io::Error::from_raw_os_error(libc::ENOENT);
        assert_eq!(go_error("open", "/x", &e), "open /x: no such file or directory");
    }
}
