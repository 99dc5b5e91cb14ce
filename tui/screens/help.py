"""`?`: every key, built from the bindings themselves so the list can never drift from them."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import ActiveBinding, Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

INTRO = ("talos-gpu walks a Talos node from 'it has GPUs' to 'pods can use them'. The checklist on the left "
         "runs top to bottom; the first failing stage is the root cause. Select a stage to see its evidence "
         "and the command that fixes it.")


def keys_table(groups: Iterable[tuple[str, Iterable[tuple[str, str]]]]) -> Table:
    table = Table(show_header=False, box=None, padding=(0, 2, 0, 0), expand=True)
    table.add_column("key", style="bold cyan", no_wrap=True, min_width=14)
    table.add_column("what it does")
    for title, rows in groups:
        table.add_row(Text(title, style="bold underline"), "")
        for key, description in rows:
            table.add_row(key, description)
        table.add_row("", "")
    return table


def binding_rows(bindings: Iterable[Binding], active: Mapping[str, ActiveBinding],
                 key_display: Callable[[Binding], str]) -> list[tuple[str, str]]:
    """(keys as shown, what it does) for each of `bindings` (by id) that is active: the keys come from the
    live binding map, the text from the tooltip, else the footer's description."""
    rows = []
    for binding in bindings:
        keys = [key_display(Binding(key, item.binding.action)) for key, item in active.items()
                if item.binding.id is not None and item.binding.id == binding.id]
        if keys and binding.description:
            rows.append(("  ".join(keys), binding.tooltip or binding.description))
    return rows


class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,question_mark,q", "close", "Close help", id="help.close")]

    def __init__(self, groups: list[tuple[str, list[tuple[str, str]]]], *, read_only: bool) -> None:
        super().__init__(id="help")
        self.groups = groups
        self.read_only = read_only

    def compose(self) -> ComposeResult:
        with Vertical(id="help-dialog"):
            yield Static(Text("talos-gpu — keys", style="bold"), id="help-title")
            with VerticalScroll(id="help-body"):
                yield Static(Text(INTRO, style="dim"))
                if self.read_only:
                    yield Static(Text("READ-ONLY: actions are hidden and refused.", style="bold yellow"))
                yield Static(keys_table(self.groups), id="help-keys")
            yield Static(Text("esc closes", style="dim"), id="help-footer")

    def action_close(self) -> None:
        self.dismiss(None)
