"""What a sweep or an action needs to reach the cluster: cheap to import (the first frame waits on it)."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from checks.adapters.tools import Helm, Talosctl
from checks.config import (
    KubeTarget,
    TalosTarget,
    check_config_file,
    find_helm,
    kubeconfig_path,
    resolve_kube,
    resolve_talos,
    talosconfig_path,
    talosctl_path,
    validate_node_address,
)
from checks.errors import UsageError
from checks.profile import Profile, load_profile

if TYPE_CHECKING:
    from checks.redact import Redactor


@dataclass
class Target:
    """Everything a sweep or an action needs to reach the cluster."""

    talos: TalosTarget
    kube: KubeTarget
    profile: Profile
    talosctl_bin: str
    helm_bin: str | None
    env: dict[str, str] | None = None

    def talosctl(self) -> Talosctl:
        return Talosctl(self.talosctl_bin, self.talos, self.env)

    def helm(self) -> Helm | None:
        return Helm(self.helm_bin, self.kube, self.env) if self.helm_bin else None


def build_target(*, node: str | None = None, talosconfig: str | None = None, talos_context: str | None = None,
                 kubeconfig: str | None = None, kube_context: str | None = None, profile: str | None = None,
                 infra_repo: str | None = None, env: Mapping[str, str] | None = None,
                 redactor: Redactor | None) -> Target:
    """Resolve the configs, the profile and the binaries, as the options of INTERFACE.md name them (None:
    the documented default). Raises UsageError with a one-line message.

    `redactor` learns the secrets of the two config files before anything else is read (pass
    `checks.redact.REDACTOR` for a command; None: nobody learns them, e.g. a test's throw-away target).
    `env` is where $TALOSCONFIG, $KUBECONFIG and PATH are looked up (default: os.environ); a Target
    built with one runs its tools with it."""
    environ = dict(os.environ if env is None else env)
    if node is not None:
        validate_node_address(node)
    talos = resolve_talos(talosconfig, talos_context, node, env=environ)
    kube = resolve_kube(kubeconfig, kube_context, env=environ)
    if redactor is not None:
        from checks.secrets import collect_secrets

        redactor.add(collect_secrets(kubeconfig=kube.kubeconfig, talosconfig=talos.talosconfig))
    loaded = load_profile(_path(profile))
    if infra_repo is not None:
        loaded = dataclasses.replace(loaded, infra_repo=_infra_repo(infra_repo))
    return Target(talos, kube, loaded, talosctl_path(environ), find_helm(environ), None if env is None else dict(env))


def check_target_files(*, node: str | None = None, talosconfig: str | None = None, kubeconfig: str | None = None,
                       profile: str | None = None, env: Mapping[str, str] | None = None) -> None:
    """The cheap half of `build_target`, for the TUI to run before its first frame (no YAML, no kubernetes):
    a bad node address, a config file or profile that is missing, unreadable or blank, or no talosctl is one
    line (UsageError) before the screen opens. Parsing the files is left to `build_target`, after the frame."""
    environ = dict(os.environ if env is None else env)
    if node is not None:
        validate_node_address(node)
    talosconfig_file = talosconfig_path(talosconfig, environ)
    check_config_file(talosconfig_file, f"talosconfig {talosconfig_file}")
    kubeconfig_file = kubeconfig_path(kubeconfig, environ)
    check_config_file(kubeconfig_file, f"kubeconfig {kubeconfig_file}")
    profile_file = _path(profile)
    if profile_file is not None:
        check_config_file(profile_file, f"profile {profile_file}")
    talosctl_path(environ)


def _infra_repo(value: str) -> Path:
    """`--infra-repo DIR`, relative to the current directory; a path that exists and is not a directory is
    refused (a missing one is fine: the actions create it when they write their first file)."""
    path = Path(value).expanduser().absolute()
    if path.exists() and not path.is_dir():
        raise UsageError(f"--infra-repo {value}: is not a directory")
    return Path(os.path.normpath(path))


def _path(value: str | None) -> Path | None:
    return None if value is None else Path(value).expanduser()
