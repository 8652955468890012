//! Strategies: what differs between resources in create and update (typed decoding,
//! defaulting, preparing, validating, initial status, field selectors), as
//! kube-apiserver's per-resource `strategy.go` files do.
//!
//! The generic registry in the API server calls these hooks in a fixed order:
//! decode -> canonicalize (typed round trip) -> default -> prepare -> validate.
//! Invariant: strategies are pure functions of the objects they are given; they do no IO.

use serde::{de::DeserializeOwned, Serialize};
use serde_json::{Map, Value};

use crate::resource::Subresource;
use crate::status::FieldError;

/// How a delete request proceeds for one object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Deletion {
    /// Removed now (or, with finalizers, marked and removed when they are gone).
    Immediate,
    /// Marked with a deletionTimestamp `seconds` ahead; whoever runs the object (the node
    /// agent, for pods) finishes it.
    Graceful { seconds: i64 },
    /// Marked `Terminating`; the namespace lifecycle removes what it contains, then it.
    NamespaceLifecycle,
}

/// Whether an object exists: (plural of a core/v1 cluster-scoped resource, name).
pub type Exists<'a> = &'a dyn Fn(&str, &str) -> bool;

/// Why admission refused an object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// The reason, as the Forbidden message words it.
    pub reason: String,
    /// A controller is expected to create what is missing shortly (the `default`
    /// ServiceAccount of a new namespace): the caller may retry for a bounded time.
    pub retry: bool,
}

/// Reads an object at create admission: (plural of a core/v1 resource, namespace, name).
pub type Lookup<'a> = &'a dyn Fn(&str, &str, &str) -> Option<Value>;

/// The behaviour of one resource.
pub trait Strategy: Send + Sync {
    /// Decodes through the typed model and re-encodes: type errors become `Err` (a 400),
    /// unknown fields are dropped (see [`unknown_fields`]). Resources without a typed model
    /// return the object unchanged.
    fn canonicalize(&self, obj: &Value) -> Result<Value, String> {
        Ok(obj.clone())
    }
    /// Fills defaults, as the typed defaulters do after decoding.
    fn default(&self, _obj: &mut Value) {}
    /// Adjusts a new object before validation (status initial value, generated fields).
    fn prepare_for_create(&self, _obj: &mut Value) {}
    /// Resource-specific validation of a new or updated object (metadata is validated by
    /// the registry).
    fn validate(&self, _obj: &Value, _errs: &mut Vec<FieldError>) {}
    /// Checks a new object beyond [`Strategy::validate`] (fields only a subresource may set).
    fn validate_create(&self, _obj: &Value, _errs: &mut Vec<FieldError>) {}
    /// Checks an update against the old object (immutable fields).
    fn validate_update(&self, _new: &Value, _old: &Value, _errs: &mut Vec<FieldError>) {}
    /// Checks an update through a subresource that writes one part of the object and has
    /// rules of its own (`ephemeralcontainers`: only additions), instead of
    /// [`Strategy::validate_update`].
    fn validate_part_update(&self, _sub: Subresource, _new: &Value, _old: &Value, _errs: &mut Vec<FieldError>) {}
    /// The status an object starts with when status is a subresource.
    fn initial_status(&self, _obj: &Value) -> Option<Value> {
        None
    }
    /// Fills fields that must be unique across all objects of the resource (a Service's
    /// cluster IP). `taken` says whether a value is in use by another object.
    fn allocate(&self, _obj: &mut Value, _taken: &dyn Fn(&str) -> bool) -> Result<(), FieldError> {
        Ok(())
    }
    /// Admission on create, after defaulting: may change the object, or refuse it with the
    /// reason (the API server answers 403 Forbidden with it).
    fn admit(&self, _obj: &mut Value, _lookup: Lookup<'_>) -> Result<(), Refusal> {
        Ok(())
    }
    /// How deleting `obj` proceeds, given the grace period the client asked for.
    fn deletion(&self, _obj: &Value, _grace: Option<i64>, _exists: Exists<'_>) -> Deletion {
        Deletion::Immediate
    }
    /// Create-only resources that are answered, not stored (access reviews, token reviews):
    /// the API server computes the answer's `status`.
    fn ephemeral(&self) -> bool {
        false
    }
    /// The JSON pointer of the field [`Strategy::allocate`] fills, if any.
    fn allocated_field(&self) -> Option<&'static str> {
        None
    }
    /// The OpenAPI schema of the resource's objects: a `$ref` into the generator's
    /// definitions (None = no schema known).
    fn openapi_schema(&self, _gen: &mut schemars::SchemaGenerator) -> Option<schemars::Schema> {
        None
    }
    /// The value of a field-selector field, or None if the field is not supported
    /// (`metadata.name` and `metadata.namespace` are supported for every resource).
    fn field(&self, _obj: &Value, _field: &str) -> Option<String> {
        None
    }
}

