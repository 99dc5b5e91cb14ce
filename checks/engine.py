"""One sweep: gather every probe concurrently, judge each stage, propagate, diagnose."""

from __future__ import annotations

import time

import anyio

from checks.context import make_context
from checks.kube_process import KUBE_PROBES, KubeProcess
from checks.model import Judgement, ProbeResult, Report, Status
from checks.probes import PROBES, ProbeContext, plugin_names
from checks.stages import SEED_STAGES, StageSpec
from checks.target import Target

__all__ = ["LIGHT_PROBES", "Target", "gather", "judge_all", "make_context", "run_sweep", "start_kube_process"]

# talosctl probes first: they overlap the import of the kubernetes client. nodename leads: the Node
# (and the pods on it) can only be read once it has answered.
PROBE_ORDER = (
    "nodename", "talos_version", "extensions", "proc_modules", "driver_version", "dmesg", "bpf_sysctl",
    "module_specs", "machine_files", "cri_conf", "services", "pci_devices", "machine_status", "boot_failure",
    "health", "helm_release",
    "kube_node", "runtime_class", "device_plugin", "gpu_allocations", "gpu_workload",
)


async def _warm_imports(kube: bool) -> None:
    """Import, in a thread, what the sweep needs once its calls have started: the kubernetes client
    (~0.25 s of one core) unless the Kubernetes reads happen elsewhere, then the parsers and judges
    (~0.1 s). The talosctl calls start meanwhile, so that the node's answers and these imports overlap."""
    def load() -> None:
        import importlib

        if kube:
            from checks.adapters.kube_import import kubernetes_client

            kubernetes_client()  # first: the Kubernetes reads wait for it
        importlib.import_module("checks.parsers")
        importlib.import_module("checks.diagnosis")
        importlib.import_module("checks.judges")

    await anyio.to_thread.run_sync(load, abandon_on_cancel=True)


async def gather(ctx: ProbeContext, names: tuple[str, ...], timeout: float, *,
                 kube: KubeProcess | None = None) -> dict[str, ProbeResult]:
    """Run the named probes concurrently; any still running at `timeout` becomes an error result.
    With `kube`, the Kubernetes probes are answered by that child process, which is handed the
    `nodename` fact as soon as it is known."""
    if kube is not None:
        for name in KUBE_PROBES:
            ctx.elsewhere[name] = kube.answer

    async def hand_over_nodename(kube: KubeProcess) -> None:
        kube.send_nodename(await ctx.get("nodename"))

    with anyio.move_on_after(timeout):
        async with anyio.create_task_group() as group:
            group.start_soon(_warm_imports, kube is None)  # its thread imports while this one starts talosctl
            for name in names:
                group.start_soon(ctx.get, name)
            if kube is not None:
                group.start_soon(hand_over_nodename, kube)
                group.start_soon(kube.receive)
    results = ctx.results()
    for name in names:
        if name not in results:
            results[name] = ctx.timed_out(name)
    return results


def judge_all(stages: tuple[StageSpec, ...], facts: dict[str, ProbeResult], target: Target,
              pod_test: bool) -> tuple[dict[str, Judgement], dict[str, int]]:
    from checks.judges import JUDGES, JudgeInput

    inp = JudgeInput(facts, target.profile, target.talos.node, pod_test)
    judgements: dict[str, Judgement] = {}
    durations: dict[str, int] = {}
    for spec in stages:
        try:
            judgements[spec.id] = JUDGES[spec.judge](inp)
        except Exception as exc:  # noqa: BLE001 - a judge bug is reported, not a crash
            from checks.errors import one_line

            judgements[spec.id] = Judgement(Status.UNKNOWN, f"internal error judging {spec.id}: {one_line(exc)}")
        durations[spec.id] = max((facts[p].duration_ms for p in spec.probes if p in facts), default=0)
    add_infra_drift(judgements, target)
    return judgements, durations


