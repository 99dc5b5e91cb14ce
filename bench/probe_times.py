"""Print the slowest probe of one in-process sweep (a helper for seed_vs_check.py), as JSON."""

from __future__ import annotations

import json

import anyio
from common import REPO  # noqa: F401 - puts the repo on sys.path

from checks.engine import run_sweep
from checks.redact import REDACTOR
from checks.target import build_target

report = anyio.run(lambda: run_sweep(build_target(redactor=REDACTOR), timeout=60))
slowest = max(report.facts.values(), key=lambda p: p.duration_ms)
print(json.dumps({"slowest_ms": slowest.duration_ms, "probe": slowest.name, "wall_ms": report.wall_ms}))
