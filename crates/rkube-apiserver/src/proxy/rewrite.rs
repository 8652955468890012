//! What kube-apiserver's proxy transport does to an answer (apimachinery
//! `util/proxy/transport.go`): a redirect's `Location`, and the links of an HTML page, that
//! point at the backend itself (an absolute path, or a URL naming the backend's or the
//! request's host) are made to go through the proxy path, so a page opened through
//! `services/NAME:PORT/proxy/` keeps working in a browser. Other links, relative ones
//! included, are left as they are; so is a page in an encoding other than gzip or deflate.
//!
//! Deliberate differences: the page is rewritten in place (only the changed attribute
//! values), where upstream prints every tag of the table anew; a page larger than
//! [`HTML_MAX_BYTES`] is passed on unchanged, where upstream rewrites any size in memory.

use std::io::{Read, Write};

/// The largest HTML page rewritten (decoded); a larger one goes through as it came.
pub const HTML_MAX_BYTES: usize = 16 << 20;

/// The elements and attributes that hold URLs, as upstream's table lists them.
const URL_ATTRS: &[(&str, &[&str])] = &[
    ("a", &["href"]),
    ("applet", &["codebase"]),
    ("area", &["href"]),
    ("audio", &["src"]),
    ("base", &["href"]),
    ("blockquote", &["cite"]),
    ("body", &["background"]),
    ("button", &["formaction"]),
    ("command", &["icon"]),
    ("del", &["cite"]),
    ("embed", &["src"]),
    ("form", &["action"]),
    ("frame", &["longdesc", "src"]),
    ("head", &["profile"]),
    ("html", &["manifest"]),
    ("iframe", &["longdesc", "src"]),
    ("img", &["longdesc", "src", "usemap"]),
    ("input", &["src", "usemap", "formaction"]),
    ("ins", &["cite"]),
    ("link", &["href"]),
    ("object", &["classid", "codebase", "data", "usemap"]),
    ("q", &["cite"]),
    ("script", &["src"]),
    ("source", &["src"]),
    ("video", &["poster", "src"]),
];

/// One proxied request's rewriting rules.
pub struct Rewriter {
    /// The proxy path in front of the backend's paths
    /// (`/api/v1/namespaces/NS/services/NAME:PORT/proxy`).
    pub prepend: String,
    /// The backend's `host:port` as dialled.
    pub backend_host: String,
    /// The Host the client asked for (`localhost:8001` through `kubectl proxy`).
    pub request_host: String,
}

/// A URL reference split as Go's `url.Parse` splits it.
struct Parts<'a> {
    host: Option<&'a str>,
    path: &'a str,
    /// `?query#fragment`, as written.
    rest: &'a str,
}

fn split(u: &str) -> Option<Parts<'_>> {
    if u.bytes().any(|b| b < 0x20 || b == 0x7f) {
        return None;
    }
    let mut s = u;
    // A scheme: a letter, then letters, digits, '+', '-', '.' up to ':'.
    if let Some(i) = s.find(':') {
        let scheme = &s[..i];
        let is_scheme = scheme.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
            && scheme.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
        let before_path = !scheme.contains(['/', '?', '#']);
        if is_scheme {
            s = &s[i + 1..];
            if !s.starts_with('/') {
                // Opaque (`mailto:x`): no path, so never rewritten.
                return Some(Parts { host: None, path: "", rest: "" });
            }
        } else if before_path && i == 0 {
            // "missing protocol scheme"
            return None;
        }
    }
    let end = s.find(['?', '#']).unwrap_or(s.len());
    let (mut path, rest) = s.split_at(end);
    let mut host = None;
    if let Some(after) = path.strip_prefix("//") {
        let cut = after.find('/').unwrap_or(after.len());
        let authority = &after[..cut];
        // Userinfo is not part of the host.
        host = Some(authority.rsplit_once('@').map_or(authority, |(_, h)| h));
        path = &after[cut..];
    }
    Some(Parts { host, path, rest })
}

/// Go's `path.Join(a, b)`.
pub fn clean_join(a: &str, b: &str) -> String {
    rkube_stream::relay::path_clean(&format!("{a}/{b}"))
}

impl Rewriter {
    /// `rewriteURL`: a URL of the backend (no host, or the backend's or the request's host,
    /// and an absolute path) becomes the proxy path to it; anything else is kept.
    pub fn url(&self, u: &str) -> String {
        let Some(p) = split(u) else { return u.to_string() };
        let other_host = p.host.is_some_and(|h| !h.is_empty() && h != self.backend_host && h != self.request_host);
        if other_host || !p.path.starts_with('/') {
            return u.to_string();
        }
        if p.path.starts_with(&self.prepend) {
            return format!("{}{}", p.path, p.rest);
        }
        let mut path = clean_join(&self.prepend, p.path);
        if p.path.ends_with('/') && !path.ends_with('/') {
            path.push('/');
        }
        format!("{path}{}", p.rest)
    }

