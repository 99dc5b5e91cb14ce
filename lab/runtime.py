"""Start, run and stop a lab: state directory, configs, tool wrappers and the API server process.

    start_lab("healthy") -> LabHandle          # from Python (tests, `talos-gpu demo`)
    python -m lab.runtime run --scenario NAME  # foreground lab for a shell: prints `export` lines
    python -m lab.runtime serve --state DIR    # the API server itself (started by start_lab)

A lab is a state directory (lab/CONTRACT.md) plus one child process, the Kubernetes API server,
started in its own session so that `stop()` (also run at interpreter exit) kills its whole
process group. Files this module adds to the state directory: `talosconfig`, `kubeconfig`,
`bin/talosctl`, `bin/helm`, `apiserver.token` (0600), `apiserver.port`, `apiserver.log`, and the
socket `apid.sock` of the server that runs those two tools warm (lab/apid.py; a child of the API
server process, in its process group).
"""

from __future__ import annotations

import argparse
import atexit
import base64
import contextlib
import os
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from lab import releases, scenarios
from lab import state as lab_state
from lab.certs import PendingCertificate

PACKAGE_ROOT = Path(__file__).resolve().parent.parent
TOKEN_FILE = "apiserver.token"
PORT_FILE = "apiserver.port"
LOG_FILE = "apiserver.log"
START_TIMEOUT_S = 20.0
STOP_GRACE_S = 2.0
KNOB_VARIABLES = {
    "TALOS_GPU_LAB_TALOSCTL_LATENCY_MS": "talosctl_latency_ms",
    "TALOS_GPU_LAB_API_LATENCY_MS": "api_latency_ms",
    "TALOS_GPU_LAB_REBOOT_S": "reboot_s",
    "TALOS_GPU_LAB_BOOT_FAIL_WAIT_S": "boot_fail_wait_s",
}
PLACEHOLDER_CERT = "-----BEGIN CERTIFICATE-----\nTEFCIFBMQUNFSE9MREVSOiBub3QgYSByZWFsIGNlcnRpZmljYXRl\n-----END CERTIFICATE-----\n"


class LabError(RuntimeError):
    """The lab could not start."""


TALOS_VERSION_VARIABLE = "TALOS_GPU_LAB_TALOS_VERSION"  # the Talos release a lab starts on when none is given


def talos_version_from_environment(given: str | None = None, environ: Mapping[str, str] | None = None, *,
                                   scenario: str | None = None) -> str:
    """The release to run: ``given``, else $TALOS_GPU_LAB_TALOS_VERSION, else the scenario's own (v1.13.9 for
    the GPU Operator scenarios, v1.11.5 for the others); ValueError when unknown."""
    environ = os.environ if environ is None else environ
    default = scenarios.OPERATOR_DEFAULT_VERSION if scenario in scenarios.OPERATOR_SCENARIOS else releases.DEFAULT
    version = given or environ.get(TALOS_VERSION_VARIABLE, "").strip() or default
    return releases.check_known(version)


def knobs_from_environment(environ: Mapping[str, str] | None = None) -> dict[str, float]:
    """TALOS_GPU_LAB_* timing variables -> state["knobs"] entries (only those that are set)."""
    environ = os.environ if environ is None else environ
    knobs: dict[str, float] = {}
    for variable, knob in KNOB_VARIABLES.items():
        raw = environ.get(variable, "").strip()
        if not raw:
            continue
        try:
            value = float(raw)
        except ValueError as error:
            raise LabError(f"{variable} must be a number, got {raw!r}") from error
        if value < 0:
            raise LabError(f"{variable} must not be negative, got {raw!r}")
        knobs[knob] = int(value) if knob.endswith("_ms") and value.is_integer() else value
    return knobs


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def talosconfig_text(node: str) -> str:
    """A real-format talosconfig with placeholder credentials (the key is a SECRET marker)."""
    key = ("-----BEGIN ED25519 PRIVATE KEY-----\n"
           f"LAB-SECRET-talos-key-{secrets.token_hex(12)}\n"
           "-----END ED25519 PRIVATE KEY-----\n")
    return (
        "context: lab\n"
        "contexts:\n"
        "    lab:\n"
        "        endpoints:\n"
        f"            - {node}\n"
        "        nodes:\n"
        f"            - {node}\n"
        f"        ca: {_b64(PLACEHOLDER_CERT)}\n"
        f"        crt: {_b64(PLACEHOLDER_CERT)}\n"
        f"        key: {_b64(key)}\n"
    )


