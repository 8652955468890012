//! `--www`: static files under `--www-prefix`, answered as Go's `http.FileServer` answers
//! (kubectl proxy uses it): `index.html` for a directory, otherwise an HTML listing;
//! redirects that add or drop the trailing slash; `.../index.html` redirected to `./`;
//! Last-Modified with If-Modified-Since; single byte ranges. Not behind the request filter,
//! as in kubectl. Left out: multi-part ranges and ETag preconditions (the whole file or
//! the first range is served).

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use bytes::Bytes;
use futures_util::TryStreamExt;
use http::{header, HeaderMap, HeaderValue, Method, Response, StatusCode};
use http_body_util::{BodyExt, StreamBody};
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use crate::gohttp::{clean, error, escape_path};
use crate::Body;

fn local_redirect(location: String, query: Option<&str>) -> Response<Body> {
    let location = match query {
        Some(q) if !q.is_empty() => format!("{location}?{q}"),
        _ => location,
    };
    let mut r = Response::new(crate::full(Bytes::new()));
    *r.status_mut() = StatusCode::MOVED_PERMANENTLY;
    if let Ok(v) = HeaderValue::from_str(&location) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}

fn io_error(e: &std::io::Error) -> Response<Body> {
    match e.kind() {
        std::io::ErrorKind::NotFound => crate::gohttp::not_found(),
        std::io::ErrorKind::PermissionDenied => error(StatusCode::FORBIDDEN, "403 Forbidden"),
        _ => error(StatusCode::INTERNAL_SERVER_ERROR, "500 Internal Server Error"),
    }
}

fn base(p: &str) -> &str {
    let t = p.trim_end_matches('/');
    if t.is_empty() {
        return "/";
    }
    t.rsplit('/').next().unwrap_or(t)
}

fn http_date(t: SystemTime) -> String {
    let t: chrono::DateTime<chrono::Utc> = t.into();
    t.format("%a, %d %b %Y %H:%M:%S GMT").to_string()
}

/// True when If-Modified-Since says the client's copy is current (Go compares seconds).
fn not_modified(headers: &HeaderMap, modified: SystemTime) -> bool {
    let Some(ims) = headers.get(header::IF_MODIFIED_SINCE).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let Ok(ims) = chrono::DateTime::parse_from_rfc2822(&ims.replace("GMT", "+0000")) else {
        return false;
    };
    let modified: chrono::DateTime<chrono::Utc> = modified.into();
    modified.timestamp() <= ims.timestamp()
}

fn content_type(name: &str, head: &[u8]) -> &'static str {
    let ext = name.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase()).unwrap_or_default();
    match ext.as_str() {
        "css" => "text/css; charset=utf-8",
        "gif" => "image/gif",
        "htm" | "html" => "text/html; charset=utf-8",
        "jpg" | "jpeg" => "image/jpeg",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "json" => "application/json",
        "pdf" => "application/pdf",
        "png" => "image/png",
        "svg" => "image/svg+xml",
        "wasm" => "application/wasm",
        "webp" => "image/webp",
        "xml" => "text/xml; charset=utf-8",
        "txt" => "text/plain; charset=utf-8",
        _ => sniff(head),
    }
}

/// The common cases of Go's `http.DetectContentType`.
fn sniff(head: &[u8]) -> &'static str {
    let trimmed = head.iter().position(|b| !b" \t\n\x0c\r".contains(b)).map(|i| &head[i..]).unwrap_or(&[]);
    let lower: Vec<u8> = trimmed.iter().take(14).map(|b| b.to_ascii_lowercase()).collect();
    for sig in [&b"<!doctype html"[..], b"<html", b"<head", b"<body", b"<script", b"<title", b"<p", b"<div", b"<!--"] {
        if lower.starts_with(sig) && trimmed.get(sig.len()).is_some_and(|b| *b == b' ' || *b == b'>') {
            return "text/html; charset=utf-8";
        }
    }
    if trimmed.starts_with(b"%PDF-") {
        return "application/pdf";
    }
    if trimmed.starts_with(b"\x89PNG\r\n\x1a\n") {
        return "image/png";
    }
    let binary = head.iter().any(|b| matches!(b, 0x00..=0x08 | 0x0B | 0x0E..=0x1A | 0x1C..=0x1F));
    if binary {
        "application/octet-stream"
    } else {
        "text/plain; charset=utf-8"
    }
}

/// A single `bytes=a-b`, `bytes=a-` or `bytes=-n` range within `size`.
fn single_range(headers: &HeaderMap, size: u64) -> Option<Result<(u64, u64), ()>> {
    let spec = headers.get(header::RANGE)?.to_str().ok()?.strip_prefix("bytes=")?;
    if spec.contains(',') {
        return None;
    }
    let (a, b) = spec.trim().split_once('-')?;
    let range = if a.is_empty() {
        let n: u64 = b.parse().ok()?;
        (size.saturating_sub(n), size)
    } else {
        let start: u64 = a.parse().ok()?;
        let end = if b.is_empty() { size } else { b.parse::<u64>().ok()?.saturating_add(1).min(size) };
        (start, end)
    };
    Some(if range.0 >= size || range.0 >= range.1 { Err(()) } else { Ok(range) })
}

