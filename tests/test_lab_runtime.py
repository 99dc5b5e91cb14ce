"""The lab runtime starts quickly, writes real-format configs and tool wrappers, and leaves nothing behind."""

from __future__ import annotations

import base64
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from lab import state as lab_state
from lab.runtime import LabError, knobs_from_environment, start_lab
from tests.paths import REPO
from tests.procs import live_command_lines
from tests.test_lab_kubeapi import raw_request


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie still answers kill(0): look at its state
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def _processes_mentioning(text: str) -> list[int]:
    """Live processes whose command line contains `text` (read from /proc)."""
    return list(live_command_lines(text))


def test_start_lab_is_quick_and_stop_leaves_nothing_running() -> None:
    started = time.monotonic()
    handle = start_lab("healthy")
    elapsed = time.monotonic() - started
    pid = handle.process.pid
    state_dir = handle.state_dir
    try:
        assert elapsed < 5.0, f"lab start took {elapsed:.2f} s (target 1.5 s)"
        assert handle.alive() and handle.api_url.startswith("https://127.0.0.1:")
        code, _, body = raw_request(handle, "GET", "/api/v1/nodes/gpu-node-1")
        assert code == 200 and json.loads(body)["status"]["capacity"]["nvidia.com/gpu"] == "2"
        assert lab_state.load(state_dir)["scenario"] == "healthy"
        assert os.getpgid(pid) == pid, "the API server runs in its own process group"
    finally:
        handle.stop()
    assert not _alive(pid)
    with pytest.raises(ProcessLookupError):
        os.killpg(pid, 0)
    assert not state_dir.exists(), "a temporary state directory is removed on stop"
    handle.stop()  # idempotent


def test_configs_are_real_format_with_secret_markers(tmp_path: Path) -> None:
    with start_lab("fresh", state_dir=tmp_path / "lab") as handle:
        talosconfig = yaml.safe_load(handle.talosconfig.read_text())
        assert talosconfig["context"] == "lab"
        context = talosconfig["contexts"]["lab"]
        assert context["nodes"] == ["10.5.0.2"] and context["endpoints"] == ["10.5.0.2"]
        assert base64.b64decode(context["ca"]).decode().startswith("-----BEGIN CERTIFICATE-----")
        assert "SECRET" in base64.b64decode(context["key"]).decode()
        assert handle.talosconfig.read_text().startswith("context: lab\ncontexts:\n    lab:\n        endpoints:\n")

        kubeconfig = yaml.safe_load(handle.kubeconfig.read_text())
        assert kubeconfig["current-context"] == "lab"
        cluster = kubeconfig["clusters"][0]["cluster"]
        assert cluster["server"] == handle.api_url
        assert base64.b64decode(cluster["certificate-authority-data"]) == handle.ca_path.read_bytes()
        token = kubeconfig["users"][0]["user"]["token"]
        assert token.startswith("lab-SECRET-") and token == handle.api_token
        for secret_file in (handle.kubeconfig, handle.talosconfig, handle.state_dir / "server.key",
                            handle.state_dir / "apiserver.token"):
            assert secret_file.stat().st_mode & 0o077 == 0, f"{secret_file.name} must be private"
    assert (tmp_path / "lab" / "state.json").exists(), "a given state directory is kept"


def test_tool_wrappers_and_environment(lab_session: object) -> None:
    handle = lab_session
    handle.reset("healthy")
    for tool in ("talosctl", "helm"):
        wrapper = handle.bin_dir / tool
        assert os.access(wrapper, os.X_OK)
        # the native client (lab/apid_client.c) where a compiler was found; its fallback is always there
        native = wrapper.read_bytes().startswith(b"\x7fELF")
        assert native == (shutil.which("cc") is not None or shutil.which("gcc") is not None)
        script = handle.bin_dir / f".{tool}.py"
        text = script.read_text()
        assert text.splitlines()[0] == f"#!{sys.executable} -S" and os.access(script, os.X_OK)
        assert "subprocess" not in text and "os.system" not in text
    env = {**os.environ, **handle.env}
    assert env["PATH"].split(os.pathsep)[0] == str(handle.bin_dir)
    extensions = subprocess.run(["talosctl", "get", "extensions"], env=env, capture_output=True, text=True, timeout=30)
    assert extensions.returncode == 0 and "nvidia-open-gpu-kernel-modules-production" in extensions.stdout
    releases = subprocess.run(["helm", "list", "-A"], env=env, capture_output=True, text=True, timeout=30)
    assert releases.returncode == 0 and "nvidia-device-plugin-0.17.3" in releases.stdout

    lines = handle.export_lines().splitlines()
    assert [shlex.split(line)[1].split("=")[0] for line in lines] == ["KUBECONFIG", "TALOSCONFIG", "PATH"]
    assert shlex.split(lines[0])[1] == f"KUBECONFIG={handle.kubeconfig}"
    assert lines[2].endswith(':"$PATH"')


