"""The user's key remapping: `$XDG_CONFIG_HOME/talos-gpu/keymap.yaml` (else `~/.config/talos-gpu/keymap.yaml`).

A mapping of binding id to keys, handed to Textual's `App.set_keymap`:

    refresh: f5            # one key
    quit: q,ctrl+d         # several, comma-separated (or a YAML list)

The ids are those `?` lists next to each key (`binding_ids()`); an unknown id, a value that is not a key, or
a file that is not such a mapping is one line on stderr and exit 2, before the screen opens.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from checks.errors import UsageError

KEYMAP_FILE = "keymap.yaml"


def keymap_path(env: Mapping[str, str] | None = None) -> Path:
    environ = os.environ if env is None else env
    config_home = environ.get("XDG_CONFIG_HOME", "").strip()
    base = Path(config_home) if config_home else Path(environ.get("HOME") or Path.home()) / ".config"
    return base / "talos-gpu" / KEYMAP_FILE


def binding_ids() -> list[str]:
    """Every id a keymap may name: the app's, the main screen's and the dialogs' bindings."""
    from textual.binding import Binding

    from tui.app import TalosGpuApp
    from tui.screens.confirm import AskScreen, ConfirmActionScreen
    from tui.screens.help import HelpScreen
    from tui.screens.main import MainScreen

    ids = []
    for owner in (TalosGpuApp, MainScreen, ConfirmActionScreen, AskScreen, HelpScreen):
        for binding in owner.BINDINGS:
            if isinstance(binding, Binding) and binding.id and binding.id not in ids:
                ids.append(binding.id)
    return ids


def load_keymap(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The keymap file's bindings ({} when there is no file); UsageError with one line when it is wrong."""
    path = keymap_path(env)
    if not path.exists():
        return {}
    label = f"keymap {path}"
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"{label}: cannot be read ({exc.__class__.__name__})") from None
    import yaml

    try:
        data: Any = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise UsageError(f"{label}: is not valid YAML{where}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UsageError(f"{label}: expected a mapping of binding id to keys, e.g. 'refresh: f5'")
    known = binding_ids()
    keymap: dict[str, str] = {}
    for binding_id, keys in data.items():
        if not isinstance(binding_id, str) or binding_id not in known:
            raise UsageError(f"{label}: unknown binding id {binding_id!r} (known: {', '.join(known)})")
        if isinstance(keys, list) and keys and all(isinstance(k, str) for k in keys):
            keys = ",".join(keys)
        if not isinstance(keys, str) or not all(part.strip() for part in keys.split(",")):
            raise UsageError(f"{label}: {binding_id}: expected keys such as 'f5' or 'r,f5', got {keys!r}")
        keymap[binding_id] = ",".join(part.strip() for part in keys.split(","))
    return keymap
