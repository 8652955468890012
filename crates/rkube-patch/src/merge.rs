//! The merge algorithm.
//!
//! Values are taken by value and rebuilt (`apply` copies the caller's
//! documents once, up front), so nothing the caller passed in is mutated.
//! Object key order is preserved (serde_json's `preserve_order`): existing
//! keys keep their place, new keys are appended, removed keys are
//! shift-removed so the remaining keys do not move.

use std::cell::Cell;

use serde_json::{Map, Value};

use crate::error::PatchError;
use crate::schema::TypeDef;

/// `$patch: replace|delete|merge`, on a map or as a list element.
const DIRECTIVE: &str = "$patch";
/// `$retainKeys: [..]`: keys of the original map to keep.
const RETAIN_KEYS: &str = "$retainKeys";
/// `$deleteFromPrimitiveList/<field>: [..]`: values to remove from a scalar list.
const DELETE_FROM_PRIMITIVE_LIST: &str = "$deleteFromPrimitiveList";
/// `$setElementOrder/<field>: [..]`: the order the merged list should have.
const SET_ELEMENT_ORDER: &str = "$setElementOrder";

/// Go type names, used in error messages to match kube-apiserver's wording.
const GO_MAP: &str = "map[string]interface {}";
const GO_LIST: &str = "[]interface {}";

type Ty = Option<&'static TypeDef>;
type Result<T> = std::result::Result<T, PatchError>;

/// The work a merge may still do. Merging lists compares elements pairwise (sets, merge
/// keys, ordering), so a merge costs up to the product of list lengths; every element
/// visited in a loop and every value a comparison looks at costs one unit. Loops charge
/// before each step and stop with [`PatchError::TooComplex`] once the bound is spent; a
/// comparison that runs out answers "different" at once, and the loop around it stops at
/// its next step.
pub(crate) struct Work {
    left: Cell<u64>,
    max: u64,
    spent: Cell<bool>,
}

impl Work {
    pub(crate) fn new(max: u64) -> Work {
        Work { left: Cell::new(max), max, spent: Cell::new(false) }
    }

    /// Charges `n` units, or fails if fewer are left.
    fn spend(&self, n: usize) -> Result<()> {
        match self.left.get().checked_sub(n as u64) {
            Some(left) if !self.spent.get() => {
                self.left.set(left);
                Ok(())
            }
            _ => {
                self.spent.set(true);
                Err(self.error())
            }
        }
    }

    /// Charges one unit; false once the bound is spent.
    fn step(&self) -> bool {
        self.spend(1).is_ok()
    }

    /// Fails once the bound is spent (loops whose comparisons charge call this each step).
    pub(crate) fn check(&self) -> Result<()> {
        if self.spent.get() {
            Err(self.error())
        } else {
            Ok(())
        }
    }

    fn error(&self) -> PatchError {
        PatchError::TooComplex { max: self.max }
    }
}

/// What the schema says about one field of the map being merged.
#[derive(Clone, Copy, Default)]
struct FieldMeta {
    /// Type of the value (of each element, for lists).
    child: Ty,
    /// Lists: merge instead of replace.
    merge: bool,
    /// Lists of objects: the key identifying elements.
    key: Option<&'static str>,
}

fn field_meta(ty: Ty, name: &str) -> FieldMeta {
    // A field missing from the table is untyped: objects merge key by key,
    // lists are replaced. The table only lists fields that deviate from that.
    ty.and_then(|t| t.field(name))
        .map(|f| FieldMeta { child: f.ty, merge: f.merge, key: f.merge_key })
        .unwrap_or_default()
}

