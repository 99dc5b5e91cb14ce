"""checks.runner against real child processes: timeouts, cancellation, process groups, bounds."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import anyio
import pytest

from checks.runner import display_argv, run_command

PY = sys.executable


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie still answers kill(0); read its state
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def _gone_soon(pid: int, within: float = 3.0) -> bool:
    """SIGKILL is asynchronous: a killed grandchild (re-parented to init) may take a moment to go."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if not _alive(pid):
            return True
        time.sleep(0.05)
    return False


def _spawner(tmp_path: Path, sleep: float) -> list[str]:
    """A child that starts a grandchild, records both pids, and sleeps."""
    pidfile = tmp_path / "pids"
    code = (
        "import os, subprocess, sys, time\n"
        f"g = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep({sleep})'])\n"
        f"open({str(pidfile)!r}, 'w').write(f'{{os.getpid()}} {{g.pid}}')\n"
        "print('started', flush=True)\n"
        f"time.sleep({sleep})\n"
    )
    return [PY, "-c", code]


def _pids(tmp_path: Path) -> list[int]:
    for _ in range(400):  # a loaded 2-core machine can take seconds to start a Python child
        path = tmp_path / "pids"
        if path.exists() and path.read_text().strip():
            return [int(p) for p in path.read_text().split()]
        time.sleep(0.05)
    raise AssertionError("child never wrote its pids")


def test_success_captures_both_streams() -> None:
    code = "import sys; print('out'); print('err', file=sys.stderr); sys.exit(3)"
    result = anyio.run(lambda: run_command([PY, "-c", code], timeout=10))
    assert result.returncode == 3
    assert result.stdout == "out\n"
    assert result.stderr == "err\n"
    assert not result.ok
    assert result.failure_reason() == "exit 3: err"


def test_stdin_is_devnull() -> None:
    code = "import sys; data = sys.stdin.read(); print(repr(data))"
    result = anyio.run(lambda: run_command([PY, "-c", code], timeout=10))
    assert result.stdout.strip() == "''"


def test_not_found_and_not_executable(tmp_path: Path) -> None:
    missing = anyio.run(lambda: run_command([str(tmp_path / "nope")], timeout=5))
    assert missing.error and "not found" in missing.error
    script = tmp_path / "script"
    script.write_text("#!/bin/sh\necho hi\n")
    script.chmod(0o644)
    denied = anyio.run(lambda: run_command([str(script)], timeout=5))
    assert denied.error and "not executable" in denied.error


def test_timeout_kills_the_whole_process_group(tmp_path: Path) -> None:
    started = time.monotonic()
    result = anyio.run(lambda: run_command(_spawner(tmp_path, 30), timeout=4.0))
    assert time.monotonic() - started < 15
    assert result.timed_out and result.returncode is None
    assert "timed out" in result.failure_reason()
    for pid in _pids(tmp_path):
        assert _gone_soon(pid), f"pid {pid} survived the timeout"


def test_cancel_kills_the_whole_process_group(tmp_path: Path) -> None:
    async def main() -> None:
        with anyio.move_on_after(4.0):
            await run_command(_spawner(tmp_path, 30), timeout=60)

    started = time.monotonic()
    anyio.run(main)
    assert time.monotonic() - started < 15
    for pid in _pids(tmp_path):
        assert _gone_soon(pid), f"pid {pid} survived the cancel"


def test_output_is_bounded() -> None:
    code = "import sys\nfor _ in range(4000): sys.stdout.write('x' * 1023 + '\\n')"
    result = anyio.run(lambda: run_command([PY, "-c", code], timeout=20, max_output=100_000))
    assert result.truncated
    assert len(result.stdout) == 100_000
    assert result.returncode == 0


def test_lines_stream_in_order() -> None:
    code = "import sys, time\nfor i in range(5):\n    print(i, flush=True)\n    time.sleep(0.01)\nsys.stdout.write('tail')"
    seen: list[str] = []
    anyio.run(lambda: run_command([PY, "-c", code], timeout=10, on_stdout=seen.append))
    assert seen == ["0", "1", "2", "3", "4", "tail"]


@pytest.mark.parametrize(
    ("argv", "shown"),
    [
        (["/usr/bin/talosctl", "--talosconfig", "/x y/c", "--nodes", "10.0.0.5", "get", "extensions"],
         "talosctl get extensions"),
        (["helm", "--kubeconfig", "/k", "list", "-n", "kube-system"], "helm list -n kube-system"),
    ],
)
def test_display_argv_hides_global_flags(argv: list[str], shown: str) -> None:
    assert display_argv(argv) == shown
