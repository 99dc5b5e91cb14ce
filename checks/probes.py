"""Probes: each gathers one fact, once per sweep, however many stages read it.

A probe is an async function of the `ProbeContext`. `ctx.get(probe)` starts a probe the first time it
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

from checks.adapters.kube import KubeError, KubeReader, NodePage, node_with_address
from checks.adapters.tools import Helm, Talosctl
from checks.config import KubeTarget, TalosTarget
from checks.errors import one_line
from checks.model import ProbeResult
from checks.node_cache import PluginNames  # namespace, DaemonSet, the pods whose details were read
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
    remembered_node: str | None = None  # the Node name the last run found (checks/node_cache.py)
    remembered_plugin: PluginNames | None = None  # the device plugin's names the last run read (idem)
    # probes answered elsewhere (checks/kube_process.py): name -> how to get that answer
    elsewhere: dict[str, Callable[[Probe], Awaitable[ProbeResult]]] = field(default_factory=dict)
    _tasks: dict[str, anyio.Event] = field(default_factory=dict)
    _results: dict[str, ProbeResult] = field(default_factory=dict)
    _reader: KubeReader | None = None
    _reader_error: str | None = None
    _reader_lock: anyio.Lock = field(default_factory=anyio.Lock)
    _shared: dict[str, Any] = field(default_factory=dict)  # `shared`: key -> its value, or the Event it is awaited by

    def remaining(self) -> float:
        return max(0.1, self.deadline - time.monotonic())

    def known(self, probe: Probe) -> ProbeResult | None:
        """The probe's result if it has already answered, else None (never waits)."""
        return self._results.get(probe.name)

    async def kube_node(self) -> ProbeResult:
        """This node's Kubernetes Node, read once a sweep (what the test pod is pinned to)."""
        return await self.get(probe_kube_node)

    async def get(self, probe: Probe) -> ProbeResult:
        name = probe.name
        if name in self._results:
            return self._results[name]
        if name in self._tasks:
            await self._tasks[name].wait()
            return self._results[name]
        done = anyio.Event()
        self._tasks[name] = done
        started = time.monotonic()
        answer = self.elsewhere.get(name)
        try:
            result = await (answer(probe) if answer is not None else probe.run(self))
        except KubeError as exc:
            result = ProbeResult(name, probe.source, error=exc.message, missing=exc.is_not_found)
        except Exception as exc:  # noqa: BLE001 - a probe bug must not crash the sweep
            result = ProbeResult(name, probe.source, error=f"internal error in probe {name}: {one_line(exc)}")
        # an answer from elsewhere keeps the duration measured where it ran
        duration = result.duration_ms if answer is not None and result.duration_ms else \
            int((time.monotonic() - started) * 1000)
        result = ProbeResult(result.name, result.source, result.value, result.error, result.missing, duration)
        self._results[name] = result
        done.set()
        return result

    def seed(self, result: ProbeResult) -> None:
        """Use a fact already known (from the previous sweep) instead of probing again."""
        self._results[result.name] = result

    def results(self) -> dict[str, ProbeResult]:
        return dict(self._results)

    def timed_out(self, probe: Probe) -> ProbeResult:
        return ProbeResult(probe.name, probe.source, error=f"no answer within the sweep's time limit ({probe.source})")

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
        from checks import redact
        from checks.config import load_kube_api_client

        # the process-wide redactor learns the kubeconfig's secrets as the loader is about to read them
        client = load_kube_api_client(self.kube, redactor=redact.REDACTOR, request_timeout=self.kube_request_timeout)
        return KubeReader(client, request_timeout=min(self.kube_request_timeout, self.remaining()),
                          deadline=time.monotonic() + self.remaining())

    async def shared(self, key: str, make: Callable[[], Awaitable[Any]]) -> Any:
        """`make()`'s value, made once per sweep however many probes ask for it (None if making it failed)."""
        known = self._shared.get(key)
        if isinstance(known, anyio.Event):
            await known.wait()
            return self._shared.get(key)
        if key in self._shared:
            return known
        done = anyio.Event()
        self._shared[key] = done
        value: Any = None
        try:
            value = await make()
        finally:
            self._shared[key] = value
            done.set()
        return value

    async def call_kube(self, fn: Callable[[KubeReader], Any]) -> Any:
        reader = await self.reader()
        return await anyio.to_thread.run_sync(fn, reader, abandon_on_cancel=True)

    async def call_kube_optional(self, fn: Callable[[KubeReader], Any]) -> Any:
        """A speculative read: None instead of any Kubernetes failure, including an unusable
        kubeconfig (the precise read that follows reports it)."""
        try:
            return await self.call_kube(fn)
        except KubeError:
            return None

    async def call_kube_all(self, *fns: Callable[[KubeReader], Any]) -> list[Any]:
        """Run the calls concurrently (one API round trip instead of several); results in order.
        The first failure, in argument order, is raised once all have ended."""
        results: list[Any] = [None] * len(fns)
        errors: list[BaseException | None] = [None] * len(fns)

        async def one(index: int, fn: Callable[[KubeReader], Any]) -> None:
            try:
                results[index] = await self.call_kube(fn)
            except Exception as exc:  # noqa: BLE001 - re-raised below, without an exception group
                errors[index] = exc

        async with anyio.create_task_group() as group:
            for index, fn in enumerate(fns):
                group.start_soon(one, index, fn)
        for error in errors:
            if error is not None:
                raise error
        return results


