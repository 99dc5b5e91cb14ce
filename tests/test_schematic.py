"""Offline Image Factory schematic ids against the verified vectors in samples/talos."""

from __future__ import annotations

import hashlib
import itertools

import pytest

from checks.schematic import (
    canonical_schematic_yaml,
    installer_image,
    nvidia_extension_names,
    nvidia_schematic,
    parse_installer_image,
    schematic_id,
)
from tests.paths import sample

VECTORS_FILE = "talos/image-factory-schematic-id-vectors.txt"
PRODUCTION_ID = "6698d6f136c5bb37ca8bb8482c9084305084da0a5ead1f4dcae760796f8ab3a2"


def _vectors() -> list[tuple[str, str]]:
    """(id, canonical yaml) rows of the vectors file (the yaml has its newlines escaped as \\n)."""
    rows = []
    for line in sample(VECTORS_FILE).splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        identifier, _tab, escaped = line.partition("\t")
        rows.append((identifier, escaped.replace("\\n", "\n")))
    return rows


VECTORS = _vectors()


def _counter_examples() -> dict[str, str]:
    """The published ids that do NOT reproduce, keyed by id, with the comment that describes each."""
    found = {}
    for line in sample(VECTORS_FILE, strip_comments=False).splitlines():
        words = line.lstrip("# ").split(" ", 1)
        if line.startswith("#  ") and len(words[0]) == 64:
            found[words[0]] = words[1] if len(words) > 1 else ""
    return found


def test_the_vectors_file_has_seven_vectors_and_two_counter_examples() -> None:
    assert len(VECTORS) == 7
    assert len(_counter_examples()) == 2


@pytest.mark.parametrize(("identifier", "text"), VECTORS, ids=[v[0][:12] for v in VECTORS])
def test_id_is_the_sha256_of_the_literal_canonical_yaml(identifier: str, text: str) -> None:
    assert schematic_id(text) == identifier


@pytest.mark.parametrize(
    ("extensions", "kernel_args"),
    [
        ((), ()),
        ((), ("noapic", "nolapic")),
        (("siderolabs/nvidia-container-toolkit-production", "siderolabs/nvidia-open-gpu-kernel-modules-production"), ()),
    ],
    ids=["vanilla", "noapic-nolapic", "nvidia-production"],
)
def test_built_yaml_is_byte_identical_to_a_vector(extensions: tuple[str, ...], kernel_args: tuple[str, ...]) -> None:
    text = canonical_schematic_yaml(extensions, kernel_args)
    assert (schematic_id(text), text) in VECTORS


def test_vanilla_is_customization_empty_mapping() -> None:
    assert canonical_schematic_yaml() == "customization: {}\n"


def test_kernel_args_come_before_extensions_with_four_space_indent() -> None:
    text = canonical_schematic_yaml(["siderolabs/amd-ucode"], ["vga=791"])
    assert text == (
        "customization:\n"
        "    extraKernelArgs:\n"
        "        - vga=791\n"
        "    systemExtensions:\n"
        "        officialExtensions:\n"
        "            - siderolabs/amd-ucode\n"
    )


def test_nvidia_schematic_production_reproduces_the_published_id() -> None:
    text, identifier = nvidia_schematic("production")
    assert identifier == PRODUCTION_ID
    assert identifier == hashlib.sha256(text.encode()).hexdigest()
    assert nvidia_extension_names("lts") == [
        "siderolabs/nvidia-container-toolkit-lts",
        "siderolabs/nvidia-open-gpu-kernel-modules-lts",
    ]
    lts_text, lts_id = nvidia_schematic("lts")
    assert lts_id != PRODUCTION_ID and "-lts\n" in lts_text and "production" not in lts_text


def test_list_order_matters_no_sorting() -> None:
    names = nvidia_extension_names("production")
    assert schematic_id(canonical_schematic_yaml(list(reversed(names)))) != PRODUCTION_ID


def test_docs_counter_example_for_vga_791_does_not_match() -> None:
    counter = _counter_examples()
    published = next(identifier for identifier, note in counter.items() if "vga=791" in note)
    computed = schematic_id(canonical_schematic_yaml(extra_kernel_args=["vga=791"]))
    assert computed != published
    # the vectors file records the id the published schematic actually hashes to
    assert computed in counter[published]


def test_third_party_counter_example_is_not_reproduced_by_any_order() -> None:
    counter = _counter_examples()
    published = next(identifier for identifier, note in counter.items() if "amd-ucode" in note)
    extensions = [
        "siderolabs/nvidia-container-toolkit-production",
        "siderolabs/nvidia-open-gpu-kernel-modules-production",
        "siderolabs/amd-ucode",
    ]
    computed = {schematic_id(canonical_schematic_yaml(order)) for order in itertools.permutations(extensions)}
    assert len(computed) == 6
    assert published not in computed


@pytest.mark.parametrize("bad", ["true", "1", "foo: bar", "-x", "a b", "#c", ""])
def test_values_go_yaml_would_quote_are_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        canonical_schematic_yaml(extra_kernel_args=[bad])


def test_a_single_string_is_not_a_list() -> None:
    with pytest.raises(TypeError):
        canonical_schematic_yaml("siderolabs/amd-ucode")


@pytest.mark.parametrize("track", ["", "Production", "prod uction", "../x"])
def test_bad_tracks_are_refused(track: str) -> None:
    with pytest.raises(ValueError):
        nvidia_schematic(track)


def test_installer_image_reference() -> None:
    assert installer_image(PRODUCTION_ID, "v1.11.5") == f"factory.talos.dev/installer/{PRODUCTION_ID}:v1.11.5"
    assert installer_image(PRODUCTION_ID, "1.11.5").endswith(":v1.11.5")
    with pytest.raises(ValueError):
        installer_image("not-an-id", "v1.11.5")
    with pytest.raises(ValueError):
        installer_image(PRODUCTION_ID, "latest; rm -rf /")


@pytest.mark.parametrize(
    "reference",
    [
        f"factory.talos.dev/installer/{PRODUCTION_ID}:v1.11.5",
        f"factory.talos.dev/metal-installer/{PRODUCTION_ID}:v1.11.5",
        f"factory.talos.dev/metal-installer-secureboot/{PRODUCTION_ID}:v1.11.5",
        f"https://factory.talos.dev/installer/{PRODUCTION_ID}:v1.11.5",
    ],
)
def test_parse_installer_image_round_trip(reference: str) -> None:
    assert parse_installer_image(reference) == (PRODUCTION_ID, "v1.11.5")


def test_parse_installer_image_from_the_upgrade_samples() -> None:
    line = sample("talos/upgrade-output-legacy-image-not-found.txt").splitlines()[1]
    reference = line.split('"')[1]
    assert parse_installer_image(reference) == (
        "00b870f53438031044e98e88c5e1949e5fc9b1aba457a08573697d027f010350",
        "v1.9.6",
    )
    assert parse_installer_image(installer_image(PRODUCTION_ID, "v1.11.5")) == (PRODUCTION_ID, "v1.11.5")


@pytest.mark.parametrize(
    "reference",
    [
        "ghcr.io/siderolabs/installer:v1.11.5",
        f"factory.talos.dev/installer/{PRODUCTION_ID}",
        f"factory.talos.dev/installer/{PRODUCTION_ID}@sha256:{'f' * 64}",
        f"factory.talos.dev/installer/{PRODUCTION_ID[:-1]}:v1.11.5",
        "",
    ],
)
def test_parse_installer_image_rejects_other_references(reference: str) -> None:
    assert parse_installer_image(reference) is None
