"""The failure-signature catalog: every entry recognises its real message, and only its own."""

from __future__ import annotations

import re

import pytest

from checks.signatures import (
    ALL_SOURCES,
    REGISTERED_RE,
    SIGNATURES,
    match_signatures,
    signature_by_id,
)
from tests.paths import sample

STAGES = {
    "cluster",
    "extensions",
    "kernel-modules",
    "container-runtime",
    "runtimeclass",
    "device-plugin",
    "gpu-resources",
    "gpu-workload",
}

# One real message per signature (from the sources named in checks/signatures.py), with what it captures.
EXAMPLES: list[tuple[str, str, dict[str, str]]] = [
    (
        "nvml-library-not-found",
        "E0801 15:26:24.781101 1 main.go:132] error starting plugins: error creating plugin manager: unable to "
        "create plugin manager: nvml init failed: ERROR_LIBRARY_NOT_FOUND",
        {"reason": "ERROR_LIBRARY_NOT_FOUND"},
    ),
    (
        "nvml-library-not-found",
        "E0925 19:53:51.599960 main.go:128] Received error: failed to initialize NVML: ERROR_LIBRARY_NOT_FOUND",
        {"reason": "ERROR_LIBRARY_NOT_FOUND"},
    ),
    ("nvml-could-not-load-library", "2020/10/14 18:04:53 Failed to initialize NVML: could not load NVML library.", {}),
    (
        "nvml-could-not-load-library",
        "I0115 20:11:29.290001 141 factory.go:107] Detected non-NVML platform: could not load NVML library: "
        "libnvidia-ml.so.1: cannot open shared object file: No such file or directory",
        {},
    ),
    ("nvml-driver-not-loaded", "Failed to initialize NVML: Driver Not Loaded", {"reason": "Driver Not Loaded"}),
    ("nvml-driver-library-mismatch", "Failed to initialize NVML: Driver/library version mismatch", {"reason": "Driver/library version mismatch"}),
    ("nvml-init-failed", "E0513 08:05:23.51 47931 main.go:1] Failed to initialize NVML: Unknown Error.", {"reason": "Unknown Error"}),
    ("incompatible-strategy", "E1022 18:32:39.571234       1 factory.go:112] Incompatible strategy detected auto", {"strategy": "auto"}),
    ("incompatible-platform", "E0122 10:00:00.000000 1 factory.go:112] Incompatible platform detected", {}),
    (
        "invalid-discovery-strategy",
        "error starting plugins: error getting plugins: unable to create plugins: failed to construct resource "
        "managers: invalid device discovery strategy",
        {},
    ),
    ("unsupported-platform-default-nvml", "W0101 00:00:00.000000 1 factory.go:1] Unsupported platform detected; defaulting to nvml", {}),
    ("no-devices-found", "I0925 19:53:51.428513 1 main.go:1] No devices found. Waiting indefinitely.", {}),
    (
        "kubelet-registration-failed",
        "I0101 00:00:00.000000 1 server.go:1] Could not register device plugin: rpc error: code = Unimplemented",
        {"reason": "rpc error: code = Unimplemented"},
    ),
    (
        "nvidia-container-cli-bpf-filter",
        "nvidia-container-cli: mount error: failed to add device rules: unable to generate new device filter program "
        "from existing programs: unable to create new device filters program: load program: invalid argument: last "
        "insn is not an exit or jmp",
        {"reason": "invalid argument"},
    ),
    (
        "nvidia-container-cli-bpf-prog-query",
        "nvidia-container-cli: mount error: failed to add device rules: unable to find any existing device filters "
        "attached to the cgroup: bpf_prog_query(BPF_CGROUP_DEVICE) failed: operation not permitted: unknown.",
        {"reason": "operation not permitted"},
    ),
    (
        "nvidia-container-cli-device-rules",
        "nvidia-container-cli: mount error: failed to add device rules: unable to replace original device filters "
        "program with new one: failed to call BPF_PROG_ATTACH (BPF_CGROUP_DEVICE, BPF_F_ALLOW_MULTI): can't attach "
        "program: invalid argument: unknown",
        {},
    ),
    (
        "nvidia-container-cli-cgroup-path",
        "stderr: nvidia-container-cli: container error: failed to get device cgroup mount path: no cgroup "
        "filesystem mounted for the devices subsytem in mountinfo file: unknown",
        {"what": "mount"},
    ),
    (
        "nvidia-container-cli-cgroup-devices-missing",
        "stderr: nvidia-container-cli: container error: cgroup subsystem devices not found: unknown.",
        {},
    ),
    (
        "nvidia-container-cli-error",
        "stderr: nvidia-container-cli: ldcache error: process /sbin/ldconfig failed with error code: 127",
        {"kind": "ldcache error"},
    ),
    (
        "runtimeclass-not-found",
        'Warning  FailedCreate  3s (x12 over 23s)  daemonset-controller  Error creating: pods "nvidia-device-plugin-" '
        'is forbidden: pod rejected: RuntimeClass "nvidia" not found',
        {"runtime_class": "nvidia"},
    ),
    (
        "no-runtime-handler",
        "Warning  FailedCreatePodSandBox  12s (x10 over 2m11s)  kubelet  Failed to create pod sandbox: rpc error: "
        'code = Unknown desc = failed to get sandbox runtime: no runtime for "nvidia" is configured',
        {"handler": "nvidia"},
    ),
    (
        "insufficient-gpu",
        "Warning  FailedScheduling  40s  default-scheduler  0/1 nodes are available: 1 Insufficient nvidia.com/gpu. "
        "preemption: 0/1 nodes are available: 1 No preemption victims found for incoming pod..",
        {},
    ),
    (
        "node-affinity-mismatch",
        "0/1 nodes are available: 1 node(s) didn't match Pod's node affinity/selector. preemption: 0/1 nodes are "
        "available: 1 Preemption is not helpful for scheduling.",
        {},
    ),
    (
        "untolerated-taint",
        "0/1 nodes are available: 1 node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }.",
        {"taint": "node-role.kubernetes.io/control-plane:"},
    ),
    ("nvrm-rm-init-adapter-failed", "[   22.364786] NVRM: GPU 0000:01:00.0: RmInitAdapter failed! (0x62:0x65:1859)", {}),
    ("nvrm-gsp-init-failed", "[   22.343364] NVRM: RmInitAdapter: Cannot initialize GSP firmware RM", {}),
    ("nvrm-fallen-off-bus", "NVRM: Xid (PCI:0000:06:00): 79, pid=1234, name=python, GPU has fallen off the bus.", {}),
    ("nvrm-gpu-not-supported", "NVRM: installed in this system is not supported by open", {"by": "open"}),
    ("nvrm-api-mismatch", "[ 7874777.555649] NVRM: API mismatch: the client has the version 535.247.01, but", {"client": "535.247.01"}),
    ("nvrm-no-devices-initialized", "[    8.299262] NVRM: None of the NVIDIA devices were initialized.", {}),
    (
        "nvidia-smi-no-driver",
        "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver. Make sure that the latest "
        "NVIDIA driver is installed and running.",
        {},
    ),
    ("k8s-nodes-not-ready", "waiting for all k8s nodes to report ready: some nodes are not ready: [k8s-0]", {"nodes": "k8s-0"}),
    (
        "etcd-not-healthy",
        '    * 10.5.0.2: service "etcd" not in expected state "Running": current state [Preparing] Running pre state',
        {},
    ),
]


