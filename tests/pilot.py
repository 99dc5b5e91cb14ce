"""Helpers shared by the Pilot-driven TUI tests (pilot and snapshot suites)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from textual.pilot import Pilot
from textual.widgets import Button, Input

from tui.screens.confirm import ConfirmActionScreen


async def wait_until(pilot: Pilot, condition: Callable[[], bool], timeout: float = 60.0, what: str = "") -> None:
    """Poll `condition` between short pauses; fail naming `what` after `timeout` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        assert loop.time() < deadline, f"timed out waiting for {what or 'the app'}"
        await pilot.pause(0.05)


def confirm_modal_ready(pilot: Pilot) -> bool:
    """The confirm modal is on top *and* mounted: its first focus is set (Cancel, or the name box when the
    node's name must be typed).

    `isinstance(app.screen, ConfirmActionScreen)` alone turns true when the screen is pushed, before its
    children are mounted; querying `#confirm` then fails on a loaded machine.
    """
    screen = pilot.app.screen
    focused = screen.focused if isinstance(screen, ConfirmActionScreen) else None
    return (isinstance(focused, Button) and focused.id == "cancel") or \
        (isinstance(focused, Input) and focused.id == "confirm-word")


async def wait_for_confirm_modal(pilot: Pilot, what: str = "the confirm modal") -> ConfirmActionScreen:
    await wait_until(pilot, lambda: confirm_modal_ready(pilot), what=what)
    screen = pilot.app.screen
    assert isinstance(screen, ConfirmActionScreen)
    return screen
