//! Strategic merge patch (SMP) for Kubernetes built-in types.
//!
//! A strategic merge patch (`Content-Type:
//! application/strategic-merge-patch+json`) is what `kubectl apply`
//! (client-side), `kubectl edit` and `kubectl patch --type strategic` send.
//! It reads like a JSON merge patch (RFC 7386) — objects merge key by key and
//! `null` deletes a key — but lists are not always replaced: a list declared
//! with `patchStrategy: merge` is merged element by element, matching
//! elements of objects by a *merge key* (`containers` by `name`,
//! `ports` by `containerPort`, ...) and taking the union of scalar lists
//! (`finalizers`). Directives embedded in the patch refine this:
//!
//! * `{"$patch": "replace"}` on an object replaces it instead of merging;
//!   as a list element it replaces the whole list with the other elements.
//! * `{"$patch": "delete"}` on an object empties it (the key stays, holding
//!   `{}`, exactly as in Kubernetes); as a list element together with the merge
//!   key (`{"$patch": "delete", "name": "x"}`) it removes that element.
//! * `"$deleteFromPrimitiveList/<field>": [..]` removes values from a scalar list.
//! * `"$setElementOrder/<field>": [..]` gives the order of the merged list;
//!   elements it does not name (added by the server) keep their place
//!   relative to their neighbours.
//! * `"$retainKeys": [..]` drops every key of the original object not listed
//!   (used for one-of structs such as volume sources and deployment strategies).
//!
//! Directive keys never appear in the result.
//!
//! List order follows Kubernetes too: elements a patch names take the
//! patch's order, elements only the server has keep their place relative to
//! their neighbours, and elements a patch adds without `$setElementOrder`
//! end up ahead of server-only ones, not appended.
//!
//! # What this crate knows
//!
//! Which lists merge, and by which key, comes from Go struct tags in
//! Kubernetes. This crate carries a hand-written table of those tags for the
//! types rkube serves (see [`schema_for`]): core/v1 Pod, PodTemplate,
//! ReplicationController, Service, Endpoints, ConfigMap, Secret,
//! ServiceAccount, Namespace, Node, Event; apps/v1 Deployment, ReplicaSet,
//! StatefulSet, DaemonSet; batch/v1 Job, CronJob; rbac.authorization.k8s.io/v1
//! Role, ClusterRole, RoleBinding, ClusterRoleBinding; coordination.k8s.io/v1
//! Lease; events.k8s.io/v1 Event. The table is a small type graph, so PodSpec
//! and ObjectMeta are described once and shared by every kind embedding them.
//! Fields it does not list behave as untagged fields do in Kubernetes:
//! objects merge, lists are replaced.
//!
//! With no schema (an unknown type) [`apply`] still merges objects, honours
//! object-level directives and replaces every list. Kubernetes itself refuses
//! strategic merge patches for custom resources; that policy decision is the
//! caller's.
//!
//! # What it does not do
//!
//! No HTTP, no storage, no defaulting, no validation of the resulting object,
//! no generation of patches (the client side of `kubectl apply`), and no
//! server-side apply. Kubernetes decodes the merged map into a typed object
//! afterwards, which drops unknown fields and empty values; callers that want
//! that normalisation must do it themselves.
//!
//! # Where it deliberately differs from kube-apiserver
//!
//! Only in corners where kube-apiserver behaves erratically: it iterates Go
//! maps (here, `$deleteFromPrimitiveList` always runs after additions), it
//! silently drops a brand-new object carrying `$patch: replace` (here it is
//! added, without the marker), and it panics on lists of objects compared by
//! value (here they compare by JSON equality).
//!
//! ```
//! use serde_json::json;
//!
//! let live = json!({"spec": {"containers": [
//!     {"name": "app", "image": "app:1", "env": [{"name": "A", "value": "1"}]},
//! ]}});
//! let patch = json!({"spec": {"containers": [{"name": "app", "image": "app:2"}]}});
//! let schema = rkube_patch::schema_for("", "v1", "Pod");
//! let merged = rkube_patch::apply(&live, &patch, schema).unwrap();
//! assert_eq!(merged["spec"]["containers"][0]["image"], "app:2");
//! assert_eq!(merged["spec"]["containers"][0]["env"][0]["value"], "1");
//! ```

