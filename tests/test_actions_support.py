"""Shared helpers for the action and enable tests: one real lab per module, reset per test.

(This module holds no tests; it is named so that it stays with the action tests.)
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from checks.config import find_helm, resolve_kube, resolve_talos, talosctl_path
from checks.engine import Target, run_sweep
from checks.model import Report
from checks.paths import DEVICE_PLUGIN
from checks.profile import Profile
from checks.secrets import install_secrets_from
from checks.stages import stage_spec
from lab.runtime import LabHandle, start_lab
from tests.procs import live_command_lines

SEED_STAGES = DEVICE_PLUGIN.stages
LAB_KNOBS: dict[str, Any] = {"reboot_s": 1.0}
SWEEP_TIMEOUT_S = 30.0


@pytest.fixture(scope="module", name="lab")
def lab_fixture() -> Iterator[LabHandle]:
    handle = start_lab("fresh", knobs=LAB_KNOBS)
    try:
        yield handle
    finally:
        handle.stop()


def use_scenario(lab: LabHandle, scenario: str, *, knobs: dict[str, Any] | None = None,
                 faults: dict[str, Any] | None = None) -> None:
    lab.reset(scenario, knobs={**LAB_KNOBS, **(knobs or {})}, faults=faults)


def lab_env(lab: LabHandle) -> dict[str, str]:
    return {**os.environ, **lab.env}


def make_target(lab: LabHandle, infra_repo: Path, **profile: Any) -> Target:
    env = lab_env(lab)
    talos = resolve_talos(None, None, None, env=env)
    kube = resolve_kube(None, None, env=env)
    install_secrets_from(kube.kubeconfig, talos.talosconfig)
    return Target(talos, kube, Profile(infra_repo=infra_repo, **profile), talosctl_path(env), find_helm(env), env)


def sweep(target: Target, *only: str) -> Report:
    """A whole sweep, or only the named stages' own checks (fewer talosctl calls: faster)."""
    stages = tuple(stage_spec(s, SEED_STAGES) for s in only) or SEED_STAGES
    return anyio.run(lambda: run_sweep(target, timeout=SWEEP_TIMEOUT_S, stages=stages))


async def recheck_until(target: Target, stage: str, timeout: float = 30.0) -> Report:
    """Checks `stage` (its own facts) until it passes (a device plugin needs a moment to register)."""
    deadline = time.monotonic() + timeout
    while True:
        report = await run_sweep(target, timeout=SWEEP_TIMEOUT_S, stages=(stage_spec(stage, SEED_STAGES),))
        if report.stage(stage).status.ok or time.monotonic() > deadline:
            return report
        await anyio.sleep(0.5)


def tool_processes(lab: LabHandle) -> dict[int, str]:
    """pid → command line of every running process of the lab's talosctl or helm."""
    return live_command_lines(str(lab.bin_dir))


def group_gone(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return True
    return False


def state_bytes(lab: LabHandle) -> bytes:
    return (lab.state_dir / "state.json").read_bytes()


def tree_snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}
