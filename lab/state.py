"""The lab's state directory: ``state.json`` read and written safely by several processes at once.

Writers take an exclusive ``fcntl.flock`` on ``state.lock``, read, change and write the file
atomically (temporary file + ``os.replace``), so a reader never sees half a file and two writers
never lose each other's update. Readers need no lock. See ``lab/CONTRACT.md`` for the schema.
"""

from __future__ import annotations

import fcntl
import json
import os
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

STATE_FILE = "state.json"
LOCK_FILE = "state.lock"
STATIC_NODES_FILE = "static-nodes.json"  # the unchanging rest of the cluster (Node objects), API server only
SCHEMA = 1


def state_path(state_dir: str | os.PathLike[str]) -> Path:
    return Path(state_dir) / STATE_FILE


def load(state_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """The current state (no lock needed: the file is only ever replaced whole)."""
    with open(state_path(state_dir), encoding="utf-8") as handle:
        return json.load(handle)


def _write_atomically(state_dir: Path, state: dict[str, Any]) -> None:
    descriptor, temporary = tempfile.mkstemp(prefix=".state-", suffix=".json", dir=state_dir)
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            json.dump(state, handle, indent=1, sort_keys=False)
            handle.write("\n")
            handle.flush()
        os.replace(temporary, state_dir / STATE_FILE)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


@contextmanager
def _locked(state_dir: Path) -> Iterator[None]:
    with open(state_dir / LOCK_FILE, "a+") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock.fileno(), fcntl.LOCK_UN)


def init(state_dir: str | os.PathLike[str], state: dict[str, Any]) -> None:
    """Create the directory (if needed) and write ``state`` as the initial state.

    ``state["static_nodes"]`` (the rest of a large cluster) is written to its own file.
    """
    directory = Path(state_dir)
    directory.mkdir(parents=True, exist_ok=True)
    state = dict(state)
    static_nodes = state.pop("static_nodes", None) or []
    with _locked(directory):
        static_path = directory / STATIC_NODES_FILE
        temporary = static_path.with_suffix(".tmp")
        temporary.write_text(json.dumps(static_nodes), encoding="utf-8")
        os.replace(temporary, static_path)
        _write_atomically(directory, state)


def load_static_nodes(state_dir: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The Node objects of the rest of the cluster (empty for a one-node lab)."""
    try:
        with open(Path(state_dir) / STATIC_NODES_FILE, encoding="utf-8") as handle:
            nodes = json.load(handle)
    except (FileNotFoundError, ValueError):
        return []
    return nodes if isinstance(nodes, list) else []


@contextmanager
def mutate(state_dir: str | os.PathLike[str], *, settle: bool = True) -> Iterator[dict[str, Any]]:
    """Lock, read, yield the state for changing in place, then write it back atomically.

    With ``settle`` (the default), a reboot whose time has come is committed first
    (``lab.node.settle``): pending extensions/config become the node's own once the node has gone
    down, and the reboot record is dropped once it is over. Nothing is written if the body raises.
    """
    directory = Path(state_dir)
    with _locked(directory):
        state = load(directory)
        if settle:
            from lab.node import settle as settle_reboot

            settle_reboot(state, time.time())
        yield state
        _write_atomically(directory, state)
