"""The expected state of the node (`--profile`): what "GPU-enabled" means for this cluster.

Without a file the profile is the seed's setup. A file may override any key; unknown keys and
wrong types are rejected with a one-line `UsageError` naming the key.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from checks import yamlsafe
from checks.errors import UsageError, read_user_file

TRACKS = ("production", "lts")
DEFAULT_MODULES = ("nvidia", "nvidia_uvm", "nvidia_drm", "nvidia_modeset")
OFFICIAL_EXTENSION_PREFIX = "siderolabs/"

_TALOS_VERSION = re.compile(r"^v\d+\.\d+\.\d+(?:-[0-9A-Za-z.-]+)?$")
_MODULE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_DNS_LABEL = re.compile(r"^[a-z0-9](?:[-a-z0-9]{0,61}[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(
    r"^(?=.{1,253}$)[a-z0-9](?:[-a-z0-9]*[a-z0-9])?(?:\.[a-z0-9](?:[-a-z0-9]*[a-z0-9])?)*$"
)
_HELM_RELEASE = re.compile(
    r"^(?=.{1,53}$)[a-z0-9](?:[-a-z0-9]*[a-z0-9])?(?:\.[a-z0-9](?:[-a-z0-9]*[a-z0-9])?)*$"
)
_REPO_URL = re.compile(r"^(?:https?|oci)://\S+$")


@dataclass(frozen=True)
class DevicePluginSpec:
    """Where the NVIDIA device plugin Helm release lives and where it comes from."""

    namespace: str = "kube-system"
    release: str = "nvidia-device-plugin"
    chart: str = "nvdp/nvidia-device-plugin"
    values: str = "k8s/nvidia-device-plugin/values.yaml"  # relative to the profile's infra_repo
    repo_name: str = "nvdp"
    repo_url: str = "https://nvidia.github.io/k8s-device-plugin"


PATHS = ("auto", "device-plugin", "gpu-operator")
MIN_GPU_OPERATOR = (26, 3, 1)  # Talos 1.13's docs: the GPU Operator from v26.3.1 (driver and toolkit disabled)


@dataclass(frozen=True)
class GpuOperatorSpec:
    """Where the NVIDIA GPU Operator's Helm release lives and where it comes from (the gpu-operator path)."""

    namespace: str = "gpu-operator"
    release: str = "gpu-operator"
    chart: str = "nvidia/gpu-operator"
    version: str = "v26.3.1"
    values: str = "k8s/gpu-operator/values.yaml"  # relative to the profile's infra_repo
    repo_name: str = "nvidia"
    repo_url: str = "https://helm.ngc.nvidia.com/nvidia"


@dataclass(frozen=True)
class Profile:
    """The expected state; the defaults are the seed's setup (Talos v1.11.5, production track)."""

    track: str = "production"
    talos_version: str | None = None  # None: the node's running version
    gpu_count: int | None = None  # None: the number of NVIDIA PCI devices on the node
    modules: tuple[str, ...] = DEFAULT_MODULES
    runtime_class: str = "nvidia"
    device_plugin: DevicePluginSpec = field(default_factory=DevicePluginSpec)
    no_cgroups: bool = False  # true: warn that the runbook's no-cgroups file cannot be written on Talos
    path: str = "auto"  # device-plugin | gpu-operator | auto (from the node's Talos version)
    gpu_operator: GpuOperatorSpec = field(default_factory=GpuOperatorSpec)
    infra_repo: Path = Path(".")  # from a file: relative to the file's directory, made absolute
    test_image: str = "nvcr.io/nvidia/cuda:12.5.0-base-ubuntu22.04"

    @property
    def kmod_extension(self) -> str:
        """The kernel-modules extension's name, e.g. `nvidia-open-gpu-kernel-modules-production`."""
        return f"nvidia-open-gpu-kernel-modules-{self.track}"

    @property
    def toolkit_extension(self) -> str:
        """The container-toolkit extension's name, e.g. `nvidia-container-toolkit-production`."""
        return f"nvidia-container-toolkit-{self.track}"

    @property
    def official_extensions(self) -> tuple[str, ...]:
        """Both extensions as an Image Factory schematic names them, sorted as the web wizard does."""
        return tuple(
            sorted(OFFICIAL_EXTENSION_PREFIX + n for n in (self.kmod_extension, self.toolkit_extension))
        )

    @property
    def device_plugin_values_path(self) -> Path:
        """The Helm values file of the device plugin, inside `infra_repo`."""
        return self.infra_repo / self.device_plugin.values


# --------------------------------------------------------------------------- loading


class _Invalid(Exception):
    """A rejected value; `load_profile` adds the file name and turns it into a UsageError."""


class _UniqueKeyLoader(yamlsafe.Base()):  # type: ignore[misc]
    """SafeLoader that refuses a key given twice (PyYAML silently keeps the last one)."""


def _construct_unique_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node)
        if isinstance(key, str | int | float | bool) and key in seen:
            raise _Invalid(f"key {key!r} appears twice (line {key_node.start_mark.line + 1})")
        seen.add(key)
    return loader.construct_mapping(node)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_unique_mapping)


