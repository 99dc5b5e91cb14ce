"""Save SVG screenshots of the app against the lab, for the README.

    python -m tui.screenshots screenshots

starts a lab per picture, lets the app run its first real sweep, presses the keys a user would, and
writes `<dir>/<name>.svg`: fresh, healthy, a root-cause view, the confirm modal, and help.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from checks.target import Target

SIZE = (120, 40)
SWEEP_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class Shot:
    name: str
    scenario: str
    keys: tuple[str, ...] = ()
    wait_for_modal: bool = False  # the keys open a dialog that needs a moment (planning an action)


SHOTS: tuple[Shot, ...] = (
    Shot("fresh", "fresh"),
    Shot("healthy", "healthy", ("4",)),
    Shot("root-cause", "no-runtimeclassname", ("4",)),
    Shot("confirm", "fresh", ("a",), wait_for_modal=True),
    Shot("help", "healthy", ("question_mark",)),
)


async def _shoot(shot: Shot, target: Target) -> str:
    from tui.app import TalosGpuApp
    from tui.screens.confirm import ConfirmActionScreen

    app = TalosGpuApp(target, refresh=0, stable_output=True)
    async with app.run_test(size=SIZE) as pilot:
        main = app.main_screen
        deadline = time.monotonic() + SWEEP_TIMEOUT_S
        while main.sweeps_done < 1:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{shot.name}: the first sweep did not finish")
            await pilot.pause(0.1)
        await pilot.pause(0.2)
        for key in shot.keys:
            await pilot.press(key)
        while shot.wait_for_modal and not isinstance(app.screen, ConfirmActionScreen):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{shot.name}: the dialog did not open")
            await pilot.pause(0.1)
        await pilot.pause(0.3)
        return app.export_screenshot(title=f"talos-gpu — {shot.name}")


def save_screenshots(directory: Path, shots: Sequence[Shot] = SHOTS) -> list[Path]:
    from lab.runtime import start_lab
    from tui.demo import demo_target

    directory.mkdir(parents=True, exist_ok=True)
    lab_dir = Path(tempfile.gettempdir()) / "talos-gpu-screenshots-lab"  # the same path in every picture
    saved = []
    for shot in shots:
        shutil.rmtree(lab_dir, ignore_errors=True)
        lab = start_lab(shot.scenario, state_dir=lab_dir)
        try:
            target = demo_target(dict(lab.env), Path(lab.state_dir))
            svg = asyncio.run(_shoot(shot, target))
        finally:
            lab.stop()
            shutil.rmtree(lab_dir, ignore_errors=True)
        path = directory / f"{shot.name}.svg"
        path.write_text(svg, encoding="utf-8")
        saved.append(path)
    return saved


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("TEXTUAL_ANIMATIONS", "none")  # before Textual is imported: same pictures every run
    args = list(sys.argv[1:] if argv is None else argv)
    directory = Path(args[0] if args else "screenshots")
    for path in save_screenshots(directory):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
