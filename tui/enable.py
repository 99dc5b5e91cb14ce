"""`talos-gpu enable`: check, then run the action of each stage that does not pass, in stage order.

    talos-gpu enable --dry-run   print every plan (commands, files, schematic id, warnings); change nothing
    talos-gpu enable             ask y/N before each action (stdin must be a terminal, else exit 2)
    talos-gpu enable --yes       run without asking

After each action the checks run again (until the stage passes or a settle time runs out); stages
that now pass are skipped. The GPU test pod (`gpu-workload`) runs last. Exit 0 when every stage
passes at the end, 1 when an action failed or a stage still fails, 2 when enable could not run.
SIGINT/SIGTERM/SIGHUP cancel the running action (its process group is killed, the audit log records it);
exit 128 + the signal number (130, 143, 129).
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from collections.abc import Callable

import anyio
from rich.console import Console
from rich.text import Text

from checks.actions import ActionEvent, ActionResult, Plan, PlanError, plan_action, run_action
from checks.actions.plans import RUNBOOK_STEP_NOTE
from checks.audit import AuditLog, default_audit_path
from checks.engine import Target, run_sweep
from checks.model import Report, StageResult, Status
from checks.sanitize import safe
from checks.session import (
    SETTLE_ALL_FOR_S,
    SETTLE_FOR_S,
    SETTLE_RECHECK_S,
    WORKLOAD,
    EnableState,
    action_settled,
    acts_on,
    all_but_workload_pass,
)
from tui.headless import render_report
from widgets.status import status_text

PROG = "talos-gpu"


class LiveOutput:
    """Streams an action's events: a status line on a terminal, plain lines when piped."""

    def __init__(self, console: Console, stage: str) -> None:
        self.console = console
        self.stage = stage
        self._status = console.status(Text(f"{stage}: starting"), spinner="dots") if console.is_terminal else None

    def __enter__(self) -> LiveOutput:
        if self._status is not None:
            self._status.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        if self._status is not None:
            self._status.stop()

    def _update(self, text: str) -> None:
        if self._status is not None:
            line = Text(f"{self.stage}: {text}", no_wrap=True, overflow="ellipsis")
            line.truncate(max(20, self.console.width - 4), overflow="ellipsis")
            self._status.update(line)

    def __call__(self, event: ActionEvent) -> None:
        text = safe(event.text)
        if event.kind == "step":
            self.console.print(Text.assemble(("▶ ", "bold cyan"), (text, "bold")))
            self._update(text)
        elif event.kind == "phase":
            self.console.print(Text.assemble(("◆ ", "bold magenta"), (text, "magenta")))
            self._update(text)
        else:
            style = "dim" if event.stream == "stdout" else "yellow"
            self.console.print(Text.assemble(("  │ ", "dim"), (text, style)))


# --------------------------------------------------------------------------- rendering


def render_plan(plan: Plan, console: Console, *, preview: bool = True) -> None:
    """`Plan.outline`, styled for the console (the audit log gets the same lines plain: `Plan.describe`)."""
    file_styles = {"create": "green", "same": "dim", "differs": "yellow"}
    steps_said = False
    for line in plan.outline():
        text = safe(line.text)
        if line.kind == "header":
            header = Text.assemble(("━━ ", "bold"), (plan.stage, "bold cyan"), " — ", (text, "bold"))
            if plan.reboots:
                header.append(f"  [reboots the node: {plan.confirm_word}]", style="bold yellow")
            console.print(header)
        elif line.kind == "schematic":
            console.print(Text(f"  schematic id:    {text}"))
        elif line.kind == "installer":
            console.print(Text(f"  installer image: {text}"))
        elif line.kind == "file":
            console.print(Text.assemble("  file ", (text, file_styles.get(line.detail, ""))))
        elif line.kind == "diff":
            for diff in text.rstrip("\n").splitlines():
                console.print(Text("    " + diff, style="red" if diff.startswith("-") else
                                   "green" if diff.startswith("+") else "dim"))
        elif line.kind == "warning":
            console.print(Text.assemble(("  ▲ warning: ", "bold yellow"), text))
        elif line.kind == "step":
            if not steps_said:
                console.print(Text("  steps:", style="bold"))
                steps_said = True
            console.print(Text(f"    {line.detail}. {text}"))
    if not steps_said:
        console.print(Text("  steps:", style="bold"))
    if preview and plan.preview.strip():
        console.print(Text("  preview:", style="bold"))
        for line in safe(plan.preview).rstrip("\n").splitlines():
            console.print(Text("    " + line, style="dim"))


def render_stage_line(stage: StageResult, console: Console) -> None:
    console.print(Text.assemble("  ", status_text(stage.status), " ", (stage.id, "bold"), " — ", safe(stage.summary)))


