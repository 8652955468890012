//! Label and field selectors: parsing (with Kubernetes' error messages) and matching.
//!
//! Pure functions over strings and JSON values; the API server calls them for `list`,
//! `watch` and `deletecollection`.

use std::collections::BTreeSet;

use serde_json::Value;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    Equals,
    NotEquals,
    In,
    NotIn,
    Exists,
    DoesNotExist,
    GreaterThan,
    LessThan,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Requirement {
    pub key: String,
    pub op: Op,
    pub values: BTreeSet<String>,
}

/// A parsed label selector; the empty selector matches everything.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LabelSelector {
    pub requirements: Vec<Requirement>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Token {
    Ident(String),
    Eq,
    DoubleEq,
    NotEq,
    Gt,
    Lt,
    Bang,
    Comma,
    Open,
    Close,
    In,
    NotIn,
    End,
}

impl Token {
    fn text(&self) -> String {
        match self {
            Token::Ident(s) => s.clone(),
            Token::Eq => "=".into(),
            Token::DoubleEq => "==".into(),
            Token::NotEq => "!=".into(),
            Token::Gt => ">".into(),
            Token::Lt => "<".into(),
            Token::Bang => "!".into(),
            Token::Comma => ",".into(),
            Token::Open => "(".into(),
            Token::Close => ")".into(),
            Token::In => "in".into(),
            Token::NotIn => "notin".into(),
            Token::End => "".into(),
        }
    }
}

fn lex(s: &str) -> Result<Vec<Token>, String> {
    let chars: Vec<char> = s.chars().collect();
    let mut i = 0;
    let mut out = Vec::new();
    while i < chars.len() {
        let c = chars[i];
        match c {
            ' ' | '\t' | '\n' | '\r' => i += 1,
            '=' => {
                if chars.get(i + 1) == Some(&'=') {
                    out.push(Token::DoubleEq);
                    i += 2;
                } else {
                    out.push(Token::Eq);
                    i += 1;
                }
            }
            '!' => {
                if chars.get(i + 1) == Some(&'=') {
                    out.push(Token::NotEq);
                    i += 2;
                } else {
                    out.push(Token::Bang);
                    i += 1;
                }
            }
            '>' => {
                out.push(Token::Gt);
                i += 1
            }
            '<' => {
                out.push(Token::Lt);
                i += 1
            }
            ',' => {
                out.push(Token::Comma);
                i += 1
            }
            '(' => {
                out.push(Token::Open);
                i += 1
            }
            ')' => {
                out.push(Token::Close);
                i += 1
            }
            _ => {
                let start = i;
                while i < chars.len() && !" \t\n\r=!><,()".contains(chars[i]) {
                    i += 1;
                }
                let word: String = chars[start..i].iter().collect();
                out.push(match word.as_str() {
                    "in" => Token::In,
                    "notin" => Token::NotIn,
                    _ => Token::Ident(word),
                });
            }
        }
    }
    out.push(Token::End);
    Ok(out)
}

struct Parser {
    toks: Vec<Token>,
    pos: usize,
}

impl Parser {
    fn peek(&self) -> &Token {
        &self.toks[self.pos.min(self.toks.len() - 1)]
    }
    fn next(&mut self) -> Token {
        let t = self.peek().clone();
        self.pos += 1;
        t
    }
}

