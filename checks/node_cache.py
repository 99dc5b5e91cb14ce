"""Which Kubernetes Node a Talos node turned out to be, remembered between runs.

The Node can only be read once `talosctl get nodename` has answered (a full round trip to the node).
With the name remembered from the last run, the sweep reads that Node, and the pods on it, while
talosctl is still answering, and keeps the result only when the nodename agrees: a wrong or stale
entry costs one wasted request, never a wrong answer.

The file is a cache (`$XDG_CACHE_HOME/talos-gpu/nodes.json`, else `~/.cache/talos-gpu/nodes.json`):
safe to delete, never required, holding only API server URLs, node addresses and node names (no
credential). Any problem reading or writing it is ignored.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path

MAX_ENTRIES = 64


def cache_path(environ: Mapping[str, str] | None = None) -> Path:
    env = os.environ if environ is None else environ
    base = env.get("XDG_CACHE_HOME", "").strip()
    root = Path(base) if base else Path(env.get("HOME") or Path.home()) / ".cache"
    return root / "talos-gpu" / "nodes.json"


def _key(server: str | None, address: str) -> str:
    return f"{server or '-'} {address}"


def _load(path: Path) -> dict[str, str]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {str(k): v for k, v in data.items() if isinstance(v, str)}


def remembered(server: str | None, address: str, path: Path | None = None) -> str | None:
    """The Node name last seen for this Talos node on this API server, if any."""
    return _load(path or cache_path()).get(_key(server, address))


def remember(server: str | None, address: str, node_name: str, path: Path | None = None) -> None:
    """Record the Node name (atomically; the newest MAX_ENTRIES entries are kept)."""
    target = path or cache_path()
    entries = _load(target)
    key = _key(server, address)
    if entries.get(key) == node_name:
        return
    entries.pop(key, None)
    entries[key] = node_name
    kept = dict(list(entries.items())[-MAX_ENTRIES:])
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(prefix=".nodes-", dir=target.parent)
        try:
            with os.fdopen(handle, "w", encoding="utf-8") as stream:
                json.dump(kept, stream, indent=1, sort_keys=False)
            os.replace(temporary, target)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
    except OSError:
        return
