"""The kinds the lab's API server serves (built in, and the GPU Operator's CRD once installed), the
errors it answers as Kubernetes Status objects, and the discovery documents (/api, /apis, APIResourceLists,
the OpenAPI v3 kubectl reads before a server-side-validated PATCH)."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from lab import operator as gpu_operator


@dataclass(frozen=True)
class Resource:
    group: str
    version: str
    plural: str
    singular: str
    kind: str
    namespaced: bool
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    writable: bool = True       # stored in state["kube"][plural]: create/delete/update through the API

    @property
    def group_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def qualified(self) -> str:
        """`pods`, `daemonsets.apps`, `runtimeclasses.node.k8s.io`: the name errors use."""
        return f"{self.plural}.{self.group}" if self.group else self.plural


RESOURCES: tuple[Resource, ...] = (
    Resource("", "v1", "namespaces", "namespace", "Namespace", False, ("ns",)),
    Resource("", "v1", "nodes", "node", "Node", False, ("no",)),
    Resource("", "v1", "pods", "pod", "Pod", True, ("po",), ("all",)),
    Resource("", "v1", "events", "event", "Event", True, ("ev",)),
    Resource("apps", "v1", "daemonsets", "daemonset", "DaemonSet", True, ("ds",), ("all",)),
    Resource("node.k8s.io", "v1", "runtimeclasses", "runtimeclass", "RuntimeClass", False),
    Resource("coordination.k8s.io", "v1", "leases", "lease", "Lease", True, writable=False),
    # a CustomResourceDefinition of the GPU Operator's chart: served only once the chart has installed it
    Resource("nvidia.com", "v1", "clusterpolicies", "clusterpolicy", "ClusterPolicy", False),
)


RESOURCE_BY_PATH = {(r.group, r.version, r.plural): r for r in RESOURCES}


GROUPS = ("apps", "node.k8s.io", "coordination.k8s.io")


CRD_GROUPS = {"nvidia.com": gpu_operator.CRD}  # group -> the CRD that brings it (state["kube"]["crds"])


def served_groups(state: Mapping[str, Any]) -> tuple[str, ...]:
    """The API groups served now: the built-in ones, and those of the CRDs installed."""
    crds = set((state.get("kube") or {}).get("crds") or [])
    return GROUPS + tuple(group for group, crd in CRD_GROUPS.items() if crd in crds)


VERBS_RW = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]


VERBS_RO = ["get", "list", "watch"]


class ApiError(Exception):
    """An error answered as a Kubernetes Status object."""

    REASONS = {400: "BadRequest", 401: "Unauthorized", 403: "Forbidden", 404: "NotFound", 405: "MethodNotAllowed",
               406: "NotAcceptable", 409: "AlreadyExists", 410: "Expired", 415: "UnsupportedMediaType",
               422: "Invalid", 429: "TooManyRequests", 500: "InternalError", 503: "ServiceUnavailable"}

    def __init__(self, code: int, message: str, *, reason: str | None = None,
                 details: Mapping[str, Any] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.reason = reason or self.REASONS.get(code, "Unknown")
        self.details = dict(details or {})

    def status(self) -> dict[str, Any]:
        body: dict[str, Any] = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                                "message": self.message, "reason": self.reason}
        if self.details:
            body["details"] = self.details
        body["code"] = self.code
        return body


def not_found(resource: Resource, name: str) -> ApiError:
    details = {"name": name, **({"group": resource.group} if resource.group else {}), "kind": resource.plural}
    return ApiError(404, f'{resource.qualified} "{name}" not found', details=details)


def _api_resource(resource: Resource) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": resource.plural, "singularName": resource.singular, "namespaced": resource.namespaced,
        "kind": resource.kind, "verbs": VERBS_RW if resource.writable else VERBS_RO,
    }
    if resource.short_names:
        body["shortNames"] = list(resource.short_names)
    if resource.categories:
        body["categories"] = list(resource.categories)
    return body


def resource_list(group: str, version: str, groups: tuple[str, ...] = GROUPS) -> dict[str, Any] | None:
    if group and group not in groups:
        return None
    resources = [r for r in RESOURCES if r.group == group and r.version == version]
    if not resources:
        return None
    listed = []
    for resource in resources:
        listed.append(_api_resource(resource))
        if resource.plural == "pods":
            listed.append({"name": "pods/log", "singularName": "", "namespaced": True, "kind": "Pod", "verbs": ["get"]})
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": resources[0].group_version,
            "resources": listed}


def api_group(name: str) -> dict[str, Any]:
    version = next(r.version for r in RESOURCES if r.group == name)
    entry = {"groupVersion": f"{name}/{version}", "version": version}
    return {"kind": "APIGroup", "apiVersion": "v1", "name": name, "versions": [entry], "preferredVersion": entry}


def api_group_list(served: tuple[str, ...] = GROUPS) -> dict[str, Any]:
    groups = []
    for name in served:
        group = api_group(name)
        group.pop("kind")
        group.pop("apiVersion")
        groups.append(group)
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}


def openapi_v3_root(served: tuple[str, ...] = GROUPS) -> dict[str, Any]:
    paths = {"api/v1": {"serverRelativeURL": "/openapi/v3/api/v1?hash=" + _openapi_hash("", "v1")}}
    for group in served:
        version = next(r.version for r in RESOURCES if r.group == group)
        paths[f"apis/{group}/{version}"] = {
            "serverRelativeURL": f"/openapi/v3/apis/{group}/{version}?hash=" + _openapi_hash(group, version)}
    return {"paths": paths}


def _openapi_hash(group: str, version: str) -> str:
    return uuid.uuid5(uuid.NAMESPACE_URL, f"lab-openapi/{group}/{version}/1").hex.upper()


def openapi_v3_group(group: str, version: str) -> dict[str, Any] | None:
    """Just enough OpenAPI v3 for kubectl to see that PATCH takes `fieldValidation` (server-side validation)."""
    resources = [r for r in RESOURCES if r.group == group and r.version == version and r.writable]
    if not resources and not any(r.group == group and r.version == version for r in RESOURCES):
        return None
    paths: dict[str, Any] = {}
    for resource in resources:
        prefix = f"/api/{version}" if not group else f"/apis/{group}/{version}"
        scope = f"{prefix}/namespaces/{{namespace}}/{resource.plural}/{{name}}" if resource.namespaced else \
            f"{prefix}/{resource.plural}/{{name}}"
        gvk = {"group": group, "version": version, "kind": resource.kind}
        parameters = [{"name": name, "in": "query", "schema": {"type": "string", "uniqueItems": True}}
                      for name in ("dryRun", "fieldManager", "fieldValidation")]
        paths[scope] = {
            "patch": {"operationId": f"patch{resource.kind}", "x-kubernetes-action": "patch",
                      "x-kubernetes-group-version-kind": gvk, "parameters": parameters,
                      "responses": {"200": {"description": "OK"}}},
        }
    return {"openapi": "3.0.0", "info": {"title": "Kubernetes", "version": "v1.34.1"}, "paths": paths,
            "components": {"schemas": {}}}
