"""Time from process start to the first frame: `talos-gpu demo` against a bare one-line Textual app.

Each program runs in a pseudo-terminal (120×40) as a user would start it; the clock stops when the
first frame's text reaches the terminal. Also reported: when the rest of talos-gpu's screen (panes,
details, log, footer: mounted after the first frame) is there, and for the demo, when the first
sweep's result is on screen. Median of 5 runs each (`--runs N` to change).

    .venv/bin/python bench/startup.py [--runs 5]
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import pty
import select
import signal
import statistics
import struct
import sys
import termios
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
COLUMNS, ROWS = 120, 40
BARE_APP = ("from textual.app import App\nfrom textual.widgets import Static\n"
            "class Bare(App):\n    def compose(self):\n        yield Static('bare-app-ready')\nBare().run()\n")


def run_once(argv: list[str], markers: list[bytes], *, timeout: float = 30.0) -> list[float | None]:
    """Seconds from fork to each marker's first appearance in the terminal output (None: never seen)."""
    env = dict(os.environ, TERM="xterm-256color", COLUMNS=str(COLUMNS), LINES=str(ROWS))
    started = time.perf_counter()
    pid, fd = pty.fork()
    if pid == 0:  # the child: become the program
        os.chdir(REPO)
        os.execvpe(argv[0], argv, env)
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", ROWS, COLUMNS, 0, 0))
    seen: list[float | None] = [None] * len(markers)
    output = b""
    deadline = started + timeout
    try:
        while None in seen and time.perf_counter() < deadline:
            ready, _, _ = select.select([fd], [], [], 0.05)
            if not ready:
                continue
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                break
            if not chunk:
                break
            output += chunk
            now = time.perf_counter() - started
            for index, marker in enumerate(markers):
                if seen[index] is None and marker in output:
                    seen[index] = now
    finally:
        _quit(pid, fd)
    return seen


def _quit(pid: int, fd: int) -> None:
    """Press q, then wait; terminate the program if it does not leave (the demo stops its lab on exit)."""
    try:
        os.write(fd, b"q")
    except OSError:
        pass
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.read(fd, 65536) if select.select([fd], [], [], 0.05)[0] else None
        except OSError:
            pass
        done, _status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
    else:
        os.kill(pid, signal.SIGTERM)
        os.waitpid(pid, 0)
    os.close(fd)


def median(values: list[float | None]) -> str:
    got = [v for v in values if v is not None]
    if not got:
        return "never"
    return f"{statistics.median(got) * 1000:.0f} ms" + (f" ({len(values) - len(got)} missed)" if len(got) < len(values) else "")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    python = sys.executable
    sys.path.insert(0, str(REPO))
    from lab.runtime import start_lab

    bare: list[float | None] = []
    app_frame: list[float | None] = []
    app_whole: list[float | None] = []  # the panes, details, log and footer, mounted after the first frame
    demo_frame: list[float | None] = []
    demo_report: list[float | None] = []
    with start_lab("healthy") as lab:  # issue 7: the first frame with the lab already running
        saved = dict(os.environ)
        os.environ.update(lab.env)
        try:
            for _ in range(args.runs):
                bare += run_once([python, "-c", BARE_APP], [b"bare-app-ready"])
                first, whole = run_once([python, "-m", "tui.cli", "--refresh", "0"], [b"Checklist", b"Action log"])
                app_frame.append(first)
                app_whole.append(whole)
        finally:
            os.environ.clear()
            os.environ.update(saved)
    for _ in range(args.runs):
        first, report = run_once([python, "-m", "tui.cli", "demo", "--refresh", "0"], [b"Checklist", b"ROOT CAUSE"])
        demo_frame.append(first)
        demo_report.append(report)
    print(f"bare one-line Textual app, first frame:        {median(bare)}")
    print(f"talos-gpu (lab already running), first frame: {median(app_frame)}")
    print(f"talos-gpu, the whole screen:                   {median(app_whole)}")
    print(f"talos-gpu demo (starts its lab), first frame:  {median(demo_frame)}")
    print(f"talos-gpu demo, first sweep on screen:         {median(demo_report)}")
    got_bare = [v for v in bare if v is not None]
    got_app = [v for v in app_frame if v is not None]
    ratio = statistics.median(got_app) / statistics.median(got_bare) if got_bare and got_app else float("inf")
    rows = [
        {"figure": "first frame vs bare Textual app", "target": "<= 1.25x",
         "measured": f"{ratio:.2f}x ({median(app_frame)} vs {median(bare)})", "pass": ratio <= 1.25},
        {"figure": "whole screen (panes, log, footer)", "target": "report", "measured": median(app_whole),
         "pass": True},
        {"figure": "demo first frame (incl. lab start)", "target": "report", "measured": median(demo_frame),
         "pass": True},
        {"figure": "demo first sweep on screen", "target": "report", "measured": median(demo_report), "pass": True},
    ]
    print("BENCH-JSON " + json.dumps(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
