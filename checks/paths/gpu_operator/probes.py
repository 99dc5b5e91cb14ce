"""The facts only the gpu-operator path reads (Talos ≥ 1.13: CDI and the NVIDIA GPU Operator)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from checks.adapters.kube import KubeError
from checks.model import ProbeResult
from checks.paths.gpu_operator import kube
from checks.probes import (
    ProbeContext,
    node_name_guess,
    parse_off_loop,
    parser,
    parsers,
    pods_on_the_node,
    probe,
    talos_ls,
)

CDI_DIR = "/run/cdi"
CDI_SPEC = "nvidia.yaml"
# the operator's DaemonSets whose pods on the node this path judges (NVIDIA/gpu-operator assets/, label `app`)
DEVICE_PLUGIN_APP = "nvidia-device-plugin-daemonset"
VALIDATOR_APP = "nvidia-operator-validator"
NO_CRD = "no ClusterPolicy CRD"  # the value of a missing cluster_policy when the API does not serve the kind


@probe("cdi_specs", f"talosctl ls {CDI_DIR}", order=105)
async def probe_cdi_specs(ctx: ProbeContext) -> ProbeResult:
    """The CDI specs `ext-nvidia-cdi-gen` writes (`nvidia-ctk cdi generate --output /run/cdi/nvidia.yaml`)."""
    return await talos_ls(ctx, "cdi_specs", CDI_DIR)


@probe("helm_releases", "helm list -A", order=155)
async def probe_helm_releases(ctx: ProbeContext) -> ProbeResult:
    """Every release: the operator's, and the old path's device-plugin chart left behind."""
    source = "helm list -A"
    if ctx.helm is None:
        return ProbeResult("helm_releases", source, error="helm not found (set $HELM or install helm)")
    result = await ctx.helm.run("list", "-A", "-o", "json", timeout=min(20.0, ctx.remaining()))
    if not result.ok:
        return ProbeResult("helm_releases", source, error=f"{source}: {result.failure_reason()}")
    releases = await parse_off_loop(parser("parse_helm_list_json"), result.stdout)
    if parsers().is_error(releases):
        return ProbeResult("helm_releases", source, error=f"{source}: output not understood ({releases})")
    return ProbeResult("helm_releases", source, value=list(releases))


@probe("operator_namespace", "Kubernetes Namespace of the GPU Operator", order=175, kube=True)
async def probe_operator_namespace(ctx: ProbeContext) -> ProbeResult:
    name = ctx.profile.gpu_operator.namespace
    source = f"kubectl get namespace {name}"
    try:
        value = await ctx.call_kube(lambda r: kube.read_namespace(r, name))
    except KubeError as exc:
        return ProbeResult("operator_namespace", source, missing=exc.is_not_found,
                           error=None if exc.is_not_found else exc.message)
    return ProbeResult("operator_namespace", source, value=value)


@probe("cluster_policy", f"kubectl get clusterpolicy {kube.CLUSTER_POLICY}", order=176, kube=True, light=True)
async def probe_cluster_policy(ctx: ProbeContext) -> ProbeResult:
    source = f"kubectl get clusterpolicy {kube.CLUSTER_POLICY}"
    try:
        value = await ctx.call_kube(kube.read_cluster_policy)
    except KubeError as exc:
        # 404: no such object; or no such kind: the ClusterPolicy CRD comes with the operator's chart
        if exc.kind == "notserved":
            return ProbeResult("cluster_policy", source, value=NO_CRD, missing=True)
        return ProbeResult("cluster_policy", source, missing=exc.is_not_found,
                           error=None if exc.is_not_found else exc.message)
    return ProbeResult("cluster_policy", source, value=value)


@dataclass
class OperatorPods:
    node: str
    device_plugin: list[dict[str, Any]]
    validator: list[dict[str, Any]]


def _app(pod: dict[str, Any]) -> str:
    meta = pod.get("metadata") or {}
    app = (meta.get("labels") or {}).get("app")
    if app:
        return str(app)
    owners = [o.get("name") for o in meta.get("ownerReferences") or [] if o.get("kind") == "DaemonSet"]
    return str(owners[0]) if owners else ""


@probe("operator_pods", "Kubernetes pods of the GPU Operator on the node", order=185, kube=True, light=True)
async def probe_operator_pods(ctx: ProbeContext) -> ProbeResult:
    namespace = ctx.profile.gpu_operator.namespace
    # the pods on the Node's likely name are listed while the Node is read (again only if it is called otherwise)
    found = await pods_on_the_node(ctx, namespace, await node_name_guess(ctx))
    if found is None:
        return ProbeResult("operator_pods", f"pods in {namespace} on the node", error="the node is not known")
    name, pods = found
    source = f"kubectl get pods -n {namespace} --field-selector spec.nodeName={name}"
    pods = sorted(pods, key=lambda pod: str((pod.get("metadata") or {}).get("name")))
    return ProbeResult("operator_pods", source, value=OperatorPods(
        name, [p for p in pods if _app(p) == DEVICE_PLUGIN_APP], [p for p in pods if _app(p) == VALIDATOR_APP]))