def kubeconfig_text(api_url: str, ca_pem: bytes, token: str) -> str:
    return (
        "apiVersion: v1\n"
        "kind: Config\n"
        "clusters:\n"
        "- cluster:\n"
        f"    certificate-authority-data: {base64.b64encode(ca_pem).decode()}\n"
        f"    server: {api_url}\n"
        "  name: lab\n"
        "contexts:\n"
        "- context:\n"
        "    cluster: lab\n"
        "    user: admin\n"
        "  name: lab\n"
        "current-context: lab\n"
        "preferences: {}\n"
        "users:\n"
        "- name: admin\n"
        "  user:\n"
        f"    token: {token}\n"
    )


APID_SOCKET = "apid.sock"
UNIX_PATH_MAX = 100  # sun_path is 104 (macOS) or 108 (Linux) bytes: stay below both


def apid_socket_path(state_dir: Path) -> Path | None:
    """Where the lab's apid server listens (lab/apid.py), or None when the path is too long for a
    Unix socket (the tools then run in-process, as they would without the server)."""
    path = state_dir / APID_SOCKET
    return path if len(os.fsencode(path)) < UNIX_PATH_MAX else None


def _wrapper_script(module: str, tool: str, socket_path: Path | None) -> str:
    # `-S` skips site processing (~35 ms of CPU per call here: .pth files, the editable-install
    # finder); the few paths the lab needs are put on sys.path by hand. A real talosctl is a Go
    # binary that starts in a few ms: the fake should not be what a benchmark of the app measures.
    import sysconfig

    from lab.apid import client_script

    paths = [str(PACKAGE_ROOT), sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]]
    return client_script(tool, module, str(socket_path) if socket_path else "", list(dict.fromkeys(paths)),
                         sys.executable)


