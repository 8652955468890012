//! Table-driven strategic merge patch cases.
//!
//! Each case is written from behaviour Kubernetes documents or exhibits
//! (kubectl apply run twice, kubectl patch examples, the ordering rules of
//! the `$setElementOrder` design), expressed on real object shapes.

use rkube_patch::{apply, schema_for, PatchError, SchemaRef};
use serde_json::{json, Value};

struct Case {
    name: &'static str,
    /// (group, version, kind); `None` applies without a schema.
    gvk: Option<(&'static str, &'static str, &'static str)>,
    original: Value,
    patch: Value,
    expected: Value,
}

const POD: Option<(&str, &str, &str)> = Some(("", "v1", "Pod"));
const DEPLOYMENT: Option<(&str, &str, &str)> = Some(("apps", "v1", "Deployment"));

fn schema(gvk: Option<(&str, &str, &str)>) -> Option<SchemaRef> {
    gvk.map(|(g, v, k)| schema_for(g, v, k).unwrap_or_else(|| panic!("no schema for {k}")))
}

/// Fails if a directive key survived into a result.
fn assert_no_directives(v: &Value, path: &str) {
    match v {
        Value::Object(map) => {
            for (k, child) in map {
                assert!(
                    k != "$patch"
                        && k != "$retainKeys"
                        && !k.starts_with("$setElementOrder")
                        && !k.starts_with("$deleteFromPrimitiveList"),
                    "directive {k} left at {path}"
                );
                assert_no_directives(child, &format!("{path}.{k}"));
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                assert_no_directives(child, &format!("{path}[{i}]"));
            }
        }
        _ => {}
    }
}

fn run(cases: Vec<Case>) {
    let mut failures = Vec::new();
    for c in cases {
        let before = (c.original.clone(), c.patch.clone());
        match apply(&c.original, &c.patch, schema(c.gvk)) {
            Ok(got) => {
                assert_no_directives(&got, c.name);
                // Lists compare in order; object keys do not need to.
                if got != c.expected {
                    failures.push(format!("{}:\n  expected {}\n  got      {}", c.name, c.expected, got));
                }
            }
            Err(e) => failures.push(format!("{}: unexpected error: {e}", c.name)),
        }
        assert_eq!(before, (c.original, c.patch), "{}: inputs mutated", c.name);
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

fn live_deployment() -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": "web",
            "namespace": "default",
            "generation": 1,
            "annotations": {
                "deployment.kubernetes.io/revision": "1",
                "kubectl.kubernetes.io/last-applied-configuration": "{\"old\":true}\n"
            },
            "labels": {"app": "web"}
        },
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}
            },
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "containers": [{
                        "name": "nginx",
                        "image": "nginx:1.14.2",
                        "imagePullPolicy": "IfNotPresent",
                        "ports": [{"containerPort": 80, "protocol": "TCP"}],
                        "terminationMessagePath": "/dev/termination-log"
                    }],
                    "restartPolicy": "Always",
                    "dnsPolicy": "ClusterFirst"
                }
            }
        },
        "status": {
            "replicas": 2,
            "conditions": [
                {"type": "Available", "status": "True"},
                {"type": "Progressing", "status": "True"}
            ]
        }
    })
}

fn with(mut v: Value, pointer: &str, new: Value) -> Value {
    *v.pointer_mut(pointer).unwrap_or_else(|| panic!("no {pointer} in fixture")) = new;
    v
}

