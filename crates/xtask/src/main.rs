//! Developer tasks.
//!
//! `cargo run -p xtask -- proto-table [--k8s-pb-src DIR] [--out PATH] [--check] [--report PATH]`
//! generates `crates/rkube-proto/src/generated.rs`, the table of Kubernetes' protobuf messages,
//! from the sources of the `k8s-pb` crate (0.9.0; fetch it with `cargo fetch` in any crate that
//! depends on it) and the JSON names of k8s-openapi's schemas. `--check` compares instead of
//! writing and fails if the file is out of date. `--report PATH` writes an account of the
//! names that did not come from the message's own schema (a summary goes to stderr).
//!
//! `cargo run -p xtask -- go-fields --go-src DIR --release TAG` rewrites `go-fields.txt`, which
//! the table reads for which fields keep a zero value in JSON, from the Go API types: `DIR`
//! holds `api/`, `apimachinery/`, `apiextensions-apiserver/` and `kube-aggregator/` as
//! checked out at tag `TAG` (e.g. `v0.33.9`) of those repositories.

mod go_fields;
mod openapi_types;
mod pb;
mod proto_table;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};

const K8S_PB: &str = "k8s-pb-0.9.0";
const USAGE: &str =
    "usage: cargo run -p xtask -- proto-table [--k8s-pb-src DIR] [--out PATH] [--check] [--report PATH]\n       \
     cargo run -p xtask -- go-fields --go-src DIR --release TAG";

/// The committed account of Go's JSON zero handling per message field (see [`go_fields`]).
const GO_FIELDS: &str = "crates/xtask/go-fields.txt";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("proto-table") => proto_table_cmd(&args[1..]),
        Some("go-fields") => go_fields_cmd(&args[1..]),
        _ => Err(USAGE.to_string()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn workspace_root() -> PathBuf {
    let xtask = Path::new(env!("CARGO_MANIFEST_DIR"));
    xtask.parent().and_then(Path::parent).unwrap_or(xtask).to_path_buf()
}

/// `$CARGO_HOME/registry/src/*/k8s-pb-0.9.0/src`.
fn find_k8s_pb_src() -> Result<PathBuf, String> {
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .ok_or("neither CARGO_HOME nor HOME is set")?;
    let registry = cargo_home.join("registry/src");
    let mut found: Vec<PathBuf> = std::fs::read_dir(&registry)
        .map_err(|e| format!("{}: {e}", registry.display()))?
        .filter_map(Result::ok)
        .map(|e| e.path().join(K8S_PB).join("src"))
        .filter(|p| p.is_dir())
        .collect();
    found.sort();
    found.pop().ok_or_else(|| {
        format!(
            "{K8S_PB} not found under {}; fetch it (e.g. `cargo add k8s-pb@0.9.0 && cargo fetch` in a \
             scratch crate) or pass --k8s-pb-src",
            registry.display()
        )
    })
}

struct Options {
    src: Option<PathBuf>,
    out: PathBuf,
    check: bool,
    report: Option<PathBuf>,
}

fn parse_options(args: &[String]) -> Result<Options, String> {
    let mut o = Options {
        src: None,
        out: workspace_root().join("crates/rkube-proto/src/generated.rs"),
        check: false,
        report: None,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = || it.next().map(PathBuf::from).ok_or_else(|| format!("{a} needs a value\n{USAGE}"));
        match a.as_str() {
            "--k8s-pb-src" => o.src = Some(value()?),
            "--out" => o.out = value()?,
            "--report" => o.report = Some(value()?),
            "--check" => o.check = true,
            _ => return Err(format!("unknown argument {a}\n{USAGE}")),
        }
    }
    Ok(o)
}

/// Generates the formatted source of `generated.rs` and the report.
pub fn generate(src: &Path) -> Result<(String, String), String> {
    let (raw, notes) = pb::read_tree(src).map_err(|e| e.to_string())?;
    let defs = proto_table::openapi_definitions();
    let go_path = workspace_root().join(GO_FIELDS);
    let go_text = std::fs::read_to_string(&go_path).map_err(|e| format!("{}: {e}", go_path.display()))?;
    let go = go_fields::parse(&go_text)?;
    let table = proto_table::build(raw, &defs, &go)?;
    let code = rustfmt(&proto_table::render(&table))?;
    Ok((code, proto_table::report(&table, &notes)))
}

/// Formats Rust source with rustfmt and the workspace's rustfmt.toml.
fn rustfmt(code: &str) -> Result<String, String> {
    let rustfmt = std::env::var_os("RUSTFMT").unwrap_or_else(|| "rustfmt".into());
    let mut child = Command::new(&rustfmt)
        .args(["--edition", "2021", "--config-path"])
        .arg(workspace_root().join("rustfmt.toml"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("running {}: {e}", rustfmt.to_string_lossy()))?;
    let mut stdin = child.stdin.take().expect("piped stdin");
    let input = code.to_string();
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let out = child.wait_with_output().map_err(|e| format!("rustfmt: {e}"))?;
    writer.join().expect("writer thread").map_err(|e| format!("writing to rustfmt: {e}"))?;
    if !out.status.success() {
        return Err(format!("rustfmt failed: {}", String::from_utf8_lossy(&out.stderr)));
    }
    String::from_utf8(out.stdout).map_err(|e| format!("rustfmt output: {e}"))
}

fn go_fields_cmd(args: &[String]) -> Result<(), String> {
    let (mut src, mut release) = (None, None);
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--go-src" => src = it.next().map(PathBuf::from),
            "--release" => release = it.next().cloned(),
            _ => return Err(format!("unknown argument {a}\n{USAGE}")),
        }
    }
    let (Some(src), Some(release)) = (src, release) else { return Err(USAGE.to_string()) };
    let about = format!(
        "Generated by `cargo run -p xtask -- go-fields` from the Go API types of k8s.io/api, apimachinery,\n\
         apiextensions-apiserver and kube-aggregator at {release}. Per message: tag=jsonName:flags,\n\
         p = Go pointer (a set zero is kept in JSON), o = omitempty (else a zero is always written)."
    );
    let text = go_fields::scan(&src, &about)?;
    let out = workspace_root().join(GO_FIELDS);
    std::fs::write(&out, &text).map_err(|e| format!("{}: {e}", out.display()))?;
    eprintln!("wrote {} ({} messages)", out.display(), text.lines().filter(|l| !l.starts_with('#')).count());
    Ok(())
}