def load_profile(path: Path | str | None) -> Profile:
    """The profile in the YAML file at `path`, or the seed's defaults when `path` is None."""
    if path is None:
        return Profile()
    path = Path(path)
    label = f"profile {path}"
    text = read_user_file(path, label)
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except _Invalid as exc:
        raise UsageError(f"{label}: {exc}") from None
    except yaml.YAMLError as exc:
        # The parser's own message quotes the offending line; give the line number only.
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise UsageError(f"{label}: is not valid YAML{where}") from None
    if data is None:
        raise UsageError(f"{label}: is empty")
    if not isinstance(data, Mapping):
        raise UsageError(f"{label}: expected a mapping of keys at the top level, got {_describe(data)}")
    base = Path(os.path.normpath(path.absolute().parent))
    try:
        return _build_profile(data, base)
    except _Invalid as exc:
        raise UsageError(f"{label}: {exc}") from None


def _build_profile(data: Mapping[Any, Any], base: Path) -> Profile:
    _reject_unknown_keys(data, _PROFILE_FIELDS, prefix="")
    values: dict[str, Any] = {}
    for key, value in data.items():
        if key == "device_plugin":
            values[key] = _build_device_plugin(value)
        elif key == "gpu_operator":
            values[key] = _build_gpu_operator(value)
        elif value is None and key in _OPTIONAL_FIELDS:
            values[key] = None
        else:
            values[key] = _PROFILE_FIELDS[key](key, value)
    # Omitted, infra_repo is the default "." read like a written one: the profile's own directory.
    values["infra_repo"] = _resolve_infra_repo(values.get("infra_repo", "."), base)
    return Profile(**values)


def _build_device_plugin(value: Any) -> DevicePluginSpec:
    if value is None:
        return DevicePluginSpec()
    if not isinstance(value, Mapping):
        raise _Invalid(f"key 'device_plugin' must be a mapping, got {_describe(value)}")
    _reject_unknown_keys(value, _DEVICE_PLUGIN_FIELDS, prefix="device_plugin.")
    return DevicePluginSpec(
        **{key: _DEVICE_PLUGIN_FIELDS[key](f"device_plugin.{key}", item) for key, item in value.items()}
    )


def _build_gpu_operator(value: Any) -> GpuOperatorSpec:
    if value is None:
        return GpuOperatorSpec()
    if not isinstance(value, Mapping):
        raise _Invalid(f"key 'gpu_operator' must be a mapping, got {_describe(value)}")
    _reject_unknown_keys(value, _GPU_OPERATOR_FIELDS, prefix="gpu_operator.")
    return GpuOperatorSpec(
        **{key: _GPU_OPERATOR_FIELDS[key](f"gpu_operator.{key}", item) for key, item in value.items()}
    )


def _resolve_infra_repo(value: str, base: Path) -> Path:
    path = Path(value).expanduser()
    return Path(os.path.normpath(path if path.is_absolute() else base / path))


def _reject_unknown_keys(data: Mapping[Any, Any], known: Mapping[str, object], prefix: str) -> None:
    for key in data:
        if not isinstance(key, str):
            raise _Invalid(f"key {prefix}{key!r} is not a name (keys are strings such as {prefix}track)")
        if key not in known:
            # a mapping value was meant for a nested key (device_plugin, gpu_operator), a scalar for another
            nested = isinstance(data[key], Mapping)
            alike = [name for name in known if (name in _NESTED_FIELDS) == nested] or list(known)
            guess = _closest_key(key, alike)
            hint = f" (did you mean '{prefix}{guess}'?)" if guess else f" (known: {', '.join(known)})"
            raise _Invalid(f"unknown key '{prefix}{key}'{hint}")


def _closest_key(key: str, known: list[str]) -> str | None:
    """The known key the user most likely meant: a near spelling, else one starting with the same stem."""
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    if close:
        return close[0]
    stem = key.lower().rstrip("s")
    starting = [name for name in known if len(stem) >= 3 and name.startswith(stem)]
    return starting[0] if len(starting) == 1 else None


# --------------------------------------------------------------------------- value checks


def _describe(value: Any) -> str:
    """A short, quoted rendering of a rejected value (never the whole of a long one)."""
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, str):
        shown = value if len(value) <= 40 else value[:39] + "…"
        return repr(shown)
    if value is None:
        return "nothing (null)"
    return repr(value)


def _string(key: str, value: Any) -> str:
    if not isinstance(value, str):
        raise _Invalid(f"key '{key}' must be a string, got {_describe(value)}")
    if not value.strip():
        raise _Invalid(f"key '{key}' must not be empty")
    return value


def _matching(pattern: re.Pattern[str], expectation: str) -> Callable[[str, Any], str]:
    def check(key: str, value: Any) -> str:
        if not isinstance(value, str):
            raise _Invalid(f"key '{key}' must be {expectation}, got {_describe(value)}")
        if not pattern.match(value):
            raise _Invalid(f"key '{key}' must be {expectation}, got {_describe(value)}")
        return value

    return check


def _track(key: str, value: Any) -> str:
    if value not in TRACKS or not isinstance(value, str):
        raise _Invalid(f"key '{key}' must be 'production' or 'lts', got {_describe(value)}")
    return value


