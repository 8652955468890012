//! The kube-rs client (the `kube` crate) against the real server, and the durability
//! proof: every write acknowledged before a `kill -9` is there after restart.

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::Server;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};

async fn client(s: &Server) -> kube::Client {
    let kc = Kubeconfig::read_from(&s.kubeconfig).expect("kubeconfig");
    let cfg = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default()).await.expect("config");
    kube::Client::try_from(cfg).expect("client")
}

fn cm(name: &str, value: &str) -> ConfigMap {
    ConfigMap {
        metadata: kube::api::ObjectMeta { name: Some(name.into()), ..Default::default() },
        data: Some(BTreeMap::from([("v".to_string(), value.to_string())])),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kube_rs_crud_and_watch() {
    let s = Server::start();
    let c = client(&s).await;
    let ns: Api<Namespace> = Api::all(c.clone());
    let names: Vec<String> =
        ns.list(&ListParams::default()).await.unwrap().items.into_iter().filter_map(|n| n.metadata.name).collect();
    assert_eq!(names, ["default", "kube-node-lease", "kube-public", "kube-system"]);

    let api: Api<ConfigMap> = Api::namespaced(c.clone(), "default");
    let created = api.create(&PostParams::default(), &cm("a", "1")).await.unwrap();
    let rv = created.metadata.resource_version.clone().unwrap();
    let mut stream = api.watch(&WatchParams::default(), &rv).await.unwrap().boxed();
    let patch = serde_json::json!({"data": {"v": "2"}});
    api.patch("a", &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
    api.delete("a", &DeleteParams::default()).await.unwrap();
    let mut kinds = Vec::new();
    while kinds.len() < 2 {
        match tokio::time::timeout(Duration::from_secs(10), stream.try_next()).await {
            Ok(Ok(Some(WatchEvent::Modified(o)))) => kinds.push(format!("MODIFIED {}", o.data.unwrap()["v"])),
            Ok(Ok(Some(WatchEvent::Deleted(o)))) => kinds.push(format!("DELETED {}", o.metadata.name.unwrap())),
            Ok(Ok(Some(_))) => {}
            other => panic!("watch ended early: {other:?}"),
        }
    }
    assert_eq!(kinds, ["MODIFIED 2", "DELETED a"]);
    let err = api.get("a").await.unwrap_err();
    assert!(matches!(err, kube::Error::Api(ref s) if s.code == 404), "{err:?}");
}

/// Concurrent writers, then `kill -9` of the real server process mid-stream. Every create
/// the server acknowledged must be readable, with its data, after a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Server::start_in(dir.path(), &[]);
    let c = client(&s).await;
    let acked: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let stop_at = Instant::now() + Duration::from_secs(20);
    let mut writers = Vec::new();
    for w in 0..16 {
        let api: Api<ConfigMap> = Api::namespaced(c.clone(), "default");
        let acked = acked.clone();
        writers.push(tokio::spawn(async move {
            // Bounded: 2,000 writes or 20 s per writer, whichever comes first.
            for i in 0..2000 {
                if Instant::now() > stop_at {
                    break;
                }
                let name = format!("w{w}-{i}");
                let value = format!("{w}:{i}");
                match api.create(&PostParams::default(), &cm(&name, &value)).await {
                    Ok(_) => acked.lock().unwrap().push((name, value)),
                    Err(_) => break,
                }
            }
        }));
    }
    // Let writes flow, then kill the server while they are in flight.
    let t0 = Instant::now();
    while acked.lock().unwrap().len() < 300 && t0.elapsed() < Duration::from_secs(15) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    s.kill9();
    for w in writers {
        let _ = w.await;
    }
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() >= 300, "too few writes before the kill: {}", acked.len());

    let s2 = Server::start_in(dir.path(), &[]);
    let api: Api<ConfigMap> = Api::namespaced(client(&s2).await, "default");
    let stored: BTreeMap<String, String> = api
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|c| (c.metadata.name.unwrap(), c.data.unwrap_or_default().remove("v").unwrap_or_default()))
        .collect();
    let lost: Vec<_> = acked.iter().filter(|(n, v)| stored.get(n) != Some(v)).collect();
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged writes lost, e.g. {:?}",
        lost.len(),
        acked.len(),
        &lost[..lost.len().min(5)]
    );
    eprintln!("durability: {} acknowledged writes, all present after kill -9 ({} stored)", acked.len(), stored.len());
}