@dataclass(frozen=True)
class Probe:
    """One fact and how to gather it. What the engine needs to schedule it is said here, not in lists kept
    elsewhere: `order` (lower starts first: the talosctl calls overlap the client's import, and `nodename`
    leads), `kube` (a Kubernetes read: a one-shot `check` answers it in the child of checks/kube_process.py),
    `light` (a light refresh of the TUI repeats it; the others are reused)."""

    name: str
    source: str
    run: Callable[[ProbeContext], Awaitable[ProbeResult]]
    order: int
    kube: bool = False
    light: bool = False


def probe(name: str, source: str, *, order: int, kube: bool = False,
          light: bool = False) -> Callable[[Callable[[ProbeContext], Awaitable[ProbeResult]]], Probe]:
    """Decorator: the async function becomes a `Probe`, which stage tables name directly."""
    def wrap(fn: Callable[[ProbeContext], Awaitable[ProbeResult]]) -> Probe:
        return Probe(name, source, fn, order, kube, light)

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


def parsers() -> Any:
    """`checks.parsers`, imported on first use: its regexes and YAML cost ~50 ms, which a sweep spends
    after it has started its talosctl calls rather than before (the engine also warms it in a thread)."""
    from checks import parsers as module

    return module


def parser(name: str) -> Callable[[str], Any]:
    return getattr(parsers(), name)


async def _talos_parse(
    ctx: ProbeContext, name: str, args: tuple[str, ...], parse_name: str, *,
    missing_ok: bool = False, use_stderr: bool = False, timeout: float | None = None,
) -> ProbeResult:
    source = "talosctl " + " ".join(args)
    result = await ctx.talosctl.run(*args, timeout=min(timeout or ctx.remaining(), ctx.remaining()))
    parse = parser(parse_name)
    text = result.stderr if use_stderr else result.stdout
    if not result.ok:
        if missing_ok and result.returncode not in (None, 0) and _file_missing(result):
            return ProbeResult(name, source, missing=True, error=None, value=None)
        if use_stderr and result.returncode not in (None, 0) and not result.timed_out and result.error is None:
            # health: a failing run still produced the report we need
            parsed = await parse_off_loop(parse, text)
            if not parsers().is_error(parsed):
                return ProbeResult(name, source, value=parsed)
        return ProbeResult(name, source, error=f"{source}: {result.failure_reason()}")
    parsed = await parse_off_loop(parse, text)
    if parsers().is_error(parsed):
        return ProbeResult(name, source, error=f"{source}: output not understood ({parsed})")
    return ProbeResult(name, source, value=parsed)


# ---- talosctl probes --------------------------------------------------------------------------


@probe("talos_version", "talosctl version", order=10)
async def probe_talos_version(ctx: ProbeContext) -> ProbeResult:
    return await _talos_parse(ctx, "talos_version", ("version",), "parse_talos_version",
                              timeout=min(15.0, ctx.remaining()))


