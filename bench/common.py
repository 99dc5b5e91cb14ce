"""Helpers shared by the benchmark scripts: a lab to measure against, medians, the result rows."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


@dataclass
class Figure:
    name: str
    target: str
    measured: str
    ok: bool

    def to_json(self) -> dict[str, Any]:
        return {"figure": self.name, "target": self.target, "measured": self.measured, "pass": self.ok}


def emit(figures: list[Figure]) -> None:
    """Print a table for people and one JSON line (prefixed) for bench/run_all.py."""
    width = max(len(f.name) for f in figures)
    for f in figures:
        print(f"{f.name:<{width}}  target {f.target:<14} measured {f.measured:<28} {'PASS' if f.ok else 'FAIL'}")
    print("BENCH-JSON " + json.dumps([f.to_json() for f in figures]))


def median(values: list[float]) -> float:
    return statistics.median(values)


@contextmanager
def lab(scenario: str = "healthy", **kwargs: Any) -> Iterator[Any]:
    from lab.runtime import start_lab

    handle = start_lab(scenario, **kwargs)
    try:
        yield handle
    finally:
        handle.stop()


def env_with(extra: dict[str, str]) -> dict[str, str]:
    env = dict(os.environ)
    env.update(extra)
    return env


def timed_run(argv: list[str], env: dict[str, str], timeout: float = 120) -> tuple[float, subprocess.CompletedProcess[str]]:
    started = time.perf_counter()
    result = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout,
                            stdin=subprocess.DEVNULL, cwd=REPO)
    return time.perf_counter() - started, result


def repeat(n: int, fn: Callable[[], float]) -> list[float]:
    return [fn() for _ in range(n)]
