"""The four live panes: Node, Extensions, Modules and GPU resources.

Each pane turns the facts of a sweep (`Report.facts`) into rows; tables are updated cell by cell
(`sync_table`), so a refresh never flickers or loses the cursor. While the node reboots, each pane
says so above its last known answers, and recovers by itself when the node is back.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from rich.console import Group
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical, VerticalScroll
from textual.message import Message
from textual.widgets import DataTable, Static

from checks.sanitize import safe
from widgets.table_sync import Row, sync_table

if TYPE_CHECKING:
    from checks.findings import DevicePluginFinding, ExtensionsFinding, GpuCounts, PodFinding
    from checks.model import ProbeResult, Report
    from checks.profile import Profile  # imports YAML, which the first frame does not need

OK, BAD, UNKNOWN, DIM = "green", "bold red", "cyan", "dim"


@dataclass(frozen=True)
class PaneContext:
    """What the panes need besides the report."""

    profile: Profile
    now: float  # epoch seconds, for ages ("5m")
    stable: bool = False  # hide ages: they differ run to run, snapshots must not
    rebooting: str | None = None  # why the node is taken to be rebooting, None when it is not
    last_test_pod: str | None = None  # summary of the last GPU test pod the TUI ran


def yes_no(ok: bool, yes: str = "yes", no: str = "no") -> Text:
    return Text(f"✔ {yes}", style=OK) if ok else Text(f"✘ {no}", style=BAD)


def unknown_text(fact: ProbeResult | None) -> Text:
    reason = fact.error if fact is not None and fact.error else "not gathered"
    return Text(f"? unknown: {safe(reason)}", style=UNKNOWN)


def plain(value: object, style: str = "") -> Text:
    return Text(safe(str(value)), style=style)


def age(timestamp: str | None, now: float, *, stable: bool) -> Text:
    """"5m" from a Kubernetes RFC 3339 timestamp; "—" when unknown or in stable output."""
    if stable or not timestamp:
        return Text("—", style=DIM)
    try:
        then = datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return Text("—", style=DIM)
    seconds = max(0, int(now - then))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return Text(f"{seconds // size}{unit}")
    return Text(f"{seconds}s")


def fact_of(report: Report | None, name: str) -> ProbeResult | None:
    return report.facts.get(name) if report is not None else None


def reboot_banner(ctx: PaneContext) -> Text:
    return Text(f"⟳ NODE REBOOTING — {safe(ctx.rebooting)}. Showing the last answers; this pane recovers by itself.",
                style="bold reverse yellow")


class FactsPane(Vertical):
    """A banner line, then the pane's tables. Subclasses fill `show`."""

    @dataclass
    class Mounted(Message):
        """The pane is on screen (hidden panes mount after the first frame) and wants the last report."""

        pane: FactsPane

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.report: Report | None = None
        self.banner_text = ""  # the banner's words, without styles

    def on_mount(self) -> None:
        self.post_message(self.Mounted(self))

    def compose(self) -> ComposeResult:
        yield Static(Text("… checking", style="dim italic"), classes="pane-banner")
        yield from self.compose_body()

    def compose_body(self) -> ComposeResult:
        yield from ()

    def set_banner(self, *lines: Text) -> None:
        self.banner_text = "\n".join(line.plain for line in lines)
        self.query_one(".pane-banner", Static).update(Group(*lines) if len(lines) != 1 else lines[0])

    def show(self, report: Report, ctx: PaneContext) -> None:
        raise NotImplementedError


def key_value_table(id: str) -> DataTable:
    table = DataTable(id=id, cursor_type="row", show_header=False, zebra_stripes=True)
    table.add_column(Text("what"), key="what")  # Text, not str: no markup parsing (see StageChecklist)
    table.add_column(Text("value"), key="value")
    return table


# ---- Node -----------------------------------------------------------------------------------------


