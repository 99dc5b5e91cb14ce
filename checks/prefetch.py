"""The talosctl and helm reads of a sweep: recorded for the next run, and started early from that record.

A one-shot `talos-gpu check` spends its first ~0.1 s loading its stage tables, probes, judges and
parsers before the first talosctl call could start, and every call then costs a round trip to the node
(issue 18). The reads a sweep of a node makes are the same from one run to the next (the same
subcommands of the same path), so each full sweep records them in the node cache (checks/node_cache.py),
and the next `check` of that node starts them as soon as its configs are read, before those modules are
loaded. A probe whose command is among them takes the answer that is on its way instead of starting the
command again; a read the sweep no longer makes is ended with the sweep, like any talosctl it started.

The record comes from a file and is not trusted: only read-only subcommands with the flags the probes
use are started from it (`allowed`), anything else in it is ignored. A stale record costs at most a read
that nobody takes, never a wrong answer: the probe takes an answer only for exactly its command.

Everything here runs in the sweep's event loop; the processes are `checks.runner.run_command`'s (argument
lists, no shell, stdin from /dev/null, their groups killed when cancelled).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from anyio.abc import TaskGroup

    from checks.runner import CommandResult


class Tool(Protocol):
    """talosctl or helm as the adapters run them (checks/adapters/tools.py)."""

    env: dict[str, str] | None

    def argv(self, *args: str) -> list[str]: ...

Read = tuple[str, ...]  # the tool ("talosctl" or "helm"), then its arguments after the global flags

MAX_READS = 32
# a read started early runs under the sweep's time limit plus this: the sweep itself ends it, its time limit
# counted from a moment later (its probes' own time limits and messages hold, as if they had started it)
BACKSTOP_S = 2.0
MAX_ARG = 256
# what the probes read, and nothing else (every talosctl subcommand the checks run): a record that says
# otherwise was not written by a sweep
TALOSCTL_READS = frozenset({"version", "health", "get", "read", "dmesg", "services", "service", "ls"})
TALOSCTL_FLAGS = frozenset({"-o", "--wait-timeout"})
HELM_READS = frozenset({"list"})
HELM_FLAGS = frozenset({"-n", "-A", "-o"})
_SAFE_ARG = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/:@=+-]*$")


def allowed(read: Sequence[object]) -> bool:
    """Whether a recorded read may be started: a read-only subcommand of talosctl or helm, plain words
    (paths, resource names, values) and only the flags the probes pass."""
    if not read or len(read) > 10 or not all(isinstance(arg, str) and 0 < len(arg) <= MAX_ARG for arg in read):
        return False
    tool, *args = (str(arg) for arg in read)  # each is a str already (checked above)
    if tool == "talosctl":
        verbs, flags = TALOSCTL_READS, TALOSCTL_FLAGS
    elif tool == "helm":
        verbs, flags = HELM_READS, HELM_FLAGS
    else:
        return False
    if not args or args[0] not in verbs:
        return False
    for arg in args[1:]:
        if arg.startswith("-"):
            if arg not in flags:
                return False
        elif not _SAFE_ARG.match(arg.lstrip("/")) and arg != "/":
            return False
    return True


@dataclass
class _Pending:
    argv: tuple[str, ...]
    env: dict[str, str] | None
    scope: Any = None  # the anyio.CancelScope its command runs in
    done: Any = None  # anyio.Event, set once `result` is in
    result: CommandResult | None = None
    taken: bool = False


@dataclass
class SweepReads:
    """One sweep's reads: what it ran (`ran`, recorded for the next run) and the answers started early
    (`start`) that its probes take (`take`)."""

    ran: list[Read] = field(default_factory=list)
    _pending: dict[tuple[str, ...], _Pending] = field(default_factory=dict)

    def note(self, read: Read) -> None:
        if read not in self.ran and len(self.ran) < MAX_READS:
            self.ran.append(read)

    async def start(self, tools: Mapping[str, Tool | None], reads: Sequence[Read], group: TaskGroup, *,
                    timeout: float) -> int:
        """Start each allowed read in `group` with its tool (`tools["talosctl"]`, `tools["helm"]`); return (how
        many) once every one's process is running."""
        import anyio

        started = 0
        running = anyio.Event()
        waiting: list[int] = [0]

        def one_running() -> None:
            waiting[0] -= 1
            if waiting[0] == 0:
                running.set()

        for read in reads[:MAX_READS]:
            tool = tools.get(read[0]) if read else None
            if tool is None or not allowed(read):
                continue
            argv = tuple(tool.argv(*read[1:]))
            if argv in self._pending:
                continue
            pending = _Pending(argv, tool.env, anyio.CancelScope(), anyio.Event())
            self._pending[argv] = pending
            waiting[0] += 1
            group.start_soon(self._run, pending, timeout, one_running)
            started += 1
        if started:
            await running.wait()
        return started

    async def _run(self, pending: _Pending, timeout: float, on_started: Callable[[], None]) -> None:
        from checks.runner import run_command

        try:
            with pending.scope:
                pending.result = await run_command(pending.argv, timeout=timeout + BACKSTOP_S, env=pending.env,
                                                   on_started=on_started)
        finally:
            pending.done.set()

    def take(self, argv: Sequence[str], env: dict[str, str] | None) -> _Pending | None:
        """The early answer to exactly this command, once (a second identical call runs its own)."""
        pending = self._pending.get(tuple(argv))
        if pending is None or pending.taken or pending.env != env:
            return None
        pending.taken = True
        return pending

    def end(self) -> None:
        """The sweep is over: end every read still running (taken and abandoned, or never taken); their
        process groups are killed."""
        for pending in self._pending.values():
            if pending.result is None and pending.scope is not None:
                pending.scope.cancel()


async def answer(pending: _Pending, timeout: float) -> CommandResult:
    """The early answer, waited for at most `timeout` (as the probe's own command would have been); past
    it, or when the probe is cancelled (the sweep's time is up), the command is ended, and the result says
    it timed out."""
    import anyio

    from checks.runner import CommandResult

    started = time.monotonic()
    try:
        with anyio.move_on_after(timeout):
            await pending.done.wait()
    finally:
        if pending.result is None:
            pending.scope.cancel()
    if pending.result is not None:
        return pending.result
    elapsed = int((time.monotonic() - started) * 1000)
    return CommandResult(pending.argv, None, "", "", elapsed, timed_out=True)
