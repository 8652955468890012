//! JSON patch (RFC 6902, `application/json-patch+json`), with kube-apiserver's bounds
//! checked before the work they bound: at most [`Limits::operations_max`] operations, and
//! at most [`Limits::copy_bytes_max`] bytes added by all `copy` operations together (each
//! copy's size is measured before the value is copied). The document also never nests
//! deeper than [`Limits::depth_max`]: every operation's effect on the depth is bounded from
//! what it adds and where, without walking the document again.
//!
//! The operations themselves are the `json-patch` crate's.

use rkube_api::limits::shape;
use serde_json::Value;

/// The bounds of one patch.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub operations_max: usize,
    pub copy_bytes_max: usize,
    /// Levels of arrays and objects, the document itself being level 1.
    pub depth_max: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JsonPatchError {
    /// The body is not a list of operations.
    #[error("{0}")]
    Decode(String),
    /// kube-apiserver's message (it answers 413).
    #[error("The allowed maximum operations in a JSON patch is {max}, got {got}")]
    TooManyOperations { max: usize, got: usize },
    /// The words of kube-apiserver's json-patch library.
    #[error("Unable to complete the copy, the accumulated size increase of copy is {size}, exceeding the limit {max}")]
    CopyTooLarge { size: usize, max: usize },
    /// The document would nest deeper than the bound.
    #[error("exceeded max depth")]
    TooDeep,
    /// The operations would move more list elements than [`crate::WORK_MAX`] (adding or
    /// removing at the front of a long list moves all of it, each time).
    #[error("the patch needs more than {max} list element moves; send fewer operations on long lists")]
    TooComplex { max: u64 },
    /// An operation failed (a test did not match, a path does not exist, ...).
    #[error("{0}")]
    Apply(String),
}

