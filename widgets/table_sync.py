"""Update a DataTable in place: change only the cells that differ, keep the cursor and the scroll.

A live dashboard that clears and refills its tables on every refresh flickers, loses the cursor and
jumps back to the top. `sync_table` compares the wanted rows with what the table shows and touches
only the difference; it rebuilds only when the order of existing rows changed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from rich.console import RenderableType
from textual.widgets import DataTable


@dataclass(frozen=True)
class Row:
    """One table row: a stable key (what the row is about) and its cells, in column order."""

    key: str
    cells: tuple[RenderableType, ...]
    height: int = 1


def _shown_keys(table: DataTable) -> list[str]:
    return [str(row.key.value) for row in table.ordered_rows]


def _cursor_key(table: DataTable) -> str | None:
    if table.row_count and 0 <= table.cursor_row < table.row_count:
        return str(table.ordered_rows[table.cursor_row].key.value)
    return None


def sync_table(table: DataTable, rows: Sequence[Row]) -> None:
    """Make `table` show exactly `rows`, in order, with as few changes as possible."""
    cursor_key = _cursor_key(table)
    wanted_keys = [row.key for row in rows]
    wanted = set(wanted_keys)
    removed = False
    for key in _shown_keys(table):
        if key not in wanted:
            table.remove_row(key)
            removed = True
    shown = _shown_keys(table)
    heights = {str(row.key.value): row.height for row in table.ordered_rows}
    same_prefix = shown == wanted_keys[: len(shown)]
    same_heights = all(heights.get(row.key, row.height) == row.height for row in rows)
    if not (same_prefix and same_heights):
        _rebuild(table, rows, cursor_key)
        return
    columns = [column.key for column in table.ordered_columns]
    for row in rows:
        if row.key in heights:
            for column, value in zip(columns, row.cells, strict=False):
                if table.get_cell(row.key, column) != value:
                    table.update_cell(row.key, column, value, update_width=True)
        else:
            table.add_row(*row.cells, key=row.key, height=row.height)
    if removed and cursor_key in wanted:
        table.move_cursor(row=wanted_keys.index(cursor_key), animate=False, scroll=False)


def _rebuild(table: DataTable, rows: Sequence[Row], cursor_key: str | None) -> None:
    """Refill the table, putting the cursor back on the row it was on (by key) and keeping the scroll."""
    scroll_y = table.scroll_y
    table.clear()
    for row in rows:
        table.add_row(*row.cells, key=row.key, height=row.height)
    keys = [row.key for row in rows]
    if cursor_key in keys:
        table.move_cursor(row=keys.index(cursor_key), animate=False, scroll=False)
    table.scroll_to(y=scroll_y, animate=False, immediate=True)