#[test]
fn kubectl_apply_cases() {
    let live = live_deployment();
    run(vec![
        Case {
            // The second `kubectl apply` after editing the image: kubectl
            // sends the changed field, the new last-applied annotation and
            // the element order of every merged list it touches.
            name: "apply twice changes image, keeps server defaults",
            gvk: DEPLOYMENT,
            original: live.clone(),
            patch: json!({
                "metadata": {"annotations": {
                    "kubectl.kubernetes.io/last-applied-configuration": "{\"new\":true}\n"
                }},
                "spec": {"template": {"spec": {
                    "$setElementOrder/containers": [{"name": "nginx"}],
                    "containers": [{"image": "nginx:1.16.1", "name": "nginx"}]
                }}}
            }),
            expected: {
                let v = with(live.clone(), "/spec/template/spec/containers/0/image", json!("nginx:1.16.1"));
                with(
                    v,
                    "/metadata/annotations/kubectl.kubernetes.io~1last-applied-configuration",
                    json!("{\"new\":true}\n"),
                )
            },
        },
        Case {
            name: "apply adds a container before a server-injected sidecar",
            gvk: DEPLOYMENT,
            original: with(
                live.clone(),
                "/spec/template/spec/containers",
                json!([
                    {"name": "nginx", "image": "nginx:1.14.2"},
                    {"name": "istio-proxy", "image": "proxy:1"}
                ]),
            ),
            patch: json!({"spec": {"template": {"spec": {
                "$setElementOrder/containers": [{"name": "nginx"}, {"name": "log"}],
                "containers": [{"name": "log", "image": "busybox"}]
            }}}}),
            expected: with(
                live.clone(),
                "/spec/template/spec/containers",
                json!([
                    {"name": "nginx", "image": "nginx:1.14.2"},
                    {"name": "log", "image": "busybox"},
                    {"name": "istio-proxy", "image": "proxy:1"}
                ]),
            ),
        },
        Case {
            name: "apply removes a container it used to manage",
            gvk: DEPLOYMENT,
            original: with(
                live.clone(),
                "/spec/template/spec/containers",
                json!([
                    {"name": "nginx", "image": "nginx:1.14.2"},
                    {"name": "log", "image": "busybox"}
                ]),
            ),
            patch: json!({"spec": {"template": {"spec": {
                "$setElementOrder/containers": [{"name": "nginx"}],
                "containers": [{"$patch": "delete", "name": "log"}]
            }}}}),
            expected: with(
                live.clone(),
                "/spec/template/spec/containers",
                json!([{"name": "nginx", "image": "nginx:1.14.2"}]),
            ),
        },
        Case {
            // Renaming a container is a delete plus an add in one patch.
            // kube-apiserver then counts the new container as occupying the
            // freed slot at the end of the live list, so it lands after the
            // server-only sidecar rather than before it.
            name: "apply renames a container next to a server-injected sidecar",
            gvk: DEPLOYMENT,
            original: with(
                live.clone(),
                "/spec/template/spec/containers",
                json!([
                    {"name": "old", "image": "o"},
                    {"name": "app", "image": "a"},
                    {"name": "istio-proxy", "image": "proxy:1"}
                ]),
            ),
            patch: json!({"spec": {"template": {"spec": {
                "$setElementOrder/containers": [{"name": "app"}, {"name": "new"}],
                "containers": [{"name": "new", "image": "n"}, {"$patch": "delete", "name": "old"}]
            }}}}),
            expected: with(
                live.clone(),
                "/spec/template/spec/containers",
                json!([
                    {"name": "app", "image": "a"},
                    {"name": "istio-proxy", "image": "proxy:1"},
                    {"name": "new", "image": "n"}
                ]),
            ),
        },
        Case {
            // Editing the replica count and dropping a label the last
            // apply had set.
            name: "apply changes a scalar and deletes a label with null",
            gvk: DEPLOYMENT,
            original: live.clone(),
            patch: json!({
                "metadata": {"labels": {"app": null}},
                "spec": {"replicas": 5}
            }),
            expected: {
                let v = with(live.clone(), "/metadata/labels", json!({}));
                with(v, "/spec/replicas", json!(5))
            },
        },
        Case {
            // kubectl computes retainKeys for DeploymentStrategy: switching
            // to Recreate must drop rollingUpdate, which the server filled in.
            name: "retainKeys: deployment strategy RollingUpdate -> Recreate",
            gvk: DEPLOYMENT,
            original: live.clone(),
            patch: json!({"spec": {"strategy": {
                "$retainKeys": ["type"],
                "rollingUpdate": null,
                "type": "Recreate"
            }}}),
            expected: with(live.clone(), "/spec/strategy", json!({"type": "Recreate"})),
        },
        Case {
            name: "retainKeys: deployment strategy Recreate -> RollingUpdate",
            gvk: DEPLOYMENT,
            original: with(live.clone(), "/spec/strategy", json!({"type": "Recreate"})),
            patch: json!({"spec": {"strategy": {
                "$retainKeys": ["rollingUpdate", "type"],
                "rollingUpdate": {"maxSurge": 1},
                "type": "RollingUpdate"
            }}}),
            expected: with(
                live.clone(),
                "/spec/strategy",
                json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}}),
            ),
        },
        Case {
            name: "status conditions merge by type",
            gvk: DEPLOYMENT,
            original: live.clone(),
            patch: json!({"status": {
                "$setElementOrder/conditions": [{"type": "Available"}, {"type": "Progressing"}],
                "conditions": [{"type": "Available", "status": "False", "reason": "MinimumReplicasUnavailable"}]
            }}),
            expected: with(
                live.clone(),
                "/status/conditions/0",
                json!({"type": "Available", "status": "False", "reason": "MinimumReplicasUnavailable"}),
            ),
        },
    ]);
}

fn pod(containers: Value) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p", "finalizers": ["a.example.com/x", "b.example.com/y"]},
        "spec": {"containers": containers}
    })
}

