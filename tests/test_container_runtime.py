"""The container-runtime judge and the parsers it rests on (machine.files op/path, ls, services, the boot
failure in dmesg). Formats as talosctl prints them: siderolabs/talos cmd/talosctl/cmd/talos/list.go
(`NODE NAME`, `-l`: `NODE MODE UID GID SIZE(B) LASTMOD NAME`), services.go (`NODE SERVICE STATE HEALTH
LAST CHANGE LAST EVENT`), and the machine config under `spec` as its raw YAML text (config/machine_config.go)."""

from __future__ import annotations

import pytest

from checks import parsers
from checks.judges import JudgeInput, judge_cluster, judge_container_runtime
from checks.model import ProbeResult, Status
from checks.parsers import MachineFile, Service
from checks.profile import Profile

NODE = "10.5.0.2"
SECRET = "lab-SECRET-machine-token-5b7c9d"
MC_YAML = f"""node: {NODE}
metadata:
    namespace: config
    type: MachineConfigs.config.talos.dev
    id: v1alpha1
    version: 3
    owner: ""
    phase: running
spec: |
    version: v1alpha1
    machine:
        type: controlplane
        token: {SECRET}
        files:
            - content: |
                  [nvidia-container-cli]
                  no-cgroups = true
              permissions: 0o644
              path: /etc/nvidia-container-runtime/config.toml
              op: create
            - content: x
              path: /var/etc/x.conf
              op: create
    cluster:
        secret: {SECRET}-cluster
"""
LS = f"NODE       NAME\n{NODE}   .\n{NODE}   10-nvidia-container-runtime.part\n{NODE}   cri.toml\n"
SERVICES = (
    "NODE       SERVICE                   STATE     HEALTH   LAST CHANGE     LAST EVENT\n"
    f"{NODE}   apid                      Running   OK       71h59m50s ago   Health check successful\n"
    f"{NODE}   ext-nvidia-persistenced   Running   ?        71h59m50s ago   Started task ext-nvidia-persistenced "
    "(PID 2877) for container ext-nvidia-persistenced\n"
    f"{NODE}   kubelet                   Running   OK       71h59m50s ago   Health check successful\n"
)
WEDGED_DMESG = (
    f"{NODE}: kern:  notice: [2026-12-07T02:25:30.49Z]: Linux version 6.12.57-talos\n"
    f"{NODE}: user: warning: [2026-12-07T02:25:39.99Z]: [talos] task writeUserFiles (1/1): starting\n"
    f"{NODE}: user: warning: [2026-12-07T02:25:39.99Z]: [talos] writeUserFiles failed, rebooting in 35 minutes. "
    "You can use talosctl apply-config or talosctl edit mc to fix the issues, error: create operation not allowed "
    'outside of /var: "/etc/nvidia-container-runtime/config.toml"\n'
    f"{NODE}: user: warning: [2026-12-07T02:25:39.99Z]: [talos] phase userSetup (14/23): failed\n"
    f"{NODE}: user: warning: [2026-12-07T02:25:40.00Z]: [talos] boot sequence: failed\n"
)


def test_machine_files_keeps_only_op_and_path() -> None:
    files = parsers.parse_machine_files(MC_YAML)
    assert files == (MachineFile("create", "/etc/nvidia-container-runtime/config.toml"),
                     MachineFile("create", "/var/etc/x.conf"))
    assert SECRET not in repr(files) and "no-cgroups" not in repr(files)
    assert parsers.parse_machine_files(MC_YAML.replace("        files:", "        nofiles:")) == ()


def test_machine_files_errors_never_quote_the_config() -> None:
    broken = MC_YAML.replace("    machine:", "    machine: [" + SECRET)
    error = parsers.parse_machine_files(broken)
    assert parsers.is_error(error) and SECRET not in str(error)
    outer = parsers.parse_machine_files(f"spec: [{SECRET}\n")
    assert parsers.is_error(outer) and SECRET not in str(outer)


def test_ls_and_services() -> None:
    assert parsers.parse_ls_names(LS) == ("10-nvidia-container-runtime.part", "cri.toml")
    assert parsers.parse_ls_names(".\ncri.toml\n") == ("cri.toml",)  # without --nodes: plain names
    services = parsers.parse_services(SERVICES)
    assert services["ext-nvidia-persistenced"] == Service(
        "ext-nvidia-persistenced", "Running", "?",
        "Started task ext-nvidia-persistenced (PID 2877) for container ext-nvidia-persistenced")
    assert parsers.is_error(parsers.parse_services("garbage\n"))


def test_boot_failure_from_the_kernel_log() -> None:
    failure = parsers.parse_boot_failure(WEDGED_DMESG)
    assert failure is not None and not parsers.is_error(failure)
    assert failure.task == "writeUserFiles" and failure.phase == "userSetup"
    assert failure.error == 'create operation not allowed outside of /var: "/etc/nvidia-container-runtime/config.toml"'
    assert failure.lines[-1] == "[talos] boot sequence: failed"
    assert parsers.parse_boot_failure("[   14.39] NVRM: loading NVIDIA UNIX Open Kernel Module\n") is None


