//! kubectl proxy's request filter: comma-separated lists of regular expressions over the
//! path, the method and the Host header's host part, evaluated in kubectl's order:
//! reject-paths, then reject-methods, then accept-paths AND accept-hosts.
//!
//! Go's `regexp.MatchString` is an unanchored search; so is `regex::Regex::is_match`.

use regex::Regex;

pub const DEFAULT_ACCEPT_HOSTS: &str = r"^localhost$,^127\.0\.0\.1$,^\[::1\]$";
pub const DEFAULT_ACCEPT_PATHS: &str = "^.*";
pub const DEFAULT_REJECT_PATHS: &str = "^/api/.*/pods/.*/exec,^/api/.*/pods/.*/attach";
pub const DEFAULT_REJECT_METHODS: &str = "^$";

#[derive(Debug, Clone)]
pub struct Filter {
    pub accept_paths: Vec<Regex>,
    pub reject_paths: Vec<Regex>,
    pub accept_hosts: Vec<Regex>,
    pub reject_methods: Vec<Regex>,
}

/// Splits on every comma as kubectl does (a comma inside an expression cannot be written);
/// an empty flag is an empty list.
pub fn regexp_list(flag: &str, value: &str) -> Result<Vec<Regex>, String> {
    if value.is_empty() {
        return Ok(Vec::new());
    }
    value
        .split(',')
        .map(|part| Regex::new(part).map_err(|e| format!("invalid regular expression {part:?} in --{flag}: {e}")))
        .collect()
}

fn matches(s: &str, list: &[Regex]) -> bool {
    list.iter().any(|re| re.is_match(s))
}

impl Filter {
    pub fn new(
        accept_paths: &str,
        reject_paths: &str,
        accept_hosts: &str,
        reject_methods: &str,
    ) -> Result<Filter, String> {
        Ok(Filter {
            accept_paths: regexp_list("accept-paths", accept_paths)?,
            reject_paths: regexp_list("reject-paths", reject_paths)?,
            accept_hosts: regexp_list("accept-hosts", accept_hosts)?,
            reject_methods: regexp_list("reject-methods", reject_methods)?,
        })
    }

    /// `path` is the decoded path after the API prefix is stripped; `host` is the Host
    /// header without its port (see [`crate::gohttp::extract_host`]).
    pub fn accept(&self, method: &str, path: &str, host: &str) -> bool {
        if matches(path, &self.reject_paths) || matches(method, &self.reject_methods) {
            return false;
        }
        matches(path, &self.accept_paths) && matches(host, &self.accept_hosts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn default() -> Filter {
        Filter::new(DEFAULT_ACCEPT_PATHS, DEFAULT_REJECT_PATHS, DEFAULT_ACCEPT_HOSTS, DEFAULT_REJECT_METHODS).unwrap()
    }

    #[test]
    fn defaults_as_kubectl() {
        let f = default();
        assert!(f.accept("GET", "/api/v1/pods", "localhost"));
        assert!(f.accept("GET", "/api/v1/pods", "127.0.0.1"));
        assert!(f.accept("GET", "/api/v1/pods", "[::1]"));
        assert!(!f.accept("GET", "/api/v1/pods", "::1"), "Go's SplitHostPort strips the brackets");
        assert!(!f.accept("GET", "/api/v1/pods", "evil.example"));
        assert!(!f.accept("GET", "/api/v1/pods", "localhost.evil.example"));
        assert!(!f.accept("POST", "/api/v1/namespaces/a/pods/p/exec", "localhost"));
        assert!(!f.accept("GET", "/api/v1/namespaces/a/pods/p/attach", "localhost"));
        assert!(f.accept("GET", "/api/v1/namespaces/a/pods/p/log", "localhost"));
        assert!(f.accept("GET", "", "localhost"));
    }

    #[test]
    fn seed_reject_paths_is_a_prefix_search() {
        let f =
            Filter::new(DEFAULT_ACCEPT_PATHS, "^/api/v1/pod", DEFAULT_ACCEPT_HOSTS, DEFAULT_REJECT_METHODS).unwrap();
        assert!(!f.accept("GET", "/api/v1/pods", "localhost"));
        assert!(!f.accept("GET", "/api/v1/podtemplates", "localhost"));
        assert!(f.accept("GET", "/api/v1/configmaps", "localhost"));
    }

    #[test]
    fn reject_methods_and_empty_lists() {
        let f = Filter::new("", "", DEFAULT_ACCEPT_HOSTS, "POST,PUT,PATCH").unwrap();
        assert!(!f.accept("GET", "/api", "localhost"), "an empty accept list accepts nothing");
        let f = Filter::new("^.*", "", "^.*", "POST,PUT,PATCH").unwrap();
        assert!(f.accept("GET", "/api", "anything"));
        assert!(!f.accept("POST", "/api", "anything"));
        assert!(!f.accept("DELETEPOST", "/api", "anything"), "unanchored, as in Go");
    }

    #[test]
    fn bad_expression_names_the_flag() {
        let e = Filter::new("(", "", "", "").unwrap_err();
        assert!(e.contains("--accept-paths") && e.contains("\"(\""), "{e}");
    }
}
