"""`talos-gpu demo --web [--port N]`: the demo in a browser, served by textual-serve on 127.0.0.1.

Each browser tab that connects gets its own `talos-gpu demo` process (and so its own lab), which textual-serve
starts with its web driver and stops when the tab goes away or the server stops (Ctrl-C). textual-serve is the
optional extra `web` (`pip install 'talos-gpu[web]'`); without it `--web` is one line and exit 2.
"""

from __future__ import annotations

import argparse
import shlex
import sys

from checks.errors import UsageError

HOST = "127.0.0.1"  # never another interface: the demo's actions run on this machine
DEFAULT_PORT = 8000


def demo_command(args: argparse.Namespace) -> str:
    """The shell command textual-serve runs for each browser session: this Python, this package's demo."""
    argv = [sys.executable, "-m", "tui.cli", "demo", "--scenario", args.scenario, "--refresh", f"{args.refresh:g}"]
    if getattr(args, "talos_version", None):
        argv += ["--talos-version", args.talos_version]
    if args.read_only:
        argv.append("--read-only")
    return shlex.join(argv)


def run_web(args: argparse.Namespace) -> int:
    try:
        from textual_serve.server import Server
    except ImportError:
        raise UsageError("--web needs textual-serve: pip install 'talos-gpu[web]'") from None
    server = Server(demo_command(args), host=HOST, port=args.port, title=f"talos-gpu demo ({args.scenario})")
    server.serve()
    return 0
