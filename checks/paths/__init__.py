"""Enablement paths: which stage table judges a node, picked from the Talos version it runs or fixed by
the profile's `path` (INTERFACE.md, "Enablement paths"). A path is data: its stage table, the Talos
release it starts at, and the linter of the infra files it uses."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from checks.paths import device_plugin, gpu_operator
from checks.probes import Probe
from checks.profile import Profile
from checks.stages import STAGE_IDS, StageSpec


@dataclass(frozen=True)
class EnablementPath:
    name: str
    since: tuple[int, int]  # the first Talos minor release it is the path of
    stages: tuple[StageSpec, ...]
    lint: Callable[[Profile], dict[str, list[str]]]

    @property
    def action_stages(self) -> tuple[str, ...]:
        """The stages that have an action here, in stage order."""
        return tuple(s.id for s in self.stages if s.action is not None)

    def probes(self) -> tuple[Probe, ...]:
        return probes_of((self,))


DEVICE_PLUGIN = EnablementPath("device-plugin", (0, 0), device_plugin.STAGES, device_plugin.LINT)
GPU_OPERATOR = EnablementPath("gpu-operator", (1, 13), gpu_operator.STAGES, gpu_operator.LINT)
PATHS: tuple[EnablementPath, ...] = (DEVICE_PLUGIN, GPU_OPERATOR)
DEFAULT = DEVICE_PLUGIN  # when the node's version cannot be told (its Talos API does not answer)

for _path in PATHS:  # every table has INTERFACE.md's stage ids, in order
    assert tuple(s.id for s in _path.stages) == STAGE_IDS, _path.name

_VERSION = re.compile(r"^v?(\d+)\.(\d+)")


def named(name: str) -> EnablementPath:
    for path in PATHS:
        if path.name == name:
            return path
    raise KeyError(name)


def for_version(tag: str | None) -> EnablementPath | None:
    """The path of a Talos version (`v1.13.9` → gpu-operator), None when the tag is not a version."""
    match = _VERSION.match(tag or "")
    if match is None:
        return None
    minor = (int(match.group(1)), int(match.group(2)))
    return max((p for p in PATHS if p.since <= minor), key=lambda p: p.since)


def candidates(profile: Profile) -> tuple[EnablementPath, ...]:
    """The paths a sweep must gather for: the profile's, or every path when it is `auto`."""
    return PATHS if profile.path == "auto" else (named(profile.path),)


def guessed(profile: Profile, guess: str | None) -> tuple[EnablementPath, ...]:
    """The paths whose facts a sweep gathers at once: the profile's; else the one the last run found for this
    node (a wrong guess costs a second round for the other path's facts, never a wrong answer); else all."""
    choices = candidates(profile)
    remembered = tuple(path for path in choices if path.name == guess)
    return remembered or choices


def kube_probes(profile: Profile, guess: str | None) -> tuple[Probe, ...]:
    """The Kubernetes probes (`Probe.kube`) of the paths a sweep gathers for (`guessed`): those the forked
    reader of a one-shot `check` answers (checks/kube_process.py), listed alike on both sides."""
    return tuple(probe for probe in probes_of(guessed(profile, guess)) if probe.kube)


def choose(profile: Profile, talos_version: str | None) -> EnablementPath:
    if profile.path != "auto":
        return named(profile.path)
    return for_version(talos_version) or DEFAULT


def probes_of(paths: tuple[EnablementPath, ...], stages: tuple[StageSpec, ...] = ()) -> tuple[Probe, ...]:
    """Every probe the stages read, once, in the order they start."""
    found: dict[str, Probe] = {}
    for spec in stages + tuple(s for path in paths for s in path.stages):
        for probe in spec.probes:
            found.setdefault(probe.name, probe)
    return tuple(sorted(found.values(), key=lambda probe: probe.order))


def light_probes() -> frozenset[str]:
    return frozenset(probe.name for probe in probes_of(PATHS) if probe.light)