def node_rows(report: Report, ctx: PaneContext) -> list[Row]:
    rows: list[Row] = []
    version, machine, health, node = (fact_of(report, n) for n in ("talos_version", "machine_status", "health",
                                                                   "kube_node"))
    if version is not None and version.ok:
        rows.append(Row("talos", (Text("Talos"), plain(version.value.server_tag or "?"))))
    else:
        rows.append(Row("talos", (Text("Talos"), unknown_text(version))))
    if machine is not None and machine.ok:
        stage = machine.value.stage
        shown = Text(stage, style=OK) if stage == "running" else Text(f"⟳ {safe(stage)}", style="bold yellow")
        rows.append(Row("machine-stage", (Text("Machine stage"), shown)))
        ready = yes_no(machine.value.ready)
        unmet = ", ".join(f"{name}: {why}" for name, why in machine.value.unmet)
        if unmet:
            ready.append(f"  ({safe(unmet)})", style=DIM)
        rows.append(Row("machine-ready", (Text("Machine ready"), ready)))
    else:
        rows.append(Row("machine-stage", (Text("Machine stage"), unknown_text(machine))))
    if health is not None and health.ok:
        failed = health.value.failed_check
        if failed is not None:
            shown = Text(f"✘ waiting for {failed.name}: {safe(failed.message or '')}", style=BAD)
        elif health.value.error:
            shown = Text(f"✘ {safe(health.value.error)}", style=BAD)
        else:
            shown = Text(f"✔ {len(health.value.checks)} checks OK", style=OK)
        rows.append(Row("health", (Text("talosctl health"), shown)))
    elif health is not None:
        rows.append(Row("health", (Text("talosctl health"), unknown_text(health))))
    if node is None or not node.ok:
        shown = Text("✘ no Node with this address", style=BAD) if node is not None and node.missing \
            else unknown_text(node)
        rows.append(Row("kube-node", (Text("Kubernetes Node"), shown)))
        return rows
    obj: dict[str, Any] = node.value
    status = obj.get("status") or {}
    info = status.get("nodeInfo") or {}
    rows.append(Row("kube-node", (Text("Kubernetes Node"), plain(obj["metadata"]["name"], "bold"))))
    conditions = sorted(status.get("conditions") or [], key=lambda c: (c.get("type") != "Ready", c.get("type", "")))
    for condition in conditions:
        kind = str(condition.get("type") or "?")
        value = str(condition.get("status") or "Unknown")
        if kind == "Ready":
            shown = yes_no(value == "True", "Ready", f"NotReady ({condition.get('reason') or value})")
            message = condition.get("message")
            if value != "True" and message:
                shown.append(f"  {safe(str(message))}", style=DIM)
            rows.append(Row("cond-Ready", (Text("Node Ready"), shown)))
        else:
            healthy = value == "False"
            rows.append(Row(f"cond-{kind}", (Text(f"  {safe(kind)}", style=DIM),
                                             Text(safe(value), style=DIM if healthy else BAD))))
    for address in sorted(status.get("addresses") or [], key=lambda a: (a.get("type", ""), a.get("address", ""))):
        rows.append(Row(f"addr-{address.get('type')}-{address.get('address')}",
                        (plain(address.get("type") or "address"), plain(address.get("address") or ""))))
    for key, label in (("kubeletVersion", "Kubelet"), ("kernelVersion", "Kernel"), ("osImage", "OS image"),
                       ("containerRuntimeVersion", "Container runtime")):
        if info.get(key):
            rows.append(Row(key, (Text(label), plain(info[key]))))
    rows.append(Row("age", (Text("Age"), age((obj.get("metadata") or {}).get("creationTimestamp"), ctx.now,
                                              stable=ctx.stable))))
    ready = next((c for c in conditions if c.get("type") == "Ready"), None)
    if ready is not None:
        rows.append(Row("ready-since", (Text("Ready condition since"),
                                        age(ready.get("lastTransitionTime"), ctx.now, stable=ctx.stable))))
    return rows


class NodePane(FactsPane):
    def compose_body(self) -> ComposeResult:
        yield key_value_table("node-table")

    def show(self, report: Report, ctx: PaneContext) -> None:
        self.report = report
        banner = [reboot_banner(ctx)] if ctx.rebooting else []
        kube = report.kube_node or "?"
        banner.append(Text.assemble(("Talos node ", DIM), (safe(report.node), "bold"),
                                     ("  ·  Kubernetes node ", DIM), (safe(kube), "bold")))
        self.set_banner(*banner)
        sync_table(self.query_one("#node-table", DataTable), node_rows(report, ctx))