def write_tool_wrappers(bin_dir: Path, socket_path: Path | None = None) -> None:
    """`bin/talosctl` and `bin/helm`: clients of the lab's apid server at `socket_path` (lab/apid.py)
    that run the tool themselves when no server answers. Native (lab/apid_client.c) where a C
    compiler is found, with the Python client `bin/.<tool>.py` as their fallback; else that Python
    client itself."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    scripts = {}
    for tool, module in (("talosctl", "lab.talosctl"), ("helm", "lab.helm")):
        script = bin_dir / f".{tool}.py"
        script.write_text(_wrapper_script(module, tool, socket_path))
        script.chmod(0o755)
        scripts[tool] = script
    native = _build_native_client(bin_dir, socket_path) if socket_path is not None else None
    for tool, script in scripts.items():
        path = bin_dir / tool
        path.unlink(missing_ok=True)
        if native is not None:
            os.link(native, path)
        else:
            shutil.copyfile(script, path)
            path.chmod(0o755)
    if native is not None:
        native.unlink()


NATIVE_CLIENT_SOURCE = Path(__file__).with_name("apid_client.c")


def _build_native_client(bin_dir: Path, socket_path: Path) -> Path | None:
    """Compile lab/apid_client.c with the socket and bin directory baked in; None without a compiler
    (or if it fails: the Python client does the same job, only slower to start)."""
    compiler = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if not compiler or any(char in str(path) for path in (bin_dir, socket_path) for char in '"\\\n'):
        return None
    output = bin_dir / ".apid-client"
    command = [compiler, "-O2", "-o", str(output), f'-DAPID_SOCKET="{socket_path}"', f'-DBIN_DIR="{bin_dir}"',
               str(NATIVE_CLIENT_SOURCE)]
    try:
        built = subprocess.run(command, stdin=subprocess.DEVNULL, capture_output=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return output if built.returncode == 0 and output.exists() else None


def _write_private(path: Path, text: str) -> None:
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(text)


def build_state(scenario: str, *, knobs: Mapping[str, Any] | None = None, faults: Mapping[str, Any] | None = None,
                extra_nodes: int = 0, talos_version: str | None = None) -> dict[str, Any]:
    """The initial state for `scenario` on `talos_version` (else $TALOS_GPU_LAB_TALOS_VERSION, else v1.11.5),
    with env knobs, then explicit knobs and faults applied."""
    state = scenarios.build(scenario, extra_nodes=extra_nodes,
                            talos_version=talos_version_from_environment(talos_version, scenario=scenario))
    state.setdefault("knobs", {}).update(knobs_from_environment())
    state["knobs"].update(dict(knobs or {}))
    if faults:
        state.setdefault("faults", {}).update(dict(faults))
    return state


INFRA_DIR = "infra"  # the demo's infra repo inside the state directory (tui/demo.py DEMO_INFRA_DIR)


def write_infra_files(state_dir: Path, state: dict[str, Any]) -> None:
    """A scenario's infra-repo files (``state["infra_files"]``: relative path -> content), written into
    the state directory's ``infra/`` repo, emptied first (a new scenario starts from its own files); the
    key is not kept in state.json."""
    shutil.rmtree(Path(state_dir) / INFRA_DIR, ignore_errors=True)
    for relative, content in (state.pop("infra_files", None) or {}).items():
        path = Path(state_dir) / INFRA_DIR / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content, encoding="utf-8")


@dataclass
class LabHandle:
    """A running lab. Use as a context manager, or call `stop()`; nothing is left running after it."""

    state_dir: Path
    api_url: str
    kubeconfig: Path
    talosconfig: Path
    bin_dir: Path
    env: dict[str, str]
    scenario: str
    extra_nodes: int = 0
    talos_version: str | None = None
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    owns_state_dir: bool = False
    _stopped: bool = field(default=False, repr=False)

    def export_lines(self) -> str:
        """Shell lines pointing kubectl, talosctl, helm and talos-gpu at this lab. PATH also gets the
        directory of the `talos-gpu` that runs the lab (a virtualenv's bin), so that `talos-gpu check`
        works in the shell the lines are pasted into."""
        path = [str(self.bin_dir)]
        own = talos_gpu_dir()
        if own is not None and own != self.bin_dir:
            path.append(str(own))
        return "\n".join([
            f"export KUBECONFIG={shlex.quote(str(self.kubeconfig))}",
            f"export TALOSCONFIG={shlex.quote(str(self.talosconfig))}",
            f'export PATH={":".join(shlex.quote(p) for p in path)}:"$PATH"',
        ])

    @property
    def api_token(self) -> str:
        """The API server's bearer token (a SECRET marker: never print it)."""
        return (self.state_dir / TOKEN_FILE).read_text().strip()

    @property
    def ca_path(self) -> Path:
        return self.state_dir / "server.crt"

    def reset(self, scenario: str, *, knobs: Mapping[str, Any] | None = None,
              faults: Mapping[str, Any] | None = None) -> None:
        """Re-initialise state.json to `scenario` (the server picks it up on its next request), on the lab's
        Talos release; a GPU Operator scenario on a release before 1.13 runs on its own default (v1.13.9)."""
        version = self.talos_version
        if scenario in scenarios.OPERATOR_SCENARIOS and not releases.get(version).cdi:
            version = scenarios.OPERATOR_DEFAULT_VERSION
        state = build_state(scenario, knobs=knobs, faults=faults, extra_nodes=self.extra_nodes,
                            talos_version=version)
        write_infra_files(self.state_dir, state)
        lab_state.init(self.state_dir, state)
        self.scenario = scenario

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        with contextlib.suppress(Exception):
            atexit.unregister(self.stop)
        if self.process is not None:
            _kill_process_group(self.process)
        if self.owns_state_dir:
            shutil.rmtree(self.state_dir, ignore_errors=True)

    def __enter__(self) -> LabHandle:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.stop()


def _kill_process_group(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            pass
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=STOP_GRACE_S)


def _log_tail(path: Path, lines: int = 5) -> str:
    try:
        return " | ".join(path.read_text(errors="replace").strip().splitlines()[-lines:])
    except OSError:
        return "no log"


def start_lab(scenario: str = "fresh", *, state_dir: Path | None = None, knobs: dict | None = None,
              extra_nodes: int = 0, faults: dict | None = None, talos_version: str | None = None) -> LabHandle:
    """Build the scenario's state, write configs and wrappers, start the API server; return the handle."""
    # an unknown one: ValueError, nothing started
    talos_version = talos_version_from_environment(talos_version, scenario=scenario)
    owns = state_dir is None
    directory = Path(tempfile.mkdtemp(prefix="talos-gpu-lab-")) if state_dir is None else Path(state_dir)
    directory.mkdir(parents=True, exist_ok=True)
    directory = directory.resolve()
    process: subprocess.Popen[bytes] | None = None
    try:
        for stale in (PORT_FILE, "server.crt", "server.key"):
            (directory / stale).unlink(missing_ok=True)
        certificate = PendingCertificate(directory)
        state = build_state(scenario, knobs=knobs, faults=faults, extra_nodes=extra_nodes,
                            talos_version=talos_version)
        write_infra_files(directory, state)
        lab_state.init(directory, state)
        token = f"lab-SECRET-token-{secrets.token_hex(16)}"
        _write_private(directory / TOKEN_FILE, token + "\n")
        talosconfig = directory / "talosconfig"
        _write_private(talosconfig, talosconfig_text(str(state["talos"]["node"])))
        bin_dir = directory / "bin"
        socket_path = apid_socket_path(directory)
        write_tool_wrappers(bin_dir, socket_path)
        cert = certificate.wait()

        environment = dict(os.environ)
        environment["PYTHONPATH"] = os.pathsep.join(
            [str(PACKAGE_ROOT), *filter(None, [environment.get("PYTHONPATH")])])
        log = open(directory / LOG_FILE, "ab")  # noqa: SIM115 - handed to the child, closed below
        try:
            process = subprocess.Popen(
                [sys.executable, "-m", "lab.runtime", "serve", "--state", str(directory), "--port", "0",
                 *(["--apid-socket", str(socket_path)] if socket_path else [])],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=environment, cwd=str(directory),
                start_new_session=True,
            )
        finally:
            log.close()
        port = _wait_for_port(directory, process)
        if socket_path is not None:
            _wait_for_socket(socket_path, process)
        api_url = f"https://127.0.0.1:{port}"
        kubeconfig = directory / "kubeconfig"
        _write_private(kubeconfig, kubeconfig_text(api_url, cert.cert_pem(), token))
    except BaseException:
        if process is not None:
            _kill_process_group(process)
        if owns:
            shutil.rmtree(directory, ignore_errors=True)
        raise
    env = {
        "KUBECONFIG": str(kubeconfig),
        "TALOSCONFIG": str(talosconfig),
        "PATH": os.pathsep.join([str(bin_dir), *filter(None, [os.environ.get("PATH")])]),
    }
    handle = LabHandle(state_dir=directory, api_url=api_url, kubeconfig=kubeconfig, talosconfig=talosconfig,
                       bin_dir=bin_dir, env=env, scenario=scenario, extra_nodes=extra_nodes, talos_version=talos_version,
                       process=process,
                       owns_state_dir=owns)
    atexit.register(handle.stop)
    return handle


def _wait_for_port(directory: Path, process: subprocess.Popen[bytes]) -> int:
    deadline = time.monotonic() + START_TIMEOUT_S
    port_file = directory / PORT_FILE
    while time.monotonic() < deadline:
        if port_file.exists():
            text = port_file.read_text().strip()
            if text.isdigit():
                return int(text)
        if process.poll() is not None:
            raise LabError(f"the lab API server exited with status {process.returncode}: {_log_tail(directory / LOG_FILE)}")
        time.sleep(0.01)
    raise LabError(f"the lab API server did not start within {START_TIMEOUT_S:.0f} s: {_log_tail(directory / LOG_FILE)}")


def _wait_for_socket(path: Path, process: subprocess.Popen[bytes]) -> None:
    """Give the apid server a moment to listen; the tools work without it, only slower."""
    deadline = time.monotonic() + START_TIMEOUT_S / 4
    while not path.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)


