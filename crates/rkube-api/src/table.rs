//! Server-side Table output: the columns and cells `kubectl get` shows.
//!
//! When a client asks for `application/json;as=Table;g=meta.k8s.io;v=v1`, kube-apiserver
//! answers with a `meta.k8s.io/v1` Table whose columns and row cells come from the built-in
//! printers (`pkg/printers/internalversion` in Kubernetes). This module reproduces those
//! printers for the kinds rkube serves, working on plain JSON objects:
//!
//! - [`columns`] / [`column_definitions`]: the column set of a kind, always the full "wide"
//!   set (the server sends every column and `kubectl` hides those with priority > 0);
//! - [`cells`]: one row, in column order, computed the way Kubernetes computes it (pod
//!   status strings, `ready/total`, restart counts, service ports, label selectors, ...);
//! - [`human_duration`]: the `AGE` formatting of `k8s.io/apimachinery/pkg/util/duration`.
//!
//! Kinds without a printer get the default table of Kubernetes: `Name` and `Created At`.
//! Objects may lack any field; a missing value reads as its zero value, or as the v1
//! default the API server would have filled in when the object was stored (for example a
//! Service's `type` is `ClusterIP`, a port's protocol `TCP`).
//!
//! Pure functions of values: no IO, the current time is a parameter.

use std::collections::BTreeSet;

use crate::resource::ResourceDef;
use chrono::{DateTime, Utc};
use serde_json::{json, Map, Value};

/// One column of a Table, as sent in `columnDefinitions`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    /// Header text, e.g. `Name`, `Ready`, `Age`.
    pub name: &'static str,
    /// OpenAPI type of the column: `string`, `integer`, `boolean`, `date`, ...
    pub type_: &'static str,
    /// OpenAPI format; `name` for the object's name column, else empty.
    pub format: &'static str,
    /// What the column shows.
    pub description: &'static str,
    /// 0 for columns always shown, 1 for columns `kubectl get -o wide` adds.
    pub priority: i64,
}

// Descriptions taken from what kube-apiserver sends (the API field docs); those of columns
// not seen in the reference captures are written here.

const NAME_DESC: &str = "Name must be unique within a namespace. Is required when creating resources, although some resources may allow a client to request the generation of an appropriate name automatically. Name is primarily intended for creation idempotence and configuration definition. Cannot be updated. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names";
const CREATED_DESC: &str = "CreationTimestamp is a timestamp representing the server time when this object was created. It is not guaranteed to be set in happens-before order across separate operations. Clients may not set this value. It is represented in RFC3339 form and is in UTC.\n\nPopulated by the system. Read-only. Null for lists. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata";

const CONTAINERS_DESC: &str = "Names of each container in the template.";
const IMAGES_DESC: &str = "Images referenced by each container in the template.";
const READY_PODS_DESC: &str = "Number of the pod with ready state";

const POD_READY_DESC: &str = "The aggregate readiness state of this pod for accepting traffic.";
const POD_STATUS_DESC: &str = "The aggregate status of the containers in this pod.";
const POD_RESTARTS_DESC: &str = "The number of times the containers in this pod have been restarted and when the last container in this pod has restarted.";
const POD_IP_DESC: &str =
    "podIP address allocated to the pod. Routable at least within the cluster. Empty if not yet allocated.";
const POD_NODE_DESC: &str = "NodeName is a request to schedule this pod onto a specific node. If it is non-empty, the scheduler simply schedules this pod onto that node, assuming that it fits resource requirements.";
const POD_NOMINATED_DESC: &str = "nominatedNodeName is set only when this pod preempts other pods on the node, but it cannot be scheduled right away as preemption victims receive their graceful termination periods. This field does not guarantee that the pod will be scheduled on this node. Scheduler may decide to place the pod elsewhere if other nodes become available sooner. Scheduler may also decide to give the resources on this node to a higher priority pod that is created after preemption. As a result, this field may be different than PodSpec.nodeName when the pod is scheduled.";
const POD_GATES_DESC: &str = "If specified, all readiness gates will be evaluated for pod readiness. A pod is ready when all its containers are ready AND all conditions specified in the readiness gates have status equal to \"True\" More info: https://git.k8s.io/enhancements/keps/sig-network/580-pod-readiness-gates";

const SVC_TYPE_DESC: &str = "type determines how the Service is exposed. Defaults to ClusterIP. Valid options are ExternalName, ClusterIP, NodePort, and LoadBalancer. \"ClusterIP\" allocates a cluster-internal IP address for load-balancing to endpoints. Endpoints are determined by the selector or if that is not specified, by manual construction of an Endpoints object or EndpointSlice objects. If clusterIP is \"None\", no virtual IP is allocated and the endpoints are published as a set of endpoints rather than a virtual IP. \"NodePort\" builds on ClusterIP and allocates a port on every node which routes to the same endpoints as the clusterIP. \"LoadBalancer\" builds on NodePort and creates an external load-balancer (if supported in the current cloud) which routes to the same endpoints as the clusterIP. \"ExternalName\" aliases this service to the specified externalName. Several other fields do not apply to ExternalName services. More info: https://kubernetes.io/docs/concepts/services-networking/service/#publishing-services-service-types";
const SVC_CLUSTER_IP_DESC: &str = "clusterIP is the IP address of the service and is usually assigned randomly. If an address is specified manually, is in-range (as per system configuration), and is not in use, it will be allocated to the service; otherwise creation of the service will fail. This field may not be changed through updates unless the type field is also being changed to ExternalName (which requires this field to be blank) or the type field is being changed from ExternalName (in which case this field may optionally be specified, as describe above).  Valid values are \"None\", empty string (\"\"), or a valid IP address. Setting this to \"None\" makes a \"headless service\" (no virtual IP), which is useful when direct endpoint connections are preferred and proxying is not required.  Only applies to types ClusterIP, NodePort, and LoadBalancer. If this field is specified when creating a Service of type ExternalName, creation will fail. This field will be wiped when updating a Service to type ExternalName. More info: https://kubernetes.io/docs/concepts/services-networking/service/#virtual-ips-and-service-proxies";
const SVC_EXTERNAL_IP_DESC: &str = "externalIPs is a list of IP addresses for which nodes in the cluster will also accept traffic for this service.  These IPs are not managed by Kubernetes.  The user is responsible for ensuring that traffic arrives at a node with this IP.  A common example is external load-balancers that are not part of the Kubernetes system.";
const SVC_PORTS_DESC: &str = "The list of ports that are exposed by this service. More info: https://kubernetes.io/docs/concepts/services-networking/service/#virtual-ips-and-service-proxies";
const SVC_SELECTOR_DESC: &str = "Route service traffic to pods with label keys and values matching this selector. If empty or not present, the service is assumed to have an external process managing its endpoints, which Kubernetes will not modify. Only applies to types ClusterIP, NodePort, and LoadBalancer. Ignored if type is ExternalName. More info: https://kubernetes.io/docs/concepts/services-networking/service/";

const NS_STATUS_DESC: &str = "The status of the namespace";

const CM_DATA_DESC: &str = "Data contains the configuration data. Each key must consist of alphanumeric characters, '-', '_' or '.'. Values with non-UTF-8 byte sequences must use the BinaryData field. The keys stored in Data must not overlap with the keys in the BinaryData field, this is enforced during validation process.";

const DEPLOY_UPDATED_DESC: &str =
    "Total number of non-terminated pods targeted by this deployment that have the desired template spec.";
const DEPLOY_AVAILABLE_DESC: &str =
    "Total number of available pods (ready for at least minReadySeconds) targeted by this deployment.";
const DEPLOY_SELECTOR_DESC: &str = "Label selector for pods. Existing ReplicaSets whose pods are selected by this will be the ones affected by this deployment.";

const JOB_COMPLETIONS_DESC: &str = "The number of pods which reached phase Succeeded.";
const JOB_DURATION_DESC: &str = "Time required to complete the job.";
const JOB_SELECTOR_DESC: &str = "A label query over pods that should match the pod count. Normally, the system sets this field for you. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/#label-selectors";

/// The printer used for a group/kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Printer {
    Pod,
    Namespace,
    Service,
    Endpoints,
    ConfigMap,
    Secret,
    ServiceAccount,
    Node,
    Event,
    EventsV1,
    Deployment,
    ReplicaSet,
    StatefulSet,
    DaemonSet,
    Job,
    CronJob,
    RoleBinding,
    Lease,
    CertificateSigningRequest,
    /// Custom resources without additionalPrinterColumns: Name and Age (a "date" column shown
    /// as a duration), as kube-apiserver's custom resource table convertor prints them.
    Custom,
    Default,
}

fn printer(group: &str, kind: &str) -> Printer {
    match (group, kind) {
        ("", "Pod") => Printer::Pod,
        ("", "Namespace") => Printer::Namespace,
        ("", "Service") => Printer::Service,
        ("", "Endpoints") => Printer::Endpoints,
        ("", "ConfigMap") => Printer::ConfigMap,
        ("", "Secret") => Printer::Secret,
        ("", "ServiceAccount") => Printer::ServiceAccount,
        ("", "Node") => Printer::Node,
        ("", "Event") => Printer::Event,
        ("events.k8s.io", "Event") => Printer::EventsV1,
        ("apps", "Deployment") => Printer::Deployment,
        ("apps", "ReplicaSet") => Printer::ReplicaSet,
        ("apps", "StatefulSet") => Printer::StatefulSet,
        ("apps", "DaemonSet") => Printer::DaemonSet,
        ("batch", "Job") => Printer::Job,
        ("batch", "CronJob") => Printer::CronJob,
        ("rbac.authorization.k8s.io", "RoleBinding" | "ClusterRoleBinding") => Printer::RoleBinding,
        ("coordination.k8s.io", "Lease") => Printer::Lease,
        ("certificates.k8s.io", "CertificateSigningRequest") => Printer::CertificateSigningRequest,
        // Role, ClusterRole and everything else: Kubernetes has no printer for them.
        _ => Printer::Default,
    }
}

fn col(name: &'static str, type_: &'static str, description: &'static str, priority: i64) -> Column {
    Column { name, type_, format: "", description, priority }
}

fn name_col() -> Column {
    Column { name: "Name", type_: "string", format: "name", description: NAME_DESC, priority: 0 }
}

fn age_col() -> Column {
    col("Age", "string", CREATED_DESC, 0)
}

fn containers_col() -> Column {
    col("Containers", "string", CONTAINERS_DESC, 1)
}

fn images_col() -> Column {
    col("Images", "string", IMAGES_DESC, 1)
}

/// The columns for a kind (group "" for core). Unknown kinds get the default Name +
/// Created At columns kube-apiserver uses for resources without a printer.
pub fn columns(group: &str, kind: &str) -> Vec<Column> {
    columns_by(printer(group, kind))
}

/// The printer of a served resource: custom resources (rows a CustomResourceDefinition
/// added) print Name and Age whatever their group; built-in ones by group and kind.
fn printer_of(def: &ResourceDef) -> Printer {
    if def.custom {
        Printer::Custom
    } else {
        printer(&def.group, &def.kind)
    }
}

/// A served resource's column definitions, as a Table carries them.
pub fn column_definitions_of(def: &ResourceDef) -> Value {
    definitions(columns_by(printer_of(def)))
}

/// A served resource's cells for one object.
pub fn cells_of(def: &ResourceDef, obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
    cells_by(printer_of(def), obj, now)
}

