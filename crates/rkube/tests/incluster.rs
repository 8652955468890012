//! Real clients inside real pods: kube-rs's `Config::incluster()` (this test binary is the
//! in-pod program), pods that do not automount a service-account token, and a long-running
//! in-pod client that sees its token rotated under it. Pods write what they see to a
//! hostPath the test reads.

mod common;

use std::path::Path;
use std::time::Duration;

use common::pods::{command_pod, create, default_may_view, get, out_dir, shell_pod, wait_file};
use common::{wait_for, Server};
use serde_json::{json, Value};

const SA_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// The in-pod half of [`kube_rs_config_incluster_in_a_pod`]: a no-op unless the pod runs
/// this binary with `RKUBE_INCLUSTER_CHILD` set. Lists the pods of the service account's
/// namespace with `kube::Config::incluster()` and writes their sorted names (or the error)
/// to `$RKUBE_INCLUSTER_OUT`.
#[test]
fn incluster_child() {
    if std::env::var_os("RKUBE_INCLUSTER_CHILD").is_none() {
        return;
    }
    let out = std::env::var_os("RKUBE_INCLUSTER_OUT").expect("RKUBE_INCLUSTER_OUT");
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let result: Result<String, String> = rt.block_on(async {
        let config = kube::Config::incluster().map_err(|e| format!("Config::incluster: {e}"))?;
        let url = config.cluster_url.to_string();
        let client = kube::Client::try_from(config).map_err(|e| format!("Client::try_from: {e}"))?;
        let ns = std::fs::read_to_string(format!("{SA_DIR}/namespace")).map_err(|e| format!("namespace: {e}"))?;
        let pods: kube::Api<k8s_openapi::api::core::v1::Pod> = kube::Api::namespaced(client, &ns);
        let list = tokio::time::timeout(Duration::from_secs(20), pods.list(&Default::default()))
            .await
            .map_err(|_| format!("list pods at {url}: timed out"))?
            .map_err(|e| format!("list pods at {url}: {e}"))?;
        let mut names: Vec<String> = list.items.into_iter().filter_map(|p| p.metadata.name).collect();
        names.sort();
        Ok(format!("{url}\n{}", names.join(" ")))
    });
    let text = match result {
        Ok(s) => format!("{s}\nend\n"),
        Err(e) => format!("error: {e}\nend\n"),
    };
    std::fs::write(out, text).expect("write the output");
}

#[test]
fn kube_rs_config_incluster_in_a_pod() {
    let s = Server::start_with_node(&[]);
    let (_keep, out) = out_dir();
    default_may_view(&s);
    let exe = std::env::current_exe().expect("the test binary").display().to_string();
    let command = [exe.as_str(), "--exact", "incluster_child", "--nocapture", "--test-threads", "1"];
    let mut p = command_pod(
        "kube-rs",
        command.iter().map(|a| a.to_string()).collect(),
        &out,
        json!({"restartPolicy": "Never"}),
    );
    p["spec"]["containers"][0]["env"] = json!([
        {"name": "RKUBE_INCLUSTER_CHILD", "value": "1"},
        {"name": "RKUBE_INCLUSTER_OUT", "value": "/out/kube-rs"},
    ]);
    create(&s, "/api/v1/namespaces/default/pods", &p);
    let text = wait_file(&out.join("kube-rs"), 90);
    assert!(!text.starts_with("error"), "kube-rs in the pod: {text}");
    let mut lines = text.lines();
    let url = lines.next().unwrap_or("");
    assert!(url.starts_with("https://"), "the in-cluster URL from KUBERNETES_SERVICE_HOST/PORT: {text}");
    let names: Vec<&str> = lines.next().unwrap_or("").split(' ').collect();
    assert!(names.contains(&"kube-rs"), "the pod sees itself: {text}");
    // The child test passed: the pod succeeds.
    let ok = wait_for(Duration::from_secs(30), || {
        get(&s, "/api/v1/namespaces/default/pods/kube-rs")["status"]["phase"] == "Succeeded"
    });
    assert!(ok, "{:#}", get(&s, "/api/v1/namespaces/default/pods/kube-rs")["status"]);
}

