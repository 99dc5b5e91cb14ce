"""helm, nvidia-smi and device plugin log parsers against the real outputs in samples/k8s."""

from __future__ import annotations

import json

import pytest

from checks.parsers import (
    HelmRelease,
    is_error,
    parse_helm_list_json,
    parse_helm_repo_list_json,
    parse_nvidia_smi,
    parse_nvidia_smi_csv,
    parse_nvidia_smi_list,
    scan_device_plugin_log,
)
from tests.paths import sample

NVDP = {
    "name": "nvdp",
    "namespace": "nvidia",
    "revision": "1",
    "updated": "2025-08-19 09:01:57.862343 +0200 CEST",
    "status": "deployed",
    "chart": "nvidia-device-plugin-0.17.3",
    "app_version": "0.17.3",
}


def ok(value):
    assert not is_error(value), str(value)
    return value


# ---- helm -----------------------------------------------------------------------------------------


def test_helm_list_json() -> None:
    (release,) = ok(parse_helm_list_json(json.dumps([NVDP])))
    assert release == HelmRelease(
        name="nvdp",
        namespace="nvidia",
        revision="1",
        status="deployed",
        chart="nvidia-device-plugin-0.17.3",
        app_version="0.17.3",
        updated="2025-08-19 09:01:57.862343 +0200 CEST",
    )


def test_helm_list_json_revision_is_text_even_when_a_number() -> None:
    (release,) = ok(parse_helm_list_json(json.dumps([{**NVDP, "revision": 3}])))
    assert release.revision == "3"


def test_helm_list_yaml_shape() -> None:
    (release,) = ok(parse_helm_list_json(sample("k8s/helm-list-oyaml-shape.yaml")))
    assert (release.name, release.revision, release.app_version) == ("alpine-cicd-0-9880308374", "1", "2020.11")
    assert release.updated == "2022-07-19 18:46:22.143376491 +0800 CST"


def test_helm_list_empty_and_broken() -> None:
    assert ok(parse_helm_list_json("[]\n")) == []
    assert is_error(parse_helm_list_json(""))
    assert is_error(parse_helm_list_json('[{"name": "nvdp", "namespace": '))
    assert is_error(parse_helm_list_json('{"name": "nvdp"}'))
    assert is_error(parse_helm_list_json(sample("k8s/helm-status-ojson-head.json")))


def test_helm_list_skips_a_kubeconfig_warning() -> None:
    text = "WARNING: Kubernetes configuration file is group-readable. This is insecure.\n" + json.dumps([NVDP])
    assert [release.name for release in ok(parse_helm_list_json(text))] == ["nvdp"]


def test_helm_repo_list() -> None:
    text = json.dumps([{"name": "nvdp", "url": "https://nvidia.github.io/k8s-device-plugin"}, {"name": "cilium", "url": "https://helm.cilium.io/"}])
    assert ok(parse_helm_repo_list_json(text)) == [
        ("nvdp", "https://nvidia.github.io/k8s-device-plugin"),
        ("cilium", "https://helm.cilium.io/"),
    ]
    assert is_error(parse_helm_repo_list_json("Error: no repositories to show\n"))


# ---- nvidia-smi -----------------------------------------------------------------------------------


def test_nvidia_smi_580_two_h100_nvl() -> None:
    smi = ok(parse_nvidia_smi(sample("k8s/nvidia-smi-h100nvl-580.95.05-partial.txt")))
    assert (smi.driver_version, smi.cuda_version) == ("580.95.05", "13.0")
    assert [(gpu.index, gpu.name, gpu.bus_id) for gpu in smi.gpus] == [
        (0, "NVIDIA H100 NVL", "00000000:33:00.0"),
        (1, "NVIDIA H100 NVL", "00000000:8B:00.0"),
    ]
    assert {(gpu.memory_total_mib, gpu.power_cap_w) for gpu in smi.gpus} == {(95830, 400)}


def test_nvidia_smi_535_layout() -> None:
    smi = ok(parse_nvidia_smi(sample("k8s/nvidia-smi-h100nvl-535.183.01-partial.txt")))
    assert (smi.driver_version, smi.cuda_version) == ("535.183.01", "12.2")
    (gpu,) = smi.gpus
    assert (gpu.name, gpu.bus_id, gpu.memory_total_mib, gpu.power_cap_w) == ("NVIDIA H100 NVL", "00000000:4E:00.0", 95830, 400)


@pytest.mark.parametrize(
    ("name", "driver", "gpu_name", "memory", "cap"),
    [
        ("nvidia-smi-550.40.07-header.txt", "550.40.07", "NVIDIA GeForce RTX 4070", 12282, 200),
        ("nvidia-smi-570.195.03-rtx5090-header.txt", "570.195.03", "NVIDIA GeForce RTX 5090", 32607, 575),
    ],
)
def test_nvidia_smi_other_layouts(name: str, driver: str, gpu_name: str, memory: int, cap: int) -> None:
    smi = ok(parse_nvidia_smi(sample(f"k8s/{name}")))
    assert smi.driver_version == driver
    assert [(gpu.name, gpu.memory_total_mib, gpu.power_cap_w) for gpu in smi.gpus] == [(gpu_name, memory, cap)]


def test_nvidia_smi_truncated_after_a_gpu_row_keeps_the_gpu() -> None:
    lines = sample("k8s/nvidia-smi-h100nvl-580.95.05-partial.txt").splitlines()
    cut = "\n".join(lines[: next(i for i, line in enumerate(lines) if "00000000:8B:00.0" in line) + 1])
    smi = ok(parse_nvidia_smi(cut))
    assert len(smi.gpus) == 2
    assert (smi.gpus[1].memory_total_mib, smi.gpus[1].power_cap_w) == (None, None)


