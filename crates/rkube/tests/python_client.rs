//! The official Python `kubernetes` client (PyPI) against the real server.

mod common;

use std::process::Command;

use common::{require, Server};

#[test]
fn python_kubernetes_client() {
    if !require("python3", &["-c", "import kubernetes"]) {
        return;
    }
    let s = Server::start();
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/client_smoke.py");
    let out = Command::new("python3").arg(&script).arg(&s.kubeconfig).output().expect("python3");
    assert!(
        out.status.success(),
        "python client failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
