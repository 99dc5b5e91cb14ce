"""Issue 18: `talos-gpu check` at first contact, as a user meets it, against the runbook by hand.

A user's first `check` against a node finds no remembered names (a fresh `$HOME` and
`$XDG_CACHE_HOME`) and a `talosctl` that is a Go binary started anew for every call, dialling the
node each time. Both sides run under one cost model, in one run:

- talosctl and helm are plain processes in front of the lab's: each call pays a start cost
  (`--start-ms`, default 40: a Go binary's start and TLS dial) before the lab answers it after a
  round trip (`--talosctl-ms`, default 300: a remote node);
- every Kubernetes API request pays `--api-ms` (default 100);
- "by hand" is the runbook's own verification commands, one after another, with the same
  talosctl and the real kubectl.

Figures: first contact (empty cache every round) and warm (the cache the previous round left),
medians over `--rounds` with their spread, and the warm figure again with one core kept busy by
another process. The targets are issue 18's: first contact >= 4x, warm >= 5x, busy >= 3x.

    .venv/bin/python bench/first_contact.py [--rounds 5] [--talos-version VERSION]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

from common import REPO, Figure, emit, env_with, lab, median, timed_run

if TYPE_CHECKING:
    from lab.runtime import LabHandle

RUNBOOK_BY_HAND = [
    ["talosctl", "health", "--wait-timeout", "30s"],
    ["talosctl", "get", "extensions"],
    ["talosctl", "read", "/proc/modules"],
    ["talosctl", "read", "/proc/driver/nvidia/version"],
    ["kubectl", "get", "runtimeclass"],
    ["kubectl", "get", "ds", "-A"],
    ["kubectl", "get", "pods", "-A"],
    ["kubectl", "describe", "node", "gpu-node-1"],
]
# Talos >= 1.13 (the gpu-operator path): what its docs and the operator's have a user look at instead
OPERATOR_BY_HAND = [
    ["talosctl", "health", "--wait-timeout", "30s"],
    ["talosctl", "get", "extensions"],
    ["talosctl", "read", "/proc/modules"],
    ["talosctl", "read", "/proc/driver/nvidia/version"],
    ["talosctl", "service", "ext-nvidia-cdi-gen"],
    ["talosctl", "ls", "/run/cdi"],
    ["helm", "list", "-A"],
    ["kubectl", "get", "clusterpolicy"],
    ["kubectl", "get", "runtimeclass"],
    ["kubectl", "get", "pods", "-n", "gpu-operator", "-o", "wide"],
    ["kubectl", "describe", "node", "gpu-node-1"],
]

SHIM = """#!/bin/sh
# bench/first_contact.py: a {name} that costs what a real one costs to start ({ms} ms)
sleep {seconds}
exec {real} "$@"
"""


def write_shims(directory: Path, lab_bin: Path, start_ms: int) -> None:
    """`talosctl` and `helm` as plain processes that pay a start cost, then run the lab's tool."""
    for name in ("talosctl", "helm"):
        real = shutil.which(name, path=str(lab_bin))
        if real is None:
            raise SystemExit(f"first_contact.py: the lab has no {name} in {lab_bin}")
        shim = directory / name
        shim.write_text(SHIM.format(name=name, ms=start_ms, seconds=start_ms / 1000, real=real))
        shim.chmod(0o755)


def shimmed_env(handle: LabHandle, base: Path, start_ms: int) -> dict[str, str]:
    """This process's environment pointed at the lab, with its talosctl and helm behind the shims in
    `base`/bin (found on PATH, as a user's are: $TALOSCTL and $HELM unset)."""
    shims = base / "bin"
    shims.mkdir()
    write_shims(shims, handle.bin_dir, start_ms)
    env = env_with(handle.env)
    env.pop("TALOSCTL", None)
    env.pop("HELM", None)
    env["PATH"] = f"{shims}{os.pathsep}{env['PATH']}"
    env["PYTHONPATH"] = str(REPO)
    return env


