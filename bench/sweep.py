"""Issue 2: a sweep's wall time against its slowest probe (target: within 1.5×).

Runs the real engine in-process against the lab (healthy), several times, and prints the median
wall time, the median slowest probe, and their ratio. The first sweep in a process pays for
importing the kubernetes client; it is reported separately and also counted as a probe cost
(the import overlaps the talosctl probes).
"""

from __future__ import annotations

import os
import time

from common import Figure, emit, lab, median


def main(runs: int = 5) -> list[Figure]:
    import anyio

    with lab("healthy") as handle:
        os.environ.update(handle.env)
        from checks.redact import REDACTOR
        from checks.target import build_target

        target = build_target(redactor=REDACTOR)
        from checks.engine import run_sweep

        walls: list[float] = []
        slowest: list[float] = []
        names: list[str] = []
        for _ in range(runs + 1):
            started = time.perf_counter()
            report = anyio.run(lambda: run_sweep(target, timeout=60))
            walls.append((time.perf_counter() - started) * 1000)
            probe = max(report.facts.values(), key=lambda p: p.duration_ms)
            slowest.append(probe.duration_ms)
            names.append(probe.name)
            assert report.overall.value == "pass", report.root_cause
    first_wall, first_slow = walls.pop(0), slowest.pop(0)
    names.pop(0)
    ratio = median(walls) / max(1.0, median(slowest))
    print(f"first sweep (imports the kubernetes client): wall {first_wall:.0f} ms, slowest probe {first_slow:.0f} ms")
    print(f"later sweeps: wall median {median(walls):.0f} ms, slowest probe median {median(slowest):.0f} ms "
          f"({max(set(names), key=names.count)})")
    return [
        Figure("sweep wall / slowest probe", "<= 1.5x", f"{ratio:.2f}x ({median(walls):.0f}/{median(slowest):.0f} ms)",
               ratio <= 1.5),
        Figure("first sweep wall / slowest probe", "<= 1.5x",
               f"{first_wall / max(1.0, first_slow):.2f}x ({first_wall:.0f}/{first_slow:.0f} ms)",
               first_wall / max(1.0, first_slow) <= 1.5),
    ]


if __name__ == "__main__":
    emit(main())
