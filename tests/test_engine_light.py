"""A light refresh re-runs only the cheap probes and reuses the rest, yet sees what changed."""

from __future__ import annotations

from pathlib import Path
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


def test_the_remembered_node_name_is_used_only_when_the_node_agrees(lab: Any, tmp_path: Any, monkeypatch) -> None:
    from checks import node_cache

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    handle = lab("healthy")
    target = make_target(handle, tmp_path)
    first = anyio.run(lambda: run_sweep(target, timeout=30))
    assert first.kube_node == "gpu-node-1"
    assert node_cache.remembered(target.kube.server, target.talos.node) == "gpu-node-1"

    # another Node of the cluster remembered (stale): the sweep still finds gpu-node-1 and corrects it
    with lab_state.mutate(handle.state_dir) as state:
        other = {**state["kube"]["nodes"][0], "metadata": {**state["kube"]["nodes"][0]["metadata"],
                                                           "name": "cpu-node-9"}}
        state["kube"]["nodes"].append(other)
    node_cache.remember(target.kube.server, target.talos.node, "cpu-node-9")
    stale = anyio.run(lambda: run_sweep(target, timeout=30))
    assert stale.kube_node == "gpu-node-1" and stale.facts["kube_node"].value["metadata"]["name"] == "gpu-node-1"
    assert stale.stage("gpu-resources").status.value == "pass"
    assert node_cache.remembered(target.kube.server, target.talos.node) == "gpu-node-1"

    # a remembered name that names no Node at all: one wasted request, the right answer
    node_cache.remember(target.kube.server, target.talos.node, "gone-node")
    gone = anyio.run(lambda: run_sweep(target, timeout=30))
    assert gone.kube_node == "gpu-node-1" and gone.overall.value == "pass"


def test_node_cache_survives_garbage_and_stays_small(tmp_path: Any) -> None:
    from checks import node_cache

    path = tmp_path / "talos-gpu" / "nodes.json"
    path.parent.mkdir()
    path.write_text("{not json")
    assert node_cache.remembered("https://x", "10.0.0.1", path) is None
    for index in range(node_cache.MAX_ENTRIES + 10):
        node_cache.remember("https://x", f"10.0.0.{index}", f"node-{index}", path)
    assert node_cache.remembered("https://x", "10.0.0.0", path) is None  # the oldest went
    assert node_cache.remembered("https://x", f"10.0.0.{node_cache.MAX_ENTRIES + 9}", path) == \
        f"node-{node_cache.MAX_ENTRIES + 9}"
    assert node_cache.remembered("https://other", f"10.0.0.{node_cache.MAX_ENTRIES + 9}", path) is None
    blocked = tmp_path / "file"
    blocked.write_text("")
    node_cache.remember("https://x", "10.0.0.1", "n", blocked / "nodes.json")  # cannot be written: ignored
    assert node_cache.cache_path({"XDG_CACHE_HOME": "/c", "HOME": "/h"}) == Path("/c/talos-gpu/nodes.json")
    assert node_cache.cache_path({"HOME": "/h"}) == Path("/h/.cache/talos-gpu/nodes.json")