fn columns_by(p: Printer) -> Vec<Column> {
    match p {
        Printer::Pod => vec![
            name_col(),
            col("Ready", "string", POD_READY_DESC, 0),
            col("Status", "string", POD_STATUS_DESC, 0),
            col("Restarts", "string", POD_RESTARTS_DESC, 0),
            age_col(),
            col("IP", "string", POD_IP_DESC, 1),
            col("Node", "string", POD_NODE_DESC, 1),
            col("Nominated Node", "string", POD_NOMINATED_DESC, 1),
            col("Readiness Gates", "string", POD_GATES_DESC, 1),
        ],
        Printer::Namespace => vec![
            name_col(),
            col("Status", "string", NS_STATUS_DESC, 0),
            age_col(),
        ],
        Printer::Service => vec![
            name_col(),
            col("Type", "string", SVC_TYPE_DESC, 0),
            col("Cluster-IP", "string", SVC_CLUSTER_IP_DESC, 0),
            col("External-IP", "string", SVC_EXTERNAL_IP_DESC, 0),
            col("Port(s)", "string", SVC_PORTS_DESC, 0),
            age_col(),
            col("Selector", "string", SVC_SELECTOR_DESC, 1),
        ],
        Printer::Endpoints => vec![
            name_col(),
            col(
                "Endpoints",
                "string",
                "The ready addresses of the service as IP:port pairs, the first three of them followed by a count of the rest.",
                0,
            ),
            age_col(),
        ],
        Printer::ConfigMap => vec![
            name_col(),
            col("Data", "string", CM_DATA_DESC, 0),
            age_col(),
        ],
        Printer::Secret => vec![
            name_col(),
            col(
                "Type",
                "string",
                "The kind of secret, which tells its consumers what keys and values to expect in its data.",
                0,
            ),
            col(
                "Data",
                "string",
                "The number of keys held in the secret's data.",
                0,
            ),
            age_col(),
        ],
        Printer::ServiceAccount => vec![
            name_col(),
            col(
                "Secrets",
                "string",
                "The number of secrets the service account lists for its pods to use.",
                0,
            ),
            age_col(),
        ],
        Printer::Node => vec![
            name_col(),
            col(
                "Status",
                "string",
                "Whether the node is ready, and whether new pods may be scheduled on it.",
                0,
            ),
            col(
                "Roles",
                "string",
                "The roles given to the node by its node-role.kubernetes.io labels.",
                0,
            ),
            age_col(),
            col(
                "Version",
                "string",
                "The version of the kubelet that runs on the node.",
                0,
            ),
            col(
                "Internal-IP",
                "string",
                "The first address of type InternalIP the node reports.",
                1,
            ),
            col(
                "External-IP",
                "string",
                "The first address of type ExternalIP the node reports.",
                1,
            ),
            col(
                "OS-Image",
                "string",
                "The operating system image the node reports, as found in /etc/os-release.",
                1,
            ),
            col(
                "Kernel-Version",
                "string",
                "The kernel version the node reports, as given by uname -r.",
                1,
            ),
            col(
                "Container-Runtime",
                "string",
                "The name and version of the container runtime on the node.",
                1,
            ),
        ],
        Printer::Event | Printer::EventsV1 => vec![
            col(
                "Last Seen",
                "string",
                "How long ago the event was last observed.",
                0,
            ),
            col(
                "Type",
                "string",
                "The type of the event, Normal or Warning.",
                0,
            ),
            col(
                "Reason",
                "string",
                "A short, machine-readable word for why the event happened.",
                0,
            ),
            col(
                "Object",
                "string",
                "The object the event is about, as kind/name.",
                0,
            ),
            col(
                "Subobject",
                "string",
                "The part of the object the event is about, such as one container of a pod.",
                1,
            ),
            col(
                "Source",
                "string",
                "The component, and the host it runs on, that reported the event.",
                1,
            ),
            col(
                "Message",
                "string",
                "A human-readable description of what happened.",
                0,
            ),
            col(
                "First Seen",
                "string",
                "How long ago the event was first observed.",
                1,
            ),
            col(
                "Count",
                "string",
                "How many times the event has been observed.",
                1,
            ),
            Column {
                priority: 1,
                ..name_col()
            },
        ],
        Printer::Deployment => vec![
            name_col(),
            col("Ready", "string", READY_PODS_DESC, 0),
            col("Up-to-date", "string", DEPLOY_UPDATED_DESC, 0),
            col("Available", "string", DEPLOY_AVAILABLE_DESC, 0),
            age_col(),
            containers_col(),
            images_col(),
            col("Selector", "string", DEPLOY_SELECTOR_DESC, 1),
        ],
        Printer::ReplicaSet => vec![
            name_col(),
            col(
                "Desired",
                "integer",
                "The number of pods the replica set is asked to run.",
                0,
            ),
            col(
                "Current",
                "integer",
                "The number of pods the replica set most recently observed.",
                0,
            ),
            col(
                "Ready",
                "integer",
                "The number of the replica set's pods that are ready.",
                0,
            ),
            age_col(),
            containers_col(),
            images_col(),
            col(
                "Selector",
                "string",
                "The label query the replica set uses to count its pods.",
                1,
            ),
        ],
        Printer::StatefulSet => vec![
            name_col(),
            col("Ready", "string", READY_PODS_DESC, 0),
            age_col(),
            containers_col(),
            images_col(),
        ],
        Printer::DaemonSet => vec![
            name_col(),
            col(
                "Desired",
                "integer",
                "The number of nodes that should be running the daemon pod.",
                0,
            ),
            col(
                "Current",
                "integer",
                "The number of nodes running at least one daemon pod that should run it.",
                0,
            ),
            col(
                "Ready",
                "integer",
                "The number of nodes whose daemon pod is ready.",
                0,
            ),
            col(
                "Up-to-date",
                "integer",
                "The number of nodes running the current version of the daemon pod.",
                0,
            ),
            col(
                "Available",
                "integer",
                "The number of nodes whose daemon pod has been available for at least minReadySeconds.",
                0,
            ),
            col(
                "Node Selector",
                "string",
                "The node labels a node must carry for the daemon pod to run there.",
                0,
            ),
            age_col(),
            containers_col(),
            images_col(),
            col(
                "Selector",
                "string",
                "The label query the daemon set uses to find its pods.",
                1,
            ),
        ],
        Printer::Job => vec![
            name_col(),
            col(
                "Status",
                "string",
                "The state the job is in: Running, Complete, Failed, Suspended, FailureTarget or Terminating.",
                0,
            ),
            col("Completions", "string", JOB_COMPLETIONS_DESC, 0),
            col("Duration", "string", JOB_DURATION_DESC, 0),
            age_col(),
            containers_col(),
            images_col(),
            col("Selector", "string", JOB_SELECTOR_DESC, 1),
        ],
        Printer::CronJob => vec![
            name_col(),
            col(
                "Schedule",
                "string",
                "The schedule in Cron format on which jobs are started.",
                0,
            ),
            col(
                "Timezone",
                "string",
                "The time zone the schedule is read in; the controller's local time when unset.",
                0,
            ),
            col(
                "Suspend",
                "boolean",
                "Whether the starting of new jobs is suspended.",
                0,
            ),
            col(
                "Active",
                "integer",
                "The number of jobs of this cron job that are running.",
                0,
            ),
            col(
                "Last Schedule",
                "string",
                "How long ago a job was last scheduled.",
                0,
            ),
            age_col(),
            containers_col(),
            images_col(),
            col(
                "Selector",
                "string",
                "The label query the jobs' pods must match.",
                1,
            ),
        ],
        Printer::RoleBinding => vec![
            name_col(),
            col(
                "Role",
                "string",
                "The Role or ClusterRole the binding grants, as kind/name.",
                0,
            ),
            age_col(),
            col(
                "Users",
                "string",
                "The users the binding applies to.",
                1,
            ),
            col(
                "Groups",
                "string",
                "The groups the binding applies to.",
                1,
            ),
            col(
                "ServiceAccounts",
                "string",
                "The service accounts the binding applies to, as namespace/name.",
                1,
            ),
        ],
        Printer::CertificateSigningRequest => vec![
            name_col(),
            age_col(),
            col("SignerName", "string", "signerName indicates the requested signer, and is a qualified name.", 0),
            col("Requestor", "string", "username contains the name of the user that created the CertificateSigningRequest. Populated by the API server on creation and immutable.", 0),
            col("RequestedDuration", "string", "expirationSeconds is the requested duration of validity of the issued certificate.", 0),
            col("Condition", "string", "conditions applied to the request. Known conditions are \"Approved\", \"Denied\", and \"Failed\".", 0),
        ],
        Printer::Lease => vec![
            name_col(),
            col(
                "Holder",
                "string",
                "The identity of the current holder of the lease.",
                0,
            ),
            age_col(),
        ],
        Printer::Custom => vec![name_col(), col("Age", "date", CREATED_DESC, 0)],
        Printer::Default => vec![name_col(), col("Created At", "date", CREATED_DESC, 0)],
    }
}

/// Column definitions as JSON (`{"name","type","format","description","priority"}`), for
/// the Table's `columnDefinitions`.
pub fn column_definitions(group: &str, kind: &str) -> Value {
    definitions(columns(group, kind))
}

fn definitions(columns: Vec<Column>) -> Value {
    Value::Array(
        columns
            .into_iter()
            .map(|c| {
                json!({
                    "name": c.name,
                    "type": c.type_,
                    "format": c.format,
                    "description": c.description,
                    "priority": c.priority,
                })
            })
            .collect(),
    )
}

/// The cells of one row, in column order. `now` is the server's current time for ages.
pub fn cells(group: &str, kind: &str, obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
    cells_by(printer(group, kind), obj, now)
}

fn cells_by(p: Printer, obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
    match p {
        Printer::Pod => pod_cells(obj, now),
        Printer::Namespace => {
            let phase = match text(obj, &["status", "phase"]) {
                "" => "Active",
                p => p,
            };
            vec![name(obj), phase.into(), age(obj, now)]
        }
        Printer::Service => service_cells(obj, now),
        Printer::Endpoints => vec![name(obj), format_endpoints(obj).into(), age(obj, now)],
        Printer::ConfigMap => {
            let n = map_len(obj, &["data"]) + map_len(obj, &["binaryData"]);
            vec![name(obj), count(n), age(obj, now)]
        }
        Printer::Secret => {
            let ty = match text(obj, &["type"]) {
                "" => "Opaque",
                t => t,
            };
            vec![name(obj), ty.into(), count(map_len(obj, &["data"])), age(obj, now)]
        }
        Printer::ServiceAccount => vec![name(obj), count(list(obj, &["secrets"]).len()), age(obj, now)],
        Printer::Node => node_cells(obj, now),
        Printer::Event => event_cells(&EventFields::core(), obj, now),
        Printer::EventsV1 => event_cells(&EventFields::events_v1(), obj, now),
        Printer::Deployment => deployment_cells(obj, now),
        Printer::ReplicaSet => {
            let (names, images) = container_cells(list(obj, &["spec", "template", "spec", "containers"]));
            vec![
                name(obj),
                int_or(obj, &["spec", "replicas"], 1).into(),
                int(obj, &["status", "replicas"]).into(),
                int(obj, &["status", "readyReplicas"]).into(),
                age(obj, now),
                names.into(),
                images.into(),
                format_label_selector(get(obj, &["spec", "selector"])).into(),
            ]
        }
        Printer::StatefulSet => {
            let (names, images) = container_cells(list(obj, &["spec", "template", "spec", "containers"]));
            let ready = format!("{}/{}", int(obj, &["status", "readyReplicas"]), int_or(obj, &["spec", "replicas"], 1));
            vec![name(obj), ready.into(), age(obj, now), names.into(), images.into()]
        }
        Printer::DaemonSet => {
            let (names, images) = container_cells(list(obj, &["spec", "template", "spec", "containers"]));
            vec![
                name(obj),
                int(obj, &["status", "desiredNumberScheduled"]).into(),
                int(obj, &["status", "currentNumberScheduled"]).into(),
                int(obj, &["status", "numberReady"]).into(),
                int(obj, &["status", "updatedNumberScheduled"]).into(),
                int(obj, &["status", "numberAvailable"]).into(),
                format_labels(get(obj, &["spec", "template", "spec", "nodeSelector"])).into(),
                age(obj, now),
                names.into(),
                images.into(),
                format_label_selector(get(obj, &["spec", "selector"])).into(),
            ]
        }
        Printer::Job => job_cells(obj, now),
        Printer::CronJob => cronjob_cells(obj, now),
        Printer::RoleBinding => rolebinding_cells(obj, now),
        Printer::Lease => vec![name(obj), text(obj, &["spec", "holderIdentity"]).into(), age(obj, now)],
        Printer::CertificateSigningRequest => csr_cells(obj, now),
        Printer::Custom => vec![name(obj), age(obj, now)],
        Printer::Default => {
            let created = match get(obj, &["metadata", "creationTimestamp"]) {
                None => format_rfc3339(zero_time()),
                Some(v) => match v.as_str().and_then(parse_time) {
                    Some(t) => format_rfc3339(t),
                    // Not a timestamp kube would store; show it as it is.
                    None => v.as_str().map_or_else(|| v.to_string(), str::to_string),
                },
            };
            vec![name(obj), created.into()]
        }
    }
}

/// A duration as Go's `time.Duration.String` prints it, to the millisecond (`250ms`, `10s`,
/// `1.5s`, `5m0s`, `1h0m0s`).
pub fn go_duration(d: std::time::Duration) -> String {
    let ms = d.as_millis() as u64;
    if ms == 0 {
        return "0s".into();
    }
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let (h, m, s, frac) = (ms / 3_600_000, ms / 60_000 % 60, ms / 1000 % 60, ms % 1000);
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if h > 0 || m > 0 {
        out.push_str(&format!("{m}m"));
    }
    out.push_str(&s.to_string());
    if frac > 0 {
        out.push_str(format!(".{frac:03}").trim_end_matches('0'));
    }
    out.push('s');
    out
}