mod error;
pub mod json_patch;
mod merge;
mod schema;

use std::fmt;

use serde_json::{Map, Value};

pub use error::PatchError;

/// Handle to a type in the schema table: what [`apply`] needs to know which
/// lists merge and by which key. Obtain one with [`schema_for`].
#[derive(Clone, Copy)]
pub struct SchemaRef(&'static schema::TypeDef);

impl fmt::Debug for SchemaRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("SchemaRef").field(&self.0.name).finish()
    }
}

impl SchemaRef {
    /// Name of the type, e.g. `"v1.Pod"` or `"v1.PodSpec"`.
    pub fn type_name(self) -> &'static str {
        self.0.name
    }

    /// Patch metadata of field `name`, if the table describes it. `None`
    /// means the field is untagged: objects merge, lists are replaced.
    pub fn field(self, name: &str) -> Option<FieldInfo> {
        self.0.field(name).map(|f| FieldInfo {
            merge: f.merge,
            merge_key: f.merge_key,
            retain_keys: f.retain_keys,
            schema: f.ty.map(SchemaRef),
        })
    }
}

/// Patch metadata of one field: the equivalent of its Go struct tags.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct FieldInfo {
    /// `patchStrategy: merge`: the list is merged rather than replaced.
    pub merge: bool,
    /// `patchMergeKey`: the key identifying elements of a merged list of objects.
    pub merge_key: Option<&'static str>,
    /// `patchStrategy: retainKeys`: clients send `$retainKeys` for this field.
    pub retain_keys: bool,
    /// Type of the value (of each element, for lists), if the table describes it.
    pub schema: Option<SchemaRef>,
}

/// Schema of a top-level kind, e.g. `("", "v1", "Pod")` or
/// `("apps", "v1", "Deployment")`; `None` for kinds not in the table.
pub fn schema_for(group: &str, version: &str, kind: &str) -> Option<SchemaRef> {
    schema::lookup_kind(group, version, kind).map(SchemaRef)
}

/// The most work one [`apply`] does, in element comparisons (each value a comparison
/// looks at counts one). Merging lists by key, as sets or in a `$setElementOrder` costs
/// up to the product of their lengths; real patches stay far below this (a pod's patch
/// costs hundreds), a 3 MiB patch of distinct list elements would cost about 10^11.
/// Spending it takes well under a second.
pub const WORK_MAX: u64 = 50_000_000;

/// Applies strategic merge patch `patch` to `original` and returns the result.
///
/// `original` must be a JSON object (`null` counts as `{}`). `patch` must be
/// a JSON object; `null` is an empty patch, as it is for kube-apiserver.
/// `schema` selects the merge keys; with `None` every list is replaced.
/// Neither input is modified. A merge that would cost more than [`WORK_MAX`] stops
/// with [`PatchError::TooComplex`].
pub fn apply(original: &Value, patch: &Value, schema: Option<SchemaRef>) -> Result<Value, PatchError> {
    apply_with_limit(original, patch, schema, WORK_MAX)
}

/// [`apply`] with another bound of work.
pub fn apply_with_limit(
    original: &Value,
    patch: &Value,
    schema: Option<SchemaRef>,
    work_max: u64,
) -> Result<Value, PatchError> {
    let original = match original {
        Value::Object(map) => map.clone(),
        Value::Null => Map::new(),
        _ => return Err(PatchError::InvalidDocument),
    };
    let patch = match patch {
        Value::Object(map) => map.clone(),
        Value::Null => return Ok(Value::Object(original)),
        Value::Array(_) => return Err(PatchError::PatchNotObject { found: "array" }),
        Value::String(_) => return Err(PatchError::PatchNotObject { found: "string" }),
        Value::Number(_) => return Err(PatchError::PatchNotObject { found: "number" }),
        Value::Bool(_) => return Err(PatchError::PatchNotObject { found: "bool" }),
    };
    let work = merge::Work::new(work_max);
    let merged = merge::merge_map(original, patch, schema.map(|s| s.0), &work)?;
    // A comparison that ran out of work answered "different"; never return what it built.
    work.check()?;
    Ok(Value::Object(merged))
}
