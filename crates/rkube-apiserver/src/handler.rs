//! The entry point of every request: authenticate, authorize, route (resource requests to
//! the registry, the rest to discovery, OpenAPI, health, version, metrics), record
//! metrics. Errors become `Status` answers here and nowhere else.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use http::{header, Request, Response, StatusCode};
use hyper::body::Incoming;
use rkube_api::ApiError;

use crate::authn::{ClientCert, UserInfo};
use crate::codec::{self, Body, Negotiated};
use crate::registry::{self, Query};
use crate::request_info::{self, RequestInfo};
use crate::{discovery, ApiServer};

pub async fn handle(
    server: Arc<ApiServer>,
    req: Request<Incoming>,
    cert_user: ClientCert,
    peer: SocketAddr,
    identity: &std::sync::OnceLock<(String, bool)>,
) -> Response<Body> {
    let started = Instant::now();
    let (mut parts, body) = req.into_parts();
    // An upgrade (exec, attach, port-forward) is taken over only once authorized.
    let upgrade = parts.extensions.remove::<hyper::upgrade::OnUpgrade>();
    let neg = codec::negotiate(&parts.headers);
    let query = Query::parse(parts.uri.query());
    let path = parts.uri.path().to_string();
    let info = request_info::parse(parts.method.as_str(), &path, query.flag("watch"));
    let takes_body =
        matches!(parts.method, http::Method::POST | http::Method::PUT | http::Method::PATCH | http::Method::DELETE);
    let mut body = takes_body.then_some(body);
    let mut authorized = false;
    // kube-apiserver's filter order: authentication, impersonation, in-flight limits,
    // authorization; only then is a body read. A refused request costs no body memory.
    let result = async {
        let user = authenticate(&server, &parts.headers, cert_user)?;
        // The connection's first identity (the cap closes one's connections before others').
        if identity.get().is_none() && !user.is_anonymous() {
            let _ = identity.set((user.name.clone(), user.in_group("system:masters")));
        }
        let user = crate::authz::impersonate(&server, user, &parts.headers)?;
        let _permit = admit_inflight(&server, &parts.method, &info, &user)?;
        crate::authz::authorize(&server, &user, &info)?;
        authorized = true;
        if info.is_resource {
            let read = match body.as_mut() {
                Some(b) => {
                    let charged = (!user.in_group("system:masters")).then_some(user.name.as_str());
                    Some(crate::body::read(&server.body_budget, charged, &parts.headers, b).await?)
                }
                None => None,
            };
            let bytes = read.as_ref().map(|r| r.bytes.clone()).unwrap_or_default();
            let request = registry::Request {
                method: &parts.method,
                headers: &parts.headers,
                upgrade,
                raw_query: parts.uri.query(),
                authority: parts.uri.authority().map(|a| a.as_str()),
                peer,
            };
            registry::handle(&server, &info, &query, &neg, request, &user, bytes).await
        } else {
            // Discovery and OpenAPI documents are served as JSON only.
            let accept = parts.headers.get(http::header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or("");
            non_resource(&server, &info, &query, &neg.json(), &user, accept).await
        }
    }
    .await;
    if let (Err(_), Some(b)) = (&result, body.take()) {
        // Answered at once; what the client still sends is read and dropped meanwhile.
        let max = if authorized { crate::body::DRAIN_AUTHORIZED_BYTES } else { crate::body::DRAIN_BYTES };
        tokio::spawn(crate::body::drain(b, max));
    }
    let resp = match result {
        Ok(r) => r,
        Err(e) => codec::error_response(&e, &neg),
    };
    let resource = if info.is_resource {
        match &info.subresource {
            Some(s) => format!("{}/{}", info.resource, s),
            None => info.resource.clone(),
        }
    } else {
        String::new()
    };
    let verb = if info.is_resource { info.verb.as_str() } else { parts.method.as_str() };
    let content_type = resp.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok());
    server.metrics.record(verb, &resource, resp.status().as_u16(), content_type, started.elapsed().as_secs_f64());
    tracing::debug!(method = %parts.method, %path, code = resp.status().as_u16(), elapsed_us = started.elapsed().as_micros() as u64, "request");
    resp
}

