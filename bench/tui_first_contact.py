"""Issue 18: the TUI at a user's first contact: seconds from `talos-gpu` starting to the root cause on screen.

The lab runs a failing scenario on each path (`plugin-missing` on Talos v1.11.5, `old-path-leftovers` on
v1.13.9) under first_contact.py's cost model: talosctl and helm are plain processes paying a start cost
(`--start-ms`, 40) before a round trip (`--talosctl-ms`, 300), every API request pays `--api-ms` (100),
and every run has a fresh `$HOME` (nothing remembered of the node). `talos-gpu` runs in a 120x40
pseudo-terminal as a user starts it; the clock stops when "ROOT CAUSE" reaches the terminal.
Target: <= 1.0 s, on both paths. Medians of `--runs` (5) with their spread.

    .venv/bin/python bench/tui_first_contact.py [--runs 5]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

from common import Figure, emit, lab
from first_contact import fresh_home, shimmed_env
from startup import run_once

CASES = (("plugin-missing", "v1.11.5", "device-plugin"), ("old-path-leftovers", "v1.13.9", "gpu-operator"))


def measure(scenario: str, version: str, runs: int, start_ms: int, talosctl_ms: int, api_ms: int) -> list[float]:
    knobs = {"talosctl_latency_ms": talosctl_ms, "api_latency_ms": api_ms}
    seen: list[float] = []
    with tempfile.TemporaryDirectory(prefix="talos-gpu-tui-first-contact-") as tmp, \
            lab(scenario, talos_version=version, knobs=knobs) as handle:
        base = Path(tmp)
        env = shimmed_env(handle, base, start_ms)
        saved = dict(os.environ)
        try:
            for index in range(runs):  # startup.run_once starts the program with this process's environment
                os.environ.clear()
                os.environ.update({**env, **fresh_home(base, index)})
                (root_cause,) = run_once([sys.executable, "-m", "tui.cli", "--refresh", "0"], [b"ROOT CAUSE"])
                if root_cause is None:
                    raise SystemExit(f"tui_first_contact.py: no root cause on screen for {scenario} on {version}")
                seen.append(root_cause * 1000)
        finally:
            os.environ.clear()
            os.environ.update(saved)
    return seen


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--start-ms", type=int, default=40)
    parser.add_argument("--talosctl-ms", type=int, default=300)
    parser.add_argument("--api-ms", type=int, default=100)
    args = parser.parse_args()
    figures = []
    for scenario, version, path in CASES:
        seen = sorted(measure(scenario, version, args.runs, args.start_ms, args.talosctl_ms, args.api_ms))
        middle = seen[len(seen) // 2]
        figures.append(Figure(f"TUI first contact: root cause on screen ({path} path, {version})", "<= 1000 ms",
                              f"{middle:.0f} ms ({seen[0]:.0f}-{seen[-1]:.0f})", middle <= 1000))
    print(f"model: talosctl/helm start {args.start_ms} ms + {args.talosctl_ms} ms per call, "
          f"{args.api_ms} ms per API request; {args.runs} runs each, fresh $HOME every run")
    emit(figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
