"""Parsers for what talosctl prints: tables, -o yaml / -o json streams, and the files it reads.

All parsers are pure and never raise (see base.py). Tables are parsed by column NAME, never by
position: talosctl's columns differ between resources and versions (a missing NODE column with -i,
TYPE/STATE for KernelModuleStatus from 1.14, VERSION twice for extensions).
"""

from __future__ import annotations

import bisect
import json
import re
import tomllib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import yaml

from checks import yamlsafe
from checks.parsers.base import (
    LONG_LINE,
    ParseError,
    clean_lines,
    first_line,
    is_error,
    is_number,
    is_skew_warning,
    never_raises,
    strip_ansi,
    strip_spinner,
    too_large,
    truncate,
)

# ------------------------------------------------------------------------------------------------
# Tables
# ------------------------------------------------------------------------------------------------

TABLE_EXPECTED = "a talosctl table with a header line containing NODE/ID columns"

_HEADER_WORD_RE = re.compile(r"^[A-Z][A-Z0-9_./()-]*$")
_HEADER_KEY_WORDS = frozenset({"ID", "NAME", "NODE", "NAMESPACE"})
_CELL_SPLIT_RE = re.compile(r"\t+| {2,}")


@dataclass(frozen=True)
class Table:
    """A column-aligned table (talosctl, and the same shape from helm/kubectl).

    Column names are upper-case as printed and may repeat (``get extensions`` has VERSION twice: the
    resource version, then the extension's version). Every row has exactly ``len(columns)`` cells.
    """

    columns: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]

    def column_index(self, column: str, occurrence: int = 0) -> int | None:
        """Index of the ``occurrence``-th column named ``column`` (case-insensitive), or None."""
        wanted = column.upper()
        seen = 0
        for index, name in enumerate(self.columns):
            if name == wanted:
                if seen == occurrence:
                    return index
                seen += 1
        return None

    def has(self, column: str) -> bool:
        """True when the table has a column of that name."""
        return self.column_index(column) is not None

    def get(self, row: int | Sequence[str], column: str, occurrence: int = 0) -> str | None:
        """The cell of ``row`` (an index into ``rows`` or a row itself) under ``column``.

        ``occurrence`` picks among repeated column names (``occurrence=1`` is the second VERSION).
        None when there is no such column (or no such row index).
        """
        index = self.column_index(column, occurrence)
        if index is None:
            return None
        if isinstance(row, int):
            if not 0 <= row < len(self.rows):
                return None
            cells: Sequence[str] = self.rows[row]
        else:
            cells = row
        return cells[index] if index < len(cells) else ""

    def dicts(self) -> list[dict[str, str]]:
        """Rows as dicts keyed by column name; a repeated name gets a suffix: VERSION, VERSION_2, ..."""
        keys: list[str] = []
        counts: dict[str, int] = {}
        for name in self.columns:
            counts[name] = counts.get(name, 0) + 1
            keys.append(name if counts[name] == 1 else f"{name}_{counts[name]}")
        return [dict(zip(keys, row, strict=False)) for row in self.rows]


def _looks_like_header(line: str) -> bool:
    words = line.split()
    if len(words) < 2 or not all(_HEADER_WORD_RE.match(word) for word in words):
        return False
    return any(word in _HEADER_KEY_WORDS for word in words)


def _chunks(line: str) -> list[tuple[int, int, str]]:
    """(start, end, text) of the cells of a line: runs separated by a tab or two or more spaces."""
    chunks: list[tuple[int, int, str]] = []
    position = 0
    for separator in _CELL_SPLIT_RE.finditer(line):
        if separator.start() > position:
            chunks.append((position, separator.start(), line[position : separator.start()]))
        position = separator.end()
    if position < len(line):
        chunks.append((position, len(line), line[position:]))
    # A chunk may start with one blank (a single space before the first cell): trim it.
    return [(start + len(text) - len(text.lstrip()), end, text.strip()) for start, end, text in chunks if text.strip()]


def _align_row(line: str, starts: list[int]) -> tuple[str, ...]:
    """Cells of ``line`` for columns starting at ``starts``.

    Rows are split into cells at runs of 2+ spaces (single spaces stay inside a cell, as in
    "Host bridge"). When the count equals the column count the cells map in order, which survives rows
    shifted by hand-edited values. Otherwise each cell goes to the column whose header starts nearest,
    never going backwards; cells landing in the same column are joined (a long last cell, or text past
    the last header).
    """
    chunks = _chunks(line)
    count = len(starts)
    if len(chunks) == count:
        return tuple(text for _start, _end, text in chunks)
    spans: list[list[int]] = [[] for _ in range(count)]  # [first chunk start, last chunk end]
    previous = 0
    for start, end, _text in chunks:
        # starts are ascending: the nearest start at or after ``previous`` is one of two neighbours
        after = max(bisect.bisect_left(starts, start), previous)
        candidates = [column for column in (after - 1, after) if previous <= column < count]
        best = min(candidates, key=lambda column: (abs(starts[column] - start), column))
        span = spans[best]
        if span:
            span[1] = end
        else:
            span.extend((start, end))
        previous = best
    return tuple(line[span[0] : span[1]].strip() if span else "" for span in spans)


@never_raises(TABLE_EXPECTED)
def parse_table(text: str) -> Table | ParseError:
    """A talosctl table: the first header-looking line, then its rows.

    Leading junk (a ``WARNING: ... server version ... is older than client version ...`` line, a shell
    prompt such as ``$ talosctl get extensions``) is skipped. Rows may be shifted, shorter or longer than
    the header. Lines after the header that start with ``#`` are ignored.
    """
    refused = too_large(text, TABLE_EXPECTED)
    if refused:
        return refused
    lines = clean_lines(text)
    header_index = next((i for i, line in enumerate(lines) if _looks_like_header(line)), None)
    if header_index is None:
        return ParseError(TABLE_EXPECTED, first_line(strip_ansi(text)))
    header_chunks = _chunks(lines[header_index])
    columns = tuple(" ".join(text.split()) for _start, _end, text in header_chunks)
    starts = [start for start, _end, _text in header_chunks]
    rows: list[tuple[str, ...]] = []
    for line in lines[header_index + 1 :]:
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        rows.append(_align_row(line, starts))
    return Table(columns=columns, rows=tuple(rows))


# ------------------------------------------------------------------------------------------------
# -o yaml / -o json streams
# ------------------------------------------------------------------------------------------------

YAML_EXPECTED = "talosctl -o yaml output (YAML documents separated by ---)"
JSON_EXPECTED = "talosctl -o json output (concatenated JSON objects)"


