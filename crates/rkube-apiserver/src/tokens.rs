//! Service-account tokens: TokenRequest (`POST .../serviceaccounts/{name}/token`, what
//! `kubectl create token` sends) issues ES256 JWTs with Kubernetes' claims; authentication
//! verifies them (signature, issuer, time, audiences against the ones asked for) and that
//! the service account, and the pod or secret the token is bound to, still exist with the
//! same uid and are not deleted: bound tokens stop working 60 s past the deletionTimestamp
//! (kube-apiserver's grace for a terminating pod's last calls), legacy tokens at once.

use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rkube_api::{ApiError, ApiResult, FieldError};
use serde_json::{json, Value};

use crate::authn::UserInfo;
use crate::registry::parse_stored;
use crate::ApiServer;

/// The issuer and default audience of every token (kube-apiserver's usual
/// `--service-account-issuer`).
pub const ISSUER: &str = "https://kubernetes.default.svc.cluster.local";
/// kube-apiserver's expiry rules.
const EXPIRATION_DEFAULT_SECONDS: i64 = 3600;
const EXPIRATION_MIN_SECONDS: i64 = 600;
/// The expiration the ServiceAccount admission asks for; such tokens warn after an hour
/// (`warnafter`) but stay valid longer, as kube-apiserver's extended expiration does.
const EXPIRATION_PROJECTED_SECONDS: i64 = 3607;
const EXTENDED_EXPIRATION_SECONDS: i64 = 365 * 24 * 3600;

pub struct TokenIssuer {
    encoding: EncodingKey,
    decoding: DecodingKey,
    kid: String,
    /// The public key as a JWK (for `/openid/v1/jwks`).
    jwk: Value,
    /// Tokens whose signature was verified: token -> claims. Verifying a signature costs
    /// tens of microseconds; a cached token costs a hash lookup. Expiry and the existence of
    /// the service account and bound object are still checked on every use.
    verified: std::sync::Mutex<std::collections::HashMap<String, Value>>,
}

/// The most verified tokens kept; past it the cache starts over.
const VERIFIED_TOKENS_MAX: usize = 10_000;

impl TokenIssuer {
    pub fn new(key_pem: &str, pub_pem: &str) -> Result<TokenIssuer, String> {
        let encoding = EncodingKey::from_ec_pem(key_pem.as_bytes()).map_err(|e| format!("signing key: {e}"))?;
        let decoding = DecodingKey::from_ec_pem(pub_pem.as_bytes()).map_err(|e| format!("public key: {e}"))?;
        // The key id: a hash of the public key, stable for the key.
        let der: Vec<u8> = pub_pem.lines().filter(|l| !l.starts_with("-----")).collect::<String>().into_bytes();
        let mut h: u64 = 0xcbf29ce484222325;
        for b in der {
            h ^= b as u64;
            h = h.wrapping_mul(0x100000001b3);
        }
        let kid = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(h.to_be_bytes());
        // A P-256 SubjectPublicKeyInfo ends with the uncompressed point 04 || X || Y.
        let spki = base64::engine::general_purpose::STANDARD
            .decode(pub_pem.lines().filter(|l| !l.starts_with("-----")).collect::<String>())
            .map_err(|e| format!("public key: {e}"))?;
        if spki.len() < 65 || spki[spki.len() - 65] != 4 {
            return Err("public key: not an uncompressed P-256 point".into());
        }
        let point = &spki[spki.len() - 64..];
        let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
        let jwk = json!({"use": "sig", "kty": "EC", "kid": kid, "crv": "P-256", "alg": "ES256",
            "x": b64(&point[..32]), "y": b64(&point[32..])});
        Ok(TokenIssuer { encoding, decoding, kid, jwk, verified: Default::default() })
    }

    pub fn sign(&self, claims: &Value) -> Result<String, String> {
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.encoding).map_err(|e| e.to_string())
    }

    /// Checks signature, issuer and time (cached after the first success); audiences, the
    /// service account and the bound object are checked by [`authenticate_for`].
    pub fn verify(&self, token: &str) -> Result<Value, String> {
        let cached = self.verified.lock().unwrap_or_else(|e| e.into_inner()).get(token).cloned();
        if let Some(claims) = cached {
            let t = now();
            let exp = claims.get("exp").and_then(Value::as_i64).unwrap_or(0);
            let nbf = claims.get("nbf").and_then(Value::as_i64).unwrap_or(0);
            return if t < exp && t >= nbf { Ok(claims) } else { Err("token is expired or not yet valid".into()) };
        }
        let claims = self.verify_signature(token)?;
        let mut cache = self.verified.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= VERIFIED_TOKENS_MAX {
            cache.clear();
        }
        cache.insert(token.to_string(), claims.clone());
        Ok(claims)
    }

    fn verify_signature(&self, token: &str) -> Result<Value, String> {
        let mut v = Validation::new(Algorithm::ES256);
        v.set_issuer(&[ISSUER]);
        // The audience is checked against what each caller asks for; it must be there.
        v.validate_aud = false;
        v.set_required_spec_claims(&["exp", "iss", "aud"]);
        v.validate_nbf = true;
        v.leeway = 0;
        jsonwebtoken::decode::<Value>(token, &self.decoding, &v).map(|d| d.claims).map_err(|e| e.to_string())
    }
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

