"""Parsers for the Kubernetes side: helm's JSON, nvidia-smi's output, and the device plugin's log.

All parsers are pure and never raise (see base.py).
"""

from __future__ import annotations

import csv
import json
import re
from dataclasses import dataclass
from typing import Any

from checks.parsers.base import (
    LONG_LINE,
    ParseError,
    clean_lines,
    first_line,
    is_error,
    is_number,
    never_raises,
    too_large,
    truncate,
)
from checks.parsers.talos import load_yaml_documents
from checks.signatures import POD_LOG, REGISTERED_RE, SignatureMatch, match_signatures

# ------------------------------------------------------------------------------------------------
# helm
# ------------------------------------------------------------------------------------------------

HELM_LIST_EXPECTED = "helm list -o json output (a JSON array of releases)"
HELM_REPOS_EXPECTED = "helm repo list -o json output (a JSON array of {name, url})"


@dataclass(frozen=True)
class HelmRelease:
    """One release from ``helm list -o json`` (all fields as helm prints them; revision is a string)."""

    name: str
    namespace: str
    revision: str
    status: str
    chart: str
    """Chart name and version joined, e.g. "nvidia-device-plugin-0.17.3"."""
    app_version: str
    updated: str


def _load_json_or_yaml(text: str, expected: str) -> Any:
    """The JSON value of ``text``; failing that, its YAML value (helm -o yaml has the same shape)."""
    lines = [line for line in clean_lines(text) if not line.startswith("WARNING:")]
    body = "\n".join(lines).strip()
    if not body:
        return ParseError(expected, "empty input")
    if body.startswith(("[", "{")):  # JSON (helm's -o yaml starts with "- ", or is "[]" which JSON reads too)
        try:
            return json.loads(body)
        except (ValueError, RecursionError) as exc:
            return ParseError(expected, truncate(f"{type(exc).__name__}: {exc}"))
    documents = load_yaml_documents(body)
    if is_error(documents):
        return ParseError(expected, first_line(body))
    values = [document for document in documents if document is not None]
    if len(values) != 1:
        return ParseError(expected, first_line(body))
    return values[0]


def _field(entry: dict[str, Any], key: str) -> str:
    value = entry.get(key)
    return "" if value is None else str(value)


@never_raises(HELM_LIST_EXPECTED)
def _named_entries(text: str, expected: str) -> list[dict[str, Any]] | ParseError:
    """helm's `-o json`/`-o yaml` lists: a list of objects, each with a name."""
    refused = too_large(text, expected)
    if refused:
        return refused
    value = _load_json_or_yaml(text, expected)
    if is_error(value):
        return value
    if not isinstance(value, list):
        return ParseError(expected, truncate(f"a {type(value).__name__}, not a list"))
    for entry in value:
        if not isinstance(entry, dict) or not entry.get("name"):
            return ParseError(expected, truncate(f"an entry without a name: {entry!r}"))
    return value


@never_raises(HELM_LIST_EXPECTED)
def parse_helm_list_json(text: str) -> list[HelmRelease] | ParseError:
    """``helm list -o json`` (``[]`` when there are none); the ``-o yaml`` shape is accepted too."""
    entries = _named_entries(text, HELM_LIST_EXPECTED)
    if is_error(entries):
        return entries
    releases = []
    for entry in entries:
        releases.append(
            HelmRelease(
                name=_field(entry, "name"),
                namespace=_field(entry, "namespace"),
                revision=_field(entry, "revision"),
                status=_field(entry, "status"),
                chart=_field(entry, "chart"),
                app_version=_field(entry, "app_version"),
                updated=_field(entry, "updated"),
            )
        )
    return releases


@never_raises(HELM_REPOS_EXPECTED)
def parse_helm_repo_list_json(text: str) -> list[tuple[str, str]] | ParseError:
    """(name, url) of each repository in ``helm repo list -o json``.

    With no repositories helm prints ``Error: no repositories to show`` on stderr and exits 1; the caller
    handles that exit status, this parser only reads the JSON.
    """
    entries = _named_entries(text, HELM_REPOS_EXPECTED)
    if is_error(entries):
        return entries
    repos = []
    for entry in entries:
        repos.append((_field(entry, "name"), _field(entry, "url")))
    return repos


# ------------------------------------------------------------------------------------------------
# nvidia-smi
# ------------------------------------------------------------------------------------------------

SMI_EXPECTED = "nvidia-smi table output (| NVIDIA-SMI <ver>  Driver Version: <ver>  CUDA Version: <x.y> |)"
SMI_CSV_EXPECTED = "nvidia-smi --query-gpu=... --format=csv,noheader output"
SMI_LIST_EXPECTED = "nvidia-smi -L output (GPU <n>: <name> (UUID: ...))"

