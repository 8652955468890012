//! Parses a request's method and path into what it asks for (verb, group, version,
//! resource, namespace, name, subresource), as kube-apiserver's RequestInfoFactory does.
//! Pure: no lookups in the resource table happen here.

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RequestInfo {
    /// False for non-resource paths (`/`, `/version`, `/apis`, discovery documents, ...).
    pub is_resource: bool,
    pub path: String,
    /// Kubernetes verb: get, list, watch, create, update, patch, delete, deletecollection,
    /// or for non-resource requests the lowercased HTTP method.
    pub verb: String,
    pub api_prefix: String,
    pub group: String,
    pub version: String,
    pub namespace: Option<String>,
    pub resource: String,
    pub subresource: Option<String>,
    /// What follows the subresource in the path, as sent (`""` or `/...`, a trailing slash
    /// kept): the path a `proxy` subresource forwards; any other subresource has none.
    pub subpath: String,
    pub name: Option<String>,
    /// The resource came after `/namespaces/{namespace}/` in the path. Only namespaced
    /// resources are served there; a cluster-scoped resource under it is a 404, as with
    /// kube-apiserver (`/namespaces/{name}` itself is the namespace object).
    pub namespace_prefix: bool,
}

/// `watch=true`-style query flags as kube-apiserver reads them.
pub fn is_true(v: Option<&str>) -> bool {
    matches!(v, Some("true") | Some("1") | Some("True") | Some("TRUE"))
}

pub fn parse(method: &str, path: &str, watch_param: bool) -> RequestInfo {
    let mut info = RequestInfo { path: path.to_string(), verb: method.to_lowercase(), ..Default::default() };
    let trimmed = path.trim_matches('/');
    let mut parts: Vec<&str> = if trimmed.is_empty() { vec![] } else { trimmed.split('/').collect() };
    if parts.len() < 3 {
        return info; // /, /api, /apis, /api/v1, /apis/g: discovery
    }
    match parts[0] {
        "api" => {
            info.api_prefix = "api".into();
            info.version = parts[1].to_string();
            parts.drain(..2);
        }
        "apis" => {
            if parts.len() < 4 {
                return info; // /apis/g/v
            }
            info.api_prefix = "apis".into();
            info.group = parts[1].to_string();
            info.version = parts[2].to_string();
            parts.drain(..3);
        }
        _ => return info,
    }
    info.is_resource = true;
    let mut watch_path = false;
    if parts.first() == Some(&"watch") {
        watch_path = true;
        parts.remove(0);
    }
    if parts.is_empty() {
        info.is_resource = false;
        return info;
    }
    if parts[0] == "namespaces" && parts.len() > 1 {
        info.namespace = Some(parts[1].to_string());
        if parts.len() > 2 && !matches!(parts[2], "status" | "finalize") {
            parts.drain(..2);
            info.namespace_prefix = true;
        }
    }
    info.resource = parts[0].to_string();
    if parts.len() >= 2 {
        info.name = Some(parts[1].to_string());
    }
    if parts.len() >= 3 {
        info.subresource = Some(parts[2].to_string());
        // The subresource is segment `consumed + 2` of the trimmed path.
        let consumed = trimmed.split('/').count() - parts.len();
        let lead = path.len() - path.trim_start_matches('/').len();
        info.subpath = match trimmed.match_indices('/').nth(consumed + 2) {
            Some((i, _)) => path[lead + i..].to_string(),
            None => path[lead + trimmed.len()..].to_string(),
        };
    }
    if info.resource == "namespaces" && info.name.is_some() && !info.namespace_prefix {
        // /namespaces/{name} addresses the namespace object itself.
        info.namespace = info.name.clone();
    }
    // A proxied request's query is the backend's.
    let watch_param = watch_param && info.subresource.as_deref() != Some("proxy");
    info.verb = match method {
        "GET" | "HEAD" => {
            if watch_path || watch_param {
                "watch"
            } else if info.name.is_some() {
                "get"
            } else {
                "list"
            }
        }
        "POST" => "create",
        "PUT" => "update",
        "PATCH" => "patch",
        "DELETE" => {
            if info.name.is_some() {
                "delete"
            } else {
                "deletecollection"
            }
        }
        other => return RequestInfo { verb: other.to_lowercase(), ..info },
    }
    .to_string();
    info
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        let i = parse("GET", "/api/v1/namespaces/default/pods/p1", false);
        assert_eq!(
            (i.verb.as_str(), i.namespace.as_deref(), i.resource.as_str(), i.name.as_deref()),
            ("get", Some("default"), "pods", Some("p1"))
        );
        let i = parse("GET", "/apis/apps/v1/deployments", false);
        assert_eq!((i.verb.as_str(), i.group.as_str(), i.namespace), ("list", "apps", None));
        let i = parse("GET", "/api/v1/watch/namespaces/x/configmaps", false);
        assert_eq!((i.verb.as_str(), i.resource.as_str()), ("watch", "configmaps"));
        let i = parse("PUT", "/api/v1/namespaces/x/finalize", false);
        assert_eq!(
            (i.resource.as_str(), i.name.as_deref(), i.subresource.as_deref()),
            ("namespaces", Some("x"), Some("finalize"))
        );
        let i = parse("GET", "/api/v1/namespaces/x", false);
        assert_eq!(
            (i.resource.as_str(), i.name.as_deref(), i.namespace.as_deref()),
            ("namespaces", Some("x"), Some("x"))
        );
        let i = parse("GET", "/api/v1/namespaces/x/pods/p:8080/proxy/a//b/", false);
        assert_eq!(
            (i.name.as_deref(), i.subresource.as_deref(), i.subpath.as_str(), i.verb.as_str()),
            (Some("p:8080"), Some("proxy"), "/a//b/", "get")
        );
        let i = parse("POST", "/api/v1/nodes/n/proxy/", false);
        assert_eq!((i.subresource.as_deref(), i.subpath.as_str(), i.verb.as_str()), (Some("proxy"), "/", "create"));
        let i = parse("GET", "/api/v1/watch/namespaces/x/services/s/proxy", false);
        assert_eq!((i.subresource.as_deref(), i.subpath.as_str()), (Some("proxy"), ""));
        let i = parse("GET", "/api/v1/namespaces/x/pods/p/status/more", false);
        assert_eq!((i.subresource.as_deref(), i.subpath.as_str()), (Some("status"), "/more"));
        let i = parse("DELETE", "/api/v1/namespaces/x/pods", false);
        assert_eq!(i.verb, "deletecollection");
        let i = parse("PATCH", "/apis/apps/v1/namespaces/x/deployments/d/scale", false);
        assert_eq!((i.verb.as_str(), i.subresource.as_deref()), ("patch", Some("scale")));
        // A cluster-scoped resource under a namespace keeps the path's namespace (what RBAC
        // is asked about); the registry answers 404 for it.
        let i = parse("GET", "/api/v1/namespaces/default/namespaces/kube-system", false);
        assert_eq!(
            (i.namespace.as_deref(), i.resource.as_str(), i.name.as_deref(), i.namespace_prefix),
            (Some("default"), "namespaces", Some("kube-system"), true)
        );
        assert!(!parse("GET", "/api/v1/namespaces/x/status", false).namespace_prefix);
        assert!(!parse("GET", "/apis/apps/v1", false).is_resource);
        assert!(!parse("GET", "/version", false).is_resource);
    }
}