fn get_object(server: &ApiServer, key: &str) -> Option<Value> {
    server.store.get(key).and_then(|kv| parse_stored(&kv).ok())
}

/// How long past its deletionTimestamp an object still backs the tokens bound to it
/// (kube-apiserver's `invalidIfDeletedBefore`).
const DELETION_GRACE_SECONDS: i64 = 60;

/// Whether `obj` is being deleted and its grace for tokens is over.
fn deleted_for_tokens(obj: &Value) -> bool {
    obj.pointer("/metadata/deletionTimestamp")
        .and_then(Value::as_str)
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .is_some_and(|t| t.timestamp() + DELETION_GRACE_SECONDS <= now())
}

fn being_deleted(obj: &Value) -> bool {
    obj.pointer("/metadata/deletionTimestamp").is_some_and(|v| !v.is_null())
}

/// Answers a TokenRequest for service account `name` in `namespace`.
pub fn request(server: &ApiServer, namespace: &str, name: &str, mut req: Value) -> ApiResult<Value> {
    let issuer = server.sa_tokens.get().ok_or_else(|| ApiError::internal("no service-account signing key"))?;
    let sa = get_object(server, &format!("/registry/core/serviceaccounts/{namespace}/{name}"))
        .ok_or_else(|| ApiError::not_found("", "serviceaccounts", name))?;
    // Deviation: kube-apiserver still issues a token here, which then never authenticates.
    if deleted_for_tokens(&sa) {
        return Err(ApiError::new(
            403,
            "Forbidden",
            format!("serviceaccounts \"{name}\" is forbidden: the service account is being deleted"),
        ));
    }
    let sa_uid = sa.pointer("/metadata/uid").and_then(Value::as_str).unwrap_or("").to_string();
    let spec = req.get("spec").cloned().unwrap_or(json!({}));
    let seconds = spec.get("expirationSeconds").and_then(Value::as_i64).unwrap_or(EXPIRATION_DEFAULT_SECONDS);
    let invalid = |errs: Vec<FieldError>| ApiError::invalid("authentication.k8s.io", "TokenRequest", name, errs);
    if seconds < EXPIRATION_MIN_SECONDS {
        return Err(invalid(vec![FieldError::invalid(
            "spec.expirationSeconds",
            json!(seconds),
            "may not specify a duration less than 10 minutes",
        )]));
    }
    if seconds > 1 << 32 {
        return Err(invalid(vec![FieldError::invalid(
            "spec.expirationSeconds",
            json!(seconds),
            "may not specify a duration larger than 2^32 seconds",
        )]));
    }
    let audiences: Vec<String> = spec
        .get("audiences")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).map(str::to_string).collect())
        .filter(|a: &Vec<String>| !a.is_empty())
        .unwrap_or_else(|| vec![ISSUER.to_string()]);
    let iat = now();
    // Only the kubelet's token for a pod (3607 s, bound to the pod, for this server's own
    // audiences only) gets the extended expiration, as with kube-apiserver.
    let pod_bound = spec.pointer("/boundObjectRef/kind").and_then(Value::as_str) == Some("Pod");
    let kube_audiences = audiences.iter().all(|a| a == ISSUER);
    let (exp, warnafter) = if seconds == EXPIRATION_PROJECTED_SECONDS && pod_bound && kube_audiences {
        (iat + EXTENDED_EXPIRATION_SECONDS, Some(iat + seconds))
    } else {
        (iat + seconds, None)
    };
    let mut k8s = json!({"namespace": namespace, "serviceaccount": {"name": name, "uid": sa_uid}});
    if let Some(bound) = spec.get("boundObjectRef").filter(|b| b.is_object()) {
        let kind = bound.get("kind").and_then(Value::as_str).unwrap_or("");
        let bname = bound.get("name").and_then(Value::as_str).unwrap_or("");
        let (plural, field) = match kind {
            "Pod" => ("pods", "pod"),
            "Secret" => ("secrets", "secret"),
            other => {
                return Err(invalid(vec![FieldError::not_supported(
                    "spec.boundObjectRef.kind",
                    json!(other),
                    &["Pod", "Secret"],
                )]))
            }
        };
        let obj = get_object(server, &format!("/registry/core/{plural}/{namespace}/{bname}"))
            .ok_or_else(|| ApiError::not_found("", plural, bname))?;
        if deleted_for_tokens(&obj) {
            return Err(ApiError::new(
                403,
                "Forbidden",
                format!("{plural} \"{bname}\" is forbidden: the bound object is being deleted"),
            ));
        }
        let uid = obj.pointer("/metadata/uid").and_then(Value::as_str).unwrap_or("").to_string();
        if let Some(want) = bound.get("uid").and_then(Value::as_str).filter(|u| !u.is_empty()) {
            if want != uid {
                return Err(ApiError::conflict("", plural, bname, &format!("the UID in the bound object reference ({want}) does not match the UID in record. The object might have been deleted and then recreated")));
            }
        }
        k8s[field] = json!({"name": bname, "uid": uid});
        if kind == "Pod" {
            if let Some(node) = obj.pointer("/spec/nodeName").and_then(Value::as_str).filter(|n| !n.is_empty()) {
                if let Some(n) = get_object(server, &format!("/registry/core/nodes/{node}")) {
                    k8s["node"] =
                        json!({"name": node, "uid": n.pointer("/metadata/uid").cloned().unwrap_or(json!(""))});
                }
            }
        }
    }
    if let Some(w) = warnafter {
        k8s["warnafter"] = json!(w);
    }
    let claims = json!({
        "aud": audiences,
        "exp": exp,
        "iat": iat,
        "iss": ISSUER,
        "jti": uuid::Uuid::new_v4().to_string(),
        "kubernetes.io": k8s,
        "nbf": iat,
        "sub": format!("system:serviceaccount:{namespace}:{name}"),
    });
    let token = issuer.sign(&claims).map_err(ApiError::internal)?;
    let expiration =
        chrono::DateTime::from_timestamp(iat + seconds, 0).unwrap_or_default().format("%Y-%m-%dT%H:%M:%SZ").to_string();
    req["apiVersion"] = json!("authentication.k8s.io/v1");
    req["kind"] = json!("TokenRequest");
    req["metadata"] = json!({"name": name, "namespace": namespace, "creationTimestamp": null});
    req["spec"] = json!({"audiences": audiences, "expirationSeconds": seconds, "boundObjectRef": spec.get("boundObjectRef").cloned().unwrap_or(Value::Null)});
    req["status"] = json!({"token": token, "expirationTimestamp": expiration});
    Ok(req)
}