/// A strategy described by data and plain functions; most built-in resources are one.
pub struct Builtin {
    pub typed: Option<TypedCheck>,
    /// The typed model's OpenAPI schema (see [`typed_schema`]).
    pub schema: Option<SchemaFn>,
    pub defaults: fn(&mut Value),
    pub prepare_for_create: fn(&mut Value),
    pub validate: fn(&Value, &mut Vec<FieldError>),
    pub validate_update: fn(&Value, &Value, &mut Vec<FieldError>),
    /// See [`Strategy::validate_create`].
    pub validate_create: fn(&Value, &mut Vec<FieldError>),
    /// See [`Strategy::validate_part_update`].
    pub validate_part_update: Option<PartUpdateCheck>,
    pub initial_status: Option<fn(&Value) -> Value>,
    /// A unique field filled at create: (JSON pointer, allocator).
    pub allocation: Option<(&'static str, Allocator)>,
    pub deletion: Option<DeletionHook>,
    /// Answered, not stored (see [`Strategy::ephemeral`]).
    pub ephemeral: bool,
    pub admit: Option<AdmitHook>,
    /// Field-selector names and the JSON path each reads.
    pub fields: &'static [(&'static str, &'static [&'static str])],
}

/// Decodes through the typed model and re-encodes (see [`typed_roundtrip`]).
pub type TypedCheck = fn(&Value) -> Result<Value, String>;

/// Adds a type's schema to a generator and returns a reference to it.
pub type SchemaFn = fn(&mut schemars::SchemaGenerator) -> schemars::Schema;

/// The schema of a typed model type.
pub fn typed_schema<T: schemars::JsonSchema>(gen: &mut schemars::SchemaGenerator) -> schemars::Schema {
    gen.subschema_for::<T>()
}

/// Checks a write through a partial subresource (see [`Strategy::validate_part_update`]).
pub type PartUpdateCheck = fn(Subresource, &Value, &Value, &mut Vec<FieldError>);

