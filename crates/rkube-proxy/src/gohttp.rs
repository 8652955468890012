//! The parts of Go's `net/http` that decide what `kubectl proxy` answers before a request
//! reaches the API server: `ServeMux` routing (path cleaning and trailing-slash redirects),
//! `http.Error`, `http.Redirect`, `net.SplitHostPort`. Users see these answers, so a
//! drop-in has to give the same ones.

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC};

use crate::Body;

/// What Go's `url.PathEscape`-for-paths keeps: unreserved plus `$&+,/:;=@`.
const PATH_ESCAPE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~')
    .remove(b'$')
    .remove(b'&')
    .remove(b'+')
    .remove(b',')
    .remove(b'/')
    .remove(b':')
    .remove(b';')
    .remove(b'=')
    .remove(b'@');

pub fn escape_path(path: &str) -> String {
    percent_encoding::utf8_percent_encode(path, PATH_ESCAPE).to_string()
}

pub use rkube_stream::relay::path_clean as clean;

/// `net/http`'s `cleanPath`: rooted, cleaned, trailing slash kept.
pub fn clean_path(p: &str) -> String {
    if p.is_empty() {
        return "/".to_string();
    }
    let rooted = if p.starts_with('/') { p.to_string() } else { format!("/{p}") };
    let mut np = clean(&rooted);
    if rooted.ends_with('/') && np != "/" {
        np.push('/');
    }
    np
}

/// `net.SplitHostPort`'s host, or the whole value when it has no valid port part
/// (kubectl's `extractHost`). `[::1]:8001` gives `::1`, `[::1]` stays `[::1]`.
pub fn extract_host(hostport: &str) -> &str {
    split_host(hostport).unwrap_or(hostport)
}

fn split_host(hp: &str) -> Option<&str> {
    let i = hp.rfind(':')?;
    if let Some(rest) = hp.strip_prefix('[') {
        let end = rest.find(']')? + 1;
        if end + 1 != i {
            return None;
        }
        let host = &hp[1..end];
        if host.contains('[') || hp[end + 1..].contains(']') {
            return None;
        }
        Some(host)
    } else {
        let host = &hp[..i];
        if host.contains(':') || host.contains('[') || host.contains(']') {
            return None;
        }
        Some(host)
    }
}

