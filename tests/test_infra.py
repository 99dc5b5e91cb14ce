"""checks.infra: the seed's files (single source for the actions) and the read-only drift lint."""

from __future__ import annotations

from pathlib import Path

import yaml

from checks.infra import (
    MODULES_PATCH,
    NO_CGROUPS_PATCH,
    RUNTIMECLASS_MANIFEST,
    lint_infra,
    seed_files,
)
from checks.profile import DevicePluginSpec, Profile

VALUES = "k8s/nvidia-device-plugin/values.yaml"


def _profile(tmp_path: Path, **kwargs: object) -> Profile:
    return Profile(infra_repo=tmp_path, **kwargs)  # type: ignore[arg-type]


def _write_seed(profile: Profile) -> None:
    for relative, content in seed_files(profile).items():
        path = profile.infra_repo / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)


def test_seed_files_say_what_the_seed_needs(tmp_path: Path) -> None:
    files = seed_files(_profile(tmp_path))
    # the runbook's no-cgroups patch (step 4.1) is not among them: Talos refuses it at boot
    assert set(files) == {MODULES_PATCH, RUNTIMECLASS_MANIFEST, VALUES}

    machine = yaml.safe_load(files[MODULES_PATCH])["machine"]
    assert [m["name"] for m in machine["kernel"]["modules"]] == ["nvidia", "nvidia_uvm", "nvidia_drm", "nvidia_modeset"]
    assert machine["sysctls"] == {"net.core.bpf_jit_harden": 1}

    runtime_class = yaml.safe_load(files[RUNTIMECLASS_MANIFEST])
    assert runtime_class == {"apiVersion": "node.k8s.io/v1", "kind": "RuntimeClass",
                             "metadata": {"name": "nvidia"}, "handler": "nvidia"}

    values = yaml.safe_load(files[VALUES])
    assert values == {
        "runtimeClassName": "nvidia",
        "affinity": None,
        "nodeSelector": {"kubernetes.io/os": "linux"},
        "tolerations": [
            {"key": "node-role.kubernetes.io/control-plane", "operator": "Exists", "effect": "NoSchedule"},
            {"key": "CriticalAddonsOnly", "operator": "Exists"},
        ],
    }


def test_seed_files_follow_the_profile(tmp_path: Path) -> None:
    profile = _profile(tmp_path, modules=("nvidia", "nvidia_uvm"), runtime_class="gpu",
                       device_plugin=DevicePluginSpec(values="helm/dp.yaml"))
    files = seed_files(profile)
    assert "helm/dp.yaml" in files
    assert yaml.safe_load(files["helm/dp.yaml"])["runtimeClassName"] == "gpu"
    assert yaml.safe_load(files[RUNTIMECLASS_MANIFEST])["metadata"]["name"] == "gpu"
    modules = yaml.safe_load(files[MODULES_PATCH])["machine"]["kernel"]["modules"]
    assert [m["name"] for m in modules] == ["nvidia", "nvidia_uvm"]


def test_no_files_no_drift_and_seed_files_lint_clean(tmp_path: Path) -> None:
    profile = _profile(tmp_path)
    assert lint_infra(profile) == {}
    _write_seed(profile)
    assert lint_infra(profile) == {}


def test_drift_is_reported_per_stage(tmp_path: Path) -> None:
    profile = _profile(tmp_path)
    _write_seed(profile)
    root = profile.infra_repo
    (root / VALUES).write_text("nodeSelector:\n  kubernetes.io/os: linux\n")
    (root / MODULES_PATCH).write_text(
        "machine:\n  kernel:\n    modules:\n      - name: nvidia\n      - name: nvidia_uvm\n"
        "  sysctls:\n    net.core.bpf_jit_harden: 2\n")
    (root / NO_CGROUPS_PATCH).write_text(
        "machine:\n  files:\n    - content: |\n        [nvidia-container-cli]\n        no-cgroups = false\n"
        "      path: /etc/nvidia-container-runtime/config.toml\n      op: create\n")
    (root / RUNTIMECLASS_MANIFEST).write_text(
        "apiVersion: node.k8s.io/v1\nkind: RuntimeClass\nmetadata:\n  name: nvidia\nhandler: runc\n")
    findings = lint_infra(profile)
    assert findings == {
        "device-plugin": [
            f"infra repo: {VALUES} sets no runtimeClassName",
            f"infra repo: {VALUES} does not set affinity: null (the chart's default needs NFD/GFD labels)",
        ],
        "kernel-modules": [
            f"infra repo: {MODULES_PATCH} does not load nvidia_drm, nvidia_modeset (machine.kernel.modules)",
            f"infra repo: {MODULES_PATCH} sets net.core.bpf_jit_harden to 2; it must be 1",
        ],
        "container-runtime": [
            f"infra repo: {NO_CGROUPS_PATCH} line 7 would stop the next boot: machine.files: op create is allowed "
            "only under /var; Talos's writeUserFiles fails with create operation not allowed outside of /var: "
            "\"/etc/nvidia-container-runtime/config.toml\" (the runbook's step 4.1: not followed); never apply it"],
        "runtimeclass": [f"infra repo: {RUNTIMECLASS_MANIFEST} sets handler runc, expected nvidia"],
    }


def test_affinity_set_and_unparseable_files(tmp_path: Path) -> None:
    profile = _profile(tmp_path)
    _write_seed(profile)
    root = profile.infra_repo
    (root / VALUES).write_text("runtimeClassName: nvidia\naffinity:\n  nodeAffinity: {}\n")
    (root / MODULES_PATCH).write_text("machine: [unclosed\n")
    findings = lint_infra(profile)
    assert findings["device-plugin"] == [f"infra repo: {VALUES} sets an affinity; the device plugin needs affinity: null"]
    assert findings["kernel-modules"] == [f"infra repo: {MODULES_PATCH} is not valid YAML (line 2)"]


def test_lint_never_writes(tmp_path: Path) -> None:
    profile = _profile(tmp_path)
    (tmp_path / "k8s").mkdir()
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    lint_infra(profile)
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before


def test_every_patch_in_the_repo_goes_through_the_boot_guard(tmp_path: Path) -> None:
    """Whoever wrote them: each talos/patches file Talos would refuse at boot is container-runtime evidence,
    with the rule and the line; a safe one (create under /var, the seed's modules patch) is not."""
    profile = _profile(tmp_path, no_cgroups=False)
    _write_seed(profile)
    patches = tmp_path / "talos/patches"
    (patches / "var-file.yaml").write_text("machine:\n  files:\n    - path: /var/lib/x.conf\n      op: create\n"
                                           "      content: x\n")
    assert lint_infra(profile) == {}
    (patches / "etc-file.json").write_text(
        '[\n  {"op": "add", "path": "/machine/files/-",\n   "value": {"op": "create", "path": "/etc/x.conf"}}\n]\n')
    (patches / "overwrite.yaml").write_text("machine:\n  files:\n    - op: overwrite\n      path: /etc/nope\n")
    assert lint_infra(profile)["container-runtime"] == [
        "infra repo: talos/patches/etc-file.json line 2 would stop the next boot: machine.files: op create is "
        "allowed only under /var; Talos's writeUserFiles fails with create operation not allowed outside of /var: "
        '"/etc/x.conf"; never apply it',
        "infra repo: talos/patches/overwrite.yaml line 3 would stop the next boot: machine.files: op "
        "overwrite/append needs the file to exist on the node; Talos's writeUserFiles fails with file must exist: "
        '"/etc/nope"; never apply it',
    ]
