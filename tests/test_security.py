"""Security (issue 6): no secret ever leaves, `check` and `--dry-run` never mutate, `--read-only` refuses,
every external command is an argument list whose user values cannot become options.

Marker secrets are planted in every secret field of a kubeconfig and a talosconfig (token, client key,
client certificate, password, exec-plugin env, auth-provider tokens; talos ca/crt/key), and faults make
talosctl, helm and the API server ECHO them back in their errors, so the redaction is tested on the
paths a secret really takes. Everything produced is scanned: check table, JSON and stderr, `enable
--dry-run`, `enable --yes` and its audit log, and the TUI (SVG screenshot, saved log).

Mutations are recorded at the boundary: talosctl and helm are replaced by recording shims ($TALOSCTL,
$HELM) and the lab API server logs every request to `requests.log`.
(File writes: tests/test_actions.py and the file test below; audit log: tests/test_audit.py.)
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import stat
import subprocess
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import pytest

from checks.actions import AuditLog, PlanError, plan_action, run_action
from checks.audit import read_audit
from checks.model import Status
from checks.paths import DEVICE_PLUGIN
from tests.test_faults_talosctl import (
    lab_target,
    recorded_argvs,
    recording_shims,
    run_cli,
    sweep,
)

NODE = "10.5.0.2"
TALOS_READ_ONLY = {"version", "health", "get", "read", "dmesg", "ls", "services", "service", "logs"}
HELM_READ_ONLY = {"list", "status", "version", "search", "show", "get", "template", "repo list", "env"}
TALOS_GLOBAL = {"--talosconfig", "--context", "--nodes", "--endpoints"}
HELM_GLOBAL = {"--kubeconfig", "--kube-context", "--namespace", "-n"}


# ---- planted secrets -----------------------------------------------------------------------------


# PEM bodies are base64 text: the markers use only its alphabet (the decoded body line is what a tool
# that prints the key would show)
TALOS_BODIES = {
    "ca": "talosSECRETcaMarker0102030405AAAAbbbbCCCCdddd",
    "crt": "talosSECRETcrtMarker0607080910EEEEffffGGGGhhhh",
    "key": "talosSECRETkeyMarker1112131415IIIIjjjjKKKKllll",
    "other-key": "talosSECRETotherKeyMarker1617MMMMnnnnOOOOpppp",
}


def _b64(text: str | bytes) -> str:
    return base64.b64encode(text.encode() if isinstance(text, str) else text).decode()


def _pem(kind: str, marker: str) -> str:
    return f"-----BEGIN {kind}-----\n{marker}\n-----END {kind}-----\n"


@dataclass
class Planted:
    """A kubeconfig and a talosconfig in the lab's state dir with a marker in every secret field."""

    kubeconfig: Path
    talosconfig: Path
    secrets: dict[str, str]  # field -> the value that must never appear
    fragments: list[str] = field(default_factory=list)  # decoded lines of the base64 fields

    @property
    def env(self) -> dict[str, str]:
        return {"KUBECONFIG": str(self.kubeconfig), "TALOSCONFIG": str(self.talosconfig)}

    def needles(self) -> list[str]:
        found = []
        for value in self.secrets.values():
            found.append(value)
            if len(value) >= 48:  # long base64: any slice of it would be a leak
                found += [value[:32], value[len(value) // 2: len(value) // 2 + 32], value[-32:]]
        return found + self.fragments

    def assert_absent(self, text: str, where: str) -> None:
        flat = re.sub(r"\s+", "", text)  # a secret folded across lines is still a leak
        for needle in self.needles():
            assert needle not in text and needle.replace(" ", "") not in flat, f"{where} leaks {needle[:40]!r}"


def _client_pair(directory: Path) -> tuple[str, str]:
    """A real (throw-away) client certificate and key, so the kubeconfig still loads and connects."""
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-keyout", str(directory / "client.key"), "-out", str(directory / "client.crt"),
                    "-days", "1", "-subj", "/CN=admin"], check=True, capture_output=True, timeout=30)
    return (directory / "client.crt").read_text(), (directory / "client.key").read_text()


