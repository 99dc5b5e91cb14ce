"""Issue 7 (4): the TUI left open on a healthy lab with the default refresh: its CPU and API load.

`talos-gpu` runs in a pseudo-terminal (120×40) against the lab; after a warm-up, the script reads
the process's own CPU time (utime+stime) and its reaped children's (cutime+cstime: the talosctl
and helm calls of each refresh) over a window, and counts the API server's requests. Target: the
TUI's own CPU ≤ 2% of one core. Children and requests per minute are reported alongside.

    .venv/bin/python bench/idle.py [--seconds 60]
"""

from __future__ import annotations

import argparse
import fcntl
import os
import pty
import select
import signal
import struct
import termios
import time
from pathlib import Path

from common import REPO, Figure, emit, lab

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
EXTRA_ARGS: list[str] = []  # e.g. ["--refresh", "0"] for the baseline of an app that never refreshes


def cpu_seconds(pid: int) -> tuple[float, float]:
    """(own utime+stime, reaped children's cutime+cstime) in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    utime, stime, cutime, cstime = (int(fields[i]) for i in (11, 12, 13, 14))
    return (utime + stime) / CLOCK_TICKS, (cutime + cstime) / CLOCK_TICKS


def request_count(log: Path) -> int:
    try:
        return sum(1 for line in log.read_text(errors="replace").splitlines() if '"GET ' in line or '"POST ' in line
                   or '"DELETE ' in line or '"PUT ' in line or '"PATCH ' in line)
    except FileNotFoundError:
        return 0


def drain(fd: int, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.2)
        if ready:
            try:
                os.read(fd, 65536)
            except OSError:
                return


def main(seconds: float = 60.0, warmup: float = 15.0) -> list[Figure]:
    os.environ["TALOS_GPU_LAB_API_LOG"] = "1"  # the lab's server logs each request to apiserver.log
    with lab("healthy") as handle:
        env = dict(os.environ, **handle.env, TERM="xterm-256color")
        pid, fd = pty.fork()
        if pid == 0:
            os.chdir(REPO)
            argv = [str(REPO / ".venv" / "bin" / "python"), "-m", "tui.cli", *EXTRA_ARGS]
            os.execve(argv[0], argv, env)
        fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
        try:
            drain(fd, warmup)
            log = Path(handle.state_dir) / "apiserver.log"
            own0, kids0 = cpu_seconds(pid)
            requests0 = request_count(log)
            started = time.monotonic()
            drain(fd, seconds)
            elapsed = time.monotonic() - started
            own1, kids1 = cpu_seconds(pid)
            requests = request_count(log) - requests0
        finally:
            os.kill(pid, signal.SIGTERM)
            os.waitpid(pid, 0)
    own = (own1 - own0) / elapsed * 100
    kids = (kids1 - kids0) / elapsed * 100
    per_minute = requests / elapsed * 60
    print(f"over {elapsed:.0f} s: TUI process {own:.2f}% of one core, its talosctl/helm children {kids:.2f}%, "
          f"{per_minute:.0f} API requests per minute")
    return [
        Figure("idle TUI CPU (own process)", "<= 2%", f"{own:.2f}% of one core", own <= 2.0),
        Figure("idle children CPU (lab talosctl/helm)", "report", f"{kids:.2f}% of one core", True),
        Figure("idle API requests", "report", f"{per_minute:.0f} per minute", True),
    ]


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    emit(main(parser.parse_args().seconds))