class _TalosYamlLoader(yamlsafe.Base()):  # type: ignore[misc]
    """SafeLoader with the YAML 1.2 core schema that Go's YAML libraries write.

    PyYAML follows YAML 1.1, where an unquoted PCI id ``0000:33:00.0`` is a base-60 number, ``yes``/``on``
    are booleans and timestamps become datetime objects. Go's yaml.v3 quotes only what YAML 1.2 would
    misread, so this loader resolves plain scalars the 1.2 way: true/false, null, decimal/0x/0o integers,
    decimal floats; everything else (timestamps included) stays a string.
    """

    def construct_yaml_int(self, node: yaml.ScalarNode) -> int:
        value = str(self.construct_scalar(node)).replace("_", "")
        sign = -1 if value.startswith("-") else 1
        digits = value.lstrip("+-")
        if digits.startswith(("0x", "0X")):
            return sign * int(digits[2:], 16)
        if digits.startswith(("0o", "0O")):
            return sign * int(digits[2:], 8)
        return sign * int(digits, 10)


_YAML12_RESOLVERS: tuple[tuple[str, str, str], ...] = (
    ("tag:yaml.org,2002:bool", r"^(?:true|True|TRUE|false|False|FALSE)$", "tTfF"),
    ("tag:yaml.org,2002:null", r"^(?:~|null|Null|NULL|)$", "~nN"),
    ("tag:yaml.org,2002:int", r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$", "-+0123456789"),
    (
        "tag:yaml.org,2002:float",
        r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$",
        "-+0123456789.",
    ),
)
_TalosYamlLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag in ("tag:yaml.org,2002:merge", "tag:yaml.org,2002:value")]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
for _tag, _pattern, _first in _YAML12_RESOLVERS:
    _TalosYamlLoader.add_implicit_resolver(_tag, re.compile(_pattern), list(_first))
_TalosYamlLoader.add_implicit_resolver("tag:yaml.org,2002:null", re.compile(r"^$"), [""])
_TalosYamlLoader.add_constructor("tag:yaml.org,2002:int", _TalosYamlLoader.construct_yaml_int)

_YAML_ERRORS = (yaml.YAMLError, ValueError, TypeError, OverflowError)
_YAML_START_RE = re.compile(r"^(?:node:|metadata:|spec:|---)")


def _stringify_ids(document: dict[str, Any]) -> dict[str, Any]:
    """metadata.id as a string (older talosctl prints ``id: 0`` unquoted, which YAML reads as 0)."""
    metadata = document.get("metadata")
    if isinstance(metadata, dict) and "id" in metadata and metadata["id"] is not None:
        metadata["id"] = str(metadata["id"])
    if "node" in document and document["node"] is None:
        document["node"] = ""
    return document


def load_yaml_documents(text: str) -> list[Any] | ParseError:
    """All YAML documents in ``text`` (timestamps kept as strings), or a ParseError."""
    try:
        return list(yaml.load_all(text, Loader=_TalosYamlLoader))  # a SafeLoader subclass: no arbitrary objects
    except _YAML_ERRORS as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        problem = getattr(exc, "problem", None) or type(exc).__name__
        return ParseError(YAML_EXPECTED, truncate(f"{problem}{where}"))


@never_raises(YAML_EXPECTED)
def parse_yaml_stream(text: str) -> list[dict[str, Any]] | ParseError:
    """The resources of ``talosctl get ... -o yaml``: one dict per document, metadata.id as str.

    Lines before the first ``node:``/``metadata:``/``---`` line (warnings, a shell prompt) are skipped.
    Empty output (no resources) is an empty list.
    """
    refused = too_large(text, YAML_EXPECTED)
    if refused:
        return refused
    lines = clean_lines(text)
    start = next((i for i, line in enumerate(lines) if _YAML_START_RE.match(line)), None)
    if start is None:
        if not text.strip():
            return []
        return ParseError(YAML_EXPECTED, first_line(text))
    documents = load_yaml_documents("\n".join(lines[start:]))
    if is_error(documents):
        return documents
    resources: list[dict[str, Any]] = []
    for document in documents:
        if document is None:
            continue
        if not isinstance(document, dict):
            return ParseError(YAML_EXPECTED, truncate(f"a document that is a {type(document).__name__}: {document!r}"))
        resources.append(_stringify_ids(document))
    return resources


@never_raises(JSON_EXPECTED)
def parse_json_stream(text: str) -> list[dict[str, Any]] | ParseError:
    """The resources of ``talosctl get ... -o json``: indented JSON objects one after another (no array).

    Lines before the first line starting with ``{`` are skipped. A top-level array is accepted too.
    """
    refused = too_large(text, JSON_EXPECTED)
    if refused:
        return refused
    clean = strip_ansi(text)
    lines = clean.splitlines(keepends=True)
    start = next((i for i, line in enumerate(lines) if line.lstrip().startswith(("{", "["))), None)
    if start is None:
        if not clean.strip():
            return []
        return ParseError(JSON_EXPECTED, first_line(clean))
    body = "".join(lines[start:])
    decoder = json.JSONDecoder()
    position = 0
    resources: list[dict[str, Any]] = []
    while True:
        while position < len(body) and body[position].isspace():
            position += 1
        if position >= len(body):
            break
        try:
            value, position = decoder.raw_decode(body, position)
        except ValueError as exc:  # JSONDecodeError, or an integer too long to convert
            return ParseError(JSON_EXPECTED, truncate(str(exc)))
        values = value if isinstance(value, list) else [value]
        for item in values:
            if not isinstance(item, dict):
                return ParseError(JSON_EXPECTED, truncate(f"a JSON {type(item).__name__} instead of an object"))
            resources.append(_stringify_ids(item))
    return resources


def _dig(document: Any, *path: str) -> Any:
    """document[path[0]][path[1]]..., or None where a level is missing or not a mapping."""
    current = document
    for key in path:
        if not isinstance(current, dict):
            return None
        current = current.get(key)
    return current


