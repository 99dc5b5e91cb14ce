"""Image Factory schematics computed offline: the canonical YAML, its id, and installer image references.

The factory's schematic id is the SHA-256 (hex) of the schematic marshalled as canonical YAML
(siderolabs/image-factory pkg/schematic: go yaml Marshal, 4-space indent, struct field order
``overlay`` then ``customization`` with ``extraKernelArgs``, ``meta``, ``systemExtensions``,
``secureboot``; empty fields omitted; ``customization: {}`` when it is empty). The API keeps list order,
so the same extensions in a different order give a different id.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence

FACTORY_HOST = "factory.talos.dev"
NVIDIA_EXTENSION_BASES = ("nvidia-container-toolkit", "nvidia-open-gpu-kernel-modules")
"""The two extensions of the seed, in the order that reproduces the published production schematic id."""

FABRICMANAGER_BASE = "nvidia-fabricmanager"
"""Fabric Manager: needed on HGX/DGX boards, whose GPUs are joined by NVSwitch bridges (FACTS.md)."""

_SCHEMATIC_ID_RE = re.compile(r"^[0-9a-f]{64}$")
_TRACK_RE = re.compile(r"^[a-z0-9][a-z0-9-]*$")
# Values that go-yaml prints without quotes: no YAML indicators, not a number/bool/null look-alike.
_PLAIN_SCALAR_RE = re.compile(r"^[A-Za-z0-9_./][A-Za-z0-9_./=,+~@-]*$")
_YAML_SPECIAL_RE = re.compile(
    r"^(?:[-+]?(?:\d[\d_]*)?\.?\d[\d_]*(?:[eE][-+]?\d+)?|0x[0-9A-Fa-f_]+|0o?[0-7_]+|0b[01_]+|[-+]?\.inf|\.nan"
    r"|~|null|Null|NULL|true|True|TRUE|false|False|FALSE|y|Y|yes|Yes|YES|n|N|no|No|NO|on|On|ON|off|Off|OFF)$"
)
_INSTALLER_RE = re.compile(
    r"^(?:[a-z]+://)?(?:[A-Za-z0-9.\-]+(?::\d+)?/)?(?:[a-z0-9]+-)*installer(?:-secureboot)?/"
    r"(?P<id>[0-9a-f]{64}):(?P<version>[A-Za-z0-9][A-Za-z0-9._+\-]*)(?:@sha256:[0-9a-f]{64})?$"
)


def _plain(value: str, what: str) -> str:
    """``value`` as a plain YAML scalar; ValueError when go-yaml would quote it (the id then cannot be
    reproduced offline with certainty: register the schematic with the factory instead)."""
    if not _PLAIN_SCALAR_RE.match(value) or _YAML_SPECIAL_RE.match(value):
        raise ValueError(f"{what} {value!r} needs YAML quoting; compute its schematic id with the Image Factory")
    return value


def canonical_schematic_yaml(
    official_extensions: Sequence[str] = (), extra_kernel_args: Sequence[str] = ()
) -> str:
    """The schematic as Image Factory marshals it (the text whose SHA-256 is the id).

    Keeps the order of both lists (the API does not sort; only the web wizard does).
    """
    if isinstance(official_extensions, str) or isinstance(extra_kernel_args, str):
        raise TypeError("pass lists of strings, not a single string")
    lines: list[str] = []
    if extra_kernel_args:
        lines.append("    extraKernelArgs:")
        lines.extend(f"        - {_plain(arg, 'kernel argument')}" for arg in extra_kernel_args)
    if official_extensions:
        lines.append("    systemExtensions:")
        lines.append("        officialExtensions:")
        lines.extend(f"            - {_plain(name, 'extension')}" for name in official_extensions)
    if not lines:
        return "customization: {}\n"
    return "customization:\n" + "\n".join(lines) + "\n"


def schematic_id(yaml_text: str) -> str:
    """The Image Factory id of a canonical schematic YAML: its SHA-256 in hex."""
    return hashlib.sha256(yaml_text.encode("utf-8")).hexdigest()


def nvidia_extension_names(track: str) -> list[str]:
    """The seed's two official extensions on ``track`` ("production" or "lts"), toolkit first."""
    if not isinstance(track, str) or not _TRACK_RE.match(track):
        raise ValueError(f"not an extension track: {track!r}")
    return [f"siderolabs/{base}-{track}" for base in NVIDIA_EXTENSION_BASES]


def nvidia_schematic(track: str, *, fabricmanager: bool = False) -> tuple[str, str]:
    """(canonical YAML, id) of the schematic with both NVIDIA extensions on ``track``; with
    ``fabricmanager`` (boards with NVSwitch bridges), ``nvidia-fabricmanager-<track>`` after them.

    For "production" this is 6698d6f136c5bb37ca8bb8482c9084305084da0a5ead1f4dcae760796f8ab3a2.
    """
    names = nvidia_extension_names(track)
    if fabricmanager:
        names.append(f"siderolabs/{FABRICMANAGER_BASE}-{track}")
    text = canonical_schematic_yaml(names)
    return text, schematic_id(text)


def installer_image(schematic: str, talos_version: str, *, host: str = FACTORY_HOST) -> str:
    """``factory.talos.dev/installer/<id>:<version>``; a version without its leading "v" gets one."""
    if not _SCHEMATIC_ID_RE.match(schematic):
        raise ValueError(f"not a schematic id (64 lowercase hex digits): {schematic!r}")
    version = talos_version.strip()
    if version[:1].isascii() and version[:1].isdigit():
        version = "v" + version
    if not re.match(r"^v[0-9A-Za-z._+\-]+$", version):
        raise ValueError(f"not a Talos version: {talos_version!r}")
    return f"{host}/installer/{schematic}:{version}"


def parse_installer_image(reference: str) -> tuple[str, str] | None:
    """(schematic id, Talos version) of an Image Factory installer reference, or None.

    Accepts ``installer/``, ``metal-installer/`` (and other ``<platform>-installer/``, ``-secureboot``)
    references, with or without a registry host or a ``@sha256:`` digest after the tag. A reference
    without a 64-hex schematic id or without a tag (e.g. ``ghcr.io/siderolabs/installer:v1.11.5``) is None.
    """
    if not isinstance(reference, str):
        return None
    match = _INSTALLER_RE.match(reference.strip())
    if not match:
        return None
    return match.group("id"), match.group("version")