#[test]
fn pod_list_cases() {
    let app = json!({
        "name": "app",
        "image": "app:1",
        "env": [
            {"name": "MODE", "value": "prod"},
            {"name": "DEBUG", "value": "1"},
            {"name": "REGION", "value": "eu"}
        ],
        "ports": [{"containerPort": 8080, "name": "http"}],
        "volumeMounts": [{"name": "data", "mountPath": "/data"}]
    });
    let with_env = |env: Value| {
        let mut c = app.clone();
        c["env"] = env;
        pod(json!([c]))
    };
    run(vec![
        Case {
            name: "env var removal with $patch: delete",
            gvk: POD,
            original: pod(json!([app.clone()])),
            patch: json!({"spec": {"containers": [
                {"name": "app", "env": [{"$patch": "delete", "name": "DEBUG"}]}
            ]}}),
            expected: with_env(json!([
                {"name": "MODE", "value": "prod"},
                {"name": "REGION", "value": "eu"}
            ])),
        },
        Case {
            name: "env var value changed in place",
            gvk: POD,
            original: pod(json!([app.clone()])),
            patch: json!({"spec": {"containers": [
                {"name": "app", "env": [{"name": "DEBUG", "value": "0"}]}
            ]}}),
            expected: with_env(json!([
                {"name": "MODE", "value": "prod"},
                {"name": "DEBUG", "value": "0"},
                {"name": "REGION", "value": "eu"}
            ])),
        },
        Case {
            // Without $setElementOrder, Kubernetes puts elements the patch
            // introduces ahead of the ones only the server has.
            name: "new env var without element order goes first",
            gvk: POD,
            original: pod(json!([app.clone()])),
            patch: json!({"spec": {"containers": [
                {"name": "app", "env": [{"name": "NEW", "value": "x"}]}
            ]}}),
            expected: with_env(json!([
                {"name": "NEW", "value": "x"},
                {"name": "MODE", "value": "prod"},
                {"name": "DEBUG", "value": "1"},
                {"name": "REGION", "value": "eu"}
            ])),
        },
        Case {
            name: "new env var placed by $setElementOrder",
            gvk: POD,
            original: pod(json!([app.clone()])),
            patch: json!({"spec": {"containers": [{"name": "app",
                "$setElementOrder/env": [{"name": "MODE"}, {"name": "DEBUG"}, {"name": "NEW"}, {"name": "REGION"}],
                "env": [{"name": "NEW", "value": "x"}]
            }]}}),
            expected: with_env(json!([
                {"name": "MODE", "value": "prod"},
                {"name": "DEBUG", "value": "1"},
                {"name": "NEW", "value": "x"},
                {"name": "REGION", "value": "eu"}
            ])),
        },
        Case {
            name: "ports merge by numeric containerPort",
            gvk: POD,
            original: pod(json!([app.clone()])),
            patch: json!({"spec": {"containers": [{"name": "app",
                "ports": [{"containerPort": 8080.0, "protocol": "TCP"}]
            }]}}),
            expected: {
                let mut c = app.clone();
                // Matched despite 8080 vs 8080.0; the patch's scalar then wins.
                c["ports"] = json!([{"containerPort": 8080.0, "name": "http", "protocol": "TCP"}]);
                pod(json!([c]))
            },
        },
        Case {
            name: "volumeMounts merge by mountPath",
            gvk: POD,
            original: pod(json!([app.clone()])),
            patch: json!({"spec": {"containers": [{"name": "app",
                "volumeMounts": [{"mountPath": "/data", "readOnly": true}]
            }]}}),
            expected: {
                let mut c = app.clone();
                c["volumeMounts"] = json!([{"name": "data", "mountPath": "/data", "readOnly": true}]);
                pod(json!([c]))
            },
        },
        Case {
            name: "$patch: replace element replaces the whole container list",
            gvk: POD,
            original: pod(json!([app.clone(), {"name": "side", "image": "s"}])),
            patch: json!({"spec": {"containers": [
                {"$patch": "replace"},
                {"name": "only", "image": "o", "env": [{"name": "A", "value": null}]}
            ]}}),
            expected: pod(json!([{"name": "only", "image": "o", "env": [{"name": "A"}]}])),
        },
        Case {
            name: "finalizers are a union",
            gvk: POD,
            original: pod(json!([])),
            patch: json!({"metadata": {"finalizers": ["b.example.com/y", "c.example.com/z"]}}),
            expected: with(
                pod(json!([])),
                "/metadata/finalizers",
                json!(["a.example.com/x", "b.example.com/y", "c.example.com/z"]),
            ),
        },
        Case {
            name: "$deleteFromPrimitiveList/finalizers removes a value",
            gvk: POD,
            original: pod(json!([])),
            patch: json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["a.example.com/x", "absent"]}}),
            expected: with(pod(json!([])), "/metadata/finalizers", json!(["b.example.com/y"])),
        },
        Case {
            name: "finalizers add, delete and order as kubectl apply sends them",
            gvk: POD,
            original: with(pod(json!([])), "/metadata/finalizers", json!(["a", "b", "server-added"])),
            patch: json!({"metadata": {
                "$setElementOrder/finalizers": ["a", "d"],
                "$deleteFromPrimitiveList/finalizers": ["b"],
                "finalizers": ["d"]
            }}),
            expected: with(pod(json!([])), "/metadata/finalizers", json!(["a", "d", "server-added"])),
        },
        Case {
            name: "$deleteFromPrimitiveList on a missing list does not create it",
            gvk: POD,
            original: json!({"metadata": {"name": "p"}}),
            patch: json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["x"]}}),
            expected: json!({"metadata": {"name": "p"}}),
        },
        Case {
            name: "ownerReferences merge by uid",
            gvk: POD,
            original: json!({"metadata": {"ownerReferences": [
                {"uid": "u1", "kind": "ReplicaSet", "name": "rs", "controller": true}
            ]}}),
            patch: json!({"metadata": {"ownerReferences": [
                {"uid": "u1", "blockOwnerDeletion": true}
            ]}}),
            expected: json!({"metadata": {"ownerReferences": [
                {"uid": "u1", "kind": "ReplicaSet", "name": "rs", "controller": true, "blockOwnerDeletion": true}
            ]}}),
        },
        Case {
            name: "volume source switch with $retainKeys inside a merged element",
            gvk: POD,
            original: json!({"spec": {"volumes": [
                {"name": "cfg", "emptyDir": {}},
                {"name": "keep", "secret": {"secretName": "s"}}
            ]}}),
            patch: json!({"spec": {
                "$setElementOrder/volumes": [{"name": "cfg"}, {"name": "keep"}],
                "volumes": [{
                    "$retainKeys": ["configMap", "name"],
                    "configMap": {"name": "app-config"},
                    "emptyDir": null,
                    "name": "cfg"
                }]
            }}),
            expected: json!({"spec": {"volumes": [
                {"name": "cfg", "configMap": {"name": "app-config"}},
                {"name": "keep", "secret": {"secretName": "s"}}
            ]}}),
        },
        Case {
            name: "tolerations are atomic",
            gvk: POD,
            original: json!({"spec": {"tolerations": [{"key": "a", "operator": "Exists"}]}}),
            patch: json!({"spec": {"tolerations": [{"key": "b", "operator": "Exists"}]}}),
            expected: json!({"spec": {"tolerations": [{"key": "b", "operator": "Exists"}]}}),
        },
        Case {
            name: "imagePullSecrets and ephemeralContainers merge by name",
            gvk: POD,
            original: json!({"spec": {
                "imagePullSecrets": [{"name": "r1"}],
                "ephemeralContainers": [{"name": "dbg", "image": "busybox", "env": [{"name": "X", "value": "1"}]}]
            }}),
            patch: json!({"spec": {
                "$setElementOrder/imagePullSecrets": [{"name": "r1"}, {"name": "r2"}],
                "imagePullSecrets": [{"name": "r2"}],
                "ephemeralContainers": [{"name": "dbg", "env": [{"name": "Y", "value": "2"}]}]
            }}),
            expected: json!({"spec": {
                "imagePullSecrets": [{"name": "r1"}, {"name": "r2"}],
                "ephemeralContainers": [{"name": "dbg", "image": "busybox",
                    "env": [{"name": "Y", "value": "2"}, {"name": "X", "value": "1"}]}]
            }}),
        },
        Case {
            name: "pod status conditions merge by type, containerStatuses atomic",
            gvk: POD,
            original: json!({"status": {
                "phase": "Pending",
                "conditions": [{"type": "PodScheduled", "status": "True"}],
                "containerStatuses": [{"name": "app", "ready": false}, {"name": "side", "ready": false}]
            }}),
            patch: json!({"status": {
                "$setElementOrder/conditions": [{"type": "PodScheduled"}, {"type": "Ready"}],
                "conditions": [{"type": "Ready", "status": "True"}],
                "containerStatuses": [{"name": "app", "ready": true}],
                "phase": "Running"
            }}),
            expected: json!({"status": {
                "phase": "Running",
                "conditions": [{"type": "PodScheduled", "status": "True"}, {"type": "Ready", "status": "True"}],
                "containerStatuses": [{"name": "app", "ready": true}]
            }}),
        },
    ]);
}