/// Merges `patch` into `original` (both JSON objects) under schema `ty`.
pub(crate) fn merge_map(
    mut original: Map<String, Value>,
    mut patch: Map<String, Value>,
    ty: Ty,
    w: &Work,
) -> Result<Map<String, Value>> {
    w.spend(patch.len())?;
    if let Some(directive) = patch.get(DIRECTIVE) {
        return match directive.as_str() {
            Some("replace") => {
                patch.shift_remove(DIRECTIVE);
                // The patch map becomes the whole value. Merging it into an
                // empty map strips nulls and nested directives, which
                // kube-apiserver leaves for its typed decoding to discard.
                merge_map(Map::new(), patch, ty, w)
            }
            // Kubernetes empties the map rather than removing the field; the
            // field itself only disappears when it did not exist before.
            Some("delete") => Ok(Map::new()),
            _ => Err(unknown_directive(directive, &patch)),
        };
    }

    apply_retain_keys(&mut original, &mut patch, w)?;
    apply_set_element_order(&mut original, &mut patch, ty, w)?;

    // Deletions from scalar lists run after every other key, so a patch that
    // both adds and removes a value in one list gives a deterministic result
    // (Kubernetes iterates a Go map, in random order). With a
    // $setElementOrder for the list, Kubernetes also merges first.
    let mut deletions = Vec::new();
    // Keys to drop, dropped together at the end: one pass over the map, where removing
    // each on its own (keeping the order of the rest) would cost the map's length each.
    let mut removed: Vec<String> = Vec::new();
    for (key, patch_value) in patch {
        if key.starts_with(DELETE_FROM_PRIMITIVE_LIST) {
            let field = directive_field(&key, DELETE_FROM_PRIMITIVE_LIST)?;
            deletions.push((field.to_owned(), patch_value));
            continue;
        }
        if patch_value.is_null() {
            removed.push(key);
            continue;
        }
        let meta = field_meta(ty, &key);
        let replacement = match (original.get_mut(&key), patch_value) {
            (Some(Value::Object(slot)), Value::Object(p)) => {
                let current = std::mem::take(slot);
                *slot = merge_map(current, p, meta.child, w)?;
                continue;
            }
            (Some(Value::Array(slot)), Value::Array(p)) => {
                let current = std::mem::take(slot);
                *slot = merge_list(current, p, meta, w)?.items;
                continue;
            }
            // Absent, a scalar, or a different JSON type than the patch:
            // the patch value wins.
            (_, p) => new_value(p, meta, w)?,
        };
        match replacement {
            Some(v) => {
                original.insert(key, v);
            }
            None => removed.push(key),
        }
    }
    remove_keys(&mut original, removed, w)?;

    let mut removed = Vec::new();
    for (field, values) in deletions {
        // Kubernetes treats a null here like any null: the field goes.
        if values.is_null() {
            removed.push(field);
        } else {
            delete_from_primitive_list(&mut original, &field, values, w)?;
        }
    }
    remove_keys(&mut original, removed, w)?;
    Ok(original)
}

/// Removes `keys` from `map` in one pass, keeping the order of the rest.
fn remove_keys(map: &mut Map<String, Value>, keys: Vec<String>, w: &Work) -> Result<()> {
    match keys.len() {
        0 => {}
        1 => {
            w.spend(map.len())?;
            map.shift_remove(&keys[0]);
        }
        _ => {
            w.spend(map.len() + keys.len())?;
            let keys: std::collections::HashSet<String> = keys.into_iter().collect();
            map.retain(|k, _| !keys.contains(k));
        }
    }
    Ok(())
}

/// The value a patch produces where there is nothing (of its type) to merge
/// into. `None` means the field ends up absent.
fn new_value(patch: Value, meta: FieldMeta, w: &Work) -> Result<Option<Value>> {
    match patch {
        Value::Null => Ok(None),
        Value::Object(map) => {
            if map.get(DIRECTIVE).and_then(Value::as_str) == Some("delete") {
                return Ok(None);
            }
            Ok(Some(Value::Object(merge_map(Map::new(), map, meta.child, w)?)))
        }
        Value::Array(list) => Ok(Some(Value::Array(clean_list(list, meta.child, w)?))),
        scalar => Ok(Some(scalar)),
    }
}

/// A patch list taken as the new value: directive elements are dropped (they
/// only mean something against an existing list) and object elements are
/// merged into nothing so their own directives and nulls are resolved.
fn clean_list(list: Vec<Value>, elem: Ty, w: &Work) -> Result<Vec<Value>> {
    w.spend(list.len())?;
    let mut out = Vec::with_capacity(list.len());
    for item in list {
        match item {
            Value::Object(map) if map.contains_key(DIRECTIVE) => {}
            Value::Object(map) => out.push(Value::Object(merge_map(Map::new(), map, elem, w)?)),
            Value::Array(inner) => out.push(Value::Array(clean_list(inner, None, w)?)),
            scalar => out.push(scalar),
        }
    }
    Ok(out)
}

