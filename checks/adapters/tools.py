"""talosctl and helm as real programs: argument lists, explicit global flags, bounded time."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from checks.config import KubeTarget, TalosTarget, talosctl_global_args

if TYPE_CHECKING:
    from checks.prefetch import SweepReads
    from checks.runner import CommandResult

# Every command the checks run is read-only (checks/prefetch.py lists their subcommands); the actions add
# the mutating ones explicitly.


@dataclass
class Talosctl:
    binary: str
    target: TalosTarget
    env: dict[str, str] | None = None

    reads: SweepReads | None = None  # a sweep's: records the reads, holds those started early

    def argv(self, *args: str) -> list[str]:
        return [self.binary, *talosctl_global_args(self.target), *args]

    async def run(self, *args: str, timeout: float,
                  on_stdout: Callable[[str], None] | None = None,
                  on_stderr: Callable[[str], None] | None = None) -> CommandResult:
        return await _run("talosctl", self.argv(*args), args, self.env, self.reads, timeout, on_stdout, on_stderr)


@dataclass
class Helm:
    binary: str
    target: KubeTarget
    env: dict[str, str] | None = None
    reads: SweepReads | None = None  # as Talosctl's

    def argv(self, *args: str) -> list[str]:
        argv = [self.binary, "--kubeconfig", str(self.target.kubeconfig)]
        if self.target.context:
            argv += ["--kube-context", self.target.context]
        return argv + list(args)

    async def run(self, *args: str, timeout: float,
                  on_stdout: Callable[[str], None] | None = None,
                  on_stderr: Callable[[str], None] | None = None) -> CommandResult:
        return await _run("helm", self.argv(*args), args, self.env, self.reads, timeout, on_stdout, on_stderr)


async def _run(tool: str, argv: list[str], args: tuple[str, ...], env: dict[str, str] | None,
               reads: SweepReads | None, timeout: float, on_stdout: Callable[[str], None] | None,
               on_stderr: Callable[[str], None] | None) -> CommandResult:
    """Run the command, or, in a sweep that started it early (checks/prefetch.py), take its answer."""
    if reads is not None and on_stdout is None and on_stderr is None:
        from checks import prefetch

        reads.note((tool, *args))
        pending = reads.take(argv, env)
        if pending is not None:
            return await prefetch.answer(pending, timeout)
    from checks.runner import run_command  # anyio: not needed before the first frame

    return await run_command(argv, timeout=timeout, env=env, on_stdout=on_stdout, on_stderr=on_stderr)


