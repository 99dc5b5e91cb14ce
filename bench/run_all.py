"""`make bench`: run every benchmark script and print one table (figure, target, measured, pass/fail)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SCRIPTS = ["first_contact.py", "first_contact.py --talos-version v1.13.9", "tui_first_contact.py", "startup.py", "sweep.py", "seed_vs_check.py",
           "scale.py", "idle.py", "responsiveness.py"]


def main() -> int:
    rows: list[dict[str, object]] = []
    for entry in SCRIPTS:
        script, *options = entry.split()
        path = HERE / script
        if not path.exists():
            rows.append({"figure": script, "target": "-", "measured": "script missing", "pass": False})
            continue
        print(f"== {entry}", flush=True)
        result = subprocess.run([sys.executable, str(path), *options], cwd=HERE, capture_output=True, text=True, timeout=1800)
        for line in result.stdout.splitlines():
            if line.startswith("BENCH-JSON "):
                rows.extend(json.loads(line.removeprefix("BENCH-JSON ")))
            else:
                print("   " + line)
        if result.returncode != 0:
            tail = (result.stderr.strip().splitlines() or ["no output"])[-1]
            rows.append({"figure": script, "target": "-", "measured": f"failed: {tail[:80]}", "pass": False})
    width = max(len(str(r["figure"])) for r in rows)
    print()
    print(f"{'figure':<{width}}  {'target':<14} {'measured':<34} result")
    for row in rows:
        print(f"{row['figure']!s:<{width}}  {row['target']!s:<14} {row['measured']!s:<34} {'PASS' if row['pass'] else 'FAIL'}")
    return 0 if all(r["pass"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