/// A merged list, plus how kube-apiserver's `$setElementOrder` pass sees the
/// original list afterwards.
struct MergedList {
    items: Vec<Value>,
    /// `None` when that view is simply the original list. See [`GoView`].
    server_view: Option<Vec<Value>>,
}

/// Merges two lists found under the same key.
fn merge_list(original: Vec<Value>, patch: Vec<Value>, meta: FieldMeta, w: &Work) -> Result<MergedList> {
    if meta.merge {
        merge_slice(original, patch, meta, w)
    } else {
        // Atomic list: the patch replaces it.
        Ok(MergedList { items: clean_list(patch, meta.child, w)?, server_view: None })
    }
}

/// Merges a list with `patchStrategy: merge`.
fn merge_slice(original: Vec<Value>, patch: Vec<Value>, meta: FieldMeta, w: &Work) -> Result<MergedList> {
    let Some(kind) = element_kind(&[original.as_slice(), patch.as_slice()])? else {
        return Ok(MergedList { items: original, server_view: None });
    };

    if kind != Kind::Object {
        // Scalars: set union, first occurrence wins.
        let mut merged: Vec<Value> = Vec::with_capacity(original.len() + patch.len());
        for v in original.iter().chain(patch.iter()) {
            w.check()?;
            if !merged.iter().any(|m| json_eq(m, v, w)) {
                merged.push(v.clone());
            }
        }
        return Ok(MergedList { items: order_items(merged, &patch, &original, None, w)?, server_view: None });
    }

    let key = meta.key.ok_or(PatchError::MergeWithoutKey { type_name: meta.child.map_or("object", |t| t.name) })?;
    let mut view = GoView::new(&original, key);

    // First pass: directive elements. Deletions apply to the original before
    // anything is merged; a replace marker discards the original entirely.
    let mut base = original;
    let mut plain = Vec::with_capacity(patch.len());
    let mut replace = false;
    for item in patch {
        let obj = match item {
            Value::Object(obj) => obj,
            other => return Err(unexpected_type(GO_MAP, &other)),
        };
        let Some(directive) = obj.get(DIRECTIVE) else {
            plain.push(obj);
            continue;
        };
        match directive.as_str() {
            Some("delete") => {
                let Some(target) = obj.get(key) else {
                    return Err(missing_key(&obj, key));
                };
                w.check()?;
                base.retain(|el| !merge_key_is(el, key, target, w));
                view.delete(target, w)?;
            }
            // Keep scanning: later elements may still be deletions or
            // further markers that must not end up in the result.
            Some("replace") => replace = true,
            Some("merge") => return Err(PatchError::MergeDirectiveInList),
            _ => return Err(unknown_directive(directive, &obj)),
        }
    }
    if replace {
        return Ok(MergedList {
            items: clean_list(plain.into_iter().map(Value::Object).collect(), meta.child, w)?,
            server_view: Some(view.finish()),
        });
    }

    // Second pass: merge elements by key, appending those not found.
    let server_order = base.clone();
    let mut merged = base;
    let mut patch_order = Vec::with_capacity(plain.len());
    for obj in plain {
        let Some(target) = obj.get(key).cloned() else {
            return Err(missing_key(&obj, key));
        };
        w.check()?;
        match merged.iter_mut().find(|el| merge_key_is(el, key, &target, w)) {
            Some(Value::Object(slot)) => {
                let current = std::mem::take(slot);
                *slot = merge_map(current, obj, meta.child, w)?;
            }
            _ => {
                merged.push(Value::Object(merge_map(Map::new(), obj, meta.child, w)?));
                view.append(&target);
            }
        }
        // Ordering only needs the key of each patch element.
        patch_order.push(key_marker(key, target));
    }
    Ok(MergedList {
        items: order_items(merged, &patch_order, &server_order, Some(key), w)?,
        server_view: Some(view.finish()),
    })
}

