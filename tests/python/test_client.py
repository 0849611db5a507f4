#!/usr/bin/env python3
"""The official Kubernetes Python client (pip install kubernetes) against a Skiff apiserver.

Usage: test_client.py KUBECONFIG. Exits 0 if the client lists, creates and watches as it does
against a real cluster; otherwise raises (exit 1) with what went wrong. Run by
tests/tests/clients.rs.
"""

import sys
import threading

from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException

WATCH_SECONDS = 20
NS = "default"


def config_map(name, **data):
    return client.V1ConfigMap(
        metadata=client.V1ObjectMeta(name=name, labels={"made-by": "python"}),
        data=data or None,
    )


def watch_for_added(core, name, **list_args):
    """Watches ConfigMaps until an ADDED event for `name` arrives; False if none in time."""
    w = watch.Watch()
    for event in w.stream(core.list_namespaced_config_map, NS, timeout_seconds=WATCH_SECONDS, **list_args):
        if event["type"] == "ADDED" and event["object"].metadata.name == name:
            w.stop()
            return True
    return False


def main(kubeconfig):
    config.load_kube_config(config_file=kubeconfig)
    core = client.CoreV1Api()
    apps = client.AppsV1Api()

    names = {ns.metadata.name for ns in core.list_namespace().items}
    for ns in ("default", "kube-system", "kube-public", "kube-node-lease"):
        assert ns in names, f"namespace {ns} missing from {sorted(names)}"

    created = core.create_namespaced_config_map(NS, config_map("py-settings", mode="fast"))
    assert created.metadata.uid and created.metadata.resource_version, created.metadata
    assert core.read_namespaced_config_map("py-settings", NS).data == {"mode": "fast"}

    deployment = client.V1Deployment(
        metadata=client.V1ObjectMeta(name="py-web"),
        spec=client.V1DeploymentSpec(
            selector=client.V1LabelSelector(match_labels={"app": "py-web"}),
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(labels={"app": "py-web"}),
                spec=client.V1PodSpec(containers=[client.V1Container(name="web", image="nginx:1.25")]),
            ),
        ),
    )
    d = apps.create_namespaced_deployment(NS, deployment)
    assert d.spec.replicas == 1, d.spec
    assert d.spec.strategy.type == "RollingUpdate", d.spec.strategy
    assert d.spec.revision_history_limit == 10, d.spec
    assert [x.metadata.name for x in apps.list_namespaced_deployment(NS).items] == ["py-web"]

    try:
        core.read_namespaced_config_map("py-nope", NS)
        raise AssertionError("reading a missing ConfigMap should fail")
    except ApiException as e:
        assert e.status == 404, e

    # Watch from a resourceVersion taken before the create: the ADDED event must come.
    rv = core.list_namespaced_config_map(NS).metadata.resource_version
    core.create_namespaced_config_map(NS, config_map("py-watched"))
    assert watch_for_added(core, "py-watched", resource_version=rv), "no ADDED event for py-watched"

    # Watch without a resourceVersion (how Watch.stream starts by default) while another thread
    # creates: whether the create lands before the watch starts (then it is in the initial
    # ADDED events) or after (then it is a live ADDED event), ADDED must show.
    creator = threading.Thread(target=lambda: core.create_namespaced_config_map(NS, config_map("py-live")))
    creator.start()
    try:
        assert watch_for_added(core, "py-live"), "no ADDED event for py-live"
    finally:
        creator.join()

    core.delete_namespaced_config_map("py-settings", NS)
    left = {c.metadata.name for c in core.list_namespaced_config_map(NS, label_selector="made-by=python").items}
    assert left == {"py-watched", "py-live"}, left
    print("python client: ok")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