fn api_access_volumes(pod: &Value) -> Vec<String> {
    pod["spec"]["volumes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v["name"].as_str())
        .filter(|n| n.starts_with("kube-api-access-"))
        .map(str::to_string)
        .collect()
}

fn sa_mounts(pod: &Value) -> usize {
    pod["spec"]["containers"][0]["volumeMounts"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|m| m["mountPath"] == SA_DIR)
        .count()
}

#[test]
fn automount_service_account_token_false_mounts_nothing() {
    let s = Server::start_with_node(&[]);
    let (_keep, out) = out_dir();
    create(
        &s,
        "/api/v1/namespaces/default/serviceaccounts",
        &json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "noauto"},
                "automountServiceAccountToken": false}),
    );
    let script = |name: &str| {
        format!(
            "f=/out/{name}; if [ -e {SA_DIR} ]; then echo present; ls -la {SA_DIR}; else echo absent; fi > $f; \
             if [ -e /var/run/secrets ]; then echo secrets-present; else echo secrets-absent; fi >> $f; \
             echo \"host=$KUBERNETES_SERVICE_HOST\" >> $f; echo end >> $f; exec sleep 3600"
        )
    };
    // Off on the pod; off on its service account (the pod says nothing); off on the
    // service account but on for the pod, which wins.
    let cases = [
        ("pod-off", json!({"automountServiceAccountToken": false})),
        ("sa-off", json!({"serviceAccountName": "noauto"})),
        ("sa-off-pod-on", json!({"serviceAccountName": "noauto", "automountServiceAccountToken": true})),
    ];
    let mut created = Vec::new();
    for (name, extra) in &cases {
        created.push(create(
            &s,
            "/api/v1/namespaces/default/pods",
            &shell_pod(name, &script(name), &out, extra.clone()),
        ));
    }
    let host_has_sa = Path::new(SA_DIR).exists();
    for ((name, _), pod) in cases.iter().zip(&created) {
        let seen = wait_file(&out.join(name), 60);
        let mut lines = seen.lines();
        let sa = lines.next().unwrap_or("");
        let secrets = lines.next().unwrap_or("");
        assert!(seen.contains("host=") && !seen.contains("host=\n"), "the service env is still given: {seen}");
        if *name == "sa-off-pod-on" {
            assert_eq!(api_access_volumes(pod).len(), 1, "{:#}", pod["spec"]);
            assert_eq!(sa_mounts(pod), 1, "{:#}", pod["spec"]);
            assert_eq!(sa, "present", "{seen}");
            assert!(seen.contains(" token -> ..data/token"), "{seen}");
        } else {
            assert!(api_access_volumes(pod).is_empty(), "{name}: no kube-api-access volume: {:#}", pod["spec"]);
            assert_eq!(sa_mounts(pod), 0, "{name}: {:#}", pod["spec"]);
            assert_eq!(
                sa, "absent",
                "{name}: no service-account directory in the container (host has one: {host_has_sa}): {seen}"
            );
            if !Path::new("/var/run/secrets").exists() {
                assert_eq!(secrets, "secrets-absent", "{name}: {seen}");
            }
        }
    }
}

#[test]
fn a_long_running_client_in_a_pod_sees_its_token_rotated() {
    if !common::require("curl", &["--version"]) || !common::require("sha256sum", &["--version"]) {
        return;
    }
    let s = Server::start_with_node(&["--token-refresh-after-seconds", "2"]);
    let (_keep, out) = out_dir();
    // 16 rounds, 0.5 s apart, at most 30 s: the token's digest, where `..data` points, and
    // the API's answer to a call with that token (by the service's address: name lookups
    // are the DNS tests' business).
    let script = format!(
        "SA={SA_DIR}; start=$(date +%s); i=0; \
         while [ $i -lt 16 ] && [ $(date +%s) -lt $(expr $start + 30) ]; do \
           t=$(cat $SA/token); \
           h=$(printf %s \"$t\" | sha256sum | cut -d' ' -f1); \
           d=$(readlink $SA/..data); \
           c=$(curl -s -o /dev/null -w '%{{http_code}}' --max-time 5 --cacert $SA/ca.crt \
                 -H \"Authorization: Bearer $t\" https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT/api); \
           echo \"$h $d $c\" >> /out/log; \
           i=$(expr $i + 1); sleep 0.5; \
         done; echo end >> /out/log; exec sleep 3600"
    );
    create(&s, "/api/v1/namespaces/default/pods", &shell_pod("rotate", &script, &out, json!({})));
    let log = wait_file(&out.join("log"), 90);
    let rows: Vec<Vec<&str>> = log.lines().map(|l| l.split(' ').collect()).collect();
    assert!(rows.len() >= 12, "the loop ran its rounds: {log}");
    const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
    for r in &rows {
        assert_eq!(r.len(), 3, "{log}");
        assert_ne!(r[0], EMPTY_SHA256, "the token file is never empty: {log}");
        assert_eq!(r[2], "200", "every call with the token read at the time succeeds: {log}");
    }
    let tokens: std::collections::BTreeSet<&str> = rows.iter().map(|r| r[0]).collect();
    let data: std::collections::BTreeSet<&str> = rows.iter().map(|r| r[1]).collect();
    assert!(tokens.len() >= 2, "the token was refreshed while the pod ran: {log}");
    assert!(data.len() >= 2, "by swapping ..data (the atomic writer): {log}");
    // A new token always comes with a new ..data directory.
    for w in rows.windows(2) {
        if w[0][0] != w[1][0] {
            assert_ne!(w[0][1], w[1][1], "{log}");
        }
    }
}