# --------------------------------------------------------------------------- the walk


def action_stages(report: Report) -> tuple[str, ...]:
    """The stages with an action on the report's enablement path, in stage order."""
    from checks.paths import named

    return named(report.path).action_stages


async def _ask(question: str) -> bool:
    def read() -> str:
        sys.stdout.write(question)
        sys.stdout.flush()
        return sys.stdin.readline()

    answer = await anyio.to_thread.run_sync(read, abandon_on_cancel=True)
    return answer.strip().lower() in ("y", "yes")


async def _sweep(target: Target, args: argparse.Namespace) -> Report:
    return await run_sweep(target, timeout=args.timeout)


async def _settle(target: Target, args: argparse.Namespace, done: Callable[[Report], bool], console: Console,
                  what: str, limit: float = SETTLE_FOR_S) -> Report:
    """Re-check until `done(report)` or `limit` seconds passed; returns the last report."""
    deadline = time.monotonic() + limit
    report = await _sweep(target, args)
    announced = False
    while not done(report) and time.monotonic() < deadline:
        if not announced:
            console.print(Text(f"… waiting for {what} (re-checking every {SETTLE_RECHECK_S:g}s, up to {limit:g}s)",
                               style="dim"))
            announced = True
        await anyio.sleep(SETTLE_RECHECK_S)
        report = await _sweep(target, args)
    return report


async def _run_one(plan: Plan, target: Target, args: argparse.Namespace, console: Console,
                   audit: AuditLog, state: EnableState) -> ActionResult | None:
    """Confirm (unless --yes) and run one action; None when the person declined."""
    render_plan(plan, console, preview=not args.yes)
    if not args.yes:
        word = f" (it reboots {plan.confirm_word})" if plan.reboots else ""
        if not await _ask(f"Run the {plan.stage} action{word}? [y/N] "):
            console.print(Text(f"skipped {plan.stage}: declined", style="yellow"))
            state.declined.add(plan.stage)
            return None
    state.current = plan.stage
    state.attempted.add(plan.stage)
    started = time.monotonic()
    with LiveOutput(console, plan.stage) as live:
        result = await run_action(plan, target, live, audit=audit, read_only=bool(getattr(args, "read_only", False)))
    state.current = ""
    elapsed = time.monotonic() - started
    style = "bold green" if result.ok else "bold red"
    console.print(Text.assemble((f"{'✔' if result.ok else '✘'} {plan.stage} {result.status}", style),
                                f" in {elapsed:.1f}s — ", safe(result.reason)))
    if result.node_state and not result.ok:
        console.print(Text(f"  node: {safe(result.node_state)}", style="yellow"))
    return result


async def _apply(target: Target, args: argparse.Namespace, console: Console, audit: AuditLog,
                 state: EnableState) -> int:
    factory = getattr(args, "factory", None)
    while (stage_id := state.next_stage(action_stages(state.report))) is not None:
        hopeless = state.hopeless_block(stage_id, action_stages(state.report))
        if hopeless:
            root = state.report.root_cause
            console.print(Text(f"✘ {hopeless}", style="bold red"))
            if root is not None:
                console.print(Text.assemble(("  root cause: ", "bold"), f"{root.stage} — {safe(root.summary)}"))
                if root.remediation:
                    console.print(Text.assemble(("  next: ", "bold"), safe(root.remediation)))
            return 1
        try:
            plan = await plan_action(stage_id, target, state.report, factory=factory)
        except PlanError as exc:
            if str(exc).startswith(f"stage {stage_id} has no action"):
                console.print(Text(f"• {safe(str(exc))}", style="dim"))
                state.no_action.add(stage_id)
                continue
            console.print(Text(f"✘ cannot plan {stage_id}: {safe(str(exc))}", style="bold red"))
            return 1
        result = await _run_one(plan, target, args, console, audit, state)
        if result is None:
            continue
        if not result.ok:
            return 1
        state.report = await _settle(
            target, args, lambda r, s=stage_id: action_settled(r, s),
            console, f"{stage_id} to pass")
        stage = state.report.stage(stage_id)
        console.print(Text("re-check:", style="bold"))
        render_stage_line(stage, console)
        if not stage.status.ok:
            console.print(Text(f"✘ the {stage_id} action ran, but the stage still does not pass", style="bold red"))
            for line in stage.evidence:
                console.print(Text("  • " + safe(line), style="dim"))
            return 1

    if not all_but_workload_pass(state.report):
        state.report = await _settle(target, args, all_but_workload_pass, console, "every stage to pass",
                                    SETTLE_ALL_FOR_S)
    if not all_but_workload_pass(state.report):
        failing = [s for s in state.report.stages if not s.status.ok]
        console.print(Text(f"✘ {failing[0].id} does not pass and no action is left to run", style="bold red"))
        render_report(state.report, console)
        return 1
    try:
        plan = await plan_action(WORKLOAD, target, state.report, factory=factory)
    except PlanError as exc:
        console.print(Text(f"✘ cannot plan {WORKLOAD}: {safe(str(exc))}", style="bold red"))
        return 1
    result = await _run_one(plan, target, args, console, audit, state)
    state.workload = result
    return 0 if result is not None and result.ok else 1


