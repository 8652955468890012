//! Hand-written patch metadata for the built-in types rkube serves.
//!
//! Kubernetes derives strategic-merge behaviour from `patchStrategy` and
//! `patchMergeKey` struct tags on its Go types. Rust has no such types here,
//! so this module records the same facts as a small static type graph:
//! a [`TypeDef`] lists only the fields that matter for patching, i.e. the
//! tagged fields themselves and the struct-valued fields on the path to them.
//! Anything not listed behaves as an untagged field: objects merge key by
//! key and lists are replaced wholesale. That is also what an untagged field
//! does in Kubernetes, so omissions only matter for tagged fields.
//!
//! Only `patchStrategy` counts. `+listType=map` markers drive server-side
//! apply, not strategic merge patch; a list carrying only `+listType=map`
//! (for example `Container.resources.claims`, `Node.spec.taints`,
//! `Endpoints.subsets`, `ServiceAccount.imagePullSecrets`) is atomic here, as
//! it is in kube-apiserver.
//!
//! The table reflects the Kubernetes v1.33 API.

use std::fmt;

/// A struct type in the table.
pub(crate) struct TypeDef {
    /// Go-style name, used in error messages and `Debug` output.
    pub(crate) name: &'static str,
    pub(crate) fields: &'static [Field],
}

/// Patch metadata of one field, the equivalent of its Go struct tags.
pub(crate) struct Field {
    pub(crate) name: &'static str,
    /// Type of the value, or of each element for lists. `None` means the
    /// value carries no further patch metadata.
    pub(crate) ty: Option<&'static TypeDef>,
    /// `patchStrategy:"merge"`: the list is merged instead of replaced.
    pub(crate) merge: bool,
    /// `patchMergeKey`: identifies elements of a merged list of objects.
    pub(crate) merge_key: Option<&'static str>,
    /// `patchStrategy:"retainKeys"`. Recorded for completeness: the server
    /// honours a `$retainKeys` directive wherever a client sends it, the tag
    /// only tells clients (kubectl) where to send one.
    pub(crate) retain_keys: bool,
}

impl TypeDef {
    pub(crate) fn field(&self, name: &str) -> Option<&'static Field> {
        // Field lists are short (at most ten entries), so a scan beats a map.
        self.fields.iter().find(|f| f.name == name)
    }
}

impl fmt::Debug for TypeDef {
    // The graph is large; the name identifies a type well enough in logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name)
    }
}

/// A struct-valued field with no strategy of its own.
const fn object(name: &'static str, ty: &'static TypeDef) -> Field {
    Field { name, ty: Some(ty), merge: false, merge_key: None, retain_keys: false }
}

/// `patchStrategy:"merge" patchMergeKey:"<key>"` on a list of objects.
const fn merge_by(name: &'static str, key: &'static str, ty: Option<&'static TypeDef>) -> Field {
    Field { name, ty, merge: true, merge_key: Some(key), retain_keys: false }
}

/// `patchStrategy:"merge"` on a list of scalars: a set union.
const fn merge_scalars(name: &'static str) -> Field {
    Field { name, ty: None, merge: true, merge_key: None, retain_keys: false }
}

/// Adds `retainKeys` to a field's strategy.
const fn retaining(field: Field) -> Field {
    Field { retain_keys: true, ..field }
}

// --- meta/v1 -------------------------------------------------------------

static OBJECT_META: TypeDef = TypeDef {
    name: "v1.ObjectMeta",
    fields: &[
        merge_by("ownerReferences", "uid", None),
        merge_scalars("finalizers"),
        // managedFields carries no tag: atomic.
    ],
};

/// Kinds whose only patch metadata sits in ObjectMeta.
static METADATA_ONLY: [Field; 1] = [object("metadata", &OBJECT_META)];

// --- core/v1: pods and templates -----------------------------------------

/// Container and EphemeralContainer (EphemeralContainerCommon) share tags.
static CONTAINER_FIELDS: [Field; 4] = [
    merge_by("ports", "containerPort", None),
    merge_by("env", "name", None),
    merge_by("volumeMounts", "mountPath", None),
    merge_by("volumeDevices", "devicePath", None),
    // envFrom, resizePolicy, resources.claims: untagged, atomic.
];

