"""Odd config files and odd answers (issue 15).

Config files: only a regular file or a pipe that ends is read, once (`--kubeconfig <(cat kc)` works),
at most 16 MB; a FIFO nobody writes to, `/dev/zero` or a huge file is one line and exit 2, at once.

Answers: the Kubernetes API's are read in linear time up to 64 MB (past it: `unknown`); a 429 is
retried only when its Retry-After fits the sweep; a body cut short, invalid JSON or an object of
the wrong kind is `unknown` with the reason, never `fail` and never an empty result. A talosctl
answer of the wrong resource kind is `unknown` too. The lab's `api_answer` / `api_status` knobs
and a talosctl shim make the answers.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.paths import REPO
from tests.test_faults_talosctl import assert_one_line_error, run_cli

FIFO_WAIT_LIMIT_S = 3.0  # a refused file is refused at once: well under the 5 s a pipe may take


def stages(result: subprocess.CompletedProcess[str]) -> dict[str, dict[str, Any]]:
    assert "Traceback" not in result.stderr, result.stderr[-2000:]
    return {s["id"]: s for s in json.loads(result.stdout)["stages"]}


# ---- config files ----------------------------------------------------------------------------------


@pytest.mark.parametrize("which", ["--kubeconfig", "--talosconfig", "--profile"])
def test_a_fifo_nobody_writes_to_is_one_line_at_once(lab: Any, tmp_path: Path, which: str) -> None:
    handle = lab("healthy")
    fifo = tmp_path / "config fifo"
    os.mkfifo(fifo)
    started = time.monotonic()
    result = run_cli(handle.env, "check", "--json", which, str(fifo), timeout=30)
    assert time.monotonic() - started < FIFO_WAIT_LIMIT_S + 2
    assert_one_line_error(result, str(fifo), "is a FIFO with nothing written to it")


@pytest.mark.parametrize("which", ["--kubeconfig", "--talosconfig", "--profile"])
def test_dev_zero_is_refused_as_a_device(lab: Any, which: str) -> None:
    handle = lab("healthy")
    result = run_cli(handle.env, "check", "--json", which, "/dev/zero", timeout=30)
    assert_one_line_error(result, "/dev/zero", "is a character device, not a file")


def test_a_huge_config_file_is_refused_without_reading_it(lab: Any, tmp_path: Path) -> None:
    handle = lab("healthy")
    huge = tmp_path / "kubeconfig"
    with open(huge, "wb") as stream:
        stream.truncate(2 * 1024 * 1024 * 1024)  # 2 GB, sparse
    result = run_cli(handle.env, "check", "--json", "--kubeconfig", str(huge), timeout=30)
    assert_one_line_error(result, str(huge), "is 2048 MB, more than the 16 MB a config file may have")


def test_a_pipe_that_never_ends_is_refused_after_its_wait(lab: Any, tmp_path: Path) -> None:
    handle = lab("healthy")
    fifo = tmp_path / "slow fifo"
    os.mkfifo(fifo)
    writer = subprocess.Popen(["sh", "-c", 'exec 3>"$0"; printf "apiVersion: v1\\n" >&3; sleep 30', str(fifo)])
    try:
        result = run_cli(handle.env, "check", "--json", "--kubeconfig", str(fifo), timeout=30)
    finally:
        writer.kill()
        writer.wait()
    assert_one_line_error(result, str(fifo), "the pipe did not deliver the whole file within 5s")


def test_process_substitution_configs_are_read_once_and_work(lab: Any) -> None:
    """`--kubeconfig <(cat kc) --profile <(…)`: read once, handed to the Kubernetes client (and helm) as
    a private copy. (The talosconfig is a file here: the lab's talosctl finds its state next to it, so
    a copy elsewhere would not reach the lab; real talosctl reads the copy like any file.)"""
    handle = lab("healthy")
    script = ('exec "$0" -m tui.cli check --json --timeout 20 --kubeconfig <(cat "$KC") '
              '--talosconfig "$TC" --profile <(printf "gpu_count: 2\\n")')
    env = {**os.environ, **handle.env, "KC": handle.env["KUBECONFIG"], "TC": handle.env["TALOSCONFIG"]}
    result = subprocess.run(["bash", "-c", script, sys.executable], cwd=REPO, env=env, capture_output=True,
                            text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, (result.stdout[-2000:], result.stderr[-2000:])
    assert json.loads(result.stdout)["overall"] == "pass"


# ---- Kubernetes API answers ---------------------------------------------------------------------------


def check(handle: Any, timeout: float = 10, cache: Path | None = None) -> tuple[subprocess.CompletedProcess[str], float]:
    started = time.monotonic()
    env = {**handle.env, **({"XDG_CACHE_HOME": str(cache)} if cache is not None else {})}
    result = run_cli(env, "check", "--json", "--timeout", str(timeout), timeout=60)
    return result, time.monotonic() - started


def requests_to(handle: Any, needle: str) -> int:
    log = Path(handle.state_dir) / "requests.log"
    return sum(needle in json.loads(line)["path"] for line in log.read_text().splitlines() if line.strip())


def test_a_429_with_a_long_retry_after_is_unknown_at_once(lab: Any) -> None:
    handle = lab("healthy", faults={"api_status": {"path_regex": "runtimeclasses", "code": 429, "retry_after": 600}})
    result, wall = check(handle, timeout=10)
    assert result.returncode == 1 and wall < 8, (wall, result.stderr[-1000:])
    runtimeclass = stages(result)["runtimeclass"]
    assert runtimeclass["status"] == "unknown", runtimeclass
    assert "HTTP 429" in runtimeclass["summary"] and "Retry-After 600s is past the sweep's time limit" in \
        runtimeclass["summary"]


def test_a_429_with_a_short_retry_after_is_retried_once_then_unknown(lab: Any) -> None:
    handle = lab("healthy", faults={"api_status": {"path_regex": "runtimeclasses", "code": 429, "retry_after": 1}})
    before = requests_to(handle, "runtimeclasses/nvidia")
    result, _ = check(handle, timeout=15)
    assert requests_to(handle, "runtimeclasses/nvidia") - before == 2  # waited 1 s, asked again
    runtimeclass = stages(result)["runtimeclass"]
    assert runtimeclass["status"] == "unknown" and "HTTP 429" in runtimeclass["summary"], runtimeclass


def test_a_429_on_the_node_is_unknown_not_fail(lab: Any) -> None:
    handle = lab("healthy", faults={"api_status": {"path_regex": "/api/v1/nodes", "code": 429, "retry_after": 60}})
    cluster = stages(check(handle)[0])["cluster"]
    assert cluster["status"] == "unknown" and "HTTP 429" in cluster["summary"], cluster


@pytest.mark.parametrize(("answer", "words"), [
    ({"cut": True}, "the answer was cut short"),
    ({"body": '{"kind": "NodeList", "items": [{"metadata": '}, "not JSON (cut short?)"),
    ({"body": "<html>proxy error</html>"}, "not JSON"),
    ({"body": '{"kind": "PodList", "apiVersion": "v1", "items": []}'}, "answered 'PodList', not a Node"),
    ({"body": '["a", "list"]'}, "a JSON list, not an object"),
], ids=["cut", "truncated-json", "html", "wrong-kind", "array"])
def test_a_broken_node_list_is_unknown_with_the_reason(lab: Any, tmp_path: Path, answer: dict[str, Any],
                                                       words: str) -> None:
    handle = lab("healthy", faults={"api_answer": {"path_regex": "^/api/v1/nodes", **answer}})
    result, _ = check(handle, cache=tmp_path)  # an empty cache: nothing remembered from an earlier run
    assert result.returncode == 1
    cluster = stages(result)["cluster"]
    assert cluster["status"] == "unknown" and words in cluster["summary"], cluster
    assert "no Kubernetes Node has address" not in cluster["summary"]


@pytest.mark.parametrize(("body", "words"), [
    ('{"kind": "Pod", "apiVersion": "v1", "metadata": {"name": "nvidia"}}', "answered 'Pod', not a RuntimeClass"),
    ("not json at all", "not JSON"),
    ("", "an empty body"),
])
def test_a_broken_runtimeclass_answer_is_unknown_never_fail(lab: Any, body: str, words: str) -> None:
    handle = lab("healthy", faults={"api_answer": {"path_regex": "runtimeclasses", "body": body}})
    runtimeclass = stages(check(handle)[0])["runtimeclass"]
    assert runtimeclass["status"] == "unknown" and words in runtimeclass["summary"], runtimeclass


def test_a_list_whose_items_are_not_objects_is_unknown(lab: Any) -> None:
    handle = lab("healthy", faults={"api_answer": {"path_regex": "daemonsets",
                                                   "body": '{"kind": "DaemonSetList", "items": ["x", 1]}'}})
    plugin = stages(check(handle)[0])["device-plugin"]
    assert plugin["status"] == "unknown" and "items are not objects" in plugin["summary"], plugin


def test_a_30_mb_node_is_read_and_judged(lab: Any) -> None:
    handle = lab("healthy", faults={"api_answer": {"path_regex": "^/api/v1/nodes", "pad_mb": 30}})
    result, _ = check(handle, timeout=30)
    assert result.returncode == 0, stages(result)["cluster"]


def test_a_100_mb_node_is_unknown_past_the_bound(lab: Any) -> None:
    handle = lab("healthy", faults={"api_answer": {"path_regex": "^/api/v1/nodes", "pad_mb": 100}})
    result, _ = check(handle, timeout=30)
    cluster = stages(result)["cluster"]
    assert cluster["status"] == "unknown" and "larger than 64 MB" in cluster["summary"], cluster


# ---- talosctl answers of the wrong kind ------------------------------------------------------------------


def test_a_talosctl_answer_of_the_wrong_resource_kind_is_unknown(lab: Any, tmp_path: Path) -> None:
    """The issue's repro: another resource (here the extensions) answering `get pcidevices` read as "0 GPUs"."""
    handle = lab("healthy")
    real = Path(handle.bin_dir) / "talosctl"
    shim = tmp_path / "talosctl"
    shim.write_text(f"#!{sys.executable} -S\nimport os, sys\n"
                    "argv = ['extensions' if a == 'pcidevices' else a for a in sys.argv[1:]]\n"
                    f"os.execv({str(real)!r}, [{str(real)!r}, *argv])\n")
    shim.chmod(0o755)
    result = run_cli({**handle.env, "TALOSCTL": str(shim)}, "check", "--json", "--timeout", "10")
    assert result.returncode == 1
    gpu = stages(result)["gpu-resources"]
    assert gpu["status"] == "unknown", gpu
    assert "not a pcidevice (the wrong kind of answer)" in gpu["summary"], gpu
