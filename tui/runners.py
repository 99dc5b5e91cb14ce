"""The workers behind the main screen: small facades whose methods run the domain and post Messages.

Worker code never touches a widget or the screen's state (the shape of harlequin's `driver.py`): the screen
starts a worker on one of these methods and reacts to the Messages in its handlers. What a running sweep or
action keeps between its messages (the time of the last full sweep, the buffer of an action's output) lives
here, not among the screen's attributes.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from textual.message import Message

from checks.errors import one_line
from tui.messages import ActionFinished, ActionOutput, ActionOutputReady, SweepCrashed, SweepFinished

if TYPE_CHECKING:
    from pathlib import Path

    from checks.actions.model import ActionEvent, Plan
    from checks.model import Report
    from checks.target import Target
    from tui.head_start import HeadStart

Post = Callable[[Message], object]


class SweepRunner:
    """Runs one sweep at a time and posts SweepFinished (with whether a light sweep saw a stage move) or
    SweepCrashed. Remembers when the last full sweep ended: light sweeps reuse what it read."""

    def __init__(self, post: Post, head_start: HeadStart | None = None) -> None:
        self.post = post
        self.last_full: float | None = None  # time.monotonic() of the last full sweep
        self.head_start = head_start  # the first full sweep's report, if it was started before the app

    def light_allowed(self, *, every_s: float) -> bool:
        """A light sweep is allowed within `every_s` of the last full one."""
        return self.last_full is not None and time.monotonic() - self.last_full < every_s

    async def sweep(self, target: Target, *, timeout: float, previous: Report | None, light: bool) -> None:
        from checks.engine import (  # the kubernetes client loads in the engine's thread
            LIGHT_PROBES,
            run_sweep,
        )

        try:
            if not light and self.head_start is not None and self.head_start.offers(target):
                report = await self.head_start.first_report()
            else:
                report = await run_sweep(target, timeout=timeout, previous=previous if light else None,
                                         only=LIGHT_PROBES if light else None)
        except Exception as exc:  # noqa: BLE001 - a bug in a sweep must not end the app
            self.post(SweepCrashed(one_line(exc)))
            return
        moved = False
        if not light:
            self.last_full = time.monotonic()
        elif previous is not None and [s.status for s in report.stages] != [s.status for s in previous.stages]:
            moved = True  # something moved: look at everything now
        self.post(SweepFinished(report, moved=moved))


class ActionRunner:
    """Runs one action and posts its output and its end. A command may print 10,000 lines: its events are
    buffered and one ActionOutputReady stands for a whole burst; the screen takes them in turns (`take`)."""

    def __init__(self, post: Post) -> None:
        self.post = post
        self.buffer: list[ActionOutput] = []
        self.posted = False

    def take(self, most: int | None = None) -> list[ActionOutput]:
        """The oldest buffered events (all of them when `most` is None)."""
        taken = self.buffer[:most] if most is not None else self.buffer
        self.buffer = self.buffer[len(taken):]
        return taken

    def after_turn(self) -> None:
        """After a turn of `take`: ask for another turn while events are left."""
        if self.buffer:
            self.post(ActionOutputReady())
        else:
            self.posted = False

    async def run(self, plan: Plan, target: Target, *, audit_path: Path | None, read_only: bool) -> None:
        from checks.actions import ActionStatus, run_action
        from checks.audit import AuditLog

        stage = plan.stage

        def emit(event: ActionEvent) -> None:
            self.buffer.append(ActionOutput(stage, event.kind, event.text, getattr(event, "stream", "")))
            if not self.posted:
                self.posted = True
                self.post(ActionOutputReady())

        audit = AuditLog(audit_path)
        try:
            result = await run_action(plan, target, emit, audit=audit, read_only=read_only)
        except asyncio.CancelledError:
            self.post(ActionFinished(stage, ActionStatus.CANCELLED, "cancelled with x; its processes were stopped"))
            raise
        except Exception as exc:  # noqa: BLE001 - an action's bug is reported, the app keeps running
            self.post(ActionFinished(stage, ActionStatus.FAILED, f"internal error: {one_line(exc)}"))
            return
        finally:
            audit.close()
        self.post(ActionFinished(stage, result.status, result.reason, result.node_state))