_SMI_FAILURE_RE = re.compile(
    r"Failed to initialize NVML: [^\n]*|NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA "
    r"driver[^\n]*|No devices were found"
)
_SMI_HEADER_RE = re.compile(
    r"NVIDIA-SMI\s+(?P<smi>\S+)\s+Driver Version:\s*(?P<driver>\S+)(?:\s+CUDA Version:\s*(?P<cuda>[^\s|]+))?"
)
_SMI_BUS_ID_RE = re.compile(r"^[0-9A-Fa-f]{4,8}:[0-9A-Fa-f]{2}:[0-9A-Fa-f]{2}\.[0-9A-Fa-f]$")
_SMI_MEMORY_RE = re.compile(r"(?<!\d)(?P<used>\d+)MiB\s*/\s*(?P<total>\d+)MiB")
_SMI_POWER_RE = re.compile(r"(?:(?<!\d)\d+|N/A)W?\s*/\s*(?P<cap>\d+)W")
_SMI_LIST_RE = re.compile(r"^GPU (?P<index>\d{1,5}): (?P<rest>.+)$")


@dataclass(frozen=True)
class SmiGpu:
    """One GPU row of the nvidia-smi table."""

    index: int
    name: str
    bus_id: str
    """As printed, e.g. "00000000:33:00.0"."""
    memory_total_mib: int | None
    power_cap_w: int | None


@dataclass(frozen=True)
class NvidiaSmi:
    """The nvidia-smi summary table."""

    driver_version: str
    cuda_version: str
    """"" when the table does not say (very old drivers)."""
    gpus: tuple[SmiGpu, ...]


@dataclass(frozen=True)
class ListedGpu:
    """One ``GPU <n>: <name> (UUID: <uuid>)`` line of ``nvidia-smi -L`` (MIG children are not GPUs)."""

    index: int
    name: str
    uuid: str


def _smi_failure(text: str, expected: str) -> ParseError | None:
    """A ParseError quoting nvidia-smi's own failure text (e.g. "Failed to initialize NVML: Driver/library
    version mismatch"), or None when the output carries none."""
    match = _SMI_FAILURE_RE.search(text)
    if match:
        return ParseError(expected, truncate(match.group(0)))
    return None


def _smi_gpu_row(line: str) -> tuple[int, str, str] | None:
    """(index, name, bus id) of a table line like ``|   0  NVIDIA H100 NVL   On  |   00000000:33:00.0 Off |``."""
    cells = line.strip().split("|")
    if len(cells) < 4 or cells[0] != "":
        return None
    words = cells[1].split()
    bus = cells[2].split()
    if len(words) < 3 or not is_number(words[0]) or len(words[0]) > 4 or words[-1] not in ("On", "Off"):
        return None
    if not bus or not _SMI_BUS_ID_RE.match(bus[0]):
        return None
    return int(words[0]), " ".join(words[1:-1]), bus[0]


def _small_int(digits: str) -> int | None:
    return int(digits) if is_number(digits) and len(digits) < 12 else None


@never_raises(SMI_EXPECTED)
def parse_nvidia_smi(text: str) -> NvidiaSmi | ParseError:
    """The ``nvidia-smi`` summary table (535, 550, 570, 580 layouts; truncated output keeps what is there).

    nvidia-smi's failure texts (``Failed to initialize NVML: Driver/library version mismatch``, ``NVIDIA-SMI
    has failed because it couldn't communicate with the NVIDIA driver``) become a ParseError quoting them.
    """
    refused = too_large(text, SMI_EXPECTED)
    if refused:
        return refused
    lines = [line if len(line) <= LONG_LINE else "" for line in clean_lines(text)]
    header = None
    for line in lines:
        header = _SMI_HEADER_RE.search(line)
        if header:
            break
    if header is None:
        return _smi_failure(text, SMI_EXPECTED) or ParseError(SMI_EXPECTED, first_line(text))
    gpus: list[SmiGpu] = []
    for index, line in enumerate(lines):
        row = _smi_gpu_row(line)
        if row is None:
            continue
        gpu_index, name, bus_id = row
        memory_total: int | None = None
        power_cap: int | None = None
        if index + 1 < len(lines) and lines[index + 1].strip().startswith("|"):
            detail = lines[index + 1]
            memory = _SMI_MEMORY_RE.search(detail)
            power = _SMI_POWER_RE.search(detail)
            memory_total = _small_int(memory.group("total")) if memory else None
            power_cap = _small_int(power.group("cap")) if power else None
        gpus.append(
            SmiGpu(
                index=gpu_index,
                name=name,
                bus_id=bus_id,
                memory_total_mib=memory_total,
                power_cap_w=power_cap,
            )
        )
    return NvidiaSmi(driver_version=header.group("driver"), cuda_version=header.group("cuda") or "", gpus=tuple(gpus))