/// printCertificateSigningRequest: the signer, the requester, the requested duration, and
/// the condition summary (`Approved,Issued`, `Denied`, `Pending`, with `,Failed`).
fn csr_cells(obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let or_none = |s: &str| if s.is_empty() { "<none>".to_string() } else { s.to_string() };
    let duration = get(obj, &["spec", "expirationSeconds"])
        .and_then(Value::as_i64)
        .map(|secs| human_duration(chrono::Duration::seconds(secs)))
        .unwrap_or_else(|| "<none>".into());
    let conds: Vec<&str> = get(obj, &["status", "conditions"])
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|c| c.get("type").and_then(Value::as_str))
        .collect();
    let mut status = if conds.contains(&"Denied") {
        "Denied"
    } else if conds.contains(&"Approved") {
        "Approved"
    } else {
        "Pending"
    }
    .to_string();
    if conds.contains(&"Failed") {
        status.push_str(",Failed");
    }
    if get(obj, &["status", "certificate"]).and_then(Value::as_str).is_some_and(|c| !c.is_empty()) {
        status.push_str(",Issued");
    }
    vec![
        name(obj),
        age(obj, now),
        or_none(text(obj, &["spec", "signerName"])).into(),
        text(obj, &["spec", "username"]).into(),
        duration.into(),
        status.into(),
    ]
}

/// kube's human duration (e.g. "5s", "3m2s", "4h", "2d3h", "5y") used for AGE, as
/// `k8s.io/apimachinery/pkg/util/duration.HumanDuration` does.
///
/// Up to two seconds in the future counts as now ("0s"); further is `<invalid>`.
pub fn human_duration(d: chrono::Duration) -> String {
    // Whole seconds, truncated toward zero like Go's int(d.Seconds()).
    let seconds = d.num_seconds();
    if seconds < -1 {
        return "<invalid>".to_string();
    }
    if seconds < 0 {
        return "0s".to_string();
    }
    if seconds < 60 * 2 {
        return format!("{seconds}s");
    }
    let minutes = seconds / 60;
    if minutes < 10 {
        let s = seconds % 60;
        return if s == 0 { format!("{minutes}m") } else { format!("{minutes}m{s}s") };
    }
    if minutes < 60 * 3 {
        return format!("{minutes}m");
    }
    let hours = seconds / 3600;
    if hours < 8 {
        let m = minutes % 60;
        return if m == 0 { format!("{hours}h") } else { format!("{hours}h{m}m") };
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    let days = hours / 24;
    if hours < 24 * 8 {
        let h = hours % 24;
        return if h == 0 { format!("{days}d") } else { format!("{days}d{h}h") };
    }
    if hours < 24 * 365 * 2 {
        return format!("{days}d");
    }
    let years = days / 365;
    if hours < 24 * 365 * 8 {
        let dy = days % 365;
        return if dy == 0 { format!("{years}y") } else { format!("{years}y{dy}d") };
    }
    format!("{years}y")
}

// ---------------------------------------------------------------------------------------
// Reading JSON without trusting its shape.

/// The value at `path`; `None` when absent or `null`.
fn get<'a>(v: &'a Value, path: &[&str]) -> Option<&'a Value> {
    let mut cur = v;
    for key in path {
        cur = cur.as_object()?.get(*key)?;
    }
    if cur.is_null() {
        None
    } else {
        Some(cur)
    }
}

/// The string at `path`, or "" when absent or not a string.
fn text<'a>(v: &'a Value, path: &[&str]) -> &'a str {
    get(v, path).and_then(Value::as_str).unwrap_or("")
}

/// The integer at `path`, if any.
fn opt_int(v: &Value, path: &[&str]) -> Option<i64> {
    let n = get(v, path)?;
    // Integral floats come from clients that write numbers as 1.0.
    n.as_i64().or_else(|| n.as_f64().map(|f| f as i64))
}

/// The integer at `path`, or 0.
fn int(v: &Value, path: &[&str]) -> i64 {
    opt_int(v, path).unwrap_or(0)
}

/// The integer at `path`, or `default` when absent (a field the server defaults).
fn int_or(v: &Value, path: &[&str], default: i64) -> i64 {
    opt_int(v, path).unwrap_or(default)
}

/// The array at `path`, or an empty slice.
fn list<'a>(v: &'a Value, path: &[&str]) -> &'a [Value] {
    get(v, path).and_then(Value::as_array).map_or(&[], Vec::as_slice)
}

/// The number of entries of the map at `path`, or 0.
fn map_len(v: &Value, path: &[&str]) -> usize {
    get(v, path).and_then(Value::as_object).map_or(0, Map::len)
}

fn count(n: usize) -> Value {
    Value::from(i64::try_from(n).unwrap_or(i64::MAX))
}

fn name(obj: &Value) -> Value {
    text(obj, &["metadata", "name"]).into()
}

/// A label value as text; non-strings are printed as JSON.
fn plain(v: &Value) -> String {
    v.as_str().map_or_else(|| v.to_string(), str::to_string)
}

// ---------------------------------------------------------------------------------------
// Times.

fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s).ok().map(|t| t.with_timezone(&Utc))
}

/// Go's zero `time.Time`, 0001-01-01T00:00:00Z.
fn zero_time() -> DateTime<Utc> {
    chrono::NaiveDate::from_ymd_opt(1, 1, 1)
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map_or(DateTime::<Utc>::MIN_UTC, |t| t.and_utc())
}

fn format_rfc3339(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// A set, non-zero timestamp at `path`.
fn time_at(v: &Value, path: &[&str]) -> Option<DateTime<Utc>> {
    get(v, path).and_then(Value::as_str).and_then(parse_time).filter(|t| *t != zero_time())
}

/// How long ago the timestamp at `path` was, `<unknown>` when it is unset.
fn since(v: &Value, path: &[&str], now: DateTime<Utc>) -> String {
    match time_at(v, path) {
        Some(t) => human_duration(now - t),
        None => "<unknown>".to_string(),
    }
}

fn age(obj: &Value, now: DateTime<Utc>) -> Value {
    since(obj, &["metadata", "creationTimestamp"], now).into()
}

fn later(a: Option<DateTime<Utc>>, b: Option<DateTime<Utc>>) -> Option<DateTime<Utc>> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.max(y)),
        (x, y) => x.or(y),
    }
}

// ---------------------------------------------------------------------------------------
// Labels and selectors.

/// `k1=v1,k2=v2` sorted by key, `<none>` when empty (labels.FormatLabels).
fn format_labels(labels: Option<&Value>) -> String {
    let Some(map) = labels.and_then(Value::as_object) else {
        return "<none>".to_string();
    };
    let mut pairs: Vec<(&String, &Value)> = map.iter().collect();
    pairs.sort_by(|a, b| a.0.cmp(b.0));
    let s = pairs.iter().map(|(k, v)| format!("{k}={}", plain(v))).collect::<Vec<_>>().join(",");
    if s.is_empty() {
        "<none>".to_string()
    } else {
        s
    }
}

/// A LabelSelector as selector text (`a=b,c in (d,e),!f`); "" for an absent or empty
/// selector, `Err` for one Kubernetes would not accept.
fn selector_string(sel: Option<&Value>) -> Result<String, ()> {
    let Some(sel) = sel else {
        return Ok(String::new());
    };
    let sel = sel.as_object().ok_or(())?;
    let mut reqs: Vec<(String, String)> = Vec::new();
    if let Some(labels) = sel.get("matchLabels").filter(|v| !v.is_null()) {
        for (k, v) in labels.as_object().ok_or(())? {
            reqs.push((k.clone(), format!("{k}={}", plain(v))));
        }
    }
    if let Some(exprs) = sel.get("matchExpressions").filter(|v| !v.is_null()) {
        for e in exprs.as_array().ok_or(())? {
            let key = text(e, &["key"]);
            let mut values: Vec<String> = list(e, &["values"]).iter().map(plain).collect();
            let r = match text(e, &["operator"]) {
                op @ ("In" | "NotIn") => {
                    if values.is_empty() {
                        return Err(());
                    }
                    values.sort();
                    let word = if op == "In" { "in" } else { "notin" };
                    format!("{key} {word} ({})", values.join(","))
                }
                "Exists" if values.is_empty() => key.to_string(),
                "DoesNotExist" if values.is_empty() => format!("!{key}"),
                _ => return Err(()),
            };
            reqs.push((key.to_string(), r));
        }
    }
    reqs.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(reqs.into_iter().map(|(_, r)| r).collect::<Vec<_>>().join(","))
}

/// metav1.FormatLabelSelector: `<none>` for no requirements, `<error>` for a bad selector.
fn format_label_selector(sel: Option<&Value>) -> String {
    match selector_string(sel) {
        Ok(s) if s.is_empty() => "<none>".to_string(),
        Ok(s) => s,
        Err(()) => "<error>".to_string(),
    }
}

/// Names and images of containers, each joined with ",".
fn container_cells(containers: &[Value]) -> (String, String) {
    let names: Vec<&str> = containers.iter().map(|c| text(c, &["name"])).collect();
    let images: Vec<&str> = containers.iter().map(|c| text(c, &["image"])).collect();
    (names.join(","), images.join(","))
}

// ---------------------------------------------------------------------------------------
// Pods.

fn has_condition(conditions: &[Value], type_: &str) -> bool {
    conditions.iter().any(|c| text(c, &["type"]) == type_ && text(c, &["status"]) == "True")
}

/// When the container last terminated, from `lastState.terminated.finishedAt`.
fn last_termination(status: &Value) -> Option<DateTime<Utc>> {
    get(status, &["lastState", "terminated"])?;
    time_at(status, &["lastState", "terminated", "finishedAt"])
}

/// "Signal:N" or "ExitCode:N" for a termination without a reason.
fn termination_code(terminated: &Value) -> String {
    let signal = int(terminated, &["signal"]);
    if signal != 0 {
        format!("Signal:{signal}")
    } else {
        format!("ExitCode:{}", int(terminated, &["exitCode"]))
    }
}