    /// The page with its links rewritten (`rewriteHTML`; the page is taken as UTF-8).
    pub fn html(&self, page: &[u8]) -> Result<Vec<u8>, String> {
        let mut out = Vec::with_capacity(page.len() + page.len() / 8);
        // One handler for every element: its URL attributes from the table.
        let handlers = vec![lol_html::element!("*", |el| {
            let tag = el.tag_name();
            let Some((_, attrs)) = URL_ATTRS.iter().find(|(t, _)| *t == tag) else { return Ok(()) };
            for attr in *attrs {
                if let Some(v) = el.get_attribute(attr) {
                    let new = self.url(&v);
                    if new != v {
                        el.set_attribute(attr, &new)?;
                    }
                }
            }
            Ok(())
        })];
        let settings = lol_html::Settings { element_content_handlers: handlers, ..lol_html::Settings::new() };
        let mut rewriter = lol_html::HtmlRewriter::new(settings, |chunk: &[u8]| out.extend_from_slice(chunk));
        rewriter.write(page).map_err(|e| e.to_string())?;
        rewriter.end().map_err(|e| e.to_string())?;
        Ok(out)
    }

    /// An HTML answer's body rewritten under its Content-Encoding (none, gzip or deflate);
    /// None when it cannot be (another encoding, a body that does not decode, a page over
    /// [`HTML_MAX_BYTES`]): it then goes on unchanged.
    pub fn body(&self, encoding: &str, body: &[u8]) -> Option<Vec<u8>> {
        let limit = HTML_MAX_BYTES as u64 + 1;
        let mut page = Vec::new();
        match encoding {
            "" => page.extend_from_slice(body),
            "gzip" => {
                flate2::read::GzDecoder::new(body).take(limit).read_to_end(&mut page).ok()?;
            }
            "deflate" => {
                flate2::read::DeflateDecoder::new(body).take(limit).read_to_end(&mut page).ok()?;
            }
            _ => return None,
        }
        if page.len() > HTML_MAX_BYTES {
            return None;
        }
        let page = self.html(&page).ok()?;
        match encoding {
            "gzip" => {
                let mut w = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
                w.write_all(&page).ok()?;
                w.finish().ok()
            }
            "deflate" => {
                let mut w = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::best());
                w.write_all(&page).ok()?;
                w.finish().ok()
            }
            _ => Some(page),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rw() -> Rewriter {
        Rewriter {
            prepend: "/api/v1/namespaces/default/services/web:80/proxy".into(),
            backend_host: "10.244.1.5:8080".into(),
            request_host: "localhost:8001".into(),
        }
    }

    #[test]
    fn urls_of_the_backend_go_through_the_proxy_path() {
        let r = rw();
        let p = "/api/v1/namespaces/default/services/web:80/proxy";
        for (from, to) in [
            ("/style.css", format!("{p}/style.css")),
            ("/dir/", format!("{p}/dir/")),
            ("/a/../b?x=1#top", format!("{p}/b?x=1#top")),
            ("http://10.244.1.5:8080/x", format!("{p}/x")),
            ("http://localhost:8001/y/", format!("{p}/y/")),
            ("//localhost:8001/z", format!("{p}/z")),
            (&format!("{p}/already"), format!("{p}/already")),
            ("http://user@10.244.1.5:8080/u", format!("{p}/u")),
        ] {
            assert_eq!(r.url(from), to, "{from}");
        }
        for kept in [
            "style.css",
            "../up",
            "http://example.com/x",
            "mailto:a@b",
            "#frag",
            "?q=1",
            "http://10.244.1.5:8080",
            ":bad",
        ] {
            assert_eq!(r.url(kept), kept);
        }
    }

    #[test]
    fn html_links_are_rewritten_in_place() {
        let page = br#"<!doctype html><html><head><link rel="stylesheet" href="/s.css"><base href="/b/"></head>
<body background="/bg.png"><a href="/x?a=1&amp;b=2">x</a> <a href="rel">r</a> <img src='/i.png' alt="/not">
<form action="/post"><input type="image" src="/in.png" formaction="http://example.com/f"></form>
<script src="/app.js"></script><p data-src="/no">/text</p></body></html>"#;
        let out = String::from_utf8(rw().html(page).unwrap()).unwrap();
        let p = "/api/v1/namespaces/default/services/web:80/proxy";
        for want in [
            format!(r#"href="{p}/s.css""#),
            format!(r#"<base href="{p}/b/">"#),
            format!(r#"background="{p}/bg.png""#),
            format!(r#"href="{p}/x?a=1&amp;b=2""#),
            r#"href="rel""#.to_string(),
            format!(r#"src="{p}/i.png""#),
            r#"alt="/not""#.into(),
            format!(r#"action="{p}/post""#),
            format!(r#"src="{p}/in.png""#),
            r#"formaction="http://example.com/f""#.into(),
            format!(r#"<script src="{p}/app.js">"#),
            r#"<p data-src="/no">/text</p>"#.into(),
        ] {
            assert!(out.contains(&want), "{want} not in {out}");
        }
    }

    #[test]
    fn encoded_pages_are_decoded_rewritten_and_encoded_again() {
        let page = br#"<a href="/x">x</a>"#;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(page).unwrap();
        let body = rw().body("gzip", &gz.finish().unwrap()).unwrap();
        let mut text = String::new();
        flate2::read::GzDecoder::new(&body[..]).read_to_string(&mut text).unwrap();
        assert_eq!(text, r#"<a href="/api/v1/namespaces/default/services/web:80/proxy/x">x</a>"#);
        assert!(rw().body("br", page).is_none(), "an encoding not understood is left alone");
        assert!(rw().body("gzip", b"not gzip").is_none());
    }
}