@never_raises(SMI_CSV_EXPECTED)
def parse_nvidia_smi_csv(text: str) -> list[tuple[str, ...]] | ParseError:
    """Rows of ``nvidia-smi --query-gpu=<fields> --format=csv,noheader``, one tuple of stripped fields per
    GPU in query order: for ``name,pci.device_id`` each row is (name, device id), e.g.
    ("NVIDIA H100 NVL", "0x232110DE"). A header line (``--format=csv`` without noheader) is skipped."""
    refused = too_large(text, SMI_CSV_EXPECTED)
    if refused:
        return refused
    failure = _smi_failure(text, SMI_CSV_EXPECTED)
    if failure:
        return failure
    lines = [line for line in clean_lines(text) if line.strip()]
    if not lines:
        return ParseError(SMI_CSV_EXPECTED, "empty input")
    try:
        rows = [tuple(field.strip() for field in record) for record in csv.reader(lines, skipinitialspace=True)]
    except csv.Error as exc:  # e.g. a field longer than the csv module's limit
        return ParseError(SMI_CSV_EXPECTED, truncate(str(exc)))
    if not rows:
        return ParseError(SMI_CSV_EXPECTED, first_line(text))
    if rows and rows[0] and all("." in field or field.isidentifier() for field in rows[0]) and len(rows) > 1:
        first = ",".join(rows[0]).lower()
        if "name" in first or "pci." in first or "driver_version" in first or "memory." in first:
            rows = rows[1:]
    width = len(rows[0])
    if width == 0 or any(len(row) != width for row in rows):
        return ParseError(SMI_CSV_EXPECTED, "rows with different numbers of fields: " + truncate(lines[0]))
    return rows


@never_raises(SMI_LIST_EXPECTED)
def parse_nvidia_smi_list(text: str) -> list[ListedGpu] | ParseError:
    """The GPUs of ``nvidia-smi -L``; indented MIG device lines are skipped."""
    refused = too_large(text, SMI_LIST_EXPECTED)
    if refused:
        return refused
    failure = _smi_failure(text, SMI_LIST_EXPECTED)
    if failure:
        return failure
    gpus = []
    for line in clean_lines(text):
        if not line or line[:1].isspace() or len(line) > LONG_LINE:
            continue
        match = _SMI_LIST_RE.match(line.strip())
        if not match:
            continue
        name, uuid = match.group("rest"), ""
        before, marker, after = name.rpartition(" (UUID: ")
        if marker and after.endswith(")"):
            name, uuid = before, after[:-1]
        gpus.append(ListedGpu(int(match.group("index")), name.strip(), uuid))
    if not gpus:
        return ParseError(SMI_LIST_EXPECTED, first_line(text))
    return gpus


# ------------------------------------------------------------------------------------------------
# Device plugin log
# ------------------------------------------------------------------------------------------------

_START_RE = re.compile(r"\"?Starting NVIDIA Device Plugin\"?\s+version=(?P<rest>[^\n]*)")


@dataclass(frozen=True)
class DevicePluginLog:
    """What the NVIDIA device plugin's log says."""

    registered: bool
    """The log has "Registered device plugin for '<resource>' with Kubelet"."""
    resource: str | None
    """The resource it registered (nvidia.com/gpu), None when it did not."""
    version: str | None
    """The version the plugin printed at start-up, None when the log has no start line."""
    failures: tuple[SignatureMatch, ...]
    """Known failure messages (severity "error"), in order of appearance."""
    registered_line: int | None = None
    """1-based line number of the last registration, None when it did not register."""
    warnings: tuple[SignatureMatch, ...] = ()
    """Known messages of severity "warning" (e.g. "Unsupported platform detected; defaulting to nvml")."""

    @property
    def failed_after_registration(self) -> tuple[SignatureMatch, ...]:
        """Failures logged after the last registration (a plugin that registered and then broke)."""
        if self.registered_line is None:
            return self.failures
        return tuple(match for match in self.failures if match.line_number > self.registered_line)


def _plugin_version(lines: list[str]) -> str | None:
    for index, line in enumerate(lines):
        start = _START_RE.search(line)
        if not start:
            continue
        rest = start.group("rest").strip()
        if rest and rest != "<":
            return rest.strip("\"'") or None
        # klog multi-line value: version=<  / <indented version> / <indented commit: ...> / >
        for following in lines[index + 1 : index + 4]:
            value = following.strip()
            if value and value != ">" and not value.startswith("commit:"):
                return value
        return None
    return None


