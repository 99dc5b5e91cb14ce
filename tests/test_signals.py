"""Signals (issue 15): `check` and `enable` stop on SIGTERM and SIGHUP the way they stop on Ctrl-C.

Each test starts `talos-gpu` as a subprocess against the lab with a tool that hangs (talosctl, helm,
an exec credential plugin), sends the signal while the tool runs, and asserts: exit 128 + the signal
number, one line saying so, no process left behind (read from /proc), and for `enable` the audit
log's last record is the `result` of the cancelled action.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from checks.audit import read_audit
from tests.paths import REPO
from tests.procs import live_command_lines
from tests.test_faults_talosctl import assert_no_processes_left, lab_processes


def start_cli(env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "tui.cli", *args], cwd=REPO, env={**os.environ, **env},
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for(condition: Any, within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, f"{what} did not happen within {within}s"
        time.sleep(0.05)


def stop(child: subprocess.Popen[str], signum: int) -> tuple[str, str]:
    try:
        os.kill(child.pid, signum)
        return child.communicate(timeout=20)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_check_stopped_while_talosctl_hangs_kills_every_child(lab: Any, signum: int) -> None:
    handle = lab("healthy", faults={"talosctl_hang": True})
    state = Path(handle.state_dir)
    child = start_cli(handle.env, "check", "--timeout", "60")
    wait_for(lambda: len(lab_processes(state)) >= 3, 20, "talosctl calls")
    out, err = stop(child, signum)
    assert child.returncode == 128 + signum, (child.returncode, out[-500:], err[-2000:])
    assert err == f"talos-gpu: stopped by {signal.Signals(signum).name}\n", err
    assert "Traceback" not in out + err
    assert_no_processes_left(state)


PLUGIN_SLEEPS = ("sleep 3017", "sleep 3019")  # the plugin's children: unusual numbers, found by name


def hanging_plugin_kubeconfig(handle: Any, tmp_path: Path) -> tuple[Path, str]:
    """A kubeconfig whose user is an exec credential plugin that never answers (a shell with two sleeps)."""
    plugin = tmp_path / "hanging-plugin"
    plugin.write_text(f"#!/bin/sh\n{PLUGIN_SLEEPS[0]} &\n{PLUGIN_SLEEPS[1]}\n")
    plugin.chmod(0o755)
    kube = tmp_path / "kubeconfig-hanging-plugin"
    kube.write_text(re.sub(r"    token: \S+", textwrap.indent(textwrap.dedent(f"""\
        exec:
          apiVersion: client.authentication.k8s.io/v1
          command: {plugin}
          interactiveMode: Never"""), "    "), Path(handle.kubeconfig).read_text()))
    return kube, str(plugin)


def plugin_left(plugin: str) -> dict[int, str]:
    left = live_command_lines(plugin)
    for sleep in PLUGIN_SLEEPS:
        left |= live_command_lines(sleep)
    return left


def test_a_hanging_exec_plugin_is_ended_with_the_sweep(lab: Any, tmp_path: Path) -> None:
    handle = lab("healthy")
    kube, plugin = hanging_plugin_kubeconfig(handle, tmp_path)
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "tui.cli", "check", "--json", "--timeout", "3"], cwd=REPO,
                            env={**os.environ, **handle.env, "KUBECONFIG": str(kube)}, capture_output=True,
                            text=True, timeout=30, stdin=subprocess.DEVNULL)
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert time.monotonic() - started < 10
    wait_for(lambda: not plugin_left(plugin), 2, "the plugin's end")


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_check_stopped_while_the_exec_plugin_hangs_leaves_no_plugin(lab: Any, tmp_path: Path, signum: int) -> None:
    handle = lab("healthy")
    kube, plugin = hanging_plugin_kubeconfig(handle, tmp_path)
    child = start_cli({**handle.env, "KUBECONFIG": str(kube)}, "check", "--timeout", "60")
    wait_for(lambda: bool(live_command_lines(plugin)), 20, "the exec plugin")
    out, err = stop(child, signum)
    assert child.returncode == 128 + signum, (child.returncode, err[-2000:])
    assert err.endswith(f"talos-gpu: stopped by {signal.Signals(signum).name}\n"), err
    wait_for(lambda: not plugin_left(plugin), 3, "the plugin's end")


@pytest.mark.parametrize("signum", [signal.SIGHUP, signal.SIGTERM])
def test_enable_stopped_during_an_action_kills_helm_and_records_the_result(lab: Any, tmp_path: Path,
                                                                          signum: int) -> None:
    handle = lab("plugin-missing", faults={"helm_hang": {"only": "upgrade"}})
    state = Path(handle.state_dir)
    infra = tmp_path / "infra"
    infra.mkdir()
    profile = tmp_path / "profile.yaml"
    profile.write_text(f"infra_repo: {infra}\n")
    env = {**handle.env, "XDG_STATE_HOME": str(tmp_path / "state")}
    child = start_cli(env, "enable", "--yes", "--profile", str(profile), "--timeout", "15")
    wait_for(lambda: any(" upgrade " in cmd for cmd in lab_processes(state)), 60, "helm upgrade")
    out, err = stop(child, signum)
    name = signal.Signals(signum).name
    assert child.returncode == 128 + signum, (child.returncode, out[-2000:], err[-2000:])
    assert f"cancelled by {name} during the device-plugin action" in out
    assert "Traceback" not in out + err
    assert_no_processes_left(state)
    records = read_audit(tmp_path / "state" / "talos-gpu" / "audit.log")
    assert records[-1]["kind"] == "result" and records[-1]["text"].startswith("cancelled during: helm"), records[-1]
