"""Issue 7 (2): the seed's own verification commands, one after another, against `talos-gpu check`.

The lab answers each talosctl call after 300 ms and each API request after 100 ms (a remote node).
By hand: talosctl health, get extensions, read /proc/modules, read the driver version, kubectl get
runtimeclass, get ds, get pods, describe node. Target: check ≥ 4× faster. Also reported: check's
wall time against its slowest probe plus the kubernetes-client import measured in a fresh
interpreter (target ≤ 1.2×).
"""

from __future__ import annotations

import json
import sys

from common import REPO, Figure, emit, env_with, lab, median, timed_run

SEED_COMMANDS = [
    ["talosctl", "health", "--wait-timeout", "30s"],
    ["talosctl", "get", "extensions"],
    ["talosctl", "read", "/proc/modules"],
    ["talosctl", "read", "/proc/driver/nvidia/version"],
    ["kubectl", "get", "runtimeclass"],
    ["kubectl", "get", "ds", "-A"],
    ["kubectl", "get", "pods", "-A"],
    ["kubectl", "describe", "node", "gpu-node-1"],
]


def import_cost(env: dict[str, str]) -> float:
    """The issue's yardstick: `import kubernetes.client` in a fresh interpreter."""
    code = "import time; t=time.perf_counter(); import kubernetes.client; print(time.perf_counter()-t)"
    return median([float(timed_run([sys.executable, "-c", code], env)[1].stdout) for _ in range(3)]) * 1000


def lean_import_cost(env: dict[str, str]) -> float:
    """What the app imports of the client (checks/adapters/kube_import.py), for comparison."""
    code = ("import time; t=time.perf_counter(); from checks.adapters.kube_import import kubernetes_client; "
            "assert kubernetes_client().lean; print(time.perf_counter()-t)")
    return median([float(timed_run([sys.executable, "-c", code], env)[1].stdout) for _ in range(3)]) * 1000


def main(runs: int = 5) -> list[Figure]:
    with lab("healthy", knobs={"talosctl_latency_ms": 300, "api_latency_ms": 100}) as handle:
        env = env_with(handle.env)
        by_hand, checks, slowest = [], [], []
        # the first check against a node reads the Node only after `talosctl get nodename` answers;
        # later ones remember its name (checks/node_cache.py): time that first one on its own
        first_check, _ = timed_run([sys.executable, "-m", "tui.cli", "check", "--json"], env)
        for _ in range(runs):
            total = 0.0
            for argv in SEED_COMMANDS:
                seconds, result = timed_run(argv, env)
                assert result.returncode == 0, (argv, result.stderr[-300:])
                total += seconds
            by_hand.append(total * 1000)
            seconds, result = timed_run([sys.executable, "-m", "tui.cli", "check", "--json"], env)
            assert result.returncode == 0, result.stderr
            checks.append(seconds * 1000)
            # the slowest probe of that run, measured in-process by the engine itself
            seconds_in, result_in = timed_run([sys.executable, str(REPO / "bench" / "probe_times.py")], env)
            slowest.append(json.loads(result_in.stdout.strip().splitlines()[-1])["slowest_ms"])
        imp = import_cost(env)
        lean = lean_import_cost(env)
    speedup = median(by_hand) / median(checks)
    bound = median(slowest) + imp
    ratio = median(checks) / bound
    print(f"seed by hand: {median(by_hand):.0f} ms; check: {median(checks):.0f} ms (first against the node: "
          f"{first_check * 1000:.0f} ms); slowest probe {median(slowest):.0f} ms; kubernetes import {imp:.0f} ms "
          f"(what the app imports of it: {lean:.0f} ms)")
    return [
        Figure("check vs seed by hand", ">= 4x faster", f"{speedup:.2f}x ({median(by_hand):.0f}/{median(checks):.0f} ms)",
               speedup >= 4),
        Figure("check / (slowest probe + import)", "<= 1.2x", f"{ratio:.2f}x ({median(checks):.0f}/{bound:.0f} ms)",
               ratio <= 1.2),
    ]


if __name__ == "__main__":
    emit(main())
