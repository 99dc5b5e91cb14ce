"""The lab's Kubernetes API server: HTTPS on 127.0.0.1, bearer token, real-format JSON.

It serves the objects of ``state.json`` as the controllers (``lab.kubeapi.controllers``) make them
look *now*, to both the official Python ``kubernetes`` client and ``kubectl``: discovery
(``/version``, ``/api``, ``/apis``, resource lists, a minimal ``/openapi/v3`` so ``kubectl apply``
validates server-side), get/list/watch/create/delete/patch/update for namespaces, nodes, pods
(+ ``log``), events, daemonsets, runtimeclasses and leases, label and field selectors, ``limit`` /
``continue``, ``watch=true`` streams with resourceVersions (410 Gone when too old), server-side
Tables for kubectl, and real ``Status`` errors.

Every request re-reads ``state.json`` if it changed (mtime/size/inode cache, no lock: the file is
replaced atomically), sleeps ``knobs.api_latency_ms``, applies the fault knobs below, then answers.
Writes go through ``lab.state.mutate``. Every request's method and path (with its query) is appended to
``requests.log`` in the state directory as one JSON line (``{"method": "GET", "path": "/api/v1/..."}``),
before faults apply, so tests can prove which calls a command made (e.g. that ``check`` never writes).

Fault knobs (``state["faults"]``; a knob that is ``false``/``null``/``0`` is off):

=================== =================================================================================
``api_down``        ``true``: every connection is closed at once, before the TLS handshake
``api_hang_s``      ``N`` or ``{"seconds": N, "path_regex": "..."}``: sleep N s before answering
                    (every request, or those whose path matches)
``api_status``      ``{"path_regex": "...", "code": 500|403|404|401|429|503, "method"?: "GET",
                    "message"?: "..."}`` (or a list of them): matching requests fail with that
                    code and a real-format Status
``api_oversize``    ``true`` or a factor ``N`` (default 100): every list response is padded to about
                    N times its size (a large annotation on each item; semantics unchanged)
``watch_drop_after`` ``S`` seconds: watch and ``log?follow=true`` streams are cut after S s,
                    mid-stream (the connection is closed without the closing chunk)
``api_answer``      ``{"path_regex": "...", "method"?: "GET", "body"?: "...", "cut"?: true,
                    "pad_mb"?: N}`` (or a list): a matching request's 200 answer is replaced by
                    ``body`` (raw text: not JSON, another kind), sent with its full Content-Length
                    but only its first half (``cut``: the connection then closes), or padded with
                    an N MB annotation (``pad_mb``: still valid JSON)
=================== =================================================================================

``api_status`` takes ``"retry_after": N`` too: the answer carries ``Retry-After: N``.
"""

from __future__ import annotations

import base64
import collections
import contextlib
import copy
import json
import os
import re
import select
import socket
import ssl
import struct
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from lab import operator as gpu_operator
from lab import state as lab_state
from lab.kubeapi import controllers, tables
from lab.node import kube_api_down, node_view

TOKEN_FILE = "apiserver.token"
PORT_FILE = "apiserver.port"
REQUEST_LOG = "requests.log"
HISTORY_LIMIT = 20_000
FIRST_RESOURCE_VERSION = 1000
SNAPSHOT_REUSE_S = 0.02
WATCH_POLL_S = 0.1
DEFAULT_WATCH_TIMEOUT_S = 1800
HEALTH_PATHS = ("/healthz", "/livez", "/readyz")


# --- resources ---------------------------------------------------------------------------------------

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

_CORE_PATH = re.compile(r"^/api/v1/(?:namespaces/(?P<ns>[^/]+)/)?(?P<res>[^/]+)(?:/(?P<name>[^/]+)(?:/(?P<sub>[^/]+))?)?$")
_GROUP_PATH = re.compile(r"^/apis/(?P<group>[^/]+)/(?P<ver>[^/]+)/(?:namespaces/(?P<ns>[^/]+)/)?(?P<res>[^/]+)"
                         r"(?:/(?P<name>[^/]+)(?:/(?P<sub>[^/]+))?)?$")


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


# --- selectors ---------------------------------------------------------------------------------------------

def _split_requirements(text: str) -> list[str]:
    parts, depth, current = [], 0, []
    for char in text:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == "," and depth == 0:
            parts.append("".join(current).strip())
            current = []
        else:
            current.append(char)
    if current:
        parts.append("".join(current).strip())
    return [part for part in parts if part]


Predicate = Callable[[Mapping[str, str]], bool]


def parse_label_selector(text: str) -> list[Predicate]:
    """`a=b,c!=d,e in (x,y),f notin (z),g,!h` -> predicates over a label map."""
    predicates: list[Predicate] = []
    for requirement in _split_requirements(text):
        set_match = re.fullmatch(r"([^\s!=]+)\s+(in|notin)\s+\(([^)]*)\)", requirement)
        if set_match:
            key, operator, raw = set_match.groups()
            values = {value.strip() for value in raw.split(",") if value.strip()}
            if operator == "in":
                predicates.append(lambda labels, k=key, v=values: labels.get(k) in v)
            else:
                predicates.append(lambda labels, k=key, v=values: labels.get(k) not in v)
            continue
        compare = re.fullmatch(r"([^\s!=]+)\s*(==|=|!=)\s*([^\s,]*)", requirement)
        if compare:
            key, operator, value = compare.groups()
            if operator == "!=":
                predicates.append(lambda labels, k=key, v=value: labels.get(k) != v)
            else:
                predicates.append(lambda labels, k=key, v=value: k in labels and labels[k] == v)
            continue
        exists = re.fullmatch(r"(!?)([^\s!=(),]+)", requirement)
        if exists:
            negate, key = exists.groups()
            if negate:
                predicates.append(lambda labels, k=key: k not in labels)
            else:
                predicates.append(lambda labels, k=key: k in labels)
            continue
        raise ApiError(400, f"unable to parse requirement: <nil>: Invalid value: \"{requirement}\": "
                            "invalid label selector")
    return predicates


def field_value(obj: Mapping[str, Any], path: str) -> str:
    value: Any = obj
    for part in path.split("."):
        if not isinstance(value, Mapping):
            return ""
        value = value.get(part)
    if path == "source" and isinstance(obj.get("source"), Mapping):
        return str(obj["source"].get("component") or "")
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def parse_field_selector(text: str) -> list[Callable[[Mapping[str, Any]], bool]]:
    predicates: list[Callable[[Mapping[str, Any]], bool]] = []
    for requirement in _split_requirements(text):
        match = re.fullmatch(r"([A-Za-z0-9_.\-]+)\s*(==|=|!=)\s*(.*)", requirement)
        if not match:
            raise ApiError(400, f'invalid selector: \'{text}\'; can\'t understand \'{requirement}\'')
        path, operator, value = match.groups()
        if operator == "!=":
            predicates.append(lambda obj, p=path, v=value: field_value(obj, p) != v)
        else:
            predicates.append(lambda obj, p=path, v=value: field_value(obj, p) == v)
    return predicates


