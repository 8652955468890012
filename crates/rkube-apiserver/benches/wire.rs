//! What each wire format costs a create, per object, on the steps where the formats differ
//! (`cargo bench -p rkube-apiserver --bench wire`): turning the request body into the
//! value the registry admits (JSON: parse, the typed round trip, the unknown-field check;
//! protobuf: the table-driven decode, whose values are already typed), and the answer
//! (JSON: the stored bytes as they are; protobuf: the value being stored encoded before
//! the store gives it its revision, finished with it after, and cached for later reads).
//! Everything else a create does is the same for both. Prints figures (best of 7
//! batches); asserts nothing; bounded iterations.

use std::time::Instant;

use serde_json::{json, Value};

/// The best of 7 batches (the machine is shared: the minimum is what the code costs, the
/// rest is other tenants).
fn time(label: &str, iters: u32, mut f: impl FnMut()) -> f64 {
    let batch = (iters / 7).max(1);
    let mut best = f64::MAX;
    for _ in 0..7 {
        let t = Instant::now();
        for _ in 0..batch {
            f();
        }
        best = best.min(t.elapsed().as_secs_f64() * 1e6 / batch as f64);
    }
    println!("  {label}: {best:.2} µs");
    best
}

fn main() {
    let defs = rkube_api::builtin::builtins();
    let pods = defs.iter().find(|d| d.group.is_empty() && d.plural == "pods").expect("pods");
    let reference = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/reference/kube-apiserver-v1.28.7/objects/pod-defaulted.json");
    let stored: Value =
        serde_json::from_str(&std::fs::read_to_string(reference).expect("reference pod")).expect("json");
    let stored_bytes = serde_json::to_vec(&stored).expect("json");
    // The body `rkube-bench --wire-compare` sends, and the reference pod as a request.
    let small = json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "p", "labels": {"app": "bench"}},
        "spec": {"containers": [{"name": "c", "image": "busybox", "command": ["sleep", "3600"]}]}});
    let n = 20_000;
    for (name, request) in [("small pod (the load tool's)", &small), ("reference pod", &stored)] {
        let json_body = serde_json::to_vec(request).expect("json");
        let pb_body = rkube_proto::encode_object(request).expect("protobuf");
        println!("{name}: {} bytes JSON, {} bytes protobuf", json_body.len(), pb_body.len());
        let j = time("JSON body -> admitted value (parse, typed round trip, unknown fields)", n, || {
            let v: Value = serde_json::from_slice(&json_body).expect("json");
            let typed = pods.strategy.canonicalize(&v).expect("typed");
            assert!(rkube_api::strategy::unknown_fields(&v, &typed).is_empty());
        });
        let p = time("protobuf body -> admitted value (decode)", n, || {
            rkube_proto::decode_object(&pb_body).expect("protobuf");
        });
        let a = time("protobuf answer from the value being stored (encode, finish)", n, || {
            rkube_proto::Unstored::encode(&stored).expect("encode").finish("12345");
        });
        time("(for reads: stored JSON bytes -> protobuf, transcoded once per revision)", n, || {
            rkube_proto::encode_json_bytes_ranged("v1", "Pod", &stored_bytes).expect("transcode");
        });
        println!("  per create: JSON {j:.2} µs, protobuf {:.2} µs", p + a);
    }
}
