"""The TUI's building blocks on their own: in-place table updates, the batched and bounded log,
redaction on screen, and a first frame that does not pay for the Kubernetes client."""

import subprocess
import sys

import pytest
from textual.app import App, ComposeResult
from textual.widgets import DataTable

from tests.paths import REPO
from widgets.action_log import ActionLog
from widgets.checklist import StageChecklist
from widgets.table_sync import Row, sync_table

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class CountingTable(DataTable):
    """Counts how often the table was emptied: an in-place update never empties it."""

    clears = 0

    def clear(self, columns: bool = False) -> "CountingTable":
        self.clears += 1
        return super().clear(columns)


class TableApp(App):
    def compose(self) -> ComposeResult:
        table = CountingTable(cursor_type="row")
        table.add_column("name", key="name")
        table.add_column("value", key="value")
        yield table


def rows(values: dict[str, str]) -> list[Row]:
    return [Row(key, (key, value)) for key, value in values.items()]


async def test_sync_table_updates_cells_in_place_and_keeps_the_cursor() -> None:
    app = TableApp()
    async with app.run_test() as pilot:
        table = app.query_one(CountingTable)
        sync_table(table, rows({"a": "1", "b": "2", "c": "3"}))
        table.move_cursor(row=2)
        await pilot.pause()
        sync_table(table, rows({"a": "1", "b": "20", "c": "30", "d": "4"}))
        await pilot.pause()
        assert table.clears == 0
        assert table.cursor_row == 2
        assert table.get_cell("c", "value") == "30"
        assert [str(r.key.value) for r in table.ordered_rows] == ["a", "b", "c", "d"]


async def test_sync_table_follows_the_cursor_row_when_rows_move_or_go() -> None:
    app = TableApp()
    async with app.run_test() as pilot:
        table = app.query_one(CountingTable)
        sync_table(table, rows({"a": "1", "b": "2", "c": "3"}))
        table.move_cursor(row=1)  # on "b"
        await pilot.pause()
        sync_table(table, rows({"c": "3", "b": "2"}))  # "a" gone, order changed
        await pilot.pause()
        assert [str(r.key.value) for r in table.ordered_rows] == ["c", "b"]
        assert str(table.ordered_rows[table.cursor_row].key.value) == "b"


class LogApp(App):
    def compose(self) -> ComposeResult:
        yield ActionLog(max_lines=100, id="log")


async def test_the_log_writes_a_burst_in_few_batches_and_stays_bounded() -> None:
    app = LogApp()
    async with app.run_test() as pilot:
        log = app.query_one(ActionLog)
        for number in range(5000):
            log.add(f"line {number}")
        await pilot.pause(0.2)
        assert log.flushes <= 2
        assert len(log.lines) <= 100
        assert len(log.kept) == 100
        assert log.kept[-1].plain == "line 4999"
        assert log.kept[0].plain == "line 4900"


async def test_the_log_filter_shows_only_matching_lines_and_clearing_it_shows_all() -> None:
    app = LogApp()
    async with app.run_test() as pilot:
        log = app.query_one(ActionLog)
        for text in ("talosctl upgrade", "waiting for actor ID", "post check passed"):
            log.add(text)
        await pilot.pause(0.1)
        log.set_filter("ACTOR")
        await pilot.pause()
        assert [strip.text.strip() for strip in log.lines] == ["waiting for actor ID"]
        log.set_filter("")
        await pilot.pause()
        assert len(log.lines) == 3


async def test_the_log_never_shows_a_secret() -> None:
    token = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzeXN0ZW06c2VydmljZWFjY291bnQifQ.c2lnbmF0dXJlLXZhbHVlLTEyMzQ1Njc4"
    app = LogApp()
    async with app.run_test() as pilot:
        log = app.query_one(ActionLog)
        log.add(f"Authorization: Bearer {token}")
        await pilot.pause(0.1)
        assert token not in log.plain_text()
        assert token not in app.export_screenshot()


class ChecklistApp(App):
    """Records the messages the checklist posts."""

    def __init__(self) -> None:
        super().__init__()
        self.posted: list[tuple[str, str]] = []

    def compose(self) -> ComposeResult:
        from checks.paths import DEVICE_PLUGIN
        yield StageChecklist(DEVICE_PLUGIN.stages)

    def on_stage_checklist_stage_highlighted(self, message: StageChecklist.StageHighlighted) -> None:
        self.posted.append(("highlighted", message.stage_id))

    def on_stage_checklist_action_requested(self, message: StageChecklist.ActionRequested) -> None:
        self.posted.append(("action", message.stage_id))


async def test_the_checklist_posts_the_stage_a_person_moves_to_and_picks() -> None:
    app = ChecklistApp()
    async with app.run_test() as pilot:
        app.query_one(StageChecklist).focus()
        await pilot.pause()
        app.posted.clear()
        await pilot.press("down", "down", "enter")
        await pilot.pause()
        assert app.posted == [("highlighted", "extensions"), ("highlighted", "kernel-modules"),
                              ("action", "kernel-modules")]


def test_starting_the_tui_does_not_import_the_kubernetes_client() -> None:
    code = ("import sys\nimport tui.app, tui.demo, tui.interactive, tui.screens.main, tui.screens.palette\n"
            "print('kubernetes' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_widgets_never_import_the_tui_package_in_a_fresh_interpreter() -> None:
    code = ("import sys, importlib, pkgutil, widgets\n"
            "for m in pkgutil.walk_packages(widgets.__path__, 'widgets.'):\n"
            "    importlib.import_module(m.name)\n"
            "print(sorted(n for n in sys.modules if n == 'tui' or n.startswith('tui.')))\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