def scan_device_plugin_log(text: str) -> DevicePluginLog:
    """Read a device plugin log (``kubectl logs``): registration, version and known failures.

    Any text is a log, so this never returns an error and never raises. Prefixes (klog headers such as
    ``I1022 18:32:39.566652       1 main.go:239]``, journald ``Oct 17 12:05:33 host nvidia-device-plugin[1667]:``,
    container runtime timestamps) do not matter: messages are matched wherever they are in a line.
    """
    if not isinstance(text, str) or not text:
        return DevicePluginLog(registered=False, resource=None, version=None, failures=())
    try:
        lines = clean_lines(text)
        registered_line: int | None = None
        resource: str | None = None
        for number, line in enumerate(lines, start=1):
            match = REGISTERED_RE.search(line)
            if match:
                registered_line, resource = number, match.group("resource")
        matches = match_signatures(text, sources=POD_LOG)
        return DevicePluginLog(
            registered=registered_line is not None,
            resource=resource,
            version=_plugin_version(lines),
            failures=tuple(match for match in matches if match.signature.severity == "error"),
            registered_line=registered_line,
            warnings=tuple(match for match in matches if match.signature.severity != "error"),
        )
    except Exception:  # a log scan must never take the check down with it
        return DevicePluginLog(registered=False, resource=None, version=None, failures=())


# ---- the device plugin's running config (time-slicing, MPS, MIG) ---------------------------------


@dataclass(frozen=True)
class PluginSharing:
    """How the device plugin on a node advertises its GPUs, from the ``Running with config:`` JSON it logs
    at start (k8s-device-plugin main.go; the config the pod really runs, whatever Helm or a ConfigMap said).

    ``replicas``: resource name -> replicas per GPU (time-slicing or MPS; absent: 1); ``renamed``: resource
    name -> the name it is advertised under (``nvidia.com/gpu.shared`` with renameByDefault, or a resource's
    own ``rename``); ``mig_strategy``: none, single or mixed."""

    strategy: str | None = None  # "time-slicing", "mps" or None
    replicas: tuple[tuple[str, int], ...] = ()
    renamed: tuple[tuple[str, str], ...] = ()
    mig_strategy: str = "none"

    def replicas_of(self, resource: str) -> int:
        return dict(self.replicas).get(resource, 1)

    def advertised_as(self, resource: str) -> str:
        return dict(self.renamed).get(resource, resource)


_RUNNING_CONFIG = "Running with config:"


def _config_json(text: str) -> Any:
    """The JSON object that follows the last ``Running with config:`` in a log (a restart prints it again)."""
    at = text.rfind(_RUNNING_CONFIG)
    if at < 0:
        return None
    start = text.find("{", at)
    if start < 0:
        return None
    depth, in_string, escaped = 0, False, False
    for index in range(start, min(len(text), start + 200_000)):
        char = text[index]
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
            if depth == 0:
                try:
                    return json.loads(text[start: index + 1])
                except ValueError:
                    return None
    return None  # cut short


def plugin_sharing(text: str) -> PluginSharing | None:
    """The sharing and MIG settings the device plugin logged at its start; None when the log holds no
    (complete) ``Running with config:`` block. Never raises."""
    try:
        config = _config_json(text if isinstance(text, str) else "")
        if not isinstance(config, dict):
            return None
        flags = config.get("flags") if isinstance(config.get("flags"), dict) else {}
        mig = str(flags.get("migStrategy") or "none")
        sharing = config.get("sharing") if isinstance(config.get("sharing"), dict) else {}
        for key, strategy in (("timeSlicing", "time-slicing"), ("mps", "mps")):
            block = sharing.get(key)
            if not isinstance(block, dict):
                continue
            resources = [r for r in block.get("resources") or [] if isinstance(r, dict) and r.get("name")]
            if not resources:
                continue
            replicas: list[tuple[str, int]] = []
            renamed: list[tuple[str, str]] = []
            rename_default = bool(block.get("renameByDefault"))
            for resource in resources:
                name = str(resource["name"])
                try:
                    count = int(resource.get("replicas") or 1)
                except (TypeError, ValueError):
                    count = 1
                replicas.append((name, max(count, 1)))
                if resource.get("rename"):
                    renamed.append((name, str(resource["rename"])))
                elif rename_default and count > 1:
                    renamed.append((name, name + ".shared"))
            return PluginSharing(strategy, tuple(replicas), tuple(renamed), mig)
        return PluginSharing(None, (), (), mig)
    except Exception:  # a log is untrusted text: never take the check down
        return None