/// The original list as kube-apiserver's `$setElementOrder` pass sees it.
///
/// kube-apiserver orders a list named by `$setElementOrder` against the
/// original list, but in Go that list shares its backing array with the one
/// being merged: deleting an element shifts the rest left in place, and
/// appending a new element then writes into the freed slot at the end,
/// which the ordering pass still sees. The net effect (encoded in Kubernetes'
/// own tests) is that when a patch deletes and adds elements at once, the
/// added elements count as sitting where the deleted ones left room, at the
/// end of the list, rather than as unknown. This replays that on merge keys
/// only, so server-only elements land where kube-apiserver puts them.
struct GoView {
    key: &'static str,
    /// Merge key of each slot; `None` for elements without one.
    slots: Vec<Option<Value>>,
    /// Length of the slice being merged; slots beyond it are stale or reused.
    len: usize,
}

impl GoView {
    fn new(original: &[Value], key: &'static str) -> Self {
        let slots: Vec<Option<Value>> =
            original.iter().map(|el| el.as_object().and_then(|o| o.get(key)).cloned()).collect();
        let len = slots.len();
        GoView { key, slots, len }
    }

    /// Removes every element with merge key `target`, shifting left in place
    /// and leaving the last slot as it was, like Go's `append(s[:i], s[i+1:]...)`.
    fn delete(&mut self, target: &Value, w: &Work) -> Result<()> {
        loop {
            w.check()?;
            let Some(i) = self.slots[..self.len].iter().position(|k| k.as_ref().is_some_and(|k| json_eq(k, target, w)))
            else {
                return Ok(());
            };
            for j in i..self.len - 1 {
                self.slots[j] = self.slots[j + 1].clone();
            }
            self.len -= 1;
        }
    }

    /// Appends an element, visible only while it reuses a freed slot.
    fn append(&mut self, target: &Value) {
        if let Some(slot) = self.slots.get_mut(self.len) {
            *slot = Some(target.clone());
            self.len += 1;
        }
    }

    fn finish(self) -> Vec<Value> {
        let key = self.key;
        self.slots.into_iter().map(|k| k.map_or(Value::Null, |k| key_marker(key, k))).collect()
    }
}

/// `{key: value}`: all the ordering code needs to know about an element.
fn key_marker(key: &str, value: Value) -> Value {
    let mut marker = Map::new();
    marker.insert(key.to_owned(), value);
    Value::Object(marker)
}

/// Handles every `$setElementOrder/<field>` directive in `patch`: merges the
/// list it names (removing it from `patch`) and orders the result.
fn apply_set_element_order(
    original: &mut Map<String, Value>,
    patch: &mut Map<String, Value>,
    ty: Ty,
    w: &Work,
) -> Result<()> {
    let directives: Vec<String> = patch.keys().filter(|k| k.starts_with(SET_ELEMENT_ORDER)).cloned().collect();
    if directives.is_empty() {
        return Ok(());
    }
    // The directives and the lists they name leave the patch together, in one pass.
    let mut handled: Vec<String> = Vec::with_capacity(2 * directives.len());
    let mut take = |patch: &mut Map<String, Value>, k: &str| {
        let v = patch.get_mut(k).map(std::mem::take);
        if v.is_some() {
            handled.push(k.to_string());
        }
        v
    };
    for directive in directives {
        let Some(order) = take(patch, &directive) else {
            continue;
        };
        let order = match order {
            Value::Array(order) => order,
            other => return Err(unexpected_type(GO_LIST, &other)),
        };
        let field = directive_field(&directive, SET_ELEMENT_ORDER)?.to_owned();
        let meta = field_meta(ty, &field);

        let original_list = match original.get(&field) {
            // A stored null is as good as absent.
            None | Some(Value::Null) => None,
            Some(Value::Array(list)) => Some(list.clone()),
            Some(other) => return Err(unexpected_type(GO_LIST, other)),
        };
        let patch_list = match take(patch, &field) {
            None => None,
            Some(Value::Array(list)) => Some(list),
            Some(other) => return Err(unexpected_type(GO_LIST, &other)),
        };

        validate_order(patch_list.as_deref().unwrap_or(&[]), &order, meta.key, w)?;
        let kind = element_kind(&[original_list.as_deref().unwrap_or(&[]), patch_list.as_deref().unwrap_or(&[])])?;

        let (merged, server_view) = match (original_list.clone(), patch_list) {
            (Some(o), None) => (o, None),
            (None, Some(p)) => (clean_list(p, meta.child, w)?, None),
            (Some(o), Some(p)) => {
                let merged = merge_list(o, p, meta, w)?;
                (merged.items, merged.server_view)
            }
            (None, None) => continue,
        };
        // Lists of scalars (and untyped lists) are ordered by whole value.
        let key = if kind == Some(Kind::Object) { meta.key } else { None };
        let server_order = server_view.or(original_list).unwrap_or_default();
        let ordered = order_items(merged, &order, &server_order, key, w)?;
        original.insert(field, Value::Array(ordered));
    }
    remove_keys(patch, handled, w)
}