def plant(handle: Any, tmp_path: Path) -> Planted:
    state = Path(handle.state_dir)  # the lab's tools find their state next to the configs
    cert_pem, key_pem = _client_pair(tmp_path)
    kube = state / "kubeconfig-planted"
    talos = state / "talosconfig-planted"
    secrets = {
        "token": handle.api_token,  # the lab's real bearer token: the API must still answer
        "client-certificate-data": _b64(cert_pem),
        "client-key-data": _b64(key_pem),
        "password": "kube-SECRET-password-4f1e2d3c",
        "exec-env": "kube-SECRET-exec-env-9a8b7c6d",
        "other-token": "kube-SECRET-other-token-11aa22bb",
        "id-token": "kube-SECRET-id-token-33cc44dd",
        "refresh-token": "kube-SECRET-refresh-token-55ee66ff",
        "client-secret": "kube-SECRET-client-secret-77aa88bb",
        "talos-ca": _b64(_pem("CERTIFICATE", TALOS_BODIES["ca"])),
        "talos-crt": _b64(_pem("CERTIFICATE", TALOS_BODIES["crt"])),
        "talos-key": _b64(_pem("ED25519 PRIVATE KEY", TALOS_BODIES["key"])),
        "talos-other-key": _b64(_pem("ED25519 PRIVATE KEY", TALOS_BODIES["other-key"])),
    }
    lab_kube = Path(handle.kubeconfig).read_text()
    ca_data = re.search(r"certificate-authority-data: (\S+)", lab_kube).group(1)  # type: ignore[union-attr]
    server = re.search(r"server: (\S+)", lab_kube).group(1)  # type: ignore[union-attr]
    kube.write_text(textwrap.dedent(f"""\
        apiVersion: v1
        kind: Config
        clusters:
        - cluster:
            certificate-authority-data: {ca_data}
            server: {server}
          name: lab
        contexts:
        - context: {{cluster: lab, user: admin}}
          name: lab
        - context: {{cluster: lab, user: other}}
          name: other
        current-context: lab
        users:
        - name: admin
          user:
            token: {secrets['token']}
            client-certificate-data: {secrets['client-certificate-data']}
            client-key-data: {secrets['client-key-data']}
            username: admin
            password: {secrets['password']}
            exec:
              apiVersion: client.authentication.k8s.io/v1
              command: /nonexistent/credential-plugin
              interactiveMode: Never
              env:
              - {{name: PLUGIN_SECRET, value: {secrets['exec-env']}}}
        - name: other
          user:
            token: {secrets['other-token']}
            auth-provider:
              name: oidc
              config: {{id-token: {secrets['id-token']}, refresh-token: {secrets['refresh-token']},
                        client-secret: {secrets['client-secret']}, client-id: talos-gpu}}
        """))
    talos.write_text(textwrap.dedent(f"""\
        context: lab
        contexts:
          lab:
            endpoints: [{NODE}]
            nodes: [{NODE}]
            ca: {secrets['talos-ca']}
            crt: {secrets['talos-crt']}
            key: {secrets['talos-key']}
          other:
            endpoints: [{NODE}]
            nodes: [{NODE}]
            key: {secrets['talos-other-key']}
        """))
    for path in (kube, talos):
        path.chmod(0o600)
    fragments = [line for value in (cert_pem, key_pem) for line in value.splitlines()
                 if len(line) >= 24 and not line.startswith("-----")]
    fragments += [m for m in re.findall(r"\S*SECRET\S*", json.dumps(secrets))]
    fragments += list(TALOS_BODIES.values())
    return Planted(kube, talos, secrets, fragments)


def echo_faults(planted: Planted) -> dict[str, Any]:
    """talosctl, helm and the API server quote secrets in their errors, as misbehaving tools do."""
    s = planted.secrets
    return {
        "talosctl_exit": {"only": "dmesg", "code": 1, "stderr": (
            f"rpc error: code = Unauthenticated desc = bad client key {TALOS_BODIES['key']} "
            f"for crt {s['talos-crt']}")},
        "helm_exit": {"only": "list", "code": 1, "stderr": (
            f'Error: Kubernetes cluster unreachable: Get "https://x/version": bearer {s["token"]} '
            f"password {s['password']} env PLUGIN_SECRET={s['exec-env']}")},
        "api_status": {"path_regex": "runtimeclasses", "code": 403, "message": (
            f'runtimeclasses.node.k8s.io "nvidia" is forbidden: token {s["token"]} with client key '
            f"{s['client-key-data'][40:100]} and id-token {s['id-token']}")},
    }


