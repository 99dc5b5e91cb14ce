"""Shared test setup.

TUI tests need a deterministic Textual: no animations, set here before anything imports Textual.
"""

import os
import re

os.environ["TEXTUAL_ANIMATIONS"] = "none"  # must precede every Textual import (snapshots, pilot tests)
# the engine's node-name cache (checks/node_cache.py) lives in this run's directory, not in ~/.cache
import atexit  # noqa: E402
import shutil  # noqa: E402
import tempfile  # noqa: E402

os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="talos-gpu-test-cache-")
atexit.register(shutil.rmtree, os.environ["XDG_CACHE_HOME"], True)

from collections.abc import Callable, Iterator  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import pytest  # noqa: E402

# ---- TUI: the real lab and the real engine, once per scenario ------------------------------------

FIXED_CLOCK = 1767225600.0  # 2026-01-01T00:00:00Z: every time the TUI shows comes from this clock in tests
SNAPSHOT_SIZE = (120, 40)


def fixed_clock() -> float:
    return FIXED_CLOCK


# Snapshots that show a command line show the lab's talosconfig path: such labs live at this fixed
# path (one at a time, under a lock) so that the path is the same on every run.
FIXED_LAB_DIR = Path("/tmp/talos-gpu-tui-snapshot-lab")


class LabRun:
    """A running lab and the Target that reaches it (as `talos-gpu demo` builds it)."""

    def __init__(self, scenario: str, knobs: dict[str, Any] | None = None, *, fixed_path: bool = False) -> None:
        from lab.runtime import start_lab
        from tui.demo import demo_target

        self._lock: Any = None
        state_dir = None
        if fixed_path:
            self._lock = _lock_fixed_lab_dir()
            state_dir = FIXED_LAB_DIR
        try:
            self.lab = start_lab(scenario, state_dir=state_dir, knobs={"reboot_s": 1.0, **(knobs or {})})
        except BaseException:
            self._release()
            raise
        try:
            self.state_dir = Path(self.lab.state_dir)
            self.env = dict(self.lab.env)
            self.target = demo_target(self.env, self.state_dir)
        except BaseException:
            self.stop()
            raise

    def _release(self) -> None:
        if self._lock is not None:
            import fcntl
            import shutil

            shutil.rmtree(FIXED_LAB_DIR, ignore_errors=True)
            fcntl.flock(self._lock.fileno(), fcntl.LOCK_UN)
            self._lock.close()
            self._lock = None

    def mutate(self) -> Any:
        """`with run.mutate() as state:` changes the lab's state.json under its lock."""
        from lab import state as lab_state

        return lab_state.mutate(self.state_dir)

    def sweep(self, timeout: float = 30.0) -> Any:
        import anyio

        from checks.engine import run_sweep

        return anyio.run(lambda: run_sweep(self.target, timeout=timeout))

    def stop(self) -> None:
        try:
            self.lab.stop()
        finally:
            self._release()


def _lock_fixed_lab_dir() -> Any:
    import fcntl
    import shutil

    lock = open(f"{FIXED_LAB_DIR}.lock", "a+")  # noqa: SIM115 - held until LabRun.stop
    fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
    shutil.rmtree(FIXED_LAB_DIR, ignore_errors=True)
    return lock


@pytest.fixture
def lab_run() -> Iterator[Callable[..., LabRun]]:
    """Start labs for one test (`lab_run("fresh", knobs={...})`); all are stopped afterwards."""
    started: list[LabRun] = []

    def start(scenario: str, knobs: dict[str, Any] | None = None, *, fixed_path: bool = False) -> LabRun:
        run = LabRun(scenario, knobs, fixed_path=fixed_path)
        started.append(run)
        return run

    yield start
    for run in started:
        run.stop()


class SweptScenario:
    """One real sweep of a lab scenario: its Report, and the Target it was made with (the lab is gone)."""

    def __init__(self, report: Any, target: Any) -> None:
        self.report = report
        self.target = target


@pytest.fixture(scope="session")
def scenario_report(lab_session: Any) -> Iterator[Callable[[str], SweptScenario]]:
    """`scenario_report("healthy")`: one real sweep of that lab scenario (cached per session; the shared
    lab is switched to the scenario), for snapshots that render a pre-computed report (the app's
    `initial_report=`). Time-derived names are made stable (`stable_report`)."""
    import anyio

    from checks.engine import run_sweep
    from tui.demo import demo_target

    cache: dict[str, SweptScenario] = {}

    def get(scenario: str) -> SweptScenario:
        if scenario not in cache:
            lab_session.reset(scenario, knobs={"reboot_s": 1.0})
            target = demo_target(dict(lab_session.env), Path(lab_session.state_dir))
            report = anyio.run(lambda: run_sweep(target, timeout=30.0))
            cache[scenario] = SweptScenario(stable_report(report), target)
        return cache[scenario]

    yield get


# ---- lab: one API server shared by the session, re-initialised per scenario ----------------------


@pytest.fixture(scope="session")
def lab_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """One running lab (state dir + API server child process) for the whole session, started `fresh`.

    Prefer the `lab` factory below, which puts it into the scenario a test needs.
    """
    from lab.runtime import start_lab

    handle = start_lab("fresh", state_dir=tmp_path_factory.mktemp("lab"))
    try:
        yield handle
    finally:
        handle.stop()


@pytest.fixture
def lab(lab_session: Any) -> Callable[..., Any]:
    """`lab("healthy", knobs={...}, faults={...})` -> the shared LabHandle, its state.json rebuilt for
    that scenario (the running server picks the new state up on its next request). Cheap: use one
    call per scenario a test needs rather than starting labs."""

    def switch(scenario: str = "fresh", *, knobs: dict[str, Any] | None = None,
               faults: dict[str, Any] | None = None) -> Any:
        lab_session.reset(scenario, knobs=knobs, faults=faults)
        return lab_session

    return switch


def stable_report(report: Any) -> Any:
    """The report with the lab's time-derived names (DaemonSet pod names and uids) replaced by fixed
    ones, so that a snapshot shows the same text on every run. Every string inside is rewritten."""
    import dataclasses
    import enum

    plugin = report.facts.get("device_plugin")
    pods = list(plugin.value.pods) if plugin is not None and plugin.value is not None else []
    renames: dict[str, str] = {}
    for number, pod in enumerate(sorted(pods, key=lambda p: p["metadata"]["name"])):
        meta = pod["metadata"]
        base = meta["name"].rsplit("-", 1)[0]
        renames[meta["name"]] = f"{base}-{'abcde'[number % 5] * 5}"
        if meta.get("uid"):
            renames[meta["uid"]] = f"00000000-0000-4000-8000-{number:012d}"

    def rewrite(value: Any) -> Any:
        if isinstance(value, enum.Enum):  # Status is a str too: keep it what it is
            return value
        if isinstance(value, str):
            for old, new in renames.items():
                value = value.replace(old, new)
            # pytest's numbered temporary directory (the lab's infra repo in a fix command)
            return re.sub(r"/tmp/pytest-of-[^/\s]+/pytest-\d+/", "/tmp/pytest/", value)
        if isinstance(value, dict):
            return {rewrite(k): rewrite(v) for k, v in value.items()}
        if isinstance(value, list):
            return [rewrite(v) for v in value]
        if isinstance(value, tuple):
            return tuple(rewrite(v) for v in value)
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            changes = {f.name: rewrite(getattr(value, f.name)) for f in dataclasses.fields(value) if f.init}
            return dataclasses.replace(value, **changes)
        return value

    return rewrite(report)