def _gpu_count(key: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _Invalid(f"key '{key}' must be an integer, got {_describe(value)}")
    if value < 1:
        raise _Invalid(
            f"key '{key}' must be at least 1 (omit it to count the node's NVIDIA devices), got {value}"
        )
    return value


def _boolean(key: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise _Invalid(f"key '{key}' must be true or false, got {_describe(value)}")
    return value


def _modules(key: str, value: Any) -> tuple[str, ...]:
    if not isinstance(value, list | tuple) or not value:
        raise _Invalid(f"key '{key}' must be a non-empty list of module names, got {_describe(value)}")
    names: list[str] = []
    for item in value:
        if not isinstance(item, str) or not _MODULE_NAME.match(item):
            raise _Invalid(
                f"key '{key}' must list kernel module names such as nvidia_uvm, got {_describe(item)}"
            )
        if item in names:
            raise _Invalid(f"key '{key}' lists {item!r} twice")
        names.append(item)
    return tuple(names)


def _image(key: str, value: Any) -> str:
    value = _string(key, value)
    if any(c.isspace() for c in value):
        raise _Invalid(f"key '{key}' must be an image reference without spaces, got {_describe(value)}")
    if value.startswith("-"):  # it ends up in an argv: it must never read as an option
        raise _Invalid(f"key '{key}' must not start with '-', got {_describe(value)}")
    return value


def _chart(key: str, value: Any) -> str:
    value = _string(key, value)
    if not _CHART_REFERENCE.match(value):
        raise _Invalid(f"key '{key}' must be a chart reference like 'nvdp/nvidia-device-plugin' or an "
                       f"oci:// URL, got {_describe(value)}")
    return value


def _relative_file(key: str, value: Any) -> str:
    value = _string(key, value)
    if value.startswith("-") or "\x00" in value:
        raise _Invalid(f"key '{key}' must be a file path that does not start with '-', got {_describe(value)}")
    return value


def _path(key: str, value: Any) -> str:
    if not isinstance(value, str) or value not in PATHS:
        raise _Invalid(f"key '{key}' must be one of {', '.join(PATHS)}, got {_describe(value)}")
    return value


_OPERATOR_VERSION = re.compile(r"^v?(\d+)\.(\d+)\.(\d+)$")


def _operator_version(key: str, value: Any) -> str:
    match = _OPERATOR_VERSION.match(value) if isinstance(value, str) else None
    if match is None:
        raise _Invalid(f"key '{key}' must be a GPU Operator chart version like 'v26.3.1', got {_describe(value)}")
    if tuple(int(part) for part in match.groups()) < MIN_GPU_OPERATOR:
        raise _Invalid(f"key '{key}' must be at least v26.3.1 (the first GPU Operator Talos 1.13 supports), "
                       f"got {_describe(value)}")
    return value


_CHART_REFERENCE = re.compile(r"^(?:oci://[A-Za-z0-9][\w.:/-]*|[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*|\.{0,2}/[\w./-]+)$")

_PROFILE_FIELDS: dict[str, Callable[[str, Any], Any]] = {
    "track": _track,
    "talos_version": _matching(_TALOS_VERSION, "a Talos version like 'v1.11.5'"),
    "gpu_count": _gpu_count,
    "modules": _modules,
    "runtime_class": _matching(_DNS_SUBDOMAIN, "a RuntimeClass name like 'nvidia'"),
    "device_plugin": _build_device_plugin,  # handled separately (nested keys)
    "no_cgroups": _boolean,
    "path": _path,
    "gpu_operator": _build_gpu_operator,  # handled separately (nested keys)
    "infra_repo": _relative_file,
    "test_image": _image,
}
_NESTED_FIELDS = frozenset({"device_plugin", "gpu_operator"})
_OPTIONAL_FIELDS = frozenset({"talos_version", "gpu_count"})

_DEVICE_PLUGIN_FIELDS: dict[str, Callable[[str, Any], Any]] = {
    "namespace": _matching(_DNS_LABEL, "a namespace name like 'kube-system'"),
    "release": _matching(_HELM_RELEASE, "a Helm release name like 'nvidia-device-plugin'"),
    "chart": _chart,
    "values": _relative_file,
    "repo_name": _matching(_DNS_SUBDOMAIN, "a Helm repository name like 'nvdp'"),
    "repo_url": _matching(_REPO_URL, "a repository URL like 'https://nvidia.github.io/k8s-device-plugin'"),
}

_GPU_OPERATOR_FIELDS: dict[str, Callable[[str, Any], Any]] = {
    "namespace": _matching(_DNS_LABEL, "a namespace name like 'gpu-operator'"),
    "release": _matching(_HELM_RELEASE, "a Helm release name like 'gpu-operator'"),
    "chart": _chart,
    "version": _operator_version,
    "values": _relative_file,
    "repo_name": _matching(_DNS_SUBDOMAIN, "a Helm repository name like 'nvidia'"),
    "repo_url": _matching(_REPO_URL, "a repository URL like 'https://helm.ngc.nvidia.com/nvidia'"),
}