# ---- Extensions -----------------------------------------------------------------------------------


def extensions_of(report: Report, profile: Profile) -> ExtensionsFinding | None:
    """The extensions stage's finding; for a report judged without that stage, the same rule run on its facts."""
    from checks import findings

    judged = findings.finding(report, findings.ExtensionsFinding)
    if judged is not None:
        return judged
    fact, pci = fact_of(report, "extensions"), fact_of(report, "pci_devices")
    if fact is None or not fact.ok:
        return None
    return findings.extensions_finding(fact.value, profile, pci.value if pci is not None and pci.ok else ())


def extension_rows(finding: ExtensionsFinding, extensions: list[Any]) -> list[Row]:
    """NVIDIA extensions first (a missing one as a red row), the track and driver parts marked red where the
    finding says they do not match; then the other extensions, dimmed."""
    rows: list[Row] = [Row(f"missing-{name}", (Text(f"✘ {name}", style=BAD), Text("not installed", style=BAD)))
                       for name in finding.missing]
    for ext in finding.extensions:
        good = ext.track_ok and ext.driver_ok
        mark = "✔ " if good else "✘ "
        shown_name = Text.assemble((mark, OK if good else BAD), (safe(ext.base), "bold"),
                                   ("-" if ext.track else "", "bold"),
                                   (ext.track, "bold" if ext.track_ok else "bold reverse red"))
        version = Text.assemble((safe(ext.driver), "bold" if ext.driver_ok else "bold reverse red"),
                                (f"-{safe(ext.suffix)}" if ext.suffix else "", ""))
        rows.append(Row(f"ext-{ext.name}", (shown_name, version)))
    nvidia = {ext.name for ext in finding.extensions}
    others = sorted((ext for ext in extensions if ext.name not in nvidia
                     and ext.name not in ("schematic", "flavor")), key=lambda e: e.name)
    for ext in others:
        rows.append(Row(f"ext-{ext.name}", (plain(f"  {ext.name}", DIM), plain(ext.version, DIM))))
    return rows


def schematic_line(finding: ExtensionsFinding) -> Text:
    installed, needed = finding.installed_schematic, finding.wanted_schematic
    line = Text.assemble(("profile track ", DIM), (safe(finding.track), "bold"), ("  ·  schematic ", DIM))
    if installed is None:
        line.append("none (not an Image Factory image)", style=DIM)
    else:
        line.append(safe(installed[:12]) + "…", style=OK if installed == needed else BAD)
    if needed and installed != needed:
        line.append("  needs ", style=DIM)
        line.append(safe(needed[:12]) + "…", style="bold")
    return line


class ExtensionsPane(FactsPane):
    def compose_body(self) -> ComposeResult:
        table = DataTable(id="extensions-table", cursor_type="row", zebra_stripes=True)
        table.add_column("extension (track in the name)", key="extension")
        table.add_column("version (driver first)", key="version")
        yield table
        yield Static(id="extensions-footer")

    def show(self, report: Report, ctx: PaneContext) -> None:
        self.report = report
        banner: list[Text] = [reboot_banner(ctx)] if ctx.rebooting else []
        fact = fact_of(report, "extensions")
        table = self.query_one("#extensions-table", DataTable)
        footer = self.query_one("#extensions-footer", Static)
        finding = extensions_of(report, ctx.profile) if fact is not None and fact.ok else None
        if fact is None or finding is None:
            self.set_banner(*banner, unknown_text(fact))
            if not ctx.rebooting:
                sync_table(table, [])
                footer.update("")
            return
        self.set_banner(*banner, schematic_line(finding))
        sync_table(table, extension_rows(finding, list(fact.value)))
        footer.update(Group(*(Text(f"✘ {safe(p)}", style=BAD) for p in finding.problems)) if finding.problems
                      else Text("✔ both NVIDIA extensions installed, same track and driver", style=OK))


# ---- Modules --------------------------------------------------------------------------------------


