//! The built-in resources: their table rows and strategies (defaults and validation as
//! kube-apiserver applies them; see shared/reference/.../objects/*-defaulted.json).

use std::sync::Arc;

use k8s_openapi::api::{apps::v1 as apps, batch::v1 as batch, coordination::v1 as coordination, core::v1 as core};
use k8s_openapi::api::{authentication::v1 as authentication, authorization::v1 as authorization};
use k8s_openapi::api::{certificates::v1 as certificates, events::v1 as events, rbac::v1 as rbac};
use k8s_openapi::api::{
    discovery::v1 as discovery, networking::v1 as networking, node::v1 as node, policy::v1 as policy,
};
use serde_json::{json, Value};

use crate::resource::{
    Computed, ProxyTarget, ResourceBuilder, ResourceDef, ResourceTable, Subresource, VERBS_NO_DELETECOLLECTION,
};
use crate::selector::LabelSelector;
use crate::status::FieldError;
use crate::strategy::{
    ensure_map, get_str, set_default, typed_roundtrip, typed_schema, Builtin, Deletion, Exists, Lookup, Refusal,
};
use crate::validation::{self, NameRule};

/// Registers every built-in resource.
pub fn register_builtins(table: &ResourceTable) {
    for def in builtins() {
        table.register(def);
    }
}

fn s(b: Builtin) -> Arc<Builtin> {
    Arc::new(b)
}

const POD_FIELDS: &[(&str, &[&str])] = &[
    ("spec.nodeName", &["spec", "nodeName"]),
    ("spec.restartPolicy", &["spec", "restartPolicy"]),
    ("spec.schedulerName", &["spec", "schedulerName"]),
    ("spec.serviceAccountName", &["spec", "serviceAccountName"]),
    ("spec.hostNetwork", &["spec", "hostNetwork"]),
    ("status.phase", &["status", "phase"]),
    ("status.podIP", &["status", "podIP"]),
    ("status.nominatedNodeName", &["status", "nominatedNodeName"]),
];

