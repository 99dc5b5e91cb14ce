"""Which Kubernetes Node a Talos node turned out to be, remembered between runs.

The Node can only be read once `talosctl get nodename` has answered (a full round trip to the node).
With the name remembered from the last run, the sweep reads that Node, and the pods on it, while
talosctl is still answering, and keeps the result only when the nodename agrees: a wrong or stale
entry costs one wasted request, never a wrong answer. The same goes for the device plugin's
DaemonSet and pods: their events and logs are read with the DaemonSet list, and kept only for the
DaemonSet and pods that list names (one API round trip instead of two). And the enablement path the
node's Talos version called for: the next sweep gathers that path's facts only, and the other path's
too only when `talosctl version` says the node has moved (an upgrade to 1.13).

And the talosctl and helm reads the last full sweep made (checks/prefetch.py): the next `check`
starts them before it has loaded its stage tables.

The file is a cache (`$XDG_CACHE_HOME/talos-gpu/nodes.json`, else `~/.cache/talos-gpu/nodes.json`):
safe to delete, never required, holding only API server URLs, node addresses, the names of Nodes,
DaemonSets and pods, and the reads' subcommands and arguments without the global flags (no credential).
Any problem reading or writing it is ignored.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

MAX_ENTRIES = 64


def cache_path(environ: Mapping[str, str] | None = None) -> Path:
    env = os.environ if environ is None else environ
    base = env.get("XDG_CACHE_HOME", "").strip()
    root = Path(base) if base else Path(env.get("HOME") or Path.home()) / ".cache"
    return root / "talos-gpu" / "nodes.json"


def _key(server: str | None, address: str) -> str:
    return f"{server or '-'} {address}"


PluginNames = tuple[str, str, tuple[str, ...]]  # namespace, DaemonSet, pods (checks/probes.py)


def _load(path: Path) -> dict[str, dict[str, Any]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    entries: dict[str, dict[str, Any]] = {}
    for key, value in data.items():
        if isinstance(value, str):  # the first format: the Node name alone
            value = {"node": value}
        if isinstance(value, dict) and isinstance(value.get("node"), str):
            entries[str(key)] = value
    return entries


def _plugin(entry: dict[str, Any]) -> PluginNames | None:
    value = entry.get("plugin")
    if (isinstance(value, list) and len(value) == 3 and isinstance(value[0], str) and isinstance(value[1], str)
            and isinstance(value[2], list) and all(isinstance(pod, str) for pod in value[2])):
        return value[0], value[1], tuple(value[2])
    return None


def recall(server: str | None, address: str, path: Path | None = None) -> tuple[str | None, PluginNames | None]:
    """The Node name and the device plugin's names last seen for this Talos node on this API server."""
    entry = _load(path or cache_path()).get(_key(server, address))
    if entry is None:
        return None, None
    return entry["node"], _plugin(entry)


def remembered_path(server: str | None, address: str, path: Path | None = None) -> str | None:
    """The enablement path (checks/paths/) the last run found for this Talos node, if any."""
    entry = _load(path or cache_path()).get(_key(server, address))
    value = entry.get("path") if entry is not None else None
    return value if isinstance(value, str) else None


def remembered_reads(server: str | None, address: str, path: Path | None = None) -> tuple[tuple[str, ...], ...]:
    """The talosctl and helm reads the last full sweep of this node made (checks/prefetch.py), as recorded:
    lists of strings only; whether each may be started is the caller's to decide (`prefetch.allowed`)."""
    entry = _load(path or cache_path()).get(_key(server, address))
    value = entry.get("reads") if entry is not None else None
    if not isinstance(value, list):
        return ()
    return tuple(tuple(read) for read in value[:64]
                 if isinstance(read, list) and read and all(isinstance(arg, str) for arg in read))


def remembered(server: str | None, address: str, path: Path | None = None) -> str | None:
    """The Node name last seen for this Talos node on this API server, if any."""
    return recall(server, address, path)[0]


def remember(server: str | None, address: str, node_name: str, path: Path | None = None, *,
             plugin: PluginNames | None = None, enablement_path: str | None = None,
             reads: tuple[tuple[str, ...], ...] | None = None) -> None:
    """Record the Node name, the device plugin's names, the path and the sweep's reads (atomically; the
    newest MAX_ENTRIES entries are kept)."""
    target = path or cache_path()
    entries = _load(target)
    key = _key(server, address)
    entry: dict[str, Any] = {"node": node_name}
    if plugin is not None:
        entry["plugin"] = [plugin[0], plugin[1], list(plugin[2])]
    if enablement_path is not None:
        entry["path"] = enablement_path
    if reads:
        entry["reads"] = [list(read) for read in reads]
    if entries.get(key) == entry:
        return
    entries.pop(key, None)
    entries[key] = entry
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