#[test]
fn map_directive_and_null_cases() {
    run(vec![
        Case {
            name: "null deletes keys at any depth, absent keys stay absent",
            gvk: POD,
            original: json!({"metadata": {"labels": {"a": "1", "b": "2"}}, "spec": {"nodeName": "n1"}}),
            patch: json!({"metadata": {"labels": {"a": null, "zz": null}}, "spec": {"nodeName": null}}),
            expected: json!({"metadata": {"labels": {"b": "2"}}, "spec": {}}),
        },
        Case {
            name: "nulls inside a new subtree are dropped",
            gvk: POD,
            original: json!({"spec": {}}),
            patch: json!({"spec": {"securityContext": {"runAsUser": 1000, "fsGroup": null}}}),
            expected: json!({"spec": {"securityContext": {"runAsUser": 1000}}}),
        },
        Case {
            name: "$patch: replace on a map replaces it",
            gvk: POD,
            original: json!({"spec": {"nodeSelector": {"disk": "ssd", "zone": "a"}}}),
            patch: json!({"spec": {"nodeSelector": {"$patch": "replace", "zone": "b"}}}),
            expected: json!({"spec": {"nodeSelector": {"zone": "b"}}}),
        },
        Case {
            // Kubernetes leaves an empty map behind rather than removing the key.
            name: "$patch: delete on an existing map empties it",
            gvk: POD,
            original: json!({"metadata": {"labels": {"a": "1"}, "name": "p"}}),
            patch: json!({"metadata": {"labels": {"$patch": "delete"}}}),
            expected: json!({"metadata": {"labels": {}, "name": "p"}}),
        },
        Case {
            name: "$patch: delete on a missing map leaves it absent",
            gvk: POD,
            original: json!({"metadata": {"name": "p"}}),
            patch: json!({"metadata": {"annotations": {"$patch": "delete"}}}),
            expected: json!({"metadata": {"name": "p"}}),
        },
        Case {
            name: "$patch: replace at the top level",
            gvk: POD,
            original: json!({"metadata": {"name": "p"}, "spec": {"nodeName": "n"}}),
            patch: json!({"$patch": "replace", "metadata": {"name": "q"}}),
            expected: json!({"metadata": {"name": "q"}}),
        },
        Case {
            name: "type change: scalar replaced by object, object by scalar",
            gvk: None,
            original: json!({"a": "text", "b": {"c": 1}}),
            patch: json!({"a": {"x": 1, "y": null}, "b": 7}),
            expected: json!({"a": {"x": 1}, "b": 7}),
        },
        Case {
            name: "null patch is a no-op",
            gvk: POD,
            original: json!({"metadata": {"name": "p"}}),
            patch: Value::Null,
            expected: json!({"metadata": {"name": "p"}}),
        },
    ]);
}

