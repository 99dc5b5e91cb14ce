"""What the process says about itself and how it leaves: its version, and stdout once its reader has gone.

Apart from `tui.cli` so that the commands it runs (`check`'s report, the incident note) can use these
without importing the command line that imports them.
"""

from __future__ import annotations

import contextlib
import os
import sys


def version() -> str:
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as package_version

    try:
        return package_version("talos-gpu")
    except PackageNotFoundError:  # run from a checkout that was never installed
        return "unknown (not installed)"


def silence_stdout() -> None:
    """Point stdout at /dev/null once its reader has gone, so that the final flush at exit cannot fail
    again (Python would print "Exception ignored ... BrokenPipeError")."""
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