/// kube-apiserver's max-in-flight filter: read-only and mutating requests have their own
/// pools; watches are long-running and not counted; `system:masters` is never refused (a
/// super-user, or the server's own loopback client, must always get an answer).
fn admit_inflight(
    server: &ApiServer,
    method: &http::Method,
    info: &RequestInfo,
    user: &UserInfo,
) -> Result<Option<tokio::sync::OwnedSemaphorePermit>, ApiError> {
    let mutating = !matches!(*method, http::Method::GET | http::Method::HEAD | http::Method::OPTIONS);
    // `BasicLongRunningRequestCheck`: watch and proxy verbs, and these subresources.
    let long_running = matches!(info.verb.as_str(), "watch" | "proxy")
        || matches!(info.subresource.as_deref(), Some("attach" | "exec" | "proxy" | "log" | "portforward"));
    let pool = if long_running {
        None
    } else if mutating {
        server.mutating_inflight.as_ref()
    } else {
        server.readonly_inflight.as_ref()
    };
    let Some(pool) = pool else { return Ok(None) };
    match pool.clone().try_acquire_owned() {
        Ok(p) => Ok(Some(p)),
        Err(_) if user.in_group("system:masters") => Ok(None),
        Err(_) => Err(ApiError::too_many_requests("Too many requests, please try again later.")),
    }
}

/// Who is asking, in kube-apiserver's order: a client certificate signed by the cluster
/// CA, else a bearer token (static, then service account), else anonymous. A presented
/// credential that fails (an untrusted certificate, an unknown token) is a 401 unless a
/// later one succeeds; it never falls back to anonymous.
fn authenticate(server: &ApiServer, headers: &http::HeaderMap, cert: ClientCert) -> Result<UserInfo, ApiError> {
    if let ClientCert::Valid(user) = cert {
        return Ok(user);
    }
    if let Some(auth) = headers.get(header::AUTHORIZATION) {
        let value = auth.to_str().map_err(|_| ApiError::unauthorized())?;
        if let Some(token) = bearer_token(value) {
            if token.is_empty() {
                return Err(ApiError::unauthorized());
            }
            if let Some(u) = server.tokens.lookup(token) {
                return Ok(u.clone());
            }
            return crate::tokens::authenticate(server, token).ok_or_else(ApiError::unauthorized);
        }
    }
    match cert {
        ClientCert::Invalid => Err(ApiError::unauthorized()),
        _ => Ok(UserInfo::anonymous()),
    }
}

/// The token of a bearer `Authorization` value, read as kube-apiserver reads it: trimmed,
/// split on single spaces into at most three parts, the scheme case-insensitive (the Python
/// client sends `bearer`), the token the second part (empty is refused by the caller).
fn bearer_token(value: &str) -> Option<&str> {
    let mut parts = value.trim().splitn(3, ' ');
    let scheme = parts.next()?;
    let token = parts.next()?;
    scheme.eq_ignore_ascii_case("bearer").then_some(token)
}