@probe("health", "talosctl health", order=140)
async def probe_health(ctx: ProbeContext) -> ProbeResult:
    wait = max(1, int(min(30.0, ctx.remaining() * 0.5)))
    return await _talos_parse(ctx, "health", ("health", "--wait-timeout", f"{wait}s"), "parse_health",
                              use_stderr=True, timeout=wait + 5)


@probe("machine_status", "talosctl get machinestatus", order=120, light=True)
async def probe_machine_status(ctx: ProbeContext) -> ProbeResult:
    return await _talos_parse(ctx, "machine_status", ("get", "machinestatus", "-o", "yaml"),
                              "parse_machine_status")


@probe("extensions", "talosctl get extensions", order=20)
async def probe_extensions(ctx: ProbeContext) -> ProbeResult:
    return await _talos_parse(ctx, "extensions", ("get", "extensions", "-o", "yaml"), "parse_extensions")


@probe("proc_modules", "talosctl read /proc/modules", order=30)
async def probe_proc_modules(ctx: ProbeContext) -> ProbeResult:
    return await _talos_parse(ctx, "proc_modules", ("read", "/proc/modules"), "parse_proc_modules")


@probe("driver_version", "talosctl read /proc/driver/nvidia/version", order=40)
async def probe_driver_version(ctx: ProbeContext) -> ProbeResult:
    return await _talos_parse(ctx, "driver_version", ("read", "/proc/driver/nvidia/version"),
                              "parse_nvidia_version", missing_ok=True)


@probe("dmesg", "talosctl dmesg", order=50)
async def probe_dmesg(ctx: ProbeContext) -> ProbeResult:
    return await _talos_parse(ctx, "dmesg", ("dmesg",), "parse_dmesg_nvrm")


@probe("bpf_sysctl", "talosctl read /proc/sys/net/core/bpf_jit_harden", order=60)
async def probe_bpf_sysctl(ctx: ProbeContext) -> ProbeResult:
    return await _talos_parse(ctx, "bpf_sysctl", ("read", "/proc/sys/net/core/bpf_jit_harden"),
                              "parse_sysctl_value", missing_ok=True)


@probe("module_specs", "talosctl get kernelmodulespecs", order=70)
async def probe_module_specs(ctx: ProbeContext) -> ProbeResult:
    return await _talos_parse(ctx, "module_specs", ("get", "kernelmodulespecs", "-o", "yaml"),
                              "parse_kernel_module_specs")


@probe("machine_files", "talosctl get machineconfig (machine.files op and path)", order=80)
async def probe_machine_files(ctx: ProbeContext) -> ProbeResult:
    """The op and path of each `machine.files` entry. The config holds the cluster's secrets: its text
    goes straight to the parser, which keeps only those two fields, and no error quotes it."""
    source = "talosctl get machineconfig"
    result = await ctx.talosctl.run("get", "machineconfig", "-o", "yaml", timeout=ctx.remaining())
    if not result.ok:
        reason = result.failure_reason() if (result.error or result.timed_out) else \
            f"exit {result.returncode}: {(result.stderr.strip().splitlines() or ['no output'])[-1][:200]}"
        return ProbeResult("machine_files", source, error=f"{source}: {reason}")
    parsed = await parse_off_loop(parser("parse_machine_files"), result.stdout)
    if parsers().is_error(parsed):
        return ProbeResult("machine_files", source, error=f"{source}: output not understood ({parsed.detail})")
    return ProbeResult("machine_files", source, value=parsed)


async def talos_ls(ctx: ProbeContext, name: str, directory: str) -> ProbeResult:
    """The names in a node directory (`talosctl ls DIR`); a directory that does not exist is `missing`."""
    source = f"talosctl ls {directory}"
    result = await ctx.talosctl.run("ls", directory, timeout=ctx.remaining())
    if result.ok and "no such file or directory" in result.stderr.lower():
        return ProbeResult(name, source, missing=True)
    if not result.ok:
        return ProbeResult(name, source, error=f"{source}: {result.failure_reason()}")
    parsed = parser("parse_ls_names")(result.stdout)
    if parsers().is_error(parsed):
        return ProbeResult(name, source, error=f"{source}: output not understood ({parsed})")
    return ProbeResult(name, source, value=parsed)


