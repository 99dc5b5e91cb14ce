"""A warm `talos-gpu check` starts the talosctl and helm reads the last sweep of the node made before it
loads its stage tables (checks/prefetch.py, issue 18).

Observed from outside: talosctl and helm are wrappers on PATH that log each command line, then run the
lab's; the node cache is the file a user has. Nothing of the app is patched."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import anyio
import pytest

from checks import node_cache
from checks.prefetch import SweepReads, allowed, answer
from tests.paths import REPO
from tests.procs import live_command_lines
from tests.test_kube_process import without_durations

WRAPPER = """#!/bin/sh
printf '%s\\n' "$*" >> {log}
exec {real} "$@"
"""


def logging_tools(handle: Any, tmp: Path) -> tuple[dict[str, str], Path]:
    """The lab's env with talosctl and helm behind wrappers that log their arguments, and a cache of its own."""
    log = tmp / "calls.log"
    bin_dir = tmp / "bin"
    bin_dir.mkdir()
    env = {**handle.env, "XDG_CACHE_HOME": str(tmp / "cache")}
    for name, variable in (("talosctl", "TALOSCTL"), ("helm", "HELM")):
        real = handle.env.get(variable) or str(Path(handle.bin_dir) / name)
        wrapper = bin_dir / name
        wrapper.write_text(WRAPPER.format(log=log, real=real))
        wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
        env[variable] = str(wrapper)
    return env, log


def check(env: dict[str, str], log: Path, *args: str) -> tuple[dict[str, Any], list[str]]:
    log.write_text("")
    result = subprocess.run([sys.executable, "-m", "tui.cli", "check", "--json", *args], cwd=REPO,
                            env={**os.environ, **env}, capture_output=True, text=True, timeout=60,
                            stdin=subprocess.DEVNULL)
    assert result.returncode in (0, 1) and "Traceback" not in result.stderr, result.stderr[-2000:]
    return json.loads(result.stdout), log.read_text().splitlines()


def recorded(env: dict[str, str]) -> tuple[tuple[str, ...], ...]:
    cache = Path(env["XDG_CACHE_HOME"]) / "talos-gpu" / "nodes.json"
    entries = json.loads(cache.read_text())
    (entry,) = entries.values()
    return tuple(tuple(read) for read in entry.get("reads", []))


@pytest.mark.parametrize("scenario", ["healthy", "plugin-missing", "modules-not-loaded", "operator-healthy"])
def test_a_warm_check_runs_each_read_once_and_answers_as_the_first(lab: Any, tmp_path: Path, scenario: str) -> None:
    handle = lab(scenario)
    env, log = logging_tools(handle, tmp_path)
    first, first_calls = check(env, log)
    reads = recorded(env)
    # the record is what the sweep ran: every talosctl and helm command, after the global flags
    assert len(reads) == len(set(first_calls)) and all(allowed(read) for read in reads)
    assert {read[0] for read in reads} == {"talosctl", "helm"}
    warm, warm_calls = check(env, log)
    assert without_durations(warm) == without_durations(first)
    # started early and taken by the probes: not one command ran twice
    assert sorted(warm_calls) == sorted(set(warm_calls)), warm_calls
    assert set(warm_calls) == set(first_calls)


def test_the_record_is_kept_apart_from_a_light_refresh_and_says_no_credential(lab: Any, tmp_path: Path) -> None:
    handle = lab("healthy")
    env, log = logging_tools(handle, tmp_path)
    check(env, log)
    text = (Path(env["XDG_CACHE_HOME"]) / "talos-gpu" / "nodes.json").read_text()
    # the global flags (the talosconfig, the kubeconfig, their contexts) are not in the record
    assert "--talosconfig" not in text and "--kubeconfig" not in text and "talosconfig" not in text