/// Admits a new object (see [`Strategy::admit`]).
pub type AdmitHook = fn(&mut Value, Lookup<'_>) -> Result<(), Refusal>;

/// Decides how a delete proceeds (see [`Strategy::deletion`]).
pub type DeletionHook = fn(&Value, Option<i64>, Exists<'_>) -> Deletion;

/// Fills a unique field given a test for values already taken.
pub type Allocator = fn(&mut Value, &dyn Fn(&str) -> bool) -> Result<(), FieldError>;

fn no_defaults(_: &mut Value) {}
fn no_validation(_: &Value, _: &mut Vec<FieldError>) {}
fn no_update_validation(_: &Value, _: &Value, _: &mut Vec<FieldError>) {}

impl Default for Builtin {
    fn default() -> Self {
        Builtin {
            typed: None,
            schema: None,
            defaults: no_defaults,
            prepare_for_create: no_defaults,
            validate: no_validation,
            validate_update: no_update_validation,
            validate_create: no_validation,
            validate_part_update: None,
            initial_status: None,
            allocation: None,
            deletion: None,
            ephemeral: false,
            admit: None,
            fields: &[],
        }
    }
}

impl Strategy for Builtin {
    fn canonicalize(&self, obj: &Value) -> Result<Value, String> {
        match self.typed {
            Some(f) => f(obj),
            None => Ok(obj.clone()),
        }
    }
    fn default(&self, obj: &mut Value) {
        (self.defaults)(obj)
    }
    fn prepare_for_create(&self, obj: &mut Value) {
        (self.prepare_for_create)(obj)
    }
    fn validate(&self, obj: &Value, errs: &mut Vec<FieldError>) {
        (self.validate)(obj, errs)
    }
    fn validate_update(&self, new: &Value, old: &Value, errs: &mut Vec<FieldError>) {
        (self.validate_update)(new, old, errs)
    }
    fn validate_create(&self, obj: &Value, errs: &mut Vec<FieldError>) {
        (self.validate_create)(obj, errs)
    }
    fn validate_part_update(&self, sub: Subresource, new: &Value, old: &Value, errs: &mut Vec<FieldError>) {
        if let Some(f) = self.validate_part_update {
            f(sub, new, old, errs)
        }
    }
    fn initial_status(&self, obj: &Value) -> Option<Value> {
        self.initial_status.map(|f| f(obj))
    }
    fn allocate(&self, obj: &mut Value, taken: &dyn Fn(&str) -> bool) -> Result<(), FieldError> {
        match self.allocation {
            Some((_, f)) => f(obj, taken),
            None => Ok(()),
        }
    }
    fn allocated_field(&self) -> Option<&'static str> {
        self.allocation.map(|(p, _)| p)
    }
    fn ephemeral(&self) -> bool {
        self.ephemeral
    }
    fn admit(&self, obj: &mut Value, lookup: Lookup<'_>) -> Result<(), Refusal> {
        match self.admit {
            Some(f) => f(obj, lookup),
            None => Ok(()),
        }
    }
    fn openapi_schema(&self, gen: &mut schemars::SchemaGenerator) -> Option<schemars::Schema> {
        self.schema.map(|f| f(gen))
    }
    fn deletion(&self, obj: &Value, grace: Option<i64>, exists: Exists<'_>) -> Deletion {
        match self.deletion {
            Some(f) => f(obj, grace, exists),
            None => Deletion::Immediate,
        }
    }
    fn field(&self, obj: &Value, field: &str) -> Option<String> {
        let (_, path) = self.fields.iter().find(|(name, _)| *name == field)?;
        let mut cur = obj;
        for p in *path {
            match cur.get(*p) {
                Some(v) => cur = v,
                None => return Some(String::new()),
            }
        }
        Some(match cur {
            Value::String(s) => s.clone(),
            Value::Null => String::new(),
            other => other.to_string(),
        })
    }
}

/// Decodes into `T` and encodes back: the typed model's view of the object.
pub fn typed_roundtrip<T: DeserializeOwned + Serialize>(obj: &Value) -> Result<Value, String> {
    let typed = T::deserialize(obj).map_err(|e| e.to_string())?;
    serde_json::to_value(typed).map_err(|e| e.to_string())
}

/// The paths of fields present (and not null) in `input` that the typed round trip
/// dropped: unknown fields, reported as `spec.containers[0].foo`.
pub fn unknown_fields(input: &Value, output: &Value) -> Vec<String> {
    let mut out = Vec::new();
    walk_unknown(input, output, String::new(), &mut out);
    out
}

fn walk_unknown(input: &Value, output: &Value, path: String, out: &mut Vec<String>) {
    match (input, output) {
        (Value::Object(i), Value::Object(o)) => {
            for (k, v) in i {
                let p = if path.is_empty() { k.clone() } else { format!("{path}.{k}") };
                match o.get(k) {
                    Some(ov) => walk_unknown(v, ov, p, out),
                    None if v.is_null() => {}
                    None => {
                        // An empty map or list may be dropped by a typed model that omits
                        // empty values; that is not an unknown field.
                        let empty = matches!(v, Value::Object(m) if m.is_empty())
                            || matches!(v, Value::Array(a) if a.is_empty());
                        if !empty {
                            out.push(p)
                        }
                    }
                }
            }
        }
        (Value::Array(i), Value::Array(o)) => {
            for (n, (iv, ov)) in i.iter().zip(o.iter()).enumerate() {
                walk_unknown(iv, ov, format!("{path}[{n}]"), out);
            }
        }
        _ => {}
    }
}

/// `obj[path...]` as a mutable map, creating maps on the way.
pub fn ensure_map<'a>(obj: &'a mut Value, path: &[&str]) -> &'a mut Map<String, Value> {
    let mut cur = obj;
    for p in path {
        if !cur.is_object() {
            *cur = Value::Object(Map::new());
        }
        let m = cur.as_object_mut().expect("made an object above");
        cur = m.entry(p.to_string()).or_insert_with(|| Value::Object(Map::new()));
        if cur.is_null() {
            *cur = Value::Object(Map::new());
        }
    }
    if !cur.is_object() {
        *cur = Value::Object(Map::new());
    }
    cur.as_object_mut().expect("made an object above")
}

/// Sets `m[key] = v` unless the key holds a non-null value.
pub fn set_default(m: &mut Map<String, Value>, key: &str, v: Value) {
    match m.get(key) {
        Some(x) if !x.is_null() => {}
        _ => {
            m.insert(key.to_string(), v);
        }
    }
}

/// `obj.a.b.c` as a string, if it is one.
pub fn get_str<'a>(obj: &'a Value, path: &[&str]) -> Option<&'a str> {
    let mut cur = obj;
    for p in path {
        cur = cur.get(*p)?;
    }
    cur.as_str()
}