/// The issuer of legacy (Secret-stored, non-expiring) service-account tokens.
pub const LEGACY_ISSUER: &str = "kubernetes/serviceaccount";

impl TokenIssuer {
    /// A legacy token for a `kubernetes.io/service-account-token` Secret.
    pub fn legacy_token(&self, namespace: &str, secret: &str, sa_name: &str, sa_uid: &str) -> Result<String, String> {
        self.sign(&json!({
            "iss": LEGACY_ISSUER,
            "kubernetes.io/serviceaccount/namespace": namespace,
            "kubernetes.io/serviceaccount/secret.name": secret,
            "kubernetes.io/serviceaccount/service-account.name": sa_name,
            "kubernetes.io/serviceaccount/service-account.uid": sa_uid,
            "sub": format!("system:serviceaccount:{namespace}:{sa_name}"),
        }))
    }

    fn verify_legacy(&self, token: &str) -> Option<Value> {
        let mut v = Validation::new(Algorithm::ES256);
        v.set_issuer(&[LEGACY_ISSUER]);
        v.validate_aud = false;
        v.validate_exp = false;
        v.required_spec_claims.clear();
        jsonwebtoken::decode::<Value>(token, &self.decoding, &v).ok().map(|d| d.claims)
    }
}

/// A legacy token is valid while its Secret holds it and its service account has the uid it
/// names, neither being deleted.
fn authenticate_legacy(server: &ApiServer, token: &str) -> Option<UserInfo> {
    let claims = server.sa_tokens.get()?.verify_legacy(token)?;
    let ns = claims.get("kubernetes.io/serviceaccount/namespace")?.as_str()?;
    let secret_name = claims.get("kubernetes.io/serviceaccount/secret.name")?.as_str()?;
    let sa_name = claims.get("kubernetes.io/serviceaccount/service-account.name")?.as_str()?;
    let sa_uid = claims.get("kubernetes.io/serviceaccount/service-account.uid")?.as_str()?;
    let secret = get_object(server, &format!("/registry/core/secrets/{ns}/{secret_name}"))?;
    if being_deleted(&secret) {
        return None;
    }
    let stored = secret.pointer("/data/token").and_then(Value::as_str)?;
    if base64::engine::general_purpose::STANDARD.decode(stored).ok()? != token.as_bytes() {
        return None;
    }
    let sa = get_object(server, &format!("/registry/core/serviceaccounts/{ns}/{sa_name}"))?;
    if sa.pointer("/metadata/uid").and_then(Value::as_str) != Some(sa_uid) || being_deleted(&sa) {
        return None;
    }
    Some(UserInfo::authenticated(
        format!("system:serviceaccount:{ns}:{sa_name}"),
        sa_uid.to_string(),
        vec!["system:serviceaccounts".into(), format!("system:serviceaccounts:{ns}")],
    ))
}