/// Checks that the elements of a patch list appear in `order` in the same
/// relative order, so the two do not contradict each other. Deletions and
/// markers are ignored: they name nothing that will be in the result.
fn validate_order(patch: &[Value], order: &[Value], key: Option<&str>, w: &Work) -> Result<()> {
    if patch.is_empty() || order.is_empty() {
        return Ok(());
    }
    let mut next = 0;
    for item in patch {
        if let Some(obj) = item.as_object() {
            if obj.contains_key(DIRECTIVE) {
                continue;
            }
        } else if key.is_some() {
            return Err(unexpected_type(GO_MAP, item));
        }
        let id = identity(item, key)?;
        loop {
            let Some(candidate) = order.get(next) else {
                return Err(PatchError::SetElementOrderMismatch {
                    patch: render_list(patch),
                    order: render_list(order),
                });
            };
            next += 1;
            w.check()?;
            if json_eq(identity(candidate, key)?, id, w) {
                break;
            }
        }
    }
    Ok(())
}

/// Orders a merged list the way Kubernetes does.
///
/// Items named in `order` come first in that order; the remaining
/// ("server-only") items keep their relative order from `server`. The two
/// sequences are then interleaved: a server-only item is placed before the
/// next ordered item when both appear in `server` and it came first there.
/// So items the server added keep their place relative to their neighbours,
/// and new items a client adds go before them rather than at the very end.
fn order_items(
    merged: Vec<Value>,
    order: &[Value],
    server: &[Value],
    key: Option<&str>,
    w: &Work,
) -> Result<Vec<Value>> {
    let order_ids = order.iter().map(|item| identity(item, key)).collect::<Result<Vec<_>>>()?;
    // Items of the original without a key cannot be matched; they are never
    // "found" rather than an error, which matches Kubernetes' lookup.
    let server_ids: Vec<Option<&Value>> = server.iter().map(|v| identity(v, key).ok()).collect();
    let server_pos = |id: &Value| server_ids.iter().position(|s| s.is_some_and(|s| json_eq(s, id, w)));

    // (position in `order`, position in `server`, item)
    let mut ordered: Vec<(usize, Option<usize>, Value)> = Vec::new();
    // (position in `server`, item)
    let mut server_only: Vec<(Option<usize>, Value)> = Vec::new();
    for item in merged {
        w.check()?;
        let (in_order, in_server) = {
            let id = identity(&item, key)?;
            (order_ids.iter().position(|o| json_eq(o, id, w)), server_pos(id))
        };
        match in_order {
            Some(pos) => ordered.push((pos, in_server, item)),
            None => server_only.push((in_server, item)),
        }
    }
    // Stable sorts: duplicates keep their relative order.
    ordered.sort_by_key(|(pos, _, _)| *pos);
    server_only.sort_by_key(|(pos, _)| pos.unwrap_or(usize::MAX));

    let mut out = Vec::with_capacity(ordered.len() + server_only.len());
    let mut left = server_only.into_iter().peekable();
    let mut right = ordered.into_iter().peekable();
    loop {
        let take_left = match (left.peek(), right.peek()) {
            (None, None) => break,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (Some((l, _)), Some((_, r, _))) => matches!((l, r), (Some(l), Some(r)) if l < r),
        };
        if take_left {
            if let Some((_, item)) = left.next() {
                out.push(item);
            }
        } else if let Some((_, _, item)) = right.next() {
            out.push(item);
        }
    }
    Ok(out)
}