def test_a_tampered_record_starts_nothing_but_the_reads_allowed(lab: Any, tmp_path: Path) -> None:
    handle = lab("healthy")
    env, log = logging_tools(handle, tmp_path)
    first, _ = check(env, log)
    cache = Path(env["XDG_CACHE_HOME"]) / "talos-gpu" / "nodes.json"
    entries = json.loads(cache.read_text())
    (key,) = entries
    hostile = [["talosctl", "reset", "--graceful=false"], ["talosctl", "get", "members", "--nodes", "10.9.9.9"],
               ["talosctl", "read", "/etc/../x; rm -rf /"], ["helm", "uninstall", "nvidia-device-plugin"],
               ["kubectl", "delete", "node", "gpu-node-1"], ["talosctl", "upgrade"], "talosctl version", [],
               ["talosctl", "apply-config", "-f", "x.yaml"], ["helm", "list", "--kube-context", "other"]]
    entries[key]["reads"] = hostile + entries[key]["reads"]
    cache.write_text(json.dumps(entries))
    warm, calls = check(env, log)
    assert without_durations(warm) == without_durations(first)
    joined = "\n".join(calls)
    for word in ("reset", "members", "rm -rf", "uninstall", "upgrade", "apply-config", "other"):
        assert word not in joined, calls
    assert sorted(calls) == sorted(set(calls))


def test_a_read_nobody_takes_is_ended_with_the_sweep(lab: Any, tmp_path: Path) -> None:
    handle = lab("healthy", faults={"talosctl_hang": {"only": "read /proc/cpuinfo"}})
    env, log = logging_tools(handle, tmp_path)
    check(env, log)
    cache = Path(env["XDG_CACHE_HOME"]) / "talos-gpu" / "nodes.json"
    entries = json.loads(cache.read_text())
    (key,) = entries
    entries[key]["reads"].append(["talosctl", "read", "/proc/cpuinfo"])  # a read this sweep no longer makes
    cache.write_text(json.dumps(entries))
    started = time.monotonic()
    report, calls = check(env, log, "--timeout", "20")
    assert time.monotonic() - started < 10  # the hanging read did not hold the check up
    assert report["overall"] == "pass"
    assert any("read /proc/cpuinfo" in call for call in calls)  # it was started early
    assert live_command_lines("read", "/proc/cpuinfo") == {}  # and ended with the sweep
    # the next record is this sweep's own reads again
    assert ("talosctl", "read", "/proc/cpuinfo") not in recorded(env)


@pytest.mark.parametrize("read", [
    ("talosctl", "version"), ("talosctl", "get", "extensions", "-o", "yaml"), ("talosctl", "read", "/proc/modules"),
    ("talosctl", "health", "--wait-timeout", "29s"), ("talosctl", "ls", "/etc/cri/conf.d"),
    ("talosctl", "service", "ext-nvidia-cdi-gen"), ("helm", "list", "-n", "kube-system", "-o", "json"),
    ("helm", "list", "-A", "-o", "json"), ("talosctl", "services"), ("talosctl", "dmesg"),
])
def test_the_reads_the_probes_make_are_allowed(read: tuple[str, ...]) -> None:
    assert allowed(read)


@pytest.mark.parametrize("read", [
    (), ("talosctl",), ("talosctl", "reset"), ("talosctl", "reboot"), ("talosctl", "patch", "mc"),
    ("talosctl", "get", "x", "--nodes", "10.0.0.9"), ("talosctl", "get", "x", "-n", "10.0.0.9"),
    ("talosctl", "get", "x", "--talosconfig=/tmp/other"), ("talosctl", "read", "a b"), ("talosctl", "read", "$(id)"),
    ("talosctl", "read", "x\n--nodes"), ("helm", "upgrade", "--install", "x"), ("helm", "list", "--kubeconfig", "k"),
    ("kubectl", "get", "pods"), ("sh", "-c", "id"), ("talosctl", "get", "a" * 300), ("talosctl", 7),
    ("talosctl", "get", *["x"] * 12),
])
def test_anything_else_is_refused(read: tuple[Any, ...]) -> None:
    assert not allowed(read)


