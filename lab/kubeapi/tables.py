"""Server-side printing: the meta.k8s.io/v1 Table kubectl asks for (`Accept: ...;as=Table;v=v1;g=meta.k8s.io`).

Columns and cell texts follow kube-apiserver's printers (pkg/printers/internalversion) for the kinds
the lab serves, so `kubectl get nodes,ds,pods -A`, `kubectl get runtimeclass` and `kubectl get
events -A` print as they do against a real cluster. Priority-1 columns are the `-o wide` ones.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from lab.kubeapi.controllers import parse_time

Column = tuple[str, str, str, int, str]  # name, type, format, priority, description
Row = list[Any]


def human_duration(seconds: float) -> str:
    """k8s.io/apimachinery/pkg/util/duration.HumanDuration."""
    whole = int(seconds)
    if whole < -1:
        return "<invalid>"
    if whole < 0:
        return "0s"
    if whole < 120:
        return f"{whole}s"
    minutes = whole // 60
    if minutes < 10:
        rest = whole % 60
        return f"{minutes}m{rest}s" if rest else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    hours = whole // 3600
    if hours < 8:
        rest = minutes % 60
        return f"{hours}h{rest}m" if rest else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        rest = hours % 24
        return f"{hours // 24}d{rest}h" if rest else f"{hours // 24}d"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        days = (hours // 24) % 365
        return f"{hours // 24 // 365}y{days}d" if days else f"{hours // 24 // 365}y"
    return f"{hours // 24 // 365}y"


def _age(obj: Mapping[str, Any], now: float) -> str:
    created = (obj.get("metadata") or {}).get("creationTimestamp")
    if not created:
        return "<unknown>"
    return human_duration(now - parse_time(created, now))


def _name(obj: Mapping[str, Any]) -> str:
    return (obj.get("metadata") or {}).get("name", "")


def _labels_text(selector: Mapping[str, str] | None) -> str:
    if not selector:
        return "<none>"
    return ",".join(f"{key}={value}" for key, value in sorted(selector.items()))


# --- nodes --------------------------------------------------------------------------------------------

NODE_COLUMNS: list[Column] = [
    ("Name", "string", "name", 0, "Name must be unique within a namespace."),
    ("Status", "string", "", 0, "The status of the node"),
    ("Roles", "string", "", 0, "The roles of the node"),
    ("Age", "string", "", 0, "CreationTimestamp is a timestamp representing the server time when this object was created."),
    ("Version", "string", "", 0, "Kubelet Version reported by the node."),
    ("Internal-IP", "string", "", 1, "List of internal IPs for the node."),
    ("External-IP", "string", "", 1, "List of external IPs for the node."),
    ("OS-Image", "string", "", 1, "OS image reported by the node from /etc/os-release (e.g. Debian GNU/Linux 7 (wheezy))."),
    ("Kernel-Version", "string", "", 1, "Kernel Version reported by the node from 'uname -r' (e.g. 3.16.0-0.bpo.4-amd64)."),
    ("Container-Runtime", "string", "", 1, "Container runtime version reported by the node."),
]


def node_row(node: Mapping[str, Any], now: float) -> Row:
    status = node.get("status") or {}
    ready = next((c for c in status.get("conditions") or [] if c.get("type") == "Ready"), None)
    state = "Unknown"
    if ready is not None:
        state = "Ready" if ready.get("status") == "True" else "NotReady"
    if (node.get("spec") or {}).get("unschedulable"):
        state += ",SchedulingDisabled"
    labels = (node.get("metadata") or {}).get("labels") or {}
    roles = sorted(key.split("/", 1)[1] for key in labels if key.startswith("node-role.kubernetes.io/") and "/" in key)
    roles += [value for key, value in labels.items() if key == "kubernetes.io/role" and value]
    addresses = status.get("addresses") or []
    internal = next((a.get("address") for a in addresses if a.get("type") == "InternalIP"), "<none>")
    external = next((a.get("address") for a in addresses if a.get("type") == "ExternalIP"), "<none>")
    info = status.get("nodeInfo") or {}
    return [_name(node), state, ",".join(sorted(set(roles))) or "<none>", _age(node, now),
            info.get("kubeletVersion", ""), internal, external, info.get("osImage", "<unknown>"),
            info.get("kernelVersion", "<unknown>"), info.get("containerRuntimeVersion", "<unknown>")]


# --- pods ---------------------------------------------------------------------------------------------

POD_COLUMNS: list[Column] = [
    ("Name", "string", "name", 0, "Name must be unique within a namespace."),
    ("Ready", "string", "", 0, "The aggregate readiness state of this pod for accepting traffic."),
    ("Status", "string", "", 0, "The aggregate status of the containers in this pod."),
    ("Restarts", "string", "", 0, "The number of times the containers in this pod have been restarted and when the last container in this pod has restarted."),
    ("Age", "string", "", 0, "CreationTimestamp is a timestamp representing the server time when this object was created."),
    ("IP", "string", "", 1, "The IP address assigned to the pod"),
    ("Node", "string", "", 1, "The node that the pod is assigned to"),
    ("Nominated Node", "string", "", 1, "The node that the pod is nominated to run on"),
    ("Readiness Gates", "string", "", 1, "The readiness gates of the pod"),
]


def pod_status_text(pod: Mapping[str, Any]) -> str:
    """kubectl's STATUS column (printPod)."""
    status = pod.get("status") or {}
    reason = status.get("reason") or status.get("phase") or "Unknown"
    inits = status.get("initContainerStatuses") or []
    for index, container in enumerate(inits):  # an init container not done yet: Init:<done>/<all>, as printPod
        state = container.get("state") or {}
        terminated, waiting = state.get("terminated"), state.get("waiting")
        if terminated and terminated.get("exitCode") == 0:
            continue
        if terminated:
            return f"Init:{terminated.get('reason') or 'ExitCode:' + str(terminated.get('exitCode'))}"
        if waiting and waiting.get("reason") and waiting["reason"] != "PodInitializing":
            return f"Init:{waiting['reason']}"
        return f"Init:{index}/{len(inits)}"
    has_running = False
    for container in reversed(status.get("containerStatuses") or []):
        state = container.get("state") or {}
        waiting, terminated = state.get("waiting"), state.get("terminated")
        if waiting and waiting.get("reason"):
            reason = waiting["reason"]
        elif terminated and terminated.get("reason"):
            reason = terminated["reason"]
        elif terminated:
            reason = (f"Signal:{terminated['signal']}" if terminated.get("signal")
                      else f"ExitCode:{terminated.get('exitCode', 0)}")
        elif container.get("ready") and "running" in state:
            has_running = True
    if reason == "Completed" and has_running:
        ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or [])
        reason = "Running" if ready else "NotReady"
    if (pod.get("metadata") or {}).get("deletionTimestamp"):
        reason = "Terminating"
    return reason


