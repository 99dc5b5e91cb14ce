"""Issue 7 (3): `check` for one node on clusters of 1, 100 and 1,000 nodes (8 GPUs each).

Targets: wall time grows ≤ 25% from 1 to 1,000 nodes; peak RSS ≤ 120 MiB at 1 node and ≤ 200 MiB
at 1,000. `check` reads Kubernetes in a forked child (checks/kube_process.py): its RSS is the check
process's own peak (ru_maxrss from wait4) plus the child's peak (VmHWM, read from /proc every few
ms while it runs), an upper bound since the two share the pages they had at the fork.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from common import REPO, Figure, emit, env_with, lab, median


def _hwm_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def _children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def run_check(env: dict[str, str]) -> tuple[float, float]:
    started = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-m", "tui.cli", "check", "--json"], env=env, cwd=REPO,
                               stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    # the forked reader is the check's first child (talosctl and helm are spawned after it; between fork
    # and exec they too show the check's command line for an instant, so the lowest such pid is taken)
    child_peak: dict[int, int] = {}
    # waitid(WNOWAIT) sees the end without reaping: wait4 below still gets the process's rusage
    while os.waitid(os.P_PID, process.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is None:
        for pid in _children(process.pid):
            try:
                if b"tui.cli" not in Path(f"/proc/{pid}/cmdline").read_bytes():
                    continue
            except OSError:
                continue
            child_peak[pid] = max(child_peak.get(pid, 0), _hwm_kib(pid))
        time.sleep(0.003)
    _pid, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - started
    assert process.returncode == 0, process.stderr.read() if process.stderr else status
    reader = child_peak[min(child_peak)] if child_peak else 0
    return wall * 1000, (usage.ru_maxrss + reader) / 1024  # ms, MiB


def main(runs: int = 5) -> list[Figure]:
    results: dict[int, tuple[float, float]] = {}
    for nodes in (1, 100, 1000):
        with lab("healthy", extra_nodes=nodes - 1) as handle:
            env = env_with(handle.env)
            run_check(env)  # warm the lab's state cache
            samples = [run_check(env) for _ in range(runs)]
        results[nodes] = (median([s[0] for s in samples]), max(s[1] for s in samples))
        print(f"{nodes:>5} nodes: check {results[nodes][0]:.0f} ms (median of {runs}), peak RSS {results[nodes][1]:.1f} MiB")
    growth = results[1000][0] / results[1][0] - 1
    return [
        Figure("check growth 1 → 1,000 nodes", "<= 25%", f"{growth * 100:+.1f}% ({results[1][0]:.0f} → {results[1000][0]:.0f} ms)",
               growth <= 0.25),
        Figure("peak RSS at 1 node", "<= 120 MiB", f"{results[1][1]:.1f} MiB", results[1][1] <= 120),
        Figure("peak RSS at 1,000 nodes", "<= 200 MiB", f"{results[1000][1]:.1f} MiB", results[1000][1] <= 200),
    ]


if __name__ == "__main__":
    emit(main())
