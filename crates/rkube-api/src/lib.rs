//! The resource model: which resources exist and how each behaves.
//!
//! - [`resource`]: the resource table (group, version, kind, plural, scope, verbs,
//!   subresources), extensible at run time.
//! - [`strategy`]: per-resource hooks (typed decoding, defaults, validation, initial
//!   status, field selectors), as kube-apiserver's strategies.
//! - [`builtin`]: the rows and strategies of the built-in resources ([`csr`]: the
//!   CertificateSigningRequest strategy).
//! - [`status`]: `Status` errors with Kubernetes' codes, reasons and messages.
//! - [`limits`]: bounds on what one request may make the server hold or do.
//! - [`selector`], [`validation`], [`table`]: pure helpers.
//!
//! Architecture invariant: nothing here does IO or knows about HTTP; every function is a
//! pure function of values, tested with data alone (one exception reads the clock: a
//! CertificateSigningRequest condition's missing timestamps become now, as upstream's
//! strategy fills them).

// Errors carry Kubernetes' full detail (field paths, causes); they are the cold path.
#![allow(clippy::result_large_err)]

pub mod builtin;
pub mod crd;
pub mod csr;
pub mod limits;
pub mod quantity;
pub mod resource;
pub mod selector;
pub mod status;
pub mod strategy;
pub mod table;
pub mod validation;

pub use resource::{Computed, ProxyTarget, ResourceDef, ResourceTable, Subresource};
pub use status::{ApiError, ApiResult, FieldError};
pub use strategy::Strategy;
