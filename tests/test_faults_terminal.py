"""Fault matrix, terminal side: a tiny terminal, TERM=dumb, and SIGTERM in the middle of an action (issue 6).

The tiny terminal runs the app under Textual's pilot; TERM=dumb and SIGTERM run the real `talos-gpu`
in a pseudo-terminal against the shared lab, as a person would. (SIGTERM of `talos-gpu enable` is
tests/test_enable.py::test_sigterm_during_the_upgrade_kills_talosctl_and_keeps_the_audit.)
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import signal
import struct
import subprocess
import sys
import termios
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from checks.audit import read_audit
from tests.paths import REPO
from tests.test_faults_talosctl import assert_no_processes_left, lab_processes, lab_target


class PtyRun:
    """`talos-gpu ARGS` in a pseudo-terminal of `size`; its output collected, keys sent as bytes."""

    def __init__(self, args: list[str], env: dict[str, str], size: tuple[int, int] = (120, 40)) -> None:
        master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", size[1], size[0], 0, 0))
        self.process = subprocess.Popen([sys.executable, "-m", "tui.cli", *args], stdin=slave, stdout=slave,
                                        stderr=slave, env={**os.environ, **env}, cwd=REPO, start_new_session=True)
        os.close(slave)
        self.master = master
        self.output = bytearray()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while True:
            try:
                data = os.read(self.master, 65536)
            except OSError:
                return
            if not data:
                return
            self.output.extend(data)

    def wait_for(self, condition: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            assert self.process.poll() is None, f"exited {self.process.returncode} waiting for {what}: {self.tail()}"
            assert time.monotonic() < deadline, f"timed out waiting for {what}: {self.tail()}"
            time.sleep(0.05)

    def wait_for_text(self, text: bytes, timeout: float = 30) -> None:
        self.wait_for(lambda: text in self.output, timeout, repr(text))

    def send(self, keys: bytes, pause: float = 0.3) -> None:
        os.write(self.master, keys)
        time.sleep(pause)

    def wait_exit(self, timeout: float = 15) -> int:
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"did not exit within {timeout}s: {self.tail()}") from None

    def tail(self) -> str:
        return bytes(self.output[-3000:]).decode(errors="replace")

    def kill(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(5)

    def close(self) -> None:
        self.kill()
        self._reader.join(2)
        os.close(self.master)


@pytest.fixture
def pty_run() -> Any:
    runs: list[PtyRun] = []

    def start(args: list[str], env: dict[str, str], size: tuple[int, int] = (120, 40)) -> PtyRun:
        run = PtyRun(args, env, size)
        runs.append(run)
        return run

    yield start
    for run in runs:
        run.close()


# ---- a tiny terminal ------------------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_a_40x12_terminal_still_works(lab: Any, tmp_path: Path, anyio_backend: str) -> None:
    from tui.app import TalosGpuApp

    handle = lab("runtimeclass-missing")
    app = TalosGpuApp(lab_target(handle), refresh=0, audit_path=tmp_path / "audit.log", state_dir=tmp_path / "state",
                      screenshot_dir=tmp_path / "shots")
    async with app.run_test(size=(40, 12)) as pilot:
        main = app.main_screen
        deadline = asyncio.get_running_loop().time() + 30
        while main.sweeps_done < 1 or main.sweeping:
            assert asyncio.get_running_loop().time() < deadline, "no sweep finished"
            await pilot.pause(0.05)
        assert main.report is not None and main.report.root_cause is not None
        assert main.report.root_cause.stage == "runtimeclass"
        for key in ("j", "k", "3", "question_mark", "escape"):
            await pilot.press(key)
        await pilot.resize_terminal(120, 40)
        await pilot.resize_terminal(40, 12)
        await pilot.pause(0.2)
        svg = app.export_screenshot()
        assert app.is_running and "<svg" in svg
        assert "Traceback" not in svg
    assert app.return_code in (0, None)


# ---- TERM=dumb -----------------------------------------------------------------------------------


def test_term_dumb_tui_starts_shows_the_root_cause_and_quits(lab: Any, tmp_path: Path, pty_run: Any) -> None:
    handle = lab("runtimeclass-missing")
    run = pty_run(["--refresh", "0"], {**handle.env, "TERM": "dumb", "XDG_STATE_HOME": str(tmp_path)})
    run.wait_for_text(b"ROOT CAUSE", 30)
    run.send(b"q")
    assert run.wait_exit(15) == 0, run.tail()
    assert b"Traceback" not in run.output


def test_term_dumb_check_on_a_terminal_prints_no_escape_codes(lab: Any, pty_run: Any) -> None:
    handle = lab("runtimeclass-missing")
    run = pty_run(["check", "--timeout", "10"], {**handle.env, "TERM": "dumb"})
    assert run.wait_exit(30) == 1, run.tail()
    run._reader.join(2)
    text = bytes(run.output).decode(errors="replace")
    assert "Root cause: runtimeclass" in text and "✘ FAIL" in text, text[-2000:]
    assert "\x1b[" not in text, text[:500]


# ---- SIGTERM during an action ----------------------------------------------------------------------


def test_sigterm_during_an_action_kills_its_process_group_and_the_audit_keeps_it(lab: Any, tmp_path: Path,
                                                                                 pty_run: Any) -> None:
    """The TUI runs the device-plugin action, `helm upgrade --install` hangs, SIGTERM arrives: the app
    exits 143 with one line, the helm process group is gone, the audit log says `cancelled` during that
    command, and the terminal is restored (alternate screen left)."""
    handle = lab("plugin-missing", faults={"helm_hang": {"only": "upgrade"}})
    infra = tmp_path / "infra"
    infra.mkdir()
    profile = tmp_path / "profile.yaml"
    profile.write_text(f"infra_repo: {infra}\n")
    run = pty_run(["--profile", str(profile), "--refresh", "0"], {**handle.env, "XDG_STATE_HOME": str(tmp_path)})
    run.wait_for_text(b"ROOT CAUSE", 30)  # the first sweep is in; the cursor is on device-plugin
    run.send(b"a")
    run.wait_for_text(b"Confirm", 20)
    run.send(b"\t", 0.2)  # from Cancel to Confirm
    run.send(b"\r", 0)
    run.wait_for(lambda: any("upgrade --install" in c for c in lab_processes(handle.state_dir)), 20,
                 "helm upgrade to start")
    run.process.send_signal(signal.SIGTERM)
    assert run.wait_exit(15) == 128 + signal.SIGTERM, run.tail()
    run._reader.join(2)
    assert b"talos-gpu: stopped by SIGTERM" in run.output
    assert b"\x1b[?1049l" in run.output  # the alternate screen was left: the terminal is usable
    assert b"Traceback" not in run.output
    assert_no_processes_left(handle.state_dir)
    records = read_audit(tmp_path / "talos-gpu" / "audit.log")
    assert [r["kind"] for r in records][0] == "plan"
    last = records[-1]
    assert last["kind"] == "result" and last["stage"] == "device-plugin", records[-3:]
    assert last["text"].startswith("cancelled during: helm") and "upgrade --install" in last["text"]