async def _dry_run(target: Target, args: argparse.Namespace, console: Console, report: Report) -> int:
    factory = getattr(args, "factory", None)
    console.print(Text("Dry run: nothing below is run, written or registered.", style="bold"))
    planned = 0
    for stage_id in action_stages(report):
        stage = report.stage(stage_id)
        if stage_id != WORKLOAD and not acts_on(stage.status):
            continue
        if stage.status is Status.BLOCKED and stage.blocked_by not in action_stages(report):
            console.print(Text(f"━━ {stage_id}: blocked by {stage.blocked_by}, which has no action: no plan",
                               style="yellow"))
            continue
        try:
            plan = await plan_action(stage_id, target, report, factory=factory)
        except PlanError as exc:
            nothing = str(exc).startswith(f"stage {stage_id} has no action")
            console.print(Text(f"━━ {stage_id}: {'no plan' if nothing else 'cannot plan'}: {safe(str(exc))}",
                               style="dim" if nothing else "bold red"))
            continue
        console.print()
        render_plan(plan, console)
        planned += 1
    if planned and report.overall is not Status.PASS:
        console.print(Text("\nLater plans assume the earlier actions ran; enable re-plans after each re-check.",
                           style="dim"))
    return report.exit_code


async def _watch_signals(scope: anyio.CancelScope, state: EnableState) -> None:
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM, signal.SIGHUP) as signals:
        async for signum in signals:
            state.cancelled_by = signal.Signals(signum).name
            scope.cancel()
            return


async def _walk(target: Target, args: argparse.Namespace, console: Console, state: EnableState,
                audit: AuditLog) -> int:
    state.report = await _sweep(target, args)
    render_report(state.report, console)
    console.print(Text(f"Note: {RUNBOOK_STEP_NOTE}.", style="dim"))
    if args.dry_run:
        return await _dry_run(target, args, console, state.report)
    return await _apply(target, args, console, audit, state)


async def _main(target: Target, args: argparse.Namespace, console: Console) -> int:
    state = EnableState(Report(target.talos.node, None, [], None))
    audit = AuditLog(default_audit_path(target.env))  # opened (created) only when an action records
    code = 1
    try:
        async with anyio.create_task_group() as group:
            group.start_soon(_watch_signals, group.cancel_scope, state)
            code = await _walk(target, args, console, state, audit)
            group.cancel_scope.cancel()
    finally:
        audit.close()
    if state.cancelled_by:
        where = f" during the {state.current} action" if state.current else ""
        console.print(Text(f"✘ cancelled by {state.cancelled_by}{where}; see the audit log {audit.path}",
                           style="bold red"))
        return 128 + int(getattr(signal, state.cancelled_by))
    if args.dry_run:
        return code
    _render_final(state, console)
    console.print(Text(f"audit log: {audit.path}", style="dim"))
    if code == 0 and not all_but_workload_pass(state.report):
        code = 1
    return code


def _render_final(state: EnableState, console: Console) -> None:
    console.print(Text("Final state:", style="bold"))
    for stage in state.report.stages:
        if stage.id == WORKLOAD and state.workload is not None:
            status = Status.PASS if state.workload.ok else Status.FAIL
            console.print(Text.assemble("  ", status_text(status), " ", (stage.id, "bold"), " — ",
                                        safe(state.workload.reason)))
            continue
        render_stage_line(stage, console)


def enable(args: argparse.Namespace, target: Target) -> int:
    """The `talos-gpu enable` command; returns the exit code."""
    started = time.monotonic()
    if not args.dry_run and not args.yes and not sys.stdin.isatty():
        sys.stderr.write(f"{PROG}: enable asks before each action but stdin is not a terminal: "
                         "pass --yes to run without asking, or --dry-run to only see the plan\n")
        return 2
    if getattr(args, "read_only", False) and not args.dry_run:
        sys.stderr.write(f"{PROG}: --read-only allows only 'enable --dry-run' (every action changes the cluster)\n")
        return 2
    console = Console(highlight=False, soft_wrap=not sys.stdout.isatty())
    code = anyio.run(_main, target, args, console)
    console.print(Text(f"enable finished in {time.monotonic() - started:.1f}s (exit {code})", style="bold"))
    return code
