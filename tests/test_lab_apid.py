"""The lab's apid server (lab/apid.py): the tools it runs warm behave as when they run cold.

Each test goes through the real `bin/talosctl` / `bin/helm` of a lab, as the app does.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lab import faults as lab_faults
from lab.runtime import LabHandle, apid_socket_path, start_lab
from tests.procs import live_children


@pytest.fixture(params=["native", "python"])
def handle(request, monkeypatch):
    """A lab whose bin/talosctl and bin/helm are the native client, or (no C compiler) the Python one."""
    if request.param == "python":
        monkeypatch.setenv("CC", "/bin/false")
    with start_lab("healthy") as running:
        native = (running.bin_dir / "talosctl").read_bytes().startswith(b"\x7fELF")
        assert native == (request.param == "native")
        yield running


def apid_pid(lab: LabHandle) -> int:
    assert lab.process is not None
    children = live_children(lab.process.pid)
    assert len(children) == 1, f"expected the apid server under the API server, found {children}"
    return children[0]


def wait_for(condition, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


def tool(lab: LabHandle, *argv: str, **kwargs) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([str(lab.bin_dir / argv[0]), *argv[1:]], env={**os.environ, **lab.env},
                          capture_output=True, timeout=30, **kwargs)


def cold(lab: LabHandle, *argv: str, **kwargs) -> subprocess.CompletedProcess[bytes]:
    """The same call run in-process by `python -m lab.<tool>`, without the server."""
    return subprocess.run([sys.executable, "-m", f"lab.{argv[0]}", *argv[1:]], env={**os.environ, **lab.env},
                          capture_output=True, timeout=30, cwd=Path(__file__).resolve().parents[1], **kwargs)


def test_warm_and_cold_tools_answer_byte_for_byte_the_same(handle: LabHandle) -> None:
    assert apid_socket_path(handle.state_dir) is not None and (handle.state_dir / "apid.sock").exists()
    for argv in (["talosctl", "get", "extensions", "-o", "yaml"], ["talosctl", "read", "/proc/modules"],
                 ["talosctl", "read", "/no/such/file"], ["talosctl", "get", "nope"],
                 ["talosctl", "health", "--wait-timeout", "30s"], ["talosctl", "-n", "a;b", "version"],
                 ["helm", "list", "-A", "-o", "json"], ["helm", "frobnicate"]):
        warm, cold_ = tool(handle, *argv), cold(handle, *argv)
        assert (warm.returncode, warm.stdout, warm.stderr) == (cold_.returncode, cold_.stdout, cold_.stderr), argv
    assert tool(handle, "talosctl", "get", "nope").returncode != 0


def test_the_worker_uses_the_callers_directory_environment_and_stdin(handle: LabHandle, tmp_path: Path) -> None:
    values = tmp_path / "values.yaml"
    values.write_text("runtimeClassName: nvidia\n")
    # TALOSCONFIG relative to the caller's working directory: found from the state directory only
    env = {**os.environ, **handle.env, "TALOSCONFIG": "talosconfig"}
    here = subprocess.run([str(handle.bin_dir / "talosctl"), "get", "extensions"], env=env, capture_output=True,
                          timeout=30, cwd=handle.state_dir)
    elsewhere = subprocess.run([str(handle.bin_dir / "talosctl"), "get", "extensions"], env=env,
                               capture_output=True, timeout=30, cwd=tmp_path)
    assert here.returncode == 0 and b"nvidia-open-gpu-kernel-modules" in here.stdout
    assert elsewhere.returncode != 0 and elsewhere.stdout == b""
    env = {**os.environ, **handle.env}
    piped = subprocess.run([str(handle.bin_dir / "helm"), "upgrade", "--install", "nvdp", "nvdp/nvidia-device-plugin",
                            "-n", "kube-system", "-f", "-", "--dry-run"], env=env, input=values.read_bytes(),
                           capture_output=True, timeout=30, cwd=tmp_path)
    expected = cold(handle, "helm", "upgrade", "--install", "nvdp", "nvdp/nvidia-device-plugin", "-n", "kube-system",
                    "-f", "-", "--dry-run", input=values.read_bytes())
    def steady(output: bytes) -> list[bytes]:
        return [line for line in output.splitlines() if not line.startswith(b"LAST DEPLOYED:")]

    assert piped.returncode == expected.returncode == 0
    assert steady(piped.stdout) == steady(expected.stdout) and b"runtimeClassName: nvidia" in piped.stdout


def test_output_streams_while_the_call_runs(handle: LabHandle) -> None:
    lab_faults.set_fault(handle.state_dir, "talosctl_slow_stream_ms", {"ms": 400, "only": "get extensions"})
    process = subprocess.Popen([str(handle.bin_dir / "talosctl"), "get", "extensions"], env={**os.environ, **handle.env},
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        assert process.stdout is not None
        first = process.stdout.readline()
        assert first.startswith(b"NODE") and process.poll() is None, "the first line arrives before the call ends"
    finally:
        process.kill()
        process.wait()


def _hanging_call(handle: LabHandle) -> tuple[subprocess.Popen[bytes], int]:
    lab_faults.set_fault(handle.state_dir, "talosctl_hang", True)
    server = apid_pid(handle)
    process = subprocess.Popen([str(handle.bin_dir / "talosctl"), "version"], env={**os.environ, **handle.env},
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    assert wait_for(lambda: len(live_children(server)) == 1), "a worker runs the call"
    return process, live_children(server)[0]


def test_killing_the_caller_ends_its_worker(handle: LabHandle) -> None:
    process, worker = _hanging_call(handle)
    os.killpg(process.pid, signal.SIGKILL)  # what the app's runner does on timeout or cancel
    process.wait(timeout=5)
    assert wait_for(lambda: _state(worker) in ("Z", "gone"), 5), "the worker outlived its caller"


def test_sigterm_to_the_caller_reaches_the_worker(handle: LabHandle) -> None:
    process, _worker = _hanging_call(handle)
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=5) == -signal.SIGTERM  # the worker died of it, and so does the caller
    assert wait_for(lambda: not live_children(apid_pid(handle)), 5)


def test_without_the_server_the_tools_run_in_process(handle: LabHandle) -> None:
    expected = tool(handle, "talosctl", "get", "extensions")
    assert handle.process is not None
    os.kill(apid_pid(handle), signal.SIGTERM)
    assert wait_for(lambda: not (handle.state_dir / "apid.sock").exists(), 5)
    alone = tool(handle, "talosctl", "get", "extensions")
    assert (alone.returncode, alone.stdout) == (expected.returncode, expected.stdout)


def test_requests_round_trip_any_bytes() -> None:
    from lab.apid import HEADER, encode_request, parse_request

    wire = encode_request("talosctl", b"/tmp/with space", [b"get", b"--nodes=\xff", b""], [b"A=1=2", b"EMPTY=", b"NOEQ"])
    assert HEADER.unpack_from(wire)[0] == len(wire) - HEADER.size
    tool, argv, environ, cwd = parse_request(wire[HEADER.size:])
    assert (tool, cwd) == ("talosctl", "/tmp/with space")
    assert argv == ["get", "--nodes=\udcff", ""]
    assert environ == {"A": "1=2", "EMPTY": ""}
    with pytest.raises(ValueError):
        parse_request(b"talosctl\0/\0")


def test_stopping_the_lab_stops_the_server_and_its_workers() -> None:
    lab = start_lab("healthy")
    try:
        process, worker = _hanging_call(lab)
        server = apid_pid(lab)
    finally:
        lab.stop()
    assert wait_for(lambda: not any(os.path.exists(f"/proc/{pid}") and _state(pid) != "Z" for pid in (server, worker)))
    process.kill()
    process.wait()


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0]
    except OSError:
        return "gone"