pub fn builtins() -> Vec<ResourceDef> {
    use Subresource::*;
    let mut v = vec![
        // core/v1
        ResourceBuilder::new("", "v1", "Namespace", "namespaces", false, s(Builtin {
            typed: Some(typed_roundtrip::<core::Namespace>),
            schema: Some(typed_schema::<core::Namespace>),
            defaults: default_namespace,
            initial_status: Some(|_| json!({"phase": "Active"})),
            deletion: Some(|_, _, _| Deletion::NamespaceLifecycle),
            fields: &[("status.phase", &["status", "phase"])],
            ..Default::default()
        }))
        .short(&["ns"])
        .verbs(VERBS_NO_DELETECOLLECTION)
        .subresources(&[Status, Finalize])
        .names(NameRule::Dns1123Label)
        .build(),
        ResourceBuilder::new("", "v1", "Pod", "pods", true, s(Builtin {
            typed: Some(typed_roundtrip::<core::Pod>),
            schema: Some(typed_schema::<core::Pod>),
            defaults: default_pod,
            validate: validate_pod,
            validate_update: validate_pod_update,
            validate_create: validate_pod_create,
            validate_part_update: Some(validate_pod_ephemeral_update),
            initial_status: Some(pod_initial_status),
            deletion: Some(pod_deletion),
            admit: Some(admit_service_account),
            fields: POD_FIELDS,
            ..Default::default()
        }))
        .short(&["po"])
        .categories(&["all"])
        .subresources(&[Status, Binding, Eviction, Log, Exec, Attach, PortForward, EphemeralContainers])
        .proxy(ProxyTarget::Pod)
        .build(),
        ResourceBuilder::new("", "v1", "Service", "services", true, s(Builtin {
            typed: Some(typed_roundtrip::<core::Service>),
            schema: Some(typed_schema::<core::Service>),
            defaults: default_service,
            validate: validate_service,
            validate_update: validate_service_update,
            allocation: Some(("/spec/clusterIP", allocate_cluster_ip)),
            initial_status: Some(|_| json!({"loadBalancer": {}})),
            fields: &[("spec.clusterIP", &["spec", "clusterIP"]), ("spec.type", &["spec", "type"])],
            ..Default::default()
        }))
        .short(&["svc"])
        .categories(&["all"])
        .verbs(&["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"])
        .subresources(&[Status])
        .proxy(ProxyTarget::Service)
        .names(NameRule::Dns1035Label)
        .build(),
        ResourceBuilder::new("", "v1", "Endpoints", "endpoints", true, s(Builtin {
            typed: Some(typed_roundtrip::<core::Endpoints>),
            schema: Some(typed_schema::<core::Endpoints>),
            ..Default::default()
        }))
        .short(&["ep"])
        .build(),
        ResourceBuilder::new("", "v1", "ConfigMap", "configmaps", true, s(Builtin {
            typed: Some(typed_roundtrip::<core::ConfigMap>),
            schema: Some(typed_schema::<core::ConfigMap>),
            validate: validate_configmap,
            validate_update: |n, o, e| kept_when_immutable(n, o, &["data", "binaryData"], e),
            ..Default::default()
        }))
        .short(&["cm"])
        .build(),
        ResourceBuilder::new("", "v1", "Secret", "secrets", true, s(Builtin {
            typed: Some(typed_roundtrip::<core::Secret>),
            schema: Some(typed_schema::<core::Secret>),
            defaults: |o| {
                merge_string_data(o);
                set_default(ensure_map(o, &[]), "type", json!("Opaque"))
            },
            validate: validate_secret,
            validate_update: |n, o, e| {
                immutable(n, o, &["type"], "type", e);
                kept_when_immutable(n, o, &["data"], e);
            },
            fields: &[("type", &["type"])],
            ..Default::default()
        }))
        .build(),
        ResourceBuilder::new("", "v1", "ServiceAccount", "serviceaccounts", true, s(Builtin {
            typed: Some(typed_roundtrip::<core::ServiceAccount>),
            schema: Some(typed_schema::<core::ServiceAccount>),
            ..Default::default()
        }))
        .short(&["sa"])
        .subresources(&[Token])
        .build(),
        ResourceBuilder::new("", "v1", "Node", "nodes", false, s(Builtin {
            typed: Some(typed_roundtrip::<core::Node>),
            schema: Some(typed_schema::<core::Node>),
            initial_status: Some(|_| json!({"daemonEndpoints": {"kubeletEndpoint": {"Port": 0}}, "nodeInfo": {"architecture": "", "bootID": "", "containerRuntimeVersion": "", "kernelVersion": "", "kubeProxyVersion": "", "kubeletVersion": "", "machineID": "", "operatingSystem": "", "osImage": "", "systemUUID": ""}})),
            fields: &[("spec.unschedulable", &["spec", "unschedulable"])],
            ..Default::default()
        }))
        .short(&["no"])
        .subresources(&[Status])
        .proxy(ProxyTarget::Node)
        .build(),
        ResourceBuilder::new("", "v1", "Event", "events", true, s(Builtin {
            typed: Some(typed_roundtrip::<core::Event>),
            schema: Some(typed_schema::<core::Event>),
            fields: &[
                ("involvedObject.kind", &["involvedObject", "kind"]),
                ("involvedObject.namespace", &["involvedObject", "namespace"]),
                ("involvedObject.name", &["involvedObject", "name"]),
                ("involvedObject.uid", &["involvedObject", "uid"]),
                ("involvedObject.apiVersion", &["involvedObject", "apiVersion"]),
                ("involvedObject.resourceVersion", &["involvedObject", "resourceVersion"]),
                ("involvedObject.fieldPath", &["involvedObject", "fieldPath"]),
                ("reason", &["reason"]),
                ("reportingComponent", &["reportingComponent"]),
                ("source", &["source", "component"]),
                ("type", &["type"]),
            ],
            ..Default::default()
        }))
        .short(&["ev"])
        .build(),
        // apps/v1
        workload("Deployment", "deployments", &["deploy"], true, s(Builtin {
            typed: Some(typed_roundtrip::<apps::Deployment>),
            schema: Some(typed_schema::<apps::Deployment>),
            defaults: default_deployment,
            validate: validate_workload,
            validate_update: validate_selector_immutable,
            initial_status: Some(|_| json!({})),
            ..Default::default()
        })),
        workload("ReplicaSet", "replicasets", &["rs"], true, s(Builtin {
            typed: Some(typed_roundtrip::<apps::ReplicaSet>),
            schema: Some(typed_schema::<apps::ReplicaSet>),
            defaults: default_replicaset,
            validate: validate_workload,
            validate_update: validate_selector_immutable,
            initial_status: Some(|_| json!({"replicas": 0})),
            ..Default::default()
        })),
        workload("StatefulSet", "statefulsets", &["sts"], true, s(Builtin {
            typed: Some(typed_roundtrip::<apps::StatefulSet>),
            schema: Some(typed_schema::<apps::StatefulSet>),
            defaults: default_statefulset,
            validate: validate_workload,
            validate_update: validate_selector_immutable,
            initial_status: Some(|_| json!({"replicas": 0, "availableReplicas": 0})),
            ..Default::default()
        })),
        workload("DaemonSet", "daemonsets", &["ds"], false, s(Builtin {
            typed: Some(typed_roundtrip::<apps::DaemonSet>),
            schema: Some(typed_schema::<apps::DaemonSet>),
            defaults: default_daemonset,
            validate: validate_workload,
            validate_update: validate_selector_immutable,
            initial_status: Some(|_| json!({"currentNumberScheduled": 0, "desiredNumberScheduled": 0, "numberMisscheduled": 0, "numberReady": 0})),
            ..Default::default()
        })),
        // batch/v1
        ResourceBuilder::new("batch", "v1", "Job", "jobs", true, s(Builtin {
            typed: Some(typed_roundtrip::<batch::Job>),
            schema: Some(typed_schema::<batch::Job>),
            defaults: default_job,
            prepare_for_create: prepare_job,
            validate: validate_job,
            validate_update: validate_selector_immutable,
            initial_status: Some(|_| json!({})),
            ..Default::default()
        }))
        .categories(&["all"])
        .subresources(&[Status])
        .generation()
        .build(),
        ResourceBuilder::new("batch", "v1", "CronJob", "cronjobs", true, s(Builtin {
            typed: Some(typed_roundtrip::<batch::CronJob>),
            schema: Some(typed_schema::<batch::CronJob>),
            defaults: default_cronjob,
            validate: validate_cronjob,
            initial_status: Some(|_| json!({})),
            ..Default::default()
        }))
        .short(&["cj"])
        .categories(&["all"])
        .subresources(&[Status])
        .names(NameRule::Dns1123Subdomain)
        .generation()
        .build(),
        // rbac.authorization.k8s.io/v1 (stored; enforcement comes with the RBAC work)
        rbac_row("Role", "roles", true, s(Builtin { typed: Some(typed_roundtrip::<rbac::Role>),
            schema: Some(typed_schema::<rbac::Role>), ..Default::default() })),
        rbac_row("RoleBinding", "rolebindings", true, s(Builtin {
            typed: Some(typed_roundtrip::<rbac::RoleBinding>),
            schema: Some(typed_schema::<rbac::RoleBinding>),
            validate: validate_binding,
            validate_update: |n, o, e| immutable(n, o, &["roleRef"], "roleRef", e),
            ..Default::default()
        })),
        rbac_row("ClusterRole", "clusterroles", false, s(Builtin { typed: Some(typed_roundtrip::<rbac::ClusterRole>),
            schema: Some(typed_schema::<rbac::ClusterRole>), ..Default::default() })),
        rbac_row("ClusterRoleBinding", "clusterrolebindings", false, s(Builtin {
            typed: Some(typed_roundtrip::<rbac::ClusterRoleBinding>),
            schema: Some(typed_schema::<rbac::ClusterRoleBinding>),
            validate: validate_binding,
            validate_update: |n, o, e| immutable(n, o, &["roleRef"], "roleRef", e),
            ..Default::default()
        })),
        ResourceBuilder::new(
            "certificates.k8s.io",
            "v1",
            "CertificateSigningRequest",
            "certificatesigningrequests",
            false,
            s(Builtin {
                typed: Some(typed_roundtrip::<certificates::CertificateSigningRequest>),
                schema: Some(typed_schema::<certificates::CertificateSigningRequest>),
                defaults: crate::csr::default_csr,
                validate: crate::csr::validate_csr,
                validate_update: crate::csr::validate_csr_update,
                validate_part_update: Some(crate::csr::validate_csr_approval),
                initial_status: Some(|_| json!({})),
                ..Default::default()
            }),
        )
        .short(&["csr"])
        .subresources(&[Status, Approval])
        .requester("spec")
        .names(NameRule::PathSegment)
        .build(),
        ResourceBuilder::new("coordination.k8s.io", "v1", "Lease", "leases", true, s(Builtin {
            typed: Some(typed_roundtrip::<coordination::Lease>),
            schema: Some(typed_schema::<coordination::Lease>),
            ..Default::default()
        }))
        .build(),
        ResourceBuilder::new("", "v1", "PodTemplate", "podtemplates", true, s(Builtin {
            typed: Some(typed_roundtrip::<core::PodTemplate>),
            schema: Some(typed_schema::<core::PodTemplate>),
            defaults: |o| default_template(o, &["template"]),
            ..Default::default()
        }))
        .generation()
        .build(),
        // networking.k8s.io/v1
        ResourceBuilder::new("networking.k8s.io", "v1", "Ingress", "ingresses", true, s(Builtin {
            typed: Some(typed_roundtrip::<networking::Ingress>),
            schema: Some(typed_schema::<networking::Ingress>),
            initial_status: Some(|_| json!({"loadBalancer": {}})),
            ..Default::default()
        }))
        .short(&["ing"])
        .subresources(&[Status])
        .generation()
        .build(),
        ResourceBuilder::new("networking.k8s.io", "v1", "IngressClass", "ingressclasses", false, s(Builtin {
            typed: Some(typed_roundtrip::<networking::IngressClass>),
            schema: Some(typed_schema::<networking::IngressClass>),
            ..Default::default()
        }))
        .generation()
        .build(),
        // node.k8s.io/v1
        ResourceBuilder::new("node.k8s.io", "v1", "RuntimeClass", "runtimeclasses", false, s(Builtin {
            typed: Some(typed_roundtrip::<node::RuntimeClass>),
            schema: Some(typed_schema::<node::RuntimeClass>),
            validate_update: |n, o, e| immutable(n, o, &["handler"], "handler", e),
            ..Default::default()
        }))
        .build(),
        // discovery.k8s.io/v1
        ResourceBuilder::new("discovery.k8s.io", "v1", "EndpointSlice", "endpointslices", true, s(Builtin {
            typed: Some(typed_roundtrip::<discovery::EndpointSlice>),
            schema: Some(typed_schema::<discovery::EndpointSlice>),
            defaults: default_endpoint_slice,
            validate_update: |n, o, e| immutable(n, o, &["addressType"], "addressType", e),
            ..Default::default()
        }))
        .generation()
        .build(),
        // policy/v1
        ResourceBuilder::new("policy", "v1", "PodDisruptionBudget", "poddisruptionbudgets", true, s(Builtin {
            typed: Some(typed_roundtrip::<policy::PodDisruptionBudget>),
            schema: Some(typed_schema::<policy::PodDisruptionBudget>),
            initial_status: Some(
                |_| json!({"disruptionsAllowed": 0, "currentHealthy": 0, "desiredHealthy": 0, "expectedPods": 0}),
            ),
            ..Default::default()
        }))
        .short(&["pdb"])
        .subresources(&[Status])
        .generation()
        .build(),
        ResourceBuilder::new("events.k8s.io", "v1", "Event", "events", true, s(Builtin {
            typed: Some(typed_roundtrip::<events::Event>),
            schema: Some(typed_schema::<events::Event>),
            validate: validate_events_v1,
            ..Default::default()
        }))
        .short(&["ev"])
        .build(),
        crate::crd::definition_row(),
        // Reviews: create-only, answered from the authenticator and the RBAC snapshot.
        review_row("authorization.k8s.io", "SelfSubjectAccessReview", "selfsubjectaccessreviews", false, s(Builtin {
            typed: Some(typed_roundtrip::<authorization::SelfSubjectAccessReview>),
            schema: Some(typed_schema::<authorization::SelfSubjectAccessReview>),
            ephemeral: true,
            ..Default::default()
        })),
        review_row("authorization.k8s.io", "SelfSubjectRulesReview", "selfsubjectrulesreviews", false, s(Builtin {
            typed: Some(typed_roundtrip::<authorization::SelfSubjectRulesReview>),
            schema: Some(typed_schema::<authorization::SelfSubjectRulesReview>),
            ephemeral: true,
            ..Default::default()
        })),
        review_row("authorization.k8s.io", "SubjectAccessReview", "subjectaccessreviews", false, s(Builtin {
            typed: Some(typed_roundtrip::<authorization::SubjectAccessReview>),
            schema: Some(typed_schema::<authorization::SubjectAccessReview>),
            ephemeral: true,
            ..Default::default()
        })),
        review_row("authorization.k8s.io", "LocalSubjectAccessReview", "localsubjectaccessreviews", true, s(Builtin {
            typed: Some(typed_roundtrip::<authorization::LocalSubjectAccessReview>),
            schema: Some(typed_schema::<authorization::LocalSubjectAccessReview>),
            ephemeral: true,
            ..Default::default()
        })),
        review_row("authentication.k8s.io", "SelfSubjectReview", "selfsubjectreviews", false, s(Builtin {
            typed: Some(typed_roundtrip::<authentication::SelfSubjectReview>),
            schema: Some(typed_schema::<authentication::SelfSubjectReview>),
            ephemeral: true,
            ..Default::default()
        })),
        review_row("authentication.k8s.io", "TokenReview", "tokenreviews", false, s(Builtin {
            typed: Some(typed_roundtrip::<authentication::TokenReview>),
            schema: Some(typed_schema::<authentication::TokenReview>),
            ephemeral: true,
            ..Default::default()
        })),
        // The resource metrics API (metrics-server's, served here: see `metrics_api` in the
        // API server), read from the kubelets when asked.
        ResourceBuilder::new("metrics.k8s.io", "v1beta1", "NodeMetrics", "nodes", false, s(Builtin::default()))
            .computed(Computed::NodeMetrics)
            .build(),
        ResourceBuilder::new("metrics.k8s.io", "v1beta1", "PodMetrics", "pods", true, s(Builtin::default()))
            .computed(Computed::PodMetrics)
            .build(),
    ];
    for r in &mut v {
        r.singular = r.kind.to_lowercase();
    }
    v
}

