"""The selected stage's details: summary, evidence with its sources, and the command that fixes it."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.console import Group
from rich.text import Text
from textual.containers import VerticalScroll
from textual.widgets import Static

from checks.infra import RUNBOOK_STEP_NOTE
from checks.sanitize import safe
from checks.stages import StageSpec
from widgets.status import status_text

if TYPE_CHECKING:
    from checks.model import StageResult


def evidence_line(line: str) -> Text:
    """`source: fact` with the source set apart, so the eye finds where each fact came from."""
    line = safe(line)
    source, sep, fact = line.partition(": ")
    if not sep:
        return Text.assemble("• ", line)
    return Text.assemble("• ", (source, "bold cyan"), (": ", "dim"), fact)


# What a stage's details say besides its evidence: why the seed's runbook is not followed there.
STAGE_NOTES = {"container-runtime": RUNBOOK_STEP_NOTE[0].upper() + RUNBOOK_STEP_NOTE[1:] + "."}


def matches(line: str, needle: str) -> bool:
    return needle.casefold() in line.casefold()


class StageDetails(VerticalScroll, can_focus=True):
    """What the selected stage found; `/` narrows its evidence to the lines that match."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.filter_text = ""
        self._spec: StageSpec | None = None
        self._result: StageResult | None = None
        self._is_root = False
        self._action_hint: str | None = None
        self.plain = ""  # the text shown, without styles (what `c`/tests/screen readers can use)

    def compose(self):  # noqa: ANN201 - ComposeResult
        yield Static(id="details-body")

    def show(self, spec: StageSpec, result: StageResult | None, *, is_root: bool, action_hint: str | None) -> None:
        """`action_hint` is the line that says how to run the stage's action, None when there is none."""
        self._spec, self._result, self._is_root, self._action_hint = spec, result, is_root, action_hint
        self._redraw()

    def set_filter(self, text: str) -> None:
        self.filter_text = text
        self._redraw()

    @property
    def remediation(self) -> str | None:
        return self._result.remediation if self._result else None

    def _redraw(self) -> None:
        spec, result = self._spec, self._result
        if spec is None:
            return
        body = self.query_one("#details-body", Static)
        title = Text(spec.title, style="italic")
        if result is None:
            self._show(body, [Text.assemble(("… checking  ", "dim italic"), (spec.id, "bold")), title])
            return
        parts: list[Text] = [
            Text.assemble(status_text(result.status), "  ", (spec.id, "bold"),
                          ("   ◀ ROOT CAUSE" if self._is_root else "", "bold red")),
            title,
            Text(safe(result.summary), style="bold" if not result.status.ok else ""),
        ]
        if result.blocked_by:
            parts.append(Text(f"Blocked by {result.blocked_by}: fix that stage first; this stage's own evidence "
                              "follows.", style="magenta"))
        evidence = list(result.evidence)
        shown = [line for line in evidence if matches(line, self.filter_text)] if self.filter_text else evidence
        title = "Evidence"
        if self.filter_text:
            title += f"  ({len(shown)} of {len(evidence)} match “{self.filter_text}”)"
        parts.append(Text(title, style="bold underline"))
        parts.extend(evidence_line(line) for line in shown)
        if not evidence:
            parts.append(Text("  (none)", style="dim"))
        if result.remediation:
            parts.append(Text("Fix", style="bold underline"))
            parts.append(Text.assemble("  $ ", (safe(result.remediation), "bold green")))
            if getattr(result, "advice", None):
                parts.append(Text("  " + safe(result.advice), style="dim"))
            parts.append(Text("  c copies it" + (f" · {self._action_hint}" if self._action_hint else ""), style="dim"))
        elif self._action_hint:
            parts.append(Text(f"  {self._action_hint}", style="dim"))
        note = STAGE_NOTES.get(spec.id)
        if note:
            parts.append(Text("Why not the runbook", style="bold underline"))
            parts.append(Text(f"  {note}", style="italic"))
        self._show(body, parts)

    def _show(self, body: Static, parts: list[Text]) -> None:
        self.plain = "\n".join(part.plain for part in parts)
        body.update(Group(*parts))