async fn non_resource(
    server: &Arc<ApiServer>,
    info: &RequestInfo,
    query: &Query,
    neg: &Negotiated,
    user: &UserInfo,
    accept: &str,
) -> Result<Response<Body>, ApiError> {
    if info.verb != "get" && info.verb != "head" {
        return Err(match info.path.as_str() {
            "/" | "/api" | "/apis" | "/version" | "/healthz" | "/livez" | "/readyz" => ApiError::method_not_allowed(),
            _ => ApiError::no_route(),
        });
    }
    let snap = server.table.snapshot();
    let path = info.path.trim_end_matches('/');
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').filter(|s| !s.is_empty()).collect();
    let ok = |v: &serde_json::Value| Ok(codec::json_response(StatusCode::OK, v, neg));
    match parts.as_slice() {
        [] => {
            let _ = user;
            ok(&discovery::root_paths(&snap))
        }
        ["healthz"] | ["livez"] | ["readyz"] => {
            if query.get("verbose").is_some() {
                let name = parts[0];
                let text = format!("[+]ping ok\n[+]log ok\n[+]storage ok\n{name} check passed\n");
                Ok(codec::text_response(StatusCode::OK, text))
            } else {
                Ok(codec::text_response(StatusCode::OK, "ok"))
            }
        }
        ["healthz" | "livez" | "readyz", "ping" | "log" | "storage"] => Ok(codec::text_response(StatusCode::OK, "ok")),
        ["version"] => ok(&discovery::version()),
        ["metrics"] => Ok(codec::text_response(StatusCode::OK, server.metrics.encode())),
        ["api"] => match neg.aggregated_discovery {
            Some(v) => Ok(codec::with_content_type(
                StatusCode::OK,
                discovery::aggregated_content_type(v),
                &discovery::aggregated(&snap, true, v),
                neg,
            )),
            None => {
                let addr = server.advertise.get().map(|a| a.to_string()).unwrap_or_default();
                ok(&discovery::api_versions(&addr))
            }
        },
        ["api", version] => {
            discovery::resource_list(&snap, "", version).map_or_else(|| Err(ApiError::no_route()), |v| ok(&v))
        }
        ["apis"] => match neg.aggregated_discovery {
            Some(v) => Ok(codec::with_content_type(
                StatusCode::OK,
                discovery::aggregated_content_type(v),
                &discovery::aggregated(&snap, false, v),
                neg,
            )),
            None => ok(&discovery::api_group_list(&snap)),
        },
        ["apis", group] => discovery::api_group(&snap, group).map_or_else(|| Err(ApiError::no_route()), |v| ok(&v)),
        ["apis", group, version] => {
            discovery::resource_list(&snap, group, version).map_or_else(|| Err(ApiError::no_route()), |v| ok(&v))
        }
        [".well-known", "openid-configuration"] => {
            let addr = server.advertise.get().map(|a| a.to_string()).unwrap_or_default();
            ok(&crate::tokens::openid_configuration(&format!("https://{addr}")))
        }
        ["openid", "v1", "jwks"] => {
            Ok(codec::with_content_type(StatusCode::OK, "application/jwk-set+json", &crate::tokens::jwks(server), neg))
        }
        ["openapi", "v2"] => {
            let docs = server.openapi.get(&snap);
            if accept.contains("protobuf") {
                Ok(codec::raw_response(StatusCode::OK, rkube_proto::gnostic::MEDIA_TYPE, docs.v2_protobuf.clone()))
            } else {
                ok(&docs.v2_json)
            }
        }
        ["openapi", "v3"] => ok(&server.openapi.get(&snap).index),
        ["openapi", "v3", rest @ ..] => {
            let docs = server.openapi.get(&snap);
            docs.docs.get(&rest.join("/")).map_or_else(|| Err(ApiError::no_route()), ok)
        }
        _ => Err(ApiError::no_route()),
    }
}

#[cfg(test)]
mod tests {
    use super::bearer_token;

    #[test]
    fn bearer_tokens_are_read_as_kube_apiserver_reads_them() {
        assert_eq!(bearer_token("Bearer abc"), Some("abc"));
        assert_eq!(bearer_token("bearer abc"), Some("abc"), "the Python client's spelling");
        assert_eq!(bearer_token("  BEARER abc  "), Some("abc"));
        assert_eq!(bearer_token("Bearer abc def"), Some("abc"));
        assert_eq!(bearer_token("Bearer  abc"), Some(""), "an empty token is refused");
        assert_eq!(bearer_token("Basic abc"), None);
        assert_eq!(bearer_token("Bearer"), None);
    }
}
