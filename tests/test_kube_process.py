"""`talos-gpu check` reads Kubernetes in a forked child (checks/kube_process.py); the device plugin's
events and logs are read with the DaemonSet list when the last run's names are remembered.

The child is observed from outside: the report it helps make, the processes left afterwards, the
requests the lab's API server received. Nothing of the app is patched."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import anyio
import pytest

from checks import node_cache
from checks.engine import run_sweep
from lab import state as lab_state
from tests.paths import REPO
from tests.procs import live_command_lines
from tests.test_actions_support import make_target
from tests.test_check_e2e import run_check

KUBE_STAGES = ("runtimeclass", "device-plugin", "gpu-resources")


def without_durations(report: dict[str, Any]) -> dict[str, Any]:
    return {**report, "stages": [{k: v for k, v in s.items() if k != "duration_ms"} for s in report["stages"]]}


@pytest.mark.parametrize("scenario", ["healthy", "nfd-affinity", "runtimeclass-missing", "plugin-missing",
                                      "node-notready"])
def test_the_forked_reads_answer_exactly_as_the_reads_in_process(lab: Any, scenario: str) -> None:
    handle = lab(scenario)
    forked = run_check(handle.env, "--json")
    in_process = run_check({**handle.env, "TALOS_GPU_KUBE_IN_PROCESS": "1"}, "--json")
    assert forked.returncode == in_process.returncode, (forked.stderr, in_process.stderr)
    assert without_durations(json.loads(forked.stdout)) == without_durations(json.loads(in_process.stdout))
    assert all(s["duration_ms"] > 0 for s in json.loads(forked.stdout)["stages"] if s["id"] in KUBE_STAGES)


def test_check_never_imports_the_kubernetes_client_itself(lab: Any) -> None:
    """The proof that the reads happened elsewhere: after `check`, this process has not imported the
    client (in-process, it must have)."""
    handle = lab("healthy")
    code = ("import sys; from tui.cli import main; code = main(['check', '--json']); "
            "sys.stderr.write('IMPORTED=%s\\n' % ('kubernetes.client.rest' in sys.modules)); sys.exit(code)")
    for extra, imported in (({}, "False"), ({"TALOS_GPU_KUBE_IN_PROCESS": "1"}, "True")):
        result = subprocess.run([sys.executable, "-c", code], cwd=REPO, env={**os.environ, **handle.env, **extra},
                                capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout)["overall"] == "pass"
        assert f"IMPORTED={imported}" in result.stderr


def marked_check(env: dict[str, str], marker: str, tmp: Path, **popen: Any) -> subprocess.Popen[str]:
    """`check --json` with a timeout that marks its command line (its forked child shares it)."""
    return subprocess.Popen([sys.executable, "-m", "tui.cli", "check", "--json", "--timeout", marker], cwd=REPO,
                            env={**os.environ, **env, "TMPDIR": str(tmp)}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True, **popen)


def wait_until_gone(marker: str, seconds: float = 5.0) -> dict[int, str]:
    deadline = time.monotonic() + seconds
    while (left := live_command_lines("tui.cli", "--timeout", marker)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return left


def wait_for_two(marker: str, seconds: float = 20.0) -> list[int]:
    deadline = time.monotonic() + seconds
    while len(found := sorted(live_command_lines("tui.cli", "--timeout", marker))) < 2:
        assert time.monotonic() < deadline, "the check did not fork its reader"
        time.sleep(0.02)
    return found


def test_an_api_that_never_answers_ends_both_processes_within_the_timeout(lab: Any, tmp_path: Path) -> None:
    handle = lab("healthy", faults={"api_hang_s": 60})
    started = time.monotonic()
    process = marked_check(handle.env, "3.0417", tmp_path)
    out, err = process.communicate(timeout=30)
    assert time.monotonic() - started < 3.0417 + 5
    assert process.returncode == 1 and "Traceback" not in err, err
    stages = {s["id"]: s for s in json.loads(out)["stages"]}
    assert stages["cluster"]["status"] == "unknown" and "time limit" in stages["cluster"]["summary"]
    assert stages["extensions"]["status"] == "pass"  # talosctl answered meanwhile
    assert wait_until_gone("3.0417") == {}
    assert list(tmp_path.iterdir()) == []  # the child's exit handlers removed the kubeconfig's temporary files


def test_ctrl_c_ends_the_check_and_its_reader_quietly(lab: Any, tmp_path: Path) -> None:
    handle = lab("healthy", faults={"api_hang_s": 60})
    process = marked_check(handle.env, "40.0723", tmp_path, start_new_session=True)
    wait_for_two("40.0723")
    time.sleep(0.5)  # both are waiting: the parent on talosctl and the child, the child on the API
    os.killpg(process.pid, signal.SIGINT)
    out, err = process.communicate(timeout=15)
    assert process.returncode == 130 and err.strip() == "talos-gpu: interrupted", err
    assert wait_until_gone("40.0723") == {}
    assert list(tmp_path.iterdir()) == []


def test_a_check_killed_outright_takes_its_reader_along(lab: Any, tmp_path: Path) -> None:
    handle = lab("healthy", faults={"api_hang_s": 60})
    process = marked_check(handle.env, "40.0931", tmp_path)
    wait_for_two("40.0931")
    os.kill(process.pid, signal.SIGKILL)  # no handler runs in the parent: the child sees its pipe close
    process.communicate(timeout=15)
    assert wait_until_gone("40.0931") == {}, "the reader outlived its check"
    assert list(tmp_path.iterdir()) == []  # and it still removed its temporary files


def test_a_reader_that_dies_is_a_reason_in_the_report_not_a_crash(lab: Any, tmp_path: Path) -> None:
    handle = lab("healthy", faults={"api_hang_s": 60})
    process = marked_check(handle.env, "40.0555", tmp_path)
    child = next(pid for pid in wait_for_two("40.0555") if pid != process.pid)
    time.sleep(0.3)
    os.kill(child, signal.SIGKILL)
    out, err = process.communicate(timeout=30)
    assert process.returncode == 1 and "Traceback" not in err, err
    stages = {s["id"]: s for s in json.loads(out)["stages"]}
    assert stages["cluster"]["status"] == "unknown"
    assert "the Kubernetes reads did not finish" in stages["cluster"]["summary"]
    assert "killed by signal 9" in stages["cluster"]["summary"]
    assert stages["extensions"]["status"] == "pass"


# ---- the device plugin's remembered names ---------------------------------------------------------


def plugin_log_requests(state_dir: str) -> list[str]:
    lines = (Path(state_dir) / "requests.log").read_text().splitlines()
    return [json.loads(line)["path"] for line in lines if "/log" in line and "nvidia-device-plugin" in line]


def test_remembered_pods_are_read_without_waiting_for_the_daemonset_list(lab: Any, tmp_path: Path) -> None:
    handle = lab("healthy")
    target = make_target(handle, tmp_path)
    first = anyio.run(lambda: run_sweep(target, timeout=30))
    pod = first.facts["device_plugin"].value.pods[0]["metadata"]["name"]
    assert node_cache.recall(target.kube.server, target.talos.node)[1] == ("kube-system", "nvidia-device-plugin", (pod,))

    hang = {"api_hang_s": {"seconds": 30, "path_regex": "/daemonsets"}}
    for remembered, expect_log in ((True, True), (False, False)):
        handle.reset("healthy", faults=hang)
        if not remembered:  # the node alone, as the first format of the cache held it
            node_cache.remember(target.kube.server, target.talos.node, "gpu-node-1")
        (Path(handle.state_dir) / "requests.log").write_text("")
        report = anyio.run(lambda: run_sweep(target, timeout=3))
        assert report.stage("device-plugin").status.value in ("unknown", "blocked")
        # the DaemonSet list never answered, yet the remembered pod's log was asked for at once
        assert bool(plugin_log_requests(handle.state_dir)) is expect_log, remembered


def test_stale_remembered_names_cost_requests_never_a_wrong_answer(lab: Any, tmp_path: Path) -> None:
    handle = lab("healthy")
    target = make_target(handle, tmp_path)
    first = anyio.run(lambda: run_sweep(target, timeout=30))
    old_pod = first.facts["device_plugin"].value.pods[0]["metadata"]["name"]
    with lab_state.mutate(handle.state_dir) as state:  # the DaemonSet makes a new pod (a new name)
        state.setdefault("kubeapi", {}).setdefault("recreated", {})["kube-system/nvidia-device-plugin"] = time.time()
    second = anyio.run(lambda: run_sweep(target, timeout=30))
    facts = second.facts["device_plugin"].value
    new_pod = facts.pods[0]["metadata"]["name"]
    assert new_pod != old_pod
    assert set(facts.pod_events) == {new_pod} and set(facts.logs) | set(facts.log_errors) <= {new_pod}
    assert node_cache.recall(target.kube.server, target.talos.node)[1] == ("kube-system", "nvidia-device-plugin",
                                                                          (new_pod,))
    # names from another namespace: the pod of the same name there is not this DaemonSet's
    node_cache.remember(target.kube.server, target.talos.node, "gpu-node-1",
                        plugin=("elsewhere", "nvidia-device-plugin", (new_pod,)))
    third = anyio.run(lambda: run_sweep(target, timeout=30))
    node_cache.remember(target.kube.server, target.talos.node, "gpu-node-1")
    fresh = anyio.run(lambda: run_sweep(target, timeout=30))
    for report in (second, third):
        assert report.stage("device-plugin").status == fresh.stage("device-plugin").status
        assert report.stage("device-plugin").summary == fresh.stage("device-plugin").summary
        assert report.facts["device_plugin"].value.logs.keys() == fresh.facts["device_plugin"].value.logs.keys()


def test_the_cache_reads_its_first_format_and_ignores_garbage(tmp_path: Path) -> None:
    path = tmp_path / "nodes.json"
    path.write_text(json.dumps({"https://x 10.0.0.1": "node-a",
                                "https://x 10.0.0.2": {"node": "node-b", "plugin": ["ns", "ds", ["p1", "p2"]]},
                                "https://x 10.0.0.3": {"node": "node-c", "plugin": ["ns", 7, ["p1"]]},
                                "https://x 10.0.0.4": {"plugin": ["ns", "ds", []]}}))
    assert node_cache.recall("https://x", "10.0.0.1", path) == ("node-a", None)
    assert node_cache.recall("https://x", "10.0.0.2", path) == ("node-b", ("ns", "ds", ("p1", "p2")))
    assert node_cache.recall("https://x", "10.0.0.3", path) == ("node-c", None)
    assert node_cache.recall("https://x", "10.0.0.4", path) == (None, None)
    node_cache.remember("https://x", "10.0.0.1", "node-a", path, plugin=("kube-system", "nvidia-device-plugin", ("p",)))
    assert node_cache.recall("https://x", "10.0.0.1", path) == ("node-a", ("kube-system", "nvidia-device-plugin", ("p",)))
    assert node_cache.remembered("https://x", "10.0.0.2", path) == "node-b"


# ---- first contact: nothing remembered --------------------------------------------------------------


def node_requests(state_dir: str) -> list[tuple[str, str]]:
    lines = (Path(state_dir) / "requests.log").read_text().splitlines()
    return [(entry["method"], entry["path"]) for entry in map(json.loads, lines)
            if entry["path"].startswith("/api/v1/nodes")]


def first_and_warm(env: dict[str, str], state_dir: str, cache: Path) -> tuple[Any, Any, list[Any], list[Any]]:
    """`check --json` with an empty cache, then again with the cache it left; each one's Node requests."""
    env = {**env, "XDG_CACHE_HOME": str(cache)}
    (Path(state_dir) / "requests.log").write_text("")
    first = run_check(env, "--json")
    first_requests = node_requests(state_dir)
    (Path(state_dir) / "requests.log").write_text("")
    warm = run_check(env, "--json")
    assert first.returncode == warm.returncode, (first.stderr, warm.stderr)
    return json.loads(first.stdout), json.loads(warm.stdout), first_requests, node_requests(state_dir)