fn review_row(group: &str, kind: &str, plural: &str, namespaced: bool, strategy: Arc<Builtin>) -> ResourceDef {
    ResourceBuilder::new(group, "v1", kind, plural, namespaced, strategy)
        .verbs(&["create"])
        .names(NameRule::PathSegment)
        .build()
}

fn workload(kind: &str, plural: &str, short: &[&str], scale: bool, strategy: Arc<Builtin>) -> ResourceDef {
    let subs: &[Subresource] = if scale { &[Subresource::Status, Subresource::Scale] } else { &[Subresource::Status] };
    ResourceBuilder::new("apps", "v1", kind, plural, true, strategy)
        .short(short)
        .categories(&["all"])
        .subresources(subs)
        .generation()
        .build()
}

fn rbac_row(kind: &str, plural: &str, namespaced: bool, strategy: Arc<Builtin>) -> ResourceDef {
    ResourceBuilder::new("rbac.authorization.k8s.io", "v1", kind, plural, namespaced, strategy)
        .names(NameRule::PathSegment)
        .build()
}

// ---------------------------------------------------------------------------------------
// Defaults

fn default_namespace(o: &mut Value) {
    let name = get_str(o, &["metadata", "name"]).unwrap_or("").to_string();
    if !name.is_empty() {
        // The NamespaceDefaultLabelName feature: every namespace carries its own name.
        ensure_map(o, &["metadata", "labels"]).insert("kubernetes.io/metadata.name".into(), json!(name));
    }
    set_default(ensure_map(o, &["spec"]), "finalizers", json!(["kubernetes"]));
}

fn default_container(c: &mut Value) {
    let Some(m) = c.as_object_mut() else { return };
    let image = m.get("image").and_then(Value::as_str).unwrap_or("");
    // `:latest` or no tag pulls Always; a tag or digest pulls IfNotPresent.
    let last = image.rsplit('/').next().unwrap_or("");
    let pinned = image.contains('@') || (last.contains(':') && !last.ends_with(":latest"));
    let policy = if pinned { "IfNotPresent" } else { "Always" };
    set_default(m, "imagePullPolicy", json!(policy));
    set_default(m, "terminationMessagePath", json!("/dev/termination-log"));
    set_default(m, "terminationMessagePolicy", json!("File"));
    set_default(m, "resources", json!({}));
    if let Some(ports) = m.get_mut("ports").and_then(Value::as_array_mut) {
        for p in ports {
            if let Some(p) = p.as_object_mut() {
                set_default(p, "protocol", json!("TCP"));
            }
        }
    }
    for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
        if let Some(p) = m.get_mut(probe).and_then(Value::as_object_mut) {
            set_default(p, "timeoutSeconds", json!(1));
            set_default(p, "periodSeconds", json!(10));
            set_default(p, "successThreshold", json!(1));
            set_default(p, "failureThreshold", json!(3));
        }
    }
    if let Some(env) = m.get_mut("env").and_then(Value::as_array_mut) {
        for e in env {
            if let Some(fr) = e.pointer_mut("/valueFrom/fieldRef").and_then(Value::as_object_mut) {
                set_default(fr, "apiVersion", json!("v1"));
            }
        }
    }
}

/// PodSpec defaults shared by pods and every pod template.
fn default_pod_spec(spec: &mut Value) {
    let Some(m) = spec.as_object_mut() else { return };
    for list in ["containers", "initContainers", "ephemeralContainers"] {
        if let Some(cs) = m.get_mut(list).and_then(Value::as_array_mut) {
            cs.iter_mut().for_each(default_container);
        }
    }
    set_default(m, "restartPolicy", json!("Always"));
    set_default(m, "terminationGracePeriodSeconds", json!(30));
    set_default(m, "dnsPolicy", json!("ClusterFirst"));
    set_default(m, "securityContext", json!({}));
    set_default(m, "schedulerName", json!("default-scheduler"));
    if let Some(vols) = m.get_mut("volumes").and_then(Value::as_array_mut) {
        for v in vols {
            let Some(v) = v.as_object_mut() else { continue };
            if let Some(src) = v.get_mut("secret").and_then(Value::as_object_mut) {
                set_default(src, "defaultMode", json!(420));
            }
            if let Some(src) = v.get_mut("configMap").and_then(Value::as_object_mut) {
                set_default(src, "defaultMode", json!(420));
            }
            if let Some(src) = v.get_mut("projected").and_then(Value::as_object_mut) {
                set_default(src, "defaultMode", json!(420));
            }
            if let Some(src) = v.get_mut("downwardAPI").and_then(Value::as_object_mut) {
                set_default(src, "defaultMode", json!(420));
            }
            if v.len() == 1 {
                // A volume with only a name is an emptyDir.
                v.insert("emptyDir".into(), json!({}));
            }
        }
    }
}

fn default_template(o: &mut Value, path: &[&str]) {
    let mut p: Vec<&str> = path.to_vec();
    p.push("metadata");
    // Go's zero Time prints as null; clients compare against it.
    set_default(ensure_map(o, &p), "creationTimestamp", Value::Null);
    p.pop();
    p.push("spec");
    ensure_map(o, &p);
    if let Some(spec) = pointer_mut(o, &p) {
        default_pod_spec(spec);
    }
}

fn pointer_mut<'a>(o: &'a mut Value, path: &[&str]) -> Option<&'a mut Value> {
    let mut cur = o;
    for p in path {
        cur = cur.get_mut(*p)?;
    }
    Some(cur)
}

fn default_pod(o: &mut Value) {
    if let Some(spec) = o.get_mut("spec") {
        default_pod_spec(spec);
    }
    let spec = ensure_map(o, &["spec"]);
    set_default(spec, "enableServiceLinks", json!(true));
    set_default(spec, "priority", json!(0));
    set_default(spec, "preemptionPolicy", json!("PreemptLowerPriority"));
    // The DefaultTolerationSeconds admission step.
    let tolerations = spec.entry("tolerations").or_insert_with(|| json!([]));
    if let Some(list) = tolerations.as_array_mut() {
        for key in ["node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable"] {
            let present = list.iter().any(|t| {
                t.get("key").and_then(Value::as_str) == Some(key)
                    && t.get("effect").and_then(Value::as_str).is_none_or(|e| e == "NoExecute")
            });
            if !present {
                list.push(json!({"key": key, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}));
            }
        }
    }
    // serviceAccount is the deprecated alias kube-apiserver keeps equal to the name.
    let sa = spec.get("serviceAccountName").and_then(Value::as_str).unwrap_or("").to_string();
    if !sa.is_empty() {
        spec.insert("serviceAccount".into(), json!(sa));
    }
}

/// A pod running on a node waits for that node's agent to stop it. Unscheduled and
/// finished pods go at once. Deviation: a pod bound to a node that has no Node object also
/// goes at once, since nothing would ever finish it (kube-apiserver would wait for the node
/// lifecycle controller).
fn pod_deletion(pod: &Value, grace: Option<i64>, exists: Exists<'_>) -> Deletion {
    let seconds =
        grace.or_else(|| pod.pointer("/spec/terminationGracePeriodSeconds").and_then(Value::as_i64)).unwrap_or(30);
    let node = pod.pointer("/spec/nodeName").and_then(Value::as_str).unwrap_or("");
    let phase = pod.pointer("/status/phase").and_then(Value::as_str).unwrap_or("");
    if seconds > 0 && !node.is_empty() && !matches!(phase, "Succeeded" | "Failed") && exists("nodes", node) {
        Deletion::Graceful { seconds }
    } else {
        Deletion::Immediate
    }
}