def requests_since(handle: Any, offset: int) -> list[dict[str, str]]:
    log = Path(handle.state_dir) / "requests.log"
    with log.open("rb") as stream:
        stream.seek(offset)
        return [json.loads(line) for line in stream.read().decode().splitlines() if line.strip()]


def requests_offset(handle: Any) -> int:
    log = Path(handle.state_dir) / "requests.log"
    return log.stat().st_size if log.exists() else 0


def _words(argv: list[str], global_flags: set[str]) -> list[str]:
    """The subcommand words of a recorded argv (tool name and global flags with their values dropped)."""
    words, skip = [], False
    for arg in argv[1:]:
        if skip:
            skip = False
        elif arg in global_flags:
            skip = True
        elif not arg.startswith("-"):
            words.append(arg)
    return words


def assert_read_only_argv(argv: list[str]) -> None:
    tool = argv[0]
    if tool == "talosctl":
        words = _words(argv, TALOS_GLOBAL)
        if words[:2] == ["patch", "mc"]:
            assert "--dry-run" in argv, argv
            return
        assert words and words[0] in TALOS_READ_ONLY, argv
        return
    words = _words(argv, HELM_GLOBAL)
    assert words and (words[0] in HELM_READ_ONLY or " ".join(words[:2]) in HELM_READ_ONLY), argv


# ---- no secret in any output ---------------------------------------------------------------------


def test_no_secret_in_check_table_json_dry_run_or_stderr_and_no_mutation(lab: Any, tmp_path: Path) -> None:
    """One set of runs serves both properties: the outputs are scanned for the planted secrets, and the
    recorded talosctl/helm argv and API requests must all be reads (`patch mc --dry-run` included)."""
    handle = lab("fresh")
    planted = plant(handle, tmp_path)
    shims, argv_log = recording_shims(handle, tmp_path)
    env = {**handle.env, **planted.env, **shims, "XDG_STATE_HOME": str(tmp_path / "state"), "COLUMNS": "2000"}
    offset = requests_offset(handle)

    lab("fresh", faults=echo_faults(planted))
    table = run_cli(env, "check", "--timeout", "15")
    lab("healthy", faults=echo_faults(planted))
    as_json = run_cli(env, "check", "--json", "--timeout", "15")
    lab("fresh")
    dry_run = run_cli(env, "enable", "--dry-run", "--timeout", "15")

    assert table.returncode == 1 and "Root cause: extensions" in table.stdout, table.stdout[-2000:] + table.stderr
    report = json.loads(as_json.stdout)
    stages = {s["id"]: s for s in report["stages"]}
    assert "‹redacted›" in stages["runtimeclass"]["summary"]  # the echoed token was there, and was cut
    assert any("‹redacted›" in line for line in stages["device-plugin"]["evidence"])
    assert "‹redacted›" in stages["kernel-modules"]["summary"]
    assert dry_run.returncode == 1 and "Dry run" in dry_run.stdout and "patch mc" in dry_run.stdout
    for name, result in (("check table", table), ("check --json", as_json), ("enable --dry-run", dry_run)):
        assert "Traceback" not in result.stderr, result.stderr
        planted.assert_absent(result.stdout, f"{name} stdout")
        planted.assert_absent(result.stderr, f"{name} stderr")

    argvs = recorded_argvs(argv_log)
    assert {a[0] for a in argvs} == {"talosctl", "helm"} and len(argvs) > 30
    assert any(_words(a, TALOS_GLOBAL)[:2] == ["patch", "mc"] for a in argvs)  # the preview ran, as a dry run
    for argv in argvs:
        assert_read_only_argv(argv)
        if argv[0] == "talosctl":
            assert argv[argv.index("--nodes") + 1] == NODE
    requests = requests_since(handle, offset)
    assert len(requests) > 10
    assert {r["method"] for r in requests} == {"GET"}, [r for r in requests if r["method"] != "GET"]
    assert not (tmp_path / "state" / "talos-gpu" / "audit.log").exists()  # nothing was acted on