@pytest.mark.parametrize("scenario", ["healthy", "plugin-missing", "node-notready"])
def test_at_first_contact_the_node_comes_from_one_page_of_nodes_and_answers_as_when_remembered(
        lab: Any, tmp_path: Path, scenario: str) -> None:
    from checks.probes import NODE_PAGE

    handle = lab(scenario)
    first, warm, first_requests, warm_requests = first_and_warm(handle.env, handle.state_dir, tmp_path / "cache")
    assert without_durations(first) == without_durations(warm)
    assert first["kube_node"] == warm["kube_node"] == "gpu-node-1"
    # the page answered: the Node was not asked for by name once talosctl had answered
    assert first_requests == [("GET", f"/api/v1/nodes?limit={NODE_PAGE}")], first_requests
    assert warm_requests == [("GET", "/api/v1/nodes/gpu-node-1")], warm_requests


def test_in_a_cluster_larger_than_the_page_the_node_talosctl_names_is_taken_from_it(tmp_path: Path) -> None:
    from checks.probes import NODE_PAGE
    from lab.runtime import start_lab

    with start_lab("healthy", extra_nodes=NODE_PAGE + 10, state_dir=tmp_path / "lab") as handle:
        first, warm, first_requests, _ = first_and_warm(handle.env, handle.state_dir, tmp_path / "cache")
    assert without_durations(first) == without_durations(warm)
    assert first["kube_node"] == "gpu-node-1" and first["overall"] == "pass"
    # the page did not hold every Node, but it held the one talosctl names: no other Node request followed
    assert first_requests == [("GET", f"/api/v1/nodes?limit={NODE_PAGE}")], first_requests


