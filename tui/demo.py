"""`talos-gpu demo`: the terminal UI against the built-in lab — no cluster needed.

The lab (a simulated Talos node with two H100 NVL GPUs) is reached only through what a real cluster
offers: a talosctl and a helm executable and a Kubernetes API server. It starts in a thread while
Textual loads and draws the first frame, and it is stopped on every way out: a normal quit, an
exception, or the interpreter exiting (atexit).
"""

from __future__ import annotations

import argparse
import atexit
import threading
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from checks.target import Target
    from lab.runtime import LabHandle

DEMO_INFRA_DIR = "infra"  # inside the lab's state directory: where the demo's actions write their files


def demo_target(env: dict[str, str], state_dir: Path) -> Target:
    """A Target for the lab: its talosconfig, kubeconfig and binaries, and an infra repo of its own
    (so the demo's actions never write into the current directory)."""
    from checks import redact
    from checks.target import build_target

    infra = state_dir / DEMO_INFRA_DIR
    infra.mkdir(parents=True, exist_ok=True)
    profile = state_dir / "demo-profile.yaml"
    profile.write_text(f"infra_repo: {DEMO_INFRA_DIR}\n", encoding="utf-8")
    return build_target(profile=str(profile), env=env, redactor=redact.REDACTOR)


class LabStarter:
    """Starts the lab in a thread; `target()` waits for it; `stop()` stops it whenever it got up."""

    def __init__(self, scenario: str, talos_version: str | None = None) -> None:
        self.scenario = scenario
        self.talos_version = talos_version
        self.lab: LabHandle | None = None
        self.error: BaseException | None = None
        self.stopped = False
        self._thread = threading.Thread(target=self._start, name="lab start", daemon=True)
        self._thread.start()

    def _start(self) -> None:
        try:
            from lab.runtime import start_lab

            self.lab = start_lab(self.scenario, talos_version=self.talos_version)
        except BaseException as exc:  # noqa: BLE001 - handed to whoever waits for the target
            self.error = exc

    def target(self) -> Target:
        self._thread.join()
        if self.error is not None:
            raise self.error
        assert self.lab is not None  # started without an error
        return demo_target(dict(self.lab.env), Path(self.lab.state_dir))

    def stop(self) -> None:
        if self.stopped:
            return
        self.stopped = True
        self._thread.join()
        if self.lab is not None:
            self.lab.stop()


def run_demo(args: argparse.Namespace) -> int:
    starter = LabStarter(args.scenario, getattr(args, "talos_version", None))
    atexit.register(starter.stop)
    try:
        from tui.interactive import run_tui

        return run_tui(args, starter.target)
    finally:
        starter.stop()
        atexit.unregister(starter.stop)