def module_rows(loaded: list[Any] | None, requested: list[str] | None, profile: Profile) -> list[Row]:
    by_name = {m.name: m for m in loaded or []}
    names = list(profile.modules) + sorted(n for n in by_name if n.startswith("nvidia") and n not in profile.modules)
    rows: list[Row] = []
    for name in names:
        module = by_name.get(name)
        if loaded is None:
            state = Text("?", style=UNKNOWN)
        elif module is None:
            state = Text("✘ absent", style=BAD)
        else:
            state = Text(f"✔ {safe(module.state)}", style=OK) if module.is_live else Text(f"✘ {safe(module.state)}", style=BAD)
        size = f"{module.size:,}" if module is not None and module.size is not None else "—"
        refs = str(module.refcount) if module is not None and module.refcount is not None else "—"
        if requested is None:
            asked = Text("?", style=UNKNOWN)
        elif name in requested:
            asked = Text("✔ yes", style=OK)
        else:
            asked = Text("✘ no", style=BAD if name in profile.modules else DIM)
        rows.append(Row(f"mod-{name}", (plain(name, "bold"), state, Text(safe(size), justify="right"),
                                        Text(safe(refs), justify="right"), asked)))
    return rows


class ModulesPane(FactsPane):
    def compose_body(self) -> ComposeResult:
        table = DataTable(id="modules-table", cursor_type="row", zebra_stripes=True)
        for label in ("module", "state", "size", "refs", "in config"):
            table.add_column(label, key=label)
        yield table
        yield Static(id="modules-footer")

    def show(self, report: Report, ctx: PaneContext) -> None:
        self.report = report
        modules, driver, sysctl, specs, dmesg = (fact_of(report, n) for n in (
            "proc_modules", "driver_version", "bpf_sysctl", "module_specs", "dmesg"))
        banner: list[Text] = [reboot_banner(ctx)] if ctx.rebooting else []
        if driver is not None and driver.ok:
            banner.append(Text.assemble(("NVIDIA driver ", "bold"), (safe(driver.value.version), "bold green"),
                                        (f"  ({driver.value.flavor} kernel module)", DIM)))
        elif driver is not None and driver.missing:
            banner.append(Text("✘ NVIDIA driver not loaded: /proc/driver/nvidia/version does not exist", style=BAD))
        else:
            banner.append(Text.assemble(("NVIDIA driver ", "bold"), unknown_text(driver)))
        self.set_banner(*banner)
        loaded = list(modules.value) if modules is not None and modules.ok else None
        requested = list(specs.value) if specs is not None and specs.ok else None
        if loaded is not None or not ctx.rebooting:
            sync_table(self.query_one("#modules-table", DataTable), module_rows(loaded, requested, ctx.profile))
        footer: list[Text] = []
        if report.path == "gpu-operator":
            footer.append(Text("sysctl net.core.bpf_jit_harden: not needed on the gpu-operator path (Talos ≥ 1.13)",
                               style=DIM))
        elif sysctl is not None and sysctl.ok:
            good = sysctl.value == "1"
            footer.append(Text.assemble(("sysctl ", DIM), "net.core.bpf_jit_harden = ", (safe(sysctl.value), "bold"),
                                        ("  ✔ as the device plugin path needs" if good else "  ✘ must be 1",
                                         OK if good else BAD)))
        else:
            footer.append(Text.assemble(("sysctl ", DIM), "net.core.bpf_jit_harden ", unknown_text(sysctl)))
        if requested is not None:
            nvidia = [m for m in requested if m.startswith("nvidia")]
            footer.append(Text.assemble(("requested (kernelmodulespecs) ", DIM),
                                        ", ".join(nvidia) if nvidia else ("no NVIDIA module", BAD)))
        else:
            footer.append(Text.assemble(("requested (kernelmodulespecs) ", DIM), unknown_text(specs)))
        if modules is not None and not modules.ok:
            footer.append(Text.assemble(("loaded (/proc/modules) ", DIM), unknown_text(modules)))
        if dmesg is not None and dmesg.ok and dmesg.value.failures:
            for failure in dmesg.value.failures[:2]:
                footer.append(Text(f"✘ dmesg: GPU {failure.pci_id or '?'}: {safe(failure.message)}", style=BAD))
        self.query_one("#modules-footer", Static).update(Group(*footer))


# ---- GPU resources --------------------------------------------------------------------------------


def counts_of(report: Report, profile: Profile) -> GpuCounts:
    """The gpu-resources stage's counts; for a report judged without that stage, the same rule on its facts."""
    from checks import findings

    return findings.finding(report, findings.GpuCounts) or findings.gpu_counts(report.facts, profile)


