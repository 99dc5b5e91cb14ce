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


def sweeps(scenario: str, talos_version: str, runs: int) -> tuple[list[float], list[float], list[str]]:
    """`runs + 1` sweeps of `scenario` on `talos_version`: their walls, slowest probes and its names."""
    import anyio

    with lab(scenario, talos_version=talos_version) as handle:
        saved = dict(os.environ)
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
        os.environ.clear()
        os.environ.update(saved)
    return walls, slowest, names


def main(runs: int = 5) -> list[Figure]:
    walls, slowest, names = sweeps("healthy", "v1.11.5", runs)
    first_wall, first_slow = walls.pop(0), slowest.pop(0)
    names.pop(0)
    ratio = median(walls) / max(1.0, median(slowest))
    print(f"first sweep (imports the kubernetes client): wall {first_wall:.0f} ms, slowest probe {first_slow:.0f} ms")
    print(f"later sweeps: wall median {median(walls):.0f} ms, slowest probe median {median(slowest):.0f} ms "
          f"({max(set(names), key=names.count)})")
    # the gpu-operator path (Talos 1.13): its sweep must be as fast as the device-plugin path's
    walls_13, _slowest_13, _names_13 = sweeps("operator-healthy", "v1.13.9", runs)
    walls_13.pop(0)
    ratio_13 = median(walls_13) / max(1.0, median(walls))
    print(f"Talos 1.13 (gpu-operator path) later sweeps: wall median {median(walls_13):.0f} ms")
    return [
        Figure("1.13 sweep / 1.11 sweep (operator vs device-plugin path)", "<= 1.15x",
               f"{ratio_13:.2f}x ({median(walls_13):.0f}/{median(walls):.0f} ms)", ratio_13 <= 1.15),
        Figure("sweep wall / slowest probe", "<= 1.5x", f"{ratio:.2f}x ({median(walls):.0f}/{median(slowest):.0f} ms)",
               ratio <= 1.5),
        Figure("first sweep wall / slowest probe", "<= 1.5x",
               f"{first_wall / max(1.0, first_slow):.2f}x ({first_wall:.0f}/{first_slow:.0f} ms)",
               first_wall / max(1.0, first_slow) <= 1.5),
    ]


if __name__ == "__main__":
    emit(main())
