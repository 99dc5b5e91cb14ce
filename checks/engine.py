"""One sweep: gather every probe concurrently, judge each stage, propagate, diagnose."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import anyio

from checks.context import make_context
from checks.kube_process import KubeProcess
from checks.model import Judgement, ProbeResult, Report, Status
from checks.probes import Probe, ProbeContext, plugin_names, probe_nodename
from checks.stages import StageSpec
from checks.target import Target

if TYPE_CHECKING:
    from checks.prefetch import SweepReads

__all__ = ["Target", "gather", "judge_all", "make_context", "run_sweep"]


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


async def gather(ctx: ProbeContext, probes: tuple[Probe, ...], timeout: float, *,
                 kube: KubeProcess | None = None) -> dict[str, ProbeResult]:
    """Run the probes concurrently, in their order; any still running at `timeout` becomes an error result.
    With `kube`, the Kubernetes probes it runs are answered by that child process, which is handed the
    `nodename` fact as soon as it is known."""
    if kube is not None:
        for probe in kube.probes:
            ctx.elsewhere[probe.name] = kube.answer

    async def hand_over_nodename(kube: KubeProcess) -> None:
        kube.send_nodename(await ctx.get(probe_nodename))

    with anyio.move_on_after(timeout):
        async with anyio.create_task_group() as group:
            group.start_soon(_warm_imports, kube is None)  # its thread imports while this one starts talosctl
            for probe in probes:
                group.start_soon(ctx.get, probe)
            if kube is not None:
                group.start_soon(hand_over_nodename, kube)
                group.start_soon(kube.receive)
    results = ctx.results()
    for probe in probes:
        if probe.name not in results:
            results[probe.name] = ctx.timed_out(probe)
    return results


def judge_all(stages: tuple[StageSpec, ...], facts: dict[str, ProbeResult], target: Target,
              pod_test: bool, lint: Any = None) -> tuple[dict[str, Judgement], dict[str, int]]:
    from checks.judges import JudgeInput

    inp = JudgeInput(facts, target.profile, target.talos.node, pod_test)
    judgements: dict[str, Judgement] = {}
    durations: dict[str, int] = {}
    for spec in stages:
        try:
            judgements[spec.id] = spec.judge(inp)
        except Exception as exc:  # noqa: BLE001 - a judge bug is reported, not a crash
            from checks.errors import one_line

            judgements[spec.id] = Judgement(Status.UNKNOWN, f"internal error judging {spec.id}: {one_line(exc)}")
        durations[spec.id] = max((facts[p.name].duration_ms for p in spec.probes if p.name in facts), default=0)
    add_infra_drift(judgements, target, lint)
    return judgements, durations


def add_infra_drift(judgements: dict[str, Judgement], target: Target, lint: Any = None) -> None:
    """The infra repo's files should say what the path needs: drift is `warn` evidence on its stage."""
    from checks.errors import one_line

    if lint is None:
        from checks.infra import lint_infra as lint
    try:
        drift = lint(target.profile)
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


def __getattr__(name: str) -> Any:
    """`LIGHT_PROBES`: the names of the probes a light refresh re-reads (their `light` property: cheap, and
    they change when anything that matters changes); the rest is reused."""
    if name == "LIGHT_PROBES":
        from checks.paths import light_probes

        return light_probes()
    raise AttributeError(name)


async def run_sweep(target: Target, *, timeout: float = 60.0, pod_test: bool = False,
                    stages: tuple[StageSpec, ...] | None = None, previous: Report | None = None,
                    only: frozenset[str] | None = None, kube: KubeProcess | None = None,
                    reads: SweepReads | None = None) -> Report:
    """Gather, judge, diagnose. The stages are those of the enablement path (checks/paths/): the profile's
    `path`, else the one of the Talos version the node runs — with `auto`, the probes of every path are
    started at once and the path is picked once `talosctl version` has answered. `stages` judges just
    those instead. With `previous` and `only`, re-run just the probes in `only` and reuse the previous
    report's other facts (a light refresh); a fact that failed is always re-run. With `kube`
    (`start_kube_process`), the Kubernetes probes are answered by that child process. With `reads`, the
    talosctl and helm reads started early (`tui.headless`, checks/prefetch.py) are taken from it. A full
    sweep records its reads for the next run of this node."""
    from checks import node_cache, paths
    from checks.prefetch import SweepReads

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
    reads = reads if reads is not None else SweepReads()
    ctx = make_context(target, timeout=timeout, pod_test=pod_test, remembered_node=remembered,
                       remembered_plugin=plugin, reads=reads)
    full = stages is None and only is None
    guess = previous.path if previous is not None else \
        node_cache.remembered_path(target.kube.server, target.talos.node)
    choices = paths.guessed(target.profile, guess)
    probes = _with_nodename(paths.probes_of(choices if stages is None else (), stages or ()))
    wanted = {probe.name for probe in probes}
    if previous is not None and only is not None:
        for name, fact in previous.facts.items():
            if name not in only and name in wanted and fact.error is None and name != "gpu_workload":
                ctx.seed(fact)
    facts = await gather(ctx, probes, timeout, kube=kube)
    version = facts.get("talos_version")
    talos_version = getattr(version.value, "server_tag", None) if version is not None and version.ok else None
    path = paths.choose(target.profile, talos_version)
    if stages is None and path not in choices:  # the node moved to another path (an upgrade): its facts too
        missing = tuple(probe for probe in path.probes() if probe.name not in facts)
        facts = await gather(ctx, missing, max(0.5, ctx.deadline - time.monotonic()))
    judged = stages if stages is not None else path.stages

    def conclude() -> Report:
        """Judge, propagate, diagnose, remember the names: in a worker thread, so that an event loop
        (the TUI's) keeps answering keys meanwhile (the judges match signatures over logs and events)."""
        from checks.diagnosis import propagate, root_cause

        judgements, durations = judge_all(judged, facts, target, pod_test, path.lint)
        results = propagate(judged, judgements, durations)
        node = facts.get("kube_node")
        kube_node = node.value["metadata"]["name"] if node is not None and node.ok else None
        plugin = plugin_names(facts.get("device_plugin"))
        known = node_cache.remembered_reads(target.kube.server, target.talos.node)
        ran = tuple(reads.ran) if full else known  # a partial sweep's reads are not the next run's
        if kube_node and (kube_node != ctx.remembered_node or plugin != ctx.remembered_plugin or path.name != guess
                          or ran != known):
            node_cache.remember(target.kube.server, target.talos.node, kube_node, plugin=plugin,
                                enablement_path=path.name, reads=ran)
        return Report(target.talos.node, kube_node, results, root_cause(results), facts,
                      int((time.monotonic() - started) * 1000), path=path.name,
                      talos_version=str(talos_version) if talos_version else None)

    return await anyio.to_thread.run_sync(conclude)


def _with_nodename(probes: tuple[Probe, ...]) -> tuple[Probe, ...]:
    return tuple(sorted({probe_nodename.name: probe_nodename, **{p.name: p for p in probes}}.values(),
                        key=lambda probe: probe.order))