static CONTAINER: TypeDef = TypeDef { name: "v1.Container", fields: &CONTAINER_FIELDS };

static EPHEMERAL_CONTAINER: TypeDef = TypeDef { name: "v1.EphemeralContainer", fields: &CONTAINER_FIELDS };

static POD_SPEC: TypeDef = TypeDef {
    name: "v1.PodSpec",
    fields: &[
        // Volume inlines VolumeSource, a one-of; retainKeys lets kubectl
        // switch a volume from one source to another.
        retaining(merge_by("volumes", "name", None)),
        merge_by("initContainers", "name", Some(&CONTAINER)),
        merge_by("containers", "name", Some(&CONTAINER)),
        merge_by("ephemeralContainers", "name", Some(&EPHEMERAL_CONTAINER)),
        merge_by("imagePullSecrets", "name", None),
        merge_by("hostAliases", "ip", None),
        merge_by("topologySpreadConstraints", "topologyKey", None),
        merge_by("schedulingGates", "name", None),
        retaining(merge_by("resourceClaims", "name", None)),
        // tolerations, readinessGates, affinity terms: untagged, atomic.
    ],
};

static POD_STATUS: TypeDef = TypeDef {
    name: "v1.PodStatus",
    fields: &[
        merge_by("conditions", "type", None),
        merge_by("hostIPs", "ip", None),
        merge_by("podIPs", "ip", None),
        retaining(merge_by("resourceClaimStatuses", "name", None)),
        // containerStatuses, initContainerStatuses and
        // ephemeralContainerStatuses are untagged, so atomic; the tags inside
        // ContainerStatus never come into play.
    ],
};

static POD: TypeDef = TypeDef {
    name: "v1.Pod",
    fields: &[object("metadata", &OBJECT_META), object("spec", &POD_SPEC), object("status", &POD_STATUS)],
};

static POD_TEMPLATE_SPEC: TypeDef =
    TypeDef { name: "v1.PodTemplateSpec", fields: &[object("metadata", &OBJECT_META), object("spec", &POD_SPEC)] };

static POD_TEMPLATE: TypeDef = TypeDef {
    name: "v1.PodTemplate",
    fields: &[object("metadata", &OBJECT_META), object("template", &POD_TEMPLATE_SPEC)],
};

// --- workloads: every controller embeds PodTemplateSpec ------------------

/// `spec.template` plus nothing else tagged: ReplicaSet, StatefulSet
/// (volumeClaimTemplates is untagged), DaemonSet (updateStrategy is
/// untagged), ReplicationController, Job.
static TEMPLATE_ONLY_SPEC: [Field; 1] = [object("template", &POD_TEMPLATE_SPEC)];

/// Status types whose only tagged field is `conditions` keyed by `type`.
static CONDITIONS_STATUS: [Field; 1] = [merge_by("conditions", "type", None)];

static WORKLOAD_SPEC: TypeDef = TypeDef { name: "WorkloadSpec", fields: &TEMPLATE_ONLY_SPEC };

static CONDITIONS_ONLY_STATUS: TypeDef = TypeDef { name: "ConditionsStatus", fields: &CONDITIONS_STATUS };

static DEPLOYMENT_SPEC: TypeDef = TypeDef {
    name: "apps.v1.DeploymentSpec",
    fields: &[
        object("template", &POD_TEMPLATE_SPEC),
        // DeploymentStrategy is a one-of (rollingUpdate only with
        // type=RollingUpdate); retainKeys lets kubectl drop rollingUpdate
        // when switching to Recreate.
        Field { name: "strategy", ty: None, merge: false, merge_key: None, retain_keys: true },
    ],
};

static DEPLOYMENT: TypeDef = TypeDef {
    name: "apps.v1.Deployment",
    fields: &[
        object("metadata", &OBJECT_META),
        object("spec", &DEPLOYMENT_SPEC),
        object("status", &CONDITIONS_ONLY_STATUS),
    ],
};

