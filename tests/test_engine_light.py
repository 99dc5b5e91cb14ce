"""A light refresh re-runs only the cheap probes and reuses the rest, yet sees what changed."""

from __future__ import annotations

from typing import Any

import anyio

from checks.engine import LIGHT_PROBES, run_sweep
from lab import state as lab_state
from tests.test_actions_support import make_target


def test_light_refresh_reuses_talos_facts_and_sees_kube_changes(lab: Any, tmp_path: Any) -> None:
    handle = lab("healthy")
    target = make_target(handle, tmp_path)
    full = anyio.run(lambda: run_sweep(target, timeout=30))
    assert full.overall.value == "pass"
    with lab_state.mutate(handle.state_dir) as state:
        state["kube"]["runtimeclasses"] = []  # the RuntimeClass disappears
        state["talos"]["config"]["sysctls"]["net.core.bpf_jit_harden"] = "2"  # a Talos fact changes too
    light = anyio.run(lambda: run_sweep(target, timeout=30, previous=full, only=LIGHT_PROBES))
    assert light.stage("runtimeclass").status.value == "fail"  # re-read: the change is seen
    assert light.stage("kernel-modules").status.value == "pass"  # reused: not re-read on a light refresh
    for name in ("extensions", "proc_modules", "health", "dmesg"):
        assert light.facts[name] is full.facts[name]
    again = anyio.run(lambda: run_sweep(target, timeout=30))
    assert again.stage("kernel-modules").status.value == "fail"  # a full sweep sees it