def talos_gpu_dir() -> Path | None:
    """The directory of the `talos-gpu` executable of this installation: the running script's when it is
    `talos-gpu`, else the one next to this Python (a virtualenv's bin); None when there is none."""
    candidates = []
    if Path(sys.argv[0]).name == "talos-gpu":
        candidates.append(Path(os.path.abspath(sys.argv[0])).parent)
    candidates.append(Path(os.path.abspath(sys.executable)).parent)  # abspath: a venv's python is a symlink
    for directory in candidates:
        if os.access(directory / "talos-gpu", os.X_OK):
            return directory
    return None


HOW_TO = """\
# The lab is running (scenario: {scenario}, Talos {talos_version}). In another shell:
{exports}
#   kubectl get nodes,ds,pods -A        talosctl get extensions        talos-gpu check
#   talos-gpu                           (the terminal UI against this lab)
# Ctrl-C here stops the lab and removes {state_dir}.
"""


def run_foreground(scenario: str = "fresh", *, state_dir: Path | None = None, talos_version: str | None = None) -> int:
    """`talos-gpu lab`: start the lab, print the export lines, wait for Ctrl-C or SIGTERM, clean up."""
    try:
        handle = start_lab(scenario, state_dir=state_dir, talos_version=talos_version)
    except (LabError, ValueError, OSError) as error:
        print(f"talos-gpu lab: {error}", file=sys.stderr)
        return 2
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    status = 0
    try:
        print(HOW_TO.format(scenario=scenario, talos_version=handle.talos_version, exports=handle.export_lines(), state_dir=handle.state_dir), flush=True)
        while not stop.wait(0.5):
            if not handle.alive():
                print(f"talos-gpu lab: the API server stopped: {_log_tail(handle.state_dir / LOG_FILE)}",
                      file=sys.stderr)
                status = 1
                break
    finally:
        handle.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return status