def pod_row(pod: Mapping[str, Any], now: float) -> Row:
    status = pod.get("status") or {}
    containers = (pod.get("spec") or {}).get("containers") or []
    statuses = status.get("containerStatuses") or []
    ready = sum(1 for c in statuses if c.get("ready"))
    restarts = sum(int(c.get("restartCount") or 0) for c in statuses)
    restarts_text = str(restarts)
    last_finished = 0.0
    for container in statuses:
        terminated = (container.get("lastState") or {}).get("terminated") or {}
        if terminated.get("finishedAt"):
            last_finished = max(last_finished, parse_time(terminated["finishedAt"]))
    if restarts and last_finished:
        restarts_text = f"{restarts} ({human_duration(now - last_finished)} ago)"
    gates = (pod.get("spec") or {}).get("readinessGates") or []
    return [_name(pod), f"{ready}/{len(containers)}", pod_status_text(pod), restarts_text, _age(pod, now),
            status.get("podIP") or "<none>", (pod.get("spec") or {}).get("nodeName") or "<none>",
            status.get("nominatedNodeName") or "<none>", f"0/{len(gates)}" if gates else "<none>"]


# --- daemonsets -----------------------------------------------------------------------------------------

DAEMONSET_COLUMNS: list[Column] = [
    ("Name", "string", "name", 0, "Name must be unique within a namespace."),
    ("Desired", "integer", "", 0, "The total number of nodes that should be running the daemon pod (including nodes correctly running the daemon pod)."),
    ("Current", "integer", "", 0, "The number of nodes that are running at least 1 daemon pod and are supposed to run the daemon pod."),
    ("Ready", "integer", "", 0, "numberReady is the number of nodes that should be running the daemon pod and have one or more of the daemon pod running with a Ready Condition."),
    ("Up-to-date", "integer", "", 0, "The total number of nodes that are running updated daemon pod"),
    ("Available", "integer", "", 0, "The number of nodes that should be running the daemon pod and have one or more of the daemon pod running and available (ready for at least spec.minReadySeconds)"),
    ("Node Selector", "string", "", 0, "NodeSelector is a selector which must be true for the pod to fit on a node. Selector which must match a node's labels for the pod to be scheduled on that node."),
    ("Age", "string", "", 0, "CreationTimestamp is a timestamp representing the server time when this object was created."),
    ("Containers", "string", "", 1, "Names of each container in the template."),
    ("Images", "string", "", 1, "Images referenced by each container in the template."),
    ("Selector", "string", "", 1, "A label query over pods that are managed by the daemon set."),
]


