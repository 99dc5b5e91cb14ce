"""The action log: what actions ran and printed, and what the sweeps noticed.

A chatty command can print thousands of lines a second. Lines are queued and written in batches
every 50 ms, and the log keeps at most `max_lines` (the oldest go first), on screen and in memory.
"""

from __future__ import annotations

from collections import deque

from rich.text import Text
from textual.timer import Timer
from textual.widgets import RichLog  # imported after the first frame (the screen mounts the log then)

from checks.sanitize import safe

FLUSH_INTERVAL_S = 0.05
MAX_LINES_PER_FLUSH = 50  # bounds one tick (~15 ms) while a chatty action streams: 1,000 lines a second
DEFAULT_MAX_LINES = 2000

STREAM_STYLES = {"stderr": "yellow", "stdout": "", "phase": "bold cyan", "step": "bold", "error": "bold red",
                 "ok": "bold green", "note": "dim"}


class ActionLog(RichLog):
    """A bounded log with batched writes and a filter (`/`)."""

    def __init__(self, *, max_lines: int = DEFAULT_MAX_LINES, id: str | None = None) -> None:
        super().__init__(max_lines=max_lines, min_width=20, wrap=True, markup=False, highlight=False, auto_scroll=True,
                         id=id)
        self.kept: deque[Text] = deque(maxlen=max_lines)
        self.pending: list[Text] = []
        self.filter_text = ""
        self.flushes = 0  # how many batches were written (tests check that bursts are batched)
        self._flush_timer: Timer | None = None

    def on_mount(self) -> None:
        self._flush_timer = self.set_interval(FLUSH_INTERVAL_S, self.flush, pause=True)

    def add(self, text: str, kind: str = "stdout") -> None:
        """Queue one line (redacted); it reaches the screen with the next batch."""
        for piece in safe(text).splitlines() or [""]:
            line = Text(piece, style=STREAM_STYLES.get(kind, ""))
            self.kept.append(line)
            self.pending.append(line)
        if self._flush_timer is not None:
            self._flush_timer.resume()

    def flush(self) -> None:
        """Write the queued lines in one go."""
        if self._flush_timer is not None:
            self._flush_timer.pause()
        if not self.pending:
            return
        if self.max_lines and len(self.pending) > self.max_lines:
            del self.pending[: len(self.pending) - self.max_lines]  # they would scroll out at once anyway
        batch, self.pending = self.pending[:MAX_LINES_PER_FLUSH], self.pending[MAX_LINES_PER_FLUSH:]
        self.flushes += 1
        for line in batch:
            if not self.filter_text or self.filter_text.casefold() in line.plain.casefold():
                self.write(line)
        if self.pending and self._flush_timer is not None:
            self._flush_timer.resume()  # the rest on the next tick: keys stay answered meanwhile

    def set_filter(self, text: str) -> None:
        """Show only the kept lines that contain `text` (case-insensitive); empty shows all."""
        self.filter_text = text
        self.pending.clear()
        self.clear()
        for line in self.kept:
            if not text or text.casefold() in line.plain.casefold():
                self.write(line)

    def plain_text(self) -> str:
        """Every kept line, for saving to a file."""
        return "\n".join(line.plain for line in self.kept) + ("\n" if self.kept else "")
