//! What authenticating a service-account token costs: `cargo bench -p rkube-apiserver
//! --bench authn`. Prints figures; asserts nothing; bounded iterations.

use std::time::Instant;

fn main() {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
    let issuer =
        rkube_apiserver::tokens::TokenIssuer::new(&key.serialize_pem(), &key.public_key_pem()).expect("issuer");
    let now = chrono::Utc::now().timestamp();
    let n = 2_000;
    let tokens: Vec<String> = (0..n)
        .map(|i| {
            let claims = serde_json::json!({"aud": [rkube_apiserver::tokens::ISSUER], "exp": now + 3600, "iat": now, "nbf": now,
                "iss": rkube_apiserver::tokens::ISSUER, "sub": format!("system:serviceaccount:ns:sa{i}")});
            issuer.sign(&claims).expect("sign")
        })
        .collect();
    let t = Instant::now();
    for tok in &tokens {
        issuer.verify(tok).expect("valid");
    }
    println!("first use (ES256 signature verified): {:.2} µs/token", t.elapsed().as_secs_f64() * 1e6 / n as f64);
    let rounds = 50;
    let t = Instant::now();
    for _ in 0..rounds {
        for tok in &tokens {
            issuer.verify(tok).expect("valid");
        }
    }
    println!(
        "later uses (verified-token cache): {:.3} µs/token",
        t.elapsed().as_secs_f64() * 1e6 / (n * rounds) as f64
    );
}