/// kube-rs `exec` and `attach` (WebSocket `v5.channel.k8s.io`, which the API server carries
/// to the node agent over SPDY) with a pod the agent runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kube_rs_exec_and_attach_params() {
    use k8s_openapi::api::core::v1::Pod;
    use kube::api::AttachParams;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let s = Server::start_with_node(&["--node-ip", "127.0.0.1"]);
    let pods: Api<Pod> = Api::namespaced(client(&s).await, "default");
    let pod: Pod = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "kr"},
        "spec": {"restartPolicy": "Never", "terminationGracePeriodSeconds": 1, "containers": [{
            "name": "main", "image": "busybox", "stdin": true, "stdinOnce": true,
            "command": ["sh", "-c", "while read l; do echo \"attached $l\"; done; exit 0"]}]},
    }))
    .unwrap();
    pods.create(&PostParams::default(), &pod).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while pods.get("kr").await.unwrap().status.and_then(|s| s.phase).as_deref() != Some("Running") {
        assert!(Instant::now() < deadline, "the pod never ran");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // exec: both outputs and the exit code as the Status's NonZeroExitCode cause.
    let ap = AttachParams::default().stderr(true);
    let mut p = pods.exec("kr", ["sh", "-c", "echo out; echo err >&2; exit 3"], &ap).await.unwrap();
    let (mut out, mut err) = (String::new(), String::new());
    p.stdout().unwrap().read_to_string(&mut out).await.unwrap();
    p.stderr().unwrap().read_to_string(&mut err).await.unwrap();
    let status = p.take_status().unwrap().await.expect("a status");
    assert_eq!((out.as_str(), err.as_str()), ("out\n", "err\n"));
    assert_eq!(status.status.as_deref(), Some("Failure"));
    assert_eq!(status.reason.as_deref(), Some("NonZeroExitCode"));
    let cause = &status.details.unwrap().causes.unwrap()[0];
    assert_eq!((cause.reason.as_deref(), cause.message.as_deref()), (Some("ExitCode"), Some("3")));

    // exec with stdin: the v5 close of stdin is the command's end of input.
    let ap = AttachParams::default().stdin(true).stderr(false);
    let mut p = pods.exec("kr", ["sh", "-c", "cat; echo done"], &ap).await.unwrap();
    let mut stdin = p.stdin().unwrap();
    stdin.write_all(b"through stdin\n").await.unwrap();
    stdin.shutdown().await.unwrap();
    let mut out = String::new();
    p.stdout().unwrap().read_to_string(&mut out).await.unwrap();
    assert_eq!(out, "through stdin\ndone\n");
    assert_eq!(p.take_status().unwrap().await.and_then(|s| s.status).as_deref(), Some("Success"));

    // attach: the container's own input and output; stdinOnce ends its input with ours, it
    // exits, and the attach ends with Success.
    let ap = AttachParams::default().stdin(true).stdout(true).stderr(false);
    let mut a = pods.attach("kr", &ap).await.unwrap();
    let mut stdin = a.stdin().unwrap();
    let mut stdout = a.stdout().unwrap();
    stdin.write_all(b"one\n").await.unwrap();
    let mut buf = vec![0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(10), stdout.read(&mut buf)).await.unwrap().unwrap();
    assert_eq!(&buf[..n], b"attached one\n");
    stdin.write_all(b"two\n").await.unwrap();
    stdin.shutdown().await.unwrap();
    let mut rest = String::new();
    tokio::time::timeout(Duration::from_secs(20), stdout.read_to_string(&mut rest)).await.unwrap().unwrap();
    assert_eq!(rest, "attached two\n");
    assert_eq!(a.take_status().unwrap().await.and_then(|s| s.status).as_deref(), Some("Success"));
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let st = pods.get("kr").await.unwrap().status.unwrap();
        if st.phase.as_deref() == Some("Succeeded") {
            break;
        }
        assert!(Instant::now() < deadline, "the container did not end with its input: {st:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
