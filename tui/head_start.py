"""The first sweep of `talos-gpu`, started before the terminal UI has loaded.

Loading Textual and drawing the first frame take a few hundred milliseconds of the main thread, and the
first sweep spends most of its time waiting on the node (talosctl round trips, Kubernetes requests).
Started first, the sweep waits while the screen loads: the root cause is on the screen that much sooner
(issue 18, `bench/tui_first_contact.py`). The configs are read here too, in the same thread.

The sweep runs in an anyio blocking portal (an event loop in a thread of its own); `close` cancels it if
it is still running, which ends its talosctl and helm process groups like any cancelled sweep (the
runner kills them), and stops the thread. Nothing here touches a widget: the main screen's sweep runner
takes the report (`first_report`) as the result of its first full sweep.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import CancelledError, Future
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from checks.model import Report
    from checks.target import Target


class HeadStart:
    def __init__(self, loader: Callable[[], Target], *, timeout: float) -> None:
        self._loader = loader
        self._timeout = timeout
        self._target: Target | None = None
        self._error: BaseException | None = None
        self._loaded = threading.Event()
        self._portal_cm: Any = None
        self._sweep: Future[Report | None] | None = None
        self._taken = False

    def start(self) -> HeadStart:
        from anyio.from_thread import start_blocking_portal

        self._portal_cm = start_blocking_portal()
        portal = self._portal_cm.__enter__()
        self._sweep = portal.start_task_soon(self._load_and_sweep)
        return self

    async def _load_and_sweep(self) -> Report | None:
        import anyio

        try:
            self._target = await anyio.to_thread.run_sync(self._loader)
        except BaseException as exc:  # noqa: BLE001 - handed to the app's loader, which says it in one line
            self._error = exc
            return None
        finally:
            self._loaded.set()
        from checks.engine import run_sweep

        return await run_sweep(self._target, timeout=self._timeout)

    def load_target(self) -> Target:
        """The app's target loader: the target the head start read (its error, if reading the configs failed)."""
        self._loaded.wait()
        if self._error is not None:
            raise self._error
        assert self._target is not None
        return self._target

    def offers(self, target: Target) -> bool:
        """Whether the first report for `target` can come from here (once: later sweeps are the app's)."""
        return not self._taken and self._target is target and self._sweep is not None

    async def first_report(self) -> Report:
        """The head start's report (waited for without blocking the caller's event loop); what the sweep
        raised, if it failed."""
        import anyio

        self._taken = True
        sweep = self._sweep
        assert sweep is not None
        report = await anyio.to_thread.run_sync(sweep.result, abandon_on_cancel=True)
        assert report is not None
        return report

    def close(self) -> None:
        """Cancel a sweep still running (its process groups are killed) and stop the portal's thread."""
        if self._sweep is not None and not self._sweep.done():
            self._sweep.cancel()
            try:
                self._sweep.result(timeout=5.0)
            except (CancelledError, Exception):  # noqa: BLE001 - cancelled or failed: either way it ended
                pass
        if self._portal_cm is not None:
            portal_cm, self._portal_cm = self._portal_cm, None
            portal_cm.__exit__(None, None, None)
