"""How a stage status looks, in one place: the TUI's checklist and details, `check`'s table, `enable`'s lines.

Icon and word together, so that colour is never the only signal. Keyed by the status's value, so that the
first frame, which draws the checklist before any result, does not load `checks.model` for it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.text import Text

if TYPE_CHECKING:
    from checks.model import Status

STATUS_STYLES: dict[str, str] = {
    "pass": "bold green",
    "warn": "bold yellow",
    "fail": "bold red",
    "blocked": "bold magenta",
    "unknown": "bold cyan",
    "skipped": "dim",
}


def status_text(status: Status) -> Text:
    """`✔ PASS`, `✘ FAIL`, … styled: the same in every front end."""
    return Text(f"{status.icon} {status.value.upper()}", style=STATUS_STYLES[status.value])