/// ReplicaSet, StatefulSet, DaemonSet, ReplicationController and Job share
/// one shape as far as patching goes.
static TEMPLATED_WORKLOAD_FIELDS: [Field; 3] =
    [object("metadata", &OBJECT_META), object("spec", &WORKLOAD_SPEC), object("status", &CONDITIONS_ONLY_STATUS)];

static REPLICA_SET: TypeDef = TypeDef { name: "apps.v1.ReplicaSet", fields: &TEMPLATED_WORKLOAD_FIELDS };

static STATEFUL_SET: TypeDef = TypeDef { name: "apps.v1.StatefulSet", fields: &TEMPLATED_WORKLOAD_FIELDS };

static DAEMON_SET: TypeDef = TypeDef { name: "apps.v1.DaemonSet", fields: &TEMPLATED_WORKLOAD_FIELDS };

static REPLICATION_CONTROLLER: TypeDef =
    TypeDef { name: "v1.ReplicationController", fields: &TEMPLATED_WORKLOAD_FIELDS };

static JOB: TypeDef = TypeDef { name: "batch.v1.Job", fields: &TEMPLATED_WORKLOAD_FIELDS };

static JOB_TEMPLATE_SPEC: TypeDef = TypeDef {
    name: "batch.v1.JobTemplateSpec",
    fields: &[object("metadata", &OBJECT_META), object("spec", &WORKLOAD_SPEC)],
};

static CRON_JOB_SPEC: TypeDef =
    TypeDef { name: "batch.v1.CronJobSpec", fields: &[object("jobTemplate", &JOB_TEMPLATE_SPEC)] };

static CRON_JOB: TypeDef = TypeDef {
    name: "batch.v1.CronJob",
    fields: &[
        object("metadata", &OBJECT_META),
        object("spec", &CRON_JOB_SPEC),
        // CronJobStatus.active is untagged: atomic.
    ],
};

// --- core/v1: other kinds -------------------------------------------------

static SERVICE_SPEC: TypeDef = TypeDef { name: "v1.ServiceSpec", fields: &[merge_by("ports", "port", None)] };

static SERVICE: TypeDef = TypeDef {
    name: "v1.Service",
    fields: &[
        object("metadata", &OBJECT_META),
        object("spec", &SERVICE_SPEC),
        // ServiceStatus.conditions (metav1.Condition) merges by type;
        // loadBalancer.ingress is atomic.
        object("status", &CONDITIONS_ONLY_STATUS),
    ],
};

static SERVICE_ACCOUNT: TypeDef = TypeDef {
    name: "v1.ServiceAccount",
    fields: &[
        object("metadata", &OBJECT_META),
        merge_by("secrets", "name", None),
        // imagePullSecrets is untagged on ServiceAccount (unlike PodSpec): atomic.
    ],
};

static NAMESPACE: TypeDef = TypeDef {
    name: "v1.Namespace",
    fields: &[
        object("metadata", &OBJECT_META),
        // spec.finalizers is untagged: atomic.
        object("status", &CONDITIONS_ONLY_STATUS),
    ],
};

static NODE_SPEC: TypeDef = TypeDef {
    name: "v1.NodeSpec",
    fields: &[
        merge_scalars("podCIDRs"),
        // taints is untagged: atomic.
    ],
};

static NODE_STATUS: TypeDef = TypeDef {
    name: "v1.NodeStatus",
    fields: &[
        merge_by("conditions", "type", None),
        merge_by("addresses", "type", None),
        // images, volumesAttached, volumesInUse: untagged, atomic.
    ],
};

static NODE: TypeDef = TypeDef {
    name: "v1.Node",
    fields: &[object("metadata", &OBJECT_META), object("spec", &NODE_SPEC), object("status", &NODE_STATUS)],
};

/// Declares kinds that only carry ObjectMeta metadata.
macro_rules! metadata_only {
    ($($ident:ident => $name:literal),* $(,)?) => {
        $(
            static $ident: TypeDef = TypeDef {
                name: $name,
                fields: &METADATA_ONLY,
            };
        )*
    };
}

