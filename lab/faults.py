"""Fault-injection knobs, kept in ``state["faults"]`` and honoured by the lab's executables.

Each knob's value is either a plain value (the fault hits every call of that tool) or a dict with
the fault's parameters plus an optional ``"only"``: the subcommand it targets, as words matched
against the start of the command (``"get extensions"`` hits ``talosctl get extensions -o yaml`` but
not ``talosctl get modules``; ``"read /proc/modules"`` hits that one file; ``"upgrade"`` hits
``helm upgrade --install ...``).

========================== ========================================================================
knob                       effect
========================== ========================================================================
``talosctl_hang``          ``true``: talosctl sleeps forever (until killed), printing nothing
``talosctl_garbage``       ``true``: talosctl prints binary junk (invalid UTF-8) and exits 0
``talosctl_truncate``      ``true``: talosctl's stdout is cut to its first half (mid-YAML/JSON)
``talosctl_huge_mb``       ``N`` or ``{"mb": N}``: talosctl prints N MB of junk lines and exits 0
``talosctl_exit``          ``{"code": 1, "stderr": "..."}``: talosctl prints ``stderr`` and exits ``code``
``talosctl_slow_stream_ms`` ``N`` or ``{"ms": N}``: talosctl sleeps N ms before each output line
``helm_exit``              ``{"code": 1, "stderr": "..."}``: as ``talosctl_exit``, for helm
``helm_hang``              ``true``: helm sleeps forever
``kubelet_not_ready``      ``true``: not a tool fault: the node view reports the kubelet NotReady
========================== ========================================================================

A fault whose value is ``false``/``null``/``0`` is off. ``set_fault`` / ``clear_faults`` change the
knobs of a running lab (tests use them).
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any, TextIO

from lab import state as lab_state

FAULTS: dict[str, str] = {
    "talosctl_hang": "talosctl sleeps forever",
    "talosctl_garbage": "talosctl prints binary junk and exits 0",
    "talosctl_truncate": "talosctl's stdout is cut in half",
    "talosctl_huge_mb": "talosctl prints N MB of junk lines and exits 0",
    "talosctl_exit": "talosctl prints {stderr} and exits {code}",
    "talosctl_slow_stream_ms": "talosctl sleeps N ms before each output line",
    "helm_exit": "helm prints {stderr} and exits {code}",
    "helm_hang": "helm sleeps forever",
    "kubelet_not_ready": "the kubelet reports NotReady (node view)",
    # Kubernetes API server faults (implemented in lab/kubeapi/server.py)
    "api_status": "requests whose path matches {path_regex} fail with HTTP {code}",
    "api_hang_s": "the API server waits N seconds before answering",
    "api_oversize": "list responses are padded to 100x their size",
    "watch_drop_after": "a watch is closed after N events",
    "api_down": "the API server closes every connection at once",
    "api_answer": "a matching 200 answer is replaced ({body}), cut in half ({cut}) or padded ({pad_mb} MB)",
}

DEFAULT_EXIT_STDERR = (
    'rpc error: code = Unavailable desc = connection error: desc = "transport: Error while dialing: '
    'dial tcp 10.5.0.2:50000: connect: connection refused"'
)


def set_fault(state_dir: str | os.PathLike[str], name: str, value: Any) -> None:
    if name not in FAULTS:
        raise KeyError(f"unknown fault {name!r}; known: {', '.join(FAULTS)}")
    with lab_state.mutate(state_dir) as state:
        state.setdefault("faults", {})[name] = value


def clear_faults(state_dir: str | os.PathLike[str]) -> None:
    with lab_state.mutate(state_dir) as state:
        state["faults"] = {}


def active(faults: dict[str, Any], name: str, command: list[str]) -> Any:
    """The fault's value if it is on and targets ``command`` (the subcommand words), else None."""
    value = faults.get(name)
    if value in (None, False, 0, "", {}):
        return None
    if isinstance(value, dict) and value.get("only"):
        wanted = str(value["only"]).split()
        if [word.lower() for word in command[: len(wanted)]] != [word.lower() for word in wanted]:
            return None
    return value


def _parameter(value: Any, key: str) -> float:
    if isinstance(value, dict):
        return float(value.get(key, 0) or 0)
    if isinstance(value, bool):
        return 0.0
    return float(value)


def hang_forever() -> None:
    while True:
        time.sleep(3600)


class Output:
    """stdout/stderr of a lab executable, with the streaming faults applied."""

    def __init__(self, faults: dict[str, Any], tool: str, command: list[str],
                 stdout: TextIO | None = None, stderr: TextIO | None = None) -> None:
        self.stdout = stdout or sys.stdout
        self.stderr = stderr or sys.stderr
        slow = active(faults, f"{tool}_slow_stream_ms", command)
        self.delay_s = _parameter(slow, "ms") / 1000 if slow is not None else 0.0
        self.truncate = active(faults, f"{tool}_truncate", command) is not None
        self._held: list[str] = []

    def _write(self, stream: TextIO, text: str) -> None:
        if not text:
            return
        if self.delay_s:
            for line in text.splitlines(keepends=True):
                time.sleep(self.delay_s)
                stream.write(line)
                stream.flush()
        else:
            stream.write(text)
            stream.flush()

    def out(self, text: str) -> None:
        if self.truncate:
            self._held.append(text)
        else:
            self._write(self.stdout, text)

    def err(self, text: str) -> None:
        self._write(self.stderr, text)

    def close(self) -> None:
        if self.truncate and self._held:
            text = "".join(self._held)
            self._held = []
            self._write(self.stdout, text[: len(text) // 2])


def apply_entry_faults(faults: dict[str, Any], tool: str, command: list[str]) -> int | None:
    """Faults that replace the command: returns the exit code to use, or None to run normally."""
    if active(faults, f"{tool}_hang", command) is not None:
        hang_forever()
    failure = active(faults, f"{tool}_exit", command)
    if failure is not None:
        details = failure if isinstance(failure, dict) else {}
        message = str(details.get("stderr", DEFAULT_EXIT_STDERR))
        sys.stderr.write(message if message.endswith("\n") else message + "\n")
        sys.stderr.flush()
        return int(details.get("code", 1))
    if active(faults, f"{tool}_garbage", command) is not None:
        junk = bytes(range(256)) * 4 + b"\xff\xfe\xfa\x00\x80garbage\xc3\x28\n"
        sys.stdout.flush()
        sys.stdout.buffer.write(junk)
        sys.stdout.buffer.flush()
        return 0
    huge = active(faults, f"{tool}_huge_mb", command)
    if huge is not None:
        megabytes = _parameter(huge, "mb")
        line = ("junk " * 20).rstrip() + "\n"
        total = int(megabytes * 1024 * 1024)
        chunk = line * 1024
        written = 0
        while written < total:
            piece = chunk[: total - written]
            sys.stdout.write(piece)
            written += len(piece)
        sys.stdout.flush()
        return 0
    return None