def daemonset_row(ds: Mapping[str, Any], now: float) -> Row:
    status = ds.get("status") or {}
    spec = ds.get("spec") or {}
    template_spec = (spec.get("template") or {}).get("spec") or {}
    containers = template_spec.get("containers") or []
    return [_name(ds), int(status.get("desiredNumberScheduled") or 0), int(status.get("currentNumberScheduled") or 0),
            int(status.get("numberReady") or 0), int(status.get("updatedNumberScheduled") or 0),
            int(status.get("numberAvailable") or 0), _labels_text(template_spec.get("nodeSelector")), _age(ds, now),
            ",".join(c.get("name", "") for c in containers), ",".join(c.get("image", "") for c in containers),
            _labels_text((spec.get("selector") or {}).get("matchLabels"))]


# --- runtimeclasses, namespaces, leases ---------------------------------------------------------------

RUNTIMECLASS_COLUMNS: list[Column] = [
    ("Name", "string", "name", 0, "Name must be unique within a namespace."),
    ("Handler", "string", "", 0, "Handler specifies the underlying runtime and configuration that the CRI implementation will use to handle pods of this class."),
    ("Age", "string", "", 0, "CreationTimestamp is a timestamp representing the server time when this object was created."),
]


def runtimeclass_row(rc: Mapping[str, Any], now: float) -> Row:
    return [_name(rc), rc.get("handler", ""), _age(rc, now)]


NAMESPACE_COLUMNS: list[Column] = [
    ("Name", "string", "name", 0, "Name must be unique within a namespace."),
    ("Status", "string", "", 0, "The status of the namespace"),
    ("Age", "string", "", 0, "CreationTimestamp is a timestamp representing the server time when this object was created."),
]


def namespace_row(ns: Mapping[str, Any], now: float) -> Row:
    return [_name(ns), (ns.get("status") or {}).get("phase", "Active"), _age(ns, now)]


LEASE_COLUMNS: list[Column] = [
    ("Name", "string", "name", 0, "Name must be unique within a namespace."),
    ("Holder", "string", "", 0, "HolderIdentity contains the identity of the holder of a current lease."),
    ("Age", "string", "", 0, "CreationTimestamp is a timestamp representing the server time when this object was created."),
]


def lease_row(lease: Mapping[str, Any], now: float) -> Row:
    return [_name(lease), (lease.get("spec") or {}).get("holderIdentity", ""), _age(lease, now)]


# --- events ---------------------------------------------------------------------------------------------