@probe("cri_conf", "talosctl ls /etc/cri/conf.d", order=90)
async def probe_cri_conf(ctx: ProbeContext) -> ProbeResult:
    return await talos_ls(ctx, "cri_conf", "/etc/cri/conf.d")


@probe("services", "talosctl services", order=100)
async def probe_services(ctx: ProbeContext) -> ProbeResult:
    return await _talos_parse(ctx, "services", ("services",), "parse_services")


@probe("boot_failure", "talosctl dmesg (boot sequence)", order=130)
async def probe_boot_failure(ctx: ProbeContext) -> ProbeResult:
    """Why the boot stopped, from the kernel log; read only when the node is not running."""
    source = "talosctl dmesg"
    status = await ctx.get(probe_machine_status)
    if status.ok and getattr(status.value, "stage", "") == "running":
        return ProbeResult("boot_failure", source, value=None)
    result = await ctx.talosctl.run("dmesg", timeout=ctx.remaining())
    if not result.ok:
        return ProbeResult("boot_failure", source, error=f"{source}: {result.failure_reason()}")
    parsed = await parse_off_loop(parser("parse_boot_failure"), result.stdout)
    if parsers().is_error(parsed):
        return ProbeResult("boot_failure", source, error=f"{source}: output not understood ({parsed})")
    return ProbeResult("boot_failure", source, value=parsed)


@probe("pci_devices", "talosctl get pcidevices", order=110)
async def probe_pci_devices(ctx: ProbeContext) -> ProbeResult:
    return await _talos_parse(ctx, "pci_devices", ("get", "pcidevices", "-o", "yaml"), "parse_pci_devices")


@probe("nodename", "talosctl get nodename", order=0)
async def probe_nodename(ctx: ProbeContext) -> ProbeResult:
    return await _talos_parse(ctx, "nodename", ("get", "nodename", "-o", "yaml"), "parse_nodename")


# ---- Kubernetes probes ------------------------------------------------------------------------


NODE_PAGE = 50  # Nodes read in one request at first contact (a cluster up to this size: all of them)


def _first_contact(ctx: ProbeContext) -> bool:
    """Neither a remembered Node name nor talosctl's nodename yet: the Node is looked for in one page of the
    Node list, read while talosctl answers, instead of with a request sent once it has answered."""
    return ctx.remembered_node is None and "nodename" not in ctx._results


async def node_name_guess(ctx: ProbeContext) -> str | None:
    """The Node's likely name before the Node is known, with no talosctl round trip: the one the last run
    found, else (first contact) that of the Node with the node's address in the page of Nodes. A probe that
    reads by it keeps what it read only if the Node turns out to be so called."""
    if ctx.remembered_node is not None:
        return ctx.remembered_node
    if not _first_contact(ctx):
        return None
    found = node_with_address((await _node_page(ctx) or NodePage([], complete=False)).items, ctx.talos.node)
    return (found.get("metadata") or {}).get("name") if found is not None else None


async def _node_page(ctx: ProbeContext) -> NodePage | None:
    """The first NODE_PAGE Nodes, read once per sweep (None: not read; the precise reads that follow say why)."""
    return await ctx.shared("node_page", lambda: ctx.call_kube_optional(lambda r: r.list_nodes_page(NODE_PAGE)))


def _node_from_page(page: NodePage | None, name: str | None, address: str) -> tuple[bool, dict[str, Any] | None]:
    """What the precise reads (the Node `name`, else the Node with `address`) would find, where the page says
    it: (True, the Node or None); (False, None) where only those reads can tell."""
    if page is None:
        return False, None
    if name:
        node = page.named(name)
        if node is not None:
            return True, node
    if page.complete:  # `name` names no Node, or there is no name: the one with the address, of all Nodes
        return True, node_with_address(page.items, address)
    return False, None