# ---- the catalog itself ---------------------------------------------------------------------------


def test_every_signature_has_a_real_example_here() -> None:
    assert {signature.id for signature in SIGNATURES} == {example_id for example_id, _line, _captures in EXAMPLES}


def test_catalog_entries_are_well_formed() -> None:
    ids = [signature.id for signature in SIGNATURES]
    assert len(ids) == len(set(ids))
    for signature in SIGNATURES:
        assert re.fullmatch(r"[a-z0-9]+(?:-[a-z0-9]+)*", signature.id), signature.id
        assert signature.stage in STAGES, signature.id
        assert signature.severity in ("error", "warning"), signature.id
        assert signature.sources and signature.sources <= ALL_SOURCES, signature.id
        assert signature.meaning.endswith(".") and len(signature.meaning) < 300, signature.id
        assert len(signature.remediation) > 20, signature.id
        assert signature_by_id(signature.id) is signature
    assert signature_by_id("no-such-signature") is None


@pytest.mark.parametrize(("signature_id", "line", "captures"), EXAMPLES, ids=[f"{e[0]}-{i}" for i, e in enumerate(EXAMPLES)])
def test_each_example_matches_exactly_its_signature(signature_id: str, line: str, captures: dict[str, str]) -> None:
    matches = match_signatures(line)
    assert [match.signature.id for match in matches] == [signature_id]
    (match,) = matches
    assert match.quote and match.quote.rstrip("…") in line
    assert len(match.line) <= 200 and match.line.strip("…") in line
    if len(line.strip()) <= 200:
        assert match.line == line.strip()
    for name, value in captures.items():
        assert match.capture(name) == value


# ---- what is NOT a failure ------------------------------------------------------------------------


def test_registration_line_is_not_a_failure() -> None:
    healthy = sample("k8s/dp-log-healthy-registered-bottlerocket.log")
    assert match_signatures(healthy) == []
    found = REGISTERED_RE.search(healthy)
    assert found is not None and found.group("resource") == "nvidia.com/gpu"


@pytest.mark.parametrize(
    "name",
    ["k8s/dp-log-0.16.x-detected-nvml.log", "k8s/dp-log-0.18.0-startup-header.log", "talos/health-ok-partial.txt"],
)
def test_healthy_outputs_match_nothing(name: str) -> None:
    assert match_signatures(sample(name)) == []


