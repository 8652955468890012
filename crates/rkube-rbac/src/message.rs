//! Messages formatted exactly as kube-apiserver (Go) formats them.

use std::fmt::Write as _;

use crate::{Attributes, User};

/// Go's `%q` for a string (`strconv.Quote`): double quotes, with `"` and `\`
/// escaped, control characters as `\n`, `\t`, `\x00`..., and other
/// non-printable characters as `\u`/`\U` escapes.
///
/// Printability follows Go's `unicode.IsPrint` for everything that shows up
/// in practice (controls, format characters, non-ASCII spaces, private use);
/// unassigned code points are kept as they are.
pub fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{07}' => out.push_str("\\a"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{0b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if !go_printable(c) => {
                if (c as u32) < 0x10000 {
                    let _ = write!(out, "\\u{:04x}", c as u32);
                } else {
                    let _ = write!(out, "\\U{:08x}", c as u32);
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn go_printable(c: char) -> bool {
    let u = c as u32;
    if u < 0x80 {
        return (0x20..0x7f).contains(&u);
    }
    !(c.is_control()
        || matches!(u,
            0x00A0 | 0x00AD | 0x1680 | 0x180E
            | 0x2000..=0x200F | 0x2028..=0x202F | 0x205F..=0x206F
            | 0x3000 | 0xD800..=0xF8FF | 0xFEFF | 0xFFF9..=0xFFFB
            | 0xE0001 | 0xE0020..=0xE007F | 0xF0000..=0x10FFFF))
}

/// Go's `%q` for a `[]string`: `["a" "b"]`.
pub fn go_quote_list(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|s| go_quote(s)).collect();
    format!("[{}]", quoted.join(" "))
}

/// kube's response writer escapes these so a message never looks like HTML.
fn sanitize(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// The message of `apierrors.NewForbidden(groupResource, name, err)`:
/// `forbidden: <err>` without a resource, `<resource>[.<group>] is
/// forbidden: <err>` without a name, `<resource>[.<group>] "<name>" is
/// forbidden: <err>` with one.
pub fn forbidden_status_message(api_group: &str, resource: &str, name: &str, err: &str) -> String {
    if api_group.is_empty() && resource.is_empty() {
        return format!("forbidden: {err}");
    }
    let gr = if api_group.is_empty() { resource.to_string() } else { format!("{resource}.{api_group}") };
    if name.is_empty() {
        format!("{gr} is forbidden: {err}")
    } else {
        format!("{gr} {} is forbidden: {err}", go_quote(name))
    }
}

/// The authorizer-facing sentence (`forbiddenMessage` in kube's
/// `responsewriters/errors.go`).
fn denial_sentence(user: &User, attrs: &Attributes) -> String {
    let who = go_quote(&user.name);
    if !attrs.is_resource {
        return format!("User {who} cannot {} path {}", attrs.verb, go_quote(&attrs.path));
    }
    let resource = if attrs.subresource.is_empty() {
        attrs.resource.clone()
    } else {
        format!("{}/{}", attrs.resource, attrs.subresource)
    };
    let scope = if attrs.namespace.is_empty() {
        "at the cluster scope".to_string()
    } else {
        format!("in the namespace {}", go_quote(&attrs.namespace))
    };
    format!(
        "User {who} cannot {} resource {} in API group {} {scope}",
        attrs.verb,
        go_quote(&resource),
        go_quote(&attrs.api_group),
    )
}

/// Kubernetes' Forbidden message for a denied request, exactly as
/// kube-apiserver writes it into the `Status`, for example
/// `pods is forbidden: User "system:serviceaccount:default:default" cannot list resource "pods" in API group "" in the namespace "default"`
/// or `forbidden: User "system:anonymous" cannot get path "/"`.
pub fn forbidden_message(user: &User, attrs: &Attributes) -> String {
    forbidden_message_with_reason(user, attrs, "")
}

/// [`forbidden_message`] with the authorizer's reason (the string in
/// [`crate::Decision::Deny`]) appended as kube does: `<message>: <reason>`
/// when the reason is not empty.
pub fn forbidden_message_with_reason(user: &User, attrs: &Attributes, reason: &str) -> String {
    let mut err = sanitize(&denial_sentence(user, attrs));
    if !reason.is_empty() {
        err.push_str(": ");
        err.push_str(reason);
    }
    forbidden_status_message(&attrs.api_group, &attrs.resource, &attrs.name, &err)
}

/// `utilerrors.NewAggregate(errs).Error()`: the one message, or
/// `[a, b]` with duplicates dropped.
pub(crate) fn aggregate_errors(errors: &[String]) -> String {
    match errors {
        [] => String::new(),
        [one] => one.clone(),
        many => {
            let mut seen: Vec<&str> = Vec::new();
            for e in many {
                if !seen.contains(&e.as_str()) {
                    seen.push(e);
                }
            }
            if seen.len() == 1 {
                seen[0].to_string()
            } else {
                format!("[{}]", seen.join(", "))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_matches_go() {
        let cases = [
            ("", r#""""#),
            ("plain", r#""plain""#),
            ("a\"b\\c", r#""a\"b\\c""#),
            ("tab\tnl\n", r#""tab\tnl\n""#),
            ("\u{1}", r#""\x01""#),
            ("\u{7f}", r#""\x7f""#),
            ("é日本", "\"é日本\""),
            ("\u{200b}", r#""\u200b""#),
            ("\u{a0}", r#""\u00a0""#),
            ("\u{feff}", r#""\ufeff""#),
        ];
        for (input, want) in cases {
            assert_eq!(go_quote(input), want, "{input:?}");
        }
        assert_eq!(go_quote_list(&["a".to_string(), "".to_string()]), r#"["a" ""]"#);
        assert_eq!(go_quote_list(&[]), "[]");
    }

    #[test]
    fn aggregate_like_utilerrors() {
        assert_eq!(aggregate_errors(&[]), "");
        assert_eq!(aggregate_errors(&["a".into()]), "a");
        assert_eq!(aggregate_errors(&["a".into(), "a".into()]), "a");
        assert_eq!(aggregate_errors(&["a".into(), "b".into(), "a".into()]), "[a, b]");
    }
}
