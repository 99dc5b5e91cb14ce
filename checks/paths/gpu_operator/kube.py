"""The few Kubernetes reads and writes of the gpu-operator path, through the sweep's `KubeReader` (its
answer checks, size limit, timeouts and error translation apply)."""

from __future__ import annotations

from typing import Any

from checks.adapters.kube import KubeError, KubeReader

CLUSTER_POLICY = "cluster-policy"
CLUSTER_POLICY_PATH = "/apis/nvidia.com/v1/clusterpolicies/{name}"
POD_SECURITY_LABEL = "pod-security.kubernetes.io/enforce"
POD_SECURITY_LEVEL = "privileged"


def _call(reader: KubeReader, method: str, path: str, body: Any = None) -> Any:
    """`call_api` as the generated clients call it (the lean client has no CustomObjectsApi)."""
    def call(**kwargs: Any) -> Any:
        return reader.api_client.call_api(path, method, header_params={"Accept": "application/json",
                                                                       "Content-Type": "application/json"},
                                          body=body, auth_settings=["BearerToken"], response_type=None,
                                          _return_http_data_only=True, **kwargs)
    return call


def read_cluster_policy(reader: KubeReader, name: str = CLUSTER_POLICY) -> dict[str, Any]:
    path = CLUSTER_POLICY_PATH.format(name=name)
    return reader._json(f"GET clusterpolicy {name}", _call(reader, "GET", path), expect="ClusterPolicy")


def read_namespace(reader: KubeReader, name: str) -> dict[str, Any]:
    return reader._json(f"GET namespace {name}", reader.core.read_namespace, name, expect="Namespace")


def ensure_namespace(reader: KubeReader, name: str, labels: dict[str, str]) -> str:
    """Create the namespace with `labels`, or add them to the one that exists; what was done, in words."""
    body = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": dict(labels)}}
    try:
        reader._json(f"CREATE namespace {name}", reader.core.create_namespace, body)
        return f"namespace/{name} created"
    except KubeError as exc:
        if exc.kind != "conflict":
            raise
    existing = read_namespace(reader, name)
    meta = existing.setdefault("metadata", {})
    have = meta.get("labels") or {}
    if all(have.get(key) == value for key, value in labels.items()):
        return f"namespace/{name} exists, labelled already"
    meta["labels"] = {**have, **labels}
    reader._json(f"UPDATE namespace {name}", reader.core.replace_namespace, name, existing)
    return f"namespace/{name} labelled"


def delete_runtime_class(reader: KubeReader, name: str) -> str:
    try:
        reader._json(f"DELETE runtimeclass {name}", reader.node_api.delete_runtime_class, name)
    except KubeError as exc:
        if exc.is_not_found:
            return f"runtimeclass.node.k8s.io/{name} not found (gone already)"
        raise
    return f'runtimeclass.node.k8s.io "{name}" deleted'