# The race behind a rare hang at exit: a sweep whose time ran out while the child's results were still
# arriving. Each round forks a real child that sends results down the real pipe protocol, lets the sweep
# end at a random moment, stops the child; the process must then end with no thread left behind. (Before
# the fix, a reader thread that had handed a result to the ending event loop waited for it forever.)
RACE_ROUNDS = """
import os, random, sys, threading, time
import anyio
from checks.kube_process import KubeProcess, _send
from checks.model import ProbeResult
from checks.paths import candidates, probes_of
from checks.profile import Profile

probes = tuple(p for p in probes_of(candidates(Profile())) if p.kube)

def child(results_w):
    for probe in probes:
        time.sleep(random.random() * 0.002)
        _send(results_w, ProbeResult(probe.name, probe.source, value=1))
    os._exit(0)

def one_round():
    results_r, results_w = os.pipe()
    nodename_r, nodename_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(results_r)
        child(results_w)
    os.close(results_w)
    os.close(nodename_r)
    process = KubeProcess(pid, results_r, nodename_w, None, None, probes)
    answered = []

    async def sweep():
        with anyio.move_on_after(random.random() * 0.01):
            async with anyio.create_task_group() as group:
                group.start_soon(process.receive)
                for probe in probes:
                    answered.append((await process.answer(probe)).value)
    anyio.run(sweep)
    process.stop()
    return answered

random.seed(int(sys.argv[1]))
complete = sum(one_round() == [1] * len(probes) for _ in range(int(sys.argv[2])))
print(len(probes), complete, threading.active_count())
"""


