"""A module imported on first use, without LazyLoader's tricks: each attribute read goes through
`importlib.import_module`, which holds the import lock (two threads never run a module's body twice)."""

from __future__ import annotations

import importlib
from typing import Any


class LazyModule:
    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, attr: str) -> Any:
        return getattr(importlib.import_module(self._name), attr)


# the parsers' regexes and YAML cost ~25 ms: the stage tables name the judges before a sweep starts, and the
# sweep imports the parsers in a thread while its first talosctl calls run (checks/engine.py)
parsers: Any = LazyModule("checks.parsers")