def _facts(**values: object) -> dict[str, ProbeResult]:
    facts = {
        "machine_files": ProbeResult("machine_files", "talosctl get machineconfig", value=()),
        "cri_conf": ProbeResult("cri_conf", "talosctl ls /etc/cri/conf.d", value=parsers.parse_ls_names(LS)),
        "services": ProbeResult("services", "talosctl services", value=parsers.parse_services(SERVICES)),
    }
    for name, value in values.items():
        facts[name] = value if isinstance(value, ProbeResult) else ProbeResult(name, name, value=value)
    return facts


def _judge(profile: Profile | None = None, **values: object):  # type: ignore[no-untyped-def]
    return judge_container_runtime(JudgeInput(_facts(**values), profile or Profile(), NODE))


def test_the_toolkit_s_runtime_passes_without_any_no_cgroups_file() -> None:
    judged = _judge()
    assert judged.status is Status.PASS, judged
    assert "talosctl ls /etc/cri/conf.d: 10-nvidia-container-runtime.part (containerd runtime nvidia registered)" \
        in judged.evidence
    assert "talosctl services: ext-nvidia-persistenced Running" in judged.evidence


def test_a_refused_machine_files_entry_fails_with_the_removal() -> None:
    judged = _judge(machine_files=parsers.parse_machine_files(MC_YAML))
    assert judged.status is Status.FAIL
    assert 'create operation not allowed outside of /var: "/etc/nvidia-container-runtime/config.toml"' in judged.summary
    assert judged.remediation.startswith(
        f"""talosctl --nodes {NODE} patch mc --patch '[{{"op": "remove", "path": "/machine/files/0"}}]'""")
    assert "/machine/files/1" not in judged.remediation  # the /var entry stays
    assert all(SECRET not in line and "no-cgroups = true" not in line for line in judged.evidence)


@pytest.mark.parametrize(
    ("values", "words"),
    [
        ({"cri_conf": ("cri.toml",)}, "containerd has no nvidia runtime"),
        ({"cri_conf": ProbeResult("cri_conf", "talosctl ls /etc/cri/conf.d", missing=True)},
         "containerd has no nvidia runtime"),
        ({"services": {"apid": Service("apid", "Running", "OK", "")}}, "ext-nvidia-persistenced is not registered"),
        ({"services": {"ext-nvidia-persistenced": Service("ext-nvidia-persistenced", "Failed", "?", "")}},
         "ext-nvidia-persistenced is Failed"),
    ],
)
def test_what_the_toolkit_sets_up_is_what_is_judged(values: dict, words: str) -> None:
    judged = _judge(**values)
    assert judged.status is Status.FAIL and words in judged.summary and judged.remediation


def test_no_cgroups_in_the_profile_is_a_warning_with_the_reason_never_an_action() -> None:
    judged = _judge(Profile(no_cgroups=True))
    assert judged.status is Status.WARN
    assert "cannot be written on Talos" in judged.summary and judged.remediation is None
    assert any("rootless containers only" in line for line in judged.evidence)


def test_unreadable_facts_are_unknown() -> None:
    error = ProbeResult("services", "talosctl services", error="talosctl services: timed out")
    assert _judge(services=error).status is Status.UNKNOWN


def test_cluster_fails_a_stuck_boot_with_the_kernel_log_and_the_way_out() -> None:
    from checks.parsers.talos import MachineStatus

    facts = {
        "talos_version": ProbeResult("talos_version", "talosctl version",
                                     value=parsers.parse_talos_version(
                                         "Client:\n\tTag:         v1.11.5\nServer:\n\tNODE:        10.5.0.2\n"
                                         "\tTag:         v1.11.5\n")),
        "machine_status": ProbeResult("machine_status", "talosctl get machinestatus",
                                      value=MachineStatus(stage="booting", ready=False, unmet=())),
        "boot_failure": ProbeResult("boot_failure", "talosctl dmesg", value=parsers.parse_boot_failure(WEDGED_DMESG)),
        "machine_files": ProbeResult("machine_files", "talosctl get machineconfig",
                                     value=parsers.parse_machine_files(MC_YAML)),
    }
    judged = judge_cluster(JudgeInput(facts, Profile(), NODE))
    assert judged.status is Status.FAIL
    assert judged.summary.startswith("the node's boot stops in writeUserFiles: create operation not allowed outside "
                                     "of /var")
    assert any(line.startswith("talosctl dmesg: [talos] writeUserFiles failed, rebooting in 35 minutes")
               for line in judged.evidence)
    assert "/machine/files/0" in judged.remediation and "/machine/files/1" not in judged.remediation


def test_a_machine_config_the_role_may_not_read_is_a_warning_not_a_pass() -> None:
    denied = ProbeResult("machine_files", "talosctl get machineconfig", error="talosctl get machineconfig: exit 1: "
                         "rpc error: code = PermissionDenied desc = not authorized")
    judged = _judge(machine_files=denied)
    assert judged.status is Status.WARN and "os:admin" in judged.summary


def test_output_cut_short_is_refused_not_judged() -> None:
    """A dropped stream must not turn into "no nvidia runtime" or "no refused entry"."""
    for parse, text in ((parsers.parse_ls_names, LS), (parsers.parse_services, SERVICES),
                        (parsers.parse_machine_files, MC_YAML)):
        cut = text[: len(text) // 2]
        assert not cut.endswith("\n")
        assert parsers.is_error(parse(cut)), parse