def gpu_count_rows(report: Report, counts: GpuCounts) -> list[Row]:
    pci, driver, node, allocated = (fact_of(report, n) for n in (
        "pci_devices", "driver_version", "kube_node", "gpu_allocations"))
    rows: list[Row] = []
    if counts.pci_gpus is not None:
        rows.append(Row("pci", (Text("NVIDIA GPUs on the PCI bus"), Text(str(counts.pci_gpus), style="bold"),
                                plain(", ".join(counts.products) or "none", DIM))))
    else:
        rows.append(Row("pci", (Text("NVIDIA GPUs on the PCI bus"), Text("?", style=UNKNOWN), unknown_text(pci))))
    seen = counts.initialised
    if counts.driver_loaded is False:
        rows.append(Row("driver", (Text("GPUs the driver initialised"), Text("0", style=BAD),
                                   Text("driver not loaded", style=BAD))))
    elif seen is not None:
        failed = counts.failed_pci
        note = Text(safe(f"dmesg: {', '.join(failed)} failed"), style=BAD) if failed else Text("", style=DIM)
        rows.append(Row("driver", (Text("GPUs the driver initialised"),
                                   Text(str(seen), style="bold" if seen == counts.pci_gpus else BAD), note)))
    else:
        rows.append(Row("driver", (Text("GPUs the driver initialised"), Text("?", style=UNKNOWN),
                                   unknown_text(driver if driver is not None and driver.error else pci))))
    resource, expected = counts.resource, counts.expected
    shown_expected = f"expected {expected if expected is not None else '?'}"
    if counts.advertised is not None:
        unhealthy = counts.advertised.unhealthy
        for field, count in (("capacity", counts.advertised.capacity), ("allocatable", counts.advertised.allocatable)):
            good = counts.matches(count)
            note = "" if good else shown_expected
            if field == "allocatable" and unhealthy:
                note += f"; {unhealthy} marked unhealthy" + (f" ({', '.join(counts.xids[:2])})" if counts.xids else "")
            rows.append(Row(field, (Text(f"{resource} {field}"), Text(str(count), style="bold" if good else BAD),
                                    Text(safe(note.lstrip("; ")), style=BAD))))
        for mig in counts.mig:
            rows.append(Row(f"mig-{mig.resource}", (plain(f"{mig.resource} capacity / allocatable"),
                                                    Text(f"{mig.capacity} / {mig.allocatable}",
                                                         style=BAD if mig.unhealthy else "bold"),
                                                    Text("MIG instances" + (f"; {mig.unhealthy} unhealthy"
                                                                            if mig.unhealthy else ""),
                                                         style=BAD if mig.unhealthy else DIM))))
    else:
        for field in ("capacity", "allocatable"):
            rows.append(Row(field, (Text(f"{resource} {field}"), Text("?", style=UNKNOWN), unknown_text(node))))
    if allocated is not None and allocated.ok:
        rows.append(Row("allocated", (Text(f"{resource} allocated to pods"), Text(safe(allocated.value)),
                                      Text(""))))
    else:
        rows.append(Row("allocated", (Text(f"{resource} allocated to pods"), Text("?", style=UNKNOWN),
                                      unknown_text(allocated))))
    return rows


def plugin_pod_rows(pods: Iterable[PodFinding]) -> list[Row]:
    rows = []
    for pod in sorted(pods, key=lambda p: p.name):
        rows.append(Row(f"pod-{pod.name}", (plain(pod.name), Text(safe(pod.word), style=OK if pod.word == "Running"
                                                                  else BAD),
                                            yes_no(pod.ready), Text(str(pod.restarts), justify="right",
                                                                    style=BAD if pod.restarts else ""))))
    return rows


def plugin_of(report: Report, profile: Profile) -> DevicePluginFinding | None:
    """The device-plugin stage's finding; for a report judged without it, the same rule on its facts."""
    from checks import findings

    judged = findings.finding(report, findings.DevicePluginFinding)
    if judged is not None:
        return judged
    fact, node = fact_of(report, "device_plugin"), fact_of(report, "kube_node")
    if fact is None or not fact.ok or fact.value is None or fact.value.daemonset is None:
        return None
    kube = node.value if node is not None and node.ok and isinstance(node.value, dict) else None
    return findings.daemonset_finding(fact.value.daemonset, fact.value.pods, kube, profile.runtime_class)