impl LabelSelector {
    /// Parses the `labelSelector` query syntax (`a=b,c!=d,e in (f,g),!h,i`).
    pub fn parse(s: &str) -> Result<LabelSelector, String> {
        let toks = lex(s)?;
        let mut p = Parser { toks, pos: 0 };
        let mut reqs = Vec::new();
        if *p.peek() == Token::End {
            return Ok(LabelSelector::default());
        }
        loop {
            reqs.push(parse_requirement(&mut p)?);
            match p.next() {
                Token::End => break,
                Token::Comma => {
                    if *p.peek() == Token::End {
                        return Err("found '', expected: identifier after ','".into());
                    }
                }
                t => return Err(format!("found '{}', expected: ',' or 'end of string'", t.text())),
            }
        }
        Ok(LabelSelector { requirements: reqs })
    }

    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    /// Builds a selector from a `metav1.LabelSelector` object (matchLabels, matchExpressions).
    pub fn from_object(sel: &Value) -> Result<LabelSelector, String> {
        let mut reqs = Vec::new();
        if let Some(ml) = sel.get("matchLabels").and_then(Value::as_object) {
            for (k, v) in ml {
                let v = v.as_str().ok_or("matchLabels values must be strings")?;
                reqs.push(Requirement { key: k.clone(), op: Op::Equals, values: [v.to_string()].into() });
            }
        }
        if let Some(me) = sel.get("matchExpressions").and_then(Value::as_array) {
            for e in me {
                let key = e.get("key").and_then(Value::as_str).ok_or("matchExpressions key is required")?;
                let values: BTreeSet<String> = e
                    .get("values")
                    .and_then(Value::as_array)
                    .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect())
                    .unwrap_or_default();
                let op = match e.get("operator").and_then(Value::as_str) {
                    Some("In") => Op::In,
                    Some("NotIn") => Op::NotIn,
                    Some("Exists") => Op::Exists,
                    Some("DoesNotExist") => Op::DoesNotExist,
                    other => return Err(format!("{other:?} is not a valid label selector operator")),
                };
                reqs.push(Requirement { key: key.to_string(), op, values });
            }
        }
        Ok(LabelSelector { requirements: reqs })
    }

    /// Whether a label map (`metadata.labels`, possibly absent) matches.
    pub fn matches(&self, labels: Option<&serde_json::Map<String, Value>>) -> bool {
        self.requirements.iter().all(|r| {
            let v = labels.and_then(|l| l.get(&r.key)).and_then(Value::as_str);
            match r.op {
                Op::Equals | Op::In => v.is_some_and(|v| r.values.contains(v)),
                Op::NotEquals | Op::NotIn => v.is_none_or(|v| !r.values.contains(v)),
                Op::Exists => v.is_some(),
                Op::DoesNotExist => v.is_none(),
                Op::GreaterThan | Op::LessThan => {
                    let (Some(v), Some(bound)) = (v.and_then(|v| v.parse::<i64>().ok()), r.values.iter().next()) else {
                        return false;
                    };
                    let Ok(bound) = bound.parse::<i64>() else { return false };
                    if r.op == Op::GreaterThan {
                        v > bound
                    } else {
                        v < bound
                    }
                }
            }
        })
    }
}

fn parse_requirement(p: &mut Parser) -> Result<Requirement, String> {
    let mut negated = false;
    if *p.peek() == Token::Bang {
        p.next();
        negated = true;
    }
    let key = match p.next() {
        Token::Ident(k) => k,
        t => return Err(format!("found '{}', expected: !, identifier, or 'end of string'", t.text())),
    };
    if let Some(msg) = crate::validation::qualified_name(&key).into_iter().next() {
        return Err(format!("key: Invalid value: {key:?}: {msg}"));
    }
    if negated {
        return Ok(Requirement { key, op: Op::DoesNotExist, values: BTreeSet::new() });
    }
    let op = match p.peek() {
        Token::Comma | Token::End => return Ok(Requirement { key, op: Op::Exists, values: BTreeSet::new() }),
        Token::Eq | Token::DoubleEq => Op::Equals,
        Token::NotEq => Op::NotEquals,
        Token::Gt => Op::GreaterThan,
        Token::Lt => Op::LessThan,
        Token::In => Op::In,
        Token::NotIn => Op::NotIn,
        t => return Err(format!("found '{}', expected: in, notin, =, ==, !=, gt, lt", t.text())),
    };
    p.next();
    let mut values = BTreeSet::new();
    match op {
        Op::In | Op::NotIn => {
            if p.next() != Token::Open {
                return Err("found '', expected: '('".into());
            }
            loop {
                match p.next() {
                    Token::Ident(v) => {
                        values.insert(v);
                        match p.next() {
                            Token::Comma => continue,
                            Token::Close => break,
                            t => return Err(format!("found '{}', expected: ',' or ')'", t.text())),
                        }
                    }
                    Token::Close => break,
                    Token::Comma => {
                        values.insert(String::new());
                    }
                    t => return Err(format!("found '{}', expected: ',', ')' or identifier", t.text())),
                }
            }
        }
        _ => match p.peek().clone() {
            Token::Ident(v) => {
                p.next();
                values.insert(v);
            }
            Token::Comma | Token::End => {
                values.insert(String::new());
            }
            t => return Err(format!("found '{}', expected: identifier", t.text())),
        },
    }
    for v in &values {
        if matches!(op, Op::GreaterThan | Op::LessThan) {
            if v.parse::<i64>().is_err() {
                return Err("for 'Gt', 'Lt' operators, the value must be an integer".to_string());
            }
        } else if let Some(msg) = crate::validation::label_value(v).into_iter().next() {
            return Err(format!("values[0][{key}]: Invalid value: {v:?}: {msg}"));
        }
    }
    Ok(Requirement { key, op, values })
}

/// One `fieldSelector` term.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldRequirement {
    pub field: String,
    pub value: String,
    pub negated: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FieldSelector {
    pub requirements: Vec<FieldRequirement>,
}

