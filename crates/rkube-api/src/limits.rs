//! Bounds on what one request may make the server hold or do. Each bound is checked
//! before the work it bounds, so a refused request costs little. (Strategic merge patch
//! carries its own bound of work, `rkube_patch::WORK_MAX`; transport bounds, such as body
//! size and timeouts, live with the API server.)
//!
//! Where kube-apiserver has the same bound, the number is its number (JSON patch
//! operations and copies, ConfigMap and Secret data); where it has none, the number is
//! chosen so that no object kube-apiserver would store is refused here (see each item).

use serde_json::Value;

/// The deepest nesting of arrays and objects an object may have, counting the object
/// itself as 1. Go's JSON decoder stops at 10,000 levels; serde_json reads 127, so every
/// stored object must stay below that to be read back. 100 leaves room to spare and is far
/// beyond any real object (a CustomResourceDefinition schema 45 properties deep).
pub const DEPTH_MAX: usize = 100;

/// kube-apiserver's bound on the operations of one JSON patch (answered 413).
pub const JSON_PATCH_OPERATIONS_MAX: usize = 10_000;

/// kube-apiserver's bound on the bytes all `copy` operations of one JSON patch may add
/// (its json-patch library's accumulated copy size limit).
pub const JSON_PATCH_COPY_BYTES_MAX: usize = 3 * 1024 * 1024;

/// The most bytes of `data` plus `binaryData` in a ConfigMap, and of `data` in a Secret
/// (kube-apiserver's `MaxSecretSize`, used for both).
pub const CONFIG_DATA_BYTES_MAX: usize = 1024 * 1024;

/// The most bytes one stored object may take in etcd's encoding (protobuf for built-in
/// kinds, JSON for custom resources): etcd's default request limit, which is what
/// kube-apiserver users meet.
pub const STORED_OBJECT_BYTES_MAX: usize = 1536 * 1024;

/// Whether `v` nests deeper than `max` levels of arrays and objects (`v` itself counts as
/// one level if it is an array or object). Walks with an explicit stack, so any input is
/// safe to check.
pub fn depth_exceeds(v: &Value, max: usize) -> bool {
    let mut stack: Vec<(&Value, usize)> = vec![(v, 1)];
    while let Some((v, depth)) = stack.pop() {
        let children: &mut dyn Iterator<Item = &Value> = match v {
            Value::Array(a) => &mut a.iter(),
            Value::Object(m) => &mut m.values(),
            _ => continue,
        };
        if depth > max {
            return true;
        }
        for c in children {
            if matches!(c, Value::Array(_) | Value::Object(_)) {
                stack.push((c, depth + 1));
            }
        }
    }
    false
}

/// What measuring a value found.
pub struct Shape {
    /// Its JSON encoding's length (compact), or more than the budget once past it.
    pub bytes: usize,
    /// Levels of arrays and objects (0 for a scalar).
    pub depth: usize,
}

/// Measures `v` without recursion, stopping once `bytes` exceeds `budget` (the depth is
/// then a lower bound, which is all a refused copy needs).
pub fn shape(v: &Value, budget: usize) -> Shape {
    let mut out = Shape { bytes: 0, depth: 0 };
    let mut stack: Vec<(&Value, usize)> = vec![(v, 1)];
    while let Some((v, level)) = stack.pop() {
        if out.bytes > budget {
            break;
        }
        out.bytes += match v {
            Value::Null => 4,
            Value::Bool(b) => 4 + usize::from(!b),
            Value::Number(n) => number_len(n),
            Value::String(s) => string_len(s),
            Value::Array(a) => {
                out.depth = out.depth.max(level);
                stack.extend(a.iter().map(|c| (c, level + 1)));
                2 + a.len().saturating_sub(1)
            }
            Value::Object(m) => {
                out.depth = out.depth.max(level);
                stack.extend(m.values().map(|c| (c, level + 1)));
                2 + m.len().saturating_sub(1) + m.keys().map(|k| string_len(k) + 1).sum::<usize>()
            }
        };
    }
    out
}

fn number_len(n: &serde_json::Number) -> usize {
    let digits = |mut u: u64| {
        let mut d = 1;
        while u >= 10 {
            u /= 10;
            d += 1;
        }
        d
    };
    if let Some(u) = n.as_u64() {
        digits(u)
    } else if let Some(i) = n.as_i64() {
        1 + digits(i.unsigned_abs())
    } else {
        n.to_string().len()
    }
}

/// A JSON string's encoded length: quotes, two-byte escapes, `\u00XX` for other controls.
fn string_len(s: &str) -> usize {
    2 + s
        .bytes()
        .map(|b| match b {
            b'"' | b'\\' | b'\n' | b'\r' | b'\t' | 0x08 | 0x0c => 2,
            0..=0x1f => 6,
            _ => 1,
        })
        .sum::<usize>()
}

/// The message kube-apiserver's JSON decoder gives for too deep a body.
pub const DEPTH_EXCEEDED_MESSAGE: &str = "exceeded max depth";

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn nested(levels: usize) -> Value {
        let mut v = json!(1);
        for i in 0..levels {
            v = if i % 2 == 0 { json!([v]) } else { json!({ "k": v }) };
        }
        v
    }

    #[test]
    fn measured_sizes_are_the_compact_encoding() {
        for v in [
            json!(null),
            json!(true),
            json!(false),
            json!(-12345),
            json!(u64::MAX),
            json!(1.5e300),
            json!("a\"b\\c\n\u{1}é"),
            json!({"k\"": [1, {"x": []}, {}], "": null}),
            json!([[], [[]], "s"]),
        ] {
            let s = shape(&v, usize::MAX);
            assert_eq!(s.bytes, serde_json::to_string(&v).unwrap().len(), "{v}");
        }
        assert_eq!(shape(&json!({"a": [[1]]}), usize::MAX).depth, 3);
        assert_eq!(shape(&json!(1), usize::MAX).depth, 0);
    }

    #[test]
    fn depth_counts_arrays_and_objects() {
        assert!(!depth_exceeds(&json!(1), 0));
        assert!(depth_exceeds(&json!({}), 0));
        assert!(!depth_exceeds(&json!({}), 1));
        assert!(!depth_exceeds(&nested(DEPTH_MAX), DEPTH_MAX));
        assert!(depth_exceeds(&nested(DEPTH_MAX + 1), DEPTH_MAX));
        // Siblings do not add up; only nesting does.
        let wide = json!({"a": [[1]], "b": {"c": {"d": 1}}, "e": [nested(3)]});
        assert!(!depth_exceeds(&wide, 5));
        assert!(depth_exceeds(&wide, 4));
    }

    #[test]
    fn every_object_within_the_bound_reads_back() {
        // Stored objects are read with serde_json: the bound must be within its limit.
        let text = serde_json::to_string(&nested(DEPTH_MAX)).unwrap();
        assert!(serde_json::from_str::<Value>(&text).is_ok());
    }

    #[test]
    fn a_deep_value_is_checked_without_recursion() {
        // Built by hand: serde_json could not parse it, and dropping it recursively would
        // overflow the stack, so it is taken apart iteratively below.
        let mut v = json!(null);
        for _ in 0..200_000 {
            v = Value::Array(vec![v]);
        }
        assert!(depth_exceeds(&v, DEPTH_MAX));
        let mut cur = v;
        while let Value::Array(mut a) = cur {
            cur = a.pop().unwrap_or(Value::Null);
        }
    }
}
