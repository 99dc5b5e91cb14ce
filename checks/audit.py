"""The audit log of actions: what was planned, run and printed, and how it ended.

One JSON object per line, appended and handed to the kernel line by line (fsynced per record,
output lines at most every 0.5 s), so a process killed in the
middle of an action (SIGTERM, a crash) still leaves everything that happened before on disk.
Every text is redacted before it is written; the file is created with mode 0600 in a 0700
directory, because command output can quote the cluster's details.

    {"ts": "2025-11-26T18:58:01.123Z", "action": "extensions-20251126T185801-1a2b3c",
     "stage": "extensions", "kind": "step", "text": "talosctl upgrade --image …"}

`kind` is one of `plan`, `step`, `line`, `phase`, `result`.
"""

from __future__ import annotations

import json
import os
import secrets
import threading
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path

from checks.redact import redact

AUDIT_KINDS = ("plan", "step", "line", "phase", "result")
FILE_MODE = 0o600
DIR_MODE = 0o700


def default_audit_path(env: Mapping[str, str] | None = None) -> Path:
    """`$XDG_STATE_HOME/talos-gpu/audit.log`, else `~/.local/state/talos-gpu/audit.log`."""
    environ = os.environ if env is None else env
    state_home = environ.get("XDG_STATE_HOME", "").strip()
    if state_home and os.path.isabs(state_home):  # the XDG spec: relative paths are invalid, ignore them
        base = Path(state_home)
    else:
        home = environ.get("HOME") or str(Path.home())
        base = Path(home) / ".local" / "state"
    return base / "talos-gpu" / "audit.log"


def write_private(path: Path, text: str) -> Path:
    """Write a new file readable by its owner only (0600, in a 0700 directory), whatever the umask.

    For what the TUI saves (the action log, screenshots): they quote the cluster's details. An
    existing file or a symlink at `path` is refused (`FileExistsError`), never followed or replaced.
    """
    path.parent.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | getattr(os, "O_NOFOLLOW", 0)
    fd = os.open(path, flags, FILE_MODE)
    try:
        os.fchmod(fd, FILE_MODE)
        view = memoryview(text.encode("utf-8"))
        while view:
            view = view[os.write(fd, view):]
    finally:
        os.close(fd)
    return path


def new_action_id(stage: str) -> str:
    """A unique, readable id for one run of an action: `<stage>-<UTC time>-<random>`."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    return f"{stage}-{stamp}-{secrets.token_hex(3)}"


def _timestamp() -> str:
    now = time.time()
    return datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{int(now % 1 * 1000):03d}Z"


LINE_FSYNC_INTERVAL_S = 0.5


class AuditLog:
    """Append-only JSON-lines log; safe to call from the event loop and from worker threads."""

    def __init__(self, path: Path | str | None = None) -> None:
        self.path = Path(path) if path is not None else default_audit_path()
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._last_fsync = 0.0

    def _open(self) -> int:
        if self._fd is None:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, FILE_MODE)
            try:
                os.fchmod(fd, FILE_MODE)  # an older file may have been created with wider permissions
            except OSError:
                pass
            self._fd = fd
        return self._fd

    def record(self, action: str, kind: str, text: str, *, stage: str = "") -> None:
        """Append one redacted record and force it to disk before returning."""
        if kind not in AUDIT_KINDS:
            raise ValueError(f"unknown audit record kind {kind!r}")
        entry = {"ts": _timestamp(), "action": action, "stage": stage, "kind": kind, "text": redact(text)}
        line = (json.dumps(entry, ensure_ascii=False) + "\n").encode("utf-8")
        with self._lock:
            fd = self._open()
            view = memoryview(line)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            # os.write has handed the line to the kernel: a killed process or terminal loses nothing.
            # fsync (for a power cut) on every record that matters, and on output lines at most every
            # LINE_FSYNC_INTERVAL_S: an action that prints 10,000 lines must not wait on 10,000 fsyncs.
            now = time.monotonic()
            if kind != "line" or now - self._last_fsync >= LINE_FSYNC_INTERVAL_S:
                os.fsync(fd)
                self._last_fsync = now

    def close(self) -> None:
        with self._lock:
            if self._fd is not None:
                os.fsync(self._fd)
                os.close(self._fd)
                self._fd = None

    def __enter__(self) -> AuditLog:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def read_audit(path: Path | str) -> list[dict[str, str]]:
    """Every record of an audit log (for tests and `talos-gpu` diagnostics); bad lines are skipped."""
    records: list[dict[str, str]] = []
    try:
        text = Path(path).read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return records
    for line in text.splitlines():
        try:
            value = json.loads(line)
        except ValueError:
            continue
        if isinstance(value, dict):
            records.append(value)
    return records
