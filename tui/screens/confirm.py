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
    from checks.actions.model import Plan, PlanLine

FILE_STATES = {  # the file line's label and style; its words are the outline's (`FileChange.summary`)
    "create": ("+ create", "bold green"),
    "same": ("= same", "dim"),
    "differs": ("≠ differs", "bold yellow"),
}
SECTIONS: tuple[tuple[tuple[str, ...], str | None], ...] = (  # the outline's kinds, in the modal's order
    (("warning",), None),  # first, with the reboot banner: what to know before reading on
    (("step",), "Steps"),
    (("file", "diff"), "Files"),
    (("schematic", "installer"), "Image"),
)
SECTION_OF = {kind: number for number, (kinds, _title) in enumerate(SECTIONS) for kind in kinds}


def plan_renderable(plan: Plan) -> RenderableType:
    """The plan as a person reads it before saying yes: `Plan.outline` (the lines `enable` prints and the
    audit log records), grouped so that the warnings come first, then the preview. The header is the
    dialog's title (`plan_title`). A line of a kind this modal does not know is shown as it is, at the end
    of the outline: a new part of the outline is never left out."""
    parts: list[RenderableType] = []
    if plan.reboots:
        parts.append(Text(" ⚠ THIS ACTION REBOOTS THE NODE ", style="bold reverse red"))
    sections: list[list[PlanLine]] = [[] for _ in range(len(SECTIONS) + 1)]
    for line in plan.outline():
        if line.kind == "header":
            continue
        if line.kind in ("schematic", "installer") and line.text in plan.preview:
            continue  # the preview below names it already (the extensions' schematic and installer image)
        sections[SECTION_OF.get(line.kind, len(SECTIONS))].append(line)
    for number, lines in enumerate(sections):
        title = SECTIONS[number][1] if number < len(SECTIONS) else None
        if lines and title:
            parts.append(Text(title, style="bold underline"))
        for line in lines:
            parts.extend(_line(plan, line))
    if plan.preview:
        parts.append(Text("Preview", style="bold underline"))
        parts.append(Text(safe(plan.preview), style="dim"))
    return Group(*parts)


def plan_title(plan: Plan) -> str:
    """The outline's header line: the plan's title, sanitised."""
    return next(safe(line.text) for line in plan.outline() if line.kind == "header")


def _line(plan: Plan, line: PlanLine) -> list[RenderableType]:
    text = safe(line.text)
    if line.kind == "warning":
        return [Text(f"⚠ {text}", style="bold yellow")]
    if line.kind == "step":  # the outline's text is the command when there is one: its description goes above
        step = plan.steps[int(line.detail) - 1]
        if step.display:
            return [Text(f"{line.detail}. {safe(step.description)}"), Text.assemble("   $ ", (text, "bold green"))]
        return [Text(f"{line.detail}. {text}")]
    if line.kind == "file":
        label, style = FILE_STATES.get(line.detail, (line.detail, "bold"))
        return [Text.assemble(f"  {label:<10}", (text, style))]
    if line.kind == "diff":
        if not text.strip():
            return []
        from rich.syntax import Syntax  # pygments: only when there is a diff to show

        return [Syntax(text, "diff", theme="ansi_dark", word_wrap=True)]
    if line.kind == "schematic":
        return [Text(f"  schematic id:    {text}")]
    if line.kind == "installer":
        return [Text(f"  installer image: {text}")]
    return [Text(text)]


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
            yield Static(Text(plan_title(self.plan), style="bold"), id="confirm-plan-title")
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