#[test]
fn ordering_cases() {
    let list =
        |names: &[i64]| -> Value { Value::Array(names.iter().map(|n| json!({"type": n.to_string()})).collect()) };
    let node = |conds: Value| json!({"status": {"conditions": conds}});
    const NODE: Option<(&str, &str, &str)> = Some(("", "v1", "Node"));
    run(vec![
        Case {
            name: "$setElementOrder alone reorders, server-only items keep their neighbours",
            gvk: NODE,
            original: node(list(&[1, 2, 9, 3, 4])),
            patch: json!({"status": {"$setElementOrder/conditions": list(&[2, 1, 4, 3])}}),
            expected: node(list(&[2, 1, 9, 4, 3])),
        },
        Case {
            name: "$setElementOrder naming items absent from the list ignores them",
            gvk: NODE,
            original: node(list(&[1, 3])),
            patch: json!({"status": {"$setElementOrder/conditions": list(&[3, 2, 1])}}),
            expected: node(list(&[3, 1])),
        },
        Case {
            name: "duplicates of a key stay together in original order",
            gvk: NODE,
            original: node(json!([
                {"type": "1"}, {"type": "2", "v": "a"}, {"type": "3"}, {"type": "2", "v": "b"}, {"type": "4"}
            ])),
            patch: json!({"status": {"$setElementOrder/conditions": list(&[2, 1, 4, 3, 2])}}),
            expected: node(json!([
                {"type": "2", "v": "a"}, {"type": "2", "v": "b"}, {"type": "1"}, {"type": "4"}, {"type": "3"}
            ])),
        },
        Case {
            name: "patch order wins for items it names, others slot in by server order",
            gvk: NODE,
            original: node(list(&[1, 2, 3])),
            patch: json!({"status": {"conditions": list(&[3, 1])}}),
            expected: node(list(&[2, 3, 1])),
        },
        Case {
            name: "scalar merge list keeps patch order",
            gvk: Some(("", "v1", "Node")),
            original: json!({"spec": {"podCIDRs": ["10.0.0.0/24", "10.0.1.0/24"]}}),
            patch: json!({"spec": {"podCIDRs": ["fd00::/64"]}}),
            expected: json!({"spec": {"podCIDRs": ["fd00::/64", "10.0.0.0/24", "10.0.1.0/24"]}}),
        },
        Case {
            name: "node addresses merge by type, taints are atomic",
            gvk: NODE,
            original: json!({
                "spec": {"taints": [{"key": "a", "effect": "NoSchedule"}]},
                "status": {"addresses": [{"type": "InternalIP", "address": "10.0.0.1"}, {"type": "Hostname", "address": "n1"}]}
            }),
            patch: json!({
                "spec": {"taints": [{"key": "b", "effect": "NoExecute"}]},
                "status": {"addresses": [{"type": "InternalIP", "address": "10.0.0.2"}]}
            }),
            expected: json!({
                "spec": {"taints": [{"key": "b", "effect": "NoExecute"}]},
                "status": {"addresses": [{"type": "InternalIP", "address": "10.0.0.2"}, {"type": "Hostname", "address": "n1"}]}
            }),
        },
    ]);
}