def test_knobs_come_from_the_environment(tmp_path: Path) -> None:
    knobs = knobs_from_environment({"TALOS_GPU_LAB_API_LATENCY_MS": "25", "TALOS_GPU_LAB_REBOOT_S": "1.5",
                                    "TALOS_GPU_LAB_TALOSCTL_LATENCY_MS": ""})
    assert knobs == {"api_latency_ms": 25, "reboot_s": 1.5}
    with pytest.raises(LabError, match="TALOS_GPU_LAB_REBOOT_S"):
        knobs_from_environment({"TALOS_GPU_LAB_REBOOT_S": "soon"})
    env = {**os.environ, "TALOS_GPU_LAB_TALOSCTL_LATENCY_MS": "7"}
    code = ("import json, sys; from pathlib import Path; from lab.runtime import start_lab\n"
            "h = start_lab('fresh', state_dir=Path(sys.argv[1]), knobs={'reboot_s': 2.0})\n"
            "print(json.dumps(json.loads((h.state_dir / 'state.json').read_text())['knobs'])); h.stop()\n")
    result = subprocess.run([sys.executable, "-c", code, str(tmp_path / "lab")], env=env, cwd=REPO,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    knobs = json.loads(result.stdout)
    assert knobs["talosctl_latency_ms"] == 7 and knobs["reboot_s"] == 2.0 and knobs["api_latency_ms"] == 0


def test_exit_without_stop_still_kills_the_server(tmp_path: Path) -> None:
    code = ("import sys; from pathlib import Path; from lab.runtime import start_lab\n"
            "h = start_lab('fresh', state_dir=Path(sys.argv[1]))\n"
            "print(h.process.pid, flush=True)\n")
    result = subprocess.run([sys.executable, "-c", code, str(tmp_path / "lab")], cwd=REPO, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    pid = int(result.stdout.strip())
    assert not _alive(pid), "the atexit hook stops the API server"


def test_run_foreground_prints_exports_and_cleans_up_on_ctrl_c() -> None:
    process = subprocess.Popen([sys.executable, "-m", "lab.runtime", "run", "--scenario", "healthy"], cwd=REPO,
                               stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               start_new_session=True)
    try:
        exports: dict[str, str] = {}
        assert process.stdout is not None
        deadline = time.monotonic() + 30
        while len(exports) < 3 and time.monotonic() < deadline:
            line = process.stdout.readline()
            if not line:
                break
            if line.startswith("export "):
                key, _, value = shlex.split(line)[1].partition("=")
                exports[key] = value
        assert set(exports) == {"KUBECONFIG", "TALOSCONFIG", "PATH"}
        state_dir = Path(exports["KUBECONFIG"]).parent
        kubeconfig = yaml.safe_load(Path(exports["KUBECONFIG"]).read_text())
        assert kubeconfig["clusters"][0]["cluster"]["server"].startswith("https://127.0.0.1:")
        assert (state_dir / "bin" / "talosctl").exists()
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=15) == 0
        assert not state_dir.exists()
        assert _processes_mentioning(str(state_dir)) == []
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def test_server_exits_when_the_process_that_started_it_is_killed(tmp_path: Path) -> None:
    code = ("import sys, time; from pathlib import Path; from lab.runtime import start_lab\n"
            "h = start_lab('fresh', state_dir=Path(sys.argv[1])); print(h.process.pid, flush=True); time.sleep(60)\n")
    parent = subprocess.Popen([sys.executable, "-c", code, str(tmp_path / "lab")], cwd=REPO, stdout=subprocess.PIPE,
                              text=True)
    try:
        assert parent.stdout is not None
        server = int(parent.stdout.readline())
        assert _alive(server)
        parent.kill()
        parent.wait()
        deadline = time.monotonic() + 10
        while _alive(server) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _alive(server)
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()


def test_extra_nodes_are_served_but_not_in_state_json(tmp_path: Path) -> None:
    with start_lab("healthy", state_dir=tmp_path / "lab", extra_nodes=20) as handle:
        state = json.loads((handle.state_dir / "state.json").read_text())
        assert [n["metadata"]["name"] for n in state["kube"]["nodes"]] == ["gpu-node-1"]
        env = {**os.environ, **handle.env}
        names = subprocess.run(["kubectl", "get", "nodes", "-o", "name"], env=env, capture_output=True,
                               text=True, timeout=30, check=True).stdout.split()
        assert len(names) == 21 and "node/worker-0020" in names


def test_talos_gpu_works_in_the_shell_the_lab_export_lines_are_pasted_into(tmp_path: Path) -> None:
    """`talos-gpu lab` (the installed script), its export lines pasted into a new shell whose PATH knows
    nothing of the virtualenv: `talos-gpu check` runs there, against the lab (issue 16)."""
    script = Path(sys.executable).parent / "talos-gpu"
    assert os.access(script, os.X_OK), "the test environment installs the talos-gpu script"
    lab_proc = subprocess.Popen([str(script), "lab", "--scenario", "healthy"], stdout=subprocess.PIPE, text=True,
                                stdin=subprocess.DEVNULL, env={**os.environ, "TMPDIR": str(tmp_path)})
    try:
        assert lab_proc.stdout is not None
        exports = []
        for line in lab_proc.stdout:
            if line.startswith("export "):
                exports.append(line.rstrip("\n"))
            if len(exports) == 3:
                break
        assert len(exports) == 3
        shell = "\n".join([*exports, "command -v talos-gpu", "talos-gpu check -o json"])
        bare = {"HOME": str(tmp_path), "PATH": "/usr/bin:/bin", "XDG_CACHE_HOME": str(tmp_path / "cache")}
        result = subprocess.run(["bash", "-c", shell], env=bare, capture_output=True, text=True, timeout=60,
                                stdin=subprocess.DEVNULL)
        assert result.returncode == 0, result.stderr
        found, report = result.stdout.split("\n", 1)
        assert Path(found) == script
        assert '"overall": "pass"' in report
    finally:
        lab_proc.terminate()
        lab_proc.wait(timeout=30)
        if lab_proc.stdout is not None:
            lab_proc.stdout.close()