class Sleeper:
    """A tool whose reads are a real program that takes its time (the shape the adapters have)."""

    env: dict[str, str] | None = None

    def argv(self, *args: str) -> list[str]:
        return ["/bin/sh", "-c", "sleep 30", "talos-gpu-prefetch-test", *args]


def test_an_early_read_waited_for_past_the_probes_timeout_is_ended_and_says_so() -> None:
    async def main() -> Any:
        reads = SweepReads()
        async with anyio.create_task_group() as group:
            assert await reads.start({"talosctl": Sleeper()}, [("talosctl", "version")], group, timeout=60) == 1
            assert live_command_lines("talos-gpu-prefetch-test", "version")  # running before anyone asked
            pending = reads.take(Sleeper().argv("version"), None)
            assert pending is not None and reads.take(Sleeper().argv("version"), None) is None  # taken once
            started = time.monotonic()
            result = await answer(pending, 0.3)
            assert 0.25 < time.monotonic() - started < 5
        return result

    result = anyio.run(main)
    assert result.timed_out and result.returncode is None
    assert live_command_lines("talos-gpu-prefetch-test") == {}


def test_reads_nobody_takes_are_killed_when_the_sweep_ends() -> None:
    async def main() -> None:
        reads = SweepReads()
        async with anyio.create_task_group() as group:
            await reads.start({"talosctl": Sleeper(), "helm": None},
                              [("talosctl", "dmesg"), ("helm", "list", "-A"), ("talosctl", "reset")], group, timeout=60)
            assert len(live_command_lines("talos-gpu-prefetch-test", "dmesg")) == 1
            assert live_command_lines("talos-gpu-prefetch-test", "reset") == {}  # refused, never started
            reads.end()

    started = time.monotonic()
    anyio.run(main)
    assert time.monotonic() - started < 5
    assert live_command_lines("talos-gpu-prefetch-test") == {}


def test_the_cache_keeps_only_lists_of_words(tmp_path: Path) -> None:
    path = tmp_path / "nodes.json"
    node_cache.remember("https://api", "10.0.0.2", "n1", path, reads=(("talosctl", "version"),))
    assert node_cache.remembered_reads("https://api", "10.0.0.2", path) == (("talosctl", "version"),)
    entries = json.loads(path.read_text())
    entries["https://api 10.0.0.2"]["reads"] = [["talosctl", 3], "x", ["helm", "list"], {"a": 1}]
    path.write_text(json.dumps(entries))
    assert node_cache.remembered_reads("https://api", "10.0.0.2", path) == (("helm", "list"),)
    assert node_cache.remembered_reads("https://api", "10.0.0.9", path) == ()


def test_two_checks_in_one_process_answer_alike(lab: Any, tmp_path: Path) -> None:
    """A check leaves the process as it found it: its event loop's way of watching programs end (a pidfd
    watcher on Python 3.11) is put back, so an event loop in another thread (the TUI's head start) still runs
    programs;
    and the next check's reads, started early too, answer as the first's."""
    handle = lab("healthy")
    env, log = logging_tools(handle, tmp_path)
    code = ("import sys, threading, anyio; from tui.cli import main; from checks.runner import run_command\n"
            "first = main(['check', '--json'])\n"
            "later = []\n"
            "def elsewhere(): later.append(anyio.run(lambda: run_command(['/bin/sh', '-c', 'exit 7'], timeout=5)))\n"
            "thread = threading.Thread(target=elsewhere); thread.start(); thread.join(10); later = later[0]\n"
            "second = main(['check', '--json'])\n"
            "sys.stderr.write('LATER=%s\\n' % later.returncode); sys.exit(first * 10 + second)")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, env={**os.environ, **env}, capture_output=True,
                            text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert "LATER=7" in result.stderr
    decoder = json.JSONDecoder()
    first, end = decoder.raw_decode(result.stdout)
    second, _ = decoder.raw_decode(result.stdout[end:].lstrip())
    assert without_durations(first) == without_durations(second) and first["overall"] == "pass"
