//! Exec credential plugins (`users[].user.exec` in a kubeconfig: gke-gcloud-auth-plugin,
//! `aws eks get-token`, kubelogin, ...), run as client-go runs them: the command with its
//! args and env, `KUBERNETES_EXEC_INFO` describing the request (never interactive: a proxy
//! has no terminal), and an `ExecCredential` of the same apiVersion read from stdout. The
//! token is cached until `expirationTimestamp` and the plugin run again after it, or after a
//! 401. A client certificate from a plugin is used for the connection made at start-up; it
//! is not rotated while the proxy runs (left out).

use std::process::{Command, Stdio};

use chrono::{DateTime, Utc};
use kube_client::config::{ExecConfig, ExecInteractiveMode};
use serde_json::{json, Value};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecPlugin {
    pub api_version: String,
    pub command: String,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub install_hint: Option<String>,
    /// What `provideClusterInfo: true` hands to the plugin.
    pub cluster: Option<Value>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecCredential {
    pub token: Option<String>,
    /// PEM certificate and key.
    pub client_identity: Option<(Vec<u8>, Vec<u8>)>,
    pub expires: Option<DateTime<Utc>>,
}

impl ExecPlugin {
    pub fn from_config(exec: &ExecConfig, cluster: Option<Value>) -> Result<ExecPlugin, String> {
        let command = exec.command.clone().filter(|c| !c.is_empty()).ok_or("exec plugin: no command")?;
        let api_version = exec.api_version.clone().filter(|v| !v.is_empty()).ok_or("exec plugin: no apiVersion")?;
        if !matches!(api_version.as_str(), "client.authentication.k8s.io/v1" | "client.authentication.k8s.io/v1beta1") {
            return Err(format!("exec plugin: invalid apiVersion {api_version:?}"));
        }
        if matches!(exec.interactive_mode, Some(ExecInteractiveMode::Always)) {
            return Err("exec plugin: interactiveMode Always needs a terminal, and a proxy has none".into());
        }
        let env = exec
            .env
            .iter()
            .flatten()
            .filter_map(|e| Some((e.get("name")?.clone(), e.get("value").cloned().unwrap_or_default())))
            .collect();
        Ok(ExecPlugin {
            api_version,
            command,
            args: exec.args.clone().unwrap_or_default(),
            env,
            install_hint: exec.install_hint.clone(),
            cluster: if exec.provide_cluster_info { cluster } else { None },
        })
    }

    /// Runs the plugin once (blocking).
    pub fn run(&self) -> Result<ExecCredential, String> {
        let mut spec = json!({"interactive": false});
        if let Some(c) = &self.cluster {
            spec["cluster"] = c.clone();
        }
        let info = json!({"apiVersion": self.api_version, "kind": "ExecCredential", "spec": spec});
        let out = Command::new(&self.command)
            .args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .env("KUBERNETES_EXEC_INFO", info.to_string())
            .stdin(Stdio::null())
            .stderr(Stdio::inherit())
            .output()
            .map_err(|e| {
                let hint = self.install_hint.as_deref().map(|h| format!("\n\n{h}")).unwrap_or_default();
                if e.kind() == std::io::ErrorKind::NotFound {
                    format!("exec: executable {} not found{hint}", self.command)
                } else {
                    format!("exec: executable {}: {e}{hint}", self.command)
                }
            })?;
        if !out.status.success() {
            return Err(format!(
                "exec: executable {} failed with exit code {}",
                self.command,
                out.status.code().unwrap_or(-1)
            ));
        }
        parse(&self.api_version, &out.stdout)
    }
}

fn parse(api_version: &str, stdout: &[u8]) -> Result<ExecCredential, String> {
    let v: Value = serde_json::from_slice(stdout).map_err(|e| format!("decoding stdout of the exec plugin: {e}"))?;
    let got = v.get("apiVersion").and_then(Value::as_str).unwrap_or("");
    if got != api_version {
        return Err(format!(
            "exec plugin is configured to use API version {api_version}, plugin returned version {got}"
        ));
    }
    let status = v.get("status").ok_or("exec plugin didn't return a status field")?;
    let s = |k: &str| status.get(k).and_then(Value::as_str).filter(|s| !s.is_empty()).map(str::to_string);
    let token = s("token");
    let client_identity = match (s("clientCertificateData"), s("clientKeyData")) {
        (Some(c), Some(k)) => Some((c.into_bytes(), k.into_bytes())),
        (None, None) => None,
        _ => return Err("exec plugin returned only one of clientCertificateData and clientKeyData".into()),
    };
    if token.is_none() && client_identity.is_none() {
        return Err("exec plugin didn't return a token or cert/key pair".into());
    }
    let expires = match s("expirationTimestamp") {
        Some(t) => Some(
            DateTime::parse_from_rfc3339(&t)
                .map_err(|e| format!("exec plugin: bad expirationTimestamp {t:?}: {e}"))?
                .with_timezone(&Utc),
        ),
        None => None,
    };
    Ok(ExecCredential { token, client_identity, expires })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_tokens_and_checks_the_version() {
        let v1 = "client.authentication.k8s.io/v1";
        let c = parse(
            v1,
            br#"{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","status":{"token":"t","expirationTimestamp":"2030-01-01T00:00:00Z"}}"#,
        )
        .unwrap();
        assert_eq!(c.token.as_deref(), Some("t"));
        assert!(c.expires.is_some());
        let e =
            parse(v1, br#"{"apiVersion":"client.authentication.k8s.io/v1beta1","status":{"token":"t"}}"#).unwrap_err();
        assert!(e.contains("returned version"), "{e}");
        assert!(parse(v1, br#"{"apiVersion":"client.authentication.k8s.io/v1","status":{}}"#).is_err());
        assert!(parse(v1, b"not json").is_err());
    }
}
