"""One action at a time per node, across processes (the TUI, `talos-gpu enable`, another terminal).

An action holds an exclusive `flock` on `<state dir>/locks/node-<address>.lock` (0600 in a 0700
directory) while it runs; the file names the holder (pid, command line, stage, start time) so a
second one can say who is acting. The kernel drops the lock when its process ends, however it ends:
a stale file never blocks anyone.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

DIR_MODE = 0o700
FILE_MODE = 0o600
_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9.-]")


class NodeBusy(Exception):
    """Another process holds the node's action lock; the message names it."""


def lock_path(state_dir: Path, node: str) -> Path:
    return state_dir / "locks" / f"node-{_UNSAFE_NAME.sub('_', node)[:200]}.lock"


def _describe(holder: dict[str, object], node: str) -> str:
    pid = holder.get("pid", "?")
    command = str(holder.get("command") or "talos-gpu")[:120]
    stage = holder.get("stage")
    started = holder.get("started")
    what = f"the {stage} action" if stage else "an action"
    since = f" since {started}" if started else ""
    return (f"node {node} is busy: another talos-gpu (pid {pid}, {command!r}) is running {what}{since}; "
            "wait for it to finish or stop it")


@contextmanager
def node_action_lock(state_dir: Path, node: str, *, stage: str = "") -> Iterator[Path]:
    """Hold the node's action lock for the block; NodeBusy (naming the holder) when another process has it."""
    path = lock_path(state_dir, node)
    path.parent.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | getattr(os, "O_NOFOLLOW", 0), FILE_MODE)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise NodeBusy(_describe(_read_holder(fd), node)) from None
        holder = {"pid": os.getpid(), "command": " ".join(["talos-gpu", *sys.argv[1:]])[:300], "stage": stage,
                  "started": datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC"), "started_epoch": time.time()}
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(holder) + "\n").encode(), 0)
        try:
            yield path
        finally:
            try:
                os.ftruncate(fd, 0)  # nobody holds it now
            except OSError:
                pass
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _read_holder(fd: int) -> dict[str, object]:
    try:
        data = json.loads(os.pread(fd, 4096, 0).decode("utf-8", errors="replace") or "{}")
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