/// Authenticates a service-account token for a request to this API server (audience
/// [`ISSUER`]), or None if it is not one of ours or no longer valid (the caller answers 401).
pub fn authenticate(server: &ApiServer, token: &str) -> Option<UserInfo> {
    authenticate_for(server, token, &[ISSUER.to_string()]).ok().map(|a| a.user)
}

/// Who a token authenticates, for which of the audiences asked for.
pub struct Authenticated {
    pub user: UserInfo,
    pub audiences: Vec<String>,
}

/// Authenticates a service-account token for `audiences` (TokenReview's `spec.audiences`;
/// a request to this server asks for [`ISSUER`]). The token must name one of them; the
/// answer holds those it names. The error is what TokenReview reports.
pub fn authenticate_for(server: &ApiServer, token: &str, audiences: &[String]) -> Result<Authenticated, String> {
    let invalid = || "invalid bearer token".to_string();
    let issuer = server.sa_tokens.get().ok_or_else(invalid)?;
    let Ok(claims) = issuer.verify(token) else {
        // Legacy tokens carry no audience: they are good for this server's own.
        let user = authenticate_legacy(server, token).ok_or_else(invalid)?;
        return audience_agnostic(user, audiences);
    };
    let token_auds: Vec<String> = match claims.get("aud") {
        Some(Value::String(a)) => vec![a.clone()],
        Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).map(str::to_string).collect(),
        _ => vec![],
    };
    let common: Vec<String> = audiences.iter().filter(|a| token_auds.contains(a)).cloned().collect();
    if common.is_empty() {
        return Err(format!(
            "[invalid bearer token, token audiences {} is invalid for the target audiences {}]",
            go_strings(&token_auds),
            go_strings(audiences)
        ));
    }
    let user = bound_user(server, &claims).ok_or_else(invalid)?;
    Ok(Authenticated { user, audiences: common })
}

/// A token with no audience of its own (static or legacy) is good for the audiences of this
/// server that were asked for, as kube-apiserver's audience-agnostic wrapper has it.
pub fn audience_agnostic(user: UserInfo, audiences: &[String]) -> Result<Authenticated, String> {
    if !audiences.iter().any(|a| a == ISSUER) {
        return Err(format!(
            "[invalid bearer token, token audiences {} is invalid for the target audiences {}]",
            go_strings(&[ISSUER.to_string()]),
            go_strings(audiences)
        ));
    }
    Ok(Authenticated { user, audiences: vec![ISSUER.to_string()] })
}

/// Go's `%q` of a string slice: `["a" "b"]`.
fn go_strings(v: &[String]) -> String {
    format!("[{}]", v.iter().map(|s| format!("{s:?}")).collect::<Vec<_>>().join(" "))
}

