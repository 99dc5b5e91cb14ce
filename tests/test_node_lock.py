"""One action per node across processes (issue 15): a second `enable --yes` (or the TUI) against a node
another talos-gpu is changing refuses at once, naming the holder (pid, command, stage, start time);
nothing is run, and the audit log says `refused`. The lock goes with its process, however it ends.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import anyio
import pytest

from checks.actions import AuditLog, plan_action, run_action
from checks.audit import read_audit
from checks.lock import NodeBusy, lock_path, node_action_lock
from tests.paths import REPO
from tests.test_faults_talosctl import assert_no_processes_left, lab_processes, lab_target, run_cli, sweep

NODE = "10.5.0.2"


def hold_lock(state_dir: Path, node: str = NODE, stage: str = "device-plugin") -> subprocess.Popen[str]:
    """A separate process holding the node's lock (as a running `talos-gpu enable` would) until killed."""
    code = ("import sys, time\nfrom pathlib import Path\nfrom checks.lock import node_action_lock\n"
            f"with node_action_lock(Path({str(state_dir)!r}), {node!r}, stage={stage!r}):\n"
            "    print('held', flush=True)\n    time.sleep(600)\n")
    holder = subprocess.Popen([sys.executable, "-c", code, "enable", "--yes"], cwd=REPO, stdout=subprocess.PIPE,
                              text=True)
    assert holder.stdout is not None and holder.stdout.readline() == "held\n"
    return holder


def test_a_second_holder_is_refused_naming_the_first_and_the_lock_dies_with_it(tmp_path: Path) -> None:
    holder = hold_lock(tmp_path)
    try:
        with pytest.raises(NodeBusy) as caught, node_action_lock(tmp_path, NODE):
            pass
        message = str(caught.value)
        assert f"node {NODE} is busy" in message and f"pid {holder.pid}" in message
        assert "the device-plugin action since" in message and "enable --yes" in message
        assert stat_mode(lock_path(tmp_path, NODE)) == 0o600
    finally:
        holder.kill()
        holder.wait()
    with node_action_lock(tmp_path, NODE):  # SIGKILL released it: no stale lock
        pass
    with node_action_lock(tmp_path, "10.5.0.3"), node_action_lock(tmp_path, NODE):  # other nodes are independent
        pass


def stat_mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


def test_run_action_refuses_while_another_process_acts_on_the_node(lab: Any, tmp_path: Path) -> None:
    """The TUI and `enable` both go through run_action with the audit log in the state directory."""
    handle = lab("plugin-missing")
    target = lab_target(handle)
    report, _ = sweep(target)
    holder = hold_lock(tmp_path)
    events: list[Any] = []
    try:
        async def go() -> Any:
            plan = await plan_action("device-plugin", target, report)
            with AuditLog(tmp_path / "audit.log") as audit:
                return await run_action(plan, target, events.append, audit=audit)

        result = anyio.run(go)
    finally:
        holder.kill()
        holder.wait()
    assert result.status == "failed" and f"pid {holder.pid}" in result.reason, result
    assert events == [] and not lab_processes(Path(handle.state_dir))
    records = read_audit(tmp_path / "audit.log")
    assert [r["kind"] for r in records] == ["result"] and records[0]["text"].startswith("refused: node 10.5.0.2 is busy")


def test_two_enables_at_once_the_second_refuses_naming_the_first(lab: Any, tmp_path: Path) -> None:
    """The issue's repro: two `enable --yes` against the same node."""
    handle = lab("plugin-missing", faults={"helm_hang": {"only": "upgrade"}})
    state = Path(handle.state_dir)
    infra = tmp_path / "infra"
    infra.mkdir()
    profile = tmp_path / "profile.yaml"
    profile.write_text(f"infra_repo: {infra}\n")
    env = {**os.environ, **handle.env, "XDG_STATE_HOME": str(tmp_path / "state"), "COLUMNS": "400"}
    first = subprocess.Popen([sys.executable, "-m", "tui.cli", "enable", "--yes", "--profile", str(profile),
                              "--timeout", "15"], cwd=REPO, env=env, stdin=subprocess.DEVNULL,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not any(" upgrade " in cmd for cmd in lab_processes(state)):
            assert time.monotonic() < deadline, "helm upgrade never started"
            time.sleep(0.1)
        second = run_cli({**handle.env, "XDG_STATE_HOME": str(tmp_path / "state"), "COLUMNS": "400"},
                         "enable", "--yes", "--profile", str(profile), "--timeout", "15", timeout=90)
        assert second.returncode == 1, second.stdout[-2000:]
        assert f"node 10.5.0.2 is busy: another talos-gpu (pid {first.pid}" in second.stdout
        assert "running the device-plugin action since" in second.stdout
        assert sum(" upgrade " in cmd for cmd in lab_processes(state)) == 1  # only the first's helm
        os.kill(first.pid, signal.SIGTERM)
        first.communicate(timeout=20)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    assert_no_processes_left(state)
    records = read_audit(tmp_path / "state" / "talos-gpu" / "audit.log")
    assert any(r["kind"] == "result" and r["text"].startswith("refused: node 10.5.0.2 is busy") for r in records)
    assert records[-1]["kind"] == "result" and records[-1]["text"].startswith("cancelled")
