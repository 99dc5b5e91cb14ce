"""Issue 7 (3): `check` for one node on clusters of 1, 100 and 1,000 nodes (8 GPUs each).

Targets: wall time grows ≤ 25% from 1 to 1,000 nodes; peak RSS ≤ 120 MiB at 1 node and ≤ 200 MiB
at 1,000. RSS is the check process's own peak (ru_maxrss from wait4), not the lab's.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

from common import REPO, Figure, emit, env_with, lab, median


def run_check(env: dict[str, str]) -> tuple[float, float]:
    started = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-m", "tui.cli", "check", "--json"], env=env, cwd=REPO,
                               stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _pid, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    assert os.waitstatus_to_exitcode(status) == 0, process.stderr.read() if process.stderr else status
    return wall * 1000, usage.ru_maxrss / 1024  # ms, MiB


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