def test_a_sweep_ending_while_results_arrive_leaves_no_thread_waiting() -> None:
    rounds = 200
    result = subprocess.run([sys.executable, "-c", RACE_ROUNDS, "7", str(rounds)], cwd=REPO, capture_output=True,
                            text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stderr[-2000:]
    probes, complete, threads = map(int, result.stdout.split())
    assert probes >= 3  # the Kubernetes probes of both paths
    assert 0 < complete < rounds  # some sweeps got every result, others ended first: the race was run
    assert threads == 1  # no reader left waiting on an event loop that has gone


def test_check_loads_what_it_needs_before_its_first_calls_in_the_order_that_lets_them_start_first() -> None:
    """What `check` loads before its reads start (checks/prefetch.py) stays small: the configs, the reader's
    fork and the runner, not the stage tables, probes, judges, parsers or the kubernetes client; and the
    tables, once loaded, do not pull the parsers in (a sweep imports them while its calls run)."""
    code = ("import sys; import tui.cli, tui.headless, checks.kube_process, checks.prefetch, checks.runner, "
            "checks.node_cache, checks.target\n"
            "early = sorted(m for m in ('checks.paths', 'checks.probes', 'checks.judges', 'checks.parsers', "
            "'checks.engine', 'kubernetes') if m in sys.modules)\n"
            "import checks.paths, checks.engine\n"
            "print(early, 'checks.parsers' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.stdout.strip() == "[] False", result.stdout + result.stderr[-2000:]