#[test]
fn other_kind_cases() {
    let template = |containers: Value| json!({"spec": {"containers": containers}});
    let mut cases = Vec::new();
    for kind in ["ReplicaSet", "StatefulSet", "DaemonSet"] {
        cases.push(Case {
            name: kind,
            gvk: Some(("apps", "v1", kind)),
            original: json!({"spec": {"template": template(json!([{"name": "a", "image": "1"}, {"name": "b"}]))}}),
            patch: json!({"spec": {"template": template(json!([{"name": "a", "image": "2"}]))}}),
            expected: json!({"spec": {"template": template(json!([{"name": "a", "image": "2"}, {"name": "b"}]))}}),
        });
    }
    cases.extend([
        Case {
            name: "Job template containers merge",
            gvk: Some(("batch", "v1", "Job")),
            original: json!({"spec": {"template": template(json!([{"name": "a", "image": "1"}, {"name": "b"}]))}}),
            patch: json!({"spec": {"template": template(json!([{"name": "a", "image": "2"}]))}}),
            expected: json!({"spec": {"template": template(json!([{"name": "a", "image": "2"}, {"name": "b"}]))}}),
        },
        Case {
            name: "CronJob jobTemplate.spec.template containers merge",
            gvk: Some(("batch", "v1", "CronJob")),
            original: json!({"spec": {"schedule": "* * * * *", "jobTemplate": {"spec": {"template":
                template(json!([{"name": "a", "image": "1", "env": [{"name": "X", "value": "1"}]}]))}}}}),
            patch: json!({"spec": {"jobTemplate": {"spec": {"template":
                template(json!([{"name": "a", "env": [{"name": "X", "$patch": "delete"}]}]))}}}}),
            expected: json!({"spec": {"schedule": "* * * * *", "jobTemplate": {"spec": {"template":
                template(json!([{"name": "a", "image": "1", "env": []}]))}}}}),
        },
        Case {
            name: "Service ports merge by port",
            gvk: Some(("", "v1", "Service")),
            original: json!({"spec": {"ports": [{"port": 80, "targetPort": 8080}, {"port": 443, "targetPort": 8443}]}}),
            patch: json!({"spec": {"ports": [{"port": 80, "targetPort": 9090}]}}),
            expected: json!({"spec": {"ports": [{"port": 80, "targetPort": 9090}, {"port": 443, "targetPort": 8443}]}}),
        },
        Case {
            name: "ServiceAccount secrets merge, imagePullSecrets atomic",
            gvk: Some(("", "v1", "ServiceAccount")),
            original: json!({"secrets": [{"name": "t1"}], "imagePullSecrets": [{"name": "r1"}]}),
            patch: json!({"secrets": [{"name": "t2"}], "imagePullSecrets": [{"name": "r2"}]}),
            expected: json!({"secrets": [{"name": "t2"}, {"name": "t1"}], "imagePullSecrets": [{"name": "r2"}]}),
        },
        Case {
            name: "Namespace spec.finalizers atomic",
            gvk: Some(("", "v1", "Namespace")),
            original: json!({"spec": {"finalizers": ["kubernetes"]}}),
            patch: json!({"spec": {"finalizers": ["other"]}}),
            expected: json!({"spec": {"finalizers": ["other"]}}),
        },
        Case {
            name: "Endpoints subsets atomic",
            gvk: Some(("", "v1", "Endpoints")),
            original: json!({"subsets": [{"addresses": [{"ip": "10.0.0.1"}]}]}),
            patch: json!({"subsets": [{"addresses": [{"ip": "10.0.0.2"}]}]}),
            expected: json!({"subsets": [{"addresses": [{"ip": "10.0.0.2"}]}]}),
        },
        Case {
            name: "ClusterRole rules atomic, metadata finalizers still merge",
            gvk: Some(("rbac.authorization.k8s.io", "v1", "ClusterRole")),
            original: json!({"metadata": {"finalizers": ["f1"]}, "rules": [{"verbs": ["get"], "resources": ["pods"]}]}),
            patch: json!({"metadata": {"finalizers": ["f2"]}, "rules": [{"verbs": ["list"], "resources": ["pods"]}]}),
            expected: json!({"metadata": {"finalizers": ["f2", "f1"]}, "rules": [{"verbs": ["list"], "resources": ["pods"]}]}),
        },
        Case {
            name: "RoleBinding subjects atomic",
            gvk: Some(("rbac.authorization.k8s.io", "v1", "RoleBinding")),
            original: json!({"subjects": [{"kind": "User", "name": "a"}]}),
            patch: json!({"subjects": [{"kind": "User", "name": "b"}]}),
            expected: json!({"subjects": [{"kind": "User", "name": "b"}]}),
        },
        Case {
            name: "Lease spec merges as a plain map",
            gvk: Some(("coordination.k8s.io", "v1", "Lease")),
            original: json!({"spec": {"holderIdentity": "a", "leaseDurationSeconds": 15}}),
            patch: json!({"spec": {"holderIdentity": "b", "renewTime": "2024-01-01T00:00:00.000000Z"}}),
            expected: json!({"spec": {"holderIdentity": "b", "leaseDurationSeconds": 15, "renewTime": "2024-01-01T00:00:00.000000Z"}}),
        },
    ]);
    run(cases);
}

