"""`talos-gpu` with no command: the terminal UI against the cluster the configs name."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from checks.target import Target


def run_tui(args: argparse.Namespace, target: Target) -> int:
    """Run the app until the user quits; its exit code is the app's return code (0 unless it failed)."""
    from tui.app import TalosGpuApp

    app = TalosGpuApp(target, refresh=args.refresh, read_only=bool(getattr(args, "read_only", False)),
                      factory=getattr(args, "factory", None))
    app.run()
    return int(app.return_code or 0)
