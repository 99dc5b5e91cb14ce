"""`talos-gpu demo` as a person runs it, in a pseudo-terminal: it draws, quits on q, stops its lab
in every case, and prints nothing after the app has left the screen (errors aside)."""

import fcntl
import os
import pty
import select
import struct
import sys
import termios
import time
from pathlib import Path

import pytest

from tests.paths import REPO

LEAVE_ALT_SCREEN = b"\x1b[?1049l"


def run_in_terminal(args: list[str], tmp_path: Path, *, wait_for: bytes | None, timeout: float = 60.0
                    ) -> tuple[int, bytes]:
    """Run `talos-gpu <args>` in a 120×40 terminal; once `wait_for` shows, press q. (exit code, output)"""
    env = dict(os.environ, TERM="xterm-256color", TMPDIR=str(tmp_path), HOME=str(tmp_path),
               TEXTUAL_ANIMATIONS="none")
    pid, fd = pty.fork()
    if pid == 0:
        os.chdir(REPO)
        os.execvpe(sys.executable, [sys.executable, "-m", "tui.cli", *args], env)
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    output = b""
    deadline = time.monotonic() + timeout
    pressed = wait_for is None
    status = None
    try:
        while time.monotonic() < deadline:
            if select.select([fd], [], [], 0.05)[0]:
                try:
                    chunk = os.read(fd, 65536)
                except OSError:
                    chunk = b""
                output += chunk
            if not pressed and wait_for is not None and wait_for in output:
                time.sleep(0.3)
                os.write(fd, b"q")
                pressed = True
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
        else:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            raise AssertionError(f"talos-gpu {' '.join(args)} did not exit; output tail: {output[-500:]!r}")
        while select.select([fd], [], [], 0.1)[0]:
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                break
            if not chunk:
                break
            output += chunk
    finally:
        os.close(fd)
    return os.waitstatus_to_exitcode(status), output


def processes_mentioning(text: str) -> list[str]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if text in cmdline:
                found.append(cmdline)
    return found


@pytest.mark.slow
def test_the_demo_draws_quits_on_q_and_stops_its_lab(tmp_path) -> None:
    code, output = run_in_terminal(["demo", "--scenario", "healthy", "--refresh", "0"], tmp_path,
                                   wait_for=b"every stage passes")
    assert code == 0
    assert b"Checklist" in output
    after = output.rsplit(LEAVE_ALT_SCREEN, 1)[-1]
    assert after.strip(b"\r\n\x1b[?0123456789;hlHJKm") == b"", after  # nothing printed after the app
    assert list(tmp_path.glob("talos-gpu-lab-*")) == []  # the lab's state directory is gone
    assert processes_mentioning(str(tmp_path)) == []  # and its API server


def test_a_demo_that_cannot_start_says_why_in_one_line(tmp_path) -> None:
    code, output = run_in_terminal(["demo", "--scenario", "no-such-scenario"], tmp_path, wait_for=None)
    assert code == 2
    text = output.decode(errors="replace")
    assert LEAVE_ALT_SCREEN not in output  # refused before the screen (and the lab) started
    assert "unknown scenario 'no-such-scenario'" in text and "known: fresh, healthy" in text
    assert len(text.strip().splitlines()) == 1
    assert "Traceback" not in output.decode(errors="replace")
    assert processes_mentioning(str(tmp_path)) == []