#[test]
fn unknown_type_fallback() {
    run(vec![
        Case {
            name: "without a schema lists are replaced",
            gvk: None,
            original: json!({"spec": {"containers": [{"name": "a"}, {"name": "b"}], "x": {"y": 1}}}),
            patch: json!({"spec": {"containers": [{"name": "a", "image": "i"}], "x": {"z": 2}}}),
            expected: json!({"spec": {"containers": [{"name": "a", "image": "i"}], "x": {"y": 1, "z": 2}}}),
        },
        Case {
            name: "without a schema map directives still apply",
            gvk: None,
            original: json!({"a": {"b": 1, "c": 2}, "d": {"e": 1}, "f": {"g": 1, "h": 2}}),
            patch: json!({
                "a": {"$patch": "replace", "c": 3},
                "d": {"$patch": "delete"},
                "f": {"$retainKeys": ["g"], "g": 5}
            }),
            expected: json!({"a": {"c": 3}, "d": {}, "f": {"g": 5}}),
        },
        Case {
            name: "without a schema directive elements are stripped from replaced lists",
            gvk: None,
            original: json!({"l": [1]}),
            patch: json!({"l": [{"$patch": "replace"}, {"k": 1}]}),
            expected: json!({"l": [{"k": 1}]}),
        },
        Case {
            name: "unknown field of a known type behaves untyped",
            gvk: POD,
            original: json!({"spec": {"someFutureList": [{"name": "a"}]}}),
            patch: json!({"spec": {"someFutureList": [{"name": "b"}]}}),
            expected: json!({"spec": {"someFutureList": [{"name": "b"}]}}),
        },
    ]);
}

/// (case name, schema, original, patch, expected message fragment)
type ErrorCase = (&'static str, Option<(&'static str, &'static str, &'static str)>, Value, Value, &'static str);

#[test]
fn error_cases() {
    let pod = json!({"metadata": {"finalizers": ["a"]}, "spec": {"containers": [{"name": "app", "image": "x"}]}});
    let cases: Vec<ErrorCase> = vec![
        (
            "patch is a list",
            POD,
            pod.clone(),
            json!([{"op": "add"}]),
            "json: cannot unmarshal array into Go value of type map[string]interface {}",
        ),
        ("patch is a string", POD, pod.clone(), json!("x"), "cannot unmarshal string"),
        ("original not an object", POD, json!([1]), json!({}), "invalid JSON document"),
        (
            "unknown $patch on a map",
            POD,
            pod.clone(),
            json!({"spec": {"$patch": "explode"}}),
            "unknown patch type: explode in map:",
        ),
        (
            "unknown $patch on a new map",
            POD,
            pod.clone(),
            json!({"spec": {"affinity": {"$patch": "explode"}}}),
            "unknown patch type: explode",
        ),
        (
            "unknown $patch in a list element",
            POD,
            pod.clone(),
            json!({"spec": {"containers": [{"name": "app", "$patch": "explode"}]}}),
            "unknown patch type: explode",
        ),
        (
            "$patch: merge in a list element",
            POD,
            pod.clone(),
            json!({"spec": {"containers": [{"$patch": "merge"}]}}),
            "merging lists cannot yet be specified in the patch",
        ),
        (
            "missing merge key in a patch element",
            POD,
            pod.clone(),
            json!({"spec": {"containers": [{"image": "y"}]}}),
            "does not contain declared merge key: name",
        ),
        (
            "missing merge key in a delete directive",
            POD,
            pod.clone(),
            json!({"spec": {"containers": [{"$patch": "delete"}]}}),
            "does not contain declared merge key: name",
        ),
        (
            "missing merge key in an original element",
            POD,
            json!({"spec": {"containers": [{"image": "x"}]}}),
            json!({"spec": {"containers": [{"name": "app"}]}}),
            "does not contain declared merge key: name",
        ),
        (
            "scalar in a list merged by key",
            POD,
            pod.clone(),
            json!({"spec": {"containers": ["app"]}}),
            "list element types are not identical",
        ),
        (
            "list of lists in a merge list",
            POD,
            json!({"metadata": {"finalizers": []}}),
            json!({"metadata": {"finalizers": [["b"]]}}),
            "lists of lists are not supported",
        ),
        (
            "$setElementOrder contradicts the patch list",
            POD,
            json!({"spec": {"containers": [{"name": "a"}, {"name": "b"}]}}),
            json!({"spec": {
                "$setElementOrder/containers": [{"name": "a"}, {"name": "b"}],
                "containers": [{"name": "b"}, {"name": "a"}]
            }}),
            "doesn't match $setElementOrder list",
        ),
        (
            "$setElementOrder not a list",
            POD,
            pod.clone(),
            json!({"spec": {"$setElementOrder/containers": {"name": "a"}}}),
            "expected a []interface {}, but received a map[string]interface {}",
        ),
        (
            "$setElementOrder element without merge key",
            POD,
            pod.clone(),
            json!({"spec": {"$setElementOrder/containers": [{"image": "x"}]}}),
            "does not contain declared merge key: name",
        ),
        (
            "malformed $setElementOrder key",
            POD,
            pod.clone(),
            json!({"spec": {"$setElementOrder": [{"name": "a"}]}}),
            "invalid patch format of setElementOrder list",
        ),
        (
            "malformed $deleteFromPrimitiveList key",
            POD,
            pod.clone(),
            json!({"metadata": {"$deleteFromPrimitiveListfinalizers": ["a"]}}),
            "invalid patch format of primitive list",
        ),
        (
            "$retainKeys not a list",
            DEPLOYMENT,
            json!({"spec": {"strategy": {"type": "Recreate"}}}),
            json!({"spec": {"strategy": {"$retainKeys": "type"}}}),
            "invalid patch format of retainKeys",
        ),
        (
            "patch sets a key $retainKeys drops",
            DEPLOYMENT,
            json!({"spec": {"strategy": {"type": "Recreate"}}}),
            json!({"spec": {"strategy": {"$retainKeys": ["type"], "type": "RollingUpdate", "rollingUpdate": {}}}}),
            "invalid patch format of retainKeys",
        ),
    ];
    for (name, gvk, original, patch, fragment) in cases {
        match apply(&original, &patch, schema(gvk)) {
            Ok(v) => panic!("{name}: expected an error, got {v}"),
            Err(e) => {
                let msg = e.to_string();
                assert!(msg.contains(fragment), "{name}: message {msg:?} lacks {fragment:?}");
            }
        }
    }
}