@probe("kube_node", "Kubernetes Node", order=160, kube=True, light=True)
async def probe_kube_node(ctx: ProbeContext) -> ProbeResult:
    address = ctx.talos.node
    remembered = ctx.remembered_node
    nodename: ProbeResult | None = None
    early: dict[str, Any] | None = None
    page: NodePage | None = None

    async def ask_talos() -> None:
        nonlocal nodename
        nodename = await ctx.get(probe_nodename)

    async def read_remembered() -> None:
        nonlocal early
        if remembered:
            early = await ctx.call_kube_optional(lambda r: r.read_node(remembered))

    async def read_page() -> None:
        nonlocal page
        page = await _node_page(ctx)

    async with anyio.create_task_group() as group:  # the remembered Node (or a page) is read while talosctl answers
        group.start_soon(ask_talos)
        group.start_soon(read_remembered)
        if _first_contact(ctx):
            group.start_soon(read_page)
    assert nodename is not None
    name = str(nodename.value) if nodename.ok and nodename.value else None

    def read(reader: KubeReader) -> dict[str, Any] | None:
        if name:
            try:
                return reader.read_node(name)
            except KubeError as exc:
                if not exc.is_not_found:
                    raise
        return reader.find_node(address)

    if early is not None and name is not None and name == remembered:
        node = early
    else:
        known, node = _node_from_page(page, name, address)
        if not known:
            node = await ctx.call_kube(read)
    if node is None:
        return ProbeResult("kube_node", "Kubernetes Node", missing=True,
                           value=None, error=None)
    return ProbeResult("kube_node", f"Kubernetes Node {node['metadata']['name']}", value=node)


@probe("runtime_class", "Kubernetes RuntimeClass", order=170, kube=True, light=True)
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


def _matches(pod: dict[str, Any], namespace: str, labels: dict[str, str]) -> bool:
    meta = pod.get("metadata") or {}
    have = meta.get("labels") or {}
    return meta.get("namespace") == namespace and all(have.get(key) == value for key, value in labels.items())


def _pod_started(pod: dict[str, Any]) -> bool:
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    return any(s.get("state", {}).get("running") or s.get("state", {}).get("terminated")
               or (s.get("restartCount") or 0) > 0 for s in statuses)


def _optional(fn: Callable[[KubeReader], Any]) -> Callable[[KubeReader], Any]:
    """A speculative read: None instead of a failure (the precise read follows if it is needed)."""
    def call(reader: KubeReader) -> Any:
        try:
            return fn(reader)
        except KubeError:
            return None
    return call


def plugin_names(fact: ProbeResult | None) -> PluginNames | None:
    """What a device-plugin fact read: remembered (checks/node_cache.py) to read it sooner next time."""
    if fact is None or not fact.ok or not isinstance(fact.value, DevicePluginFacts) or fact.value.daemonset is None:
        return None
    meta = fact.value.daemonset["metadata"]
    return meta["namespace"], meta["name"], tuple(pod["metadata"]["name"] for pod in fact.value.pods[:DETAILED_PODS])


Detail = tuple[str, str]  # ("ds_events", ""), ("events", pod), ("log", pod)


def _template_labelled(ds: dict[str, Any], label: str) -> bool:
    key, _, value = label.partition("=")
    spec = ds.get("spec") or {}
    template = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
    selector = (spec.get("selector") or {}).get("matchLabels") or {}
    return template.get(key) == value or selector.get(key) == value


PLUGIN_CONTAINER = "nvidia-device-plugin-ctr"
"""The device plugin's container: a pod with time-slicing's config-manager sidecar has two, and a log
request that names none gets 400 (FACTS.md)."""


def _detail_call(namespace: str, name: str, detail: Detail) -> Callable[[KubeReader], Any]:
    kind, pod_name = detail
    if kind == "ds_events":
        return lambda r: r.list_events(namespace, name)
    if kind == "events":
        return lambda r: r.list_events(namespace, pod_name)

    def log(r: KubeReader) -> str | KubeError:  # a log that cannot be read is a fact about the pod
        try:
            return r.pod_log(namespace, pod_name, container=PLUGIN_CONTAINER, tail_lines=POD_LOG_TAIL)
        except KubeError as exc:
            return exc
    return log


