"""When the main screen sweeps: one sweep at a time, the next only once the last has ended.

`SweepController` is the scheduling half of the sweeps (the other half, `tui.runners.SweepRunner`, runs one
sweep in a worker and posts its report). It decides between a full and a light sweep, queues a sweep asked
for while one runs, re-checks quickly while an action's stage settles (`checks.session`: the settle time and
the re-check interval live there, for `enable` too), and waits `refresh` seconds otherwise (dolphie's rule:
a slow cluster never piles up requests). It touches no widget: what the screen shows of it comes as
Messages (`SweepStarted` here, `SweepFinished`/`SweepCrashed` from the runner), handled by the screen.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from checks.session import SETTLE_RECHECK_S, Settling
from tui.messages import SweepStarted
from tui.runners import SweepRunner

if TYPE_CHECKING:
    from collections.abc import Callable

    from textual.screen import Screen
    from textual.timer import Timer
    from textual.worker import Worker

    from checks.model import Report
    from checks.target import Target

FULL_SWEEP_EVERY = 6  # periodic refreshes per full sweep (30 s at the default 5 s); the others are light


class SweepSource(Protocol):
    """What the controller reads from its screen (`tui.screens.main.MainScreen`) when a sweep starts."""

    @property
    def report(self) -> Report | None: ...

    def rebooting_reason(self) -> str | None: ...


class SweepController:
    """The sweeps of one screen. `host` runs the workers and timers (they end with it); `target` is read
    when each sweep starts (the demo's target arrives after the first frame)."""

    def __init__(self, host: Screen, source: SweepSource, *, target: Callable[[], Target | None], refresh: float,
                 timeout: float) -> None:
        self.host = host
        self.source = source
        self.target = target
        self.refresh = refresh
        self.timeout = timeout
        self.runner = SweepRunner(host.post_message)  # the worker's side: it only posts messages
        self.worker: Worker[None] | None = None
        self.again = False  # a sweep was asked for while one ran: start it when that one ends
        self.again_full = False
        self.next_sweep: Timer | None = None
        self.paused = False
        self.done = 0  # sweeps ended (with a report or a crash)
        self.settling: Settling | None = None  # after an action: re-check until its stage passes

    @property
    def running(self) -> bool:
        return self.worker is not None and self.worker.is_running

    def start(self, *, full: bool = True) -> None:
        """Start a sweep now, or right after the running one ends (never two at once).

        `full=False` (the periodic refresh) may re-read only the probes that reveal change and reuse
        the rest; a full sweep still happens every FULL_SWEEP_EVERY refreshes, while the node reboots,
        and as soon as a light one sees a stage change.
        """
        target = self.target()
        if target is None:
            return
        if self.running:
            self.again = True
            self.again_full = self.again_full or full
            return
        self._stop_timer()
        self.again = False
        self.again_full = False
        self.host.post_message(SweepStarted())
        self.worker = self.host.run_worker(self._sweep(target, full), name="sweep", group="sweep",
                                           exit_on_error=False)

    def _light_allowed(self) -> bool:
        if self.source.report is None or self.source.rebooting_reason() is not None:
            return False
        return self.runner.light_allowed(every_s=FULL_SWEEP_EVERY * self.refresh)

    async def _sweep(self, target: Target, full: bool) -> None:
        previous = self.source.report
        await self.runner.sweep(target, timeout=self.timeout, previous=previous,
                                light=not full and self._light_allowed())

    def finished(self, *, moved: bool) -> None:
        """A sweep ended with a report (`moved`: a light one saw a stage change: a full one follows at once)."""
        if moved:
            self.again, self.again_full = True, True
        self.done += 1

    def crashed(self) -> None:
        """A sweep raised: count it and carry on as after any sweep."""
        self.done += 1
        self.schedule_next()

    def settle_after(self, stage: str) -> None:
        """An action on `stage` ended well: re-check quickly until it settles (`checks.session.Settling`)."""
        self.settling = Settling.after(stage)

    def after_report(self, report: Report) -> None:
        """The report of the last sweep is on the screen: a settle re-check, else the next periodic sweep."""
        if self._still_settling(report):
            self.next_sweep = self.host.set_timer(SETTLE_RECHECK_S, self.start, name="settle re-check")
            return
        self.schedule_next()

    def _still_settling(self, report: Report) -> bool:
        """After an action, its stage may need a moment (a plugin registering, a node coming back):
        re-check every SETTLE_RECHECK_S until it settles or its time is up (checks.session)."""
        if self.settling is None or self.again or self.paused:
            return False
        if self.settling.over(report):
            self.settling = None
            return False
        return True

    def schedule_next(self) -> None:
        if self.again:
            self.start(full=self.again_full)
        elif self.refresh > 0 and not self.paused and self.target() is not None:
            self.next_sweep = self.host.set_timer(self.refresh, self._periodic, name="next sweep")

    def _periodic(self) -> None:
        self.start(full=False)

    def toggle_pause(self) -> bool:
        """Pause (no timer left) or resume (a sweep at once); returns whether it is paused now."""
        self.paused = not self.paused
        if self.paused:
            self._stop_timer()
        else:
            self.start()
        return self.paused

    def _stop_timer(self) -> None:
        if self.next_sweep is not None:
            self.next_sweep.stop()
            self.next_sweep = None