/// Validates `$retainKeys` and drops the original keys it does not list.
fn apply_retain_keys(original: &mut Map<String, Value>, patch: &mut Map<String, Value>, w: &Work) -> Result<()> {
    let Some(retain) = patch.shift_remove(RETAIN_KEYS) else {
        return Ok(());
    };
    let Value::Array(retain) = retain else {
        return Err(PatchError::InvalidRetainKeys);
    };
    w.spend(retain.len() + patch.len() + original.len())?;
    let retain: std::collections::HashSet<&str> = retain.iter().filter_map(Value::as_str).collect();
    let retained = |k: &str| retain.contains(k);
    // Setting a key that would not be retained is contradictory. Nulls and
    // list directives do not set anything.
    let contradicts = patch.iter().any(|(k, v)| {
        !v.is_null() && !k.starts_with(DELETE_FROM_PRIMITIVE_LIST) && !k.starts_with(SET_ELEMENT_ORDER) && !retained(k)
    });
    if contradicts {
        return Err(PatchError::InvalidRetainKeys);
    }
    original.retain(|k, _| retained(k));
    Ok(())
}

/// Removes the values listed by `$deleteFromPrimitiveList/<field>`.
fn delete_from_primitive_list(original: &mut Map<String, Value>, field: &str, values: Value, w: &Work) -> Result<()> {
    if values.is_null() {
        // Kubernetes treats a null here like any null: the field goes.
        original.shift_remove(field);
        return Ok(());
    }
    // Nothing to delete from, or not a list on either side: ignored, and in
    // particular the list is not created.
    let (Some(Value::Array(list)), Value::Array(values)) = (original.get_mut(field), values) else {
        return Ok(());
    };
    if element_kind(&[list.as_slice(), values.as_slice()])?.is_none() {
        return Ok(());
    }
    list.retain(|item| !values.iter().any(|v| json_eq(item, v, w)));
    w.check()
}

/// Splits `<prefix>/<field>` and returns the field.
fn directive_field<'k>(key: &'k str, prefix: &str) -> Result<&'k str> {
    match key.split_once('/') {
        Some((p, field)) if p == prefix => Ok(field),
        _ if prefix == SET_ELEMENT_ORDER => Err(PatchError::InvalidSetElementOrder),
        _ => Err(PatchError::InvalidPrimitiveListDirective),
    }
}

/// JSON type of a list element.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Null,
    Bool,
    Number,
    String,
    Array,
    Object,
}

fn kind_of(v: &Value) -> Kind {
    match v {
        Value::Null => Kind::Null,
        Value::Bool(_) => Kind::Bool,
        Value::Number(_) => Kind::Number,
        Value::String(_) => Kind::String,
        Value::Array(_) => Kind::Array,
        Value::Object(_) => Kind::Object,
    }
}

/// The common element type of lists about to be merged; `None` if they are
/// all empty. Merging needs one type: objects merge by key, scalars by value.
fn element_kind(lists: &[&[Value]]) -> Result<Option<Kind>> {
    let mut found = None;
    for v in lists.iter().flat_map(|l| l.iter()) {
        let kind = kind_of(v);
        match found {
            None if kind == Kind::Array => return Err(PatchError::ListOfLists),
            None => found = Some(kind),
            Some(k) if k != kind => {
                return Err(PatchError::MixedListElements {
                    lists: lists.iter().map(|l| render_list(l)).collect::<Vec<_>>().join(" "),
                })
            }
            Some(_) => {}
        }
    }
    Ok(found)
}

/// What identifies a list element: its merge key value, or the element itself.
fn identity<'v>(item: &'v Value, key: Option<&str>) -> Result<&'v Value> {
    let Some(key) = key else {
        return Ok(item);
    };
    let Value::Object(obj) = item else {
        return Err(unexpected_type(GO_MAP, item));
    };
    obj.get(key).ok_or_else(|| missing_key(obj, key))
}