def test_no_secret_in_enable_output_or_its_audit_log(lab: Any, tmp_path: Path) -> None:
    handle = lab("plugin-missing")
    planted = plant(handle, tmp_path)
    s = planted.secrets
    lab("plugin-missing", faults={"helm_exit": {"only": "upgrade", "code": 1, "stderr": (
        f"Error: UPGRADE FAILED: Unauthorized: token {s['token']} key {s['client-key-data']} "
        f"password {s['password']}")}})
    infra = tmp_path / "infra"
    infra.mkdir()
    profile = tmp_path / "profile.yaml"
    profile.write_text(f"infra_repo: {infra}\n")
    env = {**handle.env, **planted.env, "XDG_STATE_HOME": str(tmp_path / "state"), "COLUMNS": "2000"}
    result = run_cli(env, "enable", "--yes", "--profile", str(profile), "--timeout", "15", timeout=90)
    assert result.returncode == 1, result.stdout[-2000:] + result.stderr
    assert "UPGRADE FAILED: Unauthorized" in result.stdout and "‹redacted›" in result.stdout
    audit = tmp_path / "state" / "talos-gpu" / "audit.log"
    records = read_audit(audit)
    assert records[-1]["kind"] == "result" and "UPGRADE FAILED" in records[-1]["text"]
    assert stat.S_IMODE(audit.stat().st_mode) == 0o600
    for name, text in (("enable stdout", result.stdout), ("enable stderr", result.stderr),
                       ("audit log", audit.read_text())):
        planted.assert_absent(text, name)


def test_a_failing_exec_plugin_that_prints_its_secret_is_one_redacted_reason(lab: Any, tmp_path: Path) -> None:
    """The kubernetes client runs the exec plugin and, on failure, logs its stderr with logging.error:
    that must become the kube stages' reason, redacted, and never a raw line on stderr."""
    handle = lab("healthy")
    secret = "exec-SECRET-env-value-0a1b2c3d4e"
    plugin = tmp_path / "credential plugin"
    plugin.write_text("#!/bin/sh\necho \"error: login failed for token $PLUGIN_SECRET\" >&2\nexit 1\n")
    plugin.chmod(0o755)
    kube = Path(handle.state_dir) / "kubeconfig-exec"
    kube.write_text(re.sub(r"    token: \S+", textwrap.indent(textwrap.dedent(f"""\
        exec:
          apiVersion: client.authentication.k8s.io/v1
          command: {plugin}
          interactiveMode: Never
          env:
          - {{name: PLUGIN_SECRET, value: {secret}}}"""), "    "), Path(handle.kubeconfig).read_text()))
    result = run_cli({**handle.env, "KUBECONFIG": str(kube)}, "check", "--json", "--timeout", "10")
    assert result.returncode == 1 and result.stderr == "", result.stderr
    cluster = {s["id"]: s for s in json.loads(result.stdout)["stages"]}["cluster"]
    assert cluster["status"] == "fail"
    assert "the credential plugin failed: exec: process returned 1" in cluster["summary"]
    assert "login failed for token ‹redacted›" in cluster["summary"]
    assert secret not in result.stdout


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_no_secret_in_the_tui_screenshot_or_saved_log(lab: Any, tmp_path: Path, anyio_backend: str) -> None:
    from tui.app import TalosGpuApp

    handle = lab("healthy")
    planted = plant(handle, tmp_path)
    lab("healthy", faults=echo_faults(planted))
    app = TalosGpuApp(lab_target(handle, planted.env), refresh=0, audit_path=tmp_path / "audit.log",
                      state_dir=tmp_path / "state", screenshot_dir=tmp_path / "shots")
    async with app.run_test(size=(160, 45)) as pilot:
        main = app.main_screen
        deadline = asyncio.get_running_loop().time() + 30
        while main.sweeps_done < 1 or main.sweeping:
            assert asyncio.get_running_loop().time() < deadline, "no sweep finished"
            await pilot.pause(0.05)
        assert main.report is not None and main.report.stage("runtimeclass").status is Status.UNKNOWN
        shown = [app.export_screenshot()]
        order = [spec.id for spec in main.settings.stages]
        main.checklist.focus()
        for stage in ("runtimeclass", "device-plugin"):  # the root cause (kernel-modules) is shown first
            for _ in range(len(order)):
                current = main.checklist.selected_stage or order[0]
                if current == stage:
                    break
                await pilot.press("j" if order.index(stage) > order.index(current) else "k")
            assert main.checklist.selected_stage == stage
            shown.append(app.export_screenshot())
        assert "redacted" in "".join(shown).replace("&#160;", " ")
        await pilot.press("s", "f8")
        await pilot.pause(0.2)
    files = [*(tmp_path / "state").glob("talos-gpu-log-*.txt"), *(tmp_path / "shots").glob("*.svg")]
    assert len(files) == 2, files
    for index, svg in enumerate(shown):
        planted.assert_absent(svg.replace("&#160;", " "), f"screenshot {index}")
    for path in files:
        planted.assert_absent(path.read_text().replace("&#160;", " "), path.name)


