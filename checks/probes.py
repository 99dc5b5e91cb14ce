"""Probes: each gathers one fact, once per sweep, however many stages read it.

A probe is an async function of the `ProbeContext`. `ctx.get(name)` starts a probe the first time it
is asked for and hands every later caller the same result, so a sweep starts them all at once and
its wall time is about its slowest probe. The talosctl probes start first; the `kubernetes` client
is imported in a worker thread meanwhile (it costs ~0.5 s of one core).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import anyio

from checks import parsers
from checks.adapters.kube import KubeError, KubeReader
from checks.adapters.tools import Helm, Talosctl
from checks.config import KubeTarget, TalosTarget
from checks.errors import one_line
from checks.model import ProbeResult
from checks.profile import Profile
from checks.runner import CommandResult

DEVICE_PLUGIN_LABEL = "app.kubernetes.io/name=nvidia-device-plugin"
STATIC_MANIFEST_LABEL = "name=nvidia-device-plugin-ds"
POD_LOG_TAIL = 200


@dataclass
class ProbeContext:
    talos: TalosTarget
    kube: KubeTarget
    profile: Profile
    talosctl: Talosctl
    helm: Helm | None
    deadline: float  # time.monotonic() by which the sweep must end
    pod_test: bool = False
    kube_request_timeout: float = 5.0
    _tasks: dict[str, anyio.Event] = field(default_factory=dict)
    _results: dict[str, ProbeResult] = field(default_factory=dict)
    _reader: KubeReader | None = None
    _reader_error: str | None = None
    _reader_lock: anyio.Lock = field(default_factory=anyio.Lock)

    def remaining(self) -> float:
        return max(0.1, self.deadline - time.monotonic())

    async def get(self, name: str) -> ProbeResult:
        if name in self._results:
            return self._results[name]
        if name in self._tasks:
            await self._tasks[name].wait()
            return self._results[name]
        done = anyio.Event()
        self._tasks[name] = done
        started = time.monotonic()
        probe = PROBES[name]
        try:
            result = await probe.run(self)
        except KubeError as exc:
            result = ProbeResult(name, probe.source, error=exc.message, missing=exc.is_not_found)
        except Exception as exc:  # noqa: BLE001 - a probe bug must not crash the sweep
            result = ProbeResult(name, probe.source, error=f"internal error in probe {name}: {one_line(exc)}")
        result = ProbeResult(
            result.name, result.source, result.value, result.error, result.missing,
            int((time.monotonic() - started) * 1000),
        )
        self._results[name] = result
        done.set()
        return result

    def seed(self, result: ProbeResult) -> None:
        """Use a fact already known (from the previous sweep) instead of probing again."""
        self._results[result.name] = result

    def results(self) -> dict[str, ProbeResult]:
        return dict(self._results)

    def timed_out(self, name: str) -> ProbeResult:
        return ProbeResult(name, PROBES[name].source, error=f"no answer within the sweep's time limit ({PROBES[name].source})")

    async def reader(self) -> KubeReader:
        async with self._reader_lock:
            if self._reader is None and self._reader_error is None:
                try:
                    self._reader = await anyio.to_thread.run_sync(self._make_reader, abandon_on_cancel=True)
                except Exception as exc:  # noqa: BLE001
                    self._reader_error = one_line(exc)
            if self._reader is None:
                raise KubeError("unreachable", f"cannot use the kubeconfig: {self._reader_error}")
            return self._reader

    def _make_reader(self) -> KubeReader:
        from checks.config import load_kube_api_client

        client = load_kube_api_client(self.kube, request_timeout=self.kube_request_timeout)
        return KubeReader(client, request_timeout=min(self.kube_request_timeout, self.remaining()))

    async def call_kube(self, fn: Callable[[KubeReader], Any]) -> Any:
        reader = await self.reader()
        return await anyio.to_thread.run_sync(fn, reader, abandon_on_cancel=True)


@dataclass(frozen=True)
class Probe:
    name: str
    source: str
    run: Callable[[ProbeContext], Awaitable[ProbeResult]]


PROBES: dict[str, Probe] = {}


def _register(name: str, source: str) -> Callable[[Callable[[ProbeContext], Awaitable[ProbeResult]]], Any]:
    def wrap(fn: Callable[[ProbeContext], Awaitable[ProbeResult]]) -> Callable[[ProbeContext], Awaitable[ProbeResult]]:
        PROBES[name] = Probe(name, source, fn)
        return fn

    return wrap


def _file_missing(result: CommandResult) -> bool:
    text = (result.stderr + result.stdout).lower()
    return "no such file or directory" in text or "notfound" in text.replace(" ", "") or "not found" in text


async def parse_off_loop(parse: Callable[[str], Any], text: str) -> Any:
    """Parse in a worker thread: PyYAML can take tens of ms, and the TUI's event loop must keep
    answering keys meanwhile (the GIL is handed back every few ms)."""
    if len(text) < 512:
        return parse(text)
    return await anyio.to_thread.run_sync(parse, text, abandon_on_cancel=True)


async def _talos_parse(
    ctx: ProbeContext, name: str, args: tuple[str, ...], parse: Callable[[str], Any], *,
    missing_ok: bool = False, use_stderr: bool = False, timeout: float | None = None,
) -> ProbeResult:
    source = "talosctl " + " ".join(args)
    result = await ctx.talosctl.run(*args, timeout=min(timeout or ctx.remaining(), ctx.remaining()))
    text = result.stderr if use_stderr else result.stdout
    if not result.ok:
        if missing_ok and result.returncode not in (None, 0) and _file_missing(result):
            return ProbeResult(name, source, missing=True, error=None, value=None)
        if use_stderr and result.returncode not in (None, 0) and not result.timed_out and result.error is None:
            # health: a failing run still produced the report we need
            parsed = await parse_off_loop(parse, text)
            if not parsers.is_error(parsed):
                return ProbeResult(name, source, value=parsed)
        return ProbeResult(name, source, error=f"{source}: {result.failure_reason()}")
    parsed = await parse_off_loop(parse, text)
    if parsers.is_error(parsed):
        return ProbeResult(name, source, error=f"{source}: output not understood ({parsed})")
    return ProbeResult(name, source, value=parsed)


# ---- talosctl probes --------------------------------------------------------------------------


@_register("talos_version", "talosctl version")
async def probe_talos_version(ctx: ProbeContext) -> ProbeResult:
    return await _talos_parse(ctx, "talos_version", ("version",), parsers.parse_talos_version,
                              timeout=min(15.0, ctx.remaining()))


@_register("health", "talosctl health")
async def probe_health(ctx: ProbeContext) -> ProbeResult:
    wait = max(1, int(min(30.0, ctx.remaining() * 0.5)))
    return await _talos_parse(ctx, "health", ("health", "--wait-timeout", f"{wait}s"), parsers.parse_health,
                              use_stderr=True, timeout=wait + 5)


@_register("machine_status", "talosctl get machinestatus")
async def probe_machine_status(ctx: ProbeContext) -> ProbeResult:
    return await _talos_parse(ctx, "machine_status", ("get", "machinestatus", "-o", "yaml"),
                              parsers.parse_machine_status)


@_register("extensions", "talosctl get extensions")
async def probe_extensions(ctx: ProbeContext) -> ProbeResult:
    return await _talos_parse(ctx, "extensions", ("get", "extensions", "-o", "yaml"), parsers.parse_extensions)


@_register("proc_modules", "talosctl read /proc/modules")
async def probe_proc_modules(ctx: ProbeContext) -> ProbeResult:
    return await _talos_parse(ctx, "proc_modules", ("read", "/proc/modules"), parsers.parse_proc_modules)


@_register("driver_version", "talosctl read /proc/driver/nvidia/version")
async def probe_driver_version(ctx: ProbeContext) -> ProbeResult:
    return await _talos_parse(ctx, "driver_version", ("read", "/proc/driver/nvidia/version"),
                              parsers.parse_nvidia_version, missing_ok=True)


@_register("dmesg", "talosctl dmesg")
async def probe_dmesg(ctx: ProbeContext) -> ProbeResult:
    return await _talos_parse(ctx, "dmesg", ("dmesg",), parsers.parse_dmesg_nvrm)


@_register("bpf_sysctl", "talosctl read /proc/sys/net/core/bpf_jit_harden")
async def probe_bpf_sysctl(ctx: ProbeContext) -> ProbeResult:
    return await _talos_parse(ctx, "bpf_sysctl", ("read", "/proc/sys/net/core/bpf_jit_harden"),
                              parsers.parse_sysctl_value, missing_ok=True)


@_register("module_specs", "talosctl get kernelmodulespecs")
async def probe_module_specs(ctx: ProbeContext) -> ProbeResult:
    return await _talos_parse(ctx, "module_specs", ("get", "kernelmodulespecs", "-o", "yaml"),
                              parsers.parse_kernel_module_specs)


@_register("runtime_config", "talosctl read /etc/nvidia-container-runtime/config.toml")
async def probe_runtime_config(ctx: ProbeContext) -> ProbeResult:
    return await _talos_parse(ctx, "runtime_config", ("read", "/etc/nvidia-container-runtime/config.toml"),
                              parsers.parse_nvidia_container_runtime_config, missing_ok=True)


@_register("pci_devices", "talosctl get pcidevices")
async def probe_pci_devices(ctx: ProbeContext) -> ProbeResult:
    return await _talos_parse(ctx, "pci_devices", ("get", "pcidevices", "-o", "yaml"), parsers.parse_pci_devices)


@_register("nodename", "talosctl get nodename")
async def probe_nodename(ctx: ProbeContext) -> ProbeResult:
    return await _talos_parse(ctx, "nodename", ("get", "nodename", "-o", "yaml"), parsers.parse_nodename)


# ---- Kubernetes probes ------------------------------------------------------------------------


@_register("kube_node", "Kubernetes Node")
async def probe_kube_node(ctx: ProbeContext) -> ProbeResult:
    nodename = await ctx.get("nodename")
    address = ctx.talos.node

    def read(reader: KubeReader) -> dict[str, Any] | None:
        if nodename.ok and nodename.value:
            try:
                return reader.read_node(str(nodename.value))
            except KubeError as exc:
                if not exc.is_not_found:
                    raise
        return reader.find_node(address)

    node = await ctx.call_kube(read)
    if node is None:
        return ProbeResult("kube_node", "Kubernetes Node", missing=True,
                           value=None, error=None)
    return ProbeResult("kube_node", f"Kubernetes Node {node['metadata']['name']}", value=node)


@_register("runtime_class", "Kubernetes RuntimeClass")
async def probe_runtime_class(ctx: ProbeContext) -> ProbeResult:
    name = ctx.profile.runtime_class
    source = f"kubectl get runtimeclass {name}"
    try:
        value = await ctx.call_kube(lambda r: r.read_runtime_class(name))
    except KubeError as exc:
        if exc.is_not_found:
            return ProbeResult("runtime_class", source, missing=True)
        return ProbeResult("runtime_class", source, error=exc.message)
    return ProbeResult("runtime_class", source, value=value)


@dataclass
class DevicePluginFacts:
    daemonset: dict[str, Any] | None
    candidates: list[dict[str, Any]]
    pods: list[dict[str, Any]]
    ds_events: list[dict[str, Any]]
    pod_events: dict[str, list[dict[str, Any]]]
    logs: dict[str, str]
    log_errors: dict[str, str]


def _pick_daemonset(items: list[dict[str, Any]], profile: Profile) -> dict[str, Any] | None:
    if not items:
        return None
    spec = profile.device_plugin

    def rank(ds: dict[str, Any]) -> tuple[int, int, str]:
        meta = ds.get("metadata") or {}
        labels = meta.get("labels") or {}
        same_release = labels.get("app.kubernetes.io/instance") == spec.release
        same_ns = meta.get("namespace") == spec.namespace
        return (0 if same_release else 1, 0 if same_ns else 1, f"{meta.get('namespace')}/{meta.get('name')}")

    return sorted(items, key=rank)[0]


def _selector(ds: dict[str, Any]) -> str:
    labels = ((ds.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))


@_register("device_plugin", "Kubernetes DaemonSet nvidia-device-plugin")
async def probe_device_plugin(ctx: ProbeContext) -> ProbeResult:
    def read(reader: KubeReader) -> DevicePluginFacts:
        found = reader.list_daemonsets(DEVICE_PLUGIN_LABEL)
        if not found:
            found = reader.list_daemonsets(STATIC_MANIFEST_LABEL)
        ds = _pick_daemonset(found, ctx.profile)
        facts = DevicePluginFacts(ds, found, [], [], {}, {}, {})
        if ds is None:
            return facts
        namespace = ds["metadata"]["namespace"]
        facts.ds_events = reader.list_events(namespace, ds["metadata"]["name"])
        selector = _selector(ds)
        if selector:
            facts.pods = reader.list_pods(namespace, label_selector=selector)
        for pod in facts.pods[:5]:
            pod_name = pod["metadata"]["name"]
            facts.pod_events[pod_name] = reader.list_events(namespace, pod_name)
            statuses = (pod.get("status") or {}).get("containerStatuses") or []
            started = any(s.get("state", {}).get("running") or s.get("state", {}).get("terminated")
                          or (s.get("restartCount") or 0) > 0 for s in statuses)
            if not started:
                continue
            try:
                facts.logs[pod_name] = reader.pod_log(namespace, pod_name, tail_lines=POD_LOG_TAIL)
            except KubeError as exc:
                facts.log_errors[pod_name] = exc.message
        return facts

    facts = await ctx.call_kube(read)
    source = "kubectl get ds -A -l " + DEVICE_PLUGIN_LABEL
    if facts.daemonset is None:
        return ProbeResult("device_plugin", source, value=facts, missing=True)
    meta = facts.daemonset["metadata"]
    return ProbeResult("device_plugin", f"DaemonSet {meta['namespace']}/{meta['name']}", value=facts)


@_register("helm_release", "helm list")
async def probe_helm_release(ctx: ProbeContext) -> ProbeResult:
    spec = ctx.profile.device_plugin
    source = f"helm list -n {spec.namespace}"
    if ctx.helm is None:
        return ProbeResult("helm_release", source, error="helm not found (set $HELM or install helm)")
    result = await ctx.helm.run("list", "-n", spec.namespace, "-o", "json", timeout=min(20.0, ctx.remaining()))
    if not result.ok:
        return ProbeResult("helm_release", source, error=f"{source}: {result.failure_reason()}")
    releases = await parse_off_loop(parsers.parse_helm_list_json, result.stdout)
    if parsers.is_error(releases):
        return ProbeResult("helm_release", source, error=f"{source}: output not understood ({releases})")
    for release in releases:
        if release.name == spec.release:
            return ProbeResult("helm_release", source, value=release)
    return ProbeResult("helm_release", source, missing=True)


@_register("gpu_allocations", "Kubernetes pods on the node")
async def probe_gpu_allocations(ctx: ProbeContext) -> ProbeResult:
    node = await ctx.get("kube_node")
    if not node.ok:
        return ProbeResult("gpu_allocations", "pods on the node", error="the node is not known")
    name = node.value["metadata"]["name"]

    def read(reader: KubeReader) -> int:
        total = 0
        for pod in reader.list_pods(None, field_selector=f"spec.nodeName={name}"):
            if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
                continue
            for container in (pod.get("spec") or {}).get("containers") or []:
                limits = ((container.get("resources") or {}).get("limits") or {})
                try:
                    total += int(limits.get("nvidia.com/gpu", 0))
                except (TypeError, ValueError):
                    continue
        return total

    return ProbeResult("gpu_allocations", f"kubectl get pods -A --field-selector spec.nodeName={name}",
                       value=await ctx.call_kube(read))


@_register("gpu_workload", "GPU test pod")
async def probe_gpu_workload(ctx: ProbeContext) -> ProbeResult:
    if not ctx.pod_test:
        return ProbeResult("gpu_workload", "GPU test pod", missing=True)
    from checks.workload import run_test_pod

    outcome = await run_test_pod(ctx, on_line=None)
    return ProbeResult("gpu_workload", "GPU test pod", value=outcome)
