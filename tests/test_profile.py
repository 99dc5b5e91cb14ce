"""The expected-state profile (checks.profile)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from checks.errors import UsageError
from checks.profile import DevicePluginSpec, Profile, load_profile

FULL_PROFILE = """\
track: lts
talos_version: v1.11.5
gpu_count: 2
modules: [nvidia, nvidia_uvm]
runtime_class: nvidia-gpu
device_plugin:
  namespace: gpu-system
  release: nvdp
  chart: nvdp/nvidia-device-plugin
  values: deploy/values.yaml
  repo_name: nvdp
  repo_url: https://nvidia.github.io/k8s-device-plugin
no_cgroups: false
infra_repo: ../infra
test_image: registry.example.com/cuda:12.5.0-base
"""


def write_profile(directory: Path, text: str, name: str = "profile.yaml") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(text)
    return path


def profile_error(path: Path) -> str:
    with pytest.raises(UsageError) as caught:
        load_profile(path)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"profile {path}: ")
    return message


# ----------------------------------------------------------------------------- defaults


def test_defaults_are_the_seed_setup() -> None:
    profile = load_profile(None)
    assert profile == Profile()
    assert profile.track == "production"
    assert profile.talos_version is None
    assert profile.gpu_count is None
    assert profile.modules == ("nvidia", "nvidia_uvm", "nvidia_drm", "nvidia_modeset")
    assert profile.runtime_class == "nvidia"
    assert profile.no_cgroups is False  # INTERFACE.md: the runbook's no-cgroups file cannot be written on Talos
    assert profile.infra_repo == Path(".")
    assert profile.test_image == "nvcr.io/nvidia/cuda:12.5.0-base-ubuntu22.04"
    assert profile.device_plugin == DevicePluginSpec(
        namespace="kube-system",
        release="nvidia-device-plugin",
        chart="nvdp/nvidia-device-plugin",
        values="k8s/nvidia-device-plugin/values.yaml",
        repo_name="nvdp",
        repo_url="https://nvidia.github.io/k8s-device-plugin",
    )


def test_extension_names_follow_the_track() -> None:
    production = Profile()
    assert production.kmod_extension == "nvidia-open-gpu-kernel-modules-production"
    assert production.toolkit_extension == "nvidia-container-toolkit-production"
    assert production.official_extensions == (
        "siderolabs/nvidia-container-toolkit-production",
        "siderolabs/nvidia-open-gpu-kernel-modules-production",
    )
    lts = Profile(track="lts")
    assert (lts.kmod_extension, lts.toolkit_extension) == (
        "nvidia-open-gpu-kernel-modules-lts",
        "nvidia-container-toolkit-lts",
    )


def test_profile_is_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        Profile().track = "lts"  # type: ignore[misc]


# ----------------------------------------------------------------------------- valid files


def test_full_valid_file(tmp_path: Path) -> None:
    path = write_profile(tmp_path / "repo" / "profiles", FULL_PROFILE)
    profile = load_profile(path)
    assert profile == Profile(
        track="lts",
        talos_version="v1.11.5",
        gpu_count=2,
        modules=("nvidia", "nvidia_uvm"),
        runtime_class="nvidia-gpu",
        device_plugin=DevicePluginSpec(
            namespace="gpu-system",
            release="nvdp",
            chart="nvdp/nvidia-device-plugin",
            values="deploy/values.yaml",
            repo_name="nvdp",
            repo_url="https://nvidia.github.io/k8s-device-plugin",
        ),
        no_cgroups=False,
        infra_repo=tmp_path / "repo" / "infra",
        test_image="registry.example.com/cuda:12.5.0-base",
    )
    assert profile.device_plugin_values_path == tmp_path / "repo" / "infra" / "deploy" / "values.yaml"


def test_partial_file_keeps_other_defaults(tmp_path: Path) -> None:
    path = write_profile(tmp_path, "gpu_count: 1\ndevice_plugin: {namespace: nvidia}\n")
    profile = load_profile(path)
    assert profile.gpu_count == 1
    assert profile.device_plugin == DevicePluginSpec(namespace="nvidia")
    assert profile.infra_repo == tmp_path
    assert dataclasses.replace(
        profile, gpu_count=None, device_plugin=DevicePluginSpec(), infra_repo=Path(".")
    ) == (Profile())


def test_null_optional_values_mean_omitted(tmp_path: Path) -> None:
    profile = load_profile(write_profile(tmp_path, "talos_version: null\ngpu_count: ~\ndevice_plugin:\n"))
    assert (profile.talos_version, profile.gpu_count, profile.device_plugin) == (
        None,
        None,
        DevicePluginSpec(),
    )


def test_talos_version_with_prerelease_suffix(tmp_path: Path) -> None:
    assert (
        load_profile(write_profile(tmp_path, "talos_version: v1.12.0-alpha.1\n")).talos_version
        == "v1.12.0-alpha.1"
    )


@pytest.mark.parametrize(
    ("infra_repo", "expected"),
    [
        (None, "profiles"),  # absent: the profile's own directory
        (".", "profiles"),
        ("infra", "profiles/infra"),
        ("../infra", "infra"),
        ("'my infra repo'", "profiles/my infra repo"),
    ],
)
def test_infra_repo_is_relative_to_the_profile_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, infra_repo: str | None, expected: str
) -> None:
    text = f"infra_repo: {infra_repo}\n" if infra_repo is not None else "track: production\n"
    path = write_profile(tmp_path / "profiles", text)
    monkeypatch.chdir(tmp_path / "profiles")  # a relative --profile must give the same answer
    profile = load_profile(Path("profile.yaml"))
    assert profile.infra_repo == tmp_path / expected
    assert load_profile(path).infra_repo == profile.infra_repo


def test_absolute_infra_repo_is_kept(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    assert load_profile(write_profile(tmp_path / "p", f"infra_repo: {target}\n")).infra_repo == target


# ----------------------------------------------------------------------------- rejected files


def test_missing_file(tmp_path: Path) -> None:
    assert profile_error(tmp_path / "nope.yaml") == f"profile {tmp_path / 'nope.yaml'}: not found"


def test_directory(tmp_path: Path) -> None:
    assert profile_error(tmp_path).endswith("is a directory, not a file")


@pytest.mark.parametrize("text", ["", "\n\n", "# nothing but a comment\n"])
def test_empty_file(tmp_path: Path, text: str) -> None:
    path = write_profile(tmp_path, text)
    assert profile_error(path) == f"profile {path}: is empty"


def test_malformed_yaml_names_the_line_only(tmp_path: Path) -> None:
    path = write_profile(tmp_path, "track: production\nmodules: [nvidia, secret-looking-text\n")
    message = profile_error(path)
    assert message.startswith(f"profile {path}: is not valid YAML (line ")
    assert "secret-looking-text" not in message


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "profile.yaml"
    path.write_bytes(b"track: \xff\xfe\n")
    assert profile_error(path).endswith("is not UTF-8 text")


@pytest.mark.parametrize("text", ["- track\n- lts\n", "just a string\n", "42\n"])
def test_top_level_must_be_a_mapping(tmp_path: Path, text: str) -> None:
    assert "expected a mapping of keys at the top level" in profile_error(write_profile(tmp_path, text))


def test_duplicate_key(tmp_path: Path) -> None:
    path = write_profile(tmp_path, "track: production\ngpu_count: 2\ntrack: lts\n")
    assert profile_error(path) == f"profile {path}: key 'track' appears twice (line 3)"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("trak: lts\n", "unknown key 'trak' (did you mean 'track'?)"),
        ("gpus: 2\n", "unknown key 'gpus' (did you mean 'gpu_count'?)"),
        ("module: [nvidia]\n", "unknown key 'module' (did you mean 'modules'?)"),
        ("colour: blue\n", "unknown key 'colour' (known: track, talos_version, gpu_count, modules, runtime_class, "
         "device_plugin, no_cgroups, path, gpu_operator, infra_repo, test_image)"),
        ("device_plugin: {nmespace: x}\n", "unknown key 'device_plugin.nmespace' (did you mean 'device_plugin.namespace'?)"),
        ("1: x\n", "key 1 is not a name"),
    ],
)  # fmt: skip
def test_unknown_keys_are_rejected_with_a_suggestion(tmp_path: Path, text: str, expected: str) -> None:
    path = write_profile(tmp_path, text)
    assert expected in profile_error(path)


WRONG_VALUES = [
    ("track: staging", "key 'track' must be 'production' or 'lts', got 'staging'"),
    ("track: no", "key 'track' must be 'production' or 'lts', got False"),
    ("track: [production]", "key 'track' must be 'production' or 'lts', got a list"),
    ("talos_version: 1.11.5", "key 'talos_version' must be a Talos version like 'v1.11.5', got '1.11.5'"),
    ("talos_version: 1.11", "key 'talos_version' must be a Talos version like 'v1.11.5', got 1.11"),
    ("talos_version: v1.11", "key 'talos_version' must be a Talos version like 'v1.11.5', got 'v1.11'"),
    ("gpu_count: two", "key 'gpu_count' must be an integer, got 'two'"),
    ("gpu_count: '2'", "key 'gpu_count' must be an integer, got '2'"),
    ("gpu_count: 2.5", "key 'gpu_count' must be an integer, got 2.5"),
    ("gpu_count: true", "key 'gpu_count' must be an integer, got True"),
    ("gpu_count: 0", "key 'gpu_count' must be at least 1"),
    ("modules: []", "key 'modules' must be a non-empty list of module names, got a list"),
    ("modules: nvidia", "key 'modules' must be a non-empty list of module names, got 'nvidia'"),
    ("modules: [nvidia, 'nvidia uvm']", "key 'modules' must list kernel module names such as nvidia_uvm, got 'nvidia uvm'"),
    ("modules: [nvidia, 3]", "key 'modules' must list kernel module names such as nvidia_uvm, got 3"),
    ("modules: [nvidia, nvidia]", "key 'modules' lists 'nvidia' twice"),
    ("modules: [nvidia;reboot]", "key 'modules' must list kernel module names"),
    ("runtime_class: 12", "key 'runtime_class' must be a RuntimeClass name like 'nvidia', got 12"),
    ("runtime_class: NVIDIA", "key 'runtime_class' must be a RuntimeClass name like 'nvidia', got 'NVIDIA'"),
    ("device_plugin: kube-system", "key 'device_plugin' must be a mapping, got 'kube-system'"),
    ("device_plugin: {namespace: Kube_System}", "key 'device_plugin.namespace' must be a namespace name"),
    ("device_plugin: {release: 5}", "key 'device_plugin.release' must be a Helm release name"),
    ("device_plugin: {chart: ''}", "key 'device_plugin.chart' must not be empty"),
    ("device_plugin: {values: [a]}", "key 'device_plugin.values' must be a string, got a list"),
    ("device_plugin: {repo_url: 'ftp://x'}", "key 'device_plugin.repo_url' must be a repository URL"),
    ("no_cgroups: 'true'", "key 'no_cgroups' must be true or false, got 'true'"),
    ("no_cgroups: 1", "key 'no_cgroups' must be true or false, got 1"),
    ("infra_repo: 5", "key 'infra_repo' must be a string, got 5"),
    ("infra_repo: ''", "key 'infra_repo' must not be empty"),
    ("test_image: {a: b}", "key 'test_image' must be a string, got a mapping"),
    ("test_image: 'nvcr.io/x y'", "key 'test_image' must be an image reference without spaces"),
    ("test_image: null", "key 'test_image' must be a string, got nothing (null)"),
]  # fmt: skip


@pytest.mark.parametrize(("line", "expected"), WRONG_VALUES)
def test_wrong_types_and_values_name_the_key(tmp_path: Path, line: str, expected: str) -> None:
    path = write_profile(tmp_path, line + "\n")
    assert profile_error(path).startswith(f"profile {path}: {expected}")


def test_long_rejected_value_is_shortened(tmp_path: Path) -> None:
    path = write_profile(tmp_path, f"track: {'x' * 500}\n")
    message = profile_error(path)
    assert "…" in message and len(message) < len(str(path)) + 120