fn pod_cells(obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let containers = list(obj, &["spec", "containers"]);
    let init_containers = list(obj, &["spec", "initContainers"]);
    let conditions = list(obj, &["status", "conditions"]);
    // Sidecars: init containers with restartPolicy Always count as containers.
    let restartable = |container: &str| {
        init_containers
            .iter()
            .rev()
            .find(|c| text(c, &["name"]) == container)
            .is_some_and(|c| text(c, &["restartPolicy"]) == "Always")
    };
    let sidecars = init_containers.iter().filter(|c| text(c, &["restartPolicy"]) == "Always").count();
    let total = containers.len() + sidecars;
    let mut ready = 0usize;

    let phase = text(obj, &["status", "phase"]);
    let mut reason = match text(obj, &["status", "reason"]) {
        "" => phase.to_string(),
        r => r.to_string(),
    };
    if conditions.iter().any(|c| text(c, &["type"]) == "PodScheduled" && text(c, &["reason"]) == "SchedulingGated") {
        reason = "SchedulingGated".to_string();
    }

    let mut restarts = 0i64;
    let mut last_restart = None;
    let mut sidecar_restarts = 0i64;
    let mut sidecar_last_restart = None;
    let mut initializing = false;
    for (i, cs) in list(obj, &["status", "initContainerStatuses"]).iter().enumerate() {
        let restart_count = int(cs, &["restartCount"]);
        restarts += restart_count;
        last_restart = later(last_restart, last_termination(cs));
        let is_sidecar = restartable(text(cs, &["name"]));
        if is_sidecar {
            sidecar_restarts += restart_count;
            sidecar_last_restart = later(sidecar_last_restart, last_termination(cs));
        }
        let terminated = get(cs, &["state", "terminated"]);
        let waiting_reason = text(cs, &["state", "waiting", "reason"]);
        if terminated.is_some_and(|t| int(t, &["exitCode"]) == 0) {
            continue;
        }
        if is_sidecar && get(cs, &["started"]).and_then(Value::as_bool) == Some(true) {
            if get(cs, &["ready"]).and_then(Value::as_bool) == Some(true) {
                ready += 1;
            }
            continue;
        }
        reason = if let Some(t) = terminated {
            match text(t, &["reason"]) {
                "" => format!("Init:{}", termination_code(t)),
                r => format!("Init:{r}"),
            }
        } else if !waiting_reason.is_empty() && waiting_reason != "PodInitializing" {
            format!("Init:{waiting_reason}")
        } else {
            format!("Init:{i}/{}", init_containers.len())
        };
        initializing = true;
        break;
    }

    if !initializing || has_condition(conditions, "Initialized") {
        restarts = sidecar_restarts;
        last_restart = sidecar_last_restart;
        let mut has_running = false;
        for cs in list(obj, &["status", "containerStatuses"]).iter().rev() {
            restarts += int(cs, &["restartCount"]);
            last_restart = later(last_restart, last_termination(cs));
            let waiting_reason = text(cs, &["state", "waiting", "reason"]);
            let terminated = get(cs, &["state", "terminated"]);
            if !waiting_reason.is_empty() {
                reason = waiting_reason.to_string();
            } else if let Some(t) = terminated {
                reason = match text(t, &["reason"]) {
                    "" => termination_code(t),
                    r => r.to_string(),
                };
            } else if get(cs, &["ready"]).and_then(Value::as_bool) == Some(true)
                && get(cs, &["state", "running"]).is_some()
            {
                has_running = true;
                ready += 1;
            }
        }
        if reason == "Completed" && has_running {
            reason = if has_condition(conditions, "Ready") { "Running".to_string() } else { "NotReady".to_string() };
        }
    }

    if get(obj, &["metadata", "deletionTimestamp"]).is_some() {
        if text(obj, &["status", "reason"]) == "NodeLost" {
            reason = "Unknown".to_string();
        } else if phase != "Succeeded" && phase != "Failed" {
            reason = "Terminating".to_string();
        }
    }

    let restarts_cell = match last_restart {
        Some(t) if restarts != 0 => format!("{restarts} ({} ago)", human_duration(now - t)),
        _ => restarts.to_string(),
    };

    let ips = list(obj, &["status", "podIPs"]);
    let pod_ip = match ips.first().map(|ip| text(ip, &["ip"])) {
        Some(ip) => ip,
        None => text(obj, &["status", "podIP"]),
    };
    let gates = list(obj, &["spec", "readinessGates"]);
    let gates_cell = if gates.is_empty() {
        "<none>".to_string()
    } else {
        let passing = gates
            .iter()
            .filter(|g| {
                let ty = text(g, &["conditionType"]);
                conditions.iter().find(|c| text(c, &["type"]) == ty).is_some_and(|c| text(c, &["status"]) == "True")
            })
            .count();
        format!("{passing}/{}", gates.len())
    };

    vec![
        name(obj),
        format!("{ready}/{total}").into(),
        reason.into(),
        restarts_cell.into(),
        age(obj, now),
        or_none(pod_ip).into(),
        or_none(text(obj, &["spec", "nodeName"])).into(),
        or_none(text(obj, &["status", "nominatedNodeName"])).into(),
        gates_cell.into(),
    ]
}

fn or_none(s: &str) -> &str {
    if s.is_empty() {
        "<none>"
    } else {
        s
    }
}

// ---------------------------------------------------------------------------------------
// Services and endpoints.

fn service_cells(obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let svc_type = match text(obj, &["spec", "type"]) {
        "" => "ClusterIP",
        t => t,
    };
    let cluster_ip = match list(obj, &["spec", "clusterIPs"]).first() {
        Some(ip) => ip.as_str().unwrap_or(""),
        None => text(obj, &["spec", "clusterIP"]),
    };
    let cluster_ip =
        if cluster_ip.is_empty() && list(obj, &["spec", "clusterIPs"]).is_empty() { "<none>" } else { cluster_ip };
    let external_ips: Vec<String> = list(obj, &["spec", "externalIPs"]).iter().map(plain).collect();
    let external = match svc_type {
        "ClusterIP" | "NodePort" => {
            if external_ips.is_empty() {
                "<none>".to_string()
            } else {
                external_ips.join(",")
            }
        }
        "LoadBalancer" => {
            let lb: BTreeSet<&str> = list(obj, &["status", "loadBalancer", "ingress"])
                .iter()
                .filter_map(|i| match (text(i, &["ip"]), text(i, &["hostname"])) {
                    ("", "") => None,
                    ("", host) => Some(host),
                    (ip, _) => Some(ip),
                })
                .collect();
            let mut all: Vec<String> = lb.into_iter().map(str::to_string).collect();
            if all.is_empty() && external_ips.is_empty() {
                "<pending>".to_string()
            } else {
                all.extend(external_ips);
                all.join(",")
            }
        }
        "ExternalName" => text(obj, &["spec", "externalName"]).to_string(),
        _ => "<unknown>".to_string(),
    };
    let ports = list(obj, &["spec", "ports"])
        .iter()
        .map(|p| {
            let port = int(p, &["port"]);
            let protocol = match text(p, &["protocol"]) {
                "" => "TCP",
                proto => proto,
            };
            match int(p, &["nodePort"]) {
                node_port if node_port > 0 => format!("{port}:{node_port}/{protocol}"),
                _ => format!("{port}/{protocol}"),
            }
        })
        .collect::<Vec<_>>()
        .join(",");
    vec![
        name(obj),
        svc_type.into(),
        cluster_ip.into(),
        external.into(),
        or_none(&ports).into(),
        age(obj, now),
        format_labels(get(obj, &["spec", "selector"])).into(),
    ]
}

fn join_host_port(host: &str, port: i64) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// The first three endpoint addresses (`ip:port`, or `ip` for port-less subsets), then
/// `+ N more...`; `<none>` without subsets.
fn format_endpoints(obj: &Value) -> String {
    const MAX: usize = 3;
    let subsets = list(obj, &["subsets"]);
    if subsets.is_empty() {
        return "<none>".to_string();
    }
    let mut shown: Vec<String> = Vec::new();
    let mut more = false;
    let mut total = 0usize;
    for ss in subsets {
        let addresses = list(ss, &["addresses"]);
        let ports = list(ss, &["ports"]);
        if ports.is_empty() {
            total += addresses.len();
            for a in addresses {
                if shown.len() == MAX {
                    more = true;
                    break;
                }
                shown.push(text(a, &["ip"]).to_string());
            }
            continue;
        }
        for p in ports {
            total += addresses.len();
            for a in addresses {
                if shown.len() == MAX {
                    more = true;
                    break;
                }
                shown.push(join_host_port(text(a, &["ip"]), int(p, &["port"])));
            }
        }
    }
    let joined = shown.join(",");
    if more {
        format!("{joined} + {} more...", total.saturating_sub(MAX))
    } else {
        joined
    }
}

// ---------------------------------------------------------------------------------------
// Nodes.

fn node_cells(obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let mut status: Vec<&str> = Vec::new();
    // The last Ready condition wins, as in a map keyed by condition type.
    if let Some(c) = list(obj, &["status", "conditions"]).iter().rev().find(|c| text(c, &["type"]) == "Ready") {
        status.push(if text(c, &["status"]) == "True" { "Ready" } else { "NotReady" });
    }
    if status.is_empty() {
        status.push("Unknown");
    }
    if get(obj, &["spec", "unschedulable"]).and_then(Value::as_bool) == Some(true) {
        status.push("SchedulingDisabled");
    }

    let mut roles: BTreeSet<String> = BTreeSet::new();
    if let Some(labels) = get(obj, &["metadata", "labels"]).and_then(Value::as_object) {
        for (k, v) in labels {
            if let Some(role) = k.strip_prefix("node-role.kubernetes.io/") {
                if !role.is_empty() {
                    roles.insert(role.to_string());
                }
            } else if k == "kubernetes.io/role" {
                let v = plain(v);
                if !v.is_empty() {
                    roles.insert(v);
                }
            }
        }
    }
    let roles = roles.into_iter().collect::<Vec<_>>().join(",");

    let address = |ty: &str| {
        list(obj, &["status", "addresses"])
            .iter()
            .find(|a| text(a, &["type"]) == ty)
            .map_or("<none>", |a| text(a, &["address"]))
    };
    let info = |field: &str| match text(obj, &["status", "nodeInfo", field]) {
        "" => "<unknown>",
        s => s,
    };
    vec![
        name(obj),
        status.join(",").into(),
        or_none(&roles).into(),
        age(obj, now),
        text(obj, &["status", "nodeInfo", "kubeletVersion"]).into(),
        address("InternalIP").into(),
        address("ExternalIP").into(),
        info("osImage").into(),
        info("kernelVersion").into(),
        info("containerRuntimeVersion").into(),
    ]
}

// ---------------------------------------------------------------------------------------
// Events.

/// Where the fields the event printer reads live in core/v1 and events.k8s.io/v1 Events.
struct EventFields {
    regarding: &'static str,
    message: &'static str,
    source: &'static str,
    first: &'static str,
    last: &'static str,
    count: &'static str,
    controller: &'static str,
}

impl EventFields {
    fn core() -> Self {
        EventFields {
            regarding: "involvedObject",
            message: "message",
            source: "source",
            first: "firstTimestamp",
            last: "lastTimestamp",
            count: "count",
            controller: "reportingComponent",
        }
    }

    fn events_v1() -> Self {
        EventFields {
            regarding: "regarding",
            message: "note",
            source: "deprecatedSource",
            first: "deprecatedFirstTimestamp",
            last: "deprecatedLastTimestamp",
            count: "deprecatedCount",
            controller: "reportingController",
        }
    }
}

fn event_cells(f: &EventFields, obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let first_seen =
        if time_at(obj, &[f.first]).is_some() { since(obj, &[f.first], now) } else { since(obj, &["eventTime"], now) };
    let mut last_seen = if time_at(obj, &[f.last]).is_some() { since(obj, &[f.last], now) } else { first_seen.clone() };
    let mut n = int(obj, &[f.count]);
    if let Some(series) = get(obj, &["series"]) {
        last_seen = since(series, &["lastObservedTime"], now);
        n = int(series, &["count"]);
    } else if n == 0 {
        // Singleton events of the new API carry no count.
        n = 1;
    }

    let kind = text(obj, &[f.regarding, "kind"]).to_lowercase();
    let target = match text(obj, &[f.regarding, "name"]) {
        "" => kind,
        object => format!("{kind}/{object}"),
    };
    let first_non_empty = |a: &'static str, b: &'static str| -> &str {
        match text(obj, &[f.source, a]) {
            "" => text(obj, &[b]),
            s => s,
        }
    };
    let component = first_non_empty("component", f.controller);
    let instance = first_non_empty("host", "reportingInstance");
    let source = if instance.is_empty() { component.to_string() } else { format!("{component}, {instance}") };

    vec![
        last_seen.into(),
        text(obj, &["type"]).into(),
        text(obj, &["reason"]).into(),
        target.into(),
        text(obj, &[f.regarding, "fieldPath"]).into(),
        source.into(),
        text(obj, &[f.message]).trim().into(),
        first_seen.into(),
        n.into(),
        name(obj),
    ]
}

// ---------------------------------------------------------------------------------------
// Workloads.

fn deployment_cells(obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let (names, images) = container_cells(list(obj, &["spec", "template", "spec", "containers"]));
    let ready = format!("{}/{}", int(obj, &["status", "readyReplicas"]), int_or(obj, &["spec", "replicas"], 1));
    // Deployments print the selector as is: "" when empty, `<invalid>` when bad.
    let selector = selector_string(get(obj, &["spec", "selector"])).unwrap_or_else(|()| "<invalid>".into());
    vec![
        name(obj),
        ready.into(),
        int(obj, &["status", "updatedReplicas"]).into(),
        int(obj, &["status", "availableReplicas"]).into(),
        age(obj, now),
        names.into(),
        images.into(),
        selector.into(),
    ]
}

/// The status of the condition of `type_`, looking at the first one of that type only.
fn job_condition(conditions: &[Value], type_: &str) -> bool {
    conditions.iter().find(|c| text(c, &["type"]) == type_).is_some_and(|c| text(c, &["status"]) == "True")
}

