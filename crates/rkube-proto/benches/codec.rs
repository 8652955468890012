//! Codec costs per object, next to serde_json's for the same object: `cargo bench -p
//! rkube-proto --bench codec`. Prints figures; asserts nothing. Bounded iterations.

use std::time::Instant;

fn time(label: &str, iters: u32, mut f: impl FnMut()) {
    let t = Instant::now();
    for _ in 0..iters {
        f();
    }
    println!("{label}: {:.2} µs/op", t.elapsed().as_secs_f64() * 1e6 / iters as f64);
}

fn main() {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/reference/kube-apiserver-v1.28.7/objects/pod-defaulted.json");
    let pod: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(p).expect("reference pod")).expect("json");
    let json = serde_json::to_vec(&pod).expect("json");
    let pb = rkube_proto::encode_object(&pod).expect("encode");
    println!("pod: {} bytes JSON, {} bytes protobuf", json.len(), pb.len());
    let n = 20_000;
    time("JSON bytes -> Value (serde_json)", n, || {
        let _: serde_json::Value = serde_json::from_slice(&json).unwrap();
    });
    time("Value -> JSON bytes (serde_json)", n, || {
        let _ = serde_json::to_vec(&pod).unwrap();
    });
    time("JSON bytes parsed and ignored (serde_json, IgnoredAny)", n, || {
        let _: serde::de::IgnoredAny = serde_json::from_slice(&json).unwrap();
    });
    time("protobuf -> Value (decode_object)", n, || {
        let _ = rkube_proto::decode_object(&pb).unwrap();
    });
    time("Value -> protobuf (encode_object)", n, || {
        let _ = rkube_proto::encode_object(&pod).unwrap();
    });
    time("JSON bytes -> protobuf (transcoder)", n, || {
        let _ = rkube_proto::encode_json_bytes("v1", "Pod", &json).unwrap();
    });
}
