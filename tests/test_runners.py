"""tui.runners: the main screen's workers post Messages and touch nothing else (recorded here, against the lab)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
from textual.message import Message

from checks.actions import ActionStatus, plan_action
from checks.engine import run_sweep
from tui.demo import demo_target
from tui.messages import ActionFinished, ActionOutput, ActionOutputReady, SweepFinished
from tui.runners import ActionRunner, SweepRunner


def test_a_sweep_posts_its_report_and_a_light_one_says_whether_a_stage_moved(lab: Any) -> None:
    handle = lab("healthy")
    target = demo_target(dict(handle.env), Path(handle.state_dir))
    posted: list[Message] = []
    runner = SweepRunner(posted.append)
    assert not runner.light_allowed(every_s=30)
    anyio.run(lambda: runner.sweep(target, timeout=30, previous=None, light=False))
    assert [type(m) for m in posted] == [SweepFinished]
    full = posted[0]
    assert isinstance(full, SweepFinished) and not full.moved
    assert full.report.root_cause is None
    assert runner.light_allowed(every_s=30)
    assert not runner.light_allowed(every_s=0)

    lab("modules-not-loaded")  # the node changes under the light sweep's feet
    anyio.run(lambda: runner.sweep(target, timeout=30, previous=full.report, light=True))
    light = posted[1]
    assert isinstance(light, SweepFinished) and light.moved


def test_an_action_posts_its_output_in_bursts_and_then_its_end(lab: Any, tmp_path: Path) -> None:
    handle = lab("runtimeclass-missing")
    target = demo_target(dict(handle.env), Path(handle.state_dir))
    report = anyio.run(lambda: run_sweep(target, timeout=30))
    plan = anyio.run(lambda: plan_action("runtimeclass", target, report))
    posted: list[Message] = []
    runner = ActionRunner(posted.append)
    anyio.run(lambda: runner.run(plan, target, audit_path=tmp_path / "audit.log", read_only=False))
    assert isinstance(posted[0], ActionOutputReady)
    assert sum(isinstance(m, ActionOutputReady) for m in posted) == 1  # one for the whole burst
    finished = posted[-1]
    assert isinstance(finished, ActionFinished) and finished.status is ActionStatus.OK, finished
    first = runner.take(1)
    assert len(first) == 1 and isinstance(first[0], ActionOutput) and first[0].stage == "runtimeclass"
    runner.after_turn()  # events are left: another turn is asked for
    assert isinstance(posted[-1], ActionOutputReady)
    assert runner.take() and runner.buffer == []
    runner.after_turn()
    assert not runner.posted

    refused: list[Message] = []
    anyio.run(lambda: ActionRunner(refused.append).run(plan, target, audit_path=tmp_path / "audit.log",
                                                       read_only=True))
    end = refused[-1]
    assert isinstance(end, ActionFinished) and end.status is ActionStatus.FAILED
    assert "read-only" in end.reason
