"""Run external programs (talosctl, helm) the one safe way: argument lists through anyio.

Every child gets `stdin=DEVNULL` (a child that inherits the terminal steals keystrokes), its own
process session (so the whole process group can be killed on timeout or cancel), a timeout, and
both output streams read concurrently (a full pipe would deadlock). Output is bounded: a tool that
prints 100 MB cannot exhaust memory. Failures become values, never exceptions, except cancellation.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import anyio
from anyio.abc import ByteReceiveStream, Process

from checks.redact import redact

DEFAULT_MAX_OUTPUT = 8 * 1024 * 1024  # bytes kept per stream; the rest is counted and dropped
KILL_GRACE_S = 0.5
LINES_PER_YIELD = 100


PLUGIN_TIMEOUT_S = 30.0  # a credential plugin that a library starts (not interactive) answers within this

_tracked_lock = threading.Lock()
_tracked_groups: set[int] = set()


def kill_tracked_groups() -> None:
    """SIGKILL the process group of every program a library started through `GuardedPopen` that has not
    been waited for (a hanging exec credential plugin): called on the way out, so none outlives us."""
    with _tracked_lock:
        groups = list(_tracked_groups)
        _tracked_groups.clear()
    for pgid in groups:
        try:
            os.killpg(pgid, signal.SIGKILL) if GuardedPopen.own_session else os.kill(pgid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


class GuardedPopen(subprocess.Popen):  # type: ignore[type-arg]
    """`subprocess.Popen` for the programs a library starts for us (the kubernetes client's exec
    credential plugin): in its own session, so its whole group can be killed; stdin `/dev/null` unless
    the caller gives one (an interactive plugin keeps the terminal); tracked until it is waited for, so
    `kill_tracked_groups` can end it; and `communicate()` without a timeout is bounded by
    `PLUGIN_TIMEOUT_S` (the group is killed and `TimeoutExpired` raised)."""

    own_session = True  # False in the kube reading child: its plugins stay in its group, which the parent kills

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["start_new_session"] = self.own_session
        if kwargs.get("stdin") is None:
            kwargs["stdin"] = subprocess.DEVNULL
        self._bounded = kwargs["stdin"] is subprocess.DEVNULL
        super().__init__(*args, **kwargs)
        with _tracked_lock:
            _tracked_groups.add(self.pid)

    def communicate(self, input: Any = None, timeout: float | None = None) -> Any:  # noqa: A002 - Popen's name
        if timeout is None and self._bounded:
            timeout = PLUGIN_TIMEOUT_S
        try:
            return super().communicate(input, timeout)
        except subprocess.TimeoutExpired:
            self._end_group()
            super().communicate()
            raise

    def wait(self, timeout: float | None = None) -> int:
        code = super().wait(timeout)
        self._end_group()  # the plugin is done: anything it left in its group goes with it
        return code

    def _end_group(self) -> None:
        with _tracked_lock:
            _tracked_groups.discard(self.pid)
        try:
            if self.own_session:
                os.killpg(self.pid, signal.SIGKILL)
            elif self.returncode is None:
                self.kill()
        except (ProcessLookupError, PermissionError):
            pass


@dataclass(frozen=True)
class CommandResult:
    argv: tuple[str, ...]
    returncode: int | None  # None: never started or killed on timeout
    stdout: str
    stderr: str
    duration_ms: int
    timed_out: bool = False
    error: str | None = None  # could not start (not found, not executable)
    truncated: bool = False

    @property
    def ok(self) -> bool:
        return self.error is None and not self.timed_out and self.returncode == 0

    @property
    def display(self) -> str:
        return display_argv(self.argv)

    def failure_reason(self) -> str:
        """One line saying why the command did not succeed (redacted)."""
        if self.error:
            return self.error
        if self.timed_out:
            return f"{self.display} timed out after {self.duration_ms / 1000:.1f}s"
        # redacted whole before a line is picked: the last line may be a private key's body line
        text = last_meaningful_line(redact(self.stderr)) or last_meaningful_line(redact(self.stdout)) or "no output"
        return redact(f"exit {self.returncode}: {text}")[:240]


def display_argv(argv: Sequence[str]) -> str:
    """The command as a person would type it, with the global talosctl flags left out for brevity."""
    shown: list[str] = [os.path.basename(argv[0])] if argv else []
    skip_next = False
    for arg in argv[1:]:
        if skip_next:
            skip_next = False
            continue
        if arg in ("--talosconfig", "--context", "--nodes", "--kubeconfig", "--kube-context"):
            skip_next = True
            continue
        shown.append(arg if arg and " " not in arg else repr(arg))
    return " ".join(shown)


def last_meaningful_line(text: str) -> str:
    for line in reversed(text.splitlines()):
        stripped = line.strip()
        if stripped:
            return stripped
    return ""


def _kill_group(process: Process) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


async def _terminate(process: Process) -> None:
    """SIGTERM the child's process group, then SIGKILL it after a short grace period."""
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except (ProcessLookupError, PermissionError):
        return
    with anyio.move_on_after(KILL_GRACE_S, shield=True):
        await process.wait()
        # the leader exited; make sure grandchildren are gone too
    _kill_group(process)
    with anyio.move_on_after(KILL_GRACE_S, shield=True):
        await process.wait()