impl FieldSelector {
    /// Parses `a=b,c!=d,e==f`. Backslash escapes `\,` `\=` `\\` as Kubernetes allows.
    pub fn parse(s: &str) -> Result<FieldSelector, String> {
        let mut reqs = Vec::new();
        if s.trim().is_empty() {
            return Ok(FieldSelector::default());
        }
        for term in split_unescaped(s, ',') {
            let (field, value, negated) = if let Some(i) = find_unescaped(&term, "!=") {
                (&term[..i], &term[i + 2..], true)
            } else if let Some(i) = find_unescaped(&term, "==") {
                (&term[..i], &term[i + 2..], false)
            } else if let Some(i) = find_unescaped(&term, "=") {
                (&term[..i], &term[i + 1..], false)
            } else {
                return Err(format!("invalid selector: '{s}'; can't understand '{term}'"));
            };
            reqs.push(FieldRequirement { field: unescape(field.trim()), value: unescape(value.trim()), negated });
        }
        Ok(FieldSelector { requirements: reqs })
    }

    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    /// Matches against an object; `extract` returns the string value of a supported field.
    pub fn matches(&self, extract: impl Fn(&str) -> Option<String>) -> bool {
        self.requirements.iter().all(|r| {
            let v = extract(&r.field).unwrap_or_default();
            (v == r.value) != r.negated
        })
    }
}

fn split_unescaped(s: &str, sep: char) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut escaped = false;
    for c in s.chars() {
        if escaped {
            cur.push('\\');
            cur.push(c);
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == sep {
            out.push(std::mem::take(&mut cur));
        } else {
            cur.push(c);
        }
    }
    out.push(cur);
    out
}

fn find_unescaped(s: &str, pat: &str) -> Option<usize> {
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' {
            i += 2;
            continue;
        }
        // Bytes, not str: `i` may sit inside a multi-byte character after an escape. A
        // match of the (ASCII) pattern is always at a character boundary.
        if bytes[i..].starts_with(pat.as_bytes()) {
            return Some(i);
        }
        i += 1;
    }
    None
}

fn unescape(s: &str) -> String {
    let mut out = String::new();
    let mut escaped = false;
    for c in s.chars() {
        if escaped {
            out.push(c);
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn m(sel: &str, labels: Value) -> bool {
        LabelSelector::parse(sel).unwrap().matches(labels.as_object())
    }

    #[test]
    fn label_selectors_match_like_kubernetes() {
        let l = json!({"app": "web", "tier": "fe", "n": "5"});
        assert!(m("", l.clone()));
        assert!(m("app=web", l.clone()));
        assert!(m("app==web,tier", l.clone()));
        assert!(!m("app!=web", l.clone()));
        assert!(m("app in (web, db)", l.clone()));
        assert!(!m("app notin (web)", l.clone()));
        assert!(m("!missing", l.clone()));
        assert!(!m("!app", l.clone()));
        assert!(m("n>3,n<6", l.clone()));
        assert!(m("missing!=x", l.clone()));
        assert!(!m("missing=x", json!(null)));
    }

    #[test]
    fn label_selector_errors_match_kubernetes() {
        // shared/reference/kube-apiserver-v1.28.7/errors/bad-selector-400.json: "x in ("
        assert_eq!(LabelSelector::parse("x in (").unwrap_err(), "found '', expected: ',', ')' or identifier");
        assert!(LabelSelector::parse("a=b,").is_err());
        assert!(LabelSelector::parse("=b").is_err());
        assert!(LabelSelector::parse("a=b c").is_err());
        assert!(LabelSelector::parse("a=-bad-").is_err());
    }

    #[test]
    fn field_selectors_with_any_characters() {
        // An escape before a multi-byte character once split it (found by the fuzz run).
        assert!(FieldSelector::parse("\\Ѩ'\tÉ?").is_err(), "no operator");
        let r = FieldSelector::parse("metadata.name=\\éx").unwrap().requirements;
        assert_eq!((r.len(), r[0].field.as_str()), (1, "metadata.name"));
    }

    #[test]
    fn field_selectors() {
        let s = FieldSelector::parse("metadata.name=x,status.phase!=Running").unwrap();
        let obj = |f: &str| match f {
            "metadata.name" => Some("x".to_string()),
            "status.phase" => Some("Pending".to_string()),
            _ => None,
        };
        assert!(s.matches(obj));
        assert!(FieldSelector::parse("nonsense").is_err());
        let e = FieldSelector::parse(r"metadata.name=a\,b").unwrap();
        assert_eq!(e.requirements[0].value, "a,b");
    }
}