# ---- read-only ------------------------------------------------------------------------------------


def test_read_only_refuses_every_action_before_any_call(lab: Any, tmp_path: Path) -> None:
    handle = lab("fresh")
    shims, argv_log = recording_shims(handle, tmp_path)
    target = lab_target(handle, shims)
    report, _ = sweep(target, timeout=15)
    audit = AuditLog(tmp_path / "audit.log")
    refused = []
    for stage in DEVICE_PLUGIN.action_stages:
        try:
            plan = anyio.run(lambda s=stage: plan_action(s, target, report))
        except PlanError:
            continue
        before_argv, before_requests = len(recorded_argvs(argv_log)), requests_offset(handle)
        events: list[Any] = []
        result = anyio.run(lambda p=plan, e=events: run_action(p, target, e.append, audit=audit, read_only=True))
        assert result.status == "failed" and result.reason.startswith("read-only mode"), (stage, result)
        assert events == [] and len(recorded_argvs(argv_log)) == before_argv, stage
        assert requests_since(handle, before_requests) == [], stage
        refused.append(stage)
    # cluster and container-runtime act only on a node stuck at boot: the wedged node's plans, refused too
    handle = lab("runbook-patch-applied", knobs={"reboot_s": 1.0, "boot_fail_wait_s": 300.0})
    report, _ = sweep(target, timeout=15)
    for stage in ("cluster", "container-runtime"):
        plan = anyio.run(lambda s=stage: plan_action(s, target, report))
        before_argv = len(recorded_argvs(argv_log))
        result = anyio.run(lambda p=plan: run_action(p, target, lambda _e: None, audit=audit, read_only=True))
        assert result.status == "failed" and result.reason.startswith("read-only mode"), (stage, result)
        assert len(recorded_argvs(argv_log)) == before_argv, stage
        refused.append(stage)
    audit.close()
    assert set(refused) == set(DEVICE_PLUGIN.action_stages)
    records = read_audit(audit.path)
    assert [r["stage"] for r in records] == refused and all(r["text"].startswith("refused") for r in records)


# ---- commands are argument lists; user values never become options ------------------------------
# (no shell anywhere: tests/test_architecture.py::test_no_shell_anywhere; argv recorded above and in
# tests/test_faults_config.py)


def test_a_profile_value_that_looks_like_an_option_is_refused(tmp_path: Path) -> None:
    from checks.errors import UsageError
    from checks.profile import load_profile

    profile = tmp_path / "profile.yaml"
    profile.write_text("device_plugin:\n  chart: --post-renderer=/tmp/evil\n")
    with pytest.raises(UsageError, match="chart"):
        load_profile(profile)
    for key, value in (("values", "--set=x"), ("test_image", "-it")):
        nested = key == "values"
        profile.write_text(f"device_plugin:\n  {key}: {value}\n" if nested else f"{key}: {value}\n")
        with pytest.raises(UsageError, match=key):
            load_profile(profile)


# ---- files in the infra repo ----------------------------------------------------------------------


def test_an_existing_file_is_never_replaced_and_no_temporary_file_is_left(tmp_path: Path) -> None:
    from checks.actions.files import write_new_file

    mine = tmp_path / "talos" / "patches" / "nvidia-oss-modules.yaml"
    mine.parent.mkdir(parents=True)
    mine.write_text("# mine\n")
    mine.chmod(0o600)
    before = mine.stat()
    assert write_new_file(mine, "# the seed\n") is False
    after = mine.stat()
    assert mine.read_text() == "# mine\n"
    assert (after.st_ino, stat.S_IMODE(after.st_mode), after.st_mtime_ns) == (
        before.st_ino, 0o600, before.st_mtime_ns)
    new = tmp_path / "k8s" / "manifests" / "runtimeclass-nvidia.yaml"
    assert write_new_file(new, "kind: RuntimeClass\n") is True
    assert new.read_text() == "kind: RuntimeClass\n"
    leftovers = [p.name for p in tmp_path.rglob("*") if p.name.startswith(".") or p.name.endswith(".tmp")]
    assert leftovers == []
    assert os.access(new, os.R_OK)
