"""The first sweep started before the TUI loads (tui/head_start.py): its report is the first one the screen
shows, a config error still ends the app in one line, and quitting while it waits on a hanging talosctl
leaves no process behind."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from tests.test_faults_talosctl import assert_no_processes_left, lab_processes, lab_target
from tests.test_faults_terminal import pty_run  # noqa: F401, F811 - a fixture
from tests.test_signals import wait_for
from tui.head_start import HeadStart


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_the_head_start_report_is_the_first_on_screen(lab: Any, tmp_path: Path, anyio_backend: str) -> None:
    from tui.app import TalosGpuApp

    handle = lab("runtimeclass-missing")
    requests = Path(handle.state_dir) / "requests.log"
    head = HeadStart(lambda: lab_target(handle), timeout=30.0).start()
    try:
        app = TalosGpuApp(None, target_loader=head.load_target, head_start=head, refresh=0,
                          audit_path=tmp_path / "audit.log", state_dir=tmp_path / "state")
        async with app.run_test(size=(120, 40)) as pilot:
            main = app.main_screen
            deadline = asyncio.get_running_loop().time() + 30
            while main.sweeps_done < 1 or main.sweeping:
                assert asyncio.get_running_loop().time() < deadline, "no sweep finished"
                await pilot.pause(0.05)
            assert main.report is head._sweep.result()  # the very report the head start made
            assert main.report.root_cause is not None and main.report.root_cause.stage == "runtimeclass"
            served = requests.read_text().count("\n")
            main.start_sweep()  # later sweeps are the screen's own: they read the cluster again
            while main.sweeps_done < 2 or main.sweeping:
                assert asyncio.get_running_loop().time() < deadline, "no second sweep"
                await pilot.pause(0.05)
            assert requests.read_text().count("\n") > served
    finally:
        head.close()


def test_a_config_the_head_start_cannot_read_ends_the_app_in_one_line(tmp_path: Path, pty_run: Any) -> None:  # noqa: F811
    missing = tmp_path / "no-such-talosconfig"
    run = pty_run(["--refresh", "0"], {"TALOSCONFIG": str(missing), "KUBECONFIG": str(tmp_path / "nope"),
                                       "HOME": str(tmp_path), "PATH": "/usr/bin:/bin"})
    code = run.wait_exit(20)
    assert code == 2, run.tail()
    assert b"Traceback" not in run.output and b"talos-gpu:" in run.output


def test_quitting_while_the_head_start_waits_on_talosctl_leaves_no_process(lab: Any, tmp_path: Path,
                                                                          pty_run: Any) -> None:  # noqa: F811
    handle = lab("healthy", faults={"talosctl_hang": True})
    state = Path(handle.state_dir)
    run = pty_run(["--refresh", "0"], {**handle.env, "XDG_STATE_HOME": str(tmp_path)})
    wait_for(lambda: len(lab_processes(state)) >= 3, 20, "talosctl calls")
    run.wait_for_text(b"Checklist", 20)
    run.send(b"q")
    assert run.wait_exit(15) == 0, run.tail()
    assert_no_processes_left(state)