@dataclass
class Query:
    params: dict[str, list[str]]

    def get(self, key: str, default: str = "") -> str:
        values = self.params.get(key)
        return values[-1] if values else default

    def flag(self, key: str) -> bool:
        return self.get(key).lower() in ("true", "1")

    def number(self, key: str, default: int | None = None) -> int | None:
        raw = self.get(key)
        if not raw:
            return default
        try:
            return int(raw)
        except ValueError as error:
            raise ApiError(400, f"invalid value for {key}: {raw!r}") from error


@dataclass
class Filter:
    namespace: str | None
    labels: list[Predicate] = field(default_factory=list)
    fields: list[Callable[[Mapping[str, Any]], bool]] = field(default_factory=list)

    @classmethod
    def from_query(cls, namespace: str | None, query: Query) -> Filter:
        return cls(namespace, parse_label_selector(query.get("labelSelector")),
                   parse_field_selector(query.get("fieldSelector")))

    def matches(self, obj: Mapping[str, Any]) -> bool:
        meta = obj.get("metadata") or {}
        if self.namespace is not None and (meta.get("namespace") or "") != self.namespace:
            return False
        labels = meta.get("labels") or {}
        return all(p(labels) for p in self.labels) and all(p(obj) for p in self.fields)


# --- the object store (resourceVersions, watch history) ---------------------------------------------

@dataclass
class _Entry:
    raw: dict[str, Any]
    served: dict[str, Any]


@dataclass
class Snapshot:
    rv: int
    now: float
    state: dict[str, Any]
    cluster: controllers.Cluster
    items: dict[str, list[dict[str, Any]]]
    index: dict[str, dict[tuple[str, str], dict[str, Any]]]

    def get(self, resource: Resource, namespace: str | None, name: str) -> dict[str, Any] | None:
        return self.index[resource.plural].get((namespace or "", name))


def _with_resource_version(obj: Mapping[str, Any], rv: int) -> dict[str, Any]:
    served = dict(obj)
    meta = dict(obj.get("metadata") or {})
    meta["resourceVersion"] = str(rv)
    served["metadata"] = meta
    return served


