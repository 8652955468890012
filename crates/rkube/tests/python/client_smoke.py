"""The official Python `kubernetes` client against a running rkube server.

Usage: client_smoke.py KUBECONFIG. Exits non-zero (with a traceback) on any mismatch.
"""
import sys
import threading

from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException


def main(kubeconfig):
    config.load_kube_config(config_file=kubeconfig)
    core = client.CoreV1Api()
    apps = client.AppsV1Api()
    batch = client.BatchV1Api()

    names = sorted(n.metadata.name for n in core.list_namespace().items)
    assert names == ["default", "kube-node-lease", "kube-public", "kube-system"], names

    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name="py")))

    # Watch configmaps in the namespace while creating, patching and deleting one.
    events = []
    start_rv = core.list_namespaced_config_map("py").metadata.resource_version

    def watcher():
        w = watch.Watch()
        # The namespace also gets kube-root-ca.crt from its controller; watch ours only.
        stream = w.stream(core.list_namespaced_config_map, "py", resource_version=start_rv, label_selector="app=x", timeout_seconds=10)
        for ev in stream:
            events.append((ev["type"], ev["object"].metadata.name))
            if ev["type"] == "DELETED":
                w.stop()

    t = threading.Thread(target=watcher)
    t.start()
    cm = client.V1ConfigMap(metadata=client.V1ObjectMeta(name="c", labels={"app": "x"}), data={"k": "v"})
    created = core.create_namespaced_config_map("py", cm)
    assert created.metadata.uid and created.metadata.resource_version
    core.patch_namespaced_config_map("c", "py", {"data": {"k": "w"}})
    assert core.read_namespaced_config_map("c", "py").data == {"k": "w"}
    assert [c.metadata.name for c in core.list_namespaced_config_map("py", label_selector="app=x").items] == ["c"]
    core.delete_namespaced_config_map("c", "py")
    t.join(timeout=15)
    assert events == [("ADDED", "c"), ("MODIFIED", "c"), ("DELETED", "c")], events

    dep = client.V1Deployment(
        metadata=client.V1ObjectMeta(name="web"),
        spec=client.V1DeploymentSpec(
            selector=client.V1LabelSelector(match_labels={"app": "web"}),
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(labels={"app": "web"}),
                spec=client.V1PodSpec(containers=[client.V1Container(name="web", image="nginx")]),
            ),
        ),
    )
    d = apps.create_namespaced_deployment("py", dep)
    assert d.spec.replicas == 1 and d.spec.strategy.type == "RollingUpdate", d.spec
    apps.patch_namespaced_deployment_scale("web", "py", {"spec": {"replicas": 4}})
    assert apps.read_namespaced_deployment("web", "py").spec.replicas == 4

    job = client.V1Job(
        metadata=client.V1ObjectMeta(name="pi"),
        spec=client.V1JobSpec(
            template=client.V1PodTemplateSpec(
                spec=client.V1PodSpec(restart_policy="Never", containers=[client.V1Container(name="pi", image="perl")])
            )
        ),
    )
    j = batch.create_namespaced_job("py", job)
    assert j.spec.selector.match_labels["batch.kubernetes.io/controller-uid"] == j.metadata.uid

    # Errors come back as Status objects with Kubernetes' codes.
    try:
        core.read_namespaced_config_map("missing", "py")
        raise AssertionError("expected 404")
    except ApiException as e:
        assert e.status == 404, e
    try:
        core.create_namespaced_config_map("py", client.V1ConfigMap(metadata=client.V1ObjectMeta(name="Bad_Name")))
        raise AssertionError("expected 422")
    except ApiException as e:
        assert e.status == 422, e

    core.delete_namespace("py")
    print("python client: ok")


if __name__ == "__main__":
    main(sys.argv[1])