/// The service account a verified bound token names, if it and the object the token is
/// bound to still exist with the uids the token names, and their deletion grace is not over.
fn bound_user(server: &ApiServer, claims: &Value) -> Option<UserInfo> {
    let k8s = claims.get("kubernetes.io")?;
    let ns = k8s.get("namespace")?.as_str()?;
    let sa_name = k8s.pointer("/serviceaccount/name")?.as_str()?;
    let sa_uid = k8s.pointer("/serviceaccount/uid")?.as_str()?;
    let sa = get_object(server, &format!("/registry/core/serviceaccounts/{ns}/{sa_name}"))?;
    if sa.pointer("/metadata/uid").and_then(Value::as_str) != Some(sa_uid) || deleted_for_tokens(&sa) {
        return None;
    }
    for (field, plural) in [("pod", "pods"), ("secret", "secrets")] {
        if let Some(bound) = k8s.get(field) {
            let name = bound.get("name")?.as_str()?;
            let obj = get_object(server, &format!("/registry/core/{plural}/{ns}/{name}"))?;
            if obj.pointer("/metadata/uid") != bound.get("uid") || deleted_for_tokens(&obj) {
                return None;
            }
        }
    }
    let mut user = UserInfo::authenticated(
        format!("system:serviceaccount:{ns}:{sa_name}"),
        sa_uid.to_string(),
        vec!["system:serviceaccounts".into(), format!("system:serviceaccounts:{ns}")],
    );
    // What the token is bound to, as kube-apiserver reports it (pkg/serviceaccount: the
    // pod's and node's name and uid, the token's id as `JTI=<jti>`).
    let mut extra = |key: &str, v: Option<&Value>| {
        if let Some(s) = v.and_then(Value::as_str).filter(|s| !s.is_empty()) {
            user.extra.insert(format!("authentication.kubernetes.io/{key}"), vec![s.to_string()]);
        }
    };
    extra("pod-name", k8s.pointer("/pod/name"));
    extra("pod-uid", k8s.pointer("/pod/uid"));
    extra("node-name", k8s.pointer("/node/name"));
    extra("node-uid", k8s.pointer("/node/uid"));
    if let Some(jti) = claims.get("jti").and_then(Value::as_str).filter(|s| !s.is_empty()) {
        user.extra.insert("authentication.kubernetes.io/credential-id".into(), vec![format!("JTI={jti}")]);
    }
    Some(user)
}

/// `/.well-known/openid-configuration` for an API server reached at `server_url`.
pub fn openid_configuration(server_url: &str) -> Value {
    json!({
        "issuer": ISSUER,
        "jwks_uri": format!("{server_url}/openid/v1/jwks"),
        "response_types_supported": ["id_token"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["ES256"],
    })
}

/// `/openid/v1/jwks`: the key that verifies service-account tokens.
pub fn jwks(server: &ApiServer) -> Value {
    let keys: Vec<Value> = server.sa_tokens.get().map(|t| t.jwk.clone()).into_iter().collect();
    json!({"keys": keys})
}

#[cfg(test)]
mod tests {
    use super::*;

    fn issuer() -> TokenIssuer {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        TokenIssuer::new(&key.serialize_pem(), &key.public_key_pem()).unwrap()
    }

    fn claims(aud: &str, iat: i64, exp: i64) -> Value {
        json!({"aud": [aud], "exp": exp, "iat": iat, "nbf": iat, "iss": ISSUER, "sub": "system:serviceaccount:a:b"})
    }

    #[test]
    fn verification_rules() {
        let t = issuer();
        let n = now();
        let good = t.sign(&claims(ISSUER, n, n + 600)).unwrap();
        assert!(t.verify(&good).is_ok());
        assert!(t.verify(&good).is_ok(), "cached");
        let expired = t.sign(&claims(ISSUER, n - 1200, n - 600)).unwrap();
        assert!(t.verify(&expired).is_err());
        let early = t.sign(&claims(ISSUER, n + 600, n + 1200)).unwrap();
        assert!(t.verify(&early).is_err(), "not valid before nbf");
        // The audience is the caller's to check (TokenReview asks for others), but it must
        // be there, as must the issuer.
        let foreign_aud = t.sign(&claims("https://elsewhere", n, n + 600)).unwrap();
        assert!(t.verify(&foreign_aud).is_ok());
        for missing in ["aud", "iss", "exp"] {
            let mut c = claims(ISSUER, n, n + 600);
            c.as_object_mut().unwrap().remove(missing);
            assert!(t.verify(&t.sign(&c).unwrap()).is_err(), "{missing} is required");
        }
        let mut c = claims(ISSUER, n, n + 600);
        c["iss"] = json!("https://other-issuer");
        assert!(t.verify(&t.sign(&c).unwrap()).is_err(), "another issuer");
        let other_key = issuer().sign(&claims(ISSUER, n, n + 600)).unwrap();
        assert!(t.verify(&other_key).is_err(), "signed by another key");
        let mut parts: Vec<&str> = good.split('.').collect();
        let forged_payload =
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(claims(ISSUER, n, n + 99_999).to_string());
        parts[1] = &forged_payload;
        assert!(t.verify(&parts.join(".")).is_err(), "re-signed payload");
    }
}