/// Applies `patch` (the decoded body) to a copy of `doc`.
pub fn apply(doc: &Value, patch: Value, limits: Limits) -> Result<Value, JsonPatchError> {
    if let Value::Array(ops) = &patch {
        if ops.len() > limits.operations_max {
            return Err(JsonPatchError::TooManyOperations { max: limits.operations_max, got: ops.len() });
        }
    }
    let ops: json_patch::Patch = serde_json::from_value(patch).map_err(|e| JsonPatchError::Decode(e.to_string()))?;
    let mut doc = doc.clone();
    let mut copied = 0usize;
    let mut work = 0u64;
    // An upper bound of the document's depth, kept through every operation.
    let mut depth = shape(&doc, usize::MAX).depth;
    for (i, op) in ops.0.iter().enumerate() {
        use json_patch::PatchOperation as P;
        let segments = |p: &json_patch::jsonptr::Pointer| p.count();
        let grows_to = match op {
            P::Add(o) => segments(&o.path) + shape(&o.value, usize::MAX).depth,
            P::Replace(o) => segments(&o.path) + shape(&o.value, usize::MAX).depth,
            P::Copy(o) => match doc.pointer(o.from.as_str()) {
                // The operation itself reports the missing source.
                None => 0,
                Some(source) => {
                    let s = shape(source, limits.copy_bytes_max - copied);
                    copied = copied.saturating_add(s.bytes);
                    if copied > limits.copy_bytes_max {
                        return Err(JsonPatchError::CopyTooLarge { size: copied, max: limits.copy_bytes_max });
                    }
                    segments(&o.path) + s.depth
                }
            },
            // What moves is at most as deep as the document below `from`.
            P::Move(o) => segments(&o.path) + depth.saturating_sub(segments(&o.from)),
            P::Remove(_) | P::Test(_) => 0,
        };
        depth = depth.max(grows_to);
        if depth > limits.depth_max {
            return Err(JsonPatchError::TooDeep);
        }
        // Inserting into or removing from a list moves its elements.
        let paths: [Option<&json_patch::jsonptr::Pointer>; 2] = match op {
            P::Add(o) => [Some(&o.path), None],
            P::Remove(o) => [Some(&o.path), None],
            P::Copy(o) => [Some(&o.path), None],
            P::Move(o) => [Some(&o.from), Some(&o.path)],
            P::Replace(_) | P::Test(_) => [None, None],
        };
        for p in paths.into_iter().flatten() {
            if let Some(Value::Array(a)) = p.parent().and_then(|parent| doc.pointer(parent.as_str())) {
                work += a.len() as u64;
            }
        }
        if work > crate::WORK_MAX {
            return Err(JsonPatchError::TooComplex { max: crate::WORK_MAX });
        }
        json_patch::patch_unsafe(&mut doc, std::slice::from_ref(op)).map_err(|mut e| {
            e.operation = i;
            JsonPatchError::Apply(e.to_string())
        })?;
    }
    Ok(doc)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const LIMITS: Limits = Limits { operations_max: 10_000, copy_bytes_max: 3 << 20, depth_max: 100 };

    #[test]
    fn operations_are_counted_first() {
        let ops = vec![json!({"op": "test", "path": "/a", "value": 1}); 10_001];
        assert_eq!(
            apply(&json!({"a": 1}), Value::Array(ops), LIMITS),
            Err(JsonPatchError::TooManyOperations { max: 10_000, got: 10_001 })
        );
        let ops = vec![json!({"op": "test", "path": "/a", "value": 1}); 10_000];
        assert!(apply(&json!({"a": 1}), Value::Array(ops), LIMITS).is_ok());
    }

    #[test]
    fn a_doubling_copy_is_refused_before_it_is_made() {
        // 24 copies of a list into itself would need 16 GiB; the bound stops it at 3 MiB.
        let mut ops = vec![json!({"op": "add", "path": "/l", "value": ["a".repeat(1024)]})];
        ops.extend((0..24).map(|_| json!({"op": "copy", "from": "/l", "path": "/l/-"})));
        match apply(&json!({}), Value::Array(ops), LIMITS) {
            Err(JsonPatchError::CopyTooLarge { size, max }) => {
                assert_eq!(max, 3 << 20);
                assert!(size > max && size < 2 * max, "refused at the first copy past the bound: {size}");
            }
            other => panic!("{other:?}"),
        }
        // Copies within the bound work.
        let ops = json!([{"op": "copy", "from": "/a", "path": "/b"}, {"op": "copy", "from": "/a", "path": "/c"}]);
        assert_eq!(apply(&json!({"a": [1]}), ops, LIMITS).unwrap(), json!({"a": [1], "b": [1], "c": [1]}));
    }

    #[test]
    fn depth_is_bounded_through_every_operation() {
        // Each copy nests the document once more.
        let ops: Vec<Value> = (0..200).map(|_| json!({"op": "copy", "from": "/a", "path": "/a/a"})).collect();
        assert_eq!(apply(&json!({"a": {}}), Value::Array(ops), LIMITS), Err(JsonPatchError::TooDeep));
        let deep = (0..99).fold(json!(1), |v, _| json!([v]));
        assert!(apply(&json!({}), json!([{"op": "add", "path": "/x", "value": deep}]), LIMITS).is_ok());
        let deeper = json!([deep]);
        assert_eq!(
            apply(&json!({}), json!([{"op": "add", "path": "/x", "value": deeper}]), LIMITS),
            Err(JsonPatchError::TooDeep)
        );
    }

    #[test]
    fn list_element_moves_are_bounded() {
        // 10,000 removals at the front of a 100,000-element list move 10^9 elements.
        let doc = json!({"l": vec![0; 100_000]});
        let ops = Value::Array(vec![json!({"op": "remove", "path": "/l/0"}); 10_000]);
        assert!(matches!(apply(&doc, ops, LIMITS), Err(JsonPatchError::TooComplex { .. })));
        let ops = Value::Array(vec![json!({"op": "remove", "path": "/l/0"}); 100]);
        assert_eq!(apply(&doc, ops, LIMITS).unwrap()["l"].as_array().map(Vec::len), Some(99_900));
    }

    #[test]
    fn failures_name_their_operation() {
        let ops = json!([{"op": "test", "path": "/a", "value": 1}, {"op": "test", "path": "/a", "value": 2}]);
        let e = apply(&json!({"a": 1}), ops, LIMITS).unwrap_err().to_string();
        assert!(e.contains("operation '/1'"), "{e}");
        assert!(matches!(apply(&json!({}), json!({"op": "x"}), LIMITS), Err(JsonPatchError::Decode(_))));
    }
}
