"""The NVIDIA extensions each Talos release ships (FACTS.md, "Talos versions and their NVIDIA extensions";
siderolabs/extensions `nvidia-gpu/vars.yaml` at each release branch)."""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class NvidiaRelease:
    talos: str  # the release it was read at, e.g. v1.13.9
    lts: str  # driver of the lts track
    production: str  # driver of the production track
    toolkit: str  # nvidia-container-toolkit version

    def driver(self, track: str) -> str:
        return self.lts if track == "lts" else self.production


# the newest patch release of each minor, then the .0 releases that shipped other versions
RELEASES: tuple[NvidiaRelease, ...] = (
    NvidiaRelease("v1.11.6", "535.247.01", "570.172.08", "v1.17.8"),
    NvidiaRelease("v1.12.11", "580.126.20", "570.211.01", "v1.18.2"),
    NvidiaRelease("v1.12.0", "580.105.08", "570.195.03", "v1.18.1"),
    NvidiaRelease("v1.13.9", "580.178.04", "595.91.07", "v1.19.1"),
    NvidiaRelease("v1.13.0", "580.126.20", "595.58.03", "v1.19.0"),
    NvidiaRelease("v1.14.0-rc.1", "580.178.04", "595.91.07", "v1.19.1"),
)

_MINOR = re.compile(r"^v?(\d+)\.(\d+)")


def _minor(tag: str) -> tuple[int, int] | None:
    match = _MINOR.match(tag or "")
    return (int(match.group(1)), int(match.group(2))) if match else None


def release_for(tag: str | None) -> tuple[NvidiaRelease | None, bool]:
    """(the table's row for this Talos version, whether it is that exact release). Another patch release of
    a known minor gets that minor's newest row, marked inexact: its versions may differ."""
    if not tag:
        return None, False
    for release in RELEASES:
        if release.talos == tag:
            return release, True
    minor = _minor(tag)
    same_minor = [r for r in RELEASES if _minor(r.talos) == minor]
    return (same_minor[0], False) if same_minor else (None, False)