def test_nvidia_smi_header_only_has_no_gpus() -> None:
    lines = sample("k8s/nvidia-smi-h100nvl-580.95.05-partial.txt").splitlines()[:3]
    assert ok(parse_nvidia_smi("\n".join(lines))).gpus == ()


@pytest.mark.parametrize(
    "text",
    [
        "Failed to initialize NVML: Driver/library version mismatch\nNVML library version: 550.144\n",
        "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver. Make sure that the latest "
        "NVIDIA driver is installed and running.\n",
    ],
)
def test_nvidia_smi_failures_are_quoted(text: str) -> None:
    result = parse_nvidia_smi(text)
    assert is_error(result)
    assert result.detail.startswith(text.splitlines()[0][:80])


def test_nvidia_smi_csv() -> None:
    assert ok(parse_nvidia_smi_csv(sample("k8s/nvidia-smi-query-name-pcidevice-h100nvl.csv"))) == [("NVIDIA H100 NVL", "0x232110DE")]
    two = "NVIDIA H100 NVL, 0x232110DE\nNVIDIA H100 NVL, 0x232110DE\n"
    assert len(ok(parse_nvidia_smi_csv(two))) == 2
    with_header = "name, pci.device_id\n" + two
    assert ok(parse_nvidia_smi_csv(with_header)) == ok(parse_nvidia_smi_csv(two))


def test_nvidia_smi_csv_refuses_failures_and_ragged_rows() -> None:
    mismatch = parse_nvidia_smi_csv("Failed to initialize NVML: Driver/library version mismatch\n")
    assert is_error(mismatch) and "Driver/library version mismatch" in mismatch.detail
    assert is_error(parse_nvidia_smi_csv("NVIDIA H100 NVL, 0x232110DE\nNVIDIA H100 NVL\n"))
    assert is_error(parse_nvidia_smi_csv(""))


def test_nvidia_smi_list_skips_mig_devices() -> None:
    gpus = ok(parse_nvidia_smi_list(sample("k8s/nvidia-smi-L-a100-mig.txt")))
    assert [gpu.index for gpu in gpus] == [0, 1, 2, 3]
    assert gpus[0].name == "NVIDIA A100-SXM4-80GB"
    assert gpus[0].uuid == "GPU-513536b6-7d19-9063-b049-1e69664bb298"
    assert is_error(parse_nvidia_smi_list("No devices were found\n"))


# ---- device plugin log ----------------------------------------------------------------------------


def test_device_plugin_log_healthy_journald_format() -> None:
    log = scan_device_plugin_log(sample("k8s/dp-log-healthy-registered-bottlerocket.log"))
    assert log.registered and log.resource == "nvidia.com/gpu"
    assert log.failures == () and log.registered_line == 1


def test_device_plugin_log_startup_header_gives_the_version() -> None:
    log = scan_device_plugin_log(sample("k8s/dp-log-0.18.0-startup-header.log"))
    assert log.version == "3c9ffca9"
    assert not log.registered and log.resource is None and log.failures == ()


def test_device_plugin_log_crash_after_startup_header() -> None:
    # The issue behind the sample reports this final line (NVIDIA/k8s-device-plugin#1470).
    text = sample("k8s/dp-log-0.18.0-startup-header.log") + (
        'E1022 18:32:39.571234       1 factory.go:112] Incompatible strategy detected auto\n'
        "E1022 18:32:39.571301       1 main.go:179] error starting plugins: error getting plugins: unable to create "
        "plugins: failed to construct resource managers: invalid device discovery strategy\n"
    )
    log = scan_device_plugin_log(text)
    assert not log.registered
    assert [match.signature.id for match in log.failures] == ["incompatible-strategy", "invalid-discovery-strategy"]
    assert log.failures[0].capture("strategy") == "auto"


def test_device_plugin_log_0_16_library_not_found() -> None:
    text = sample("k8s/dp-log-0.16.x-detected-nvml.log").rstrip("\n") + (
        "\nE0801 15:26:24.781101       1 main.go:132] error starting plugins: error creating plugin manager: unable to "
        "create plugin manager: nvml init failed: ERROR_LIBRARY_NOT_FOUND\n"
    )
    log = scan_device_plugin_log(text)
    (match,) = log.failures
    assert match.signature.id == "nvml-library-not-found" and match.capture("reason") == "ERROR_LIBRARY_NOT_FOUND"
    assert match.signature.stage == "device-plugin"


def test_device_plugin_log_failure_after_registration() -> None:
    healthy = sample("k8s/dp-log-healthy-registered-bottlerocket.log")
    log = scan_device_plugin_log(healthy + "I1017 12:06:00.000000    1667 main.go:1] Failed to initialize NVML: Unknown Error.\n")
    assert log.registered
    assert [m.signature.id for m in log.failed_after_registration] == ["nvml-init-failed"]
    assert log.failed_after_registration[0].capture("reason") == "Unknown Error"


def test_device_plugin_log_warnings_are_not_failures() -> None:
    text = sample("k8s/dp-log-healthy-registered-bottlerocket.log").replace(
        "Registered device plugin", "W1017 12:05:33.0 1 factory.go:1] Unsupported platform detected; defaulting to nvml\n"
        "Oct 17 12:05:33 h nvidia-device-plugin[1667]: I1017 12:05:33.312453    1667 server.go:154] Registered device plugin", 1
    )
    log = scan_device_plugin_log(text)
    assert log.registered and log.failures == ()
    assert [match.signature.id for match in log.warnings] == ["unsupported-platform-default-nvml"]


@pytest.mark.parametrize("text", ["", "\x00\x01\x02", "garbage " * 1000])
def test_device_plugin_log_scan_accepts_any_text(text: str) -> None:
    log = scan_device_plugin_log(text)
    assert not log.registered and log.failures == ()
