"""The main screen's actions: planning one, running it, cancelling it, and what it means for the next reports.

`ActionController` holds what a running (or just finished) action is: its stage, whether it reboots the
node, its output, the passing test pod it leaves behind. Its workers only post Messages (`PlanReady`,
`PlanFailed` here; `ActionOutputReady`, `ActionFinished` from `tui.runners.ActionRunner`); the screen's
handlers show them. Nothing here touches a widget. Which failures an action makes expected while the node
reboots, and how a passing test pod keeps `gpu-workload` passing, are decided here from the report alone,
with the rebooting rule of `checks.session` (the one `enable` uses too).
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections import deque
from typing import TYPE_CHECKING

from textual.worker import WorkerCancelled, WorkerFailed

from checks.errors import one_line
from checks.session import WORKLOAD, rebooting_reason
from tui.messages import ActionOutput, PlanFailed, PlanReady
from tui.runners import ActionRunner

if TYPE_CHECKING:
    from pathlib import Path

    from textual.screen import Screen
    from textual.worker import Worker

    from checks.actions.model import Plan
    from checks.model import Report, StageResult
    from checks.session import Settling
    from checks.stages import StageSpec
    from checks.target import Target

ACTION_OUTPUT_KEPT = 400  # the running action's last lines, kept for the test pod's summary


class ActionController:
    """One action at a time for one screen (`host` runs the workers; they end with it)."""

    def __init__(self, host: Screen) -> None:
        self.host = host
        self.runner = ActionRunner(host.post_message)  # the worker's side: it only posts messages
        self.worker: Worker[None] | None = None
        self.stage: str | None = None  # the running action's stage
        self.reboots = False  # the running action reboots the node
        self.planning: str | None = None  # the stage whose plan is being made
        self.cancelled_by_user = False  # x was pressed: re-check after the cancel (not when the app closes)
        self.output: deque[str] = deque(maxlen=ACTION_OUTPUT_KEPT)  # the running action's lines
        self.reboot_expected: str | None = None  # the stage whose action reboots the node, until it is back
        self.test_pod_result: StageResult | None = None  # a passing test pod's, kept until a re-check invalidates it
        self.last_test_pod: str | None = None  # the last test pod's nvidia-smi summary (the GPU pane shows it)

    @property
    def running(self) -> bool:
        return self.worker is not None and self.worker.is_running

    # ---- planning ---------------------------------------------------------------------------------

    def plan(self, stage_id: str, target: Target, report: Report | None, *, factory: str | None) -> None:
        """Plan the stage's action in a worker: PlanReady or PlanFailed follows."""
        self.planning = stage_id
        self.host.run_worker(self._plan(stage_id, target, report, factory), name=f"plan {stage_id}", group="plan",
                             exit_on_error=False)

    async def _plan(self, stage_id: str, target: Target, report: Report | None, factory: str | None) -> None:
        from checks.actions import plan_action

        try:
            plan = await plan_action(stage_id, target, report, factory=factory)
        except Exception as exc:  # noqa: BLE001 - shown, never a traceback
            self.host.post_message(PlanFailed(stage_id, one_line(exc)))
            return
        self.host.post_message(PlanReady(plan))

    # ---- running ----------------------------------------------------------------------------------

    def start(self, plan: Plan, target: Target, *, audit_path: Path | None, read_only: bool) -> None:
        """Run the confirmed plan in a worker: ActionOutputReady (bursts) and ActionFinished follow."""
        self.stage = plan.stage
        self.reboots = bool(plan.reboots)
        self.reboot_expected = plan.stage if plan.reboots else None
        self.output.clear()
        self.cancelled_by_user = False
        run = self.runner.run(plan, target, audit_path=audit_path, read_only=read_only)
        self.worker = self.host.run_worker(run, name=f"action {plan.stage}", group="action", exit_on_error=False)

    def take(self, most: int | None = None) -> list[ActionOutput]:
        """The oldest buffered output events (all when `most` is None); their lines are kept in `output`."""
        events = self.runner.take(most)
        self.output.extend(event.text for event in events if event.kind == "line")
        return events

    def after_turn(self) -> None:
        self.runner.after_turn()

    def finished(self, stage: str, ok: bool, reason: str, stages: tuple[StageSpec, ...]) -> None:
        """The action ended; a test pod that passed keeps its stage passing (`with_test_pod_result`)."""
        if stage == WORKLOAD:
            from checks.stages import stage_spec
            from widgets.panes import test_pod_summary

            spec = stage_spec(WORKLOAD, stages)
            self.last_test_pod = test_pod_summary(list(self.output), reason)
            self.test_pod_result = _test_pod_stage(spec, self.last_test_pod, reason) if ok else None
        self.stage = None
        self.reboots = False

    def cancel(self) -> bool:
        """Cancel at the user's request (x); False when no action runs."""
        if self.worker is None or not self.running:
            return False
        self.cancelled_by_user = True
        self.worker.cancel()
        return True

    async def cancel_and_wait(self) -> None:
        """Cancel the running action and wait until its processes are gone (used when quitting)."""
        worker = self.worker
        if worker is None or not worker.is_running:
            return
        worker.cancel()
        with contextlib.suppress(WorkerCancelled, WorkerFailed):  # the cancel we asked for, not an error
            await worker.wait()

    # ---- what the action means for a report -------------------------------------------------------

    def rebooting_reason(self, report: Report | None) -> str | None:
        """Why the node is taken to be rebooting, from the report and the running action (checks.session)."""
        return rebooting_reason(report, action_stage=self.stage, action_reboots=self.reboots)

    def with_test_pod_result(self, report: Report) -> Report:
        """A test pod that passed keeps `gpu-workload` passing on the checklist (sweeps do not run the pod)
        until a re-check invalidates it: any other stage no longer passing."""
        from checks.model import Status

        kept = self.test_pod_result
        if kept is None:
            return report
        if any(not s.status.ok for s in report.stages if s.id != kept.id):
            self.test_pod_result = None
            return report
        stages = [kept if s.id == kept.id and s.status is Status.SKIPPED else s for s in report.stages]
        return dataclasses.replace(report, stages=stages)

    def expected(self, report: Report, settling: Settling | None, rebooting: str | None) -> dict[str, str]:
        """While an action that reboots the node runs, and after it until the node is back (or its re-checks
        give up), the failures the reboot causes are its progress: the cluster stage, the action's own stage,
        and what cannot be checked meanwhile. Not a root cause. Stage id -> why its failure is expected.
        `rebooting`: the screen's `rebooting_reason` as it stood before this report."""
        from checks.model import Status

        stage = self.reboot_expected
        if stage is None:
            return {}
        running = self.running
        if not running:
            try:
                cluster_ok = report.stage("cluster").status.ok
            except KeyError:
                cluster_ok = True
            if settling is None or (cluster_ok and rebooting is None):
                self.reboot_expected = None
                return {}
        notes = {"cluster": f"node rebooting: the {stage} action" if running else f"node coming back after the {stage} action",
                 stage: f"the {stage} action is running" if running else f"checking again after the {stage} action"}
        expected = {}
        for result in report.stages:
            if result.status.ok or result.blocked_by:
                continue
            if result.id in notes:
                expected[result.id] = notes[result.id]
            elif result.status is Status.UNKNOWN:
                expected[result.id] = "not answering while the node reboots"
        return expected


def _test_pod_stage(spec: StageSpec, summary: str, reason: str) -> StageResult:
    from checks.model import StageResult, Status

    evidence = [f"test pod (run from the TUI): {reason}"]
    if summary != reason:
        evidence.append(f"nvidia-smi: {summary}")
    return StageResult(spec.id, spec.title, Status.PASS, f"the test pod ran nvidia-smi: {summary}", evidence)
