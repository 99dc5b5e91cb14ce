"""The lab's Kubernetes API server: HTTPS on 127.0.0.1, bearer token, real-format JSON.

It serves the objects of ``state.json`` as the controllers (``lab.kubeapi.controllers``) make them
look *now*, to both the official Python ``kubernetes`` client and ``kubectl``: discovery
(``/version``, ``/api``, ``/apis``, resource lists, a minimal ``/openapi/v3`` so ``kubectl apply``
validates server-side), get/list/watch/create/delete/patch/update for namespaces, nodes, pods
(+ ``log``), events, daemonsets, runtimeclasses and leases, label and field selectors, ``limit`` /
``continue``, ``watch=true`` streams with resourceVersions (410 Gone when too old), server-side
Tables for kubectl, and real ``Status`` errors. Its parts: ``resources`` (the kinds, Status errors,
discovery documents), ``selectors`` (label/field selectors, the query), ``store`` (state.json reconciled,
resourceVersions, watch history), ``tables`` (kubectl's columns), ``lab/jsonpatch.py`` (JSON and merge
patches); this module is the HTTP side: routing, faults, reads, watches, logs, admission and writes.

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
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from lab import jsonpatch
from lab import state as lab_state
from lab.kubeapi import controllers, tables
from lab.kubeapi.resources import (
    CRD_GROUPS,
    RESOURCE_BY_PATH,
    ApiError,
    Resource,
    api_group,
    api_group_list,
    not_found,
    openapi_v3_group,
    openapi_v3_root,
    resource_list,
    served_groups,
)
from lab.kubeapi.selectors import (
    Filter,
    Query,
)
from lab.kubeapi.store import (
    Store,
)
from lab.node import kube_api_down

TOKEN_FILE = "apiserver.token"
PORT_FILE = "apiserver.port"
REQUEST_LOG = "requests.log"
WATCH_POLL_S = 0.1
DEFAULT_WATCH_TIMEOUT_S = 1800
HEALTH_PATHS = ("/healthz", "/livez", "/readyz")


# --- routing, patches ------------------------------------------------------------------------------------

_CORE_PATH = re.compile(r"^/api/v1/(?:namespaces/(?P<ns>[^/]+)/)?(?P<res>[^/]+)(?:/(?P<name>[^/]+)(?:/(?P<sub>[^/]+))?)?$")
_GROUP_PATH = re.compile(r"^/apis/(?P<group>[^/]+)/(?P<ver>[^/]+)/(?:namespaces/(?P<ns>[^/]+)/)?(?P<res>[^/]+)"
                         r"(?:/(?P<name>[^/]+)(?:/(?P<sub>[^/]+))?)?$")



def json_patch(target: Any, operations: list[Any]) -> Any:
    """An `application/json-patch+json` body (lab/jsonpatch.py), its errors as the API server answers them."""
    try:
        return jsonpatch.apply(target, operations)
    except jsonpatch.PatchError as error:
        what = {"invalid-path": f"invalid path {error.path!r}", "unsupported": f"unsupported op {error.op!r}",
                "test-failed": f"test failed at {error.path}", "invalid-operation": "invalid operation"}.get(
            error.kind, f"{error.op} operation does not apply: doc is missing path: {error.path!r}: missing value")
        raise ApiError(422, f"the server rejected our request due to an error in our request: {what}") from None


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
        if path == "/api/v1":
            return resource_list("", "v1")
        if path.startswith("/openapi/v3/"):
            rest = path[len("/openapi/v3/"):].split("/")
            if rest[:2] == ["api", "v1"]:
                return openapi_v3_group("", "v1")
            if len(rest) == 3 and rest[0] == "apis":
                return openapi_v3_group(rest[1], rest[2])
            return None
        parts = path.split("/")
        if path not in ("/apis", "/openapi/v3") and not (len(parts) in (3, 4) and parts[1] == "apis"):
            return None  # not a discovery path (most requests): the served groups are not needed
        groups = served_groups(self.server.store.state())
        if path == "/apis":
            return api_group_list(groups)
        if path == "/openapi/v3":
            return openapi_v3_root(groups)
        if len(parts) == 3 and parts[2] in groups:
            return api_group(parts[2])
        if len(parts) == 4:
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
                    updated = jsonpatch.merge(stored, patch)
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
