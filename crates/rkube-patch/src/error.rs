//! Errors returned while applying a strategic merge patch.
//!
//! The messages follow the wording kube-apiserver uses, because clients (and
//! people reading `kubectl` output) recognise them, and some tooling greps for
//! fragments such as "does not contain declared merge key".

/// Why a strategic merge patch could not be applied.
///
/// Every variant is caused by the request (a malformed patch or an original
/// object that does not fit the patch); none indicates a bug in this crate.
/// [`PatchError::http_status`] gives the status kube-apiserver answers with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PatchError {
    /// The patch body is valid JSON but not an object (e.g. a JSON array).
    #[error("json: cannot unmarshal {found} into Go value of type map[string]interface {{}}")]
    PatchNotObject {
        /// JSON type that was found instead ("array", "string", "number", "bool").
        found: &'static str,
    },

    /// The original object is not a JSON object.
    #[error("invalid JSON document")]
    InvalidDocument,

    /// A `$patch` directive with a value other than `replace` or `delete`
    /// (or `merge`, which is only rejected differently inside lists).
    #[error("unknown patch type: {directive} in map: {map}")]
    UnknownDirective {
        /// The directive value as sent.
        directive: String,
        /// The map that carried it, rendered as JSON.
        map: String,
    },

    /// A `{"$patch": "merge"}` element in a list: Kubernetes never implemented it.
    #[error("merging lists cannot yet be specified in the patch")]
    MergeDirectiveInList,

    /// An element of a list merged by key lacks the key.
    #[error("map: {map} does not contain declared merge key: {key}")]
    MissingMergeKey {
        /// The offending element, rendered as JSON.
        map: String,
        /// The merge key declared for the list.
        key: String,
    },

    /// A value has the wrong JSON type for where it appears (for example a
    /// `$setElementOrder` value that is not a list, or a string in a list
    /// merged by key).
    #[error("expected a {expected}, but received a {actual}")]
    UnexpectedType {
        /// Type that was required, named like Go names it.
        expected: &'static str,
        /// Type that was found, named like Go names it.
        actual: &'static str,
    },

    /// A merged list contains lists.
    #[error("lists of lists are not supported")]
    ListOfLists,

    /// The original and patch elements of a merged list differ in JSON type.
    #[error("list element types are not identical: {lists}")]
    MixedListElements {
        /// The lists involved, rendered as JSON.
        lists: String,
    },

    /// A list of objects is declared mergeable but has no merge key.
    #[error("cannot merge lists without merge key for {type_name}")]
    MergeWithoutKey {
        /// Name of the element type in the schema table.
        type_name: &'static str,
    },

    /// A `$deleteFromPrimitiveList` key is malformed.
    #[error("invalid patch format of primitive list")]
    InvalidPrimitiveListDirective,

    /// A `$retainKeys` value is not a list, or the patch sets a key it does not retain.
    #[error("invalid patch format of retainKeys")]
    InvalidRetainKeys,

    /// A `$setElementOrder` key is malformed.
    #[error("invalid patch format of setElementOrder list")]
    InvalidSetElementOrder,

    /// The merge would cost more than its bound of work (see [`crate::WORK_MAX`]).
    /// kube-apiserver has no such bound; it answers such a patch after minutes or hours.
    #[error("the patch needs more than {max} element comparisons to merge; send smaller lists")]
    TooComplex {
        /// The bound, in element comparisons.
        max: u64,
    },

    /// The patch list names elements in an order that `$setElementOrder` contradicts.
    #[error("The order in patch list:\n{patch}\n doesn't match $setElementOrder list:\n{order}\n")]
    SetElementOrderMismatch {
        /// The patch list, rendered as JSON.
        patch: String,
        /// The `$setElementOrder` list, rendered as JSON.
        order: String,
    },
}

impl PatchError {
    /// HTTP status kube-apiserver answers with for this error.
    ///
    /// kube-apiserver maps a handful of well-known patch format errors to
    /// 400 (and lists of lists to 422); every other error from the patch
    /// library falls through its error translation and surfaces as a 500
    /// Internal Server Error, odd as that is for a client mistake. Callers
    /// that prefer 400 for everything can ignore this.
    pub fn http_status(&self) -> u16 {
        match self {
            PatchError::PatchNotObject { .. }
            | PatchError::InvalidDocument
            | PatchError::InvalidPrimitiveListDirective
            | PatchError::InvalidRetainKeys
            | PatchError::InvalidSetElementOrder => 400,
            PatchError::ListOfLists => 422,
            PatchError::TooComplex { .. } => 413,
            PatchError::UnknownDirective { .. }
            | PatchError::MergeDirectiveInList
            | PatchError::MissingMergeKey { .. }
            | PatchError::UnexpectedType { .. }
            | PatchError::MixedListElements { .. }
            | PatchError::MergeWithoutKey { .. }
            | PatchError::SetElementOrderMismatch { .. } => 500,
        }
    }
}