fn job_cells(obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let succeeded = int(obj, &["status", "succeeded"]);
    let completions = match opt_int(obj, &["spec", "completions"]) {
        Some(c) => format!("{succeeded}/{c}"),
        None => match int(obj, &["spec", "parallelism"]) {
            p if p > 1 => format!("{succeeded}/1 of {p}"),
            _ => format!("{succeeded}/1"),
        },
    };
    let duration = match (time_at(obj, &["status", "startTime"]), time_at(obj, &["status", "completionTime"])) {
        (None, _) => String::new(),
        (Some(start), None) => human_duration(now - start),
        (Some(start), Some(end)) => human_duration(end - start),
    };
    let conditions = list(obj, &["status", "conditions"]);
    let status = if job_condition(conditions, "Complete") {
        "Complete"
    } else if job_condition(conditions, "Failed") {
        "Failed"
    } else if get(obj, &["metadata", "deletionTimestamp"]).is_some() {
        "Terminating"
    } else if job_condition(conditions, "Suspended") {
        "Suspended"
    } else if job_condition(conditions, "FailureTarget") {
        "FailureTarget"
    } else {
        "Running"
    };
    let (names, images) = container_cells(list(obj, &["spec", "template", "spec", "containers"]));
    vec![
        name(obj),
        status.into(),
        completions.into(),
        duration.into(),
        age(obj, now),
        names.into(),
        images.into(),
        format_label_selector(get(obj, &["spec", "selector"])).into(),
    ]
}

fn cronjob_cells(obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let last_schedule = if get(obj, &["status", "lastScheduleTime"]).is_some() {
        since(obj, &["status", "lastScheduleTime"], now)
    } else {
        "<none>".to_string()
    };
    let time_zone = match get(obj, &["spec", "timeZone"]) {
        Some(tz) => plain(tz),
        None => "<none>".to_string(),
    };
    // Shown as text, and false (the v1 default) when unset.
    let suspend = match get(obj, &["spec", "suspend"]).and_then(Value::as_bool) {
        Some(true) => "True",
        _ => "False",
    };
    let template = &["spec", "jobTemplate", "spec", "template", "spec", "containers"];
    let (names, images) = container_cells(list(obj, template));
    vec![
        name(obj),
        text(obj, &["spec", "schedule"]).into(),
        time_zone.into(),
        suspend.into(),
        count(list(obj, &["status", "active"]).len()),
        last_schedule.into(),
        age(obj, now),
        names.into(),
        images.into(),
        format_label_selector(get(obj, &["spec", "jobTemplate", "spec", "selector"])).into(),
    ]
}

// ---------------------------------------------------------------------------------------
// RBAC.

