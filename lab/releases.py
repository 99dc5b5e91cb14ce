"""The Talos releases the lab can run, with what each ships (FACTS.md "Talos versions and their NVIDIA
extensions", "Talos >= 1.13: GPU Operator and CDI").

Driver and toolkit versions are siderolabs/extensions ``nvidia-gpu/vars.yaml`` at each release branch.
Kernel, containerd and Kubernetes versions are the release's line (Linux 6.12 on 1.11, 6.18 from 1.12;
containerd 2.1 on 1.11/1.12, 2.2 on 1.13); the patch levels are the lab's stand-ins, not checked per tag.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Release:
    version: str              # the Talos tag, e.g. "v1.13.9"
    kernel: str               # /proc/sys/kernel/osrelease, Node kernelVersion
    containerd: str           # Node containerRuntimeVersion
    kubelet: str              # Node kubeletVersion
    drivers: dict[str, str]   # track -> NVIDIA driver of the kmod/toolkit/fabricmanager extensions
    toolkit: str              # NVIDIA container toolkit version (the toolkit extension's version suffix)
    cdi: bool                 # GPUs through CDI and the GPU Operator: ext-nvidia-cdi-gen, no nvidia-container-cli
    go_version: str

    @property
    def minor(self) -> tuple[int, int]:
        major, minor = self.version.lstrip("v").split(".")[:2]
        return int(major), int(minor)


RELEASES: dict[str, Release] = {
    release.version: release
    for release in (
        Release("v1.11.5", "6.12.57-talos", "containerd://2.1.5", "v1.34.1",
                {"production": "570.172.08", "lts": "535.247.01"}, "v1.17.8", False, "go1.24.9"),
        Release("v1.12.11", "6.18.22-talos", "containerd://2.1.6", "v1.35.4",
                {"production": "570.211.01", "lts": "580.126.20"}, "v1.18.2", False, "go1.25.8"),
        Release("v1.13.9", "6.18.24-talos", "containerd://2.2.3", "v1.36.1",
                {"production": "595.91.07", "lts": "580.178.04"}, "v1.19.1", True, "go1.26.2"),
    )
}
DEFAULT = "v1.11.5"
KNOWN = tuple(RELEASES)


def get(version: str | None) -> Release:
    """The release for a tag; a tag the lab does not ship (e.g. a factory image tag of another patch
    release) falls back to the known release of the same minor, else the default."""
    if version in RELEASES:
        return RELEASES[version]
    if version:
        minor = ".".join(version.lstrip("v").split(".")[:2])
        for release in RELEASES.values():
            if release.version.lstrip("v").startswith(minor + "."):
                return release
    return RELEASES[DEFAULT]


def check_known(version: str) -> str:
    """``version`` when the lab runs it, else ValueError with one line naming the known ones."""
    if version not in RELEASES:
        raise ValueError(f"unknown Talos version {version!r}; known: {', '.join(KNOWN)}")
    return version
