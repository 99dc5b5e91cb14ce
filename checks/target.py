"""What a sweep or an action needs to reach the cluster: cheap to import (the first frame waits on it)."""

from __future__ import annotations

from dataclasses import dataclass

from checks.adapters.tools import Helm, Talosctl
from checks.config import KubeTarget, TalosTarget
from checks.profile import Profile


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
