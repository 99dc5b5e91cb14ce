"""Image Factory schematics as the lab knows them: canonical YAML, ids, and the extensions they carry.

The id of a schematic is the SHA-256 (hex) of its canonical YAML: go-yaml v4 with a 4-space indent,
struct fields in a fixed order, empty fields left out (``customization`` itself is always written,
``{}`` when empty). This is the lab's own implementation (the app has another one); both are
checked against the published vectors in ``samples/talos/image-factory-schematic-id-vectors.txt``.
"""

from __future__ import annotations

import hashlib
import itertools
from typing import Any

from lab import releases
from lab.goyaml import dump_talos

TALOS_VERSION = "v1.11.5"
KERNEL_VERSION = "6.12.57-talos"

DRIVER_BY_TRACK = {"production": "570.172.08", "lts": "535.247.01"}
TOOLKIT_VERSION = "v1.17.8"

KMOD = "nvidia-open-gpu-kernel-modules"
TOOLKIT = "nvidia-container-toolkit"

# Field order of the Image Factory schematic structs (pkg/schematic): unknown keys go last, as given.
_FIELD_ORDER: dict[str, list[str]] = {
    "": ["overlay", "customization"],
    "overlay": ["image", "name", "options"],
    "customization": ["extraKernelArgs", "meta", "systemExtensions", "secureboot", "bootloader", "diskImage"],
    "customization.meta": ["key", "value"],
    "customization.systemExtensions": ["officialExtensions"],
    "customization.secureboot": ["includeWellKnownCertificates"],
    "customization.diskImage": ["sectorSize"],
}


def _is_empty(value: Any) -> bool:
    return value is None or value == {} or value == [] or value == "" or value is False or value == 0


def _canonical(value: Any, path: str) -> Any:
    if isinstance(value, dict):
        order = _FIELD_ORDER.get(path, [])
        keys = [key for key in order if key in value] + [key for key in value if key not in order]
        result: dict[str, Any] = {}
        for key in keys:
            child = _canonical(value[key], f"{path}.{key}" if path else key)
            if path == "" and key == "customization":
                result[key] = child if isinstance(child, dict) else {}
            elif not _is_empty(child):
                result[key] = child
        return result
    if isinstance(value, list):
        return [_canonical(item, path) for item in value]
    return value


def canonical_yaml(schematic: dict[str, Any]) -> str:
    """The canonical YAML text of a schematic (what Image Factory hashes)."""
    document = _canonical(dict(schematic), "")
    document.setdefault("customization", {})
    ordered = {key: document[key] for key in ("overlay", "customization") if key in document}
    ordered.update({key: value for key, value in document.items() if key not in ordered})
    return dump_talos(ordered)


def schematic_id(schematic: dict[str, Any]) -> str:
    return hashlib.sha256(canonical_yaml(schematic).encode()).hexdigest()


def for_extensions(names: list[str]) -> dict[str, Any]:
    """A schematic listing official extensions (``siderolabs/<name>``), order kept as the API does."""
    if not names:
        return {"customization": {}}
    qualified = [name if "/" in name else f"siderolabs/{name}" for name in names]
    return {"customization": {"systemExtensions": {"officialExtensions": qualified}}}


def extensions_id(names: list[str]) -> str:
    return schematic_id(for_extensions(names))


def official_extensions(schematic: dict[str, Any]) -> list[str]:
    """The extension names of a schematic, without the ``siderolabs/`` prefix."""
    customization = schematic.get("customization") or {}
    system = customization.get("systemExtensions") or {}
    names = system.get("officialExtensions") or []
    return [str(name).split("/", 1)[-1] for name in names]


VANILLA_ID = extensions_id([])

# --- the catalogue of extensions the lab can install ------------------------------------------------

_DESCRIPTIONS = {
    KMOD: "This system extension provides nvidia open source driver kernel modules built against a specific Talos version.\n",
    TOOLKIT: "This system extension provides nvidia runtime and it's dependencies using NVIDIA's runtime handler.\n",
}


# A few other official extensions a schematic may combine with the NVIDIA ones (versions as of Talos v1.11).
OTHER_EXTENSIONS = {
    "iscsi-tools": ("v0.2.0", "This system extension provides iscsi-tools.\n"),
    "util-linux-tools": ("2.41.1", "This system extension provides util-linux tools.\n"),
    "nvidia-fabricmanager-production": (f"{DRIVER_BY_TRACK['production']}",
                                        "This system extension provides NVIDIA Fabric Manager.\n"),
    "nvidia-fabricmanager-lts": (f"{DRIVER_BY_TRACK['lts']}", "This system extension provides NVIDIA Fabric Manager.\n"),
}


def extension_record(name: str, talos_version: str = TALOS_VERSION) -> dict[str, str] | None:
    """``{"name", "version", "author", "description"}`` of an official extension, None if unknown."""
    if name in OTHER_EXTENSIONS and not name.startswith("nvidia-fabricmanager-"):
        version, description = OTHER_EXTENSIONS[name]
        return {"name": name, "version": version, "author": "Sidero Labs", "description": description}
    release = releases.get(talos_version)
    if name.startswith("nvidia-fabricmanager-") and name.split("-")[-1] in release.drivers:
        return {"name": name, "version": release.drivers[name.split("-")[-1]], "author": "Sidero Labs",
                "description": OTHER_EXTENSIONS[name][1] if name in OTHER_EXTENSIONS else ""}
    for base in (KMOD, TOOLKIT):
        for track, driver in release.drivers.items():
            if name == f"{base}-{track}":
                version = f"{driver}-{talos_version}" if base == KMOD else f"{driver}-{release.toolkit}"
                return {"name": name, "version": version, "author": "Sidero Labs", "description": _DESCRIPTIONS[base]}
    return None


def extension_records(names: list[str], talos_version: str = TALOS_VERSION) -> list[dict[str, str]] | None:
    """Records for every name, or None when one of them is not in the lab's catalogue."""
    records = [extension_record(name, talos_version) for name in names]
    if any(record is None for record in records):
        return None
    return [record for record in records if record is not None]


def _known() -> dict[str, list[str]]:
    pieces = [f"{KMOD}-production", f"{KMOD}-lts", f"{TOOLKIT}-production", f"{TOOLKIT}-lts"]
    known: dict[str, list[str]] = {VANILLA_ID: []}
    for size in (1, 2):
        for combo in itertools.permutations(pieces, size):
            known[extensions_id(list(combo))] = list(combo)
    return known


KNOWN: dict[str, list[str]] = _known()
"""Schematic id -> extension names, for every schematic built from the official NVIDIA extensions."""

PRODUCTION_ID = extensions_id([f"{TOOLKIT}-production", f"{KMOD}-production"])


def lookup(state: dict[str, Any], schematic: str) -> list[str] | None:
    """The extension names of a schematic id the lab's factory knows, None if unknown."""
    if schematic in KNOWN:
        return list(KNOWN[schematic])
    registered = (state.get("factory") or {}).get(schematic)
    if registered is not None:
        return list(registered)
    return None