fn dir_listing(dir: &Path) -> std::io::Result<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok())
        .map(|e| {
            let mut n = e.file_name().to_string_lossy().into_owned();
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                n.push('/');
            }
            n
        })
        .collect();
    names.sort();
    let mut out = String::from("<!doctype html>\n<meta name=\"viewport\" content=\"width=device-width\">\n<pre>\n");
    for n in names {
        let mut href = escape_path(&n);
        if n.split('/').next().is_some_and(|first| first.contains(':')) {
            href = format!("./{href}");
        }
        let shown = crate::gohttp::html_escape(&n);
        out.push_str(&format!("<a href=\"{href}\">{shown}</a>\n"));
    }
    out.push_str("</pre>\n");
    Ok(out)
}

/// Serves `url_path` (decoded, the prefix already stripped) from `root`.
pub async fn serve(
    root: &Path,
    url_path: &str,
    query: Option<&str>,
    method: &Method,
    headers: &HeaderMap,
) -> Response<Body> {
    let url_path = if url_path.starts_with('/') { url_path.to_string() } else { format!("/{url_path}") };
    if url_path.ends_with("/index.html") {
        return local_redirect("./".to_string(), query);
    }
    let name = clean(&url_path);
    let full: PathBuf = root.join(name.trim_start_matches('/'));
    let meta = match tokio::fs::metadata(&full).await {
        Ok(m) => m,
        Err(e) => return io_error(&e),
    };
    if meta.is_dir() && !url_path.ends_with('/') {
        return local_redirect(format!("{}/", base(&url_path)), query);
    }
    if !meta.is_dir() && url_path.ends_with('/') {
        let b = base(&url_path);
        let b = if b == "/" || b == "." { "" } else { b };
        return local_redirect(format!("../{b}"), query);
    }
    let (file_path, meta) = if meta.is_dir() {
        let index = full.join("index.html");
        match tokio::fs::metadata(&index).await {
            Ok(m) if !m.is_dir() => (index, m),
            _ => {
                let modified = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
                if not_modified(headers, modified) {
                    return status_only(StatusCode::NOT_MODIFIED);
                }
                let listing = match dir_listing(&full) {
                    Ok(l) => l,
                    Err(e) => return io_error(&e),
                };
                let mut r = Response::new(if method == Method::HEAD {
                    crate::full(Bytes::new())
                } else {
                    crate::full(listing.into())
                });
                let h = r.headers_mut();
                h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
                if let Ok(v) = HeaderValue::from_str(&http_date(modified)) {
                    h.insert(header::LAST_MODIFIED, v);
                }
                return r;
            }
        }
    } else {
        (full, meta)
    };
    let modified = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
    if not_modified(headers, modified) {
        return status_only(StatusCode::NOT_MODIFIED);
    }
    let mut file = match tokio::fs::File::open(&file_path).await {
        Ok(f) => f,
        Err(e) => return io_error(&e),
    };
    let size = meta.len();
    let mut head = vec![0u8; 512.min(size as usize)];
    if file.read_exact(&mut head).await.is_err() || file.seek(std::io::SeekFrom::Start(0)).await.is_err() {
        return error(StatusCode::INTERNAL_SERVER_ERROR, "500 Internal Server Error");
    }
    let ctype = content_type(&file_path.to_string_lossy(), &head);
    let (status, start, end) = match single_range(headers, size) {
        None => (StatusCode::OK, 0, size),
        Some(Ok((a, b))) => (StatusCode::PARTIAL_CONTENT, a, b),
        Some(Err(())) => {
            let mut r = error(StatusCode::RANGE_NOT_SATISFIABLE, "invalid range: failed to overlap");
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{size}")) {
                r.headers_mut().insert(header::CONTENT_RANGE, v);
            }
            return r;
        }
    };
    let body: Body = if method == Method::HEAD {
        crate::full(Bytes::new())
    } else {
        if file.seek(std::io::SeekFrom::Start(start)).await.is_err() {
            return error(StatusCode::INTERNAL_SERVER_ERROR, "500 Internal Server Error");
        }
        let stream = tokio_util::io::ReaderStream::new(file.take(end - start))
            .map_ok(http_body::Frame::data)
            .map_err(|e| -> Box<dyn std::error::Error + Send + Sync> { Box::new(e) });
        StreamBody::new(stream).boxed_unsync()
    };
    let mut r = Response::new(body);
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(ctype));
    if let Ok(v) = HeaderValue::from_str(&http_date(modified)) {
        h.insert(header::LAST_MODIFIED, v);
    }
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(end - start));
    if status == StatusCode::PARTIAL_CONTENT {
        if let Ok(v) = HeaderValue::from_str(&format!("bytes {start}-{}/{size}", end - 1)) {
            h.insert(header::CONTENT_RANGE, v);
        }
    }
    r
}

fn status_only(status: StatusCode) -> Response<Body> {
    let mut r = Response::new(crate::full(Bytes::new()));
    *r.status_mut() = status;
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sniffing() {
        assert_eq!(sniff(b"<!DOCTYPE html><p>"), "text/html; charset=utf-8");
        assert_eq!(sniff(b"hello"), "text/plain; charset=utf-8");
        assert_eq!(sniff(b"\x00\x01"), "application/octet-stream");
        assert_eq!(content_type("a/b.css", b""), "text/css; charset=utf-8");
    }

    #[test]
    fn ranges() {
        let mut h = HeaderMap::new();
        h.insert(header::RANGE, HeaderValue::from_static("bytes=2-4"));
        assert_eq!(single_range(&h, 10), Some(Ok((2, 5))));
        h.insert(header::RANGE, HeaderValue::from_static("bytes=-3"));
        assert_eq!(single_range(&h, 10), Some(Ok((7, 10))));
        h.insert(header::RANGE, HeaderValue::from_static("bytes=20-"));
        assert_eq!(single_range(&h, 10), Some(Err(())));
    }
}