def add_infra_drift(judgements: dict[str, Judgement], target: Target) -> None:
    """The infra repo's files should say what the seed needs: drift is `warn` evidence on its stage."""
    from checks.errors import one_line
    from checks.infra import lint_infra

    try:
        drift = lint_infra(target.profile)
    except Exception as exc:  # noqa: BLE001 - a lint problem must never hide the checks
        drift = {"cluster": [f"infra repo: could not be read ({one_line(exc)})"]}
    for stage_id, lines in drift.items():
        judgement = judgements.get(stage_id)
        if judgement is None or not lines:
            continue
        judgement.evidence.extend(lines)
        if judgement.status is Status.PASS:
            judgement.status = Status.WARN
            judgement.summary += f"; but {lines[0].removeprefix('infra repo: ')} (infra repo drift)"


# A light refresh re-reads only these: cheap, and they change when anything that matters changes
# (a reboot, the Node, the device plugin's pods, the RuntimeClass). The rest is reused.
LIGHT_PROBES = frozenset({"machine_status", "kube_node", "runtime_class", "device_plugin", "gpu_allocations"})


async def run_sweep(target: Target, *, timeout: float = 60.0, pod_test: bool = False,
                    stages: tuple[StageSpec, ...] = SEED_STAGES, previous: Report | None = None,
                    only: frozenset[str] | None = None, kube: KubeProcess | None = None) -> Report:
    """Gather, judge, diagnose. With `previous` and `only`, re-run just the probes in `only` and
    reuse the previous report's other facts (a light refresh); a fact that failed is always re-run.
    With `kube` (`start_kube_process`), the Kubernetes probes are answered by that child process."""
    from checks import node_cache

    if kube is None:
        from checks.adapters.kube_import import prewarm

        prewarm()  # a plain thread: it starts now, not after the talosctl calls have been spawned
    started = time.monotonic()
    # the names the previous sweep found (a light refresh), else those a run last found (a small file read)
    if kube is not None:
        remembered, plugin = kube.remembered_node, kube.remembered_plugin
    elif previous is not None and previous.kube_node:
        remembered, plugin = previous.kube_node, plugin_names(previous.facts.get("device_plugin"))
    else:
        remembered, plugin = node_cache.recall(target.kube.server, target.talos.node)
    ctx = make_context(target, timeout=timeout, pod_test=pod_test, remembered_node=remembered,
                       remembered_plugin=plugin)
    wanted = {p for spec in stages for p in spec.probes} | {"nodename"}
    names = tuple(n for n in PROBE_ORDER if n in wanted and n in PROBES)
    if previous is not None and only is not None:
        for name, fact in previous.facts.items():
            if name not in only and name in wanted and fact.error is None and name != "gpu_workload":
                ctx.seed(fact)
    facts = await gather(ctx, names, timeout, kube=kube)

    def conclude() -> Report:
        """Judge, propagate, diagnose, remember the names: in a worker thread, so that an event loop
        (the TUI's) keeps answering keys meanwhile (the judges match signatures over logs and events)."""
        from checks.diagnosis import propagate, root_cause

        judgements, durations = judge_all(stages, facts, target, pod_test)
        results = propagate(stages, judgements, durations)
        node = facts.get("kube_node")
        kube_node = node.value["metadata"]["name"] if node is not None and node.ok else None
        plugin = plugin_names(facts.get("device_plugin"))
        if kube_node and (kube_node != ctx.remembered_node or plugin != ctx.remembered_plugin):
            node_cache.remember(target.kube.server, target.talos.node, kube_node, plugin=plugin)
        return Report(target.talos.node, kube_node, results, root_cause(results), facts,
                      int((time.monotonic() - started) * 1000))

    return await anyio.to_thread.run_sync(conclude)


def start_kube_process(target: Target, *, timeout: float, pod_test: bool = False) -> KubeProcess | None:
    """For a one-shot sweep in a fresh process (`talos-gpu check`): fork the child that will answer the
    Kubernetes probes (checks/kube_process.py), before the sweep starts. None where that is not possible
    or not worth it (threads running, the client imported already, the GPU test pod wanted): the sweep
    then reads in-process."""
    if pod_test:
        return None
    from checks import node_cache

    node, plugin = node_cache.recall(target.kube.server, target.talos.node)
    return KubeProcess.start(target, timeout=timeout, remembered_node=node, remembered_plugin=plugin)