pub fn text(status: StatusCode, body: String) -> Response<Body> {
    let mut r = Response::new(crate::full(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    r.headers_mut().insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    r
}

/// `http.Error`: the message and a newline, as text/plain.
pub fn error(status: StatusCode, msg: &str) -> Response<Body> {
    text(status, format!("{msg}\n"))
}

pub fn not_found() -> Response<Body> {
    error(StatusCode::NOT_FOUND, "404 page not found")
}

pub fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&#34;").replace('\'', "&#39;")
}

/// `http.Redirect(w, r, url, 301)` for an absolute path: a small HTML body for GET only,
/// the HTML content type for GET and HEAD.
pub fn redirect(method: &http::Method, location: &str) -> Response<Body> {
    let body = if method == http::Method::GET {
        format!("<a href=\"{}\">Moved Permanently</a>.\n\n", html_escape(location))
    } else {
        String::new()
    };
    let mut r = Response::new(crate::full(Bytes::from(body)));
    *r.status_mut() = StatusCode::MOVED_PERMANENTLY;
    if let Ok(v) = HeaderValue::from_str(location) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    if method == http::Method::GET || method == http::Method::HEAD {
        r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    }
    r
}

/// Which handler of the proxy's mux takes a request.
#[derive(Debug, PartialEq, Eq)]
pub enum Route {
    Api,
    Static,
    /// 301 to this location (path and query, escaped).
    Redirect(String),
    NotFound,
}

/// Go 1.22's `ServeMux` with the proxy's two subtree patterns (`api_prefix` and, with
/// `--www`, `static_prefix`; both end in `/`). The longest matching pattern wins.
pub fn route(
    method: &http::Method,
    path: &str,
    query: Option<&str>,
    api_prefix: &str,
    static_prefix: Option<&str>,
) -> Route {
    let patterns = [Some((api_prefix, true)), static_prefix.map(|s| (s, false))];
    let longest = |p: &str| {
        patterns.iter().flatten().filter(|(pat, _)| p.starts_with(pat)).max_by_key(|(pat, _)| pat.len()).copied()
    };
    let with_query = |p: String| match query {
        Some(q) => format!("{}?{q}", escape_path(&p)),
        None => escape_path(&p),
    };
    let cleaned = if method == http::Method::CONNECT { path.to_string() } else { clean_path(path) };
    let found = longest(&cleaned);
    if found.is_none_or(|(pat, _)| pat != cleaned) && !cleaned.ends_with('/') {
        let slash = format!("{cleaned}/");
        if longest(&slash).is_some_and(|(pat, _)| pat == slash) {
            return Route::Redirect(with_query(format!("{}/", clean_path(path))));
        }
    }
    if cleaned != path {
        return Route::Redirect(with_query(cleaned));
    }
    match found {
        Some((_, true)) => Route::Api,
        Some((_, false)) => Route::Static,
        None => Route::NotFound,
    }
}

/// kubectl's `stripLeaveSlash` for an API prefix that does not start with `/api`: the prefix
/// comes off and a leading slash is kept. `None` when the prefix does not match.
pub fn strip_leave_slash(prefix: &str, path: &str) -> Option<String> {
    let rest = path.strip_prefix(prefix)?;
    if rest.is_empty() || rest.starts_with('/') {
        Some(rest.to_string())
    } else {
        Some(format!("/{rest}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::Method;

    #[test]
    fn clean_like_go() {
        for (i, o) in [
            ("", "/"),
            ("/", "/"),
            ("//api", "/api"),
            ("/api/../api/v1", "/api/v1"),
            ("/a/./b/", "/a/b/"),
            ("/..", "/"),
            ("api", "/api"),
            ("/a//b//", "/a/b/"),
        ] {
            assert_eq!(clean_path(i), o, "{i}");
        }
    }

    #[test]
    fn host_like_kubectl() {
        assert_eq!(extract_host("localhost:8001"), "localhost");
        assert_eq!(extract_host("localhost"), "localhost");
        assert_eq!(extract_host("[::1]:8001"), "::1");
        assert_eq!(extract_host("[::1]"), "[::1]");
        assert_eq!(extract_host("::1"), "::1");
        assert_eq!(extract_host("a:b:c"), "a:b:c");
        assert_eq!(extract_host("127.0.0.1:"), "127.0.0.1");
    }

    #[test]
    fn mux_like_go() {
        let get = Method::GET;
        assert_eq!(route(&get, "/api/v1", None, "/", None), Route::Api);
        assert_eq!(route(&get, "//api", Some("a=b"), "/", None), Route::Redirect("/api?a=b".into()));
        assert_eq!(route(&get, "/static", None, "/", None), Route::Api);
        assert_eq!(route(&get, "/static", None, "/", Some("/static/")), Route::Redirect("/static/".into()));
        assert_eq!(route(&get, "/static/x", None, "/", Some("/static/")), Route::Static);
        assert_eq!(route(&get, "/api", None, "/api/", None), Route::Redirect("/api/".into()));
        assert_eq!(route(&get, "/apis", None, "/api/", None), Route::NotFound);
        assert_eq!(route(&get, "/a b/../c d", None, "/", None), Route::Redirect("/c%20d".into()));
        // Routing sees the escaped path: an encoded slash is not a separator.
        assert_eq!(route(&get, "/api/v1/x/%2F/q", None, "/", None), Route::Api);
        assert_eq!(route(&get, "//api/%2F", None, "/", None), Route::Redirect("/api/%252F".into()));
    }

    #[test]
    fn strip_keeps_a_slash() {
        assert_eq!(strip_leave_slash("/custom/", "/custom/api/v1").as_deref(), Some("/api/v1"));
        assert_eq!(strip_leave_slash("/custom/", "/custom/").as_deref(), Some(""));
        assert_eq!(strip_leave_slash("/", "/api").as_deref(), Some("/api"));
        assert_eq!(strip_leave_slash("/custom/", "/other"), None);
    }
}