EVENT_COLUMNS: list[Column] = [
    ("Last Seen", "string", "", 0, "Time when last this event was recorded"),
    ("Type", "string", "", 0, "Type of this event (Normal, Warning), new types could be added in the future."),
    ("Reason", "string", "", 0, "This should be a short, machine understandable string that gives the reason for this event being generated."),
    ("Object", "string", "", 0, "The object this Event is about"),
    ("Subobject", "string", "", 1, "The subobject this Event is about"),
    ("Source", "string", "", 1, "The component reporting this event. Should be a short machine understandable string."),
    ("Message", "string", "", 0, "A human-readable description of the status of this operation."),
    ("First Seen", "string", "", 1, "The time at which the event was first recorded. (Time of server receipt is in TypeMeta.)"),
    ("Count", "string", "", 1, "The number of times this event has occurred."),
    ("Name", "string", "name", 1, "Name must be unique within a namespace."),
]


def event_row(event: Mapping[str, Any], now: float) -> Row:
    first = parse_time(event.get("firstTimestamp"), 0.0)
    last = parse_time(event.get("lastTimestamp"), first)
    count = int(event.get("count") or 1)
    last_seen = human_duration(now - last) if last else "<unknown>"
    if count > 1 and first:
        last_seen = f"{last_seen} (x{count} over {human_duration(now - first)})"
    involved = event.get("involvedObject") or {}
    source = event.get("source") or {}
    source_text = source.get("component") or event.get("reportingComponent") or ""
    if source.get("host"):
        source_text += f", {source['host']}"
    return [last_seen, event.get("type", ""), event.get("reason", ""),
            f"{str(involved.get('kind', '')).lower()}/{involved.get('name', '')}", involved.get("fieldPath", ""),
            source_text, str(event.get("message", "")).strip(), human_duration(now - first) if first else "<unknown>",
            str(count), _name(event)]


CLUSTERPOLICY_COLUMNS: list[Column] = [  # the CRD's printer columns (clusterpolicy_types.go)
    ("Name", "string", "name", 0, "Name must be unique within a namespace."),
    ("Status", "string", "", 0, ""),
    ("Age", "string", "", 0, ""),
]


def clusterpolicy_row(policy: Mapping[str, Any], now: float) -> Row:
    return [_name(policy), str((policy.get("status") or {}).get("state") or ""),
            str((policy.get("metadata") or {}).get("creationTimestamp") or "")]


PRINTERS: dict[str, tuple[list[Column], Callable[[Mapping[str, Any], float], Row]]] = {
    "Node": (NODE_COLUMNS, node_row),
    "Pod": (POD_COLUMNS, pod_row),
    "DaemonSet": (DAEMONSET_COLUMNS, daemonset_row),
    "RuntimeClass": (RUNTIMECLASS_COLUMNS, runtimeclass_row),
    "Namespace": (NAMESPACE_COLUMNS, namespace_row),
    "Event": (EVENT_COLUMNS, event_row),
    "Lease": (LEASE_COLUMNS, lease_row),
    "ClusterPolicy": (CLUSTERPOLICY_COLUMNS, clusterpolicy_row),
}


def partial_metadata(obj: Mapping[str, Any]) -> dict[str, Any]:
    return {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": obj.get("metadata") or {}}


def table(kind: str, items: list[Mapping[str, Any]], now: float, *, include_object: str = "Metadata",
          list_metadata: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A meta.k8s.io/v1 Table for `items` of `kind`."""
    columns, printer = PRINTERS[kind]
    rows = []
    for item in items:
        row: dict[str, Any] = {"cells": printer(item, now)}
        if include_object == "Object":
            row["object"] = item
        elif include_object != "None":
            row["object"] = partial_metadata(item)
        rows.append(row)
    return {
        "kind": "Table", "apiVersion": "meta.k8s.io/v1",
        "metadata": dict(list_metadata or {}),
        "columnDefinitions": [
            {"name": name, "type": kind_, "format": fmt, "description": description, "priority": priority}
            for name, kind_, fmt, priority, description in columns
        ],
        "rows": rows,
    }