def _exit_with_parent(parent: int) -> None:
    """The server outlives no lab: when the process that started it is gone, it goes too."""
    while True:
        time.sleep(1.0)
        if os.getppid() != parent:
            os._exit(0)


def _serve(state_dir: Path, port: int, apid_socket: Path | None = None) -> int:
    apid = _fork_apid(apid_socket) if apid_socket is not None else None
    from lab.kubeapi.server import serve

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    threading.Thread(target=_exit_with_parent, args=(os.getppid(),), daemon=True).start()
    try:
        serve(state_dir, port)
    except KeyboardInterrupt:
        pass
    finally:
        if apid is not None:
            _stop_child(apid)
    return 0


def _stop_child(pid: int) -> None:
    """SIGTERM, then SIGKILL after a grace period; reaped either way (no zombie in the lab's group)."""
    with contextlib.suppress(OSError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE_S
    while time.monotonic() < deadline:
        with contextlib.suppress(ChildProcessError):
            if os.waitpid(pid, os.WNOHANG)[0]:
                return
        time.sleep(0.01)
    with contextlib.suppress(OSError):
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)


def _fork_apid(socket_path: Path) -> int:
    """Start the apid server (lab/apid.py) as a child, before this process starts any thread (a
    fork copies only the calling thread). It stays in this process group: stopping the lab kills it."""
    pid = os.fork()
    if pid == 0:
        status = 1
        try:
            from lab.apid import serve as serve_apid

            status = serve_apid(str(socket_path), parent=os.getppid())
        finally:
            os._exit(status)
    return pid


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lab.runtime", description="Run the talos-gpu lab.")
    commands = parser.add_subparsers(dest="command", required=True)
    serve_parser = commands.add_parser("serve", help="run the lab's Kubernetes API server (internal)")
    serve_parser.add_argument("--state", type=Path, required=True, help="the lab's state directory")
    serve_parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0: any free one)")
    serve_parser.add_argument("--apid-socket", type=Path, default=None, help="also run lab/apid.py on this socket")
    run_parser = commands.add_parser("run", help="start a lab in the foreground until Ctrl-C")
    run_parser.add_argument("--scenario", default="fresh", choices=sorted(scenarios.SCENARIOS))
    run_parser.add_argument("--state", type=Path, default=None, help="state directory (default: a temporary one)")
    run_parser.add_argument("--talos-version", default=None, choices=releases.KNOWN)
    args = parser.parse_args(argv)
    if args.command == "serve":
        return _serve(args.state.resolve(), args.port, args.apid_socket)
    return run_foreground(args.scenario, state_dir=args.state, talos_version=args.talos_version)


if __name__ == "__main__":
    sys.exit(main())