def _text(value: Any) -> str:
    """A scalar as text: None is "", booleans are "true"/"false", everything else str()."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _type_matches(value: str, kind: str) -> bool:
    """`PCIDevices.hardware.talos.dev` (yaml/json) or `PCIDevice` (table) is the kind `pcidevice`."""
    first = value.split(".", 1)[0].lower()
    return first in (kind, f"{kind}s", f"{kind}es")


def _wrong_kind(parsed: list[dict[str, Any]] | Table, kind: str) -> str | None:
    """Why the answer is another kind of resource than the one asked for (a machine config document
    answering `get pcidevices` must not read as "no PCI devices"), else None."""
    if isinstance(parsed, Table):
        types = {parsed.get(row, "TYPE") or "" for row in parsed.rows} if parsed.has("TYPE") else set()
    else:
        types = {value for resource in parsed if isinstance(value := _dig(resource, "metadata", "type"), str)}
        if parsed and not types and not any(isinstance(r.get("spec"), dict) for r in parsed):
            return "documents that are not Talos resources (no metadata.type, no spec)"
    wrong = sorted(t for t in types if t and not _type_matches(t, kind))
    return f"a {wrong[0]} resource, not a {kind} (the wrong kind of answer)" if wrong else None


def _resources_or_table(text: str, expected: str, kind: str | None = None) -> list[dict[str, Any]] | Table | ParseError:
    """Auto-detect talosctl output: a JSON stream, a YAML stream or a table (whichever starts first).
    With `kind` (e.g. `pcidevice`), resources of another type are an error, never an empty answer."""
    refused = too_large(text, expected)
    if refused:
        return refused
    for line in clean_lines(text):
        stripped = line.lstrip()
        if stripped.startswith("{"):
            result: list[dict[str, Any]] | Table | ParseError = parse_json_stream(text)
            break
        if _YAML_START_RE.match(line):
            result = parse_yaml_stream(text)
            break
        if _looks_like_header(line):
            result = parse_table(text)
            break
    else:
        return ParseError(expected, first_line(strip_ansi(text)))
    if is_error(result):
        return ParseError(expected, result.detail)
    wrong = _wrong_kind(result, kind) if kind else None
    if wrong:
        return ParseError(expected, truncate(wrong))
    return result


# ------------------------------------------------------------------------------------------------
# Extensions
# ------------------------------------------------------------------------------------------------

EXTENSIONS_EXPECTED = "talosctl get extensions output (table, -o yaml or -o json)"
SCHEMATIC_EXTENSION_NAMES = ("schematic", "flavor")
"""The virtual extension an Image Factory image lists, whose version is the schematic id ("flavor" before
it was renamed)."""

_SCHEMATIC_ID_RE = re.compile(r"^[0-9a-f]{64}$")
_TRACK_RE = re.compile(r"^(?P<base>.+?)-(?P<track>production|lts)$")


@dataclass(frozen=True)
class Extension:
    """One system extension as ``talosctl get extensions`` lists it."""

    id: str
    name: str
    version: str
    author: str = ""
    description: str = ""
    node: str = ""


@never_raises(EXTENSIONS_EXPECTED)
def parse_extensions(text: str) -> list[Extension] | ParseError:
    """Extensions from ``talosctl get extensions`` in any of its output formats (auto-detected).

    The virtual ``schematic`` (formerly ``flavor``) and ``modules.dep`` extensions are returned like any
    other; see ``schematic_id``.
    """
    parsed = _resources_or_table(text, EXTENSIONS_EXPECTED, "extensionstatus")
    if is_error(parsed):
        return parsed
    extensions: list[Extension] = []
    if isinstance(parsed, Table):
        if not parsed.has("NAME"):
            return ParseError(EXTENSIONS_EXPECTED, "a table without a NAME column: " + " ".join(parsed.columns))
        name_index = parsed.column_index("NAME")
        version_indices = [i for i, column in enumerate(parsed.columns) if column == "VERSION"]
        after_name = [i for i in version_indices if name_index is not None and i > name_index]
        for row in parsed.rows:
            name = parsed.get(row, "NAME") or ""
            if not name:
                continue
            extensions.append(
                Extension(
                    id=parsed.get(row, "ID") or "",
                    name=name,
                    version=row[after_name[0]] if after_name else "",
                    node=parsed.get(row, "NODE") or "",
                )
            )
        return extensions
    for resource in parsed:
        metadata = _dig(resource, "spec", "metadata")
        name = _text(_dig(metadata, "name")) or _text(_dig(resource, "metadata", "id"))
        extensions.append(
            Extension(
                id=_text(_dig(resource, "metadata", "id")),
                name=name,
                version=_text(_dig(metadata, "version")),
                author=_text(_dig(metadata, "author")),
                description=_text(_dig(metadata, "description")).strip(),
                node=_text(resource.get("node")),
            )
        )
    return extensions


def schematic_id(extensions: Iterable[Extension]) -> str | None:
    """The Image Factory schematic id of the running image (the ``schematic``/``flavor`` virtual
    extension's version), or None when the image was not built by Image Factory."""
    for extension in extensions:
        if extension.name in SCHEMATIC_EXTENSION_NAMES and _SCHEMATIC_ID_RE.match(extension.version.strip()):
            return extension.version.strip()
    return None


installed_schematic_id = schematic_id
"""Alias of ``schematic_id`` that does not clash with ``checks.schematic.schematic_id`` (which hashes)."""


def split_driver(version: str) -> tuple[str, str]:
    """Split an NVIDIA extension version into (driver, rest) at the first ``-``.

    "570.172.08-v1.11.5" -> ("570.172.08", "v1.11.5"); "580.95.05" -> ("580.95.05", "").
    """
    driver, _dash, rest = version.strip().partition("-")
    return driver, rest


def extension_track(name: str) -> tuple[str, str] | None:
    """(base name, track) of an NVIDIA extension name; None for an extension that is not NVIDIA's.

    "nvidia-open-gpu-kernel-modules-production" -> ("nvidia-open-gpu-kernel-modules", "production");
    "...-lts" -> track "lts"; a legacy name without a track -> (name, ""). A ``siderolabs/`` prefix is
    ignored.
    """
    bare = name.strip().rsplit("/", 1)[-1]
    if "nvidia" not in bare.lower():
        return None
    match = _TRACK_RE.match(bare)
    if match:
        return match.group("base"), match.group("track")
    return bare, ""


@dataclass(frozen=True)
class NvidiaExtension:
    """An NVIDIA extension with its name and version taken apart."""

    name: str
    base: str
    """Name without the track, e.g. "nvidia-container-toolkit"."""
    track: str
    """"production", "lts" or "" (legacy names)."""
    driver: str
    """Driver version: the part of the version before the first "-"."""
    suffix: str
    """The rest of the version: the Talos version (kernel modules) or the toolkit version."""
    version: str

    @classmethod
    def from_extension(cls, extension: Extension) -> NvidiaExtension | None:
        """The NVIDIA view of an extension, or None when it is not an NVIDIA extension."""
        track = extension_track(extension.name)
        if track is None:
            return None
        driver, suffix = split_driver(extension.version)
        return cls(extension.name, track[0], track[1], driver, suffix, extension.version)


def nvidia_extensions(extensions: Iterable[Extension]) -> list[NvidiaExtension]:
    """The NVIDIA extensions among ``extensions``, taken apart."""
    found = (NvidiaExtension.from_extension(extension) for extension in extensions)
    return [extension for extension in found if extension is not None]


# ------------------------------------------------------------------------------------------------
# Kernel modules
# ------------------------------------------------------------------------------------------------

PROC_MODULES_EXPECTED = "/proc/modules lines (name size refcount deps state address)"
MODULES_TABLE_EXPECTED = "talosctl get modules output (a table with ID and STATE columns)"
MODULE_SPECS_EXPECTED = "talosctl get kernelmodulespecs output (table or -o yaml)"

_MODULE_STATES = frozenset({"Live", "Loading", "Unloading"})
_MODULE_NAME_RE = re.compile(r"^[A-Za-z0-9_\-]+$")


@dataclass(frozen=True)
class LoadedModule:
    """A loaded kernel module."""

    name: str
    size: int | None
    refcount: int | None
    """None when the kernel prints "-" (no reference counting) or the source has no count."""
    dependencies: tuple[str, ...]
    state: str
    """As printed: "Live", "Loading", "Unloading" (talosctl get modules may print others)."""
    taints: str = ""
    """Taint flags without parentheses, e.g. "PO" (proprietary, out-of-tree)."""

    @property
    def is_live(self) -> bool:
        """True when the module is fully loaded."""
        return self.state.lower() == "live"


def _parse_proc_modules_line(line: str) -> LoadedModule | None:
    fields = line.split()
    if len(fields) < 5 or not _MODULE_NAME_RE.match(fields[0]) or not is_number(fields[1]):
        return None
    refcount_text, dependencies_text, state = fields[2], fields[3], fields[4]
    if not (refcount_text == "-" or is_number(refcount_text)) or state not in _MODULE_STATES:
        return None
    dependencies = () if dependencies_text == "-" else tuple(d for d in dependencies_text.split(",") if d)
    taints = ""
    for extra in fields[5:]:
        if extra.startswith("(") and extra.endswith(")"):
            taints = extra[1:-1]
    return LoadedModule(
        name=fields[0],
        size=int(fields[1]) if len(fields[1]) < 20 else None,
        refcount=int(refcount_text) if is_number(refcount_text) and len(refcount_text) < 20 else None,
        dependencies=dependencies,
        state=state,
        taints=taints,
    )


@never_raises(PROC_MODULES_EXPECTED)
def parse_proc_modules(text: str) -> list[LoadedModule] | ParseError:
    """Modules from ``talosctl read /proc/modules``.

    Leading lines that are not module lines (a warning) are skipped; after the first module line every
    non-blank line must be one, so a truncated listing is an error rather than a silently short list.
    """
    refused = too_large(text, PROC_MODULES_EXPECTED)
    if refused:
        return refused
    modules: list[LoadedModule] = []
    for line in clean_lines(text):
        if not line.strip():
            continue
        module = _parse_proc_modules_line(line)
        if module is None:
            if modules:
                return ParseError(PROC_MODULES_EXPECTED, truncate(line))
            continue
        modules.append(module)
    if not modules:
        return ParseError(PROC_MODULES_EXPECTED, first_line(text))
    return modules


@never_raises(MODULES_TABLE_EXPECTED)
def parse_modules_table(text: str) -> list[LoadedModule] | ParseError:
    """Modules from ``talosctl get modules`` (LoadedKernelModule: ID + STATE; from Talos 1.14
    KernelModuleStatus with TYPE and STATE). Sizes, counts and dependencies are not in the table."""
    table = parse_table(text)
    if is_error(table):
        return ParseError(MODULES_TABLE_EXPECTED, table.detail)
    if not table.has("ID"):
        return ParseError(MODULES_TABLE_EXPECTED, "columns: " + " ".join(table.columns))
    modules = []
    for row in table.rows:
        name = table.get(row, "ID") or ""
        if name:
            modules.append(LoadedModule(name, None, None, (), table.get(row, "STATE") or ""))
    return modules


@never_raises(MODULE_SPECS_EXPECTED)
def parse_kernel_module_specs(text: str) -> list[str] | ParseError:
    """Names of the modules the machine config asks for (``talosctl get kernelmodulespecs``: the ids).

    `-o yaml` prints nothing at all when the config asks for no module: that is an empty list."""
    if isinstance(text, str) and not text.strip():
        return []
    parsed = _resources_or_table(text, MODULE_SPECS_EXPECTED, "kernelmodulespec")
    if is_error(parsed):
        return parsed
    if isinstance(parsed, Table):
        if not parsed.has("ID"):
            return ParseError(MODULE_SPECS_EXPECTED, "columns: " + " ".join(parsed.columns))
        return [name for row in parsed.rows if (name := parsed.get(row, "ID") or "")]
    names = []
    for resource in parsed:
        name = _text(_dig(resource, "metadata", "id")) or _text(_dig(resource, "spec", "name"))
        if name:
            names.append(name)
    return names


# ------------------------------------------------------------------------------------------------
# NVIDIA driver version
# ------------------------------------------------------------------------------------------------

DRIVER_VERSION_EXPECTED = 'an NVIDIA driver banner ("NVRM version: NVIDIA UNIX ... Kernel Module  <version> ...")'

_BANNER_RE = re.compile(
    r"NVIDIA UNIX (?P<open>Open )?(?:(?P<arch1>\S+) )?Kernel Module(?: for (?P<arch2>\S+))?\s+"
    r"(?P<version>\d+(?:\.\d+)+)"
)


@dataclass(frozen=True)
class DriverVersion:
    """The loaded NVIDIA kernel driver, from /proc/driver/nvidia/version (or its dmesg banner)."""

    version: str
    flavor: str
    """"open" (NVIDIA UNIX Open Kernel Module) or "proprietary" (NVIDIA UNIX x86_64 Kernel Module)."""
    banner: str
    """The banner line without its "NVRM version:" / "NVRM: loading" lead-in."""
    gcc: str = ""
    """The compiler line, e.g. "gcc version 12.2.0 (GCC)", when present."""


def _driver_from_banner(banner: str) -> tuple[str, str] | None:
    match = _BANNER_RE.search(banner)
    if not match:
        return None
    return match.group("version"), "open" if match.group("open") else "proprietary"


@never_raises(DRIVER_VERSION_EXPECTED)
def parse_nvidia_version(text: str) -> DriverVersion | ParseError:
    """``talosctl read /proc/driver/nvidia/version``; also accepts the ``NVRM: loading ...`` dmesg banner.

    Open modules: ``NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  570.172.08  Release Build ...``;
    proprietary: ``NVRM version: NVIDIA UNIX x86_64 Kernel Module  515.65.01  <date>``.
    """
    refused = too_large(text, DRIVER_VERSION_EXPECTED)
    if refused:
        return refused
    version: tuple[str, str] | None = None
    banner = ""
    gcc = ""
    for line in clean_lines(text):
        stripped = line.strip()
        if len(stripped) > LONG_LINE:
            continue
        if version is None:
            for lead in ("NVRM version:", "NVRM: loading"):
                position = stripped.find(lead)
                if position >= 0:
                    candidate = stripped[position + len(lead) :].strip()
                    found = _driver_from_banner(candidate)
                    if found:
                        version, banner = found, candidate
                        break
        if stripped.startswith("GCC version:"):
            gcc = stripped[len("GCC version:") :].strip()
    if version is None:
        return ParseError(DRIVER_VERSION_EXPECTED, first_line(text))
    return DriverVersion(version=version[0], flavor=version[1], banner=banner, gcc=gcc)


# ------------------------------------------------------------------------------------------------
# talosctl health
# ------------------------------------------------------------------------------------------------

HEALTH_EXPECTED = "talosctl health output (discovered nodes / waiting for <check>: ... lines)"

_WAITING_RE = re.compile(r"^waiting for (?P<check>.+?):(?:[ \t]+(?P<rest>.*))?$")
_DISCOVERED_RE = re.compile(r"^discovered nodes:\s*(?P<nodes>.*)$")
_HEALTH_ERROR_RE = re.compile(
    r"context deadline exceeded|rpc error:|^(?:healthcheck )?error\b|^failed\b", re.IGNORECASE
)


@dataclass(frozen=True)
class HealthCheck:
    """One of talosctl health's checks, in its last reported state."""

    name: str
    """As printed after "waiting for", e.g. "etcd to be healthy"."""
    ok: bool | None
    """True: passed (": OK"); False: its last report was an error; None: never finished (": ...")."""
    message: str
    """The last report: "OK", the error (with its continuation lines), or "" while in progress."""


@dataclass(frozen=True)
class HealthReport:
    """What ``talosctl health`` wrote to stderr."""

    discovered_nodes: tuple[str, ...]
    checks: tuple[HealthCheck, ...]
    """In the order they were first reported."""
    error: str | None
    """The final error line (e.g. "context deadline exceeded"), None when there was none."""

    @property
    def failed_check(self) -> HealthCheck | None:
        """The first check whose last report was an error; failing that, when the run ended in an error,
        the check that was still in progress. None when nothing failed."""
        for check in self.checks:
            if check.ok is False:
                return check
        if self.error is not None:
            for check in reversed(self.checks):
                if check.ok is None:
                    return check
        return None

    @property
    def passed(self) -> bool:
        """True when every reported check passed and there was no final error."""
        return self.error is None and bool(self.checks) and all(check.ok for check in self.checks)


@never_raises(HEALTH_EXPECTED)
def parse_health(text: str) -> HealthReport | ParseError:
    """``talosctl health`` progress from its STDERR, including failed and truncated runs.

    Handles the spinner glyph of the interactive reporter (``◳ waiting for ...``), continuation lines
    (indented ``* <node>: <error>``), checks that report errors and later OK, and a final
    ``context deadline exceeded`` / ``rpc error: ...`` line.
    """
    refused = too_large(text, HEALTH_EXPECTED)
    if refused:
        return refused
    nodes: tuple[str, ...] = ()
    order: list[str] = []
    state: dict[str, tuple[bool | None, list[str]]] = {}
    current: str | None = None
    error: str | None = None
    recognised = False
    for raw in clean_lines(text):
        line = strip_spinner(raw)
        stripped = line.strip()
        if not stripped:
            continue
        discovered = _DISCOVERED_RE.match(stripped)
        if discovered:
            nodes = tuple(re.findall(r'"([^"]*)"', discovered.group("nodes"))) or tuple(
                discovered.group("nodes").strip("[] ").split()
            )
            recognised = True
            current = None
            continue
        waiting = _WAITING_RE.match(stripped)
        if waiting:
            recognised = True
            name = waiting.group("check").strip()
            rest = (waiting.group("rest") or "").strip()
            if name not in state:
                order.append(name)
            if rest in ("", "...", "…"):
                state[name] = (None, [])
            elif rest == "OK":
                state[name] = (True, ["OK"])
            else:
                state[name] = (False, [rest])
            current = name
            continue
        indented = line[:1].isspace() or stripped.startswith("*")
        if indented and current is not None and state[current][0] is False:
            state[current][1].append(stripped)
            continue
        if error is None and _HEALTH_ERROR_RE.search(stripped):
            error = truncate(stripped, 300)
            recognised = True
        current = None
    if not recognised:
        return ParseError(HEALTH_EXPECTED, first_line(text))
    checks = tuple(HealthCheck(name, state[name][0], " ".join(state[name][1])) for name in order)
    return HealthReport(discovered_nodes=nodes, checks=checks, error=error)


# ------------------------------------------------------------------------------------------------
# talosctl version
# ------------------------------------------------------------------------------------------------

VERSION_EXPECTED = "talosctl version output (Client: / Server: sections with Tag: lines)"


@dataclass(frozen=True)
class TalosVersion:
    """``talosctl version``: the client's tag and, when the node answered, the server's."""

    client_tag: str
    server_tag: str | None
    node: str | None


@never_raises(VERSION_EXPECTED)
def parse_talos_version(text: str) -> TalosVersion | ParseError:
    """``talosctl version`` (fields tab-indented under ``Client:`` and ``Server:``). A leading version
    skew warning is allowed; the Server section may be missing when the node is unreachable."""
    refused = too_large(text, VERSION_EXPECTED)
    if refused:
        return refused
    section: str | None = None
    client_tag = ""
    server_tag: str | None = None
    node: str | None = None
    for line in clean_lines(text):
        stripped = line.strip()
        if stripped in ("Client:", "Server:"):
            section = stripped[:-1].lower()
            continue
        if not line[:1].isspace():
            if stripped:
                section = None if not is_skew_warning(stripped) else section
            continue
        key, colon, value = stripped.partition(":")
        if not colon:
            continue
        value = value.strip()
        if section == "client" and key == "Tag" and not client_tag:
            client_tag = value
        elif section == "server" and key == "Tag" and server_tag is None:
            server_tag = value or None
        elif section == "server" and key == "NODE" and node is None:
            node = value or None
    if not client_tag:
        return ParseError(VERSION_EXPECTED, first_line(text))
    return TalosVersion(client_tag=client_tag, server_tag=server_tag, node=node)


# ------------------------------------------------------------------------------------------------
# Machine status
# ------------------------------------------------------------------------------------------------

MACHINE_STATUS_EXPECTED = "talosctl get machinestatus output (-o yaml with spec.stage, or a STAGE/READY table)"


@dataclass(frozen=True)
class MachineStatus:
    """The node's boot stage and readiness."""

    stage: str
    """booting, installing, maintenance, running, rebooting, shutting down, resetting, upgrading, unknown."""
    ready: bool
    unmet: tuple[tuple[str, str], ...]
    """(name, reason) of each unmet readiness condition (only in -o yaml)."""


def _as_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    return _text(value).strip().lower() == "true"


@never_raises(MACHINE_STATUS_EXPECTED)
def parse_machine_status(text: str) -> MachineStatus | ParseError:
    """``talosctl get machinestatus`` as -o yaml / -o json (spec.stage, spec.status.ready,
    spec.status.unmetConditions) or as a table (STAGE and READY columns)."""
    parsed = _resources_or_table(text, MACHINE_STATUS_EXPECTED, "machinestatus")
    if is_error(parsed):
        return parsed
    if isinstance(parsed, Table):
        if not parsed.has("STAGE") or not parsed.rows:
            return ParseError(MACHINE_STATUS_EXPECTED, "a table without a STAGE row: " + " ".join(parsed.columns))
        row = parsed.rows[0]
        return MachineStatus(
            stage=(parsed.get(row, "STAGE") or "").lower(), ready=_as_bool(parsed.get(row, "READY")), unmet=()
        )
    for resource in parsed:
        spec = resource.get("spec")
        if not isinstance(spec, dict) or "stage" not in spec:
            continue
        unmet: list[tuple[str, str]] = []
        conditions = _dig(spec, "status", "unmetConditions")
        if isinstance(conditions, list):
            for condition in conditions:
                if isinstance(condition, dict):
                    unmet.append((_text(condition.get("name")), _text(condition.get("reason"))))
        return MachineStatus(
            stage=_text(spec.get("stage")).lower(), ready=_as_bool(_dig(spec, "status", "ready")), unmet=tuple(unmet)
        )
    return ParseError(MACHINE_STATUS_EXPECTED, "no resource with spec.stage")


# ------------------------------------------------------------------------------------------------
# PCI devices
# ------------------------------------------------------------------------------------------------

PCI_EXPECTED = "talosctl get pcidevices output (table with CLASS/SUBCLASS/VENDOR/PRODUCT, or -o yaml)"
NVIDIA_VENDOR_ID = "0x10de"
DISPLAY_CLASS_ID = "0x03"


@dataclass(frozen=True)
class PCIDevice:
    """A PCI device as Talos lists it (hardware namespace)."""

    id: str
    class_name: str
    subclass: str
    vendor: str
    product: str
    vendor_id: str = ""
    product_id: str = ""
    driver: str = ""
    class_id: str = ""
    subclass_id: str = ""

    @property
    def is_nvidia_gpu(self) -> bool:
        """An NVIDIA display controller (not its HDMI audio function, not an NVSwitch bridge)."""
        nvidia = self.vendor_id.lower() == NVIDIA_VENDOR_ID or "nvidia" in self.vendor.lower()
        class_id = self.class_id.lower()
        display = self.class_name.strip().lower() == "display controller" or class_id in ("0x03", "0x3", "03")
        return nvidia and display

    @property
    def is_nvswitch(self) -> bool:
        """An NVIDIA NVSwitch on an HGX/DGX board: vendor 10de, class bridge, subclass 0x80 ("Bridge [0680]"
        in lspci). Not a GPU; it needs Fabric Manager (FACTS.md)."""
        nvidia = self.vendor_id.lower() == NVIDIA_VENDOR_ID or "nvidia" in self.vendor.lower()
        if not nvidia:
            return False
        class_id, subclass_id = self.class_id.lower(), self.subclass_id.lower()
        if class_id or subclass_id:
            return class_id in ("0x06", "0x6", "06") and subclass_id in ("0x80", "80")
        return self.class_name.strip().lower() == "bridge" and "nvswitch" in self.product.lower()


@never_raises(PCI_EXPECTED)
def parse_pci_devices(text: str) -> list[PCIDevice] | ParseError:
    """``talosctl get pcidevices`` as a table (CLASS, SUBCLASS, VENDOR, PRODUCT columns; cells may hold
    single spaces) or as -o yaml / -o json (spec.class, subclass, vendor, product, class_id, subclass_id,
    vendor_id, product_id, driver)."""
    parsed = _resources_or_table(text, PCI_EXPECTED, "pcidevice")
    if is_error(parsed):
        return parsed
    if isinstance(parsed, Table):
        if not parsed.has("CLASS"):
            return ParseError(PCI_EXPECTED, "a table without a CLASS column: " + " ".join(parsed.columns))
        return [
            PCIDevice(
                id=parsed.get(row, "ID") or "",
                class_name=parsed.get(row, "CLASS") or "",
                subclass=parsed.get(row, "SUBCLASS") or "",
                vendor=parsed.get(row, "VENDOR") or "",
                product=parsed.get(row, "PRODUCT") or "",
            )
            for row in parsed.rows
        ]
    devices = []
    for resource in parsed:
        spec = resource.get("spec")
        if not isinstance(spec, dict):
            spec = {}
        devices.append(
            PCIDevice(
                id=_text(_dig(resource, "metadata", "id")),
                class_name=_text(spec.get("class")),
                subclass=_text(spec.get("subclass")),
                vendor=_text(spec.get("vendor")),
                product=_text(spec.get("product")),
                vendor_id=_text(spec.get("vendor_id")),
                product_id=_text(spec.get("product_id")),
                driver=_text(spec.get("driver")),
                class_id=_text(spec.get("class_id")),
                subclass_id=_text(spec.get("subclass_id")),
            )
        )
    return devices


# ------------------------------------------------------------------------------------------------
# Node name, sysctl, container runtime config
# ------------------------------------------------------------------------------------------------

NODENAME_EXPECTED = "talosctl get nodename output (spec.nodename)"
SYSCTL_EXPECTED = "the value of a /proc/sys file"
RUNTIME_CONFIG_EXPECTED = "a TOML /etc/nvidia-container-runtime/config.toml"


@never_raises(NODENAME_EXPECTED)
def parse_nodename(text: str) -> str | ParseError:
    """The node's Kubernetes name from ``talosctl get nodename -o yaml`` (spec.nodename); a table with a
    NODENAME column is accepted too."""
    parsed = _resources_or_table(text, NODENAME_EXPECTED, "nodename")
    if is_error(parsed):
        return parsed
    if isinstance(parsed, Table):
        for row in parsed.rows:
            name = parsed.get(row, "NODENAME") or ""
            if name:
                return name
        return ParseError(NODENAME_EXPECTED, "no NODENAME cell in: " + " ".join(parsed.columns))
    for resource in parsed:
        name = _text(_dig(resource, "spec", "nodename")).strip()
        if name:
            return name
    return ParseError(NODENAME_EXPECTED, "no spec.nodename")


@never_raises(SYSCTL_EXPECTED)
def parse_sysctl_value(text: str) -> str | ParseError:
    """The stripped content of a /proc/sys file (``talosctl read /proc/sys/net/core/bpf_jit_harden``).

    A leading talosctl version-skew warning is skipped; empty content, several lines or control
    characters are errors.
    """
    refused = too_large(text, SYSCTL_EXPECTED)
    if refused:
        return refused
    lines = [line.strip() for line in clean_lines(text) if line.strip() and not is_skew_warning(line)]
    if not lines:
        return ParseError(SYSCTL_EXPECTED, "empty input")
    if len(lines) > 1:
        return ParseError(SYSCTL_EXPECTED, "several lines: " + truncate(" | ".join(lines)))
    value = lines[0]
    if any(ord(char) < 32 and char != "\t" or ord(char) == 127 for char in value):
        return ParseError(SYSCTL_EXPECTED, "control characters in " + truncate(repr(value)))
    return value


@dataclass(frozen=True)
class ContainerRuntimeConfig:
    """The parts of /etc/nvidia-container-runtime/config.toml the checks need."""

    no_cgroups: bool | None
    """``[nvidia-container-cli] no-cgroups``; None when not set (or not a boolean)."""
    raw_sections: tuple[str, ...]
    """Top-level table names, in file order."""


@never_raises(RUNTIME_CONFIG_EXPECTED)
def parse_nvidia_container_runtime_config(text: str) -> ContainerRuntimeConfig | ParseError:
    """/etc/nvidia-container-runtime/config.toml as ``talosctl read`` prints it (the seed writes
    ``[nvidia-container-cli]`` / ``no-cgroups = true``)."""
    refused = too_large(text, RUNTIME_CONFIG_EXPECTED)
    if refused:
        return refused
    try:
        data = tomllib.loads(text)
    except (tomllib.TOMLDecodeError, ValueError, TypeError) as exc:
        return ParseError(RUNTIME_CONFIG_EXPECTED, truncate(str(exc)))
    cli = data.get("nvidia-container-cli")
    value = cli.get("no-cgroups") if isinstance(cli, dict) else None
    sections = tuple(name for name, content in data.items() if isinstance(content, dict))
    return ContainerRuntimeConfig(no_cgroups=value if isinstance(value, bool) else None, raw_sections=sections)


# ------------------------------------------------------------------------------------------------
# Kernel log (talosctl dmesg)
# ------------------------------------------------------------------------------------------------

_PCI_ADDRESS_RE = re.compile(
    r"(?<![0-9A-Fa-f])(?P<address>[0-9A-Fa-f]{4,8}:[0-9A-Fa-f]{2}:[0-9A-Fa-f]{2}(?:\.[0-7])?)(?![0-9A-Fa-f:])"
)
_NVRM_FAILURE_RE = re.compile(
    r"RmInitAdapter failed|rm_init_adapter failed|GPU has fallen off the bus|Cannot initialize GSP firmware RM"
    r"|installed in this system is not supported|The NVIDIA probe routine failed"
    r"|None of the NVIDIA devices were initialized"
)
_GPU_PREFIX_RE = re.compile(r"^(?:GPU [0-9A-Fa-f:.]+:\s*|Xid \(PCI:[0-9A-Fa-f:.]+\):\s*)")
_NVRM_LOOKAROUND = (1, -1, 2, -2, 3)
# the driver wraps a long message over several NVRM lines (the open module's refusal of a GPU without GSP
# takes four): a line that starts with a lower-case word continues the one before it, and a message goes on
# until a line ends a sentence; a line that starts a message of its own (a GPU address, the banner, an Xid,
# a driver function's name and a colon: `iovaspaceDestruct_IMPL: ...`) never continues one
_NVRM_NEW_MESSAGE_RE = re.compile(r"^(?:GPU [0-9A-Fa-f]{4}:|GPU at|loading |Xid |RmInit|rm_init|The NVIDIA |NVRM|\S+:(?:\s|$))")
_NVRM_CONTINUES_RE = re.compile(r"^[a-z][\w.'/-]*(?:\s|$)")
_NVRM_WRAP_LINES = 6


@dataclass(frozen=True)
class NvrmFailure:
    """A GPU the NVIDIA driver failed to initialise (or lost), as the kernel log tells it."""

    pci_id: str | None
    """PCI address (e.g. "0000:01:00.0") when the log names one."""
    message: str
    """The failure messages for this GPU, without "NVRM:" and the GPU prefix, joined by "; "."""
    line: str
    """The first kernel log line of the failure, trimmed (at most 200 characters)."""


@dataclass(frozen=True)
class DmesgNvrm:
    """The NVIDIA driver's story in the kernel log."""

    driver_banner: str | None
    """The last ``NVRM: loading ...`` banner (text after "loading"), None when the driver never loaded."""
    failures: tuple[NvrmFailure, ...]
    """One entry per failing GPU (grouped by PCI address), in order of first appearance."""

    @property
    def failed_pci_ids(self) -> tuple[str, ...]:
        """The PCI addresses of the GPUs that failed."""
        return tuple(failure.pci_id for failure in self.failures if failure.pci_id)


def _normalise_pci(address: str) -> str:
    return address.lower() if "." in address else address.lower() + ".0"


def _wrapped_nvrm(messages: list[str], index: int) -> str:
    """The whole message the NVRM line at `index` is part of, its wrapped lines joined by spaces."""
    first = index
    while (first > 0 and index - first < _NVRM_WRAP_LINES and _NVRM_CONTINUES_RE.match(messages[first])
           and not _NVRM_NEW_MESSAGE_RE.match(messages[first])):
        first -= 1  # this line continues the one before it
    last = index
    while (last + 1 < len(messages) and last - first < _NVRM_WRAP_LINES
           and not messages[last].rstrip().endswith((".", "!", "?"))
           and messages[last + 1] and not _NVRM_NEW_MESSAGE_RE.match(messages[last + 1])
           and (_NVRM_CONTINUES_RE.match(messages[last + 1]) or messages[last].rstrip()[-1:].isalnum())):
        last += 1
    return " ".join(part.strip() for part in messages[first:last + 1] if part.strip())


@never_raises("a kernel log")
def parse_dmesg_nvrm(text: str) -> DmesgNvrm | ParseError:
    """NVRM lines of ``talosctl dmesg`` (or a plain ``dmesg``): the driver banner and per-GPU failures.

    Any text is a kernel log, so only an input too large to scan is refused. Lines may carry
    ``[   14.395582]`` or talosctl prefixes (``10.5.0.2: kern:    info: [2025-...]: ``); only the part
    from ``NVRM:`` on is read. A failure line that names no PCI address (``Cannot initialize GSP firmware
    RM``) is attributed to the GPU named by the nearest NVRM line around it.
    """
    refused = too_large(text, "a kernel log")
    if refused:
        return refused
    messages: list[tuple[str, str]] = []  # (message after "NVRM:", the whole line)
    for line in clean_lines(text):
        position = line.find("NVRM:")
        if position >= 0:
            messages.append((line[position + len("NVRM:") :].strip(), line.strip()))
    banner: str | None = None
    for message, _line in messages:
        if message.startswith("loading "):
            banner = message[len("loading ") :].strip()

    def address_in(index: int) -> str | None:
        if 0 <= index < len(messages):
            found = _PCI_ADDRESS_RE.search(messages[index][0])
            if found:
                return _normalise_pci(found.group("address"))
        return None

    grouped: dict[str | None, tuple[list[str], str]] = {}
    order: list[str | None] = []
    for index, (message, line) in enumerate(messages):
        if not _NVRM_FAILURE_RE.search(message):
            continue
        address = address_in(index)
        if address is None:
            for step in _NVRM_LOOKAROUND:
                address = address_in(index + step)
                if address is not None:
                    break
        text_only = _GPU_PREFIX_RE.sub("", _wrapped_nvrm([m for m, _ in messages], index)).strip()
        if address not in grouped:
            grouped[address] = ([], truncate(line, 200))
            order.append(address)
        parts = grouped[address][0]
        if text_only and text_only not in parts:
            parts.append(text_only)
    failures = tuple(NvrmFailure(address, "; ".join(grouped[address][0]), grouped[address][1]) for address in order)
    return DmesgNvrm(driver_banner=banner, failures=failures)


# ------------------------------------------------------------------------------------------------
# talosctl upgrade progress
# ------------------------------------------------------------------------------------------------

UPGRADE_KINDS = ("watching", "waiting-actor", "unavailable", "post-check-passed", "error", "progress", "skew-warning")

# "node": message, possibly after a wrapper's prefix that ends in "): " (terraform's "(local-exec): ").
_QUOTED_NODE_RE = re.compile(r'^(?:[^"]*\): )?"(?P<node>[^"\s]+)":\s*(?P<text>.*)$')
_BULLET_NODE_RE = re.compile(r"^\*\s*(?P<node>[^\s:]+):\s*(?P<text>.*)$")
_PLAIN_NODE_RE = re.compile(r"^(?P<node>[A-Za-z0-9][A-Za-z0-9._\-]*):\s+(?P<text>.*)$")
_UPGRADE_ERROR_RE = re.compile(r"\berror\b|\bfailed\b|: not found\b|Exit code: [1-9]", re.IGNORECASE)
_NOT_A_NODE = frozenset({"watching", "WARNING", "error", "Error", "task", "phase", "sequence", "service", "stage"})


@dataclass(frozen=True)
class UpgradeEvent:
    """One line of ``talosctl upgrade`` progress."""

    node: str | None
    kind: str
    """One of UPGRADE_KINDS."""
    text: str
    """The message without the node prefix."""


def _looks_like_node(word: str) -> bool:
    """An address or host name ("10.5.0.2", "talos-cp-1", "node1"), not a progress keyword ("stage")."""
    return word not in _NOT_A_NODE and any(is_number(char) or char in ".-" for char in word)


def _upgrade_kind(message: str) -> str:
    lowered = message.lower()
    if "waiting for actor id" in lowered:
        return "waiting-actor"
    if "unavailable, retrying" in lowered:
        return "unavailable"
    if "post check passed" in lowered or lowered.strip() == "upgrade completed":
        return "post-check-passed"
    if _UPGRADE_ERROR_RE.search(message):
        return "error"
    return "progress"


def parse_upgrade_progress_line(line: str) -> UpgradeEvent | None:
    """Classify one line of ``talosctl upgrade`` output; None for blank lines and shell prompts.

    Understands the interactive form (``◰ watching nodes: [n]`` then ``    * n: waiting for actor ID``),
    the non-interactive form (``"n": waiting for actor ID``), the Talos 1.14 lifecycle form
    (``n: pulled image ...``, ``n: upgrade completed`` which counts as post-check-passed) and the
    version-skew warning. Never raises.
    """
    if not isinstance(line, str):
        return None
    stripped = strip_spinner(strip_ansi(line).strip()).strip()
    if not stripped or stripped.startswith(("$ ", "# ")):
        return None
    if len(stripped) > 4000:
        stripped = stripped[:4000]
    if is_skew_warning(stripped):
        node_match = re.match(r"^WARNING:\s*(?P<node>[^\s:]+):", stripped)
        return UpgradeEvent(node_match.group("node") if node_match else None, "skew-warning", stripped)
    if stripped.startswith("watching nodes:"):
        return UpgradeEvent(None, "watching", stripped)
    for pattern in (_BULLET_NODE_RE, _QUOTED_NODE_RE):
        match = pattern.match(stripped)
        if match:
            message = match.group("text").strip()
            return UpgradeEvent(match.group("node"), _upgrade_kind(message), message)
    match = _PLAIN_NODE_RE.match(stripped)
    if match and _looks_like_node(match.group("node")):
        message = match.group("text").strip()
        return UpgradeEvent(match.group("node"), _upgrade_kind(message), message)
    return UpgradeEvent(None, _upgrade_kind(stripped), stripped)


# ------------------------------------------------------------------------------------------------
# talosctl patch mc
# ------------------------------------------------------------------------------------------------

PATCH_EXPECTED = "talosctl patch mc output (patched ... at the node ..., Applied/Staged configuration ...)"

_PATCHED_RE = re.compile(r"^patched \S+ at the node \S*")
_MODE_RE = re.compile(
    r"(?P<details>(?:Applied configuration (?:with|without) a reboot|Staged configuration to be applied after the "
    r"next reboot|Applied configuration[^\n]*?))(?: \(skipped in dry-run\))?\.?$"
)


@dataclass(frozen=True)
class PatchResult:
    """What ``talosctl patch mc`` reported (on stderr)."""

    applied: bool
    """The node accepted and applied (or staged) the change; False for a dry run or a skipped apply."""
    reboot: bool | None
    """True: "with a reboot"; False: "without a reboot" or staged; None: not stated."""
    dry_run: bool
    diff: str
    """The config diff of a dry run ("No changes." when there is none); "" otherwise."""
    skipped_no_changes: bool
    """"Apply was skipped: no changes detected.", or a dry run whose diff is "No changes."."""
    mode_details: str
    """The server's mode line, e.g. "Applied configuration without a reboot"."""


@never_raises(PATCH_EXPECTED)
def parse_patch_output(text: str) -> PatchResult | ParseError:
    """``talosctl patch mc [--dry-run]`` stderr: ``patched <type>/<id> at the node <node>``, the mode
    line, and for ``--dry-run`` ``Dry run summary:`` plus ``Config diff:`` and the diff."""
    refused = too_large(text, PATCH_EXPECTED)
    if refused:
        return refused
    lines = clean_lines(text)
    patched = any(_PATCHED_RE.match(line.strip()) for line in lines)
    dry_run = any(line.strip() == "Dry run summary:" for line in lines)
    skipped = any("Apply was skipped: no changes detected" in line for line in lines)
    mode_details = ""
    for line in lines:
        match = _MODE_RE.match(line.strip())
        if match:
            mode_details = match.group("details").strip()
            break
    diff = ""
    for index, line in enumerate(lines):
        if line.strip() == "Config diff:":
            diff = "\n".join(lines[index + 1 :]).strip("\n")
            break
    if not (patched or dry_run or skipped or mode_details):
        return ParseError(PATCH_EXPECTED, first_line(text))
    reboot: bool | None = None
    if "with a reboot" in mode_details:
        reboot = True
    elif "without a reboot" in mode_details or mode_details.startswith("Staged"):
        reboot = False
    no_changes = skipped or (dry_run and diff.strip() == "No changes.")
    return PatchResult(
        applied=not dry_run and not skipped and (patched or bool(mode_details)),
        reboot=reboot,
        dry_run=dry_run,
        diff=diff,
        skipped_no_changes=no_changes,
        mode_details=mode_details,
    )