#[test]
fn error_statuses_follow_kube_apiserver() {
    let err = |patch: Value| -> PatchError {
        match apply(&json!({"metadata": {"finalizers": []}}), &patch, schema(POD)) {
            Err(e) => e,
            Ok(v) => panic!("expected an error, got {v}"),
        }
    };
    assert_eq!(err(json!([])).http_status(), 400);
    assert_eq!(err(json!({"metadata": {"$deleteFromPrimitiveList": []}})).http_status(), 400);
    assert_eq!(err(json!({"metadata": {"finalizers": [["x"]]}})).http_status(), 422);
    assert_eq!(err(json!({"metadata": {"$patch": "bogus"}})).http_status(), 500);
}

#[test]
fn schema_table_lookup() {
    let served = [
        ("", "v1", "Pod"),
        ("", "v1", "PodTemplate"),
        ("", "v1", "ReplicationController"),
        ("", "v1", "Service"),
        ("", "v1", "Endpoints"),
        ("", "v1", "ConfigMap"),
        ("", "v1", "Secret"),
        ("", "v1", "ServiceAccount"),
        ("", "v1", "Namespace"),
        ("", "v1", "Node"),
        ("", "v1", "Event"),
        ("apps", "v1", "Deployment"),
        ("apps", "v1", "ReplicaSet"),
        ("apps", "v1", "StatefulSet"),
        ("apps", "v1", "DaemonSet"),
        ("batch", "v1", "Job"),
        ("batch", "v1", "CronJob"),
        ("rbac.authorization.k8s.io", "v1", "Role"),
        ("rbac.authorization.k8s.io", "v1", "ClusterRole"),
        ("rbac.authorization.k8s.io", "v1", "RoleBinding"),
        ("rbac.authorization.k8s.io", "v1", "ClusterRoleBinding"),
        ("coordination.k8s.io", "v1", "Lease"),
        ("events.k8s.io", "v1", "Event"),
    ];
    for (g, v, k) in served {
        let s = schema_for(g, v, k).unwrap_or_else(|| panic!("{g}/{v} {k} missing"));
        let meta = s.field("metadata").and_then(|f| f.schema).expect("metadata typed");
        let owners = meta.field("ownerReferences").expect("ownerReferences");
        assert!(owners.merge && owners.merge_key == Some("uid"));
        let finalizers = meta.field("finalizers").expect("finalizers");
        assert!(finalizers.merge && finalizers.merge_key.is_none());
    }
    assert!(schema_for("apps", "v1beta1", "Deployment").is_none());
    assert!(schema_for("example.com", "v1", "Widget").is_none());
    assert!(schema_for("", "v1", "pod").is_none());

    let deploy = schema(DEPLOYMENT).expect("deployment");
    assert!(format!("{deploy:?}").contains("Deployment"));
    let spec = deploy.field("spec").and_then(|f| f.schema).expect("spec");
    let strategy = spec.field("strategy").expect("strategy");
    assert!(strategy.retain_keys && !strategy.merge);
    let pod_spec = spec
        .field("template")
        .and_then(|f| f.schema)
        .and_then(|t| t.field("spec"))
        .and_then(|f| f.schema)
        .expect("pod spec");
    assert_eq!(pod_spec.type_name(), "v1.PodSpec");
    let volumes = pod_spec.field("volumes").expect("volumes");
    assert!(volumes.merge && volumes.retain_keys && volumes.merge_key == Some("name"));
    let containers = pod_spec.field("containers").and_then(|f| f.schema).expect("containers");
    assert_eq!(containers.field("ports").and_then(|f| f.merge_key), Some("containerPort"));
    assert_eq!(containers.field("volumeMounts").and_then(|f| f.merge_key), Some("mountPath"));
    assert!(pod_spec.field("tolerations").is_none());

    let sa = schema_for("", "v1", "ServiceAccount").expect("sa");
    assert!(sa.field("imagePullSecrets").is_none());
    assert_eq!(sa.field("secrets").and_then(|f| f.merge_key), Some("name"));
}