fn rolebinding_cells(obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let role = format!("{}/{}", text(obj, &["roleRef", "kind"]), text(obj, &["roleRef", "name"]));
    let mut users = Vec::new();
    let mut groups = Vec::new();
    let mut accounts = Vec::new();
    for s in list(obj, &["subjects"]) {
        let subject = text(s, &["name"]).to_string();
        match text(s, &["kind"]) {
            "User" => users.push(subject),
            "Group" => groups.push(subject),
            "ServiceAccount" => accounts.push(format!("{}/{subject}", text(s, &["namespace"]))),
            _ => {}
        }
    }
    vec![
        name(obj),
        role.into(),
        age(obj, now),
        users.join(", ").into(),
        groups.join(", ").into(),
        accounts.join(", ").into(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_print_as_go_does() {
        use std::time::Duration;
        for (ms, want) in [
            (0, "0s"),
            (250, "250ms"),
            (1000, "1s"),
            (1500, "1.5s"),
            (10_000, "10s"),
            (15_011, "15.011s"),
            (90_500, "1m30.5s"),
            (160_000, "2m40s"),
            (300_000, "5m0s"),
            (3_600_000, "1h0m0s"),
        ] {
            assert_eq!(go_duration(Duration::from_millis(ms)), want);
        }
    }
    use chrono::Duration;

    fn t(s: &str) -> DateTime<Utc> {
        parse_time(s).expect("test timestamp")
    }

    fn names_types_priorities(group: &str, kind: &str) -> Vec<(String, String, i64)> {
        columns(group, kind).into_iter().map(|c| (c.name.to_string(), c.type_.to_string(), c.priority)).collect()
    }

    fn expect_columns(group: &str, kind: &str, want: &[(&str, &str, i64)]) {
        let got = names_types_priorities(group, kind);
        let want: Vec<(String, String, i64)> =
            want.iter().map(|(n, t, p)| (n.to_string(), t.to_string(), *p)).collect();
        assert_eq!(got, want, "columns of {group}/{kind}");
    }

    // ---- against kube-apiserver v1.28.7 captures -------------------------------------
    // Expected values below are from
    // /work/shared/reference/kube-apiserver-v1.28.7/tables/*.json (columns and cells)
    // and objects/*-defaulted.json (the objects those rows were printed from).

    #[test]
    fn pods_match_capture() {
        // tables/api-v1-namespaces-ref-pods.json, object from objects/pod-defaulted.json.
        expect_columns(
            "",
            "Pod",
            &[
                ("Name", "string", 0),
                ("Ready", "string", 0),
                ("Status", "string", 0),
                ("Restarts", "string", 0),
                ("Age", "string", 0),
                ("IP", "string", 1),
                ("Node", "string", 1),
                ("Nominated Node", "string", 1),
                ("Readiness Gates", "string", 1),
            ],
        );
        let pod = json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "creationTimestamp": "2026-11-22T22:27:27Z",
                "labels": {"app": "demo"},
                "name": "minimal",
                "namespace": "ref",
                "resourceVersion": "246",
                "uid": "1be327c8-a787-4a0f-9116-c4c8d521f2e8"
            },
            "spec": {
                "containers": [{
                    "command": ["sleep", "3600"],
                    "image": "busybox",
                    "imagePullPolicy": "Always",
                    "name": "main",
                    "resources": {},
                    "terminationMessagePath": "/dev/termination-log",
                    "terminationMessagePolicy": "File"
                }],
                "dnsPolicy": "ClusterFirst",
                "enableServiceLinks": true,
                "restartPolicy": "Always",
                "schedulerName": "default-scheduler",
                "securityContext": {},
                "serviceAccountName": "default",
                "terminationGracePeriodSeconds": 30
            },
            "status": {"phase": "Pending", "qosClass": "BestEffort"}
        });
        let now = t("2026-11-22T22:27:32Z");
        assert_eq!(
            cells("", "Pod", &pod, now),
            vec![
                json!("minimal"),
                json!("0/1"),
                json!("Pending"),
                json!("0"),
                json!("5s"),
                json!("<none>"),
                json!("<none>"),
                json!("<none>"),
                json!("<none>"),
            ]
        );
    }

    #[test]
    fn services_match_capture() {
        // tables/api-v1-namespaces-ref-services.json, objects/service-defaulted.json.
        expect_columns(
            "",
            "Service",
            &[
                ("Name", "string", 0),
                ("Type", "string", 0),
                ("Cluster-IP", "string", 0),
                ("External-IP", "string", 0),
                ("Port(s)", "string", 0),
                ("Age", "string", 0),
                ("Selector", "string", 1),
            ],
        );
        let svc = json!({
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {
                "creationTimestamp": "2026-11-22T22:27:27Z",
                "name": "svc",
                "namespace": "ref"
            },
            "spec": {
                "clusterIP": "10.0.0.237",
                "clusterIPs": ["10.0.0.237"],
                "internalTrafficPolicy": "Cluster",
                "ipFamilies": ["IPv4"],
                "ipFamilyPolicy": "SingleStack",
                "ports": [{"port": 80, "protocol": "TCP", "targetPort": 80}],
                "selector": {"app": "web"},
                "sessionAffinity": "None",
                "type": "ClusterIP"
            },
            "status": {"loadBalancer": {}}
        });
        assert_eq!(
            cells("", "Service", &svc, t("2026-11-22T22:27:32Z")),
            vec![
                json!("svc"),
                json!("ClusterIP"),
                json!("10.0.0.237"),
                json!("<none>"),
                json!("80/TCP"),
                json!("5s"),
                json!("app=web"),
            ]
        );
    }

    #[test]
    fn namespaces_match_capture() {
        // tables/api-v1-namespaces.json.
        expect_columns("", "Namespace", &[("Name", "string", 0), ("Status", "string", 0), ("Age", "string", 0)]);
        let now = t("2026-11-22T22:27:32Z");
        let default = json!({
            "metadata": {"name": "default", "creationTimestamp": "2026-11-22T22:26:50Z"},
            "spec": {"finalizers": ["kubernetes"]},
            "status": {"phase": "Active"}
        });
        let reference = json!({
            "metadata": {"name": "ref", "creationTimestamp": "2026-11-22T22:27:17Z"},
            "status": {"phase": "Active"}
        });
        assert_eq!(cells("", "Namespace", &default, now), vec![json!("default"), json!("Active"), json!("42s")]);
        assert_eq!(cells("", "Namespace", &reference, now), vec![json!("ref"), json!("Active"), json!("15s")]);
    }

    #[test]
    fn configmaps_match_capture() {
        // tables/api-v1-namespaces-ref-configmaps.json: Data is typed "string" but its
        // cells are JSON integers.
        expect_columns("", "ConfigMap", &[("Name", "string", 0), ("Data", "string", 0), ("Age", "string", 0)]);
        let now = t("2026-11-22T22:27:32Z");
        let dup = json!({
            "metadata": {"name": "dup", "namespace": "ref", "creationTimestamp": "2026-11-22T22:27:17Z"},
            "data": {"a": "1"}
        });
        let root_ca = json!({
            "metadata": {"name": "kube-root-ca.crt", "namespace": "ref", "creationTimestamp": "2026-11-22T22:27:17Z"},
            "data": {"ca.crt": "-----BEGIN CERTIFICATE-----\n..."}
        });
        let warn = json!({
            "metadata": {"name": "warn", "namespace": "ref", "creationTimestamp": "2026-11-22T22:27:17Z"}
        });
        assert_eq!(cells("", "ConfigMap", &dup, now), vec![json!("dup"), json!(1), json!("15s")]);
        assert_eq!(cells("", "ConfigMap", &root_ca, now), vec![json!("kube-root-ca.crt"), json!(1), json!("15s")]);
        assert_eq!(cells("", "ConfigMap", &warn, now), vec![json!("warn"), json!(0), json!("15s")]);
        let both = json!({"metadata": {"name": "b"}, "data": {"x": ""}, "binaryData": {"y": "AA=="}});
        assert_eq!(cells("", "ConfigMap", &both, now)[1], json!(2));
    }

    #[test]
    fn deployments_match_capture() {
        // tables/apis-apps-v1-namespaces-ref-deployments.json,
        // objects/deployment-defaulted.json.
        expect_columns(
            "apps",
            "Deployment",
            &[
                ("Name", "string", 0),
                ("Ready", "string", 0),
                ("Up-to-date", "string", 0),
                ("Available", "string", 0),
                ("Age", "string", 0),
                ("Containers", "string", 1),
                ("Images", "string", 1),
                ("Selector", "string", 1),
            ],
        );
        let deploy = json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {
                "annotations": {"deployment.kubernetes.io/revision": "1"},
                "creationTimestamp": "2026-11-22T22:27:27Z",
                "generation": 1,
                "name": "web",
                "namespace": "ref"
            },
            "spec": {
                "progressDeadlineSeconds": 600,
                "replicas": 1,
                "revisionHistoryLimit": 10,
                "selector": {"matchLabels": {"app": "web"}},
                "strategy": {"rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}, "type": "RollingUpdate"},
                "template": {
                    "metadata": {"creationTimestamp": null, "labels": {"app": "web"}},
                    "spec": {"containers": [{"image": "nginx", "imagePullPolicy": "Always", "name": "web"}]}
                }
            },
            "status": {
                "observedGeneration": 1,
                "replicas": 1,
                "unavailableReplicas": 1,
                "updatedReplicas": 1
            }
        });
        assert_eq!(
            cells("apps", "Deployment", &deploy, t("2026-11-22T22:27:32Z")),
            vec![
                json!("web"),
                json!("0/1"),
                json!(1),
                json!(0),
                json!("5s"),
                json!("web"),
                json!("nginx"),
                json!("app=web"),
            ]
        );
    }

    #[test]
    fn jobs_match_capture_with_status_column() {
        // tables/apis-batch-v1-namespaces-ref-jobs.json (1.28, no Status column) with the
        // Status column 1.32 puts second; objects/job-defaulted.json.
        expect_columns(
            "batch",
            "Job",
            &[
                ("Name", "string", 0),
                ("Status", "string", 0),
                ("Completions", "string", 0),
                ("Duration", "string", 0),
                ("Age", "string", 0),
                ("Containers", "string", 1),
                ("Images", "string", 1),
                ("Selector", "string", 1),
            ],
        );
        let job = json!({
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {
                "creationTimestamp": "2026-11-22T22:27:27Z",
                "name": "pi",
                "namespace": "ref",
                "uid": "fadfb8ae-cee8-4987-a236-9227e48ea21f"
            },
            "spec": {
                "backoffLimit": 6,
                "completionMode": "NonIndexed",
                "completions": 1,
                "parallelism": 1,
                "selector": {"matchLabels": {"batch.kubernetes.io/controller-uid": "fadfb8ae-cee8-4987-a236-9227e48ea21f"}},
                "suspend": false,
                "template": {
                    "spec": {
                        "containers": [{"command": ["perl", "-e", "print 1"], "image": "perl", "name": "pi"}],
                        "restartPolicy": "Never"
                    }
                }
            },
            "status": {"active": 1, "ready": 0, "startTime": "2026-11-22T22:27:27Z", "uncountedTerminatedPods": {}}
        });
        assert_eq!(
            cells("batch", "Job", &job, t("2026-11-22T22:27:32Z")),
            vec![
                json!("pi"),
                json!("Running"),
                json!("0/1"),
                json!("5s"),
                json!("5s"),
                json!("pi"),
                json!("perl"),
                json!("batch.kubernetes.io/controller-uid=fadfb8ae-cee8-4987-a236-9227e48ea21f"),
            ]
        );
    }

    /// Every column definition (descriptions included) equals the captured one
    /// (shared/reference beside the checkout; in CI its absence is a failure).
    #[test]
    fn column_definitions_match_capture_files() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../../shared/reference/kube-apiserver-v1.28.7/tables");
        if !dir.is_dir() {
            assert!(std::env::var_os("CI").is_none(), "{} is required in CI", dir.display());
            eprintln!("SKIPPED: {} not found", dir.display());
            return;
        }
        let cases = [
            ("api-v1-namespaces-ref-configmaps.json", "", "ConfigMap"),
            ("api-v1-namespaces-ref-pods.json", "", "Pod"),
            ("api-v1-namespaces-ref-services.json", "", "Service"),
            ("api-v1-namespaces.json", "", "Namespace"),
            ("apis-apps-v1-namespaces-ref-deployments.json", "apps", "Deployment"),
            ("apis-batch-v1-namespaces-ref-jobs.json", "batch", "Job"),
        ];
        for (file, group, kind) in cases {
            let body = std::fs::read_to_string(dir.join(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
            let captured: Value = serde_json::from_str(&body).expect("capture is JSON");
            let mut ours = column_definitions(group, kind);
            if kind == "Job" {
                // 1.28 had no Status column; 1.32 does.
                if let Some(cols) = ours.as_array_mut() {
                    cols.retain(|c| c["name"] != "Status");
                }
            }
            assert_eq!(ours, captured["columnDefinitions"], "{file}");
        }
    }

    // ---- pod status strings ------------------------------------------------------------

    fn pod_with(status: Value) -> Value {
        json!({
            "metadata": {"name": "p", "creationTimestamp": "2026-01-01T00:00:00Z"},
            "spec": {"containers": [{"name": "c", "image": "busybox"}]},
            "status": status
        })
    }

    #[test]
    fn pod_crash_loop_back_off() {
        let pod = pod_with(json!({
            "phase": "Running",
            "containerStatuses": [{
                "name": "c",
                "ready": false,
                "restartCount": 5,
                "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off"}},
                "lastState": {"terminated": {"exitCode": 1, "reason": "Error", "finishedAt": "2026-01-01T00:08:00Z"}}
            }]
        }));
        let row = cells("", "Pod", &pod, t("2026-01-01T00:10:00Z"));
        assert_eq!(row[1], json!("0/1"));
        assert_eq!(row[2], json!("CrashLoopBackOff"));
        assert_eq!(row[3], json!("5 (2m ago)"));
        assert_eq!(row[4], json!("10m"));
    }

    #[test]
    fn pod_running_and_ready() {
        let mut pod = pod_with(json!({
            "phase": "Running",
            "podIP": "10.1.0.5",
            "podIPs": [{"ip": "10.1.0.5"}],
            "nominatedNodeName": "n2",
            "conditions": [{"type": "Ready", "status": "True"}, {"type": "gate/a", "status": "True"}],
            "containerStatuses": [{"name": "c", "ready": true, "restartCount": 0, "state": {"running": {"startedAt": "2026-01-01T00:00:01Z"}}}]
        }));
        pod["spec"]["nodeName"] = json!("n1");
        pod["spec"]["readinessGates"] = json!([{"conditionType": "gate/a"}, {"conditionType": "gate/b"}]);
        let row = cells("", "Pod", &pod, t("2026-01-01T00:00:30Z"));
        assert_eq!(
            row,
            vec![
                json!("p"),
                json!("1/1"),
                json!("Running"),
                json!("0"),
                json!("30s"),
                json!("10.1.0.5"),
                json!("n1"),
                json!("n2"),
                json!("1/2"),
            ]
        );
    }

    #[test]
    fn pod_completed() {
        let pod = pod_with(json!({
            "phase": "Succeeded",
            "containerStatuses": [{
                "name": "c",
                "ready": false,
                "restartCount": 0,
                "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}
            }]
        }));
        let row = cells("", "Pod", &pod, t("2026-01-01T01:00:00Z"));
        assert_eq!(row[1], json!("0/1"));
        assert_eq!(row[2], json!("Completed"));
        assert_eq!(row[3], json!("0"));
    }

    #[test]
    fn pod_terminated_without_reason_shows_exit_code_or_signal() {
        let exit = pod_with(json!({
            "phase": "Failed",
            "containerStatuses": [{"name": "c", "state": {"terminated": {"exitCode": 3}}}]
        }));
        assert_eq!(cells("", "Pod", &exit, Utc::now())[2], json!("ExitCode:3"));
        let signal = pod_with(json!({
            "phase": "Failed",
            "containerStatuses": [{"name": "c", "state": {"terminated": {"exitCode": 137, "signal": 9}}}]
        }));
        assert_eq!(cells("", "Pod", &signal, Utc::now())[2], json!("Signal:9"));
    }

    #[test]
    fn pod_terminating() {
        let mut pod = pod_with(json!({
            "phase": "Running",
            "containerStatuses": [{"name": "c", "ready": true, "state": {"running": {}}}]
        }));
        pod["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:05:00Z");
        assert_eq!(cells("", "Pod", &pod, t("2026-01-01T00:06:00Z"))[2], json!("Terminating"));
        // A finished pod keeps its phase while it is deleted.
        let mut done = pod_with(json!({"phase": "Succeeded"}));
        done["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:05:00Z");
        assert_eq!(cells("", "Pod", &done, Utc::now())[2], json!("Succeeded"));
        // Deleted on a lost node.
        let mut lost = pod_with(json!({"phase": "Running", "reason": "NodeLost"}));
        lost["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:05:00Z");
        assert_eq!(cells("", "Pod", &lost, Utc::now())[2], json!("Unknown"));
    }

    #[test]
    fn pod_init_progress() {
        let mut pod = pod_with(json!({
            "phase": "Pending",
            "initContainerStatuses": [{"name": "init", "ready": false, "restartCount": 0,
                "state": {"waiting": {"reason": "PodInitializing"}}}],
            "containerStatuses": [{"name": "c", "ready": false, "restartCount": 0,
                "state": {"waiting": {"reason": "PodInitializing"}}}]
        }));
        pod["spec"]["initContainers"] = json!([{"name": "init", "image": "busybox"}]);
        let row = cells("", "Pod", &pod, Utc::now());
        assert_eq!(row[1], json!("0/1"));
        assert_eq!(row[2], json!("Init:0/1"));

        // A running init container is also counted as in progress.
        pod["status"]["initContainerStatuses"][0]["state"] = json!({"running": {}});
        assert_eq!(cells("", "Pod", &pod, Utc::now())[2], json!("Init:0/1"));

        // A failing one shows its reason.
        pod["status"]["initContainerStatuses"][0]["state"] = json!({"waiting": {"reason": "CrashLoopBackOff"}});
        pod["status"]["initContainerStatuses"][0]["restartCount"] = json!(2);
        let row = cells("", "Pod", &pod, Utc::now());
        assert_eq!(row[2], json!("Init:CrashLoopBackOff"));
        assert_eq!(row[3], json!("2"));

        pod["status"]["initContainerStatuses"][0]["state"] = json!({"terminated": {"exitCode": 2}});
        assert_eq!(cells("", "Pod", &pod, Utc::now())[2], json!("Init:ExitCode:2"));
        pod["status"]["initContainerStatuses"][0]["state"] = json!({"terminated": {"exitCode": 1, "reason": "Error"}});
        assert_eq!(cells("", "Pod", &pod, Utc::now())[2], json!("Init:Error"));
    }

    #[test]
    fn pod_second_of_two_init_containers() {
        let mut pod = pod_with(json!({
            "phase": "Pending",
            "initContainerStatuses": [
                {"name": "a", "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}},
                {"name": "b", "state": {"running": {}}}
            ]
        }));
        pod["spec"]["initContainers"] = json!([{"name": "a"}, {"name": "b"}]);
        assert_eq!(cells("", "Pod", &pod, Utc::now())[2], json!("Init:1/2"));
    }

    #[test]
    fn pod_sidecar_counts_as_container() {
        let mut pod = pod_with(json!({
            "phase": "Running",
            "conditions": [{"type": "Initialized", "status": "True"}, {"type": "Ready", "status": "True"}],
            "initContainerStatuses": [{"name": "side", "ready": true, "started": true, "restartCount": 1,
                "state": {"running": {}},
                "lastState": {"terminated": {"exitCode": 1, "finishedAt": "2026-01-01T00:00:10Z"}}}],
            "containerStatuses": [{"name": "c", "ready": true, "restartCount": 0, "state": {"running": {}}}]
        }));
        pod["spec"]["initContainers"] = json!([{"name": "side", "restartPolicy": "Always"}]);
        let row = cells("", "Pod", &pod, t("2026-01-01T00:01:10Z"));
        assert_eq!(row[1], json!("2/2"));
        assert_eq!(row[2], json!("Running"));
        assert_eq!(row[3], json!("1 (60s ago)"));
    }

    #[test]
    fn pod_completed_container_with_another_running() {
        let pod = json!({
            "metadata": {"name": "p"},
            "spec": {"containers": [{"name": "a"}, {"name": "b"}]},
            "status": {
                "phase": "Running",
                "containerStatuses": [
                    {"name": "a", "ready": false, "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}},
                    {"name": "b", "ready": true, "state": {"running": {}}}
                ]
            }
        });
        let row = cells("", "Pod", &pod, Utc::now());
        assert_eq!(row[1], json!("1/2"));
        assert_eq!(row[2], json!("NotReady"));
        assert_eq!(row[4], json!("<unknown>"));
    }

    #[test]
    fn pod_scheduling_gated() {
        let pod = pod_with(json!({
            "phase": "Pending",
            "conditions": [{"type": "PodScheduled", "status": "False", "reason": "SchedulingGated"}]
        }));
        assert_eq!(cells("", "Pod", &pod, Utc::now())[2], json!("SchedulingGated"));
    }

    #[test]
    fn empty_objects_do_not_panic() {
        let now = Utc::now();
        for (group, kind) in [
            ("", "Pod"),
            ("", "Namespace"),
            ("", "Service"),
            ("", "Endpoints"),
            ("", "ConfigMap"),
            ("", "Secret"),
            ("", "ServiceAccount"),
            ("", "Node"),
            ("", "Event"),
            ("events.k8s.io", "Event"),
            ("apps", "Deployment"),
            ("apps", "ReplicaSet"),
            ("apps", "StatefulSet"),
            ("apps", "DaemonSet"),
            ("batch", "Job"),
            ("batch", "CronJob"),
            ("rbac.authorization.k8s.io", "Role"),
            ("rbac.authorization.k8s.io", "ClusterRole"),
            ("rbac.authorization.k8s.io", "RoleBinding"),
            ("rbac.authorization.k8s.io", "ClusterRoleBinding"),
            ("coordination.k8s.io", "Lease"),
            ("example.com", "Widget"),
        ] {
            let n = columns(group, kind).len();
            for obj in [json!({}), json!(null), json!([1, 2]), json!({"metadata": null, "spec": 3, "status": "x"})] {
                assert_eq!(cells(group, kind, &obj, now).len(), n, "{group}/{kind}");
            }
            let defs = column_definitions(group, kind);
            assert_eq!(defs.as_array().map(Vec::len), Some(n));
        }
    }

    // ---- human_duration ----------------------------------------------------------------

    #[test]
    fn human_duration_boundaries() {
        let cases: &[(i64, &str)] = &[
            (-3, "<invalid>"),
            (-2, "<invalid>"),
            (-1, "0s"),
            (0, "0s"),
            (5, "5s"),
            (119, "119s"),
            (120, "2m"),
            (121, "2m1s"),
            (182, "3m2s"),
            (599, "9m59s"),
            (600, "10m"),
            (659, "10m"),
            (3 * 3600 - 1, "179m"),
            (3 * 3600, "3h"),
            (3 * 3600 + 60, "3h1m"),
            (4 * 3600, "4h"),
            (8 * 3600 - 1, "7h59m"),
            (8 * 3600, "8h"),
            (48 * 3600 - 1, "47h"),
            (48 * 3600, "2d"),
            (51 * 3600, "2d3h"),
            (8 * 86400 - 1, "7d23h"),
            (8 * 86400, "8d"),
            (730 * 86400 - 1, "729d"),
            (730 * 86400, "2y"),
            (731 * 86400, "2y1d"),
            (5 * 365 * 86400, "5y"),
            (8 * 365 * 86400 - 1, "7y364d"),
            (8 * 365 * 86400, "8y"),
            (20 * 365 * 86400 + 100 * 86400, "20y"),
        ];
        for (secs, want) in cases {
            assert_eq!(human_duration(Duration::seconds(*secs)), *want, "{secs}s");
        }
        // Sub-second parts are dropped toward zero, as Go's int(d.Seconds()) does.
        assert_eq!(human_duration(Duration::milliseconds(-1500)), "0s");
        assert_eq!(human_duration(Duration::milliseconds(-1999)), "0s");
        assert_eq!(human_duration(Duration::milliseconds(-2000)), "<invalid>");
        assert_eq!(human_duration(Duration::milliseconds(1999)), "1s");
        assert_eq!(human_duration(Duration::milliseconds(120_999)), "2m");
    }

    // ---- services and endpoints ------------------------------------------------------

    #[test]
    fn service_node_port_and_load_balancer() {
        let now = t("2026-01-01T00:00:05Z");
        let np = json!({
            "metadata": {"name": "np", "creationTimestamp": "2026-01-01T00:00:00Z"},
            "spec": {
                "type": "NodePort",
                "clusterIP": "10.0.0.9",
                "clusterIPs": ["10.0.0.9"],
                "externalIPs": ["1.2.3.4", "5.6.7.8"],
                "ports": [
                    {"port": 80, "protocol": "TCP", "nodePort": 30080},
                    {"port": 53, "protocol": "UDP", "nodePort": 30053},
                    {"port": 9000}
                ]
            }
        });
        assert_eq!(
            cells("", "Service", &np, now),
            vec![
                json!("np"),
                json!("NodePort"),
                json!("10.0.0.9"),
                json!("1.2.3.4,5.6.7.8"),
                json!("80:30080/TCP,53:30053/UDP,9000/TCP"),
                json!("5s"),
                json!("<none>"),
            ]
        );

        let mut lb = json!({
            "metadata": {"name": "lb"},
            "spec": {"type": "LoadBalancer", "clusterIPs": ["10.0.0.10"], "ports": [{"port": 443, "nodePort": 31443}],
                     "selector": {"b": "2", "a": "1"}},
            "status": {"loadBalancer": {}}
        });
        let row = cells("", "Service", &lb, now);
        assert_eq!(row[3], json!("<pending>"));
        assert_eq!(row[4], json!("443:31443/TCP"));
        assert_eq!(row[6], json!("a=1,b=2"));
        lb["status"]["loadBalancer"]["ingress"] =
            json!([{"ip": "9.9.9.9"}, {"hostname": "lb.example.com"}, {"ip": "1.1.1.1"}]);
        lb["spec"]["externalIPs"] = json!(["7.7.7.7"]);
        assert_eq!(cells("", "Service", &lb, now)[3], json!("1.1.1.1,9.9.9.9,lb.example.com,7.7.7.7"));

        let ext = json!({
            "metadata": {"name": "ext"},
            "spec": {"type": "ExternalName", "externalName": "db.example.com"}
        });
        let row = cells("", "Service", &ext, now);
        assert_eq!(row[2], json!("<none>"));
        assert_eq!(row[3], json!("db.example.com"));
        assert_eq!(row[4], json!("<none>"));

        let headless = json!({
            "metadata": {"name": "h"},
            "spec": {"clusterIP": "None", "ports": [{"port": 80}]}
        });
        let row = cells("", "Service", &headless, now);
        assert_eq!(row[1], json!("ClusterIP"));
        assert_eq!(row[2], json!("None"));
    }

    #[test]
    fn endpoints_listing() {
        let now = Utc::now();
        let none = json!({"metadata": {"name": "e"}});
        assert_eq!(cells("", "Endpoints", &none, now)[1], json!("<none>"));
        let few = json!({
            "metadata": {"name": "e"},
            "subsets": [{"addresses": [{"ip": "10.0.0.1"}, {"ip": "fd00::1"}], "ports": [{"port": 80}]}]
        });
        assert_eq!(cells("", "Endpoints", &few, now)[1], json!("10.0.0.1:80,[fd00::1]:80"));
        let many = json!({
            "metadata": {"name": "e"},
            "subsets": [
                {"addresses": [{"ip": "10.0.0.1"}, {"ip": "10.0.0.2"}], "ports": [{"port": 80}, {"port": 443}]},
                {"addresses": [{"ip": "10.0.0.3"}]}
            ]
        });
        assert_eq!(cells("", "Endpoints", &many, now)[1], json!("10.0.0.1:80,10.0.0.2:80,10.0.0.1:443 + 2 more..."));
    }

    // ---- the other kinds -------------------------------------------------------------

    #[test]
    fn custom_resources_get_name_and_age() {
        let definition = |group: &str| {
            json!({"metadata": {"name": format!("widgets.{group}")},
                   "spec": {"group": group, "scope": "Namespaced", "names": {"plural": "widgets", "kind": "Widget"},
                            "versions": [{"name": "v1", "served": true, "storage": true}]}})
        };
        for group in ["example.com", "stable.example.com", "cluster.x-k8s.io"] {
            let def = crate::crd::rows(&definition(group)).remove(0);
            let got: Vec<(String, String, i64)> = columns_by(printer_of(&def))
                .into_iter()
                .map(|c| (c.name.to_string(), c.type_.to_string(), c.priority))
                .collect();
            assert_eq!(got, vec![("Name".into(), "string".into(), 0), ("Age".into(), "date".into(), 0)], "{group}");
            let now = t("2026-11-24T10:00:00Z");
            let w = json!({"metadata": {"name": "w", "creationTimestamp": "2026-11-24T09:59:10Z"}});
            assert_eq!(cells_of(&def, &w, now), vec![json!("w"), json!("50s")]);
        }
    }

    #[test]
    fn unknown_kinds_and_roles_get_default_columns() {
        for (group, kind) in [
            ("apiextensions.k8s.io", "CustomResourceDefinition"),
            ("rbac.authorization.k8s.io", "Role"),
            ("rbac.authorization.k8s.io", "ClusterRole"),
            ("", "Widget"),
            ("apps", "Pod"),
        ] {
            expect_columns(group, kind, &[("Name", "string", 0), ("Created At", "date", 0)]);
            let defs = column_definitions(group, kind);
            assert_eq!(defs[0]["format"], json!("name"));
            assert_eq!(defs[1]["format"], json!(""));
            assert_eq!(defs[1]["description"], json!(CREATED_DESC));
        }
        let role = json!({"metadata": {"name": "r", "creationTimestamp": "2026-11-22T23:27:17+01:00"}});
        assert_eq!(
            cells("rbac.authorization.k8s.io", "Role", &role, Utc::now()),
            vec![json!("r"), json!("2026-11-22T22:27:17Z")]
        );
        let bare = json!({"metadata": {"name": "w"}});
        assert_eq!(cells("", "Widget", &bare, Utc::now()), vec![json!("w"), json!("0001-01-01T00:00:00Z")]);
    }

    #[test]
    fn column_definitions_shape() {
        let defs = column_definitions("", "Namespace");
        assert_eq!(
            defs[1],
            json!({
                "name": "Status",
                "type": "string",
                "format": "",
                "description": "The status of the namespace",
                "priority": 0
            })
        );
        let keys: Vec<&String> = defs[0].as_object().map(|m| m.keys().collect()).unwrap_or_default();
        assert_eq!(keys, ["name", "type", "format", "description", "priority"]);
    }

    #[test]
    fn secrets_and_service_accounts() {
        let now = t("2026-01-01T00:01:00Z");
        let secret = json!({
            "metadata": {"name": "s", "creationTimestamp": "2026-01-01T00:00:00Z"},
            "type": "kubernetes.io/tls",
            "data": {"tls.crt": "", "tls.key": ""}
        });
        assert_eq!(
            cells("", "Secret", &secret, now),
            vec![json!("s"), json!("kubernetes.io/tls"), json!(2), json!("60s")]
        );
        // objects/serviceaccount-default.json has no secrets.
        let sa = json!({"metadata": {"name": "default", "creationTimestamp": "2026-01-01T00:00:00Z"}});
        assert_eq!(cells("", "ServiceAccount", &sa, now), vec![json!("default"), json!(0), json!("60s")]);
        expect_columns(
            "",
            "Secret",
            &[("Name", "string", 0), ("Type", "string", 0), ("Data", "string", 0), ("Age", "string", 0)],
        );
    }

    #[test]
    fn nodes() {
        let node = json!({
            "metadata": {
                "name": "n1",
                "creationTimestamp": "2026-01-01T00:00:00Z",
                "labels": {"node-role.kubernetes.io/control-plane": "", "node-role.kubernetes.io/": "", "kubernetes.io/role": "worker"}
            },
            "spec": {"unschedulable": true},
            "status": {
                "conditions": [{"type": "MemoryPressure", "status": "False"}, {"type": "Ready", "status": "True"}],
                "addresses": [{"type": "Hostname", "address": "n1"}, {"type": "InternalIP", "address": "192.168.1.10"}],
                "nodeInfo": {"kubeletVersion": "v1.32.0", "osImage": "Debian GNU/Linux 12", "kernelVersion": "6.1.0", "containerRuntimeVersion": "containerd://1.7.0"}
            }
        });
        assert_eq!(
            cells("", "Node", &node, t("2026-01-03T03:00:00Z")),
            vec![
                json!("n1"),
                json!("Ready,SchedulingDisabled"),
                json!("control-plane,worker"),
                json!("2d3h"),
                json!("v1.32.0"),
                json!("192.168.1.10"),
                json!("<none>"),
                json!("Debian GNU/Linux 12"),
                json!("6.1.0"),
                json!("containerd://1.7.0"),
            ]
        );
        let bare = json!({"metadata": {"name": "n2"}});
        let row = cells("", "Node", &bare, Utc::now());
        assert_eq!(row[1], json!("Unknown"));
        assert_eq!(row[2], json!("<none>"));
        assert_eq!(row[4], json!(""));
        assert_eq!(row[7], json!("<unknown>"));
        let not_ready = json!({"status": {"conditions": [{"type": "Ready", "status": "Unknown"}]}});
        assert_eq!(cells("", "Node", &not_ready, Utc::now())[1], json!("NotReady"));
    }

    #[test]
    fn core_events() {
        expect_columns(
            "",
            "Event",
            &[
                ("Last Seen", "string", 0),
                ("Type", "string", 0),
                ("Reason", "string", 0),
                ("Object", "string", 0),
                ("Subobject", "string", 1),
                ("Source", "string", 1),
                ("Message", "string", 0),
                ("First Seen", "string", 1),
                ("Count", "string", 1),
                ("Name", "string", 1),
            ],
        );
        let ev = json!({
            "metadata": {"name": "web.17a", "namespace": "ref"},
            "involvedObject": {"kind": "Pod", "name": "web", "fieldPath": "spec.containers{web}"},
            "reason": "Pulled",
            "message": "  Successfully pulled image \"nginx\"\n",
            "source": {"component": "kubelet", "host": "n1"},
            "firstTimestamp": "2026-01-01T00:00:00Z",
            "lastTimestamp": "2026-01-01T00:04:00Z",
            "count": 3,
            "type": "Normal"
        });
        assert_eq!(
            cells("", "Event", &ev, t("2026-01-01T00:05:00Z")),
            vec![
                json!("60s"),
                json!("Normal"),
                json!("Pulled"),
                json!("pod/web"),
                json!("spec.containers{web}"),
                json!("kubelet, n1"),
                json!("Successfully pulled image \"nginx\""),
                json!("5m"),
                json!(3),
                json!("web.17a"),
            ]
        );
        // New-style event written through core/v1: eventTime, reporting fields, no count.
        let ev = json!({
            "metadata": {"name": "x"},
            "involvedObject": {"kind": "Node"},
            "eventTime": "2026-01-01T00:00:00.123456Z",
            "reportingComponent": "scheduler",
            "type": "Warning",
            "reason": "FailedScheduling"
        });
        let row = cells("", "Event", &ev, t("2026-01-01T00:00:30Z"));
        assert_eq!(row[0], json!("29s"));
        assert_eq!(row[3], json!("node"));
        assert_eq!(row[5], json!("scheduler"));
        assert_eq!(row[7], json!("29s"));
        assert_eq!(row[8], json!(1));
    }

    #[test]
    fn events_k8s_io_events() {
        assert_eq!(names_types_priorities("events.k8s.io", "Event"), names_types_priorities("", "Event"));
        let ev = json!({
            "apiVersion": "events.k8s.io/v1",
            "kind": "Event",
            "metadata": {"name": "e1"},
            "eventTime": "2026-01-01T00:00:00.000000Z",
            "series": {"count": 7, "lastObservedTime": "2026-01-01T00:09:00.000000Z"},
            "reportingController": "kubelet",
            "reportingInstance": "n1",
            "action": "Pulling",
            "reason": "BackOff",
            "regarding": {"kind": "Pod", "name": "web", "fieldPath": "spec.containers{web}"},
            "note": "Back-off pulling image",
            "type": "Warning"
        });
        assert_eq!(
            cells("events.k8s.io", "Event", &ev, t("2026-01-01T00:10:00Z")),
            vec![
                json!("60s"),
                json!("Warning"),
                json!("BackOff"),
                json!("pod/web"),
                json!("spec.containers{web}"),
                json!("kubelet, n1"),
                json!("Back-off pulling image"),
                json!("10m"),
                json!(7),
                json!("e1"),
            ]
        );
        let unknown = json!({"metadata": {"name": "e2"}, "regarding": {"kind": "Pod", "name": "p"}});
        let row = cells("events.k8s.io", "Event", &unknown, Utc::now());
        assert_eq!(row[0], json!("<unknown>"));
        assert_eq!(row[7], json!("<unknown>"));
    }

    #[test]
    fn replica_sets_stateful_sets_daemon_sets() {
        let now = t("2026-01-01T00:00:10Z");
        let rs = json!({
            "metadata": {"name": "web-1", "creationTimestamp": "2026-01-01T00:00:00Z"},
            "spec": {
                "replicas": 3,
                "selector": {
                    "matchLabels": {"app": "web", "pod-template-hash": "1"},
                    "matchExpressions": [
                        {"key": "tier", "operator": "In", "values": ["b", "a"]},
                        {"key": "env", "operator": "NotIn", "values": ["prod"]},
                        {"key": "canary", "operator": "DoesNotExist"},
                        {"key": "zone", "operator": "Exists"}
                    ]
                },
                "template": {"spec": {"containers": [{"name": "a", "image": "i1"}, {"name": "b", "image": "i2"}]}}
            },
            "status": {"replicas": 3, "readyReplicas": 2}
        });
        expect_columns(
            "apps",
            "ReplicaSet",
            &[
                ("Name", "string", 0),
                ("Desired", "integer", 0),
                ("Current", "integer", 0),
                ("Ready", "integer", 0),
                ("Age", "string", 0),
                ("Containers", "string", 1),
                ("Images", "string", 1),
                ("Selector", "string", 1),
            ],
        );
        assert_eq!(
            cells("apps", "ReplicaSet", &rs, now),
            vec![
                json!("web-1"),
                json!(3),
                json!(3),
                json!(2),
                json!("10s"),
                json!("a,b"),
                json!("i1,i2"),
                json!("app=web,!canary,env notin (prod),pod-template-hash=1,tier in (a,b),zone"),
            ]
        );

        let sts = json!({
            "metadata": {"name": "db", "creationTimestamp": "2026-01-01T00:00:00Z"},
            "spec": {"replicas": 2, "template": {"spec": {"containers": [{"name": "pg", "image": "postgres"}]}}},
            "status": {"readyReplicas": 1}
        });
        expect_columns(
            "apps",
            "StatefulSet",
            &[
                ("Name", "string", 0),
                ("Ready", "string", 0),
                ("Age", "string", 0),
                ("Containers", "string", 1),
                ("Images", "string", 1),
            ],
        );
        assert_eq!(
            cells("apps", "StatefulSet", &sts, now),
            vec![json!("db"), json!("1/2"), json!("10s"), json!("pg"), json!("postgres")]
        );

        // objects/daemonset-defaulted.json (no nodes, so all zero).
        let ds = json!({
            "metadata": {"name": "ds", "creationTimestamp": "2026-01-01T00:00:00Z"},
            "spec": {
                "selector": {"matchLabels": {"app": "ds"}},
                "template": {"metadata": {"labels": {"app": "ds"}}, "spec": {"containers": [{"name": "c", "image": "busybox"}]}}
            },
            "status": {"currentNumberScheduled": 0, "desiredNumberScheduled": 0, "numberMisscheduled": 0, "numberReady": 0}
        });
        expect_columns(
            "apps",
            "DaemonSet",
            &[
                ("Name", "string", 0),
                ("Desired", "integer", 0),
                ("Current", "integer", 0),
                ("Ready", "integer", 0),
                ("Up-to-date", "integer", 0),
                ("Available", "integer", 0),
                ("Node Selector", "string", 0),
                ("Age", "string", 0),
                ("Containers", "string", 1),
                ("Images", "string", 1),
                ("Selector", "string", 1),
            ],
        );
        assert_eq!(
            cells("apps", "DaemonSet", &ds, now),
            vec![
                json!("ds"),
                json!(0),
                json!(0),
                json!(0),
                json!(0),
                json!(0),
                json!("<none>"),
                json!("10s"),
                json!("c"),
                json!("busybox"),
                json!("app=ds"),
            ]
        );
        let mut ds2 = ds.clone();
        ds2["spec"]["template"]["spec"]["nodeSelector"] = json!({"kubernetes.io/os": "linux"});
        ds2["spec"]["selector"] = json!({"matchExpressions": [{"key": "a", "operator": "Bogus"}]});
        let row = cells("apps", "DaemonSet", &ds2, now);
        assert_eq!(row[6], json!("kubernetes.io/os=linux"));
        assert_eq!(row[10], json!("<error>"));
    }

    #[test]
    fn deployment_selector_edge_cases() {
        let now = Utc::now();
        let empty = json!({"spec": {"selector": {}}});
        assert_eq!(cells("apps", "Deployment", &empty, now)[7], json!(""));
        let bad = json!({"spec": {"selector": {"matchExpressions": [{"key": "a", "operator": "In"}]}}});
        assert_eq!(cells("apps", "Deployment", &bad, now)[7], json!("<invalid>"));
    }

    #[test]
    fn job_states() {
        let now = t("2026-01-01T01:00:00Z");
        let base = json!({
            "metadata": {"name": "j", "creationTimestamp": "2026-01-01T00:00:00Z"},
            "spec": {"completions": 3, "parallelism": 2, "template": {"spec": {"containers": []}}},
            "status": {"succeeded": 3, "startTime": "2026-01-01T00:00:00Z", "completionTime": "2026-01-01T00:03:02Z",
                       "conditions": [{"type": "SuccessCriteriaMet", "status": "True"}, {"type": "Complete", "status": "True"}]}
        });
        let row = cells("batch", "Job", &base, now);
        assert_eq!(row[1], json!("Complete"));
        assert_eq!(row[2], json!("3/3"));
        assert_eq!(row[3], json!("3m2s"));
        assert_eq!(row[4], json!("60m"));
        assert_eq!(row[7], json!("<none>"));

        let mut failed = base.clone();
        failed["status"]["conditions"] =
            json!([{"type": "FailureTarget", "status": "True"}, {"type": "Failed", "status": "True"}]);
        assert_eq!(cells("batch", "Job", &failed, now)[1], json!("Failed"));

        let mut target = base.clone();
        target["status"]["conditions"] = json!([{"type": "FailureTarget", "status": "True"}]);
        assert_eq!(cells("batch", "Job", &target, now)[1], json!("FailureTarget"));

        let mut suspended = base.clone();
        suspended["status"]["conditions"] = json!([{"type": "Suspended", "status": "True"}]);
        assert_eq!(cells("batch", "Job", &suspended, now)[1], json!("Suspended"));
        suspended["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:59:00Z");
        assert_eq!(cells("batch", "Job", &suspended, now)[1], json!("Terminating"));

        let parallel = json!({"spec": {"parallelism": 4}, "status": {"succeeded": 1}});
        let row = cells("batch", "Job", &parallel, now);
        assert_eq!(row[1], json!("Running"));
        assert_eq!(row[2], json!("1/1 of 4"));
        assert_eq!(row[3], json!(""));
    }

    #[test]
    fn cron_jobs() {
        expect_columns(
            "batch",
            "CronJob",
            &[
                ("Name", "string", 0),
                ("Schedule", "string", 0),
                ("Timezone", "string", 0),
                ("Suspend", "boolean", 0),
                ("Active", "integer", 0),
                ("Last Schedule", "string", 0),
                ("Age", "string", 0),
                ("Containers", "string", 1),
                ("Images", "string", 1),
                ("Selector", "string", 1),
            ],
        );
        // objects/cronjob-defaulted.json.
        let cj = json!({
            "metadata": {"name": "cj", "creationTimestamp": "2026-11-22T22:27:28Z"},
            "spec": {
                "concurrencyPolicy": "Allow",
                "jobTemplate": {"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "busybox"}], "restartPolicy": "OnFailure"}}}},
                "schedule": "*/5 * * * *",
                "suspend": false
            },
            "status": {}
        });
        assert_eq!(
            cells("batch", "CronJob", &cj, t("2026-11-22T22:27:32Z")),
            vec![
                json!("cj"),
                json!("*/5 * * * *"),
                json!("<none>"),
                json!("False"),
                json!(0),
                json!("<none>"),
                json!("4s"),
                json!("c"),
                json!("busybox"),
                json!("<none>"),
            ]
        );
        let mut busy = cj.clone();
        busy["spec"]["timeZone"] = json!("Europe/Paris");
        busy["spec"]["suspend"] = json!(true);
        busy["status"] =
            json!({"active": [{"name": "cj-1"}, {"name": "cj-2"}], "lastScheduleTime": "2026-11-22T22:25:00Z"});
        let row = cells("batch", "CronJob", &busy, t("2026-11-22T22:27:32Z"));
        assert_eq!(row[2], json!("Europe/Paris"));
        assert_eq!(row[3], json!("True"));
        assert_eq!(row[4], json!(2));
        assert_eq!(row[5], json!("2m32s"));
    }

    #[test]
    fn role_bindings_and_leases() {
        let now = t("2026-01-01T00:00:07Z");
        let rb = json!({
            "metadata": {"name": "rb", "creationTimestamp": "2026-01-01T00:00:00Z"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"},
            "subjects": [
                {"kind": "User", "name": "alice"},
                {"kind": "Group", "name": "devs"},
                {"kind": "ServiceAccount", "name": "default", "namespace": "ref"},
                {"kind": "User", "name": "bob"}
            ]
        });
        for kind in ["RoleBinding", "ClusterRoleBinding"] {
            expect_columns(
                "rbac.authorization.k8s.io",
                kind,
                &[
                    ("Name", "string", 0),
                    ("Role", "string", 0),
                    ("Age", "string", 0),
                    ("Users", "string", 1),
                    ("Groups", "string", 1),
                    ("ServiceAccounts", "string", 1),
                ],
            );
            assert_eq!(
                cells("rbac.authorization.k8s.io", kind, &rb, now),
                vec![
                    json!("rb"),
                    json!("ClusterRole/view"),
                    json!("7s"),
                    json!("alice, bob"),
                    json!("devs"),
                    json!("ref/default"),
                ]
            );
        }
        let lease = json!({
            "metadata": {"name": "kube-scheduler", "creationTimestamp": "2026-01-01T00:00:00Z"},
            "spec": {"holderIdentity": "host_1234", "leaseDurationSeconds": 15}
        });
        expect_columns(
            "coordination.k8s.io",
            "Lease",
            &[("Name", "string", 0), ("Holder", "string", 0), ("Age", "string", 0)],
        );
        assert_eq!(
            cells("coordination.k8s.io", "Lease", &lease, now),
            vec![json!("kube-scheduler"), json!("host_1234"), json!("7s")]
        );
        let free = json!({"metadata": {"name": "l"}, "spec": {}});
        assert_eq!(cells("coordination.k8s.io", "Lease", &free, now)[1], json!(""));
    }
}