fn proto_table_cmd(args: &[String]) -> Result<(), String> {
    let o = parse_options(args)?;
    let src = match o.src {
        Some(s) => s,
        None => find_k8s_pb_src()?,
    };
    let (code, report) = generate(&src)?;
    match &o.report {
        Some(p) => std::fs::write(p, &report).map_err(|e| format!("{}: {e}", p.display()))?,
        None => {
            for line in report.lines().take(3) {
                eprintln!("{line}");
            }
            eprintln!("(names not from the message's own schema, and more: --report PATH)");
        }
    }
    if o.check {
        let current = std::fs::read_to_string(&o.out).map_err(|e| format!("{}: {e}", o.out.display()))?;
        if current != code {
            return Err(format!(
                "{} is out of date; regenerate it with `cargo run -p xtask -- proto-table`",
                o.out.display()
            ));
        }
        eprintln!("{} is up to date", o.out.display());
    } else {
        std::fs::write(&o.out, &code).map_err(|e| format!("{}: {e}", o.out.display()))?;
        eprintln!("wrote {} ({} bytes)", o.out.display(), code.len());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    /// The committed table is what the generator produces (skipped when the k8s-pb sources
    /// are not in the cargo registry: k8s-pb is not a dependency of the workspace).
    #[test]
    fn generated_table_is_up_to_date() {
        let Ok(src) = super::find_k8s_pb_src() else {
            // k8s-pb is a dev-dependency of rkube-proto, so a CI build has its sources.
            assert!(std::env::var_os("CI").is_none(), "{} sources are required in CI", super::K8S_PB);
            eprintln!("SKIPPED: {} sources not in the cargo registry", super::K8S_PB);
            return;
        };
        let (code, _) = super::generate(&src).expect("generate");
        let path = super::workspace_root().join("crates/rkube-proto/src/generated.rs");
        let current = std::fs::read_to_string(&path).expect("read generated.rs");
        assert!(current == code, "{} is out of date; run `cargo run -p xtask -- proto-table`", path.display());
    }
}