class Store:
    """Loads state.json when it changes, reconciles, and numbers every object change."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self._lock = threading.Lock()
        self._signature: tuple[int, int, int] | None = None
        self._state: dict[str, Any] = {}
        self._rv = FIRST_RESOURCE_VERSION
        self._entries: dict[str, dict[tuple[str, str], _Entry]] = {r.plural: {} for r in RESOURCES}
        self._keys_by_id: dict[str, dict[int, tuple[str, str]]] = {r.plural: {} for r in RESOURCES}
        self._sorted: dict[str, list[dict[str, Any]]] = {r.plural: [] for r in RESOURCES}
        self._index: dict[str, dict[tuple[str, str], dict[str, Any]]] = {r.plural: {} for r in RESOURCES}
        self._encoded: dict[int, tuple[dict[str, Any], bytes]] = {}
        self._history: collections.deque[tuple[int, str, str, dict[str, Any]]] = collections.deque(maxlen=HISTORY_LIMIT)
        self._oldest_rv = FIRST_RESOURCE_VERSION
        self._snapshot: Snapshot | None = None
        self._snapshot_at = 0.0

    def _static_nodes(self) -> list[dict[str, Any]]:
        """The rest of the cluster, re-read only when its file is replaced (a lab reset)."""
        try:
            info = os.stat(Path(self.state_dir) / lab_state.STATIC_NODES_FILE)
            signature = (info.st_mtime_ns, info.st_size, info.st_ino)
        except FileNotFoundError:
            return []
        if signature != getattr(self, "_static_signature", None):
            self._static = lab_state.load_static_nodes(self.state_dir)
            self._static_signature = signature
        return self._static

    def state(self) -> dict[str, Any]:
        """The current state (cached by mtime/size/inode of state.json), normalised."""
        path = lab_state.state_path(self.state_dir)
        for _ in range(5):
            try:
                info = os.stat(path)
                signature = (info.st_mtime_ns, info.st_size, info.st_ino)
                if signature == self._signature:
                    return self._state
                loaded = lab_state.load(self.state_dir)
            except (FileNotFoundError, json.JSONDecodeError):
                time.sleep(0.01)
                continue
            static_nodes = self._static_nodes()
            if static_nodes:
                kube = loaded.setdefault("kube", {})
                kube["nodes"] = list(kube.get("nodes") or []) + static_nodes
            self._state = controllers.normalize(loaded)
            self._signature = signature
            return self._state
        return self._state

    @property
    def oldest_rv(self) -> int:
        return self._oldest_rv

    def refresh(self, *, force: bool = False) -> Snapshot:
        with self._lock:
            now = time.time()
            state = self.state()
            current = self._snapshot
            if (not force and current is not None and current.state is state
                    and now - self._snapshot_at < SNAPSHOT_REUSE_S):
                return current
            cluster = controllers.reconcile(state, node_view(state, now), now)
            for resource in RESOURCES:
                self._diff(resource.plural, cluster.collection(resource.plural))
            self._snapshot = Snapshot(self._rv, now, state, cluster, dict(self._sorted), dict(self._index))
            self._snapshot_at = now
            return self._snapshot

    def encoded(self, served: dict[str, Any]) -> bytes:
        """The compact JSON of a served object (cached while the object is current)."""
        cached = self._encoded.get(id(served))
        if cached is not None and cached[0] is served:
            return cached[1]
        data = json.dumps(served, separators=(",", ":")).encode()
        self._encoded[id(served)] = (served, data)
        return data

    def _record(self, plural: str, kind: str, served: dict[str, Any]) -> None:
        if len(self._history) == self._history.maxlen:
            self._oldest_rv = self._history[0][0]
        self._history.append((self._rv, plural, kind, served))

    def _forget(self, plural: str, entry: _Entry) -> None:
        self._keys_by_id[plural].pop(id(entry.raw), None)
        self._encoded.pop(id(entry.served), None)

    def _diff(self, plural: str, objects: Iterable[dict[str, Any]]) -> None:
        entries = self._entries[plural]
        keys_by_id = self._keys_by_id[plural]
        seen: set[tuple[str, str]] = set()
        changed = False
        for obj in objects:
            known = keys_by_id.get(id(obj))
            if known is not None and entries[known].raw is obj:
                seen.add(known)
                continue
            key = controllers.object_key(obj)
            seen.add(key)
            entry = entries.get(key)
            if entry is not None and entry.raw == obj:
                keys_by_id.pop(id(entry.raw), None)
                entry.raw = obj
                keys_by_id[id(obj)] = key
                continue
            self._rv += 1
            served = _with_resource_version(obj, self._rv)
            if entry is not None:
                self._forget(plural, entry)
            entries[key] = _Entry(obj, served)
            keys_by_id[id(obj)] = key
            self._record(plural, "ADDED" if entry is None else "MODIFIED", served)
            changed = True
        if len(seen) != len(entries):
            for key in [key for key in entries if key not in seen]:
                self._rv += 1
                entry = entries.pop(key)
                self._forget(plural, entry)
                self._record(plural, "DELETED", _with_resource_version(entry.served, self._rv))
                changed = True
        if changed:
            self._sorted[plural] = [entries[key].served for key in sorted(entries)]
            self._index[plural] = {key: entry.served for key, entry in entries.items()}

    def history_since(self, rv: int, plural: str) -> list[tuple[int, str, dict[str, Any]]]:
        with self._lock:
            picked = []
            for entry_rv, entry_plural, kind, obj in reversed(self._history):
                if entry_rv <= rv:
                    break
                if entry_plural == plural:
                    picked.append((entry_rv, kind, obj))
            picked.reverse()
            return picked


# --- discovery documents -------------------------------------------------------------------------------

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


# --- merge patches -----------------------------------------------------------------------------------------

def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch (also used for strategic merge: lists are replaced)."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if key.startswith("$"):
            continue
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def json_patch(target: Any, operations: list[Mapping[str, Any]]) -> Any:
    document = copy.deepcopy(target)
    for operation in operations:
        op, path = operation.get("op"), str(operation.get("path", ""))
        parts = [part.replace("~1", "/").replace("~0", "~") for part in path.split("/")[1:]]
        if not parts:
            raise ApiError(422, f"the server rejected our request due to an error in our request: invalid path {path!r}")
        parent = document
        for part in parts[:-1]:
            parent = parent[int(part)] if isinstance(parent, list) else parent.setdefault(part, {})
        last = parts[-1]
        if op in ("add", "replace"):
            if isinstance(parent, list):
                index = len(parent) if last == "-" else int(last)
                if op == "add":
                    parent.insert(index, operation.get("value"))
                else:
                    parent[index] = operation.get("value")
            else:
                parent[last] = operation.get("value")
        elif op == "remove":
            if isinstance(parent, list):
                parent.pop(int(last))
            else:
                parent.pop(last, None)
        elif op == "test":
            current = parent[int(last)] if isinstance(parent, list) else parent.get(last)
            if current != operation.get("value"):
                raise ApiError(422, f"the server rejected our request due to an error in our request: test failed at {path}")
        else:
            raise ApiError(422, f"the server rejected our request due to an error in our request: unsupported op {op!r}")
    return document


# --- the HTTP server ----------------------------------------------------------------------------------------

def _now_rfc3339() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _padded_answer(body: bytes, megabytes: float) -> bytes:
    """The JSON object `body` with an annotation of about `megabytes` MB (still valid, same meaning)."""
    try:
        document = json.loads(body)
    except ValueError:
        return body
    if isinstance(document, dict):
        metadata = document.setdefault("metadata", {})
        if isinstance(metadata, dict):
            metadata.setdefault("annotations", {})["lab.talos-gpu/padding"] = "x" * int(megabytes * 1024 * 1024)
    return json.dumps(document, separators=(",", ":")).encode()


def _fault_on(value: Any) -> bool:
    return value not in (None, False, 0, "", {}, [])


class LabApiServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, state_dir: Path, port: int, *, token: str, cert: Path, key: Path) -> None:
        self.store = Store(state_dir)
        self.token = token
        self.ssl_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ssl_context.load_cert_chain(str(cert), str(key))
        self.ssl_context.set_alpn_protocols(["http/1.1"])
        self.state_dir = state_dir
        self._request_log = open(state_dir / REQUEST_LOG, "a", encoding="utf-8", buffering=1)  # noqa: SIM115
        self._request_log_lock = threading.Lock()
        super().__init__(("127.0.0.1", port), ApiHandler)

    def record_request(self, method: str, path: str) -> None:
        """Append one JSON line to requests.log (line-buffered: on disk when this returns)."""
        line = json.dumps({"method": method, "path": path}, separators=(",", ":")) + "\n"
        with self._request_log_lock, contextlib.suppress(OSError, ValueError):
            self._request_log.write(line)

    def server_close(self) -> None:
        super().server_close()
        with self._request_log_lock:
            self._request_log.close()

    def verify_request(self, request: Any, client_address: Any) -> bool:
        try:
            faults = self.store.state().get("faults") or {}
        except Exception:  # noqa: BLE001 - a broken state must not stop the accept loop
            return True
        if _fault_on(faults.get("api_down")):
            return False
        if kube_api_down(self.store.state(), time.time()):
            # nothing listens on a wedged node's API port: the client's connection is reset at once
            with contextlib.suppress(OSError):
                request.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                request.close()
            return False
        return True

    def finish_request(self, request: Any, client_address: Any) -> None:
        with contextlib.suppress(OSError):
            request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        wrapped = self.ssl_context.wrap_socket(request, server_side=True, do_handshake_on_connect=False)
        wrapped.settimeout(ApiHandler.timeout)
        self.RequestHandlerClass(wrapped, client_address, self)

    def shutdown_request(self, request: Any) -> None:
        with contextlib.suppress(OSError):
            request.shutdown(socket.SHUT_RDWR)
        request.close()

    def handle_error(self, request: Any, client_address: Any) -> None:
        error = sys.exc_info()[1]
        if isinstance(error, OSError | ssl.SSLError | ConnectionError):
            return
        super().handle_error(request, client_address)


class StreamCut(Exception):
    """The watch_drop_after fault: end the stream abruptly."""


class ApiHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "lab-apiserver"
    sys_version = ""
    timeout = 120
    server: LabApiServer

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - BaseHTTPRequestHandler's name
        if os.environ.get("TALOS_GPU_LAB_API_LOG"):
            sys.stderr.write(f"{self.address_string()} {format % args}\n")

    # --- plumbing ---------------------------------------------------------------------------

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self._handle("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._handle("POST")

    def do_PUT(self) -> None:  # noqa: N802
        self._handle("PUT")

    def do_PATCH(self) -> None:  # noqa: N802
        self._handle("PATCH")

    def do_DELETE(self) -> None:  # noqa: N802
        self._handle("DELETE")

    def _send(self, code: int, body: bytes, content_type: str = "application/json",
              headers: Mapping[str, str] | None = None) -> None:
        rule = getattr(self, "answer_rule", None)
        cut = False
        if rule is not None and code == 200 and (content_type == "application/json" or rule.get("body") is not None):
            self.answer_rule = None
            if rule.get("body") is not None:
                body = str(rule["body"]).encode()
            if rule.get("pad_mb"):
                body = _padded_answer(body, float(rule["pad_mb"]))
            cut = bool(rule.get("cut"))
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-cache, private")
        self.send_header("Audit-Id", str(uuid.uuid4()))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if cut:  # the full length announced, half of it sent, then the connection dropped
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            raise StreamCut()
        self.wfile.write(body)

    def _send_json(self, code: int, body: Any) -> None:
        self._send(code, json.dumps(body, separators=(",", ":")).encode())

    def _send_error(self, error: ApiError) -> None:
        self._send(error.code, json.dumps(error.status(), separators=(",", ":")).encode(),
                   headers=getattr(error, "headers", None))

    def _start_stream(self, content_type: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Cache-Control", "no-cache, private")
        self.end_headers()
        self.wfile.flush()

    def _chunk(self, data: bytes) -> None:
        if data:
            self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            self.wfile.flush()

    def _end_stream(self) -> None:
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _handle(self, method: str) -> None:
        self.server.record_request(method, self.path)
        body = self._read_body()
        url = urlsplit(self.path)
        path = url.path.rstrip("/") or "/"
        query = Query(parse_qs(url.query, keep_blank_values=True))
        try:
            if path in HEALTH_PATHS:
                self._send(200, b"ok", "text/plain; charset=utf-8")
                return
            if self.headers.get("Authorization", "") != f"Bearer {self.server.token}":
                raise ApiError(401, "Unauthorized")
            state = self.server.store.state()
            latency_ms = float((state.get("knobs") or {}).get("api_latency_ms") or 0)
            if latency_ms > 0:
                time.sleep(latency_ms / 1000)
            self._apply_faults(state.get("faults") or {}, method, path)
            self._route(method, path, query, body)
        except ApiError as error:
            self._send_error(error)
        except StreamCut:
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError, TimeoutError):
            self.close_connection = True
        except Exception as error:  # noqa: BLE001 - answer 500 rather than drop the connection
            sys.stderr.write(f"lab apiserver: {method} {self.path}: {type(error).__name__}: {error}\n")
            with contextlib.suppress(Exception):
                self._send_error(ApiError(500, f"Internal error occurred: {type(error).__name__}: {error}"))

    def _apply_faults(self, faults: Mapping[str, Any], method: str, path: str) -> None:
        hang = faults.get("api_hang_s")
        if _fault_on(hang):
            seconds = float(hang.get("seconds", 0) if isinstance(hang, Mapping) else hang)
            pattern = hang.get("path_regex") if isinstance(hang, Mapping) else None
            if not pattern or re.search(pattern, path):
                time.sleep(seconds)
        self.answer_rule = None
        answers = faults.get("api_answer")
        for rule in (answers if isinstance(answers, list) else [answers]) if _fault_on(answers) else []:
            if isinstance(rule, Mapping) and (not rule.get("method") or str(rule["method"]).upper() == method) \
                    and re.search(str(rule.get("path_regex") or ".*"), path):
                self.answer_rule = rule
                break
        rules = faults.get("api_status")
        if not _fault_on(rules):
            return
        for rule in rules if isinstance(rules, list) else [rules]:
            if not isinstance(rule, Mapping):
                continue
            if rule.get("method") and str(rule["method"]).upper() != method:
                continue
            if re.search(str(rule.get("path_regex") or ".*"), path):
                code = int(rule.get("code") or 500)
                defaults = {
                    401: "Unauthorized",
                    403: f'forbidden: User "admin" cannot {method.lower()} path "{path}"',
                    404: "the server could not find the requested resource",
                    429: "Too many requests, please try again later.",
                    500: "Internal error occurred: etcdserver: request timed out",
                    503: "the server is currently unable to handle the request",
                }
                error = ApiError(code, str(rule.get("message") or defaults.get(code, "error")))
                if rule.get("retry_after") is not None:
                    error.headers = {"Retry-After": str(rule["retry_after"])}  # type: ignore[attr-defined]
                raise error

    # --- routing ------------------------------------------------------------------------------

    def _route(self, method: str, path: str, query: Query, body: bytes) -> None:
        if method == "GET":
            document = self._discovery(path)
            if document is not None:
                self._send_json(200, document)
                return
        match = _CORE_PATH.match(path)
        group, version = "", "v1"
        if match is None:
            match = _GROUP_PATH.match(path)
            if match is None:
                raise ApiError(404, "the server could not find the requested resource",
                               details={"causes": [{"reason": "UnexpectedServerResponse", "message": "404 page not found"}]})
            group, version = match.group("group"), match.group("ver")
        namespace, plural, name, sub = match.group("ns"), match.group("res"), match.group("name"), match.group("sub")
        resource = RESOURCE_BY_PATH.get((group, version, plural))
        if resource is not None and group in CRD_GROUPS and group not in served_groups(self.server.store.state()):
            resource = None  # the kind of a CRD not installed: 404 page not found, as for any unknown path
        if resource is None or (namespace is not None and not resource.namespaced):
            raise ApiError(404, "the server could not find the requested resource")
        if resource.namespaced is False:
            namespace = None
        if sub is not None:
            if resource.plural == "pods" and sub == "log" and method == "GET":
                self._pod_log(namespace or "default", name or "", query)
                return
            if sub == "status" and method == "GET":
                self._get(resource, namespace, name or "", query)
                return
            raise ApiError(404, "the server could not find the requested resource")
        if method == "GET":
            if name is None:
                self._list(resource, namespace, query)
            else:
                self._get(resource, namespace, name, query)
            return
        if resource.namespaced and namespace is None:
            raise ApiError(404, "the server could not find the requested resource")
        if not resource.writable:
            raise ApiError(405, f"the server does not allow this method on the requested resource ({method})")
        if method == "POST" and name is None:
            self._create(resource, namespace, body, query)
        elif method == "DELETE" and name is not None:
            self._delete(resource, namespace, name, query)
        elif method in ("PATCH", "PUT") and name is not None:
            self._update(resource, namespace, name, body, query, method)
        else:
            raise ApiError(405, f"the server does not allow this method on the requested resource ({method})")

    def _discovery(self, path: str) -> dict[str, Any] | None:
        if path == "/version":
            node_info = {}
            for node in (self.server.store.state().get("kube") or {}).get("nodes") or []:
                node_info = (node.get("status") or {}).get("nodeInfo") or {}
                break
            git_version = str(node_info.get("kubeletVersion") or "v1.34.1")
            numbers = re.findall(r"\d+", git_version)
            return {"major": numbers[0] if numbers else "1", "minor": numbers[1] if len(numbers) > 1 else "34",
                    "emulationMajor": numbers[0] if numbers else "1",
                    "emulationMinor": numbers[1] if len(numbers) > 1 else "34",
                    "gitVersion": git_version, "gitCommit": "93248f9ae092f571eb870b7664c534bfc7d00f03",
                    "gitTreeState": "clean", "buildDate": "2025-09-09T19:38:35Z", "goVersion": "go1.24.6",
                    "compiler": "gc", "platform": "linux/amd64"}
        if path == "/api":
            return {"kind": "APIVersions", "versions": ["v1"],
                    "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "10.5.0.2:6443"}]}
        groups = served_groups(self.server.store.state())
        if path == "/apis":
            return api_group_list(groups)
        if path == "/api/v1":
            return resource_list("", "v1")
        if path == "/openapi/v3":
            return openapi_v3_root(groups)
        if path.startswith("/openapi/v3/"):
            rest = path[len("/openapi/v3/"):].split("/")
            if rest[:2] == ["api", "v1"]:
                return openapi_v3_group("", "v1")
            if len(rest) == 3 and rest[0] == "apis":
                return openapi_v3_group(rest[1], rest[2])
            return None
        parts = path.split("/")
        if len(parts) == 3 and parts[1] == "apis" and parts[2] in groups:
            return api_group(parts[2])
        if len(parts) == 4 and parts[1] == "apis":
            return resource_list(parts[2], parts[3], groups)
        return None

    # --- reads ------------------------------------------------------------------------------------

    def _wants_table(self) -> bool:
        accept = self.headers.get("Accept", "")
        return "as=Table" in accept and "g=meta.k8s.io" in accept

    def _get(self, resource: Resource, namespace: str | None, name: str, query: Query) -> None:
        snapshot = self.server.store.refresh()
        obj = snapshot.get(resource, namespace, name)
        if obj is None:
            raise not_found(resource, name)
        if self._wants_table():
            self._send_json(200, tables.table(resource.kind, [obj], snapshot.now,
                                              include_object=query.get("includeObject", "Metadata"),
                                              list_metadata={"resourceVersion": obj["metadata"]["resourceVersion"]}))
        else:
            self._send_json(200, obj)

    def _list(self, resource: Resource, namespace: str | None, query: Query) -> None:
        selection = Filter.from_query(namespace, query)
        if query.flag("watch"):
            self._watch(resource, selection, query)
            return
        snapshot = self.server.store.refresh()
        items = [obj for obj in snapshot.items[resource.plural] if selection.matches(obj)]
        metadata: dict[str, Any] = {"resourceVersion": str(snapshot.rv)}
        limit = query.number("limit", 0) or 0
        token = query.get("continue")
        if token:
            try:
                decoded = json.loads(base64.urlsafe_b64decode(token.encode()))
                start = (decoded["start"][0], decoded["start"][1])
            except (ValueError, KeyError, IndexError, TypeError) as error:
                raise ApiError(400, "continue key is not valid: illegal base64 data at input byte 0") from error
            if int(decoded.get("rv", 0)) < self.server.store.oldest_rv:
                raise ApiError(410, "The provided continue parameter is too old to display a consistent list "
                                    "result. You can start a new list without the continue parameter.")
            items = [obj for obj in items if controllers.object_key(obj) > start]
        if limit > 0 and len(items) > limit:
            remaining = len(items) - limit
            items = items[:limit]
            last = controllers.object_key(items[-1])
            metadata["continue"] = base64.urlsafe_b64encode(
                json.dumps({"rv": snapshot.rv, "start": list(last)}).encode()).decode()
            metadata["remainingItemCount"] = remaining
        oversize = (snapshot.state.get("faults") or {}).get("api_oversize")
        if _fault_on(oversize):
            items = _padded(items, 100 if oversize is True else int(oversize))
        if self._wants_table():
            self._send_json(200, tables.table(resource.kind, items, snapshot.now,
                                              include_object=query.get("includeObject", "Metadata"),
                                              list_metadata=metadata))
            return
        head = json.dumps({"kind": f"{resource.kind}List", "apiVersion": resource.group_version,
                           "metadata": metadata}, separators=(",", ":")).encode()
        encode = self.server.store.encoded if not _fault_on(oversize) else (
            lambda obj: json.dumps(obj, separators=(",", ":")).encode())
        self._send(200, head[:-1] + b',"items":[' + b",".join(encode(obj) for obj in items) + b"]}")

    def _watch(self, resource: Resource, selection: Filter, query: Query) -> None:
        store = self.server.store
        snapshot = store.refresh()
        timeout = query.number("timeoutSeconds", DEFAULT_WATCH_TIMEOUT_S) or DEFAULT_WATCH_TIMEOUT_S
        faults = snapshot.state.get("faults") or {}
        drop_after = float(faults.get("watch_drop_after") or 0)
        started = time.monotonic()
        since = query.get("resourceVersion")
        if since not in ("", "0") and not since.isdigit():
            raise ApiError(400, f"invalid resource version: {since}")
        self._start_stream("application/json")
        visible: set[tuple[str, str]] = set()
        table = self._wants_table()

        def send(kind: str, obj: dict[str, Any]) -> None:
            if drop_after and time.monotonic() - started >= drop_after:
                raise StreamCut()
            payload = obj
            if table:
                payload = tables.table(resource.kind, [obj], time.time(), include_object="Object")
            self._chunk(json.dumps({"type": kind, "object": payload}, separators=(",", ":")).encode() + b"\n")

        def deliver(kind: str, obj: dict[str, Any]) -> None:
            key = controllers.object_key(obj)
            if kind == "DELETED":
                if key in visible or selection.matches(obj):
                    visible.discard(key)
                    send("DELETED", obj)
            elif selection.matches(obj):
                send("ADDED" if kind == "ADDED" or key not in visible else "MODIFIED", obj)
                visible.add(key)
            elif key in visible:
                visible.discard(key)
                send("DELETED", obj)

        if since in ("", "0"):
            last = snapshot.rv
            for obj in snapshot.items[resource.plural]:
                if selection.matches(obj):
                    visible.add(controllers.object_key(obj))
                    send("ADDED", obj)
        else:
            last = int(since)
            if last < store.oldest_rv:
                expired = ApiError(410, f"too old resource version: {last} ({store.oldest_rv})", reason="Expired")
                send("ERROR", expired.status())
                self._end_stream()
                return
            visible = {controllers.object_key(o) for o in snapshot.items[resource.plural] if selection.matches(o)}
            for _, kind, obj in store.history_since(last, resource.plural):
                deliver(kind, obj)
            last = snapshot.rv
        while time.monotonic() - started < timeout:
            if drop_after and time.monotonic() - started >= drop_after:
                raise StreamCut()
            time.sleep(WATCH_POLL_S)
            if self._client_gone():
                self.close_connection = True
                return
            snapshot = store.refresh()
            for _, kind, obj in store.history_since(last, resource.plural):
                deliver(kind, obj)
            last = max(last, snapshot.rv)
        self._end_stream()

    def _pod_log(self, namespace: str, name: str, query: Query) -> None:
        snapshot = self.server.store.refresh()
        pods = RESOURCE_BY_PATH[("", "v1", "pods")]
        pod = snapshot.get(pods, namespace, name)
        if pod is None:
            raise not_found(pods, name)
        container = self._log_container(pod, query.get("container"))
        if not (pod.get("spec") or {}).get("nodeName"):
            raise ApiError(400, f"pod {name} does not have a host assigned")
        if not snapshot.cluster.kubelet_reachable:
            address = snapshot.cluster.node_address
            raise ApiError(500, f'Get "https://{address}:10250/containerLogs/{namespace}/{name}/{container}": '
                                f"dial tcp {address}:10250: connect: connection refused")
        entry = snapshot.cluster.logs.get((namespace, name, container), controllers.ContainerLog())
        if entry.waiting_reason:
            raise ApiError(400, f'container "{container}" in pod "{name}" is waiting to start: {entry.waiting_reason}')
        tail = query.number("tailLines")
        limit_bytes = query.number("limitBytes")
        lines = entry.lines[-tail:] if tail is not None and tail >= 0 else list(entry.lines)
        if tail == 0:
            lines = []
        start_time = _container_start(pod, container)

        def render(batch: list[str]) -> bytes:
            if query.flag("timestamps"):
                batch = [f"{start_time} {line}" for line in batch]
            return "".join(f"{line}\n" for line in batch).encode()

        if not query.flag("follow"):
            data = render(lines)
            if limit_bytes:
                data = data[:limit_bytes]
            self._send(200, data, "text/plain")
            return
        faults = snapshot.state.get("faults") or {}
        drop_after = float(faults.get("watch_drop_after") or 0)
        started = time.monotonic()
        self._start_stream("text/plain")
        self._chunk(render(lines))
        sent = len(entry.lines)
        running = entry.running
        while running:
            if drop_after and time.monotonic() - started >= drop_after:
                raise StreamCut()
            time.sleep(WATCH_POLL_S * 2)
            if self._client_gone():
                self.close_connection = True
                return
            snapshot = self.server.store.refresh()
            current = snapshot.cluster.logs.get((namespace, name, container))
            if current is None or snapshot.get(pods, namespace, name) is None:
                break
            if len(current.lines) > sent:
                self._chunk(render(current.lines[sent:]))
                sent = len(current.lines)
            running = current.running
        self._end_stream()

    def _client_gone(self) -> bool:
        """Whether the client of a stream has hung up (a stream otherwise only notices on its next write)."""
        try:
            readable, _, _ = select.select([self.connection], [], [], 0)
        except (OSError, ValueError):
            return True
        if not readable:
            return False
        try:
            self.connection.settimeout(0.01)
            data = self.connection.recv(1)
        except (ssl.SSLWantReadError, TimeoutError):
            return False
        except OSError:
            return True
        finally:
            with contextlib.suppress(OSError):
                self.connection.settimeout(self.timeout)
        return data == b""

    def _log_container(self, pod: Mapping[str, Any], wanted: str) -> str:
        names = [c.get("name", "") for c in (pod.get("spec") or {}).get("containers") or []]
        name = pod["metadata"]["name"]
        if wanted:
            if wanted not in names:
                raise ApiError(400, f"container {wanted} is not valid for pod {name}")
            return wanted
        if len(names) == 1:
            return names[0]
        raise ApiError(400, f"a container name must be specified for pod {name}, choose one of: [{' '.join(names)}]")

    # --- writes -----------------------------------------------------------------------------------

    def _parse_body(self, body: bytes) -> Any:
        if not body:
            raise ApiError(400, "the body of the request was in an unknown format - accepted media types include: "
                                "application/json, application/yaml")
        try:
            return json.loads(body)
        except ValueError:
            pass
        try:
            import yaml

            return yaml.safe_load(body.decode())
        except Exception as error:  # noqa: BLE001 - any parse failure is the client's
            raise ApiError(400, f"the body of the request was in an unknown format: {error}") from error

    def _create(self, resource: Resource, namespace: str | None, body: bytes, query: Query) -> None:
        obj = self._parse_body(body)
        if not isinstance(obj, dict):
            raise ApiError(400, "the body of the request was in an unknown format")
        created = self._admit_create(resource, namespace, obj)
        if query.get("dryRun") == "All":
            self._send_json(201, created)
            return
        key = controllers.object_key(created)
        with lab_state.mutate(self.server.state_dir) as state:
            collection = state.setdefault("kube", {}).setdefault(resource.plural, [])
            if any(controllers.object_key(existing) == key for existing in collection):
                raise ApiError(409, f'{resource.qualified} "{key[1]}" already exists',
                               details={"name": key[1], **({"group": resource.group} if resource.group else {}),
                                        "kind": resource.plural})
            collection.append(created)
            if resource.plural == "pods":
                # creationTimestamp has whole seconds; the pod's timeline needs the precise moment
                started = state.setdefault("kubeapi", {}).setdefault("created_at", {})
                started[created["metadata"]["uid"]] = time.time()
        snapshot = self.server.store.refresh(force=True)
        stored = snapshot.get(resource, namespace, key[1])
        if stored is not None:
            created["metadata"]["resourceVersion"] = stored["metadata"]["resourceVersion"]
        self._send_json(201, created)

    def _admit_create(self, resource: Resource, namespace: str | None, obj: dict[str, Any]) -> dict[str, Any]:
        """Defaulting and validation of a new object, as the API server's admission does."""
        obj = copy.deepcopy(obj)
        api_version, kind = obj.get("apiVersion"), obj.get("kind")
        if (api_version and api_version != resource.group_version) or (kind and kind != resource.kind):
            raise ApiError(400, f"the API version in the data ({api_version}) does not match the expected API "
                                f"version ({resource.group_version})" if api_version != resource.group_version else
                                f"the kind in the data ({kind}) does not match the expected kind ({resource.kind})")
        obj["apiVersion"], obj["kind"] = resource.group_version, resource.kind
        meta = obj.setdefault("metadata", {})
        if resource.namespaced:
            if meta.get("namespace") and meta["namespace"] != namespace:
                raise ApiError(400, "the namespace of the provided object does not match the namespace sent on the request")
            meta["namespace"] = namespace
            snapshot = self.server.store.refresh()
            if snapshot.get(RESOURCE_BY_PATH[("", "v1", "namespaces")], None, namespace or "") is None:
                raise ApiError(404, f'namespaces "{namespace}" not found',
                               details={"name": namespace, "kind": "namespaces"})
        if not meta.get("name"):
            if meta.get("generateName"):
                meta["name"] = meta["generateName"] + controllers.pod_suffix(str(uuid.uuid4()))
            else:
                raise self._invalid(resource, "", "metadata.name", "Required value",
                                    "name or generateName is required")
        if not re.fullmatch(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?", meta["name"]) or len(meta["name"]) > 253:
            raise self._invalid(resource, meta["name"], "metadata.name", f'Invalid value: "{meta["name"]}"',
                                "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, "
                                "'-' or '.', and must start and end with an alphanumeric character")
        for server_field in ("resourceVersion", "uid", "creationTimestamp", "managedFields", "deletionTimestamp"):
            meta.pop(server_field, None)
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = _now_rfc3339()
        if resource.plural == "pods":
            self._admit_pod(obj)
        elif resource.plural == "runtimeclasses":
            if not obj.get("handler"):
                raise self._invalid(resource, meta["name"], "handler", "Required value", "")
        elif resource.plural == "daemonsets":
            self._admit_daemonset(obj)
            meta["generation"] = 1
            meta.setdefault("annotations", {})["deprecated.daemonset.template.generation"] = "1"
        elif resource.plural == "namespaces":
            obj["status"] = {"phase": "Active"}
            obj.setdefault("spec", {"finalizers": ["kubernetes"]})
            meta.setdefault("labels", {})["kubernetes.io/metadata.name"] = meta["name"]
        elif resource.plural == "nodes":
            obj.setdefault("status", {})
        return obj

    def _invalid(self, resource: Resource, name: str, field_path: str, what: str, detail: str) -> ApiError:
        message = f'{resource.kind}{"." + resource.group if resource.group else ""} "{name}" is invalid: {field_path}: {what}'
        if detail:
            message += f": {detail}"
        causes = [{"reason": "FieldValueRequired" if what == "Required value" else "FieldValueInvalid",
                   "message": f"{what}{': ' + detail if detail else ''}", "field": field_path}]
        return ApiError(422, message, details={"name": name, **({"group": resource.group} if resource.group else {}),
                                               "kind": resource.kind, "causes": causes})

    def _admit_pod(self, pod: dict[str, Any]) -> None:
        pods = RESOURCE_BY_PATH[("", "v1", "pods")]
        name = pod["metadata"]["name"]
        spec = pod.setdefault("spec", {})
        containers = spec.get("containers") or []
        if not containers:
            raise self._invalid(pods, name, "spec.containers", "Required value", "")
        for index, container in enumerate(containers):
            if not container.get("name"):
                raise self._invalid(pods, name, f"spec.containers[{index}].name", "Required value", "")
            if not container.get("image"):
                raise self._invalid(pods, name, f"spec.containers[{index}].image", "Required value", "")
            container.setdefault("imagePullPolicy", "IfNotPresent")
            container.setdefault("resources", {})
            container.setdefault("terminationMessagePath", "/dev/termination-log")
            container.setdefault("terminationMessagePolicy", "File")
            limits = (container.get("resources") or {}).get("limits") or {}
            if "nvidia.com/gpu" in limits:
                container["resources"].setdefault("requests", {}).setdefault("nvidia.com/gpu", limits["nvidia.com/gpu"])
        spec.setdefault("restartPolicy", "Always")
        spec.setdefault("dnsPolicy", "ClusterFirst")
        spec.setdefault("schedulerName", "default-scheduler")
        spec.setdefault("terminationGracePeriodSeconds", 30)
        spec.setdefault("serviceAccountName", "default")
        spec.setdefault("enableServiceLinks", True)
        tolerations = spec.setdefault("tolerations", [])
        for key in ("node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable"):
            if not any(t.get("key") == key for t in tolerations):
                tolerations.append({"key": key, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300})
        class_name = spec.get("runtimeClassName")
        if class_name:
            snapshot = self.server.store.refresh()
            runtime_class = snapshot.get(RESOURCE_BY_PATH[("node.k8s.io", "v1", "runtimeclasses")], None, class_name)
            if runtime_class is None:
                raise ApiError(403, f'pods "{name}" is forbidden: pod rejected: RuntimeClass "{class_name}" not found',
                               details={"name": name, "kind": "pods"})
            overhead = runtime_class.get("overhead")
            if overhead:
                spec["overhead"] = overhead.get("podFixed")
        pod["status"] = {"phase": "Pending", "qosClass": "BestEffort"}

    def _admit_daemonset(self, ds: dict[str, Any]) -> None:
        daemonsets = RESOURCE_BY_PATH[("apps", "v1", "daemonsets")]
        name = ds["metadata"]["name"]
        spec = ds.setdefault("spec", {})
        selector = (spec.get("selector") or {}).get("matchLabels") or {}
        template = spec.get("template") or {}
        labels = (template.get("metadata") or {}).get("labels") or {}
        if not spec.get("selector"):
            raise self._invalid(daemonsets, name, "spec.selector", "Required value", "")
        if any(labels.get(key) != value for key, value in selector.items()):
            raise self._invalid(daemonsets, name, "spec.template.metadata.labels",
                                f"Invalid value: {json.dumps(labels)}", "`selector` does not match template `labels`")
        if not (template.get("spec") or {}).get("containers"):
            raise self._invalid(daemonsets, name, "spec.template.spec.containers", "Required value", "")
        spec.setdefault("updateStrategy", {"type": "RollingUpdate",
                                           "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}})
        spec.setdefault("revisionHistoryLimit", 10)
        ds["status"] = {"currentNumberScheduled": 0, "numberMisscheduled": 0, "desiredNumberScheduled": 0,
                        "numberReady": 0}

    def _delete(self, resource: Resource, namespace: str | None, name: str, query: Query) -> None:
        snapshot = self.server.store.refresh()
        current = snapshot.get(resource, namespace, name)
        if current is None:
            raise not_found(resource, name)
        key = (namespace or "", name)
        with lab_state.mutate(self.server.state_dir) as state:
            kube = state.setdefault("kube", {})
            collection = kube.setdefault(resource.plural, [])
            kept = [obj for obj in collection if controllers.object_key(obj) != key]
            if len(kept) != len(collection):
                kube[resource.plural] = kept
                (state.get("kubeapi") or {}).get("created_at", {}).pop(current["metadata"].get("uid"), None)
                if resource.plural == "namespaces":
                    for plural in ("pods", "daemonsets", "events"):
                        kube[plural] = [o for o in kube.get(plural) or [] if (o.get("metadata") or {}).get("namespace") != name]
            elif resource.plural == "pods" and (current["metadata"].get("ownerReferences") or []):
                owner = current["metadata"]["ownerReferences"][0]
                _note_pod_recreated(state, {"metadata": {"namespace": namespace, "name": owner.get("name")}})
            else:
                raise not_found(resource, name)
        self.server.store.refresh(force=True)
        if resource.plural == "pods":
            gone = copy.deepcopy(current)
            gone["metadata"]["deletionTimestamp"] = _now_rfc3339()
            gone["metadata"]["deletionGracePeriodSeconds"] = 0
            self._send_json(200, gone)
            return
        self._send_json(200, {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                              "details": {"name": name, **({"group": resource.group} if resource.group else {}),
                                          "kind": resource.plural, "uid": current["metadata"].get("uid")}})

    def _update(self, resource: Resource, namespace: str | None, name: str, body: bytes, query: Query,
                method: str) -> None:
        content_type = (self.headers.get("Content-Type") or "application/json").split(";")[0].strip()
        patch = self._parse_body(body)
        key = (namespace or "", name)
        snapshot = self.server.store.refresh()
        served = snapshot.get(resource, namespace, name)
        if method == "PUT" and isinstance(patch, dict):
            wanted_rv = (patch.get("metadata") or {}).get("resourceVersion")
            if wanted_rv and served is not None and wanted_rv != served["metadata"]["resourceVersion"]:
                raise ApiError(409, f'Operation cannot be fulfilled on {resource.qualified} "{name}": the object has '
                                    "been modified; please apply your changes to the latest version and try again",
                               reason="Conflict", details={"name": name, "kind": resource.plural})
        created_by_apply = False
        with lab_state.mutate(self.server.state_dir) as state:
            collection = state.setdefault("kube", {}).setdefault(resource.plural, [])
            index = next((i for i, obj in enumerate(collection) if controllers.object_key(obj) == key), None)
            if index is None:
                if method == "PATCH" and content_type == "application/apply-patch+yaml" and isinstance(patch, dict):
                    collection.append(self._admit_create(resource, namespace, patch))
                    created_by_apply = True
                else:
                    raise not_found(resource, name)
            else:
                stored = collection[index]
                if method == "PUT":
                    updated = copy.deepcopy(patch)
                elif content_type == "application/json-patch+json":
                    updated = json_patch(stored, patch if isinstance(patch, list) else [])
                else:
                    updated = merge_patch(stored, patch)
                meta = updated.setdefault("metadata", {})
                for fixed in ("uid", "creationTimestamp", "name", "namespace"):
                    if fixed in stored.get("metadata", {}):
                        meta[fixed] = stored["metadata"][fixed]
                meta.pop("resourceVersion", None)
                updated["apiVersion"], updated["kind"] = resource.group_version, resource.kind
                if resource.plural in ("nodes", "daemonsets", "pods") and "status" in stored:
                    updated["status"] = stored["status"]
                if resource.plural == "daemonsets" and updated.get("spec") != stored.get("spec"):
                    meta["generation"] = int(stored.get("metadata", {}).get("generation") or 1) + 1
                    if updated["spec"].get("template") != stored["spec"].get("template"):
                        _note_pod_recreated(state, stored)
                if resource.plural == "nodes":
                    for ds in state["kube"].get("daemonsets") or []:
                        if (controllers.daemonset_schedulable(ds, updated)
                                and not controllers.daemonset_schedulable(ds, stored)):
                            _note_pod_recreated(state, ds)
                if query.get("dryRun") != "All":
                    collection[index] = updated
        snapshot = self.server.store.refresh(force=True)
        result = snapshot.get(resource, namespace, name)
        self._send_json(201 if created_by_apply else 200, result)


def _note_pod_recreated(state: dict[str, Any], ds: Mapping[str, Any]) -> None:
    """The DaemonSet controller (re)creates the DaemonSet's pod now (a new name, a fresh start)."""
    meta = ds.get("metadata") or {}
    recreated = state.setdefault("kubeapi", {}).setdefault("recreated", {})
    recreated[f"{meta.get('namespace')}/{meta.get('name')}"] = time.time()


def _container_start(pod: Mapping[str, Any], container: str) -> str:
    for status in (pod.get("status") or {}).get("containerStatuses") or []:
        if status.get("name") == container:
            state = status.get("state") or {}
            started = (state.get("running") or state.get("terminated") or {}).get("startedAt")
            if started:
                return started.replace("Z", ".000000000Z")
    return _now_rfc3339().replace("Z", ".000000000Z")


def _padded(items: list[dict[str, Any]], factor: int) -> list[dict[str, Any]]:
    padded = []
    for item in items:
        size = len(json.dumps(item, separators=(",", ":")))
        copy_ = dict(item)
        meta = dict(item.get("metadata") or {})
        meta["annotations"] = {**(meta.get("annotations") or {}), "lab.talos-gpu.dev/padding": "x" * (size * (factor - 1))}
        copy_["metadata"] = meta
        padded.append(copy_)
    return padded


def serve(state_dir: Path, port: int = 0, *, port_file: Path | None = None) -> None:
    """Run the API server for `state_dir` until SIGTERM/SIGINT; write the bound port to `port_file`."""
    token = (state_dir / TOKEN_FILE).read_text().strip()
    server = LabApiServer(state_dir, port, token=token, cert=state_dir / "server.crt", key=state_dir / "server.key")
    server.store.refresh()
    bound = server.server_address[1]
    target = port_file or state_dir / PORT_FILE
    temporary = target.with_name(target.name + ".tmp")
    temporary.write_text(f"{bound}\n")
    os.replace(temporary, target)
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()
