"""Confirmation modals. Focus starts on the safe button; `esc` always means no.

`ConfirmActionScreen` shows an action's whole plan — the exact commands, the files it writes, the
preview and the warnings — and, for actions that reboot the node, enables Confirm only once the
node's name has been typed: there the focus starts in the name box (typing the name is the deliberate
step; enter with the exact name confirms, anything else does not). `AskScreen` is the plain yes/no question (quit while an action runs).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.console import Group, RenderableType
from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Static

from checks.sanitize import safe

if TYPE_CHECKING:
    from checks.actions.model import Plan

FILE_STATES = {
    "create": ("+ create", "bold green", "missing: will be written"),
    "same": ("= same", "dim", "exists and is identical: left as is"),
    "differs": ("≠ differs", "bold yellow", "exists and differs: NOT overwritten, the difference is below"),
}


def plan_renderable(plan: Plan) -> RenderableType:
    """The plan as a person reads it before saying yes."""
    parts: list[RenderableType] = []
    if plan.reboots:
        parts.append(Text(" ⚠ THIS ACTION REBOOTS THE NODE ", style="bold reverse red"))
    for warning in plan.warnings:
        parts.append(Text(f"⚠ {safe(warning)}", style="bold yellow"))
    parts.append(Text("Steps", style="bold underline"))
    for number, step in enumerate(plan.steps, 1):
        parts.append(Text(f"{number}. {safe(step.description)}"))
        if step.display:
            parts.append(Text.assemble("   $ ", (safe(step.display), "bold green")))
    if plan.files:
        parts.append(Text("Files", style="bold underline"))
        for change in plan.files:
            label, style, meaning = FILE_STATES.get(change.state, (change.state, "bold", ""))
            parts.append(Text.assemble(f"  {label:<10}", (safe(change.relative), style), (f"  {meaning}", "dim")))
            if change.state == "differs" and change.diff:
                from rich.syntax import Syntax  # pygments: only when there is a diff to show

                parts.append(Syntax(safe(change.diff), "diff", theme="ansi_dark", word_wrap=True))
    if plan.preview:
        parts.append(Text("Preview", style="bold underline"))
        parts.append(Text(safe(plan.preview), style="dim"))
    return Group(*parts)


class ConfirmActionScreen(ModalScreen[bool]):
    """Dismisses with True only when the user pressed Confirm (after typing the node name if asked)."""

    BINDINGS = [
        Binding("escape", "cancel", "Cancel", id="modal.cancel"),
    ]

    def __init__(self, plan: Plan, *, blink: bool = True) -> None:
        super().__init__(id="confirm-action")
        self.plan = plan
        self.blink = blink

    def compose(self) -> ComposeResult:
        with Vertical(id="confirm-dialog"):
            yield Label(Text.assemble(("Run the action of ", ""), (self.plan.stage, "bold"), "?"),
                        id="confirm-title")
            yield Static(Text(safe(self.plan.title), style="bold"), id="confirm-plan-title")
            with VerticalScroll(id="confirm-body"):
                yield Static(plan_renderable(self.plan), id="confirm-plan")
            if self.plan.confirm_word:
                word = safe(self.plan.confirm_word)
                yield Label(Text.assemble("Type the node's name ", (word, "bold"),
                                          " and press enter to confirm the reboot (esc cancels):"),
                            id="confirm-word-label")
                yield Input(placeholder=f"type {word} here", id="confirm-word", select_on_focus=False)
            with Horizontal(id="confirm-buttons"):
                yield Button("Cancel", id="cancel", variant="primary")
                yield Button("Confirm", id="confirm", variant="error", disabled=bool(self.plan.confirm_word))

    def on_mount(self) -> None:
        if not self.blink:
            for field in self.query(Input):
                field.cursor_blink = False
        if self.plan.confirm_word:  # the name is what confirms: the focus is where it is typed
            self.query_one("#confirm-word", Input).focus()
        else:
            self.query_one("#cancel", Button).focus()

    @on(Input.Changed, "#confirm-word")
    def _typed(self, event: Input.Changed) -> None:
        self.query_one("#confirm", Button).disabled = event.value.strip() != self.plan.confirm_word

    @on(Input.Submitted, "#confirm-word")
    def _submitted(self, event: Input.Submitted) -> None:
        if event.value.strip() == self.plan.confirm_word:
            self.dismiss(True)
        else:
            self.notify(f"Type {safe(self.plan.confirm_word)} exactly to confirm, or esc to cancel",
                        severity="warning", timeout=4, markup=False)

    @on(Button.Pressed, "#confirm")
    def _confirm(self) -> None:
        if self.plan.confirm_word and self.query_one("#confirm-word", Input).value.strip() != self.plan.confirm_word:
            return
        self.dismiss(True)

    @on(Button.Pressed, "#cancel")
    def action_cancel(self) -> None:
        self.dismiss(False)


class AskScreen(ModalScreen[bool]):
    """A yes/no question; No has the focus."""

    BINDINGS = [Binding("escape", "no", "No", id="modal.no")]

    def __init__(self, question: str, *, yes: str = "Yes", no: str = "No") -> None:
        super().__init__(id="ask")
        self.question, self.yes, self.no = question, yes, no

    def compose(self) -> ComposeResult:
        with Vertical(id="ask-dialog"):
            yield Static(self.question, id="ask-question")
            with Horizontal(id="ask-buttons"):
                yield Button(self.no, id="no", variant="primary")
                yield Button(self.yes, id="yes", variant="error")

    def on_mount(self) -> None:
        self.query_one("#no", Button).focus()

    @on(Button.Pressed, "#yes")
    def _yes(self) -> None:
        self.dismiss(True)

    @on(Button.Pressed, "#no")
    def action_no(self) -> None:
        self.dismiss(False)