metadata_only! {
    ENDPOINTS => "v1.Endpoints",       // subsets and everything in them: atomic
    CONFIG_MAP => "v1.ConfigMap",
    SECRET => "v1.Secret",
    CORE_EVENT => "v1.Event",
    EVENTS_EVENT => "events.v1.Event",
    ROLE => "rbac.v1.Role",            // rules: atomic
    CLUSTER_ROLE => "rbac.v1.ClusterRole", // rules, aggregationRule: atomic
    ROLE_BINDING => "rbac.v1.RoleBinding", // subjects: atomic
    CLUSTER_ROLE_BINDING => "rbac.v1.ClusterRoleBinding",
    LEASE => "coordination.v1.Lease",
}

/// (group, version, kind) of every top-level type in the table.
static KINDS: &[(&str, &str, &str, &TypeDef)] = &[
    ("", "v1", "Pod", &POD),
    ("", "v1", "PodTemplate", &POD_TEMPLATE),
    ("", "v1", "ReplicationController", &REPLICATION_CONTROLLER),
    ("", "v1", "Service", &SERVICE),
    ("", "v1", "Endpoints", &ENDPOINTS),
    ("", "v1", "ConfigMap", &CONFIG_MAP),
    ("", "v1", "Secret", &SECRET),
    ("", "v1", "ServiceAccount", &SERVICE_ACCOUNT),
    ("", "v1", "Namespace", &NAMESPACE),
    ("", "v1", "Node", &NODE),
    ("", "v1", "Event", &CORE_EVENT),
    ("apps", "v1", "Deployment", &DEPLOYMENT),
    ("apps", "v1", "ReplicaSet", &REPLICA_SET),
    ("apps", "v1", "StatefulSet", &STATEFUL_SET),
    ("apps", "v1", "DaemonSet", &DAEMON_SET),
    ("batch", "v1", "Job", &JOB),
    ("batch", "v1", "CronJob", &CRON_JOB),
    ("rbac.authorization.k8s.io", "v1", "Role", &ROLE),
    ("rbac.authorization.k8s.io", "v1", "ClusterRole", &CLUSTER_ROLE),
    ("rbac.authorization.k8s.io", "v1", "RoleBinding", &ROLE_BINDING),
    ("rbac.authorization.k8s.io", "v1", "ClusterRoleBinding", &CLUSTER_ROLE_BINDING),
    ("coordination.k8s.io", "v1", "Lease", &LEASE),
    ("events.k8s.io", "v1", "Event", &EVENTS_EVENT),
];

/// Looks up a top-level kind.
pub(crate) fn lookup_kind(group: &str, version: &str, kind: &str) -> Option<&'static TypeDef> {
    KINDS.iter().find(|(g, v, k, _)| *g == group && *v == version && *k == kind).map(|(_, _, _, ty)| *ty)
}

/// Every top-level kind, for tests that walk the whole table.
#[cfg(test)]
pub(crate) fn all_kinds() -> impl Iterator<Item = (&'static str, &'static str, &'static str)> {
    KINDS.iter().map(|(g, v, k, _)| (*g, *v, *k))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Walks the graph and checks invariants a typo in the table would break.
    fn check(ty: &'static TypeDef, depth: usize) {
        assert!(depth < 16, "type graph too deep at {}", ty.name);
        for (i, f) in ty.fields.iter().enumerate() {
            assert!(ty.fields[..i].iter().all(|g| g.name != f.name), "duplicate field {} in {}", f.name, ty.name);
            if f.merge_key.is_some() {
                assert!(f.merge, "{}.{} has a key but no merge", ty.name, f.name);
            }
            if let Some(child) = f.ty {
                check(child, depth + 1);
            }
        }
    }

    #[test]
    fn table_is_consistent() {
        for (g, v, k) in all_kinds() {
            let ty = lookup_kind(g, v, k).expect("listed kind resolves");
            check(ty, 0);
            assert!(ty.field("metadata").is_some(), "{k} lacks metadata");
        }
    }

    #[test]
    fn no_duplicate_kinds() {
        let kinds: Vec<_> = all_kinds().collect();
        for (i, a) in kinds.iter().enumerate() {
            assert!(!kinds[..i].contains(a), "duplicate kind {a:?}");
        }
    }
}