def test_nfd_affinity_case_is_not_a_text_signature() -> None:
    # DESIRED 0 because of the default NFD affinity produces no message at all; the engine counts pods.
    assert match_signatures("nvidia-device-plugin   0   0   0   0   0   <none>   5m") == []


# ---- matching behaviour ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "prefix",
    [
        "",
        "E1022 18:32:39.571234       1 factory.go:112] ",
        "Oct 17 12:05:33 ip-10-0-0-1.ec2.internal nvidia-device-plugin[1667]: E1017 12:05:33.312453    1667 factory.go:1] ",
        "2023-10-19T11:11:54.957723331+08:00 stderr F ",
    ],
)
def test_messages_match_whatever_prefix_the_line_has(prefix: str) -> None:
    (match,) = match_signatures(prefix + "Incompatible strategy detected auto")
    assert match.signature.id == "incompatible-strategy"
    assert match.quote == "Incompatible strategy detected auto"


def test_dmesg_talosctl_prefix() -> None:
    line = "10.5.0.2: kern:    err: [2025-12-02T10:00:22.364786Z]: NVRM: GPU 0000:01:00.0: RmInitAdapter failed! (0x62:0x65:1859)"
    (match,) = match_signatures(line, sources="dmesg")
    assert match.signature.stage == "kernel-modules"


def test_real_dmesg_sample_finds_gsp_and_adapter_failures_in_order() -> None:
    ids = [match.signature.id for match in match_signatures(sample("talos/dmesg-nvrm-open-module-loading.txt"))]
    assert ids == ["nvrm-gsp-init-failed", "nvrm-rm-init-adapter-failed", "nvrm-rm-init-adapter-failed"]


def test_order_of_appearance_and_line_numbers() -> None:
    text = (
        'pod rejected: RuntimeClass "nvidia" not found\n'
        "some other line\n"
        "Incompatible strategy detected auto\n"
    )
    matches = match_signatures(text)
    assert [(m.signature.id, m.line_number) for m in matches] == [("runtimeclass-not-found", 1), ("incompatible-strategy", 3)]


def test_repeated_lines_are_reported_once() -> None:
    line = "E0101 00:00:00.000000 1 factory.go:1] Incompatible strategy detected auto\n"
    assert len(match_signatures(line * 50)) == 1
    distinct = "A Incompatible strategy detected auto\nB Incompatible strategy detected auto\n"
    assert len(match_signatures(distinct)) == 2


def test_sources_restrict_the_catalog() -> None:
    line = 'Error creating: pods "x-" is forbidden: pod rejected: RuntimeClass "nvidia" not found'
    assert match_signatures(line, sources="dmesg") == []
    assert [m.signature.id for m in match_signatures(line, sources=["event", "health"])] == ["runtimeclass-not-found"]


def test_long_lines_are_trimmed_around_the_match() -> None:
    line = "x" * 400 + " pod rejected: RuntimeClass \"nvidia\" not found " + "y" * 400
    (match,) = match_signatures(line)
    assert len(match.line) <= 200
    assert 'RuntimeClass "nvidia" not found' in match.line


def test_ansi_colours_and_crlf_do_not_matter() -> None:
    (match,) = match_signatures("\x1b[31mIncompatible strategy detected auto\x1b[0m\r\n")
    assert match.line == "Incompatible strategy detected auto"


def test_remediations_point_at_the_seed_files() -> None:
    runtime_class = signature_by_id("runtimeclass-not-found")
    assert runtime_class is not None
    assert "kubectl apply -f k8s/manifests/runtimeclass-nvidia.yaml" in runtime_class.remediation
    assert "ArgoCD" in runtime_class.remediation
    # no remediation ever sends a person to the runbook's no-cgroups patch: Talos refuses it at boot
    for signature in SIGNATURES:
        assert "--patch @talos/patches/nvidia-no-cgroups.yaml" not in signature.remediation, signature.id
    prog_query = signature_by_id("nvidia-container-cli-bpf-prog-query")
    assert prog_query is not None and "Do not apply the runbook's talos/patches/nvidia-no-cgroups.yaml" in \
        prog_query.remediation and "nvidia-oss-modules.yaml" in prog_query.remediation
    bpf = signature_by_id("nvidia-container-cli-bpf-filter")
    assert bpf is not None and "bpf_jit_harden" in bpf.remediation and "nvidia-oss-modules.yaml" in bpf.remediation
    strategy = signature_by_id("incompatible-strategy")
    assert strategy is not None and "runtimeClassName: nvidia" in strategy.remediation


def test_non_text_input_matches_nothing() -> None:
    assert match_signatures("") == []
    assert match_signatures("\x00\xff" * 100) == []