@probe("device_plugin", "Kubernetes DaemonSet nvidia-device-plugin", order=180, kube=True, light=True)
async def probe_device_plugin(ctx: ProbeContext) -> ProbeResult:
    # Round trip 1: the DaemonSets and, speculatively, the pods carrying the chart's label (with the
    # chart's selector they are the DaemonSet's pods), and the details (events, logs) of the DaemonSet
    # and pods the last run read (ctx.remembered_plugin). Round trip 2, only for the details that the
    # remembered names did not cover: the DaemonSet's events, and per pod (the first few) events and
    # log. Three round trips only when the speculation on the label does not fit.
    early: dict[Detail, Any] = {}
    guesses: list[Detail] = []
    if ctx.remembered_plugin is not None:
        was_ns, was_ds, was_pods = ctx.remembered_plugin
        guesses = [("ds_events", "")] + [(kind, pod) for pod in was_pods for kind in ("events", "log")]
    found, labelled, *answers = await ctx.call_kube_all(
        lambda r: r.list_daemonsets(DEVICE_PLUGIN_LABEL),
        _optional(lambda r: r.list_pods(None, label_selector=DEVICE_PLUGIN_LABEL)),
        *(_optional(_detail_call(was_ns, was_ds, guess)) for guess in guesses),
    )  # call_kube_all raises the first failure (the DaemonSet list's) itself
    if not found:
        # the static manifest: its label name=nvidia-device-plugin-ds is on the selector and the pod
        # template, not on the DaemonSet's own metadata (FACTS.md), so no label selector finds it
        found = [ds for ds in await ctx.call_kube(lambda r: r.list_daemonsets(""))
                 if _template_labelled(ds, STATIC_MANIFEST_LABEL)]
    ds = _pick_daemonset(found, ctx.profile)
    facts = DevicePluginFacts(ds, found, [], [], {}, {}, {})
    source = "kubectl get ds -A -l " + DEVICE_PLUGIN_LABEL
    if ds is None:
        return ProbeResult("device_plugin", source, value=facts, missing=True)
    namespace, name = ds["metadata"]["namespace"], ds["metadata"]["name"]
    if guesses and namespace == was_ns:  # pod names are unique within a namespace
        early = {guess: answer for guess, answer in zip(guesses, answers, strict=True)
                 if answer is not None and (guess[0] != "ds_events" or name == was_ds)}
    match_labels = ((ds.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
    key, _, value = DEVICE_PLUGIN_LABEL.partition("=")
    selector = _selector(ds)
    if labelled is not None and match_labels.get(key) == value:
        facts.pods = [pod for pod in labelled if _matches(pod, namespace, match_labels)]
        await _details(ctx, facts, namespace, name, early, ds_events=True)  # the DaemonSet's events come along
    else:
        facts.ds_events, facts.pods = await ctx.call_kube_all(
            _detail_call(namespace, name, ("ds_events", "")),
            lambda r: r.list_pods(namespace, label_selector=selector) if selector else [],
        )
        await _details(ctx, facts, namespace, name, early, ds_events=False)
    return ProbeResult("device_plugin", f"DaemonSet {namespace}/{name}", value=facts)


DETAILED_PODS = 5  # the pods whose events and log are read


async def _details(ctx: ProbeContext, facts: DevicePluginFacts, namespace: str, name: str,
                   early: dict[Detail, Any], *, ds_events: bool) -> None:
    """Events of the first few pods, and the log of those whose container has started, all at once;
    with `ds_events`, the DaemonSet's events too. What `early` already holds is not read again. The pod on
    THIS node comes first: its details are the ones the stage is judged by. The Node's name as far as it is
    known now (the Node read, else its likely name, `node_name_guess`): waiting for the Node would tie the
    pods' details to the talosctl call the Node read may be waiting on."""
    node = ctx.known(probe_kube_node)
    here = (node.value["metadata"]["name"] if node is not None and node.ok and isinstance(node.value, dict)
            else await node_name_guess(ctx))
    wanted: list[Detail] = [("ds_events", "")] if ds_events else []
    ordered = sorted(facts.pods, key=lambda pod: ((pod.get("spec") or {}).get("nodeName") != here))
    for pod in ordered[:DETAILED_PODS]:
        pod_name = pod["metadata"]["name"]
        wanted.append(("events", pod_name))
        if _pod_started(pod):
            wanted.append(("log", pod_name))
    missing = [detail for detail in wanted if detail not in early]
    answers = dict(early)
    if missing:
        answers.update(zip(missing, await ctx.call_kube_all(*(_detail_call(namespace, name, d) for d in missing)),
                           strict=True))
    for detail in wanted:
        kind, pod_name = detail
        answer = answers[detail]
        if kind == "ds_events":
            facts.ds_events = answer
        elif kind == "events":
            facts.pod_events[pod_name] = answer
        elif isinstance(answer, KubeError):
            facts.log_errors[pod_name] = answer.message
        else:
            facts.logs[pod_name] = answer


@probe("helm_release", "helm list", order=150)
async def probe_helm_release(ctx: ProbeContext) -> ProbeResult:
    spec = ctx.profile.device_plugin
    source = f"helm list -n {spec.namespace}"
    if ctx.helm is None:
        return ProbeResult("helm_release", source, error="helm not found (set $HELM or install helm)")
    result = await ctx.helm.run("list", "-n", spec.namespace, "-o", "json", timeout=min(20.0, ctx.remaining()))
    if not result.ok:
        return ProbeResult("helm_release", source, error=f"{source}: {result.failure_reason()}")
    releases = await parse_off_loop(parser("parse_helm_list_json"), result.stdout)
    if parsers().is_error(releases):
        return ProbeResult("helm_release", source, error=f"{source}: output not understood ({releases})")
    for release in releases:
        if release.name == spec.release:
            return ProbeResult("helm_release", source, value=release)
    return ProbeResult("helm_release", source, missing=True)


def _gpus_requested(pods: list[dict[str, Any]]) -> int:
    total = 0
    for pod in pods:
        if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
            continue
        for container in (pod.get("spec") or {}).get("containers") or []:
            limits = ((container.get("resources") or {}).get("limits") or {})
            try:
                total += int(limits.get("nvidia.com/gpu", 0))
            except (TypeError, ValueError):
                continue
    return total


def _pods_on(name: str, namespace: str | None = None) -> Callable[[KubeReader], list[dict[str, Any]]]:
    return lambda reader: reader.list_pods(namespace, field_selector=f"spec.nodeName={name}")


async def pods_on_the_node(ctx: ProbeContext, namespace: str | None, guess: str | None
                           ) -> tuple[str, list[dict[str, Any]]] | None:
    """(the Node's name, the pods on it in `namespace`, None: all namespaces), or None when the Node is not
    known. The pods on `guess` (the Node's likely name) are listed while the Node is read, and listed again
    only if the Node turns out to be called otherwise: one round trip, not two, when the guess is right."""
    early: list[dict[str, Any]] | None = None
    node: ProbeResult | None = None

    async def read_node() -> None:
        nonlocal node
        node = await ctx.get(probe_kube_node)

    async def list_early() -> None:
        nonlocal early
        if guess is not None:
            early = await ctx.call_kube_optional(_pods_on(guess, namespace))

    async with anyio.create_task_group() as group:
        group.start_soon(read_node)
        group.start_soon(list_early)
    assert node is not None
    if not node.ok:
        return None
    name = node.value["metadata"]["name"]
    pods = early if (early is not None and name == guess) else await ctx.call_kube(_pods_on(name, namespace))
    return name, pods


@probe("gpu_allocations", "Kubernetes pods on the node", order=190, kube=True, light=True)
async def probe_gpu_allocations(ctx: ProbeContext) -> ProbeResult:
    # The Node's name is nearly always the one the last run found, else (first contact) that of the Node
    # with the node's address in the page of Nodes, else the Talos nodename: list its pods while the Node
    # is read, and list again only if the Node turns out to be called otherwise.
    guess = await node_name_guess(ctx)
    if guess is None:
        nodename = await ctx.get(probe_nodename)
        guess = str(nodename.value) if nodename.ok and nodename.value else None
    found = await pods_on_the_node(ctx, None, guess)
    if found is None:
        return ProbeResult("gpu_allocations", "pods on the node", error="the node is not known")
    name, pods = found
    return ProbeResult("gpu_allocations", f"kubectl get pods -A --field-selector spec.nodeName={name}",
                       value=_gpus_requested(pods))


@probe("gpu_workload", "GPU test pod", order=200)
async def probe_gpu_workload(ctx: ProbeContext) -> ProbeResult:
    if not ctx.pod_test:
        return ProbeResult("gpu_workload", "GPU test pod", missing=True)
    from checks.workload import run_test_pod

    outcome = await run_test_pod(ctx, on_line=None)
    return ProbeResult("gpu_workload", "GPU test pod", value=outcome)