def daemonset_line(fact: ProbeResult | None, finding: DevicePluginFinding | None) -> Text:
    if fact is None or (not fact.ok and not fact.missing):
        return Text.assemble(("Device plugin DaemonSet ", "bold"), unknown_text(fact))
    if fact.missing or finding is None:
        return Text("✘ Device plugin DaemonSet: not installed", style=BAD)
    desired, ready, runtime_class = finding.desired, finding.ready, finding.runtime_class
    line = Text.assemble(
        ("Device plugin DaemonSet ", "bold"), (safe(f"{finding.namespace}/{finding.name}"), "bold"), "\n",
        ("desired ", DIM), (str(desired), "bold" if desired else BAD),
        ("  ·  ready ", DIM), (str(ready), "bold" if ready and ready == desired else BAD),
        ("  ·  runtimeClassName ", DIM), (safe(str(runtime_class or "not set")),
                                          OK if finding.runtime_class_ok else BAD),
        ("" if finding.pods else "  ·  no pods" + (f" on {finding.node}" if finding.node and finding.pods_total
                                                  else ""), BAD),
    )
    if finding.taints is not None and finding.taints.untolerated:
        line.append(f"\n✘ node {safe(finding.taints.node)} has the taint {safe(', '.join(finding.taints.untolerated))}, "
                    f"which its {finding.taints.tolerations} tolerations do not cover", style=BAD)
    return line


def test_pod_line(report: Report, ctx: PaneContext) -> Text:
    fact = fact_of(report, "gpu_workload")
    if fact is not None and fact.ok and fact.value is not None:
        return Text.assemble(("Last test pod ", "bold"), safe(str(fact.value.summary)))
    if ctx.last_test_pod:
        return Text.assemble(("Last test pod ", "bold"), safe(ctx.last_test_pod))
    return Text("Last test pod: none run yet (the gpu-workload action runs nvidia-smi in a pod)", style=DIM)


def test_pod_summary(output: list[str], reason: str) -> str:
    """One line from a test pod's output (checks.findings.smi_summary reads nvidia-smi), else `reason`."""
    from checks.findings import smi_summary

    return smi_summary(output, reason)


class GpuPane(FactsPane):
    def compose_body(self) -> ComposeResult:
        with VerticalScroll(id="gpu-scroll"):
            counts = DataTable(id="gpu-counts", cursor_type="row", show_header=False, zebra_stripes=True)
            for label in ("what", "count", "note"):
                counts.add_column(label, key=label)
            yield counts
            yield Static(id="gpu-daemonset")
            pods = DataTable(id="gpu-pods", cursor_type="row", zebra_stripes=True)
            for label in ("device plugin pod", "status", "ready", "restarts"):
                pods.add_column(label, key=label)
            yield pods
            yield Static(id="gpu-test-pod")

    def show(self, report: Report, ctx: PaneContext) -> None:
        self.report = report
        banner: list[Text] = [reboot_banner(ctx)] if ctx.rebooting else []
        banner.append(Text("PCI devices → driver → kubelet → pods: each number should equal the one above it",
                           style=DIM))
        self.set_banner(*banner)
        sync_table(self.query_one("#gpu-counts", DataTable), gpu_count_rows(report, counts_of(report, ctx.profile)))
        pods: tuple[PodFinding, ...]
        if report.path == "gpu-operator":
            from widgets.gpu_operator import operator_line, operator_pods

            self.query_one("#gpu-daemonset", Static).update(operator_line(report, ctx.profile))
            pods = operator_pods(report)
        else:
            plugin = plugin_of(report, ctx.profile)
            self.query_one("#gpu-daemonset", Static).update(daemonset_line(fact_of(report, "device_plugin"), plugin))
            pods = plugin.pods if plugin is not None else ()
        table = self.query_one("#gpu-pods", DataTable)
        sync_table(table, plugin_pod_rows(pods))
        table.display = bool(pods)
        self.query_one("#gpu-test-pod", Static).update(test_pod_line(report, ctx))