def fresh_home(base: Path, index: int) -> dict[str, str]:
    """A `$HOME` and cache nobody has used: nothing is remembered of the node."""
    home = base / f"home-{index}"
    (home / ".cache").mkdir(parents=True)
    return {"HOME": str(home), "XDG_CACHE_HOME": str(home / ".cache"), "XDG_STATE_HOME": str(home / ".state"),
            "XDG_CONFIG_HOME": str(home / ".config")}


def by_hand(env: dict[str, str], commands: list[list[str]] = RUNBOOK_BY_HAND) -> float:
    total = 0.0
    for argv in commands:
        seconds, result = timed_run(argv, env)
        if result.returncode != 0:
            raise SystemExit(f"first_contact.py: {' '.join(argv)} failed: {result.stderr.strip()[-300:]}")
        total += seconds
    return total * 1000


def check(env: dict[str, str]) -> float:
    seconds, result = timed_run([sys.executable, "-m", "tui.cli", "check", "--json"], env)
    if result.returncode != 0:
        raise SystemExit(f"first_contact.py: check exited {result.returncode}: {result.stderr.strip()[-300:]}")
    return seconds * 1000


def spin(stop_at: float) -> None:
    """Keep one core busy until `stop_at` (bounded: it ends by itself)."""
    while time.time() < stop_at:
        pass


def spread(values: list[float]) -> str:
    return f"{min(values):.0f}-{max(values):.0f}"


def ratio_figure(name: str, target: float, hand: list[float], tool: list[float]) -> Figure:
    ratio = median(hand) / median(tool)
    measured = (f"{ratio:.2f}x ({median(hand):.0f}/{median(tool):.0f} ms; "
                f"check {spread(tool)}, by hand {spread(hand)})")
    return Figure(name, f">= {target:g}x", measured, ratio >= target)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--start-ms", type=int, default=40)
    parser.add_argument("--talosctl-ms", type=int, default=300)
    parser.add_argument("--api-ms", type=int, default=100)
    parser.add_argument("--talos-version", default=None, help="the lab's Talos release (where the lab offers it)")
    args = parser.parse_args()

    lab_options: dict[str, object] = {"knobs": {"talosctl_latency_ms": args.talosctl_ms,
                                                "api_latency_ms": args.api_ms}}
    from lab.releases import get as release

    operator_path = bool(args.talos_version) and release(args.talos_version).cdi
    commands = OPERATOR_BY_HAND if operator_path else RUNBOOK_BY_HAND
    if args.talos_version:
        lab_options["talos_version"] = args.talos_version
    with tempfile.TemporaryDirectory(prefix="talos-gpu-first-contact-") as tmp, \
            lab("operator-healthy" if operator_path else "healthy", **lab_options) as handle:
        base = Path(tmp)
        env = shimmed_env(handle, base, args.start_ms)

        hand, first, warm = [], [], []
        warm_home = fresh_home(base, 0)
        check(env_with({**env, **warm_home}))  # leaves the names the warm rounds remember
        for index in range(1, args.rounds + 1):
            hand.append(by_hand(env, commands))
            first.append(check(env_with({**env, **fresh_home(base, index)})))
            warm.append(check(env_with({**env, **warm_home})))

        busy_hand, busy_warm = [], []
        worker = multiprocessing.Process(target=spin, args=(time.time() + 120,), daemon=True)
        worker.start()
        try:
            for _ in range(max(3, args.rounds // 2)):
                busy_hand.append(by_hand(env, commands))
                busy_warm.append(check(env_with({**env, **warm_home})))
        finally:
            worker.terminate()
            worker.join()

    suffix = f" ({args.talos_version}, {'gpu-operator' if operator_path else 'device-plugin'} path)" \
        if args.talos_version else ""
    print(f"model: talosctl/helm start {args.start_ms} ms + {args.talosctl_ms} ms per call, "
          f"{args.api_ms} ms per API request; {args.rounds} rounds")
    emit([
        ratio_figure(f"first contact: check vs by hand{suffix}", 4, hand, first),
        ratio_figure(f"warm: check vs by hand{suffix}", 5, hand, warm),
        ratio_figure(f"warm, one core busy{suffix}", 3, busy_hand, busy_warm),
    ])
    return 0


if __name__ == "__main__":
    sys.exit(main())