fn merge_key_is(item: &Value, key: &str, target: &Value, w: &Work) -> bool {
    item.as_object().and_then(|o| o.get(key)).is_some_and(|v| json_eq(v, target, w))
}

/// JSON equality where numbers compare by value (80 == 80.0), as they do
/// in Kubernetes, where every decoded number is a float64 or an int64. Each value
/// visited costs one unit of `w`; with none left the answer is "different".
pub(crate) fn json_eq(a: &Value, b: &Value, w: &Work) -> bool {
    if !w.step() {
        return false;
    }
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            if let (Some(x), Some(y)) = (x.as_i64(), y.as_i64()) {
                x == y
            } else if let (Some(x), Some(y)) = (x.as_u64(), y.as_u64()) {
                x == y
            } else {
                x.as_f64() == y.as_f64()
            }
        }
        (Value::Array(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(x, y)| json_eq(x, y, w)),
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|u| json_eq(v, u, w)))
        }
        _ => a == b,
    }
}

fn go_type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "<nil>",
        Value::Bool(_) => "bool",
        Value::Number(n) if n.is_f64() => "float64",
        Value::Number(_) => "int64",
        Value::String(_) => "string",
        Value::Array(_) => GO_LIST,
        Value::Object(_) => GO_MAP,
    }
}

fn unexpected_type(expected: &'static str, actual: &Value) -> PatchError {
    PatchError::UnexpectedType { expected, actual: go_type_name(actual) }
}

fn missing_key(obj: &Map<String, Value>, key: &str) -> PatchError {
    PatchError::MissingMergeKey { map: render_map(obj), key: key.to_owned() }
}

fn unknown_directive(directive: &Value, map: &Map<String, Value>) -> PatchError {
    PatchError::UnknownDirective {
        directive: match directive {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        },
        map: render_map(map),
    }
}

fn render_map(map: &Map<String, Value>) -> String {
    Value::Object(map.clone()).to_string()
}

fn render_list(list: &[Value]) -> String {
    Value::Array(list.to_vec()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn numbers_compare_by_value() {
        let w = Work::new(u64::MAX);
        assert!(json_eq(&json!(80), &json!(80.0), &w));
        assert!(json_eq(&json!({"a": [1, 2]}), &json!({"a": [1.0, 2]}), &w));
        assert!(!json_eq(&json!(80), &json!("80"), &w));
        assert!(!json_eq(&json!({"a": 1}), &json!({"a": 1, "b": 2}), &w));
    }

    #[test]
    fn directive_field_requires_exact_prefix() {
        assert_eq!(directive_field("$setElementOrder/containers", SET_ELEMENT_ORDER), Ok("containers"));
        assert_eq!(
            directive_field("$setElementOrderX/containers", SET_ELEMENT_ORDER),
            Err(PatchError::InvalidSetElementOrder)
        );
        assert_eq!(
            directive_field("$deleteFromPrimitiveList", DELETE_FROM_PRIMITIVE_LIST),
            Err(PatchError::InvalidPrimitiveListDirective)
        );
    }

    #[test]
    fn ordering_keeps_server_only_items_in_place() {
        // Server has [1, 2, 9, 3, 4]; the client orders [2, 1, 4, 3].
        let merged = vec![json!(1), json!(2), json!(9), json!(3), json!(4)];
        let order = [json!(2), json!(1), json!(4), json!(3)];
        let got = order_items(merged.clone(), &order, &merged, None, &Work::new(u64::MAX)).expect("orders");
        assert_eq!(got, vec![json!(2), json!(1), json!(9), json!(4), json!(3)]);
    }

    #[test]
    fn element_kind_rejects_mixed_and_nested() {
        assert_eq!(element_kind(&[&[], &[]]), Ok(None));
        assert_eq!(element_kind(&[&[json!([1])], &[]]), Err(PatchError::ListOfLists));
        assert!(matches!(element_kind(&[&[json!(1)], &[json!("a")]]), Err(PatchError::MixedListElements { .. })));
    }
}