/// Where a pod's service-account credentials are mounted.
pub const SERVICE_ACCOUNT_MOUNT_PATH: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// The ServiceAccount admission step: the pod runs as a service account that must exist
/// (`default` unless named), and unless the pod or its service account turns automounting
/// off, every container mounts the `kube-api-access-*` projected volume (token, CA, namespace)
/// at [`SERVICE_ACCOUNT_MOUNT_PATH`].
fn admit_service_account(pod: &mut Value, lookup: Lookup<'_>) -> Result<(), Refusal> {
    let ns = get_str(pod, &["metadata", "namespace"]).unwrap_or("").to_string();
    let spec = ensure_map(pod, &["spec"]);
    let sa_name = spec
        .get("serviceAccountName")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .or_else(|| spec.get("serviceAccount").and_then(Value::as_str).filter(|s| !s.is_empty()))
        .unwrap_or("default")
        .to_string();
    spec.insert("serviceAccountName".into(), json!(sa_name));
    spec.insert("serviceAccount".into(), json!(sa_name));
    let Some(sa) = lookup("serviceaccounts", &ns, &sa_name) else {
        return Err(Refusal {
            reason: format!("error looking up service account {ns}/{sa_name}: serviceaccount \"{sa_name}\" not found"),
            // The service-account controller creates `default` right after the namespace.
            retry: sa_name == "default",
        });
    };
    let automount = spec
        .get("automountServiceAccountToken")
        .and_then(Value::as_bool)
        .or_else(|| sa.get("automountServiceAccountToken").and_then(Value::as_bool))
        .unwrap_or(true);
    let mounted = ["containers", "initContainers"].iter().any(|list| {
        spec.get(*list).and_then(Value::as_array).into_iter().flatten().any(|c| {
            c.get("volumeMounts")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .any(|m| m.get("mountPath").and_then(Value::as_str) == Some(SERVICE_ACCOUNT_MOUNT_PATH))
        })
    });
    if !automount || mounted {
        return Ok(());
    }
    const SUFFIX_CHARS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let suffix: String = uuid::Uuid::new_v4().as_bytes()[..5]
        .iter()
        .map(|b| SUFFIX_CHARS[*b as usize % SUFFIX_CHARS.len()] as char)
        .collect();
    let volume_name = format!("kube-api-access-{suffix}");
    let volume = json!({"name": volume_name, "projected": {"defaultMode": 420, "sources": [
        {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
        {"configMap": {"items": [{"key": "ca.crt", "path": "ca.crt"}], "name": "kube-root-ca.crt"}},
        {"downwardAPI": {"items": [{"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}, "path": "namespace"}]}},
    ]}});
    let volumes = spec.entry("volumes").or_insert_with(|| json!([]));
    if let Some(v) = volumes.as_array_mut() {
        v.push(volume);
    }
    for list in ["initContainers", "containers"] {
        if let Some(cs) = spec.get_mut(list).and_then(Value::as_array_mut) {
            for c in cs {
                if let Some(c) = c.as_object_mut() {
                    let mounts = c.entry("volumeMounts").or_insert_with(|| json!([]));
                    if let Some(m) = mounts.as_array_mut() {
                        m.push(json!({"mountPath": SERVICE_ACCOUNT_MOUNT_PATH, "name": volume_name, "readOnly": true}));
                    }
                }
            }
        }
    }
    Ok(())
}

fn pod_initial_status(o: &Value) -> Value {
    json!({"phase": "Pending", "qosClass": qos_class(o)})
}

/// The QoS class the pod's resources put it in.
pub fn qos_class(pod: &Value) -> &'static str {
    let mut any = false;
    let mut guaranteed = true;
    let containers = pod.pointer("/spec/containers").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
    for c in containers {
        let req = c.pointer("/resources/requests").and_then(Value::as_object);
        let lim = c.pointer("/resources/limits").and_then(Value::as_object);
        if req.is_some_and(|r| !r.is_empty()) || lim.is_some_and(|l| !l.is_empty()) {
            any = true;
        }
        for res in ["cpu", "memory"] {
            let l = lim.and_then(|l| l.get(res));
            let r = req.and_then(|r| r.get(res)).or(l);
            if l.is_none() || r != l {
                guaranteed = false;
            }
        }
    }
    if !any {
        "BestEffort"
    } else if guaranteed {
        "Guaranteed"
    } else {
        "Burstable"
    }
}

fn default_service(o: &mut Value) {
    let spec = ensure_map(o, &["spec"]);
    set_default(spec, "type", json!("ClusterIP"));
    set_default(spec, "sessionAffinity", json!("None"));
    let ty = spec.get("type").and_then(Value::as_str).unwrap_or("ClusterIP").to_string();
    if ty != "ExternalName" {
        set_default(spec, "internalTrafficPolicy", json!("Cluster"));
    }
    if let Some(ports) = spec.get_mut("ports").and_then(Value::as_array_mut) {
        for p in ports {
            let Some(p) = p.as_object_mut() else { continue };
            set_default(p, "protocol", json!("TCP"));
            if let Some(port) = p.get("port").cloned() {
                set_default(p, "targetPort", port);
            }
        }
    }
    if matches!(ty.as_str(), "NodePort" | "LoadBalancer") {
        set_default(spec, "externalTrafficPolicy", json!("Cluster"));
    }
}

/// The service range: 10.96.0.0/12. 10.96.0.1 belongs to the `kubernetes` Service.
const SERVICE_RANGE_BASE: u32 = (10 << 24) | (96 << 16);
const SERVICE_RANGE_SIZE: u32 = 1 << 20;

fn ip_string(n: u32) -> String {
    std::net::Ipv4Addr::from(n).to_string()
}

/// Gives a ClusterIP/NodePort/LoadBalancer service a free address from the service range
/// (or checks the one asked for), and sets `clusterIPs`, `ipFamilies`, `ipFamilyPolicy`.
fn allocate_cluster_ip(o: &mut Value, taken: &dyn Fn(&str) -> bool) -> Result<(), FieldError> {
    let spec = ensure_map(o, &["spec"]);
    if spec.get("type").and_then(Value::as_str) == Some("ExternalName") {
        return Ok(());
    }
    let requested = spec.get("clusterIP").and_then(Value::as_str).unwrap_or("").to_string();
    let ip = if requested == "None" {
        requested
    } else if !requested.is_empty() {
        let parsed: std::net::Ipv4Addr = requested.parse().map_err(|_| {
            FieldError::invalid(
                "spec.clusterIPs[0]",
                json!(requested),
                "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
            )
        })?;
        let n = u32::from(parsed);
        if !(SERVICE_RANGE_BASE..SERVICE_RANGE_BASE + SERVICE_RANGE_SIZE).contains(&n) {
            return Err(FieldError::invalid(
                "spec.clusterIPs[0]",
                json!(requested),
                "provided IP is not in the valid range. The range of valid IPs is 10.96.0.0/12",
            ));
        }
        if taken(&requested) {
            return Err(FieldError::invalid(
                "spec.clusterIPs[0]",
                json!(requested),
                "provided IP is already allocated",
            ));
        }
        requested
    } else {
        // Random probing: the range holds a million addresses.
        let mut found = None;
        for _ in 0..64 {
            let offset = (uuid::Uuid::new_v4().as_u128() % (SERVICE_RANGE_SIZE as u128 - 3)) as u32 + 2;
            let candidate = ip_string(SERVICE_RANGE_BASE + offset);
            if !taken(&candidate) {
                found = Some(candidate);
                break;
            }
        }
        found.ok_or_else(|| {
            FieldError::invalid("spec.clusterIPs", json!([]), "failed to allocate an IP: range is full")
        })?
    };
    spec.insert("clusterIP".into(), json!(ip));
    spec.insert("clusterIPs".into(), json!([ip]));
    set_default(spec, "ipFamilies", json!(["IPv4"]));
    set_default(spec, "ipFamilyPolicy", json!("SingleStack"));
    Ok(())
}

fn default_deployment(o: &mut Value) {
    let spec = ensure_map(o, &["spec"]);
    set_default(spec, "replicas", json!(1));
    set_default(spec, "revisionHistoryLimit", json!(10));
    set_default(spec, "progressDeadlineSeconds", json!(600));
    let strategy = spec.entry("strategy").or_insert_with(|| json!({}));
    if let Some(st) = strategy.as_object_mut() {
        set_default(st, "type", json!("RollingUpdate"));
        if st.get("type").and_then(Value::as_str) == Some("RollingUpdate") {
            let ru = st.entry("rollingUpdate").or_insert_with(|| json!({}));
            if let Some(ru) = ru.as_object_mut() {
                set_default(ru, "maxUnavailable", json!("25%"));
                set_default(ru, "maxSurge", json!("25%"));
            }
        }
    }
    default_template(o, &["spec", "template"]);
}

/// Each endpoint's `conditions` and each port's `name` and `protocol`, as kube-apiserver
/// defaults an EndpointSlice.
fn default_endpoint_slice(o: &mut Value) {
    if let Some(endpoints) = o.get_mut("endpoints").and_then(Value::as_array_mut) {
        for e in endpoints.iter_mut().filter(|e| e.is_object()) {
            ensure_map(e, &["conditions"]);
        }
    }
    if let Some(ports) = o.get_mut("ports").and_then(Value::as_array_mut) {
        for p in ports.iter_mut().filter_map(Value::as_object_mut) {
            set_default(p, "name", json!(""));
            set_default(p, "protocol", json!("TCP"));
        }
    }
}

fn default_replicaset(o: &mut Value) {
    set_default(ensure_map(o, &["spec"]), "replicas", json!(1));
    default_template(o, &["spec", "template"]);
}

fn default_statefulset(o: &mut Value) {
    let spec = ensure_map(o, &["spec"]);
    set_default(spec, "replicas", json!(1));
    set_default(spec, "podManagementPolicy", json!("OrderedReady"));
    set_default(spec, "revisionHistoryLimit", json!(10));
    set_default(spec, "persistentVolumeClaimRetentionPolicy", json!({"whenDeleted": "Retain", "whenScaled": "Retain"}));
    let us = spec.entry("updateStrategy").or_insert_with(|| json!({}));
    if let Some(us) = us.as_object_mut() {
        set_default(us, "type", json!("RollingUpdate"));
        if us.get("type").and_then(Value::as_str) == Some("RollingUpdate") {
            let ru = us.entry("rollingUpdate").or_insert_with(|| json!({}));
            if let Some(ru) = ru.as_object_mut() {
                set_default(ru, "partition", json!(0));
            }
        }
    }
    default_template(o, &["spec", "template"]);
}

fn default_daemonset(o: &mut Value) {
    let spec = ensure_map(o, &["spec"]);
    set_default(spec, "revisionHistoryLimit", json!(10));
    let us = spec.entry("updateStrategy").or_insert_with(|| json!({}));
    if let Some(us) = us.as_object_mut() {
        set_default(us, "type", json!("RollingUpdate"));
        if us.get("type").and_then(Value::as_str) == Some("RollingUpdate") {
            let ru = us.entry("rollingUpdate").or_insert_with(|| json!({}));
            if let Some(ru) = ru.as_object_mut() {
                set_default(ru, "maxUnavailable", json!(1));
                set_default(ru, "maxSurge", json!(0));
            }
        }
    }
    default_template(o, &["spec", "template"]);
}

fn default_job_spec(o: &mut Value, path: &[&str]) {
    let spec = ensure_map(o, path);
    set_default(spec, "completions", json!(1));
    set_default(spec, "parallelism", json!(1));
    set_default(spec, "backoffLimit", json!(6));
    set_default(spec, "completionMode", json!("NonIndexed"));
    set_default(spec, "suspend", json!(false));
    if spec.get("podFailurePolicy").is_none() {
        // kube-apiserver 1.29+ defaults podReplacementPolicy when no podFailurePolicy.
        set_default(spec, "podReplacementPolicy", json!("TerminatingOrFailed"));
    }
    let mut p = path.to_vec();
    p.push("template");
    default_template(o, &p);
}

fn default_job(o: &mut Value) {
    default_job_spec(o, &["spec"]);
}

fn default_cronjob(o: &mut Value) {
    let spec = ensure_map(o, &["spec"]);
    set_default(spec, "concurrencyPolicy", json!("Allow"));
    set_default(spec, "suspend", json!(false));
    set_default(spec, "successfulJobsHistoryLimit", json!(3));
    set_default(spec, "failedJobsHistoryLimit", json!(1));
    set_default(ensure_map(o, &["spec", "jobTemplate", "metadata"]), "creationTimestamp", Value::Null);
    default_job_spec(o, &["spec", "jobTemplate", "spec"]);
}

/// A Job without `manualSelector` selects its pods by its own uid.
fn prepare_job(o: &mut Value) {
    let manual = o.pointer("/spec/manualSelector").and_then(Value::as_bool).unwrap_or(false);
    let uid = get_str(o, &["metadata", "uid"]).unwrap_or("").to_string();
    let name = get_str(o, &["metadata", "name"]).unwrap_or("").to_string();
    if manual || uid.is_empty() {
        return;
    }
    let labels = json!({
        "batch.kubernetes.io/controller-uid": uid,
        "batch.kubernetes.io/job-name": name,
        "controller-uid": uid,
        "job-name": name,
    });
    if o.pointer("/spec/selector").is_none() {
        ensure_map(o, &["spec"])
            .insert("selector".into(), json!({"matchLabels": {"batch.kubernetes.io/controller-uid": uid}}));
    }
    let tl = ensure_map(o, &["spec", "template", "metadata", "labels"]);
    for (k, v) in labels.as_object().into_iter().flatten() {
        tl.insert(k.clone(), v.clone());
    }
    let ol = ensure_map(o, &["metadata", "labels"]);
    for (k, v) in labels.as_object().into_iter().flatten() {
        set_default(ol, k, v.clone());
    }
}

// ---------------------------------------------------------------------------------------
// Validation

fn validate_containers(spec: &Value, path: &str, errs: &mut Vec<FieldError>) {
    let containers = spec.get("containers").and_then(Value::as_array);
    match containers {
        None => errs.push(FieldError::required(format!("{path}.containers"), "")),
        Some(cs) if cs.is_empty() => errs.push(FieldError::required(format!("{path}.containers"), "")),
        Some(_) => {}
    }
    let names = |list: &str| -> Vec<String> {
        spec.get(list)
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(|c| c["name"].as_str().map(str::to_string)).collect())
            .unwrap_or_default()
    };
    let volumes = names("volumes");
    // What an ephemeral container may target: the pod's own containers.
    let targets: Vec<String> = names("containers").into_iter().chain(names("initContainers")).collect();
    let mut seen = std::collections::HashSet::new();
    // Names are unique across all three lists.
    for list in ["containers", "initContainers", "ephemeralContainers"] {
        let Some(cs) = spec.get(list).and_then(Value::as_array) else { continue };
        for (i, c) in cs.iter().enumerate() {
            let p = format!("{path}.{list}[{i}]");
            validate_container_common(c, &p, &volumes, errs);
            if let Some(n) = c.get("name").and_then(Value::as_str).filter(|n| !n.is_empty()) {
                if !seen.insert(n.to_string()) {
                    errs.push(FieldError::duplicate(format!("{p}.name"), json!(n)));
                }
            }
            if list == "ephemeralContainers" {
                validate_ephemeral_container(c, &p, &targets, errs);
            }
        }
    }
}

/// validateContainerCommon, in its order: name, image, ports, volume mounts, pull policy.
fn validate_container_common(c: &Value, p: &str, volumes: &[String], errs: &mut Vec<FieldError>) {
    match c.get("name").and_then(Value::as_str) {
        None | Some("") => errs.push(FieldError::required(format!("{p}.name"), "")),
        Some(n) => {
            for msg in validation::dns1123_label(n) {
                errs.push(FieldError::invalid(format!("{p}.name"), json!(n), msg));
            }
        }
    }
    if c.get("image").and_then(Value::as_str).is_none_or(|s| s.trim().is_empty()) {
        errs.push(FieldError::required(format!("{p}.image"), ""));
    }
    if let Some(ports) = c.get("ports").and_then(Value::as_array) {
        for (j, port) in ports.iter().enumerate() {
            let n = port.get("containerPort").and_then(Value::as_i64).unwrap_or(0);
            if !(1..=65535).contains(&n) {
                errs.push(FieldError::invalid(
                    format!("{p}.ports[{j}].containerPort"),
                    json!(n),
                    "must be between 1 and 65535, inclusive",
                ));
            }
        }
    }
    for (j, m) in c.get("volumeMounts").and_then(Value::as_array).into_iter().flatten().enumerate() {
        let name = m.get("name").and_then(Value::as_str).unwrap_or("");
        if name.is_empty() {
            errs.push(FieldError::required(format!("{p}.volumeMounts[{j}].name"), ""));
        } else if !volumes.iter().any(|v| v == name) {
            errs.push(FieldError::not_found(format!("{p}.volumeMounts[{j}].name"), json!(name)));
        }
    }
    if let Some(pp) = c.get("imagePullPolicy").and_then(Value::as_str) {
        if !["Always", "IfNotPresent", "Never"].contains(&pp) {
            errs.push(FieldError::not_supported(
                format!("{p}.imagePullPolicy"),
                json!(pp),
                &["Always", "IfNotPresent", "Never"],
            ));
        }
    }
}

fn validate_pod_spec(spec: &Value, path: &str, errs: &mut Vec<FieldError>, allowed_restart: &[&str]) {
    validate_containers(spec, path, errs);
    if let Some(rp) = spec.get("restartPolicy").and_then(Value::as_str) {
        if !allowed_restart.contains(&rp) {
            errs.push(FieldError::not_supported(format!("{path}.restartPolicy"), json!(rp), allowed_restart));
        }
    }
    if let Some(dp) = spec.get("dnsPolicy").and_then(Value::as_str) {
        let ok = ["ClusterFirstWithHostNet", "ClusterFirst", "Default", "None"];
        if !ok.contains(&dp) {
            errs.push(FieldError::not_supported(format!("{path}.dnsPolicy"), json!(dp), &ok));
        }
    }
    let mut vol_names = std::collections::HashSet::new();
    if let Some(vols) = spec.get("volumes").and_then(Value::as_array) {
        for (i, v) in vols.iter().enumerate() {
            let name = v.get("name").and_then(Value::as_str).unwrap_or("");
            if name.is_empty() {
                errs.push(FieldError::required(format!("{path}.volumes[{i}].name"), ""));
            } else if !vol_names.insert(name.to_string()) {
                errs.push(FieldError::duplicate(format!("{path}.volumes[{i}].name"), json!(name)));
            }
        }
    }
    validate_sysctls(spec, path, errs);
    if let Some(g) = spec.get("terminationGracePeriodSeconds").and_then(Value::as_i64) {
        if g < 0 {
            errs.push(FieldError::invalid(
                format!("{path}.terminationGracePeriodSeconds"),
                json!(g),
                "must be greater than or equal to 0",
            ));
        }
    }
}

/// securityContext.sysctls names (validateSysctls: IsValidSysctlName, duplicates).
fn validate_sysctls(spec: &Value, path: &str, errs: &mut Vec<FieldError>) {
    const MAX: usize = 253;
    const PATTERN: &str = r"^([a-z0-9]([-_a-z0-9]*[a-z0-9])?[\./])*[a-z0-9]([-_a-z0-9]*[a-z0-9])?$";
    static RE: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| regex::Regex::new(PATTERN).unwrap());
    let Some(list) = spec.pointer("/securityContext/sysctls").and_then(Value::as_array) else { return };
    let mut seen = std::collections::HashSet::new();
    for (i, s) in list.iter().enumerate() {
        let p = format!("{path}.securityContext.sysctls[{i}].name");
        let name = s.get("name").and_then(Value::as_str).unwrap_or("");
        if name.is_empty() {
            errs.push(FieldError::required(p, ""));
        } else if name.len() > MAX || !RE.is_match(name) {
            errs.push(FieldError::invalid(
                p,
                json!(name),
                format!("must have at most {MAX} characters and match regex {PATTERN}"),
            ));
        } else if !seen.insert(name) {
            errs.push(FieldError::duplicate(p, json!(name)));
        }
    }
}

const RESTART_ALL: &[&str] = &["Always", "OnFailure", "Never"];

fn validate_pod(o: &Value, errs: &mut Vec<FieldError>) {
    validate_pod_spec(o.get("spec").unwrap_or(&Value::Null), "spec", errs, RESTART_ALL);
}

/// What an ephemeral container may not set (kube-apiserver's allowedEphemeralContainerFields,
/// in the field order it reports them): ports, resources, probes and hooks belong to the
/// pod's own containers.
const EPHEMERAL_FORBIDDEN: &[&str] = &[
    "ports",
    "resources",
    "resizePolicy",
    "restartPolicy",
    "livenessProbe",
    "readinessProbe",
    "startupProbe",
    "lifecycle",
];

/// validateEphemeralContainers beyond what every container gets: the target must be one
/// of the pod's own containers, and what only those may set is refused.
fn validate_ephemeral_container(ec: &Value, p: &str, targets: &[String], errs: &mut Vec<FieldError>) {
    // A Go zero value (absent, null, "", 0, false, {} or []) is not "set".
    let set = |v: &Value| match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64() != Some(0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => o.values().any(|x| !x.is_null() && x != &json!({}) && x != &json!([])),
    };
    if let Some(t) = ec.get("targetContainerName").and_then(Value::as_str).filter(|t| !t.is_empty()) {
        if !targets.iter().any(|n| n == t) {
            errs.push(FieldError::not_found(format!("{p}.targetContainerName"), json!(t)));
        }
    }
    for f in EPHEMERAL_FORBIDDEN {
        if ec.get(*f).is_some_and(set) {
            errs.push(FieldError::forbidden(format!("{p}.{f}"), "cannot be set for an Ephemeral Container"));
        }
    }
    for (j, m) in ec.get("volumeMounts").and_then(Value::as_array).into_iter().flatten().enumerate() {
        for f in ["subPath", "subPathExpr"] {
            if m.get(f).and_then(Value::as_str).is_some_and(|s| !s.is_empty()) {
                errs.push(FieldError::forbidden(
                    format!("{p}.volumeMounts[{j}].{f}"),
                    "cannot be set for an Ephemeral Container",
                ));
            }
        }
    }
}

/// ValidatePodCreate: ephemeral containers come only through their subresource.
fn validate_pod_create(o: &Value, errs: &mut Vec<FieldError>) {
    if o.pointer("/spec/ephemeralContainers").and_then(Value::as_array).is_some_and(|a| !a.is_empty()) {
        errs.push(FieldError::forbidden("spec.ephemeralContainers", "cannot be set on create"));
    }
}

/// ValidatePodEphemeralContainersUpdate: ephemeral containers are only ever added (the
/// registry keeps everything else as stored). Deviation: a changed container is named
/// without the Go diff kube-apiserver appends.
fn validate_pod_ephemeral_update(_sub: Subresource, new: &Value, old: &Value, errs: &mut Vec<FieldError>) {
    if old.pointer("/metadata/annotations/kubernetes.io~1config.mirror").is_some() {
        *errs = vec![FieldError::forbidden("", "static pods do not support ephemeral containers")];
        return;
    }
    let list =
        |v: &Value| v.pointer("/spec/ephemeralContainers").and_then(Value::as_array).cloned().unwrap_or_default();
    let new_list = list(new);
    for o in list(old) {
        let name = o.get("name").and_then(Value::as_str).unwrap_or("");
        match new_list.iter().find(|n| n.get("name").and_then(Value::as_str) == Some(name)) {
            None => errs.push(FieldError::forbidden(
                "spec.ephemeralContainers",
                format!("existing ephemeral containers {name:?} may not be removed\n"),
            )),
            Some(n) if *n != o => errs.push(FieldError::forbidden(
                "spec.ephemeralContainers",
                format!("existing ephemeral containers {name:?} may not be changed\n"),
            )),
            Some(_) => {}
        }
    }
}

fn validate_pod_update(new: &Value, old: &Value, errs: &mut Vec<FieldError>) {
    // Only a few pod spec fields may change after creation.
    let strip = |v: &Value| -> Value {
        let mut s = v.get("spec").cloned().unwrap_or(Value::Null);
        if let Some(m) = s.as_object_mut() {
            m.remove("activeDeadlineSeconds");
            m.remove("tolerations");
            m.remove("terminationGracePeriodSeconds");
            m.remove("schedulingGates");
            for list in ["containers", "initContainers"] {
                if let Some(cs) = m.get_mut(list).and_then(Value::as_array_mut) {
                    for c in cs {
                        if let Some(c) = c.as_object_mut() {
                            c.remove("image");
                        }
                    }
                }
            }
        }
        s
    };
    if strip(new) != strip(old) {
        errs.push(FieldError::forbidden(
            "spec",
            "pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)",
        ));
    }
}

fn validate_service(o: &Value, errs: &mut Vec<FieldError>) {
    let spec = o.get("spec").unwrap_or(&Value::Null);
    let ty = spec.get("type").and_then(Value::as_str).unwrap_or("ClusterIP");
    let types = ["ClusterIP", "NodePort", "LoadBalancer", "ExternalName"];
    if !types.contains(&ty) {
        errs.push(FieldError::not_supported("spec.type", json!(ty), &types));
    }
    let ports = spec.get("ports").and_then(Value::as_array);
    if ty != "ExternalName"
        && ports.is_none_or(|p| p.is_empty())
        && spec.get("clusterIP").and_then(Value::as_str) != Some("None")
    {
        errs.push(FieldError::required("spec.ports", ""));
    }
    let mut seen = std::collections::HashSet::new();
    for (i, p) in ports.into_iter().flatten().enumerate() {
        let port = p.get("port").and_then(Value::as_i64).unwrap_or(0);
        if !(1..=65535).contains(&port) {
            errs.push(FieldError::invalid(
                format!("spec.ports[{i}].port"),
                json!(port),
                "must be between 1 and 65535, inclusive",
            ));
        }
        let proto = p.get("protocol").and_then(Value::as_str).unwrap_or("TCP");
        if !seen.insert((port, proto.to_string())) {
            errs.push(FieldError::duplicate(format!("spec.ports[{i}]"), json!({"port": port, "protocol": proto})));
        }
        if ports.is_some_and(|ps| ps.len() > 1) && p.get("name").and_then(Value::as_str).is_none_or(str::is_empty) {
            errs.push(FieldError::required(format!("spec.ports[{i}].name"), ""));
        }
    }
    if ty == "ExternalName" && spec.get("externalName").and_then(Value::as_str).is_none_or(str::is_empty) {
        errs.push(FieldError::required("spec.externalName", ""));
    }
}

fn validate_service_update(new: &Value, old: &Value, errs: &mut Vec<FieldError>) {
    let old_ip = old.pointer("/spec/clusterIP").and_then(Value::as_str).unwrap_or("");
    let new_ip = new.pointer("/spec/clusterIP").and_then(Value::as_str).unwrap_or("");
    if !old_ip.is_empty()
        && old_ip != new_ip
        && new.pointer("/spec/type").and_then(Value::as_str) != Some("ExternalName")
    {
        errs.push(FieldError::invalid("spec.clusterIPs[0]", json!(new_ip), "may not change once set"));
    }
}

fn validate_config_keys(o: &Value, field: &str, errs: &mut Vec<FieldError>) {
    let re_ok =
        |k: &str| !k.is_empty() && k.len() <= 253 && k.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    if let Some(m) = o.get(field).and_then(Value::as_object) {
        for k in m.keys() {
            if !re_ok(k) {
                errs.push(FieldError::invalid(
                    field.to_string(),
                    json!(k),
                    "a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')",
                ));
            }
        }
    }
}

fn validate_configmap(o: &Value, errs: &mut Vec<FieldError>) {
    validate_config_keys(o, "data", errs);
    validate_config_keys(o, "binaryData", errs);
    if let (Some(d), Some(b)) =
        (o.get("data").and_then(Value::as_object), o.get("binaryData").and_then(Value::as_object))
    {
        for k in d.keys().filter(|k| b.contains_key(*k)) {
            errs.push(FieldError::invalid("data", json!(k), "duplicate of key present in binaryData"));
        }
    }
    // kube-apiserver counts the values (binaryData decoded), not the keys, and names no field.
    let data: usize = values_of(o, "data").map(|(_, v)| v.as_str().map_or(0, str::len)).sum();
    let binary: usize = values_of(o, "binaryData").map(|(_, v)| decoded_len(v)).sum();
    if data + binary > crate::limits::CONFIG_DATA_BYTES_MAX {
        errs.push(FieldError::too_long("[]", crate::limits::CONFIG_DATA_BYTES_MAX));
    }
}

fn values_of<'v>(o: &'v Value, field: &str) -> impl Iterator<Item = (&'v String, &'v Value)> {
    o.get(field).and_then(Value::as_object).into_iter().flat_map(|m| m.iter())
}

/// The decoded length of a base64 string value (what kube-apiserver's typed `[]byte` holds).
fn decoded_len(v: &Value) -> usize {
    let Some(s) = v.as_str() else { return 0 };
    let pad = s.bytes().rev().take_while(|b| *b == b'=').count();
    (s.len() / 4 * 3 + (s.len() % 4).saturating_sub(1)).saturating_sub(pad)
}

/// `stringData` is write-only: its values go into `data` (base64), over a key of the same
/// name, and the field is never stored, as kube-apiserver's conversion does it.
fn merge_string_data(o: &mut Value) {
    use base64::Engine;
    let Some(m) = o.as_object_mut() else { return };
    let Some(Value::Object(strings)) = m.remove("stringData") else { return };
    let data = ensure_map(o, &["data"]);
    for (k, v) in strings {
        let text = v.as_str().unwrap_or_default();
        data.insert(k, json!(base64::engine::general_purpose::STANDARD.encode(text)));
    }
}

fn validate_secret(o: &Value, errs: &mut Vec<FieldError>) {
    validate_config_keys(o, "data", errs);
    validate_config_keys(o, "stringData", errs);
    // The size of `data` once `stringData` is merged into it, as kube-apiserver counts it.
    let string_data = o.get("stringData").and_then(Value::as_object);
    let data: usize = values_of(o, "data")
        .filter(|(k, _)| !string_data.is_some_and(|s| s.contains_key(*k)))
        .map(|(_, v)| decoded_len(v))
        .sum();
    let strings: usize = values_of(o, "stringData").map(|(_, v)| v.as_str().map_or(0, str::len)).sum();
    if data + strings > crate::limits::CONFIG_DATA_BYTES_MAX {
        errs.push(FieldError::too_long("data", crate::limits::CONFIG_DATA_BYTES_MAX));
    }
    if o.get("type").and_then(Value::as_str) == Some("kubernetes.io/service-account-token")
        && get_str(o, &["metadata", "annotations", "kubernetes.io/service-account.name"]).is_none_or(str::is_empty)
    {
        errs.push(FieldError::required("metadata.annotations[kubernetes.io/service-account.name]", ""));
    }
}

/// Selector present, valid, and matching the template's labels.
fn validate_selector_and_template(
    o: &Value,
    spec_path: &str,
    errs: &mut Vec<FieldError>,
    require_selector: bool,
    restart: &[&str],
) {
    let spec = o.pointer(&format!("/{}", spec_path.replace('.', "/"))).unwrap_or(&Value::Null);
    let selector = spec.get("selector");
    let template_labels = spec.pointer("/template/metadata/labels").and_then(Value::as_object);
    match selector {
        None | Some(Value::Null) if require_selector => {
            errs.push(FieldError::required(format!("{spec_path}.selector"), ""));
        }
        None | Some(Value::Null) => {}
        Some(sel) => match LabelSelector::from_object(sel) {
            Err(e) => errs.push(FieldError::invalid(format!("{spec_path}.selector"), sel.clone(), e)),
            Ok(parsed) if parsed.is_empty() => errs.push(FieldError::invalid(
                format!("{spec_path}.selector"),
                sel.clone(),
                "empty selector is invalid for deployment",
            )),
            Ok(parsed) => {
                if !parsed.matches(template_labels) {
                    errs.push(FieldError::invalid(
                        format!("{spec_path}.template.metadata.labels"),
                        template_labels.map(|m| Value::Object(m.clone())).unwrap_or(Value::Null),
                        "`selector` does not match template `labels`",
                    ));
                }
            }
        },
    }
    let pod_spec = spec.pointer("/template/spec").unwrap_or(&Value::Null);
    validate_pod_spec(pod_spec, &format!("{spec_path}.template.spec"), errs, restart);
    if let Some(r) = spec.get("replicas").and_then(Value::as_i64) {
        if r < 0 {
            errs.push(FieldError::invalid(
                format!("{spec_path}.replicas"),
                json!(r),
                "must be greater than or equal to 0",
            ));
        }
    }
}

fn validate_workload(o: &Value, errs: &mut Vec<FieldError>) {
    validate_selector_and_template(o, "spec", errs, true, &["Always"]);
}

fn validate_job(o: &Value, errs: &mut Vec<FieldError>) {
    validate_selector_and_template(o, "spec", errs, false, &["OnFailure", "Never"]);
}

fn validate_cronjob(o: &Value, errs: &mut Vec<FieldError>) {
    match o.pointer("/spec/schedule").and_then(Value::as_str) {
        None | Some("") => errs.push(FieldError::required("spec.schedule", "")),
        Some(s) => {
            let fields = s.split_whitespace().count();
            if !(s.starts_with('@') || fields == 5) {
                errs.push(FieldError::invalid(
                    "spec.schedule",
                    json!(s),
                    format!("expected exactly 5 fields, found {fields}: {s}"),
                ));
            }
        }
    }
    validate_selector_and_template(o, "spec.jobTemplate.spec", errs, false, &["OnFailure", "Never"]);
}

fn validate_selector_immutable(new: &Value, old: &Value, errs: &mut Vec<FieldError>) {
    let (n, o) = (new.pointer("/spec/selector"), old.pointer("/spec/selector"));
    if o.is_some() && n != o {
        errs.push(FieldError::invalid("spec.selector", n.cloned().unwrap_or(Value::Null), "field is immutable"));
    }
}

fn validate_binding(o: &Value, errs: &mut Vec<FieldError>) {
    let rr = o.get("roleRef");
    match rr.and_then(|r| r.get("kind")).and_then(Value::as_str) {
        Some("Role") | Some("ClusterRole") => {}
        Some(k) => errs.push(FieldError::not_supported("roleRef.kind", json!(k), &["Role", "ClusterRole"])),
        None => errs.push(FieldError::required("roleRef.kind", "")),
    }
    if rr.and_then(|r| r.get("name")).and_then(Value::as_str).is_none_or(str::is_empty) {
        errs.push(FieldError::required("roleRef.name", ""));
    }
    if let Some(subjects) = o.get("subjects").and_then(Value::as_array) {
        for (i, sub) in subjects.iter().enumerate() {
            let kind = sub.get("kind").and_then(Value::as_str).unwrap_or("");
            if !["ServiceAccount", "User", "Group"].contains(&kind) {
                errs.push(FieldError::not_supported(
                    format!("subjects[{i}].kind"),
                    json!(kind),
                    &["ServiceAccount", "User", "Group"],
                ));
            }
            if sub.get("name").and_then(Value::as_str).is_none_or(str::is_empty) {
                errs.push(FieldError::required(format!("subjects[{i}].name"), ""));
            }
        }
    }
}

fn validate_events_v1(o: &Value, errs: &mut Vec<FieldError>) {
    if o.get("eventTime").is_none_or(Value::is_null) {
        errs.push(FieldError::required("eventTime", ""));
    }
}

fn immutable(new: &Value, old: &Value, path: &[&str], field: &str, errs: &mut Vec<FieldError>) {
    let get = |v: &Value| {
        let mut cur = v;
        for p in path {
            match cur.get(*p) {
                Some(x) => cur = x,
                None => return Value::Null,
            }
        }
        cur.clone()
    };
    let (n, o) = (get(new), get(old));
    if n != o {
        errs.push(FieldError::invalid(field, n, "field is immutable"));
    }
}

/// A ConfigMap or Secret marked `immutable: true` keeps that mark and its `fields` (the
/// data), as kube-apiserver's update validation requires; metadata may still change.
fn kept_when_immutable(new: &Value, old: &Value, fields: &[&str], errs: &mut Vec<FieldError>) {
    if old.get("immutable").and_then(Value::as_bool) != Some(true) {
        return;
    }
    const DETAIL: &str = "field is immutable when `immutable` is set";
    if new.get("immutable").and_then(Value::as_bool) != Some(true) {
        errs.push(FieldError::forbidden("immutable", DETAIL));
    }
    let present = |v: &Value, f: &str| v.get(f).filter(|x| !x.is_null()).cloned();
    for f in fields {
        if present(new, f) != present(old, f) {
            errs.push(FieldError::forbidden(*f, DETAIL));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(kind: &str) -> ResourceDef {
        builtins().into_iter().find(|r| r.kind == kind && r.group != "events.k8s.io").expect("row")
    }

    /// ConfigMap and Secret data is bounded as kube-apiserver bounds it: values only (binary
    /// and Secret data decoded), `stringData` merged into `data`, 1 MiB allowed exactly.
    #[test]
    fn config_data_size_bounds_match_kube_apiserver() {
        use base64::Engine;
        let b64 = |n: usize| base64::engine::general_purpose::STANDARD.encode(vec![b'y'; n]);
        let max = crate::limits::CONFIG_DATA_BYTES_MAX;
        let errors = |kind: &str, body: Value| {
            let mut errs = vec![];
            let mut o = json!({"apiVersion": "v1", "kind": kind, "metadata": {"name": "x"}});
            o.as_object_mut().unwrap().extend(body.as_object().unwrap().clone());
            row(kind).strategy.validate(&o, &mut errs);
            errs.iter().map(|e| e.to_string()).collect::<Vec<_>>()
        };
        let too_long = |f: &str| vec![format!("{f}: Too long: must have at most {max} bytes")];
        assert!(errors("ConfigMap", json!({"data": {"a": "y".repeat(max)}})).is_empty());
        assert_eq!(errors("ConfigMap", json!({"data": {"a": "y".repeat(max + 1)}})), too_long("[]"));
        assert_eq!(
            errors("ConfigMap", json!({"data": {"a": "y".repeat(max / 2)}, "binaryData": {"b": b64(max / 2 + 1)}})),
            too_long("[]")
        );
        assert!(errors("ConfigMap", json!({"binaryData": {"b": b64(max)}})).is_empty());
        assert!(errors("Secret", json!({"data": {"a": b64(max)}})).is_empty());
        assert_eq!(errors("Secret", json!({"data": {"a": b64(max + 1)}})), too_long("data"));
        // Unpadded base64 decodes to the same length.
        assert_eq!(errors("Secret", json!({"data": {"a": b64(max + 1).trim_end_matches('=')}})), too_long("data"));
        assert_eq!(errors("Secret", json!({"stringData": {"s": "y".repeat(max + 1)}})), too_long("data"));
        // A stringData key replaces the data key of the same name.
        assert!(errors("Secret", json!({"data": {"a": b64(max)}, "stringData": {"a": "small"}})).is_empty());
        assert_eq!(errors("Secret", json!({"data": {"a": b64(max)}, "stringData": {"b": "more"}})), too_long("data"));
    }

    /// Sysctl names are checked as validateSysctls checks them (the e2e "should reject
    /// invalid sysctls" pod): bad names by the regex, good ones pass whatever the node allows.
    #[test]
    fn pod_sysctl_names_are_validated_as_kube_apiserver_does() {
        let sysctls = json!([{"name": "foo-", "value": "bar"}, {"name": "kernel.shmmax", "value": "1"},
            {"name": "safe-and-unsafe", "value": "1"}, {"name": "bar..", "value": "42"}, {"name": "kernel.shmmax", "value": "2"}]);
        let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
            "spec": {"securityContext": {"sysctls": sysctls}, "containers": [{"name": "c", "image": "busybox"}]}});
        let mut errs = vec![];
        row("Pod").strategy.validate(&pod, &mut errs);
        let errs: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
        let re = r"^([a-z0-9]([-_a-z0-9]*[a-z0-9])?[\./])*[a-z0-9]([-_a-z0-9]*[a-z0-9])?$";
        assert_eq!(
            errs,
            vec![
                format!("spec.securityContext.sysctls[0].name: Invalid value: \"foo-\": must have at most 253 characters and match regex {re}"),
                format!("spec.securityContext.sysctls[3].name: Invalid value: \"bar..\": must have at most 253 characters and match regex {re}"),
                "spec.securityContext.sysctls[4].name: Duplicate value: \"kernel.shmmax\"".to_string(),
            ]
        );
    }

    /// Defaulting matches kube-apiserver's (shared/reference/.../objects/pod-defaulted.json,
    /// without the ServiceAccount admission parts, which are not in this step).
    #[test]
    fn pod_defaults_match_reference() {
        let mut pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "minimal"},
            "spec": {"containers": [{"name": "main", "image": "busybox", "command": ["sleep", "3600"]}]}});
        let s = row("Pod").strategy;
        pod = s.canonicalize(&pod).unwrap();
        s.default(&mut pod);
        let spec = &pod["spec"];
        assert_eq!(spec["containers"][0]["imagePullPolicy"], "Always");
        assert_eq!(spec["containers"][0]["terminationMessagePolicy"], "File");
        assert_eq!(spec["dnsPolicy"], "ClusterFirst");
        assert_eq!(spec["schedulerName"], "default-scheduler");
        assert_eq!(spec["terminationGracePeriodSeconds"], 30);
        assert_eq!(spec["enableServiceLinks"], true);
        assert_eq!(spec["tolerations"].as_array().unwrap().len(), 2);
        assert_eq!(s.initial_status(&pod).unwrap(), json!({"phase": "Pending", "qosClass": "BestEffort"}));
    }

    #[test]
    fn deployment_defaults_match_reference() {
        let mut d = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
            "spec": {"selector": {"matchLabels": {"app": "web"}}, "template": {"metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [{"name": "web", "image": "nginx"}]}}}});
        let s = row("Deployment").strategy;
        d = s.canonicalize(&d).unwrap();
        s.default(&mut d);
        assert_eq!(
            d["spec"]["strategy"],
            json!({"rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}, "type": "RollingUpdate"})
        );
        assert_eq!(d["spec"]["template"]["metadata"]["creationTimestamp"], Value::Null);
        assert_eq!(d["spec"]["replicas"], 1);
        let mut errs = vec![];
        s.validate(&d, &mut errs);
        assert!(errs.is_empty(), "{errs:?}");
    }

    #[test]
    fn typed_check_rejects_wrong_types_and_reports_unknown_fields() {
        let s = row("ConfigMap").strategy;
        let bad = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": 5}});
        assert!(s.canonicalize(&bad).is_err());
        let extra =
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}, "bogus": 1, "data": {"k": "v"}});
        let out = s.canonicalize(&extra).unwrap();
        assert_eq!(crate::strategy::unknown_fields(&extra, &out), vec!["bogus".to_string()]);
    }

    #[test]
    fn workload_selector_must_match_template() {
        let s = row("Deployment").strategy;
        let d = json!({"spec": {"selector": {"matchLabels": {"app": "x"}}, "template": {"metadata": {"labels": {"app": "y"}},
            "spec": {"containers": [{"name": "c", "image": "i"}]}}}});
        let mut errs = vec![];
        s.validate(&d, &mut errs);
        assert_eq!(errs.len(), 1);
        assert_eq!(errs[0].field, "spec.template.metadata.labels");
    }

    #[test]
    fn job_selects_its_pods_by_uid() {
        let s = row("Job").strategy;
        let mut j = json!({"metadata": {"name": "pi", "uid": "u-1"}, "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "perl"}]}}}});
        s.default(&mut j);
        s.prepare_for_create(&mut j);
        assert_eq!(j["spec"]["selector"]["matchLabels"]["batch.kubernetes.io/controller-uid"], "u-1");
        assert_eq!(j["spec"]["template"]["metadata"]["labels"]["job-name"], "pi");
        let mut errs = vec![];
        s.validate(&j, &mut errs);
        assert!(errs.is_empty(), "{errs:?}");
    }
}
