"""The checklist of the eight stages: status icon and word, stage, time, and what blocks it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from rich.text import Text
from textual import on
from textual.message import Message
from textual.widgets import DataTable

from checks.sanitize import safe
from checks.stages import StageSpec
from widgets.status import status_text
from widgets.table_sync import Row, sync_table

if TYPE_CHECKING:  # checks.model is for the type hints only: the first frame does not load it
    from checks.model import Report, StageResult

PENDING = Text("… checking", style="dim italic")
ROOT_CAUSE = Text("◀ ROOT CAUSE", style="bold reverse red")
COMPACT_ROOT_CAUSE = Text("◀ ROOT", style="bold reverse red")
WAITING = Text("⟳ WAIT", style="bold cyan")  # a failure that is the running action's expected progress
STATUS_WIDTH = 10
STAGE_WIDTH = 40
COMPACT_STAGE_WIDTH = 28


def duration_text(ms: int, *, stable: bool) -> Text:
    """A stage's duration; `stable` hides it (durations differ run to run, snapshots must not)."""
    if stable:
        return Text("")
    if ms >= 10_000:
        return Text(f"{ms / 1000:.0f} s", style="dim")
    if ms >= 1000:
        return Text(f"{ms / 1000:.1f} s", style="dim")
    return Text(f"{ms} ms", style="dim")


class StageChecklist(DataTable):
    """One row per stage, keyed by stage id. Highlighting a row asks for its details; Enter for its action."""

    @dataclass
    class StageHighlighted(Message):
        stage_id: str

    @dataclass
    class ActionRequested(Message):
        stage_id: str

    def __init__(self, stages: Sequence[StageSpec], *, stable: bool = False,
                 id: str | None = None) -> None:
        super().__init__(id=id, cursor_type="row", zebra_stripes=False, cursor_foreground_priority="renderable")
        self.stages = tuple(stages)
        self.stable = stable
        self.compact = False
        self.report: Report | None = None
        self.expected: dict[str, str] = {}

    def on_mount(self) -> None:
        self._add_columns()
        self.show_pending()

    def _add_columns(self) -> None:
        # Text labels, not str: DataTable reads a str label as markup, which loads rich's emoji table (~5 ms)
        self.add_column(Text("status"), key="status", width=STATUS_WIDTH)
        self.add_column(Text("stage"), key="stage", width=COMPACT_STAGE_WIDTH if self.compact else STAGE_WIDTH)

    # ---- content ----------------------------------------------------------------------------

    def show_pending(self) -> None:
        """Every stage as "checking…": the first frame, before any sweep has finished."""
        sync_table(self, [Row(spec.id, (self._status_cell(None), self._stage_cell(spec, None)), self._row_height)
                          for spec in self.stages])

    def show_report(self, report: Report, expected: dict[str, str] | None = None) -> None:
        """`expected`: stage id -> why its failure is progress, not a fault (the node rebooting because of the
        running action): shown as "⟳ WAIT" with that note, never as the root cause."""
        self.report = report
        self.expected = dict(expected or {})
        root = report.root_cause.stage if report.root_cause else None
        rows = []
        for spec in self.stages:
            try:
                result: StageResult | None = report.stage(spec.id)
            except KeyError:
                result = None
            note = self.expected.get(spec.id)
            rows.append(Row(spec.id, (self._status_cell(result, waiting=note is not None),
                                      self._stage_cell(spec, result, is_root=spec.id == root, waiting=note)),
                            self._row_height))
        sync_table(self, rows)

    def set_compact(self, compact: bool) -> None:
        """One line per stage (small terminals) or two (id and title)."""
        if compact == self.compact:
            return
        self.compact = compact
        selected = self.selected_stage
        self.clear(columns=True)
        self._add_columns()
        if self.report is not None:
            self.show_report(self.report, self.expected)
        else:
            self.show_pending()
        if selected is not None:
            self.select_stage(selected)

    @property
    def _row_height(self) -> int:
        return 1 if self.compact else 2

    def _status_cell(self, result: StageResult | None, *, waiting: bool = False) -> Text:
        """Icon and word; below it (two-line rows) how long the stage's checks took."""
        if result is None:
            status = PENDING.copy()
        else:
            status = WAITING.copy() if waiting else status_text(result.status)
        if not self.compact and result is not None:
            status.append("\n")
            status.append_text(duration_text(result.duration_ms, stable=self.stable))
        return status

    def _stage_cell(self, spec: StageSpec, result: StageResult | None, *, is_root: bool = False,
                    waiting: str | None = None) -> Text:
        """`id  note` (root cause / blocked by … / expected while an action runs) and, below it, the title."""
        is_root = is_root and waiting is None
        cell = Text(spec.id, style="bold red" if is_root else "bold", no_wrap=True, overflow="ellipsis")
        if waiting is not None:
            cell.append(f"  ⟳ {safe(waiting, one_line=True)}", style="cyan")
        elif is_root:
            cell.append("  ")
            cell.append_text(ROOT_CAUSE if not self.compact else COMPACT_ROOT_CAUSE)
        elif result is not None and result.blocked_by:
            cell.append(f"  {'blocked by ' if not self.compact else '⊘ '}{safe(result.blocked_by)}", style="magenta")
        if not self.compact:
            cell.append("\n")
            cell.append(spec.title, style="dim")
        return cell

    # ---- selection ----------------------------------------------------------------------------

    @property
    def selected_stage(self) -> str | None:
        if not self.row_count or not 0 <= self.cursor_row < self.row_count:
            return None
        return str(self.ordered_rows[self.cursor_row].key.value)

    def select_stage(self, stage_id: str) -> None:
        keys = [str(row.key.value) for row in self.ordered_rows]
        if stage_id in keys:
            self.move_cursor(row=keys.index(stage_id), animate=False)

    @on(DataTable.RowHighlighted)
    def _highlighted(self, event: DataTable.RowHighlighted) -> None:
        event.stop()
        if event.row_key.value is not None:
            self.post_message(self.StageHighlighted(str(event.row_key.value)))

    @on(DataTable.RowSelected)
    def _selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        if event.row_key.value is not None:
            self.post_message(self.ActionRequested(str(event.row_key.value)))
