"""`talos-gpu` with no command: the terminal UI against the cluster the configs name."""

from __future__ import annotations

import argparse
import gc
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from checks.target import Target
    from tui.app import TalosGpuApp


@contextmanager
def collector_paused_until_first_frame() -> Iterator[Callable[[], None]]:
    """Pause the cyclic garbage collector while the app starts; the yielded callable resumes it.

    Start-up builds ~100,000 long-lived objects (modules, classes, styles) and almost no garbage, yet
    the collector walks them over and over before the first frame (30-50 ms here, one full pass
    alone ~25 ms). Resuming freezes what start-up built, so later collections skip it too.
    """
    if not gc.isenabled():
        yield lambda: None
        return
    gc.disable()

    def resume() -> None:
        if not gc.isenabled():
            gc.freeze()
            gc.enable()

    try:
        yield resume
    finally:
        resume()


def freeze_long_lived() -> None:
    """Once the first sweep is on the screen: move every object alive now (the kubernetes client, the
    parsers, the whole screen: ~1.5 million objects, nearly all there for good) out of the collector's
    sight. Without this each full collection walks them all again, a 100-250 ms pause of the event loop
    every so often while an action streams output (bench/responsiveness.py). Any garbage cycle alive at
    this moment is kept for good: one-off and small."""
    gc.freeze()


SWEEP_TIMEOUT_S = 30.0


def run_tui(args: argparse.Namespace, target_loader: Callable[[], Target]) -> int:
    """Run the app until the user quits; its exit code is the app's return code (0 unless it failed).

    `target_loader` (resolving the configs and the profile: YAML and all) runs in a thread after the
    first frame; a UsageError it raises ends the app with its one line and exit code 2.
    """
    from tui.head_start import HeadStart

    # the configs are read and the first sweep started before Textual loads: the node answers meanwhile
    head_start = HeadStart(target_loader, timeout=SWEEP_TIMEOUT_S).start()
    try:
        with collector_paused_until_first_frame() as resume_collector:
            from tui.app import TalosGpuApp

            app = TalosGpuApp(None, target_loader=head_start.load_target, refresh=args.refresh,
                              read_only=bool(getattr(args, "read_only", False)), factory=getattr(args, "factory", None),
                              after_first_frame=resume_collector, lean_first_frame=True,
                              after_first_sweep=freeze_long_lived, head_start=head_start,
                              sweep_timeout=SWEEP_TIMEOUT_S)
            keymap = getattr(args, "keymap", None)
            if keymap:
                app.set_keymap(keymap)  # $XDG_CONFIG_HOME/talos-gpu/keymap.yaml (tui.keymap)
            app.run()
    finally:
        head_start.close()  # a sweep still running when the user quit: cancelled, its processes ended
    print_exit_line(app)
    return int(app.return_code or 0)


def print_exit_line(app: TalosGpuApp) -> None:
    """Say on one line of stderr why the app could not start (the terminal is restored by now)."""
    if app.exit_line:
        sys.stderr.write(app.exit_line + "\n")
        sys.stderr.flush()