class _Collector:
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.chunks: list[bytes] = []
        self.size = 0
        self.truncated = False

    def add(self, chunk: bytes) -> None:
        if self.size >= self.limit:
            self.truncated = True
            return
        room = self.limit - self.size
        if len(chunk) > room:
            chunk = chunk[:room]
            self.truncated = True
        self.chunks.append(chunk)
        self.size += len(chunk)

    def text(self) -> str:
        return b"".join(self.chunks).decode("utf-8", errors="replace")


async def _pump(
    stream: ByteReceiveStream | None,
    collector: _Collector,
    on_line: Callable[[str], None] | None,
) -> None:
    if stream is None:
        return
    pending = b""
    async for chunk in stream:
        collector.add(chunk)
        if on_line is None:
            continue
        pending += chunk
        *lines, pending = pending.split(b"\n")
        for index, line in enumerate(lines, 1):
            on_line(line.decode("utf-8", errors="replace").rstrip("\r"))
            if index % LINES_PER_YIELD == 0:
                await anyio.sleep(0)  # a 64 KiB chunk holds hundreds of lines: let the UI breathe
        if len(pending) > 64 * 1024:  # a line with no end: flush what we have
            on_line(pending.decode("utf-8", errors="replace"))
            pending = b""
    if on_line is not None and pending:
        on_line(pending.decode("utf-8", errors="replace").rstrip("\r"))


async def run_command(
    argv: Sequence[str],
    *,
    timeout: float,
    env: dict[str, str] | None = None,
    on_stdout: Callable[[str], None] | None = None,
    on_stderr: Callable[[str], None] | None = None,
    max_output: int = DEFAULT_MAX_OUTPUT,
    on_started: Callable[[], None] | None = None,
) -> CommandResult:
    """Run `argv` (never through a shell) and return what happened.

    Timeouts and start failures are results; cancellation kills the process group and re-raises.
    `on_stdout` / `on_stderr` receive complete lines as they arrive (for streaming actions); `on_started` is
    called once the process runs, or could not be started.
    """
    argv = tuple(argv)
    started = time.monotonic()

    def elapsed() -> int:
        return int((time.monotonic() - started) * 1000)

    try:
        # shielded: cancelled half-way, asyncio would kill the new child without its group and without
        # waiting for it; once started, a cancel reaches the try below, which ends the group and reaps it
        with anyio.CancelScope(shield=True):
            process = await anyio.open_process(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=env,
                start_new_session=True,
            )
    except FileNotFoundError:
        return CommandResult(argv, None, "", "", elapsed(), error=f"{argv[0]} not found")
    except PermissionError:
        return CommandResult(argv, None, "", "", elapsed(), error=f"{argv[0]} is not executable")
    except OSError as exc:
        return CommandResult(argv, None, "", "", elapsed(), error=f"cannot run {argv[0]}: {exc.strerror or exc}")
    finally:
        if on_started is not None:
            on_started()

    out, err = _Collector(max_output), _Collector(max_output)
    timed_out = False
    try:
        with anyio.move_on_after(timeout) as scope:
            async with anyio.create_task_group() as group:
                group.start_soon(_pump, process.stdout, out, on_stdout)
                group.start_soon(_pump, process.stderr, err, on_stderr)
                await process.wait()
                # grandchildren left in the group would hold the pipes open: end them
                _kill_group(process)
        if scope.cancelled_caught:
            timed_out = True
            await _terminate(process)
    except BaseException:
        # cancelled from outside (user pressed x, app quitting): the whole group dies with us
        with anyio.CancelScope(shield=True):
            await _terminate(process)
        raise
    finally:
        _kill_group(process)
        with anyio.CancelScope(shield=True):
            await process.aclose()

    return CommandResult(
        argv,
        None if timed_out else process.returncode,
        out.text(),
        err.text(),
        elapsed(),
        timed_out=timed_out,
        truncated=out.truncated or err.truncated,
    )


class ChildWatcherInLoop:
    """While a one-shot command's event loop runs (`talos-gpu check`): its programs' ends are watched
    through pid file descriptors in the loop instead of a thread per program.

    Python 3.11's asyncio starts a thread for every program it runs, to wait for its end; each start
    waits for that thread to be scheduled, so 15 talosctl calls spawned at once on a busy 2-core machine
    are spread over tens of milliseconds (issue 18). Python 3.12 and later watch pid file descriptors
    themselves, and Linux before 5.3 has none: there this does nothing. The 3.11 watcher belongs to one
    event loop, so this is only for a process that runs one loop at a time (not the TUI, whose head start
    runs a second loop); the previous watcher is put back when the loop ends."""

    def __init__(self) -> None:
        self._previous: Any = None
        self._watcher: Any = None

    async def __aenter__(self) -> ChildWatcherInLoop:
        import asyncio
        import sys

        if sys.version_info >= (3, 12) or not hasattr(os, "pidfd_open") or threading.active_count() > 1:
            return self
        try:
            os.close(os.pidfd_open(os.getpid()))
        except OSError:  # the kernel has no pidfds (before 5.3), or a sandbox forbids them
            return self
        policy = asyncio.get_event_loop_policy()
        self._previous = policy.get_child_watcher()
        self._watcher = asyncio.PidfdChildWatcher()
        self._watcher.attach_loop(asyncio.get_running_loop())
        policy.set_child_watcher(self._watcher)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._watcher is None:
            return
        import asyncio

        asyncio.get_event_loop_policy().set_child_watcher(self._previous)
        self._watcher.close()
        self._watcher = None
