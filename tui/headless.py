"""Headless `talos-gpu check`: a Rich table, JSON, YAML or a Markdown incident note (`enable` is tui/enable.py)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import anyio

from checks.sanitize import safe, safe_json

if TYPE_CHECKING:  # Rich is imported only to draw the table: `check --json` never pays for it
    from rich.console import Console

    from checks.kube_process import KubeProcess
    from checks.model import Report
    from checks.target import Target

def render_report(report: Report, console: Console) -> None:
    from rich.table import Table
    from rich.text import Text

    from widgets.status import status_text

    title = f"talos-gpu check — node {report.node}" + (f" (Kubernetes node {report.kube_node})" if report.kube_node else "")
    title += f" — Talos {report.talos_version or 'unknown'}, path {report.path}"
    table = Table(title=Text(safe(title, one_line=True)), title_justify="left", expand=False, show_lines=False)
    table.add_column("stage", no_wrap=True)
    table.add_column("status", no_wrap=True)
    table.add_column("summary", overflow="fold")
    table.add_column("ms", justify="right", style="dim")
    for stage in report.stages:
        table.add_row(Text(stage.id), status_text(stage.status), Text(safe(stage.summary)), Text(str(stage.duration_ms)))
    console.print(table)
    cause = report.root_cause
    if cause is None:
        console.print(Text(f"✔ every stage passes — {report.wall_ms} ms", style="bold green"))
        return
    console.print(Text.assemble(("Root cause: ", "bold red"), (cause.stage, "bold"), " — ", safe(cause.summary)))
    root = report.stage(cause.stage)
    for line in root.evidence:
        console.print(Text("  • " + safe(line), style="dim"))
    if cause.remediation:
        console.print(Text.assemble(("Next: ", "bold"), (safe(cause.remediation), "bold cyan")))
    if cause.advice:
        console.print(Text(safe(cause.advice), style="dim"))


async def _until_stopped(sweep: Callable[[], Awaitable[Report]]) -> Report:
    """Run the sweep; SIGINT, SIGTERM or SIGHUP cancel it (each talosctl's process group is ended and
    waited for) and raise StoppedBySignal."""
    import signal

    from checks.errors import StoppedBySignal
    from checks.runner import ChildWatcherInLoop

    stopped: list[int] = []
    report: Report | None = None
    async with ChildWatcherInLoop(), anyio.create_task_group() as group:

        async def watch() -> None:
            with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM, signal.SIGHUP) as signals:
                async for signum in signals:
                    stopped.append(signum)
                    group.cancel_scope.cancel()
                    return

        group.start_soon(watch)
        report = await sweep()
        group.cancel_scope.cancel()
    if stopped or report is None:
        raise StoppedBySignal(stopped[0] if stopped else 2)
    return report


def run_check(args: argparse.Namespace, target: Target) -> int:
    """`talos-gpu check`. Its first ~0.1 s go to loading the stage tables, probes, judges and parsers, so
    before that: the Kubernetes reads are forked off to another core (checks/kube_process.py), and the
    talosctl and helm reads the last run of this node made are started (checks/prefetch.py)."""
    from checks.kube_process import start_kube_process

    kube = start_kube_process(target, timeout=args.timeout, pod_test=args.pod_test)
    try:
        report = anyio.run(_until_stopped, lambda: _sweep(target, args, kube))
        try:
            write_report(report, getattr(args, "output", None) or ("json" if args.json else "table"))
        except BrokenPipeError:  # the reader went away (`check | head -1`): the check itself did not fail
            from tui.process import silence_stdout

            silence_stdout()
    finally:
        if kube is not None:
            kube.stop()
    return report.exit_code


async def _sweep(target: Target, args: argparse.Namespace, kube: KubeProcess | None) -> Report:
    from checks import node_cache
    from checks.prefetch import SweepReads

    reads = SweepReads()
    async with anyio.create_task_group() as group:
        # every read's process is running before the imports below
        await reads.start({"talosctl": target.talosctl(), "helm": target.helm()},
                          node_cache.remembered_reads(target.kube.server, target.talos.node), group, timeout=args.timeout)
        try:
            from checks.engine import run_sweep

            return await run_sweep(target, timeout=args.timeout, pod_test=args.pod_test, kube=kube, reads=reads)
        finally:
            reads.end()


def write_report(report: Report, output: str) -> None:
    """The report on stdout in one of `check -o`'s formats; what came from the cluster is redacted."""
    if output == "table":
        from rich.console import Console

        class TableConsole(Console):
            def on_broken_pipe(self) -> None:  # Rich's own exits 1, which reads as a failing stage
                raise BrokenPipeError

        render_report(report, TableConsole(highlight=False))
        return
    if output == "json":
        text = safe_json(report.to_json(), indent=2) + "\n"
    elif output == "yaml":
        import yaml

        text = yaml.safe_dump(report.to_json(), sort_keys=False, allow_unicode=True, width=100)
    elif output == "markdown":
        from datetime import UTC, datetime

        from tui.incident import incident_note

        text = incident_note(report, checked_at=datetime.now(UTC))
    else:
        raise ValueError(f"unknown output format {output!r}")
    sys.stdout.write(text if output == "json" else safe(text))  # safe_json has redacted and escaped already
    sys.stdout.flush()  # the report is out before the reader child is waited for

