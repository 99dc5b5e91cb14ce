"""The object store behind the lab's API: state.json loaded when it changes, reconciled (controllers.py),
every object change numbered as a resourceVersion and kept as watch history; snapshots reused for a few
milliseconds so a burst of requests reconciles once."""

from __future__ import annotations

import collections
import json
import os
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lab import state as lab_state
from lab.kubeapi import controllers
from lab.kubeapi.resources import (
    RESOURCES,
    Resource,
)
from lab.node import node_view

HISTORY_LIMIT = 20_000


FIRST_RESOURCE_VERSION = 1000


SNAPSHOT_REUSE_S = 0.02


@dataclass
class _Entry:
    raw: dict[str, Any]
    served: dict[str, Any]


@dataclass
class Snapshot:
    rv: int
    now: float
    state: dict[str, Any]
    cluster: controllers.Cluster
    items: dict[str, list[dict[str, Any]]]
    index: dict[str, dict[tuple[str, str], dict[str, Any]]]

    def get(self, resource: Resource, namespace: str | None, name: str) -> dict[str, Any] | None:
        return self.index[resource.plural].get((namespace or "", name))


def _with_resource_version(obj: Mapping[str, Any], rv: int) -> dict[str, Any]:
    served = dict(obj)
    meta = dict(obj.get("metadata") or {})
    meta["resourceVersion"] = str(rv)
    served["metadata"] = meta
    return served


class Store:
    """Loads state.json when it changes, reconciles, and numbers every object change."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self._lock = threading.Lock()
        self._signature: tuple[int, int, int] | None = None
        self._state: dict[str, Any] = {}
        self._rv = FIRST_RESOURCE_VERSION
        self._entries: dict[str, dict[tuple[str, str], _Entry]] = {r.plural: {} for r in RESOURCES}
        self._keys_by_id: dict[str, dict[int, tuple[str, str]]] = {r.plural: {} for r in RESOURCES}
        self._sorted: dict[str, list[dict[str, Any]]] = {r.plural: [] for r in RESOURCES}
        self._index: dict[str, dict[tuple[str, str], dict[str, Any]]] = {r.plural: {} for r in RESOURCES}
        self._encoded: dict[int, tuple[dict[str, Any], bytes]] = {}
        self._history: collections.deque[tuple[int, str, str, dict[str, Any]]] = collections.deque(maxlen=HISTORY_LIMIT)
        self._oldest_rv = FIRST_RESOURCE_VERSION
        self._snapshot: Snapshot | None = None
        self._snapshot_at = 0.0

    def _static_nodes(self) -> list[dict[str, Any]]:
        """The rest of the cluster, re-read only when its file is replaced (a lab reset)."""
        try:
            info = os.stat(Path(self.state_dir) / lab_state.STATIC_NODES_FILE)
            signature = (info.st_mtime_ns, info.st_size, info.st_ino)
        except FileNotFoundError:
            return []
        if signature != getattr(self, "_static_signature", None):
            self._static = lab_state.load_static_nodes(self.state_dir)
            self._static_signature = signature
        return self._static

    def state(self) -> dict[str, Any]:
        """The current state (cached by mtime/size/inode of state.json), normalised."""
        path = lab_state.state_path(self.state_dir)
        for _ in range(5):
            try:
                info = os.stat(path)
                signature = (info.st_mtime_ns, info.st_size, info.st_ino)
                if signature == self._signature:
                    return self._state
                loaded = lab_state.load(self.state_dir)
            except (FileNotFoundError, json.JSONDecodeError):
                time.sleep(0.01)
                continue
            static_nodes = self._static_nodes()
            if static_nodes:
                kube = loaded.setdefault("kube", {})
                kube["nodes"] = list(kube.get("nodes") or []) + static_nodes
            self._state = controllers.normalize(loaded)
            self._signature = signature
            return self._state
        return self._state

    @property
    def oldest_rv(self) -> int:
        return self._oldest_rv

    def refresh(self, *, force: bool = False) -> Snapshot:
        with self._lock:
            now = time.time()
            state = self.state()
            current = self._snapshot
            if (not force and current is not None and current.state is state
                    and now - self._snapshot_at < SNAPSHOT_REUSE_S):
                return current
            cluster = controllers.reconcile(state, node_view(state, now), now)
            for resource in RESOURCES:
                self._diff(resource.plural, cluster.collection(resource.plural))
            self._snapshot = Snapshot(self._rv, now, state, cluster, dict(self._sorted), dict(self._index))
            self._snapshot_at = now
            return self._snapshot

    def encoded(self, served: dict[str, Any]) -> bytes:
        """The compact JSON of a served object (cached while the object is current)."""
        cached = self._encoded.get(id(served))
        if cached is not None and cached[0] is served:
            return cached[1]
        data = json.dumps(served, separators=(",", ":")).encode()
        self._encoded[id(served)] = (served, data)
        return data

    def _record(self, plural: str, kind: str, served: dict[str, Any]) -> None:
        if len(self._history) == self._history.maxlen:
            self._oldest_rv = self._history[0][0]
        self._history.append((self._rv, plural, kind, served))

    def _forget(self, plural: str, entry: _Entry) -> None:
        self._keys_by_id[plural].pop(id(entry.raw), None)
        self._encoded.pop(id(entry.served), None)

    def _diff(self, plural: str, objects: Iterable[dict[str, Any]]) -> None:
        entries = self._entries[plural]
        keys_by_id = self._keys_by_id[plural]
        seen: set[tuple[str, str]] = set()
        changed = False
        for obj in objects:
            known = keys_by_id.get(id(obj))
            if known is not None and entries[known].raw is obj:
                seen.add(known)
                continue
            key = controllers.object_key(obj)
            seen.add(key)
            entry = entries.get(key)
            if entry is not None and entry.raw == obj:
                keys_by_id.pop(id(entry.raw), None)
                entry.raw = obj
                keys_by_id[id(obj)] = key
                continue
            self._rv += 1
            served = _with_resource_version(obj, self._rv)
            if entry is not None:
                self._forget(plural, entry)
            entries[key] = _Entry(obj, served)
            keys_by_id[id(obj)] = key
            self._record(plural, "ADDED" if entry is None else "MODIFIED", served)
            changed = True
        if len(seen) != len(entries):
            for key in [key for key in entries if key not in seen]:
                self._rv += 1
                entry = entries.pop(key)
                self._forget(plural, entry)
                self._record(plural, "DELETED", _with_resource_version(entry.served, self._rv))
                changed = True
        if changed:
            self._sorted[plural] = [entries[key].served for key in sorted(entries)]
            self._index[plural] = {key: entry.served for key, entry in entries.items()}

    def history_since(self, rv: int, plural: str) -> list[tuple[int, str, dict[str, Any]]]:
        with self._lock:
            picked = []
            for entry_rv, entry_plural, kind, obj in reversed(self._history):
                if entry_rv <= rv:
                    break
                if entry_plural == plural:
                    picked.append((entry_rv, kind, obj))
            picked.reverse()
            return picked
